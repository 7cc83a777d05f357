//! SLA-timed update reminders: [`plan`] is the pure clock; [`run`] is the scheduler loop.
//!
//! The schedule lives in the database (`incidents.reminder_at`, indexed). The loop sleeps until
//! the earliest due time (or until woken by a change), then fires what is due: each firing
//! advances the incident's clock and enqueues its Slack post in one transaction, with the row
//! locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so a reminder is sent once across restarts
//! and replicas, and one that fell due while the bot was down is sent (marked late) on start.

pub mod plan;

use crate::db::Db;
use crate::incident::change::Rules;
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

/// Fires with `fire` when `due`; else nothing fired.
async fn fire_if(due: bool, fire: impl std::future::Future<Output = anyhow::Result<usize>>) -> anyhow::Result<usize> {
    match due {
        true => fire.await,
        false => Ok(0),
    }
}

/// Fires due reminders (stakeholder updates, overdue follow-ups, post-incident reviews, vendor
/// ticket chases, customer updates) until `shutdown` is notified.
pub async fn run(
    db: Db,
    rules: Rules,
    wake: Arc<Notify>,
    wake_outbox: Arc<Notify>,
    shutdown: Arc<Notify>,
    opts: ReminderOptions,
) {
    let late_after = chrono::Duration::from_std(opts.late_after).unwrap_or(chrono::Duration::seconds(60));
    loop {
        // When each kind is next due, read first: a firing takes the write turn (on SQLite, the
        // database's one writer), and this loop wakes after every change to an incident, so
        // only the kinds that are due now are fired.
        let customer = match &rules.status_page {
            Some(_) => db.next_customer_reminder_at().await,
            None => Ok(None),
        };
        let next = match (
            db.next_reminder_at().await,
            db.next_follow_up_or_pir_reminder_at().await,
            db.next_vendor_chase_at().await,
            customer,
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => Ok([a, b, c, d]),
            (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => Err(e),
        };
        let now = chrono::Utc::now();
        let due = |at: &Option<chrono::DateTime<chrono::Utc>>| at.is_some_and(|at| at <= now);
        let [updates, follow_ups, vendors, customers] = match &next {
            Ok(next) => next.each_ref().map(due),
            Err(e) => {
                tracing::warn!(error = %e, "reminders: cannot read when reminders are due; firing all");
                [true; 4]
            }
        };
        let fired = [
            fire_if(updates, db.fire_due_reminders(now, &rules.slas, late_after, opts.batch)).await,
            fire_if(
                follow_ups,
                db.fire_due_follow_up_reminders(now, &rules, late_after, opts.batch),
            )
            .await,
            fire_if(
                follow_ups,
                db.fire_due_pir_reminders(now, &rules, late_after, opts.batch),
            )
            .await,
            fire_if(
                vendors,
                db.fire_due_vendor_chases(now, &rules.vendors, late_after, opts.batch),
            )
            .await,
            match &rules.status_page {
                Some(page) => {
                    fire_if(
                        customers,
                        db.fire_due_customer_reminders(now, page, late_after, opts.batch),
                    )
                    .await
                }
                None => Ok(0),
            },
        ];
        let mut any = false;
        for result in fired {
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(fired = n, "reminders fired");
                    any = true;
                }
                Err(e) => tracing::warn!(error = %e, "reminders: cannot fire due reminders; retrying"),
            }
        }
        if any {
            wake_outbox.notify_one();
            continue;
        }
        let sleep = match next {
            Ok(next) => match next.into_iter().flatten().min() {
                Some(at) => (at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(opts.max_sleep),
                None => opts.max_sleep,
            },
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = shutdown.notified() => return,
        }
    }
}
