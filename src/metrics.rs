//! A small Prometheus registry (text format 0.0.4) on atomics, with no metrics crate.
//!
//! Counters live in the process-wide [`METRICS`]; gauges that describe stored state (open
//! incidents by severity, outbox backlog) are computed from the database at scrape time by
//! [`crate::http`], so every replica reports the same truth.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// The process-wide registry.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Upper bounds (milliseconds) of the ack latency histogram buckets.
pub const ACK_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// A counter family: one monotonic count per label set (label values in declaration order).
#[derive(Default)]
pub struct CounterVec {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: &[&str], n: u64) {
        let key = labels.iter().map(|l| l.to_string()).collect();
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        *values.entry(key).or_default() += n;
    }

    /// The current count for one label set (0 if never counted).
    pub fn get(&self, labels: &[&str]) -> u64 {
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(&key).copied().unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A histogram with fixed millisecond buckets.
pub struct Histogram {
    buckets: [AtomicU64; ACK_BUCKETS_MS.len()],
    count: AtomicU64,
    /// Sum in microseconds, rendered in milliseconds.
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        for (bucket, bound) in self.buckets.iter().zip(ACK_BUCKETS_MS) {
            if us <= bound * 1000 {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Counters and the ack latency histogram.
#[derive(Default)]
pub struct Metrics {
    /// Labels: `type` (command, interaction, push).
    pub envelopes_received: CounterVec,
    /// Labels: `type`.
    pub envelopes_acked: CounterVec,
    pub ack_latency: Histogram,
    /// Labels: `method`.
    pub slack_calls: CounterVec,
    /// Labels: `method`, `code` (Slack's error code, or `unavailable`).
    pub slack_errors: CounterVec,
    /// Labels: `stage` (first, repeat), `late` (true, false).
    pub reminders_sent: CounterVec,
    /// Labels: none.
    pub breaches: CounterVec,
    /// Labels: `severity`.
    pub incidents_declared: CounterVec,
    /// Labels: `kind` (follow_up, review, vendor: a vendor ticket chase), `late` (true, false).
    pub follow_up_reminders: CounterVec,
    /// Alert intake requests (issue 15). Labels: `kind` (alertmanager, grafana, generic),
    /// `status` (the HTTP answer: 202, 400, 401, 413, 503).
    pub alert_requests: CounterVec,
}

/// Values computed at scrape time from the database.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Outbox jobs neither done nor failed.
    pub outbox_backlog: i64,
    /// Open incidents per severity label (e.g. `SEV1`).
    pub open_incidents: BTreeMap<String, i64>,
    /// Whether a Socket Mode connection is live (1) or not (0).
    pub socket_connected: bool,
    /// Follow-ups still open, and of those the overdue ones.
    pub open_follow_ups: i64,
    pub overdue_follow_ups: i64,
}

impl Metrics {
    /// The counters and histogram, plus `gauges`, in Prometheus text format 0.0.4.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "incident_bot_envelopes_received_total",
            "Socket Mode envelopes received, by type.",
            &["type"],
            &self.envelopes_received,
        );
        counter(
            &mut out,
            "incident_bot_envelopes_acked_total",
            "Socket Mode envelopes acked, by type.",
            &["type"],
            &self.envelopes_acked,
        );
        self.render_histogram(&mut out);
        counter(
            &mut out,
            "incident_bot_slack_api_calls_total",
            "Slack Web API calls, by method.",
            &["method"],
            &self.slack_calls,
        );
        counter(
            &mut out,
            "incident_bot_slack_api_errors_total",
            "Failed Slack Web API calls, by method and error code.",
            &["method", "code"],
            &self.slack_errors,
        );
        counter(
            &mut out,
            "incident_bot_reminders_sent_total",
            "Update reminders posted to SPOCs, by stage and lateness.",
            &["stage", "late"],
            &self.reminders_sent,
        );
        counter(
            &mut out,
            "incident_bot_breaches_total",
            "SLA breach escalations posted.",
            &[],
            &self.breaches,
        );
        counter(
            &mut out,
            "incident_bot_incidents_declared_total",
            "Incidents declared, by severity.",
            &["severity"],
            &self.incidents_declared,
        );
        counter(
            &mut out,
            "incident_bot_follow_up_reminders_total",
            "Reminders posted to owners of overdue follow-ups, to SPOCs of due reviews and of vendor tickets to chase.",
            &["kind", "late"],
            &self.follow_up_reminders,
        );
        counter(
            &mut out,
            "incident_bot_alert_requests_total",
            "Alert intake requests, by source kind and HTTP answer.",
            &["kind", "status"],
            &self.alert_requests,
        );
        header(
            &mut out,
            "incident_bot_open_follow_ups",
            "Follow-ups still open; `overdue` counts those past their due day.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "incident_bot_open_follow_ups{{overdue=\"false\"}} {}",
            gauges.open_follow_ups - gauges.overdue_follow_ups
        );
        let _ = writeln!(
            out,
            "incident_bot_open_follow_ups{{overdue=\"true\"}} {}",
            gauges.overdue_follow_ups
        );
        header(
            &mut out,
            "incident_bot_outbox_backlog",
            "Outbox jobs waiting to be done.",
            "gauge",
        );
        let _ = writeln!(out, "incident_bot_outbox_backlog {}", gauges.outbox_backlog);
        header(
            &mut out,
            "incident_bot_open_incidents",
            "Open incidents (investigating, identified, mitigated), by severity.",
            "gauge",
        );
        for (severity, n) in &gauges.open_incidents {
            let _ = writeln!(
                out,
                "incident_bot_open_incidents{{severity=\"{}\"}} {n}",
                escape(severity)
            );
        }
        header(
            &mut out,
            "incident_bot_socket_connected",
            "1 when a Socket Mode connection has said hello since the last shutdown.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "incident_bot_socket_connected {}",
            u8::from(gauges.socket_connected)
        );
        out
    }

    fn render_histogram(&self, out: &mut String) {
        let name = "incident_bot_ack_latency_ms";
        header(
            out,
            name,
            "Time spent answering a Socket Mode envelope before its ack, in milliseconds.",
            "histogram",
        );
        for (bucket, bound) in self.ack_latency.buckets.iter().zip(ACK_BUCKETS_MS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.ack_latency.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum_ms = self.ack_latency.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum {sum_ms}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, labels: &[&str], values: &CounterVec) {
    header(out, name, help, "counter");
    for (key, n) in values.snapshot() {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {n}");
            continue;
        }
        let pairs: Vec<String> = labels
            .iter()
            .zip(&key)
            .map(|(l, v)| format!("{l}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(out, "{name}{{{}}} {n}", pairs.join(","));
    }
}

/// Label value escaping per the text format: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.envelopes_received.inc(&["command"]);
        m.slack_errors.inc(&["chat.postMessage", "channel_not_found"]);
        m.breaches.inc(&[]);
        m.ack_latency.observe(Duration::from_micros(3_500));
        m.ack_latency.observe(Duration::from_secs(2));
        let gauges = Gauges {
            outbox_backlog: 3,
            open_incidents: [("SEV1".to_string(), 2)].into(),
            socket_connected: true,
            open_follow_ups: 5,
            overdue_follow_ups: 2,
        };
        m.follow_up_reminders.inc(&["follow_up", "false"]);
        let text = m.render(&gauges);
        assert!(text.contains("# TYPE incident_bot_envelopes_received_total counter\n"));
        assert!(text.contains("incident_bot_envelopes_received_total{type=\"command\"} 1\n"));
        assert!(text.contains(
            "incident_bot_slack_api_errors_total{method=\"chat.postMessage\",code=\"channel_not_found\"} 1\n"
        ));
        assert!(text.contains("incident_bot_breaches_total 1\n"));
        assert!(text.contains("incident_bot_ack_latency_ms_bucket{le=\"2\"} 0\n"));
        assert!(text.contains("incident_bot_ack_latency_ms_bucket{le=\"5\"} 1\n"));
        assert!(text.contains("incident_bot_ack_latency_ms_bucket{le=\"1000\"} 1\n"));
        assert!(text.contains("incident_bot_ack_latency_ms_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("incident_bot_ack_latency_ms_count 2\n"));
        assert!(text.contains("incident_bot_outbox_backlog 3\n"));
        assert!(text.contains("incident_bot_open_incidents{severity=\"SEV1\"} 2\n"));
        assert!(text.contains("incident_bot_socket_connected 1\n"));
        assert!(text.contains("incident_bot_open_follow_ups{overdue=\"false\"} 3\n"));
        assert!(text.contains("incident_bot_open_follow_ups{overdue=\"true\"} 2\n"));
        assert!(text.contains("incident_bot_follow_up_reminders_total{kind=\"follow_up\",late=\"false\"} 1\n"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
