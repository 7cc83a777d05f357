//! The Slack Web API calls the bot makes, over slack-morphism, with errors reduced to what the
//! bot acts on: Slack's error code, or "try again later". Messages never contain tokens.

use crate::config::SlackSettings;
use slack_morphism::errors::*;
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;

pub type Connector = SlackClientHyperHttpsConnector;

/// A failed Slack call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SlackCallError {
    /// Slack answered `ok: false` with this code (e.g. `name_taken`).
    #[error("Slack {method} answered {code}")]
    Api { method: &'static str, code: String },
    /// Rate limited (429 with `Retry-After`): Slack refused before doing anything.
    #[error("Slack {method} is unavailable ({detail})")]
    Unavailable {
        method: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// No answer we can trust (timeout, connection reset, 5xx, a garbled body): Slack may
    /// have done it. A retry must look for the result before repeating the call.
    #[error("Slack {method} did not answer ({detail}); it may have been done")]
    Unknown { method: &'static str, detail: String },
}

/// What a failed call means for the job that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Slack refused and no retry can fix it (too long, not allowed, gone, bad token).
    Permanent,
    /// Slack refused for now (rate limited, a transient error code): repeat it as is.
    Temporary { retry_after: Option<Duration> },
    /// We do not know whether Slack did it: reconcile before repeating.
    Uncertain,
}

/// Slack error codes that no retry can fix: the content, the channel or the permissions must
/// change first. (From the method docs in `../shared/slack/methods`.)
const PERMANENT: &[&str] = &[
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_arguments",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    "channel_not_found",
    "is_archived",
    "not_in_channel",
    "invalid_name",
    "invalid_name_specials",
    "invalid_name_maxlength",
    "invalid_name_required",
    "invalid_name_punctuation",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "cannot_create_channel",
    "missing_scope",
    "not_allowed_token_type",
    "user_not_found",
    "user_not_visible",
    "user_is_restricted",
    "msg_too_long",
    "msg_blocks_too_long",
    "too_long",
    "no_text",
    "not_pinnable",
    "too_many_pins",
    "ekm_access_denied",
    "team_access_not_granted",
    "channel_is_archived",
    "cant_update_message",
    "edit_window_closed",
    "message_not_found",
    "no_permission",
    "method_deprecated",
    "deprecated_endpoint",
];

/// Codes saying the bot's token no longer works: nothing will succeed until someone
/// reinstalls the app or fixes the token, so `/readyz` turns red.
pub const AUTH_FAILURES: &[&str] = &[
    "invalid_auth",
    "token_revoked",
    "account_inactive",
    "not_authed",
    "token_expired",
];

/// Codes meaning Slack hit an error part-way and may have done some of it ("It's possible some
/// aspect of the operation succeeded before the error was raised", `fatal_error`).
const UNCERTAIN_CODES: &[&str] = &["fatal_error", "internal_error"];

impl SlackCallError {
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackCallError::Api { code, .. } => Some(code),
            SlackCallError::Unavailable { .. } | SlackCallError::Unknown { .. } => None,
        }
    }

    /// Done / failed for good / try again / unknown: see [`Failure`].
    pub fn failure(&self) -> Failure {
        match self {
            SlackCallError::Api { code, .. }
                if PERMANENT.contains(&code.as_str()) || AUTH_FAILURES.contains(&code.as_str()) =>
            {
                Failure::Permanent
            }
            SlackCallError::Api { code, .. } if UNCERTAIN_CODES.contains(&code.as_str()) => Failure::Uncertain,
            // Other codes (`ratelimited` in a 200, `service_unavailable`, `request_timeout`, …)
            // are answers: Slack did not do it, and may later.
            SlackCallError::Api { .. } => Failure::Temporary { retry_after: None },
            SlackCallError::Unavailable { retry_after, .. } => Failure::Temporary {
                retry_after: *retry_after,
            },
            SlackCallError::Unknown { .. } => Failure::Uncertain,
        }
    }

    fn from_client(method: &'static str, e: SlackClientError) -> Self {
        match e {
            SlackClientError::ApiError(api) => SlackCallError::Api { method, code: api.code },
            SlackClientError::RateLimitError(rl) => SlackCallError::Unavailable {
                method,
                detail: "rate limited".into(),
                retry_after: rl.retry_after,
            },
            // A 5xx (or any status we did not expect) comes from somewhere between us and
            // Slack's backend, which may have applied the call before the error.
            SlackClientError::HttpError(h) => SlackCallError::Unknown {
                method,
                detail: format!("HTTP {}", h.status_code.as_u16()),
            },
            // Protocol/system errors carry bodies and URLs; keep only their kind. A reset or a
            // garbled answer may come after Slack did the work: unknown, not failed.
            other => SlackCallError::Unknown {
                method,
                detail: match other {
                    SlackClientError::HttpProtocolError(_) => "connection failed".into(),
                    SlackClientError::ProtocolError(_) => "unexpected response".into(),
                    SlackClientError::EndOfStream(_) => "connection closed".into(),
                    _ => "client error".into(),
                },
            },
        }
    }
}

