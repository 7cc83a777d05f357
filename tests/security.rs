//! Security checks (issue 7, "Security"): hostile input is stored faithfully and never becomes a
//! mass mention; tokens never reach the logs. Runs on SQLite, or PostgreSQL with
//! TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack, READY};
use incident_bot::demo::LocalStack;
use incident_bot::incident::model::IncidentNumber;
use incident_bot::sandbox::{Fault, APP_TOKEN, BOT_TOKEN};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The tests here run one at a time: tracing caches per-callsite interest, and a callsite first
/// hit on another test's thread while the log capture below is being set up can miss it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every mrkdwn text the bot posted anywhere (messages, thread replies, DMs, ephemerals) plus
/// channel topics, where Slack would turn `<!channel>` into a mass mention.
fn mrkdwn_seen(stack: &LocalStack) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                    if let Some(text) = map.get("text").and_then(Value::as_str) {
                        out.push(text.to_string());
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let sb = &stack.sandbox;
    let mut out = Vec::new();
    for channel in sb.channels() {
        out.push(channel.topic.clone());
        for message in sb.messages(&channel.id) {
            out.push(message.text.clone());
            walk(&message.blocks, &mut out);
        }
    }
    for user in ["U0ALICE", "U0BOB"] {
        for message in sb.ephemerals(user) {
            out.push(message.text.clone());
            walk(&message.blocks, &mut out);
        }
    }
    out
}

#[tokio::test]
async fn hostile_titles_are_stored_faithfully_and_never_mass_mention() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let description = "Ping <!channel> and <!here>, <@U0DAVE>, see <https://evil.example|x> & 'quotes'";
    let titles = [
        "'; DROP TABLE incidents; --",
        r#"He said "it's 'broken'" \ \\ %s %n ${x} $1"#,
        "Refund \u{202E}gnp.exe\u{202C} RTL \u{200F}override\u{200E}",
        "<!channel> <!here> <@U0DAVE> <https://evil.example|x>",
    ];
    for (i, title) in titles.iter().enumerate() {
        let ack = stack
            .declare(
                "U0ALICE",
                "C0GENERAL",
                "placeholder",
                json!({ "title": title, "description": description }),
            )
            .await
            .unwrap();
        assert!(
            ack.as_ref().is_none_or(|p| p.get("errors").is_none()),
            "{title}: {ack:?}"
        );
        stack.wait_ready(i as i64 + 1, READY).await.unwrap();
        let stored = stack
            .db
            .incident_by_number(IncidentNumber(i as i64 + 1))
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.title, *title, "stored byte for byte");
        assert_eq!(stored.description, description);
    }
    // The SQL injection did nothing: every incident is still there.
    for n in 1..=titles.len() as i64 {
        assert!(stack.db.incident_by_number(IncidentNumber(n)).await.unwrap().is_some());
    }

    // 10 KB of emoji is far over the 120-character limit: a field error, nothing stored.
    let emoji = "🔥".repeat(2_560);
    assert_eq!(emoji.len(), 10_240);
    let ack = stack
        .declare("U0ALICE", "C0GENERAL", "placeholder", json!({ "title": emoji }))
        .await
        .unwrap()
        .expect("a field error");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(ack["errors"]["title"].as_str().unwrap().contains("120"), "{ack}");
    stack.settle().await;
    assert!(stack
        .db
        .incident_by_number(IncidentNumber(titles.len() as i64 + 1))
        .await
        .unwrap()
        .is_none());

    let seen = mrkdwn_seen(&stack);
    assert!(
        seen.iter().any(|t| t.contains("&lt;!channel&gt;")),
        "the title was shown, escaped"
    );
    for text in &seen {
        for raw in ["<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U0DAVE>"] {
            assert!(!text.contains(raw), "raw {raw} in posted mrkdwn: {text}");
        }
    }
    assert_slack_happy(&stack);
}

