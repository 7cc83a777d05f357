//! Tracing: every envelope is handled in an `envelope` span, every outbox job runs in an
//! `outbox_job` span and every SLA clock firing logs in a `reminder` span, each carrying the
//! incident number once known (`incident = "INC-1"`); at the default level what people type is
//! not logged, and no token ever is.

mod common;

use common::READY;
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::sandbox::{Fault, APP_TOKEN, BOT_TOKEN};
use serde_json::{json, Value};
use std::time::Duration;

/// The incident recorded on the innermost span named `span` around the event `message`.
fn incidents_of(lines: &[Value], message: &str, span: &str) -> Vec<Option<String>> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with(message)))
        .map(|l| {
            l["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .find(|s| s["name"] == span)
                .and_then(|s| s["incident"].as_str().map(String::from))
        })
        .collect()
}

// Current-thread: every task the bot spawns runs under the scoped subscriber below.
#[tokio::test(flavor = "current_thread")]
async fn envelopes_jobs_and_reminders_carry_the_incident_number() {
    let capture = common::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_current_span(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("incident_bot=info"))
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // SEV2 reminded every second, so a clock fires during the test.
    let mut policy = demo_policy();
    policy.severities[1].update_every = Duration::from_secs(1);
    policy.severities[1].escalate_after = Duration::ZERO;
    let db = common::database();
    let stack = LocalStack::start(
        db.as_ref().map(|(u, s)| (u.as_str(), Some(s.as_str()))),
        policy,
        fast_options(),
    )
    .await
    .unwrap();
    // The first post fails once, so the outbox logs a retry (at warn) inside its job span.
    stack.sandbox.inject_fault("chat.postMessage", Fault::ServerError, 1);
    stack
        .declare("U0ALICE", "C0GENERAL", "Span check", json!({ "severity": "SEV2" }))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let noted = stack
        .command("U0ALICE", &ch, "note typed-body-7f3a must not be logged at info")
        .await
        .unwrap();
    assert!(noted.contains("Noted"), "{noted}");
    let fired = wait_for(Duration::from_secs(5), || async {
        let lines = capture.lines();
        (!incidents_of(&lines, "SLA clock fired", "reminder").is_empty()).then_some(())
    })
    .await;
    assert!(fired.is_some(), "a reminder fired");
    stack.settle().await;

    let lines = capture.lines();
    let one = Some("INC-1".to_string());
    assert_eq!(incidents_of(&lines, "incident declared", "envelope"), vec![one.clone()]);
    let changed = incidents_of(&lines, "incident changed", "envelope");
    assert!(!changed.is_empty() && changed.iter().all(|i| *i == one), "{changed:?}");
    let retried = incidents_of(&lines, "outbox job failed; will retry", "outbox_job");
    assert!(!retried.is_empty() && retried.iter().all(|i| *i == one), "{retried:?}");
    let reminders = incidents_of(&lines, "SLA clock fired", "reminder");
    assert!(reminders.iter().all(|i| *i == one), "{reminders:?}");

    let text = capture.text();
    assert!(!text.contains("typed-body-7f3a"), "a message body was logged at info");
    for token in [BOT_TOKEN, APP_TOKEN, "xoxb-", "xapp-"] {
        assert!(!text.contains(token), "{token} in the logs");
    }
}
