//! Customer communications (issue 14) through the sandbox, on SQLite or PostgreSQL: a draft
//! written in the form, approved by the comms role, published; the refusals (self-approval, an
//! unapproved edit, a private incident, a component that does not exist); the customer-update
//! cadence reminder; the figures in reports.

mod common;

use common::{assert_slack_happy, stack_with};
use incident_bot::comms::{ComponentStatus, UpdateState};
use incident_bot::config::Policy;
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::*;
use serde_json::{json, Value};
use std::time::Duration;

fn policy(extra: &str) -> Policy {
    let text = format!(
        r#"
        [status_page]
        title = "Acme status"
        cadence = {{ SEV1 = "30m" }}
        {extra}
        [[status_page.components]]
        name = "Card payments"
        services = ["payments"]
        [[status_page.components]]
        id = "payouts"
        name = "Payouts"
        services = ["settlement"]
        "#
    );
    let table: toml::Table = text.parse().unwrap();
    let base = demo_policy();
    let page =
        incident_bot::comms::config::parse_status_page(&table["status_page"], &base.services, base.timezone).unwrap();
    Policy {
        status_page: Some(page),
        ..base
    }
}

async fn declared(stack: &LocalStack, severity: &str, private: bool) -> (Incident, String) {
    let fields = json!({ "spoc": "U0BOB", "severity": severity, "private": private });
    common::declared_with(stack, "Acquirer BIN table corrupted on auth-7", fields).await
}

fn values(title: &str, message: &str, components: &[&str], status: &str, last: bool) -> Value {
    let option = |v: &str| json!({ "text": { "type": "plain_text", "text": v }, "value": v });
    let picked: Vec<Value> = components.iter().map(|c| option(c)).collect();
    let last: Vec<Value> = if last { vec![option("last")] } else { vec![] };
    json!({
        "public_title": { "public_title": { "type": "plain_text_input", "value": title } },
        "components": { "components": { "type": "multi_static_select", "selected_options": picked } },
        "status": { "status": { "type": "static_select", "selected_option": option(status) } },
        "message": { "message": { "type": "plain_text_input", "value": message } },
        "last": { "last": { "type": "checkboxes", "selected_options": last } },
    })
}

/// The draft messages (with their buttons) in the incident channel.
fn drafts(stack: &LocalStack, channel: &str) -> Vec<incident_bot::sandbox::Message> {
    stack
        .sandbox
        .messages(channel)
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("customer_actions"))
        .collect()
}

