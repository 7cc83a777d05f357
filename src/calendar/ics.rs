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
    let events = change_events(changes, now);
    assemble(freezes, events.iter().map(String::as_str), now)
}

/// Each change's `VEVENT`, in order, stamped `stamp`: rendered (by the crate) in parallel
/// chunks, since 10,000 events take tens of milliseconds of allocation-heavy work.
pub fn change_events(changes: &[PlannedChange], stamp: DateTime<Utc>) -> Vec<String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let chunk = changes.len().div_ceil(workers).max(512);
    std::thread::scope(|scope| {
        let handles: Vec<_> = changes
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|c| event_text(c, stamp)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// One change's `VEVENT` as the feed carries it, stamped `stamp`.
pub fn event_text(c: &PlannedChange, stamp: DateTime<Utc>) -> String {
    use icalendar::Component;
    let mut out = String::with_capacity(400);
    // Writing to a String cannot fail.
    let _ = change_event(c, stamp).fmt_write(&mut out);
    out
}

/// The feed from the freezes and the changes' rendered events (from [`event_text`]), spliced
/// into the calendar the crate writes, before its closing `END:VCALENDAR`.
pub fn assemble<'a>(freezes: &[Freeze], events: impl Iterator<Item = &'a str> + Clone, now: DateTime<Utc>) -> String {
    let mut calendar = calendar_shell();
    for f in freezes {
        calendar.push(freeze_event(f, now));
    }
    let shell = calendar.done().to_string();
    const END: &str = "END:VCALENDAR\r\n";
    let head = shell.strip_suffix(END).unwrap_or(&shell);
    let mut out = String::with_capacity(head.len() + events.clone().map(str::len).sum::<usize>() + END.len());
    out.push_str(head);
    for event in events {
        out.push_str(event);
    }
    out.push_str(END);
    out
}

fn calendar_shell() -> Calendar {
    let mut calendar = Calendar::new();
    calendar.name("Change calendar");
    calendar.append_property(icalendar::Property::new(
        "PRODID",
        "-//incident-bot//change calendar//EN",
    ));
    calendar
}

/// A freeze as an event (`CATEGORIES:freeze`), its `UID` from its name and start.
fn freeze_event(f: &Freeze, now: DateTime<Utc>) -> icalendar::Event {
    let uid = format!(
        "freeze-{}-{}@incident-bot",
        crate::incident::model::slugify(&f.name),
        f.starts_at.timestamp()
    );
    icalendar::Event::new()
        .uid(&uid)
        .summary(&format!("Change freeze: {}", f.name))
        .description(&format!("No changes on {} without an override reason.", f.scope()))
        .starts(f.starts_at)
        .ends(f.ends_at)
        .status(EventStatus::Confirmed)
        .timestamp(now)
        .categories(["freeze"])
        .done()
}

fn change_event(c: &PlannedChange, now: DateTime<Utc>) -> icalendar::Event {
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
    // The builder itself, not `done()`: that returns a copy (every property allocated twice).
    event
}
