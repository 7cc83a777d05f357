//! The Web API: `POST`/`GET /api/<method>`, answered the way Slack answers.
//!
//! Why this much fidelity: the bot's error handling is only tested if the sandbox refuses what
//! Slack refuses, with Slack's error codes (`name_taken`, `not_in_channel`, `invalid_blocks`,
//! `expired_trigger_id`, ...), and its parsing is only tested if successful answers have Slack's
//! shapes (see the examples in `../shared/slack/web-api-openapi.json`).
//!
//! Request handling follows Slack: arguments come from the query string and a form-encoded or JSON
//! body; the token comes from `Authorization: Bearer` (or a `token` form field — Slack ignores a
//! token inside a JSON body); `apps.connections.open` wants the app-level token and everything else
//! the bot token. Answers are HTTP 200 with `{"ok":true,...}` or `{"ok":false,"error":..}`, and 429
//! with `Retry-After` when a rate-limit fault is injected.
//!
//! Also served here: the `upload_url` of `files.getUploadURLExternal` and the `response_url`s
//! handed out with interactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::state::{
    channel_json, check_channel_name, message_json, random_id, unix_now, user_json, ChannelRecord, State, Upload,
};
use super::UserKind;
use super::{
    blockkit, scopes, ApiCall, Bookmark, Channel, Fault, Message, Reaction, Shared, APP_ID, APP_TOKEN, BOT_ID,
    BOT_TOKEN, BOT_USER_ID, BOT_USER_NAME, TEAM_DOMAIN, TEAM_ID,
};

/// Bodies above this are refused (Slack's own limits are far lower for most methods).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// `chat.postMessage` text limit.
const MAX_TEXT_CHARS: usize = 40_000;
/// The text of the `channel_topic` message Slack posts when the topic is set.
pub const TOPIC_MESSAGE_PREFIX: &str = "set the channel topic: ";
/// Topic and purpose limit.
const MAX_TOPIC_CHARS: usize = 250;
/// A `response_url` takes this many posts…
const RESPONSE_URL_USES: u32 = 5;
/// …within this long after the interaction.
const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);
/// Views on one modal stack.
const MAX_VIEW_STACK: usize = 3;

/// A Slack error answer: `{"ok": false, "error": code, ...extra}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: String,
    extra: Map<String, Value>,
}

impl ApiError {
    fn new(code: &str) -> ApiError {
        ApiError {
            code: code.to_owned(),
            extra: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// `invalid_arguments` with Slack's `response_metadata.messages`.
    fn invalid_arguments(messages: impl IntoIterator<Item = String>) -> ApiError {
        let messages: Vec<String> = messages.into_iter().map(|m| format!("[ERROR] {m}")).collect();
        ApiError::new("invalid_arguments").with("response_metadata", json!({ "messages": messages }))
    }
}

type ApiResult = Result<Value, ApiError>;

/// The merged arguments of one call.
pub(crate) struct Params(pub(crate) Map<String, Value>);

impl Params {
    /// A scalar argument as text (form values are strings; JSON numbers and booleans convert).
    fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A non-empty scalar argument.
    pub(crate) fn required(&self, name: &str) -> Option<String> {
        self.text(name).filter(|s| !s.is_empty())
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            _ => false,
        }
    }

    /// A structured argument: a JSON string (form bodies) or a JSON value (JSON bodies).
    /// `Ok(None)` when absent or empty, `Err(())` when the string is not JSON.
    fn json(&self, name: &str) -> Result<Option<Value>, ()> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    /// A list argument: comma-separated text or a JSON array of strings.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

/// What a handler needs besides the state.
struct Ctx<'a> {
    method: &'a str,
    base_url: String,
    trigger_ttl: Duration,
}

type Handler = fn(&mut State, &Ctx<'_>, &Params) -> ApiResult;

fn handler(method: &str) -> Option<Handler> {
    Some(match method {
        "auth.test" => auth_test,
        "apps.connections.open" => apps_connections_open,
        "conversations.create" => conversations_create,
        "conversations.invite" => conversations_invite,
        "conversations.setTopic" => conversations_set_topic,
        "conversations.setPurpose" => conversations_set_purpose,
        "conversations.archive" => conversations_archive,
        "conversations.info" => conversations_info,
        "conversations.members" => conversations_members,
        "conversations.history" => conversations_history,
        "conversations.replies" => conversations_replies,
        "conversations.list" => conversations_list,
        "conversations.join" => conversations_join,
        "conversations.open" => conversations_open,
        "chat.postMessage" => chat_post_message,
        "chat.postEphemeral" => chat_post_ephemeral,
        "chat.update" => chat_update,
        "chat.getPermalink" => chat_get_permalink,
        "pins.add" => pins_add,
        "reactions.add" => reactions_add,
        "bookmarks.add" => bookmarks_add,
        "views.open" => views_open,
        "views.push" => views_push,
        "views.update" => views_update,
        "users.info" => users_info,
        "usergroups.users.list" => usergroups_users_list,
        "files.getUploadURLExternal" => files_get_upload_url_external,
        "files.completeUploadExternal" => files_complete_upload_external,
        "files.info" => files_info,
        _ => return None,
    })
}

/// Whether the sandbox serves `method`.
#[cfg(test)]
pub(crate) fn serves(method: &str) -> bool {
    handler(method).is_some()
}

/// The HTTP answer to one call.
struct Outcome {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Outcome {
    fn ok(mut body: Value) -> Outcome {
        if let Some(object) = body.as_object_mut() {
            object.insert("ok".to_owned(), Value::Bool(true));
        }
        Outcome {
            status: StatusCode::OK,
            body,
            retry_after: None,
        }
    }

    fn error(error: ApiError) -> Outcome {
        let mut body = error.extra;
        body.insert("ok".to_owned(), Value::Bool(false));
        body.insert("error".to_owned(), Value::String(error.code));
        Outcome {
            status: StatusCode::OK,
            body: Value::Object(body),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let (content_type, bytes) = match &self.body {
            Value::String(text) => ("text/plain; charset=utf-8", Bytes::from(text.clone())),
            json => ("application/json; charset=utf-8", Bytes::from(json.to_string())),
        };
        let mut response = Response::new(Full::new(bytes));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Reads a request body, refusing oversized ones.
async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .ok()
        .map(|collected| collected.to_bytes())
}

/// Merges the query string and the body into one argument map (Slack accepts both).
fn parse_arguments(
    request: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<(Map<String, Value>, bool), &'static str> {
    let mut arguments = Map::new();
    if let Some(query) = request.uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            arguments.insert(name.into_owned(), Value::String(value.into_owned()));
        }
    }
    if body.is_empty() {
        return Ok((arguments, false));
    }
    let content_type = request
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let parsed: Value = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
        let Value::Object(object) = parsed else {
            return Err("json_not_object");
        };
        arguments.extend(object);
        Ok((arguments, true))
    } else if content_type.is_empty()
        || content_type.starts_with("application/x-www-form-urlencoded")
        || content_type.starts_with("text/plain")
    {
        let text = std::str::from_utf8(body).map_err(|_| "invalid_form_data")?;
        for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
            arguments.insert(name.into_owned(), Value::String(value.into_owned()));
        }
        Ok((arguments, false))
    } else {
        Err("invalid_post_type")
    }
}

/// Checks the token against the method's token type.
fn check_auth(method: &str, token: Option<&str>) -> Result<(), &'static str> {
    let wants_app_token = method == "apps.connections.open";
    match token {
        None | Some("") => Err("not_authed"),
        Some(BOT_TOKEN) if wants_app_token => Err("not_allowed_token_type"),
        Some(BOT_TOKEN) => Ok(()),
        Some(APP_TOKEN) if wants_app_token => Ok(()),
        Some(APP_TOKEN) => Err("not_allowed_token_type"),
        Some(_) => Err("invalid_auth"),
    }
}

