//! Protocol tests for the local Slack (`incident_bot::sandbox`).
//!
//! Two promises are checked here: slack-morphism — the client the bot uses — parses every answer
//! and every Socket Mode frame the sandbox produces, and the sandbox refuses what Slack refuses
//! (tokens, names, triggers, Block Kit limits) and behaves like Slack on the socket (hello,
//! round-robin, redelivery, ack deadline, disconnects). Each test starts its own sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use incident_bot::sandbox::{self, Fault, Sandbox, SandboxOptions};
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;
type Client = SlackClient<Connector>;
type RawSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// slack-morphism pointed at the sandbox (`SlackClientHyperConnector::new()` is https-only).
fn connector(sandbox: &Sandbox) -> anyhow::Result<Connector> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(SlackClientHyperConnector::with_connector(https).with_slack_api_url(&sandbox.api_url()))
}

fn bot_token() -> SlackApiToken {
    SlackApiToken::new(sandbox::BOT_TOKEN.into())
}

fn error_code(error: &SlackClientError) -> Option<&str> {
    match error {
        SlackClientError::ApiError(api) => Some(api.code.as_str()),
        _ => None,
    }
}

/// Asserts that `result` failed with Slack error `code`.
fn expect_code<T: std::fmt::Debug>(result: Result<T, SlackClientError>, code: &str) -> SlackClientError {
    match result {
        Err(error) if error_code(&error) == Some(code) => error,
        other => panic!("expected Slack error `{code}`, got {other:?}"),
    }
}

fn declare_modal(title: &str) -> SlackView {
    SlackView::Modal(
        SlackModalView::new(
            pt!(title),
            vec![SlackInputBlock::new(
                pt!("Title"),
                SlackInputBlockElement::PlainTextInput(
                    SlackBlockPlainTextInputElement::new().with_action_id("title".into()),
                ),
            )
            .with_block_id("title".into())
            .into()],
        )
        .with_submit(pt!("Declare"))
        .with_close(pt!("Cancel"))
        .with_callback_id("declare".into())
        .with_private_metadata("C0GENERAL".into()),
    )
}

fn summary_blocks() -> Vec<SlackBlock> {
    vec![
        SlackHeaderBlock::new(pt!("INC-1 Payments API 500s")).into(),
        SlackSectionBlock::new()
            .with_text(md!("*Severity* SEV1 · *Status* investigating"))
            .into(),
        SlackActionsBlock::new(vec![SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(pt!("Acknowledge"))
                .with_action_id("ack".into())
                .with_value("INC-1".into()),
        )])
        .into(),
    ]
}

/// One HTTP/1.1 request over a fresh TCP connection; returns the status and the JSON body.
async fn raw_request(
    sandbox: &Sandbox,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let url = url::Url::parse(&sandbox.api_url())?;
    let host = format!("{}:{}", url.host_str().context("host")?, url.port().context("port")?);
    let mut stream = TcpStream::connect(&host).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head.split(' ').nth(1).context("no status")?.parse()?;
    Ok((
        status,
        serde_json::from_str(body).with_context(|| format!("body: {body}"))?,
    ))
}

