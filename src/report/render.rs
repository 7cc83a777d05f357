//! Reports as Markdown (service reviews), CSV (spreadsheets) and JSON (tools). Block Kit lives
//! in `slack::report`, which uses the formatting helpers here.

use super::metrics::{arrow, minutes, Compliance, MINUTE_MS};
use super::{Headline, Report, Value};
use serde_json::json;
use std::fmt::Write;

/// Output formats of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "markdown" | "md" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("\"{s}\" is not a format (use markdown, csv or json)")),
        }
    }
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Markdown => markdown(report),
        Format::Csv => csv(report),
        Format::Json => serde_json::to_string_pretty(&json_value(report)).unwrap_or_default() + "\n",
    }
}

/// `0m`, `12m`, `2h 05m`, `3d 04h 10m`: one rule for people, rounded to the nearest minute
/// (halves up), like impact minutes; the exact value is in the JSON.
pub fn duration(ms: i64) -> String {
    let m = minutes(ms.abs());
    let sign = if ms < 0 && m > 0 { "-" } else { "" };
    let (d, h, m) = (m / 1440, (m % 1440) / 60, m % 60);
    if d > 0 {
        format!("{sign}{d}d {h:02}h {m:02}m")
    } else if h > 0 {
        format!("{sign}{h}h {m:02}m")
    } else {
        format!("{sign}{m}m")
    }
}

/// `87.5%`, or `n/a`.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "n/a".into(),
    }
}

/// `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A value for people.
pub fn value(v: Value) -> String {
    match v {
        Value::Count(n) => count(n),
        Value::Duration(Some(ms)) => duration(ms),
        Value::Duration(None) | Value::Ratio(None) => "n/a".into(),
        Value::Ratio(r) => percent(r),
    }
}

/// `▲2`, `▼5m`, `▲1.5 pts`, `=`; empty when either side is n/a.
pub fn change(h: &Headline) -> String {
    let Some(d) = h.delta() else {
        return String::new();
    };
    if d == 0.0 {
        return "=".into();
    }
    let size = match h.value {
        Value::Count(_) => count(d.abs() as i64),
        Value::Duration(_) => duration(d.abs() as i64),
        Value::Ratio(_) => format!("{:.1} pts", d.abs() * 100.0),
    };
    format!("{}{size}", arrow(d))
}

/// `▲2` for counts.
pub fn count_change(now: i64, before: i64) -> String {
    change(&Headline {
        key: String::new(),
        label: String::new(),
        value: Value::Count(now),
        previous: Value::Count(before),
    })
}

/// The report's title line.
pub fn title(r: &Report) -> String {
    let scope = match &r.service {
        Some(s) => format!(" · {s}"),
        None => String::new(),
    };
    format!("Incident report{scope}: {}", r.period)
}

fn compliance_text(c: Compliance) -> String {
    match c.ratio() {
        Some(_) => format!("{} ({}/{})", percent(c.ratio()), c.on_time, c.due()),
        None => "n/a".into(),
    }
}

fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", title(r));
    let _ = writeln!(
        out,
        "{} report · compared with {} · generated {}\n",
        capitalize(r.period.kind()),
        r.previous_period,
        local_time(r.generated_at, r.period.tz)
    );
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| figure | value | previous | change |\n|---|---:|---:|---|");
    for h in r.headlines() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            h.label,
            value(h.value),
            value(h.previous),
            change(&h)
        );
    }
    for (name, now, before) in [
        ("By severity", &r.current.by_severity, &r.previous.by_severity),
        ("By status", &r.current.by_status, &r.previous.by_status),
    ] {
        let _ = writeln!(out, "\n## {name}\n");
        let _ = writeln!(out, "| | incidents | previous | change |\n|---|---:|---:|---|");
        for (key, n) in now {
            let b = lookup(before, key);
            let _ = writeln!(out, "| {key} | {n} | {b} | {} |", count_change(*n, b));
        }
    }
    let _ = writeln!(out, "\n## Service lines\n");
    let _ = writeln!(
        out,
        "| service line | incidents | change | impact minutes | update-SLA compliance | breaches | grade |\n|---|---:|---|---:|---:|---:|:-:|"
    );
    for s in &r.current.services {
        let before = r.previous_incidents(&s.service);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.service,
            s.incidents,
            count_change(s.incidents, before),
            count(minutes(s.impact_ms)),
            compliance_text(s.compliance),
            s.breaches,
            s.grade.map_or("—".to_string(), |g| g.to_string())
        );
    }
    out.push_str(&crate::vendor::report::markdown(r));
    if !r.current.alerts.services.is_empty() {
        let _ = writeln!(out, "\n## Detection per service line\n");
        let _ = writeln!(
            out,
            "| service line | alerts | became incidents | noisy alerts | time to declare, median | p90 | mean |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for a in &r.current.alerts.services {
            let t = a.time_to_declare;
            let d = |v: Option<i64>| value(Value::Duration(v));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                a.service,
                a.alerts,
                a.became_incidents,
                a.noisy,
                d(t.median_ms),
                d(t.p90_ms),
                d(t.mean_ms())
            );
        }
    }
    let _ = writeln!(
        out,
        "\nCanceled incidents are excluded from every figure but their own count. Definitions: README, \"Reports\"."
    );
    out
}

/// `2026-11-23 09:05 EST (America/New_York)`: the report's own time zone, named.
pub fn local_time(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    let local = t.with_timezone(&tz);
    let abbreviation = local.format("%Z").to_string();
    if abbreviation == tz.name() {
        local.format("%Y-%m-%d %H:%M %Z").to_string()
    } else {
        format!("{} ({})", local.format("%Y-%m-%d %H:%M %Z"), tz.name())
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lookup(list: &[(String, i64)], key: &str) -> i64 {
    list.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n)
}

/// A CSV field, quoted when needed (RFC 4180).
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A number for spreadsheets: counts as is, durations in minutes (2 decimals), ratios 0..1
/// (4 decimals); empty for n/a.
pub fn number(v: Value) -> String {
    match v {
        Value::Count(n) => n.to_string(),
        Value::Duration(Some(ms)) => format!("{:.2}", ms as f64 / MINUTE_MS as f64),
        Value::Ratio(Some(r)) => format!("{r:.4}"),
        Value::Duration(None) | Value::Ratio(None) => String::new(),
    }
}

pub fn number_delta(h: &Headline) -> String {
    match (h.delta(), h.value) {
        (None, _) => String::new(),
        (Some(d), Value::Count(_)) => format!("{}", d as i64),
        (Some(d), Value::Duration(_)) => format!("{:.2}", d / MINUTE_MS as f64),
        (Some(d), Value::Ratio(_)) => format!("{d:.4}"),
    }
}

/// One table: `section,item,metric,value,previous,change`; durations in minutes.
fn csv(r: &Report) -> String {
    let mut out = String::from("section,item,metric,value,previous,change\n");
    let mut row = |section: &str, item: &str, metric: &str, v: String, p: String, c: String| {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            field(section),
            field(item),
            field(metric),
            v,
            p,
            c
        );
    };
    // The period like every other figure: one metric a row, this period in `value`, the
    // previous one in `previous`, `item` and `change` empty.
    let (p, q) = (&r.period, &r.previous_period);
    for (metric, value, previous) in [
        ("first_day", p.first.to_string(), q.first.to_string()),
        ("last_day", p.last.to_string(), q.last.to_string()),
        ("days", p.days().to_string(), q.days().to_string()),
        ("timezone", p.tz.to_string(), q.tz.to_string()),
    ] {
        row("period", "", metric, field(&value), field(&previous), String::new());
    }
    for h in r.headlines() {
        let metric = match h.value {
            Value::Duration(_) => format!("{}_minutes", h.key),
            _ => h.key.clone(),
        };
        row(
            "summary",
            "",
            &metric,
            number(h.value),
            number(h.previous),
            number_delta(&h),
        );
    }
    for (section, now, before) in [
        ("severity", &r.current.by_severity, &r.previous.by_severity),
        ("status", &r.current.by_status, &r.previous.by_status),
    ] {
        for (key, n) in now {
            let b = lookup(before, key);
            row(
                section,
                key,
                "incidents",
                n.to_string(),
                b.to_string(),
                (n - b).to_string(),
            );
        }
    }
    for s in &r.current.services {
        let p = r.previous.services.iter().find(|p| p.service == s.service);
        let pairs = [
            ("incidents", s.incidents, p.map_or(0, |p| p.incidents)),
            (
                "impact_minutes",
                minutes(s.impact_ms),
                p.map_or(0, |p| minutes(p.impact_ms)),
            ),
            ("breaches", s.breaches, p.map_or(0, |p| p.breaches)),
        ];
        for (metric, a, b) in pairs {
            row(
                "service",
                &s.service,
                metric,
                a.to_string(),
                b.to_string(),
                (a - b).to_string(),
            );
        }
        let (a, b) = (s.compliance.ratio(), p.and_then(|p| p.compliance.ratio()));
        row(
            "service",
            &s.service,
            "update_sla_compliance",
            number(Value::Ratio(a)),
            number(Value::Ratio(b)),
            a.zip(b).map_or(String::new(), |(a, b)| format!("{:.4}", a - b)),
        );
        row(
            "service",
            &s.service,
            "grade",
            s.grade.map_or(String::new(), |g| g.to_string()),
            p.and_then(|p| p.grade).map_or(String::new(), |g| g.to_string()),
            String::new(),
        );
    }
    for a in &r.current.alerts.services {
        let p = r.previous.alerts.services.iter().find(|p| p.service == a.service);
        for (metric, now, before) in [
            ("alerts", a.alerts, p.map_or(0, |p| p.alerts)),
            (
                "alerts_to_incidents",
                a.became_incidents,
                p.map_or(0, |p| p.became_incidents),
            ),
            ("noisy_alerts", a.noisy, p.map_or(0, |p| p.noisy)),
        ] {
            row(
                "detection",
                &a.service,
                metric,
                now.to_string(),
                before.to_string(),
                (now - before).to_string(),
            );
        }
        let (now, before) = (
            Value::Duration(a.time_to_declare.median_ms),
            Value::Duration(p.and_then(|p| p.time_to_declare.median_ms)),
        );
        let delta = match (now, before) {
            (Value::Duration(Some(x)), Value::Duration(Some(y))) => format!("{:.2}", (x - y) as f64 / MINUTE_MS as f64),
            _ => String::new(),
        };
        row(
            "detection",
            &a.service,
            "time_to_declare_median_minutes",
            number(now),
            number(before),
            delta,
        );
    }
    out.push_str(&crate::vendor::report::csv(r));
    out
}