/// Takes one use of the first fault queued for `method` (or `*`).
fn take_fault(state: &mut State, method: &str) -> Option<Fault> {
    let index = state
        .faults
        .iter()
        .position(|f| f.method == method || f.method == "*")?;
    let pending = state.faults.get_mut(index)?;
    pending.remaining = pending.remaining.saturating_sub(1);
    let fault = pending.fault.clone();
    if pending.remaining == 0 {
        state.faults.remove(index);
    }
    Some(fault)
}

/// Draws from the random [`FaultMix`](super::FaultMix), if one is set.
fn draw_fault(state: &mut State, method: &str) -> Option<Fault> {
    use rand::Rng;
    let mix = state.fault_mix.as_ref()?;
    if mix.spare.iter().any(|m| m == method) {
        return None;
    }
    let (rate, retry_after_secs, timeout) = (mix.rate, mix.retry_after_secs, mix.timeout);
    let kinds = if mix.applied_late { 4 } else { 3 };
    let rng = state.fault_rng.as_mut()?;
    if !rng.gen_bool(rate.clamp(0.0, 1.0)) {
        return None;
    }
    let fault = match rng.gen_range(0..kinds) {
        0 => {
            state.fault_counts.rate_limited += 1;
            Fault::RateLimited { retry_after_secs }
        }
        1 => {
            state.fault_counts.server_errors += 1;
            Fault::ServerError
        }
        2 => {
            state.fault_counts.timeouts += 1;
            Fault::Timeout(timeout)
        }
        _ => {
            state.fault_counts.late_answers += 1;
            Fault::AppliedThenLate(timeout)
        }
    };
    Some(fault)
}

/// Serves `/api/<method>`.
pub(crate) async fn handle(shared: Arc<Shared>, method: String, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let header_token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let query_token = parts.uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    });

    let parsed = match read_body(body).await {
        Some(body) => parse_arguments(&parts, &body),
        None => Err("request_timeout"),
    };
    let (arguments, outcome) = match parsed {
        Ok((mut arguments, is_json)) => {
            let body_token = arguments.remove("token").and_then(|t| t.as_str().map(str::to_owned));
            // Slack reads a `token` from the query string or a form body, never from a JSON body.
            let field_token = if is_json { query_token } else { body_token };
            let token = header_token.or(field_token);
            let (outcome, recorded) = answer(&shared, &method, &arguments, token.as_deref(), at).await;
            if recorded {
                // Answered late, and recorded when applied (the client may be gone by now).
                return outcome.into_response();
            }
            (arguments, outcome)
        }
        Err(code) => (Map::new(), Outcome::error(ApiError::new(code))),
    };
    shared.state().calls.push(ApiCall {
        method,
        params: Value::Object(arguments),
        response: outcome.body.clone(),
        status: outcome.status.as_u16(),
        at,
    });
    outcome.into_response()
}

/// Decides the answer to a well-formed call: method, token, injected fault, then the method.
/// `true` with a call applied and answered late: it is recorded (at `at`) as soon as it is
/// applied, since the client may hang up before the answer and drop this future.
async fn answer(
    shared: &Arc<Shared>,
    method: &str,
    arguments: &Map<String, Value>,
    token: Option<&str>,
    at: Instant,
) -> (Outcome, bool) {
    let Some(handler) = handler(method) else {
        return (
            Outcome::error(ApiError::new("unknown_method").with("req_method", json!(method))),
            false,
        );
    };
    if let Err(code) = check_auth(method, token) {
        return (Outcome::error(ApiError::new(code)), false);
    }
    if let Some(retry_after) = super::rate::over_limit(shared, method, arguments) {
        let limited = Outcome {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({ "ok": false, "error": "ratelimited" }),
            retry_after: Some(retry_after),
        };
        return (limited, false);
    }
    let fault = {
        let mut state = shared.state();
        take_fault(&mut state, method).or_else(|| draw_fault(&mut state, method))
    };
    match fault.clone() {
        Some(Fault::RateLimited { retry_after_secs }) => {
            return (
                Outcome {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    body: json!({ "ok": false, "error": "ratelimited" }),
                    retry_after: Some(retry_after_secs),
                },
                false,
            )
        }
        Some(Fault::ServerError) => {
            return (
                Outcome {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: Value::String("<html><body><h1>500 Internal Server Error</h1></body></html>".to_owned()),
                    retry_after: None,
                },
                false,
            )
        }
        Some(Fault::ApiError(code)) => return (Outcome::error(ApiError::new(&code)), false),
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Timeout(hold)) => {
            tokio::time::sleep(hold).await;
            return (
                Outcome {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    body: Value::String("<html><body><h1>504 Gateway Time-out</h1></body></html>".to_owned()),
                    retry_after: None,
                },
                false,
            );
        }
        Some(Fault::AppliedThenLate(_)) | None => {}
    }
    let ctx = Ctx {
        method,
        base_url: shared.base_url(),
        trigger_ttl: shared.opts.trigger_ttl,
    };
    let params = Params(arguments.clone());
    let outcome = {
        let mut state = shared.state();
        match scopes::check(&mut state, method, &params) {
            Err((needed, provided)) => Outcome::error(
                ApiError::new("missing_scope")
                    .with("needed", json!(needed))
                    .with("provided", json!(provided)),
            ),
            Ok(()) => match handler(&mut state, &ctx, &params) {
                Ok(body) => Outcome::ok(body),
                Err(error) => Outcome::error(error),
            },
        }
    };
    let Some(Fault::AppliedThenLate(delay)) = fault else {
        return (outcome, false);
    };
    {
        let mut state = shared.state();
        state
            .late_answered
            .push((method.to_owned(), Value::Object(arguments.clone())));
        let mut params = arguments.clone();
        params.remove("token");
        state.calls.push(ApiCall {
            method: method.to_owned(),
            params: Value::Object(params),
            response: outcome.body.clone(),
            status: outcome.status.as_u16(),
            at,
        });
    }
    // Done (and visible to every later call) before the answer leaves.
    tokio::time::sleep(delay).await;
    (outcome, true)
}

// ----- helpers shared by methods -----

fn channel_ref(state: &State, id: Option<String>) -> Result<&ChannelRecord, ApiError> {
    let id = id.ok_or_else(|| ApiError::new("channel_not_found"))?;
    state.channel(&id).ok_or_else(|| ApiError::new("channel_not_found"))
}

