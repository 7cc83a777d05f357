//! Delivery to people and channels as real Slack allows it (issue 11, items 2, 4, 8, 10, 12,
//! 13, 14 and the rate tiers): late replies through `response_url`, per-person invites, the
//! topic set once and last, scheduled reports that cannot block each other, a deleted card
//! posted again, 📌 on a thread reply, membership lookups within the ack budget, and ten
//! declares in a minute under Slack's rate tiers. SQLite, or PostgreSQL with TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack, stack_with, READY};
use incident_bot::config::{Policy, ReportSchedule};
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::incident::model::*;
use incident_bot::sandbox::{Fault, UserKind};
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::time::{Duration, Instant};

async fn incident(stack: &LocalStack, n: i64) -> Incident {
    stack
        .db
        .incident_by_number(IncidentNumber(n))
        .await
        .unwrap()
        .expect("incident stored")
}

fn ephemeral_texts(stack: &LocalStack, user: &str) -> Vec<String> {
    stack.sandbox.ephemerals(user).into_iter().map(|m| m.text).collect()
}

/// Topic lines Slack posted in `channel` (one per `conversations.setTopic`).
fn topic_lines(stack: &LocalStack, channel: &str) -> usize {
    stack
        .sandbox
        .messages(channel)
        .iter()
        .filter(|m| m.text.starts_with("set the channel topic: "))
        .count()
}

// ----- item 2: late replies -----

#[tokio::test]
async fn the_sandbox_refuses_ephemerals_where_the_bot_is_not_and_serves_response_urls_five_times() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let web = incident_bot::slack::web::SlackWeb::new(&stack.settings.slack).unwrap();
    let dm = sb.open_dm_between("U0ALICE", "U0BOB");
    let refused = web
        .post_ephemeral(&dm, "U0ALICE", SlackMessageContent::new().with_text("hi".into()))
        .await;
    assert_eq!(
        refused.unwrap_err().code(),
        Some("channel_not_found"),
        "a DM between people"
    );

    // A command typed in that DM carries a response_url that works there, five times.
    sb.slash_command("U0ALICE", &dm, "help").await.unwrap();
    let url = sb.last_envelope().unwrap()["payload"]["response_url"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..=5 {
        let text = format!("late answer {i}");
        web.respond(&url, SlackMessageContent::new().with_text(text))
            .await
            .unwrap();
    }
    let sixth = web
        .respond(&url, SlackMessageContent::new().with_text("sixth".into()))
        .await;
    assert!(sixth.is_err(), "a response_url takes five posts");
    let texts = ephemeral_texts(&stack, "U0ALICE");
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("late answer")).count(),
        5,
        "{texts:?}"
    );
    assert!(sb.messages(&dm).is_empty(), "ephemeral by default");
}

#[tokio::test]
async fn could_not_open_the_form_reaches_a_person_in_a_dm_through_the_response_url() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    let dm = sb.open_dm_between("U0ALICE", "U0BOB");
    sb.inject_fault("views.open", Fault::ApiError("internal_error".into()), 1);
    sb.slash_command("U0ALICE", &dm, "declare Checkout down").await.unwrap();
    let told = wait_for(Duration::from_secs(3), || async {
        ephemeral_texts(&stack, "U0ALICE")
            .into_iter()
            .find(|t| t.contains("could not open the form"))
    })
    .await;
    assert!(told.is_some(), "the person learns the form did not open");
    assert!(
        sb.calls_to("chat.postEphemeral").is_empty(),
        "the response_url answers; chat.postEphemeral cannot reach a DM between people"
    );
    assert_slack_happy(&stack);
}

// ----- item 4: invites -----