#[tokio::test]
async fn web_api_answers_parse_into_slack_morphism_types() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    // conversations.info needs a scope the bot's manifest does not request.
    sandbox.grant_scopes(&["channels:read"]);
    let client = SlackClient::new(connector(&sandbox)?);
    let token = bot_token();
    let session = client.open_session(&token);

    let auth = session.auth_test().await?;
    assert_eq!(auth.user_id.0, sandbox::BOT_USER_ID);
    assert_eq!(auth.team_id.0, sandbox::TEAM_ID);
    assert_eq!(auth.bot_id.map(|b| b.0).as_deref(), Some(sandbox::BOT_ID));

    // conversations.create, with Slack's name rules.
    let created = session
        .conversations_create(&SlackApiConversationsCreateRequest::new("inc-1-payments-api".into()))
        .await?;
    let channel = created.channel.id.clone();
    assert!(channel.0.starts_with('C'));
    assert_eq!(created.channel.name.as_deref(), Some("inc-1-payments-api"));
    assert_eq!(created.channel.flags.is_private, Some(false));
    assert_eq!(created.channel.flags.is_member, Some(true));
    assert_eq!(
        created.channel.creator.map(|c| c.0).as_deref(),
        Some(sandbox::BOT_USER_ID)
    );
    let taken = session
        .conversations_create(&SlackApiConversationsCreateRequest::new("inc-1-payments-api".into()))
        .await;
    expect_code(taken, "name_taken");
    for (name, code) in [
        ("INC 1", "invalid_name_specials"),
        ("", "invalid_name_required"),
        (&"x".repeat(81)[..], "invalid_name_maxlength"),
    ] {
        let refused = session
            .conversations_create(&SlackApiConversationsCreateRequest::new(name.into()))
            .await;
        expect_code(refused, code);
    }
    let private = session
        .conversations_create(&SlackApiConversationsCreateRequest::new("inc-2-secret".into()).with_is_private(true))
        .await?;
    assert_eq!(private.channel.flags.is_private, Some(true));

    // conversations.invite: one refused user (here `already_in_channel`) fails the whole call.
    let invited = session
        .conversations_invite(&SlackApiConversationsInviteRequest::new(
            channel.clone(),
            vec!["U0ALICE".into(), "U0BOB".into()],
        ))
        .await?;
    assert_eq!(invited.channel.id, channel);
    assert_eq!(
        sandbox.channel(&channel.0).context("channel")?.members,
        [sandbox::BOT_USER_ID, "U0ALICE", "U0BOB"]
    );
    let again = session
        .conversations_invite(&SlackApiConversationsInviteRequest::new(
            channel.clone(),
            vec!["U0ALICE".into()],
        ))
        .await;
    expect_code(again, "already_in_channel");
    let partly_new = session
        .conversations_invite(&SlackApiConversationsInviteRequest::new(
            channel.clone(),
            vec!["U0ALICE".into(), "U0CAROL".into()],
        ))
        .await;
    expect_code(partly_new, "already_in_channel");
    let unknown = session
        .conversations_invite(&SlackApiConversationsInviteRequest::new(
            channel.clone(),
            vec!["U0NOBODY".into()],
        ))
        .await;
    expect_code(unknown, "user_not_found");

    // conversations.setTopic / info.
    let topic = "SEV1 · investigating · SPOC <@U0ALICE>";
    session
        .conversations_set_topic(&SlackApiConversationsSetTopicRequest::new(
            channel.clone(),
            topic.into(),
        ))
        .await?;
    assert_eq!(sandbox.channel(&channel.0).context("channel")?.topic, topic);
    let too_long = session
        .conversations_set_topic(&SlackApiConversationsSetTopicRequest::new(
            channel.clone(),
            "t".repeat(251),
        ))
        .await;
    expect_code(too_long, "too_long");
    let info = session
        .conversations_info(&SlackApiConversationsInfoRequest::new(channel.clone()))
        .await?;
    assert_eq!(info.channel.topic.map(|t| t.value).as_deref(), Some(topic));

    // chat.postMessage with blocks; Slack fills in block ids.
    let posted = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            channel.clone(),
            SlackMessageContent::new()
                .with_text("INC-1 declared".into())
                .with_blocks(summary_blocks()),
        ))
        .await?;
    assert_eq!(posted.channel, channel);
    let blocks = posted.message.content.blocks.context("blocks echoed")?;
    assert_eq!(blocks.len(), 3);
    match &blocks[0] {
        SlackBlock::Header(header) => assert!(header.block_id.is_some(), "Slack assigns block ids"),
        other => bail!("expected a header block, got {other:?}"),
    }
    assert_eq!(
        posted.message.sender.bot_id.map(|b| b.0).as_deref(),
        Some(sandbox::BOT_ID)
    );
    let second = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                channel.clone(),
                SlackMessageContent::new().with_text("thread reply".into()),
            )
            .with_thread_ts(posted.ts.clone()),
        )
        .await?;
    assert!(second.ts.0 > posted.ts.0, "timestamps increase");
    let empty = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            channel.clone(),
            SlackMessageContent::new(),
        ))
        .await;
    expect_code(empty, "no_text");

    // chat.update keeps omitted fields.
    let updated = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            channel.clone(),
            SlackMessageContent::new().with_text("INC-1 resolved".into()),
            posted.ts.clone(),
        ))
        .await?;
    assert_eq!(updated.ts, posted.ts);
    // The topic set above left Slack's "set the channel topic" line first.
    let messages: Vec<_> = sandbox.messages(&channel.0).into_iter().skip(1).collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text, "INC-1 resolved");
    assert!(messages[0].edited);
    assert_eq!(messages[0].blocks.as_array().map(Vec::len), Some(3));
    assert_eq!(messages[1].thread_ts.as_ref(), Some(&posted.ts.0));

    // pins.add.
    session
        .pins_add(&SlackApiPinsAddRequest::new(channel.clone(), posted.ts.clone()))
        .await?;
    let twice = session
        .pins_add(&SlackApiPinsAddRequest::new(channel.clone(), posted.ts.clone()))
        .await;
    expect_code(twice, "already_pinned");
    assert_eq!(
        sandbox.channel(&channel.0).context("channel")?.pins,
        [posted.ts.0.as_str()]
    );

    // chat.getPermalink.
    let link = session
        .chat_get_permalink(&SlackApiChatGetPermalinkRequest::new(
            channel.clone(),
            posted.ts.clone(),
        ))
        .await?;
    assert!(link.permalink.as_str().contains(&format!("/archives/{}/p", channel.0)));

    // chat.postEphemeral to a member, and to a non-member.
    session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            channel.clone(),
            "U0ALICE".into(),
            SlackMessageContent::new().with_text("only you".into()),
        ))
        .await?;
    assert_eq!(sandbox.ephemerals("U0ALICE")[0].text, "only you");
    let outsider = session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            channel.clone(),
            "U0DAVE".into(),
            SlackMessageContent::new().with_text("not for you".into()),
        ))
        .await;
    expect_code(outsider, "user_not_in_channel");

    // users.info.
    let alice = session
        .users_info(&SlackApiUsersInfoRequest::new("U0ALICE".into()))
        .await?;
    assert_eq!(alice.user.name.as_deref(), Some("alice"));
    assert_eq!(
        alice.user.profile.and_then(|p| p.display_name).as_deref(),
        Some("alice")
    );
    let nobody = session
        .users_info(&SlackApiUsersInfoRequest::new("U0NOBODY".into()))
        .await;
    expect_code(nobody, "user_not_found");

    // Every call was recorded, without the token.
    let calls = sandbox.calls_to("chat.postMessage");
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.params.get("token").is_none()));
    assert_eq!(calls[0].params["channel"], channel.0);
    assert_eq!(calls[2].response["error"], "no_text");
    Ok(())
}