fn is_member(channel: &Channel, user: &str) -> bool {
    channel.members.iter().any(|m| m == user)
}

/// A channel the bot can see: public, or private with the bot in it (Slack hides the rest).
fn visible_channel(state: &State, id: Option<String>) -> Result<&ChannelRecord, ApiError> {
    let record = channel_ref(state, id)?;
    if record.channel.is_private && !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new("channel_not_found"));
    }
    Ok(record)
}

/// A channel the bot is a member of and that is not archived (for changes to it).
fn writable_channel(state: &State, id: Option<String>) -> Result<String, ApiError> {
    let record = channel_ref(state, id)?;
    if record.channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    if !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new("not_in_channel"));
    }
    Ok(record.channel.id.clone())
}

/// Resolves `chat.*`'s `channel`: a conversation id, a user id (the bot's DM with them, opened on
/// demand), or a channel name with or without `#`.
fn message_target(state: &mut State, target: Option<String>) -> Result<String, ApiError> {
    let target = target.ok_or_else(|| ApiError::new("channel_not_found"))?;
    if state.channel(&target).is_some() {
        return Ok(target);
    }
    if (target.starts_with('U') || target.starts_with('W')) && state.users.contains_key(&target) {
        return Ok(state.open_im(&target));
    }
    let name = target.trim_start_matches('#');
    state
        .channels
        .iter()
        .find(|c| !c.channel.is_im && c.channel.name == name)
        .map(|c| c.channel.id.clone())
        .ok_or_else(|| ApiError::new("channel_not_found"))
}

/// Records rejected blocks and builds Slack's `invalid_blocks` answer.
fn reject_blocks(state: &mut State, method: &str, errors: Vec<String>) -> ApiError {
    state.violations.extend(errors.iter().map(|e| format!("{method}: {e}")));
    let messages: Vec<String> = errors.iter().map(|e| format!("[ERROR] {e}")).collect();
    ApiError::new("invalid_blocks")
        .with("errors", json!(errors))
        .with("response_metadata", json!({ "messages": messages }))
}

/// `text` and `blocks` of a message call, checked. `None` fields were not given.
struct Content {
    text: Option<String>,
    blocks: Option<Value>,
    has_attachments: bool,
}

fn message_content(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> Result<Content, ApiError> {
    let text = params.text("text");
    let blocks = match params.json("blocks") {
        Ok(blocks) => blocks,
        Err(()) => {
            state
                .violations
                .push(format!("{}: `blocks` is not valid JSON", ctx.method));
            return Err(ApiError::new("invalid_blocks_format"));
        }
    };
    let has_attachments = matches!(params.json("attachments"), Ok(Some(Value::Array(a))) if !a.is_empty());
    if let Some(text) = &text {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::new("msg_too_long"));
        }
    }
    let blocks = match blocks {
        Some(mut blocks) => {
            let errors = blockkit::check_message_blocks(&blocks);
            if !errors.is_empty() {
                return Err(reject_blocks(state, ctx.method, errors));
            }
            blockkit::fill_generated_ids(&mut blocks);
            Some(blocks)
        }
        None => None,
    };
    Ok(Content {
        text,
        blocks,
        has_attachments,
    })
}

impl Content {
    /// Neither text, blocks nor attachments: Slack's `no_text`.
    fn is_empty(&self) -> bool {
        let no_text = self.text.as_deref().is_none_or(str::is_empty);
        let no_blocks = self
            .blocks
            .as_ref()
            .is_none_or(|b| b.as_array().is_some_and(Vec::is_empty));
        no_text && no_blocks && !self.has_attachments
    }
}

// ----- auth and apps -----

fn auth_test(_: &mut State, _: &Ctx<'_>, _: &Params) -> ApiResult {
    Ok(json!({
        "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
        "team": "Sandbox",
        "user": BOT_USER_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": false,
    }))
}

fn apps_connections_open(state: &mut State, ctx: &Ctx<'_>, _: &Params) -> ApiResult {
    state
        .tickets
        .retain(|_, issued| issued.elapsed() <= super::socket::TICKET_TTL);
    let ticket = uuid::Uuid::new_v4().to_string();
    state.tickets.insert(ticket.clone(), Instant::now());
    let host = ctx.base_url.trim_start_matches("http://");
    Ok(json!({ "url": format!("ws://{host}/link/?ticket={ticket}&app_id={APP_ID}") }))
}

// ----- conversations -----

fn conversations_create(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let name = params.text("name").unwrap_or_default();
    check_channel_name(&name).map_err(ApiError::new)?;
    // Archived channels keep their names, as in Slack.
    if state
        .channels
        .iter()
        .any(|c| !c.channel.is_im && c.channel.name == name)
    {
        return Err(ApiError::new("name_taken"));
    }
    let id = state.unused_channel_id("C");
    let record = ChannelRecord {
        channel: Channel {
            id,
            name,
            is_private: params.flag("is_private"),
            is_im: false,
            members: vec![BOT_USER_ID.to_owned()],
            topic: String::new(),
            purpose: String::new(),
            pins: Vec::new(),
            archived: false,
            creator: BOT_USER_ID.to_owned(),
        },
        created: unix_now(),
        is_general: false,
        topic_set_by: String::new(),
        topic_last_set: 0,
        purpose_set_by: String::new(),
        purpose_last_set: 0,
    };
    let json = channel_json(&record);
    state.channels.push(record);
    Ok(json!({ "channel": json }))
}

