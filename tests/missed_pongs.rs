//! Missed pongs, through the sandbox: Slack stops answering on the live connections (no pong to
//! the bot's pings, no envelopes; the sandbox still hears what the bot sends). The bot must
//! notice from its pings alone (a watchdog no handler can starve), drop the dead connections and
//! reconnect within a few seconds. Of the envelopes routed into the dead connections meanwhile,
//! Slack redelivers only the events (once the bot closes them): the event takes effect once; the
//! command and the form submission are failures the user saw, and submitting the form again works.

mod common;

use common::{database, logs, READY};
use incident_bot::demo::{declare_values, demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::IncidentNumber;
use incident_bot::sandbox::SandboxOptions;
use serde_json::json;
use std::time::{Duration, Instant};

/// With `fast_options` (ping every 1 s, dead after more than 2 s without a frame) the dead
/// connections are dropped 2–3 s after Slack went silent; reconnecting takes milliseconds.
const RECONNECTED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_silent_connection_is_dropped_and_replaced_and_only_events_are_redelivered() {
    logs();
    let db = database();
    // Envelopes routed into a dead connection cannot be acked before the bot gives up on it
    // (2–3 s), so this sandbox waits longer than Slack's 3 s before counting an ack as missing.
    let sandbox_opts = SandboxOptions {
        ack_deadline: Duration::from_secs(6),
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

    // An incident to pin a message to, and a form opened before the silence.
    stack
        .declare("U0ALICE", "C0GENERAL", "Before the silence", json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    let channel = stack.wait_ready(1, READY).await.unwrap();
    let ts = sb
        .seed_user_message("U0ALICE", &channel, "pinned during the silence")
        .unwrap();
    let view = stack
        .open_form("U0ALICE", "C0GENERAL", "declare Silent socket")
        .await
        .unwrap();
    let opened_before = sb.connections_opened();

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
    let pin = {
        let (sb, channel, ts) = (sb.clone(), channel.clone(), ts.clone());
        tokio::spawn(async move { sb.add_reaction("U0CAROL", &channel, &ts, "pushpin").await })
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

    // The event was redelivered on a new connection and acked.
    let pinned = pin.await.unwrap().expect("the event was acked after redelivery");
    assert!(pinned.latency < RECONNECTED_WITHIN, "{:?}", pinned.latency);
    // Slack does not resend commands or submissions: the user saw those fail.
    assert!(submit.await.unwrap().is_err(), "the submission was never answered");
    assert!(help.await.unwrap().is_err(), "the command was never answered");
    let mut seen: Vec<String> = sb.failures_seen().into_iter().map(|(kind, _)| kind).collect();
    seen.sort();
    assert_eq!(seen, ["interactive", "slash_commands"]);

    // The form is still open: submitting it again declares the incident, once.
    let again = sb
        .submit_view(
            "U0ALICE",
            &view.id,
            declare_values("Silent socket", "U0ALICE", &json!({})),
        )
        .await
        .expect("the second submission is acked");
    assert!(again.payload.is_none(), "declare accepted: {:?}", again.payload);
    stack.wait_ready(2, READY).await.unwrap();
    stack.settle().await;
    assert!(stack.db.incident_by_number(IncidentNumber(3)).await.unwrap().is_none());

    // The 📌 took effect once.
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    let pins = stack
        .db
        .timeline(incident.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "note" && e.details.to_string().contains("pinned during the silence"))
        .count();
    assert_eq!(pins, 1);

    // And the new connections work as usual.
    let answered = stack.command("U0CAROL", "C0GENERAL", "list").await.unwrap();
    assert!(answered.contains("INC-2"), "{answered}");
    assert_eq!(sb.block_kit_violations(), Vec::<String>::new());
}
