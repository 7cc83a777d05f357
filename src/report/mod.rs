//! Weekly and monthly reports: which incidents a period holds, the figures the README's
//! "Reports" section defines, their change against the previous period, and the renderings
//! (Markdown, CSV, JSON here; Block Kit in `slack::report`; a PNG chart in [`chart`]).
//!
//! - [`period`]: periods in the configured time zone (pure).
//! - [`metrics`]: percentiles, means, compliance, grades (pure).
//! - `Db::report_figures` (in `db/reports.rs`) aggregates in SQL into [`RawFigures`];
//!   [`Figures::from_raw`] turns those into the report's figures (pure).
//! - [`render`]: Markdown, CSV and JSON; [`chart`]: incidents per day and time to mitigate.
//!
//! Reports name no incident at all (only counts and sums), so a private incident is counted
//! and never named.

pub mod alerts;
pub mod changes;
pub mod chart;
pub mod metrics;
pub mod period;
pub mod render;
pub mod schedule;

use crate::config::Policy;
use crate::db::{Db, ReportScope};
use chrono::{DateTime, NaiveDate, Utc};
use metrics::{grade, Compliance, DurationStats, Grade};
pub use period::{Period, PeriodSpec};
use serde::Serialize;
use std::collections::BTreeMap;

/// Severities in report order.
pub const SEVERITIES: [&str; 4] = ["SEV1", "SEV2", "SEV3", "SEV4"];
/// Statuses of incidents that count (canceled ones are counted apart), in lifecycle order.
pub const STATUSES: [&str; 5] = ["investigating", "identified", "mitigated", "resolved", "closed"];
/// The statuses of a still open incident.
pub const OPEN_STATUSES: [&str; 3] = ["investigating", "identified", "mitigated"];
/// The row for incidents without a service line.
pub const NO_SERVICE: &str = "(none)";

/// What the database aggregates for one period (see `Db::report_figures`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFigures {
    /// Declared in the period and not canceled.
    pub incidents: i64,
    pub canceled: i64,
    /// Of `incidents`, those whose status is open now.
    pub open: i64,
    /// Of `incidents`, per [`SEVERITIES`] and per [`STATUSES`].
    pub by_severity: Vec<(String, i64)>,
    pub by_status: Vec<(String, i64)>,
    pub tta: DurationStats,
    pub ttm: DurationStats,
    pub ttr: DurationStats,
    pub customers: i64,
    pub merchants: i64,
    pub transactions: i64,
    /// One entry per distinct list of service lines (canceled incidents excluded).
    pub groups: Vec<ServiceGroup>,
    /// The follow-up actions of `incidents`, by their state now.
    pub follow_ups: FollowUps,
    /// Detection (issue 15): alerts and time to declare.
    pub alerts: alerts::AlertRows,
}

/// Follow-up actions of a period's incidents (canceled ones excluded), by their state when the
/// report is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FollowUps {
    /// All of them, in any state.
    pub total: i64,
    /// State `open`.
    pub open: i64,
    /// Open, with a due time (`due_at`) at or before the report's `now`.
    pub overdue: i64,
    /// State `done`.
    pub done: i64,
    /// State `wont_do`.
    pub wont_do: i64,
}

/// A follow-up action of a `db::FixtureIncident`, written as given: for tests and benches.
/// Times are epoch milliseconds. (Defined here, next to [`FollowUps`], because `db`'s
/// fixture re-exports are fixed; `Db::insert_fixtures` numbers them #1, #2, … per incident.)
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureFollowUp {
    pub text: String,
    pub owner: Option<String>,
    /// `YYYY-MM-DD`, as stored; reports read only `due_at`.
    pub due_date: Option<String>,
    /// When it becomes overdue.
    pub due_at: Option<i64>,
    /// `open`, `done` or `wont_do`.
    pub state: String,
    /// `None`: the incident's declaration time.
    pub created_at: Option<i64>,
    pub closed_at: Option<i64>,
}

impl Default for FixtureFollowUp {
    fn default() -> Self {
        FixtureFollowUp {
            text: "fixture follow-up".into(),
            owner: None,
            due_date: None,
            due_at: None,
            state: "open".into(),
            created_at: None,
            closed_at: None,
        }
    }
}

/// Incidents sharing one list of service lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceGroup {
    pub services: Vec<String>,
    pub incidents: i64,
    pub impact_ms: i64,
    pub compliance: Compliance,
    pub breaches: i64,
}