/// `conversations.invite`: every user is checked; one refused user fails the whole call
/// (`error` is the first refusal, `errors` lists each `{user, ok, error}`), unless `force` is
/// set, which invites the others and still lists the refusals. Users already in the channel are
/// refused as `already_in_channel`, as in Slack.
fn conversations_invite(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let id = writable_channel(state, params.text("channel"))?;
    let users = params.list("users");
    if users.is_empty() {
        return Err(ApiError::new("no_user"));
    }
    let record = state.channel(&id).ok_or_else(|| ApiError::new("channel_not_found"))?;
    // A single-channel guest may be in one channel besides #general's stand-in.
    let channel_count = |user: &str| {
        state
            .channels
            .iter()
            .filter(|c| !c.channel.is_im && !c.is_general && is_member(&c.channel, user))
            .count()
    };
    let mut invited: Vec<String> = Vec::new();
    let mut errors: Vec<(String, &'static str)> = Vec::new();
    for user in users {
        let refusal = match state.users.get(&user) {
            _ if user == BOT_USER_ID => Some("cant_invite_self"),
            None => Some("user_not_found"),
            Some(_) if is_member(&record.channel, &user) || invited.contains(&user) => Some("already_in_channel"),
            Some(found) => match found.kind {
                UserKind::Member | UserKind::Bot => None,
                UserKind::Deactivated => Some("cant_invite"),
                UserKind::OtherWorkspace => Some("org_user_not_in_team"),
                UserKind::MultiChannelGuest => Some("user_is_restricted"),
                UserKind::SingleChannelGuest if channel_count(&user) >= 1 => Some("ura_max_channels"),
                UserKind::SingleChannelGuest => None,
            },
        };
        match refusal {
            Some(code) => errors.push((user, code)),
            None => invited.push(user),
        }
    }
    let errors_json: Vec<Value> = errors
        .iter()
        .map(|(user, code)| json!({ "user": user, "ok": false, "error": code }))
        .collect();
    if let Some((_, first)) = errors.first() {
        if !params.flag("force") || invited.is_empty() {
            return Err(ApiError::new(first).with("errors", json!(errors_json)));
        }
    }
    let record = state
        .channel_mut(&id)
        .ok_or_else(|| ApiError::new("channel_not_found"))?;
    record.channel.members.extend(invited);
    let mut answer = json!({ "channel": channel_json(record) });
    if !errors_json.is_empty() {
        answer["errors"] = json!(errors_json);
    }
    Ok(answer)
}

fn set_channel_text(state: &mut State, params: &Params, field: &str) -> ApiResult {
    let id = writable_channel(state, params.text("channel"))?;
    let value = params.text(field).unwrap_or_default();
    if value.chars().count() > MAX_TOPIC_CHARS {
        return Err(ApiError::new("too_long"));
    }
    let record = state
        .channel_mut(&id)
        .ok_or_else(|| ApiError::new("channel_not_found"))?;
    if field == "topic" {
        record.channel.topic = value.clone();
        record.topic_set_by = BOT_USER_ID.to_owned();
        record.topic_last_set = unix_now();
        let json = channel_json(record);
        // Slack posts a `channel_topic` message ("set the channel topic: …") on every call, even
        // when the text is unchanged: each call is visible noise in the channel.
        let message = Message {
            channel: id,
            ts: state.next_ts(),
            user: BOT_USER_ID.to_owned(),
            text: format!("{TOPIC_MESSAGE_PREFIX}{value}"),
            blocks: Value::Null,
            thread_ts: None,
            edited: false,
            reactions: Vec::new(),
        };
        state.messages.push(message);
        return Ok(json!({ "channel": json }));
    } else {
        record.channel.purpose = value;
        record.purpose_set_by = BOT_USER_ID.to_owned();
        record.purpose_last_set = unix_now();
    }
    Ok(json!({ "channel": channel_json(record) }))
}

fn conversations_set_topic(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    set_channel_text(state, params, "topic")
}

fn conversations_set_purpose(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    set_channel_text(state, params, "purpose")
}

fn conversations_archive(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = channel_ref(state, params.text("channel"))?;
    if record.is_general {
        return Err(ApiError::new("cant_archive_general"));
    }
    if record.channel.is_im {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if record.channel.archived {
        return Err(ApiError::new("already_archived"));
    }
    if !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new("not_in_channel"));
    }
    let id = record.channel.id.clone();
    if let Some(record) = state.channel_mut(&id) {
        record.channel.archived = true;
    }
    Ok(json!({}))
}

fn conversations_info(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = visible_channel(state, params.text("channel"))?;
    Ok(json!({ "channel": channel_json(record) }))
}

fn conversations_members(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = visible_channel(state, params.text("channel"))?;
    Ok(json!({
        "members": record.channel.members,
        "response_metadata": { "next_cursor": "" },
    }))
}

fn conversations_join(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = visible_channel(state, params.text("channel"))?;
    if record.channel.is_im || record.channel.is_private {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if record.channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    let id = record.channel.id.clone();
    let record = state
        .channel_mut(&id)
        .ok_or_else(|| ApiError::new("channel_not_found"))?;
    if is_member(&record.channel, BOT_USER_ID) {
        return Ok(json!({
            "channel": channel_json(record),
            "warning": "already_in_channel",
            "response_metadata": { "warnings": ["already_in_channel"] },
        }));
    }
    record.channel.members.push(BOT_USER_ID.to_owned());
    Ok(json!({ "channel": channel_json(record) }))
}

/// Opens the bot's DM with one user (group DMs are not modelled).
fn conversations_open(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    if let Some(channel) = params.required("channel") {
        let record = visible_channel(state, Some(channel))?;
        return Ok(json!({ "channel": { "id": record.channel.id }, "no_op": true, "already_open": true }));
    }
    let users = params.list("users");
    let [user] = users.as_slice() else {
        return Err(if users.is_empty() {
            ApiError::new("users_list_not_supplied")
        } else {
            ApiError::invalid_arguments(["the sandbox opens DMs with exactly one user".to_owned()])
        });
    };
    if !state.users.contains_key(user) {
        return Err(ApiError::new("user_not_found"));
    }
    let existed = state.im_with(user).is_some();
    let id = state.open_im(user);
    Ok(json!({ "channel": { "id": id }, "no_op": existed, "already_open": existed }))
}

// ----- chat -----

/// Slack's message metadata argument: a JSON object (or its URL-encoded text) with a string
/// `event_type` and an optional object `event_payload`. `Ok(None)` when absent.
fn message_metadata(params: &Params) -> Result<Option<Value>, ApiError> {
    let Some(metadata) = params
        .json("metadata")
        .map_err(|_| ApiError::new("invalid_metadata_format"))?
    else {
        return Ok(None);
    };
    let event_type = metadata.get("event_type").and_then(Value::as_str).unwrap_or_default();
    let payload = metadata.get("event_payload").unwrap_or(&Value::Null);
    if event_type.is_empty() || !(payload.is_null() || payload.is_object()) {
        return Err(ApiError::new("invalid_metadata_schema"));
    }
    if metadata.to_string().len() > 8_000 {
        return Err(ApiError::new("metadata_too_large"));
    }
    Ok(Some(
        json!({ "event_type": event_type, "event_payload": payload.clone() }),
    ))
}

/// A message as `conversations.history`/`replies` list it: with its metadata when asked for
/// (`include_all_metadata`), as Slack does.
fn listed_message(state: &State, message: &Message, with_metadata: bool) -> Value {
    let mut json = message_json(message);
    if with_metadata {
        if let Some(metadata) = state
            .message_metadata
            .get(&(message.channel.clone(), message.ts.clone()))
        {
            json["metadata"] = metadata.clone();
        }
    }
    json
}

fn chat_post_message(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = message_target(state, params.text("channel"))?;
    let record = channel_ref(state, Some(channel.clone()))?;
    if record.channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    // Public channels accept posts from non-members with `chat:write.public`; private ones never.
    let (outsider, private) = (!is_member(&record.channel, BOT_USER_ID), record.channel.is_private);
    if outsider && (private || !scopes::use_scope(state, "chat:write.public")) {
        return Err(ApiError::new("not_in_channel"));
    }
    let content = message_content(state, ctx, params)?;
    if content.is_empty() {
        return Err(ApiError::new("no_text"));
    }
    let metadata = message_metadata(params)?;
    let message = Message {
        channel: channel.clone(),
        ts: state.next_ts(),
        user: BOT_USER_ID.to_owned(),
        text: content.text.unwrap_or_default(),
        blocks: content.blocks.unwrap_or(Value::Null),
        thread_ts: params.required("thread_ts"),
        edited: false,
        reactions: Vec::new(),
    };
    let mut json = message_json(&message);
    let ts = message.ts.clone();
    state.messages.push(message);
    if let Some(metadata) = metadata {
        json["metadata"] = metadata.clone();
        state.message_metadata.insert((channel.clone(), ts.clone()), metadata);
    }
    Ok(json!({ "channel": channel, "ts": ts, "message": json }))
}

fn chat_post_ephemeral(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = message_target(state, params.text("channel"))?;
    let user = params.required("user").ok_or_else(|| ApiError::new("user_not_found"))?;
    if !state.users.contains_key(&user) {
        return Err(ApiError::new("user_not_found"));
    }
    let record = visible_channel(state, Some(channel.clone()))?;
    // The bot posts ephemerals only where it is a member: a DM between people is invisible to
    // it, a public channel it never joined answers `not_in_channel` (reply through the
    // interaction's `response_url` there instead).
    if !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new(if record.channel.is_im {
            "channel_not_found"
        } else {
            "not_in_channel"
        }));
    }
    if record.channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    if !is_member(&record.channel, &user) {
        return Err(ApiError::new("user_not_in_channel"));
    }
    let content = message_content(state, ctx, params)?;
    if content.is_empty() {
        return Err(ApiError::new("no_text"));
    }
    let ts = state.next_ts();
    state.ephemerals.push((
        user,
        Message {
            channel,
            ts: ts.clone(),
            user: BOT_USER_ID.to_owned(),
            text: content.text.unwrap_or_default(),
            blocks: content.blocks.unwrap_or(Value::Null),
            thread_ts: params.required("thread_ts"),
            edited: false,
            reactions: Vec::new(),
        },
    ));
    Ok(json!({ "message_ts": ts }))
}

