//! Post-incident reviews (PIRs): which incidents need one, when the SPOC is reminded, and the
//! Markdown / JSON draft built from what the bot recorded. Pure: callers pass `now` and the
//! data; nothing here reads the clock, the database or Slack.

use super::followup::FollowUp;
use super::model::*;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A delay counted in working days (Monday to Friday, local time) or as a plain duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    WorkingDays(u32),
    Fixed(Duration),
}

impl Delay {
    /// `t` plus the delay. Working days keep the local time of day and skip Saturdays and
    /// Sundays: resolved Friday 16:00 + 2 working days = Tuesday 16:00; Saturday 10:00 + 1 =
    /// Monday 10:00.
    pub fn after(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            Delay::Fixed(d) => t + d,
            Delay::WorkingDays(n) => {
                let local = t.with_timezone(&tz).naive_local();
                let mut date = local.date();
                let mut left = n;
                while left > 0 {
                    date = date.succ_opt().unwrap_or(date);
                    if !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
                        left -= 1;
                    }
                }
                let wanted = date.and_time(local.time());
                // A time inside a DST gap does not exist: take the first one after it.
                (0..8)
                    .find_map(|q| tz.from_local_datetime(&(wanted + Duration::minutes(15 * q))).earliest())
                    .map(|l| l.with_timezone(&Utc))
                    .unwrap_or(t + Duration::days(i64::from(n)))
            }
        }
    }
}

impl std::fmt::Display for Delay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delay::WorkingDays(1) => f.write_str("1 working day"),
            Delay::WorkingDays(n) => write!(f, "{n} working days"),
            Delay::Fixed(d) => f.write_str(&duration_text(*d)),
        }
    }
}

/// Which incidents need a review, when the SPOC is reminded, and whether closing waits for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PirRules {
    pub severities: Vec<Severity>,
    /// From the resolution to the first reminder.
    pub first_after: Delay,
    /// Between reminders while the review is not done.
    pub repeat_every: Delay,
    /// Closing an incident that needs a review requires the review marked done.
    pub required_to_close: bool,
}

impl Default for PirRules {
    fn default() -> Self {
        PirRules {
            severities: vec![Severity::Sev1, Severity::Sev2],
            first_after: Delay::WorkingDays(2),
            repeat_every: Delay::WorkingDays(1),
            required_to_close: true,
        }
    }
}

impl PirRules {
    /// A resolved (or closed) incident of a reviewed severity whose review is not done yet.
    pub fn review_pending(&self, incident: &Incident) -> bool {
        self.severities.contains(&incident.severity)
            && matches!(incident.status, Status::Resolved | Status::Closed)
            && incident.pir_done_at.is_none()
    }

    /// The next PIR reminder after a change from `before` to `after` at `now`: none when no
    /// review is pending; the one already planned when there is one; else `first_after` from now
    /// (working days counted in `tz`).
    pub fn replan(&self, before: &Incident, after: &Incident, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if !self.review_pending(after) {
            None
        } else if self.review_pending(before) && before.pir_remind_at.is_some() {
            before.pir_remind_at
        } else {
            Some(self.first_after.after(now, tz))
        }
    }

    /// The reminder after one fired at `now` (a period from now: no burst after downtime).
    pub fn next_reminder(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        self.repeat_every.after(now, tz)
    }

    /// Why `incident` cannot be closed yet, if it cannot.
    pub fn blocks_close(&self, incident: &Incident) -> Option<String> {
        (self.required_to_close && incident.status == Status::Resolved && self.review_pending(incident)).then(|| {
            format!(
                "{} is {}: its post-incident review must be done before it is closed. \
                 `/incident pir` drafts it from the timeline; `/incident pir done [link]` marks it done.",
                incident.number, incident.severity
            )
        })
    }
}

