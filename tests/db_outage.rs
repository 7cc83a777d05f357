//! The database unavailable for 10 s: on SQLite another connection holds the write lock
//! (`BEGIN IMMEDIATE`); on PostgreSQL another connection holds `ACCESS EXCLUSIVE` locks on the
//! incident tables. Every envelope arriving meanwhile is acked within Slack's 3 s deadline with
//! a clear "try again" (an ephemeral for commands and buttons, a field error that keeps the form
//! open for submissions); nothing is half written; once the lock goes, everything works again,
//! including the background loops.

mod common;

use common::{assert_slack_happy, event_kinds, lock_database, stack, unlock, READY};
use incident_bot::demo::{declare_values, wait_for};
use incident_bot::incident::model::IncidentNumber;
use serde_json::json;
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(10);

fn says_try_again(text: &str) -> bool {
    text.contains("try again")
}

#[tokio::test]
async fn envelopes_during_a_ten_second_outage_are_told_to_try_again_and_everything_recovers() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare("U0ALICE", "C0GENERAL", "Before the outage", json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let inc = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    let card = inc.card_ts.clone().unwrap();
    let events_before = event_kinds(&stack, inc.id).await;
    // A declare form opened before the outage (views.open needs no database).
    let form = stack
        .open_form("U0CAROL", "C0GENERAL", "declare During the outage")
        .await
        .unwrap();

    let lock = lock_database(&stack.db).await;
    let locked_at = Instant::now();
    let mut answered = 0;
    let mut told_to_retry = 0;
    let mut round = 0;
    // Envelopes one after another for the whole outage (one at a time: a connection handles
    // its envelopes in turn, and each may use up the 2 s budget).
    while locked_at.elapsed() < OUTAGE - Duration::from_secs(2) {
        round += 1;
        // A command that writes.
        let ack = sb
            .slash_command("U0BOB", &ch, &format!("note outage note {round}"))
            .await
            .expect("the note was acked within the deadline");
        let text = ack
            .payload
            .as_ref()
            .and_then(|p| p["text"].as_str())
            .unwrap_or_default();
        assert!(says_try_again(text), "note during the outage: {text:?}");
        assert!(ack.latency < Duration::from_millis(2_800), "{:?}", ack.latency);
        answered += 1;
        told_to_retry += 1;

        // A form submission: the form stays open with the message under a field.
        let ack = sb
            .submit_view(
                "U0CAROL",
                &form.id,
                declare_values("During the outage", "U0CAROL", &json!({})),
            )
            .await
            .expect("the submission was acked within the deadline");
        let payload = ack.payload.clone().unwrap_or_default();
        assert_eq!(payload["response_action"], "errors", "{payload}");
        assert!(
            says_try_again(&payload["errors"].to_string()),
            "submission during the outage: {payload}"
        );
        answered += 1;
        told_to_retry += 1;

        // A button: acked at once, the user is told ephemerally.
        sb.click_button("U0BOB", &ch, &card, "incident_ack", &inc.id.0.to_string())
            .await
            .expect("the click was acked within the deadline");
        answered += 1;

        // No database needed: answered as usual.
        let help = stack.command("U0DAVE", "C0GENERAL", "help").await.unwrap();
        assert!(help.contains("incident-bot"), "{help}");
        answered += 1;
    }
    assert!(round >= 2, "only {round} rounds during the outage");
    // Each note (in its ack) and each click (posted off the ack path) told Bob to try again.
    let clicks_told = wait_for(Duration::from_secs(3), || async {
        let n = sb
            .ephemerals("U0BOB")
            .iter()
            .filter(|m| m.channel == ch && says_try_again(&m.text))
            .count();
        (n >= 2 * round).then_some(n)
    })
    .await;
    assert_eq!(clicks_told, Some(2 * round), "one \"try again\" per note and per click");
    told_to_retry += round;
    let remaining = OUTAGE.saturating_sub(locked_at.elapsed());
    tokio::time::sleep(remaining).await;
    unlock(lock).await;
    println!("{answered} envelopes answered during the outage, {told_to_retry} told to try again");

    // Nothing was half written: the timeline is as before, no incident was added.
    assert_eq!(event_kinds(&stack, inc.id).await, events_before);
    assert!(stack.db.incident_by_number(IncidentNumber(2)).await.unwrap().is_none());

    // Everything works after: the same form declares, commands write, buttons act.
    let recovered = wait_for(Duration::from_secs(12), || async {
        let ack = sb
            .submit_view(
                "U0CAROL",
                &form.id,
                declare_values("During the outage", "U0CAROL", &json!({})),
            )
            .await
            .ok()?;
        ack.payload.is_none().then_some(())
    })
    .await;
    assert!(recovered.is_some(), "the declare form was accepted after the outage");
    stack.wait_ready(2, READY).await.unwrap();
    let noted = stack.command("U0BOB", &ch, "note after the outage").await.unwrap();
    assert!(noted.contains("Noted"), "{noted}");
    sb.click_button("U0BOB", &ch, &card, "incident_ack", &inc.id.0.to_string())
        .await
        .unwrap();
    let kinds = wait_for(READY, || async {
        let kinds = event_kinds(&stack, inc.id).await;
        kinds.iter().any(|k| k == "acknowledged").then_some(kinds)
    })
    .await
    .expect("acknowledged after the outage");
    assert_eq!(kinds.iter().filter(|k| *k == "note").count(), 1, "{kinds:?}");
    stack.settle().await;
    assert_eq!(stack.db.pending_jobs().await.unwrap(), 0);
    assert_slack_happy(&stack);
}