#[tokio::test]
async fn the_sandbox_refuses_a_whole_invite_for_one_guest_unless_forced() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.add_user_of_kind("U0GUEST", "guest", UserKind::MultiChannelGuest);
    sb.add_user_of_kind("U0OTHER", "other", UserKind::OtherWorkspace);
    let web = incident_bot::slack::web::SlackWeb::new(&stack.settings.slack).unwrap();
    let channel = web.create_channel("inc-9-invites", false).await.unwrap();
    let client = web.client();
    let token = SlackApiToken::new(incident_bot::sandbox::BOT_TOKEN.into());
    let session = client.open_session(&token);
    let invite = |users: &str, force: bool| {
        let body = json!({ "channel": channel, "users": users, "force": force });
        let session = &session;
        async move {
            match session
                .http_session_api
                .http_post::<_, Value>("conversations.invite", &body, None)
                .await
            {
                Ok(v) => v,
                Err(SlackClientError::ApiError(e)) => {
                    serde_json::from_str(e.http_response_body.as_deref().unwrap_or("{}")).unwrap()
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let all_or_nothing = invite("U0ALICE,U0GUEST,U0OTHER", false).await;
    assert_eq!(all_or_nothing["ok"], false);
    assert_eq!(all_or_nothing["error"], "user_is_restricted");
    assert_eq!(
        all_or_nothing["errors"],
        json!([
            { "user": "U0GUEST", "ok": false, "error": "user_is_restricted" },
            { "user": "U0OTHER", "ok": false, "error": "org_user_not_in_team" },
        ])
    );
    assert!(!sb.channel(&channel).unwrap().members.contains(&"U0ALICE".to_string()));
    let forced = invite("U0ALICE,U0GUEST", true).await;
    assert_eq!(forced["ok"], true, "{forced}");
    assert_eq!(forced["errors"][0]["error"], "user_is_restricted");
    assert!(sb.channel(&channel).unwrap().members.contains(&"U0ALICE".to_string()));
    let again = invite("U0ALICE,U0BOB", false).await;
    assert_eq!(again["error"], "already_in_channel", "{again}");
    assert!(!sb.channel(&channel).unwrap().members.contains(&"U0BOB".to_string()));
}

#[tokio::test]
async fn each_person_is_invited_alone_and_a_refusal_is_said_once_never_retried() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.add_user_of_kind("U0GUEST", "guest", UserKind::MultiChannelGuest);
    let payload = stack
        .declare("U0ALICE", "C0GENERAL", "Refunds stuck", json!({ "spoc": "U0GUEST" }))
        .await
        .unwrap();
    assert!(payload.is_none_or(|p| p.get("errors").is_none()), "a guest can be SPOC");
    let ch = stack.wait_ready(1, READY).await.unwrap();
    stack.settle().await;
    let channel = sb.channel(&ch).unwrap();
    assert!(channel.members.contains(&"U0ALICE".to_string()), "the declarer is in");
    assert!(!channel.members.contains(&"U0GUEST".to_string()));
    let invites = sb.calls_to("conversations.invite");
    assert_eq!(invites.len(), 2, "one call per person, no retry of a refusal");
    let said: Vec<String> = sb
        .messages(&ch)
        .into_iter()
        .map(|m| m.text)
        .filter(|t| t.contains("could not add"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("<@U0GUEST>") && said[0].contains("guest"),
        "{}",
        said[0]
    );
    let timeline = stack.db.timeline(incident(&stack, 1).await.id).await.unwrap();
    assert!(timeline
        .iter()
        .any(|e| e.kind == "side_effect_failed" && e.details["refused"][0]["user"] == "U0GUEST"));

    // A role for someone already in the channel: already_in_channel is success for them.
    let answer = stack.command("U0ALICE", &ch, "role comms <@U0ALICE>").await.unwrap();
    assert!(!answer.contains("⚠️"), "{answer}");
    stack.settle().await;
    assert!(
        sb.messages(&ch)
            .iter()
            .filter(|m| m.text.contains("could not add"))
            .count()
            == 1
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn deactivated_and_bot_users_are_refused_as_spoc_role_or_handover() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.add_user_of_kind("U0GONE", "gone", UserKind::Deactivated);
    stack
        .declare("U0ALICE", "C0GENERAL", "Search slow", json!({}))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    for command in [
        "spoc <@U0GONE|gone>",
        "role comms <@U0GONE>",
        "handover <@U0GONE> please take over",
    ] {
        let answer = stack.command("U0ALICE", &ch, command).await.unwrap();
        assert!(answer.contains("deactivated"), "{command}: {answer}");
    }
    let answer = stack.command("U0ALICE", &ch, "spoc <@U0BOT>").await.unwrap();
    assert!(answer.contains("bot"), "{answer}");
    let answer = stack.command("U0ALICE", &ch, "spoc <@U0NOBODY>").await.unwrap();
    assert!(answer.contains("cannot find"), "{answer}");
    assert_eq!(incident(&stack, 1).await.spoc.as_str(), "U0ALICE", "unchanged");

    // In the declare form, under the SPOC field.
    let payload = stack
        .declare("U0ALICE", "C0GENERAL", "Other", json!({ "spoc": "U0GONE" }))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        payload["errors"]["spoc"]
            .as_str()
            .is_some_and(|e| e.contains("deactivated")),
        "{payload}"
    );
    assert_eq!(stack.db.incident_count().await.unwrap(), 1);
    assert_slack_happy(&stack);
}

// ----- item 8: topic -----

#[tokio::test]
async fn the_topic_is_set_after_card_and_announcement_and_only_when_it_changes() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare("U0ALICE", "C0GENERAL", "Payments API 500s", json!({}))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    stack.settle().await;
    let calls = sb.calls();
    let position = |method: &str, channel: &str| {
        calls
            .iter()
            .position(|c| c.method == method && c.params["channel"] == channel)
            .unwrap_or_else(|| panic!("{method} in {channel}"))
    };
    let topic = position("conversations.setTopic", &ch);
    assert!(topic > position("chat.postMessage", &ch), "after the card");
    assert!(
        topic > position("chat.postMessage", ANNOUNCE_CHANNEL),
        "after the announcement"
    );
    assert_eq!(topic_lines(&stack, &ch), 1);

    // A note changes the card, not the topic: no setTopic, no topic line.
    stack
        .command("U0ALICE", &ch, "note checking the load balancer")
        .await
        .unwrap();
    stack.settle().await;
    assert_eq!(sb.calls_to("conversations.setTopic").len(), 1);
    assert_eq!(topic_lines(&stack, &ch), 1);

    // A new severity changes it.
    stack.command("U0ALICE", &ch, "severity SEV2").await.unwrap();
    stack.settle().await;
    assert_eq!(sb.calls_to("conversations.setTopic").len(), 2);
    assert!(sb.channel(&ch).unwrap().topic.starts_with("SEV2"));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_rate_limited_topic_never_holds_up_the_card_or_the_announcement() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.inject_fault("conversations.setTopic", Fault::RateLimited { retry_after_secs: 30 }, 1);
    let started = Instant::now();
    stack
        .declare("U0ALICE", "C0GENERAL", "Login errors", json!({}))
        .await
        .unwrap();
    let announced = wait_for(READY, || async {
        let inc = stack.db.incident_by_number(IncidentNumber(1)).await.ok()??;
        let pinned = sb
            .channel(inc.channel_id.as_deref()?)?
            .pins
            .contains(inc.card_ts.as_ref()?);
        (pinned && inc.announce_ts.is_some()).then_some(())
    })
    .await;
    assert!(announced.is_some(), "card and announcement within {READY:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not behind the topic's Retry-After"
    );
}

// ----- item 10: scheduled reports -----

#[tokio::test]
async fn a_schedule_that_cannot_post_neither_blocks_the_others_nor_retries_forever() {
    let good = ReportSchedule {
        cron: "*/2 * * * * *".into(), // every 2 seconds, for the test
        period: "weekly".into(),
        channel: "C0GENERAL".into(),
    };
    // A private channel the bot is not in: Slack says channel_not_found.
    let broken = ReportSchedule {
        channel: "C0SECRET".into(),
        ..good.clone()
    };
    let policy = Policy {
        reports: vec![broken.clone(), good.clone()],
        ..demo_policy()
    };
    let mut stack = stack_with(policy, fast_options()).await;
    tokio::time::sleep(Duration::from_millis(6_200)).await;
    stack.stop_bot().await;
    let sb = &stack.sandbox;
    let posted = sb
        .messages("C0GENERAL")
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("Incident report"))
        .count();
    assert!(posted >= 2, "the working schedule posted {posted} time(s)");
    let tries = sb
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.params["channel"] == "C0SECRET")
        .count();
    assert!(
        (1..=5).contains(&tries),
        "the broken schedule tries each slot once, not again and again: {tries}"
    );
    let key = incident_bot::slack::report::schedule_key(&broken);
    assert_eq!(
        stack.db.report_slots_fired(&key).await.unwrap() as usize,
        tries,
        "given-up slots stay claimed: no replica retries them"
    );
}