/// Why no review draft is made for `incident`, if none is: a canceled incident (declared by
/// mistake) has nothing to review. Open, resolved and closed incidents may be drafted.
pub fn draft_refused(incident: &Incident) -> Option<String> {
    incident.was_canceled().then(|| {
        format!(
            "{} was canceled (declared by mistake): it has no post-incident review.",
            incident.number
        )
    })
}

/// Everything a review is written from.
pub struct ReviewInput<'a> {
    pub incident: &'a Incident,
    pub severity_description: &'a str,
    pub timeline: &'a [TimelineEvent],
    pub follow_ups: &'a [FollowUp],
    /// Vendor tickets with their own timelines (a section only when there are some).
    pub vendor_tickets: &'a [crate::vendor::TicketHistory],
    /// Display names by user id, where known (the CLI has none: ids are shown).
    pub names: &'a BTreeMap<String, String>,
    pub timezone: Tz,
    /// When the draft is made (shown, and the end of an impact still going on).
    pub now: DateTime<Utc>,
}

impl ReviewInput<'_> {
    fn who(&self, id: &str) -> String {
        match self.names.get(id) {
            Some(name) => format!("@{name}"),
            None if id.starts_with('U') || id.starts_with('W') => format!("@{id}"),
            None => id.to_string(),
        }
    }

    fn time(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.timezone).format("%Y-%m-%d %H:%M %Z").to_string()
    }

    /// The key moments, in lifecycle order, and how long each took from its start.
    fn key_times(&self) -> Vec<KeyTime> {
        let i = self.incident;
        let start = i.footprint.impact_start.unwrap_or(i.declared_at).min(i.declared_at);
        let moment = |moment, at, took| KeyTime { moment, at, took };
        let since = |label, from: DateTime<Utc>, t: Option<DateTime<Utc>>| t.map(|t| (label, t - from));
        vec![
            moment("Impact started", i.footprint.impact_start, None),
            moment("Declared", Some(i.declared_at), None),
            moment(
                "Acknowledged",
                i.acknowledged_at,
                since("time to acknowledge", i.declared_at, i.acknowledged_at),
            ),
            moment(
                "Mitigated",
                i.mitigated_at,
                since("time to mitigate", start, i.mitigated_at),
            ),
            moment(
                "Resolved",
                i.resolved_at,
                since("time to resolve", i.declared_at, i.resolved_at),
            ),
            moment("Impact ended", i.footprint.impact_end, None),
            moment("Closed", i.closed_at, None),
        ]
    }
}

/// A key moment of the incident, and what it measures (e.g. "time to mitigate") if anything.
struct KeyTime {
    moment: &'static str,
    at: Option<DateTime<Utc>>,
    took: Option<(&'static str, Duration)>,
}

/// Minutes as `1 h 05 min`, `12 min`, `2 d 3 h`.
pub fn duration_text(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    match (mins / 1440, (mins % 1440) / 60, mins % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m:02} min"),
        (days, h, _) => format!("{days} d {h} h"),
    }
}

