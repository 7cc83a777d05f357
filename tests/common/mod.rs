//! Test harness: a sandbox + bot on SQLite, or on PostgreSQL when `TEST_DATABASE_URL` is set
//! (each test in a fresh schema).
#![allow(dead_code)]

use incident_bot::app::BotOptions;
use incident_bot::config::Policy;
use incident_bot::demo::{demo_policy, fast_options, LocalStack};
use std::time::Duration;

pub const READY: Duration = Duration::from_secs(10);

/// Which database this run uses: `Some((url, fresh schema))` on PostgreSQL, `None` on SQLite.
pub fn database() -> Option<(String, String)> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|url| (url, format!("t_{}", uuid::Uuid::new_v4().simple())))
}

pub async fn stack() -> LocalStack {
    stack_with(demo_policy(), fast_options()).await
}

pub async fn stack_with(policy: Policy, opts: BotOptions) -> LocalStack {
    logs();
    let db = database();
    LocalStack::start(db.as_ref().map(|(u, s)| (u.as_str(), Some(s.as_str()))), policy, opts)
        .await
        .expect("the sandbox and bot start")
}

/// Declares `title` with `severity` as alice with bob as SPOC; returns the incident and its
/// channel once the channel is ready.
pub async fn declared(
    stack: &LocalStack,
    title: &str,
    severity: &str,
) -> (incident_bot::incident::model::Incident, String) {
    declared_with(
        stack,
        title,
        serde_json::json!({ "spoc": "U0BOB", "severity": severity }),
    )
    .await
}

/// Declares `title` as alice with the declare form's `fields` (see [`LocalStack::declare`]);
/// returns the incident and its channel once the channel is ready.
pub async fn declared_with(
    stack: &LocalStack,
    title: &str,
    fields: serde_json::Value,
) -> (incident_bot::incident::model::Incident, String) {
    let before = stack.db.incident_count().await.unwrap();
    stack.declare("U0ALICE", "C0GENERAL", title, fields).await.unwrap();
    let channel = stack.wait_ready(before + 1, READY).await.unwrap();
    let incident = stack
        .db
        .incident_by_number(incident_bot::incident::model::IncidentNumber(before + 1))
        .await
        .unwrap()
        .unwrap();
    (incident, channel)
}

/// What every test should end with: Slack saw nothing it would reject, every ack was on time.
pub fn assert_slack_happy(stack: &LocalStack) {
    assert_eq!(
        stack.sandbox.block_kit_violations(),
        Vec::<String>::new(),
        "Block Kit violations"
    );
    assert_eq!(stack.sandbox.late_acks(), 0, "envelopes acked after the deadline");
}

/// `RUST_LOG=incident_bot=debug cargo test …` shows the bot's logs while debugging a test.
pub fn logs() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The kinds of an incident's timeline events, oldest first.
pub async fn event_kinds(stack: &LocalStack, id: incident_bot::incident::model::IncidentId) -> Vec<String> {
    stack
        .db
        .timeline(id)
        .await
        .expect("timeline readable")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Runs the `incident-bot` binary with only `PATH`, `DATABASE_URL=url` and `env` set; returns
/// its exit code, stdout and stderr.
pub fn run_cli(url: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incident-bot"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .envs(env.iter().copied())
        .output()
        .expect("the incident-bot binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `std::io::Write` into a shared buffer, for capturing logs.
#[derive(Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured JSON log lines.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The database made unavailable: on SQLite another connection holds the write lock
/// (`BEGIN IMMEDIATE`); on PostgreSQL `ACCESS EXCLUSIVE` locks on the incident tables.
/// Holds the lock from its own connection until dropped.
pub enum Lock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

pub async fn lock_database(db: &incident_bot::db::Db) -> Lock {
    match db {
        incident_bot::db::Db::Sqlite(pool) => {
            let opts = (*pool.connect_options()).clone();
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
                .await
                .unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            Lock::Sqlite(conn)
        }
        incident_bot::db::Db::Postgres(pool) => {
            let opts = (*pool.connect_options()).clone();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE incidents, events, outbox, handled_interactions IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            Lock::Postgres(conn)
        }
    }
}

pub async fn unlock(lock: Lock) {
    match lock {
        Lock::Sqlite(mut c) => sqlx::query("ROLLBACK").execute(&mut c).await.map(|_| ()).unwrap(),
        Lock::Postgres(mut c) => sqlx::query("ROLLBACK").execute(&mut c).await.map(|_| ()).unwrap(),
    }
}
