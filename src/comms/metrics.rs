//! The figures reports show for customer communications: time to first customer update,
//! customer-update compliance against the cadence, and minutes each component spent in each
//! non-operational status (the uptime figure a status page shows). Pure: `db` supplies the rows.

use super::{ComponentImpact, ComponentStatus, StatusPage};
use crate::incident::model::Severity;
use crate::report::metrics::{Compliance, DurationStats};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One incident as the customer-comms figures need it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommsIncident {
    pub declared_at: DateTime<Utc>,
    pub severity: Severity,
    /// Resolved, closed or canceled: customers stop being owed updates.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its published updates, oldest first.
    pub published: Vec<Published>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub at: DateTime<Utc>,
    pub components: Vec<ComponentImpact>,
    pub last: bool,
}

/// Minutes per non-operational status, for one component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusMinutes {
    pub degraded_performance: i64,
    pub partial_outage: i64,
    pub major_outage: i64,
}

impl StatusMinutes {
    pub fn total(&self) -> i64 {
        self.degraded_performance + self.partial_outage + self.major_outage
    }

    /// The minutes in `status` (none in operational: it is not counted).
    pub fn of(&self, status: ComponentStatus) -> i64 {
        match status {
            ComponentStatus::Operational => 0,
            ComponentStatus::DegradedPerformance => self.degraded_performance,
            ComponentStatus::PartialOutage => self.partial_outage,
            ComponentStatus::MajorOutage => self.major_outage,
        }
    }

    fn add(&mut self, status: ComponentStatus, ms: i64) {
        match status {
            ComponentStatus::Operational => {}
            ComponentStatus::DegradedPerformance => self.degraded_performance += ms,
            ComponentStatus::PartialOutage => self.partial_outage += ms,
            ComponentStatus::MajorOutage => self.major_outage += ms,
        }
    }
}

/// The customer-comms figures of one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommsFigures {
    /// Declared → first published update, over incidents declared in the period that had one.
    pub first_update: DurationStats,
    /// On time ÷ fell due, against the page's per-severity cadence.
    pub compliance: Compliance,
    /// Per component id (every component of the page), minutes in each non-operational status
    /// within the period.
    pub component_minutes: BTreeMap<String, StatusMinutes>,
}

/// Computes the figures over `[from, cap)` (`cap` = the period's end, or now if sooner).
/// `declared` are the incidents declared in the period; `public` are the incidents whose public
/// life overlaps it (for the component minutes; an incident may be in both).
pub fn figures(
    page: &StatusPage,
    declared: &[CommsIncident],
    public: &[CommsIncident],
    from: DateTime<Utc>,
    cap: DateTime<Utc>,
) -> CommsFigures {
    let firsts: Vec<i64> = declared
        .iter()
        .filter_map(|i| {
            i.published
                .first()
                .map(|p| (p.at - i.declared_at).num_milliseconds().max(0))
        })
        .collect();
    let mut compliance = Compliance::default();
    for incident in declared {
        if let Some(every) = page.cadence(incident.severity) {
            compliance.add(cadence_compliance(incident, every, cap));
        }
    }
    CommsFigures {
        first_update: DurationStats::of(&firsts),
        compliance,
        component_minutes: component_minutes(page, public, from, cap),
    }
}

/// How many customer updates fell due for one incident before it ended (or `cap`), and how many
/// were published on time. Each update is due a cadence after the previous one (the first a
/// cadence after the declaration); a late one counts as missed and the clock restarts from it.
pub fn cadence_compliance(incident: &CommsIncident, every: chrono::Duration, cap: DateTime<Utc>) -> Compliance {
    let end = incident.ended_at.map_or(cap, |e| e.min(cap));
    let mut out = Compliance::default();
    if every <= chrono::Duration::zero() {
        return out;
    }
    let published: Vec<&Published> = incident
        .published
        .iter()
        .filter(|p| p.at >= incident.declared_at)
        .collect();
    let mut anchor = incident.declared_at;
    // Each round consumes the next update in order: it answers the due time it falls in.
    for p in published {
        let due = anchor + every;
        if due > end {
            return out;
        }
        if p.at <= due {
            out.on_time += 1;
        } else if p.at < end {
            out.missed += 1;
        } else {
            break;
        }
        if p.last {
            return out;
        }
        anchor = p.at;
    }
    // Nothing more was published: one more update fell due if its time came before the end.
    if anchor + every <= end {
        out.missed += 1;
    }
    out
}