/// One local day of the chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Daily {
    /// Incidents declared that day, by severity (SEV1..SEV4); canceled ones excluded.
    pub incidents: [i64; 4],
    /// Sum and count of time to mitigate of that day's mitigated incidents.
    pub ttm_sum_ms: i64,
    pub ttm_count: i64,
}

impl Daily {
    pub fn mean_ttm_ms(&self) -> Option<i64> {
        (self.ttm_count > 0).then(|| (self.ttm_sum_ms as f64 / self.ttm_count as f64).round() as i64)
    }
}

/// One service line's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceFigures {
    pub service: String,
    pub incidents: i64,
    pub impact_ms: i64,
    pub compliance: Compliance,
    pub breaches: i64,
    /// `None` for the [`NO_SERVICE`] row.
    pub grade: Option<Grade>,
}

/// The figures of one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Declared in the period and not canceled.
    pub incidents: i64,
    pub canceled: i64,
    /// Of `incidents`, those whose status is open now.
    pub open: i64,
    /// Every severity, in order.
    pub by_severity: Vec<(String, i64)>,
    /// Every status but canceled, in lifecycle order.
    pub by_status: Vec<(String, i64)>,
    pub tta: DurationStats,
    pub ttm: DurationStats,
    pub ttr: DurationStats,
    pub compliance: Compliance,
    pub breaches: i64,
    pub customers: i64,
    pub merchants: i64,
    pub transactions: i64,
    /// Impact of all incidents, each counted once.
    pub impact_ms: i64,
    /// The configured service lines (or the one asked for), then any other line seen, then
    /// [`NO_SERVICE`] when some incident has none.
    pub services: Vec<ServiceFigures>,
    /// The follow-up actions of `incidents`, by their state now.
    pub follow_ups: FollowUps,
    /// Detection (issue 15): time to declare, alerts, alerts that became incidents, noisy ones.
    pub alerts: alerts::AlertFigures,
}

impl Figures {
    /// Builds the figures from the database's aggregates. `catalogue` is the configured list of
    /// service lines (each gets a row); `only` restricts the service rows to one line.
    pub fn from_raw(raw: &RawFigures, catalogue: &[String], only: Option<&str>, days: i64) -> Figures {
        let mut compliance = Compliance::default();
        let mut breaches = 0;
        let mut impact_ms = 0;
        let mut per_service: BTreeMap<String, ServiceFigures> = BTreeMap::new();
        let row = |name: &str| ServiceFigures {
            service: name.to_string(),
            incidents: 0,
            impact_ms: 0,
            compliance: Compliance::default(),
            breaches: 0,
            grade: None,
        };
        for g in &raw.groups {
            compliance.add(g.compliance);
            breaches += g.breaches;
            impact_ms += g.impact_ms;
            let mut names: Vec<&str> = g.services.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                names.push(NO_SERVICE);
            }
            for name in names {
                let s = per_service.entry(name.to_string()).or_insert_with(|| row(name));
                s.incidents += g.incidents;
                s.impact_ms += g.impact_ms;
                s.compliance.add(g.compliance);
                s.breaches += g.breaches;
            }
        }
        let mut order: Vec<String> = match only {
            Some(one) => vec![one.to_string()],
            None => catalogue.to_vec(),
        };
        if only.is_none() {
            for name in per_service.keys() {
                if !order.contains(name) && name != NO_SERVICE {
                    order.push(name.clone());
                }
            }
            if per_service.contains_key(NO_SERVICE) {
                order.push(NO_SERVICE.to_string());
            }
        }
        let services = order
            .iter()
            .map(|name| {
                let mut s = per_service.remove(name).unwrap_or_else(|| row(name));
                if name != NO_SERVICE {
                    s.grade = Some(grade(
                        s.incidents,
                        metrics::minutes(s.impact_ms),
                        s.compliance.ratio(),
                        days,
                    ));
                }
                s
            })
            .collect();

        Figures {
            incidents: raw.incidents,
            canceled: raw.canceled,
            open: raw.open,
            by_severity: raw.by_severity.clone(),
            by_status: raw.by_status.clone(),
            tta: raw.tta,
            ttm: raw.ttm,
            ttr: raw.ttr,
            compliance,
            breaches,
            customers: raw.customers,
            merchants: raw.merchants,
            transactions: raw.transactions,
            impact_ms,
            services,
            follow_ups: raw.follow_ups,
            alerts: alerts::AlertFigures::from_rows(&raw.alerts, catalogue, only),
        }
    }
}

