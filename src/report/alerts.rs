//! Detection figures of a report (issue 15), pure: time to declare (the first alert's start →
//! declared, over the period's incidents declared from an alert; median, p90, mean), alerts
//! (episodes that fired in the period), alerts that became incidents, and noisy alerts (groups
//! that fired at least [`crate::alerts::NOISY_FIRES`] times in the period without an
//! incident), in all and per service line.

use super::metrics::DurationStats;
use super::NO_SERVICE;
use serde::Serialize;
use std::collections::BTreeMap;

/// One service line's detection figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertServiceFigures {
    pub service: String,
    pub alerts: i64,
    pub became_incidents: i64,
    pub noisy: i64,
    pub time_to_declare: DurationStats,
}

/// A period's detection figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertFigures {
    pub alerts: i64,
    pub became_incidents: i64,
    pub noisy: i64,
    pub time_to_declare: DurationStats,
    /// Service lines with any alert or alert-declared incident, catalogue order first.
    pub services: Vec<AlertServiceFigures>,
}

/// What the database returns for one period (see `Db::report_alert_rows`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRows {
    /// (alert group's service line, alerts that fired, of which became incidents).
    pub fired: Vec<(Option<String>, i64, i64)>,
    /// (service line, noisy groups).
    pub noisy: Vec<(Option<String>, i64)>,
    /// (incident's service lines, declared − detected in ms), incidents declared from alerts.
    pub declared: Vec<(Vec<String>, i64)>,
}

impl AlertFigures {
    /// Aggregates `rows`; `catalogue` orders the service rows, `only` keeps one line.
    pub fn from_rows(rows: &AlertRows, catalogue: &[String], only: Option<&str>) -> AlertFigures {
        let name = |s: &Option<String>| s.clone().unwrap_or_else(|| NO_SERVICE.to_string());
        let keep = |s: &str| only.is_none_or(|o| o == s);
        let mut per: BTreeMap<String, AlertServiceFigures> = BTreeMap::new();
        fn row(per: &mut BTreeMap<String, AlertServiceFigures>, s: String) -> &mut AlertServiceFigures {
            per.entry(s.clone()).or_insert_with(|| AlertServiceFigures {
                service: s,
                ..AlertServiceFigures::default()
            })
        }
        let mut out = AlertFigures::default();
        for (service, fired, became) in &rows.fired {
            let s = name(service);
            if !keep(&s) {
                continue;
            }
            out.alerts += fired;
            out.became_incidents += became;
            let r = row(&mut per, s);
            r.alerts += fired;
            r.became_incidents += became;
        }
        for (service, noisy) in &rows.noisy {
            let s = name(service);
            if !keep(&s) {
                continue;
            }
            out.noisy += noisy;
            row(&mut per, s).noisy += noisy;
        }
        let mut all = Vec::new();
        let mut by_service: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (services, ms) in &rows.declared {
            if only.is_some_and(|o| !services.iter().any(|s| s == o)) {
                continue;
            }
            let ms = (*ms).max(0);
            all.push(ms);
            let mut names: Vec<String> = services.clone();
            if names.is_empty() {
                names.push(NO_SERVICE.to_string());
            }
            names.sort();
            names.dedup();
            for s in names.into_iter().filter(|s| keep(s)) {
                by_service.entry(s).or_default().push(ms);
            }
        }
        out.time_to_declare = DurationStats::of(&all);
        for (s, values) in by_service {
            row(&mut per, s).time_to_declare = DurationStats::of(&values);
        }
        let mut order: Vec<String> = catalogue.iter().filter(|s| per.contains_key(*s)).cloned().collect();
        for s in per.keys() {
            if !order.contains(s) && s != NO_SERVICE {
                order.push(s.clone());
            }
        }
        if per.contains_key(NO_SERVICE) {
            order.push(NO_SERVICE.to_string());
        }
        out.services = order.into_iter().filter_map(|s| per.remove(&s)).collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_add_up_in_all_and_per_service_line() {
        let rows = AlertRows {
            fired: vec![
                (Some("payments".into()), 5, 2),
                (None, 3, 0),
                (Some("checkout".into()), 1, 1),
            ],
            noisy: vec![(Some("payments".into()), 1), (None, 2)],
            declared: vec![
                (vec!["payments".into()], 4 * 60_000),
                (vec!["payments".into(), "checkout".into()], 10 * 60_000),
                (vec![], 2 * 60_000),
            ],
        };
        let catalogue = vec!["checkout".to_string(), "payments".to_string()];
        let f = AlertFigures::from_rows(&rows, &catalogue, None);
        assert_eq!((f.alerts, f.became_incidents, f.noisy), (9, 3, 3));
        assert_eq!(f.time_to_declare.count, 3);
        assert_eq!(f.time_to_declare.median_ms, Some(4 * 60_000));
        let names: Vec<&str> = f.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["checkout", "payments", NO_SERVICE]);
        let payments = &f.services[1];
        assert_eq!((payments.alerts, payments.became_incidents, payments.noisy), (5, 2, 1));
        assert_eq!(payments.time_to_declare.count, 2);
        assert_eq!(payments.time_to_declare.mean_ms(), Some(7 * 60_000));
        let only = AlertFigures::from_rows(&rows, &catalogue, Some("payments"));
        assert_eq!((only.alerts, only.noisy, only.time_to_declare.count), (5, 1, 2));
        assert_eq!(only.services.len(), 1);
    }
}