// ----- item 12: deleted card -----

#[tokio::test]
async fn a_deleted_card_is_posted_again_and_pinned() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare("U0ALICE", "C0GENERAL", "Queue backlog", json!({}))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let old = incident(&stack, 1).await.card_ts.unwrap();
    sb.delete_message(&ch, &old);
    stack.command("U0ALICE", &ch, "severity SEV2").await.unwrap();
    let new = wait_for(READY, || async {
        let ts = incident(&stack, 1).await.card_ts?;
        (ts != old && sb.channel(&ch)?.pins.contains(&ts)).then_some(ts)
    })
    .await
    .expect("a new card, pinned");
    let card = sb.messages(&ch).into_iter().find(|m| m.ts == new).unwrap();
    assert!(card.blocks.to_string().contains("SEV2"), "the card shows the change");
    stack.settle().await;
    let timeline = common::event_kinds(&stack, incident(&stack, 1).await.id).await;
    assert!(!timeline.contains(&"side_effect_failed".to_string()), "{timeline:?}");
    assert_slack_happy(&stack);
}

// ----- item 13: 📌 on a thread reply -----

#[tokio::test]
async fn a_pinned_thread_reply_is_noted_with_its_own_text() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare("U0ALICE", "C0GENERAL", "DNS flapping", json!({}))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let parent = sb
        .seed_user_message("U0BOB", &ch, "resolver errors since 10:02")
        .unwrap();
    let reply = sb
        .seed_user_reply("U0CAROL", &ch, &parent, "rolled back the resolver config")
        .unwrap();
    sb.add_reaction("U0CAROL", &ch, &reply, "pushpin").await.unwrap();
    let id = incident(&stack, 1).await.id;
    let noted = wait_for(Duration::from_secs(3), || async {
        stack.db.timeline(id).await.ok()?.into_iter().find(|e| e.kind == "note")
    })
    .await
    .expect("a note on the timeline");
    assert!(
        noted.details.to_string().contains("rolled back the resolver config"),
        "{}",
        noted.details
    );
    assert_slack_happy(&stack);
}

