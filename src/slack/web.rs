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
    /// Rate limited, 5xx, timeout or network: worth retrying.
    #[error("Slack {method} is unavailable ({detail})")]
    Unavailable {
        method: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl SlackCallError {
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackCallError::Api { code, .. } => Some(code),
            SlackCallError::Unavailable { .. } => None,
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
            SlackClientError::HttpError(h) => SlackCallError::Unavailable {
                method,
                detail: format!("HTTP {}", h.status_code.as_u16()),
                retry_after: None,
            },
            // Protocol/system errors carry bodies and URLs; keep only their kind.
            other => SlackCallError::Unavailable {
                method,
                detail: match other {
                    SlackClientError::HttpProtocolError(_) => "connection failed".into(),
                    SlackClientError::ProtocolError(_) => "unexpected response".into(),
                    SlackClientError::EndOfStream(_) => "connection closed".into(),
                    _ => "client error".into(),
                },
                retry_after: None,
            },
        }
    }
}

/// Shorthand for results of Slack calls.
pub type SlackResult<T> = Result<T, SlackCallError>;

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
}

/// Channel id → (when read, member ids).
type MembersCache = std::collections::HashMap<String, (std::time::Instant, Vec<String>)>;

/// How long a channel's member list is reused: `/incident list` and `followups` answer within
/// the ack budget even with many private incidents, and someone invited by a person (not by
/// the bot, which forgets the list itself) shows up within this long.
const MEMBERS_TTL: Duration = Duration::from_secs(60);

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
                Err(_) => Err(SlackCallError::Unavailable {
                    method: $method,
                    detail: "timed out".into(),
                    retry_after: None,
                }),
            };
            $crate::slack::web::count_call($method, &result);
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
    }
}

impl SlackWeb {
    pub fn new(settings: &SlackSettings) -> anyhow::Result<Self> {
        Ok(SlackWeb {
            client: build_client(&settings.api_url)?,
            token: SlackApiToken::new(settings.bot_token.expose().into()),
            timeout: Duration::from_secs(10),
            members_cache: Arc::default(),
        })
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

    /// Invites users; people already in the channel are not an error.
    pub async fn invite(&self, channel: &str, users: &[String]) -> SlackResult<()> {
        let req = SlackApiConversationsInviteRequest::new(
            channel.into(),
            users.iter().map(|u| SlackUserId(u.clone())).collect(),
        );
        let r = call!(self, "conversations.invite", |s| s.conversations_invite(&req));
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("already_in_channel") | Some("cant_invite_self")) => Ok(()),
            Err(e) => Err(e),
        }
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
        let target = call!(self, "files.getUploadURLExternal", |s| s.get_upload_url_external(&req))?;
        let req = SlackApiFilesUploadViaUrlRequest::new(target.upload_url, bytes, content_type.into());
        call!(self, "files.uploadViaUrl", |s| s.files_upload_via_url(&req))?;
        let req =
            SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(target.file_id.clone()).with_title(title.into())
            ])
            .with_channel_id(channel.into())
            .with_initial_comment(comment.into());
        call!(self, "files.completeUploadExternal", |s| s
            .files_complete_upload_external(&req))?;
        Ok(target.file_id.to_string())
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
}