/// A report: one period's figures and the previous period's, for the changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub period: Period,
    pub previous_period: Period,
    /// The one service line reported on, if any.
    pub service: Option<String>,
    pub generated_at: DateTime<Utc>,
    pub current: Figures,
    pub previous: Figures,
    /// Per vendor (see [`crate::vendor::report`]): this period and the previous one.
    pub vendors: Vec<crate::vendor::report::VendorRow>,
    /// The change calendar's figures (issue 12), this period and the previous one.
    pub changes: crate::db::ChangeFigures,
    pub previous_changes: crate::db::ChangeFigures,
    /// Customer communications (issue 14), when a status page is configured: this period and
    /// the previous one, and the page's components `(id, name)` in page order.
    pub comms: Option<CommsReport>,
}

/// The customer-comms part of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct CommsReport {
    pub current: crate::comms::metrics::CommsFigures,
    pub previous: crate::comms::metrics::CommsFigures,
    pub components: Vec<(String, String)>,
}

impl CommsReport {
    async fn build(
        db: &Db,
        page: &crate::comms::StatusPage,
        period: &Period,
        previous: &Period,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let figures = |p: &Period, rows: (Vec<_>, Vec<_>)| {
            crate::comms::metrics::figures(page, &rows.0, &rows.1, p.from, p.to.min(now))
        };
        let (now_rows, before_rows) = tokio::try_join!(
            db.comms_rows(period.from, period.to),
            db.comms_rows(previous.from, previous.to)
        )?;
        Ok(CommsReport {
            current: figures(period, now_rows),
            previous: figures(previous, before_rows),
            components: page.components.iter().map(|c| (c.id.clone(), c.name.clone())).collect(),
        })
    }

    fn headlines(&self) -> Vec<Headline> {
        let (c, p) = (&self.current, &self.previous);
        let mut out = Vec::new();
        out.extend(Headline::durations(
            "time_to_first_customer_update",
            "Time to first customer update",
            c.first_update,
            p.first_update,
        ));
        out.push(Headline {
            key: "customer_update_compliance".into(),
            label: "Customer-update compliance".into(),
            value: Value::Ratio(c.compliance.ratio()),
            previous: Value::Ratio(p.compliance.ratio()),
        });
        out.push(Headline::count(
            "customer_updates_due",
            "Customer updates that fell due",
            c.compliance.due(),
            p.compliance.due(),
        ));
        for (id, name) in &self.components {
            let (now, before) = (
                c.component_minutes.get(id).copied().unwrap_or_default(),
                p.component_minutes.get(id).copied().unwrap_or_default(),
            );
            // Every status but operational, mildest first.
            for status in &crate::comms::ComponentStatus::ALL[1..] {
                out.push(Headline::count(
                    &format!("component_{id}_{}_minutes", status.as_str()),
                    &format!("{name}: {} minutes", status.label()),
                    now.of(*status),
                    before.of(*status),
                ));
            }
        }
        out
    }
}

fn scope(period: &Period, service: Option<&str>, now: DateTime<Utc>) -> ReportScope {
    ReportScope {
        from_ms: period.from.timestamp_millis(),
        to_ms: period.to.timestamp_millis(),
        cap_ms: period.to.min(now).timestamp_millis(),
        now_ms: now.timestamp_millis(),
        service: service.map(String::from),
    }
}

