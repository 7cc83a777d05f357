//! The only module that knows SQL. One [`Db`] handle over SQLite (default) or PostgreSQL
//! (several replicas); the same SQL text runs on both (`$1` placeholders work in sqlx-sqlite).
//!
//! Times are stored as unix epoch milliseconds (BIGINT) so that comparisons and arithmetic are
//! identical on both backends; conversion to `DateTime<Utc>` happens here and nowhere else.

mod alerts;
mod calendar;
mod changes;
mod comms;
mod follow_ups;
mod group;
mod incidents;
mod outbox;
mod reminders;
mod report_fires;
mod reports;
mod vendors;
mod writes;

pub use alerts::{FixtureAlert, Ingested, SyncPolicy};
pub use calendar::{CalendarRefused, ChangeFigures, ChangeJob, ChangeToStore, Moved};
pub use changes::{jobs_for, Refused};
pub use incidents::DeclareOutcome;
pub use outbox::{DoneJob, JobUpdate, NewJob, BOT_ACTOR};
pub use report_fires::SlotClaim;
pub use reports::{FixtureEvent, FixtureIncident, ReportScope};
pub use vendors::VendorEvent;
pub(crate) use vendors::{enqueue_vendor_resolve_ask, replan_vendor_chases};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// SQLite's write-ahead log may grow to this many pages before a commit checkpoints it
/// itself (SQLite's default is 1,000); see [`Db::checkpoint_every`].
const WAL_BACKSTOP_PAGES: u32 = 10_000;

/// What read-only commands say when the schema is behind (or absent).
pub const NOT_MIGRATED: &str = "database not migrated; run `incident-bot migrate`";

/// A connection pool on one of the two supported backends.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: one SQL text, compiled per backend.
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// [`with_pool!`] for a write that is one statement outside a transaction (a claim, a lease, a
/// sync's bookkeeping): it takes the SQLite write turn for that statement too, so it never
/// holds the file's lock while a person's transaction sleeps in the busy handler behind it.
macro_rules! write_alone {
    ($db:expr, |$pool:ident| $body:expr) => {{
        let _turn = $db.writer().await;
        $crate::db::with_pool!($db, |$pool| $body)
    }};
}
pub(crate) use write_alone;

/// Begins a write transaction on `$pool` in a method of [`Db`], after taking the process's
/// write turn on SQLite ([`Db::writer`]): `let (_writer, mut tx) = begin_write!(self, pool);`
/// (the turn is released after the transaction ends, committed or dropped).
macro_rules! begin_write {
    ($db:expr, $pool:ident) => {{
        let turn = $db.writer().await;
        (turn, $pool.begin().await?)
    }};
}
pub(crate) use begin_write;

/// One SQLite database file's write turn (see [`Db::writer`]).
#[derive(Default)]
struct WriteTurns {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Held by the background writer waiting for, or holding, `turn`.
    background: Arc<tokio::sync::Mutex<()>>,
    /// Changes waiting for the next group commit ([`Db::apply_change`]).
    changes: changes::ChangeQueue,
    /// Declarations waiting for the next group commit ([`Db::declare`]).
    declarations: incidents::DeclareQueue,
}

