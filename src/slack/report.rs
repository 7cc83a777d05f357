//! `/incident report`: Block Kit for a report, and the handler that builds it off the ack's
//! critical path when it is slow, and attaches the chart to public reports.

use super::blocks;
use super::listener::Handler;
use super::web::SlackWeb;
use crate::incident::model::UserId;
use crate::report::metrics::minutes;
use crate::report::render::{change, count, count_change, duration, percent, title, value};
use crate::report::{chart, Headline, PeriodSpec, Report, Value as Figure};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use std::fmt::Write;
use std::time::Duration;

/// How long the ack waits for the report; past this the ack says it is on its way and the
/// report is posted when ready (Slack wants the ack within 3 s, and an ack holds up the
/// connection's next envelope).
pub const INLINE_BUDGET: Duration = Duration::from_millis(1200);

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": blocks::truncate(text, 2000) })
}

fn with_change(h: &Headline) -> String {
    let c = change(h);
    if c.is_empty() {
        value(h.value)
    } else {
        format!("{} {c}", value(h.value))
    }
}

/// The report as Block Kit (at most 12 blocks; texts within Slack's limits).
pub fn report_blocks(r: &Report) -> Value {
    let heads = r.headlines();
    let h = |key: &str| heads.iter().find(|h| h.key == key).cloned().expect("a known headline");
    let c = &r.current;
    let mut out = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": blocks::truncate(&format!("📊 Incident report · {}", r.period.kind()), 150), "emoji": true } }),
        json!({ "type": "context", "elements": [mrkdwn(&format!(
            "*{}*{} · compared with {}",
            r.period,
            r.service.as_ref().map(|s| format!(" · service line `{s}`")).unwrap_or_default(),
            r.previous_period
        ))] }),
    ];
    let compliance = match c.compliance.ratio() {
        Some(_) => format!(
            "{} ({}/{} on time)",
            with_change(&h("update_sla_compliance")),
            c.compliance.on_time,
            c.compliance.due()
        ),
        None => "n/a (no update fell due)".into(),
    };
    out.push(json!({ "type": "section", "fields": [
        mrkdwn(&format!("*Incidents*\n{}", with_change(&h("incidents")))),
        mrkdwn(&format!("*Still open*\n{}", with_change(&h("still_open")))),
        mrkdwn(&format!("*Canceled* (excluded)\n{}", with_change(&h("canceled")))),
        mrkdwn(&format!("*Update-SLA compliance*\n{compliance}")),
        mrkdwn(&format!("*Breaches*\n{}", with_change(&h("breaches")))),
        mrkdwn(&format!("*Impact*\n{} min {}", count(minutes(c.impact_ms)), change(&h("impact_minutes")))),
        mrkdwn(&format!(
            "*Follow-ups*\nopen {} · overdue {}\nin all {} · done {} · won't do {}",
            with_change(&h("follow_ups_open")),
            with_change(&h("follow_ups_overdue")),
            with_change(&h("follow_ups")),
            with_change(&h("follow_ups_done")),
            with_change(&h("follow_ups_wont_do"))
        )),
    ] }));
    out.push(json!({ "type": "divider" }));
    let mut times = Vec::new();
    for (key, label, stats) in [
        ("time_to_acknowledge", "Time to acknowledge", c.tta),
        ("time_to_mitigate", "Time to mitigate", c.ttm),
        ("time_to_resolve", "Time to resolve", c.ttr),
    ] {
        let part = |p: &str| with_change(&h(&format!("{key}_{p}")));
        times.push(mrkdwn(&format!(
            "*{label}* ({} incidents)\nmedian {} · p90 {} · mean {}",
            stats.count,
            part("median"),
            part("p90"),
            part("mean")
        )));
    }
    times.push(mrkdwn(&format!(
        "*Footprint*\ncustomers {} · merchants {} · transactions {}",
        with_change(&h("customers")),
        with_change(&h("merchants")),
        with_change(&h("transactions"))
    )));
    out.push(json!({ "type": "section", "fields": times }));
    let breakdown = |list: &[(String, i64)], before: &[(String, i64)]| -> String {
        list.iter()
            .map(|(k, n)| {
                let b = before.iter().find(|(x, _)| x == k).map_or(0, |(_, n)| *n);
                format!("{k} {n} {}", count_change(*n, b))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    out.push(json!({ "type": "section", "fields": [
        mrkdwn(&format!("*By severity*\n{}", breakdown(&c.by_severity, &r.previous.by_severity))),
        mrkdwn(&format!("*By status*\n{}", breakdown(&c.by_status, &r.previous.by_status))),
    ] }));
    // Issue 12: the change calendar's figures, when the period had changes.
    if r.changes.finished > 0 || r.changes.by_kind.iter().any(|(_, n)| *n > 0) {
        out.push(json!({ "type": "section", "fields": [
            mrkdwn(&format!("*Changes*\n{} · done or rolled back {}", with_change(&h("changes")), with_change(&h("changes_finished")))),
            mrkdwn(&format!("*Change failure rate*\n{}", with_change(&h("change_failure_rate")))),
            mrkdwn(&format!("*Freeze overrides*\n{}", with_change(&h("freeze_overrides")))),
            mrkdwn(&format!(
                "*Incidents with a linked change*\n{} (without: {})",
                with_change(&h("incidents_with_linked_change")),
                with_change(&h("incidents_without_linked_change"))
            )),
        ] }));
    }
    out.push(json!({ "type": "divider" }));
    out.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": service_table(r) } }));
    out.push(json!({ "type": "context", "elements": [mrkdwn(
        "Canceled incidents count only as canceled. Reports name no incident (private ones are counted, never named). \
         Grades: worst of incidents, impact minutes, update-SLA compliance and change failure rate; definitions in the README, \"Reports\"."
    )] }));
    Value::Array(out)
}

/// The per-service-line table, monospaced, within a section's 3,000 characters.
fn service_table(r: &Report) -> String {
    let mut table = format!(
        "{:<16} {:>9} {:>10} {:>13} {:>8} {:>5}\n",
        "service line", "incidents", "impact min", "update SLA", "breaches", "grade"
    );
    let mut shown = 0;
    for s in &r.current.services {
        let before = r.previous_incidents(&s.service);
        let line = format!(
            "{:<16} {:>9} {:>10} {:>13} {:>8} {:>5}\n",
            blocks::truncate(&s.service, 16),
            format!("{} {}", s.incidents, count_change(s.incidents, before)),
            count(minutes(s.impact_ms)),
            percent(s.compliance.ratio()),
            s.breaches,
            s.grade.map_or("—".to_string(), |g| g.to_string())
        );
        if table.chars().count() + line.chars().count() > 2_800 {
            break;
        }
        table.push_str(&line);
        shown += 1;
    }
    let mut text = format!("*Service lines*\n```{table}```");
    if shown < r.current.services.len() {
        let _ = write!(text, "\n…and {} more", r.current.services.len() - shown);
    }
    text
}

/// The notification text (and what clients without blocks show).
pub fn report_text(r: &Report) -> String {
    let heads = r.headlines();
    let find = |key: &str| heads.iter().find(|h| h.key == key).map(|h| h.value);
    let incidents = match find("incidents") {
        Some(Figure::Count(n)) => n,
        _ => 0,
    };
    let ttm = match find("time_to_mitigate_median") {
        Some(Figure::Duration(Some(ms))) => duration(ms),
        _ => "n/a".into(),
    };
    format!(
        "{}: {incidents} incidents, median time to mitigate {ttm}, update-SLA compliance {}",
        title(r),
        percent(r.current.compliance.ratio())
    )
}

/// What a report is posted as.
pub fn report_content(r: &Report) -> SlackMessageContent {
    blocks::content(&report_text(r), report_blocks(r))
}

/// A scheduled report posted late (its slot passed while the bot was down, e.g. on the first
/// start after a deploy): the same report, saying which slot it catches up so nobody is
/// surprised by a report at an odd hour.
pub fn catch_up_content(r: &Report, slot: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> SlackMessageContent {
    let local = slot.with_timezone(&tz);
    let note = format!(
        "⏪ Catch-up of the {} slot ({} {}): it passed while I was not running, so here it is now.",
        local.format("%H:%M"),
        local.format("%a %Y-%m-%d"),
        tz.name()
    );
    let mut blocks = report_blocks(r);
    if let Some(list) = blocks.as_array_mut() {
        list.insert(1, json!({ "type": "context", "elements": [mrkdwn(&note)] }));
    }
    blocks::content(&format!("{note} {}", report_text(r)), blocks)
}

/// Renders the chart and shares it in `channel`.
pub async fn share_chart(web: &SlackWeb, db: &crate::db::Db, r: &Report, channel: &str) -> anyhow::Result<()> {
    let png = chart::render(&title(r), &r.daily(db).await?)?;
    let name = format!("incident-report-{}-{}.png", r.period.first, r.period.last);
    web.upload_file(
        channel,
        &name,
        &title(r),
        &format!(
            "Chart for the incident report {}: incidents per day by severity, and time to mitigate.",
            r.period
        ),
        png,
        "image/png",
    )
    .await?;
    Ok(())
}

impl Handler {
    /// `/incident report …`: answered in the ack when the report is ready within
    /// [`INLINE_BUDGET`], else posted when ready. `public` posts in the channel (with the
    /// chart); otherwise only the asker sees it.
    pub async fn report(
        &self,
        event: &SlackCommandEvent,
        user: &UserId,
        period: PeriodSpec,
        service: Option<String>,
        public: bool,
    ) -> SlackCommandEventResponse {
        let ephemeral = |text: &str| {
            SlackCommandEventResponse::new(blocks::text(text)).with_response_type(SlackMessageResponseType::Ephemeral)
        };
        let (service_layer, web) = (self.service.clone(), self.web.clone());
        let (channel, asker) = (event.channel_id.to_string(), user.to_string());
        // Late answers go through the command's response_url: chat.postEphemeral works only
        // where the bot is a member, and people ask for reports from anywhere.
        let response_url = event.response_url.0.to_string();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<Result<Report, String>>();
        tokio::spawn(async move {
            let built = service_layer
                .report(period, service.as_deref())
                .await
                .map_err(|refusal| refusal.to_string());
            let report = built.as_ref().ok().cloned();
            if let Err(late) = tx.send(built) {
                // The ack has gone: post the report now.
                let posted = match &late {
                    Ok(r) if public => web.post(&channel, report_content(r), None).await.map(|_| ()),
                    Ok(r) => {
                        web.tell_person(Some(&response_url), &channel, &asker, report_content(r))
                            .await
                    }
                    Err(message) => {
                        web.tell_person(Some(&response_url), &channel, &asker, blocks::text(message))
                            .await
                    }
                };
                if let Err(e) = posted {
                    tracing::warn!(error = %e, "cannot post a report");
                    let text = format!("⚠️ I could not post the report here ({e}).");
                    let _ = web
                        .tell_person(Some(&response_url), &channel, &asker, blocks::text(&text))
                        .await;
                }
            }
            if let (Some(r), true) = (report, public) {
                if let Err(e) = share_chart(&web, &service_layer.db, &r, &channel).await {
                    tracing::warn!(error = %e, "cannot share a report chart");
                    let text = format!(
                        "⚠️ I could not attach the chart ({e}). Invite me to this channel (`/invite @incident-bot`) and ask again."
                    );
                    let _ = web
                        .tell_person(Some(&response_url), &channel, &asker, blocks::text(&text))
                        .await;
                }
            }
        });
        let built = match tokio::time::timeout(INLINE_BUDGET, &mut rx).await {
            Ok(Ok(built)) => Some(built),
            _ => {
                // Whatever was sent before closing is still ours; later results get posted.
                rx.close();
                rx.try_recv().ok()
            }
        };
        match built {
            Some(Ok(r)) => SlackCommandEventResponse::new(report_content(&r)).with_response_type(if public {
                SlackMessageResponseType::InChannel
            } else {
                SlackMessageResponseType::Ephemeral
            }),
            Some(Err(message)) => ephemeral(&message),
            None => ephemeral("⏳ Building the report; it will appear here in a moment."),
        }
    }
}

/// The database identity of a configured schedule.
pub fn schedule_key(s: &crate::config::ReportSchedule) -> String {
    format!("{}|{}|{}", s.cron, s.period, s.channel)
}

/// Slack errors that no retry of a scheduled report can fix: the channel is gone, archived,
/// private without the bot, or the app lacks a scope. The slot is given up (kept as fired).
const REPORT_GIVE_UP: &[&str] = &[
    "channel_not_found",
    "is_archived",
    "not_in_channel",
    "missing_scope",
    "restricted_action",
    "restricted_action_read_only_channel",
    "invalid_auth",
    "token_revoked",
    "account_inactive",
];

/// One configured schedule and where it stands.
struct Scheduled {
    schedule: crate::config::ReportSchedule,
    cron: cron::Schedule,
    /// The last slot done (posted, or given up); the next slot comes after it.
    after: chrono::NaiveDateTime,
    /// After a temporary failure: not before this instant.
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
    failures: u32,
    /// The last permanent error said, so a broken schedule is logged once, not every slot.
    broken: Option<String>,
}

/// Posts the configured reports on their cron schedules until `shutdown`; each slot once
/// across restarts and replicas (see [`crate::report::schedule`]).
///
/// Each schedule keeps its own place: a slot that failed for a temporary reason is retried with
/// a growing delay ([`retry_backoff`](crate::report::schedule::retry_backoff)) while the other
/// schedules keep firing; a slot that cannot succeed (see [`REPORT_GIVE_UP`]) is given up and
/// said once, at error level, until the schedule works again.
pub async fn run_schedules(
    db: crate::db::Db,
    web: SlackWeb,
    policy: crate::config::Policy,
    shutdown: std::sync::Arc<tokio::sync::Notify>,
) {
    use crate::report::schedule::{next_slot, resume_after, retry_backoff, slot_key};
    use std::str::FromStr;
    let tz = policy.timezone;
    let now = chrono::Utc::now();
    // Config validation already parsed every expression; a failure here cannot happen.
    let mut schedules: Vec<Scheduled> = policy
        .reports
        .iter()
        .filter_map(|r| {
            cron::Schedule::from_str(&r.cron).ok().map(|cron| Scheduled {
                after: resume_after(&cron, tz, now),
                schedule: r.clone(),
                cron,
                retry_at: None,
                failures: 0,
                broken: None,
            })
        })
        .collect();
    loop {
        // The schedule due first, counting a backoff as part of when it is due.
        let next = schedules
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                next_slot(&s.cron, tz, s.after).map(|(slot, at)| (i, slot, at, s.retry_at.map_or(at, |r| r.max(at))))
            })
            .min_by_key(|(_, _, _, due)| *due);
        let Some((i, slot, at, due)) = next else { return };
        let now = chrono::Utc::now();
        if due > now {
            let wait = (due - now).to_std().unwrap_or_default().min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(wait) => continue,
                _ = shutdown.notified() => return,
            }
        }
        let s = &mut schedules[i];
        let key = schedule_key(&s.schedule);
        let done = match db.claim_report_slot(&key, &slot_key(slot), now).await {
            Ok(true) => match post_scheduled(&db, &web, &policy, &s.schedule, at).await {
                Ok(()) => {
                    tracing::info!(schedule = %key, slot = %slot_key(slot), "scheduled report posted");
                    s.broken = None;
                    true
                }
                Err(e) => {
                    let code = e.downcast_ref::<super::web::SlackCallError>().and_then(|e| e.code());
                    match code.filter(|c| REPORT_GIVE_UP.contains(c)) {
                        Some(code) => {
                            // The slot stays claimed: no replica, no restart tries it again.
                            if s.broken.as_deref() != Some(code) {
                                tracing::error!(schedule = %key, channel = %s.schedule.channel, error = %e,
                                    "scheduled report cannot be posted; giving up on its slots until this is fixed");
                            }
                            s.broken = Some(code.to_string());
                            true
                        }
                        None => {
                            tracing::warn!(schedule = %key, error = %e, "scheduled report failed; will retry");
                            let _ = db.release_report_slot(&key, &slot_key(slot)).await;
                            false
                        }
                    }
                }
            },
            Ok(false) => true, // posted by another replica, or before a restart
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a report slot; will retry");
                false
            }
        };
        if done {
            s.after = slot;
            s.retry_at = None;
            s.failures = 0;
        } else {
            s.failures += 1;
            let delay = chrono::Duration::from_std(retry_backoff(s.failures)).unwrap_or_default();
            s.retry_at = Some(chrono::Utc::now() + delay);
        }
    }
}

/// Builds the report for the period before `at` and posts it (with its chart) to the channel.
async fn post_scheduled(
    db: &crate::db::Db,
    web: &SlackWeb,
    policy: &crate::config::Policy,
    schedule: &crate::config::ReportSchedule,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let spec = if schedule.period == "monthly" {
        PeriodSpec::Monthly
    } else {
        PeriodSpec::Weekly
    };
    let report = Report::build(db, policy, spec, None, at).await?;
    let late = chrono::Utc::now() - at > chrono::Duration::minutes(1);
    let content = if late {
        catch_up_content(&report, at, policy.timezone)
    } else {
        report_content(&report)
    };
    web.post(&schedule.channel, content, None).await?;
    if let Err(e) = share_chart(web, db, &report, &schedule.channel).await {
        tracing::warn!(error = %e, "scheduled report posted without its chart");
    }
    Ok(())
}