/// The report as JSON: exact values (durations in milliseconds, ratios 0..1, null for n/a).
pub fn json_value(r: &Report) -> serde_json::Value {
    let period = |p: &super::Period| {
        json!({
            "first_day": p.first.to_string(),
            "last_day": p.last.to_string(),
            "timezone": p.tz.to_string(),
            "from": p.from.to_rfc3339(),
            "to": p.to.to_rfc3339(),
            "days": p.days(),
        })
    };
    let v = |v: Value| match v {
        Value::Count(n) => json!(n),
        Value::Duration(d) => json!(d),
        Value::Ratio(r) => json!(r),
    };
    let summary: serde_json::Map<String, serde_json::Value> = r
        .headlines()
        .into_iter()
        .map(|h| {
            let key = match h.value {
                Value::Duration(_) => format!("{}_ms", h.key),
                _ => h.key.clone(),
            };
            // Counts change by whole numbers: `1`, not `1.0`.
            let change = match h.value {
                Value::Count(_) => json!(h.delta().map(|d| d as i64)),
                _ => json!(h.delta()),
            };
            (
                key,
                json!({ "value": v(h.value), "previous": v(h.previous), "change": change }),
            )
        })
        .collect();
    let pairs = |now: &[(String, i64)], before: &[(String, i64)]| -> serde_json::Value {
        now.iter()
            .map(|(k, n)| (k.clone(), json!({ "value": n, "previous": lookup(before, k) })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let services: Vec<serde_json::Value> = r
        .current
        .services
        .iter()
        .map(|s| {
            let p = r.previous.services.iter().find(|p| p.service == s.service);
            json!({
                "service": s.service,
                "incidents": s.incidents,
                "impact_minutes": minutes(s.impact_ms),
                "impact_ms": s.impact_ms,
                "updates_on_time": s.compliance.on_time,
                "updates_due": s.compliance.due(),
                "update_sla_compliance": s.compliance.ratio(),
                "breaches": s.breaches,
                "grade": s.grade.map(|g| g.to_string()),
                "previous": p.map(|p| json!({
                    "incidents": p.incidents,
                    "impact_minutes": minutes(p.impact_ms),
                    "update_sla_compliance": p.compliance.ratio(),
                    "breaches": p.breaches,
                    "grade": p.grade.map(|g| g.to_string()),
                })),
            })
        })
        .collect();
    json!({
        "period": period(&r.period),
        "previous_period": period(&r.previous_period),
        "kind": r.period.kind(),
        "service": r.service,
        "generated_at": r.generated_at.to_rfc3339(),
        "summary": summary,
        "by_severity": pairs(&r.current.by_severity, &r.previous.by_severity),
        "by_status": pairs(&r.current.by_status, &r.previous.by_status),
        "services": services,
        "vendors": crate::vendor::report::json(r),
        "detection_services": r.current.alerts.services.iter().map(|a| json!({
            "service": a.service,
            "alerts": a.alerts,
            "alerts_to_incidents": a.became_incidents,
            "noisy_alerts": a.noisy,
            "time_to_declare_count": a.time_to_declare.count,
            "time_to_declare_median_ms": a.time_to_declare.median_ms,
            "time_to_declare_p90_ms": a.time_to_declare.p90_ms,
            "time_to_declare_mean_ms": a.time_to_declare.mean_ms(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        // One rule: the nearest minute, halves up (no seconds next to minutes).
        assert_eq!(duration(0), "0m");
        assert_eq!(duration(12_000), "0m");
        assert_eq!(duration(29_999), "0m");
        assert_eq!(duration(30_000), "1m");
        assert_eq!(duration(59_499), "1m");
        assert_eq!(duration(-12_000), "0m");
        assert_eq!(duration(12 * MINUTE_MS), "12m");
        assert_eq!(duration(125 * MINUTE_MS), "2h 05m");
        assert_eq!(duration((3 * 1440 + 4 * 60 + 10) * MINUTE_MS), "3d 04h 10m");
        assert_eq!(duration(-5 * MINUTE_MS), "-5m");
    }

    #[test]
    fn the_generated_time_is_local_with_its_zone() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 0).unwrap();
        assert_eq!(
            local_time(t, chrono_tz::America::New_York),
            "2026-11-23 09:05 EST (America/New_York)"
        );
        assert_eq!(local_time(t, chrono_tz::UTC), "2026-11-23 14:05 UTC");
    }

    #[test]
    fn counts_and_percentages() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(percent(Some(0.875)), "87.5%");
        assert_eq!(percent(None), "n/a");
    }

    #[test]
    fn changes_carry_arrows_and_units() {
        let h = |value, previous| Headline {
            key: "k".into(),
            label: "l".into(),
            value,
            previous,
        };
        assert_eq!(change(&h(Value::Count(5), Value::Count(3))), "▲2");
        assert_eq!(change(&h(Value::Count(3), Value::Count(3))), "=");
        assert_eq!(
            change(&h(
                Value::Duration(Some(10 * MINUTE_MS)),
                Value::Duration(Some(15 * MINUTE_MS))
            )),
            "▼5m"
        );
        assert_eq!(change(&h(Value::Duration(None), Value::Duration(Some(1)))), "");
        assert_eq!(
            change(&h(Value::Ratio(Some(0.9)), Value::Ratio(Some(0.75)))),
            "▲15.0 pts"
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("a"), "a");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert!("xml".parse::<Format>().is_err());
    }
}