/// Keeps a table cell on one line and its pipes literal.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The review draft in Markdown: for people to complete and file.
pub fn markdown(input: &ReviewInput<'_>) -> String {
    let i = input.incident;
    let mut md = String::new();
    let title = i.title.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(md, "# Post-incident review: {} — {title}\n", i.number);
    let _ = writeln!(
        md,
        "_Draft generated by incident-bot on {} from the incident's record. Complete the sections marked \"to fill in\"._\n",
        input.time(input.now)
    );
    md.push_str("## Summary\n\n");
    let services = if i.services.is_empty() {
        "—".to_string()
    } else {
        i.services.join(", ")
    };
    let count = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "—".into());
    let roles: Vec<String> = i
        .roles
        .iter()
        .map(|(role, u)| format!("{role} {}", input.who(u.as_str())))
        .collect();
    let rows = [
        (
            "Severity",
            format!("{} — {}", i.severity, cell(input.severity_description)),
        ),
        ("Status", i.status.to_string()),
        ("Service lines", services),
        (
            "Regions",
            if i.footprint.regions.is_empty() {
                "—".into()
            } else {
                i.footprint.regions.join(", ")
            },
        ),
        ("Customers affected", count(i.footprint.customers)),
        ("Merchants affected", count(i.footprint.merchants)),
        ("Transactions affected", count(i.footprint.transactions)),
        ("SPOC", input.who(i.spoc.as_str())),
        ("Declared by", input.who(i.declared_by.as_str())),
        (
            "Other roles",
            if roles.is_empty() {
                "—".into()
            } else {
                roles.join(", ")
            },
        ),
        (
            "Channel",
            i.channel_name
                .as_deref()
                .map(|n| format!("#{n}"))
                .unwrap_or_else(|| "—".into()),
        ),
    ];
    md.push_str("| | |\n|---|---|\n");
    for (label, value) in rows {
        let _ = writeln!(md, "| {label} | {} |", cell(&value));
    }
    if !i.description.trim().is_empty() {
        let _ = writeln!(md, "\n**Description and impact.** {}", i.description.trim());
    }
    md.push_str("\n## Key times\n\n| moment | time | duration |\n|---|---|---|\n");
    for k in input.key_times() {
        let at = k.at.map(|t| input.time(t)).unwrap_or_else(|| "—".into());
        let took = k
            .took
            .map(|(what, d)| format!("{what}: {}", duration_text(d)))
            .unwrap_or_default();
        let _ = writeln!(md, "| {} | {at} | {took} |", k.moment);
    }
    let start = i.footprint.impact_start.unwrap_or(i.declared_at).min(i.declared_at);
    let end = i.footprint.impact_end.or(i.mitigated_at).or(i.resolved_at);
    let _ = writeln!(
        md,
        "\nCustomer impact lasted {}{}.",
        duration_text(end.unwrap_or(input.now) - start),
        if end.is_none() { " so far" } else { "" }
    );
    md.push_str("\n## Root cause and resolution\n\n");
    let or_fill = |s: &str| {
        if s.trim().is_empty() {
            "_to fill in_".to_string()
        } else {
            s.trim().to_string()
        }
    };
    let _ = writeln!(md, "- **Root cause category:** {}", or_fill(&i.root_cause));
    let _ = writeln!(md, "- **Resolution summary:** {}", or_fill(&i.resolution));
    md.push_str("- **Root cause analysis (five whys):** _to fill in_\n");
    let rows = folded_timeline(input.timeline);
    let _ = writeln!(
        md,
        "\n## Timeline\n\n{} events, times in {}{}.\n",
        input.timeline.len(),
        input.timezone,
        if rows.len() < input.timeline.len() {
            "; repeated reminders are folded into one row each"
        } else {
            ""
        }
    );
    md.push_str("| time | who | what | details |\n|---|---|---|---|\n");
    for (e, repeats) in rows {
        let mut details = e.summary();
        if let Some((times, last)) = repeats {
            let _ = write!(details, " {times} times, last {}", input.time(last));
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            input.time(e.at),
            cell(&input.who(&e.actor)),
            e.kind.replace('_', " "),
            cell(&details)
        );
    }
    md.push_str(&crate::vendor::review_markdown(
        input.vendor_tickets,
        &|t| input.time(t),
        &|id| input.who(id),
    ));
    md.push_str("\n## Follow-up actions\n\n");
    if input.follow_ups.is_empty() {
        md.push_str("None recorded yet (`/incident followup <text> [@owner] [due YYYY-MM-DD]`).\n");
    } else {
        md.push_str("| # | action | owner | due | state |\n|---|---|---|---|---|\n");
        for f in input.follow_ups {
            let mut action = cell(&f.text);
            if let Some(link) = &f.link {
                let _ = write!(action, " ({})", cell(link));
            }
            let state = match (&f.closed_by, f.closed_at) {
                (Some(by), Some(at)) => format!("{} by {} on {}", f.state, input.who(by.as_str()), input.time(at)),
                _ if f.is_overdue(input.now) => "open, **overdue**".into(),
                _ => f.state.to_string(),
            };
            let _ = writeln!(
                md,
                "| {} | {action} | {} | {} | {state} |",
                f.seq,
                f.owner
                    .as_ref()
                    .map(|o| input.who(o.as_str()))
                    .unwrap_or_else(|| "—".into()),
                f.due.map(|d| d.to_string()).unwrap_or_else(|| "—".into()),
            );
        }
    }
    md.push_str(
        "\n## Discussion (to fill in)\n\n- What went well?\n- What went badly, or was lucky?\n- Where did we get delayed (detection, escalation, diagnosis, fix)?\n- What would have prevented it, or shortened it?\n",
    );
    md
}