#[tokio::test]
async fn views_need_a_fresh_trigger_used_once() -> anyhow::Result<()> {
    let ttl = Duration::from_millis(500);
    let sandbox = Sandbox::start(SandboxOptions {
        trigger_ttl: ttl,
        ..SandboxOptions::default()
    })
    .await?;
    let client = SlackClient::new(connector(&sandbox)?);
    let token = bot_token();
    let session = client.open_session(&token);

    let trigger = sandbox.issue_trigger("U0ALICE");
    let opened = session
        .views_open(&SlackApiViewsOpenRequest::new(
            trigger.clone().into(),
            declare_modal("Declare an incident"),
        ))
        .await?;
    let view_id = opened.view.state_params.id.clone();
    assert!(view_id.0.starts_with('V'));
    assert_eq!(opened.view.state_params.team_id.0, sandbox::TEAM_ID);
    match &opened.view.view {
        SlackView::Modal(modal) => {
            assert_eq!(modal.callback_id.as_ref().map(|c| c.0.as_str()), Some("declare"));
            assert_eq!(modal.private_metadata.as_deref(), Some("C0GENERAL"));
        }
        other => bail!("expected a modal, got {other:?}"),
    }
    let stored = sandbox.view(&view_id.0).context("stored view")?;
    assert_eq!(stored.user, "U0ALICE");
    assert_eq!(stored.opened_by_trigger.as_deref(), Some(trigger.as_str()));
    assert_eq!(stored.title, "Declare an incident");
    assert_eq!(stored.hash, opened.view.state_params.hash);

    let reused = session
        .views_open(&SlackApiViewsOpenRequest::new(trigger.into(), declare_modal("Again")))
        .await;
    expect_code(reused, "exchanged_trigger_id");
    let unknown = session
        .views_open(&SlackApiViewsOpenRequest::new(
            "123.456.abc".into(),
            declare_modal("Unknown"),
        ))
        .await;
    expect_code(unknown, "invalid_trigger_id");
    let late = sandbox.issue_trigger("U0BOB");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let expired = session
        .views_open(&SlackApiViewsOpenRequest::new(late.into(), declare_modal("Too late")))
        .await;
    expect_code(expired, "expired_trigger_id");

    // views.update with the current hash, then with a stale one.
    let hash = opened.view.state_params.hash.clone();
    let updated = session
        .views_update(
            &SlackApiViewsUpdateRequest::new(declare_modal("Declare (step 2)"))
                .with_view_id(view_id.clone())
                .with_hash(hash.clone()),
        )
        .await?;
    assert_eq!(updated.view.state_params.id, view_id);
    assert_ne!(updated.view.state_params.hash, hash);
    let stale = session
        .views_update(
            &SlackApiViewsUpdateRequest::new(declare_modal("Declare (step 3)"))
                .with_view_id(view_id.clone())
                .with_hash(hash),
        )
        .await;
    expect_code(stale, "hash_conflict");
    assert_eq!(sandbox.views_opened().len(), 1);
    Ok(())
}