// A current-thread runtime: every task the bot spawns runs on this thread, under the scoped
// subscriber below.
#[tokio::test(flavor = "current_thread")]
async fn no_token_in_logs_or_errors_even_at_trace() {
    let _serial = SERIAL.lock().await;
    let capture = common::Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "incident_bot=trace,slack_morphism=debug,security=trace",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut stack = stack().await;
    // A declare whose channel creation first meets a 500 (retried by the outbox).
    stack
        .sandbox
        .inject_fault("conversations.create", Fault::ServerError, 1);
    stack
        .sandbox
        .inject_fault("chat.postMessage", Fault::ApiError("internal_error".into()), 1);
    let ack = stack
        .declare("U0ALICE", "C0GENERAL", "Token leak check", json!({}))
        .await
        .unwrap();
    assert!(ack.as_ref().is_none_or(|p| p.get("errors").is_none()), "{ack:?}");
    stack.wait_ready(1, READY).await.unwrap();

    // Invalid configuration: errors name the key, never echo a token.
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let bad = [
        env(&[("SLACK_BOT_TOKEN", APP_TOKEN), ("SLACK_APP_TOKEN", BOT_TOKEN)]),
        env(&[("SLACK_BOT_TOKEN", BOT_TOKEN), ("SLACK_APP_TOKEN", BOT_TOKEN)]),
        env(&[
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_APP_TOKEN", APP_TOKEN),
            ("SLACK_API_URL", "ftp://slack.example"),
        ]),
        env(&[
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_APP_TOKEN", APP_TOKEN),
            ("DATABASE_URL", "mysql://root@localhost/x"),
        ]),
    ];
    for env in &bad {
        let err = incident_bot::config::load(None, env).expect_err("invalid configuration");
        tracing::error!(error = %err, debug = ?err, "invalid configuration");
    }

    // A rejected token at start: auth.test fails with invalid_auth.
    let mut settings = stack.settings.clone();
    settings.slack.bot_token = incident_bot::config::Secret::new(format!("{BOT_TOKEN}-revoked"));
    let err = match incident_bot::app::Bot::start(&settings, stack.db.clone(), incident_bot::demo::fast_options()).await
    {
        Ok(_) => panic!("a revoked token must not start"),
        Err(e) => e,
    };
    tracing::error!(error = %format!("{err:#}"), debug = ?err, "bot start failed");
    stack.stop_bot().await;

    let logs = capture.text();
    // The capture saw the bot at trace, slack-morphism's HTTP logs, the 500 and the errors.
    for expected in [
        "incident declared",
        "slack_morphism::hyper_tokio::connector",
        "HTTP 500",
        "invalid configuration",
        "invalid_auth",
    ] {
        assert!(logs.contains(expected), "no {expected:?} in the capture:\n{logs}");
    }
    for token in [BOT_TOKEN, APP_TOKEN] {
        assert!(!logs.contains(token), "{token} leaked into the logs:\n{logs}");
    }
    // The token-shaped remainder of a secret does not leak either.
    assert!(!logs.contains("sandbox-bot-token") && !logs.contains("sandbox-app-token"));
}

/// A command whose handler is inside a slow Slack call (`/incident list` by a non-member checks
/// a private incident's members) when the bot is told to stop: it is still acked.
#[tokio::test]
async fn a_command_in_flight_at_stop_is_acked() {
    let _serial = SERIAL.lock().await;
    let mut stack = stack().await;
    stack
        .declare("U0ALICE", "C0GENERAL", "Shutdown check", json!({ "private": true }))
        .await
        .unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    stack
        .sandbox
        .inject_fault("conversations.members", Fault::Slow(Duration::from_millis(1_000)), 1);
    let acks = stack.sandbox.acks().len();
    let sandbox = stack.sandbox.clone();
    let command = tokio::spawn(async move { sandbox.slash_command("U0BOB", "C0GENERAL", "list").await });
    incident_bot::demo::wait_for(Duration::from_secs(2), || async {
        let envelope = stack.sandbox.last_envelope()?;
        (envelope["payload"]["text"] == "list").then_some(())
    })
    .await
    .expect("the command was delivered");
    // The handler reaches the slowed membership check within milliseconds and waits there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stack.sandbox.acks().len(), acks, "still in flight when the stop begins");
    stack.stop_bot().await;
    let ack = command
        .await
        .expect("no panic")
        .expect("the in-flight command was acked");
    let text = ack
        .payload
        .as_ref()
        .and_then(|p| p["text"].as_str())
        .unwrap_or_default();
    assert!(
        !text.contains("Shutdown check"),
        "a non-member learns only a count: {text}"
    );
    assert_slack_happy(&stack);
}

/// A click that names another app (or another workspace) is refused: nothing changes. The same
/// envelope naming our app acts, so the refusal is the check's doing.
#[tokio::test]
async fn interactions_for_another_app_are_refused() {
    let _serial = SERIAL.lock().await;
    let stack = stack().await;
    let sb = &stack.sandbox;
    stack
        .declare("U0ALICE", "C0GENERAL", "Card outage", json!({ "spoc": "U0BOB" }))
        .await
        .unwrap();
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let inc = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    // Alice (not the SPOC) clicks Acknowledge: refused by the rules; a template envelope.
    sb.click_button(
        "U0ALICE",
        &ch,
        inc.card_ts.as_deref().unwrap(),
        "incident_ack",
        &inc.id.0.to_string(),
    )
    .await
    .unwrap();
    let template = sb.last_envelope().unwrap();
    let forged = |app: &str, team: &str| {
        let mut e = template.clone();
        e["envelope_id"] = json!(uuid::Uuid::new_v4().to_string());
        e["payload"]["user"]["id"] = json!("U0BOB");
        e["payload"]["trigger_id"] = json!(format!("trigger-{}", uuid::Uuid::new_v4().simple()));
        e["payload"]["api_app_id"] = json!(app);
        e["payload"]["team"]["id"] = json!(team);
        e
    };
    let team = template["payload"]["team"]["id"].as_str().unwrap().to_string();
    for (app, team) in [
        ("A0OTHERAPP", team.as_str()),
        (incident_bot::sandbox::APP_ID, "T0OTHER"),
    ] {
        sb.send_envelope(forged(app, team)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
        assert_eq!(
            now.acknowledged_at, None,
            "a click for {app} in {team} changed the incident"
        );
    }
    sb.send_envelope(forged(incident_bot::sandbox::APP_ID, &team))
        .await
        .unwrap();
    let acknowledged = incident_bot::demo::wait_for(Duration::from_secs(3), || async {
        stack
            .db
            .incident_by_number(IncidentNumber(1))
            .await
            .ok()??
            .acknowledged_at
    })
    .await;
    assert!(acknowledged.is_some(), "our own app's click acts");
    assert_slack_happy(&stack);
}
