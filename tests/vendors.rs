//! Vendor escalations (issue 13): vendor tickets raised, answered, escalated, closed and chased
//! at the vendor's SLA, through the sandbox, on SQLite or PostgreSQL.

mod common;

use common::{assert_slack_happy, stack_with};
use incident_bot::app::Bot;
use incident_bot::config::Policy;
use incident_bot::db::Db;
use incident_bot::demo::{demo_policy, fast_options, resolve_values, wait_for, LocalStack};
use incident_bot::incident::model::*;
use incident_bot::vendor::{parse_catalogue, TicketState, VendorTicket};
use serde_json::json;
use std::time::Duration;

/// Adyen (a user group to escalate to) and AWS (a phone number) with SLAs at SEV2 of
/// `first` to first response and `update` between updates; no SLA at other severities.
fn policy(first: &str, update: &str) -> Policy {
    let text = format!(
        r#"
        [[vendors]]
        name = "Adyen"
        services = ["payments"]
        support_url = "https://support.adyen.example"
        escalation = "S0ADYENTAM"
        [vendors.sla.SEV2]
        first_response = "{first}"
        update = "{update}"

        [[vendors]]
        name = "AWS"
        escalation = "Call the TAM on +44 20 7946 0000"
        [vendors.sla.SEV2]
        first_response = "{first}"
        update = "{update}"
        "#
    );
    let table: toml::Table = text.parse().unwrap();
    let base = demo_policy();
    Policy {
        vendors: parse_catalogue(&table["vendors"], &base.services).unwrap(),
        ..base
    }
}

async fn declared(stack: &LocalStack, severity: &str, private: bool) -> (Incident, String) {
    let fields = json!({ "spoc": "U0BOB", "severity": severity, "private": private });
    common::declared_with(stack, "Card authorisations failing", fields).await
}

fn texts(stack: &LocalStack, channel: &str) -> Vec<String> {
    stack.sandbox.messages(channel).into_iter().map(|m| m.text).collect()
}

/// The chase reminders posted in a channel.
fn chases(stack: &LocalStack, channel: &str) -> Vec<incident_bot::sandbox::Message> {
    stack
        .sandbox
        .messages(channel)
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("vendor_chase_actions"))
        .collect()
}

async fn tickets(stack: &LocalStack, inc: &Incident) -> Vec<VendorTicket> {
    stack.db.vendor_tickets_of(inc.id).await.unwrap()
}

/// The `vendor` events of an incident's timeline (their details).
async fn vendor_events(stack: &LocalStack, inc: &Incident) -> Vec<serde_json::Value> {
    stack
        .db
        .timeline(inc.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "vendor")
        .map(|e| e.details)
        .collect()
}

