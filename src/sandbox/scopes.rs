//! Which bot scopes each Web API method needs, and which the app was granted.
//!
//! Why: Slack answers `missing_scope` (with `needed` and `provided`) when the token lacks every
//! scope that allows a call, and a new install gets exactly the scopes `manifest.yml` requests.
//! The sandbox grants the same set (the manifest is compiled in), so a call the manifest does not
//! cover fails in the tests as it would in a real workspace.
//!
//! [`METHODS`] is generated from Slack's method docs (`../shared/slack/methods/<method>.json`:
//! `scope.bot` and `rate_limits`) for every method the sandbox serves; a test checks it against
//! those files when they sit beside the repository. To regenerate after adding a method, copy
//! the line the failing test prints.
//!
//! Slack lists every scope that can allow a method; which ones apply depends on the conversation:
//! `channels:*` for public channels, `groups:*` for private ones, `im:*`/`mpim:*` for direct
//! messages; scopes without such a prefix (`chat:write`, `pins:write`) apply everywhere.

use std::collections::BTreeSet;

use super::state::State;
use super::web_api::Params;

/// `(method, rate tier, bot scopes)` from Slack's method docs; an empty list: no scope needed.
pub(crate) const METHODS: &[(&str, &str, &[&str])] = &[
    ("apps.connections.open", "t3", &[]),
    ("auth.test", "t5", &[]),
    ("bookmarks.add", "t2", &["bookmarks:write"]),
    ("chat.getPermalink", "t5", &[]),
    ("chat.postEphemeral", "t4", &["chat:write"]),
    ("chat.postMessage", "t5", &["chat:write"]),
    ("chat.update", "t3", &["chat:write"]),
    (
        "conversations.archive",
        "t2",
        &[
            "groups:write",
            "im:write",
            "mpim:write",
            "channels:write",
            "channels:manage",
        ],
    ),
    (
        "conversations.create",
        "t2",
        &[
            "groups:write",
            "im:write",
            "mpim:write",
            "channels:write",
            "channels:manage",
        ],
    ),
    (
        "conversations.history",
        "t3",
        &["groups:history", "im:history", "mpim:history", "channels:history"],
    ),
    (
        "conversations.info",
        "t3",
        &["groups:read", "im:read", "mpim:read", "channels:read"],
    ),
    (
        "conversations.invite",
        "t3",
        &[
            "channels:write.invites",
            "groups:write.invites",
            "channels:manage",
            "groups:write",
            "im:write",
            "mpim:write",
        ],
    ),
    ("conversations.join", "t3", &["channels:join"]),
    (
        "conversations.list",
        "t2",
        &["groups:read", "im:read", "mpim:read", "channels:read"],
    ),
    (
        "conversations.members",
        "t4",
        &["groups:read", "im:read", "mpim:read", "channels:read"],
    ),
    (
        "conversations.open",
        "t3",
        &["channels:manage", "groups:write", "im:write", "mpim:write"],
    ),
    (
        "conversations.replies",
        "t3",
        &["groups:history", "im:history", "mpim:history", "channels:history"],
    ),
    (
        "conversations.setPurpose",
        "t2",
        &[
            "channels:write.topic",
            "groups:write.topic",
            "mpim:write.topic",
            "im:write.topic",
            "channels:manage",
            "groups:write",
            "im:write",
            "mpim:write",
        ],
    ),
    (
        "conversations.setTopic",
        "t2",
        &[
            "channels:write.topic",
            "groups:write.topic",
            "mpim:write.topic",
            "im:write.topic",
            "channels:manage",
            "groups:write",
            "im:write",
            "mpim:write",
        ],
    ),
    ("files.completeUploadExternal", "t4", &["files:write"]),
    ("files.getUploadURLExternal", "t4", &["files:write"]),
    ("files.info", "t4", &["files:read"]),
    ("pins.add", "t2", &["pins:write"]),
    ("reactions.add", "t3", &["reactions:write"]),
    ("usergroups.users.list", "t2", &["usergroups:read"]),
    ("users.info", "t4", &["users:read"]),
    ("views.open", "t4", &[]),
    ("views.push", "t4", &[]),
    ("views.update", "t4", &[]),
];

/// The project's own manifest: what a workspace grants on install.
const MANIFEST: &str = include_str!("../../manifest.yml");

/// The bot scopes `oauth_config.scopes.bot` of a manifest requests (a small reader for that one
/// list, so the library needs no YAML parser).
pub(crate) fn manifest_bot_scopes(manifest: &str) -> BTreeSet<String> {
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut scopes = BTreeSet::new();
    for line in manifest.lines() {
        let content = line.split(" #").next().unwrap_or_default().trim_end();
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = content.len() - trimmed.len();
        if let Some(item) = trimmed.strip_prefix("- ") {
            let under_bot = path
                .iter()
                .map(|(_, k)| k.as_str())
                .eq(["oauth_config", "scopes", "bot"]);
            if under_bot {
                scopes.insert(item.trim().trim_matches(['"', '\'']).to_owned());
            }
            continue;
        }
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        if let Some((key, _)) = trimmed.split_once(':') {
            path.push((indent, key.trim().to_owned()));
        }
    }
    scopes
}

/// The scopes the sandbox app holds: those `manifest.yml` requests.
pub(crate) fn granted() -> BTreeSet<String> {
    manifest_bot_scopes(MANIFEST)
}

