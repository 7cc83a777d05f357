//! Missed pongs, through the sandbox: Slack stops answering on the live connections (no pong to
//! the bot's pings, no envelopes; the sandbox still hears what the bot sends). The bot must
//! notice from its pings alone, drop the dead connections and reconnect within a few seconds;
//! envelopes routed into the dead connections meanwhile are redelivered once the bot closes
//! them (as Slack redelivers unacknowledged envelopes), and each takes effect once.

mod common;

use common::{assert_slack_happy, database, logs, READY};
use incident_bot::demo::{declare_values, demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::IncidentNumber;
use incident_bot::sandbox::SandboxOptions;
use serde_json::json;
use std::time::{Duration, Instant};

/// With `fast_options` (ping every 1 s, dead after more than 2 s without a pong) the dead
/// connections are dropped 3–4 s after Slack went silent; reconnecting takes milliseconds.
const RECONNECTED_WITHIN: Duration = Duration::from_secs(6);

#[tokio::test]
async fn a_silent_connection_is_dropped_and_replaced_and_nothing_is_lost() {
    logs();
    let db = database();
    // Envelopes routed into a dead connection cannot be acked before the bot gives up on it
    // (3–4 s), so this sandbox waits longer than Slack's 3 s before counting an ack as missing.
    let sandbox_opts = SandboxOptions {
        ack_deadline: Duration::from_secs(10),
        ..SandboxOptions::default()
    };
    let stack = LocalStack::start_with_sandbox(
        db.as_ref().map(|(u, s)| (u.as_str(), Some(s.as_str()))),
        demo_policy(),
        fast_options(),
        sandbox_opts,
    )
    .await
    .expect("the sandbox and bot start");
    let sb = &stack.sandbox;
    sb.wait_for_connections(2, Duration::from_secs(5)).await.unwrap();
    let opened_before = sb.connections_opened();

    // A form opened before the silence, submitted during it.
    let view = stack
        .open_form("U0ALICE", "C0GENERAL", "declare Silent socket")
        .await
        .unwrap();

    let silent_at = Instant::now();
    sb.silence_connections();
    assert_eq!(sb.silent_connections(), 2);

    // Sent into the dead connections (the sandbox, like Slack, cannot tell they are dead).
    let submit = {
        let sb = sb.clone();
        let id = view.id.clone();
        tokio::spawn(async move {
            sb.submit_view("U0ALICE", &id, declare_values("Silent socket", "U0ALICE", &json!({})))
                .await
        })
    };
    let help = {
        let sb = sb.clone();
        tokio::spawn(async move { sb.slash_command("U0BOB", "C0GENERAL", "help").await })
    };

    // The bot drops both dead connections and opens new ones, from missed pongs alone.
    let replaced = wait_for(RECONNECTED_WITHIN, || async {
        (sb.silent_connections() == 0 && sb.connection_count() >= 2).then(|| silent_at.elapsed())
    })
    .await;
    let replaced = replaced.unwrap_or_else(|| {
        panic!(
            "after {RECONNECTED_WITHIN:?}: {} silent connection(s) still open, {} live",
            sb.silent_connections(),
            sb.connection_count()
        )
    });
    assert!(
        sb.connections_opened() >= opened_before + 2,
        "new connections were opened"
    );
    assert!(
        replaced >= Duration::from_secs(1),
        "replaced after {replaced:?}: too fast to have been detected by missed pongs"
    );

    // Both envelopes were redelivered on a new connection and answered.
    let submitted = submit
        .await
        .unwrap()
        .expect("the submission was acked after redelivery");
    assert!(submitted.payload.is_none(), "declare accepted: {:?}", submitted.payload);
    assert!(submitted.latency < RECONNECTED_WITHIN, "{:?}", submitted.latency);
    let help = help
        .await
        .unwrap()
        .expect("the help command was acked after redelivery");
    let text = help
        .payload
        .as_ref()
        .and_then(|p| p["text"].as_str())
        .unwrap_or_default();
    assert!(text.contains("incident-bot"), "{text}");

    // The submission took effect once: one incident, complete.
    stack.wait_ready(1, READY).await.unwrap();
    stack.settle().await;
    assert!(stack.db.incident_by_number(IncidentNumber(2)).await.unwrap().is_none());
    let channels: Vec<_> = sb
        .channels()
        .into_iter()
        .filter(|c| c.name.starts_with("inc-1-"))
        .collect();
    assert_eq!(channels.len(), 1, "one channel: {channels:?}");

    // And the new connections work as usual.
    let answered = stack.command("U0CAROL", "C0GENERAL", "list").await.unwrap();
    assert!(answered.contains("INC-1"), "{answered}");
    assert_slack_happy(&stack);
}
