//! SLA-timed update reminders: [`plan`] is the pure clock; [`run`] is the scheduler loop.
//!
//! The schedule lives in the database (`incidents.reminder_at`, indexed). The loop sleeps until
//! the earliest due time (or until woken by a change), then fires what is due: each firing
//! advances the incident's clock and enqueues its Slack post in one transaction, with the row
//! locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so a reminder is sent once across restarts
//! and replicas, and one that fell due while the bot was down is sent (marked late) on start.

pub mod plan;

use crate::db::Db;
use plan::Slas;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Tuning; tests shorten these.
#[derive(Debug, Clone)]
pub struct ReminderOptions {
    /// Longest sleep: bounds how late a replica sees a change made on another replica.
    pub max_sleep: Duration,
    /// A reminder fired this long after its time is marked late.
    pub late_after: Duration,
    pub batch: i64,
}

impl Default for ReminderOptions {
    fn default() -> Self {
        ReminderOptions {
            max_sleep: Duration::from_secs(30),
            late_after: Duration::from_secs(60),
            batch: 200,
        }
    }
}

/// Fires due reminders until `shutdown` is notified.
pub async fn run(
    db: Db,
    slas: Slas,
    wake: Arc<Notify>,
    wake_outbox: Arc<Notify>,
    shutdown: Arc<Notify>,
    opts: ReminderOptions,
) {
    let late_after = chrono::Duration::from_std(opts.late_after).unwrap_or(chrono::Duration::seconds(60));
    loop {
        match db
            .fire_due_reminders(chrono::Utc::now(), &slas, late_after, opts.batch)
            .await
        {
            Ok(0) => {}
            Ok(fired) => {
                tracing::debug!(fired, "reminders fired");
                wake_outbox.notify_one();
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "reminders: cannot fire due reminders; retrying"),
        }
        let sleep = match db.next_reminder_at().await {
            Ok(Some(at)) => (at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(opts.max_sleep),
            Ok(None) => opts.max_sleep,
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = shutdown.notified() => return,
        }
    }
}
