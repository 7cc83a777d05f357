//! `GET /status/feed.atom`: the newest published updates as Atom 1.0 (RFC 4287), written by
//! atom_syndication (it escapes; no XML is built by hand here).
//!
//! Identities are stable so readers never show an update twice: an entry's id is its update's
//! uuid (`urn:uuid:…`, fixed when the update was written), the feed's is derived from the
//! page's title. Links are relative to the feed's own URL: the bot does not know the public
//! address it is reached at, and trusting the `Host` header would let anyone poison caches.

use atom_syndication::{Content, Entry, Feed, FixedDateTime, Link, Person, Text};
use chrono::{DateTime, Utc};

use crate::comms::{PublicUpdate, StatusPage};

/// The feed's id: the same for the same page title, across restarts and replicas.
pub fn feed_id(page: &StatusPage) -> String {
    let hash = super::etag(page.title.as_bytes());
    format!("urn:incident-bot:status:{}", hash.trim_matches('"'))
}

fn fixed(at: DateTime<Utc>) -> FixedDateTime {
    at.fixed_offset()
}

fn link(href: String, rel: &str, mime_type: Option<&str>) -> Link {
    Link {
        href,
        rel: rel.to_string(),
        mime_type: mime_type.map(str::to_string),
        ..Link::default()
    }
}

/// `entries`: `(public id, public title, update)`, newest first ([`crate::db::Db::public_feed`]).
pub fn feed(page: &StatusPage, entries: &[(String, String, PublicUpdate)]) -> anyhow::Result<String> {
    let entries: Vec<Entry> = entries
        .iter()
        .map(|(public_id, title, update)| Entry {
            id: format!("urn:uuid:{}", update.uuid),
            title: Text::plain(title.as_str()),
            updated: fixed(update.published_at),
            published: Some(fixed(update.published_at)),
            links: vec![link(
                format!("/status/incidents/{public_id}"),
                "alternate",
                Some("text/html"),
            )],
            content: Some(Content {
                value: Some(update.message.clone()),
                content_type: Some("text".to_string()),
                ..Content::default()
            }),
            ..Entry::default()
        })
        .collect();
    // With no entry yet the feed has never been updated: the epoch says so and, unlike the
    // clock, keeps the body (and its ETag) the same from one request to the next.
    let updated = entries.first().map(|e| e.updated).unwrap_or_default();
    let feed = Feed {
        title: Text::plain(page.title.as_str()),
        id: feed_id(page),
        updated,
        // RFC 4287 wants an author for the feed (or for every entry): the page speaks for itself.
        authors: vec![Person {
            name: page.title.clone(),
            ..Person::default()
        }],
        links: vec![
            link("/status/feed.atom".to_string(), "self", Some("application/atom+xml")),
            link("/status".to_string(), "alternate", Some("text/html")),
        ],
        entries,
        ..Feed::default()
    };
    let bytes = feed.write_to(Vec::new())?;
    Ok(String::from_utf8(bytes)?)
}