async fn customer_events(stack: &LocalStack, inc: &Incident) -> Vec<String> {
    stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "customer")
        .map(|e| e.details["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_draft_is_approved_by_the_comms_role_and_published_once() {
    let mut stack = stack_with(policy(""), fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV1", false).await;
    stack.command("U0BOB", &ch, "role comms <@U0CAROL>").await.unwrap();
    stack.settle().await;

    // The form starts from the incident: the component behind "payments", the status SEV1
    // suggests, a template naming it, and never the internal title.
    let form = stack.open_form("U0ALICE", &ch, "customer").await.unwrap();
    let shown = form.blocks.to_string();
    assert!(
        shown.contains("card-payments") && shown.contains("Major outage"),
        "{shown}"
    );
    assert!(shown.contains("Card payments are unavailable"), "{shown}");
    assert!(
        !shown.contains("BIN table"),
        "the internal title is not offered: {shown}"
    );

    let ack = sb
        .submit_view(
            "U0ALICE",
            &form.id,
            values(
                "Card payments failing",
                "Some card payments fail & we're on it.",
                &["card-payments"],
                "partial_outage",
                false,
            ),
        )
        .await
        .unwrap();
    assert_eq!(ack.payload, None, "accepted: {:?}", ack.payload);
    let draft = wait_for(Duration::from_secs(5), || async {
        drafts(&stack, &ch).into_iter().next()
    })
    .await
    .expect("the draft is posted for approval");
    assert!(draft.blocks.to_string().contains("<@U0CAROL>"), "names the approver");
    let updates = stack.db.customer_updates_of(inc.id).await.unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state, UpdateState::Draft);
    assert_eq!(
        updates[0].message, "Some card payments fail & we're on it.",
        "decoded once"
    );
    assert!(
        stack.db.public_incident_count_for_tests().await.unwrap() == 0,
        "nothing public yet"
    );

    // The SPOC is not the approver while a comms role is held.
    sb.click_button(
        "U0BOB",
        &ch,
        &draft.ts,
        "customer_update_approve",
        &updates[0].id.to_string(),
    )
    .await
    .unwrap();
    // The comms role approves: published.
    sb.click_button(
        "U0CAROL",
        &ch,
        &draft.ts,
        "customer_update_approve",
        &updates[0].id.to_string(),
    )
    .await
    .unwrap();
    let published = wait_for(Duration::from_secs(5), || async {
        let u = stack.db.customer_update(updates[0].id).await.unwrap().unwrap();
        (u.state == UpdateState::Published).then_some(u)
    })
    .await
    .expect("published");
    assert_eq!(published.approved_by.as_ref().map(|u| u.as_str()), Some("U0CAROL"));
    let public = stack
        .db
        .public_incidents_since(chrono::Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(public.len(), 1);
    assert_eq!(public[0].title, "Card payments failing");
    assert_eq!(
        public[0].updates[0].components[0].status,
        ComponentStatus::PartialOutage
    );
    // The draft's message now says published, without the Approve button.
    let edited = wait_for(Duration::from_secs(5), || async {
        sb.messages(&ch)
            .into_iter()
            .find(|m| m.ts == draft.ts && m.blocks.to_string().contains("published"))
    })
    .await
    .expect("the draft message shows it was published");
    assert!(!edited.blocks.to_string().contains("customer_update_approve"));
    let bob_heard: Vec<String> = sb.ephemerals("U0BOB").into_iter().map(|m| m.text).collect();
    assert!(
        bob_heard.iter().any(|t| t.contains("Only <@U0CAROL>")),
        "the SPOC was told who approves: {bob_heard:?}"
    );
    // The next customer update is due a cadence after the publication.
    let due = stack.db.customer_update_due(inc.id).await.unwrap().unwrap();
    assert!(due - published.published_at.unwrap() == chrono::Duration::minutes(30));
    assert_eq!(customer_events(&stack, &inc).await, ["drafted", "published"]);
    stack.stop_bot().await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn refusals_leave_nothing_public() {
    let mut stack = stack_with(policy(""), fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV1", false).await;
    // No comms role: the SPOC approves; the SPOC's own draft needs someone else.
    let form = stack.open_form("U0BOB", &ch, "customer").await.unwrap();
    // A component that does not exist (a crafted submission): a field error, nothing stored.
    let ack = sb
        .submit_view(
            "U0BOB",
            &form.id,
            values("Payments down", "We are on it", &["crypto"], "major_outage", false),
        )
        .await
        .unwrap();
    let errors = ack.payload.expect("field errors")["errors"].clone();
    assert!(
        errors["components"].as_str().unwrap().contains("not a component"),
        "{errors}"
    );
    let ack = sb
        .submit_view(
            "U0BOB",
            &form.id,
            values("Payments down", "   ", &["payouts"], "major_outage", false),
        )
        .await
        .unwrap();
    assert!(ack.payload.unwrap()["errors"]["message"].is_string());
    assert!(stack.db.customer_updates_of(inc.id).await.unwrap().is_empty());
    sb.submit_view(
        "U0BOB",
        &form.id,
        values("Payments down", "We are on it", &["payouts"], "major_outage", false),
    )
    .await
    .unwrap();
    let draft = wait_for(Duration::from_secs(5), || async {
        drafts(&stack, &ch).into_iter().next()
    })
    .await
    .expect("posted for approval");
    let first = stack.db.customer_updates_of(inc.id).await.unwrap().remove(0);
    // Self-approval is refused.
    sb.click_button(
        "U0BOB",
        &ch,
        &draft.ts,
        "customer_update_approve",
        &first.id.to_string(),
    )
    .await
    .unwrap();
    let refused = wait_for(Duration::from_secs(3), || async {
        sb.ephemerals("U0BOB")
            .into_iter()
            .find(|m| m.text.contains("someone else"))
    })
    .await;
    assert!(refused.is_some(), "self-approval is refused");
    // An edit (by Alice) supersedes the draft: approving the old one is refused, only the new
    // one can be published.
    sb.click_button("U0ALICE", &ch, &draft.ts, "customer_update_edit", &first.id.to_string())
        .await
        .unwrap();
    let edit = wait_for(Duration::from_secs(3), || async {
        sb.views_opened()
            .into_iter()
            .rev()
            .find(|v| v.callback_id == "customer_update")
    })
    .await
    .unwrap();
    assert!(
        edit.blocks.to_string().contains("We are on it"),
        "the edit starts from the draft"
    );
    sb.submit_view(
        "U0ALICE",
        &edit.id,
        values(
            "Payouts delayed",
            "Payouts are delayed",
            &["payouts"],
            "partial_outage",
            false,
        ),
    )
    .await
    .unwrap();
    let second = wait_for(Duration::from_secs(5), || async {
        let all = stack.db.customer_updates_of(inc.id).await.unwrap();
        (all.len() == 2).then_some(all)
    })
    .await
    .expect("the edit is a new draft");
    assert_eq!(second[0].state, UpdateState::Superseded);
    // The replaced draft's message loses its buttons.
    let retired = wait_for(Duration::from_secs(5), || async {
        sb.messages(&ch)
            .into_iter()
            .find(|m| m.ts == draft.ts && m.blocks.to_string().contains("replaced by a newer draft"))
    })
    .await
    .expect("the replaced draft is marked");
    assert!(!retired.blocks.to_string().contains("customer_update_approve"));
    let page = stack.settings.policy.status_page.clone().unwrap();
    let bob = UserId::parse("U0BOB").unwrap();
    let now = chrono::Utc::now();
    let refused = stack
        .db
        .approve_customer_update(first.id, &bob, now, "test:old", &page)
        .await
        .unwrap();
    assert!(
        matches!(&refused, Err(incident_bot::db::Refused::Rule(why)) if why.contains("replaced by an edit")),
        "{refused:?}"
    );
    assert_eq!(
        stack.db.public_incident_count_for_tests().await.unwrap(),
        0,
        "nothing unapproved is public"
    );
    stack
        .db
        .approve_customer_update(second[1].id, &bob, now, "test:new", &page)
        .await
        .unwrap()
        .expect("the newest draft is approved");
    let public = stack
        .db
        .public_incidents_since(chrono::Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(public[0].updates.len(), 1);
    assert_eq!(public[0].updates[0].message, "Payouts are delayed");

    // A private incident takes no customer update: refused at the command.
    let (_, private_ch) = declared(&stack, "SEV1", true).await;
    let said = stack.command("U0ALICE", &private_ch, "customer").await.unwrap();
    assert!(said.contains("private"), "{said}");
    stack.stop_bot().await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn without_approval_an_update_is_published_at_once_and_the_last_one_resolves() {
    let mut stack = stack_with(
        policy("comms_approval = false\nchannel = \"C0GENERAL\""),
        fast_options(),
    )
    .await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    let form = stack.open_form("U0BOB", &ch, "customer").await.unwrap();
    sb.submit_view(
        "U0BOB",
        &form.id,
        values(
            "Card payments failing",
            "Investigating",
            &["card-payments"],
            "major_outage",
            false,
        ),
    )
    .await
    .unwrap();
    let form = stack.open_form("U0BOB", &ch, "customer").await.unwrap();
    assert!(
        form.blocks.to_string().contains("Card payments failing"),
        "the last public title is offered"
    );
    sb.submit_view(
        "U0BOB",
        &form.id,
        values(
            "Card payments failing",
            "Fixed",
            &["card-payments"],
            "major_outage",
            true,
        ),
    )
    .await
    .unwrap();
    let public = wait_for(Duration::from_secs(5), || async {
        let p = stack
            .db
            .public_incidents_since(chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap();
        p.into_iter().find(|p| p.resolved_at.is_some())
    })
    .await
    .expect("the last update resolves the public incident");
    assert_eq!(public.updates.len(), 2);
    assert_eq!(public.updates[0].components[0].status, ComponentStatus::Operational);
    // Both were posted to the external comms channel, with public words only.
    let external = wait_for(Duration::from_secs(5), || async {
        let posts: Vec<String> = sb
            .messages("C0GENERAL")
            .into_iter()
            .map(|m| m.blocks.to_string())
            .filter(|b| b.contains("Card payments failing"))
            .collect();
        (posts.len() == 2).then_some(posts)
    })
    .await
    .expect("posted to the comms channel");
    assert!(external
        .iter()
        .all(|b| !b.contains("BIN table") && !b.contains("U0BOB")));
    assert_eq!(
        stack.db.customer_update_due(inc.id).await.unwrap(),
        None,
        "no cadence after the last"
    );
    stack.stop_bot().await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_due_customer_update_reminds_the_approver_once() {
    let mut stack = stack_with(policy(""), fast_options()).await;
    let (inc, ch) = declared(&stack, "SEV1", false).await;
    let due = stack
        .db
        .customer_update_due(inc.id)
        .await
        .unwrap()
        .expect("SEV1 has a cadence");
    assert_eq!(due - inc.declared_at, chrono::Duration::minutes(30));
    stack
        .db
        .backdate_customer_clock_for_tests(inc.id, chrono::Utc::now())
        .await
        .unwrap();
    let reminder = wait_for(Duration::from_secs(5), || async {
        stack
            .sandbox
            .messages(&ch)
            .into_iter()
            .find(|m| m.blocks.to_string().contains("customer_reminder"))
    })
    .await
    .expect("the approver is reminded");
    assert!(
        reminder.text.contains("<@U0BOB>") && reminder.text.contains("is due"),
        "{}",
        reminder.text
    );
    stack.settle().await;
    let reminders = stack
        .sandbox
        .messages(&ch)
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("customer_reminder"))
        .count();
    assert_eq!(reminders, 1, "once, and the next one a cadence later");
    assert_eq!(customer_events(&stack, &inc).await, ["reminder"]);
    // A private incident has no customer cadence.
    let (private, _) = declared(&stack, "SEV1", true).await;
    assert_eq!(stack.db.customer_update_due(private.id).await.unwrap(), None);
    stack.stop_bot().await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn reports_carry_time_to_first_customer_update_and_component_minutes() {
    let mut stack = stack_with(policy("comms_approval = false"), fast_options()).await;
    let sb = &stack.sandbox;
    let (_, ch) = declared(&stack, "SEV1", false).await;
    let form = stack.open_form("U0BOB", &ch, "customer").await.unwrap();
    sb.submit_view(
        "U0BOB",
        &form.id,
        values(
            "Card payments failing",
            "Investigating",
            &["card-payments"],
            "major_outage",
            false,
        ),
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(5), || async {
        let p = stack
            .db
            .public_incidents_since(chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap();
        (!p.is_empty()).then_some(())
    })
    .await
    .expect("published");
    let report = incident_bot::report::Report::build(
        &stack.db,
        &stack.settings.policy,
        incident_bot::report::PeriodSpec::parse(&format!(
            "{}..{}",
            (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d"),
            (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d")
        ))
        .unwrap(),
        None,
        chrono::Utc::now() + chrono::Duration::minutes(10),
    )
    .await
    .unwrap();
    let heads = report.headlines();
    let get = |k: &str| {
        heads
            .iter()
            .find(|h| h.key == k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .value
    };
    assert!(matches!(
        get("time_to_first_customer_update_median"),
        incident_bot::report::Value::Duration(Some(_))
    ));
    assert_eq!(
        get("component_card-payments_major_outage_minutes"),
        incident_bot::report::Value::Count(10)
    );
    assert_eq!(
        get("component_payouts_major_outage_minutes"),
        incident_bot::report::Value::Count(0)
    );
    let csv = incident_bot::report::render::render(&report, incident_bot::report::render::Format::Csv);
    assert!(csv.contains("time_to_first_customer_update_median"), "{csv}");
    stack.stop_bot().await;
}
