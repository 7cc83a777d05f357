//! The outbox: Slack side effects that must happen after a state change is stored.
//!
//! A flow writes its change, its timeline event and the jobs for its side effects in one
//! transaction; the [`run`] loop then drives the jobs to done against Slack, retrying with
//! backoff. A restart, a crash or a Slack outage therefore never loses the work, and a job is
//! claimed with a lease so that two replicas never run it at the same time.

use crate::db::{Db, JobUpdate};
use crate::incident::model::IncidentId;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Which side effect a job performs. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    CreateChannel,
    InviteMembers,
    SetTopic,
    PostCard,
    PinCard,
    Announce,
    ConfirmDeclarer,
    RefreshCard,
    PostNotice,
    InviteUsers,
    Remind,
    Escalate,
    RemindFollowUp,
    RemindPir,
}

impl JobKind {
    pub const ALL: [JobKind; 14] = [
        JobKind::CreateChannel,
        JobKind::InviteMembers,
        JobKind::SetTopic,
        JobKind::PostCard,
        JobKind::PinCard,
        JobKind::Announce,
        JobKind::ConfirmDeclarer,
        JobKind::RefreshCard,
        JobKind::PostNotice,
        JobKind::InviteUsers,
        JobKind::Remind,
        JobKind::Escalate,
        JobKind::RemindFollowUp,
        JobKind::RemindPir,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::CreateChannel => "create_channel",
            JobKind::InviteMembers => "invite_members",
            JobKind::SetTopic => "set_topic",
            JobKind::PostCard => "post_card",
            JobKind::PinCard => "pin_card",
            JobKind::Announce => "announce",
            JobKind::ConfirmDeclarer => "confirm_declarer",
            JobKind::RefreshCard => "refresh_card",
            JobKind::PostNotice => "post_notice",
            JobKind::InviteUsers => "invite_users",
            JobKind::Remind => "remind",
            JobKind::Escalate => "escalate",
            JobKind::RemindFollowUp => "remind_follow_up",
            JobKind::RemindPir => "remind_pir",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What a person is told is delayed when this job fails.
    pub fn describe(self) -> &'static str {
        match self {
            JobKind::CreateChannel => "creating the incident channel",
            JobKind::InviteMembers => "inviting the declarer and SPOC",
            JobKind::SetTopic => "setting the channel topic",
            JobKind::PostCard => "posting the summary card",
            JobKind::PinCard => "pinning the summary card",
            JobKind::Announce => "announcing the incident",
            JobKind::ConfirmDeclarer => "confirming to the declarer",
            JobKind::RefreshCard => "refreshing the summary card",
            JobKind::PostNotice => "posting a notice",
            JobKind::InviteUsers => "inviting people",
            JobKind::Remind => "reminding the SPOC",
            JobKind::Escalate => "escalating an overdue update",
            JobKind::RemindFollowUp => "reminding a follow-up's owner",
            JobKind::RemindPir => "reminding the SPOC of the post-incident review",
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub incident_id: IncidentId,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    /// 1 on the first try.
    pub attempt: u32,
}

/// How a job ended.
pub enum Outcome {
    /// Done; apply these changes atomically with marking the job done.
    Done(JobUpdate),
    /// Failed in a way worth retrying (rate limit, 5xx, network).
    Retry { error: String, after: Option<Duration> },
    /// Failed for good (e.g. the channel was deleted); recorded on the timeline.
    GiveUp { error: String },
}

/// Performs jobs: implemented by the Slack edge.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, job: Job) -> impl std::future::Future<Output = Outcome> + Send;
    /// Called once per incident on its first failed side effect, to tell a person.
    fn report_delay(&self, job: Job, error: String) -> impl std::future::Future<Output = ()> + Send;
}

/// Tuning of the loop; tests shorten these.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub lease: Duration,
    pub batch: i64,
    pub max_attempts: u32,
    pub max_idle_sleep: Duration,
    pub base_backoff: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            lease: Duration::from_secs(60),
            batch: 32,
            max_attempts: 12,
            max_idle_sleep: Duration::from_secs(5),
            base_backoff: Duration::from_secs(1),
        }
    }
}

/// Exponential backoff with a cap: 1 s, 2 s, 4 s … 5 min.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    (base * factor).min(Duration::from_secs(300))
}

/// Drives due jobs until `shutdown` is notified. `wake` is notified by flows after they
/// enqueue, so new work starts at once instead of at the next poll.
pub async fn run<R: Runner>(db: Db, runner: Arc<R>, wake: Arc<Notify>, shutdown: Arc<Notify>, opts: OutboxOptions) {
    loop {
        let now = Utc::now();
        let claimed = match db.claim_jobs(now, opts.lease, opts.batch).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot claim jobs; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.notified() => return,
                }
            }
        };
        if !claimed.is_empty() {
            // One task per incident, its jobs in claim order: notices reach people in the order
            // the changes happened, while different incidents proceed in parallel.
            let mut per_incident: Vec<Vec<Job>> = Vec::new();
            for job in claimed {
                match per_incident
                    .iter_mut()
                    .find(|group| group[0].incident_id == job.incident_id)
                {
                    Some(group) => group.push(job),
                    None => per_incident.push(vec![job]),
                }
            }
            let handles: Vec<_> = per_incident
                .into_iter()
                .map(|jobs| {
                    let (db, runner, opts) = (db.clone(), runner.clone(), opts.clone());
                    tokio::spawn(async move {
                        for job in jobs {
                            finish(&db, &*runner, job, &opts).await;
                        }
                    })
                })
                .collect();
            for h in handles {
                let _ = h.await;
            }
            continue;
        }
        let sleep = match db.next_job_due().await {
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(opts.max_idle_sleep),
            _ => opts.max_idle_sleep,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = shutdown.notified() => return,
        }
    }
}

async fn finish<R: Runner>(db: &Db, runner: &R, job: Job, opts: &OutboxOptions) {
    let started = std::time::Instant::now();
    let outcome = runner.run(job.clone()).await;
    let now: DateTime<Utc> = Utc::now();
    let kind = job.kind.as_str();
    let result = match outcome {
        Outcome::Done(update) => {
            tracing::debug!(
                job = job.id,
                kind,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "outbox job done"
            );
            db.complete_job(&job, update, now).await
        }
        Outcome::Retry { error, after } if job.attempt < opts.max_attempts => {
            let delay = after.unwrap_or_else(|| backoff(opts.base_backoff, job.attempt));
            tracing::warn!(job = job.id, kind, attempt = job.attempt, %error, retry_in_ms = delay.as_millis() as u64, "outbox job failed; will retry");
            if job.attempt == 1 {
                runner.report_delay(job.clone(), error.clone()).await;
            }
            db.retry_job(
                &job,
                now + chrono::Duration::from_std(delay).unwrap_or_default(),
                &error,
            )
            .await
        }
        Outcome::Retry { error, .. } | Outcome::GiveUp { error } => {
            tracing::error!(job = job.id, kind, attempt = job.attempt, %error, "outbox job failed for good");
            runner.report_delay(job.clone(), error.clone()).await;
            db.fail_job(&job, &error, now).await
        }
    };
    if let Err(e) = result {
        // The lease expires and the job runs again: a side effect may repeat, never vanish.
        tracing::error!(job = job.id, kind, error = %e, "outbox: cannot record job result");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_kinds_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(JobKind::parse("nope"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, 4), Duration::from_secs(8));
        assert_eq!(backoff(base, 40), Duration::from_secs(300));
    }
}
