//! Our Socket Mode transport through the sandbox (issue 18; issue 11 items 5 and 16): envelopes
//! handled side by side on two connections, every `disconnect` kind and a dropped TCP stream
//! with envelopes in flight, shutdown with envelopes in flight, `too_many_websockets` backoff,
//! empty acks, an envelope that does not parse. On SQLite, and on PostgreSQL when
//! `TEST_DATABASE_URL` is set.

mod common;

use common::{assert_slack_happy, lock_database, stack, stack_with, unlock, READY};
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::{IncidentId, IncidentNumber};
use incident_bot::sandbox::Ack;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Declares an incident and returns its id and channel.
async fn declared(stack: &LocalStack, title: &str) -> (IncidentId, String) {
    let before = stack.db.incident_count().await.unwrap();
    stack
        .declare("U0ALICE", "C0GENERAL", title, json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    let channel = stack.wait_ready(before + 1, READY).await.unwrap();
    let incident = stack
        .db
        .incident_by_number(IncidentNumber(before + 1))
        .await
        .unwrap()
        .unwrap();
    (incident.id, channel)
}

async fn notes(stack: &LocalStack, id: IncidentId) -> Vec<String> {
    stack
        .db
        .timeline(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "note")
        .map(|e| e.details.to_string())
        .collect()
}

fn text_of(ack: &Ack) -> String {
    ack.payload
        .as_ref()
        .and_then(|p| p["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// slack-morphism's listener handled one connection's envelopes one at a time: a command
/// stalled on a locked database held up every envelope behind it on that connection.
#[tokio::test]
async fn a_stalled_handler_on_one_connection_delays_no_other_ack() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (_, channel) = declared(&stack, "Stalled").await;
    sb.wait_for_connections(2, Duration::from_secs(5)).await.unwrap();

    // A note must write: it waits for the lock (reads do not, on SQLite in WAL mode).
    let lock = lock_database(&stack.db).await;
    let stalled = {
        let sb = sb.clone();
        tokio::spawn(async move { sb.slash_command("U0ALICE", &channel, "note stalled").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Interleaved over both connections (round-robin), the stalled one included.
    let mut helps = Vec::new();
    for _ in 0..20 {
        let sb = sb.clone();
        helps.push(tokio::spawn(async move {
            sb.slash_command("U0BOB", "C0GENERAL", "help").await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut answered = Vec::new();
    for help in helps {
        answered.push(help.await.unwrap().expect("help acked"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    unlock(lock).await;
    let stalled = stalled.await.unwrap().expect("the stalled command is acked");
    assert!(
        stalled.latency >= Duration::from_millis(400),
        "the note really waited for the database: {:?}",
        stalled.latency
    );
    let stalled_on = stalled.delivered_on.expect("delivered on a connection");
    let same = answered.iter().filter(|a| a.delivered_on == Some(stalled_on)).count();
    let other = answered.iter().filter(|a| a.delivered_on != Some(stalled_on)).count();
    assert!(
        same >= 5 && other >= 5,
        "interleaved: {same} on the stalled connection, {other} on the other"
    );
    for ack in &answered {
        assert!(text_of(ack).contains("incident-bot"), "{ack:?}");
        // Generous for a loaded 2-core machine; the stall was ≥ 400 ms.
        assert!(
            ack.latency < Duration::from_millis(250),
            "help on connection {:?} waited {:?} behind the stalled handler",
            ack.delivered_on,
            ack.latency
        );
    }
    assert_slack_happy(&stack);
}

/// For each `disconnect` reason and a dropped TCP stream: commands in flight (stalled on a
/// locked database while the connection goes) are all answered — their acks go out on the
/// app's new connection — and a 📌 event sent at that moment is applied once.
#[tokio::test]
async fn every_disconnect_kind_and_a_drop_with_envelopes_in_flight_lose_nothing() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (incident, channel) = declared(&stack, "Disconnects").await;
    sb.wait_for_connections(2, Duration::from_secs(5)).await.unwrap();
    let reasons = [
        "refresh_requested",
        "warning",
        "link_disabled",
        "too_many_websockets",
        "drop",
    ];
    for (round, reason) in reasons.into_iter().enumerate() {
        let ts = sb
            .seed_user_message("U0ALICE", &channel, &format!("finding {round}"))
            .unwrap();
        let lock = lock_database(&stack.db).await;
        let mut commands = Vec::new();
        for _ in 0..4 {
            let sb = sb.clone();
            let channel = channel.clone();
            commands.push(tokio::spawn(async move {
                sb.slash_command("U0BOB", &channel, &format!("note in flight {reason}"))
                    .await
            }));
        }
        let pin = {
            let sb = sb.clone();
            let (channel, ts) = (channel.clone(), ts.clone());
            tokio::spawn(async move { sb.add_reaction("U0CAROL", &channel, &ts, "pushpin").await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        if reason == "drop" {
            sb.drop_all_connections();
        } else {
            sb.disconnect_all(reason);
        }
        // The old connections close 100 ms after `disconnect`; the commands finish later.
        tokio::time::sleep(Duration::from_millis(400)).await;
        unlock(lock).await;
        for command in commands {
            let ack = command
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{reason}: a command in flight was not acked: {e}"));
            assert!(text_of(&ack).contains("Noted"), "{reason}: {ack:?}");
        }
        pin.await
            .unwrap()
            .unwrap_or_else(|e| panic!("{reason}: the event was not acked: {e}"));
        sb.wait_for_connections(2, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{reason}: not reconnected: {e}"));
    }
    assert_eq!(
        sb.failures_seen(),
        Vec::<(String, String)>::new(),
        "no user saw a failure"
    );

    // Every command applied once (4 per round), every 📌 once.
    let expected = 4 * reasons.len() + reasons.len();
    let all = wait_for(Duration::from_secs(5), || async {
        let n = notes(&stack, incident).await;
        (n.len() >= expected).then_some(n)
    })
    .await
    .expect("every note recorded");
    stack.settle().await;
    let all_now = notes(&stack, incident).await;
    assert_eq!(all_now.len(), expected, "{all:?}");
    for round in 0..reasons.len() {
        let pinned = all_now
            .iter()
            .filter(|n| n.contains(&format!("finding {round}")))
            .count();
        assert_eq!(pinned, 1, "📌 of round {round} applied once: {all_now:?}");
    }
    assert_slack_happy(&stack);
}

/// `refresh_requested`: the fresh connection is open before Slack closes the old one, so the
/// app is never without a connection (and `/readyz` stays green).
#[tokio::test]
async fn refresh_requested_opens_the_new_connection_before_the_old_one_closes() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.wait_for_connections(2, Duration::from_secs(5)).await.unwrap();
    let connected = stack.bot.as_ref().unwrap().socket_connected();
    let before: Vec<u64> = sb.connection_log().iter().map(|r| r.id).collect();
    sb.disconnect_all("refresh_requested");
    let went_red = std::sync::atomic::AtomicBool::new(false);
    let settled = wait_for(Duration::from_secs(3), || async {
        went_red.fetch_or(!connected.load(Ordering::SeqCst), Ordering::SeqCst);
        let log = sb.connection_log();
        let old_closed = log
            .iter()
            .filter(|r| before.contains(&r.id))
            .all(|r| r.closed.is_some());
        (old_closed && sb.connection_count() >= 2).then_some(log)
    })
    .await
    .expect("replaced within 3 s");
    for old in settled.iter().filter(|r| before.contains(&r.id)) {
        let closed = old.closed.unwrap();
        assert!(
            settled
                .iter()
                .any(|new| !before.contains(&new.id) && new.opened < closed && new.closed.is_none()),
            "a fresh connection was open before connection {} closed: {settled:?}",
            old.id
        );
    }
    assert!(
        !went_red.load(Ordering::SeqCst),
        "readyz stayed green through the refresh"
    );
    assert_slack_happy(&stack);
}

/// Shutdown: `/readyz` red at once and for good (a `refresh_requested` during the drain opens
/// nothing), envelopes in flight finish and are acked, then the connections close.
#[tokio::test]
async fn shutdown_finishes_envelopes_in_flight_and_stays_unready() {
    let mut opts = fast_options();
    opts.socket.connections = 3;
    let mut stack = stack_with(demo_policy(), opts).await;
    let (_, channel) = declared(&stack, "Shutdown").await;
    let sb = stack.sandbox.clone();
    sb.wait_for_connections(3, Duration::from_secs(5)).await.unwrap();
    let bot = stack.bot.take().unwrap();
    let connected = bot.socket_connected();
    assert!(connected.load(Ordering::SeqCst));

    // Two commands stalled on the database, on two of the three connections.
    let lock = lock_database(&stack.db).await;
    let mut commands = Vec::new();
    let mut holders = Vec::new();
    for i in 0..2 {
        let sb2 = sb.clone();
        let channel = channel.clone();
        commands.push(tokio::spawn(async move {
            sb2.slash_command("U0BOB", &channel, &format!("note before shutdown {i}"))
                .await
        }));
        let envelope_id = wait_for(Duration::from_secs(1), || async {
            sb.last_envelope()
                .and_then(|e| e["envelope_id"].as_str().map(str::to_owned))
                .filter(|id| sb.connection_holding(id).is_some() && !holders.iter().any(|(h, _)| h == id))
        })
        .await
        .unwrap();
        holders.push((envelope_id.clone(), sb.connection_holding(&envelope_id).unwrap()));
    }
    let idle = sb
        .connection_log()
        .into_iter()
        .filter(|r| r.closed.is_none())
        .map(|r| r.id)
        .find(|id| holders.iter().all(|(_, h)| h != id))
        .expect("a connection holds neither command");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let opened = sb.connections_opened();
    let started = Instant::now();
    let watcher = {
        let (sb, connected) = (sb.clone(), connected.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!connected.load(Ordering::SeqCst), "readyz red from the first moment");
            sb.disconnect_connection(idle, "refresh_requested");
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(
                !connected.load(Ordering::SeqCst),
                "a refresh during the drain keeps readyz red"
            );
            assert_eq!(sb.connections_opened(), opened, "nothing reconnects during the drain");
            unlock(lock).await;
        }
    };
    tokio::join!(bot.stop(), watcher);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    for command in commands {
        let ack = command.await.unwrap().expect("acked before the connection closed");
        assert!(text_of(&ack).contains("Noted"), "{ack:?}");
    }
    assert_eq!(sb.connections_opened(), opened, "nothing reconnected during the drain");
    assert_eq!(sb.connection_count(), 0);
    assert!(!connected.load(Ordering::SeqCst));
    assert_eq!(sb.failures_seen(), Vec::<(String, String)>::new());
}

/// `too_many_websockets`: the client backs off (100 ms, 200 ms, 400 ms … in the test options)
/// instead of retrying at a fixed pace, and comes back once Slack has room.
#[tokio::test]
async fn too_many_websockets_backs_off_instead_of_spinning() {
    let mut opts = fast_options();
    opts.socket.connections = 1;
    opts.socket.backoff_initial = Duration::from_millis(100);
    opts.socket.backoff_max = Duration::from_secs(10);
    let stack = stack_with(demo_policy(), opts).await;
    let sb = &stack.sandbox;
    sb.wait_for_connections(1, Duration::from_secs(5)).await.unwrap();
    let connected = stack.bot.as_ref().unwrap().socket_connected();

    sb.set_connection_limit(Some(0));
    sb.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let refused = sb.connections_refused();
    assert!(!connected.load(Ordering::SeqCst), "not ready without a connection");
    // Immediately, then ~0.1, 0.2, 0.4, 0.8, 1.6 s apart (80–100 % jitter): at most 6 in 3.2 s.
    assert!((3..=6).contains(&refused.len()), "{} attempts in 3.2 s", refused.len());
    let gaps: Vec<Duration> = refused.windows(2).map(|w| w[1] - w[0]).collect();
    for pair in gaps.windows(2) {
        assert!(
            pair[1] >= pair[0].mul_f64(1.4),
            "each wait longer than the last: {gaps:?}"
        );
    }

    sb.set_connection_limit(None);
    sb.wait_for_connections(1, Duration::from_secs(5))
        .await
        .expect("back once Slack has room");
    let answered = stack.command("U0ALICE", "C0GENERAL", "help").await.unwrap();
    assert!(answered.contains("incident-bot"), "{answered}");
    assert!(connected.load(Ordering::SeqCst));
}

/// Issue 11 item 16: an ack with nothing to say is `{"envelope_id": …}` alone (the sandbox
/// records `payload: {}` as a payload). And an envelope that does not parse is acked.
#[tokio::test]
async fn empty_acks_carry_no_payload_and_unparsable_envelopes_are_acked() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let opened = sb
        .slash_command("U0ALICE", "C0GENERAL", "declare Empty ack")
        .await
        .unwrap();
    assert_eq!(opened.payload, None, "the declare form opens; the ack is empty");
    let (_, channel) = declared(&stack, "Pins").await;
    let ts = sb.seed_user_message("U0ALICE", &channel, "x").unwrap();
    let pinned = sb.add_reaction("U0BOB", &channel, &ts, "eyes").await.unwrap();
    assert_eq!(pinned.payload, None);

    let garbage = json!({
        "envelope_id": "e-garbage-1",
        "type": "slash_commands",
        "accepts_response_payload": true,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": { "text": "typed secret words", "user_id": 42 },
    });
    let ack = sb.send_envelope(garbage).await.expect("acked anyway");
    assert_eq!(ack.payload, None);
    assert_slack_happy(&stack);
}

/// A redelivered event (`retry_attempt` 1, same envelope id) applies once.
#[tokio::test]
async fn a_redelivered_event_applies_once() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (incident, channel) = declared(&stack, "Redelivery").await;
    let ts = sb.seed_user_message("U0ALICE", &channel, "once only").unwrap();
    sb.add_reaction("U0BOB", &channel, &ts, "pushpin").await.unwrap();
    let mut again = sb.last_envelope().unwrap();
    again["retry_attempt"] = json!(1);
    again["retry_reason"] = json!("timeout");
    // Both copies at once, as after a reconnect.
    let (a, b) = tokio::join!(sb.send_envelope(again.clone()), sb.send_envelope(again));
    a.unwrap();
    b.unwrap();
    let note = wait_for(Duration::from_secs(3), || async {
        notes(&stack, incident)
            .await
            .into_iter()
            .find(|n| n.contains("once only"))
    })
    .await;
    assert!(note.is_some());
    stack.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = notes(&stack, incident)
        .await
        .iter()
        .filter(|n| n.contains("once only"))
        .count();
    assert_eq!(count, 1);
    assert_slack_happy(&stack);
}
