//! SLA-timed update reminders (issue: "SLA-timed update reminders with escalation"), through the
//! sandbox, with second-long cadences from test config, on SQLite or PostgreSQL.

mod common;

use common::{assert_slack_happy, stack_with, READY};
use incident_bot::app::Bot;
use incident_bot::config::{Policy, SeverityPolicy};
use incident_bot::db::Db;
use incident_bot::demo::{demo_policy, fast_options, update_values, wait_for, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::*;
use serde_json::json;
use std::time::Duration;

/// SEV1: update every 1 s, escalate 1 s later. SEV2: every 1 s, never escalate. SEV3: every
/// 30 s. SEV4: no reminders.
fn fast_policy() -> Policy {
    let mut policy = Policy {
        managers_group: Some("S0ONCALL".into()),
        ..demo_policy()
    };
    let set = |p: &mut SeverityPolicy, every: u64, escalate: u64| {
        p.update_every = Duration::from_millis(every);
        p.escalate_after = Duration::from_millis(escalate);
    };
    set(&mut policy.severities[0], 1000, 1000);
    set(&mut policy.severities[1], 1000, 0);
    set(&mut policy.severities[2], 30_000, 0);
    set(&mut policy.severities[3], 0, 0);
    policy
}

async fn declared(stack: &LocalStack, n: i64, severity: &str, private: bool) -> (Incident, String) {
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            &format!("Reminder test {n}"),
            json!({ "spoc": "U0BOB", "severity": severity, "private": private }),
        )
        .await
        .unwrap();
    let channel = stack.wait_ready(n, READY).await.unwrap();
    (
        stack.db.incident_by_number(IncidentNumber(n)).await.unwrap().unwrap(),
        channel,
    )
}

async fn events(stack: &LocalStack, inc: &Incident, kind: &str) -> Vec<serde_json::Value> {
    stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.details)
        .collect()
}

fn reminders_in(stack: &LocalStack, channel: &str) -> Vec<String> {
    stack
        .sandbox
        .messages(channel)
        .into_iter()
        .map(|m| m.text)
        .filter(|t| t.starts_with("⏰"))
        .collect()
}

