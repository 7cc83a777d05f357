//! The sandbox workspace: users, conversations, messages, views, triggers and the call log.
//!
//! Why one plain struct behind one mutex: every Web API method and every Socket Mode effect is a
//! short synchronous step, so a single lock keeps the workspace consistent without reasoning about
//! lock order, and the JSON renderers here are the one place that decides what Slack's objects
//! look like on the wire (shapes from Slack's API docs and the OpenAPI spec examples).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};

use super::UserKind;
use super::{
    ApiCall, Bookmark, Channel, Fault, Message, Reaction, View, APP_ID, BOT_ID, BOT_USER_ID, BOT_USER_NAME,
    TEAM_DOMAIN, TEAM_ID,
};

/// A workspace member.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub is_bot: bool,
    pub tz: &'static str,
    pub tz_label: &'static str,
    pub tz_offset: i64,
    pub kind: UserKind,
}

/// A conversation plus the metadata Slack reports but tests rarely need.
#[derive(Debug, Clone)]
pub(crate) struct ChannelRecord {
    pub channel: Channel,
    pub created: i64,
    pub is_general: bool,
    pub topic_set_by: String,
    pub topic_last_set: i64,
    pub purpose_set_by: String,
    pub purpose_last_set: i64,
}

/// A `trigger_id` handed to the app with an interaction.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub user: String,
    pub issued: Instant,
    pub exchanged: bool,
}

/// A file announced with `files.getUploadURLExternal`.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub filename: String,
    pub bytes: Option<Vec<u8>>,
}

/// Where a `response_url` posts to.
#[derive(Debug, Clone)]
pub(crate) struct ResponseTarget {
    pub user: String,
    pub channel: String,
    /// The message the interaction came from (for `replace_original`/`delete_original`).
    pub message_ts: Option<String>,
    pub issued: Instant,
    /// Posts made to it so far (Slack allows five).
    pub uses: u32,
}

/// A fault waiting for matching calls.
#[derive(Debug, Clone)]
pub(crate) struct PendingFault {
    pub method: String,
    pub fault: Fault,
    pub remaining: usize,
}

/// The whole workspace.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub users: BTreeMap<String, User>,
    /// Creation order.
    pub channels: Vec<ChannelRecord>,
    /// All channels' messages in posting order.
    pub messages: Vec<Message>,
    /// `(recipient, message)` in posting order.
    pub ephemerals: Vec<(String, Message)>,
    /// Opening order.
    pub views: Vec<View>,
    pub triggers: HashMap<String, Trigger>,
    /// Socket Mode tickets from `apps.connections.open`, not yet used.
    pub tickets: HashMap<String, Instant>,
    pub uploads: HashMap<String, Upload>,
    pub file_shares: Vec<(String, String, Vec<u8>)>,
    /// Completed uploads by file id: `(name, title, channel shared in)`, for `files.info`.
    pub completed_files: HashMap<String, (String, String, Option<String>)>,
    pub bookmarks: Vec<Bookmark>,
    /// id → (handle, members)
    pub usergroups: BTreeMap<String, (String, Vec<String>)>,
    pub response_urls: HashMap<String, ResponseTarget>,
    pub calls: Vec<ApiCall>,
    pub violations: Vec<String>,
    pub faults: VecDeque<PendingFault>,
    pub fault_mix: Option<super::FaultMix>,
    pub fault_rng: Option<rand::rngs::StdRng>,
    pub fault_counts: super::FaultCounts,
    /// The bot scopes the app holds (`manifest.yml`'s) and those calls and events have used.
    pub scopes: std::collections::BTreeSet<String>,
    pub scopes_used: std::collections::BTreeSet<String>,
    /// Slack's rate tiers, when turned on.
    pub rate: Option<super::rate::Limiter>,
    /// Message metadata (`event_type`, `event_payload`) by (channel, ts), as posted.
    pub message_metadata: HashMap<(String, String), serde_json::Value>,
    /// `(method, arguments)` of calls applied and answered too late ([`Fault::AppliedThenLate`]).
    pub late_answered: Vec<(String, serde_json::Value)>,
    last_ts_micros: u64,
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `prefix` followed by `len` characters from Slack's id alphabet (`0-9A-Z`).
pub(crate) fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A trigger id shaped like Slack's: `37053613634.26768298162.440952c06ef4de2653466a48fe495f93`.
fn random_trigger_id() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}.{}.{:032x}",
        rng.gen_range(10_000_000_000u64..100_000_000_000),
        rng.gen_range(10_000_000_000u64..100_000_000_000),
        rng.gen::<u128>()
    )
}

