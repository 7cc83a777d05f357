//! Socket Mode resilience through the sandbox: after each kind of `disconnect`, and after a
//! dropped TCP connection, the bot is back within 2 s and an envelope sent meanwhile is not lost.

mod common;

use common::{assert_slack_happy, stack};
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_disconnect_kind_and_a_dropped_connection_are_survived() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    for reason in [
        "refresh_requested",
        "warning",
        "link_disabled",
        "too_many_websockets",
        "drop",
    ] {
        let started = Instant::now();
        if reason == "drop" {
            sb.drop_all_connections();
        } else {
            sb.disconnect_all(reason);
        }
        // Sent while reconnecting: Slack (and the sandbox) holds it for the next connection.
        let ack = sb.slash_command("U0ALICE", "C0GENERAL", "help").await;
        assert!(
            ack.is_ok(),
            "{reason}: the envelope sent during the reconnect was acked: {ack:?}"
        );
        sb.wait_for_connections(1, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{reason}: not reconnected within 2 s: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{reason}: took {:?}",
            started.elapsed()
        );
    }
    let answered = stack.command("U0ALICE", "C0GENERAL", "list").await.unwrap();
    assert!(answered.contains("No open incidents"), "{answered}");
    assert_slack_happy(&stack);
}