fn chat_update(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = channel_ref(state, params.text("channel"))?.channel.id.clone();
    let ts = params
        .required("ts")
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    let author = state
        .find_message(&channel, &ts)
        .map(|m| m.user.clone())
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    if author != BOT_USER_ID {
        return Err(ApiError::new("cant_update_message"));
    }
    let content = message_content(state, ctx, params)?;
    if content.is_empty() {
        return Err(ApiError::new("no_text"));
    }
    // Given metadata replaces the message's; omitted, it is kept.
    if let Some(metadata) = message_metadata(params)? {
        state.message_metadata.insert((channel.clone(), ts.clone()), metadata);
    }
    let message = state
        .find_message_mut(&channel, &ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    // Omitted fields keep their previous value, as in Slack.
    if let Some(text) = content.text {
        message.text = text;
    }
    if let Some(blocks) = content.blocks {
        message.blocks = blocks;
    }
    message.edited = true;
    let json = message_json(message);
    Ok(json!({ "channel": channel, "ts": ts, "text": message.text, "message": json }))
}

fn chat_get_permalink(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = visible_channel(state, params.text("channel"))?.channel.id.clone();
    let ts = params
        .required("message_ts")
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    let message = state
        .find_message(&channel, &ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    let mut permalink = format!(
        "https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{}",
        ts.replace('.', "")
    );
    if let Some(thread_ts) = &message.thread_ts {
        permalink.push_str(&format!("?thread_ts={thread_ts}&cid={channel}"));
    }
    Ok(json!({ "channel": channel, "permalink": permalink }))
}

/// A message timestamp as a number (an unparseable one sorts first and matches no bound).
fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(f64::NEG_INFINITY)
}

/// The `latest`/`oldest`/`inclusive`/`limit` arguments of `conversations.history` and
/// `.replies` (default 100 messages, at most 1,000).
struct Window {
    latest: Option<f64>,
    oldest: Option<f64>,
    inclusive: bool,
    limit: usize,
}

impl Window {
    fn of(params: &Params) -> Window {
        let bound = |name: &str| params.text(name).and_then(|t| t.parse::<f64>().ok());
        Window {
            latest: bound("latest"),
            oldest: bound("oldest"),
            inclusive: params.flag("inclusive"),
            limit: params
                .text("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, 1000),
        }
    }

    fn contains(&self, ts: &str) -> bool {
        let Ok(t) = ts.parse::<f64>() else { return false };
        let before = self.latest.is_none_or(|l| if self.inclusive { t <= l } else { t < l });
        let after = self.oldest.is_none_or(|o| if self.inclusive { t >= o } else { t > o });
        before && after
    }
}

/// `conversations.history`: top-level messages newest first, bounded by `latest`/`oldest`
/// (`inclusive` keeps the bounds), at most `limit` (default 100), with their metadata when
/// `include_all_metadata` is set. The bot must be a member.
fn conversations_history(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = visible_channel(state, params.text("channel"))?;
    if !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new("not_in_channel"));
    }
    let channel = record.channel.id.clone();
    let window = Window::of(params);
    let mut found: Vec<&Message> = state
        .messages
        .iter()
        .filter(|m| m.channel == channel && m.thread_ts.as_ref().is_none_or(|t| *t == m.ts))
        .filter(|m| window.contains(&m.ts))
        .collect();
    found.sort_by(|a, b| ts_value(&b.ts).total_cmp(&ts_value(&a.ts)));
    let limit = window.limit;
    let has_more = found.len() > limit;
    let with_metadata = params.flag("include_all_metadata");
    let messages: Vec<Value> = found
        .into_iter()
        .take(limit)
        .map(|m| listed_message(state, m, with_metadata))
        .collect();
    Ok(json!({ "messages": messages, "has_more": has_more }))
}

/// `conversations.replies`: the thread of `ts` (its parent, or any reply in it): the parent
/// first, then its replies oldest first, bounded by `latest`/`oldest` (the parent is always
/// listed), at most `limit` replies (default 100), with metadata when `include_all_metadata`
/// is set. The bot must be a member.
fn conversations_replies(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = visible_channel(state, params.text("channel"))?;
    if !is_member(&record.channel, BOT_USER_ID) {
        return Err(ApiError::new("not_in_channel"));
    }
    let channel = record.channel.id.clone();
    let ts = params.required("ts").ok_or_else(|| ApiError::new("thread_not_found"))?;
    let found = state
        .find_message(&channel, &ts)
        .ok_or_else(|| ApiError::new("thread_not_found"))?;
    let parent_ts = found.thread_ts.clone().unwrap_or_else(|| found.ts.clone());
    let parent = state
        .find_message(&channel, &parent_ts)
        .ok_or_else(|| ApiError::new("thread_not_found"))?;
    let ts = parent_ts;
    let window = Window::of(params);
    let mut replies: Vec<&Message> = state
        .messages
        .iter()
        .filter(|m| m.channel == channel && m.ts != ts && m.thread_ts.as_deref() == Some(ts.as_str()))
        .filter(|m| window.contains(&m.ts))
        .collect();
    replies.sort_by(|a, b| ts_value(&a.ts).total_cmp(&ts_value(&b.ts)));
    let limit = window.limit;
    let has_more = replies.len() > limit;
    let with_metadata = params.flag("include_all_metadata");
    let mut messages = vec![listed_message(state, parent, with_metadata)];
    messages.extend(
        replies
            .into_iter()
            .take(limit)
            .map(|m| listed_message(state, m, with_metadata)),
    );
    Ok(json!({ "messages": messages, "has_more": has_more }))
}