/// Slack's channel-name rule: 1–80 of `a-z 0-9 - _`, not only punctuation.
pub(crate) fn check_channel_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("invalid_name_required");
    }
    if name.chars().count() > 80 {
        return Err("invalid_name_maxlength");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("invalid_name_specials");
    }
    if name.chars().all(|c| c == '-' || c == '_') {
        return Err("invalid_name_punctuation");
    }
    Ok(())
}

impl State {
    /// The workspace every sandbox starts with: four people, the bot, `#general` and `#incidents`.
    pub fn seeded() -> State {
        let mut state = State {
            scopes: super::scopes::granted(),
            ..State::default()
        };
        let people: [(&str, &str, &str, &'static str, &'static str, i64); 4] = [
            (
                "U0ALICE",
                "alice",
                "Alice Archer",
                "Europe/London",
                "Greenwich Mean Time",
                0,
            ),
            (
                "U0BOB",
                "bob",
                "Bob Baker",
                "America/New_York",
                "Eastern Standard Time",
                -18_000,
            ),
            (
                "U0CAROL",
                "carol",
                "Carol Chen",
                "Europe/Berlin",
                "Central European Time",
                3_600,
            ),
            (
                "U0DAVE",
                "dave",
                "Dave Diaz",
                "Asia/Tokyo",
                "Japan Standard Time",
                32_400,
            ),
        ];
        for (id, name, real_name, tz, tz_label, tz_offset) in people {
            state.users.insert(
                id.to_owned(),
                User {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    real_name: real_name.to_owned(),
                    is_bot: false,
                    tz,
                    tz_label,
                    tz_offset,
                    kind: UserKind::Member,
                },
            );
        }
        state.users.insert(
            BOT_USER_ID.to_owned(),
            User {
                id: BOT_USER_ID.to_owned(),
                name: BOT_USER_NAME.to_owned(),
                real_name: "Incident Bot".to_owned(),
                is_bot: true,
                tz: "America/Los_Angeles",
                tz_label: "Pacific Standard Time",
                tz_offset: -28_800,
                kind: UserKind::Bot,
            },
        );
        let everyone: Vec<String> = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", BOT_USER_ID]
            .iter()
            .map(|id| (*id).to_owned())
            .collect();
        let created = unix_now() - 86_400 * 365;
        for (id, name, purpose, is_general) in [
            (
                "C0GENERAL",
                "general",
                "This channel is for workspace-wide communication.",
                true,
            ),
            ("C0ANNOUNCE", "incidents", "Incident announcements.", false),
            ("C0CHANGES", "changes", "The change calendar.", false),
        ] {
            state.channels.push(ChannelRecord {
                channel: Channel {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    is_private: false,
                    is_im: false,
                    members: everyone.clone(),
                    topic: String::new(),
                    purpose: purpose.to_owned(),
                    pins: Vec::new(),
                    archived: false,
                    creator: "U0ALICE".to_owned(),
                },
                created,
                is_general,
                topic_set_by: String::new(),
                topic_last_set: 0,
                purpose_set_by: "U0ALICE".to_owned(),
                purpose_last_set: created,
            });
        }
        state.add_usergroup("S0ONCALL", "oncall", &["U0ALICE", "U0BOB"]);
        state
    }

    /// A message timestamp: `seconds.micros`, strictly increasing across the workspace.
    pub fn next_ts(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let micros = now.max(self.last_ts_micros + 1);
        self.last_ts_micros = micros;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }

    pub fn add_user(&mut self, id: &str, name: &str) {
        self.add_user_of_kind(id, name, UserKind::Member);
    }

    /// Adds a user; members and guests join the `is_general` channel (guests are not in it in
    /// Slack, but the sandbox's #general stands for "somewhere they already are"), others not.
    pub fn add_user_of_kind(&mut self, id: &str, name: &str, kind: UserKind) {
        self.users.insert(
            id.to_owned(),
            User {
                id: id.to_owned(),
                name: name.to_owned(),
                real_name: name.to_owned(),
                is_bot: false,
                tz: "Europe/London",
                tz_label: "Greenwich Mean Time",
                tz_offset: 0,
                kind,
            },
        );
        if matches!(kind, UserKind::OtherWorkspace | UserKind::Deactivated) {
            return;
        }
        if let Some(general) = self.channels.iter_mut().find(|c| c.is_general) {
            if !general.channel.members.iter().any(|m| m == id) {
                general.channel.members.push(id.to_owned());
            }
        }
    }

    pub fn add_usergroup(&mut self, id: &str, handle: &str, users: &[&str]) {
        self.usergroups.insert(
            id.to_owned(),
            (handle.to_owned(), users.iter().map(|u| (*u).to_owned()).collect()),
        );
    }

    pub fn user_name(&self, id: &str) -> Option<String> {
        self.users.get(id).map(|u| u.name.clone())
    }

    pub fn channel(&self, id: &str) -> Option<&ChannelRecord> {
        self.channels.iter().find(|c| c.channel.id == id)
    }

    pub fn channel_mut(&mut self, id: &str) -> Option<&mut ChannelRecord> {
        self.channels.iter_mut().find(|c| c.channel.id == id)
    }

    /// The `channel_name` Slack puts in interaction payloads.
    pub fn channel_display_name(&self, id: &str) -> Option<String> {
        self.channel(id).map(|record| {
            if record.channel.is_im {
                "directmessage".to_owned()
            } else if record.channel.is_private {
                "privategroup".to_owned()
            } else {
                record.channel.name.clone()
            }
        })
    }

    /// The bot's IM with `user`, if open.
    pub fn im_with(&self, user: &str) -> Option<&str> {
        self.channels
            .iter()
            .find(|c| {
                c.channel.is_im
                    && c.channel.members.iter().any(|m| m == BOT_USER_ID)
                    && c.channel.members.iter().any(|m| m == user)
            })
            .map(|c| c.channel.id.as_str())
    }

    /// The bot's IM with `user`, opened if needed.
    pub fn open_im(&mut self, user: &str) -> String {
        if let Some(id) = self.im_with(user) {
            return id.to_owned();
        }
        self.push_dm(vec![BOT_USER_ID.to_owned(), user.to_owned()], BOT_USER_ID)
    }

    /// A DM between two people, which the bot is not part of.
    pub fn open_dm_between(&mut self, a: &str, b: &str) -> String {
        self.push_dm(vec![a.to_owned(), b.to_owned()], a)
    }

    /// A new direct-message conversation of `members`, opened by `creator`.
    fn push_dm(&mut self, members: Vec<String>, creator: &str) -> String {
        let id = self.unused_channel_id("D");
        self.channels.push(ChannelRecord {
            channel: Channel {
                id: id.clone(),
                name: String::new(),
                is_private: true,
                is_im: true,
                members,
                topic: String::new(),
                purpose: String::new(),
                pins: Vec::new(),
                archived: false,
                creator: creator.to_owned(),
            },
            created: unix_now(),
            is_general: false,
            topic_set_by: String::new(),
            topic_last_set: 0,
            purpose_set_by: String::new(),
            purpose_last_set: 0,
        });
        id
    }

    pub fn unused_channel_id(&self, prefix: &str) -> String {
        loop {
            let id = random_id(prefix, 10);
            if self.channel(&id).is_none() {
                return id;
            }
        }
    }

