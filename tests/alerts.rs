//! Detection (issue 15): alert intake over HTTP (Alertmanager v4, Grafana, generic JSON), the
//! triage channel and its buttons, links to incidents, through the sandbox on SQLite (and
//! PostgreSQL when `TEST_DATABASE_URL` is set).

mod common;

use common::{assert_slack_happy, declared, stack_with};
use incident_bot::alerts::{AlertRule, AlertSource, AlertStatus, SourceKind};
use incident_bot::app::BotOptions;
use incident_bot::config::{Policy, Secret};
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack};
use incident_bot::incident::model::{IncidentNumber, Severity};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRIAGE: &str = "C0GENERAL";
const AM_TOKEN: &str = "am-token-0123456789abcdef";
const GRAFANA_TOKEN: &str = "grafana-token-0123456789";
const GENERIC_TOKEN: &str = "generic-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

fn source(name: &str, kind: SourceKind, token: &str) -> AlertSource {
    AlertSource {
        name: name.into(),
        kind,
        token: Secret::new(token),
        service: None,
        severity_label: "severity".into(),
        severity_map: BTreeMap::new(),
        service_label: "service".into(),
        service_map: BTreeMap::from([("payments-api".to_string(), "payments".to_string())]),
    }
}

fn alert_policy() -> Policy {
    let mut policy = demo_policy();
    policy.alerts.channel = Some(TRIAGE.into());
    policy.alerts.update_gap = Duration::from_millis(50);
    policy.alerts.sources = vec![
        source("prometheus", SourceKind::Alertmanager, AM_TOKEN),
        source("grafana", SourceKind::Grafana, GRAFANA_TOKEN),
        source("hooks", SourceKind::Generic, GENERIC_TOKEN),
    ];
    policy
}

fn http_options() -> BotOptions {
    let mut opts = fast_options();
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts
}

async fn alert_stack() -> LocalStack {
    stack_with(alert_policy(), http_options()).await
}

fn addr(stack: &LocalStack) -> SocketAddr {
    stack.bot.as_ref().unwrap().http_addr().expect("http_listen set")
}

/// A raw HTTP/1.1 request; returns the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

async fn post(stack: &LocalStack, path: &str, token: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    request(
        addr(stack),
        "POST",
        path,
        &[
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", "application/json".into()),
            ("Content-Length", body.len().to_string()),
        ],
        body.as_bytes(),
    )
    .await
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/alerts/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// When the generic test alerts started: ten minutes ago, to the second.
fn started() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now() - chrono::Duration::minutes(10);
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

fn generic(fingerprint: &str, status: &str, title: &str) -> Value {
    json!({
        "source": "pingdom", "fingerprint": fingerprint, "status": status, "title": title,
        "severity": "critical", "service": "payments", "labels": { "region": "eu-west-1" },
        "links": [{ "url": "https://status.example.org/checks/42", "title": "Check" }],
        "starts_at": started().to_rfc3339(), "description": "HTTP 503 from /pay"
    })
}

/// The triage messages, as text + blocks JSON, in posting order.
fn triage(stack: &LocalStack) -> Vec<(String, String, String)> {
    stack
        .sandbox
        .messages(TRIAGE)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .map(|m| (m.ts.clone(), m.text.clone(), m.blocks.to_string()))
        .collect()
}

fn posts_to_triage(stack: &LocalStack) -> usize {
    stack
        .sandbox
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.params["channel"] == TRIAGE)
        .count()
}

/// Waits until some triage message's blocks contain every one of `needles`.
async fn wait_message(stack: &LocalStack, needles: &[&str]) -> (String, String, String) {
    wait_for(WAIT, || async {
        triage(stack)
            .into_iter()
            .find(|(_, _, blocks)| needles.iter().all(|n| blocks.contains(n)))
    })
    .await
    .unwrap_or_else(|| panic!("no triage message shows {needles:?}; messages: {:#?}", triage(stack)))
}