/// `conversations.list`: the channels the bot can see (public ones, private ones it is in; DMs
/// only when `types` asks for `im`), in creation order, `limit` (default 100) per page with
/// Slack's `next_cursor`.
fn conversations_list(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let types = params.list("types");
    let types: Vec<&str> = if types.is_empty() {
        vec!["public_channel"]
    } else {
        types.iter().map(String::as_str).collect()
    };
    if let Some(bad) = types
        .iter()
        .find(|t| !["public_channel", "private_channel", "im", "mpim"].contains(t))
    {
        return Err(ApiError::new("invalid_types").with("detail", json!(bad)));
    }
    let limit = match params.text("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n <= 1000 => n.max(1),
            _ => return Err(ApiError::new("invalid_limit")),
        },
    };
    let start = match params.required("cursor") {
        None => 0,
        Some(c) => c
            .strip_prefix("offset:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::new("invalid_cursor"))?,
    };
    let exclude_archived = params.flag("exclude_archived");
    let visible: Vec<Value> = state
        .channels
        .iter()
        .filter(|c| {
            let kind = if c.channel.is_im {
                "im"
            } else if c.channel.is_private {
                "private_channel"
            } else {
                "public_channel"
            };
            types.contains(&kind)
                && (!c.channel.is_private || is_member(&c.channel, BOT_USER_ID))
                && !(exclude_archived && c.channel.archived)
        })
        .map(channel_json)
        .collect();
    let page: Vec<Value> = visible.iter().skip(start).take(limit).cloned().collect();
    let next = if start + limit < visible.len() {
        format!("offset:{}", start + limit)
    } else {
        String::new()
    };
    Ok(json!({ "channels": page, "response_metadata": { "next_cursor": next } }))
}

// ----- pins, reactions, bookmarks -----

fn pins_add(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let record = channel_ref(state, params.text("channel"))?;
    let channel = record.channel.id.clone();
    let ts = params
        .required("timestamp")
        .ok_or_else(|| ApiError::new("no_item_specified"))?;
    if state.find_message(&channel, &ts).is_none() {
        return Err(ApiError::new("message_not_found"));
    }
    let id = writable_channel(state, Some(channel))?;
    let record = state
        .channel_mut(&id)
        .ok_or_else(|| ApiError::new("channel_not_found"))?;
    if record.channel.pins.contains(&ts) {
        return Err(ApiError::new("already_pinned"));
    }
    record.channel.pins.push(ts);
    Ok(json!({}))
}