#[tokio::test]
async fn tokens_and_body_encodings_follow_slack() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let client = SlackClient::new(connector(&sandbox)?);

    let wrong = SlackApiToken::new("xoxb-not-the-token".into());
    expect_code(client.open_session(&wrong).auth_test().await, "invalid_auth");
    let app = SlackApiToken::new(sandbox::APP_TOKEN.into());
    let posted_with_app_token = client
        .open_session(&app)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new().with_text("hi".into()),
        ))
        .await;
    expect_code(posted_with_app_token, "not_allowed_token_type");
    let bot = bot_token();
    let socket_with_bot_token = client
        .open_session(&bot)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await;
    expect_code(socket_with_bot_token, "not_allowed_token_type");

    // A form-encoded body with the token as a field; `blocks` as a JSON string.
    let form = format!(
        "token={}&channel=C0GENERAL&text=hello&blocks={}",
        sandbox::BOT_TOKEN,
        url::form_urlencoded::byte_serialize(br#"[{"type":"divider"}]"#).collect::<String>()
    );
    let (status, body) = raw_request(
        &sandbox,
        "POST",
        "/api/chat.postMessage",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await?;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    assert_eq!(sandbox.messages("C0GENERAL")[0].blocks[0]["type"], "divider");

    // GET with query arguments and a bearer token.
    let bearer = format!("Bearer {}", sandbox::BOT_TOKEN);
    let (status, body) = raw_request(
        &sandbox,
        "GET",
        "/api/users.info?user=U0BOB",
        &[("Authorization", &bearer)],
        "",
    )
    .await?;
    assert_eq!((status, body["user"]["name"].as_str()), (200, Some("bob")));

    // Slack ignores a token inside a JSON body.
    let (_, body) = raw_request(
        &sandbox,
        "POST",
        "/api/auth.test",
        &[("Content-Type", "application/json")],
        &json!({ "token": sandbox::BOT_TOKEN }).to_string(),
    )
    .await?;
    assert_eq!(body["error"], "not_authed");
    let (_, body) = raw_request(
        &sandbox,
        "POST",
        "/api/chat.postMessage",
        &[("Content-Type", "application/json"), ("Authorization", &bearer)],
        "{not json",
    )
    .await?;
    assert_eq!(body["error"], "invalid_json");
    let (_, body) = raw_request(&sandbox, "POST", "/api/nothing.here", &[("Authorization", &bearer)], "").await?;
    assert_eq!(body["error"], "unknown_method");

    assert!(sandbox.calls().iter().all(|c| c.params.get("token").is_none()));
    Ok(())
}

#[tokio::test]
async fn injected_faults_look_like_slack_failures() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;

    // 429 + Retry-After is retried by a rate-controlled client, after the delay.
    sandbox.inject_fault("conversations.create", Fault::RateLimited { retry_after_secs: 1 }, 1);
    let retrying =
        SlackClient::new(connector(&sandbox)?.with_rate_control(SlackApiRateControlConfig::new().with_max_retries(3)));
    let token = bot_token();
    let started = Instant::now();
    let created = retrying
        .open_session(&token)
        .conversations_create(&SlackApiConversationsCreateRequest::new("inc-3-retried".into()))
        .await?;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(created.channel.name.as_deref(), Some("inc-3-retried"));
    let calls = sandbox.calls_to("conversations.create");
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 200]);
    assert_eq!(calls[0].response["error"], "ratelimited");

    // Without rate control the 429 surfaces with its Retry-After.
    let plain = SlackClient::new(connector(&sandbox)?);
    let session = plain.open_session(&token);
    sandbox.inject_fault("chat.postMessage", Fault::RateLimited { retry_after_secs: 7 }, 1);
    let request = SlackApiChatPostMessageRequest::new(
        "C0ANNOUNCE".into(),
        SlackMessageContent::new().with_text("INC-3 declared".into()),
    );
    let post = || session.chat_post_message(&request);
    match post().await {
        Err(SlackClientError::RateLimitError(limited)) => {
            assert_eq!(limited.retry_after, Some(Duration::from_secs(7)))
        }
        other => bail!("expected a rate limit error, got {other:?}"),
    }

    // 500, an API error, and a slow answer.
    sandbox.inject_fault("chat.postMessage", Fault::ServerError, 1);
    match post().await {
        Err(SlackClientError::HttpError(http)) => assert_eq!(http.status_code.as_u16(), 500),
        other => bail!("expected HTTP 500, got {other:?}"),
    }
    sandbox.inject_fault("*", Fault::ApiError("fatal_error".into()), 1);
    expect_code(post().await, "fatal_error");
    sandbox.inject_fault("chat.postMessage", Fault::Slow(Duration::from_millis(150)), 1);
    let started = Instant::now();
    post().await?;
    assert!(started.elapsed() >= Duration::from_millis(150));
    post().await?;
    assert_eq!(sandbox.messages("C0ANNOUNCE").len(), 2);
    Ok(())
}

#[tokio::test]
async fn block_kit_violations_are_rejected() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let client = SlackClient::new(connector(&sandbox)?);
    let token = bot_token();
    let session = client.open_session(&token);

    let long_header = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new().with_blocks(vec![SlackHeaderBlock::new(pt!("h".repeat(151))).into()]),
        ))
        .await;
    let error = expect_code(long_header, "invalid_blocks");
    if let SlackClientError::ApiError(api) = &error {
        assert_eq!(
            api.errors.as_deref(),
            Some(&["must be less than 151 characters [json-pointer:/blocks/0/text/text]".to_owned()][..])
        );
    }
    let too_many: Vec<SlackBlock> = (0..51).map(|_| SlackDividerBlock::new().into()).collect();
    let crowded = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new()
                .with_text("many".into())
                .with_blocks(too_many),
        ))
        .await;
    expect_code(crowded, "invalid_blocks");

    // A modal title over 24 characters; the trigger is not consumed by the refusal.
    let trigger = sandbox.issue_trigger("U0ALICE");
    let long_title = session
        .views_open(&SlackApiViewsOpenRequest::new(
            trigger.clone().into(),
            declare_modal("Declare a brand new incident"),
        ))
        .await;
    expect_code(long_title, "invalid_arguments");
    session
        .views_open(&SlackApiViewsOpenRequest::new(trigger.into(), declare_modal("Declare")))
        .await?;

    let violations = sandbox.block_kit_violations();
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].starts_with("chat.postMessage: must be less than 151 characters"));
    assert!(violations[1].contains("no more than 50 items allowed"));
    assert_eq!(
        violations[2],
        "views.open: must be less than 25 characters [json-pointer:/view/title/text]"
    );
    assert!(sandbox.messages("C0GENERAL").is_empty());
    Ok(())
}

