//! `GET /status.json`: the page's content for machines (schema in the README, "Status page").
//! Its own serde types, so the public schema does not move when the domain types do.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::comms::{PageView, PublicIncident};

#[derive(Serialize)]
struct Document<'a> {
    page: PageHead<'a>,
    overall: &'static str,
    components: Vec<Component<'a>>,
    /// Active incidents first (newest first), then those resolved within the recent window.
    incidents: Vec<Incident<'a>>,
}

#[derive(Serialize)]
struct PageHead<'a> {
    title: &'a str,
    /// When the newest update on the page was published (`null` when none is): derived from
    /// the data, not the clock, so an unchanged page keeps its body and its ETag.
    updated_at: Option<String>,
}

#[derive(Serialize)]
struct Component<'a> {
    id: &'a str,
    name: &'a str,
    status: &'static str,
}

#[derive(Serialize)]
struct Incident<'a> {
    id: &'a str,
    title: &'a str,
    status: &'static str,
    started_at: String,
    resolved_at: Option<String>,
    updates: Vec<Update<'a>>,
}

#[derive(Serialize)]
struct Update<'a> {
    id: &'a str,
    published_at: String,
    message: &'a str,
    components: Vec<Impact<'a>>,
    last: bool,
}

#[derive(Serialize)]
struct Impact<'a> {
    id: &'a str,
    status: &'static str,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn incident(i: &PublicIncident) -> Incident<'_> {
    Incident {
        id: &i.public_id,
        title: &i.title,
        status: if i.resolved_at.is_some() { "resolved" } else { "active" },
        started_at: rfc3339(i.started_at),
        resolved_at: i.resolved_at.map(rfc3339),
        updates: i
            .updates
            .iter()
            .map(|u| Update {
                id: &u.uuid,
                published_at: rfc3339(u.published_at),
                message: &u.message,
                components: u
                    .components
                    .iter()
                    .map(|c| Impact {
                        id: &c.component,
                        status: c.status.as_str(),
                    })
                    .collect(),
                last: u.last,
            })
            .collect(),
    }
}

pub fn page(view: &PageView) -> anyhow::Result<String> {
    let updated_at = view
        .active
        .iter()
        .chain(&view.recent)
        .flat_map(|i| i.updates.iter().map(|u| u.published_at))
        .max()
        .map(rfc3339);
    let document = Document {
        page: PageHead {
            title: &view.title,
            updated_at,
        },
        overall: view.overall.as_str(),
        components: view
            .components
            .iter()
            .map(|(c, s)| Component {
                id: &c.id,
                name: &c.name,
                status: s.as_str(),
            })
            .collect(),
        incidents: view.active.iter().chain(&view.recent).map(incident).collect(),
    };
    Ok(serde_json::to_string(&document)?)
}
