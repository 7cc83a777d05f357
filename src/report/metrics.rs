//! The arithmetic of reports, over plain numbers: percentiles, means, compliance, grades.
//! Pure; the database does the counting and summing, this module the definitions.

use serde::Serialize;
use std::fmt;

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// 1-based nearest rank of the `percent`-th percentile among `n` sorted values:
/// `ceil(percent × n / 100)`, at least 1; `None` when there are no values.
pub fn rank(percent: i64, n: i64) -> Option<i64> {
    if n <= 0 {
        return None;
    }
    Some(((percent * n + 99) / 100).clamp(1, n))
}

/// Nearest-rank percentile of sorted values (the reference for what the SQL computes).
pub fn percentile(sorted: &[i64], percent: i64) -> Option<i64> {
    rank(percent, sorted.len() as i64).map(|r| sorted[(r - 1) as usize])
}

/// Whole minutes, rounded to the nearest (halves up).
pub fn minutes(ms: i64) -> i64 {
    (ms + MINUTE_MS / 2).div_euclid(MINUTE_MS)
}

/// One duration figure (time to acknowledge, mitigate or resolve) over the incidents that have
/// its end time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DurationStats {
    /// Incidents with the end time.
    pub count: i64,
    /// Sum of their durations.
    pub sum_ms: i64,
    /// Nearest-rank median.
    pub median_ms: Option<i64>,
    /// Nearest-rank 90th percentile.
    pub p90_ms: Option<i64>,
}

impl DurationStats {
    /// Arithmetic mean, rounded to the millisecond.
    pub fn mean_ms(&self) -> Option<i64> {
        (self.count > 0).then(|| (self.sum_ms as f64 / self.count as f64).round() as i64)
    }

    /// From a list of durations (tests and small inputs; reports get these from SQL).
    pub fn of(values: &[i64]) -> DurationStats {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        DurationStats {
            count: sorted.len() as i64,
            sum_ms: sorted.iter().sum(),
            median_ms: percentile(&sorted, 50),
            p90_ms: percentile(&sorted, 90),
        }
    }
}

/// Update-SLA compliance: updates posted on time versus updates that fell due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Compliance {
    /// `update` events with `on_time: true`.
    pub on_time: i64,
    /// `reminder` events with `stage: "due"`: a due time that passed without an update.
    pub missed: i64,
}

impl Compliance {
    /// Updates that fell due: on time + missed.
    pub fn due(&self) -> i64 {
        self.on_time + self.missed
    }

    /// `on_time / due`, or `None` ("n/a") when nothing fell due.
    pub fn ratio(&self) -> Option<f64> {
        (self.due() > 0).then(|| self.on_time as f64 / self.due() as f64)
    }

    pub fn add(&mut self, other: Compliance) {
        self.on_time += other.on_time;
        self.missed += other.missed;
    }
}

/// A service line's grade for a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
        })
    }
}

/// Most incidents per 7 days for grades A, B, C (more is D).
pub const GRADE_INCIDENTS: [f64; 3] = [1.0, 3.0, 6.0];
/// Most impact minutes per 7 days for grades A, B, C (more is D).
pub const GRADE_IMPACT_MINUTES: [f64; 3] = [60.0, 240.0, 720.0];
/// Least update-SLA compliance for grades A, B, C (less is D).
pub const GRADE_COMPLIANCE: [f64; 3] = [0.95, 0.90, 0.75];

/// The grade of a service line: the worst of its incidents grade, impact grade and compliance
/// grade. Incident and impact limits are per 7 days and scale with the period's length; a
/// compliance of n/a does not lower the grade.
pub fn grade(incidents: i64, impact_minutes: i64, compliance: Option<f64>, days: i64) -> Grade {
    let scale = days.max(1) as f64 / 7.0;
    let at_most = |value: f64, limits: [f64; 3]| match limits.iter().position(|limit| value <= limit * scale) {
        Some(0) => Grade::A,
        Some(1) => Grade::B,
        Some(_) => Grade::C,
        None => Grade::D,
    };
    let by_compliance = match compliance {
        None => Grade::A,
        Some(c) => match GRADE_COMPLIANCE.iter().position(|limit| c >= *limit) {
            Some(0) => Grade::A,
            Some(1) => Grade::B,
            Some(_) => Grade::C,
            None => Grade::D,
        },
    };
    at_most(incidents as f64, GRADE_INCIDENTS)
        .max(at_most(impact_minutes as f64, GRADE_IMPACT_MINUTES))
        .max(by_compliance)
}

/// ▲ for more, ▼ for less, = for the same.
pub fn arrow(delta: f64) -> &'static str {
    if delta > 0.0 {
        "▲"
    } else if delta < 0.0 {
        "▼"
    } else {
        "="
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(rank(50, 0), None);
        assert_eq!(rank(50, 1), Some(1));
        assert_eq!(rank(90, 1), Some(1));
        assert_eq!(rank(50, 4), Some(2), "ceil(0.5 × 4) = 2");
        assert_eq!(rank(50, 5), Some(3), "ceil(2.5) = 3");
        assert_eq!(rank(90, 10), Some(9));
        assert_eq!(rank(90, 11), Some(10), "ceil(9.9) = 10");
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 90), Some(90));
        let s = DurationStats::of(&[300_000, 60_000, 120_000]);
        assert_eq!(
            (s.count, s.sum_ms, s.median_ms, s.p90_ms),
            (3, 480_000, Some(120_000), Some(300_000))
        );
        assert_eq!(s.mean_ms(), Some(160_000));
        assert_eq!(DurationStats::default().mean_ms(), None);
    }

    #[test]
    fn minutes_round_half_up() {
        assert_eq!(minutes(0), 0);
        assert_eq!(minutes(29_999), 0);
        assert_eq!(minutes(30_000), 1);
        assert_eq!(minutes(90 * MINUTE_MS), 90);
    }

    #[test]
    fn compliance_is_na_when_nothing_fell_due() {
        assert_eq!(Compliance::default().ratio(), None);
        let c = Compliance { on_time: 3, missed: 1 };
        assert_eq!(c.due(), 4);
        assert_eq!(c.ratio(), Some(0.75));
    }

    #[test]
    fn grades_take_the_worst_part_and_scale_with_the_period() {
        assert_eq!(grade(0, 0, None, 7), Grade::A);
        assert_eq!(grade(1, 60, Some(0.95), 7), Grade::A, "limits are inclusive");
        assert_eq!(grade(2, 0, None, 7), Grade::B);
        assert_eq!(grade(1, 61, None, 7), Grade::B);
        assert_eq!(grade(1, 0, Some(0.94), 7), Grade::B);
        assert_eq!(grade(1, 0, Some(0.80), 7), Grade::C);
        assert_eq!(grade(7, 0, None, 7), Grade::D);
        assert_eq!(grade(0, 721, None, 7), Grade::D);
        assert_eq!(grade(0, 0, Some(0.5), 7), Grade::D);
        // A 28-day month allows 4× the weekly counts.
        assert_eq!(grade(4, 240, None, 28), Grade::A);
        assert_eq!(grade(5, 0, None, 28), Grade::B);
    }

    #[test]
    fn arrows() {
        assert_eq!(arrow(2.0), "▲");
        assert_eq!(arrow(-0.5), "▼");
        assert_eq!(arrow(0.0), "=");
    }
}