/// Shorthand for results of Slack calls.
pub type SlackResult<T> = Result<T, SlackCallError>;

/// A channel found by name (see [`SlackWeb::find_channel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundChannel {
    pub id: String,
    pub creator: String,
    pub purpose: String,
    /// When it was created (Unix seconds).
    pub created: i64,
}

/// Who the bot is, from `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub team_id: String,
    pub team: String,
    pub user_id: String,
}

/// The bot's Web API client.
#[derive(Clone)]
pub struct SlackWeb {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    timeout: Duration,
    /// Channel members recently read (see [`SlackWeb::members`]).
    members_cache: Arc<std::sync::Mutex<MembersCache>>,
    auth_failure: AuthFailure,
    crash_point: Option<Arc<CrashPoint>>,
}

/// Channel id → (when read, member ids).
type MembersCache = std::collections::HashMap<String, (std::time::Instant, Vec<String>)>;

/// How long a channel's member list is reused: `/incident list` and `followups` answer within
/// the ack budget even with many private incidents, and someone invited by a person (not by
/// the bot, which forgets the list itself) shows up within this long.
const MEMBERS_TTL: Duration = Duration::from_secs(60);

/// The marker of messages the outbox posts: `metadata.event_type`.
pub const JOB_EVENT_TYPE: &str = "incident_bot_job";

/// What identifies a message the bot posted: its metadata's `event_type` and one
/// `event_payload` entry (`job` = the outbox job id; `slot` for a scheduled report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTag {
    pub event_type: &'static str,
    pub key: &'static str,
    pub value: String,
}

impl MessageTag {
    /// `content` with this tag as its message metadata.
    pub fn apply(&self, mut content: SlackMessageContent, extra: &[(&str, String)]) -> SlackMessageContent {
        let mut payload = std::collections::HashMap::from([(self.key.to_string(), self.value.clone())]);
        payload.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        content.metadata = Some(SlackMessageMetadata::new(self.event_type.into()).with_event_payload(payload));
        content
    }
}

/// How many pages of history a look-up reads at most (of `LOOKUP_PAGE` messages each).
const LOOKUP_PAGES: usize = 5;
const LOOKUP_PAGE: u16 = 200;

/// Builds a slack-morphism client for `api_url` (http or https).
///
/// slack-morphism's rate controller is left off on purpose: it spaces `chat.postMessage`
/// calls a second apart in advance, which would make every incident wait. Slack answers 429
/// with `Retry-After` when we are too fast, and `call!` retries those.
pub fn build_client(api_url: &str) -> anyhow::Result<Arc<SlackClient<Connector>>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url.trim_end_matches('/'));
    Ok(Arc::new(SlackClient::new(connector)))
}