    /// A fresh trigger for an interaction by `user`.
    pub fn new_trigger(&mut self, user: &str) -> String {
        let id = random_trigger_id();
        self.triggers.insert(
            id.clone(),
            Trigger {
                user: user.to_owned(),
                issued: Instant::now(),
                exchanged: false,
            },
        );
        id
    }

    /// A `response_url` on the sandbox that posts back into `channel` for `user`.
    pub fn new_response_url(&mut self, base_url: &str, user: &str, channel: &str, message_ts: Option<&str>) -> String {
        let id = format!(
            "{}/{}",
            rand::thread_rng().gen_range(1_000_000_000u64..10_000_000_000),
            uuid::Uuid::new_v4().simple()
        );
        self.response_urls.insert(
            id.clone(),
            ResponseTarget {
                user: user.to_owned(),
                channel: channel.to_owned(),
                message_ts: message_ts.map(str::to_owned),
                issued: Instant::now(),
                uses: 0,
            },
        );
        format!("{base_url}/response_url/{TEAM_ID}/{id}")
    }

    pub fn find_message(&self, channel: &str, ts: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.channel == channel && m.ts == ts)
    }

    pub fn find_message_mut(&mut self, channel: &str, ts: &str) -> Option<&mut Message> {
        self.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts)
    }

    pub fn find_ephemeral(&self, user: &str, channel: &str, ts: &str) -> Option<&Message> {
        self.ephemerals
            .iter()
            .find(|(recipient, m)| recipient == user && m.channel == channel && m.ts == ts)
            .map(|(_, m)| m)
    }

    /// Records `user`'s reaction on a known message; returns the message's author.
    pub fn react(&mut self, user: &str, channel: &str, ts: &str, reaction: &str) -> Option<String> {
        let message = self.find_message_mut(channel, ts)?;
        if !message.reactions.iter().any(|r| r.name == reaction && r.user == user) {
            message.reactions.push(Reaction {
                name: reaction.to_owned(),
                user: user.to_owned(),
            });
        }
        Some(message.user.clone())
    }

    pub fn seed_user_message(&mut self, user: &str, channel: &str, text: &str) -> anyhow::Result<String> {
        if !self.users.contains_key(user) {
            anyhow::bail!("unknown user {user}");
        }
        if self.channel(channel).is_none() {
            anyhow::bail!("unknown channel {channel}");
        }
        let text = super::compose::compose(self, text, super::compose::Surface::Message);
        let ts = self.next_ts();
        self.messages.push(Message {
            channel: channel.to_owned(),
            ts: ts.clone(),
            user: user.to_owned(),
            text,
            blocks: Value::Null,
            thread_ts: None,
            edited: false,
            reactions: Vec::new(),
        });
        Ok(ts)
    }

    pub fn view(&self, id: &str) -> Option<&View> {
        self.views.iter().find(|v| v.id == id)
    }

    pub fn view_mut(&mut self, id: &str) -> Option<&mut View> {
        self.views.iter_mut().find(|v| v.id == id)
    }

    /// Stores a new view built from the app's `view` object; returns its id.
    pub fn store_view(
        &mut self,
        mut view: Value,
        user: &str,
        trigger: Option<&str>,
        previous: Option<&View>,
    ) -> String {
        let id = loop {
            let id = random_id("V", 10);
            if self.view(&id).is_none() {
                break id;
            }
        };
        super::blockkit::fill_generated_ids(&mut view["blocks"]);
        let root = previous.map_or_else(|| id.clone(), |p| p.root_view_id.clone());
        let raw = view_json(&id, &new_view_hash(), &view, &root, previous.map(|p| p.id.as_str()));
        let mut stored = View {
            id: id.clone(),
            hash: String::new(),
            callback_id: String::new(),
            private_metadata: String::new(),
            title: String::new(),
            blocks: Value::Null,
            opened_by_trigger: trigger.map(str::to_owned),
            user: user.to_owned(),
            root_view_id: root,
            previous_view_id: previous.map(|p| p.id.clone()),
            closed: false,
            raw,
        };
        refresh_view_fields(&mut stored);
        self.views.push(stored);
        id
    }

    /// Replaces the content of view `id` (same id, stack position and user; new hash).
    pub fn replace_view(&mut self, id: &str, mut view: Value) -> Option<&View> {
        super::blockkit::fill_generated_ids(&mut view["blocks"]);
        let stored = self.view_mut(id)?;
        let raw = view_json(
            id,
            &new_view_hash(),
            &view,
            &stored.root_view_id,
            stored.previous_view_id.as_deref(),
        );
        stored.raw = raw;
        refresh_view_fields(stored);
        Some(stored)
    }
}