/// A writer's turn on an SQLite database file; the next writer goes when it is dropped.
pub struct WriteTurn {
    // Dropped in this order: the turn, then the background gate.
    _turn: tokio::sync::OwnedMutexGuard<()>,
    _background: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The write turns of each SQLite database file this process has open: one per file, whichever
/// pools it has.
fn sqlite_write_turns(file: &std::path::Path) -> Arc<WriteTurns> {
    static TURNS: std::sync::LazyLock<std::sync::Mutex<HashMap<std::path::PathBuf, Arc<WriteTurns>>>> =
        std::sync::LazyLock::new(Default::default);
    let mut turns = TURNS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = turns.get(file) {
        return known.clone();
    }
    turns.entry(file.to_path_buf()).or_default().clone()
}

/// The head of a transaction that is one statement text on SQLite ([`OneTrip`]).
pub(crate) const ONE_TRIP_BEGIN: &str = "BEGIN IMMEDIATE; ";
/// Its tail.
pub(crate) const ONE_TRIP_COMMIT: &str = "; COMMIT";

/// An SQLite connection for a transaction whose `BEGIN` and `COMMIT` are inside its statement
/// texts ([`ONE_TRIP_BEGIN`] … [`ONE_TRIP_COMMIT`]), so that a whole transaction is one round trip
/// to the connection's thread instead of one per statement plus two. Each round trip is taken
/// under the write turn while every other writer waits, and the task holding the turn must be
/// scheduled again after each (on two busy cores, often milliseconds later).
///
/// sqlx does not know of such a transaction, so this guard ends it: a connection whose text
/// failed, or whose caller gave up before the answer came, is closed instead of going back to
/// the pool (closing rolls back whatever the text left open: a transaction is committed whole
/// or not at all).
pub(crate) struct OneTrip {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
}

impl OneTrip {
    pub(crate) async fn acquire(pool: &SqlitePool) -> Result<OneTrip, sqlx::Error> {
        Ok(OneTrip {
            conn: Some(pool.acquire().await?),
        })
    }

    /// The connection, for the texts of the transaction.
    pub(crate) fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        self.conn
            .as_mut()
            .expect("a OneTrip's connection is only taken when it is dropped")
    }

    /// `result` of the text that committed (or of one before it): on success the connection goes
    /// back to the pool; on failure it is closed (see [`OneTrip`]).
    pub(crate) fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.is_ok() {
            drop(self.conn.take());
        }
        result
    }
}

impl Drop for OneTrip {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Its thread stops the text under way at its next statement (nobody reads the
            // results any more) or finishes it, then closes the file handle, which rolls back
            // whatever was not committed.
            drop(conn.detach());
        }
    }
}

/// A pool of `connections` on an SQLite database (the main pool and the background lane's).
async fn sqlite_pool(options: SqliteConnectOptions, connections: u32) -> anyhow::Result<Db> {
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        // sqlx pings a connection each time it leaves the pool; on SQLite that is a round trip
        // to the connection's worker thread (about 0.25 ms here) before every query, under the
        // write turn too, and it can find nothing wrong: the file is local, nothing can hang up.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("cannot open the SQLite database")?;
    Ok(Db::Sqlite(pool))
}

/// A pool of `connections` on a PostgreSQL database (the main pool and the background lane's).
async fn postgres_pool(options: PgConnectOptions, connections: u32) -> anyhow::Result<Db> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(Db::Postgres(pool))
}

/// Whether `e` is PostgreSQL's "deadlock detected" (SQLSTATE 40P01): the transaction was rolled
/// back, and running it again is safe.
pub fn is_deadlock(e: &anyhow::Error) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01")
}