impl Report {
    /// Computes the report for `spec` (resolved in the policy's time zone as of `now`).
    pub async fn build(
        db: &Db,
        policy: &Policy,
        spec: PeriodSpec,
        service: Option<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Report> {
        let period = Period::resolve(spec, policy.timezone, now);
        let previous_period = period.previous();
        let (now_scope, before_scope) = (scope(&period, service, now), scope(&previous_period, service, now));
        let (current, previous, vendors_now, vendors_before) = tokio::try_join!(
            db.report_figures(&now_scope),
            db.report_figures(&before_scope),
            db.vendor_figures(&now_scope),
            db.vendor_figures(&before_scope)
        )?;
        let catalogue: Vec<String> = policy.vendors.vendors.iter().map(|v| v.name.clone()).collect();
        let (changes_now, changes_before) = tokio::try_join!(
            db.change_figures(period.from, period.to, service),
            db.change_figures(previous_period.from, previous_period.to, service)
        )?;
        let comms = match &policy.status_page {
            Some(page) => Some(CommsReport::build(db, page, &period, &previous_period, now).await?),
            None => None,
        };
        let mut current = Figures::from_raw(&current, &policy.services, service, period.days());
        let mut previous = Figures::from_raw(&previous, &policy.services, service, previous_period.days());
        changes::apply_grades(&mut current, &changes_now);
        changes::apply_grades(&mut previous, &changes_before);
        Ok(Report {
            period,
            previous_period,
            service: service.map(String::from),
            generated_at: now,
            current,
            previous,
            vendors: crate::vendor::report::rows(&catalogue, &vendors_now, &vendors_before),
            changes: changes_now,
            previous_changes: changes_before,
            comms,
        })
    }

    /// Incidents of `service` in the previous period (0 when it had none).
    pub fn previous_incidents(&self, service: &str) -> i64 {
        self.previous
            .services
            .iter()
            .find(|p| p.service == service)
            .map_or(0, |p| p.incidents)
    }

    /// The chart's data: each local day of the period with its figures.
    pub async fn daily(&self, db: &Db) -> anyhow::Result<Vec<(NaiveDate, Daily)>> {
        let bounds: Vec<i64> = self
            .period
            .day_bounds()
            .iter()
            .map(DateTime::timestamp_millis)
            .collect();
        let bins = db
            .report_daily(
                &scope(&self.period, self.service.as_deref(), self.generated_at),
                &bounds,
            )
            .await?;
        Ok(self.period.dates().into_iter().zip(bins).collect())
    }

    /// The headline figures with their previous values, in report order (every rendering uses
    /// this list, so they agree).
    pub fn headlines(&self) -> Vec<Headline> {
        let (c, p) = (&self.current, &self.previous);
        let mut out = vec![
            Headline::count("incidents", "Incidents", c.incidents, p.incidents),
            Headline::count("still_open", "Still open", c.open, p.open),
            Headline::count("canceled", "Canceled (excluded)", c.canceled, p.canceled),
        ];
        for (key, label, now, before) in [
            ("time_to_acknowledge", "Time to acknowledge", c.tta, p.tta),
            ("time_to_mitigate", "Time to mitigate", c.ttm, p.ttm),
            ("time_to_resolve", "Time to resolve", c.ttr, p.ttr),
        ] {
            out.extend(Headline::durations(key, label, now, before));
        }
        out.push(Headline {
            key: "update_sla_compliance".into(),
            label: "Update-SLA compliance".into(),
            value: Value::Ratio(c.compliance.ratio()),
            previous: Value::Ratio(p.compliance.ratio()),
        });
        out.extend([
            Headline::count(
                "updates_due",
                "Updates that fell due",
                c.compliance.due(),
                p.compliance.due(),
            ),
            Headline::count("breaches", "Breaches", c.breaches, p.breaches),
            Headline::count("customers", "Customers affected", c.customers, p.customers),
            Headline::count("merchants", "Merchants affected", c.merchants, p.merchants),
            Headline::count("transactions", "Transactions affected", c.transactions, p.transactions),
            Headline::count(
                "impact_minutes",
                "Impact minutes",
                metrics::minutes(c.impact_ms),
                metrics::minutes(p.impact_ms),
            ),
        ]);
        let (cf, pf) = (c.follow_ups, p.follow_ups);
        out.extend([
            Headline::count("follow_ups", "Follow-ups", cf.total, pf.total),
            Headline::count("follow_ups_open", "Open follow-ups", cf.open, pf.open),
            Headline::count("follow_ups_overdue", "Overdue follow-ups", cf.overdue, pf.overdue),
            Headline::count("follow_ups_done", "Done follow-ups", cf.done, pf.done),
            Headline::count("follow_ups_wont_do", "Won't-do follow-ups", cf.wont_do, pf.wont_do),
        ]);
        let (ca, pa) = (&c.alerts, &p.alerts);
        out.extend(Headline::durations(
            "time_to_declare",
            "Time to declare",
            ca.time_to_declare,
            pa.time_to_declare,
        ));
        out.extend([
            Headline::count("alerts", "Alerts", ca.alerts, pa.alerts),
            Headline::count(
                "alerts_to_incidents",
                "Alerts that became incidents",
                ca.became_incidents,
                pa.became_incidents,
            ),
            Headline::count("noisy_alerts", "Noisy alerts (no incident)", ca.noisy, pa.noisy),
        ]);
        out.extend(changes::headlines(&self.changes, &self.previous_changes));
        if let Some(comms) = &self.comms {
            out.extend(comms.headlines());
        }
        out
    }
}

/// A figure's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Count(i64),
    /// Milliseconds; `None` when no incident has the end time.
    Duration(Option<i64>),
    /// 0..=1; `None` for n/a.
    Ratio(Option<f64>),
}

