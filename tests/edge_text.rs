//! Slack's edge, as strict as Slack (issue 11 items 3, 6, 7; issue 17 item 14): text arrives
//! entity-encoded with `<…>` mentions and links and is stored decoded; control characters never
//! get in; illegal moves are refused before a form opens; resolving right after declaring works.
//! Runs on SQLite, or PostgreSQL with TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack, READY};
use incident_bot::demo::{resolve_values, wait_for, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::*;
use serde_json::json;
use std::time::Duration;

async fn incident(stack: &LocalStack, n: i64) -> Incident {
    stack
        .db
        .incident_by_number(IncidentNumber(n))
        .await
        .unwrap()
        .expect("incident stored")
}

/// Declares INC-1 (`title` as typed) and waits for its channel; returns the channel id.
async fn declared(stack: &LocalStack, title: &str) -> String {
    let errors = stack
        .declare("U0ALICE", "C0GENERAL", title, json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    assert!(errors.as_ref().is_none_or(|p| p.get("errors").is_none()), "{errors:?}");
    stack.wait_ready(1, READY).await.unwrap()
}

/// Every text the bot sent to Slack (messages, ephemerals, views), to look for double escaping.
fn everything_sent(stack: &LocalStack) -> String {
    stack
        .sandbox
        .calls()
        .iter()
        .filter(|c| {
            c.method.starts_with("chat.") || c.method.starts_with("views.") || c.method == "conversations.setTopic"
        })
        .map(|c| c.params.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn an_ampersand_title_is_prefilled_stored_and_named_decoded() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.slash_command("U0ALICE", "C0GENERAL", "declare Payments & refunds <EU>")
        .await
        .unwrap();
    let view = wait_for(Duration::from_secs(3), || async { sb.views_opened().last().cloned() })
        .await
        .expect("modal opened");
    assert_eq!(
        view.raw["blocks"][0]["element"]["initial_value"],
        "Payments & refunds <EU>"
    );
    let command = sb.last_envelope().unwrap();
    assert_eq!(
        command["payload"]["text"], "declare Payments &amp; refunds &lt;EU&gt;",
        "as Slack sends it"
    );

    sb.submit_view(
        "U0ALICE",
        &view.id,
        incident_bot::demo::declare_values("Payments & refunds <EU>", "U0ALICE", &json!({})),
    )
    .await
    .unwrap();
    let channel = stack.wait_ready(1, READY).await.unwrap();
    let inc = incident(&stack, 1).await;
    assert_eq!(inc.title, "Payments & refunds <EU>");
    assert_eq!(sb.channel(&channel).unwrap().name, "inc-1-payments-refunds-eu");
    let announcement = sb.messages(ANNOUNCE_CHANNEL).remove(0);
    let shown = announcement.blocks.to_string();
    assert!(
        shown.contains("Payments &amp; refunds &lt;EU&gt;"),
        "escaped once: {shown}"
    );
    let sent = everything_sent(&stack);
    assert!(
        !sent.contains("&amp;amp;") && !sent.contains("&amp;lt;"),
        "escaped twice: {sent}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn notes_follow_ups_and_review_links_are_stored_decoded() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ch = declared(&stack, "Checkout errors").await;

    // `@bob` becomes `<@U0BOB|bob>`, the URL `<https://…&amp;b=2>`: stored as plain text.
    let said = stack
        .command(
            "U0CAROL",
            &ch,
            "note ask @bob & #general about https://status.example/q?a=1&b=2 (x<y)",
        )
        .await
        .unwrap();
    assert!(said.contains("Noted"), "{said}");
    let inc = incident(&stack, 1).await;
    let note = stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "note")
        .expect("note stored");
    assert_eq!(
        note.details["text"],
        "ask @bob & #general about https://status.example/q?a=1&b=2 (x<y)"
    );
    let timeline = stack.command("U0CAROL", &ch, "timeline").await.unwrap();
    assert!(
        timeline.contains("ask @bob &amp; #general about https://status"),
        "{timeline}"
    );

    let added = stack
        .command(
            "U0CAROL",
            &ch,
            "followup Retry R&D jobs <https://tracker.example/browse?id=7&view=full|OPS-7> @dave",
        )
        .await
        .unwrap();
    assert!(added.contains("Added follow-up #1"), "{added}");
    let follow_up = stack.db.follow_ups_of(inc.id).await.unwrap().remove(0);
    assert_eq!(follow_up.text, "Retry R&D jobs OPS-7");
    assert_eq!(
        follow_up.link.as_deref(),
        Some("https://tracker.example/browse?id=7&view=full")
    );
    assert_eq!(follow_up.owner.as_ref().map(UserId::as_str), Some("U0DAVE"));
    let listed = sb
        .slash_command("U0CAROL", &ch, "followups")
        .await
        .unwrap()
        .payload
        .unwrap_or_default();
    let listed = listed.to_string();
    assert!(
        listed.contains("Retry R&amp;D jobs OPS-7")
            && listed.contains("<https://tracker.example/browse?id=7&amp;view=full|link>"),
        "{listed}"
    );

    let view = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    let ack = sb
        .submit_view(
            "U0BOB",
            &view.id,
            resolve_values("Rolled back & purged", "change / deploy", None),
        )
        .await
        .unwrap();
    assert!(
        ack.payload.as_ref().is_none_or(|p| p.get("errors").is_none()),
        "{:?}",
        ack.payload
    );
    assert_eq!(incident(&stack, 1).await.resolution, "Rolled back & purged");
    stack
        .command("U0BOB", &ch, "pir done https://wiki.example/pir?id=1&rev=2")
        .await
        .unwrap();
    let inc = incident(&stack, 1).await;
    assert_eq!(inc.pir_link.as_deref(), Some("https://wiki.example/pir?id=1&rev=2"));
    stack.settle().await;
    let sent = everything_sent(&stack);
    assert!(
        !sent.contains("&amp;amp;") && !sent.contains("&lt;@U0"),
        "escaped twice: {sent}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_pinned_message_reaches_the_timeline_as_plain_text() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ch = declared(&stack, "Queue backlog").await;
    let ts = sb
        .seed_user_message(
            "U0CAROL",
            &ch,
            "@bob: lag > 5 min & rising, see https://grafana.example/d?x=1&y=2",
        )
        .unwrap();
    sb.add_reaction("U0CAROL", &ch, &ts, "pushpin").await.unwrap();
    let inc = incident(&stack, 1).await;
    let note = wait_for(Duration::from_secs(5), || async {
        stack
            .db
            .timeline(inc.id)
            .await
            .ok()?
            .into_iter()
            .find(|e| e.kind == "note")
    })
    .await
    .expect("the pinned message became a note");
    // conversations.history has `<@U0BOB>` without a name: users.info names it.
    assert_eq!(
        note.details["text"],
        "@bob: lag > 5 min & rising, see https://grafana.example/d?x=1&y=2"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn control_characters_never_reach_the_database_or_slack() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let errors = stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Payments",
            json!({ "spoc": "U0BOB", "title": "Pay\u{0}ments\u{1b}[2J down\u{7}", "description": "line one\r\nline\u{0} two\tend" }),
        )
        .await
        .unwrap();
    assert!(errors.as_ref().is_none_or(|p| p.get("errors").is_none()), "{errors:?}");
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let inc = incident(&stack, 1).await;
    assert_eq!(inc.title, "Payments[2J down");
    assert_eq!(inc.description, "line one\nline two\tend");
    stack
        .command("U0BOB", &ch, "note rollback\u{0} started\u{8}\u{7f}")
        .await
        .unwrap();
    let note = stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "note")
        .expect("note stored");
    assert_eq!(note.details["text"], "rollback started");
    stack.settle().await;
    for call in sb.calls() {
        let sent = call.params.to_string();
        assert!(
            !sent.contains("\\u0000") && !sent.contains("\\u0007") && !sent.contains("\\u001b"),
            "{}: {sent}",
            call.method
        );
    }
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn illegal_moves_are_refused_before_a_form_opens() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ch = declared(&stack, "Search is slow").await;
    let view = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    sb.submit_view("U0BOB", &view.id, resolve_values("Reindexed", "infrastructure", None))
        .await
        .unwrap();
    assert_eq!(incident(&stack, 1).await.status, Status::Resolved);

    let opened = sb.calls_to("views.open").len();
    let said = stack.command("U0BOB", &ch, "resolve").await.unwrap();
    assert!(said.contains("already resolved"), "{said}");
    stack.command("U0BOB", &ch, "pir done").await.unwrap();
    let closed = stack.command("U0BOB", &ch, "close").await.unwrap();
    assert_eq!(incident(&stack, 1).await.status, Status::Closed, "{closed}");
    let said = stack.command("U0BOB", &ch, "update").await.unwrap();
    assert!(said.contains("closed") && said.contains("open incidents"), "{said}");
    let said = stack.command("U0BOB", &ch, "impact").await.unwrap();
    assert!(said.contains("final"), "{said}");
    let said = stack.command("U0BOB", &ch, "resolve").await.unwrap();
    assert!(said.contains("only open incidents"), "{said}");

    // A canceled incident: no update, impact or resolve form either.
    stack
        .declare("U0ALICE", "C0GENERAL", "False alarm", json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    let ch2 = stack.wait_ready(2, READY).await.unwrap();
    stack.command("U0BOB", &ch2, "cancel").await.unwrap();
    for command in ["update", "impact", "resolve"] {
        let said = stack.command("U0BOB", &ch2, command).await.unwrap();
        assert!(said.contains("INC-2 is canceled"), "{command}: {said}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sb.calls_to("views.open").len(),
        opened + 1,
        "only INC-2's declare form opened"
    );
    assert!(sb.calls_to("views.open").iter().all(|c| c.response["ok"] == true));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn resolving_right_after_declaring_clamps_to_the_declaration() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let ch = declared(&stack, "Login loop").await;
    let declared_at = incident(&stack, 1).await.declared_at;
    let view = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    let picker = view.raw["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == "mitigated_at")
        .expect("the restored-at picker");
    assert!(
        picker["element"]["initial_date_time"].is_i64(),
        "whole seconds: {picker}"
    );

    // The picker's whole-second default, a moment before the millisecond declaration.
    let floor = declared_at.timestamp() - i64::from(declared_at.timestamp_subsec_millis() == 0);
    let too_early = sb
        .submit_view(
            "U0BOB",
            &view.id,
            resolve_values(
                "Cleared the cache",
                "infrastructure",
                Some(declared_at.timestamp() - 3600),
            ),
        )
        .await
        .unwrap();
    let errors = &too_early.payload.expect("field errors")["errors"];
    assert!(
        errors["mitigated_at"]
            .as_str()
            .unwrap_or_default()
            .contains("before the impact started"),
        "{errors}"
    );
    assert!(errors.get("summary").is_none(), "{errors}");
    let future = sb
        .submit_view(
            "U0BOB",
            &view.id,
            resolve_values(
                "Cleared the cache",
                "infrastructure",
                Some(chrono::Utc::now().timestamp() + 3600),
            ),
        )
        .await
        .unwrap();
    assert!(future.payload.expect("field errors")["errors"]["mitigated_at"]
        .as_str()
        .unwrap_or_default()
        .contains("future"));

    let ack = sb
        .submit_view(
            "U0BOB",
            &view.id,
            resolve_values("Cleared the cache", "infrastructure", Some(floor)),
        )
        .await
        .unwrap();
    assert!(
        ack.payload.as_ref().is_none_or(|p| p.get("errors").is_none()),
        "{:?}",
        ack.payload
    );
    let inc = incident(&stack, 1).await;
    assert_eq!(inc.status, Status::Resolved);
    assert_eq!(inc.mitigated_at, Some(declared_at), "clamped to the declaration");
    assert_slack_happy(&stack);
}