#[tokio::test]
async fn files_bookmarks_and_other_methods_parse_too() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    // Methods the bot does not call need scopes its manifest does not request.
    sandbox.grant_scopes(&[
        "channels:read",
        "channels:join",
        "usergroups:read",
        "bookmarks:write",
        "reactions:write",
    ]);
    let client = SlackClient::new(connector(&sandbox)?);
    let token = bot_token();
    let session = client.open_session(&token);
    let channel = session
        .conversations_create(&SlackApiConversationsCreateRequest::new("inc-9-files".into()))
        .await?
        .channel
        .id;

    let members = session
        .conversations_members(&SlackApiConversationsMembersRequest::new().with_channel(channel.clone()))
        .await?;
    assert_eq!(members.members, [SlackUserId::new(sandbox::BOT_USER_ID.into())]);
    let joined = session
        .conversations_join(&SlackApiConversationsJoinRequest::new("C0GENERAL".into()))
        .await?;
    assert_eq!(joined.channel.name.as_deref(), Some("general"));
    let oncall = session
        .usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new("S0ONCALL".into()))
        .await?;
    assert_eq!(oncall.users.len(), 2);

    // The three-step file upload.
    let data = b"at,event\n10:02,declared\n".to_vec();
    let upload = session
        .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
            "timeline.csv".into(),
            data.len(),
        ))
        .await?;
    session
        .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
            upload.upload_url.clone(),
            data.clone(),
            "text/csv".into(),
        ))
        .await?;
    let shared = session
        .files_complete_upload_external(
            &SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(upload.file_id.clone()).with_title("Timeline".into())
            ])
            .with_channel_id(channel.clone())
            .with_initial_comment("INC-9 timeline".into()),
        )
        .await?;
    assert_eq!(shared.files[0].title.as_deref(), Some("Timeline"));
    assert_eq!(sandbox.files(), [(channel.0.clone(), "Timeline".to_owned(), data)]);
    assert_eq!(sandbox.messages(&channel.0)[0].text, "INC-9 timeline");

    // bookmarks.add has no typed request in slack-morphism.
    let bookmark: Value = session
        .http_session_api
        .http_post(
            "bookmarks.add",
            &json!({ "channel_id": channel.0, "title": "Runbook", "type": "link", "link": "https://runbooks.example.com/payments" }),
            None,
        )
        .await?;
    assert_eq!(bookmark["bookmark"]["title"], "Runbook");
    assert_eq!(
        sandbox.bookmarks(&channel.0)[0].link,
        "https://runbooks.example.com/payments"
    );

    // reactions.add, and chat.update on somebody else's message.
    let ts = sandbox.messages(&channel.0)[0].ts.clone();
    session
        .reactions_add(&SlackApiReactionsAddRequest::new(
            channel.clone(),
            "white_check_mark".into(),
            ts.clone().into(),
        ))
        .await?;
    let theirs = sandbox.seed_user_message("U0ALICE", "C0GENERAL", "hello")?;
    let update = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new().with_text("edited".into()),
            theirs.into(),
        ))
        .await;
    expect_code(update, "cant_update_message");

    // A DM by user id opens an IM conversation.
    let dm = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "U0DAVE".into(),
            SlackMessageContent::new().with_text("You were paged".into()),
        ))
        .await?;
    assert_eq!(sandbox.dm_channel("U0DAVE").as_deref(), Some(dm.channel.0.as_str()));

    // Archived channels refuse posts.
    session
        .conversations_archive(&SlackApiConversationsArchiveRequest::new(channel.clone()))
        .await?;
    let archived = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            channel.clone(),
            SlackMessageContent::new().with_text("too late".into()),
        ))
        .await;
    expect_code(archived, "is_archived");
    assert!(sandbox.channel(&channel.0).context("channel")?.archived);
    Ok(())
}

// ----- Socket Mode through slack-morphism's own listener -----
//
// Parse failures inside the listener (hello, disconnect, envelopes) reach the error handler,
// which records them: an empty error list proves slack-morphism parsed every frame.

/// What the listener's callbacks saw (callbacks are plain `fn`s; this rides in the user state).
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
}

