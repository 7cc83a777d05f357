//! Per-vendor report figures (pure): what the database reads for a period (`Db::vendor_figures`)
//! turned into one row per vendor, with the previous period's for the change.
//!
//! For a period `[from, to)` and the incidents it covers (not canceled; one service line when
//! the report is for one):
//! - **tickets**: vendor tickets opened in the period;
//! - **first response**: median and p90 (nearest rank) of `first reply − opened` over those
//!   tickets that have had a reply;
//! - **SLA breaches**: SLA deadlines missed in the period (each chase counts the deadlines it
//!   found missed);
//! - **escalations**: escalations recorded in the period;
//! - **open > 7 days**: tickets still open at the period's end (or now, if earlier) that were
//!   opened more than 7 days before it;
//! - **incidents**: incidents with a ticket opened in the period.

use crate::report::metrics::DurationStats;
use crate::report::{render, Headline, Report, Value};
use serde::Serialize;

/// What the database reads for one vendor in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorRaw {
    pub vendor: String,
    pub tickets: i64,
    /// `first reply − opened` of each answered ticket opened in the period, in ms.
    pub first_response_ms: Vec<i64>,
    pub breaches: i64,
    pub escalations: i64,
    pub open_over_7_days: i64,
    pub incidents: i64,
}

/// One vendor's figures for one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VendorFigures {
    pub tickets: i64,
    pub first_response_median_ms: Option<i64>,
    pub first_response_p90_ms: Option<i64>,
    pub answered: i64,
    pub breaches: i64,
    pub escalations: i64,
    pub open_over_7_days: i64,
    pub incidents: i64,
}

impl From<&VendorRaw> for VendorFigures {
    fn from(r: &VendorRaw) -> VendorFigures {
        let stats = DurationStats::of(&r.first_response_ms);
        VendorFigures {
            tickets: r.tickets,
            first_response_median_ms: stats.median_ms,
            first_response_p90_ms: stats.p90_ms,
            answered: stats.count,
            breaches: r.breaches,
            escalations: r.escalations,
            open_over_7_days: r.open_over_7_days,
            incidents: r.incidents,
        }
    }
}

/// A vendor's row: this period and the previous one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VendorRow {
    pub vendor: String,
    pub current: VendorFigures,
    pub previous: VendorFigures,
}

/// One row per configured vendor (in catalogue order), then any other vendor name seen
/// (`other`, or one since removed from the catalogue) that has figures in either period.
pub fn rows(catalogue: &[String], current: &[VendorRaw], previous: &[VendorRaw]) -> Vec<VendorRow> {
    let mut names: Vec<String> = catalogue.to_vec();
    for r in current.iter().chain(previous) {
        if !names.iter().any(|n| n == &r.vendor) {
            names.push(r.vendor.clone());
        }
    }
    let find = |list: &[VendorRaw], name: &str| {
        list.iter()
            .find(|r| r.vendor == name)
            .map(VendorFigures::from)
            .unwrap_or_default()
    };
    names
        .into_iter()
        .map(|vendor| VendorRow {
            current: find(current, &vendor),
            previous: find(previous, &vendor),
            vendor,
        })
        .collect()
}

impl VendorRow {
    /// The row's figures with their previous values, in report order (every rendering uses
    /// this list, so they agree).
    pub fn headlines(&self) -> Vec<Headline> {
        let (c, p) = (&self.current, &self.previous);
        let count = |key: &str, label: &str, now: i64, before: i64| Headline {
            key: key.into(),
            label: label.into(),
            value: Value::Count(now),
            previous: Value::Count(before),
        };
        let time = |key: &str, label: &str, now: Option<i64>, before: Option<i64>| Headline {
            key: key.into(),
            label: label.into(),
            value: Value::Duration(now),
            previous: Value::Duration(before),
        };
        vec![
            count("tickets", "Tickets", c.tickets, p.tickets),
            time(
                "first_response_median",
                "First response, median",
                c.first_response_median_ms,
                p.first_response_median_ms,
            ),
            time(
                "first_response_p90",
                "First response, p90",
                c.first_response_p90_ms,
                p.first_response_p90_ms,
            ),
            count("sla_breaches", "SLA breaches", c.breaches, p.breaches),
            count("escalations", "Escalations", c.escalations, p.escalations),
            count(
                "open_over_7_days",
                "Open > 7 days",
                c.open_over_7_days,
                p.open_over_7_days,
            ),
            count("incidents", "Incidents", c.incidents, p.incidents),
        ]
    }
}

