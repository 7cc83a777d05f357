//! The change calendar in reports (issue 12): changes by kind and service line, DORA's change
//! failure rate (changes linked to an incident or rolled back ÷ changes done or rolled back in
//! the period), per service line with the previous period's, freeze overrides, incidents with
//! and without a linked change; and the failure rate as the grade's fourth criterion.

use super::metrics::Grade;
use super::{Figures, Headline, Value};
use crate::db::ChangeFigures;

/// Highest change failure rate for grades A, B, C (more is D). DORA's elite teams stay under
/// 15 %; 30 % and 45 % mark the next bands.
pub const GRADE_CHANGE_FAILURE: [f64; 3] = [0.15, 0.30, 0.45];

/// The grade a change failure rate earns.
pub fn failure_grade(rate: f64) -> Grade {
    match GRADE_CHANGE_FAILURE.iter().position(|limit| rate <= *limit) {
        Some(0) => Grade::A,
        Some(1) => Grade::B,
        Some(_) => Grade::C,
        None => Grade::D,
    }
}

/// Lowers each service line's grade to its change failure rate's grade (a line with no
/// finished change keeps its grade).
pub fn apply_grades(figures: &mut Figures, changes: &ChangeFigures) {
    for line in &mut figures.services {
        let Some(grade) = line.grade else { continue };
        if let Some((_, _, finished, failed)) = changes.by_service.iter().find(|(s, ..)| *s == line.service) {
            if *finished > 0 {
                line.grade = Some(grade.max(failure_grade(*failed as f64 / *finished as f64)));
            }
        }
    }
}

fn rate(finished: i64, failed: i64) -> Option<f64> {
    (finished > 0).then(|| failed as f64 / finished as f64)
}

/// The change headlines, in report order: totals, the failure rate, per kind, per service
/// line (changes and failure rate), overrides, incidents with and without a linked change.
pub fn headlines(now: &ChangeFigures, before: &ChangeFigures) -> Vec<Headline> {
    let count = |list: &[(String, i64)], key: &str| list.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
    let total = |f: &ChangeFigures| f.by_kind.iter().map(|(_, n)| n).sum::<i64>();
    let mut out = vec![
        Headline::count("changes", "Changes", total(now), total(before)),
        Headline::count(
            "changes_finished",
            "Changes done or rolled back",
            now.finished,
            before.finished,
        ),
        Headline::count(
            "changes_failed",
            "Changes failed (rolled back or linked to an incident)",
            now.failed,
            before.failed,
        ),
        Headline {
            key: "change_failure_rate".into(),
            label: "Change failure rate".into(),
            value: Value::Ratio(now.failure_rate()),
            previous: Value::Ratio(before.failure_rate()),
        },
    ];
    let mut kinds: Vec<&str> = now
        .by_kind
        .iter()
        .chain(&before.by_kind)
        .map(|(k, _)| k.as_str())
        .collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let label = crate::calendar::ChangeKind::parse(kind)
            .map(|k| k.label())
            .unwrap_or(kind);
        out.push(Headline::count(
            &format!("changes_{kind}"),
            &format!("Changes: {label}"),
            count(&now.by_kind, kind),
            count(&before.by_kind, kind),
        ));
    }
    let mut lines: Vec<&str> = now
        .by_service
        .iter()
        .chain(&before.by_service)
        .map(|(s, ..)| s.as_str())
        .collect();
    lines.sort();
    lines.dedup();
    let find = |f: &ChangeFigures, s: &str| {
        f.by_service
            .iter()
            .find(|(x, ..)| x == s)
            .map_or((0, 0, 0), |(_, n, fin, fail)| (*n, *fin, *fail))
    };
    for line in lines {
        let (n, fin, fail) = find(now, line);
        let (pn, pfin, pfail) = find(before, line);
        out.push(Headline::count(
            &format!("changes_{line}"),
            &format!("Changes on {line}"),
            n,
            pn,
        ));
        out.push(Headline {
            key: format!("change_failure_rate_{line}"),
            label: format!("Change failure rate, {line}"),
            value: Value::Ratio(rate(fin, fail)),
            previous: Value::Ratio(rate(pfin, pfail)),
        });
    }
    out.extend([
        Headline::count(
            "freeze_overrides",
            "Changes planned inside a freeze (overrides)",
            now.overrides.len() as i64,
            before.overrides.len() as i64,
        ),
        Headline::count(
            "incidents_with_linked_change",
            "Incidents with a linked change",
            now.incidents_with_change,
            before.incidents_with_change,
        ),
        Headline::count(
            "incidents_without_linked_change",
            "Incidents without a linked change",
            now.incidents_without_change,
            before.incidents_without_change,
        ),
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_grades() {
        assert_eq!(failure_grade(0.0), Grade::A);
        assert_eq!(failure_grade(0.15), Grade::A, "limits are inclusive");
        assert_eq!(failure_grade(0.2), Grade::B);
        assert_eq!(failure_grade(0.45), Grade::C);
        assert_eq!(failure_grade(0.5), Grade::D);
    }
}
