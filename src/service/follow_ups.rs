//! Follow-up use-cases: check a new one, close one, list them for a person.

use super::{Listing, Refusal, Service};
use crate::db::Refused;
use crate::incident::followup::{FollowUp, FollowUpState, NewFollowUp};
use crate::incident::model::{Incident, IncidentId, IncidentNumber, UserId};
use std::collections::HashMap;

/// Follow-ups read for one list.
const FOLLOW_UPS_READ: i64 = 200;

/// A follow-up as typed; checked against the workspace (the owner is a person) and the
/// calendar (the due day is not past) by [`Service::new_follow_up`].
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpRequest {
    pub text: String,
    pub owner: Option<UserId>,
    pub due: Option<chrono::NaiveDate>,
    pub link: Option<String>,
}

/// Which follow-ups a list shows.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpScope {
    /// Asked in an incident's channel: that incident's, every state.
    Incident(IncidentNumber),
    /// Asked elsewhere: the open ones of every incident, the viewer's first, then overdue first.
    Open,
}

/// A list of follow-ups for one viewer.
#[derive(Debug, Clone)]
pub struct FollowUpListing {
    pub scope: FollowUpScope,
    pub items: Listing<FollowUp>,
}

/// A follow-up after a close was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpClosed {
    pub number: IncidentNumber,
    pub seq: i64,
    pub state: FollowUpState,
    /// False when this exact request was handled before (its state is what it was then).
    pub just_now: bool,
}

impl Service {
    /// Checks a typed follow-up: the owner exists and is a person, the due day is not past.
    pub async fn new_follow_up(&self, request: FollowUpRequest) -> Result<NewFollowUp, Refusal> {
        if let Some(owner) = &request.owner {
            self.check_person(owner).await?;
        }
        NewFollowUp::parse(&request.text, request.owner, request.due, request.link, self.today())
            .map_err(|e| Refusal::Rule(e.message))
    }

    /// `followup done|wontdo N` in an incident's channel.
    pub async fn close_follow_up_seq(
        &self,
        incident: &Incident,
        seq: i64,
        state: FollowUpState,
        actor: &UserId,
        key: &str,
    ) -> Result<FollowUpClosed, Refusal> {
        match self.db.follow_up_by_seq(incident.id, seq).await {
            Ok(Some(f)) => self.close_follow_up(&f, state, actor, key).await,
            Ok(None) => Err(Refusal::Rule(format!(
                "{} has no follow-up #{seq} (`/incident followups` lists them).",
                incident.number
            ))),
            Err(e) => Err(Refusal::unavailable("read a follow-up", e)),
        }
    }

    /// A **Done** click: the follow-up by its id.
    pub async fn close_follow_up_by_id(
        &self,
        id: i64,
        state: FollowUpState,
        actor: &UserId,
        key: &str,
    ) -> Result<FollowUpClosed, Refusal> {
        match self.db.follow_up(id).await {
            Ok(Some(f)) => self.close_follow_up(&f, state, actor, key).await,
            Ok(None) => Err(Refusal::Rule("That follow-up no longer exists.".into())),
            Err(e) => Err(Refusal::unavailable("read a follow-up", e)),
        }
    }

    async fn close_follow_up(
        &self,
        f: &FollowUp,
        state: FollowUpState,
        actor: &UserId,
        key: &str,
    ) -> Result<FollowUpClosed, Refusal> {
        match self
            .db
            .close_follow_up(f.id, state, actor, chrono::Utc::now(), key)
            .await
        {
            Ok(Ok(closed)) => {
                tracing::info!(incident = %closed.number, follow_up = closed.seq, state = closed.state.as_str(), "follow-up closed");
                self.wake_outbox.notify_one();
                Ok(FollowUpClosed {
                    number: closed.number,
                    seq: closed.seq,
                    state: closed.state,
                    just_now: true,
                })
            }
            Ok(Err(Refused::Rule(reason))) => Err(Refusal::Rule(reason)),
            Ok(Err(Refused::AlreadyHandled)) => Ok(FollowUpClosed {
                number: f.number,
                seq: f.seq,
                state: f.state,
                just_now: false,
            }),
            Err(e) => Err(Refusal::unavailable("close a follow-up", e)),
        }
    }

    /// `followups`: in an incident's channel, that incident's follow-ups; elsewhere the open
    /// ones of every incident. Follow-ups of private incidents only for their members (others
    /// get a count).
    pub async fn follow_ups(&self, channel: &str, viewer: &UserId) -> Result<FollowUpListing, Refusal> {
        let mut membership: HashMap<IncidentId, bool> = HashMap::new();
        let (scope, items) = match self.incident_in_channel(channel).await? {
            Some(incident) => {
                // Asked in the incident's channel: the viewer is in it, no Slack lookup needed.
                membership.insert(incident.id, true);
                let items = self
                    .db
                    .follow_ups_of(incident.id)
                    .await
                    .map_err(|e| Refusal::unavailable("list follow-ups", e))?;
                (FollowUpScope::Incident(incident.number), items)
            }
            None => {
                let items = self
                    .db
                    .open_follow_ups(viewer, chrono::Utc::now(), FOLLOW_UPS_READ)
                    .await
                    .map_err(|e| Refusal::unavailable("list follow-ups", e))?;
                (FollowUpScope::Open, items)
            }
        };
        // The private incidents to ask about, each once, all at once.
        let mut to_check = Vec::new();
        for item in items.iter().filter(|i| i.private) {
            if let std::collections::hash_map::Entry::Vacant(entry) = membership.entry(item.incident_id) {
                // Unknown counts as no until the lookup says otherwise.
                entry.insert(false);
                if let Ok(incident) = self.db.incident(item.incident_id).await {
                    to_check.push(incident);
                }
            }
        }
        let checks = to_check
            .iter()
            .map(|incident| async move { (incident.id, self.is_member(incident, viewer).await) });
        membership.extend(futures_util::future::join_all(checks).await);
        let mut listing = Listing {
            visible: Vec::new(),
            hidden: 0,
        };
        for item in items {
            if item.private && !membership.get(&item.incident_id).copied().unwrap_or(false) {
                listing.hidden += 1;
            } else {
                listing.visible.push(item);
            }
        }
        Ok(FollowUpListing { scope, items: listing })
    }
}
