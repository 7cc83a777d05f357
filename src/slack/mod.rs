//! The Slack edge: the only module that imports slack_morphism or knows Slack's JSON.
//!
//! - [`socket_mode`]: our Socket Mode client (connections, acks, pings, disconnects, shutdown).
//! - [`listener`]: envelopes (commands, modals, buttons, events) → domain flows.
//! - [`commands`], [`forms`]: parse slash-command text and modal state into domain types.
//! - [`blocks`]: Block Kit for cards, announcements, modals.
//! - [`effects`]: performs outbox jobs (create channel, invite, post, pin, announce).
//! - [`report`]: `/incident report` and the report's Block Kit (figures come from `crate::report`).
//! - [`vendors`]: `/incident vendor …`, `/incident vendors`, vendor posts, chases and buttons.
//! - [`web`]: the Web API client, with errors reduced to codes.
//! - [`text`]: decodes what people type (entities, mentions, links) into plain text, once, and
//!   applies the control-character rule to every text field.

pub mod alerts;
pub mod blocks;
pub mod calendar;
pub mod commands;
pub mod comms;
pub mod effects;
pub mod forms;
pub mod listener;
pub mod people;
pub mod report;
pub mod socket_mode;
pub mod text;
pub mod vendors;
pub mod web;

/// Masks anything that looks like a Slack token, so errors can be logged safely.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = ["xoxb-", "xoxp-", "xoxa-", "xapp-", "xoxe-"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        out.push_str(&rest[..pos]);
        out.push_str("[redacted]");
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            super::redact("bad xoxb-123-abc and xapp-1-X\" end"),
            "bad [redacted] and [redacted]\" end"
        );
        assert_eq!(super::redact("nothing here"), "nothing here");
    }
}