/// How many times a call answered 429 is retried after `Retry-After`.
const RATE_LIMIT_RETRIES: u32 = 3;
/// Longest `Retry-After` waited inside a call; longer waits go back to the outbox's backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Runs one Web API call with the bot token and a timeout, retrying 429s after `Retry-After`,
/// and maps its error.
macro_rules! call {
    ($self:ident, $method:literal, |$s:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            let $s = $self.client.open_session(&$self.token);
            let result = match tokio::time::timeout($self.timeout, $body).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(SlackCallError::from_client($method, e)),
                Err(_) => Err(SlackCallError::Unknown {
                    method: $method,
                    detail: "timed out".into(),
                }),
            };
            $crate::slack::web::count_call($method, &result);
            $self.watch_auth(&result);
            if result.is_ok() {
                $self.maybe_crash($method).await;
            }
            match result {
                Err(SlackCallError::Unavailable {
                    retry_after: Some(wait),
                    ..
                }) if attempt < RATE_LIMIT_RETRIES && wait <= MAX_RETRY_AFTER => {
                    attempt += 1;
                    tracing::debug!(
                        method = $method,
                        wait_ms = wait.as_millis() as u64,
                        "rate limited; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        }
    }};
}

/// How many times one upload step is tried when its outcome is unknown.
const UPLOAD_ATTEMPTS: usize = 3;

/// Runs `call` again while its outcome is unknown (at most [`UPLOAD_ATTEMPTS`] in all): for
/// calls that create nothing anyone sees, so repeating them is harmless.
async fn repeat_uncertain<T, F, Fut>(call: F) -> SlackResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = SlackResult<T>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.failure() == Failure::Uncertain && attempt < UPLOAD_ATTEMPTS => {
                tracing::info!(error = %e, "outcome unknown; asking again (harmless to repeat)");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Counts one Web API attempt (and its error code, if it failed) in the metrics.
pub(crate) fn count_call<T>(method: &'static str, result: &SlackResult<T>) {
    let metrics = &crate::metrics::METRICS;
    metrics.slack_calls.inc(&[method]);
    match result {
        Ok(_) => {}
        Err(SlackCallError::Api { code, .. }) => metrics.slack_errors.inc(&[method, code]),
        Err(SlackCallError::Unavailable {
            retry_after: Some(_), ..
        }) => metrics.slack_errors.inc(&[method, "ratelimited"]),
        Err(SlackCallError::Unavailable { .. }) => metrics.slack_errors.inc(&[method, "unavailable"]),
        Err(SlackCallError::Unknown { .. }) => metrics.slack_errors.inc(&[method, "unknown"]),
    }
}

/// A test-only fault: the process "dies" right after Slack has answered the `skip + 1`-th
/// successful call to `method`, before the bot can store what it learnt. The call then never
/// returns (as if the process were gone) and [`CrashPoint::crashed`] resolves, so the test can
/// kill the bot ([`crate::app::Bot::kill`]) and restart it. Set through `BotOptions`; never
/// configurable in production settings.
#[derive(Debug)]
pub struct CrashPoint {
    method: &'static str,
    skip: std::sync::atomic::AtomicUsize,
    fired: tokio::sync::watch::Sender<bool>,
}

impl CrashPoint {
    pub fn after(method: &'static str, skip: usize) -> Arc<CrashPoint> {
        Arc::new(CrashPoint {
            method,
            skip: std::sync::atomic::AtomicUsize::new(skip),
            fired: tokio::sync::watch::channel(false).0,
        })
    }

    /// Resolves once the crash point has been reached.
    pub async fn crashed(&self) {
        let mut rx = self.fired.subscribe();
        let _ = rx.wait_for(|fired| *fired).await;
    }

    fn hit(&self, method: &str) -> bool {
        use std::sync::atomic::Ordering;
        if method != self.method || *self.fired.borrow() {
            return false;
        }
        let passed = self
            .skip
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if passed {
            return false;
        }
        self.fired.send_replace(true);
        true
    }
}

/// The first token failure Slack reported (`invalid_auth`, `token_revoked`, …), shared with
/// `/readyz`; empty while the token works.
pub type AuthFailure = Arc<std::sync::Mutex<Option<String>>>;

impl SlackWeb {
    pub fn new(settings: &SlackSettings) -> anyhow::Result<Self> {
        Ok(SlackWeb {
            client: build_client(&settings.api_url)?,
            token: SlackApiToken::new(settings.bot_token.expose().into()),
            timeout: Duration::from_secs(10),
            members_cache: Arc::default(),
            auth_failure: AuthFailure::default(),
            crash_point: None,
        })
    }

    /// Test-only: die after a chosen call (see [`CrashPoint`]).
    pub fn with_crash_point(mut self, point: Option<Arc<CrashPoint>>) -> Self {
        self.crash_point = point;
        self
    }

    /// Set once Slack says the token no longer works; `/readyz` reads it.
    pub fn auth_failure(&self) -> AuthFailure {
        self.auth_failure.clone()
    }

    fn watch_auth<T>(&self, result: &SlackResult<T>) {
        let Err(SlackCallError::Api { method, code }) = result else {
            return;
        };
        if !AUTH_FAILURES.contains(&code.as_str()) {
            return;
        }
        let mut failure = self.auth_failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            // Loud and once: every later call fails the same way until the app is reinstalled.
            tracing::error!(%method, %code, "Slack refuses the bot token: reinstall the app or replace SLACK_BOT_TOKEN; /readyz is now red");
            *failure = Some(code.clone());
        }
    }

    async fn maybe_crash(&self, method: &str) {
        if let Some(point) = &self.crash_point {
            if point.hit(method) {
                tracing::warn!(%method, "test crash point reached: this call never returns");
                std::future::pending::<()>().await;
            }
        }
    }

    /// How long one Web API call may take before it counts as failed (and is retried).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    pub async fn auth_test(&self) -> SlackResult<BotIdentity> {
        let r = call!(self, "auth.test", |s| s.auth_test())?;
        Ok(BotIdentity {
            team_id: r.team_id.to_string(),
            team: r.team,
            user_id: r.user_id.to_string(),
        })
    }

    /// Creates a channel; returns its id.
    pub async fn create_channel(&self, name: &str, private: bool) -> SlackResult<String> {
        let req = SlackApiConversationsCreateRequest::new(name.into()).with_is_private(private);
        let r = call!(self, "conversations.create", |s| s.conversations_create(&req))?;
        Ok(r.channel.id.to_string())
    }

    /// Invites one person. `already_in_channel` is success for that person; any other refusal
    /// (a guest, someone from another workspace, a deactivated account) is theirs alone, which
    /// is why the bot invites people one call each.
    pub async fn invite_person(&self, channel: &str, user: &str) -> SlackResult<()> {
        let req = SlackApiConversationsInviteRequest::new(channel.into(), vec![SlackUserId(user.into())]);
        let result = call!(self, "conversations.invite", |s| s.conversations_invite(&req));
        // The channel's members changed (or may have): read them again next time.
        self.cache().remove(channel);
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("already_in_channel") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The channel's current topic (to set it only when our text differs: each
    /// `conversations.setTopic` is a Tier 2 call and posts a line in the channel).
    pub async fn topic(&self, channel: &str) -> SlackResult<String> {
        let req = SlackApiConversationsInfoRequest::new(channel.into());
        let r = call!(self, "conversations.info", |s| s.conversations_info(&req))?;
        Ok(r.channel.topic.map(|t| t.value).unwrap_or_default())
    }

    /// Sets the topic, waiting out no `Retry-After` inside the call: a rate-limited topic goes
    /// back to the outbox at once instead of holding up the incident's next jobs.
    pub async fn set_topic_once(&self, channel: &str, topic: &str) -> SlackResult<()> {
        let req = SlackApiConversationsSetTopicRequest::new(channel.into(), topic.into());
        let session = self.client.open_session(&self.token);
        let result = match tokio::time::timeout(self.timeout, session.conversations_set_topic(&req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SlackCallError::from_client("conversations.setTopic", e)),
            Err(_) => Err(SlackCallError::Unavailable {
                method: "conversations.setTopic",
                detail: "timed out".into(),
                retry_after: None,
            }),
        };
        count_call("conversations.setTopic", &result);
        result
    }

    /// A late answer to a person through the interaction's `response_url` (not a Web API
    /// method: JSON posted to the URL, no token; ephemeral unless said otherwise; up to five
    /// uses within thirty minutes; works in channels the bot is not in and in DMs).
    pub async fn respond(&self, response_url: &str, content: SlackMessageContent) -> SlackResult<()> {
        let url = url::Url::parse(response_url).map_err(|_| SlackCallError::Api {
            method: "response_url",
            code: "invalid_response_url".into(),
        })?;
        let url = SlackResponseUrl(url);
        let req = SlackApiPostWebhookMessageRequest::new(content);
        call!(self, "response_url", |_s| self.client.respond_to_event(&url, &req))?;
        Ok(())
    }

    /// A late message to one person: through the interaction's `response_url` when there is
    /// one (it works in any channel and in DMs), else `chat.postEphemeral` (only where the bot
    /// is a member), else a DM from the bot.
    pub async fn tell_person(
        &self,
        response_url: Option<&str>,
        channel: &str,
        user: &str,
        content: SlackMessageContent,
    ) -> SlackResult<()> {
        if let Some(url) = response_url.filter(|u| !u.is_empty()) {
            match self.respond(url, content.clone()).await {
                Ok(()) => return Ok(()),
                // Used five times, older than 30 minutes, or Slack unavailable.
                Err(e) => tracing::debug!(error = %e, "response_url refused; trying chat.postEphemeral"),
            }
        }
        if !channel.is_empty() {
            match self.post_ephemeral(channel, user, content.clone()).await {
                Ok(()) => return Ok(()),
                // not_in_channel, channel_not_found (a DM between people): a DM from the bot.
                Err(e) if e.code().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        self.post(user, content, None).await.map(|_| ())
    }

    pub async fn set_topic(&self, channel: &str, topic: &str) -> SlackResult<()> {
        let req = SlackApiConversationsSetTopicRequest::new(channel.into(), topic.into());
        call!(self, "conversations.setTopic", |s| s.conversations_set_topic(&req))?;
        Ok(())
    }

    /// Posts a message (optionally in a thread); returns its ts.
    pub async fn post(
        &self,
        channel: &str,
        content: SlackMessageContent,
        thread_ts: Option<&str>,
    ) -> SlackResult<String> {
        let mut req = SlackApiChatPostMessageRequest::new(channel.into(), content);
        req.thread_ts = thread_ts.map(|t| SlackTs(t.into()));
        req.unfurl_links = Some(false);
        let r = call!(self, "chat.postMessage", |s| s.chat_post_message(&req))?;
        Ok(r.ts.to_string())
    }

    /// The ts of the message job `job` posted in `channel` (in the thread `thread_ts`, if
    /// given) at or after `since`, found by its metadata (`event_type` [`JOB_EVENT_TYPE`],
    /// `event_payload.job`). Read only after an uncertain outcome: bounded to the bot's own
    /// messages since the job was enqueued (less a minute for clock skew), at most
    /// `LOOKUP_PAGES` pages, newest first.
    ///
    /// The pages are read as plain JSON: other apps' metadata (any payload shape) must not make
    /// the page unreadable, or the look-up would never conclude.
    pub async fn find_job_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        job: i64,
        since: chrono::DateTime<chrono::Utc>,
        bot_user: &str,
    ) -> SlackResult<Option<String>> {
        let tag = MessageTag {
            event_type: JOB_EVENT_TYPE,
            key: "job",
            value: job.to_string(),
        };
        self.find_tagged_message(channel, thread_ts, &tag, since, bot_user)
            .await
    }

    /// The ts of the bot's message in `channel` (or the thread `thread_ts`) at or after
    /// `since` whose metadata carries `tag`; bounded like [`SlackWeb::find_job_message`].
    pub async fn find_tagged_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        tag: &MessageTag,
        since: chrono::DateTime<chrono::Utc>,
        bot_user: &str,
    ) -> SlackResult<Option<String>> {
        let oldest = since - chrono::Duration::seconds(60);
        let oldest = format!("{}.{:06}", oldest.timestamp(), oldest.timestamp_subsec_micros());
        let (channel, limit, yes) = (channel.to_string(), LOOKUP_PAGE.to_string(), "true".to_string());
        let thread = thread_ts.map(str::to_string);
        let mut latest: Option<String> = None;
        for _ in 0..LOOKUP_PAGES {
            let params: Vec<(&str, Option<&String>)> = vec![
                ("channel", Some(&channel)),
                ("ts", thread.as_ref()),
                ("oldest", Some(&oldest)),
                ("limit", Some(&limit)),
                ("include_all_metadata", Some(&yes)),
                ("latest", latest.as_ref()),
            ];
            // History lists top-level messages only; a thread's replies come from replies.
            let page: serde_json::Value = if thread.is_some() {
                call!(self, "conversations.replies", |s| s.http_session_api.http_get(
                    "conversations.replies",
                    &params,
                    None
                ))?
            } else {
                call!(self, "conversations.history", |s| s.http_session_api.http_get(
                    "conversations.history",
                    &params,
                    None
                ))?
            };
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            let found = messages.iter().find(|m| {
                m["user"] == bot_user
                    && m["metadata"]["event_type"] == tag.event_type
                    && m["metadata"]["event_payload"][tag.key].as_str() == Some(tag.value.as_str())
            });
            if let Some(ts) = found.and_then(|m| m["ts"].as_str()) {
                return Ok(Some(ts.to_string()));
            }
            // Pages go back in time: the next one ends before this page's oldest message.
            let older = messages
                .iter()
                .filter_map(|m| m["ts"].as_str())
                .min_by(|a, b| {
                    let (a, b) = (a.parse::<f64>().unwrap_or(0.0), b.parse::<f64>().unwrap_or(0.0));
                    a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(str::to_string);
            match older {
                Some(ts) if page["has_more"] == true && latest.as_ref() != Some(&ts) => latest = Some(ts),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The id of the bot's DM with `user` (`conversations.open`), where its App Home messages
    /// to that person are. Used only after an uncertain DM, to look for the earlier attempt.
    pub async fn open_dm(&self, user: &str) -> SlackResult<String> {
        let req = SlackApiConversationsOpenRequest::new().with_users(vec![SlackUserId(user.into())]);
        let r = call!(self, "conversations.open", |s| s.conversations_open(&req))?;
        Ok(r.channel.id.to_string())
    }

    /// Sets a channel's purpose (shown under its name; also where the bot tags the incident).
    pub async fn set_purpose(&self, channel: &str, purpose: &str) -> SlackResult<()> {
        let req = SlackApiConversationsSetPurposeRequest::new(channel.into(), purpose.into());
        call!(self, "conversations.setPurpose", |s| s.conversations_set_purpose(&req))?;
        Ok(())
    }

    /// The unarchived channel named `name` the bot can see, if any (public channels and the
    /// private ones it is in). Used only after an uncertain `conversations.create` or a
    /// `name_taken`, to adopt the channel an earlier attempt made.
    pub async fn find_channel(&self, name: &str) -> SlackResult<Option<FoundChannel>> {
        let mut cursor: Option<SlackCursorId> = None;
        loop {
            let mut req = SlackApiConversationsListRequest::new()
                .with_exclude_archived(true)
                .with_limit(1000)
                .with_types(vec![SlackConversationType::Public, SlackConversationType::Private]);
            req.cursor = cursor.clone();
            let r = call!(self, "conversations.list", |s| s.conversations_list(&req))?;
            if let Some(c) = r.channels.iter().find(|c| c.name.as_deref() == Some(name)) {
                return Ok(Some(FoundChannel {
                    id: c.id.to_string(),
                    creator: c.creator.as_ref().map(|u| u.to_string()).unwrap_or_default(),
                    purpose: c.purpose.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    created: c.created.0.as_second(),
                }));
            }
            cursor = r
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.0.is_empty());
            if cursor.is_none() {
                return Ok(None);
            }
        }
    }

    pub async fn post_ephemeral(&self, channel: &str, user: &str, content: SlackMessageContent) -> SlackResult<()> {
        let req = SlackApiChatPostEphemeralRequest::new(channel.into(), SlackUserId(user.into()), content);
        call!(self, "chat.postEphemeral", |s| s.chat_post_ephemeral(&req))?;
        Ok(())
    }

    pub async fn update(&self, channel: &str, ts: &str, content: SlackMessageContent) -> SlackResult<()> {
        let req = SlackApiChatUpdateRequest::new(channel.into(), content, SlackTs(ts.into()));
        call!(self, "chat.update", |s| s.chat_update(&req))?;
        Ok(())
    }

    /// The members of a user group (`usergroups.users.list`), in Slack's order: an
    /// `[[alert_rules]]` on-call group's first member becomes the SPOC.
    pub async fn usergroup_members(&self, group: &str) -> SlackResult<Vec<String>> {
        let group = group.to_string();
        let params: Vec<(&str, Option<&String>)> = vec![("usergroup", Some(&group))];
        let page: serde_json::Value = call!(self, "usergroups.users.list", |s| s.http_session_api.http_get(
            "usergroups.users.list",
            &params,
            None
        ))?;
        Ok(page["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect())
    }

    /// Pins a message; already pinned is not an error.
    pub async fn pin(&self, channel: &str, ts: &str) -> SlackResult<()> {
        let req = SlackApiPinsAddRequest::new(channel.into(), SlackTs(ts.into()));
        let r = call!(self, "pins.add", |s| s.pins_add(&req));
        match r {
            Err(e) if e.code() == Some("already_pinned") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Channel members (first 1,000: enough for an incident channel), reused for
    /// [`MEMBERS_TTL`].
    pub async fn members(&self, channel: &str) -> SlackResult<Vec<String>> {
        let cached = self
            .cache()
            .get(channel)
            .filter(|(at, _)| at.elapsed() < MEMBERS_TTL)
            .map(|(_, members)| members.clone());
        if let Some(members) = cached {
            return Ok(members);
        }
        let members = self.members_uncached(channel).await?;
        self.cache()
            .insert(channel.to_string(), (std::time::Instant::now(), members.clone()));
        Ok(members)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, MembersCache> {
        self.members_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn members_uncached(&self, channel: &str) -> SlackResult<Vec<String>> {
        let req = SlackApiConversationsMembersRequest::new()
            .with_channel(channel.into())
            .with_limit(1000);
        let r = call!(self, "conversations.members", |s| s.conversations_members(&req))?;
        Ok(r.members.into_iter().map(|m| m.to_string()).collect())
    }

    /// A message's text and permalink (for 📌 reactions). `conversations.history` holds only
    /// top-level messages; a thread reply is read with `conversations.replies`.
    pub async fn message(&self, channel: &str, ts: &str) -> SlackResult<(String, Option<String>)> {
        let req = SlackApiConversationsHistoryRequest::new()
            .with_channel(channel.into())
            .with_latest(SlackTs(ts.into()))
            .with_inclusive(true)
            .with_limit(1);
        let r = call!(self, "conversations.history", |s| s.conversations_history(&req))?;
        let found = r.messages.into_iter().find(|m| m.origin.ts.0 == ts);
        let text = match found {
            Some(m) => m.content.text.unwrap_or_default(),
            None => {
                let req = SlackApiConversationsRepliesRequest::new(channel.into(), SlackTs(ts.into()))
                    .with_latest(SlackTs(ts.into()))
                    .with_inclusive(true);
                let r = call!(self, "conversations.replies", |s| s.conversations_replies(&req))?;
                r.messages
                    .into_iter()
                    .find(|m| m.origin.ts.0 == ts)
                    .and_then(|m| m.content.text)
                    .unwrap_or_default()
            }
        };
        let req = SlackApiChatGetPermalinkRequest::new(channel.into(), SlackTs(ts.into()));
        let link = call!(self, "chat.getPermalink", |s| s.chat_get_permalink(&req))
            .ok()
            .map(|r| r.permalink.to_string());
        Ok((text, link))
    }

    /// Whether `user` can own work here: `Ok(Err(why))` for an unknown, deactivated or bot
    /// user (said so the person can fix it), `Ok(Ok(name))` with their handle otherwise.
    pub async fn check_person(&self, user: &str) -> SlackResult<Result<String, String>> {
        let req = SlackApiUsersInfoRequest::new(SlackUserId(user.into()));
        match call!(self, "users.info", |s| s.users_info(&req)) {
            Ok(r) if r.user.deleted == Some(true) => Ok(Err(format!("<@{user}> is deactivated; pick someone active."))),
            Ok(r) if r.user.flags.is_bot == Some(true) => Ok(Err(format!("<@{user}> is a bot; pick a person."))),
            Ok(r) => Ok(Ok(r.user.name.unwrap_or_else(|| user.to_string()))),
            Err(e) if e.code() == Some("user_not_found") => Ok(Err(format!(
                "I cannot find the user `{user}` in this workspace; type @ and pick a person."
            ))),
            Err(e) => Err(e),
        }
    }

    pub async fn open_view(&self, trigger_id: &str, view: SlackView) -> SlackResult<()> {
        let req = SlackApiViewsOpenRequest::new(SlackTriggerId(trigger_id.into()), view);
        call!(self, "views.open", |s| s.views_open(&req))?;
        Ok(())
    }

    /// Shares a file in `channel` with `comment`: `files.getUploadURLExternal`, the bytes to the
    /// upload URL, then `files.completeUploadExternal`. Returns the file id.
    ///
    /// Nothing is shared twice when an answer is lost (issue 16): an upload URL or the bytes
    /// whose outcome is unknown are simply asked for or sent again (an unused upload is never
    /// shared); a `files.completeUploadExternal` whose outcome is unknown is checked with
    /// `files.info` on our file id before it is repeated.
    pub async fn upload_file(
        &self,
        channel: &str,
        filename: &str,
        title: &str,
        comment: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> SlackResult<String> {
        let req = SlackApiFilesGetUploadUrlExternalRequest::new(filename.into(), bytes.len());
        let target = repeat_uncertain(|| async {
            call!(self, "files.getUploadURLExternal", |s| s.get_upload_url_external(&req))
        })
        .await?;
        let req = SlackApiFilesUploadViaUrlRequest::new(target.upload_url, bytes, content_type.into());
        repeat_uncertain(|| async { call!(self, "files.uploadViaUrl", |s| s.files_upload_via_url(&req)) }).await?;
        let file_id = target.file_id.to_string();
        let req =
            SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(target.file_id.clone()).with_title(title.into())
            ])
            .with_channel_id(channel.into())
            .with_initial_comment(comment.into());
        let mut attempt = 1;
        loop {
            match call!(self, "files.completeUploadExternal", |s| s
                .files_complete_upload_external(&req))
            {
                Ok(_) => return Ok(file_id),
                Err(e) if e.failure() == Failure::Uncertain && attempt < UPLOAD_ATTEMPTS => {
                    if self.file_shared_in(&file_id, channel).await? {
                        tracing::info!(file = %file_id, "reconciled: the file was shared; not sharing it again");
                        return Ok(file_id);
                    }
                    tracing::info!(file = %file_id, "reconciled: the file is not shared yet; completing again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether file `file_id` is shared in `channel` (`files.info`: its `channels`, `groups`,
    /// `ims` or `shares`). Slack may still be processing a share just made, so a file not yet
    /// shared is looked at once more, a second later. Read as plain JSON, like history pages.
    async fn file_shared_in(&self, file_id: &str, channel: &str) -> SlackResult<bool> {
        let (file, channel) = (file_id.to_string(), channel.to_string());
        for look in 0..2 {
            if look > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let params: Vec<(&str, Option<&String>)> = vec![("file", Some(&file))];
            let answer: SlackResult<serde_json::Value> = call!(self, "files.info", |s| s.http_session_api.http_get(
                "files.info",
                &params,
                None
            ));
            let info = match answer {
                Ok(info) => info,
                // Never completed: Slack does not know the file as shared anywhere.
                Err(e) if e.code() == Some("file_not_found") => return Ok(false),
                Err(e) => return Err(e),
            };
            let f = &info["file"];
            let listed = ["channels", "groups", "ims"].iter().any(|key| {
                f[*key]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(channel.as_str())))
            });
            let in_shares = ["public", "private"]
                .iter()
                .any(|kind| f["shares"][*kind].get(channel.as_str()).is_some());
            if listed || in_shares {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_codes_and_drop_bodies() {
        let api = SlackCallError::from_client(
            "conversations.create",
            SlackClientError::ApiError(
                SlackClientApiError::new("name_taken".into()).with_http_response_body("xoxb-secret".into()),
            ),
        );
        assert_eq!(api.code(), Some("name_taken"));
        assert!(!api.to_string().contains("xoxb"), "{api}");
        let rl = SlackCallError::from_client(
            "chat.postMessage",
            SlackClientError::RateLimitError(SlackRateLimitError::new().with_retry_after(Duration::from_secs(3))),
        );
        assert!(matches!(rl, SlackCallError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(3)));
    }

    #[test]
    fn failures_are_classified_done_permanent_temporary_or_unknown() {
        let api = |code: &str| SlackCallError::Api {
            method: "chat.postMessage",
            code: code.into(),
        };
        for code in [
            "too_long",
            "invalid_blocks_format",
            "msg_blocks_too_long",
            "restricted_action_read_only_channel",
            "not_pinnable",
            "too_many_pins",
            "user_not_visible",
            "ekm_access_denied",
            "missing_scope",
            "channel_not_found",
            "invalid_auth",
            "token_revoked",
            "account_inactive",
        ] {
            assert_eq!(api(code).failure(), Failure::Permanent, "{code}");
        }
        assert_eq!(api("fatal_error").failure(), Failure::Uncertain);
        assert_eq!(
            api("service_unavailable").failure(),
            Failure::Temporary { retry_after: None }
        );
        let timeout = SlackCallError::Unknown {
            method: "chat.postMessage",
            detail: "timed out".into(),
        };
        assert_eq!(timeout.failure(), Failure::Uncertain);
        let five_hundred = SlackCallError::from_client(
            "chat.postMessage",
            SlackClientError::HttpError(SlackClientHttpError::new(hyper::StatusCode::INTERNAL_SERVER_ERROR)),
        );
        assert_eq!(five_hundred.failure(), Failure::Uncertain, "{five_hundred}");
        let limited = SlackCallError::from_client(
            "chat.postMessage",
            SlackClientError::RateLimitError(SlackRateLimitError::new().with_retry_after(Duration::from_secs(40))),
        );
        assert_eq!(
            limited.failure(),
            Failure::Temporary {
                retry_after: Some(Duration::from_secs(40))
            }
        );
    }
}
