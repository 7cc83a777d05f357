//! Issue 5 figures: report time and memory on a large history. Prints numbers, asserts nothing
//! about time.
//!
//! 1. Generates 100,000 incidents and 1,000,000 timeline events over the two years before
//!    2026-11-23, and follow-ups for half of the incidents that are not canceled (1 to 4 each,
//!    about 123,000; deterministic; inserted through `Db::insert_fixtures`, 5,000 incidents a
//!    transaction).
//! 2. Times the weekly, monthly and yearly (365-day) report (`Report::build`: the period and the
//!    previous one, every figure) and the yearly chart's data (`Report::daily`): 10 runs each
//!    after one warm-up; min / median / max.
//! 3. Peak memory of each kind of report: `VmHWM` is reset (`/proc/self/clear_refs`) before it,
//!    so the figure is that report's own peak (with what the process already held).
//!
//! ```sh
//! cargo bench --bench reports                       # SQLite (a temp file)
//! cargo bench --bench reports -- --pg               # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
//! BENCH_DATABASE_URL=postgres://… cargo bench --bench reports
//! BENCH_INCIDENTS=10000 cargo bench --bench reports # a smaller history (events stay 10 per incident)
//! BENCH_SQLITE_FILE=/tmp/reports.db cargo bench --bench reports  # keep (and reuse) the SQLite data
//! BENCH_PG_SCHEMA=bench_kept cargo bench --bench reports -- --pg # keep (and reuse) the PostgreSQL data
//! ```
//! On PostgreSQL the data goes into a fresh schema `bench_<uuid>`, dropped at the end (unless kept).

use chrono::{DateTime, Utc};
use incident_bot::config::Policy;
use incident_bot::db::{Db, FixtureEvent, FixtureIncident};
use incident_bot::report::{FixtureFollowUp, PeriodSpec, Report};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const EVENTS_PER_INCIDENT: usize = 10;
const BATCH: usize = 5_000;
const RUNS: usize = 10;
const SERVICES: [&str; 5] = ["payments", "checkout", "settlement", "portal", "app"];
const MIN: i64 = 60_000;

fn end() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

/// One incident and its events, plausible enough to exercise every figure.
fn generate(rng: &mut StdRng, number: i64, span_ms: i64) -> (FixtureIncident, Vec<FixtureEvent>) {
    let declared_at = end().timestamp_millis() - rng.gen_range(0..span_ms);
    let severity = ["SEV1", "SEV2", "SEV2", "SEV3", "SEV3", "SEV3", "SEV4", "SEV4"][rng.gen_range(0..8)];
    let mut services = vec![SERVICES[rng.gen_range(0..5)].to_string()];
    if rng.gen_bool(0.3) {
        let other = SERVICES[rng.gen_range(0..5)].to_string();
        if other != services[0] {
            services.push(other);
        }
    }
    let roll: f64 = rng.gen();
    let (status, canceled) = if roll < 0.02 {
        ("canceled", true)
    } else if roll < 0.05 {
        ("investigating", false)
    } else if roll < 0.30 {
        ("resolved", false)
    } else {
        ("closed", false)
    };
    let open = status == "investigating";
    let acknowledged_at = rng.gen_bool(0.95).then(|| declared_at + rng.gen_range(MIN..30 * MIN));
    let impact_start = rng.gen_bool(0.3).then(|| declared_at - rng.gen_range(0..60 * MIN));
    let mitigated_at = (!open && !canceled).then(|| declared_at + rng.gen_range(10 * MIN..360 * MIN));
    let resolved_at = mitigated_at.map(|m| m + rng.gen_range(0..720 * MIN));
    let incident = FixtureIncident {
        number,
        severity: severity.into(),
        status: status.into(),
        services,
        is_private: rng.gen_bool(0.1),
        declared_at,
        acknowledged_at,
        mitigated_at,
        resolved_at,
        closed_at: (status == "closed").then(|| resolved_at.unwrap_or(declared_at) + 86_400_000),
        canceled_at: canceled.then(|| declared_at + 5 * MIN),
        impact_start,
        impact_end: mitigated_at.filter(|_| rng.gen_bool(0.5)),
        customers: rng.gen_bool(0.6).then(|| rng.gen_range(0..5_000)),
        merchants: rng.gen_bool(0.4).then(|| rng.gen_range(0..200)),
        transactions: rng.gen_bool(0.5).then(|| rng.gen_range(0..100_000)),
        ..FixtureIncident::default()
    };
    let events = (0..EVENTS_PER_INCIDENT)
        .map(|k| {
            let at = declared_at + k as i64 * 15 * MIN;
            let (kind, details) = match k {
                0 => ("declared", json!({ "severity": severity })),
                1 => ("acknowledged", json!({ "by": "U0BOB" })),
                _ => match rng.gen_range(0..10) {
                    0..=3 => (
                        "update",
                        json!({ "known": "x", "on_time": rng.gen_bool(0.9), "due_at": at }),
                    ),
                    4 | 5 => ("reminder", json!({ "stage": "due", "due_at": at, "late": false })),
                    6 => ("reminder", json!({ "stage": "repeat", "due_at": at, "late": false })),
                    7 => ("breach", json!({ "due_at": at, "overdue_ms": 10 * MIN, "late": false })),
                    8 => ("status", json!({ "from": "investigating", "to": "identified" })),
                    _ => ("note", json!({ "text": "looking at the dashboards", "link": null })),
                },
            };
            FixtureEvent {
                number,
                at,
                kind: kind.into(),
                details,
            }
        })
        .collect();
    (incident, events)
}

