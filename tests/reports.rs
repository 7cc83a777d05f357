//! Report figures against a fixture with hand-computed expectations, on SQLite (default) or
//! PostgreSQL (`TEST_DATABASE_URL`). The arithmetic is written next to each expectation.

mod common;

use chrono::{DateTime, Utc};
use incident_bot::config::Policy;
use incident_bot::db::{Db, FixtureEvent, FixtureIncident};
use incident_bot::report::metrics::{Compliance, DurationStats, Grade};
use incident_bot::report::render::{self, Format};
use incident_bot::report::{FixtureFollowUp, FollowUps, PeriodSpec, Report};
use serde_json::json;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// 2026-11-16 00:00 in New York (EST, UTC−5): the start of the reported week.
fn t0() -> i64 {
    ms("2026-11-16T05:00:00Z")
}

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
}

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn policy() -> Policy {
    Policy {
        timezone: chrono_tz::America::New_York,
        ..Policy::default()
    }
}

fn week() -> PeriodSpec {
    PeriodSpec::parse("2026-11-16..2026-11-22").unwrap()
}

/// A fresh database; on SQLite its file lives (and goes) with the returned directory.
async fn db() -> TestDb {
    match common::database() {
        Some((url, schema)) => TestDb {
            db: Db::connect_with(&url, Some(&schema)).await.unwrap(),
            _dir: None,
        },
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("reports.db").display());
            TestDb {
                db: Db::connect(&url).await.unwrap(),
                _dir: Some(dir),
            }
        }
    }
}