fn reactions_add(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = visible_channel(state, params.text("channel"))?.channel.id.clone();
    let ts = params
        .required("timestamp")
        .ok_or_else(|| ApiError::new("no_item_specified"))?;
    let name = params
        .required("name")
        .map(|n| n.trim_matches(':').to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::new("invalid_name"))?;
    let message = state
        .find_message_mut(&channel, &ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    if message
        .reactions
        .iter()
        .any(|r| r.name == name && r.user == BOT_USER_ID)
    {
        return Err(ApiError::new("already_reacted"));
    }
    message.reactions.push(Reaction {
        name,
        user: BOT_USER_ID.to_owned(),
    });
    Ok(json!({}))
}

fn bookmarks_add(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let channel = writable_channel(state, params.text("channel_id"))?;
    let title = params
        .required("title")
        .ok_or_else(|| ApiError::invalid_arguments(["missing required field: title".to_owned()]))?;
    if params.text("type").as_deref() != Some("link") {
        return Err(ApiError::new("invalid_bookmark_type"));
    }
    let link = params.required("link").ok_or_else(|| ApiError::new("invalid_link"))?;
    let id = random_id("Bk", 10);
    let now = unix_now();
    state.bookmarks.push(Bookmark {
        id: id.clone(),
        channel: channel.clone(),
        title: title.clone(),
        link: link.clone(),
    });
    Ok(json!({
        "bookmark": {
            "id": id,
            "channel_id": channel,
            "title": title,
            "link": link,
            "emoji": params.text("emoji"),
            "icon_url": null,
            "type": "link",
            "entity_id": null,
            "date_created": now,
            "date_updated": 0,
            "rank": "U",
            "last_updated_by_user_id": BOT_USER_ID,
            "last_updated_by_team_id": TEAM_ID,
            "shortcut_id": null,
            "app_id": null,
        }
    }))
}

// ----- views -----

/// The `view` argument, checked against Block Kit; violations are recorded.
fn view_argument(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> Result<Value, ApiError> {
    let view = match params.json("view") {
        Ok(Some(view)) => view,
        Ok(None) => return Err(ApiError::invalid_arguments(["missing required field: view".to_owned()])),
        Err(()) => {
            state
                .violations
                .push(format!("{}: `view` is not valid JSON", ctx.method));
            return Err(ApiError::invalid_arguments([
                "failed to parse `view` as JSON [json-pointer:/view]".to_owned(),
            ]));
        }
    };
    let errors = blockkit::check_view(&view, "/view");
    if !errors.is_empty() {
        state
            .violations
            .extend(errors.iter().map(|e| format!("{}: {e}", ctx.method)));
        return Err(ApiError::invalid_arguments(errors));
    }
    Ok(view)
}

fn require_modal(view: &Value) -> Result<(), ApiError> {
    if view["type"] != "modal" {
        return Err(ApiError::invalid_arguments([
            "only `modal` views can be opened or pushed [json-pointer:/view/type]".to_owned(),
        ]));
    }
    Ok(())
}

fn check_external_id(state: &State, view: &Value, except: Option<&str>) -> Result<(), ApiError> {
    let Some(external_id) = view["external_id"].as_str().filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let taken = state
        .views
        .iter()
        .any(|v| Some(v.id.as_str()) != except && v.raw["external_id"] == external_id);
    if taken {
        return Err(ApiError::new("duplicate_external_id"));
    }
    Ok(())
}

/// Exchanges a trigger: known, not used before, younger than the TTL. Returns its user.
fn exchange_trigger(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> Result<(String, String), ApiError> {
    let trigger_id = params
        .required("trigger_id")
        .ok_or_else(|| ApiError::invalid_arguments(["invalid `trigger_id`".to_owned()]))?;
    let trigger = state
        .triggers
        .get_mut(&trigger_id)
        .ok_or_else(|| ApiError::new("invalid_trigger_id"))?;
    if trigger.exchanged {
        return Err(ApiError::new("exchanged_trigger_id"));
    }
    if trigger.issued.elapsed() > ctx.trigger_ttl {
        return Err(ApiError::new("expired_trigger_id"));
    }
    trigger.exchanged = true;
    Ok((trigger_id, trigger.user.clone()))
}

fn views_open(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let view = view_argument(state, ctx, params)?;
    require_modal(&view)?;
    check_external_id(state, &view, None)?;
    let (trigger_id, user) = exchange_trigger(state, ctx, params)?;
    let id = state.store_view(view, &user, Some(&trigger_id), None);
    let raw = state.view(&id).map(|v| v.raw.clone()).unwrap_or_default();
    Ok(json!({ "view": raw }))
}

fn views_push(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let view = view_argument(state, ctx, params)?;
    require_modal(&view)?;
    check_external_id(state, &view, None)?;
    let (trigger_id, user) = exchange_trigger(state, ctx, params)?;
    let top = state
        .views
        .iter()
        .rev()
        .find(|v| v.user == user && !v.closed)
        .cloned()
        .ok_or_else(|| ApiError::new("not_found"))?;
    let depth = state
        .views
        .iter()
        .filter(|v| v.root_view_id == top.root_view_id && !v.closed)
        .count();
    if depth >= MAX_VIEW_STACK {
        return Err(ApiError::new("push_limit_reached"));
    }
    let id = state.store_view(view, &user, Some(&trigger_id), Some(&top));
    let raw = state.view(&id).map(|v| v.raw.clone()).unwrap_or_default();
    Ok(json!({ "view": raw }))
}

fn views_update(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let target = match (params.required("view_id"), params.required("external_id")) {
        (Some(view_id), _) => state.view(&view_id).map(|v| v.id.clone()),
        (None, Some(external_id)) => state
            .views
            .iter()
            .find(|v| v.raw["external_id"] == external_id.as_str())
            .map(|v| v.id.clone()),
        (None, None) => {
            return Err(ApiError::invalid_arguments([
                "either `view_id` or `external_id` is required".to_owned(),
            ]))
        }
    };
    let view = view_argument(state, ctx, params)?;
    let id = target.ok_or_else(|| ApiError::new("not_found"))?;
    let stored = state.view(&id).ok_or_else(|| ApiError::new("not_found"))?;
    if stored.closed {
        return Err(ApiError::new("not_found"));
    }
    if view["type"] != stored.raw["type"] {
        return Err(ApiError::invalid_arguments([
            "a view cannot change its type [json-pointer:/view/type]".to_owned(),
        ]));
    }
    if let Some(hash) = params.required("hash") {
        if hash != stored.hash {
            return Err(ApiError::new("hash_conflict"));
        }
    }
    check_external_id(state, &view, Some(&id))?;
    let raw = state.replace_view(&id, view).map(|v| v.raw.clone()).unwrap_or_default();
    Ok(json!({ "view": raw }))
}

// ----- users -----

fn users_info(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let user = params
        .required("user")
        .and_then(|id| state.users.get(&id))
        .ok_or_else(|| ApiError::new("user_not_found"))?;
    Ok(json!({ "user": user_json(user) }))
}

fn usergroups_users_list(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let (_, users) = params
        .required("usergroup")
        .and_then(|id| state.usergroups.get(&id))
        .ok_or_else(|| ApiError::new("no_such_subteam"))?;
    Ok(json!({ "users": users }))
}

// ----- files -----

fn files_get_upload_url_external(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let filename = params
        .required("filename")
        .ok_or_else(|| ApiError::invalid_arguments(["missing required field: filename".to_owned()]))?;
    let length_ok = params
        .required("length")
        .is_some_and(|l| l.parse::<u64>().is_ok_and(|n| n > 0));
    if !length_ok {
        return Err(ApiError::invalid_arguments([
            "`length` must be a positive integer".to_owned()
        ]));
    }
    let file_id = random_id("F", 10);
    state.uploads.insert(file_id.clone(), Upload { filename, bytes: None });
    Ok(json!({
        "upload_url": format!("{}/upload/{file_id}", ctx.base_url),
        "file_id": file_id,
    }))
}

fn files_complete_upload_external(state: &mut State, ctx: &Ctx<'_>, params: &Params) -> ApiResult {
    let files = match params.json("files") {
        Ok(Some(Value::Array(files))) if !files.is_empty() => files,
        _ => {
            return Err(ApiError::invalid_arguments([
                "`files` must be a JSON array of {id, title}".to_owned(),
            ]))
        }
    };
    let channel_argument = params
        .required("channel_id")
        .or_else(|| params.list("channels").into_iter().next());
    let channel = match channel_argument {
        Some(channel) => Some(writable_channel(state, Some(channel))?),
        None => None,
    };
    // Slack ignores `blocks` when `initial_comment` is set.
    let initial_comment = params.text("initial_comment").filter(|c| !c.is_empty());
    let blocks = match (&initial_comment, params.json("blocks")) {
        (Some(_), _) | (None, Ok(None)) => Value::Null,
        (None, Ok(Some(mut blocks))) => {
            let errors = blockkit::check_message_blocks(&blocks);
            if !errors.is_empty() {
                return Err(reject_blocks(state, ctx.method, errors));
            }
            blockkit::fill_generated_ids(&mut blocks);
            blocks
        }
        (None, Err(())) => {
            state
                .violations
                .push(format!("{}: `blocks` is not valid JSON", ctx.method));
            return Err(ApiError::new("invalid_blocks_format"));
        }
    };
    let mut completed = Vec::new();
    for file in &files {
        let id = file["id"].as_str().unwrap_or_default();
        let uploaded = state
            .uploads
            .get(id)
            .and_then(|u| u.bytes.as_ref().map(|b| (u.filename.clone(), b.len())));
        let Some((filename, _)) = uploaded else {
            return Err(ApiError::new("file_not_found"));
        };
        let title = file["title"]
            .as_str()
            .filter(|t| !t.is_empty())
            .unwrap_or(&filename)
            .to_owned();
        completed.push((id.to_owned(), filename, title));
    }
    let now = unix_now();
    let mut answer = Vec::new();
    for (id, filename, title) in completed {
        let bytes = state.uploads.remove(&id).and_then(|u| u.bytes).unwrap_or_default();
        answer.push(json!({
            "id": id,
            "created": now,
            "timestamp": now,
            "name": filename,
            "title": title,
            "mimetype": "application/octet-stream",
            "filetype": "binary",
            "pretty_type": "Binary",
            "user": BOT_USER_ID,
            "user_team": TEAM_ID,
            "editable": false,
            "size": bytes.len(),
            "mode": "hosted",
            "is_external": false,
            "external_type": "",
            "is_public": channel.is_some(),
            "public_url_shared": false,
            "url_private": format!("{}/files/{id}/{filename}", ctx.base_url),
            "url_private_download": format!("{}/files/{id}/download/{filename}", ctx.base_url),
            "permalink": format!("https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{id}/{filename}"),
            "channels": channel.iter().collect::<Vec<_>>(),
        }));
        state
            .completed_files
            .insert(id.clone(), (filename.clone(), title.clone(), channel.clone()));
        state
            .file_shares
            .push((channel.clone().unwrap_or_default(), title, bytes));
    }
    if let Some(channel) = channel {
        let message = Message {
            channel,
            ts: state.next_ts(),
            user: BOT_USER_ID.to_owned(),
            text: initial_comment.unwrap_or_default(),
            blocks,
            thread_ts: params.required("thread_ts"),
            edited: false,
            reactions: Vec::new(),
        };
        state.messages.push(message);
    }
    Ok(json!({ "files": answer }))
}

/// `files.info`: a completed upload lists the conversations it is shared in (`channels` for
/// public ones, `groups` for private ones, as Slack does); an upload not completed yet is a
/// file shared nowhere; anything else is `file_not_found`.
fn files_info(state: &mut State, _: &Ctx<'_>, params: &Params) -> ApiResult {
    let id = params.required("file").ok_or_else(|| ApiError::new("file_not_found"))?;
    let (name, title, channel) = match (state.completed_files.get(&id), state.uploads.get(&id)) {
        (Some((name, title, channel)), _) => (name.clone(), title.clone(), channel.clone()),
        (None, Some(upload)) => (upload.filename.clone(), upload.filename.clone(), None),
        (None, None) => return Err(ApiError::new("file_not_found")),
    };
    let private = channel
        .as_ref()
        .and_then(|c| state.channel(c))
        .is_some_and(|record| record.channel.is_private);
    let (channels, groups): (Vec<String>, Vec<String>) = match channel {
        Some(c) if private => (vec![], vec![c]),
        Some(c) => (vec![c], vec![]),
        None => (vec![], vec![]),
    };
    Ok(json!({ "file": {
        "id": id,
        "name": name,
        "title": title,
        "user": BOT_USER_ID,
        "channels": channels,
        "groups": groups,
        "ims": [],
    }}))
}

// ----- non-API endpoints -----

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `POST /upload/<file_id>`: the raw bytes of a file (Slack answers `OK - <length>`).
pub(crate) async fn handle_upload(
    shared: Arc<Shared>,
    file_id: String,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(body) = read_body(request.into_body()).await else {
        return text_response(StatusCode::PAYLOAD_TOO_LARGE, "file too large".to_owned());
    };
    let mut state = shared.state();
    match state.uploads.get_mut(&file_id) {
        Some(upload) => {
            let length = body.len();
            upload.bytes = Some(body.to_vec());
            text_response(StatusCode::OK, format!("OK - {length}"))
        }
        None => text_response(StatusCode::NOT_FOUND, "unknown upload".to_owned()),
    }
}

/// `POST /response_url/...`: a JSON message for the channel (`response_type: in_channel`) or the
/// user (ephemeral, the default); `replace_original`/`delete_original` act on the message the
/// interaction came from.
pub(crate) async fn handle_response_url(
    shared: Arc<Shared>,
    id: String,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let json_answer = |status: StatusCode, body: Value| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    };
    let Some(body) = read_body(request.into_body()).await else {
        return json_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "ok": false, "error": "too_large" }),
        );
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({ "ok": false, "error": "invalid_payload" }),
        );
    };
    let mut state = shared.state();
    let Some(target) = state.response_urls.get_mut(&id) else {
        return json_answer(StatusCode::NOT_FOUND, json!({ "ok": false, "error": "expired_url" }));
    };
    // Slack: "use it up to five times within thirty minutes".
    if target.issued.elapsed() > RESPONSE_URL_TTL {
        return json_answer(StatusCode::NOT_FOUND, json!({ "ok": false, "error": "expired_url" }));
    }
    if target.uses >= RESPONSE_URL_USES {
        return json_answer(StatusCode::NOT_FOUND, json!({ "ok": false, "error": "used_url" }));
    }
    target.uses += 1;
    let target = target.clone();
    let blocks = payload.get("blocks").filter(|b| !b.is_null()).cloned();
    if let Some(blocks) = &blocks {
        let errors = blockkit::check_message_blocks(blocks);
        if !errors.is_empty() {
            state
                .violations
                .extend(errors.iter().map(|e| format!("response_url: {e}")));
            return json_answer(StatusCode::OK, json!({ "ok": false, "error": "invalid_blocks" }));
        }
    }
    let mut blocks = blocks.unwrap_or(Value::Null);
    blockkit::fill_generated_ids(&mut blocks);
    let text = payload["text"].as_str().unwrap_or_default().to_owned();
    let original = target.message_ts.clone();
    if payload["delete_original"] == true {
        if let Some(ts) = original {
            state.messages.retain(|m| !(m.channel == target.channel && m.ts == ts));
            state
                .ephemerals
                .retain(|(user, m)| !(*user == target.user && m.channel == target.channel && m.ts == ts));
        }
        return json_answer(StatusCode::OK, json!({ "ok": true }));
    }
    if payload["replace_original"] == true {
        if let Some(ts) = original {
            let channel_message = state.find_message_mut(&target.channel, &ts);
            if let Some(message) = channel_message {
                message.text = text;
                message.blocks = blocks;
                message.edited = true;
                return json_answer(StatusCode::OK, json!({ "ok": true }));
            }
            if let Some((_, message)) = state
                .ephemerals
                .iter_mut()
                .find(|(user, m)| *user == target.user && m.channel == target.channel && m.ts == ts)
            {
                message.text = text;
                message.blocks = blocks;
                message.edited = true;
            }
            return json_answer(StatusCode::OK, json!({ "ok": true }));
        }
    }
    if text.is_empty() && blocks.is_null() {
        return json_answer(StatusCode::OK, json!({ "ok": false, "error": "no_text" }));
    }
    let message = Message {
        channel: target.channel.clone(),
        ts: state.next_ts(),
        user: BOT_USER_ID.to_owned(),
        text,
        blocks,
        thread_ts: payload["thread_ts"].as_str().map(str::to_owned),
        edited: false,
        reactions: Vec::new(),
    };
    if payload["response_type"] == "in_channel" {
        state.messages.push(message);
    } else {
        state.ephemerals.push((target.user, message));
    }
    json_answer(StatusCode::OK, json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_match_methods() {
        assert_eq!(check_auth("auth.test", Some(BOT_TOKEN)), Ok(()));
        assert_eq!(check_auth("auth.test", None), Err("not_authed"));
        assert_eq!(check_auth("auth.test", Some("xoxb-wrong")), Err("invalid_auth"));
        assert_eq!(check_auth("auth.test", Some(APP_TOKEN)), Err("not_allowed_token_type"));
        assert_eq!(check_auth("apps.connections.open", Some(APP_TOKEN)), Ok(()));
        assert_eq!(
            check_auth("apps.connections.open", Some(BOT_TOKEN)),
            Err("not_allowed_token_type")
        );
    }

    #[test]
    fn params_read_form_and_json_shapes() {
        let params = Params(
            json!({ "users": "U1, U2,", "ids": ["U3"], "blocks": "[{\"type\":\"divider\"}]", "bad": "[", "n": 5, "f": "true" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert_eq!(params.list("users"), ["U1", "U2"]);
        assert_eq!(params.list("ids"), ["U3"]);
        assert_eq!(params.json("blocks"), Ok(Some(json!([{ "type": "divider" }]))));
        assert_eq!(params.json("bad"), Err(()));
        assert_eq!(params.text("n").as_deref(), Some("5"));
        assert!(params.flag("f"));
        assert!(!params.flag("missing"));
    }
}
