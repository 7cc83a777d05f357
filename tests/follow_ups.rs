//! Follow-up actions and post-incident reviews (issue: "Follow-up actions and post-incident
//! reviews: tracked to done"), through the sandbox, on SQLite or PostgreSQL.

mod common;

use common::{assert_slack_happy, declared, stack, stack_with, READY};
use incident_bot::config::Policy;
use incident_bot::demo::{
    demo_policy, fast_options, follow_up_values, resolve_follow_up_values, resolve_values, wait_for, LocalStack,
    ANNOUNCE_CHANNEL,
};
use incident_bot::incident::followup::FollowUpState;
use incident_bot::incident::model::*;
use incident_bot::incident::pir::Delay;
use serde_json::json;
use std::time::Duration;

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .to_string()
}

fn texts(stack: &LocalStack, channel: &str) -> Vec<String> {
    stack.sandbox.messages(channel).into_iter().map(|m| m.text).collect()
}

/// The blocks of `/incident followups` as `user` sees it in `channel`, as JSON text.
async fn follow_up_list(stack: &LocalStack, user: &str, channel: &str) -> String {
    let ack = stack.sandbox.slash_command(user, channel, "followups").await.unwrap();
    ack.payload.unwrap_or_default()["blocks"].to_string()
}

/// The `action` of every `follow_up` event of an incident, oldest first.
async fn follow_up_actions(stack: &LocalStack, id: IncidentId) -> Vec<String> {
    let timeline = stack.db.timeline(id).await.unwrap();
    timeline
        .into_iter()
        .filter(|e| e.kind == "follow_up")
        .map(|e| e.details["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The ephemeral message `user` saw last (its text).
fn last_ephemeral(stack: &LocalStack, user: &str) -> String {
    stack
        .sandbox
        .ephemerals(user)
        .last()
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

async fn resolve(stack: &LocalStack, user: &str, ch: &str) {
    let form = stack.open_form(user, ch, "resolve").await.unwrap();
    stack
        .sandbox
        .submit_view(user, &form.id, resolve_values("Rolled back", "change / deploy", None))
        .await
        .unwrap();
}

#[tokio::test]
async fn follow_ups_are_added_listed_and_closed_by_their_owner() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Refunds failing", "SEV3").await;
    let due = in_days(3);

    // By command: owner, due day and link anywhere in the text.
    let said = stack
        .command(
            "U0BOB",
            &ch,
            &format!("followup <@U0DAVE|dave> Alert on refund errors due {due} <https://tracker.example/OPS-7|OPS-7>"),
        )
        .await
        .unwrap();
    assert!(said.contains("follow-up #1"), "{said}");
    // By the card's button and its form.
    sb.click_button(
        "U0ALICE",
        &ch,
        inc.card_ts.as_deref().unwrap(),
        "incident_follow_up",
        &inc.id.0.to_string(),
    )
    .await
    .unwrap();
    let form = wait_for(Duration::from_secs(3), || async {
        sb.views_opened()
            .into_iter()
            .rev()
            .find(|v| v.callback_id == "follow_up")
    })
    .await
    .expect("the follow-up form opens");
    sb.submit_view(
        "U0ALICE",
        &form.id,
        follow_up_values("Write the runbook", None, None, None),
    )
    .await
    .unwrap();
    // And from the resolve form: one per line, sharing owner and due day.
    let form = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    let mut values = resolve_values("Rolled back", "change / deploy", None);
    resolve_follow_up_values(
        &mut values,
        "Canary deploys\n\n  Load test refunds  ",
        Some("U0CAROL"),
        Some(&due),
    );
    sb.submit_view("U0BOB", &form.id, values).await.unwrap();
    stack.settle().await;

    let stored = stack.db.follow_ups_of(inc.id).await.unwrap();
    let summary: Vec<(i64, &str, Option<&str>, Option<String>)> = stored
        .iter()
        .map(|f| {
            (
                f.seq,
                f.text.as_str(),
                f.owner.as_ref().map(UserId::as_str),
                f.due.map(|d| d.to_string()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "Alert on refund errors OPS-7", Some("U0DAVE"), Some(due.clone())),
            (2, "Write the runbook", None, None),
            (3, "Canary deploys", Some("U0CAROL"), Some(due.clone())),
            (4, "Load test refunds", Some("U0CAROL"), Some(due.clone())),
        ]
    );
    assert_eq!(stored[0].link.as_deref(), Some("https://tracker.example/OPS-7"));
    assert!(stored.iter().all(|f| f.state == FollowUpState::Open));
    assert_eq!(
        follow_up_actions(&stack, inc.id).await,
        ["created"; 4],
        "one timeline event per follow-up"
    );
    let channel = sb.channel(&ch).unwrap();
    assert!(
        ["U0DAVE", "U0CAROL"]
            .iter()
            .all(|u| channel.members.iter().any(|m| m == u)),
        "owners are invited"
    );
    assert!(texts(&stack, &ch)
        .iter()
        .any(|t| t.contains("#1") && t.contains("<@U0DAVE>")));

    // In the channel: this incident's follow-ups, each open one with a Done button.
    let blocks = follow_up_list(&stack, "U0CAROL", &ch).await;
    assert_eq!(blocks.matches("follow_up_done").count(), 4, "{blocks}");
    // Anywhere else: the caller's own first.
    let mine = sb
        .slash_command("U0DAVE", "C0GENERAL", "followups")
        .await
        .unwrap()
        .payload
        .unwrap();
    let first = mine["blocks"][1]["text"]["text"].as_str().unwrap().to_string();
    assert!(first.contains("INC-1 #1") && first.contains("<@U0DAVE>"), "{first}");

    // Carol is neither owner nor SPOC: refused, nothing changes.
    let list_ts = sb.ephemerals("U0CAROL").last().unwrap().ts.clone();
    let id1 = stored[0].id.to_string();
    sb.click_button("U0CAROL", &ch, &list_ts, "follow_up_done", &id1)
        .await
        .unwrap();
    let refused = wait_for(Duration::from_secs(3), || async {
        Some(last_ephemeral(&stack, "U0CAROL")).filter(|t| t.contains("Only its owner"))
    })
    .await;
    assert!(refused.is_some(), "{}", last_ephemeral(&stack, "U0CAROL"));
    assert_eq!(
        stack.db.follow_up(stored[0].id).await.unwrap().unwrap().state,
        FollowUpState::Open
    );
    // Dave, the owner, closes it from his own list; others see who did.
    let dave_ts = sb.ephemerals("U0DAVE").last().unwrap().ts.clone();
    sb.click_button("U0DAVE", "C0GENERAL", &dave_ts, "follow_up_done", &id1)
        .await
        .unwrap();
    let done = wait_for(Duration::from_secs(3), || async {
        stack
            .db
            .follow_up(stored[0].id)
            .await
            .unwrap()
            .filter(|f| f.state == FollowUpState::Done)
    })
    .await
    .expect("the owner closes it");
    assert_eq!(done.closed_by.as_ref().map(UserId::as_str), Some("U0DAVE"));
    // The SPOC drops #2 by command; a second close is refused with who did it.
    let said = stack.command("U0BOB", &ch, "followup wontdo #2").await.unwrap();
    assert!(said.contains("#2 is won't do"), "{said}");
    let again = stack.command("U0BOB", &ch, "followup done 1").await.unwrap();
    assert!(again.contains("already done by <@U0DAVE>"), "{again}");
    let missing = stack.command("U0BOB", &ch, "followup done 9").await.unwrap();
    assert!(missing.contains("no follow-up #9"), "{missing}");
    stack.settle().await;
    assert!(texts(&stack, &ch)
        .iter()
        .any(|t| t.contains("<@U0DAVE> marked follow-up #1") && t.contains("done")));
    let blocks = follow_up_list(&stack, "U0CAROL", &ch).await;
    assert_eq!(
        blocks.matches("follow_up_done").count(),
        2,
        "only the open ones keep a button"
    );
    assert!(blocks.contains("done by <@U0DAVE>"), "{blocks}");
    assert_eq!(
        follow_up_actions(&stack, inc.id).await,
        ["created", "created", "created", "created", "done", "wont_do"]
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn bad_follow_ups_get_a_usage_message_and_store_nothing() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Checkout slow", "SEV3").await;
    let events = stack.db.timeline(inc.id).await.unwrap().len();
    let yesterday = in_days(-1);
    for (text, problem) in [
        (
            "followup <@U0NOBODY|ghost> Fix the pool".to_string(),
            "cannot find the user",
        ),
        (format!("followup Fix the pool due {yesterday}"), "in the past"),
        ("followup Fix the pool due 2026-02-30".to_string(), "not a date"),
        (
            "followup Fix the pool due tomorrow-ish".to_string(),
            "Fix the pool due tomorrow-ish",
        ),
        ("followup <@U0DAVE|dave>".to_string(), "what needs doing"),
        ("followup done 9".to_string(), "no follow-up #9"),
    ] {
        let said = stack.command("U0BOB", &ch, &text).await.unwrap();
        if problem.starts_with("Fix the pool due") {
            // `due` followed by prose is prose: stored as the text, then dropped again below.
            assert!(said.contains("follow-up #1"), "{text}: {said}");
            stack.command("U0BOB", &ch, "followup wontdo 1").await.unwrap();
            continue;
        }
        assert!(said.contains(problem), "{text}: {said}");
        if problem != "no follow-up #9" {
            assert!(said.contains("Usage"), "{text}: {said}");
        }
    }
    let form = stack.open_form("U0BOB", &ch, "followup").await.unwrap();
    for (values, field) in [
        (follow_up_values("", None, None, None), "text"),
        (follow_up_values("x", Some("U0NOBODY"), None, None), "owner"),
        (follow_up_values("x", None, Some(&yesterday), None), "due"),
        (follow_up_values("x", None, None, Some("ftp://files")), "link"),
    ] {
        let ack = sb.submit_view("U0BOB", &form.id, values).await.unwrap();
        let payload = ack.payload.unwrap_or_default();
        assert_eq!(payload["response_action"], "errors", "{field}: {payload}");
        assert!(payload["errors"][field].is_string(), "{field}: {payload}");
    }
    let stored = stack.db.follow_ups_of(inc.id).await.unwrap();
    assert_eq!(stored.len(), 1, "only the prose one, dropped: {stored:?}");
    assert_eq!(stored[0].state, FollowUpState::WontDo);
    // Its two events and bob's (implicit) acknowledgement, nothing else.
    let new: Vec<String> = stack.db.timeline(inc.id).await.unwrap()[events..]
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(new, ["follow_up", "acknowledged", "follow_up"]);
    // Outside an incident channel there is nothing to attach a follow-up to.
    let said = stack.command("U0BOB", "C0GENERAL", "followup Fix it").await.unwrap();
    assert!(said.contains("incident's own channel"), "{said}");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn an_overdue_follow_up_reminds_its_owner_once_per_period() {
    let policy = Policy {
        follow_up_remind_every: Duration::from_secs(2),
        ..demo_policy()
    };
    let stack = stack_with(policy, fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Settlement file late", "SEV3").await;
    stack
        .command(
            "U0BOB",
            &ch,
            &format!("followup <@U0DAVE|dave> Automate the resend due {}", in_days(0)),
        )
        .await
        .unwrap();
    stack
        .command("U0BOB", &ch, &format!("followup Unowned work due {}", in_days(0)))
        .await
        .unwrap();
    let items = stack.db.follow_ups_of(inc.id).await.unwrap();
    assert!(
        items[0].remind_at.is_some() && items[1].remind_at.is_none(),
        "no owner, nobody to remind"
    );
    // Its due day passes.
    let past = chrono::Utc::now() - chrono::Duration::milliseconds(100);
    stack.db.backdate_follow_up(items[0].id, past).await.unwrap();
    let reminders = || async {
        let actions = follow_up_actions(&stack, inc.id).await;
        actions.iter().filter(|a| *a == "reminder").count()
    };
    let dm = wait_for(Duration::from_secs(3), || async {
        let dm = sb.dm_channel("U0DAVE")?;
        sb.messages(&dm).into_iter().find(|m| m.text.contains("is overdue"))
    })
    .await
    .expect("the owner gets a DM");
    assert!(
        dm.text.contains("<@U0DAVE>") && dm.text.contains("#1 of INC-1"),
        "{}",
        dm.text
    );
    // Once for this period: still one a second later.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reminders().await, 1);
    // The next period brings the next one.
    let overdue_dms = || {
        let dm = sb.dm_channel("U0DAVE").unwrap();
        sb.messages(&dm)
            .into_iter()
            .filter(|m| m.text.contains("is overdue"))
            .count()
    };
    let second = wait_for(Duration::from_secs(3), || async { (overdue_dms() == 2).then_some(()) }).await;
    assert!(second.is_some(), "a reminder per period");
    assert_eq!(reminders().await, 2);
    // Done from the DM's button: the reminders stop.
    let dm_channel = sb.dm_channel("U0DAVE").unwrap();
    sb.click_button(
        "U0DAVE",
        &dm_channel,
        &dm.ts,
        "follow_up_done",
        &items[0].id.to_string(),
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(3), || async {
        let f = stack.db.follow_up(items[0].id).await.unwrap()?;
        (f.state == FollowUpState::Done).then_some(())
    })
    .await
    .expect("closed from the DM");
    assert_eq!(stack.db.follow_up(items[0].id).await.unwrap().unwrap().remind_at, None);
    let after = reminders().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reminders().await, after, "no reminder after done");
    stack.settle().await;
    let dms = sb.messages(&dm_channel);
    assert_eq!(dms.iter().filter(|m| m.text.contains("is overdue")).count(), after);
    // Through the click's response_url: shown to Dave in the DM.
    assert!(
        sb.ephemerals("U0DAVE")
            .iter()
            .any(|m| m.channel == dm_channel && m.text.contains("#1 is done")),
        "the click is answered in the DM"
    );
    assert_slack_happy(&stack);
}

/// Reviews: first reminder 1 s after resolving, then every second.
fn review_policy() -> Policy {
    let mut policy = demo_policy();
    policy.pir.first_after = Delay::Fixed(chrono::Duration::seconds(1));
    policy.pir.repeat_every = Delay::Fixed(chrono::Duration::seconds(1));
    policy
}

#[tokio::test]
async fn a_resolved_major_incident_reminds_its_spoc_of_the_review_until_done() {
    let stack = stack_with(review_policy(), fast_options()).await;
    let sb = &stack.sandbox;
    let (major, ch) = declared(&stack, "Card payments down", "SEV1").await;
    let (minor, minor_ch) = declared(&stack, "Portal typo", "SEV3").await;
    resolve(&stack, "U0BOB", &ch).await;
    resolve(&stack, "U0BOB", &minor_ch).await;
    let planned = stack.db.incident(major.id).await.unwrap().pir_remind_at;
    assert!(planned.is_some(), "planned when resolved");
    assert_eq!(
        stack.db.incident(minor.id).await.unwrap().pir_remind_at,
        None,
        "SEV3: no review"
    );

    let reminder = wait_for(Duration::from_secs(4), || async {
        sb.messages(&ch).into_iter().find(|m| m.text.starts_with("📝 <@U0BOB>"))
    })
    .await
    .expect("the SPOC is reminded");
    assert!(
        reminder.text.contains("post-incident review of INC-1"),
        "{}",
        reminder.text
    );
    // Closing waits for the review; nothing changes.
    let refused = stack.command("U0BOB", &ch, "close").await.unwrap();
    assert!(refused.contains("post-incident review"), "{refused}");
    assert_eq!(stack.db.incident(major.id).await.unwrap().status, Status::Resolved);
    // Marked done from the reminder's button: the reminders stop, and close works.
    sb.click_button("U0BOB", &ch, &reminder.ts, "incident_pir_done", &major.id.0.to_string())
        .await
        .unwrap();
    let done = wait_for(Duration::from_secs(3), || async {
        stack.db.incident(major.id).await.unwrap().pir_done_at
    })
    .await;
    assert!(done.is_some());
    stack.settle().await;
    let count = || {
        sb.messages(&ch)
            .into_iter()
            .filter(|m| m.text.starts_with("📝 <@U0BOB>"))
            .count()
    };
    let sent = count();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(count(), sent, "no reminder after done");
    assert_eq!(stack.command("U0BOB", &ch, "close").await.unwrap(), "");
    assert_eq!(stack.db.incident(major.id).await.unwrap().status, Status::Closed);
    assert!(sb
        .messages(&minor_ch)
        .iter()
        .all(|m| !m.text.starts_with("📝 <@U0BOB>")));
    let events: Vec<String> = stack
        .db
        .timeline(major.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "pir")
        .map(|e| e.details["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("scheduled"));
    assert_eq!(events.last().map(String::as_str), Some("done"));
    assert_eq!(events.iter().filter(|a| *a == "reminder").count(), sent);
    // The review done notice reaches stakeholders too.
    assert!(sb
        .messages(ANNOUNCE_CHANNEL)
        .iter()
        .any(|m| m.thread_ts.is_some() && m.text.contains("review of INC-1 is done")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn the_review_draft_is_shared_as_a_file_and_exported_by_the_cli() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Payments | EU outage", "SEV2").await;
    stack
        .command(
            "U0BOB",
            &ch,
            &format!("followup <@U0DAVE|dave> Alert on gateway 5xx due {}", in_days(5)),
        )
        .await
        .unwrap();
    stack.command("U0BOB", &ch, "note failover started").await.unwrap();
    resolve(&stack, "U0BOB", &ch).await;
    stack.settle().await;
    let said = stack.command("U0BOB", &ch, "pir").await.unwrap();
    assert!(said.contains("Drafting"), "{said}");
    let (channel, title, bytes) = wait_for(Duration::from_secs(5), || async { sb.files().into_iter().next() })
        .await
        .expect("the draft is shared");
    assert_eq!(channel, ch);
    assert!(title.contains("INC-1"), "{title}");
    let md = String::from_utf8(bytes).unwrap();
    for needle in [
        "# Post-incident review: INC-1 — Payments | EU outage",
        "| Severity | SEV2",
        "| SPOC | @bob |",
        "time to resolve",
        "| declared |",
        "| note | failover started |",
        "| 1 | Alert on gateway 5xx | @dave |",
        "change / deploy",
        "Rolled back",
    ] {
        assert!(md.contains(needle), "{needle} missing from:\n{md}");
    }

    // The CLI prints the same review from the database, without Slack.
    let url = stack.settings.database_url.clone();
    let run = |args: &[&str]| common::run_cli(&url, &[], args);
    let (code, out, err) = run(&["export", "INC-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("# Post-incident review: INC-1") && out.contains("| 1 | Alert on gateway 5xx | @U0DAVE |"),
        "{out}"
    );
    let (code, out, err) = run(&["export", "1", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["incident"], "INC-1");
    assert_eq!(json["follow_ups"][0]["owner"], "U0DAVE");
    assert!(json["timeline"].as_array().unwrap().len() >= 5);
    let (code, _, err) = run(&["export", "INC-99"]);
    assert_eq!((code, err.trim()), (2, "export: there is no INC-99 in this database"));
    let (code, _, err) = run(&["export", "INC-1", "--format", "pdf"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(inc.number, IncidentNumber(1));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn follow_ups_of_a_private_incident_are_shown_only_to_its_members() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Fraud rule leak",
            json!({ "spoc": "U0BOB", "severity": "SEV2", "private": true }),
        )
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    stack
        .command("U0BOB", &ch, "followup Rotate the leaked rule set secretly")
        .await
        .unwrap();
    let (_, public_ch) = declared(&stack, "Portal slow", "SEV3").await;
    stack
        .command("U0BOB", &public_ch, "followup Tune the portal cache")
        .await
        .unwrap();
    // Carol is not in the private channel: she sees the public one and a count.
    let list = sb
        .slash_command("U0CAROL", "C0GENERAL", "followups")
        .await
        .unwrap()
        .payload
        .unwrap();
    let shown = list.to_string();
    assert!(shown.contains("Tune the portal cache"), "{shown}");
    assert!(
        !shown.contains("Rotate the leaked") && !shown.contains("INC-1 #"),
        "{shown}"
    );
    assert!(shown.contains("1 follow-up(s) of private incidents"), "{shown}");
    // Bob, its SPOC, sees both.
    let list = sb
        .slash_command("U0BOB", "C0GENERAL", "followups")
        .await
        .unwrap()
        .payload
        .unwrap();
    assert!(list.to_string().contains("Rotate the leaked"));
    // In its own channel the list needs no membership lookup: whoever types there is a member
    // (dave, invited as an owner, holds no role the bot could tell from its own records).
    stack
        .command("U0BOB", &ch, "followup <@U0DAVE|dave> Audit the rule access log")
        .await
        .unwrap();
    stack.settle().await;
    let lookups = sb.calls_to("conversations.members").len();
    let here = follow_up_list(&stack, "U0DAVE", &ch).await;
    assert!(here.contains("Rotate the leaked"), "{here}");
    assert_eq!(sb.calls_to("conversations.members").len(), lookups);
    // The follow-up notice stays in the private channel: nothing reaches the announcements.
    stack.settle().await;
    assert!(sb
        .messages(ANNOUNCE_CHANNEL)
        .iter()
        .all(|m| !m.text.contains("Rotate") && !m.text.contains("Fraud")));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn an_owner_who_cannot_be_messaged_is_reminded_in_the_incident_channel() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "Chargebacks stuck", "SEV3").await;
    stack
        .command(
            "U0BOB",
            &ch,
            &format!("followup <@U0DAVE|dave> Replay the queue due {}", in_days(0)),
        )
        .await
        .unwrap();
    stack.settle().await;
    let item = stack.db.follow_ups_of(inc.id).await.unwrap().remove(0);
    // The DM is the next post, and Slack refuses it.
    sb.inject_fault(
        "chat.postMessage",
        incident_bot::sandbox::Fault::ApiError("channel_not_found".into()),
        1,
    );
    stack
        .db
        .backdate_follow_up(item.id, chrono::Utc::now() - chrono::Duration::milliseconds(100))
        .await
        .unwrap();
    let reminder = wait_for(Duration::from_secs(3), || async {
        texts(&stack, &ch).into_iter().find(|t| t.contains("is overdue"))
    })
    .await
    .expect("reminded in the incident channel instead");
    assert!(reminder.contains("<@U0DAVE>"), "{reminder}");
    assert!(sb.dm_channel("U0DAVE").is_none_or(|dm| sb.messages(&dm).is_empty()));
    assert_slack_happy(&stack);
}
