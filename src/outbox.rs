//! The outbox: Slack side effects that must happen after a state change is stored.
//!
//! A flow writes its change, its timeline event and the jobs for its side effects in one
//! transaction; the [`run`] loop then drives the jobs to done against Slack, retrying with
//! backoff. A restart, a crash or a Slack outage therefore never loses the work, and a job is
//! claimed with a lease so that two replicas never run it at the same time.
//!
//! Outcomes (issue 16): a job ends *done*, *failed for good* (no retry can fix it: said once to
//! the person who asked, recorded on the timeline), *temporary* (429: retried after
//! `Retry-After`) or *uncertain* (timeout, connection reset, 5xx, or a lease taken over from a
//! dead holder): Slack may have done it, so the next attempt reconciles first — looks for what
//! the job would have created, by the job's identity — and repeats the call only when nothing is
//! found. Leases are short and renewed by a heartbeat while the holder lives, so a dead
//! replica's jobs are free again within one lease (10 s); on SQLite, where one process owns the
//! database, a restart reclaims at once the jobs of runs that are gone (never those of a run
//! still alive beside it in the same process).

use crate::db::{Db, DoneJob, JobUpdate};
use crate::incident::model::IncidentId;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument;

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
    /// A vendor ticket's post, chase or question (payload `what`; see `slack::vendors`).
    Vendor,
    /// A customer update's draft, publication or cadence reminder (payload `what`; see
    /// `slack::comms`).
    Customer,
}

impl JobKind {
    pub const ALL: [JobKind; 16] = [
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
        JobKind::Vendor,
        JobKind::Customer,
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
            JobKind::Vendor => "vendor",
            JobKind::Customer => "customer",
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
            JobKind::Vendor => "posting about a vendor ticket",
            JobKind::Customer => "posting about a customer update",
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
    /// The last attempt may have happened at Slack without our hearing the answer (or the job
    /// was reclaimed from a holder that died): look for its result before repeating it.
    pub uncertain: bool,
    /// When the job was enqueued: nothing it created can be older (bounds the look-up).
    pub created_at: DateTime<Utc>,
}

/// How a job ended.
pub enum Outcome {
    /// Done; apply these changes atomically with marking the job done.
    Done(JobUpdate),
    /// Failed before anything happened, in a way worth retrying (rate limit, not yet
    /// possible): repeat it after `after` (or the backoff).
    Retry { error: String, after: Option<Duration> },
    /// We do not know whether Slack did it (timeout, connection reset, 5xx): the next attempt
    /// looks for the result before repeating the call.
    Uncertain { error: String },
    /// Failed for good (e.g. the channel was deleted, the text too long): no retry can fix it.
    /// Recorded on the timeline and said once to the person who asked.
    GiveUp { error: String },
}

/// Performs jobs: implemented by the Slack edge.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, job: Job) -> impl std::future::Future<Output = Outcome> + Send;
    /// Called once per incident on its first failed side effect, to tell a person.
    fn report_delay(&self, job: Job, error: String) -> impl std::future::Future<Output = ()> + Send;
    /// Called once when a job gives up for good, to tell the person who asked what failed.
    fn report_failure(&self, job: Job, error: String) -> impl std::future::Future<Output = ()> + Send;
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
            // Short, and renewed every third of it while the holder lives: a dead replica's
            // jobs are free again within ~10 s.
            lease: Duration::from_secs(10),
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

/// The outbox runs alive in this process, by lease owner: a run is registered while its
/// [`run`] future lives, and leaves when it ends or is dropped (a crash, in tests).
static LIVE_RUNS: Mutex<std::collections::BTreeSet<String>> = Mutex::new(std::collections::BTreeSet::new());

struct LiveRun(String);

impl LiveRun {
    fn register() -> Self {
        let owner = uuid::Uuid::new_v4().to_string();
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.clone());
        LiveRun(owner)
    }