impl Seen {
    fn push(list: &Mutex<Vec<String>>, entry: String) {
        list.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn seen(states: &SlackClientEventsUserState) -> Option<Arc<Seen>> {
    states.read().await.get_user_state::<Arc<Seen>>().cloned()
}

async fn on_command(
    event: SlackCommandEvent,
    client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let text = event.text.clone().unwrap_or_default();
    // Open the modal with the command's trigger, as the bot does.
    let token = bot_token();
    client
        .open_session(&token)
        .views_open(&SlackApiViewsOpenRequest::new(
            event.trigger_id.clone(),
            declare_modal("Declare an incident"),
        ))
        .await?;
    if let Some(seen) = seen(&states).await {
        Seen::push(
            &seen.events,
            format!("command {} {} {}", event.command.0, event.user_id.0, text),
        );
    }
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text(format!("Declaring: {text}")),
    ))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let seen = seen(&states).await;
    let record = |entry: String| {
        if let Some(seen) = &seen {
            Seen::push(&seen.events, entry);
        }
    };
    match event {
        SlackInteractionEvent::ViewSubmission(submission) => {
            let title = submission
                .view
                .state_params
                .state
                .as_ref()
                .and_then(|state| state.values.get(&"title".into()))
                .and_then(|actions| actions.get(&"title".into()))
                .and_then(|value| value.value.clone())
                .unwrap_or_default();
            record(format!("view_submission {} {title:?}", submission.user.id.0));
            if title.trim().is_empty() {
                let errors = HashMap::from([("title".to_owned(), "Give the incident a title".to_owned())]);
                return Ok(SlackInteractionResponse::ViewSubmission(
                    SlackViewSubmissionResponse::Errors(SlackViewSubmissionErrorsResponse::new(errors)),
                ));
            }
            Ok(SlackInteractionResponse::Empty)
        }
        SlackInteractionEvent::BlockActions(actions) => {
            for action in actions.actions.unwrap_or_default() {
                record(format!(
                    "block_actions {} {} {}",
                    actions.user.as_ref().map(|u| u.id.0.as_str()).unwrap_or("?"),
                    action.action_id.0,
                    action.value.unwrap_or_default()
                ));
            }
            Ok(SlackInteractionResponse::Empty)
        }
        other => {
            record(format!("unexpected interaction {other:?}"));
            Ok(SlackInteractionResponse::Empty)
        }
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let entry = match event.event {
        SlackEventCallbackBody::ReactionAdded(reaction) => {
            format!(
                "reaction {} {} {:?}",
                reaction.user.0,
                reaction.reaction.0,
                reaction.item_user.map(|u| u.0)
            )
        }
        other => format!("unexpected push {other:?}"),
    };
    if let Some(seen) = seen(&states).await {
        Seen::push(&seen.events, entry);
    }
    Ok(())
}

/// Acks even on errors (the default handler does not, and Slack would redeliver), and records.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> HttpStatusCode {
    if let Ok(storage) = states.try_read() {
        if let Some(seen) = storage.get_user_state::<Arc<Seen>>() {
            Seen::push(&seen.errors, error.to_string());
        }
    }
    HttpStatusCode::OK
}

#[tokio::test]
async fn slack_morphism_socket_mode_round_trips_and_reconnects() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let client = Arc::new(SlackClient::new(connector(&sandbox)?));
    let seen = Arc::new(Seen::default());
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client.clone())
            .with_error_handler(on_error)
            .with_user_state(seen.clone()),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_push);
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new()
            .with_reconnect_timeout_in_seconds(1)
            .with_initial_backoff_in_seconds(0),
        environment,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(sandbox::APP_TOKEN.into()))
        .await?;
    listener.start().await;
    let connect_timeout = Duration::from_secs(5);
    sandbox.wait_for_connections(2, connect_timeout).await?;

    // A slash command: the callback opens a modal with the trigger; the ack carries the reply,
    // which Slack shows the user as an ephemeral message.
    let ack = sandbox
        .slash_command("U0ALICE", "C0GENERAL", "declare Payments API 500s")
        .await?;
    let reply = ack.payload.context("ack payload")?;
    assert_eq!(reply["text"], "Declaring: declare Payments API 500s");
    assert_eq!(
        sandbox.ephemerals("U0ALICE")[0].text,
        "Declaring: declare Payments API 500s"
    );
    let envelope = sandbox.last_envelope().context("envelope")?;
    assert_eq!(envelope["accepts_response_payload"], true);
    let view = sandbox.views_opened().pop().context("modal opened")?;
    assert_eq!((view.callback_id.as_str(), view.user.as_str()), ("declare", "U0ALICE"));

    // view_submission: field errors keep the modal open; a valid submission closes it.
    let empty_title = json!({ "title": { "title": { "type": "plain_text_input", "value": "" } } });
    let ack = sandbox.submit_view("U0ALICE", &view.id, empty_title).await?;
    let response = ack.payload.context("errors response")?;
    assert_eq!(response["response_action"], "errors");
    assert_eq!(response["errors"]["title"], "Give the incident a title");
    assert!(!sandbox.view(&view.id).context("view")?.closed);
    let good_title = json!({ "title": { "title": { "type": "plain_text_input", "value": "Payments down" } } });
    let ack = sandbox.submit_view("U0ALICE", &view.id, good_title).await?;
    assert!(ack.payload.is_none());
    assert!(sandbox.view(&view.id).context("view")?.closed);

    // block_actions from a message button, and a reaction_added event.
    let token = bot_token();
    let posted = client
        .open_session(&token)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new()
                .with_text("INC-1".into())
                .with_blocks(summary_blocks()),
        ))
        .await?;
    let ack = sandbox
        .click_button("U0BOB", "C0GENERAL", &posted.ts.0, "ack", "INC-1")
        .await?;
    assert!(ack.payload.is_none());
    assert_eq!(
        sandbox.last_envelope().context("envelope")?["accepts_response_payload"],
        false
    );
    sandbox
        .add_reaction("U0CAROL", "C0GENERAL", &posted.ts.0, "eyes")
        .await?;
    assert_eq!(sandbox.messages("C0GENERAL")[0].reactions[0].name, "eyes");

    assert_eq!(
        seen.events(),
        [
            "command /incident U0ALICE declare Payments API 500s".to_owned(),
            "view_submission U0ALICE \"\"".to_owned(),
            "view_submission U0ALICE \"Payments down\"".to_owned(),
            "block_actions U0BOB ack INC-1".to_owned(),
            format!("reaction U0CAROL eyes Some({:?})", sandbox::BOT_USER_ID),
        ]
    );

    // `disconnect`: the client reconnects and the next command is served.
    sandbox.disconnect_all("refresh_requested");
    assert_eq!(sandbox.connection_count(), 0);
    sandbox.wait_for_connections(2, connect_timeout).await?;
    let ack = sandbox.slash_command("U0BOB", "C0ANNOUNCE", "after refresh").await?;
    assert_eq!(ack.payload.context("payload")?["text"], "Declaring: after refresh");
    assert_eq!(seen.errors(), Vec::<String>::new(), "every frame parsed");

    // An abrupt TCP drop: the client notices and reconnects too.
    sandbox.drop_all_connections();
    sandbox.wait_for_connections(2, connect_timeout).await?;
    let ack = sandbox.slash_command("U0CAROL", "C0GENERAL", "after drop").await?;
    assert_eq!(ack.payload.context("payload")?["text"], "Declaring: after drop");

    assert_eq!(sandbox.late_acks(), 0);
    assert_eq!(sandbox.acks().len(), 7);
    listener.shutdown().await;
    Ok(())
}