/// A headline figure and its value in the previous period.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// snake_case, for CSV and JSON.
    pub key: String,
    pub label: String,
    pub value: Value,
    pub previous: Value,
}

impl Headline {
    /// A duration figure's median, p90 and mean (`<key>_median`, …).
    fn durations(key: &str, label: &str, now: DurationStats, before: DurationStats) -> [Headline; 3] {
        let part = |name: &str, f: fn(DurationStats) -> Option<i64>| Headline {
            key: format!("{key}_{name}"),
            label: format!("{label}, {name}"),
            value: Value::Duration(f(now)),
            previous: Value::Duration(f(before)),
        };
        [
            part("median", |s| s.median_ms),
            part("p90", |s| s.p90_ms),
            part("mean", |s| s.mean_ms()),
        ]
    }

    fn count(key: &str, label: &str, now: i64, before: i64) -> Headline {
        Headline {
            key: key.into(),
            label: label.into(),
            value: Value::Count(now),
            previous: Value::Count(before),
        }
    }

    /// Current minus previous (durations in ms, ratios in 0..=1), when both exist.
    pub fn delta(&self) -> Option<f64> {
        match (self.value, self.previous) {
            (Value::Count(a), Value::Count(b)) => Some((a - b) as f64),
            (Value::Duration(Some(a)), Value::Duration(Some(b))) => Some((a - b) as f64),
            (Value::Ratio(Some(a)), Value::Ratio(Some(b))) => Some(a - b),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(services: &[&str], incidents: i64, impact_min: i64, on_time: i64, missed: i64) -> ServiceGroup {
        ServiceGroup {
            services: services.iter().map(|s| s.to_string()).collect(),
            incidents,
            impact_ms: impact_min * 60_000,
            compliance: Compliance { on_time, missed },
            breaches: missed / 2,
        }
    }

    #[test]
    fn figures_attribute_each_incident_to_each_of_its_lines_and_count_totals_once() {
        let raw = RawFigures {
            incidents: 4,
            canceled: 1,
            open: 2,
            groups: vec![
                group(&["payments", "checkout"], 2, 90, 3, 1),
                group(&["payments"], 1, 30, 1, 0),
                group(&[], 1, 10, 0, 0),
                group(&["legacy"], 0, 0, 0, 2),
            ],
            ..RawFigures::default()
        };
        let catalogue = vec!["payments".to_string(), "checkout".to_string(), "app".to_string()];
        let f = Figures::from_raw(&raw, &catalogue, None, 7);
        assert_eq!((f.incidents, f.canceled, f.open), (4, 1, 2));
        // Totals count each incident once: 90 + 30 + 10 + 0 minutes; 3 + 1 on time, 1 + 2 missed.
        assert_eq!(f.impact_ms, 130 * 60_000);
        assert_eq!(f.compliance, Compliance { on_time: 4, missed: 3 });
        let names: Vec<&str> = f.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["payments", "checkout", "app", "legacy", NO_SERVICE]);
        let payments = &f.services[0];
        assert_eq!((payments.incidents, payments.impact_ms), (3, 120 * 60_000));
        assert_eq!(payments.compliance, Compliance { on_time: 4, missed: 1 });
        // 3 incidents → B; 120 min → B; 80 % → C: the worst is C.
        assert_eq!(payments.grade, Some(Grade::C));
        assert_eq!(f.services[2].grade, Some(Grade::A), "no incidents");
        assert_eq!(f.services[4].grade, None);
        let only = Figures::from_raw(&raw, &catalogue, Some("checkout"), 7);
        assert_eq!(only.services.len(), 1);
        assert_eq!(only.services[0].incidents, 2);
    }
}