    fn owners() -> Vec<String> {
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        LIVE_RUNS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

/// Drives due jobs until `shutdown` is notified. `wake` is notified by flows after they
/// enqueue, so new work starts at once instead of at the next poll.
///
/// One task per incident runs that incident's jobs in claim order, so notices reach people in
/// the order the changes happened, while different incidents proceed in parallel. A job claimed
/// for an incident whose task is still running joins that task's queue, so one incident waiting
/// out a `Retry-After` or a timeout never holds up the others. On shutdown the jobs already
/// claimed are finished.
pub async fn run<R: Runner>(db: Db, runner: Arc<R>, wake: Arc<Notify>, shutdown: Arc<Notify>, opts: OutboxOptions) {
    let queues: Arc<Mutex<Queues>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    // This run's identity on the leases it takes; the heartbeat renews exactly those.
    let live = LiveRun::register();
    let owner = live.0.clone();
    if !db.is_postgres() {
        // One process owns a SQLite database: a job locked by none of this process's live runs
        // was held by the bot's previous run, which died mid-job. Free it now (as uncertain)
        // instead of waiting out its lease.
        match db.reclaim_in_flight_jobs(&LiveRun::owners()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "outbox: reclaimed jobs left in flight by a previous run"),
            Err(e) => tracing::warn!(error = %e, "outbox: cannot reclaim in-flight jobs"),
        }
    }
    // In its own set, so that it stops with this future (even when the future is dropped
    // mid-flight, as a crash would), never outliving the jobs it vouches for.
    let mut heartbeat = tokio::task::JoinSet::new();
    {
        let (db, owner, lease) = (db.clone(), owner.clone(), opts.lease);
        heartbeat.spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
                if let Err(e) = db.renew_leases(&owner, until).await {
                    tracing::warn!(error = %e, "outbox: cannot renew leases");
                }
            }
        });
    }
    let (results, written) = mpsc::unbounded_channel();
    let mut writer = tokio::task::JoinSet::new();
    writer.spawn(write_results(db.clone(), written));
    loop {
        while tasks.try_join_next().is_some() {}
        let now = Utc::now();
        let claimed = match db.claim_jobs(&owner, now, opts.lease, opts.batch).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot claim jobs; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.notified() => break,
                }
            }
        };
        let mut fresh = 0;
        for job in claimed {
            let mut q = queues.lock().unwrap_or_else(|p| p.into_inner());
            // Still queued from an earlier claim (its lease ran out while it waited): it runs once.
            if !q.jobs.insert(job.id) {
                continue;
            }
            fresh += 1;
            let incident = job.incident_id;
            if let Some(queue) = q.incidents.get_mut(&incident) {
                queue.push_back(job);
                continue;
            }
            q.incidents.insert(incident, std::collections::VecDeque::from([job]));
            drop(q);
            let (db, runner, opts, queues, wake, results) = (
                db.clone(),
                runner.clone(),
                opts.clone(),
                queues.clone(),
                wake.clone(),
                results.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let job = {
                        let mut q = queues.lock().unwrap_or_else(|p| p.into_inner());
                        match q.incidents.get_mut(&incident).and_then(|queue| queue.pop_front()) {
                            Some(job) => job,
                            None => {
                                q.incidents.remove(&incident);
                                return;
                            }
                        }
                    };
                    let id = job.id;
                    // The runner records `incident` (the number) once it has loaded the incident.
                    let span = tracing::info_span!(
                        "outbox_job",
                        job = id,
                        kind = job.kind.as_str(),
                        incident_id = incident.0,
                        incident = tracing::field::Empty
                    );
                    finish(&db, &*runner, job, &opts, &queues, &results)
                        .instrument(span)
                        .await;
                    // Its follow-on jobs (or its retry) may be due now.
                    wake.notify_one();
                }
            });
        }
        if fresh > 0 {
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
            _ = shutdown.notified() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    // Every job has its result written (or failed to): the writer ends once its queue does.
    drop(results);
    while writer.join_next().await.is_some() {}
    heartbeat.abort_all();
}

/// A finished job on its way to [`write_results`], and where its write's outcome goes.
type PendingResult = (DoneJob, oneshot::Sender<anyhow::Result<()>>);

