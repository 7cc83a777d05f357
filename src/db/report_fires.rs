//! Scheduled report slots: claimed with a short lease, marked posted when Slack said so.
//!
//! A slot's row is its claim. A slot fires once across restarts and replicas: a live lease or
//! a posted row refuses every other claim. A claim whose holder died or never heard Slack's
//! answer runs out and the slot is claimed again as [`SlotClaim::Again`], whose holder looks for
//! the earlier attempt's post before posting (see `slack::report`).

use super::{to_ms, with_pool, write_alone, Db};
use chrono::{DateTime, Utc};

/// The answer to a claim of a report slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotClaim {
    /// First claim: nothing was posted for this slot yet.
    First,
    /// Claimed before and not known to be posted (a holder died, or Slack's answer was lost):
    /// an earlier attempt may be in the channel already.
    Again,
    /// Posted (or given up) already.
    Done,
    /// Held by a live claim until then (another replica is posting it): look again then, in
    /// case that holder dies.
    Held { until: DateTime<Utc> },
}

impl Db {
    /// Claims `slot` of `schedule` until `lease_until`.
    pub async fn claim_report_slot(
        &self,
        schedule: &str,
        slot: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> anyhow::Result<SlotClaim> {
        let attempts: Option<(i64,)> = write_alone!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO report_fires (schedule_key, slot, fired_at, posted, lease_until, attempts) \
                 VALUES ($1, $2, $3, FALSE, $4, 1) \
                 ON CONFLICT (schedule_key, slot) DO UPDATE \
                 SET fired_at = excluded.fired_at, lease_until = excluded.lease_until, \
                     attempts = report_fires.attempts + 1 \
                 WHERE report_fires.posted = FALSE AND report_fires.lease_until <= $3 \
                 RETURNING attempts",
            )
            .bind(schedule)
            .bind(slot)
            .bind(to_ms(now))
            .bind(to_ms(lease_until))
            .fetch_optional(pool)
            .await
        })?;
        match attempts {
            Some((1,)) => return Ok(SlotClaim::First),
            Some(_) => return Ok(SlotClaim::Again),
            None => {}
        }
        let (posted, lease_until): (bool, i64) = write_alone!(self, |pool| {
            sqlx::query_as("SELECT posted, lease_until FROM report_fires WHERE schedule_key = $1 AND slot = $2")
                .bind(schedule)
                .bind(slot)
                .fetch_one(pool)
                .await
        })?;
        Ok(if posted {
            SlotClaim::Done
        } else {
            SlotClaim::Held {
                until: super::from_ms(lease_until),
            }
        })
    }

    /// Records that the slot is done (its report is in the channel, or it was given up): no
    /// claim takes it again.
    pub async fn mark_report_posted(&self, schedule: &str, slot: &str) -> anyhow::Result<()> {
        write_alone!(self, |pool| {
            sqlx::query("UPDATE report_fires SET posted = TRUE WHERE schedule_key = $1 AND slot = $2")
                .bind(schedule)
                .bind(slot)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Gives a claimed slot back, so it is tried again: with `maybe_posted` (Slack's answer was
    /// lost) the next claim is [`SlotClaim::Again`] and looks first; otherwise (Slack said no,
    /// nothing was posted) it starts afresh.
    pub async fn release_report_slot(&self, schedule: &str, slot: &str, maybe_posted: bool) -> anyhow::Result<()> {
        let sql = if maybe_posted {
            "UPDATE report_fires SET lease_until = 0 WHERE schedule_key = $1 AND slot = $2 AND posted = FALSE"
        } else {
            "DELETE FROM report_fires WHERE schedule_key = $1 AND slot = $2 AND posted = FALSE"
        };
        write_alone!(self, |pool| {
            sqlx::query(sql)
                .bind(schedule)
                .bind(slot)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// How many slots of `schedule` have been posted (for tests).
    pub async fn report_slots_fired(&self, schedule: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM report_fires WHERE schedule_key = $1 AND posted = TRUE")
                .bind(schedule)
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }
}