/// The report's "Vendors" Markdown section (empty when no vendor is configured or seen).
pub fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    if r.vendors.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Vendors\n\n| vendor |");
    let heads = r.vendors[0].headlines();
    for h in &heads {
        let _ = write!(out, " {} | change |", h.label.to_lowercase());
    }
    out.push_str("\n|---|");
    for _ in &heads {
        out.push_str("---:|---|");
    }
    out.push('\n');
    for row in &r.vendors {
        let _ = write!(out, "| {} |", row.vendor.replace('|', "\\|"));
        for h in row.headlines() {
            let _ = write!(out, " {} | {} |", render::value(h.value), render::change(&h));
        }
        out.push('\n');
    }
    out.push_str(
        "\nVendor tickets opened in the period; first response = first reply recorded − opened; SLA breaches = \
         vendor SLA deadlines missed in the period; open > 7 days at the period's end.\n",
    );
    out
}

/// The report's `vendor` CSV rows: `vendor,<name>,<metric>,value,previous,change`; durations
/// in minutes.
pub fn csv(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for row in &r.vendors {
        for h in row.headlines() {
            let metric = match h.value {
                Value::Duration(_) => format!("{}_minutes", h.key),
                _ => h.key.clone(),
            };
            let _ = writeln!(
                out,
                "vendor,{},{metric},{},{},{}",
                render::field(&row.vendor),
                render::number(h.value),
                render::number(h.previous),
                render::number_delta(&h)
            );
        }
    }
    out
}

/// The report's `vendors` JSON: exact values (durations in ms, null for n/a).
pub fn json(r: &Report) -> serde_json::Value {
    let v = |v: Value| match v {
        Value::Count(n) => serde_json::json!(n),
        Value::Duration(d) => serde_json::json!(d),
        Value::Ratio(r) => serde_json::json!(r),
    };
    r.vendors
        .iter()
        .map(|row| {
            let mut item = serde_json::Map::new();
            item.insert("vendor".into(), serde_json::json!(row.vendor));
            for h in row.headlines() {
                let key = match h.value {
                    Value::Duration(_) => format!("{}_ms", h.key),
                    _ => h.key.clone(),
                };
                let change = match h.value {
                    Value::Count(_) => serde_json::json!(h.delta().map(|d| d as i64)),
                    _ => serde_json::json!(h.delta()),
                };
                item.insert(
                    key,
                    serde_json::json!({ "value": v(h.value), "previous": v(h.previous), "change": change }),
                );
            }
            serde_json::Value::Object(item)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_catalogue_then_add_what_was_seen() {
        let now = vec![VendorRaw {
            vendor: "other".into(),
            tickets: 2,
            // 10, 20 and 30 minutes: median (nearest rank, 2nd of 3) 20, p90 (3rd) 30.
            first_response_ms: vec![1_800_000, 600_000, 1_200_000],
            ..VendorRaw::default()
        }];
        let before = vec![VendorRaw {
            vendor: "Adyen".into(),
            tickets: 1,
            ..VendorRaw::default()
        }];
        let r = rows(&["Adyen".into(), "AWS".into()], &now, &before);
        let names: Vec<&str> = r.iter().map(|r| r.vendor.as_str()).collect();
        assert_eq!(names, ["Adyen", "AWS", "other"]);
        assert_eq!((r[0].current.tickets, r[0].previous.tickets), (0, 1));
        assert_eq!(r[2].current.first_response_median_ms, Some(1_200_000));
        assert_eq!(r[2].current.first_response_p90_ms, Some(1_800_000));
        assert_eq!(r[2].current.answered, 3);
    }
}
