//! The application layer: the use-cases (declare, apply a change, lists, follow-ups, reviews,
//! reports) that Slack, the CLI and the HTTP endpoints all call.
//!
//! It knows neither Slack nor HTTP: inputs are domain requests and the acting person, outputs
//! are domain results (what was stored, what to show) or a [`Refusal`]. What it needs from the
//! chat platform (is this a person? who is in that channel?) comes through the [`People`]
//! trait, which `slack/` implements with `users.info` and `conversations.members`. Slack side
//! effects are not made here: a use-case stores them as outbox jobs in the same transaction as
//! its change (see [`crate::outbox`]) and wakes the outbox and the reminder loop.
//!
//! This layer may read the clock (the domain below it may not): every use-case uses
//! `chrono::Utc::now()` for "now" and [`Service::today`] for local due days.

mod alerts;
pub mod calendar;
mod comms;
mod follow_ups;
mod review;
mod vendors;

pub use alerts::AlertTriage;
pub use comms::{CustomerForm, CustomerUpdateRequest, WriteRefusal};
pub use follow_ups::{FollowUpClosed, FollowUpListing, FollowUpRequest, FollowUpScope};
pub use review::ReviewRecord;
pub use vendors::{TicketChanged, TicketRequest};

use crate::config::Policy;
use crate::db::{Db, DeclareOutcome, Refused};
use crate::incident::change::{Applied, Change};
use crate::incident::model::{Incident, IncidentId, IncidentNumber, NewIncident, TimelineEvent, UserId};
use crate::metrics::METRICS;
use crate::report::{PeriodSpec, Report};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The answer when the database does not answer in time (or fails): nothing was changed.
pub const TRY_AGAIN: &str =
    "⚠️ I cannot reach my database right now; nothing was changed. Please try again in a minute.";

/// How long a person check may take inside an ack before we give up on it.
const PERSON_CHECK_BUDGET: Duration = Duration::from_millis(1000);

/// Records the incident a piece of work is about on the current span (`incident = "INC-42"`,
/// on spans that declare that field: envelopes, outbox jobs, reminders), so what is logged
/// from here on says which incident it concerns.
pub fn tag_span(number: &IncidentNumber) {
    tracing::Span::current().record("incident", tracing::field::display(number));
}

/// Why a use-case did not do what was asked; its text is what the person is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The rules say no (lifecycle, validation, permissions); the text says why and how to fix it.
    #[error("{0}")]
    Rule(String),
    /// The database did not answer: nothing was changed, trying again later will work.
    #[error("{}", TRY_AGAIN)]
    Unavailable,
}

impl Refusal {
    /// Logs the database error behind an [`Refusal::Unavailable`].
    fn unavailable(doing: &str, e: anyhow::Error) -> Refusal {
        tracing::error!(error = %e, "database unavailable while trying to {doing}");
        Refusal::Unavailable
    }
}

/// What the application asks the chat platform about people and channels.
pub trait People: Send + Sync {
    /// `Ok(Ok(display name))` for a person of this workspace who can hold a role or own a
    /// follow-up; `Ok(Err(why))` when they cannot (unknown, deactivated, a bot); `Err` when the
    /// platform could not tell.
    fn check_person<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, anyhow::Result<Result<String, String>>>;

    /// The members of a channel.
    fn channel_members<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<String>>>;
}

/// Some items shown to a person, and how many were hidden from them (private incidents they
/// are not in).
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub visible: Vec<T>,
    pub hidden: usize,
}

/// The use-cases, with what they need: the store, the settings, the chat platform's view of
/// people, and the loops to wake after a change.
#[derive(Clone)]
pub struct Service {
    pub db: Db,
    pub policy: Policy,
    people: Arc<dyn People>,
    wake_outbox: Arc<Notify>,
    wake_reminders: Arc<Notify>,
    /// Wakes the triage channel's poster (issue 15) after an alert or a triage action.
    wake_alerts: Arc<Notify>,
    /// Alert intake requests waiting to be stored together (one transaction per batch).
    intake: Arc<alerts::IntakeBatch>,
    /// Wakes the change calendar's loop (see [`Service::with_change_wake`]).
    wake_changes: Arc<Notify>,
    /// The calendar feed as last rendered (see [`Service::calendar_feed`]).
    feed_cache: Arc<tokio::sync::Mutex<Option<calendar::CachedFeed>>>,
}

impl Service {
    pub fn new(
        db: Db,
        policy: Policy,
        people: Arc<dyn People>,
        wake_outbox: Arc<Notify>,
        wake_reminders: Arc<Notify>,
    ) -> Service {
        let intake = Arc::new(alerts::IntakeBatch::new(&db));
        Service {
            db,
            policy,
            people,
            wake_outbox,
            wake_reminders,
            wake_alerts: Arc::new(Notify::new()),
            intake,
            wake_changes: Arc::new(Notify::new()),
            feed_cache: Arc::default(),
        }
    }

    /// The same service on another pool of the same database (the background lane's, see
    /// [`crate::background`]); caches and wake-ups stay shared.
    pub fn on(&self, db: Db) -> Service {
        Service { db, ..self.clone() }
    }

    /// The same service, waking `wake` after alerts are stored or triaged (the poster loop).
    pub fn with_alert_wake(mut self, wake: Arc<Notify>) -> Service {
        self.wake_alerts = wake;
        self
    }

    /// Shares `wake` with the change calendar's loop, so new changes are announced at once.
    pub fn with_change_wake(mut self, wake: Arc<Notify>) -> Service {
        self.wake_changes = wake;
        self
    }

