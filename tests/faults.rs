//! Fault injection, through the sandbox: 20 % of Web API calls answer 429 (`Retry-After: 1`),
//! 500, or time out (held unprocessed past the bot's 2 s timeout), from a fixed seed, during a
//! run of declares, updates and reminders. Every incident must end complete (one channel, one
//! pinned card, one announcement, one confirmation), every update posted exactly once in the
//! channel and once in the announcement thread, every fired reminder posted once: nothing lost,
//! nothing doubled (see `common/soak.rs` for the exact audit).
//!
//! Size: the run is 200 declares, 1,000 updates and 500 reminders. That takes about
//! 70 s per database in release mode on the 2-core CI machine (most of it waiting out
//! `Retry-After`s and timeouts), too long for the suite, so this test runs a fifth of it (about
//! 30 s per database) and `cargo bench --bench declare -- --faults` runs the full size with the
//! same audit.

mod common;
#[path = "common/soak.rs"]
mod soak;

use common::{database, logs};
use incident_bot::demo::LocalStack;
use incident_bot::sandbox::{FaultMix, SandboxOptions};
use soak::{percentile, soak_options, soak_policy, Size, FULL, HOLD};

const SCALED: Size = Size {
    declares: FULL.declares / 5,
    updates: FULL.updates / 5,
    reminders: FULL.reminders / 5,
    workers: 16,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_of_web_api_calls_fail_and_nothing_is_lost_or_doubled() {
    logs();
    let db = database();
    let stack = LocalStack::start_with_sandbox(
        db.as_ref().map(|(u, s)| (u.as_str(), Some(s.as_str()))),
        soak_policy(),
        soak_options(),
        SandboxOptions::default(),
    )
    .await
    .expect("the sandbox and bot start");
    stack.sandbox.set_fault_mix(Some(FaultMix::twenty_percent(7, HOLD)));
    let report = soak::run(&stack, SCALED).await.expect("the run completes");
    stack.sandbox.set_fault_mix(None);
    let faults = stack.sandbox.fault_counts();
    let calls = stack.sandbox.calls().len();
    println!(
        "{SCALED:?} in {:.1} s: {calls} Web API calls, faults {faults:?}; form retries {}; reminders posted {}; \
         ack p99 {:?}; declare→ready p50 {:?} p99 {:?}",
        report.wall.as_secs_f64(),
        report.form_retries,
        report.reminders_posted,
        percentile(&report.acks, 99.0),
        percentile(&report.ready, 50.0),
        percentile(&report.ready, 99.0),
    );
    assert_eq!(report.problems, Vec::<String>::new(), "the audit found problems");
    assert_eq!(report.updates_posted, SCALED.updates);
    assert!(report.reminders_posted >= SCALED.reminders);
    // The mix really bit: about a fifth of the calls, of every kind.
    assert!(faults.total() * 100 >= calls * 15, "{faults:?} of {calls} calls");
    assert!(faults.rate_limited > 0 && faults.server_errors > 0 && faults.timeouts > 0);
}

/// An update posted while the announcement is still being retried waits for the announcement
/// thread instead of being dropped: stakeholders get it once, after the announcement.
#[tokio::test]
async fn a_thread_notice_waits_for_an_announcement_that_is_being_retried() {
    use incident_bot::demo::{update_values, wait_for, ANNOUNCE_CHANNEL};
    use incident_bot::incident::model::IncidentNumber;
    use incident_bot::sandbox::Fault;
    use std::time::Duration;
    let stack = common::stack().await;
    let sb = &stack.sandbox;
    // The card post (first chat.postMessage) is slow, giving time to post an update as soon as
    // the channel exists; the announcement (the next one) then fails for a while.
    sb.inject_fault("chat.postMessage", Fault::Slow(Duration::from_millis(400)), 1);
    sb.inject_fault("chat.postMessage", Fault::ApiError("internal_error".into()), 6);
    stack
        .declare(
            "U0ALICE",
            "C0GENERAL",
            "Payouts delayed",
            serde_json::json!({ "spoc": "U0BOB" }),
        )
        .await
        .unwrap();
    let channel = wait_for(Duration::from_secs(3), || async {
        stack.db.incident_by_number(IncidentNumber(1)).await.ok()??.channel_id
    })
    .await
    .expect("the channel is created");
    let form = stack.open_form("U0BOB", &channel, "update").await.unwrap();
    sb.submit_view(
        "U0BOB",
        &form.id,
        update_values("identified", "Bank file rejected", "", ""),
    )
    .await
    .unwrap();
    stack.wait_ready(1, Duration::from_secs(10)).await.unwrap();
    stack.settle().await;
    let incident = stack.db.incident_by_number(IncidentNumber(1)).await.unwrap().unwrap();
    let thread: Vec<String> = sb
        .messages(ANNOUNCE_CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.is_some() && m.thread_ts == incident.announce_ts)
        .map(|m| m.text)
        .collect();
    assert_eq!(
        thread.iter().filter(|t| t.contains("Bank file rejected")).count(),
        1,
        "{thread:?}"
    );
    let kinds = common::event_kinds(&stack, incident.id).await;
    assert!(!kinds.iter().any(|k| k == "side_effect_failed"), "{kinds:?}");
    common::assert_slack_happy(&stack);
}
