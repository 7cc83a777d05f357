//! Issue 17, "small defects found when tried as a new user would": each through the sandbox,
//! on SQLite or PostgreSQL (`TEST_DATABASE_URL`).

mod common;

use common::{assert_slack_happy, declared, stack, stack_with};
use incident_bot::app::Bot;
use incident_bot::config::{Policy, ReportSchedule};
use incident_bot::db::Db;
use incident_bot::demo::{demo_policy, fast_options, resolve_values, update_values, wait_for, LocalStack};
use incident_bot::incident::model::*;
use std::time::Duration;

async fn resolve(stack: &LocalStack, user: &str, channel: &str) {
    let form = stack.open_form(user, channel, "resolve").await.unwrap();
    let ack = stack
        .sandbox
        .submit_view(user, &form.id, resolve_values("Rolled back", "change / deploy", None))
        .await
        .unwrap();
    assert_eq!(ack.payload, None, "the resolve form is accepted");
}

/// Items 1–3: malformed follow-up commands store nothing and answer with one usage line; a
/// report error shows the report usage once, not the whole command list.
#[tokio::test]
async fn malformed_commands_store_nothing_and_answer_with_their_own_usage() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "Refunds failing", "SEV3").await;
    let messages = stack.sandbox.messages(&ch).len();
    for (text, problem) in [
        ("followup done", "number"),
        ("followup wontdo", "number"),
        ("followup Call the vendor due tomorrow", "not a date"),
        ("followup Call the vendor due Friday", "not a date"),
    ] {
        let said = stack.command("U0BOB", &ch, text).await.unwrap();
        assert!(said.contains(problem), "{text}: {said}");
        assert_eq!(said.matches("Usage").count(), 1, "{text}: one usage line: {said}");
        assert!(said.contains("/incident followup"), "{text}: {said}");
    }
    for text in ["report 2026-13-45..x", "report 2024-01-01..2025-06-01"] {
        let said = stack.command("U0ALICE", "C0GENERAL", text).await.unwrap();
        assert_eq!(
            said.matches(incident_bot::slack::commands::REPORT_USAGE).count(),
            1,
            "{text}: {said}"
        );
        assert!(
            !said.contains("`followups`") && said.chars().count() < 300,
            "{text}: {said}"
        );
    }
    stack.settle().await;
    assert!(
        stack.db.follow_ups_of(inc.id).await.unwrap().is_empty(),
        "nothing stored"
    );
    assert_eq!(stack.sandbox.messages(&ch).len(), messages, "nothing announced");
    assert_slack_happy(&stack);
}

/// Item 4: resolving as the SPOC's first action acknowledges, like any other first action,
/// and the review draft's "Acknowledged" row shows it.
#[tokio::test]
async fn resolving_as_the_spocs_first_action_acknowledges() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "Checkout timeouts", "SEV2").await;
    assert_eq!(
        inc.acknowledged_at, None,
        "declared by alice for bob: not acknowledged yet"
    );
    resolve(&stack, "U0BOB", &ch).await;
    let resolved = stack.db.incident(inc.id).await.unwrap();
    assert!(resolved.acknowledged_at.is_some(), "the SPOC's resolve counts");
    assert_eq!(resolved.acknowledged_at, resolved.resolved_at);
    assert!(common::event_kinds(&stack, inc.id)
        .await
        .contains(&"acknowledged".to_string()));

    stack.command("U0BOB", &ch, "pir").await.unwrap();
    let (_, _, bytes) = wait_for(Duration::from_secs(5), || async {
        stack.sandbox.files().into_iter().next()
    })
    .await
    .expect("the draft is shared");
    let md = String::from_utf8(bytes).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| Acknowledged |"))
        .unwrap_or_default();
    assert!(row.contains("time to acknowledge"), "{row}");
    assert_slack_happy(&stack);
}

