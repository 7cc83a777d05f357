//! The post-incident review draft: the record it is written from, read once, with display
//! names where the chat platform knows them (the CLI export has none: ids are shown).

use super::Service;
use crate::config::Policy;
use crate::db::Db;
use crate::incident::followup::FollowUp;
use crate::incident::model::{Incident, IncidentId, TimelineEvent, UserId};
use crate::incident::pir::{self, ReviewInput};
use std::collections::BTreeMap;

/// Most people looked up for one draft (one `users.info` each).
const NAMES_LOOKED_UP: usize = 30;

/// An incident with its timeline and follow-ups: what a review draft is written from.
pub struct ReviewRecord {
    pub incident: Incident,
    pub timeline: Vec<TimelineEvent>,
    pub follow_ups: Vec<FollowUp>,
    pub vendor_tickets: Vec<crate::vendor::TicketHistory>,
    /// Changes linked to it as suspected causes (issue 12).
    pub linked_changes: Vec<crate::calendar::PlannedChange>,
}

impl ReviewRecord {
    pub async fn load(db: &Db, id: IncidentId) -> anyhow::Result<ReviewRecord> {
        let incident = db.incident(id).await?;
        let (timeline, follow_ups) = (db.timeline(id).await?, db.follow_ups_of(id).await?);
        let vendor_tickets = db.vendor_histories(id).await?;
        let linked_changes = db.linked_changes(id).await?;
        Ok(ReviewRecord {
            incident,
            timeline,
            follow_ups,
            vendor_tickets,
            linked_changes,
        })
    }

    /// The draft as Markdown, with its linked changes (issue 12) after the generated sections.
    pub fn markdown(&self, input: &ReviewInput<'_>) -> String {
        let mut out = pir::markdown(input);
        out.push_str(&crate::calendar::review_section(&self.linked_changes, input.timezone));
        out
    }

    /// The draft as JSON, with `linked_changes`.
    pub fn json(&self, input: &ReviewInput<'_>) -> serde_json::Value {
        let mut value = pir::json(input);
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "linked_changes".into(),
                serde_json::to_value(&self.linked_changes).unwrap_or_default(),
            );
        }
        value
    }

    /// The people the draft names: actors, role holders, the declarer, follow-up owners.
    fn people(&self) -> Vec<UserId> {
        let mut people: Vec<String> = self.timeline.iter().map(|e| e.actor.clone()).collect();
        people.extend([self.incident.spoc.to_string(), self.incident.declared_by.to_string()]);
        people.extend(self.incident.roles.values().map(|u| u.to_string()));
        people.extend(
            self.follow_ups
                .iter()
                .filter_map(|f| f.owner.as_ref().map(|o| o.to_string())),
        );
        people.sort();
        people.dedup();
        people.iter().filter_map(|p| UserId::parse(p).ok()).collect()
    }

    /// What [`pir::markdown`] and [`pir::json`] render, as of `now`.
    pub fn input<'a>(
        &'a self,
        policy: &'a Policy,
        names: &'a BTreeMap<String, String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ReviewInput<'a> {
        ReviewInput {
            incident: &self.incident,
            severity_description: &policy.severity(self.incident.severity).description,
            timeline: &self.timeline,
            follow_ups: &self.follow_ups,
            vendor_tickets: &self.vendor_tickets,
            names,
            timezone: policy.timezone,
            now,
        }
    }
}

impl Service {
    /// The review draft of an incident as Markdown, with people's display names: the record
    /// and its Markdown. Reads the whole record and asks the platform for up to 30 names, so
    /// callers run it off the ack path.
    pub async fn review_draft(&self, id: IncidentId) -> anyhow::Result<(ReviewRecord, String)> {
        let record = ReviewRecord::load(&self.db, id).await?;
        let mut names = BTreeMap::new();
        for person in record.people().into_iter().take(NAMES_LOOKED_UP) {
            // A name makes the draft readable; an id stays when a lookup fails.
            if let Ok(Ok(name)) = self.people.check_person(&person).await {
                names.insert(person.to_string(), name);
            }
        }
        let markdown = record.markdown(&record.input(&self.policy, &names, chrono::Utc::now()));
        Ok((record, markdown))
    }
}
