//! The change calendar (issue 12) through the sandbox: the `/change` form and its refusals,
//! states, freezes and conflicts, correlation at declare, linking and rollback, the owner's
//! reminders, the digest once across replicas, the calendar feed. On SQLite, and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.

mod common;

use chrono::{Duration, Utc};
use common::{assert_slack_happy, declared, stack_with, READY};
use incident_bot::calendar::{ChangeDraft, ChangeNumber, ChangeState, Freeze, Move};
use incident_bot::config::Policy;
use incident_bot::db::ChangeToStore;
use incident_bot::demo::{change_values, demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::UserId;
use serde_json::{json, Value};
use std::time::Duration as StdDuration;

const CHANGES: &str = "C0CHANGES";

fn policy() -> Policy {
    let mut p = demo_policy();
    p.changes.channel = Some(CHANGES.into());
    p
}

fn texts(stack: &LocalStack, channel: &str) -> Vec<String> {
    stack.sandbox.messages(channel).into_iter().map(|m| m.text).collect()
}

async fn wait_text(stack: &LocalStack, channel: &str, needle: &str) -> String {
    wait_for(StdDuration::from_secs(10), || async {
        texts(stack, channel).into_iter().find(|t| t.contains(needle))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no message containing {needle:?} in {channel}: {:?}",
            texts(stack, channel)
        )
    })
}

fn hours(h: i64) -> i64 {
    (Utc::now() + Duration::hours(h)).timestamp()
}

/// Stores a change directly (as an import would): `start`/`end` hours from now.
async fn stored(stack: &LocalStack, title: &str, services: &[&str], start: i64, end: i64) -> ChangeNumber {
    stored_kind(stack, title, services, start, end, "deployment", None).await
}

async fn stored_kind(
    stack: &LocalStack,
    title: &str,
    services: &[&str],
    start: i64,
    end: i64,
    kind: &str,
    vendor: Option<&str>,
) -> ChangeNumber {
    let now = Utc::now();
    let change = ChangeDraft {
        kind: Some(kind.into()),
        title: title.into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        starts_at: Some(now + Duration::hours(start)),
        ends_at: Some(now + Duration::hours(end)),
        owner: Some(UserId::parse("U0CAROL").unwrap()),
        risk: Some("medium".into()),
        vendor: vendor.map(str::to_string),
        ..ChangeDraft::default()
    }
    .validate(&stack.settings.policy.services)
    .unwrap();
    let item = ChangeToStore {
        change,
        key: format!("test:{}", uuid::Uuid::new_v4()),
        freezes: vec![],
        conflicts: vec![],
    };
    stack.db.create_changes(&[item], "U0CAROL", now, false).await.unwrap()[0].number
}

/// Moves a change as of `at_hours` from now (to place its start or end in the past).
async fn moved(stack: &LocalStack, number: ChangeNumber, m: Move, at_hours: i64) {
    let at = Utc::now() + Duration::hours(at_hours);
    let key = format!("test:{}", uuid::Uuid::new_v4());
    stack
        .db
        .move_change(number, m, None, "U0CAROL", &key, at, false)
        .await
        .unwrap()
        .unwrap();
}

