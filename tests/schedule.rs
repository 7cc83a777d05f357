//! Cron-scheduled reports: posted on schedule to the configured channel, each slot exactly once
//! even with two replicas, on SQLite or PostgreSQL.

mod common;

use common::{assert_slack_happy, stack_with};
use incident_bot::app::Bot;
use incident_bot::config::{Policy, ReportSchedule};
use incident_bot::demo::{demo_policy, fast_options};
use std::time::Duration;

#[tokio::test]
async fn scheduled_reports_post_each_slot_once_across_replicas() {
    let schedule = ReportSchedule {
        cron: "*/2 * * * * *".into(), // every 2 seconds, for the test
        period: "weekly".into(),
        channel: "C0GENERAL".into(),
    };
    let policy = Policy {
        reports: vec![schedule.clone()],
        ..demo_policy()
    };
    let mut stack = stack_with(policy, fast_options()).await;
    let replica = Bot::start(&stack.settings, stack.db.clone(), fast_options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    replica.stop().await;
    stack.stop_bot().await;
    let key = incident_bot::slack::report::schedule_key(&schedule);
    let fired = stack.db.report_slots_fired(&key).await.unwrap();
    let posted = stack
        .sandbox
        .messages("C0GENERAL")
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("Incident report"))
        .count();
    assert!(fired >= 2, "slots fired: {fired}");
    assert_eq!(
        posted as i64, fired,
        "every slot posted exactly once by one of the two replicas"
    );
    assert_slack_happy(&stack);
}
