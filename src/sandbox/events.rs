//! The frames and payloads Slack sends to the app over Socket Mode.
//!
//! Why a module of its own: these shapes are the contract the bot parses, so they are copied
//! field for field from Slack's fixtures (`../shared/slack/payloads/`: `hello.json`,
//! `disconnect-*.json`, `envelope-slash_commands.json`, `payload-view_submission.json`,
//! `payload-block_actions-button.json`, `envelope-events_api-*.json`) and the Events API wrapper
//! schema, and kept apart from the code that decides *when* to send them.

use serde_json::{json, Value};

use super::{state::unix_now, APP_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID};

/// The verification token Slack still puts in payloads (deprecated, never checked by apps).
const VERIFICATION_TOKEN: &str = "sandbox-verification-token";
/// `debug_info.host` in `hello` and `disconnect`.
const HOST: &str = "applink-sandbox";

/// `{"type":"hello",...}` sent when a connection opens (`hello.json`).
pub(crate) fn hello(num_connections: usize) -> Value {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": HOST,
            "build_number": 10,
            "approximate_connection_time": 18060,
        },
        "connection_info": { "app_id": APP_ID },
    })
}

/// `{"type":"disconnect",...}` (`disconnect-*.json`; `too_many_websockets` carries the
/// connection count and app id like the SDK fixture).
pub(crate) fn disconnect(reason: &str, num_connections: usize) -> Value {
    if reason == "too_many_websockets" {
        json!({
            "type": "disconnect",
            "reason": reason,
            "num_connections": num_connections,
            "debug_info": { "host": HOST },
            "connection_info": { "app_id": APP_ID },
        })
    } else {
        json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": { "host": HOST },
        })
    }
}

/// A Socket Mode envelope around `payload` with a fresh `envelope_id`.
pub(crate) fn envelope(kind: &str, payload: Value, accepts_response_payload: bool) -> Value {
    json!({
        "envelope_id": uuid::Uuid::new_v4().to_string(),
        "payload": payload,
        "type": kind,
        "accepts_response_payload": accepts_response_payload,
        "retry_attempt": 0,
        "retry_reason": "",
    })
}

fn user_json(id: &str, name: &str) -> Value {
    json!({ "id": id, "username": name, "name": name, "team_id": TEAM_ID })
}

fn team_json() -> Value {
    json!({ "id": TEAM_ID, "domain": TEAM_DOMAIN })
}

/// What a slash command needs.
pub(crate) struct SlashCommand<'a> {
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub channel_id: &'a str,
    pub channel_name: &'a str,
    pub command: &'a str,
    pub text: &'a str,
    pub response_url: &'a str,
    pub trigger_id: &'a str,
}

/// A `slash_commands` payload (`envelope-slash_commands.json`). Slack form-encodes slash commands,
/// so every value is a string, `is_enterprise_install` included.
pub(crate) fn slash_command(command: &SlashCommand<'_>) -> Value {
    json!({
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": command.channel_id,
        "channel_name": command.channel_name,
        "user_id": command.user_id,
        "user_name": command.user_name,
        "command": command.command,
        "text": command.text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": command.response_url,
        "trigger_id": command.trigger_id,
    })
}

/// A `view_submission` payload (`payload-view_submission.json`); `view` is the stored view with
/// `state.values` filled in.
pub(crate) fn view_submission(user_id: &str, user_name: &str, trigger_id: &str, view: Value) -> Value {
    json!({
        "type": "view_submission",
        "team": team_json(),
        "user": user_json(user_id, user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": view,
        "response_urls": [],
        "is_enterprise_install": false,
        "enterprise": null,
    })
}

/// What a button click needs.
pub(crate) struct ButtonClick<'a> {
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub channel_id: &'a str,
    pub channel_name: &'a str,
    pub message_ts: &'a str,
    pub is_ephemeral: bool,
    /// The message as Slack renders it; Slack omits it for ephemeral messages.
    pub message: Option<Value>,
    pub block_id: &'a str,
    pub action_id: &'a str,
    pub text: Value,
    pub value: &'a str,
    pub trigger_id: &'a str,
    pub response_url: &'a str,
    pub action_ts: &'a str,
}

/// A `block_actions` payload for a button in a message (`payload-block_actions-button.json`).
pub(crate) fn block_actions(click: &ButtonClick<'_>) -> Value {
    let mut payload = json!({
        "type": "block_actions",
        "user": user_json(click.user_id, click.user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": click.message_ts,
            "channel_id": click.channel_id,
            "is_ephemeral": click.is_ephemeral,
        },
        "trigger_id": click.trigger_id,
        "team": team_json(),
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": { "id": click.channel_id, "name": click.channel_name },
        "state": { "values": {} },
        "response_url": click.response_url,
        "actions": [{
            "action_id": click.action_id,
            "block_id": click.block_id,
            "text": click.text,
            "value": click.value,
            "type": "button",
            "action_ts": click.action_ts,
        }],
    });
    if let Some(message) = &click.message {
        payload["message"] = message.clone();
    }
    payload
}

/// What a `reaction_added` event needs.
pub(crate) struct ReactionAdded<'a> {
    pub user: &'a str,
    pub reaction: &'a str,
    pub item_user: Option<&'a str>,
    pub channel: &'a str,
    pub ts: &'a str,
    pub event_ts: &'a str,
    pub event_id: &'a str,
}

/// An `event_callback` wrapping `reaction_added` (`envelope-events_api-*.json`, and the wrapper
/// schema's required `authed_users`).
pub(crate) fn reaction_added(reaction: &ReactionAdded<'_>) -> Value {
    let mut event = json!({
        "type": "reaction_added",
        "user": reaction.user,
        "reaction": reaction.reaction,
        "item": { "type": "message", "channel": reaction.channel, "ts": reaction.ts },
        "event_ts": reaction.event_ts,
    });
    if let Some(item_user) = reaction.item_user {
        event["item_user"] = json!(item_user);
    }
    json!({
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": reaction.event_id,
        "event_time": unix_now(),
        "authorizations": [{
            "enterprise_id": null,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "authed_users": [BOT_USER_ID],
        "is_ext_shared_channel": false,
        "event_context": format!("4-reaction_added-{TEAM_ID}-{}", reaction.channel),
    })
}
