//! Scheduled report slots: claimed once, released if posting failed.

use super::{to_ms, with_pool, Db};
use chrono::{DateTime, Utc};

impl Db {
    /// Claims `slot` of `schedule`; `false` when it fired already (here or on another replica).
    pub async fn claim_report_slot(&self, schedule: &str, slot: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO report_fires (schedule_key, slot, fired_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (schedule_key, slot) DO NOTHING",
            )
            .bind(schedule)
            .bind(slot)
            .bind(to_ms(now))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Gives a claimed slot back (its report could not be posted), so it is tried again.
    pub async fn release_report_slot(&self, schedule: &str, slot: &str) -> anyhow::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM report_fires WHERE schedule_key = $1 AND slot = $2")
                .bind(schedule)
                .bind(slot)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// How many slots of `schedule` have fired (for tests).
    pub async fn report_slots_fired(&self, schedule: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM report_fires WHERE schedule_key = $1")
                .bind(schedule)
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }
}
