//! Customer-communication use-cases (issue 14): write a customer update (a draft, or published
//! at once when approval is off), approve and publish one, and what the form starts from.

use super::{Refusal, Service};
use crate::comms::{Component, ComponentStatus, CustomerUpdate, NewCustomerUpdate, StatusPage, UpdateState};
use crate::db::Refused;
use crate::incident::model::{Incident, IncidentId, UserId};

/// A customer update as written in the form, checked by [`Service::write_customer_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerUpdateRequest {
    pub public_title: String,
    pub message: String,
    /// Component ids.
    pub components: Vec<String>,
    pub status: ComponentStatus,
    pub last: bool,
}

/// What the customer-update form starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerForm {
    pub public_title: String,
    pub message: String,
    pub components: Vec<String>,
    pub status: ComponentStatus,
}

/// Why a form field is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefusal {
    Field(crate::comms::FieldError),
    Refused(Refusal),
}

impl Service {
    /// The status page, or the refusal to give when it is not configured.
    pub fn status_page(&self) -> Result<&StatusPage, Refusal> {
        self.policy.status_page.as_ref().ok_or_else(|| {
            Refusal::Rule(
                "Customer updates need a status page: add a [status_page] section (title, components) to the \
                 configuration."
                    .into(),
            )
        })
    }

    /// Whether `incident` can take customer updates; the reason when not.
    pub fn customer_refusal(&self, incident: &Incident) -> Option<Refusal> {
        if let Err(r) = self.status_page() {
            return Some(r);
        }
        crate::comms::refusal(incident.number, incident.is_private, incident.was_canceled()).map(Refusal::Rule)
    }

    /// The form's starting point: the update being edited, or else the latest published title
    /// (never the internal title), the components behind the incident's service lines, the
    /// status its severity suggests, and the template followed by the latest internal update.
    pub async fn customer_form(&self, incident: &Incident, edit: Option<i64>) -> Result<CustomerForm, Refusal> {
        let page = self.status_page()?;
        let updates = self
            .db
            .customer_updates_of(incident.id)
            .await
            .map_err(|e| Refusal::unavailable("read customer updates", e))?;
        if let Some(id) = edit {
            let Some(u) = updates.iter().find(|u| u.id == id) else {
                return Err(Refusal::Rule("That customer update is not this incident's.".into()));
            };
            return Ok(CustomerForm {
                public_title: u.public_title.clone(),
                message: u.message.clone(),
                components: u.components.iter().map(|c| c.component.clone()).collect(),
                status: u
                    .components
                    .iter()
                    .map(|c| c.status)
                    .max()
                    .unwrap_or(ComponentStatus::Operational),
            });
        }
        let latest_public = updates.iter().rev().find(|u| u.state == UpdateState::Published);
        let status = latest_public
            .and_then(|u| u.components.iter().map(|c| c.status).max())
            .unwrap_or_else(|| ComponentStatus::suggested_for(incident.severity));
        let components: Vec<&Component> = match latest_public {
            Some(u) => u
                .components
                .iter()
                .filter_map(|c| page.component(&c.component))
                .collect(),
            None => page.components_for(&incident.services),
        };
        let mut message = page.template(status, &components);
        let events = self
            .db
            .timeline(incident.id)
            .await
            .map_err(|e| Refusal::unavailable("read the timeline", e))?;
        if let Some(update) = events.iter().rev().find(|e| e.kind == "update") {
            let known = update.details["known"].as_str().unwrap_or_default().trim();
            if !known.is_empty() {
                message.push_str(&format!("\n\n(Latest internal update, edit before sending: {known})"));
            }
        }
        Ok(CustomerForm {
            public_title: latest_public.map(|u| u.public_title.clone()).unwrap_or_default(),
            message,
            components: components.iter().map(|c| c.id.clone()).collect(),
            status,
        })
    }

    /// Writes a customer update on `incident` as `author`, once per `key`. `Ok(None)`: this
    /// submission was stored before.
    pub async fn write_customer_update(
        &self,
        incident: IncidentId,
        request: &CustomerUpdateRequest,
        author: &UserId,
        key: &str,
    ) -> Result<Option<CustomerUpdate>, WriteRefusal> {
        let page = self.status_page().map_err(WriteRefusal::Refused)?;
        let new = NewCustomerUpdate::validate(
            page,
            &request.public_title,
            &request.message,
            &request.components,
            request.status,
            request.last,
        )
        .map_err(WriteRefusal::Field)?;
        match self
            .db
            .write_customer_update(incident, &new, author, chrono::Utc::now(), key, page)
            .await
        {
            Ok(Ok(update)) => {
                tracing::info!(
                    update = update.id,
                    state = update.state.as_str(),
                    "customer update written"
                );
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(Some(update))
            }
            Ok(Err(Refused::Rule(why))) => Err(WriteRefusal::Refused(Refusal::Rule(why))),
            Ok(Err(Refused::AlreadyHandled)) => Ok(None),
            Err(e) => Err(WriteRefusal::Refused(Refusal::unavailable(
                "store a customer update",
                e,
            ))),
        }
    }

    /// Approves and publishes draft `update` as `actor`, once per `key` (`Ok(None)`: handled
    /// before).
    pub async fn approve_customer_update(
        &self,
        update: i64,
        actor: &UserId,
        key: &str,
    ) -> Result<Option<CustomerUpdate>, Refusal> {
        let page = self.status_page()?;
        match self
            .db
            .approve_customer_update(update, actor, chrono::Utc::now(), key, page)
            .await
        {
            Ok(Ok(update)) => {
                tracing::info!(update = update.id, "customer update approved and published");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(Some(update))
            }
            Ok(Err(Refused::Rule(why))) => Err(Refusal::Rule(why)),
            Ok(Err(Refused::AlreadyHandled)) => Ok(None),
            Err(e) => Err(Refusal::unavailable("publish a customer update", e)),
        }
    }
}