/// Follow-ups for half of the incidents that are not canceled: 1 to 4, due 3 to 30 days after
/// the declaration; an open incident's are open, a finished one's mostly done. From their own
/// random stream, so the incidents are the same with or without them.
fn follow_ups(rng: &mut StdRng, incident: &FixtureIncident) -> Vec<FixtureFollowUp> {
    if incident.status == "canceled" || !rng.gen_bool(0.5) {
        return vec![];
    }
    let open_incident = incident.status == "investigating";
    (0..rng.gen_range(1..=4))
        .map(|_| {
            let due_at = rng
                .gen_bool(0.8)
                .then(|| incident.declared_at + rng.gen_range(3..=30) * 86_400_000);
            let roll: f64 = rng.gen();
            let state = if open_incident || roll < 0.3 {
                "open"
            } else if roll < 0.9 {
                "done"
            } else {
                "wont_do"
            };
            FixtureFollowUp {
                due_at,
                state: state.into(),
                closed_at: (state != "open").then(|| incident.declared_at + rng.gen_range(1..=40) * 86_400_000),
                ..FixtureFollowUp::default()
            }
        })
        .collect()
}

/// `(VmRSS, VmHWM)` in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.1} ms · median {:.1} ms · max {:.1} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let incidents: usize = std::env::var("BENCH_INCIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pg_url = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::env::args()
                .any(|a| a == "--pg")
                .then(|| DEFAULT_PG_URL.to_string())
        });
    let dir = tempfile::tempdir()?;
    // BENCH_PG_SCHEMA keeps (and reuses) the loaded PostgreSQL schema.
    let kept_schema = std::env::var("BENCH_PG_SCHEMA").ok().filter(|s| !s.is_empty());
    let schema = kept_schema
        .clone()
        .unwrap_or_else(|| format!("bench_{}", uuid::Uuid::new_v4().simple()));
    let (db, backend) = match &pg_url {
        Some(url) => (Db::connect_with(url, Some(&schema)).await?, "PostgreSQL"),
        None => {
            // BENCH_SQLITE_FILE keeps the loaded database for the next run (and reuses it).
            let file = std::env::var("BENCH_SQLITE_FILE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| dir.path().join("reports.db"));
            (Db::connect(&format!("sqlite://{}", file.display())).await?, "SQLite")
        }
    };
    println!(
        "reports bench on {backend}: {incidents} incidents, {} events over 730 days",
        incidents * EVENTS_PER_INCIDENT
    );

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(5);
    let mut follow_up_rng = StdRng::seed_from_u64(6);
    let span = 730 * 86_400_000;
    let mut number = db.incident_count().await?;
    if number > 0 && number != incidents as i64 {
        anyhow::bail!("the database already holds {number} incidents; expected none or {incidents}");
    }
    while number < incidents as i64 {
        let mut batch = Vec::with_capacity(BATCH);
        let mut events = Vec::with_capacity(BATCH * EVENTS_PER_INCIDENT);
        for _ in 0..BATCH.min(incidents - number as usize) {
            number += 1;
            let (mut i, e) = generate(&mut rng, number, span);
            i.follow_ups = follow_ups(&mut follow_up_rng, &i);
            batch.push(i);
            events.extend(e);
        }
        db.insert_fixtures(&batch, &events).await?;
    }
    if let Db::Postgres(pool) = &db {
        // What autovacuum does after a bulk load: statistics, and the visibility map that lets
        // the report queries stay index-only.
        sqlx::query("VACUUM (ANALYZE) incidents, follow_ups")
            .execute(pool)
            .await?;
    }
    println!("  loaded in {:.1} s", started.elapsed().as_secs_f64());

    let policy = Policy {
        timezone: chrono_tz::Europe::London,
        ..Policy::default()
    };
    let now: DateTime<Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
    let year = PeriodSpec::parse("2025-11-23..2026-11-22").map_err(anyhow::Error::msg)?;
    let (rss_before, _) = memory();
    for (name, spec) in [
        ("weekly", PeriodSpec::Weekly),
        ("monthly", PeriodSpec::Monthly),
        ("yearly", year),
    ] {
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let warm = Report::build(&db, &policy, spec, None, now).await?;
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = Report::build(&db, &policy, spec, None, now).await?;
            times.push(t.elapsed());
            assert_eq!(r.current, warm.current);
        }
        let (_, peak) = memory();
        println!(
            "  {name:<8} report ({} incidents in the period, {} the period before; {} follow-ups, {} overdue): {}; peak RSS {}",
            warm.current.incidents,
            warm.previous.incidents,
            warm.current.follow_ups.total,
            warm.current.follow_ups.overdue,
            summary(times),
            if reset { format!("{peak:.1} MiB") } else { "n/a".into() }
        );
        if name == "yearly" {
            let mut times = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let t = Instant::now();
                let days = warm.daily(&db).await?;
                times.push(t.elapsed());
                assert_eq!(days.len(), 365);
            }
            println!("  yearly   chart data (365 daily bins):  {}", summary(times));
        }
    }
    let (rss_after, _) = memory();
    println!("  memory: RSS {rss_before:.1} MiB before the reports, {rss_after:.1} MiB after");

    if let (Db::Postgres(pool), None) = (&db, &kept_schema) {
        // The schema name is generated above from [a-z0-9_].
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(pool)
            .await?;
    }
    db.close().await;
    Ok(())
}