// ----- Socket Mode frame by frame -----

/// Opens a raw Socket Mode connection and returns it with its `hello`.
async fn raw_connect(sandbox: &Sandbox) -> anyhow::Result<(RawSocket, Value)> {
    let bearer = format!("Bearer {}", sandbox::APP_TOKEN);
    let (_, opened) = raw_request(
        sandbox,
        "POST",
        "/api/apps.connections.open",
        &[("Authorization", &bearer)],
        "",
    )
    .await?;
    let url = opened["url"].as_str().context("url")?;
    assert!(url.starts_with("ws://127.0.0.1:") && url.contains("ticket="), "{url}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let hello = next_json(&mut socket).await?;
    Ok((socket, hello))
}

/// An object's keys, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The next text frame as JSON (within 2 s).
async fn next_json(socket: &mut RawSocket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .context("timed out waiting for a frame")?
            .context("socket closed")??;
        match frame {
            Frame::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => bail!("unexpected frame {other:?}"),
        }
    }
}

async fn ack(socket: &mut RawSocket, envelope: &Value, payload: Option<Value>) -> anyhow::Result<()> {
    let mut ack = json!({ "envelope_id": envelope["envelope_id"] });
    if let Some(payload) = payload {
        ack["payload"] = payload;
    }
    socket.send(Frame::text(ack.to_string())).await?;
    Ok(())
}