fn card_text(stack: &LocalStack, inc: &Incident, channel: &str) -> String {
    let ts = inc.card_ts.clone().unwrap();
    stack
        .sandbox
        .messages(channel)
        .into_iter()
        .find(|m| m.ts == ts)
        .map(|m| m.blocks.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_form_and_the_quick_path_raise_tickets_shown_on_the_card() {
    let stack = stack_with(policy("1h", "1h"), fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV2", false).await;

    // The quick path: vendor (any case), their reference, a link, what we asked.
    let said = stack
        .command(
            "U0BOB",
            &ch,
            "vendor adyen #48213 <https://ca.adyen.example/t/48213> Card auth 500s & timeouts since 14:02?",
        )
        .await
        .unwrap();
    assert!(
        said.contains("Raised *V1* Adyen") && said.contains("remind the SPOC"),
        "{said}"
    );
    // The form.
    let form = stack.open_form("U0ALICE", &ch, "vendor").await.unwrap();
    let options = form.blocks[1]["element"]["options"].to_string();
    assert!(
        options.contains("Adyen") && options.contains("AWS") && options.contains("other"),
        "{options}"
    );
    let option = |v: &str| json!({ "text": { "type": "plain_text", "text": v }, "value": v });
    let ack = sb
        .submit_view(
            "U0ALICE",
            &form.id,
            json!({
                "vendor": { "vendor": { "type": "static_select", "selected_option": option("AWS") } },
                "reference": { "reference": { "type": "plain_text_input", "value": "case-9931" } },
                "link": { "link": { "type": "url_text_input", "value": null } },
                "asked": { "asked": { "type": "plain_text_input", "value": "Are you throttling eu-west-1?" } },
            }),
        )
        .await
        .unwrap();
    assert_eq!(ack.payload, None, "accepted: {:?}", ack.payload);
    stack.settle().await;

    let stored = tickets(&stack, &inc).await;
    type Row<'a> = (i64, &'a str, &'a str, Option<&'a str>, &'a str, TicketState);
    let summary: Vec<Row> = stored
        .iter()
        .map(|t| {
            (
                t.seq,
                t.vendor.as_str(),
                t.reference.as_str(),
                t.link.as_deref(),
                t.asked.as_str(),
                t.state,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                1,
                "Adyen",
                "48213",
                Some("https://ca.adyen.example/t/48213"),
                "Card auth 500s & timeouts since 14:02?",
                TicketState::Open
            ),
            (
                2,
                "AWS",
                "case-9931",
                None,
                "Are you throttling eu-west-1?",
                TicketState::Open
            ),
        ]
    );
    // Chased at the first-response SLA (1 h at SEV2).
    let first = stored[0].chase_at.unwrap() - stored[0].opened_at;
    assert_eq!(first, chrono::Duration::hours(1));
    // Each ticket has a timeline of its own, and the incident's timeline says so too.
    let events = stack.db.vendor_events_of(inc.id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["opened", "opened"]
    );
    let timeline = vendor_events(&stack, &inc).await;
    assert_eq!(timeline.len(), 2);
    assert!(timeline[0]["summary"]
        .as_str()
        .unwrap()
        .contains("V1 Adyen #48213 raised"));
    // Posted in the channel and shown on the card.
    let posts = texts(&stack, &ch);
    assert!(
        posts.iter().any(
            |t| t.contains("raised *V1* Adyen <https://ca.adyen.example/t/48213|#48213>")
                && t.contains("Card auth 500s &amp; timeouts")
        ),
        "{posts:?}"
    );
    assert!(posts.iter().any(|t| t.contains("*V2* AWS #case-9931")), "{posts:?}");
    let card = card_text(&stack, &inc, &ch);
    assert!(
        card.contains("Waiting on:")
            && card.contains("Adyen #48213 (V1), 0 min")
            && card.contains("AWS #case-9931 (V2)"),
        "{card}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn bad_input_gets_a_short_answer_and_stores_nothing() {
    let stack = stack_with(policy("1h", "1h"), fast_options()).await;
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    stack.command("U0BOB", &ch, "vendor Adyen 1").await.unwrap();
    stack.command("U0BOB", &ch, "vendor close V1 fixed").await.unwrap();
    stack.settle().await;
    let events_before = stack.db.timeline(inc.id).await.unwrap().len();
    for (channel, text, expected) in [
        (
            ch.as_str(),
            "vendor Stripe 77",
            "`Stripe` is not a vendor I know. Vendors: Adyen, AWS, other.",
        ),
        (ch.as_str(), "vendor Adyen", "ticket reference"),
        (ch.as_str(), "vendor Adyen ###", "ticket reference"),
        (
            ch.as_str(),
            "vendor reply V9 they are on it",
            "has no vendor ticket `V9`. Its tickets: V1 Adyen #1.",
        ),
        (ch.as_str(), "vendor reply V1", "Say what the vendor said"),
        (ch.as_str(), "vendor close V1", "already closed by <@U0BOB>"),
        (ch.as_str(), "vendor escalate 1", "already closed"),
        ("C0GENERAL", "vendor Adyen 2", "incident's own channel"),
        ("C0GENERAL", "vendors Stripe", "not a vendor I know"),
    ] {
        let said = stack.command("U0BOB", channel, text).await.unwrap();
        assert!(said.contains(expected), "{text}: {said}");
        assert!(said.chars().count() < 600, "{text}: short: {said}");
    }
    // The form: a missing reference is a field error.
    let form = stack.open_form("U0ALICE", &ch, "vendor").await.unwrap();
    let option = json!({ "text": { "type": "plain_text", "text": "Adyen" }, "value": "Adyen" });
    let ack = stack
        .sandbox
        .submit_view(
            "U0ALICE",
            &form.id,
            json!({
                "vendor": { "vendor": { "type": "static_select", "selected_option": option } },
                "reference": { "reference": { "type": "plain_text_input", "value": "  " } },
                "link": { "link": { "type": "url_text_input", "value": null } },
                "asked": { "asked": { "type": "plain_text_input", "value": null } },
            }),
        )
        .await
        .unwrap();
    let payload = ack.payload.unwrap();
    assert_eq!(payload["response_action"], "errors");
    assert!(payload["errors"]["reference"].as_str().unwrap().contains("reference"));
    stack.settle().await;
    assert_eq!(tickets(&stack, &inc).await.len(), 1, "nothing stored");
    assert_eq!(
        stack.db.timeline(inc.id).await.unwrap().len(),
        events_before,
        "no event"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn reply_escalate_and_close_move_the_states_and_escalation_posts_the_contact() {
    let stack = stack_with(policy("1h", "30m"), fast_options()).await;
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    stack.command("U0BOB", &ch, "vendor Adyen 48213").await.unwrap();
    stack.command("U0BOB", &ch, "vendor AWS 9931").await.unwrap();
    let said = stack
        .command(
            "U0BOB",
            &ch,
            "vendor reply #48213 Acquirer outage on their side, ETA 30 min",
        )
        .await
        .unwrap();
    assert!(said.contains("is responded; next chase"), "{said}");
    let said = stack
        .command("U0BOB", &ch, "vendor escalate V1 no ETA yet")
        .await
        .unwrap();
    assert!(said.contains("is escalated"), "{said}");
    stack.command("U0BOB", &ch, "vendor escalate v2").await.unwrap();
    stack
        .command("U0BOB", &ch, "vendor reply 48213 fixed on their side")
        .await
        .unwrap();
    let said = stack
        .command("U0ALICE", &ch, "vendor close V1 confirmed")
        .await
        .unwrap();
    assert!(said.contains("is closed"), "{said}");
    stack.settle().await;

    let stored = tickets(&stack, &inc).await;
    let (v1, v2) = (&stored[0], &stored[1]);
    assert_eq!((v1.state, v1.escalations, v1.chase_at), (TicketState::Closed, 1, None));
    assert!(v1.first_response_at.is_some() && v1.last_reply_at > v1.first_response_at);
    assert_eq!((v2.state, v2.first_response_at), (TicketState::Escalated, None));
    let kinds: Vec<(i64, String)> = stack
        .db
        .vendor_events_of(inc.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.ticket_id, e.kind))
        .collect();
    let of = |id: i64| {
        kinds
            .iter()
            .filter(|(t, _)| *t == id)
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(v1.id), ["opened", "reply", "escalated", "reply", "closed"]);
    assert_eq!(of(v2.id), ["opened", "escalated"]);
    let posts = texts(&stack, &ch);
    assert!(
        posts
            .iter()
            .any(|t| t.contains("Adyen replied on *V1*") && t.contains("Acquirer outage")),
        "{posts:?}"
    );
    assert!(
        posts
            .iter()
            .any(|t| t.contains("escalated *V1*") && t.contains("Escalation contact: <!subteam^S0ADYENTAM>")),
        "{posts:?}"
    );
    assert!(
        posts
            .iter()
            .any(|t| t.contains("escalated *V2*") && t.contains("Call the TAM on +44 20 7946 0000")),
        "{posts:?}"
    );
    assert!(posts.iter().any(|t| t.contains("<@U0ALICE> closed *V1*")), "{posts:?}");
    let card = card_text(&stack, &inc, &ch);
    assert!(
        card.contains("AWS #9931 (V2)") && !card.contains("Adyen #48213"),
        "only open ones: {card}"
    );
    let status = stack.sandbox.slash_command("U0CAROL", &ch, "status").await.unwrap();
    let status = status.payload.unwrap()["blocks"].to_string();
    assert!(
        status.contains("Waiting on:") && status.contains("AWS #9931 (V2)"),
        "{status}"
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn chases_fire_at_the_sla_then_say_escalate_and_a_reply_stops_them() {
    // First response within 1 s; after a reply, updates every hour.
    let stack = stack_with(policy("1s", "1h"), fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    stack.command("U0BOB", &ch, "vendor Adyen 48213").await.unwrap();
    let second = wait_for(Duration::from_secs(6), || async { chases(&stack, &ch).get(1).cloned() })
        .await
        .expect("two chases: at 1 s and at 2 s");
    let all = chases(&stack, &ch);
    assert!(
        all[0]
            .text
            .contains("<@U0BOB> Adyen has not answered within its first-response SLA"),
        "{}",
        all[0].text
    );
    assert!(!all[0].text.contains("subteam"), "the first miss does not escalate yet");
    assert!(
        second.text.contains("*escalate*") && second.text.contains("<!subteam^S0ADYENTAM>"),
        "the second miss mentions the escalation contact: {}",
        second.text
    );
    let chase_events = vendor_events(&stack, &inc)
        .await
        .into_iter()
        .filter(|d| d["action"] == "chase")
        .count();
    assert!(chase_events >= 2);

    // Snooze 15 min from the reminder: the chase moves 15 minutes out.
    let v1 = tickets(&stack, &inc).await.remove(0);
    sb.click_button("U0BOB", &ch, &second.ts, "vendor_snooze", &v1.id.to_string())
        .await
        .unwrap();
    let snoozed = wait_for(Duration::from_secs(3), || async {
        let t = tickets(&stack, &inc).await.remove(0);
        t.chase_at
            .filter(|at| *at - chrono::Utc::now() > chrono::Duration::minutes(14))
    })
    .await;
    assert!(snoozed.is_some(), "snoozed 15 min");
    // Vendor replied, from the reminder: a form asks what they said; recorded as the reply:
    // responded, and the next chase is an hour out.
    sb.click_button("U0BOB", &ch, &second.ts, "vendor_replied", &v1.id.to_string())
        .await
        .unwrap();
    let form = wait_for(Duration::from_secs(3), || async {
        sb.views_opened()
            .into_iter()
            .rev()
            .find(|v| v.callback_id == "vendor_reply")
    })
    .await
    .expect("the reply form opens");
    let said = |text: &str| json!({ "said": { "said": { "type": "plain_text_input", "value": text } } });
    let empty = sb.submit_view("U0BOB", &form.id, said("  ")).await.unwrap();
    assert!(empty.payload.unwrap()["errors"]["said"]
        .as_str()
        .unwrap()
        .contains("what the vendor said"));
    sb.submit_view("U0BOB", &form.id, said("Acquirer-side outage, fix in 20 min"))
        .await
        .unwrap();
    let replied = wait_for(Duration::from_secs(3), || async {
        Some(tickets(&stack, &inc).await.remove(0)).filter(|t| t.state == TicketState::Responded)
    })
    .await
    .expect("the click records the reply");
    assert!(replied.chase_at.unwrap() - chrono::Utc::now() > chrono::Duration::minutes(59));
    let events = stack.db.vendor_events_of(inc.id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "reply" && e.text == "Acquirer-side outage, fix in 20 min"));
    stack.settle().await;
    let posted = chases(&stack, &ch).len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stack.settle().await;
    assert_eq!(chases(&stack, &ch).len(), posted, "a reply stops the chase");
    assert!(sb
        .ephemerals("U0BOB")
        .iter()
        .any(|m| m.text.contains("Snoozed") && m.text.contains("15 minutes")));
    assert_slack_happy(&stack);
}

/// The PostgreSQL schema the stack runs in.
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
async fn a_chase_fires_once_across_two_replicas_and_a_restart() {
    let mut stack = stack_with(policy("1h", "1h"), fast_options()).await;
    let second_db = match common::database() {
        Some((url, _)) => Db::connect_with(&url, Some(&stack_schema(&stack).await)).await.unwrap(),
        None => stack.db.clone(),
    };
    let replica = Bot::start(&stack.settings, second_db, fast_options()).await.unwrap();
    stack
        .sandbox
        .wait_for_connections(2, Duration::from_secs(5))
        .await
        .unwrap();
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    for n in 1..=6 {
        stack.command("U0BOB", &ch, &format!("vendor Adyen {n}")).await.unwrap();
    }
    // All six reach their first-response SLA now, for two replicas at once.
    let now = chrono::Utc::now();
    for t in tickets(&stack, &inc).await {
        stack.db.backdate_vendor_chase(t.id, now).await.unwrap();
    }
    let all = wait_for(Duration::from_secs(5), || async {
        Some(chases(&stack, &ch)).filter(|c| c.len() >= 6)
    })
    .await
    .expect("six chases");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stack.settle().await;
    replica.stop().await;
    assert_eq!(chases(&stack, &ch).len(), 6, "each once: {all:?}");
    let fired = vendor_events(&stack, &inc)
        .await
        .into_iter()
        .filter(|d| d["action"] == "chase")
        .count();
    assert_eq!(fired, 6);

    // Down at the SLA: the chase is sent on start, once, marked late.
    stack.stop_bot().await;
    let t1 = tickets(&stack, &inc).await.remove(0);
    stack
        .db
        .backdate_vendor_chase(t1.id, chrono::Utc::now() - chrono::Duration::seconds(5))
        .await
        .unwrap();
    stack.restart_bot(fast_options()).await.unwrap();
    let late = wait_for(Duration::from_secs(5), || async {
        chases(&stack, &ch).into_iter().find(|m| m.text.contains("sent late"))
    })
    .await;
    assert!(late.is_some(), "the missed chase is sent late on start");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stack.settle().await;
    assert_eq!(chases(&stack, &ch).len(), 7, "once");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn vendors_lists_open_tickets_oldest_first_and_counts_private_ones() {
    let stack = stack_with(policy("1h", "1h"), fast_options()).await;
    let (public, pch) = declared(&stack, "SEV2", false).await;
    let (private, xch) = declared(&stack, "SEV2", true).await;
    stack.command("U0BOB", &pch, "vendor Adyen 111").await.unwrap();
    stack.command("U0BOB", &xch, "vendor Adyen 222").await.unwrap();
    stack.command("U0BOB", &pch, "vendor AWS 333").await.unwrap();
    stack.command("U0BOB", &pch, "vendor reply V2 looking").await.unwrap();
    stack.settle().await;

    let list = |user: &'static str, text: &'static str| {
        let stack = &stack;
        async move {
            let ack = stack.sandbox.slash_command(user, "C0GENERAL", text).await.unwrap();
            ack.payload.unwrap_or_default()["blocks"].to_string()
        }
    };
    // Bob is in the private incident: he sees all three, oldest first.
    let bob = list("U0BOB", "vendors").await;
    let (a, b, c) = (
        bob.find("#111").unwrap(),
        bob.find("#222").unwrap(),
        bob.find("#333").unwrap(),
    );
    assert!(a < b && b < c, "{bob}");
    assert!(
        bob.contains("vendor last replied") && bob.contains("no reply from the vendor yet"),
        "{bob}"
    );
    // Carol is not: the private one is counted, never shown.
    let carol = list("U0CAROL", "vendors").await;
    assert!(
        carol.contains("#111") && carol.contains("#333") && !carol.contains("#222"),
        "{carol}"
    );
    assert!(carol.contains("1 more on private incident you are not in"), "{carol}");
    assert!(!carol.contains(&private.number.to_string()), "{carol}");
    // One vendor.
    let aws = list("U0CAROL", "vendors aws").await;
    assert!(
        aws.contains("with AWS") && aws.contains("#333") && !aws.contains("#111"),
        "{aws}"
    );
    let _ = public;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn resolve_asks_about_open_tickets_which_stay_open_until_closed() {
    let stack = stack_with(policy("1h", "1h"), fast_options()).await;
    let sb = &stack.sandbox;
    let (inc, ch) = declared(&stack, "SEV2", false).await;
    stack.command("U0BOB", &ch, "vendor Adyen 48213").await.unwrap();
    stack.command("U0BOB", &ch, "vendor AWS 9931").await.unwrap();
    stack.command("U0BOB", &ch, "vendor close V2").await.unwrap();
    let form = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    sb.submit_view("U0BOB", &form.id, resolve_values("Acquirer fixed", "third party", None))
        .await
        .unwrap();
    let question = wait_for(Duration::from_secs(5), || async {
        sb.messages(&ch)
            .into_iter()
            .find(|m| m.blocks.to_string().contains("vendor_resolve"))
    })
    .await
    .expect("resolve asks about the open vendor tickets");
    let blocks = question.blocks.to_string();
    assert!(
        question.text.contains("1 vendor ticket is still open"),
        "{}",
        question.text
    );
    assert!(blocks.contains("Close V1") && !blocks.contains("Close V2"), "{blocks}");
    let v1 = tickets(&stack, &inc).await.remove(0);
    assert_eq!(v1.state, TicketState::Open, "it stays open until someone says so");
    // Still listed, with its incident's state.
    let listed = sb.slash_command("U0CAROL", "C0GENERAL", "vendors").await.unwrap();
    let listed = listed.payload.unwrap()["blocks"].to_string();
    assert!(listed.contains("#48213") && listed.contains("is resolved"), "{listed}");
    // Close from the question.
    sb.click_button("U0BOB", &ch, &question.ts, "vendor_close", &v1.id.to_string())
        .await
        .unwrap();
    let closed = wait_for(Duration::from_secs(3), || async {
        Some(tickets(&stack, &inc).await.remove(0)).filter(|t| t.state == TicketState::Closed)
    })
    .await;
    assert!(closed.is_some());
    stack.settle().await;

    // The review draft and the export show the tickets with their own timelines.
    let said = stack.command("U0BOB", &ch, "pir").await.unwrap();
    assert!(said.contains("Drafting"), "{said}");
    let draft = wait_for(Duration::from_secs(5), || async {
        sb.files()
            .into_iter()
            .find(|(_, name, _)| name.contains("Post-incident review"))
    })
    .await
    .expect("the draft is posted");
    let draft = String::from_utf8(draft.2).unwrap();
    assert!(draft.contains("## Vendor tickets"), "{draft}");
    assert!(
        draft.contains("| V1 | Adyen | #48213 | closed |") && draft.contains("| V2 | AWS | #9931 | closed |"),
        "{draft}"
    );
    assert!(
        draft.contains("**V1 Adyen #48213**")
            && draft.contains("— raised with the vendor")
            && draft.contains("— closed"),
        "{draft}"
    );
    let (code, out, err) = common::run_cli(
        &stack.settings.database_url,
        &[],
        &["export", "INC-1", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let export: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v1 = &export["vendor_tickets"][0];
    assert_eq!(
        (v1["ticket"].as_str(), v1["vendor"].as_str(), v1["state"].as_str()),
        (Some("V1"), Some("Adyen"), Some("closed"))
    );
    let kinds: Vec<&str> = v1["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "closed"]);
    let (code, md, _) = common::run_cli(&stack.settings.database_url, &[], &["export", "INC-1"]);
    assert!(
        code == 0 && md.contains("## Vendor tickets") && md.contains("| V2 | AWS |"),
        "{md}"
    );
    assert_slack_happy(&stack);
}

/// Report figures per vendor against a fixture, with the arithmetic in comments.
#[tokio::test]
async fn report_figures_per_vendor_in_every_format() {
    use incident_bot::db::FixtureIncident;
    use incident_bot::report::render::{self, Format};
    use incident_bot::report::{PeriodSpec, Report};
    let _dir;
    let db = match common::database() {
        Some((url, schema)) => Db::connect_with(&url, Some(&schema)).await.unwrap(),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("vendors.db").display());
            _dir = dir;
            Db::connect(&url).await.unwrap()
        }
    };
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
    const MIN: i64 = 60_000;
    let incident = |number: i64, declared: &str, status: &str, private: bool| FixtureIncident {
        number,
        severity: "SEV2".into(),
        status: status.into(),
        services: vec!["payments".into()],
        is_private: private,
        declared_at: at(declared),
        ..FixtureIncident::default()
    };
    db.insert_fixtures(
        &[
            incident(1, "2026-11-16T09:00:00Z", "resolved", false),
            incident(2, "2026-11-18T08:00:00Z", "resolved", true),
            incident(3, "2026-11-17T08:00:00Z", "canceled", false),
            incident(4, "2026-11-10T09:00:00Z", "closed", false),
            incident(5, "2026-11-01T09:00:00Z", "investigating", false),
        ],
        &[],
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(db.incident_by_number(IncidentNumber(n)).await.unwrap().unwrap().id);
    }
    let t = |s: &str| at(s);
    // This week (2026-11-16..22), Adyen: four tickets on INC-1 and INC-2 (private).
    // A1: answered after 10 min, one missed SLA, escalated once.
    db.insert_vendor_fixture(
        ids[0],
        "Adyen",
        t("2026-11-16T09:00:00Z"),
        Some(t("2026-11-16T09:10:00Z")),
        Some(t("2026-11-16T12:00:00Z")),
        &[
            ("chase", t("2026-11-16T09:15:00Z"), 1),
            ("escalated", t("2026-11-16T09:30:00Z"), 0),
        ],
    )
    .await
    .unwrap();
    // A2: answered after 30 min, two missed SLAs (two chases), still open.
    db.insert_vendor_fixture(
        ids[0],
        "Adyen",
        t("2026-11-16T10:00:00Z"),
        Some(t("2026-11-16T10:30:00Z")),
        None,
        &[
            ("chase", t("2026-11-16T10:15:00Z"), 1),
            ("chase", t("2026-11-16T10:25:00Z"), 1),
        ],
    )
    .await
    .unwrap();
    // A3: answered after 50 min. A4: never answered, closed.
    db.insert_vendor_fixture(
        ids[1],
        "Adyen",
        t("2026-11-18T08:00:00Z"),
        Some(t("2026-11-18T08:50:00Z")),
        Some(t("2026-11-18T10:00:00Z")),
        &[],
    )
    .await
    .unwrap();
    db.insert_vendor_fixture(
        ids[1],
        "Adyen",
        t("2026-11-18T09:00:00Z"),
        None,
        Some(t("2026-11-18T11:00:00Z")),
        &[],
    )
    .await
    .unwrap();
    // On the canceled INC-3: ignored entirely.
    db.insert_vendor_fixture(
        ids[2],
        "Adyen",
        t("2026-11-17T08:00:00Z"),
        Some(t("2026-11-17T08:01:00Z")),
        None,
        &[("chase", t("2026-11-17T08:30:00Z"), 5)],
    )
    .await
    .unwrap();
    // The previous week, Adyen: one ticket on INC-4, answered after 20 min, one missed SLA.
    db.insert_vendor_fixture(
        ids[3],
        "Adyen",
        t("2026-11-10T09:00:00Z"),
        Some(t("2026-11-10T09:20:00Z")),
        Some(t("2026-11-10T12:00:00Z")),
        &[("chase", t("2026-11-10T09:15:00Z"), 1)],
    )
    .await
    .unwrap();
    // AWS: opened 2026-11-01 on INC-5 and still open (more than 7 days old at the end of both
    // weeks); another opened 2026-11-20 on INC-1 (4 days old at the end: not counted as old).
    db.insert_vendor_fixture(ids[4], "AWS", t("2026-11-01T10:00:00Z"), None, None, &[])
        .await
        .unwrap();
    db.insert_vendor_fixture(ids[0], "AWS", t("2026-11-20T10:00:00Z"), None, None, &[])
        .await
        .unwrap();
    // A vendor outside the catalogue.
    db.insert_vendor_fixture(ids[0], "other", t("2026-11-21T10:00:00Z"), None, None, &[])
        .await
        .unwrap();

    let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .to_utc();
    let r = Report::build(
        &db,
        &policy("15m", "30m"),
        PeriodSpec::parse("2026-11-16..2026-11-22").unwrap(),
        None,
        now,
    )
    .await
    .unwrap();
    let names: Vec<&str> = r.vendors.iter().map(|v| v.vendor.as_str()).collect();
    assert_eq!(names, ["Adyen", "AWS", "other"], "the catalogue, then what was seen");
    let adyen = &r.vendors[0];
    // Tickets 4 (was 1); first responses 10, 30, 50 min: median (2nd of 3) 30, p90 (3rd) 50
    // (was 20 and 20); breaches 1 + 1 + 1 = 3 (was 1); escalations 1 (was 0); incidents 2 (was 1).
    assert_eq!(
        (
            adyen.current.tickets,
            adyen.current.first_response_median_ms,
            adyen.current.first_response_p90_ms
        ),
        (4, Some(30 * MIN), Some(50 * MIN))
    );
    assert_eq!(
        (
            adyen.current.breaches,
            adyen.current.escalations,
            adyen.current.open_over_7_days,
            adyen.current.incidents
        ),
        (3, 1, 0, 2)
    );
    assert_eq!(
        (
            adyen.previous.tickets,
            adyen.previous.first_response_median_ms,
            adyen.previous.breaches,
            adyen.previous.incidents
        ),
        (1, Some(20 * MIN), 1, 1)
    );
    let aws = &r.vendors[1];
    // One ticket this week, none answered; the 2026-11-01 one is open > 7 days at both ends.
    assert_eq!(
        (
            aws.current.tickets,
            aws.current.first_response_median_ms,
            aws.current.open_over_7_days
        ),
        (1, None, 1)
    );
    assert_eq!((aws.previous.tickets, aws.previous.open_over_7_days), (0, 1));

    let md = render::render(&r, Format::Markdown);
    assert!(md.contains("## Vendors"), "{md}");
    assert!(
        md.contains("| Adyen | 4 | ▲3 | 30m | ▲10m | 50m | ▲30m | 3 | ▲2 | 1 | ▲1 | 0 | = | 2 | ▲1 |"),
        "{md}"
    );
    let csv = render::render(&r, Format::Csv);
    for line in [
        "vendor,Adyen,tickets,4,1,3\n",
        "vendor,Adyen,first_response_median_minutes,30.00,20.00,10.00\n",
        "vendor,Adyen,first_response_p90_minutes,50.00,20.00,30.00\n",
        "vendor,Adyen,sla_breaches,3,1,2\n",
        "vendor,Adyen,escalations,1,0,1\n",
        "vendor,AWS,open_over_7_days,1,1,0\n",
        "vendor,Adyen,incidents,2,1,1\n",
    ] {
        assert!(csv.contains(line), "{line} in {csv}");
    }
    let json = render::json_value(&r);
    assert_eq!(json["vendors"][0]["vendor"], "Adyen");
    assert_eq!(json["vendors"][0]["first_response_median_ms"]["value"], 30 * MIN);
    assert_eq!(json["vendors"][0]["sla_breaches"]["change"], 2);
    let blocks = incident_bot::slack::report::report_blocks(&r).to_string();
    assert!(blocks.contains("*Vendors*") && blocks.contains("Adyen"), "{blocks}");
    for text in [&md, &csv, &json.to_string(), &blocks] {
        assert!(
            !text.contains("INC-") && !text.contains("fixture"),
            "no incident or ticket is named"
        );
    }
}

#[tokio::test]
async fn the_demo_shows_a_vendor_ticket_being_chased() {
    let mut out = Vec::new();
    incident_bot::demo::run(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    for expected in [
        "raised *V1* Adyen",
        "Adyen has not answered within its first-response SLA",
        "*escalate*",
        "Escalation contact: @S0ADYENTAM",
        "escalated *V1* Adyen",
        "Adyen replied on *V1*",
        "Open vendor tickets",
        "vendor ticket is still open",
        "closed *V1* Adyen",
        "Waiting on:",
    ] {
        assert!(out.contains(expected), "{expected} in the demo:\n{out}");
    }
}

#[tokio::test]
async fn a_new_severity_replans_the_chase_and_a_reopen_restarts_it() {
    // Adyen has SLAs at SEV2 only (1 s to first response).
    let stack = stack_with(policy("1s", "1h"), fast_options()).await;
    let (inc, ch) = declared(&stack, "SEV3", false).await;
    let said = stack.command("U0BOB", &ch, "vendor Adyen 48213").await.unwrap();
    assert!(said.contains("no SLA here"), "{said}");
    assert_eq!(
        tickets(&stack, &inc).await[0].chase_at,
        None,
        "no SLA at SEV3: not chased"
    );
    stack.command("U0ALICE", &ch, "severity SEV2").await.unwrap();
    assert!(tickets(&stack, &inc).await[0].chase_at.is_some(), "SEV2 has an SLA");
    wait_for(Duration::from_secs(4), || async {
        chases(&stack, &ch).first().cloned()
    })
    .await
    .expect("chased under the new severity's SLA");
    // Resolved: the chase stops (the ticket stays open); reopened: it starts again from now.
    let form = stack.open_form("U0BOB", &ch, "resolve").await.unwrap();
    stack
        .sandbox
        .submit_view("U0BOB", &form.id, resolve_values("Acquirer fixed", "third party", None))
        .await
        .unwrap();
    wait_for(Duration::from_secs(4), || async {
        Some(()).filter(|_| {
            stack
                .sandbox
                .messages(&ch)
                .iter()
                .any(|m| m.text.contains("is resolved, and 1 vendor ticket"))
        })
    })
    .await
    .expect("the resolve question");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.settle().await;
    let before = chases(&stack, &ch).len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(chases(&stack, &ch).len(), before, "not chased while resolved");
    let t = tickets(&stack, &inc).await.remove(0);
    assert_eq!((t.state, t.chase_at), (TicketState::Open, None));
    stack.command("U0BOB", &ch, "reopen").await.unwrap();
    let t = tickets(&stack, &inc).await.remove(0);
    assert_eq!(t.missed, 0, "the wait starts again");
    wait_for(Duration::from_secs(4), || async {
        chases(&stack, &ch).get(before).cloned()
    })
    .await
    .expect("chased again after the reopen");
    assert_slack_happy(&stack);
}