#[tokio::test]
async fn the_spoc_is_reminded_at_due_time_then_escalated_with_a_breach() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV1", false).await;
    let reminded = wait_for(Duration::from_secs(3), || async {
        reminders_in(&stack, &ch).first().cloned()
    })
    .await;
    let reminder = reminded.expect("a reminder within the cadence");
    assert!(
        reminder.contains("<@U0BOB>") && reminder.contains("INC-1") && reminder.contains("due now"),
        "{reminder}"
    );
    let message = stack
        .sandbox
        .messages(&ch)
        .into_iter()
        .find(|m| m.text.starts_with("⏰"))
        .unwrap();
    assert!(
        message.blocks.to_string().contains("incident_snooze")
            && message.blocks.to_string().contains("incident_update")
    );

    let breach = wait_for(Duration::from_secs(3), || async {
        events(&stack, &inc, "breach").await.into_iter().next()
    })
    .await;
    let breach = breach.expect("a breach after the escalation delay");
    assert!(breach["overdue_ms"].as_i64().unwrap() >= 1000);
    stack.settle().await;
    let thread: Vec<String> = stack
        .sandbox
        .messages(ANNOUNCE_CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.is_some())
        .map(|m| m.text)
        .collect();
    assert!(
        thread
            .iter()
            .any(|t| t.starts_with("🚨") && t.contains("<!subteam^S0ONCALL>")),
        "{thread:?}"
    );
    // While overdue, the SPOC is reminded again every cadence.
    let repeated = wait_for(Duration::from_secs(4), || async {
        (reminders_in(&stack, &ch).len() >= 2).then_some(())
    })
    .await;
    assert!(repeated.is_some());
    let stages: Vec<String> = events(&stack, &inc, "reminder")
        .await
        .iter()
        .map(|d| d["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&stages[..2], ["due", "repeat"]);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn an_update_resets_the_clock_and_resolve_stops_it() {
    let mut policy = fast_policy();
    policy.severities[0].update_every = Duration::from_millis(1500);
    let stack = stack_with(policy, fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV1", false).await;
    // Post an update before the first due time: on time, and the clock moves.
    let form = stack.open_form("U0BOB", &ch, "update").await.unwrap();
    stack
        .sandbox
        .submit_view("U0BOB", &form.id, update_values("investigating", "looking", "", ""))
        .await
        .unwrap();
    let updates = events(&stack, &inc, "update").await;
    assert_eq!(updates[0]["on_time"], true);
    let due = stack.db.incident(inc.id).await.unwrap().clock.unwrap().due_at;
    assert!(
        due > inc.declared_at + chrono::Duration::milliseconds(1500),
        "re-planned from the update"
    );
    // Resolve: no reminder ever after.
    let form = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    stack
        .sandbox
        .submit_view(
            "U0BOB",
            &form.id,
            incident_bot::demo::resolve_values("done", "unknown", None),
        )
        .await
        .unwrap();
    assert_eq!(stack.db.incident(inc.id).await.unwrap().clock, None);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        reminders_in(&stack, &ch).is_empty(),
        "no reminders for a resolved incident"
    );
    assert!(events(&stack, &inc, "reminder").await.is_empty());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_severity_change_replans_and_a_late_update_is_recorded_late() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV3", false).await;
    let due = stack.db.incident(inc.id).await.unwrap().clock.unwrap().due_at;
    assert_eq!(due, inc.declared_at + chrono::Duration::seconds(30));
    // SEV3 → SEV2 (every 1 s): the clock re-plans from the declaration and fires soon.
    stack.command("U0BOB", &ch, "severity SEV2").await.unwrap();
    let reminded = wait_for(Duration::from_secs(3), || async {
        reminders_in(&stack, &ch).first().cloned()
    })
    .await;
    assert!(reminded.is_some(), "re-planned to the SEV2 cadence");
    let form = stack.open_form("U0BOB", &ch, "update").await.unwrap();
    stack
        .sandbox
        .submit_view("U0BOB", &form.id, update_values("identified", "found it", "", ""))
        .await
        .unwrap();
    assert_eq!(
        events(&stack, &inc, "update").await[0]["on_time"],
        false,
        "posted after its due time"
    );
    // SEV4 has no cadence: the clock stops.
    stack.command("U0BOB", &ch, "severity SEV4").await.unwrap();
    assert_eq!(stack.db.incident(inc.id).await.unwrap().clock, None);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn snooze_postpones_once() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV2", false).await;
    let reminded = wait_for(Duration::from_secs(3), || async {
        stack
            .sandbox
            .messages(&ch)
            .into_iter()
            .find(|m| m.text.starts_with("⏰"))
    })
    .await
    .expect("a reminder");
    stack
        .sandbox
        .click_button("U0BOB", &ch, &reminded.ts, "incident_snooze", &inc.id.0.to_string())
        .await
        .unwrap();
    let snoozed = wait_for(Duration::from_secs(3), || async {
        events(&stack, &inc, "snooze").await.into_iter().next()
    })
    .await;
    assert!(snoozed.is_some());
    let clock = stack.db.incident(inc.id).await.unwrap().clock.unwrap();
    assert!(clock.snoozed && clock.next_at > chrono::Utc::now() + chrono::Duration::minutes(14));
    let count = reminders_in(&stack, &ch).len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reminders_in(&stack, &ch).len(), count, "no reminder while snoozed");
    // A second snooze for the same due time is refused with a message.
    let mut again = stack.sandbox.last_envelope().unwrap();
    again["envelope_id"] = json!(uuid::Uuid::new_v4().to_string());
    again["payload"]["trigger_id"] = json!("999.snooze.again");
    stack.sandbox.send_envelope(again).await.unwrap();
    let refused = wait_for(Duration::from_secs(3), || async {
        stack
            .sandbox
            .ephemerals("U0BOB")
            .into_iter()
            .find(|m| m.text.contains("Already snoozed"))
    })
    .await;
    assert!(refused.is_some());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn reminders_due_while_the_bot_was_down_are_sent_late_on_start() {
    let mut stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV2", false).await;
    stack.stop_bot().await;
    let before = reminders_in(&stack, &ch).len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reminders_in(&stack, &ch).len(), before, "nothing is sent while down");
    stack.restart_bot(fast_options()).await.unwrap();
    let late = wait_for(Duration::from_secs(3), || async {
        events(&stack, &inc, "reminder")
            .await
            .into_iter()
            .find(|d| d["late"] == true)
    })
    .await;
    assert!(late.is_some(), "the overdue reminder is sent on start, marked late");
    stack.settle().await;
    assert!(reminders_in(&stack, &ch).iter().any(|t| t.contains("sent late")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn two_replicas_send_each_reminder_once_and_survive_one_dying() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    // A second replica on the same database and the same Slack.
    let second_db = match common::database() {
        Some((url, _)) => {
            let schema = stack_schema(&stack).await;
            Db::connect_with(&url, Some(&schema)).await.unwrap()
        }
        None => stack.db.clone(),
    };
    let replica = Bot::start(&stack.settings, second_db, fast_options()).await.unwrap();
    stack
        .sandbox
        .wait_for_connections(2, Duration::from_secs(5))
        .await
        .unwrap();
    let mut incidents = Vec::new();
    for n in 1..=4 {
        incidents.push(declared(&stack, n, "SEV2", false).await);
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    replica.stop().await; // one replica dies; the other carries on
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.settle().await;
    for (inc, ch) in &incidents {
        let fired = events(&stack, inc, "reminder").await;
        let mut due_stages: Vec<(i64, String)> = fired
            .iter()
            .map(|d| (d["due_at"].as_i64().unwrap(), d["stage"].as_str().unwrap().to_string()))
            .collect();
        let total = due_stages.len();
        due_stages.sort();
        due_stages.dedup();
        assert!(
            total >= 3,
            "{}: reminders kept coming after a replica died: {fired:?}",
            inc.number
        );
        assert_eq!(
            fired.iter().filter(|d| d["stage"] == "due").count(),
            1,
            "{}: the due reminder once",
            inc.number
        );
        assert_eq!(
            reminders_in(&stack, ch).len(),
            total,
            "{}: every reminder event posted exactly once",
            inc.number
        );
    }
    assert_slack_happy(&stack);
}

/// The PostgreSQL schema the stack runs in (tests isolate each stack in its own schema).
async fn stack_schema(stack: &LocalStack) -> String {
    match &stack.db {
        Db::Postgres(pool) => {
            let (schema,): (String,) = sqlx::query_as("SELECT current_schema()").fetch_one(pool).await.unwrap();
            schema
        }
        Db::Sqlite(_) => unreachable!("only called on PostgreSQL"),
    }
}

#[tokio::test]
async fn a_slack_failure_while_reminding_is_retried_without_touching_the_clock() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV3", false).await;
    // SEV3 → SEV2 re-plans to a 1 s cadence, due at once; the first post attempts fail.
    stack
        .sandbox
        .inject_fault("chat.postMessage", incident_bot::sandbox::Fault::ServerError, 2);
    stack.command("U0BOB", &ch, "severity SEV2").await.unwrap();
    let posted = wait_for(Duration::from_secs(5), || async {
        reminders_in(&stack, &ch).first().cloned()
    })
    .await;
    assert!(posted.is_some(), "the reminder is posted after the retries");
    let due_reminders = events(&stack, &inc, "reminder")
        .await
        .into_iter()
        .filter(|d| d["stage"] == "due")
        .count();
    assert_eq!(due_reminders, 1, "one reminder recorded, however many attempts it took");
    let clock = stack.db.incident(inc.id).await.unwrap().clock.unwrap();
    assert_eq!(
        clock.stage,
        incident_bot::reminder::plan::Stage::Repeat,
        "the clock moved on exactly once"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn handover_moves_reminders_and_reopen_restarts_the_clock() {
    let stack = stack_with(fast_policy(), fast_options()).await;
    let (inc, ch) = declared(&stack, 1, "SEV3", false).await;
    stack
        .command("U0BOB", &ch, "handover <@U0CAROL> over to you")
        .await
        .unwrap();
    stack.command("U0CAROL", &ch, "severity SEV2").await.unwrap(); // 1 s cadence, due at once
    let reminder = wait_for(Duration::from_secs(3), || async {
        reminders_in(&stack, &ch).first().cloned()
    })
    .await
    .unwrap();
    assert!(
        reminder.contains("<@U0CAROL>") && !reminder.contains("<@U0BOB>"),
        "{reminder}"
    );

    let form = stack.open_form("U0CAROL", &ch, "resolve").await.unwrap();
    stack
        .sandbox
        .submit_view(
            "U0CAROL",
            &form.id,
            incident_bot::demo::resolve_values("fixed", "unknown", None),
        )
        .await
        .unwrap();
    assert_eq!(stack.db.incident(inc.id).await.unwrap().clock, None);
    stack.command("U0CAROL", &ch, "reopen").await.unwrap();
    let clock = stack
        .db
        .incident(inc.id)
        .await
        .unwrap()
        .clock
        .expect("reopen restarts the clock");
    assert!(clock.due_at > chrono::Utc::now(), "a full cadence from the reopening");
    assert_slack_happy(&stack);
}