#[tokio::test]
async fn socket_mode_frames_follow_slack() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions {
        ack_deadline: Duration::from_millis(500),
        ..SandboxOptions::default()
    })
    .await?;

    // hello, shaped like Slack's and parsed by slack-morphism.
    // (slack-morphism's frame types are crate-private; the listener test proves it parses them.)
    let (mut first, hello) = raw_connect(&sandbox).await?;
    // Key sets copied from Slack's fixtures (../shared/slack/payloads/hello.json).
    assert_eq!(
        keys(&hello),
        ["connection_info", "debug_info", "num_connections", "type"]
    );
    assert_eq!(
        keys(&hello["debug_info"]),
        ["approximate_connection_time", "build_number", "host"]
    );
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], sandbox::APP_ID);

    // Ping → Pong.
    first.send(Frame::Ping(b"are you there".to_vec().into())).await?;
    let pong = tokio::time::timeout(Duration::from_secs(2), first.next())
        .await?
        .context("closed")??;
    assert_eq!(pong, Frame::Pong(b"are you there".to_vec().into()));

    // An unacknowledged command whose connection closes is not redelivered.
    let (second, hello) = raw_connect(&sandbox).await?;
    assert_eq!(hello["num_connections"], 2);
    let driver = sandbox.clone();
    let command = tokio::spawn(async move { driver.slash_command("U0ALICE", "C0GENERAL", "").await });
    let (mut holder, mut second) = (first, second);
    let (envelope, holder_got_it) = tokio::select! {
        frame = next_json(&mut holder) => (frame?, true),
        frame = next_json(&mut second) => (frame?, false),
    };
    if !holder_got_it {
        std::mem::swap(&mut holder, &mut second);
    }
    // Every field of envelope-slash_commands.json is there.
    for key in ["envelope_id", "payload", "type", "accepts_response_payload"] {
        assert!(envelope.get(key).is_some(), "{key} missing in {envelope}");
    }
    for key in [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "response_url",
        "trigger_id",
    ] {
        assert!(envelope["payload"].get(key).is_some(), "{key} missing in {envelope}");
    }
    assert_eq!(
        (
            envelope["type"].as_str(),
            envelope["accepts_response_payload"].as_bool()
        ),
        (Some("slash_commands"), Some(true))
    );
    let parsed = serde_json::from_value::<SlackCommandEvent>(envelope["payload"].clone())?;
    assert_eq!(parsed.command.0, "/incident");
    assert_eq!(parsed.channel_name.as_deref(), Some("general"));
    assert_eq!(
        (envelope["retry_attempt"].as_u64(), envelope["retry_reason"].as_str()),
        (Some(0), Some(""))
    );
    drop(holder);
    // Slack resends only Events API envelopes: the command is not redelivered, but an ack on
    // the app's other connection still answers it within the deadline.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_json(&mut second))
            .await
            .is_err(),
        "a slash command is never redelivered"
    );
    ack(&mut second, &envelope, Some(json!({ "text": "on it" }))).await?;
    let acked = command.await??;
    assert_eq!(acked.payload, Some(json!({ "text": "on it" })));
    assert_eq!(acked.delivered_on, None, "its connection had closed");
    assert_eq!(sandbox.ephemerals("U0ALICE")[0].text, "on it");
    let redelivered = envelope.clone();

    // The envelope's response_url posts back into the channel.
    let response_url = url::Url::parse(
        redelivered["payload"]["response_url"]
            .as_str()
            .context("response_url")?,
    )?;
    let (status, body) = raw_request(
        &sandbox,
        "POST",
        response_url.path(),
        &[("Content-Type", "application/json")],
        &json!({ "response_type": "in_channel", "text": "INC-1 declared" }).to_string(),
    )
    .await?;
    assert_eq!((status, &body["ok"]), (200, &json!(true)));
    assert_eq!(sandbox.messages("C0GENERAL")[0].text, "INC-1 declared");

    // Past the deadline, the envelope counts as failed.
    let driver = sandbox.clone();
    let ignored = tokio::spawn(async move { driver.slash_command("U0BOB", "C0GENERAL", "ignored").await });
    let envelope = next_json(&mut second).await?;
    let error = ignored.await?.expect_err("no ack within the deadline");
    assert!(
        error
            .to_string()
            .contains(envelope["envelope_id"].as_str().context("id")?),
        "{error}"
    );
    assert_eq!(sandbox.late_acks(), 1);

    // Envelopes spread round-robin over the live connections.
    let (mut third, _) = raw_connect(&sandbox).await?;
    let mut waiting = Vec::new();
    for text in ["a", "b"] {
        let driver = sandbox.clone();
        waiting.push(tokio::spawn(async move {
            driver.slash_command("U0CAROL", "C0ANNOUNCE", text).await
        }));
    }
    let on_second = next_json(&mut second).await?;
    let on_third = next_json(&mut third).await?;
    assert_ne!(on_second["envelope_id"], on_third["envelope_id"]);
    ack(&mut second, &on_second, None).await?;
    ack(&mut third, &on_third, None).await?;
    for waiter in waiting {
        assert!(waiter.await??.payload.is_none());
    }

    // Redelivering the same envelope (dedupe tests) sends the same id again.
    let again = sandbox.last_envelope().context("last envelope")?;
    let driver = sandbox.clone();
    let resent = tokio::spawn(async move { driver.send_envelope(again).await });
    let (duplicate, socket) = tokio::select! {
        frame = next_json(&mut second) => (frame?, &mut second),
        frame = next_json(&mut third) => (frame?, &mut third),
    };
    assert!(
        duplicate["envelope_id"] == on_second["envelope_id"] || duplicate["envelope_id"] == on_third["envelope_id"]
    );
    ack(socket, &duplicate, None).await?;
    resent.await??;

    // disconnect: the message (parsed by slack-morphism), then the socket closes.
    sandbox.disconnect_all("warning");
    assert_eq!(sandbox.connection_count(), 0);
    let disconnect = next_json(&mut second).await?;
    assert_eq!(keys(&disconnect), ["debug_info", "reason", "type"]); // disconnect-warning.docs.json
    assert_eq!(disconnect["reason"], "warning");
    let closed = tokio::time::timeout(Duration::from_secs(2), second.next()).await?;
    assert!(
        matches!(closed, Some(Ok(Frame::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn socket_mode_refuses_reused_tickets_and_an_eleventh_connection() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let bearer = format!("Bearer {}", sandbox::APP_TOKEN);
    let (_, opened) = raw_request(
        &sandbox,
        "POST",
        "/api/apps.connections.open",
        &[("Authorization", &bearer)],
        "",
    )
    .await?;
    let url = opened["url"].as_str().context("url")?.to_owned();
    let (_first, _) = tokio_tungstenite::connect_async(&url).await?;
    assert!(
        tokio_tungstenite::connect_async(&url).await.is_err(),
        "a ticket works once"
    );

    let mut open = Vec::new();
    for _ in 1..sandbox::MAX_SOCKET_CONNECTIONS {
        open.push(raw_connect(&sandbox).await?.0);
    }
    sandbox
        .wait_for_connections(sandbox::MAX_SOCKET_CONNECTIONS, Duration::from_secs(2))
        .await?;
    let (mut eleventh, refusal) = raw_connect(&sandbox).await?;
    assert_eq!(refusal["type"], "disconnect");
    assert_eq!(refusal["reason"], "too_many_websockets");
    let closed = tokio::time::timeout(Duration::from_secs(2), eleventh.next()).await?;
    assert!(
        matches!(closed, Some(Ok(Frame::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
    assert_eq!(sandbox.connection_count(), sandbox::MAX_SOCKET_CONNECTIONS);
    Ok(())
}
