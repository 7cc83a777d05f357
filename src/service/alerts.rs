//! Detection use-cases (issue 15): take in alerts, triage them (acknowledge, silence, link to
//! an incident, declare from one), called by the HTTP intake and the Slack triage channel.

use super::{Refusal, Service};
use crate::alerts::{Alert, StoredAlert, SILENCE_FOR};
use crate::db::{DeclareOutcome, Ingested, SyncPolicy};
use crate::incident::model::{Incident, IncidentId, NewIncident, UserId};

/// One intake request waiting for its batch: its alerts, and where its answer goes.
type Pending = (Vec<Alert>, tokio::sync::oneshot::Sender<Result<Vec<Ingested>, Refusal>>);

/// Intake requests waiting to be stored, and the writers' permits.
pub(super) struct IntakeBatch {
    pending: std::sync::Mutex<Vec<Pending>>,
    writers: tokio::sync::Semaphore,
}

/// Batches written at once on PostgreSQL: a commit waits for its WAL flush (milliseconds on
/// a disk), and batches written side by side share flushes instead of queueing behind each
/// other's. SQLite has one writer at a time anyway: one batch, never a busy wait.
const POSTGRES_WRITERS: usize = 4;

impl IntakeBatch {
    pub(super) fn new(db: &crate::db::Db) -> IntakeBatch {
        IntakeBatch {
            pending: std::sync::Mutex::default(),
            writers: tokio::sync::Semaphore::new(if db.is_postgres() { POSTGRES_WRITERS } else { 1 }),
        }
    }
}

/// What a triage click did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertTriage {
    Done(Box<StoredAlert>),
    /// The same click was handled before (a redelivery or a double click).
    AlreadyDone,
}

impl Service {
    /// How the triage message is kept up to date under this policy.
    pub fn alert_sync(&self) -> SyncPolicy {
        SyncPolicy {
            posting: self.policy.alerts.channel.is_some(),
            update_gap: self.policy.alerts.update_gap,
        }
    }

    /// Wakes the triage poster (after a change made outside this service, e.g. by a job).
    pub fn wake_alerts(&self) {
        self.wake_alerts.notify_one();
    }

    /// Stores the alerts of one request (all or none) before the sender hears 202.
    ///
    /// Requests that arrive while batches are being written are stored together in the next
    /// transaction (group commit): one writer at a time on SQLite, so it never makes a writer
    /// wait on its lock, a few on PostgreSQL; each request still answers only once its alerts
    /// are committed.
    pub async fn ingest_alerts(&self, alerts: &[Alert]) -> Result<Vec<Ingested>, Refusal> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.intake
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((alerts.to_vec(), tx));
        {
            let _writer = self.intake.writers.acquire().await;
            let batch = std::mem::take(&mut *self.intake.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if !batch.is_empty() {
                // In its own task: a sender that hangs up mid-write must not cancel the batch
                // (the other requests in it would hear nothing of a commit that happened).
                let service = self.clone();
                let _ = tokio::spawn(async move { service.write_batch(batch).await }).await;
            }
        }
        rx.await.unwrap_or(Err(Refusal::Unavailable))
    }

    async fn write_batch(&self, batch: Vec<Pending>) {
        let all: Vec<Alert> = batch.iter().flat_map(|(a, _)| a.iter().cloned()).collect();
        let mut result = Err(anyhow::anyhow!("not written"));
        for _ in 0..3 {
            result = self
                .db
                .ingest_alerts(&all, &self.policy.alerts.rules, chrono::Utc::now(), self.alert_sync())
                .await;
            // Batches lock their groups in one order, so PostgreSQL should never find a
            // deadlock between them; if it does, it rolled one back, and writing it again is safe.
            match &result {
                Err(e) if crate::db::is_deadlock(e) => {
                    tracing::warn!("alert intake: a batch met a deadlock; writing it again")
                }
                _ => break,
            }
        }
        match result {
            Ok(ingested) => {
                self.wake_alerts.notify_one();
                if ingested.iter().any(|i| i.incident.is_some()) {
                    self.wake_outbox.notify_one();
                }
                let mut rest = ingested.into_iter();
                for (alerts, answer) in batch {
                    let mine: Vec<Ingested> = rest.by_ref().take(alerts.len()).collect();
                    let _ = answer.send(Ok(mine));
                }
            }
            Err(e) => {
                let refusal = Refusal::unavailable("store alerts", e);
                for (_, answer) in batch {
                    let _ = answer.send(Err(refusal.clone()));
                }
            }
        }
    }