fn new_view_hash() -> String {
    format!("{}.{}", unix_now(), random_id("", 8).to_lowercase())
}

/// Re-derives the convenience fields of a [`View`] from its `raw` JSON.
fn refresh_view_fields(view: &mut View) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    view.hash = text(&view.raw["hash"]);
    view.callback_id = text(&view.raw["callback_id"]);
    view.private_metadata = text(&view.raw["private_metadata"]);
    view.title = text(&view.raw["title"]["text"]);
    view.blocks = view.raw["blocks"].clone();
}

/// The view object as `views.open`/`views.update` return it (see the `views.open` example in the
/// Web API spec and `payload-view_submission.json`).
fn view_json(id: &str, hash: &str, view: &Value, root: &str, previous: Option<&str>) -> Value {
    let or = |key: &str, default: Value| match view.get(key) {
        Some(v) if !v.is_null() => v.clone(),
        _ => default,
    };
    json!({
        "id": id,
        "team_id": TEAM_ID,
        "type": or("type", json!("modal")),
        "blocks": or("blocks", json!([])),
        "private_metadata": or("private_metadata", json!("")),
        "callback_id": or("callback_id", json!("")),
        "state": { "values": {} },
        "hash": hash,
        "title": or("title", Value::Null),
        "clear_on_close": or("clear_on_close", json!(false)),
        "notify_on_close": or("notify_on_close", json!(false)),
        "close": or("close", Value::Null),
        "submit": or("submit", Value::Null),
        "previous_view_id": previous,
        "root_view_id": root,
        "app_id": APP_ID,
        "external_id": or("external_id", json!("")),
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    })
}

/// A conversation object as `conversations.*` return it, seen by the bot.
pub(crate) fn channel_json(record: &ChannelRecord) -> Value {
    let channel = &record.channel;
    let is_member = channel.members.iter().any(|m| m == BOT_USER_ID);
    if channel.is_im {
        let user = channel
            .members
            .iter()
            .find(|m| *m != BOT_USER_ID)
            .cloned()
            .unwrap_or_default();
        return json!({
            "id": channel.id,
            "created": record.created,
            "is_archived": channel.archived,
            "is_im": true,
            "is_org_shared": false,
            "context_team_id": TEAM_ID,
            "updated": record.created * 1000,
            "user": user,
            "is_user_deleted": false,
            "priority": 0,
        });
    }
    json!({
        "id": channel.id,
        "name": channel.name,
        "is_channel": true,
        "is_group": false,
        "is_im": false,
        "is_mpim": false,
        "is_private": channel.is_private,
        "created": record.created,
        "is_archived": channel.archived,
        "is_general": record.is_general,
        "unlinked": 0,
        "name_normalized": channel.name,
        "is_shared": false,
        "is_org_shared": false,
        "is_ext_shared": false,
        "is_pending_ext_shared": false,
        "pending_shared": [],
        "context_team_id": TEAM_ID,
        "updated": record.created * 1000,
        "parent_conversation": null,
        "creator": channel.creator,
        "is_member": is_member,
        "last_read": "0000000000.000000",
        "topic": {
            "value": channel.topic,
            "creator": record.topic_set_by,
            "last_set": record.topic_last_set,
        },
        "purpose": {
            "value": channel.purpose,
            "creator": record.purpose_set_by,
            "last_set": record.purpose_last_set,
        },
        "previous_names": [],
        "num_members": channel.members.len(),
        "priority": 0,
    })
}