async fn change_kinds(stack: &LocalStack, number: ChangeNumber) -> Vec<String> {
    let c = stack.db.change_by_number(number).await.unwrap().unwrap();
    stack
        .db
        .change_timeline(c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn the_form_plans_numbered_changes_with_their_own_timeline() {
    let stack = stack_with(policy(), fast_options()).await;
    let values = change_values(
        "payments-api v42",
        &["payments"],
        hours(2),
        hours(3),
        "U0ALICE",
        &json!({}),
    );
    let ack = stack
        .plan_change("U0ALICE", "C0GENERAL", "payments-api v42", values)
        .await
        .unwrap();
    assert_eq!(ack, None, "no field errors");
    let view = stack.sandbox.views_opened()[0].clone();
    assert_eq!(view.callback_id, "change_new");
    let first = stack.db.change_by_number(ChangeNumber(1)).await.unwrap().unwrap();
    assert_eq!(first.title, "payments-api v42");
    assert_eq!(first.state, ChangeState::Planned);
    assert_eq!(first.owner.as_str(), "U0ALICE");
    assert_eq!(change_kinds(&stack, ChangeNumber(1)).await, vec!["planned"]);
    // Announced in the changes channel; the planner is told.
    wait_text(&stack, CHANGES, "New change planned").await;
    wait_for(StdDuration::from_secs(5), || async {
        stack
            .sandbox
            .ephemerals("U0ALICE")
            .into_iter()
            .find(|m| m.text.contains("Planned CHG-1 deployment: payments-api v42"))
    })
    .await
    .expect("the planner is told");
    // A redelivered submission of the same form plans nothing new.
    let again = change_values(
        "payments-api v42",
        &["payments"],
        hours(2),
        hours(3),
        "U0ALICE",
        &json!({}),
    );
    let _ = stack.sandbox.submit_view("U0ALICE", &view.id, again).await;
    // The next form is CHG-2 (a different window, so no conflict).
    let values = change_values(
        "ledger migration",
        &["settlement"],
        hours(5),
        hours(6),
        "U0BOB",
        &json!({ "kind": "migration" }),
    );
    assert_eq!(
        stack.plan_change("U0ALICE", "C0GENERAL", "", values).await.unwrap(),
        None
    );
    let second = stack.db.change_by_number(ChangeNumber(2)).await.unwrap().unwrap();
    assert_eq!(second.owner.as_str(), "U0BOB");
    assert!(stack.db.change_by_number(ChangeNumber(3)).await.unwrap().is_none());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let stack = stack_with(policy(), fast_options()).await;
    let cases: Vec<(Value, &str)> = vec![
        (
            change_values("x", &["payments"], hours(3), hours(2), "U0ALICE", &json!({})),
            "end",
        ),
        (
            change_values("x", &["payments"], hours(1), hours(24 * 31 + 1), "U0ALICE", &json!({})),
            "end",
        ),
        (
            change_values("x", &["mainframe"], hours(1), hours(2), "U0ALICE", &json!({})),
            "services",
        ),
        (
            change_values("x", &["payments"], hours(1), hours(2), "U0BOT", &json!({})),
            "owner",
        ),
        (
            change_values(
                "x",
                &["payments"],
                hours(1),
                hours(2),
                "U0ALICE",
                &json!({ "kind": "vendor_maintenance" }),
            ),
            "vendor",
        ),
        (
            change_values("", &["payments"], hours(1), hours(2), "U0ALICE", &json!({})),
            "title",
        ),
    ];
    for (values, field) in cases {
        let ack = stack.plan_change("U0ALICE", "C0GENERAL", "", values).await.unwrap();
        let errors = &ack.unwrap_or_else(|| panic!("field errors expected on {field}"))["errors"];
        assert!(errors[field].is_string(), "expected an error on {field}: {errors}");
    }
    assert!(
        stack.db.change_by_number(ChangeNumber(1)).await.unwrap().is_none(),
        "nothing stored"
    );
    // Commands: usage and clear refusals, nothing stored.
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "explode")
        .await
        .unwrap()
        .contains("Usage"));
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "start")
        .await
        .unwrap()
        .contains("needs a change number"));
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "start 9")
        .await
        .unwrap()
        .contains("There is no CHG-9"));
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "list 2026-13-01..2026-13-02")
        .await
        .unwrap()
        .contains("not a date"));
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "list week service:mainframe")
        .await
        .unwrap()
        .contains("not a service line"));
    assert!(stack
        .change("U0ALICE", "C0GENERAL", "freeze 2026-12-24..2026-12-20 oops")
        .await
        .unwrap()
        .contains("end after"));
    // An unknown slash command is not offered at all.
    assert!(stack
        .sandbox
        .slash_command_named("/deploy", "U0ALICE", "C0GENERAL", "")
        .await
        .is_err());
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn states_move_by_command_and_show_and_list_tell_them() {
    let stack = stack_with(policy(), fast_options()).await;
    let n = stored(&stack, "payments-api v42", &["payments"], 1, 2).await;
    let other = stored(&stack, "checkout copy", &["checkout"], 3, 4).await;
    let said = stack.change("U0BOB", "C0GENERAL", "done 1").await.unwrap();
    assert!(said.contains("has not started"), "{said}");
    assert!(stack
        .change("U0BOB", "C0GENERAL", "start CHG-1")
        .await
        .unwrap()
        .contains("in progress"));
    assert!(stack
        .change("U0BOB", "C0GENERAL", "cancel 1")
        .await
        .unwrap()
        .contains("is in progress"));
    assert!(stack
        .change("U0BOB", "C0GENERAL", "done 1")
        .await
        .unwrap()
        .contains("is done"));
    assert!(stack
        .change("U0BOB", "C0GENERAL", "rollback 1 errors & timeouts")
        .await
        .unwrap()
        .contains("rolled back"));
    assert!(stack
        .change("U0BOB", "C0GENERAL", "rollback 1")
        .await
        .unwrap()
        .contains("cannot be rolled back"));
    assert!(stack
        .change("U0BOB", "C0GENERAL", "cancel 2")
        .await
        .unwrap()
        .contains("canceled"));
    assert_eq!(
        change_kinds(&stack, n).await,
        vec!["planned", "start", "done", "rollback"]
    );
    let c = stack.db.change_by_number(n).await.unwrap().unwrap();
    assert_eq!(c.state, ChangeState::RolledBack);
    assert_eq!(
        c.sequence, 3,
        "each stored move (not the refused ones) bumped the feed's SEQUENCE"
    );
    assert_eq!(
        stack.db.change_by_number(other).await.unwrap().unwrap().state,
        ChangeState::Canceled
    );
    let show = stack.change("U0BOB", "C0GENERAL", "show 1").await.unwrap();
    assert!(show.contains("rollback: errors &amp; timeouts"), "{show}");
    let list = stack
        .change("U0BOB", "C0GENERAL", "list week service:payments")
        .await
        .unwrap();
    assert!(list.contains("CHG-1") && !list.contains("CHG-2"), "{list}");
    let list = stack.change("U0BOB", "C0GENERAL", "list week").await.unwrap();
    assert!(
        list.find("CHG-1").unwrap() < list.find("CHG-2").unwrap(),
        "time order: {list}"
    );
    // Each move was announced.
    wait_text(&stack, CHANGES, "CHG-1 rolled back by <@U0BOB>").await;
    wait_text(&stack, CHANGES, "CHG-2 canceled").await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn freezes_need_an_override_and_conflicts_are_said() {
    let mut p = policy();
    let now = Utc::now();
    p.changes.freezes = vec![Freeze {
        name: "peak weekend".into(),
        starts_at: now + Duration::hours(10),
        ends_at: now + Duration::hours(20),
        services: Some(vec!["checkout".into()]),
    }];
    let stack = stack_with(p, fast_options()).await;
    // Inside the freeze: refused until an override reason is given.
    let inside = |extra: Value| {
        change_values(
            "checkout banner",
            &["checkout"],
            hours(11),
            hours(12),
            "U0ALICE",
            &extra,
        )
    };
    let ack = stack
        .plan_change("U0ALICE", "C0GENERAL", "", inside(json!({})))
        .await
        .unwrap()
        .unwrap();
    assert!(
        ack["errors"]["override"].as_str().unwrap().contains("peak weekend"),
        "{ack}"
    );
    assert!(stack.db.change_by_number(ChangeNumber(1)).await.unwrap().is_none());
    let ack = stack
        .plan_change(
            "U0ALICE",
            "C0GENERAL",
            "",
            inside(json!({ "override": "legal deadline" })),
        )
        .await
        .unwrap();
    assert_eq!(ack, None);
    let c = stack.db.change_by_number(ChangeNumber(1)).await.unwrap().unwrap();
    assert_eq!(c.override_reason.as_deref(), Some("legal deadline"));
    wait_text(&stack, CHANGES, "Override reason: legal deadline").await;
    // Payments is not frozen; but overlapping another payments change is a conflict.
    stored(&stack, "payments-api v41", &["payments"], 11, 13).await; // CHG-2
    let overlapping = |extra: Value| {
        change_values(
            "payments-api v42",
            &["payments"],
            hours(12),
            hours(14),
            "U0ALICE",
            &extra,
        )
    };
    let ack = stack
        .plan_change("U0ALICE", "C0GENERAL", "", overlapping(json!({})))
        .await
        .unwrap()
        .unwrap();
    assert!(ack["errors"]["go_ahead"].as_str().unwrap().contains("CHG-2"), "{ack}");
    assert!(stack.db.change_by_number(ChangeNumber(3)).await.unwrap().is_none());
    let ack = stack
        .plan_change("U0ALICE", "C0GENERAL", "", overlapping(json!({ "go_ahead": true })))
        .await
        .unwrap();
    assert_eq!(ack, None);
    wait_text(&stack, CHANGES, "Conflicts: CHG-2 payments-api v41").await;
    // An open SEV1 on a line is a conflict too.
    declared(&stack, "Settlement down", "SEV1").await;
    let inc = stack
        .db
        .incident_by_number(incident_bot::incident::model::IncidentNumber(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inc.services, vec!["payments"], "the declare helper picks payments");
    let ack = stack
        .plan_change(
            "U0ALICE",
            "C0GENERAL",
            "",
            change_values(
                "fee tweak",
                &["payments"],
                hours(30),
                hours(31),
                "U0ALICE",
                &json!({ "kind": "config_change" }),
            ),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        ack["errors"]["go_ahead"].as_str().unwrap().contains("open SEV1 INC-1"),
        "{ack}"
    );
    // Ad-hoc freeze, then a change inside it is refused without an override.
    let said = stack
        .change(
            "U0ALICE",
            "C0GENERAL",
            &format!("freeze {}..{} service:portal portal launch", day(2), day(2)),
        )
        .await
        .unwrap();
    assert!(said.contains("Freeze “portal launch”"), "{said}");
    let said = stack
        .change(
            "U0ALICE",
            "C0GENERAL",
            &format!("freeze {}..{} overlapping one", day(2), day(3)),
        )
        .await
        .unwrap();
    assert!(said.contains("overlaps the freeze “portal launch”"), "{said}");
    let start = (Utc::now() + Duration::days(2))
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    let ack = stack
        .plan_change(
            "U0ALICE",
            "C0GENERAL",
            "",
            change_values("portal css", &["portal"], start, start + 600, "U0ALICE", &json!({})),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        ack["errors"]["override"].as_str().unwrap().contains("portal launch"),
        "{ack}"
    );
    assert_slack_happy(&stack);
}

fn day(offset: i64) -> String {
    (Utc::now() + Duration::days(offset)).date_naive().to_string()
}

#[tokio::test]
async fn an_incident_is_told_what_changed_on_its_service_lines() {
    let stack = stack_with(policy(), fast_options()).await;
    let in_progress = stored(&stack, "payments-api v42", &["payments"], -48, -47).await;
    moved(&stack, in_progress, Move::Start, -48).await; // still running
    let recent = stored(&stack, "fee config", &["payments", "checkout"], -6, -5).await;
    moved(&stack, recent, Move::Start, -6).await;
    moved(&stack, recent, Move::Done, -4).await; // ended 4 h before
    let old = stored(&stack, "old deploy", &["payments"], -40, -39).await;
    moved(&stack, old, Move::Start, -40).await;
    moved(&stack, old, Move::Done, -30).await; // ended 30 h before: beyond the 24 h look-back
    let other_line = stored(&stack, "portal css", &["portal"], -2, -1).await;
    moved(&stack, other_line, Move::Start, -2).await;
    let future = stored(&stack, "payments-api v43", &["payments"], 5, 6).await;
    let vendor = stored_kind(
        &stack,
        "acquirer window",
        &["settlement"],
        -3,
        -1,
        "vendor_maintenance",
        Some("Globex"),
    )
    .await;

    let (incident, channel) = declared(&stack, "Globex timeouts on card payments", "SEV2").await;
    let post = wait_text(&stack, &channel, "What changed?").await;
    // Newest first: the vendor's window (started 3 h ago), the config change, the deploy.
    let order: Vec<usize> = [vendor, recent, in_progress]
        .iter()
        .map(|n| {
            post.find(&format!("*{n}*"))
                .unwrap_or_else(|| panic!("{n} missing from {post}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first: {post}");
    for excluded in [old, other_line, future] {
        assert!(
            !post.contains(&format!("*{excluded}*")),
            "{excluded} should not be listed: {post}"
        );
    }
    assert!(post.contains("owner <@U0CAROL>"));
    // Recorded on both timelines right after the post.
    let recorded = wait_for(StdDuration::from_secs(5), || async {
        let on_incident = common::event_kinds(&stack, incident.id)
            .await
            .contains(&"changes_correlated".to_string());
        let on_change = change_kinds(&stack, recent).await.contains(&"correlated".to_string());
        (on_incident && on_change).then_some(())
    })
    .await;
    assert!(recorded.is_some(), "on both timelines");
    // The card counts them.
    let card_says = wait_for(StdDuration::from_secs(10), || async {
        let incident = stack.db.incident(incident.id).await.ok()?;
        let ts = incident.card_ts?;
        let card = stack.sandbox.messages(&channel).into_iter().find(|m| m.ts == ts)?;
        card.blocks
            .to_string()
            .contains("3 recent changes on these service lines")
            .then_some(())
    })
    .await;
    assert!(card_says.is_some(), "the card shows the count");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_linked_change_is_on_both_timelines_and_its_rollback_is_recorded() {
    let stack = stack_with(policy(), fast_options()).await;
    let n = stored(&stack, "payments-api v42", &["payments"], 1, 2).await;
    moved(&stack, n, Move::Start, 0).await;
    let (incident, channel) = declared(&stack, "Payments failing", "SEV1").await;
    assert!(stack
        .command("U0BOB", &channel, "change CHG-9")
        .await
        .unwrap()
        .contains("There is no CHG-9"));
    let said = stack.command("U0BOB", &channel, "change CHG-1").await.unwrap();
    assert!(
        said.contains("Linked CHG-1 deployment: payments-api v42 to INC-1"),
        "{said}"
    );
    assert!(stack
        .command("U0BOB", &channel, "change 1")
        .await
        .unwrap()
        .contains("already linked"));
    assert!(common::event_kinds(&stack, incident.id)
        .await
        .contains(&"change_linked".to_string()));
    assert!(change_kinds(&stack, n).await.contains(&"linked".to_string()));
    assert_eq!(stack.db.linked_changes(incident.id).await.unwrap()[0].number, n);
    // The review draft (and the export, which renders the same record) lists it.
    let record = incident_bot::service::ReviewRecord::load(&stack.db, incident.id)
        .await
        .unwrap();
    let names = Default::default();
    let input = record.input(&stack.settings.policy, &names, Utc::now());
    let draft = record.markdown(&input);
    assert!(
        draft.contains("## Linked changes") && draft.contains("**CHG-1** deployment: payments-api v42"),
        "{draft}"
    );
    assert_eq!(record.json(&input)["linked_changes"][0]["number"], 1);
    // The rollback, while linked, is recorded on the incident and said in its channel.
    let said = stack
        .change("U0CAROL", "C0GENERAL", "rollback 1 reverting v42")
        .await
        .unwrap();
    assert!(said.contains("linked to INC-1"), "{said}");
    assert!(common::event_kinds(&stack, incident.id)
        .await
        .contains(&"change_rolled_back".to_string()));
    assert!(change_kinds(&stack, n)
        .await
        .contains(&"rollback_while_linked".to_string()));
    let note = wait_text(&stack, &channel, "was rolled back by <@U0CAROL>").await;
    assert!(note.contains("reverting v42"), "{note}");
    // The resolve form's root cause "change / deploy" offers the linked change.
    let form = stack.open_form("U0BOB", &channel, "resolve").await.unwrap();
    let offered = form.blocks.to_string();
    assert!(
        offered.contains("caused_by") && offered.contains("CHG-1 payments-api v42"),
        "{offered}"
    );
    let mut values = incident_bot::demo::resolve_values("Rolled back v42", "infrastructure", None);
    values["caused_by"] = json!({ "caused_by": { "type": "static_select",
        "selected_option": { "text": { "type": "plain_text", "text": "CHG-1" }, "value": "CHG-1" } } });
    let ack = stack
        .sandbox
        .submit_view("U0BOB", &form.id, values.clone())
        .await
        .unwrap();
    let refused = ack.payload.expect("a field error")["errors"]["caused_by"].to_string();
    assert!(refused.contains("change / deploy"), "{refused}");
    values["root_cause"]["root_cause"]["selected_option"] =
        json!({ "text": { "type": "plain_text", "text": "change / deploy" }, "value": "change / deploy" });
    let ack = stack.sandbox.submit_view("U0BOB", &form.id, values).await.unwrap();
    assert_eq!(ack.payload, None, "resolved: {:?}", ack.payload);
    let kinds = common::event_kinds(&stack, incident.id).await;
    assert!(kinds.contains(&"change_caused".to_string()), "{kinds:?}");
    assert!(change_kinds(&stack, n).await.contains(&"caused_incident".to_string()));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn owners_are_reminded_before_the_start_and_asked_once_after_the_end() {
    let stack = stack_with(policy(), fast_options()).await;
    // Starts in 15 min 2 s: the reminder is due in 2 s.
    let now = Utc::now();
    let start = (now + Duration::minutes(15) + Duration::seconds(2)).timestamp();
    let values = change_values(
        "payments-api v42",
        &["payments"],
        start,
        start + 3600,
        "U0CAROL",
        &json!({}),
    );
    assert_eq!(
        stack.plan_change("U0ALICE", "C0GENERAL", "", values).await.unwrap(),
        None
    );
    let dm = stack.sandbox.open_dm_between("U0BOT", "U0CAROL");
    let reminder = wait_text(&stack, &dm, "Your change starts").await;
    assert!(reminder.contains("/change start 1"), "{reminder}");
    // An in-progress change past its end: its owner is asked once whether it is done.
    let late = stored(&stack, "ledger fix", &["settlement"], -2, -1).await;
    assert!(stack
        .change("U0CAROL", "C0GENERAL", &format!("start {}", late.0))
        .await
        .unwrap()
        .contains("in progress"));
    let asked = wait_text(&stack, &dm, "Is it done?").await;
    assert!(asked.contains(&format!("/change done {}", late.0)));
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    let asks = texts(&stack, &dm).iter().filter(|t| t.contains("Is it done?")).count();
    assert_eq!(asks, 1, "asked once");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn the_digest_is_posted_once_per_slot_across_two_replicas() {
    let mut p = policy();
    p.changes.digest_cron = "*/2 * * * * *".into(); // every 2 s, for the test
    let stack = stack_with(p, fast_options()).await;
    stored(&stack, "payments-api v42", &["payments"], 0, 1).await;
    let replica = incident_bot::app::Bot::start(&stack.settings, stack.db.clone(), fast_options())
        .await
        .unwrap();
    tokio::time::sleep(StdDuration::from_millis(4500)).await;
    replica.stop().await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let digests: Vec<String> = texts(&stack, CHANGES)
        .into_iter()
        .filter(|t| t.starts_with("*Changes"))
        .collect();
    let slots = stack.db.change_jobs_done("digest").await.unwrap() as usize;
    assert!(slots >= 2, "a digest every 2 s: {digests:?}");
    assert_eq!(digests.len(), slots, "each slot posted once: {digests:?}");
    assert!(digests.last().unwrap().contains("payments-api v42"), "{digests:?}");
}

#[tokio::test]
async fn the_calendar_feed_needs_its_token_and_parses_back() {
    let mut p = policy();
    p.changes.calendar_token = Some(incident_bot::config::Secret::new("feed-token-0123456789"));
    p.changes.freezes = vec![Freeze {
        name: "year end".into(),
        starts_at: Utc::now() + Duration::days(20),
        ends_at: Utc::now() + Duration::days(22),
        services: None,
    }];
    let opts = incident_bot::app::BotOptions {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..fast_options()
    };
    let stack = stack_with(p, opts).await;
    let n = stored(
        &stack,
        "payments-api v42, canary; step 1 \\ of 3 with a long title that needs folding past seventy-five octets",
        &["payments"],
        1,
        2,
    )
    .await;
    let canceled = stored(&stack, "checkout copy", &["checkout"], 3, 4).await;
    moved(&stack, canceled, Move::Cancel, 0).await;
    let addr = stack.bot.as_ref().unwrap().http_addr().unwrap();
    let get = |path: String| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    };
    for path in ["/calendar.ics", "/calendar.ics?token=wrong"] {
        let (head, body) = get(path.to_string()).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        assert!(body.is_empty(), "no content: {body}");
    }
    let (head, body) = get("/calendar.ics?token=feed-token-0123456789".into()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/calendar"),
        "{head}"
    );
    // Google's and Outlook's rules: CRLF only, lines of at most 75 octets, escaped text.
    assert!(!body.replace("\r\n", "").contains('\n'), "bare LF");
    assert!(body.split("\r\n").all(|l| l.len() <= 75), "a line over 75 octets");
    assert!(
        body.contains("\\,") && body.contains("\\;") && body.contains("\\\\"),
        "escaping: {body}"
    );
    // A real parser reads it back.
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(body.as_bytes()));
    let calendar = parser.next().expect("one calendar").expect("parses");
    assert_eq!(calendar.events.len(), 3, "two changes and a freeze");
    let prop = |e: &ical::parser::ical::component::IcalEvent, name: &str| {
        e.properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
            .unwrap_or_default()
    };
    let first = calendar
        .events
        .iter()
        .find(|e| prop(e, "SUMMARY").starts_with(&format!("{n} deployment")))
        .expect("the change's event");
    let c = stack.db.change_by_number(n).await.unwrap().unwrap();
    assert_eq!(prop(first, "UID"), format!("chg-{}@incident-bot", c.id));
    assert_eq!(prop(first, "STATUS"), "TENTATIVE");
    assert_eq!(prop(first, "CATEGORIES"), "deployment");
    assert_eq!(prop(first, "SEQUENCE"), "0");
    assert_eq!(prop(first, "DTSTART"), c.starts_at.format("%Y%m%dT%H%M%SZ").to_string());
    assert!(prop(first, "DESCRIPTION").contains("Owner: U0CAROL"));
    let gone = calendar
        .events
        .iter()
        .find(|e| prop(e, "SUMMARY").starts_with(&format!("{canceled} ")))
        .unwrap();
    assert_eq!(prop(gone, "STATUS"), "CANCELLED");
    assert_eq!(prop(gone, "SEQUENCE"), "1", "bumped by the cancel");
    assert!(calendar.events.iter().any(|e| prop(e, "CATEGORIES") == "freeze"));

    // The feed keeps each change's event: a move and a new change show at the next request;
    // the other events are the same text as before.
    // (A second later: an event rendered again would carry a new DTSTAMP.)
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    moved(&stack, n, Move::Start, 0).await;
    let added = stored(&stack, "ledger v8", &["payments"], 5, 6).await;
    let (_, again) = get("/calendar.ics?token=feed-token-0123456789".into()).await;
    let calendar = ical::IcalParser::new(std::io::BufReader::new(again.as_bytes()))
        .next()
        .expect("one calendar")
        .expect("parses");
    assert_eq!(calendar.events.len(), 4, "three changes and a freeze");
    let started = calendar
        .events
        .iter()
        .find(|e| prop(e, "UID") == format!("chg-{}@incident-bot", c.id))
        .unwrap();
    assert_eq!(
        (prop(started, "STATUS"), prop(started, "SEQUENCE")),
        ("CONFIRMED".into(), "1".into())
    );
    assert!(calendar
        .events
        .iter()
        .any(|e| prop(e, "SUMMARY").starts_with(&format!("{added} "))));
    let event_of = |feed: &str, uid: &str| {
        let event = feed.split("BEGIN:VEVENT").find(|e| e.contains(uid))?;
        event.split("END:VEVENT").next().map(str::to_string)
    };
    let uid = format!("UID:chg-{}@incident-bot", gone_id(&stack, canceled).await);
    assert_eq!(
        event_of(&body, &uid),
        event_of(&again, &uid),
        "an unchanged event is kept as it was"
    );
}

async fn gone_id(stack: &LocalStack, number: ChangeNumber) -> i64 {
    stack.db.change_by_number(number).await.unwrap().unwrap().id
}

#[tokio::test]
async fn the_impact_form_correlates_again_for_new_service_lines() {
    let stack = stack_with(policy(), fast_options()).await;
    let n = stored(&stack, "portal css", &["portal"], -2, -1).await;
    moved(&stack, n, Move::Start, -2).await;
    let (incident, channel) = declared(&stack, "Portal slow", "SEV3").await;
    // Declared on payments: nothing about the portal change yet.
    tokio::time::sleep(StdDuration::from_millis(600)).await;
    assert!(!texts(&stack, &channel).iter().any(|t| t.contains("What changed?")));
    let form = stack.open_form("U0BOB", &channel, "impact").await.unwrap();
    let values = incident_bot::demo::impact_values(&["payments", "portal"], "", ["", "", ""], None, None);
    let ack = stack.sandbox.submit_view("U0BOB", &form.id, values).await.unwrap();
    assert_eq!(ack.payload, None, "{:?}", ack.payload);
    let post = wait_text(&stack, &channel, "What changed?").await;
    assert!(post.contains("*CHG-1*"), "{post}");
    let _ = incident;
    let _ = READY;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn reports_count_changes_and_the_change_failure_rate() {
    use incident_bot::report::{metrics::Grade, PeriodSpec, Report, Value};
    let stack = stack_with(policy(), fast_options()).await;
    let d = 24;
    // This period: the last 7 local days, today included; the previous one the 7 before.
    let a = stored(&stack, "A", &["payments"], -6 * d, -6 * d + 1).await;
    moved(&stack, a, Move::Start, -6 * d).await;
    moved(&stack, a, Move::Done, -6 * d + 1).await; // finished, fine
    let b = stored(&stack, "B", &["payments"], -5 * d, -5 * d + 1).await;
    moved(&stack, b, Move::Start, -5 * d).await;
    moved(&stack, b, Move::Rollback, -5 * d + 1).await; // finished, failed (rolled back)
    let c = stored_kind(&stack, "C", &["payments"], -4 * d, -4 * d + 1, "config_change", None).await;
    moved(&stack, c, Move::Start, -4 * d).await;
    moved(&stack, c, Move::Done, -4 * d + 1).await; // finished, failed (linked below)
    let dd = stored(&stack, "D", &["checkout"], -3 * d, -3 * d + 1).await;
    moved(&stack, dd, Move::Start, -3 * d).await;
    moved(&stack, dd, Move::Done, -3 * d + 1).await; // finished, fine
    let e = stored_kind(&stack, "E", &["checkout"], -2 * d, -2 * d + 1, "migration", None).await;
    moved(&stack, e, Move::Cancel, -3 * d).await; // canceled: counted nowhere
                                                  // F: planned inside a freeze with an override, still in progress (not finished).
    let now = Utc::now();
    let f = ChangeDraft {
        kind: Some("deployment".into()),
        title: "F".into(),
        services: vec!["payments".into()],
        starts_at: Some(now - Duration::hours(2 * d)),
        ends_at: Some(now - Duration::hours(2 * d - 1)),
        owner: Some(UserId::parse("U0CAROL").unwrap()),
        risk: Some("high".into()),
        override_reason: Some("regulator deadline".into()),
        ..ChangeDraft::default()
    }
    .validate(&stack.settings.policy.services)
    .unwrap();
    let item = ChangeToStore {
        change: f,
        key: "test:f".into(),
        freezes: vec!["peak".into()],
        conflicts: vec![],
    };
    let f = stack.db.create_changes(&[item], "U0CAROL", now, false).await.unwrap()[0].number;
    moved(&stack, f, Move::Start, -2 * d).await;
    // G, in the previous period: rolled back.
    let g = stored(&stack, "G", &["payments"], -10 * d, -10 * d + 1).await;
    moved(&stack, g, Move::Start, -10 * d).await;
    moved(&stack, g, Move::Rollback, -10 * d + 1).await;
    // Two incidents today on payments; C is linked to the first.
    let (first, _) = declared(&stack, "Fees wrong", "SEV3").await;
    declared(&stack, "Slow checkout", "SEV4").await;
    stack
        .db
        .link_change(first.id, first.number.0, false, c, "U0BOB", Utc::now())
        .await
        .unwrap()
        .unwrap();

    let today = Utc::now().date_naive();
    let spec = PeriodSpec::range(today - Duration::days(6), today).unwrap();
    let report = Report::build(&stack.db, &stack.settings.policy, spec, None, Utc::now())
        .await
        .unwrap();
    let heads = report.headlines();
    let h = |key: &str| {
        let found = heads
            .iter()
            .find(|h| h.key == key)
            .unwrap_or_else(|| panic!("no headline {key}"));
        (found.value, found.previous)
    };
    // Changes started in the period, canceled ones excluded: A, B, C, D, F = 5 (before: G = 1).
    assert_eq!(h("changes"), (Value::Count(5), Value::Count(1)));
    // By kind: deployments A, B, D, F = 4; config changes C = 1.
    assert_eq!(h("changes_deployment"), (Value::Count(4), Value::Count(1)));
    assert_eq!(h("changes_config_change"), (Value::Count(1), Value::Count(0)));
    // Done or rolled back in the period: A, B, C, D = 4; failed: B (rolled back), C (linked) = 2.
    assert_eq!(h("changes_finished"), (Value::Count(4), Value::Count(1)));
    assert_eq!(h("changes_failed"), (Value::Count(2), Value::Count(1)));
    // Change failure rate: 2 ÷ 4 = 50 %; before, G: 1 ÷ 1 = 100 %.
    assert_eq!(
        h("change_failure_rate"),
        (Value::Ratio(Some(0.5)), Value::Ratio(Some(1.0)))
    );
    // Per line. payments: A, B, C finished, B and C failed: 2 ÷ 3. checkout: D, 0 ÷ 1.
    match h("change_failure_rate_payments").0 {
        Value::Ratio(Some(r)) => assert!((r - 2.0 / 3.0).abs() < 1e-9, "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h("change_failure_rate_checkout").0, Value::Ratio(Some(0.0)));
    assert_eq!(
        h("changes_payments"),
        (Value::Count(4), Value::Count(1)),
        "A, B, C, F; before G"
    );
    // Overrides: F. Incidents: INC-1 has a linked change, INC-2 has not.
    assert_eq!(h("freeze_overrides").0, Value::Count(1));
    assert_eq!(report.changes.overrides[0].2, "regulator deadline");
    assert_eq!(h("incidents_with_linked_change").0, Value::Count(1));
    assert_eq!(h("incidents_without_linked_change").0, Value::Count(1));
    // Grades: payments has 2 incidents (B) but a 67 % failure rate (over 45 %: D); checkout A.
    let grade = |line: &str| {
        report
            .current
            .services
            .iter()
            .find(|s| s.service == line)
            .unwrap()
            .grade
    };
    assert_eq!(grade("payments"), Some(Grade::D));
    assert_eq!(grade("checkout"), Some(Grade::A));
    // Every format carries the figure.
    use incident_bot::report::render::{render, Format};
    assert!(render(&report, Format::Markdown).contains("Change failure rate"));
    assert!(render(&report, Format::Csv).contains("change_failure_rate"));
    assert!(render(&report, Format::Json).contains("change_failure_rate"));
    let blocks = incident_bot::slack::report::report_blocks(&report).to_string();
    assert!(blocks.contains("Change failure rate"), "{blocks}");
}

#[tokio::test]
async fn a_private_incident_is_never_named_on_a_change() {
    let stack = stack_with(policy(), fast_options()).await;
    let n = stored(&stack, "payments-api v42", &["payments"], -1, 1).await;
    moved(&stack, n, Move::Start, -1).await;
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Card data exposure",
            json!({ "spoc": "U0BOB", "private": true }),
        )
        .await
        .unwrap();
    let channel = stack.wait_ready(1, READY).await.unwrap();
    wait_text(&stack, &channel, "What changed?").await;
    assert!(stack
        .command("U0BOB", &channel, "change CHG-1")
        .await
        .unwrap()
        .contains("Linked CHG-1"));
    // Carol is not in the private incident: she sees the change, never the incident.
    let show = stack.change("U0CAROL", "C0GENERAL", "show 1").await.unwrap();
    assert!(
        show.contains("linked to a private incident") && !show.contains("INC-1"),
        "{show}"
    );
    let said = stack.change("U0CAROL", "C0GENERAL", "rollback 1").await.unwrap();
    assert!(said.contains("a private incident") && !said.contains("INC-1"), "{said}");
    assert!(texts(&stack, CHANGES)
        .iter()
        .all(|t| !t.contains("INC-1") && !t.contains("Card data")));
    // The incident's own channel is told.
    wait_text(&stack, &channel, "was rolled back by <@U0CAROL>").await;
}

/// Slack posts the change's announcement but answers after the bot gave up: the retry finds
/// the tagged message in the channel instead of announcing the change twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_answered_late_is_posted_once() {
    let opts = incident_bot::app::BotOptions {
        web_timeout: Some(StdDuration::from_millis(800)),
        ..fast_options()
    };
    let stack = stack_with(policy(), opts).await;
    stack.sandbox.inject_fault(
        "chat.postMessage",
        incident_bot::sandbox::Fault::AppliedThenLate(StdDuration::from_millis(1_500)),
        1,
    );
    let now = Utc::now();
    let change = ChangeDraft {
        kind: Some("deployment".into()),
        title: "ledger v7".into(),
        services: vec!["payments".into()],
        starts_at: Some(now + Duration::hours(2)),
        ends_at: Some(now + Duration::hours(3)),
        owner: Some(UserId::parse("U0CAROL").unwrap()),
        risk: Some("low".into()),
        ..ChangeDraft::default()
    }
    .validate(&stack.settings.policy.services)
    .unwrap();
    let item = ChangeToStore {
        change,
        key: "test:late-announcement".into(),
        freezes: vec![],
        conflicts: vec![],
    };
    stack.db.create_changes(&[item], "U0CAROL", now, true).await.unwrap();
    wait_text(&stack, CHANGES, "ledger v7").await;
    // The retry looks, finds it, and is done.
    let looked = wait_for(StdDuration::from_secs(10), || async {
        (!stack.sandbox.calls_to("conversations.history").is_empty()).then_some(())
    })
    .await;
    assert!(looked.is_some(), "the retry looked in the channel first");
    stack.settle().await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let posted = texts(&stack, CHANGES)
        .iter()
        .filter(|t| t.contains("ledger v7"))
        .count();
    assert_eq!(posted, 1, "announced once: {:?}", texts(&stack, CHANGES));
}