    /// An alert group by id (from a button or a form).
    pub async fn alert(&self, group: i64) -> Result<StoredAlert, Refusal> {
        match self.db.alert(group).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(Refusal::Rule("That alert no longer exists.".into())),
            Err(e) => Err(Refusal::unavailable("read an alert", e)),
        }
    }

    /// "Acknowledge": someone is looking; the message says who.
    pub async fn acknowledge_alert(&self, group: i64, actor: &UserId, key: &str) -> Result<AlertTriage, Refusal> {
        self.triage(group, actor, None, key).await
    }

    /// "Silence 1 h": the fingerprint's message is neither posted nor updated for an hour.
    pub async fn silence_alert(&self, group: i64, actor: &UserId, key: &str) -> Result<AlertTriage, Refusal> {
        self.triage(group, actor, Some(chrono::Utc::now() + SILENCE_FOR), key)
            .await
    }

    async fn triage(
        &self,
        group: i64,
        actor: &UserId,
        silence_until: Option<chrono::DateTime<chrono::Utc>>,
        key: &str,
    ) -> Result<AlertTriage, Refusal> {
        let now = chrono::Utc::now();
        match self
            .db
            .triage_alert(group, actor.as_str(), silence_until, key, now, self.alert_sync())
            .await
        {
            Ok(None) => Err(Refusal::Rule("That alert no longer exists.".into())),
            Ok(Some(false)) => Ok(AlertTriage::AlreadyDone),
            Ok(Some(true)) => {
                self.wake_alerts.notify_one();
                Ok(AlertTriage::Done(Box::new(self.alert(group).await?)))
            }
            Err(e) => Err(Refusal::unavailable("triage an alert", e)),
        }
    }

    /// "Link to incident": the alert goes on the incident's timeline (and its channel). Only
    /// open incidents take alerts; a private one only from its members.
    pub async fn link_alert(&self, group: i64, incident: IncidentId, actor: &UserId) -> Result<Incident, Refusal> {
        let alert = self.alert(group).await?;
        let incident = self.incident(incident).await?;
        if !incident.status.is_open() {
            return Err(Refusal::Rule(format!(
                "{} is {}; link the alert to an open incident.",
                incident.number, incident.status
            )));
        }
        if incident.is_private && !self.is_member(&incident, actor).await {
            return Err(Refusal::Rule(
                "Only members of a private incident can link alerts to it.".into(),
            ));
        }
        self.link(&alert, &incident, actor.as_str(), false).await?;
        Ok(incident)
    }

    /// After a declaration from the alert's "Declare incident" form or by a rule: links it,
    /// and the alert's start becomes the incident's detection time (and impact start).
    pub async fn declared_from_alert(&self, group: i64, incident: &Incident, actor: &str) -> Result<(), Refusal> {
        let alert = self.alert(group).await?;
        self.link(&alert, incident, actor, true).await
    }

    async fn link(&self, alert: &StoredAlert, incident: &Incident, actor: &str, detected: bool) -> Result<(), Refusal> {
        self.db
            .link_alert(
                alert,
                incident.id,
                actor,
                detected,
                chrono::Utc::now(),
                self.alert_sync(),
            )
            .await
            .map_err(|e| Refusal::unavailable("link an alert", e))?;
        self.wake_outbox.notify_one();
        self.wake_alerts.notify_one();
        Ok(())
    }

    /// An `[[alert_rules]]` declaration: `new` is declared once per group episode (the key),
    /// linked to the alert, and says on its timeline that a rule declared it.
    pub async fn auto_declare(&self, alert: &StoredAlert, new: &NewIncident) -> Result<Incident, Refusal> {
        let key = format!("alert-rule:{}:{}", alert.id, alert.episode);
        let incident = match self.declare(new, &key).await? {
            DeclareOutcome::Created(i) | DeclareOutcome::Duplicate(i) => i,
        };
        self.db
            .note_auto_declared(incident.id, alert, chrono::Utc::now())
            .await
            .map_err(|e| Refusal::unavailable("record an automatic declaration", e))?;
        self.link(alert, &incident, crate::db::BOT_ACTOR, true).await?;
        Ok(incident)
    }
}