/// The timeline for people: every event once, except repeated reminders (the review's, or one
/// follow-up's overdue reminder), which are kept as events but shown as one row at the first,
/// with how many and the last time (`Some((times, last))` when there were several).
#[allow(clippy::type_complexity)]
fn folded_timeline(timeline: &[TimelineEvent]) -> Vec<(&TimelineEvent, Option<(usize, DateTime<Utc>)>)> {
    let repeat_key = |e: &TimelineEvent| -> Option<String> {
        let reminder = e.details["action"] == "reminder";
        match e.kind.as_str() {
            "pir" if reminder => Some("pir".into()),
            "follow_up" if reminder => Some(format!("follow_up:{}", e.details["seq"])),
            _ => None,
        }
    };
    let mut rows: Vec<(&TimelineEvent, Option<(usize, DateTime<Utc>)>)> = Vec::new();
    let mut first_row: BTreeMap<String, usize> = BTreeMap::new();
    for e in timeline {
        match repeat_key(e) {
            Some(key) => match first_row.get(&key) {
                Some(&row) => {
                    let (times, _) = rows[row].1.unwrap_or((1, rows[row].0.at));
                    rows[row].1 = Some((times + 1, e.at));
                }
                None => {
                    first_row.insert(key, rows.len());
                    rows.push((e, None));
                }
            },
            None => rows.push((e, None)),
        }
    }
    rows
}

