//! Working an incident in its channel (issue: "Work an incident in its channel"), through the
//! sandbox, on SQLite or PostgreSQL.

mod common;

use common::{assert_slack_happy, stack, READY};
use incident_bot::demo::{impact_values, resolve_values, update_values, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::*;
use serde_json::json;

/// Declares `title` as alice with bob as SPOC; returns the incident and its channel.
async fn declared(stack: &LocalStack, title: &str, fields: serde_json::Value) -> (Incident, String) {
    let mut fields = fields;
    if fields.get("spoc").is_none() {
        fields["spoc"] = json!("U0BOB");
    }
    let before = stack.db.incident_count().await.unwrap();
    stack.declare("U0ALICE", "C0GENERAL", title, fields).await.unwrap();
    let channel = stack.wait_ready(before + 1, READY).await.unwrap();
    (current(stack, before + 1).await, channel)
}

async fn current(stack: &LocalStack, n: i64) -> Incident {
    stack.db.incident_by_number(IncidentNumber(n)).await.unwrap().unwrap()
}

fn texts(stack: &LocalStack, channel: &str) -> Vec<String> {
    stack.sandbox.messages(channel).into_iter().map(|m| m.text).collect()
}

#[tokio::test]
async fn the_whole_lifecycle_through_commands_buttons_and_forms() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Payments API 500s", json!({})).await;
    let card_ts = inc.card_ts.clone().unwrap();

    // The SPOC acknowledges with the card's button.
    sb.click_button("U0BOB", &ch, &card_ts, "incident_ack", &inc.id.0.to_string())
        .await
        .unwrap();
    stack.settle().await;
    assert!(current(&stack, 1).await.acknowledged_at.is_some());
    assert!(texts(&stack, &ch).iter().any(|t| t.contains("acknowledged INC-1")));

    // A stakeholder update: posted in the channel and threaded under the announcement.
    let form = stack.open_form("U0BOB", &ch, "update").await.unwrap();
    assert_eq!(form.callback_id, "update");
    let ack = sb
        .submit_view(
            "U0BOB",
            &form.id,
            update_values(
                "identified",
                "Bad deploy of the card router",
                "30% of card payments fail",
                "Rolling back",
            ),
        )
        .await
        .unwrap();
    assert!(ack.payload.is_none_or(|p| p.get("errors").is_none()));
    stack.settle().await;
    let inc = current(&stack, 1).await;
    assert_eq!(inc.status, Status::Identified);
    assert!(inc.identified_at.is_some() && inc.last_update_at.is_some());
    assert!(texts(&stack, &ch)
        .iter()
        .any(|t| t.contains("Update on INC-1") && t.contains("Bad deploy of the card router")));
    let thread: Vec<_> = sb
        .messages(ANNOUNCE_CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts == inc.announce_ts)
        .collect();
    assert!(
        thread.iter().any(|m| m.text.contains("Rolling back")),
        "update threaded under the announcement"
    );

    // Severity change: notice, topic and card follow.
    assert_eq!(stack.command("U0BOB", &ch, "severity SEV2").await.unwrap(), "");
    stack.settle().await;
    let channel = sb.channel(&ch).unwrap();
    assert!(
        channel.topic.starts_with("SEV2 · identified · SPOC <@U0BOB>"),
        "{}",
        channel.topic
    );
    let card = sb.messages(&ch).into_iter().find(|m| m.ts == card_ts).unwrap();
    assert!(
        card.edited && card.blocks.to_string().contains("SEV2"),
        "card updated in place"
    );

    // Shift change: carol takes over with a note; she is invited and mentioned.
    stack
        .command(
            "U0BOB",
            &ch,
            "handover <@U0CAROL|carol> rollback 50% done, watch error rate",
        )
        .await
        .unwrap();
    stack.settle().await;
    assert_eq!(current(&stack, 1).await.spoc.as_str(), "U0CAROL");
    assert!(sb.channel(&ch).unwrap().members.iter().any(|m| m == "U0CAROL"));
    assert!(texts(&stack, &ch)
        .iter()
        .any(|t| t.contains("<@U0BOB> → <@U0CAROL>") && t.contains("watch error rate")));

    // Roles and notes.
    stack.command("U0CAROL", &ch, "role comms <@U0DAVE>").await.unwrap();
    let noted = stack
        .command("U0CAROL", &ch, "note error rate back under 1%")
        .await
        .unwrap();
    assert!(noted.contains("Noted"));

    // Mitigated through an update, then resolved through the form, then closed.
    let form = stack.open_form("U0CAROL", &ch, "update").await.unwrap();
    sb.submit_view(
        "U0CAROL",
        &form.id,
        update_values("mitigated", "Rollback complete", "", "Watching"),
    )
    .await
    .unwrap();
    let form = stack.open_form("U0CAROL", &ch, "resolve").await.unwrap();
    sb.submit_view(
        "U0CAROL",
        &form.id,
        resolve_values("Rolled back the card router", "change / deploy", None),
    )
    .await
    .unwrap();
    // A SEV2 closes only after its post-incident review.
    let refused = stack.command("U0CAROL", &ch, "close").await.unwrap();
    assert!(refused.contains("post-incident review"), "{refused}");
    assert_eq!(current(&stack, 1).await.status, Status::Resolved);
    let done = stack
        .command("U0CAROL", &ch, "pir done <https://wiki.example/pir/inc-1>")
        .await
        .unwrap();
    assert_eq!(done, "");
    assert_eq!(stack.command("U0CAROL", &ch, "close").await.unwrap(), "");
    stack.settle().await;
    let inc = current(&stack, 1).await;
    assert_eq!(inc.status, Status::Closed);
    assert_eq!(inc.pir_link.as_deref(), Some("https://wiki.example/pir/inc-1"));
    assert_eq!(inc.roles.get("comms").map(UserId::as_str), Some("U0DAVE"));
    assert_eq!(inc.root_cause, "change / deploy");
    assert!(inc.mitigated_at.unwrap() <= inc.resolved_at.unwrap());
    assert!(inc.resolved_at.unwrap() <= inc.closed_at.unwrap());

    // A notice shows the incident as it was when the change happened, even if sent later.
    assert!(texts(&stack, &ch)
        .iter()
        .any(|t| t.contains("Update on INC-1* · SEV1 · identified")));

    // Stakeholders read the notices in the order the changes happened.
    let thread: Vec<String> = sb
        .messages(ANNOUNCE_CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts == inc.announce_ts)
        .map(|m| m.text)
        .collect();
    let position = |needle: &str| {
        thread
            .iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {thread:#?}"))
    };
    assert!(position("Bad deploy") < position("SEV2*"));
    assert!(position("SEV2*") < position("Rollback complete"));
    assert!(position("Rollback complete") < position("resolved*"));

    // The history can be rebuilt from events alone.
    let kinds = common::event_kinds(&stack, inc.id).await;
    let expected = [
        "declared",
        "channel_created",
        "announced",
        "acknowledged",
        "status",
        "update",
        "severity",
        "handover",
        "role",
        "note",
        "status",
        "update",
        "status",
        "pir",
        "pir",
        "status",
    ];
    assert_eq!(kinds, expected);
    let timeline = stack.command("U0CAROL", &ch, "timeline").await.unwrap();
    assert!(
        timeline.contains("Timeline of INC-1") && timeline.contains("handover"),
        "{timeline}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn illegal_moves_answer_and_change_nothing() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "Checkout latency", json!({})).await;
    let events = stack.db.timeline(inc.id).await.unwrap().len();
    let refusals = [
        ("U0BOB", "close", "resolve it first"),
        ("U0BOB", "reopen", "only a resolved"),
        ("U0ALICE", "ack", "Only the SPOC"),
        ("U0BOB", "severity SEV1", "already SEV1"),
        ("U0BOB", "severity SEV9", "SEV9"),
        ("U0BOB", "role cook <@U0DAVE>", "comms, tech_lead, scribe"),
        ("U0BOB", "spoc bob", "mention"),
        ("U0BOB", "frobnicate", "Usage"),
    ];
    for (user, command, answer) in refusals {
        let got = stack.command(user, &ch, command).await.unwrap();
        assert!(got.contains(answer), "`{command}` answered {got:?}");
    }
    assert_eq!(
        stack.db.timeline(inc.id).await.unwrap().len(),
        events,
        "nothing recorded"
    );

    // Resolve twice: the second form submission is refused in the form.
    let form = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    stack
        .sandbox
        .submit_view("U0BOB", &form.id, resolve_values("fixed", "capacity", None))
        .await
        .unwrap();
    // No update form on a resolved incident: its submission could only be refused.
    let opened = stack.sandbox.calls_to("views.open").len();
    let said = stack.command("U0BOB", &ch, "update").await.unwrap();
    assert!(
        said.contains("INC-1 is resolved: updates are for open incidents"),
        "{said}"
    );
    assert_eq!(stack.sandbox.calls_to("views.open").len(), opened, "no form opened");
    assert!(stack
        .command("U0BOB", &ch, "cancel")
        .await
        .unwrap()
        .contains("only open incidents"));
    assert_eq!(stack.command("U0BOB", &ch, "reopen").await.unwrap(), "");
    assert_eq!(current(&stack, 1).await.status, Status::Investigating);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn forms_show_field_errors() {
    let stack = stack().await;
    let (_, ch) = declared(&stack, "Settlement files late", json!({})).await;
    let sb = &stack.sandbox;
    let form = stack.open_form("U0BOB", &ch, "update").await.unwrap();
    let ack = sb
        .submit_view("U0BOB", &form.id, update_values("identified", "  ", "", ""))
        .await
        .unwrap();
    assert!(ack.payload.unwrap()["errors"]["known"].is_string());

    let form = stack.open_form("U0BOB", &ch, "impact").await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let bad = [
        (
            impact_values(&["payments"], "EU", ["-5", "", ""], None, None),
            "customers",
        ),
        (
            impact_values(&["payments"], "EU", ["5", "lots", ""], None, None),
            "merchants",
        ),
        (
            impact_values(&["payments"], "EU", ["5", "", ""], Some(now + 3600), None),
            "customers",
        ),
        (
            impact_values(&["payments"], "EU", ["5", "", ""], Some(now - 600), Some(now - 1200)),
            "customers",
        ),
    ];
    for (values, field) in bad {
        let ack = sb.submit_view("U0BOB", &form.id, values.clone()).await.unwrap();
        let payload = ack.payload.unwrap_or_default();
        assert!(payload["errors"][field].is_string(), "{values}: {payload}");
    }
    let ok = impact_values(
        &["payments", "settlement"],
        "EU, UK",
        ["1,200", "35", "18000"],
        Some(now - 1800),
        None,
    );
    let ack = sb.submit_view("U0BOB", &form.id, ok).await.unwrap();
    assert!(ack.payload.is_none_or(|p| p.get("errors").is_none()));
    stack.settle().await;
    let inc = current(&stack, 1).await;
    assert_eq!(inc.services, vec!["payments", "settlement"]);
    assert_eq!(
        (
            inc.footprint.customers,
            inc.footprint.merchants,
            inc.footprint.transactions
        ),
        (Some(1200), Some(35), Some(18000))
    );
    assert_eq!(inc.footprint.regions, vec!["EU", "UK"]);
    assert!(
        sb.messages(&ch)
            .iter()
            .any(|m| m.blocks.to_string().contains("customers 1200")),
        "card shows the footprint"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn incident_commands_elsewhere_say_where_to_run_them() {
    let stack = stack().await;
    for cmd in ["update", "severity SEV2", "resolve", "status", "timeline", "note x"] {
        let answer = stack.command("U0ALICE", "C0GENERAL", cmd).await.unwrap();
        assert!(answer.contains("incident's own channel"), "{cmd}: {answer}");
    }
    assert!(stack.sandbox.views_opened().is_empty());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn private_incidents_stay_private_in_lists() {
    let stack = stack().await;
    let (_, _public) = declared(&stack, "Portal down", json!({ "severity": "SEV2" })).await;
    let (_, private) = declared(
        &stack,
        "Card data exposure",
        json!({ "private": true, "severity": "SEV1" }),
    )
    .await;
    let outsider = stack.command("U0DAVE", "C0GENERAL", "list").await.unwrap();
    assert!(outsider.contains("Portal down"));
    assert!(
        !outsider.contains("Card data exposure") && !outsider.contains(&private),
        "{outsider}"
    );
    assert!(outsider.contains("1 private incident"));
    let member = stack.command("U0ALICE", "C0GENERAL", "list").await.unwrap();
    let (sev1, sev2) = (
        member.find("Card data exposure").unwrap(),
        member.find("Portal down").unwrap(),
    );
    assert!(sev1 < sev2, "worst first: {member}");
    // Private notices never reach the announcement channel.
    stack.command("U0BOB", &private, "severity SEV2").await.unwrap();
    stack.settle().await;
    assert!(stack
        .sandbox
        .messages(ANNOUNCE_CHANNEL)
        .iter()
        .all(|m| !m.text.contains("INC-2")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn double_clicks_and_redeliveries_apply_once() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "App crash loop", json!({})).await;
    let card = inc.card_ts.clone().unwrap();
    stack
        .sandbox
        .click_button("U0BOB", &ch, &card, "incident_ack", &inc.id.0.to_string())
        .await
        .unwrap();
    // A double click: the same button on the same render, a second interaction (new trigger).
    let mut second = stack.sandbox.last_envelope().unwrap();
    second["envelope_id"] = json!(uuid::Uuid::new_v4().to_string());
    second["payload"]["trigger_id"] = json!(format!("{}.2", second["payload"]["trigger_id"].as_str().unwrap()));
    stack.sandbox.send_envelope(second).await.unwrap();
    stack.command("U0BOB", &ch, "severity SEV3").await.unwrap();
    let mut again = stack.sandbox.last_envelope().unwrap();
    again["envelope_id"] = json!(uuid::Uuid::new_v4().to_string());
    stack.sandbox.send_envelope(again).await.unwrap();
    stack.settle().await;
    let kinds = common::event_kinds(&stack, inc.id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "acknowledged").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "severity").count(), 1, "{kinds:?}");
    let told = incident_bot::demo::wait_for(std::time::Duration::from_secs(3), || async {
        stack
            .sandbox
            .ephemerals("U0BOB")
            .into_iter()
            .find(|m| m.text.contains("already acknowledged"))
    })
    .await;
    assert!(told.is_some(), "the second click is answered");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_pushpin_reaction_copies_the_message_onto_the_timeline() {
    let stack = stack().await;
    let (inc, ch) = declared(&stack, "Refunds stuck", json!({})).await;
    let ts = stack
        .sandbox
        .seed_user_message("U0ALICE", &ch, "Refund queue depth 12k at 14:05 <!channel>")
        .unwrap();
    stack.sandbox.add_reaction("U0BOB", &ch, &ts, "pushpin").await.unwrap();
    stack.sandbox.add_reaction("U0BOB", &ch, &ts, "pushpin").await.unwrap(); // redelivered / re-pinned
    stack.sandbox.add_reaction("U0BOB", &ch, &ts, "eyes").await.unwrap(); // other reactions are ignored
    let note = incident_bot::demo::wait_for(std::time::Duration::from_secs(3), || async {
        stack
            .db
            .timeline(inc.id)
            .await
            .ok()?
            .into_iter()
            .find(|e| e.kind == "note")
    })
    .await
    .expect("a note was recorded");
    assert_eq!(note.actor, "U0BOB");
    assert_eq!(
        note.details["text"], "Refund queue depth 12k at 14:05 @channel",
        "stored as plain text (Slack sends the @channel mention as `<!channel>`)"
    );
    assert!(note.details["link"].as_str().unwrap().contains(&ch), "{}", note.details);
    stack.settle().await;
    let notes = stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "note")
        .count();
    assert_eq!(notes, 1);
    let timeline = stack.command("U0BOB", &ch, "timeline").await.unwrap();
    assert!(
        timeline.contains("14:05 @channel") && !timeline.contains("<!channel>"),
        "rendered escaped: {timeline}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn spoc_status_cancel_and_the_card_buttons() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Portal login loop", json!({ "severity": "SEV3" })).await;
    let card = inc.card_ts.clone().unwrap();
    let id = inc.id.0.to_string();

    // The card's buttons open their forms.
    let before = sb.views_opened().len();
    sb.click_button("U0BOB", &ch, &card, "incident_update", &id)
        .await
        .unwrap();
    sb.click_button("U0BOB", &ch, &card, "incident_resolve", &id)
        .await
        .unwrap();
    let opened = incident_bot::demo::wait_for(std::time::Duration::from_secs(3), || async {
        let views = sb.views_opened();
        (views.len() == before + 2).then(|| {
            views[before..]
                .iter()
                .map(|v| v.callback_id.clone())
                .collect::<Vec<_>>()
        })
    })
    .await
    .expect("both forms opened");
    assert_eq!(opened.iter().filter(|c| *c == "update").count(), 1);
    assert_eq!(opened.iter().filter(|c| *c == "resolve").count(), 1);

    assert_eq!(stack.command("U0ALICE", &ch, "spoc <@U0DAVE>").await.unwrap(), "");
    stack.settle().await;
    assert_eq!(current(&stack, 1).await.spoc.as_str(), "U0DAVE");
    assert!(
        sb.channel(&ch).unwrap().members.iter().any(|m| m == "U0DAVE"),
        "the new SPOC is invited"
    );

    let status = sb
        .slash_command("U0CAROL", &ch, "status")
        .await
        .unwrap()
        .payload
        .unwrap();
    assert_eq!(status["response_type"], "ephemeral");
    let shown = status["blocks"].to_string();
    assert!(
        shown.contains("INC-1: Portal login loop") && shown.contains("<@U0DAVE>"),
        "{shown}"
    );
    assert!(!shown.contains("\"actions\""), "status has no buttons");

    assert_eq!(stack.command("U0ALICE", &ch, "cancel").await.unwrap(), "");
    stack.settle().await;
    let inc = current(&stack, 1).await;
    assert_eq!(inc.status, Status::Canceled);
    assert!(inc.canceled_at.is_some());
    let card = sb
        .messages(&ch)
        .into_iter()
        .find(|m| Some(&m.ts) == inc.card_ts.as_ref())
        .unwrap();
    assert!(
        !card.blocks.to_string().contains("incident_resolve"),
        "no buttons on a canceled incident's card"
    );
    assert!(stack
        .command("U0ALICE", "C0GENERAL", "list")
        .await
        .unwrap()
        .contains("No open incidents"));
    assert_slack_happy(&stack);
}
