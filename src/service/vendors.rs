//! Vendor ticket use-cases: raise one, record a reply / escalation / close, snooze its chase,
//! list the open ones across incidents (private incidents only for their members).

use super::{Listing, Refusal, Service};
use crate::db::Refused;
use crate::incident::model::{Incident, IncidentId, UserId};
use crate::vendor::{NewTicket, TicketAction, VendorTicket};
use std::collections::HashMap;

/// Open vendor tickets read for one list.
const TICKETS_READ: i64 = 200;

/// A ticket after a change was asked for; `just_now` is false when this exact request was
/// handled before (a redelivery or a double click).
#[derive(Debug, Clone, PartialEq)]
pub struct TicketChanged {
    pub ticket: VendorTicket,
    pub just_now: bool,
}

/// A vendor ticket as typed (form or quick path), checked by [`Service::open_vendor_ticket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRequest {
    pub vendor: String,
    pub reference: String,
    pub link: Option<String>,
    pub asked: String,
}

impl Service {
    /// Raises vendor ticket `V<n>` on `incident` (vendor checked against the catalogue).
    pub async fn open_vendor_ticket(
        &self,
        incident: IncidentId,
        request: TicketRequest,
        actor: &UserId,
        key: &str,
    ) -> Result<Option<VendorTicket>, Refusal> {
        let new = NewTicket::parse(
            &self.policy.vendors,
            &request.vendor,
            &request.reference,
            request.link,
            &request.asked,
        )
        .map_err(Refusal::Rule)?;
        match self
            .db
            .open_vendor_ticket(incident, &new, actor, chrono::Utc::now(), key, &self.policy.vendors)
            .await
        {
            Ok(Ok(ticket)) => {
                super::tag_span(&ticket.number);
                tracing::info!(incident = %ticket.number, ticket = ticket.seq, vendor = %ticket.vendor, "vendor ticket opened");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(Some(ticket))
            }
            Ok(Err(Refused::Rule(reason))) => Err(Refusal::Rule(reason)),
            Ok(Err(Refused::AlreadyHandled)) => Ok(None),
            Err(e) => Err(Refusal::unavailable("open a vendor ticket", e)),
        }
    }

    /// The ticket of `incident` that `word` names (`V2`, or the vendor's reference).
    pub async fn find_vendor_ticket(&self, incident: &Incident, word: &str) -> Result<VendorTicket, Refusal> {
        let tickets = self
            .db
            .vendor_tickets_of(incident.id)
            .await
            .map_err(|e| Refusal::unavailable("read vendor tickets", e))?;
        let matching: Vec<&VendorTicket> = tickets.iter().filter(|t| t.matches(word)).collect();
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let known: Vec<String> = tickets.iter().map(|t| format!("{} {}", t.label(), t.title())).collect();
                Err(Refusal::Rule(format!(
                    "{} has no vendor ticket `{}`. {}",
                    incident.number,
                    crate::incident::model::truncate(word, 40),
                    if known.is_empty() {
                        "It has none yet: `/incident vendor <vendor> <ref>` raises one.".to_string()
                    } else {
                        format!("Its tickets: {}.", known.join(", "))
                    }
                )))
            }
            several => Err(Refusal::Rule(format!(
                "`{}` names {}; say which by its number.",
                crate::incident::model::truncate(word, 40),
                several.iter().map(|t| t.label()).collect::<Vec<_>>().join(" and ")
            ))),
        }
    }

    /// Applies `action` to the ticket `word` names on `incident`.
    pub async fn vendor_ticket_action(
        &self,
        incident: &Incident,
        word: &str,
        action: &TicketAction,
        actor: &UserId,
        key: &str,
    ) -> Result<TicketChanged, Refusal> {
        let ticket = self.find_vendor_ticket(incident, word).await?;
        self.change_vendor_ticket(&ticket, action, actor, key).await
    }

    /// A click on a reminder or a question: the ticket by its id.
    pub async fn vendor_ticket_action_by_id(
        &self,
        id: i64,
        action: &TicketAction,
        actor: &UserId,
        key: &str,
    ) -> Result<TicketChanged, Refusal> {
        match self.db.vendor_ticket(id).await {
            Ok(Some(ticket)) => self.change_vendor_ticket(&ticket, action, actor, key).await,
            Ok(None) => Err(Refusal::Rule("That vendor ticket no longer exists.".into())),
            Err(e) => Err(Refusal::unavailable("read a vendor ticket", e)),
        }
    }

    async fn change_vendor_ticket(
        &self,
        ticket: &VendorTicket,
        action: &TicketAction,
        actor: &UserId,
        key: &str,
    ) -> Result<TicketChanged, Refusal> {
        super::tag_span(&ticket.number);
        match self
            .db
            .vendor_ticket_action(ticket.id, action, actor, chrono::Utc::now(), key, &self.policy.vendors)
            .await
        {
            Ok(Ok(changed)) => {
                tracing::info!(incident = %changed.number, ticket = changed.seq, action = action.kind(), "vendor ticket changed");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(TicketChanged {
                    ticket: changed,
                    just_now: true,
                })
            }
            Ok(Err(Refused::Rule(reason))) => Err(Refusal::Rule(reason)),
            Ok(Err(Refused::AlreadyHandled)) => Ok(TicketChanged {
                ticket: ticket.clone(),
                just_now: false,
            }),
            Err(e) => Err(Refusal::unavailable("change a vendor ticket", e)),
        }
    }

    /// `vendors [vendor]`: open vendor tickets across incidents, oldest first; those of
    /// private incidents only for their members (others get a count).
    pub async fn open_vendor_tickets(
        &self,
        viewer: &UserId,
        vendor: Option<&str>,
    ) -> Result<Listing<VendorTicket>, Refusal> {
        let vendor = match vendor {
            Some(name) => Some(
                self.policy
                    .vendors
                    .canonical(name)
                    .ok_or_else(|| Refusal::Rule(self.policy.vendors.find(name).err().unwrap_or_default()))?,
            ),
            None => None,
        };
        let tickets = self
            .db
            .open_vendor_tickets(vendor.as_deref(), TICKETS_READ)
            .await
            .map_err(|e| Refusal::unavailable("list vendor tickets", e))?;
        // One (cached) membership lookup per private incident, all at once.
        let mut private: HashMap<IncidentId, Option<Incident>> = HashMap::new();
        for t in tickets.iter().filter(|t| t.private) {
            if let std::collections::hash_map::Entry::Vacant(entry) = private.entry(t.incident_id) {
                entry.insert(self.db.incident(t.incident_id).await.ok());
            }
        }
        let checks = private.into_iter().map(|(id, incident)| async move {
            let member = match &incident {
                Some(incident) => self.is_member(incident, viewer).await,
                None => false,
            };
            (id, member)
        });
        let members: HashMap<IncidentId, bool> = futures_util::future::join_all(checks).await.into_iter().collect();
        let mut listing = Listing {
            visible: Vec::new(),
            hidden: 0,
        };
        for t in tickets {
            if t.private && !members.get(&t.incident_id).copied().unwrap_or(false) {
                listing.hidden += 1;
            } else {
                listing.visible.push(t);
            }
        }
        Ok(listing)
    }
}