/// The same review as JSON: exact values (times as RFC 3339 UTC and epoch ms, durations in ms).
pub fn json(input: &ReviewInput<'_>) -> serde_json::Value {
    #[derive(Serialize)]
    struct Moment {
        moment: &'static str,
        at: Option<DateTime<Utc>>,
        at_ms: Option<i64>,
        duration: Option<&'static str>,
        duration_ms: Option<i64>,
    }
    let i = input.incident;
    let moments: Vec<Moment> = input
        .key_times()
        .into_iter()
        .map(|k| Moment {
            moment: k.moment,
            at: k.at,
            at_ms: k.at.map(|t| t.timestamp_millis()),
            duration: k.took.map(|(what, _)| what),
            duration_ms: k.took.map(|(_, d)| d.num_milliseconds()),
        })
        .collect();
    let timeline: Vec<serde_json::Value> = input
        .timeline
        .iter()
        .map(|e| json!({ "at": e.at, "actor": e.actor, "kind": e.kind, "summary": e.summary(), "details": e.details }))
        .collect();
    let follow_ups: Vec<serde_json::Value> = input
        .follow_ups
        .iter()
        .map(|f| {
            json!({
                "seq": f.seq, "text": f.text, "owner": f.owner, "due": f.due, "link": f.link,
                "state": f.state, "overdue": f.is_overdue(input.now), "created_by": f.created_by,
                "created_at": f.created_at, "closed_by": f.closed_by, "closed_at": f.closed_at,
            })
        })
        .collect();
    json!({
        "incident": i.number.to_string(),
        "title": i.title,
        "description": i.description,
        "severity": i.severity,
        "severity_description": input.severity_description,
        "status": i.status,
        "private": i.is_private,
        "services": i.services,
        "footprint": i.footprint,
        "spoc": i.spoc,
        "declared_by": i.declared_by,
        "roles": i.roles,
        "channel": i.channel_name,
        "root_cause": i.root_cause,
        "resolution": i.resolution,
        "key_times": moments,
        "timeline": timeline,
        "follow_ups": follow_ups,
        "vendor_tickets": crate::vendor::review_json(input.vendor_tickets),
        "pir_done_at": i.pir_done_at,
        "pir_link": i.pir_link,
        "generated_at": input.now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::followup::FollowUpState;
    use chrono_tz::UTC;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    #[test]
    fn working_days_skip_weekends_and_keep_the_local_time() {
        let london = chrono_tz::Europe::London;
        // 2026-11-27 is a Friday.
        assert_eq!(
            Delay::WorkingDays(2).after(utc(27, 16, 0), london),
            Utc.with_ymd_and_hms(2026, 12, 1, 16, 0, 0).unwrap()
        );
        assert_eq!(
            Delay::WorkingDays(1).after(utc(28, 10, 0), london),
            utc(30, 10, 0),
            "Saturday → Monday"
        );
        assert_eq!(
            Delay::WorkingDays(2).after(utc(23, 9, 0), london),
            utc(25, 9, 0),
            "Monday → Wednesday"
        );
        assert_eq!(
            Delay::Fixed(Duration::minutes(90)).after(utc(23, 9, 0), london),
            utc(23, 10, 30)
        );
        // New York: Friday 20:00 local is Saturday 01:00 UTC; two working days later is
        // Tuesday 20:00 local.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            Delay::WorkingDays(2).after(utc(28, 1, 0), ny),
            Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap()
        );
        assert_eq!(Delay::WorkingDays(2).to_string(), "2 working days");
        assert_eq!(Delay::Fixed(Duration::hours(36)).to_string(), "1 d 12 h");
    }

    fn resolved(severity: Severity) -> Incident {
        Incident {
            severity,
            status: Status::Resolved,
            resolved_at: Some(utc(23, 13, 0)),
            ..Incident::example()
        }
    }

    #[test]
    fn reviews_are_pending_for_resolved_sev1_and_sev2_until_done() {
        let rules = PirRules::default();
        assert!(rules.review_pending(&resolved(Severity::Sev1)));
        assert!(rules.review_pending(&resolved(Severity::Sev2)));
        assert!(!rules.review_pending(&resolved(Severity::Sev3)));
        assert!(!rules.review_pending(&Incident::example()), "open: not yet");
        let done = Incident {
            pir_done_at: Some(utc(24, 9, 0)),
            ..resolved(Severity::Sev1)
        };
        assert!(!rules.review_pending(&done));
        assert!(rules.blocks_close(&done).is_none());
        let blocked = rules.blocks_close(&resolved(Severity::Sev1)).unwrap();
        assert!(
            blocked.contains("INC-42") && blocked.contains("/incident pir done"),
            "{blocked}"
        );
        let relaxed = PirRules {
            required_to_close: false,
            ..PirRules::default()
        };
        assert!(relaxed.blocks_close(&resolved(Severity::Sev1)).is_none());
    }

    #[test]
    fn the_reminder_is_planned_on_resolve_kept_and_dropped() {
        let rules = PirRules::default();
        let open = Incident::example();
        let now = utc(23, 13, 0); // a Monday
        let planned = rules.replan(&open, &resolved(Severity::Sev2), now, UTC);
        assert_eq!(planned, Some(utc(25, 13, 0)));
        let with_plan = Incident {
            pir_remind_at: planned,
            ..resolved(Severity::Sev2)
        };
        let closed = Incident {
            status: Status::Closed,
            ..with_plan.clone()
        };
        assert_eq!(rules.replan(&with_plan, &closed, utc(24, 0, 0), UTC), planned, "kept");
        assert_eq!(rules.replan(&with_plan, &open, now, UTC), None, "reopened: dropped");
        let downgraded = Incident {
            severity: Severity::Sev3,
            ..with_plan.clone()
        };
        assert_eq!(rules.replan(&with_plan, &downgraded, now, UTC), None);
        assert_eq!(rules.next_reminder(utc(25, 13, 0), UTC), utc(26, 13, 0));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration_text(Duration::minutes(12)), "12 min");
        assert_eq!(duration_text(Duration::minutes(65)), "1 h 05 min");
        assert_eq!(duration_text(Duration::minutes(3 * 1440 + 125)), "3 d 2 h");
        assert_eq!(duration_text(Duration::minutes(-5)), "0 min");
    }

    /// The golden file: a whole review of a fixture incident. Regenerate with
    /// `UPDATE_GOLDEN=1 cargo test --lib pir` after an intended change, and read the diff.
    #[test]
    fn the_review_draft_matches_the_golden_file() {
        let (incident, timeline, follow_ups) = fixture();
        let names = BTreeMap::from([("U0BOB".to_string(), "bob".to_string())]);
        let input = ReviewInput {
            incident: &incident,
            severity_description: "Major: degraded core flow or full outage of a secondary service",
            timeline: &timeline,
            follow_ups: &follow_ups,
            vendor_tickets: &[],
            names: &names,
            timezone: chrono_tz::Europe::London,
            now: utc(30, 9, 0),
        };
        let md = markdown(&input);
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/pir_inc42.md");
        if std::env::var("UPDATE_GOLDEN").is_ok() {
            std::fs::write(golden, &md).unwrap();
        }
        let expected = std::fs::read_to_string(golden).expect("tests/golden/pir_inc42.md exists");
        assert_eq!(md, expected, "the PIR draft changed; see the test's doc comment");
        let json = json(&input);
        assert_eq!(json["incident"], "INC-42");
        assert_eq!(
            json["key_times"][2]["duration_ms"],
            4 * 60_000,
            "acknowledged 4 min after declaring"
        );
        assert_eq!(
            json["key_times"][3]["duration_ms"],
            55 * 60_000,
            "mitigated 55 min after impact start"
        );
        assert_eq!(json["timeline"].as_array().unwrap().len(), timeline.len());
        assert_eq!(json["follow_ups"][0]["overdue"], true);
        assert_eq!(json["follow_ups"][1]["state"], "done");
    }

    #[test]
    fn repeated_reminders_are_folded_in_the_draft_and_kept_in_json() {
        let (incident, mut timeline, follow_ups) = fixture();
        let reminder = |d, kind: &str, details| TimelineEvent {
            at: utc(d, 9, 0),
            actor: "bot".into(),
            kind: kind.into(),
            details,
        };
        for day in 25..=29 {
            timeline.push(reminder(day, "pir", json!({ "action": "reminder" })));
            timeline.push(reminder(day, "follow_up", json!({ "action": "reminder", "seq": 1 })));
        }
        timeline.push(reminder(29, "follow_up", json!({ "action": "reminder", "seq": 2 })));
        let names = BTreeMap::new();
        let input = ReviewInput {
            incident: &incident,
            severity_description: "Major",
            timeline: &timeline,
            follow_ups: &follow_ups,
            vendor_tickets: &[],
            names: &names,
            timezone: chrono_tz::Europe::London,
            now: utc(30, 9, 0),
        };
        let md = markdown(&input);
        let rows = |needle: &str| md.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(rows("SPOC reminded of the review"), 1, "{md}");
        assert!(
            md.contains(
                "| 2026-11-25 09:00 GMT | bot | pir | SPOC reminded of the review 5 times, last 2026-11-29 09:00 GMT |"
            ),
            "{md}"
        );
        assert_eq!(rows("#1 overdue, owner reminded 5 times"), 1, "{md}");
        assert!(
            md.contains("| #2 overdue, owner reminded |"),
            "a single reminder stays as it is: {md}"
        );
        assert!(md.contains("19 events") && md.contains("folded"), "{md}");
        assert_eq!(
            json(&input)["timeline"].as_array().unwrap().len(),
            19,
            "every event kept"
        );
    }

    /// INC-42, SEV2: impact from 11:50, declared 12:00, acknowledged 12:04, mitigated 12:45,
    /// resolved 13:10 (London = UTC in November).
    fn fixture() -> (Incident, Vec<TimelineEvent>, Vec<FollowUp>) {
        let user = |id: &str| UserId::parse(id).unwrap();
        let mut incident = Incident::example();
        incident.title = "Card payments failing | EU".into();
        incident.channel_name = Some("inc-42-card-payments-failing-eu".into());
        incident.status = Status::Resolved;
        incident.acknowledged_at = Some(utc(23, 12, 4));
        incident.mitigated_at = Some(utc(23, 12, 45));
        incident.resolved_at = Some(utc(23, 13, 10));
        incident.footprint = Footprint {
            regions: vec!["EU".into(), "UK".into()],
            customers: Some(1200),
            merchants: Some(85),
            transactions: Some(5400),
            impact_start: Some(utc(23, 11, 50)),
            impact_end: Some(utc(23, 12, 45)),
        };
        incident.roles.insert("comms".into(), user("U0DAVE"));
        incident.root_cause = "change / deploy".into();
        incident.resolution = "Rolled back the payments gateway to 4.12.".into();
        let event = |h, m, actor: &str, kind: &str, details| TimelineEvent {
            at: utc(23, h, m),
            actor: actor.into(),
            kind: kind.into(),
            details,
        };
        let timeline = vec![
            event(
                12,
                0,
                "U0ALICE",
                "declared",
                json!({ "severity": "SEV2", "title": incident.title }),
            ),
            event(
                12,
                0,
                "bot",
                "channel_created",
                json!({ "name": "inc-42-card-payments-failing-eu" }),
            ),
            event(12, 4, "U0BOB", "acknowledged", json!({ "by": "U0BOB" })),
            event(
                12,
                10,
                "U0BOB",
                "update",
                json!({ "status": "investigating", "known": "Gateway 500s since the 11:45 deploy", "on_time": true }),
            ),
            event(
                12,
                20,
                "U0DAVE",
                "note",
                json!({ "text": "Support sees | many tickets" }),
            ),
            event(
                12,
                45,
                "U0BOB",
                "status",
                json!({ "from": "identified", "to": "mitigated" }),
            ),
            event(
                13,
                10,
                "U0BOB",
                "status",
                json!({ "from": "mitigated", "to": "resolved", "summary": "Rolled back" }),
            ),
            event(
                13,
                12,
                "U0BOB",
                "follow_up",
                json!({ "action": "created", "seq": 1, "text": "Canary the gateway" }),
            ),
        ];
        let follow_up = |seq, text: &str, owner: &str, due: &str| FollowUp {
            id: seq,
            incident_id: incident.id,
            number: incident.number,
            private: false,
            seq,
            text: text.into(),
            owner: Some(user(owner)),
            due: Some(due.parse().unwrap()),
            due_at: Some(
                crate::report::period::start_of_day(chrono_tz::Europe::London, due.parse().unwrap())
                    + Duration::days(1),
            ),
            link: None,
            state: FollowUpState::Open,
            created_by: user("U0BOB"),
            created_at: utc(23, 13, 12),
            closed_by: None,
            closed_at: None,
            remind_at: None,
        };
        let mut done = follow_up(2, "Alert on gateway 5xx rate", "U0DAVE", "2026-11-27");
        done.state = FollowUpState::Done;
        done.closed_by = Some(user("U0DAVE"));
        done.closed_at = Some(utc(26, 15, 30));
        done.link = Some("https://wiki.example/alerts/gw".into());
        let follow_ups = vec![follow_up(1, "Canary the gateway deploys", "U0BOB", "2026-11-27"), done];
        (incident, timeline, follow_ups)
    }
}