// ----- item 14: membership lookups -----

#[tokio::test]
async fn list_answers_within_the_ack_budget_with_several_private_incidents_and_slow_lookups() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    for n in 1..=4 {
        stack
            .declare(
                "U0ALICE",
                "C0GENERAL",
                &format!("Secret {n}"),
                json!({ "private": true }),
            )
            .await
            .unwrap();
        stack.wait_ready(n, READY).await.unwrap();
    }
    // Each lookup takes 1.5 s: one after the other they would take 6 s.
    sb.inject_fault("conversations.members", Fault::Slow(Duration::from_millis(1500)), 4);
    let ack = sb.slash_command("U0DAVE", "C0GENERAL", "list").await.unwrap();
    assert!(ack.latency < Duration::from_secs(2), "ack took {:?}", ack.latency);
    let text = ack
        .payload
        .as_ref()
        .and_then(|p| p["text"].as_str())
        .unwrap_or_default();
    assert!(text.contains("⏳"), "{text}");
    let late = wait_for(Duration::from_secs(4), || async {
        ephemeral_texts(&stack, "U0DAVE")
            .into_iter()
            .find(|t| t.contains("🔒 4 private incident(s)"))
    })
    .await;
    assert!(
        late.is_some(),
        "the list follows: {:?}",
        ephemeral_texts(&stack, "U0DAVE")
    );
    assert_eq!(
        sb.calls_to("conversations.members").len(),
        4,
        "once per private incident"
    );
    assert!(!late.unwrap().contains("Secret"), "private incidents stay hidden");

    // Asked again at once: the memberships are cached, the answer is in the ack.
    let again = stack.command("U0DAVE", "C0GENERAL", "followups").await.unwrap();
    assert!(!again.contains("⏳"), "{again}");
    let again = stack.command("U0DAVE", "C0GENERAL", "list").await.unwrap();
    assert!(!again.contains("⏳") && !again.contains("Secret"), "{again}");
    assert_eq!(sb.calls_to("conversations.members").len(), 4, "cached");

    // The bot's own invite forgets the cached list: Dave sees the incident at once.
    let ch = incident(&stack, 1).await.channel_id.unwrap();
    // (As a follow-up's owner Dave is invited but not named on the incident: only Slack's
    // member list says he is in.)
    stack
        .command("U0ALICE", &ch, "followup <@U0DAVE> check the resolver")
        .await
        .unwrap();
    stack.settle().await;
    let again = stack.command("U0DAVE", "C0GENERAL", "list").await.unwrap();
    assert!(again.contains("Secret 1"), "{again}");
    assert_slack_happy(&stack);
}