/// Items 5 and 11: a closed incident takes follow-ups (the reply says so) and its status says
/// since when updates stopped; a canceled one (even closed since) takes no follow-up or draft.
#[tokio::test]
async fn closed_incidents_take_follow_ups_canceled_ones_never() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "Portal slow", "SEV3").await;
    resolve(&stack, "U0BOB", &ch).await;
    assert_eq!(stack.command("U0BOB", &ch, "close").await.unwrap(), "");
    let said = stack.command("U0BOB", &ch, "followup Write the runbook").await.unwrap();
    assert!(said.contains("follow-up #1") && said.contains("closed"), "{said}");
    assert_eq!(stack.db.follow_ups_of(inc.id).await.unwrap().len(), 1);

    let ack = stack.sandbox.slash_command("U0BOB", &ch, "status").await.unwrap();
    let status = ack.payload.unwrap_or_default()["blocks"].to_string();
    assert!(status.contains("stakeholder updates stopped"), "{status}");
    assert!(!status.contains("updates every"), "{status}");

    let (canceled, ch2) = declared(&stack, "Declared by mistake", "SEV2").await;
    assert_eq!(stack.command("U0BOB", &ch2, "cancel").await.unwrap(), "");
    assert_eq!(stack.command("U0BOB", &ch2, "close").await.unwrap(), "");
    assert_eq!(stack.db.incident(canceled.id).await.unwrap().status, Status::Closed);
    let events = stack.db.timeline(canceled.id).await.unwrap().len();
    for text in ["followup Write the runbook", "pir", "pir done"] {
        let said = stack.command("U0BOB", &ch2, text).await.unwrap();
        assert!(said.contains("canceled"), "{text}: {said}");
    }
    let said = stack.command("U0BOB", &ch2, "followup").await.unwrap();
    assert!(said.contains("canceled"), "no follow-up form: {said}");
    stack.settle().await;
    assert!(stack.db.follow_ups_of(canceled.id).await.unwrap().is_empty());
    assert_eq!(stack.db.timeline(canceled.id).await.unwrap().len(), events);
    assert!(stack.sandbox.files().is_empty(), "no review draft");
    assert_slack_happy(&stack);
}

/// Item 13: a form naming an incident the database does not have (here: the bot now runs on
/// another database) is answered "no longer exists", logged at info, not as an outage.
#[tokio::test(flavor = "current_thread")]
async fn a_form_for_a_missing_incident_says_it_no_longer_exists() {
    let capture = common::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("incident_bot=info"))
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut stack = stack().await;
    let (_, ch) = declared(&stack, "Settlement delayed", "SEV2").await;
    let form = stack.open_form("U0BOB", &ch, "update").await.unwrap();
    stack.stop_bot().await;
    let dir = tempfile::tempdir().unwrap();
    let other = match common::database() {
        Some((url, schema)) => Db::connect_with(&url, Some(&schema)).await.unwrap(),
        None => Db::connect(&format!("sqlite://{}", dir.path().join("other.db").display()))
            .await
            .unwrap(),
    };
    let bot = Bot::start(&stack.settings, other.clone(), fast_options())
        .await
        .unwrap();
    stack
        .sandbox
        .wait_for_connections(1, Duration::from_secs(5))
        .await
        .unwrap();

    let ack = stack
        .sandbox
        .submit_view(
            "U0BOB",
            &form.id,
            update_values("identified", "Bad deploy", "none", "roll back"),
        )
        .await
        .unwrap();
    let answer = ack.payload.unwrap_or_default().to_string();
    assert!(answer.contains("no longer exists"), "{answer}");
    assert!(!answer.contains("database"), "{answer}");
    bot.stop().await;
    let lines = capture.lines();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "change for an incident that does not exist"),
        "{}",
        capture.text()
    );
    assert!(!lines.iter().any(|l| l["level"] == "ERROR"), "{}", capture.text());
    other.close().await;
    assert_slack_happy(&stack);
}

/// Item 9: a slot that passed in the last hour is posted on start, saying it is a catch-up of
/// that slot; a slot posted on time says nothing of the kind.
#[tokio::test]
async fn a_missed_slot_posted_on_start_says_it_is_a_catch_up() {
    let slot = chrono::Utc::now() - chrono::Duration::minutes(10);
    let missed = ReportSchedule {
        cron: slot.format("0 %M %H * * *").to_string(),
        period: "weekly".into(),
        channel: "C0GENERAL".into(),
    };
    let on_time = ReportSchedule {
        cron: "*/2 * * * * *".into(),
        period: "monthly".into(),
        channel: "C0ANNOUNCE".into(),
    };
    let policy = Policy {
        reports: vec![missed, on_time],
        ..demo_policy()
    };
    let stack = stack_with(policy, fast_options()).await;
    let expected = format!("Catch-up of the {} slot", slot.format("%H:%M"));
    let posted = wait_for(Duration::from_secs(10), || async {
        stack
            .sandbox
            .messages("C0GENERAL")
            .into_iter()
            .find(|m| m.blocks.to_string().contains("Incident report"))
    })
    .await
    .expect("the missed slot is posted on start");
    assert!(posted.text.contains(&expected), "{}", posted.text);
    assert!(posted.blocks.to_string().contains(&expected), "{}", posted.blocks);
    let regular = wait_for(Duration::from_secs(10), || async {
        stack
            .sandbox
            .messages("C0ANNOUNCE")
            .into_iter()
            .find(|m| m.blocks.to_string().contains("Incident report"))
    })
    .await
    .expect("the every-2-seconds slot is posted");
    assert!(!regular.text.contains("Catch-up"), "{}", regular.text);
    assert_slack_happy(&stack);
}