/// Takes the next number from counter `$name` (`incident_number`, `change_number`) inside
/// transaction `$tx` of [`Db`] `$db` and gives it to row `$id` of `$table`'s `number` column.
/// Taken last, just before the commit, so concurrent writers queue on the counter row for as
/// little as possible: on PostgreSQL the row stays locked until the commit's WAL flush, so take
/// and give are one statement (one round trip fewer while every other declaration waits);
/// SQLite has one writer at a time anyway and cannot update inside a `WITH`.
macro_rules! assign_next_number {
    ($db:expr, $tx:ident, $name:literal, $table:literal, $id:expr) => {{
        if $db.is_postgres() {
            sqlx::query($crate::db::next_number_sql!($name, $table))
                .bind($id)
                .execute(&mut *$tx)
                .await?;
        } else {
            let (number,): (i64,) = sqlx::query_as(concat!(
                "UPDATE counters SET value = value + 1 WHERE name = '",
                $name,
                "' RETURNING value"
            ))
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(concat!("UPDATE ", $table, " SET number = $1 WHERE id = $2"))
                .bind(number)
                .bind($id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use assign_next_number;

/// PostgreSQL: the statement that takes the next number from counter `$name` and gives it to
/// row `$1` of `$table` ([`assign_next_number!`]; a declaration also reads its row back with it).
macro_rules! next_number_sql {
    ($name:literal, $table:literal) => {
        concat!(
            "WITH next AS (UPDATE counters SET value = value + 1 WHERE name = '",
            $name,
            "' RETURNING value) UPDATE ",
            $table,
            " SET number = next.value FROM next WHERE ",
            $table,
            ".id = $1"
        )
    };
}
pub(crate) use next_number_sql;

/// The head of every insert into the timeline: `INSERT_EVENT` for one event, a change's writes
/// (`db/changes.rs`) for all of its events in one statement.
macro_rules! insert_events_into {
    () => {
        "INSERT INTO events (incident_id, at, actor, kind, details) "
    };
}
pub(crate) use insert_events_into;

/// Appends a timeline event: `(incident_id, at, actor, kind, details)`.
pub(crate) const INSERT_EVENT: &str = concat!(insert_events_into!(), "VALUES ($1, $2, $3, $4, $5)");

/// Appends a timeline event inside transaction `$tx` (incident id, at ms, actor, kind, details).
macro_rules! insert_event {
    ($tx:ident, $incident:expr, $at:expr, $actor:expr, $kind:expr, $details:expr) => {
        sqlx::query($crate::db::INSERT_EVENT)
            .bind($incident)
            .bind($at)
            .bind($actor)
            .bind($kind)
            .bind($details)
            .execute(&mut *$tx)
            .await
    };
}
pub(crate) use insert_event;

/// Stores a new follow-up inside transaction `$tx`: (incident id, [`NumberedFollowUp`], actor,
/// at ms, [`Rules`]). Its first overdue reminder is planned here, with the row.
///
/// [`NumberedFollowUp`]: crate::incident::change::NumberedFollowUp
/// [`Rules`]: crate::incident::change::Rules
macro_rules! insert_follow_up {
    ($tx:ident, $incident:expr, $numbered:expr, $actor:expr, $at:expr, $rules:expr) => {{
        let f = &$numbered.follow_up;
        let due_at = f
            .due
            .map(|d| $crate::incident::followup::overdue_from(d, $rules.timezone));
        let remind_at = $crate::incident::followup::first_reminder(f.owner.as_ref(), due_at)
            .filter(|_| $rules.follow_up_remind_every > chrono::Duration::zero());
        sqlx::query(
            "INSERT INTO follow_ups (incident_id, seq, text, owner, due_date, due_at, link, state, created_by, created_at, remind_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10)",
        )
        .bind($incident)
        .bind($numbered.seq)
        .bind(&f.text)
        .bind(f.owner.as_ref().map(|o| o.as_str()))
        .bind(f.due.map(|d| d.to_string()))
        .bind(due_at.map($crate::db::to_ms))
        .bind(f.link.as_deref())
        .bind($actor.as_str())
        .bind($at)
        .bind(remind_at.map($crate::db::to_ms))
        .execute(&mut *$tx)
        .await
    }};
}
pub(crate) use insert_follow_up;

/// Records an interaction's idempotency key: `(key, at)`; affects no row when it was seen.
pub(crate) const INSERT_HANDLED: &str =
    "INSERT INTO handled_interactions (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

/// Records idempotency key `$key` inside transaction `$tx`; evaluates to `false` when it was
/// recorded before (a redelivery or a double click).
macro_rules! first_time_in {
    ($tx:ident, $key:expr, $at:expr) => {
        sqlx::query($crate::db::INSERT_HANDLED)
            .bind($key)
            .bind($at)
            .execute(&mut *$tx)
            .await
            .map(|r| r.rows_affected() == 1)
    };
}
pub(crate) use first_time_in;

/// The head of every insert into the outbox: `INSERT_JOB` for one job, [`push_job_rows!`] for a
/// change's jobs in one statement (the values follow, one row per job).
macro_rules! insert_jobs_into {
    () => {
        "INSERT INTO outbox (incident_id, kind, payload, due_at, created_at) "
    };
}
pub(crate) use insert_jobs_into;

/// Enqueues an outbox job: `(incident_id, kind, payload, due_at)`; created now = due.
pub(crate) const INSERT_JOB: &str = concat!(insert_jobs_into!(), "VALUES ($1, $2, $3, $4, $4)");

/// Pushes onto query builder `$q` the insert of `$jobs` (`(JobKind, payload)`, as
/// [`jobs_for`] gives them) for incident `$incident`, due and created at `$at` ms. Rows take
/// their ids, so their run order, in the order listed.
macro_rules! push_job_rows {
    ($q:ident, $incident:expr, $jobs:expr, $at:expr) => {
        $q.push($crate::db::insert_jobs_into!());
        $q.push_values($jobs, |mut row, (kind, payload)| {
            row.push_bind($incident)
                .push_bind(kind.as_str())
                .push_bind(payload.to_string())
                .push_bind($at)
                .push_bind($at);
        });
    };
}
pub(crate) use push_job_rows;

/// Enqueues the outbox jobs for `$effects` by `$actor` inside transaction `$tx`.
macro_rules! insert_effect_jobs {
    ($tx:ident, $incident:expr, $effects:expr, $actor:expr, $at:expr) => {{
        // One statement for all of them: each statement is a round trip (a thread hop on
        // SQLite) on a person's ack path.
        let jobs = $crate::db::jobs_for($effects, $actor);
        if jobs.is_empty() {
            Ok(())
        } else {
            let mut q = sqlx::QueryBuilder::new("");
            $crate::db::push_job_rows!(q, $incident, &jobs, $at);
            q.build().execute(&mut *$tx).await.map(|_| ())
        }
    }};
}
pub(crate) use insert_effect_jobs;

/// The row-locking clause of a "claim due work" query: other replicas skip locked rows on
/// PostgreSQL; SQLite has no such clause (its callers take the write lock first instead).
/// `$first, $first+1, …` for `n` bind parameters (an `IN (…)` list).
pub(crate) fn parameters(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn skip_locked(db: &Db, of: &str) -> String {
    if db.is_postgres() {
        format!("FOR UPDATE {of} SKIP LOCKED")
    } else {
        String::new()
    }
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Db {
    /// Connects (creating the SQLite file if needed) and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Self::connect_with(url, None).await
    }

    /// Like [`Db::connect`]; on PostgreSQL, `schema` isolates this pool in its own schema
    /// (created if missing), which is how the tests get a fresh database each.
    pub async fn connect_with(url: &str, schema: Option<&str>) -> anyhow::Result<Db> {
        let db = Self::open(url, schema, true).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// For read-only commands (`report`, `export`): connects without creating or migrating
    /// anything, and fails with one line when the schema is behind this binary's migrations.
    pub async fn connect_existing(url: &str) -> anyhow::Result<Db> {
        let db = match Self::open(url, None, false).await {
            Ok(db) => db,
            // A SQLite file that does not exist yet was never migrated either.
            Err(_) if url.starts_with("sqlite:") => anyhow::bail!(NOT_MIGRATED),
            Err(e) => return Err(e),
        };
        if !db.schema_is_current().await? {
            db.close().await;
            anyhow::bail!(NOT_MIGRATED);
        }
        Ok(db)
    }

    /// Whether every migration embedded in this binary was applied (successfully) here. Read
    /// only: no `CREATE … IF NOT EXISTS` (whose notices PostgreSQL would log), no lock.
    pub async fn schema_is_current(&self) -> anyhow::Result<bool> {
        let (migrator, exists_sql) = match self {
            Db::Sqlite(_) => (
                sqlx::migrate!("./migrations/sqlite"),
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            ),
            Db::Postgres(_) => (
                sqlx::migrate!("./migrations/postgres"),
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
            ),
        };
        let exists: i64 = with_pool!(self, |pool| sqlx::query_scalar(exists_sql).fetch_one(pool).await)?;
        if exists == 0 {
            return Ok(false);
        }
        let applied: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(pool)
                .await
        })?;
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)))
    }

    /// Opens a pool without migrating; `create` makes a missing SQLite file.
    async fn open(url: &str, schema: Option<&str>, create: bool) -> anyhow::Result<Db> {
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid sqlite URL")?
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is safe with WAL (no corruption; at worst the last commits before a power
                // loss are lost) and saves an fsync per commit, which dominated declare latency.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                // Commits do not checkpoint (a checkpoint copies the log into the file and
                // fsyncs both, milliseconds on a cloud disk, inside whichever commit crossed
                // 1,000 pages: a person's, or an alert's before its 202). The bot checkpoints
                // from its background lane instead ([`Db::checkpoint_every`]); this bound
                // (about 40 MB of log) is only the backstop for processes that do not.
                .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
                .foreign_keys(true);
            sqlite_pool(opts, 4).await?
        } else {
            let mut opts = PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid postgres URL")?;
            if let Some(schema) = schema {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts.clone())
                    .await?;
                // The schema name is generated by the caller from [a-z0-9_]; it cannot be bound.
                anyhow::ensure!(schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                opts = opts.options([("search_path", schema)]);
            }
            postgres_pool(opts, 10).await?
        };
        Ok(db)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("database migration failed")
    }

    /// On SQLite, this process's turn to write to the database file, held until the caller's
    /// transaction ends; nothing on PostgreSQL (its row locks queue writers).
    ///
    /// SQLite admits one writer at a time, and a connection that finds the file locked sleeps
    /// in its busy handler (1, 2, 5, 10, 15, 20, 25 … ms) and tries again: with the envelope
    /// handlers' pool and the background lane's writing side by side, a person's change slept
    /// up to tens of milliseconds behind the outbox's bookkeeping. Here writers wait in line
    /// instead and take the lock the moment it is free; the background lane's writers (see
    /// [`crate::background`]) line up one at a time behind a gate of their own, so a person's
    /// change waits for at most the transaction under way and one background one, never for
    /// the hundreds of outbox jobs a major incident queues.
    pub async fn writer(&self) -> Option<WriteTurn> {
        let Db::Sqlite(pool) = self else { return None };
        let turns = sqlite_write_turns(pool.connect_options().get_filename());
        let background = match crate::background::on_background_thread() {
            true => Some(turns.background.clone().lock_owned().await),
            false => None,
        };
        Some(WriteTurn {
            _turn: turns.turn.clone().lock_owned().await,
            _background: background,
        })
    }

    /// A second pool of `connections` on the same database, with the same options (the
    /// background lane's, see [`crate::background`]).
    pub async fn second_pool(&self, connections: u32) -> anyhow::Result<Db> {
        match self {
            Db::Sqlite(pool) => sqlite_pool((*pool.connect_options()).clone(), connections).await,
            Db::Postgres(pool) => postgres_pool((*pool.connect_options()).clone(), connections).await,
        }
    }

    /// On SQLite, copies the write-ahead log into the database file every `every`, off every
    /// writer's path (PASSIVE: it waits for no reader and no writer; what a reader still
    /// holds is copied next time), until the pool is closed. Nothing on PostgreSQL, which
    /// checkpoints in its own processes.
    pub async fn checkpoint_every(&self, every: Duration) {
        let Db::Sqlite(pool) = self else { return };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "cannot checkpoint the SQLite log; trying again");
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        with_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    /// Records an idempotency key; `false` when it was already recorded (a redelivery).
    pub async fn first_time(&self, key: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let done = with_pool!(self, |pool| {
            sqlx::query(INSERT_HANDLED)
                .bind(key)
                .bind(to_ms(now))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }
}
