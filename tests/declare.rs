//! Declaring an incident end to end, through the local Slack sandbox (issue: "Declare an
//! incident from Slack end to end"). Runs on SQLite, or PostgreSQL with TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack, stack_with, READY};
use incident_bot::demo::{declare_values, demo_policy, fast_options, wait_for, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::*;
use incident_bot::sandbox::Fault;
use serde_json::json;
use std::time::Duration;

async fn incident(stack: &incident_bot::demo::LocalStack, n: i64) -> Incident {
    stack
        .db
        .incident_by_number(IncidentNumber(n))
        .await
        .unwrap()
        .expect("incident stored")
}

#[tokio::test]
async fn declare_with_text_creates_channel_card_and_announcement() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ack = sb
        .slash_command("U0ALICE", "C0GENERAL", "declare Payments API 500s")
        .await
        .unwrap();
    assert!(ack.latency < Duration::from_secs(1), "ack took {:?}", ack.latency);
    let view = wait_for(Duration::from_secs(3), || async { sb.views_opened().last().cloned() })
        .await
        .expect("modal opened");
    assert_eq!(view.callback_id, "declare");
    assert_eq!(
        view.raw["blocks"][0]["element"]["initial_value"], "Payments API 500s",
        "title prefilled"
    );
    assert_eq!(
        view.raw["blocks"][4]["element"]["initial_user"], "U0ALICE",
        "SPOC defaults to the declarer"
    );

    let values = declare_values(
        "Payments API 500s",
        "U0ALICE",
        &json!({ "spoc": "U0BOB", "services": ["payments", "checkout"] }),
    );
    let submitted = sb.submit_view("U0ALICE", &view.id, values).await.unwrap();
    assert!(
        submitted.payload.as_ref().is_none_or(|p| p.get("errors").is_none()),
        "{:?}",
        submitted.payload
    );

    let channel_id = stack.wait_ready(1, READY).await.unwrap();
    let inc = incident(&stack, 1).await;
    assert_eq!(inc.title, "Payments API 500s");
    assert_eq!(inc.severity, Severity::Sev1);
    assert_eq!(inc.status, Status::Investigating);
    assert_eq!(inc.spoc.as_str(), "U0BOB");
    assert_eq!(inc.services, vec!["payments", "checkout"]);

    let channel = sb.channel(&channel_id).unwrap();
    assert_eq!(channel.name, "inc-1-payments-api-500s");
    assert!(!channel.is_private);
    for member in ["U0ALICE", "U0BOB", "U0BOT"] {
        assert!(
            channel.members.iter().any(|m| m == member),
            "{member} in {:?}",
            channel.members
        );
    }
    assert_eq!(
        channel.topic,
        "SEV1 · investigating · SPOC <@U0BOB> · Payments API 500s"
    );

    let card = sb
        .messages(&channel_id)
        .into_iter()
        .find(|m| Some(&m.ts) == inc.card_ts.as_ref())
        .expect("card posted");
    assert!(channel.pins.contains(&card.ts), "card pinned");
    assert_eq!(card.blocks[0]["type"], "header");
    assert!(card.blocks[0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("INC-1: Payments API 500s"));
    assert!(card.blocks.to_string().contains("<@U0BOB>"));

    let announcements = sb.messages(ANNOUNCE_CHANNEL);
    assert_eq!(announcements.len(), 1);
    assert!(
        announcements[0]
            .blocks
            .to_string()
            .contains(&format!("<#{channel_id}>")),
        "links the channel"
    );
    assert_eq!(Some(&announcements[0].ts), inc.announce_ts.as_ref());

    let confirmations = sb.ephemerals("U0ALICE");
    assert!(
        confirmations
            .iter()
            .any(|m| m.text.contains("INC-1 declared") && m.text.contains(&format!("<#{channel_id}>"))),
        "{confirmations:?}"
    );

    let kinds = common::event_kinds(&stack, inc.id).await;
    assert_eq!(kinds, vec!["declared", "channel_created", "announced"]);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn declare_without_text_opens_an_empty_form() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ack = sb.slash_command("U0CAROL", "C0GENERAL", "").await.unwrap();
    assert!(
        ack.payload.as_ref().is_none_or(|p| p.get("text").is_none()),
        "no message in the ack: {:?}",
        ack.payload
    );
    let view = wait_for(Duration::from_secs(3), || async { sb.views_opened().last().cloned() })
        .await
        .expect("modal opened");
    assert!(view.raw["blocks"][0]["element"].get("initial_value").is_none());
    assert_eq!(sb.calls_to("views.open").len(), 1);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn invalid_forms_get_field_errors_and_store_nothing() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.slash_command("U0ALICE", "C0GENERAL", "").await.unwrap();
    let view = wait_for(Duration::from_secs(3), || async { sb.views_opened().last().cloned() })
        .await
        .unwrap();
    let cases = [
        (json!({ "title": "   " }), "title"),
        (json!({ "title": "x".repeat(MAX_TITLE_CHARS + 1) }), "title"),
        (json!({ "severity": null }), "severity"),
        (json!({ "severity": "SEV9" }), "severity"),
        (json!({ "services": ["mainframe"] }), "services"),
    ];
    for (fields, block) in cases {
        let ack = sb
            .submit_view("U0ALICE", &view.id, declare_values("Checkout down", "U0ALICE", &fields))
            .await
            .unwrap();
        let payload = ack.payload.unwrap_or_default();
        assert_eq!(payload["response_action"], "errors", "{fields}: {payload}");
        assert!(
            payload["errors"][block].as_str().is_some_and(|e| !e.is_empty()),
            "{fields}: {payload}"
        );
    }
    assert_eq!(stack.db.incident_count().await.unwrap(), 0);
    assert!(sb.calls_to("conversations.create").is_empty());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn private_incidents_get_a_private_channel_and_no_announcement() {
    let stack = stack().await;
    let payload = stack
        .declare("U0ALICE", "C0GENERAL", "Fraud rule leak", json!({ "private": true }))
        .await
        .unwrap();
    assert!(payload.is_none_or(|p| p.get("errors").is_none()));
    let channel_id = stack.wait_ready(1, READY).await.unwrap();
    assert!(stack.sandbox.channel(&channel_id).unwrap().is_private);
    assert!(
        stack.sandbox.messages(ANNOUNCE_CHANNEL).is_empty(),
        "private incidents are never announced"
    );
    assert!(incident(&stack, 1).await.is_private);
    assert!(stack
        .sandbox
        .ephemerals("U0ALICE")
        .iter()
        .any(|m| m.text.contains("INC-1 declared")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn taken_channel_names_get_a_suffix() {
    let stack = stack().await;
    let web = incident_bot::slack::web::SlackWeb::new(&stack.settings.slack).unwrap();
    web.create_channel("inc-1-checkout-down", false).await.unwrap();
    web.create_channel("inc-1-checkout-down-2", false).await.unwrap();
    stack
        .declare("U0ALICE", "C0GENERAL", "Checkout down", json!({}))
        .await
        .unwrap();
    let channel_id = stack.wait_ready(1, READY).await.unwrap();
    assert_eq!(
        stack.sandbox.channel(&channel_id).unwrap().name,
        "inc-1-checkout-down-3"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_redelivered_submission_declares_once() {
    let stack = stack().await;
    stack
        .declare("U0ALICE", "C0GENERAL", "Settlement delayed", json!({}))
        .await
        .unwrap();
    let envelope = stack.sandbox.last_envelope().expect("the submission envelope");
    assert_eq!(envelope["payload"]["type"], "view_submission");
    stack.sandbox.send_envelope(envelope).await.unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    assert_eq!(stack.db.incident_count().await.unwrap(), 1);
    assert_eq!(stack.sandbox.calls_to("conversations.create").len(), 1);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_rate_limited_channel_create_is_retried_after_retry_after() {
    let stack = stack().await;
    stack
        .sandbox
        .inject_fault("conversations.create", Fault::RateLimited { retry_after_secs: 1 }, 1);
    stack
        .declare("U0ALICE", "C0GENERAL", "Portal slow", json!({}))
        .await
        .unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    let creates = stack.sandbox.calls_to("conversations.create");
    assert_eq!(creates.iter().map(|c| c.status).collect::<Vec<_>>(), vec![429, 200]);
    assert!(
        creates[1].at.duration_since(creates[0].at) >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_failing_channel_create_is_retried_and_the_declarer_told() {
    let stack = stack().await;
    stack
        .sandbox
        .inject_fault("conversations.create", Fault::ServerError, 2);
    stack
        .declare("U0ALICE", "C0GENERAL", "App login errors", json!({}))
        .await
        .unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    assert_eq!(stack.sandbox.calls_to("conversations.create").len(), 3);
    let notes = stack.sandbox.ephemerals("U0ALICE");
    let delays = notes.iter().filter(|m| m.text.contains("is delayed")).count();
    assert_eq!(delays, 1, "told once about the delay: {notes:?}");
    assert!(notes.iter().any(|m| m.text.contains("INC-1 declared")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn pending_side_effects_are_redriven_after_a_restart() {
    let mut stack = stack().await;
    stack.stop_bot().await;
    // As if the bot crashed right after storing the declaration, before any Slack call.
    let new = NewIncident {
        title: Title::parse("Crash before Slack").unwrap(),
        severity: Severity::Sev2,
        services: vec!["app".into()],
        description: String::new(),
        spoc: UserId::parse("U0ALICE").unwrap(),
        declared_by: UserId::parse("U0ALICE").unwrap(),
        is_private: false,
        origin_channel: Some("C0GENERAL".into()),
    };
    stack
        .db
        .declare(&new, "view:V0CRASH", chrono::Utc::now(), &stack.settings.policy.slas())
        .await
        .unwrap();
    assert_eq!(stack.db.pending_jobs().await.unwrap(), 1);
    stack.restart_bot(fast_options()).await.unwrap();
    let channel_id = stack.wait_ready(1, READY).await.unwrap();
    assert_eq!(
        stack.sandbox.channel(&channel_id).unwrap().name,
        "inc-1-crash-before-slack"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_form_that_cannot_open_is_reported_to_the_user() {
    let stack = stack().await;
    stack
        .sandbox
        .inject_fault("views.open", Fault::ApiError("expired_trigger_id".into()), 1);
    stack
        .sandbox
        .slash_command("U0ALICE", "C0GENERAL", "declare x")
        .await
        .unwrap();
    let told = wait_for(Duration::from_secs(3), || async {
        stack
            .sandbox
            .ephemerals("U0ALICE")
            .into_iter()
            .find(|m| m.text.contains("could not open the form"))
    })
    .await;
    assert!(told.is_some());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn help_and_unknown_subcommands_answer_ephemerally() {
    let stack = stack().await;
    let help = stack
        .sandbox
        .slash_command("U0ALICE", "C0GENERAL", "help")
        .await
        .unwrap()
        .payload
        .unwrap();
    assert_eq!(help["response_type"], "ephemeral");
    assert!(help["text"].as_str().unwrap().contains("/incident declare"));
    let bad = stack
        .sandbox
        .slash_command("U0ALICE", "C0GENERAL", "frobnicate now")
        .await
        .unwrap()
        .payload
        .unwrap();
    assert!(bad["text"].as_str().unwrap().contains("frobnicate"));
    assert!(bad["text"].as_str().unwrap().contains("Usage"));
    assert!(stack.sandbox.calls_to("views.open").is_empty());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn envelopes_from_another_workspace_are_refused() {
    let stack = stack().await;
    stack
        .sandbox
        .slash_command("U0ALICE", "C0GENERAL", "help")
        .await
        .unwrap();
    let mut envelope = stack.sandbox.last_envelope().unwrap();
    envelope["envelope_id"] = json!(uuid::Uuid::new_v4().to_string());
    envelope["payload"]["team_id"] = json!("T0OTHER");
    envelope["payload"]["text"] = json!("declare sneaky");
    let ack = stack.sandbox.send_envelope(envelope).await.unwrap();
    assert!(ack.payload.unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("another workspace"));
    assert!(stack.sandbox.calls_to("views.open").is_empty());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn announcements_are_off_when_no_channel_is_configured() {
    let policy = incident_bot::config::Policy {
        announce_channel: None,
        ..demo_policy()
    };
    let stack = stack_with(policy, fast_options()).await;
    stack
        .declare("U0ALICE", "C0GENERAL", "Quiet one", json!({ "severity": "SEV4" }))
        .await
        .unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    assert!(stack
        .sandbox
        .calls_to("chat.postMessage")
        .iter()
        .all(|c| c.params["channel"] != ANNOUNCE_CHANNEL));
    assert_slack_happy(&stack);
}