    /// Today in the configured time zone (due dates are local days).
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now().with_timezone(&self.policy.timezone).date_naive()
    }

    /// Stores a declaration (once per `key`: a resubmitted form finds the first one) with its
    /// outbox jobs (channel, card, announcement) and SLA clock.
    pub async fn declare(&self, new: &NewIncident, key: &str) -> Result<DeclareOutcome, Refusal> {
        let outcome = self
            .db
            .declare(new, key, chrono::Utc::now(), &self.policy.slas())
            .await
            .map_err(|e| Refusal::unavailable("store a declaration", e))?;
        match &outcome {
            DeclareOutcome::Created(incident) => {
                tag_span(&incident.number);
                METRICS.incidents_declared.inc(&[incident.severity.as_str()]);
                tracing::info!(incident = %incident.number, severity = %incident.severity, private = incident.is_private, "incident declared");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
            }
            DeclareOutcome::Duplicate(incident) => {
                tracing::info!(incident = %incident.number, "duplicate declare submission ignored");
            }
        }
        Ok(outcome)
    }

    /// Applies a change by `actor`, once per `key`; `Ok(None)` when it was applied before (a
    /// redelivery or a double click).
    pub async fn apply(
        &self,
        id: IncidentId,
        change: &Change,
        actor: &UserId,
        key: &str,
    ) -> Result<Option<Applied>, Refusal> {
        match self
            .db
            .apply_change(id, change, actor, chrono::Utc::now(), Some(key), &self.policy.rules())
            .await
        {
            Ok(Ok(applied)) => {
                // Issue 12: new service lines may bring other changes into question.
                if let Change::Impact { .. } = change {
                    self.correlate_again(&applied.incident).await;
                }
                tag_span(&applied.incident.number);
                tracing::info!(incident = %applied.incident.number, change = ?std::mem::discriminant(change), "incident changed");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(Some(applied))
            }
            Ok(Err(Refused::Rule(reason))) => Err(Refusal::Rule(reason)),
            Ok(Err(Refused::AlreadyHandled)) => Ok(None),
            Err(e) => Err(Refusal::unavailable("apply a change", e)),
        }
    }

    /// The incident whose channel this is, if any.
    pub async fn incident_in_channel(&self, channel: &str) -> Result<Option<Incident>, Refusal> {
        self.db
            .incident_by_channel(channel)
            .await
            .map_err(|e| Refusal::unavailable("find a channel's incident", e))
    }

    /// An incident by id (from a button or a form).
    pub async fn incident(&self, id: IncidentId) -> Result<Incident, Refusal> {
        self.db
            .incident(id)
            .await
            .map_err(|e| Refusal::unavailable("read an incident", e))
    }

    /// An incident's timeline, oldest first.
    pub async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEvent>, Refusal> {
        self.db
            .timeline(id)
            .await
            .map_err(|e| Refusal::unavailable("read a timeline", e))
    }

    /// `list`: the open incidents, worst first; private ones only for their members.
    pub async fn active_incidents(&self, viewer: &UserId) -> Result<Listing<Incident>, Refusal> {
        let incidents = self
            .db
            .active_incidents()
            .await
            .map_err(|e| Refusal::unavailable("list incidents", e))?;
        // One (cached) membership lookup per private incident, all at once.
        let checks = incidents.into_iter().map(|incident| async move {
            let visible = !incident.is_private || self.is_member(&incident, viewer).await;
            (incident, visible)
        });
        let mut listing = Listing {
            visible: Vec::new(),
            hidden: 0,
        };
        for (incident, visible) in futures_util::future::join_all(checks).await {
            if visible {
                listing.visible.push(incident);
            } else {
                listing.hidden += 1;
            }
        }
        Ok(listing)
    }

    /// Whether `user` may see a private incident: a role holder or its declarer, or a member of
    /// its channel (unknown counts as no).
    pub async fn is_member(&self, incident: &Incident, user: &UserId) -> bool {
        if *user == incident.spoc || *user == incident.declared_by || incident.roles.values().any(|u| u == user) {
            return true;
        }
        let Some(channel) = incident.channel_id.as_deref() else {
            return false;
        };
        match self.people.channel_members(channel).await {
            Ok(members) => members.iter().any(|m| m == user.as_str()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check channel membership; hiding the private incident");
                false
            }
        }
    }

    /// `Err` says why `user` cannot hold a role or own a follow-up (or that the platform could
    /// not tell in time).
    pub async fn check_person(&self, user: &UserId) -> Result<(), Refusal> {
        match tokio::time::timeout(PERSON_CHECK_BUDGET, self.people.check_person(user)).await {
            Ok(Ok(Ok(_name))) => Ok(()),
            Ok(Ok(Err(why))) => Err(Refusal::Rule(why)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot check a person");
                Err(Refusal::Rule(
                    "⚠️ Slack did not tell me who that is just now; nothing was saved. Please try again.".into(),
                ))
            }
            Err(_) => Err(Refusal::Rule(
                "⚠️ Slack took too long to tell me who that is; nothing was saved. Please try again.".into(),
            )),
        }
    }

    /// A report for a period (and maybe one service line, which must be in the catalogue).
    pub async fn report(&self, period: PeriodSpec, service: Option<&str>) -> Result<Report, Refusal> {
        if let Some(s) = service {
            if !self.policy.services.iter().any(|known| known == s) {
                return Err(Refusal::Rule(format!(
                    "`{}` is not a service line here. Service lines: {}.",
                    s.chars().take(40).collect::<String>(),
                    self.policy.services.join(", ")
                )));
            }
        }
        Report::build(&self.db, &self.policy, period, service, chrono::Utc::now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot build a report");
                Refusal::Rule(
                    "⚠️ I could not build the report: my database is unavailable. Please try again in a minute.".into(),
                )
            })
    }
}