/// Marks finished jobs done, group-committed: every job that finished while the previous batch
/// was being written goes into the next one transaction. A major incident finishes hundreds of
/// jobs at once; one transaction each took SQLite's one write turn hundreds of times (and
/// PostgreSQL's WAL flush), each time ahead of a person's change waiting for it. SQLite has one
/// writer, so one batch is written at a time; PostgreSQL writes side by side, so batches are
/// written two at a time there (half the background lane's pool, which the schedulers share).
/// Batches never share an incident: each incident's jobs run one at a time.
async fn write_results(db: Db, mut queue: mpsc::UnboundedReceiver<PendingResult>) {
    /// Enough to drain a burst in few transactions, few enough that a person's change waiting
    /// behind one (for SQLite's write turn, or an incident's row) waits a millisecond or two.
    const MOST_AT_ONCE: usize = 16;
    let side_by_side = match db.is_postgres() {
        true => (crate::background::CONNECTIONS as usize / 2).max(1),
        false => 1,
    };
    let turns = Arc::new(tokio::sync::Semaphore::new(side_by_side));
    let mut writing = tokio::task::JoinSet::new();
    while let Some(first) = queue.recv().await {
        let Ok(turn) = turns.clone().acquire_owned().await else {
            break;
        };
        // Formed once a writer is free: what finished meanwhile joins this batch.
        let mut batch = vec![first];
        while batch.len() < MOST_AT_ONCE {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Incidents' rows in one order, so that two replicas' batches never deadlock.
        batch.sort_by_key(|(done, _)| (done.job.incident_id.0, done.job.id));
        let db = db.clone();
        writing.spawn(async move {
            let _turn = turn;
            let (done, waiting): (Vec<DoneJob>, Vec<_>) = batch.into_iter().unzip();
            for (result, waiting) in db.complete_jobs(&done).await.into_iter().zip(waiting) {
                let _ = waiting.send(result);
            }
        });
        while writing.try_join_next().is_some() {}
    }
    while writing.join_next().await.is_some() {}
}

/// Hands `done` to the results writer and waits until it is written.
async fn complete(results: &mpsc::UnboundedSender<PendingResult>, done: DoneJob) -> anyhow::Result<()> {
    let (written, outcome) = oneshot::channel();
    results
        .send((done, written))
        .map_err(|_| anyhow::anyhow!("the outbox's results writer has stopped"))?;
    outcome
        .await
        .map_err(|_| anyhow::anyhow!("the outbox's results writer stopped before writing"))?
}

/// The jobs claimed and not yet finished: per incident in claim order, and all their ids.
#[derive(Default)]
struct Queues {
    incidents: std::collections::HashMap<IncidentId, std::collections::VecDeque<Job>>,
    jobs: std::collections::HashSet<i64>,
}

async fn finish<R: Runner>(
    db: &Db,
    runner: &R,
    job: Job,
    opts: &OutboxOptions,
    queues: &Mutex<Queues>,
    results: &mpsc::UnboundedSender<PendingResult>,
) {
    let started = std::time::Instant::now();
    let outcome = runner.run(job.clone()).await;
    // No longer queued here, before its result is written: once the write releases the job, a
    // new claim of it (a retry already due) must run it, not mistake it for a queued duplicate
    // and leave it locked (renewed by the heartbeat) with nobody to run it.
    queues.lock().unwrap_or_else(|p| p.into_inner()).jobs.remove(&job.id);
    let now: DateTime<Utc> = Utc::now();
    let (job_id, kind) = (job.id, job.kind.as_str());
    let result = match outcome {
        Outcome::Done(update) => {
            tracing::debug!(
                job = job.id,
                kind,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "outbox job done"
            );
            complete(results, DoneJob { job, update, at: now }).await
        }
        Outcome::Retry { error, after } if job.attempt < opts.max_attempts => {
            let delay = after.unwrap_or_else(|| backoff(opts.base_backoff, job.attempt));
            retry(db, runner, &job, error, delay, false, now).await
        }
        Outcome::Uncertain { error } if job.attempt < opts.max_attempts => {
            // Marked uncertain: the next attempt looks for what this one may have done first.
            retry(
                db,
                runner,
                &job,
                error,
                backoff(opts.base_backoff, job.attempt),
                true,
                now,
            )
            .await
        }
        Outcome::Retry { error, .. } | Outcome::Uncertain { error } | Outcome::GiveUp { error } => {
            tracing::error!(job = job.id, kind, attempt = job.attempt, %error, "outbox job failed for good");
            let result = db.fail_job(&job, &error, now).await;
            runner.report_failure(job.clone(), error).await;
            result
        }
    };
    if let Err(e) = result {
        // The lease expires and the job runs again: a side effect may repeat, never vanish.
        tracing::error!(job = job_id, kind, error = %e, "outbox: cannot record job result");
    }
}

/// Plans another attempt of `job` after `delay`. One warning for every kind of retry (one thing
/// to alert on); the declarer hears of the delay once, at the first failure.
async fn retry<R: Runner>(
    db: &Db,
    runner: &R,
    job: &Job,
    error: String,
    delay: Duration,
    uncertain: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    tracing::warn!(job = job.id, kind = job.kind.as_str(), attempt = job.attempt, %error, retry_in_ms = delay.as_millis() as u64, uncertain, "outbox job failed; will retry");
    if job.attempt == 1 {
        runner.report_delay(job.clone(), error.clone()).await;
    }
    db.retry_job(
        job,
        now + chrono::Duration::from_std(delay).unwrap_or_default(),
        &error,
        uncertain,
    )
    .await
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
