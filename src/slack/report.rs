//! `/incident report`: Block Kit for a report, and the handler that builds it off the ack's
//! critical path when it is slow, and attaches the chart to public reports.

use super::blocks;
use super::listener::Handler;
use super::web::{Failure, MessageTag, SlackCallError, SlackWeb};
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
    // Detection (issue 15): time to declare and alerts, in all and per service line.
    let a = &c.alerts;
    let part = |p: &str| with_change(&h(&format!("time_to_declare_{p}")));
    let mut detection = vec![
        mrkdwn(&format!(
            "*Time to declare* ({} incidents from alerts)\nmedian {} · p90 {} · mean {}",
            a.time_to_declare.count,
            part("median"),
            part("p90"),
            part("mean")
        )),
        mrkdwn(&format!(
            "*Alerts*\n{} · became incidents {} · noisy {}",
            with_change(&h("alerts")),
            with_change(&h("alerts_to_incidents")),
            with_change(&h("noisy_alerts"))
        )),
    ];
    if !a.services.is_empty() {
        let lines: Vec<String> = a
            .services
            .iter()
            .take(12)
            .map(|s| {
                format!(
                    "{}: {} alerts · {} incidents · {} noisy · declare median {}",
                    blocks::truncate(&s.service, 40),
                    s.alerts,
                    s.became_incidents,
                    s.noisy,
                    s.time_to_declare.median_ms.map_or("n/a".to_string(), duration)
                )
            })
            .collect();
        detection.push(mrkdwn(&blocks::truncate(
            &format!("*Detection per service line*\n{}", lines.join("\n")),
            1900,
        )));
    }
    out.push(json!({ "type": "section", "fields": detection }));
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
    // Issue 14: customer communications, when a status page is configured.
    if let Some(comms) = &r.comms {
        let c = &comms.current;
        let compliance = match c.compliance.ratio() {
            Some(_) => format!(
                "{} ({}/{} on time)",
                with_change(&h("customer_update_compliance")),
                c.compliance.on_time,
                c.compliance.due()
            ),
            None => "n/a (no customer update fell due)".into(),
        };
        let mut worst: Vec<(&str, crate::comms::metrics::StatusMinutes)> = comms
            .components
            .iter()
            .map(|(id, name)| (name.as_str(), c.component_minutes.get(id).copied().unwrap_or_default()))
            .filter(|(_, m)| m.total() > 0)
            .collect();
        worst.sort_by_key(|(_, m)| std::cmp::Reverse(m.total()));
        let worst = if worst.is_empty() {
            "every component operational".to_string()
        } else {
            worst
                .iter()
                .take(3)
                .map(|(name, m)| format!("{} {} min (major {})", blocks::escape(name), m.total(), m.major_outage))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        out.push(json!({ "type": "section", "fields": [
            mrkdwn(&format!("*Time to first customer update*\nmedian {}", with_change(&h("time_to_first_customer_update_median")))),
            mrkdwn(&format!("*Customer-update compliance*\n{compliance}")),
            mrkdwn(&format!("*Status page: minutes not operational*\n{worst}")),
        ] }));
    }
    out.push(json!({ "type": "divider" }));
    out.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": service_table(r) } }));
    if let Some(vendors) = super::vendors::report_section(r) {
        out.push(vendors);
    }
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

/// How long a claim of a report slot lasts by default. An attempt is bounded to half of it, so
/// a live holder never loses its claim to another replica.
pub const REPORT_LEASE: Duration = Duration::from_secs(120);

/// The metadata `event_type` of a scheduled report's message.
pub const REPORT_EVENT_TYPE: &str = "incident_bot_report";

/// The tag of `slot`'s report: found again in the channel after an answer that was lost.
fn report_tag(key: &str, slot: chrono::NaiveDateTime) -> MessageTag {
    MessageTag {
        event_type: REPORT_EVENT_TYPE,
        key: "slot",
        value: format!("{key}@{}", crate::report::schedule::slot_key(slot)),
    }
}

/// How a slot's attempt ended.
enum SlotOutcome {
    /// In the channel (posted now, or found from an earlier attempt), or given up for good.
    Done,
    /// Slack said no for now, or the report could not be built: nothing was posted.
    NotPosted,
    /// Slack's answer was lost: the report may be in the channel; the next claim looks first.
    MaybePosted,
}

/// Posts the configured reports on their cron schedules until `shutdown`; each slot once
/// across restarts and replicas (see [`crate::report::schedule`] and `db::report_fires`).
///
/// Each schedule keeps its own place: a slot that failed for a temporary reason is retried with
/// a growing delay ([`retry_backoff`](crate::report::schedule::retry_backoff)) while the other
/// schedules keep firing; a slot that cannot succeed (see [`REPORT_GIVE_UP`]) is given up and
/// said once, at error level, until the schedule works again. A slot is claimed with a short
/// lease: when its holder dies or Slack's answer is lost, the slot is claimed again and the new
/// attempt looks in the channel for the tagged report before posting it (issue 16).
pub async fn run_schedules(
    db: crate::db::Db,
    web: SlackWeb,
    policy: crate::config::Policy,
    bot_user: String,
    lease: Duration,
    shutdown: std::sync::Arc<tokio::sync::Notify>,
) {
    use crate::db::SlotClaim;
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
        let slot_id = slot_key(slot);
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let claim = db.claim_report_slot(&key, &slot_id, now, lease_until).await;
        let attempt = |look_first| Attempt {
            key: &key,
            slot,
            at,
            bot_user: &bot_user,
            look_first,
            budget: lease / 2,
        };
        let outcome = match claim {
            Ok(SlotClaim::First) => Some(attempt_slot(&db, &web, &policy, s, attempt(false)).await),
            Ok(SlotClaim::Again) => Some(attempt_slot(&db, &web, &policy, s, attempt(true)).await),
            // Posted by another replica, or before a restart.
            Ok(SlotClaim::Done) => Some(SlotOutcome::Done),
            Ok(SlotClaim::Held { until }) => {
                // Another replica is on it; look again when its claim ends, in case it died.
                s.retry_at = Some(until + chrono::Duration::seconds(1));
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a report slot; will retry");
                Some(SlotOutcome::NotPosted)
            }
        };
        let done = match outcome {
            None => continue,
            Some(SlotOutcome::Done) => true,
            Some(SlotOutcome::NotPosted) => {
                let _ = db.release_report_slot(&key, &slot_id, false).await;
                false
            }
            Some(SlotOutcome::MaybePosted) => {
                let _ = db.release_report_slot(&key, &slot_id, true).await;
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

/// One attempt at a claimed slot.
struct Attempt<'a> {
    key: &'a str,
    slot: chrono::NaiveDateTime,
    /// When the slot fell due.
    at: chrono::DateTime<chrono::Utc>,
    bot_user: &'a str,
    /// The slot was claimed before: an earlier attempt may have posted its report.
    look_first: bool,
    /// How long building and posting may take (inside the claim's lease).
    budget: Duration,
}

/// Looks for an earlier attempt's post first when `look_first`, else (or when none is found)
/// builds the report and posts it, then records the slot as done.
async fn attempt_slot(
    db: &crate::db::Db,
    web: &SlackWeb,
    policy: &crate::config::Policy,
    s: &mut Scheduled,
    attempt: Attempt<'_>,
) -> SlotOutcome {
    let Attempt {
        key,
        slot,
        at,
        bot_user,
        look_first,
        budget,
    } = attempt;
    let slot_id = crate::report::schedule::slot_key(slot);
    let tag = report_tag(key, slot);
    let channel = s.schedule.channel.clone();
    if look_first {
        match web.find_tagged_message(&channel, None, &tag, at, bot_user).await {
            Ok(Some(ts)) => {
                tracing::info!(schedule = %key, slot = %slot_id, %ts, "reconciled: the slot's report was posted; adopting it");
                return finish_slot(db, key, &slot_id).await;
            }
            Ok(None) => {
                tracing::info!(schedule = %key, slot = %slot_id, "reconciled: no earlier report found; posting")
            }
            // Cannot look here (no history scope in that channel): posting again is the lesser evil.
            Err(e) if e.failure() == Failure::Permanent => {
                tracing::warn!(schedule = %key, error = %e, "cannot look for an earlier report; posting again");
            }
            Err(e) => {
                tracing::warn!(schedule = %key, error = %e, "cannot look for an earlier report yet; will retry");
                return SlotOutcome::MaybePosted;
            }
        }
    }
    let posted = tokio::time::timeout(budget, post_scheduled(db, web, policy, &s.schedule, at, &tag)).await;
    let error = match posted {
        Ok(Ok(report)) => {
            tracing::info!(schedule = %key, slot = %slot_id, "scheduled report posted");
            s.broken = None;
            let done = finish_slot(db, key, &slot_id).await;
            // After the slot is recorded: a slow or failed chart never reposts the report.
            if let Err(e) = share_chart(web, db, &report, &channel).await {
                tracing::warn!(error = %e, "scheduled report posted without its chart");
            }
            return done;
        }
        Ok(Err(e)) => e,
        Err(_) => {
            tracing::warn!(schedule = %key, "scheduled report: Slack did not answer in time; will look before retrying");
            return SlotOutcome::MaybePosted;
        }
    };
    let Some(slack) = error.downcast_ref::<SlackCallError>() else {
        tracing::warn!(schedule = %key, error = %error, "scheduled report failed; will retry");
        return SlotOutcome::NotPosted;
    };
    match slack.code().filter(|c| REPORT_GIVE_UP.contains(c)) {
        Some(code) => {
            // Kept as done: no replica, no restart tries this slot again.
            if s.broken.as_deref() != Some(code) {
                tracing::error!(schedule = %key, channel = %channel, error = %error,
                    "scheduled report cannot be posted; giving up on its slots until this is fixed");
            }
            s.broken = Some(code.to_string());
            finish_slot(db, key, &slot_id).await
        }
        None if slack.failure() == Failure::Uncertain => {
            tracing::warn!(schedule = %key, error = %error, "scheduled report: outcome unknown; will look before retrying");
            SlotOutcome::MaybePosted
        }
        None => {
            tracing::warn!(schedule = %key, error = %error, "scheduled report failed; will retry");
            SlotOutcome::NotPosted
        }
    }
}

/// Records the slot as done. If that write fails, the claim simply runs out and the next claim
/// finds the post by its tag.
async fn finish_slot(db: &crate::db::Db, key: &str, slot_id: &str) -> SlotOutcome {
    if let Err(e) = db.mark_report_posted(key, slot_id).await {
        tracing::warn!(schedule = %key, error = %e, "cannot record a posted report; the next claim will find it");
    }
    SlotOutcome::Done
}

/// Builds the report for the period before `at` and posts it (tagged with its slot) to the
/// channel; the chart follows once the slot is recorded.
async fn post_scheduled(
    db: &crate::db::Db,
    web: &SlackWeb,
    policy: &crate::config::Policy,
    schedule: &crate::config::ReportSchedule,
    at: chrono::DateTime<chrono::Utc>,
    tag: &MessageTag,
) -> anyhow::Result<Report> {
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
    web.post(&schedule.channel, tag.apply(content, &[]), None).await?;
    Ok(report)
}