/// The kind of conversation a call acts on, as scope prefixes name it.
fn conversation_kind(state: &State, method: &str, params: &Params) -> Option<&'static str> {
    match method {
        "conversations.create" => Some(if params.flag("is_private") {
            "groups"
        } else {
            "channels"
        }),
        "conversations.open" if params.required("channel").is_none() => {
            Some(if params.list("users").len() > 1 { "mpim" } else { "im" })
        }
        _ => {
            let id = params.required("channel").or_else(|| params.required("channel_id"))?;
            let record = state.channel(&id)?;
            Some(if record.channel.is_im {
                "im"
            } else if record.channel.is_private {
                "groups"
            } else {
                "channels"
            })
        }
    }
}

/// The scopes that allow `method` on this call's conversation; empty when none is needed.
pub(crate) fn needed(state: &State, method: &str, params: &Params) -> Vec<&'static str> {
    let Some((_, _, scopes)) = METHODS.iter().find(|(m, _, _)| *m == method) else {
        return Vec::new();
    };
    let kind = conversation_kind(state, method, params);
    scopes
        .iter()
        .copied()
        .filter(|scope| {
            let prefix = scope.split(':').next().unwrap_or_default();
            let conversational = matches!(prefix, "channels" | "groups" | "im" | "mpim");
            !conversational || kind.is_none_or(|k| k == prefix)
        })
        .collect()
}

/// Slack's check: the call needs one of [`needed`]. Records the scope(s) that allowed it.
/// `Err` carries Slack's `needed` and `provided` texts.
pub(crate) fn check(state: &mut State, method: &str, params: &Params) -> Result<(), (String, String)> {
    let needed = needed(state, method, params);
    if needed.is_empty() {
        return Ok(());
    }
    let allowed: Vec<&str> = needed.iter().copied().filter(|s| state.scopes.contains(*s)).collect();
    if allowed.is_empty() {
        let provided: Vec<&str> = state.scopes.iter().map(String::as_str).collect();
        return Err((needed.join(","), provided.join(",")));
    }
    state.scopes_used.extend(allowed.into_iter().map(str::to_owned));
    Ok(())
}

/// Whether the app holds `scope`; if so, records it as used (for scopes checked outside
/// [`check`]: `commands`, `reactions:read`, `chat:write.public`).
pub(crate) fn use_scope(state: &mut State, scope: &str) -> bool {
    let held = state.scopes.contains(scope);
    if held {
        state.scopes_used.insert(scope.to_owned());
    }
    held
}

/// The slash commands `manifest.yml` declares (`features.slash_commands[].command`).
pub fn manifest_commands() -> Vec<String> {
    MANIFEST
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- command:"))
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_matches_slacks_method_docs() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/slack/methods"));
        if !dir.exists() {
            return; // checked where ../shared sits beside the clone (CI and the team's machines)
        }
        for (method, tier, scopes) in METHODS {
            let path = dir.join(format!("{method}.json"));
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
                    .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let bot: Vec<&str> = doc["scope"]["bot"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .collect();
            let doc_tier = doc["rate_limits"].as_str().unwrap_or_default();
            let quoted: Vec<String> = bot.iter().map(|s| format!("\"{s}\"")).collect();
            assert!(
                bot == *scopes && doc_tier == *tier,
                "{method} differs from Slack's docs; use:\n    (\"{method}\", \"{doc_tier}\", &[{}]),",
                quoted.join(", ")
            );
        }
    }

    #[test]
    fn every_served_method_has_a_row() {
        for (method, _, _) in METHODS {
            assert!(super::super::web_api::serves(method), "{method} is not served");
        }
        let source = include_str!("web_api.rs");
        let routes = &source[source.find("fn handler(").unwrap_or(0)..];
        let routes = &routes[..routes.find("_ => return None").unwrap_or(routes.len())];
        for line in routes.lines().filter(|l| l.contains("\" =>")) {
            let method = line
                .trim()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap_or_default();
            assert!(
                METHODS.iter().any(|(m, _, _)| *m == method),
                "{method} has no scope row"
            );
        }
    }

    #[test]
    fn the_manifest_reader_finds_the_bot_list_only() {
        let manifest = "oauth_config:\n  scopes:\n    user:\n      - search:read\n    bot:\n      - commands   # /x\n      - \"chat:write\"\n\n      # a comment\n      - files:write\nsettings:\n  bot:\n    - nope\n";
        let scopes: Vec<String> = manifest_bot_scopes(manifest).into_iter().collect();
        assert_eq!(scopes, ["chat:write", "commands", "files:write"]);
        assert!(granted().contains("chat:write"));
    }

    #[test]
    fn public_and_private_variants() {
        let mut state = State::seeded();
        let params = |v: serde_json::Value| Params(v.as_object().cloned().unwrap_or_default());
        assert_eq!(
            needed(
                &state,
                "conversations.create",
                &params(json!({ "name": "x", "is_private": true }))
            ),
            ["groups:write"]
        );
        assert_eq!(
            needed(&state, "conversations.create", &params(json!({ "name": "x" }))),
            ["channels:write", "channels:manage"]
        );
        assert_eq!(
            needed(
                &state,
                "conversations.history",
                &params(json!({ "channel": "C0GENERAL" }))
            ),
            ["channels:history"]
        );
        assert_eq!(needed(&state, "views.open", &params(json!({}))), Vec::<&str>::new());
        state.scopes = ["chat:write".to_owned()].into();
        let (needed, provided) = check(
            &mut state,
            "conversations.history",
            &params(json!({ "channel": "C0GENERAL" })),
        )
        .unwrap_err();
        assert_eq!((needed.as_str(), provided.as_str()), ("channels:history", "chat:write"));
    }
}