/// A user object as `users.info` returns it (OpenAPI spec example).
pub(crate) fn user_json(user: &User) -> Value {
    let mut profile = json!({
        "avatar_hash": "g0sandbox000",
        "status_text": "",
        "status_emoji": "",
        "real_name": user.real_name,
        "display_name": user.name,
        "real_name_normalized": user.real_name,
        "display_name_normalized": user.name,
        "first_name": user.real_name.split(' ').next().unwrap_or_default(),
        "last_name": user.real_name.split(' ').nth(1).unwrap_or_default(),
        "team": TEAM_ID,
    });
    if user.is_bot {
        profile["bot_id"] = json!(BOT_ID);
        profile["api_app_id"] = json!(APP_ID);
        profile["always_active"] = json!(true);
    } else {
        profile["email"] = json!(format!("{}@{TEAM_DOMAIN}.example.com", user.name));
    }
    json!({
        "id": user.id,
        "team_id": TEAM_ID,
        "name": user.name,
        "deleted": user.kind == UserKind::Deactivated,
        "color": "9f69e7",
        "real_name": user.real_name,
        "tz": user.tz,
        "tz_label": user.tz_label,
        "tz_offset": user.tz_offset,
        "profile": profile,
        "is_admin": false,
        "is_owner": false,
        "is_primary_owner": false,
        "is_restricted": matches!(user.kind, UserKind::MultiChannelGuest | UserKind::SingleChannelGuest),
        "is_ultra_restricted": user.kind == UserKind::SingleChannelGuest,
        "is_bot": user.is_bot,
        "is_app_user": false,
        "updated": 1_700_000_000,
        "has_2fa": false,
    })
}

/// A message object as `chat.postMessage` returns it and interaction payloads carry it.
pub(crate) fn message_json(message: &Message) -> Value {
    let mut json = json!({
        "type": "message",
        "text": message.text,
        "user": message.user,
        "ts": message.ts,
        "team": TEAM_ID,
    });
    if message.user == BOT_USER_ID {
        json["bot_id"] = json!(BOT_ID);
        json["app_id"] = json!(APP_ID);
        json["bot_profile"] = json!({
            "id": BOT_ID,
            "app_id": APP_ID,
            "name": BOT_USER_NAME,
            "icons": {
                "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
                "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
                "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png",
            },
            "deleted": false,
            "updated": 1_700_000_000,
            "team_id": TEAM_ID,
        });
    }
    if message.blocks.is_array() {
        json["blocks"] = message.blocks.clone();
    }
    if let Some(thread_ts) = &message.thread_ts {
        json["thread_ts"] = json!(thread_ts);
    }
    if message.edited {
        json["edited"] = json!({ "user": message.user, "ts": message.ts });
    }
    if !message.reactions.is_empty() {
        let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
        for reaction in &message.reactions {
            match by_name.iter_mut().find(|(name, _)| *name == reaction.name) {
                Some((_, users)) => users.push(reaction.user.clone()),
                None => by_name.push((reaction.name.clone(), vec![reaction.user.clone()])),
            }
        }
        json["reactions"] = by_name
            .into_iter()
            .map(|(name, users)| json!({ "name": name, "count": users.len(), "users": users }))
            .collect();
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_slack_rules() {
        assert_eq!(check_channel_name("inc-1-payments_api"), Ok(()));
        assert_eq!(check_channel_name(""), Err("invalid_name_required"));
        assert_eq!(check_channel_name("Inc-1"), Err("invalid_name_specials"));
        assert_eq!(check_channel_name("inc 1"), Err("invalid_name_specials"));
        assert_eq!(check_channel_name("--"), Err("invalid_name_punctuation"));
        assert_eq!(check_channel_name(&"a".repeat(80)), Ok(()));
        assert_eq!(check_channel_name(&"a".repeat(81)), Err("invalid_name_maxlength"));
    }

    #[test]
    fn timestamps_strictly_increase() {
        let mut state = State::default();
        let a = state.next_ts();
        let b = state.next_ts();
        assert!(b > a, "{b} > {a}");
        assert_eq!(a.split('.').nth(1).map(str::len), Some(6));
    }
}