// ----- rate tiers -----

#[tokio::test]
async fn ten_declares_in_a_minute_under_slacks_rate_tiers_all_get_channel_card_and_announcement() {
    let stack = stack().await;
    let sb = &stack.sandbox;
    sb.set_rate_tiers(true);
    let started = Instant::now();
    let mut declared_at = Vec::new();
    for n in 1..=10 {
        declared_at.push(Instant::now());
        let payload = stack
            .declare("U0ALICE", "C0GENERAL", &format!("Burst {n}"), json!({}))
            .await
            .unwrap();
        assert!(payload.is_none_or(|p| p.get("errors").is_none()), "declare {n}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ten declares within a minute"
    );
    let mut waits = Vec::new();
    for n in 1..=10 {
        let ch = stack.wait_ready(n, Duration::from_secs(90)).await.unwrap();
        waits.push(declared_at[n as usize - 1].elapsed());
        let inc = incident(&stack, n).await;
        let channel = sb.channel(&ch).unwrap();
        assert!(
            channel.pins.contains(inc.card_ts.as_ref().unwrap()),
            "INC-{n} card pinned"
        );
        assert!(inc.announce_ts.is_some(), "INC-{n} announced");
    }
    let announcements = sb.messages(ANNOUNCE_CHANNEL).len();
    assert_eq!(announcements, 10, "one announcement each");
    let last = waits.last().copied().unwrap_or_default();
    println!(
        "rate tiers on: 10 declares in {:.1} s; the last incident was ready {:.1} s after its declaration \
         (slowest {:.1} s); Slack answered 429 {} time(s)",
        (declared_at[9] - declared_at[0]).as_secs_f64(),
        last.as_secs_f64(),
        waits.iter().max().copied().unwrap_or_default().as_secs_f64(),
        sb.rate_limited_calls()
    );
    assert_slack_happy(&stack);
}