struct TestDb {
    db: Db,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestDb {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

fn services(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn event(number: i64, at: i64, kind: &str, details: serde_json::Value) -> FixtureEvent {
    FixtureEvent {
        number,
        at,
        kind: kind.into(),
        details,
    }
}

fn update(number: i64, at: i64, on_time: bool) -> FixtureEvent {
    event(number, at, "update", json!({ "known": "x", "on_time": on_time }))
}

fn due(number: i64, at: i64) -> FixtureEvent {
    event(
        number,
        at,
        "reminder",
        json!({ "stage": "due", "due_at": at, "late": false }),
    )
}

/// A follow-up due on `due_day` (a New York day in November 2026, EST): overdue from 00:00
/// local of the day after (05:00 UTC). `done` and `wont_do` ones were closed the day before.
fn follow_up(state: &str, due_day: Option<u32>) -> FixtureFollowUp {
    let due_at = due_day.map(|d| ms(&format!("2026-11-{:02}T05:00:00Z", d + 1)));
    FixtureFollowUp {
        text: "Add an alert on fixture queue depth".into(),
        owner: Some("U0OWNER".into()),
        due_date: due_day.map(|d| format!("2026-11-{d:02}")),
        due_at,
        state: state.into(),
        closed_at: (state != "open").then(|| due_at.unwrap_or(t0()) - DAY),
        ..FixtureFollowUp::default()
    }
}

/// The fixture: the reported week (New York, 2026-11-16..22), the week before, and one incident
/// just after. Times are `t0()` (Monday 00:00 local) plus offsets. Follow-ups (as of `now()`,
/// 2026-11-25 12:00 UTC; a due day D is overdue from D + 1 05:00 UTC) are lettered a–l.
fn fixture() -> (Vec<FixtureIncident>, Vec<FixtureEvent>) {
    let t0 = t0();
    let to = t0 + 7 * DAY; // 2026-11-23 00:00 local = 05:00 UTC
    let incidents = vec![
        // INC-1: impact started 30 min before the declaration; closed. TTA 5, TTM 30 + 90 = 120,
        // TTR 180; impact (no impact end) = mitigated − impact start = 120 min.
        FixtureIncident {
            number: 1,
            severity: "SEV1".into(),
            status: "closed".into(),
            services: services(&["payments", "checkout"]),
            declared_at: t0 + HOUR,
            acknowledged_at: Some(t0 + HOUR + 5 * MIN),
            impact_start: Some(t0 + 30 * MIN),
            mitigated_at: Some(t0 + HOUR + 90 * MIN),
            resolved_at: Some(t0 + HOUR + 180 * MIN),
            closed_at: Some(t0 + 2 * DAY),
            customers: Some(100),
            merchants: Some(10),
            transactions: Some(1000),
            // a: open, due the 23rd (overdue since the 24th 05:00 UTC); b: open, due the 24th
            // (overdue since 05:00 today); c: done, due the 20th (past, but done: not overdue).
            follow_ups: vec![
                follow_up("open", Some(23)),
                follow_up("open", Some(24)),
                follow_up("done", Some(20)),
            ],
            ..FixtureIncident::default()
        },
        // INC-2: resolved. TTA 15, TTM 30, TTR 60; explicit impact end after 45 min.
        FixtureIncident {
            number: 2,
            severity: "SEV2".into(),
            status: "resolved".into(),
            services: services(&["payments"]),
            declared_at: t0 + 2 * DAY,
            acknowledged_at: Some(t0 + 2 * DAY + 15 * MIN),
            mitigated_at: Some(t0 + 2 * DAY + 30 * MIN),
            resolved_at: Some(t0 + 2 * DAY + 60 * MIN),
            impact_end: Some(t0 + 2 * DAY + 45 * MIN),
            customers: Some(50),
            // d: open, due the 27th (overdue only from the 28th 05:00 UTC); e: won't do, due the
            // 18th (past, but closed).
            follow_ups: vec![follow_up("open", Some(27)), follow_up("wont_do", Some(18))],
            ..FixtureIncident::default()
        },
        // INC-3: mitigated, resolved, then reopened (reopening clears resolved_at): still open.
        // TTA 10, TTM 40, no TTR; impact 40 min (to mitigation).
        FixtureIncident {
            number: 3,
            severity: "SEV3".into(),
            status: "investigating".into(),
            services: services(&["checkout"]),
            declared_at: t0 + 3 * DAY,
            acknowledged_at: Some(t0 + 3 * DAY + 10 * MIN),
            mitigated_at: Some(t0 + 3 * DAY + 40 * MIN),
            // f: open, no due day: never overdue.
            follow_ups: vec![follow_up("open", None)],
            ..FixtureIncident::default()
        },
        // INC-4: never acknowledged by its SPOC, still investigating: no TTA/TTM/TTR; impact
        // runs to the end of the period: 7 − 4 = 3 days = 4,320 min.
        FixtureIncident {
            number: 4,
            severity: "SEV2".into(),
            status: "investigating".into(),
            services: services(&["app"]),
            declared_at: t0 + 4 * DAY,
            ..FixtureIncident::default()
        },
        // INC-5: canceled: counted as canceled, excluded from every figure.
        FixtureIncident {
            number: 5,
            severity: "SEV1".into(),
            status: "canceled".into(),
            services: services(&["payments"]),
            declared_at: t0 + 5 * DAY,
            acknowledged_at: Some(t0 + 5 * DAY + MIN),
            canceled_at: Some(t0 + 5 * DAY + 10 * MIN),
            customers: Some(999),
            // g: open and overdue, but its incident is canceled: not counted.
            follow_ups: vec![follow_up("open", Some(20))],
            ..FixtureIncident::default()
        },
        // INC-6: private; declared Sunday 23:59 local (already 04:59 UTC on Monday the 23rd),
        // mitigated and resolved after the period: it belongs to the period by its declaration.
        // TTA 20, TTM 120, TTR 200, impact 120 min (not cut at the period's end).
        FixtureIncident {
            number: 6,
            severity: "SEV4".into(),
            status: "resolved".into(),
            services: services(&["settlement"]),
            is_private: true,
            declared_at: to - MIN,
            acknowledged_at: Some(to - MIN + 20 * MIN),
            mitigated_at: Some(to - MIN + 120 * MIN),
            resolved_at: Some(to - MIN + 200 * MIN),
            // h: done (a private incident's follow-up is counted, never named).
            follow_ups: vec![follow_up("done", Some(24))],
            ..FixtureIncident::default()
        },
        // INC-7: Sunday 23:30 local on the 15th (04:30 UTC on the 16th): the previous week.
        // TTA 10, TTM 60, TTR 90, impact 60.
        FixtureIncident {
            number: 7,
            severity: "SEV2".into(),
            status: "closed".into(),
            services: services(&["payments"]),
            declared_at: t0 - 30 * MIN,
            acknowledged_at: Some(t0 - 30 * MIN + 10 * MIN),
            mitigated_at: Some(t0 - 30 * MIN + 60 * MIN),
            resolved_at: Some(t0 - 30 * MIN + 90 * MIN),
            closed_at: Some(t0 + DAY),
            // i: open, due the 19th: overdue; j: done.
            follow_ups: vec![follow_up("open", Some(19)), follow_up("done", Some(19))],
            ..FixtureIncident::default()
        },
        // INC-8: Monday 00:00 local the week after: outside (the period is half-open).
        FixtureIncident {
            number: 8,
            severity: "SEV1".into(),
            status: "investigating".into(),
            services: services(&["payments"]),
            declared_at: to,
            // k: open and overdue, but outside both periods: not counted.
            follow_ups: vec![follow_up("open", Some(24))],
            ..FixtureIncident::default()
        },
        // INC-9: the previous week. TTA 20, TTM 30, TTR 50, impact 30.
        FixtureIncident {
            number: 9,
            severity: "SEV3".into(),
            status: "closed".into(),
            services: services(&["checkout"]),
            declared_at: t0 - 3 * DAY,
            acknowledged_at: Some(t0 - 3 * DAY + 20 * MIN),
            mitigated_at: Some(t0 - 3 * DAY + 30 * MIN),
            resolved_at: Some(t0 - 3 * DAY + 50 * MIN),
            closed_at: Some(t0 - 2 * DAY),
            // l: won't do, no due day.
            follow_ups: vec![follow_up("wont_do", None)],
            ..FixtureIncident::default()
        },
    ];
    let events = vec![
        // INC-1: 2 on time, 1 missed due time, 1 repeat (not counted), 1 breach.
        update(1, t0 + 2 * HOUR, true),
        update(1, t0 + 3 * HOUR, true),
        due(1, t0 + 4 * HOUR),
        event(
            1,
            t0 + 4 * HOUR + 30 * MIN,
            "reminder",
            json!({ "stage": "repeat", "due_at": t0 + 4 * HOUR }),
        ),
        event(
            1,
            t0 + 4 * HOUR + 10 * MIN,
            "breach",
            json!({ "due_at": t0 + 4 * HOUR, "overdue_ms": 10 * MIN }),
        ),
        // INC-2: 1 on time, 1 late (not on time), 1 from before issue 4 (no on_time), 1 missed.
        update(2, t0 + 2 * DAY + 5 * MIN, true),
        update(2, t0 + 2 * DAY + 50 * MIN, false),
        event(2, t0 + 2 * DAY + 51 * MIN, "update", json!({ "known": "old style" })),
        due(2, t0 + 2 * DAY + 40 * MIN),
        // INC-3: reopened, 1 on time.
        event(
            3,
            t0 + 3 * DAY + HOUR,
            "status",
            json!({ "from": "resolved", "to": "investigating", "reopened": true }),
        ),
        update(3, t0 + 3 * DAY + 2 * HOUR, true),
        // INC-4: 2 missed, 1 breach.
        due(4, t0 + 4 * DAY + HOUR),
        due(4, t0 + 4 * DAY + 2 * HOUR),
        event(
            4,
            t0 + 4 * DAY + 2 * HOUR,
            "breach",
            json!({ "due_at": t0 + 4 * DAY + HOUR, "overdue_ms": HOUR }),
        ),
        // INC-5 (canceled): ignored.
        update(5, t0 + 5 * DAY + 5 * MIN, true),
        due(5, t0 + 5 * DAY + 6 * MIN),
        // Previous week: INC-7 2 on time; INC-9 1 on time, 1 missed.
        update(7, t0, true),
        update(7, t0 + 10 * MIN, true),
        update(9, t0 - 3 * DAY + 10 * MIN, true),
        due(9, t0 - 3 * DAY + 40 * MIN),
        // INC-8 (next week): ignored.
        update(8, t0 + 7 * DAY + MIN, true),
    ];
    (incidents, events)
}

async fn fixture_db() -> TestDb {
    let db = db().await;
    let (incidents, events) = fixture();
    db.insert_fixtures(&incidents, &events).await.unwrap();
    db
}

fn stats(count: i64, sum_min: i64, median_min: i64, p90_min: i64) -> DurationStats {
    DurationStats {
        count,
        sum_ms: sum_min * MIN,
        median_ms: Some(median_min * MIN),
        p90_ms: Some(p90_min * MIN),
    }
}

#[tokio::test]
async fn weekly_figures_match_the_hand_computed_ones() {
    let db = fixture_db().await;
    let r = Report::build(&db, &policy(), week(), None, now()).await.unwrap();
    assert_eq!(r.period.from.timestamp_millis(), t0());
    assert_eq!(r.period.to.timestamp_millis(), t0() + 7 * DAY);
    let c = &r.current;

    // In the week: INC-1, 2, 3, 4, 6 (INC-5 canceled; INC-7 and 9 the week before; INC-8 after).
    assert_eq!(
        (c.incidents, c.canceled, c.open),
        (5, 1, 2),
        "open: INC-3 (reopened), INC-4"
    );
    let sev: Vec<i64> = c.by_severity.iter().map(|(_, n)| *n).collect();
    assert_eq!(sev, [1, 2, 1, 1], "SEV1: 1; SEV2: 2, 4; SEV3: 3; SEV4: 6");
    let status: Vec<(&str, i64)> = c.by_status.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    assert_eq!(
        status,
        [
            ("investigating", 2),
            ("identified", 0),
            ("mitigated", 0),
            ("resolved", 2),
            ("closed", 1)
        ]
    );

    // TTA: 5, 15, 10, 20 (INC-4 never acknowledged) → sorted 5 10 15 20; median = rank
    // ceil(0.5 × 4) = 2 → 10; p90 = rank ceil(0.9 × 4) = 4 → 20; mean 50 / 4 = 12.5.
    assert_eq!(c.tta, stats(4, 50, 10, 20));
    assert_eq!(c.tta.mean_ms(), Some(12 * MIN + 30_000));
    // TTM: 120 (from the impact start, 30 min before declaring), 30, 40, 120 → 30 40 120 120;
    // median rank 2 → 40; p90 rank 4 → 120; mean 310 / 4 = 77.5.
    assert_eq!(c.ttm, stats(4, 310, 40, 120));
    // TTR: 180, 60, 200 (INC-3's resolution was undone by the reopening) → 60 180 200;
    // median rank ceil(1.5) = 2 → 180; p90 rank ceil(2.7) = 3 → 200; mean 440 / 3 min.
    assert_eq!(c.ttr, stats(3, 440, 180, 200));
    assert_eq!(c.ttr.mean_ms(), Some(8_800_000), "440 × 60,000 / 3");

    // Compliance: on time 2 (INC-1) + 1 (INC-2; its late and old-style updates do not count)
    // + 1 (INC-3) = 4; missed 1 (INC-1) + 1 (INC-2) + 2 (INC-4) = 4 → 4 / 8 = 50 %.
    assert_eq!(c.compliance, Compliance { on_time: 4, missed: 4 });
    assert_eq!(c.compliance.ratio(), Some(0.5));
    assert_eq!(c.breaches, 2, "INC-1 and INC-4; the repeat reminder is not a breach");

    // Footprint: customers 100 + 50 (INC-5's 999 is canceled); merchants 10; transactions 1000.
    assert_eq!((c.customers, c.merchants, c.transactions), (150, 10, 1000));
    // Impact: 120 + 45 + 40 + 4,320 + 120 = 4,645 min.
    assert_eq!(c.impact_ms, 4645 * MIN);

    // Per service line (each incident counts for each of its lines):
    let row = |name: &str| c.services.iter().find(|s| s.service == name).unwrap().clone();
    let payments = row("payments"); // INC-1, INC-2
    assert_eq!((payments.incidents, payments.impact_ms), (2, 165 * MIN), "120 + 45");
    assert_eq!(
        payments.compliance,
        Compliance { on_time: 3, missed: 2 },
        "2 + 1 / 1 + 1"
    );
    assert_eq!(payments.breaches, 1);
    // 2 incidents → B, 165 min → B, 60 % → D: worst is D.
    assert_eq!(payments.grade, Some(Grade::D));
    let checkout = row("checkout"); // INC-1, INC-3
    assert_eq!((checkout.incidents, checkout.impact_ms), (2, 160 * MIN), "120 + 40");
    assert_eq!(checkout.compliance, Compliance { on_time: 3, missed: 1 });
    assert_eq!(checkout.grade, Some(Grade::C), "B, B, 75 % → C");
    let settlement = row("settlement"); // INC-6
    assert_eq!((settlement.incidents, settlement.impact_ms), (1, 120 * MIN));
    assert_eq!(settlement.compliance.ratio(), None);
    assert_eq!(settlement.grade, Some(Grade::B), "1 → A, 120 min → B, n/a");
    assert_eq!((row("portal").incidents, row("portal").grade), (0, Some(Grade::A)));
    let app = row("app"); // INC-4
    assert_eq!((app.incidents, app.impact_ms, app.breaches), (1, 4320 * MIN, 1));
    assert_eq!(app.grade, Some(Grade::D), "4,320 min and 0 % compliance");
    let names: Vec<&str> = c.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["payments", "checkout", "settlement", "portal", "app"]);

    // The week before (2026-11-09..15): INC-7 and INC-9.
    let p = &r.previous;
    assert_eq!((p.incidents, p.canceled, p.open), (2, 0, 0));
    assert_eq!(p.tta, stats(2, 30, 10, 20), "10, 20: median rank 1, p90 rank 2");
    assert_eq!(p.ttm, stats(2, 90, 30, 60), "60, 30");
    assert_eq!(p.ttr, stats(2, 140, 50, 90), "90, 50");
    assert_eq!(p.compliance, Compliance { on_time: 3, missed: 1 });
    assert_eq!(p.impact_ms, 90 * MIN);

    // Changes.
    let h = |key: &str| r.headlines().into_iter().find(|h| h.key == key).unwrap();
    assert_eq!(render::change(&h("incidents")), "▲3");
    assert_eq!(render::change(&h("time_to_acknowledge_median")), "=");
    assert_eq!(render::change(&h("time_to_mitigate_median")), "▲10m", "40 − 30");
    assert_eq!(render::change(&h("update_sla_compliance")), "▼25.0 pts", "50 % − 75 %");
    assert_eq!(render::change(&h("breaches")), "▲2");

    // Follow-ups of INC-1, 2, 3, 4, 6: a b c (INC-1), d e (INC-2), f (INC-3), none (INC-4), h
    // (INC-6) = 7; g (INC-5, canceled) and k (INC-8, after the week) are not counted.
    // Open: a b d f = 4; overdue: a (due_at the 24th 05:00) and b (the 25th 05:00) ≤ now (the
    // 25th 12:00) = 2 (d is due later, f has no due day, c and e are closed); done: c h = 2;
    // won't do: e = 1.
    let follow_ups = |total, open, overdue, done, wont_do| FollowUps {
        total,
        open,
        overdue,
        done,
        wont_do,
    };
    assert_eq!(c.follow_ups, follow_ups(7, 4, 2, 2, 1));
    // The week before: INC-7's i (open, overdue) and j (done), INC-9's l (won't do).
    assert_eq!(p.follow_ups, follow_ups(3, 1, 1, 1, 1));
    assert_eq!(render::change(&h("follow_ups")), "▲4", "7 − 3");
    assert_eq!(render::change(&h("follow_ups_open")), "▲3", "4 − 1");
    assert_eq!(render::change(&h("follow_ups_overdue")), "▲1", "2 − 1");
    assert_eq!(render::change(&h("follow_ups_done")), "▲1", "2 − 1");
    assert_eq!(render::change(&h("follow_ups_wont_do")), "=", "1 − 1");
}

#[tokio::test]
async fn overdue_follow_ups_are_counted_as_of_the_time_the_report_is_made() {
    let db = fixture_db().await;
    let overdue = |r: &Report| (r.current.follow_ups.overdue, r.previous.follow_ups.overdue);
    // The 24th 04:59:59.999 UTC: a (due_at the 24th 05:00) is not overdue yet, nor b; i (the
    // 20th 05:00) is.
    let before = Report::build(&db, &policy(), week(), None, utc("2026-11-24T04:59:59.999Z"))
        .await
        .unwrap();
    assert_eq!(overdue(&before), (0, 1));
    // Exactly a's due time: overdue from that instant on (due_at ≤ now).
    let at = Report::build(&db, &policy(), week(), None, utc("2026-11-24T05:00:00Z"))
        .await
        .unwrap();
    assert_eq!(overdue(&at), (1, 1), "a");
    // The 28th 05:00 UTC: d (due the 27th) too: a b d. Open and the other counts do not move.
    let later = Report::build(&db, &policy(), week(), None, utc("2026-11-28T05:00:00Z"))
        .await
        .unwrap();
    assert_eq!(overdue(&later), (3, 1), "a b d");
    assert_eq!((later.current.follow_ups.total, later.current.follow_ups.open), (7, 4));
}

#[tokio::test]
async fn a_service_filter_keeps_only_that_lines_incidents() {
    let db = fixture_db().await;
    let r = Report::build(&db, &policy(), week(), Some("payments"), now())
        .await
        .unwrap();
    let c = &r.current;
    // INC-1 and INC-2; INC-5 (payments) is canceled.
    assert_eq!((c.incidents, c.canceled), (2, 1));
    // TTA 5, 15: median rank 1 → 5, p90 rank 2 → 15.
    assert_eq!(c.tta, stats(2, 20, 5, 15));
    assert_eq!(c.compliance, Compliance { on_time: 3, missed: 2 });
    assert_eq!(c.services.len(), 1);
    assert_eq!(r.previous.incidents, 1, "INC-7");
    // Follow-ups of INC-1 (a b c) and INC-2 (d e); INC-5's g is canceled, INC-3's f is checkout's.
    // Open a b d, overdue a b, done c, won't do e.
    let follow_ups = |total, open, overdue, done, wont_do| FollowUps {
        total,
        open,
        overdue,
        done,
        wont_do,
    };
    assert_eq!(c.follow_ups, follow_ups(5, 3, 2, 1, 1));
    assert_eq!(r.previous.follow_ups, follow_ups(2, 1, 1, 1, 0), "INC-7's i and j");
    // checkout: INC-1 (a b c) and INC-3 (f); the week before, INC-9 (l).
    let checkout = Report::build(&db, &policy(), week(), Some("checkout"), now())
        .await
        .unwrap();
    assert_eq!(checkout.current.follow_ups, follow_ups(4, 3, 2, 1, 0));
    assert_eq!(checkout.previous.follow_ups, follow_ups(1, 0, 0, 0, 1));
    // app: INC-4 has none.
    let app = Report::build(&db, &policy(), week(), Some("app"), now()).await.unwrap();
    assert_eq!(app.current.follow_ups, FollowUps::default());
    // A name that is a prefix of another line, or has LIKE's wildcard, matches nothing here.
    let none = Report::build(&db, &policy(), week(), Some("pay_ents"), now())
        .await
        .unwrap();
    assert_eq!(none.current.incidents, 0);
}

#[tokio::test]
async fn an_empty_period_reports_zeros_and_na() {
    let db = fixture_db().await;
    let spec = PeriodSpec::parse("2025-01-01..2025-01-07").unwrap();
    let r = Report::build(&db, &policy(), spec, None, now()).await.unwrap();
    let c = &r.current;
    assert_eq!((c.incidents, c.canceled, c.open, c.impact_ms), (0, 0, 0, 0));
    assert_eq!(c.tta, DurationStats::default());
    assert_eq!(c.tta.mean_ms(), None);
    assert_eq!(c.compliance.ratio(), None);
    assert!(c.services.iter().all(|s| s.grade == Some(Grade::A)));
    assert_eq!(c.follow_ups, FollowUps::default());
    let md = render::render(&r, Format::Markdown);
    assert!(md.contains("| Update-SLA compliance | n/a | n/a |  |"), "{md}");
    assert!(md.contains("| Time to resolve, median | n/a | n/a |  |"), "{md}");
}

#[tokio::test]
async fn the_chart_bins_incidents_by_local_day() {
    let db = fixture_db().await;
    let r = Report::build(&db, &policy(), week(), None, now()).await.unwrap();
    let days = r.daily(&db).await.unwrap();
    assert_eq!(days.len(), 7);
    let per_day: Vec<[i64; 4]> = days.iter().map(|(_, d)| d.incidents).collect();
    assert_eq!(
        per_day,
        [
            [1, 0, 0, 0], // Mon 16: INC-1 (INC-7 at 23:30 on the 15th is not here)
            [0, 0, 0, 0],
            [0, 1, 0, 0], // Wed 18: INC-2
            [0, 0, 1, 0], // Thu 19: INC-3
            [0, 1, 0, 0], // Fri 20: INC-4
            [0, 0, 0, 0], // Sat 21: INC-5 is canceled
            [0, 0, 0, 1], // Sun 22, 23:59 local: INC-6
        ]
    );
    assert_eq!(days[0].1.mean_ttm_ms(), Some(120 * MIN));
    assert_eq!(days[4].1.mean_ttm_ms(), None, "INC-4 is not mitigated");
    let png = incident_bot::report::chart::render(&render::title(&r), &days).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[tokio::test]
async fn renderings_agree_and_name_no_incident() {
    let db = fixture_db().await;
    let r = Report::build(&db, &policy(), week(), None, now()).await.unwrap();
    let md = render::render(&r, Format::Markdown);
    assert!(md.contains("| Incidents | 5 | 2 | ▲3 |"), "{md}");
    assert!(
        md.contains("| Time to resolve, mean | 2h 27m | 1h 10m | ▲1h 17m |"),
        "{md}"
    );
    assert!(md.contains("| payments | 2 | ▲1 | 165 | 60.0% (3/5) | 1 | D |"), "{md}");
    let csv = render::render(&r, Format::Csv);
    assert!(
        csv.contains("summary,,time_to_mitigate_mean_minutes,77.50,45.00,32.50\n"),
        "{csv}"
    );
    assert!(csv.contains("service,app,impact_minutes,4320,0,4320\n"), "{csv}");
    for line in [
        "| Follow-ups | 7 | 3 | ▲4 |",
        "| Open follow-ups | 4 | 1 | ▲3 |",
        "| Overdue follow-ups | 2 | 1 | ▲1 |",
        "| Done follow-ups | 2 | 1 | ▲1 |",
        "| Won't-do follow-ups | 1 | 1 | = |",
    ] {
        assert!(md.contains(line), "{line} in {md}");
    }
    for line in [
        "summary,,follow_ups,7,3,4\n",
        "summary,,follow_ups_open,4,1,3\n",
        "summary,,follow_ups_overdue,2,1,1\n",
        "summary,,follow_ups_done,2,1,1\n",
        "summary,,follow_ups_wont_do,1,1,0\n",
    ] {
        assert!(csv.contains(line), "{line} in {csv}");
    }
    let blocks = incident_bot::slack::report::report_blocks(&r).to_string();
    assert!(
        blocks.contains("*Follow-ups*\\nopen 4 ▲3 · overdue 2 ▲1\\nin all 7 ▲4 · done 2 ▲1 · won't do 1 ="),
        "{blocks}"
    );
    let json: serde_json::Value = serde_json::from_str(&render::render(&r, Format::Json)).unwrap();
    assert_eq!(json["summary"]["time_to_acknowledge_median_ms"]["value"], 10 * MIN);
    assert_eq!(json["summary"]["update_sla_compliance"]["value"], 0.5);
    assert_eq!(json["summary"]["update_sla_compliance"]["previous"], 0.75);
    assert_eq!(json["by_severity"]["SEV2"]["value"], 2);
    assert_eq!(json["period"]["from"], "2026-11-16T05:00:00+00:00");
    assert_eq!(
        json["summary"]["follow_ups_overdue"],
        json!({ "value": 2, "previous": 1, "change": 1 }),
        "counts change by whole numbers"
    );
    assert_eq!(json["summary"]["follow_ups_wont_do"]["change"], json!(0));
    assert_eq!(json["summary"]["incidents"]["change"].to_string(), "3");
    assert_eq!(json["summary"]["update_sla_compliance"]["change"], -0.25);
    // The header's time is local (the report's zone), named; durations are whole minutes.
    assert!(
        md.contains(&format!(
            "generated {}",
            render::local_time(now(), chrono_tz::America::New_York)
        )) && md.contains("(America/New_York)\n"),
        "{md}"
    );
    assert!(!md.contains(" UTC"), "{md}");
    for line in md.lines().filter(|l| l.starts_with("| Time to")) {
        assert!(
            !line.split('|').any(|cell| cell.trim().ends_with('s')),
            "durations are rounded to the minute: {line}"
        );
    }
    // The period rows read like the others: metric, this period, the previous one.
    for line in [
        "period,,first_day,2026-11-16,2026-11-09,\n",
        "period,,last_day,2026-11-22,2026-11-15,\n",
        "period,,days,7,7,\n",
        "period,,timezone,America/New_York,America/New_York,\n",
    ] {
        assert!(csv.contains(line), "{line} in {csv}");
    }
    for text in [&md, &csv, &json.to_string(), &blocks] {
        assert!(!text.contains("fixture"), "no incident title or follow-up text appears");
        assert!(!text.contains("INC-"), "no incident is named");
        assert!(!text.contains("U0OWNER"), "no follow-up owner is named");
    }
}

#[tokio::test]
async fn sql_percentiles_match_the_reference_on_many_values() {
    let db = db().await;
    // 37 incidents with acknowledgement times 7k mod 60 minutes (and some ties).
    let durations: Vec<i64> = (0..37).map(|k| (7 * k % 60) * MIN + k % 3).collect();
    let incidents: Vec<FixtureIncident> = durations
        .iter()
        .enumerate()
        .map(|(k, d)| FixtureIncident {
            number: k as i64 + 1,
            declared_at: t0() + k as i64 * HOUR,
            acknowledged_at: Some(t0() + k as i64 * HOUR + d),
            ..FixtureIncident::default()
        })
        .collect();
    db.insert_fixtures(&incidents, &[]).await.unwrap();
    let r = Report::build(&db, &policy(), week(), None, now()).await.unwrap();
    assert_eq!(r.current.tta, DurationStats::of(&durations));
}

#[tokio::test]
async fn the_cli_prints_a_report_and_writes_the_chart_without_slack_tokens() {
    // The binary reads DATABASE_URL; on SQLite the fixture goes into a file it can open.
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = match common::database() {
        Some((url, schema)) => (url, Some(schema)),
        None => (format!("sqlite://{}", dir.path().join("cli.db").display()), None),
    };
    let db = Db::connect_with(&url, schema.as_deref()).await.unwrap();
    let (incidents, events) = fixture();
    db.insert_fixtures(&incidents, &events).await.unwrap();
    db.close().await;
    let url = match &schema {
        // The schema is chosen per connection: point the binary's search_path at it.
        Some(schema) => format!(
            "{url}{}options=-csearch_path%3D{schema}",
            if url.contains('?') { "&" } else { "?" }
        ),
        None => url,
    };
    let chart = dir.path().join("chart.png");
    let run = |args: &[&str]| common::run_cli(&url, &[("INCIDENT_BOT_TIMEZONE", "America/New_York")], args);
    let chart_arg = chart.display().to_string();
    let (code, out, err) = run(&[
        "report",
        "--from",
        "2026-11-16",
        "--to",
        "2026-11-22",
        "--format",
        "csv",
        "--chart",
        &chart_arg,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("section,item,metric,value,previous,change\n"), "{out}");
    assert!(out.contains("summary,,incidents,5,2,3\n"), "{out}");
    assert!(
        out.contains("summary,,update_sla_compliance,0.5000,0.7500,-0.2500\n"),
        "{out}"
    );
    assert_eq!(&std::fs::read(&chart).unwrap()[1..4], b"PNG");

    let (code, out, _) = run(&[
        "report",
        "--from",
        "2026-11-16",
        "--to",
        "2026-11-22",
        "--service",
        "app",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("# Incident report · app: 2026-11-16 – 2026-11-22 (America/New_York)"),
        "{out}"
    );
    for (args, problem) in [
        (
            vec!["report", "--from", "2026-11-22", "--to", "2026-11-16"],
            "before it starts",
        ),
        (vec!["report", "--period", "daily"], "weekly or monthly"),
        (vec!["report", "--format", "xml"], "not a format"),
        (vec!["report", "--service", "nope"], "not a service line"),
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(problem), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn the_slash_command_answers_with_the_report_and_shares_the_chart_when_public() {
    let policy = Policy {
        timezone: chrono_tz::America::New_York,
        ..incident_bot::demo::demo_policy()
    };
    let stack = common::stack_with(policy, incident_bot::demo::fast_options()).await;
    let (incidents, events) = fixture();
    stack.db.insert_fixtures(&incidents, &events).await.unwrap();
    let sb = &stack.sandbox;

    // Ephemeral by default, in the ack (the fixture is small, so it is fast).
    let ack = sb
        .slash_command("U0ALICE", "C0GENERAL", "report 2026-11-16..2026-11-22")
        .await
        .unwrap();
    let payload = ack.payload.expect("the report is in the ack");
    assert_ne!(payload["response_type"], "in_channel");
    let text = payload["text"].as_str().unwrap();
    assert!(
        text.contains("5 incidents") && text.contains("compliance 50.0%"),
        "{text}"
    );
    let blocks = payload["blocks"].to_string();
    for expected in [
        "*Incidents*\\n5 ▲3",
        "*Canceled* (excluded)\\n1 ▲1",
        "50.0% ▼25.0 pts (4/8 on time)",
        // (Overdue depends on the real clock here; open and total do not.)
        "*Follow-ups*\\nopen 4 ▲3 · overdue ",
        "\\nin all 7 ▲4 · done 2 ▲1 · won't do 1 =",
    ] {
        assert!(blocks.contains(expected), "{expected} in {blocks}");
    }
    assert!(
        !blocks.contains("INC-") && !blocks.contains("fixture"),
        "no incident is named"
    );
    assert!(sb.files().is_empty(), "no chart for an ephemeral report");

    // `public`: in the channel, with the chart shared there.
    let ack = sb
        .slash_command(
            "U0ALICE",
            incident_bot::demo::ANNOUNCE_CHANNEL,
            "report public 2026-11-16..2026-11-22 service:payments",
        )
        .await
        .unwrap();
    let payload = ack.payload.expect("the report is in the ack");
    assert_eq!(payload["response_type"], "in_channel");
    assert!(payload["text"].as_str().unwrap().contains("· payments"), "{payload}");
    let files = incident_bot::demo::wait_for(std::time::Duration::from_secs(5), || async {
        let f = sb.files();
        (!f.is_empty()).then_some(f)
    })
    .await
    .expect("the chart is shared");
    let (channel, title, bytes) = &files[0];
    assert_eq!(channel, incident_bot::demo::ANNOUNCE_CHANNEL);
    assert!(title.contains("2026-11-16"), "{title}");
    assert_eq!(&bytes[1..4], b"PNG");

    // Mistakes get the usage.
    for (text, problem) in [
        ("report 2026-11-22..2026-11-16", "before it starts"),
        ("report 2025-01-01..2026-06-30", "at most 366 days"),
        ("report 2026-11-31..2026-12-01", "not a date"),
        ("report service:nope", "not a service line"),
    ] {
        let answer = stack.command("U0ALICE", "C0GENERAL", text).await.unwrap();
        assert!(answer.contains(problem), "{text}: {answer}");
    }
    common::assert_slack_happy(&stack);
}

#[tokio::test]
async fn update_sla_counters_follow_appended_events_and_ignore_text_that_is_not_json() {
    let db = db().await;
    let incident = FixtureIncident {
        number: 1,
        declared_at: t0(),
        ..FixtureIncident::default()
    };
    db.insert_fixtures(&[incident], &[]).await.unwrap();
    let id = db
        .incident_by_number(incident_bot::incident::model::IncidentNumber(1))
        .await
        .unwrap()
        .unwrap()
        .id
        .0;
    // Written the way every event is (`INSERT_EVENT`), including details that are not JSON: the
    // triggers keeping the counters must never make an insert fail.
    let insert = "INSERT INTO events (incident_id, at, actor, kind, details) VALUES ($1, $2, 'U0X', $3, $4)";
    let rows = [
        ("update", "not json"),
        ("reminder", "{\"stage\": \"due\""),
        ("update", "{\"on_time\": true, \"known\": \"spaced out\"}"),
        ("update", "{\"on_time\":false}"),
        ("update", "{\"on_time\":\"true\"}"),
        ("update", "{\"on_time\":1}"),
        ("reminder", "{\"stage\":\"repeat\"}"),
        ("reminder", "{\"stage\":\"due\",\"due_at\":1}"),
        ("breach", "{}"),
        ("note", "{\"on_time\":true}"),
    ];
    for (kind, details) in rows {
        match &*db {
            Db::Sqlite(pool) => sqlx::query(insert)
                .bind(id)
                .bind(t0())
                .bind(kind)
                .bind(details)
                .execute(pool)
                .await
                .map(|_| ()),
            Db::Postgres(pool) => sqlx::query(insert)
                .bind(id)
                .bind(t0())
                .bind(kind)
                .bind(details)
                .execute(pool)
                .await
                .map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{kind} {details}: {e}"));
    }
    let r = Report::build(&db, &policy(), week(), None, now()).await.unwrap();
    // On time: only the real `true` (not false, "true" or 1, nor a note's); missed:
    // only the well-formed `due` reminder; one breach.
    assert_eq!(r.current.compliance, Compliance { on_time: 1, missed: 1 });
    assert_eq!(r.current.breaches, 1);
}

#[tokio::test]
async fn updates_posted_through_slack_count_for_compliance() {
    let stack = common::stack().await;
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Card payments failing",
            json!({ "spoc": "U0BOB" }),
        )
        .await
        .unwrap();
    let channel = stack.wait_ready(1, common::READY).await.unwrap();
    let form = stack.open_form("U0BOB", &channel, "update").await.unwrap();
    stack
        .sandbox
        .submit_view(
            "U0BOB",
            &form.id,
            incident_bot::demo::update_values("identified", "Bad deploy", "Card payments fail", "Rolling back"),
        )
        .await
        .unwrap();
    stack.settle().await;
    let r = Report::build(
        &stack.db,
        &stack.settings.policy,
        PeriodSpec::Last7Days,
        None,
        Utc::now(),
    )
    .await
    .unwrap();
    // Posted well within its SEV1 cadence: on time; nothing missed yet.
    assert_eq!(r.current.incidents, 1);
    assert_eq!(r.current.compliance, Compliance { on_time: 1, missed: 0 });
    assert_eq!(r.current.tta.count, 1, "the SPOC's first action acknowledged it");
}
