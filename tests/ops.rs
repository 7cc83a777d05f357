//! Operations endpoint (issue 7, "Operate"): `/healthz`, `/readyz`, `/metrics` over a raw
//! HTTP/1.1 GET. Runs on SQLite, or PostgreSQL with TEST_DATABASE_URL.

mod common;

use common::{assert_slack_happy, stack_with, READY};
use incident_bot::demo::{demo_policy, fast_options, LocalStack};
use incident_bot::http::OpsServer;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `(status code, headers, body)` of `GET path`.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn ops_stack() -> LocalStack {
    let mut opts = fast_options();
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    stack_with(demo_policy(), opts).await
}

fn addr(stack: &LocalStack) -> SocketAddr {
    stack.bot.as_ref().unwrap().http_addr().expect("http_listen set")
}

/// The value of the sample line that starts with `series ` (e.g. `name{label="x"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn healthz_and_readyz_answer_when_connected() {
    let stack = ops_stack().await;
    let addr = addr(&stack);
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // The hello may trail the sandbox's connection count by a moment.
    let ready = incident_bot::demo::wait_for(std::time::Duration::from_secs(5), || async {
        (get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "{:?}", get(addr, "/readyz").await);
    assert_eq!(get(addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn readyz_is_503_before_a_connection_and_after_stop() {
    let mut stack = ops_stack().await;
    // Before any hello: an ops server on a liveness flag that never saw one.
    let never = OpsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        stack.db.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    let (status, _, body) = get(never.addr(), "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: no Socket Mode connection\n");
    assert_eq!(
        get(never.addr(), "/healthz").await.0,
        200,
        "healthz only says the process is up"
    );
    never.stop().await;

    // After stop: the bot's own flag is cleared (first thing in `Bot::stop`, so a draining bot
    // is already unready) and its server is gone; a server on that flag answers 503.
    let flag = stack.bot.as_ref().unwrap().socket_connected();
    let bot_addr = addr(&stack);
    assert!(flag.load(Ordering::Relaxed), "the bot said hello");
    stack.stop_bot().await;
    assert!(!flag.load(Ordering::Relaxed));
    assert!(
        tokio::net::TcpStream::connect(bot_addr).await.is_err(),
        "the ops server stops with the bot"
    );
    let after = OpsServer::start("127.0.0.1:0".parse().unwrap(), stack.db.clone(), flag)
        .await
        .unwrap();
    assert_eq!(get(after.addr(), "/readyz").await.0, 503);
    after.stop().await;
}

#[tokio::test]
async fn metrics_count_declares_envelopes_and_open_incidents() {
    let stack = ops_stack().await;
    let addr = addr(&stack);
    let ack = stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Metrics test outage",
            json!({ "severity": "SEV2" }),
        )
        .await
        .unwrap();
    assert!(ack.as_ref().is_none_or(|p| p.get("errors").is_none()), "{ack:?}");
    stack.wait_ready(1, READY).await.unwrap();

    let (status, head, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    for name in [
        "incident_bot_envelopes_received_total counter",
        "incident_bot_envelopes_acked_total counter",
        "incident_bot_ack_latency_ms histogram",
        "incident_bot_slack_api_calls_total counter",
        "incident_bot_slack_api_errors_total counter",
        "incident_bot_reminders_sent_total counter",
        "incident_bot_breaches_total counter",
        "incident_bot_incidents_declared_total counter",
        "incident_bot_outbox_backlog gauge",
        "incident_bot_open_incidents gauge",
        "incident_bot_socket_connected gauge",
        "incident_bot_follow_up_reminders_total counter",
        "incident_bot_open_follow_ups gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name}\n")),
            "no `# TYPE {name}` in\n{text}"
        );
    }
    // Counters are process-wide (other tests in this binary add to them): at least ours.
    let at_least_one = |series: &str| {
        let v = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= 1.0, "{series} = {v}");
    };
    at_least_one("incident_bot_incidents_declared_total{severity=\"SEV2\"}");
    at_least_one("incident_bot_envelopes_received_total{type=\"command\"}");
    at_least_one("incident_bot_envelopes_acked_total{type=\"interaction\"}");
    at_least_one("incident_bot_ack_latency_ms_count");
    at_least_one("incident_bot_ack_latency_ms_bucket{le=\"+Inf\"}");
    at_least_one("incident_bot_slack_api_calls_total{method=\"conversations.create\"}");
    // Gauges come from this stack's own database.
    assert_eq!(
        sample(&text, "incident_bot_open_incidents{severity=\"SEV2\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "incident_bot_outbox_backlog"), Some(0.0));
    assert_eq!(sample(&text, "incident_bot_socket_connected"), Some(1.0));
    // One follow-up, due today: open, not overdue yet.
    let ch = stack.wait_ready(1, READY).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    stack
        .command("U0ALICE", &ch, &format!("followup Add a dashboard due {today}"))
        .await
        .unwrap();
    let (_, _, text) = get(addr, "/metrics").await;
    assert_eq!(
        sample(&text, "incident_bot_open_follow_ups{overdue=\"false\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "incident_bot_open_follow_ups{overdue=\"true\"}"),
        Some(0.0)
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn metrics_count_reminders_and_breaches() {
    // SEV1: an update due every 300 ms, escalated 300 ms after that.
    let mut policy = demo_policy();
    policy.severities[0].update_every = std::time::Duration::from_millis(300);
    policy.severities[0].escalate_after = std::time::Duration::from_millis(300);
    let mut opts = fast_options();
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let stack = stack_with(policy, opts).await;
    let addr = addr(&stack);
    let before = get(addr, "/metrics").await.2;
    let breaches_before = sample(&before, "incident_bot_breaches_total").unwrap_or(0.0);
    stack
        .declare("U0ALICE", "C0GENERAL", "Nobody updates this", json!({}))
        .await
        .unwrap();
    stack.wait_ready(1, READY).await.unwrap();
    let text = incident_bot::demo::wait_for(std::time::Duration::from_secs(10), || async {
        let text = get(addr, "/metrics").await.2;
        (sample(&text, "incident_bot_breaches_total").unwrap_or(0.0) > breaches_before).then_some(text)
    })
    .await
    .expect("a breach was escalated and counted");
    let first_reminders: f64 = ["true", "false"]
        .iter()
        .filter_map(|late| {
            sample(
                &text,
                &format!("incident_bot_reminders_sent_total{{stage=\"first\",late=\"{late}\"}}"),
            )
        })
        .sum();
    assert!(first_reminders >= 1.0, "{text}");
    assert_eq!(
        sample(&text, "incident_bot_open_incidents{severity=\"SEV1\"}"),
        Some(1.0)
    );
}

/// Slack refusing the bot token (`token_revoked`) turns `/readyz` red: nothing the bot does
/// can succeed until someone reinstalls the app.
#[tokio::test]
async fn readyz_turns_red_when_slack_revokes_the_token() {
    let stack = ops_stack().await;
    let addr = addr(&stack);
    let ready = incident_bot::demo::wait_for(std::time::Duration::from_secs(5), || async {
        (get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "{:?}", get(addr, "/readyz").await);
    stack.sandbox.inject_fault(
        "conversations.create",
        incident_bot::sandbox::Fault::ApiError("token_revoked".into()),
        1,
    );
    stack
        .declare("U0ALICE", "C0GENERAL", "Token gone", json!({}))
        .await
        .unwrap();
    let red = incident_bot::demo::wait_for(std::time::Duration::from_secs(5), || async {
        let (status, _, body) = get(addr, "/readyz").await;
        (status == 503).then_some(body)
    })
    .await
    .expect("/readyz turns red");
    assert!(red.contains("token_revoked"), "{red}");
    assert_eq!(stack.sandbox.calls_to("conversations.create").len(), 1, "not retried");
}