#[tokio::test]
async fn every_refusal_has_its_status_and_stores_nothing() {
    let stack = alert_stack().await;
    let a = addr(&stack);
    let body = fixture("alertmanager_v4.json");
    // No token, a wrong one, and another kind's token: 401.
    let (status, _) = request(a, "POST", "/alerts/alertmanager", &[], body.to_string().as_bytes()).await;
    assert_eq!(status, 401);
    assert_eq!(
        post(&stack, "/alerts/alertmanager", "wrong-token-0123456789", &body)
            .await
            .0,
        401
    );
    let (status, answer) = post(&stack, "/alerts/alertmanager", GRAFANA_TOKEN, &body).await;
    assert_eq!(status, 401);
    assert!(!answer.contains(GRAFANA_TOKEN), "the answer never echoes a token");
    // Over 1 MiB: 413, by its Content-Length or by what is actually sent.
    let (status, _) = request(
        a,
        "POST",
        "/alerts/generic",
        &[
            ("Authorization", format!("Bearer {GENERIC_TOKEN}")),
            ("Content-Length", (2 * 1024 * 1024).to_string()),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 413);
    let big = vec![b' '; 1024 * 1024 + 10];
    let (status, _) = request(
        a,
        "POST",
        "/alerts/generic",
        &[
            ("Authorization", format!("Bearer {GENERIC_TOKEN}")),
            ("Transfer-Encoding", "chunked".into()),
        ],
        &chunked(&big),
    )
    .await;
    assert_eq!(status, 413);
    // Bad JSON, a missing field, a wrong version: 400 with a one-line reason.
    let (status, answer) = request(
        a,
        "POST",
        "/alerts/generic",
        &[
            ("Authorization", format!("Bearer {GENERIC_TOKEN}")),
            ("Content-Length", "5".into()),
        ],
        b"{nope",
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer.contains("not valid JSON"), "{answer}");
    let mut missing = generic("fp-1", "firing", "t");
    missing.as_object_mut().unwrap().remove("fingerprint");
    let (status, answer) = post(&stack, "/alerts/generic", GENERIC_TOKEN, &missing).await;
    assert_eq!(
        (status, answer.trim()),
        (400, r#"{"error":"missing field `fingerprint`"}"#)
    );
    let mut v3 = body.clone();
    v3["version"] = json!("3");
    assert_eq!(post(&stack, "/alerts/alertmanager", AM_TOKEN, &v3).await.0, 400);
    // GET: 405; an unknown kind: 404.
    assert_eq!(request(a, "GET", "/alerts/generic", &[], b"").await.0, 405);
    assert_eq!(post(&stack, "/alerts/zabbix", GENERIC_TOKEN, &body).await.0, 404);
    // Nothing was stored or posted.
    assert!(stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "fp-1")
        .await
        .unwrap()
        .is_none());
    assert!(stack
        .db
        .alert_by_fingerprint("prometheus", "3f1c9a70b2d45e81")
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts_to_triage(&stack), 0);
    // Each answer is counted.
    let (_, metrics) = request(a, "GET", "/metrics", &[], b"").await;
    for line in [
        r#"incident_bot_alert_requests_total{kind="alertmanager",status="401"}"#,
        r#"incident_bot_alert_requests_total{kind="generic",status="413"}"#,
        r#"incident_bot_alert_requests_total{kind="generic",status="400"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert_slack_happy(&stack);
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn alertmanager_groups_are_posted_once_deduplicated_resolved_and_flapping() {
    let stack = alert_stack().await;
    let body = fixture("alertmanager_v4.json");
    let (status, answer) = post(&stack, "/alerts/alertmanager", AM_TOKEN, &body).await;
    assert_eq!(status, 202, "{answer}");
    // Stored before the answer.
    let payments = stack
        .db
        .alert_by_fingerprint("prometheus", "3f1c9a70b2d45e81")
        .await
        .unwrap()
        .expect("stored before the 202");
    assert_eq!(payments.severity, Some(Severity::Sev1), "critical maps to SEV1");
    assert_eq!(
        payments.service.as_deref(),
        Some("payments"),
        "payments-api maps to payments"
    );
    assert_eq!(payments.title, "Payments API returning 5xx");
    assert!(payments
        .links
        .iter()
        .any(|l| l.url.starts_with("https://runbooks.example.org")));
    let checkout = stack
        .db
        .alert_by_fingerprint("prometheus", "b80e4d1f6a9c2237")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkout.severity, Some(Severity::Sev3), "warning maps to SEV3");
    assert_eq!(checkout.service.as_deref(), Some("checkout"));

    let (ts, _, blocks) = wait_message(&stack, &["Payments API returning 5xx", "Declare incident", "1×"]).await;
    assert!(blocks.contains("Silence 1 h") && blocks.contains("Acknowledge") && blocks.contains("Link to incident"));
    assert!(blocks.contains("runbooks.example.org/payments/5xx"), "links shown");
    assert!(blocks.contains("severity=critical"), "labels shown");
    wait_message(&stack, &["Checkout latency high"]).await;
    assert_eq!(posts_to_triage(&stack), 2, "one message per group");

    // Repeats update the message (count, last seen), never post again.
    for _ in 0..3 {
        assert_eq!(post(&stack, "/alerts/alertmanager", AM_TOKEN, &body).await.0, 202);
    }
    let (ts2, _, _) = wait_message(&stack, &["Payments API returning 5xx", "4×"]).await;
    assert_eq!(ts, ts2, "the same message, updated");
    assert_eq!(posts_to_triage(&stack), 2);

    // Resolved: the message says so and loses its buttons but Declare/Link.
    let mut resolved = body.clone();
    resolved["status"] = json!("resolved");
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"].as_array_mut().unwrap().truncate(1);
    assert_eq!(post(&stack, "/alerts/alertmanager", AM_TOKEN, &resolved).await.0, 202);
    let (_, text, blocks) = wait_message(&stack, &["Payments API returning 5xx", "resolved", "Resolved"]).await;
    assert!(text.starts_with("✅"), "{text}");
    assert!(!blocks.contains("Silence 1 h"));
    let g = stack.db.alert(payments.id).await.unwrap().unwrap();
    assert_eq!(g.status, AlertStatus::Resolved);

    // Firing again within 5 minutes: flapping, the same message, no new post.
    let mut again = resolved.clone();
    again["alerts"][0]["status"] = json!("firing");
    assert_eq!(post(&stack, "/alerts/alertmanager", AM_TOKEN, &again).await.0, 202);
    let (ts3, _, _) = wait_message(&stack, &["Payments API returning 5xx", "flapping: 1 times"]).await;
    assert_eq!(ts3, ts);
    assert_eq!(posts_to_triage(&stack), 2, "flapping does not post again");
    assert_eq!(
        stack.db.alert_event_kinds(payments.id).await.unwrap(),
        ["fired", "repeated", "repeated", "repeated", "resolved", "flapped"]
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn grafana_alerts_map_severity_service_and_links() {
    let stack = alert_stack().await;
    let (status, answer) = post(&stack, "/alerts/grafana", GRAFANA_TOKEN, &fixture("grafana.json")).await;
    assert_eq!(status, 202, "{answer}");
    let g = stack
        .db
        .alert_by_fingerprint("grafana", "8a0d2be3c4f51976")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.severity, Some(Severity::Sev2), "high maps to SEV2");
    assert_eq!(g.service.as_deref(), Some("settlement"));
    assert_eq!(g.title, "Settlement queue backlog growing");
    assert_eq!(g.starts_at.unwrap().to_rfc3339(), "2026-12-03T06:50:00+00:00");
    let urls: Vec<&str> = g.links.iter().map(|l| l.url.as_str()).collect();
    assert!(urls.contains(&"https://grafana.example.org/d/settle01"), "{urls:?}");
    assert!(
        urls.contains(&"https://runbooks.example.org/settlement/backlog"),
        "{urls:?}"
    );
    wait_message(
        &stack,
        &["Settlement queue backlog growing", "SEV2 (high)", "settlement"],
    )
    .await;
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn declare_from_an_alert_prefills_the_form_and_links_it() {
    let stack = alert_stack().await;
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("chk-42", "firing", "Pay endpoint down")
        )
        .await
        .0,
        202
    );
    let group = stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "chk-42")
        .await
        .unwrap()
        .unwrap();
    let (ts, _, _) = wait_message(&stack, &["Pay endpoint down"]).await;
    let before = stack.sandbox.views_opened().len();
    stack
        .sandbox
        .click_button("U0ALICE", TRIAGE, &ts, "alert_declare", &group.id.to_string())
        .await
        .unwrap();
    let view = wait_for(WAIT, || async { stack.sandbox.views_opened().get(before).cloned() })
        .await
        .expect("the declare form opened");
    let blocks = view.blocks.to_string();
    assert!(
        blocks.contains(r#""initial_value":"Pay endpoint down""#),
        "title pre-filled: {blocks}"
    );
    let find = |id: &str| {
        view.blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["block_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("severity")["element"]["initial_option"]["value"], "SEV1");
    assert_eq!(find("services")["element"]["initial_options"][0]["value"], "payments");
    let description = find("description")["element"]["initial_value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(description.contains("HTTP 503 from /pay") && description.contains("https://status.example.org/checks/42"));
    // Submit as Slack would send the pre-filled form back.
    let values = incident_bot::demo::declare_values(
        "Pay endpoint down",
        "U0ALICE",
        &json!({ "severity": "SEV1", "services": ["payments"], "description": description }),
    );
    stack.sandbox.submit_view("U0ALICE", &view.id, values).await.unwrap();
    let channel = stack.wait_ready(1, WAIT).await.unwrap();
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    let linked = wait_for(WAIT, || async {
        stack
            .db
            .alert(group.id)
            .await
            .unwrap()
            .unwrap()
            .incident_id
            .filter(|i| *i == incident.id.0)
    })
    .await;
    assert!(
        linked.is_some(),
        "the alert is linked to the incident it was declared from"
    );
    let start = group.starts_at.expect("the alert's start");
    assert!((start - started()).num_seconds().abs() <= 1);
    assert_eq!(
        stack.db.detected_at(incident.id).await.unwrap(),
        Some(start),
        "detection time = the alert's start"
    );
    let incident = stack.db.incident(incident.id).await.unwrap();
    assert_eq!(
        incident.footprint.impact_start,
        Some(start),
        "impact start, when none was set"
    );
    assert!(common::event_kinds(&stack, incident.id)
        .await
        .contains(&"alert".to_string()));
    wait_message(&stack, &["Pay endpoint down", "Linked to INC-1"]).await;
    let notice = wait_for(WAIT, || async {
        stack
            .sandbox
            .messages(&channel)
            .into_iter()
            .find(|m| m.text.contains("linked an alert"))
    })
    .await;
    assert!(notice.is_some(), "the incident channel hears of the alert");
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn link_acknowledge_silence_and_all_resolved_is_told_once() {
    let stack = alert_stack().await;
    let (incident, channel) = declared(&stack, "Checkout errors", "SEV2").await;
    for fp in ["a-1", "a-2"] {
        assert_eq!(
            post(
                &stack,
                "/alerts/generic",
                GENERIC_TOKEN,
                &generic(fp, "firing", &format!("Alert {fp}"))
            )
            .await
            .0,
            202
        );
    }
    let a1 = stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "a-1")
        .await
        .unwrap()
        .unwrap();
    let a2 = stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "a-2")
        .await
        .unwrap()
        .unwrap();
    for a in [&a1, &a2] {
        let (ts, _, _) = wait_message(&stack, &[&a.title]).await;
        let before = stack.sandbox.views_opened().len();
        stack
            .sandbox
            .click_button("U0BOB", TRIAGE, &ts, "alert_link", &a.id.to_string())
            .await
            .unwrap();
        let view = wait_for(WAIT, || async { stack.sandbox.views_opened().get(before).cloned() })
            .await
            .expect("the link form opened");
        assert!(
            view.blocks.to_string().contains("INC-1"),
            "the open incident is offered"
        );
        let values = json!({ "incident": { "incident": { "type": "static_select",
            "selected_option": { "text": { "type": "plain_text", "text": "INC-1" }, "value": incident.id.0.to_string() } } } });
        let ack = stack.sandbox.submit_view("U0BOB", &view.id, values).await.unwrap();
        assert!(ack.payload.is_none(), "no field errors: {:?}", ack.payload);
        wait_message(&stack, &[&a.title, "Linked to INC-1"]).await;
    }
    // Acknowledge and silence show on the message.
    let (ts1, _, _) = wait_message(&stack, &["Alert a-1"]).await;
    stack
        .sandbox
        .click_button("U0CAROL", TRIAGE, &ts1, "alert_ack", &a1.id.to_string())
        .await
        .unwrap();
    wait_message(&stack, &["Alert a-1", "Acknowledged by <@U0CAROL>"]).await;
    let (ts2, _, _) = wait_message(&stack, &["Alert a-2"]).await;
    stack
        .sandbox
        .click_button("U0CAROL", TRIAGE, &ts2, "alert_silence", &a2.id.to_string())
        .await
        .unwrap();
    wait_message(&stack, &["Alert a-2", "Silenced until"]).await;
    // A silenced fingerprint's repeats are stored, not shown.
    stack.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let updates = stack.sandbox.calls_to("chat.update").len();
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("a-2", "firing", "Alert a-2")
        )
        .await
        .0,
        202
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.sandbox.calls_to("chat.update").len(),
        updates,
        "silenced: no update"
    );
    assert_eq!(stack.db.alert(a2.id).await.unwrap().unwrap().fire_count, 2);

    // Both resolve: each goes on the timeline; the SPOC is asked once.
    for fp in ["a-1", "a-2", "a-2"] {
        assert_eq!(
            post(
                &stack,
                "/alerts/generic",
                GENERIC_TOKEN,
                &generic(fp, "resolved", &format!("Alert {fp}"))
            )
            .await
            .0,
            202
        );
    }
    let told = wait_for(WAIT, || async {
        stack
            .sandbox
            .messages(&channel)
            .into_iter()
            .find(|m| m.text.contains("all alerts linked to INC-1 have resolved"))
    })
    .await
    .expect("the SPOC is told every alert resolved");
    assert!(told.text.contains("<@U0BOB>"), "{}", told.text);
    stack.settle().await;
    let count = stack
        .sandbox
        .messages(&channel)
        .iter()
        .filter(|m| m.text.contains("have resolved"))
        .count();
    assert_eq!(count, 1, "told once");
    let timeline = stack.db.timeline(incident.id).await.unwrap();
    let alerts: Vec<String> = timeline
        .iter()
        .filter(|e| e.kind == "alert")
        .map(|e| e.details["what"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(alerts, ["linked", "linked", "resolved", "resolved", "all_resolved"]);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_crash_right_after_the_post_still_posts_once() {
    let point = incident_bot::slack::web::CrashPoint::after("chat.postMessage", 0);
    let mut opts = http_options();
    opts.crash_point = Some(point.clone());
    opts.alerts.lease = Duration::from_secs(1);
    let mut stack = stack_with(alert_policy(), opts).await;
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("crash-1", "firing", "Crash alert")
        )
        .await
        .0,
        202
    );
    tokio::time::timeout(WAIT, point.crashed())
        .await
        .expect("the post happened");
    stack.kill_bot().await;
    let mut opts = http_options();
    opts.alerts.lease = Duration::from_secs(1);
    stack.restart_bot(opts).await.unwrap();
    let group = wait_for(WAIT, || async {
        stack
            .db
            .alert_by_fingerprint("hooks/pingdom", "crash-1")
            .await
            .unwrap()
            .filter(|g| g.message_ts.is_some())
    })
    .await
    .expect("the restarted bot recorded the message");
    assert_eq!(posts_to_triage(&stack), 1, "posted once, adopted after the crash");
    assert_eq!(triage(&stack).len(), 1);
    assert_eq!(group.message_ts.as_deref(), Some(triage(&stack)[0].0.as_str()));
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_rule_declares_critical_payments_alerts_with_the_oncall_spoc() {
    let mut policy = alert_policy();
    policy.alerts.rules = vec![AlertRule {
        source: Some("hooks".into()),
        severity: Some(Severity::Sev1),
        service: Some("payments".into()),
        labels: BTreeMap::new(),
        declare: true,
        declare_severity: Some(Severity::Sev2),
        oncall_group: Some("S0ONCALL".into()),
        spoc: Some("U0DAVE".into()),
    }];
    let stack = stack_with(policy, http_options()).await;
    stack
        .sandbox
        .add_usergroup("S0ONCALL", "payments-oncall", &["U0CAROL", "U0BOB"]);
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("rule-1", "firing", "Payments down")
        )
        .await
        .0,
        202
    );
    let channel = stack.wait_ready(1, WAIT).await.expect("declared by the rule");
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    assert_eq!(incident.severity, Severity::Sev2);
    assert_eq!(incident.spoc.as_str(), "U0CAROL", "the on-call group's first member");
    assert_eq!(incident.services, ["payments"]);
    let timeline = stack.db.timeline(incident.id).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.kind == "alert" && e.details["what"] == "auto_declared"),
        "the timeline says a rule declared it"
    );
    assert!(incident.description.contains("Declared automatically by an alert rule"));
    wait_message(&stack, &["Payments down", "Linked to INC-1"]).await;
    let _ = channel;
    let announced = stack
        .sandbox
        .messages(incident_bot::demo::ANNOUNCE_CHANNEL)
        .into_iter()
        .find(|m| m.blocks.to_string().contains("INC-1"))
        .expect("announced");
    assert!(
        announced.blocks.to_string().contains("automatically by an alert rule"),
        "the announcement says a rule declared it: {}",
        announced.blocks
    );
    // A repeat neither declares again nor posts again.
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("rule-1", "firing", "Payments down")
        )
        .await
        .0,
        202
    );
    stack.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.db.incident_count().await.unwrap(), 1);
    assert_eq!(posts_to_triage(&stack), 1);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn private_incidents_stay_private_in_the_triage_channel() {
    let stack = alert_stack().await;
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Secret merchant breach",
            json!({ "spoc": "U0BOB", "private": true }),
        )
        .await
        .unwrap();
    stack.wait_ready(1, WAIT).await.unwrap();
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    // A public one too, so that Carol's form has a list to pick from.
    declared(&stack, "Public checkout errors", "SEV3").await;
    assert_eq!(
        post(
            &stack,
            "/alerts/generic",
            GENERIC_TOKEN,
            &generic("priv-1", "firing", "Card fraud spike")
        )
        .await
        .0,
        202
    );
    let group = stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "priv-1")
        .await
        .unwrap()
        .unwrap();
    let (ts, _, _) = wait_message(&stack, &["Card fraud spike"]).await;
    // Carol is not a member: the private incident is not offered to her.
    let before = stack.sandbox.views_opened().len();
    stack
        .sandbox
        .click_button("U0CAROL", TRIAGE, &ts, "alert_link", &group.id.to_string())
        .await
        .unwrap();
    let view = wait_for(WAIT, || async { stack.sandbox.views_opened().get(before).cloned() })
        .await
        .unwrap();
    let shown = view.blocks.to_string();
    assert!(
        shown.contains("INC-2") && !shown.contains("INC-1") && !shown.contains("Secret merchant"),
        "{shown}"
    );
    // And a forged submission naming it is refused.
    let values = json!({ "incident": { "incident": { "type": "static_select",
        "selected_option": { "text": { "type": "plain_text", "text": "x" }, "value": incident.id.0.to_string() } } } });
    let ack = stack
        .sandbox
        .submit_view("U0CAROL", &view.id, values.clone())
        .await
        .unwrap();
    assert!(ack.payload.is_some(), "refused in the form");
    assert!(stack.db.alert(group.id).await.unwrap().unwrap().incident_id.is_none());
    // Alice (a member) links it: the message says a private incident, nothing more.
    let before = stack.sandbox.views_opened().len();
    stack
        .sandbox
        .click_button("U0ALICE", TRIAGE, &ts, "alert_link", &group.id.to_string())
        .await
        .unwrap();
    let view = wait_for(WAIT, || async { stack.sandbox.views_opened().get(before).cloned() })
        .await
        .unwrap();
    assert!(view.blocks.to_string().contains("INC-1"));
    let ack = stack.sandbox.submit_view("U0ALICE", &view.id, values).await.unwrap();
    assert!(ack.payload.is_none(), "{:?}", ack.payload);
    let (_, text, blocks) = wait_message(&stack, &["Card fraud spike", "Linked to a private incident"]).await;
    assert!(!blocks.contains("INC-1") && !blocks.contains("Secret merchant") && !text.contains("INC-1"));
    assert_eq!(
        stack.db.alert(group.id).await.unwrap().unwrap().incident_id,
        Some(incident.id.0)
    );
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_crash_right_after_the_202_loses_nothing() {
    let mut stack = alert_stack().await;
    let mut body = fixture("alertmanager_v4.json");
    body["alerts"].as_array_mut().unwrap().truncate(1);
    assert_eq!(post(&stack, "/alerts/alertmanager", AM_TOKEN, &body).await.0, 202);
    // Killed at once: the poster may or may not have posted yet.
    stack.kill_bot().await;
    stack.restart_bot(http_options()).await.unwrap();
    let group = wait_for(WAIT, || async {
        stack
            .db
            .alert_by_fingerprint("prometheus", "3f1c9a70b2d45e81")
            .await
            .unwrap()
            .filter(|g| g.message_ts.is_some())
    })
    .await
    .expect("posted after the restart");
    stack.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts_to_triage(&stack), 1, "posted once");
    assert_eq!(group.fire_count, 1);
    assert_slack_happy(&stack);
}