/// Per component, the minutes in each non-operational status within `[from, cap)`: each
/// published update sets its components' statuses until the incident's next update (or its
/// last update, or `cap`); where incidents overlap, the worst status counts, once.
pub fn component_minutes(
    page: &StatusPage,
    incidents: &[CommsIncident],
    from: DateTime<Utc>,
    cap: DateTime<Utc>,
) -> BTreeMap<String, StatusMinutes> {
    // (start, end, status) spans per component.
    let mut spans: BTreeMap<&str, Vec<(i64, i64, ComponentStatus)>> = BTreeMap::new();
    let (lo, hi) = (from.timestamp_millis(), cap.timestamp_millis());
    for incident in incidents {
        let stop = incident
            .published
            .iter()
            .find(|p| p.last)
            .map(|p| p.at)
            .or(incident.ended_at)
            .unwrap_or(cap);
        for (i, update) in incident.published.iter().enumerate() {
            if update.last {
                break;
            }
            let until = incident.published.get(i + 1).map_or(stop, |n| n.at.min(stop));
            let (start, end) = (update.at.timestamp_millis().max(lo), until.timestamp_millis().min(hi));
            if start >= end {
                continue;
            }
            for impact in &update.components {
                if let Some(c) = page.component(&impact.component) {
                    spans
                        .entry(c.id.as_str())
                        .or_default()
                        .push((start, end, impact.status));
                }
            }
        }
    }
    let mut out: BTreeMap<String, StatusMinutes> = page
        .components
        .iter()
        .map(|c| (c.id.clone(), StatusMinutes::default()))
        .collect();
    for (component, list) in spans {
        let mut cuts: Vec<i64> = list.iter().flat_map(|(s, e, _)| [*s, *e]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut ms = StatusMinutes::default();
        for w in cuts.windows(2) {
            let worst = list
                .iter()
                .filter(|(s, e, _)| *s <= w[0] && *e >= w[1])
                .map(|(_, _, st)| *st)
                .max();
            if let Some(st) = worst {
                ms.add(st, w[1] - w[0]);
            }
        }
        let m = crate::report::metrics::minutes;
        out.insert(
            component.to_string(),
            StatusMinutes {
                degraded_performance: m(ms.degraded_performance),
                partial_outage: m(ms.partial_outage),
                major_outage: m(ms.major_outage),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap() + Duration::minutes(min)
    }

    fn published(min: i64, status: ComponentStatus, last: bool) -> Published {
        Published {
            at: t(min),
            components: vec![ComponentImpact {
                component: "card-payments".into(),
                status,
            }],
            last,
        }
    }

    fn incident(published: Vec<Published>, ended: Option<i64>) -> CommsIncident {
        CommsIncident {
            declared_at: t(0),
            severity: Severity::Sev1,
            ended_at: ended.map(t),
            published,
        }
    }

    use ComponentStatus::*;

    #[test]
    fn on_time_updates_count_and_a_late_one_restarts_the_clock() {
        let every = Duration::minutes(30);
        // 20 (on time), 45 (on time: due 50), 90 (late: due 75), 110 last (on time: due 120).
        let i = incident(
            vec![
                published(20, MajorOutage, false),
                published(45, MajorOutage, false),
                published(90, PartialOutage, false),
                published(110, Operational, true),
            ],
            Some(200),
        );
        let c = cadence_compliance(&i, every, t(1_000));
        assert_eq!((c.on_time, c.missed), (3, 1));
        // Nothing published: one update fell due and was missed.
        let silent = incident(vec![], Some(200));
        let c = cadence_compliance(&silent, every, t(1_000));
        assert_eq!((c.on_time, c.missed), (0, 1));
        // Resolved before the first was due: nothing fell due.
        let quick = incident(vec![], Some(10));
        assert_eq!(cadence_compliance(&quick, every, t(1_000)).due(), 0);
    }

    #[test]
    fn component_minutes_take_the_worst_overlap_once_and_stop_at_the_last_update() {
        let page = super::super::tests::page();
        let a = incident(
            vec![
                published(0, PartialOutage, false),
                published(30, DegradedPerformance, false),
                published(60, Operational, true),
            ],
            Some(90),
        );
        // Overlaps 20..40 with a major outage.
        let b = incident(
            vec![published(20, MajorOutage, false), published(40, Operational, true)],
            None,
        );
        let m = component_minutes(&page, &[a, b], t(0), t(1_000));
        let card = m["card-payments"];
        assert_eq!(card.major_outage, 20);
        assert_eq!(card.partial_outage, 20, "0..20 only; 20..30 is the worse major outage");
        assert_eq!(card.degraded_performance, 20, "40..60");
        assert_eq!(m["payouts"].total(), 0, "every component is listed");
        // Clipped to the period.
        let m = component_minutes(
            &page,
            &[incident(vec![published(0, MajorOutage, false)], None)],
            t(10),
            t(25),
        );
        assert_eq!(m["card-payments"].major_outage, 15);
    }

    #[test]
    fn first_update_times_are_over_incidents_that_had_one() {
        let page = super::super::tests::page();
        let f = figures(
            &page,
            &[
                incident(vec![published(10, MajorOutage, false)], Some(60)),
                incident(vec![published(30, MajorOutage, false)], Some(60)),
                incident(vec![], Some(5)),
            ],
            &[],
            t(0),
            t(1_000),
        );
        assert_eq!(f.first_update.count, 2);
        assert_eq!(f.first_update.median_ms, Some(10 * 60_000));
        assert_eq!(f.first_update.mean_ms(), Some(20 * 60_000));
        // Each: one on time, then the next due time (40, 60) passes before the end at 60.
        assert_eq!(f.compliance.due(), 4);
    }
}
