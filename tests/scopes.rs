//! Bot scopes, as a workspace installed from `manifest.yml` grants them (issue 11 items 1 and
//! 15): the sandbox answers `missing_scope` like Slack for a call the manifest does not cover,
//! every call the bot makes has its scope, and every scope requested is used.
//! Runs on SQLite, or PostgreSQL with TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack, READY};
use incident_bot::demo::{wait_for, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::IncidentNumber;
use incident_bot::sandbox::BOT_USER_ID;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The bot scopes `manifest.yml` requests, read with a real YAML parser.
fn requested() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.yml")).unwrap();
    let manifest: Value = serde_yaml::from_str(&text).unwrap();
    manifest["oauth_config"]["scopes"]["bot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Declares an incident as `U0ALICE` with `U0BOB` as SPOC; returns its channel.
async fn declare(stack: &LocalStack, number: i64, title: &str, private: bool) -> String {
    let errors = stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            title,
            json!({ "spoc": "U0BOB", "private": private }),
        )
        .await
        .unwrap();
    assert!(errors.as_ref().is_none_or(|p| p.get("errors").is_none()), "{errors:?}");
    stack.wait_ready(number, READY).await.unwrap()
}

/// 📌 on a person's message in `channel`; waits for the note.
async fn pin(stack: &LocalStack, number: i64, channel: &str) {
    let ts = stack
        .sandbox
        .seed_user_message("U0BOB", channel, "DB failover done")
        .unwrap();
    stack
        .sandbox
        .add_reaction("U0BOB", channel, &ts, "pushpin")
        .await
        .unwrap();
    let id = stack
        .db
        .incident_by_number(incident_bot::incident::model::IncidentNumber(number))
        .await
        .unwrap()
        .unwrap()
        .id;
    wait_for(Duration::from_secs(5), || async {
        stack
            .db
            .timeline(id)
            .await
            .ok()?
            .iter()
            .find(|e| e.kind == "note")
            .map(|_| ())
    })
    .await
    .expect("the 📌 note");
}

/// Waits for the first answer to `method` and returns it.
async fn answer_to(stack: &LocalStack, method: &str) -> Value {
    wait_for(Duration::from_secs(5), || async {
        stack.sandbox.calls_to(method).first().map(|c| c.response.clone())
    })
    .await
    .unwrap_or_else(|| panic!("no {method} call"))
}

/// A bot that also takes alerts (issue 15): an `[[alert_rules]]` entry declares from the
/// generic source with the on-call group's first member as SPOC (`usergroups:read`).
async fn alerting_stack() -> LocalStack {
    use incident_bot::alerts::{AlertRule, AlertSource, SourceKind};
    let mut policy = incident_bot::demo::demo_policy();
    policy.alerts.sources = vec![AlertSource {
        name: "hooks".into(),
        kind: SourceKind::Generic,
        token: incident_bot::config::Secret::new("scopes-token-0123456789"),
        service: None,
        severity_label: "severity".into(),
        severity_map: Default::default(),
        service_label: "service".into(),
        service_map: Default::default(),
    }];
    policy.alerts.rules = vec![AlertRule {
        source: None,
        severity: None,
        service: None,
        labels: Default::default(),
        declare: true,
        declare_severity: None,
        oncall_group: Some("S0ONCALL".into()),
        spoc: None,
    }];
    let mut opts = incident_bot::demo::fast_options();
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    common::stack_with(policy, opts).await
}

/// Sends one generic alert; the rule declares incident `number` from it.
async fn alert_declares(stack: &LocalStack, number: i64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stack.sandbox.add_usergroup("S0ONCALL", "oncall", &["U0BOB"]);
    let addr = stack.bot.as_ref().unwrap().http_addr().unwrap();
    let body = json!({ "source": "s", "fingerprint": "f", "status": "firing", "title": "Alert rule" }).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /alerts/generic HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer scopes-token-0123456789\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    stack.wait_ready(number, READY).await.unwrap();
}

#[tokio::test]
async fn every_scope_requested_is_used_and_every_call_has_its_scope() {
    let stack = alerting_stack().await;
    let sb = &stack.sandbox;
    // Announce without being in the channel: what `chat:write.public` is for.
    sb.leave_channel(ANNOUNCE_CHANNEL, BOT_USER_ID);

    let public = declare(&stack, 1, "Payments API 500s", false).await;
    pin(&stack, 1, &public).await;
    let said = stack
        .command("U0BOB", &public, "followup Add a refund alert @dave")
        .await
        .unwrap();
    assert!(said.contains("Added follow-up"), "{said}");
    // The share's answer is lost (a 504 at once): `files.info` (`files:read`) checks whether it
    // was shared before sharing it again.
    sb.inject_fault(
        "files.completeUploadExternal",
        incident_bot::sandbox::Fault::Timeout(Duration::ZERO),
        1,
    );
    stack.command("U0BOB", &public, "pir").await.unwrap();
    wait_for(Duration::from_secs(5), || async {
        (!sb.files().is_empty()).then_some(())
    })
    .await
    .expect("the review draft is shared");

    // An owner's overdue reminder whose answer is lost (a 504 at once): the bot finds the DM
    // (`im:write`) and looks in its history (`im:history`) before sending it again.
    let today = chrono::Utc::now().date_naive();
    stack
        .command("U0BOB", &public, &format!("followup Rotate the key @carol due {today}"))
        .await
        .unwrap();
    stack.settle().await;
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    let overdue = stack.db.follow_ups_of(incident.id).await.unwrap().pop().unwrap();
    sb.inject_fault(
        "chat.postMessage",
        incident_bot::sandbox::Fault::Timeout(Duration::ZERO),
        1,
    );
    let past = chrono::Utc::now() - chrono::Duration::milliseconds(100);
    stack.db.backdate_follow_up(overdue.id, past).await.unwrap();
    // (Other steps read channel history too: wait for the DM's own look-up.)
    wait_for(Duration::from_secs(10), || async {
        let dm = sb.dm_channel("U0CAROL")?;
        sb.calls_to("conversations.history")
            .iter()
            .any(|c| c.params["channel"] == dm.as_str())
            .then_some(())
    })
    .await
    .expect("the DM is looked up");

    let private = declare(&stack, 2, "Card data exposure", true).await;
    pin(&stack, 2, &private).await;
    // Carol is not in the private incident: listing checks its members.
    stack.command("U0CAROL", "C0GENERAL", "list").await.unwrap();
    alert_declares(&stack, 3).await;
    stack.settle().await;

    let refused: Vec<String> = sb
        .calls()
        .iter()
        .filter(|c| c.response["ok"] == false)
        .map(|c| format!("{} → {}", c.method, c.response))
        .collect();
    assert_eq!(refused, Vec::<String>::new(), "calls Slack refused");
    let used: BTreeSet<String> = sb.scopes_used().into_iter().collect();
    assert_eq!(
        used,
        requested(),
        "scopes used (left) vs requested by manifest.yml (right)"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_call_outside_the_granted_scopes_answers_missing_scope() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    // A workspace installed from the manifest before `files:write` was added.
    sb.revoke_scopes(&["files:write", "groups:history"]);
    let public = declare(&stack, 1, "Search is slow", false).await;
    stack.command("U0BOB", &public, "pir").await.unwrap();
    let answer = answer_to(&stack, "files.getUploadURLExternal").await;
    assert_eq!(answer["error"], "missing_scope");
    assert_eq!(answer["needed"], "files:write");
    let provided = answer["provided"].as_str().unwrap();
    assert!(
        provided.contains("chat:write") && !provided.contains("files:write"),
        "{provided}"
    );
    let told = wait_for(Duration::from_secs(5), || async {
        sb.ephemerals("U0BOB")
            .into_iter()
            .find(|m| m.text.contains("could not post the review draft"))
    })
    .await;
    assert!(told.is_some(), "the asker hears the draft failed");

    // Private channels need the `groups:` variant: `channels:history` does not read them.
    let private = declare(&stack, 2, "Leaked key", true).await;
    let ts = sb.seed_user_message("U0BOB", &private, "rotated").unwrap();
    sb.add_reaction("U0BOB", &private, &ts, "pushpin").await.unwrap();
    let answer = answer_to(&stack, "conversations.history").await;
    assert_eq!(answer["error"], "missing_scope");
    assert_eq!(answer["needed"], "groups:history");

    // Without `chat:write.public`, a public channel the bot is not in refuses its posts.
    sb.revoke_scopes(&["chat:write.public"]);
    sb.leave_channel(ANNOUNCE_CHANNEL, BOT_USER_ID);
    stack
        .declare("U0ALICE", "C0GENERAL", "Checkout down", json!({}))
        .await
        .unwrap();
    let refused = wait_for(Duration::from_secs(5), || async {
        sb.calls_to("chat.postMessage")
            .into_iter()
            .find(|c| c.params["channel"] == ANNOUNCE_CHANNEL && c.response["ok"] == false)
    })
    .await
    .expect("the announcement is refused");
    assert_eq!(refused.response["error"], "not_in_channel");
}
