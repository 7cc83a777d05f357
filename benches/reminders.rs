//! Reminder scheduler benchmark (prints figures; asserts nothing).
//!
//! 10,000 open incidents whose first updates fall due over a 10-second window; the real
//! scheduler loop fires them. Prints fire lag (due → reminder recorded with its Slack job
//! enqueued) p50/p99/max, CPU time per 1,000 reminders, idle CPU of the sleeping scheduler, and
//! the database's plan for the due query. SQLite always; PostgreSQL too with
//! `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`.
//!
//! Then the same for overdue follow-ups: 10,000 follow-ups (5 on each of 2,000 incidents) whose
//! owners' reminders fall due over 10 s, fired by the same loop.
//!
//! `cargo bench --bench reminders`

use incident_bot::config::Policy;
use incident_bot::db::Db;
use incident_bot::incident::change::Rules;
use incident_bot::incident::model::*;
use incident_bot::reminder::{self, ReminderOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const INCIDENTS: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(10);

/// This process's user + system CPU time (Linux clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After the ')' the fields start at index 2 (state): utime is field 14, stime 15.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the real scheduler loop until `WINDOW` from `start` (plus 2 s) has passed, then `idle`
/// longer. Returns the CPU time spent while firing and while idle.
async fn fire_window(
    db: &Db,
    rules: Rules,
    start: chrono::DateTime<chrono::Utc>,
    idle: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let (wake, wake_outbox, stop) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let opts = ReminderOptions {
        max_sleep: Duration::from_secs(30),
        ..ReminderOptions::default()
    };
    let cpu_before = cpu_time();
    let scheduler = tokio::spawn(reminder::run(db.clone(), rules, wake, wake_outbox, stop.clone(), opts));
    let until_done = (start - chrono::Utc::now()).to_std().unwrap_or_default() + WINDOW + Duration::from_secs(2);
    tokio::time::sleep(until_done).await;
    let cpu_busy = cpu_time() - cpu_before;
    let idle_before = cpu_time();
    tokio::time::sleep(idle).await;
    let cpu_idle = cpu_time() - idle_before;
    stop.notify_one();
    scheduler.await?;
    Ok((cpu_busy, cpu_idle))
}

/// Prints the fire lag (fired − planned) percentiles of `fired` and the CPU per 1,000.
fn print_firing(label: &str, what: &str, fired: &[(i64, i64)], cpu_busy: Duration) {
    let mut lags: Vec<i64> = fired.iter().map(|(at, planned)| at - planned).collect();
    lags.sort_unstable();
    println!(
        "[{label}] fired {} {what}; fire lag (due → recorded + Slack job enqueued): p50 {} ms  p99 {} ms  max {} ms",
        fired.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(0)
    );
    println!(
        "[{label}] CPU while firing {what}: {:.0} ms total (bench process, 10 ms resolution) = {:.1} ms per 1,000",
        cpu_busy.as_secs_f64() * 1000.0,
        cpu_busy.as_secs_f64() * 1000.0 / (fired.len().max(1) as f64 / 1000.0)
    );
}

async fn run(label: &str, db: Db) -> anyhow::Result<()> {
    let mut policy = Policy::default();
    policy.severities[1].update_every = Duration::from_secs(30);
    policy.severities[1].escalate_after = Duration::ZERO;
    let slas = policy.slas();
    let load = Instant::now();
    for i in 0..INCIDENTS {
        let new = NewIncident {
            title: Title::parse(&format!("bench {i}")).unwrap(),
            severity: Severity::Sev2,
            services: vec![],
            description: String::new(),
            spoc: UserId::parse("U0BOB").unwrap(),
            declared_by: UserId::parse("U0ALICE").unwrap(),
            is_private: false,
            origin_channel: None,
        };
        db.declare(&new, &format!("bench:{i}"), chrono::Utc::now(), &slas)
            .await?;
    }
    println!(
        "[{label}] loaded {INCIDENTS} open incidents in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    // Then due times are spread evenly over WINDOW, starting 2 s from now.
    let start = chrono::Utc::now() + chrono::Duration::seconds(2);
    db.arm_clocks_for_bench(start, chrono::Duration::from_std(WINDOW)?)
        .await?;
    println!("[{label}] plan of the due query:");
    for line in db.explain_due_query().await? {
        println!("    {line}");
    }

    // Idle: afterwards every clock waits ~30 s for its repeat; the scheduler should be asleep.
    let (cpu_busy, cpu_idle) = fire_window(&db, policy.rules(), start, Duration::from_secs(5)).await?;
    print_firing(label, "reminders", &db.fired_reminders().await?, cpu_busy);
    println!(
        "[{label}] idle CPU over 5 s with {INCIDENTS} clocks waiting: {:.0} ms",
        cpu_idle.as_secs_f64() * 1000.0
    );
    Ok(())
}

const FOLLOW_UP_INCIDENTS: usize = 2_000;
const FOLLOW_UPS_EACH: usize = 5;

async fn run_follow_ups(label: &str, db: Db) -> anyhow::Result<()> {
    use incident_bot::db::DeclareOutcome;
    use incident_bot::incident::change::Change;
    use incident_bot::incident::followup::NewFollowUp;
    // Remind every 30 s: each follow-up fires once inside the measured window.
    let policy = Policy {
        follow_up_remind_every: Duration::from_secs(30),
        ..Policy::default()
    };
    let rules = policy.rules();
    let (alice, dave) = (UserId::parse("U0ALICE").unwrap(), UserId::parse("U0DAVE").unwrap());
    let load = Instant::now();
    for i in 0..FOLLOW_UP_INCIDENTS {
        let new = NewIncident {
            title: Title::parse(&format!("bench follow-ups {i}")).unwrap(),
            severity: Severity::Sev4,
            services: vec![],
            description: String::new(),
            spoc: alice.clone(),
            declared_by: alice.clone(),
            is_private: false,
            origin_channel: None,
        };
        let now = chrono::Utc::now();
        let (DeclareOutcome::Created(incident) | DeclareOutcome::Duplicate(incident)) =
            db.declare(&new, &format!("bench-fu:{i}"), now, &rules.slas).await?;
        let items = (0..FOLLOW_UPS_EACH)
            .map(|j| NewFollowUp {
                text: format!("action {j}"),
                owner: Some(dave.clone()),
                due: Some(now.date_naive()),
                link: None,
            })
            .collect();
        db.apply_change(incident.id, &Change::AddFollowUps(items), &alice, now, None, &rules)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let total = FOLLOW_UP_INCIDENTS * FOLLOW_UPS_EACH;
    println!(
        "[{label}] loaded {total} follow-ups on {FOLLOW_UP_INCIDENTS} incidents in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let start = chrono::Utc::now() + chrono::Duration::seconds(2);
    db.arm_follow_up_reminders_for_bench(start, chrono::Duration::from_std(WINDOW)?)
        .await?;
    let (cpu_busy, _) = fire_window(&db, rules, start, Duration::ZERO).await?;
    print_firing(
        label,
        "follow-up reminders",
        &db.fired_follow_up_reminders().await?,
        cpu_busy,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("incident-bot-bench-{}.db", uuid::Uuid::new_v4()));
    let db = Db::connect(&format!("sqlite://{}", file.display())).await?;
    run("SQLite", db).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let file = std::env::temp_dir().join(format!("incident-bot-bench-fu-{}.db", uuid::Uuid::new_v4()));
    let db = Db::connect(&format!("sqlite://{}", file.display())).await?;
    run_follow_ups("SQLite", db).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let db = Db::connect_with(&url, Some(&schema)).await?;
        run("PostgreSQL", db).await?;
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let db = Db::connect_with(&url, Some(&schema)).await?;
        run_follow_ups("PostgreSQL", db).await?;
    }
    println!("targets: lag p99 ≤ 1 s, idle CPU near zero");
    Ok(())
}