#[tokio::test]
async fn a_silence_that_ends_shows_on_the_message_with_the_repeats_it_held_back() {
    let stack = alert_stack().await;
    let fire = || generic("s-1", "firing", "Alert s-1");
    assert_eq!(post(&stack, "/alerts/generic", GENERIC_TOKEN, &fire()).await.0, 202);
    wait_message(&stack, &["Alert s-1", "1×"]).await;
    let group = stack
        .db
        .alert_by_fingerprint("hooks/pingdom", "s-1")
        .await
        .unwrap()
        .unwrap();
    // A short silence (the button's is an hour), stored as the button stores it.
    let sync = incident_bot::db::SyncPolicy {
        posting: true,
        update_gap: Duration::from_millis(50),
    };
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::milliseconds(1500);
    let done = stack
        .db
        .triage_alert(group.id, "U0CAROL", Some(until), "silence:s-1", now, sync)
        .await
        .unwrap();
    assert_eq!(done, Some(true));
    wait_message(&stack, &["Alert s-1", "Silenced until"]).await;
    // Repeats while silenced are counted, not shown.
    stack.settle().await;
    for _ in 0..2 {
        assert_eq!(post(&stack, "/alerts/generic", GENERIC_TOKEN, &fire()).await.0, 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // When the silence ends the message is synced once more, unprompted: no "silenced", three fires.
    let (_, _, blocks) = wait_message(&stack, &["Alert s-1", "3×"]).await;
    assert!(!blocks.contains("Silenced until"), "{blocks}");
    assert!(chrono::Utc::now() >= until, "not before the silence ended");
    // And no update before that showed the repeats (however slow this machine was meanwhile).
    let updates: Vec<String> = stack
        .sandbox
        .calls_to("chat.update")
        .iter()
        .map(|c| c.params.to_string())
        .collect();
    assert!(updates.iter().any(|p| p.contains("Silenced until") && p.contains("1×")));
    let shown_silenced: Vec<&String> = updates
        .iter()
        .filter(|p| p.contains("Silenced until") && !p.contains("1×"))
        .collect();
    assert!(
        shown_silenced.is_empty(),
        "a silenced message showed its repeats: {shown_silenced:?}"
    );
    assert_slack_happy(&stack);
}
