//! The calendar feed (`GET /calendar.ics`): an iCalendar (RFC 5545) document of changes and
//! freezes, written with the `icalendar` crate (CRLF line endings, lines folded at 75 octets,
//! `,` `;` `\` escaped in text, as Google Calendar and Outlook require).
//!
//! Each change is one `VEVENT` whose `UID` never changes (`chg-<id>@incident-bot`), with
//! `SEQUENCE` bumped on every edit so that subscribed clients replace their copy. Only the
//! change's own public fields go in: no incident is named (a linked one may be private), no
//! override reason.

use super::{ChangeState, Freeze, PlannedChange};
use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, EventLike, EventStatus};

/// How far back and ahead the feed reaches.
pub const FEED_DAYS_BACK: i64 = 30;
pub const FEED_DAYS_AHEAD: i64 = 180;

/// The feed's window around `now`.
pub fn feed_window(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now - chrono::Duration::days(FEED_DAYS_BACK),
        now + chrono::Duration::days(FEED_DAYS_AHEAD),
    )
}

fn status(state: ChangeState) -> EventStatus {
    match state {
        ChangeState::Planned => EventStatus::Tentative,
        ChangeState::InProgress | ChangeState::Done | ChangeState::RolledBack => EventStatus::Confirmed,
        ChangeState::Canceled => EventStatus::Cancelled,
    }
}

/// The change's public description: services, owner, risk, state, link.
pub fn description(c: &PlannedChange) -> String {
    let mut lines = vec![
        format!("Services: {}", c.services.join(", ")),
        format!("Owner: {}", c.owner),
        format!("Risk: {}", c.risk),
        format!("State: {}", c.state),
    ];
    if c.customer_facing {
        lines.push("Customer-facing: yes".into());
    }
    if let Some(v) = &c.vendor {
        lines.push(format!("Vendor: {v}"));
    }
    if let Some(l) = &c.link {
        lines.push(format!("Link: {l}"));
    }
    lines.join("\n")
}

/// The whole feed. `freezes` are listed as events too (`CATEGORIES:freeze`), `UID` from their
/// name and start.
pub fn feed(changes: &[PlannedChange], freezes: &[Freeze], now: DateTime<Utc>) -> String {
    let mut calendar = Calendar::new();
    calendar.name("Change calendar");
    calendar.append_property(icalendar::Property::new(
        "PRODID",
        "-//incident-bot//change calendar//EN",
    ));
    for c in changes {
        let mut event = icalendar::Event::new();
        event
            .uid(&format!("chg-{}@incident-bot", c.id))
            .summary(&c.summary())
            .description(&description(c))
            .starts(c.starts_at)
            .ends(c.ends_at)
            .status(status(c.state))
            .sequence(c.sequence.clamp(0, u32::MAX as i64) as u32)
            .timestamp(now)
            .created(c.created_at)
            .categories([c.kind.as_str()]);
        if let Some(l) = &c.link {
            event.url(l);
        }
        calendar.push(event.done());
    }
    for f in freezes {
        let uid = format!(
            "freeze-{}-{}@incident-bot",
            crate::incident::model::slugify(&f.name),
            f.starts_at.timestamp()
        );
        let event = icalendar::Event::new()
            .uid(&uid)
            .summary(&format!("Change freeze: {}", f.name))
            .description(&format!("No changes on {} without an override reason.", f.scope()))
            .starts(f.starts_at)
            .ends(f.ends_at)
            .status(EventStatus::Confirmed)
            .timestamp(now)
            .categories(["freeze"])
            .done();
        calendar.push(event);
    }
    calendar.done().to_string()
}
