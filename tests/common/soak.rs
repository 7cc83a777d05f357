//! A soak run through the sandbox, shared by `tests/faults.rs` and `benches/declare.rs`:
//! many declares, updates and reminders, driven by concurrent users, optionally under a random
//! fault mix on the Web API; then an exact audit of what Slack ended up with.
//!
//! The run: `workers` users declare `declares` SEV3 incidents (retyping the command when the
//! form does not open, as a person would); once all are ready, the first ones are moved to
//! SEV2 (reminded every second, never escalated) until `reminders` reminders have fired, then
//! canceled; meanwhile the others get `updates` updates. After the outbox drains, the audit
//! checks every incident (one channel, one pinned card, one announcement, one confirmation —
//! plus at most one repeat per confirmation whose answer Slack lost: ephemerals cannot be
//! looked up),
//! every update (once in the channel, once in the announcement thread, one timeline event) and
//! every reminder (as many `⏰` posts as `reminder` events).
#![allow(dead_code)]

use incident_bot::app::BotOptions;
use incident_bot::config::Policy;
use incident_bot::demo::{
    declare_values, demo_policy, fast_options, update_values, wait_for, LocalStack, ANNOUNCE_CHANNEL,
};
use incident_bot::incident::model::{Incident, IncidentNumber};
use incident_bot::sandbox::ApiCall;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much work a run does.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub declares: usize,
    pub updates: usize,
    pub reminders: usize,
    pub workers: usize,
}

/// The figure: 200 declares, 1,000 updates, 500 reminders.
pub const FULL: Size = Size {
    declares: 200,
    updates: 1_000,
    reminders: 500,
    workers: 16,
};

/// The Web API timeout of the soak bot, and how long the sandbox holds a timed-out call.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(2);
pub const HOLD: Duration = Duration::from_millis(2_500);

/// SEV2 is reminded every second and never escalated; SEV3 is not reminded during a run.
pub fn soak_policy() -> Policy {
    let mut policy = demo_policy();
    policy.severities[1].update_every = Duration::from_secs(1);
    policy.severities[1].escalate_after = Duration::ZERO;
    policy.severities[2].update_every = Duration::from_secs(3_600);
    policy
}

/// The test timings, with a Web API timeout short enough for timed-out calls to be retried
/// quickly (and long enough that no call the sandbox answers normally times out).
pub fn soak_options() -> BotOptions {
    BotOptions {
        web_timeout: Some(WEB_TIMEOUT),
        ..fast_options()
    }
}

/// What a run measured and what its audit found.
#[derive(Debug, Default)]
pub struct Report {
    pub wall: Duration,
    /// Every Socket Mode ack (commands and submissions), as the sandbox measured it.
    pub acks: Vec<Duration>,
    /// The form submissions' acks among them (each waits for its change to be stored).
    pub submission_acks: Vec<Duration>,
    /// The declare forms' acks among the submissions.
    pub declare_acks: Vec<Duration>,
    /// The slash commands' acks among them.
    pub command_acks: Vec<Duration>,
    /// Declare submission → channel, pinned card and announcement (polled every 20 ms).
    pub ready: Vec<Duration>,
    pub updates_posted: usize,
    pub reminders_posted: usize,
    /// Times a user had to retype a command because the form did not open.
    pub form_retries: usize,
    /// Everything the audit found wrong; empty when the run was perfect.
    pub problems: Vec<String>,
}

impl Report {
    fn commanded(&mut self, ack: Duration) {
        self.acks.push(ack);
        self.command_acks.push(ack);
    }

    fn submitted(&mut self, ack: Duration) {
        self.acks.push(ack);
        self.submission_acks.push(ack);
    }

    fn declared(&mut self, ack: Duration) {
        self.submitted(ack);
        self.declare_acks.push(ack);
    }
}

fn title(n: usize) -> String {
    format!("Soak {n:04}")
}

fn marker(incident: i64, k: usize) -> String {
    // Delimited, so that one marker is never a substring of another.
    format!("[soak-update-{incident}-{k}]")
}

fn worker(i: usize) -> String {
    format!("U0SOAK{i:02}")
}

/// Runs `/incident <text>` in `channel` as `user` until the form opens (the bot says "could not
/// open the form" when `views.open` fails); returns the view id.
async fn open_form(
    stack: &LocalStack,
    user: &str,
    channel: &str,
    text: &str,
    report: &Mutex<Report>,
) -> anyhow::Result<String> {
    for _ in 0..20 {
        let before = stack.sandbox.view_ids_for(user).len();
        let ack = stack.sandbox.slash_command(user, channel, text).await?;
        report.lock().unwrap().commanded(ack.latency);
        let opened = wait_for(Duration::from_millis(3_500), || async {
            stack.sandbox.view_ids_for(user).into_iter().nth(before)
        })
        .await;
        if let Some(id) = opened {
            return Ok(id);
        }
        report.lock().unwrap().form_retries += 1;
    }
    anyhow::bail!("`/incident {text}` never opened a form for {user}")
}

/// Whether incident `n` has its channel, pinned card and (public) announcement.
fn is_ready(stack: &LocalStack, incident: &Incident) -> bool {
    let Some(channel) = incident.channel_id.as_deref().and_then(|c| stack.sandbox.channel(c)) else {
        return false;
    };
    incident.card_ts.as_ref().is_some_and(|ts| channel.pins.contains(ts)) && incident.announce_ts.is_some()
}

/// Submission → ready of each incident: ready is when Slack took the last of its card's pin
/// and its announcement (the sandbox's arrival time of each call).
fn ready_times(stack: &LocalStack, incidents: &[Incident], submitted: &HashMap<String, Instant>) -> Vec<Duration> {
    let calls = stack.sandbox.calls();
    let answered = |method: &str, found: &dyn Fn(&ApiCall) -> bool| {
        calls
            .iter()
            .filter(|c| c.method == method && c.response["ok"] == true && found(c))
            .map(|c| c.at)
            .min()
    };
    incidents
        .iter()
        .filter_map(|i| {
            let at = *submitted.get(&i.title)?;
            let (channel, card, announce) = (
                i.channel_id.as_deref()?,
                i.card_ts.as_deref()?,
                i.announce_ts.as_deref()?,
            );
            let pinned = answered("pins.add", &|c| {
                c.params["channel"] == channel && c.params["timestamp"] == card
            })?;
            let announced = answered("chat.postMessage", &|c| c.response["ts"] == announce)?;
            Some(pinned.max(announced).saturating_duration_since(at))
        })
        .collect()
}

pub async fn run(stack: &LocalStack, size: Size) -> anyhow::Result<Report> {
    let started = Instant::now();
    let sb = &stack.sandbox;
    for i in 0..size.workers {
        sb.add_user(&worker(i), &format!("soak{i:02}"));
    }
    let report = Arc::new(Mutex::new(Report::default()));

    // 1. Declares, `workers` at a time. When each became ready is read afterwards from the
    // sandbox's own timestamps: nothing polls the database meanwhile (a poller would take CPU
    // and database time from the bot whose latency is being measured).
    let submitted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = AtomicUsize::new(1);
    let declare_worker = |i: usize| {
        let (next, submitted, report) = (&next, submitted.clone(), report.clone());
        async move {
            let user = worker(i);
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n > size.declares {
                    return anyhow::Ok(());
                }
                let title = title(n);
                let view = open_form(stack, &user, "C0GENERAL", &format!("declare {title}"), &report).await?;
                let values = declare_values(&title, &user, &json!({ "severity": "SEV3" }));
                submitted.lock().unwrap().insert(title.clone(), Instant::now());
                let ack = sb.submit_view(&user, &view, values).await?;
                report.lock().unwrap().declared(ack.latency);
                if let Some(p) = ack.payload {
                    anyhow::bail!("declaring {title} was refused: {p}");
                }
            }
        }
    };
    futures_util::future::try_join_all((0..size.workers).map(declare_worker)).await?;
    let all_ready = async {
        let polling = Instant::now();
        while polling.elapsed() < Duration::from_secs(120) {
            if let Ok(open) = stack.db.active_incidents().await {
                if open.len() == size.declares && open.iter().all(|i| is_ready(stack, i)) {
                    return Some(open);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    };
    let Some(mut incidents) = all_ready.await else {
        anyhow::bail!("not every incident was ready within 120 s of the last declare");
    };
    incidents.sort_by_key(|i| i.number.0);
    let ready = ready_times(stack, &incidents, &submitted.lock().unwrap());
    report.lock().unwrap().ready = ready;

    // 2. Reminders on the first incidents (about 10 s of them), updates on the rest.
    let reminded_count = size
        .reminders
        .div_ceil(10)
        .clamp(1, size.declares.saturating_sub(1).max(1));
    let (reminded, updated) = incidents.split_at(reminded_count);
    for (i, incident) in reminded.iter().enumerate() {
        let channel = incident.channel_id.clone().unwrap_or_default();
        let ack = sb
            .slash_command(&worker(i % size.workers), &channel, "severity SEV2")
            .await?;
        report.lock().unwrap().commanded(ack.latency);
    }
    let reminders_fired = async {
        // Polled every 100 ms: the query reads every reminder event.
        let polling = Instant::now();
        let fired = loop {
            match stack.db.fired_reminders().await.map(|r| r.len()) {
                Ok(n) if n >= size.reminders => break Some(n),
                _ if polling.elapsed() > Duration::from_secs(120) => break None,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        for (i, incident) in reminded.iter().enumerate() {
            let channel = incident.channel_id.clone().unwrap_or_default();
            let ack = sb.slash_command(&worker(i % size.workers), &channel, "cancel").await?;
            report.lock().unwrap().commanded(ack.latency);
            if let Some(text) = ack.payload.as_ref().and_then(|p| p["text"].as_str()) {
                anyhow::bail!("canceling {} was refused: {text}", incident.number);
            }
        }
        fired.ok_or_else(|| anyhow::anyhow!("fewer than {} reminders fired within 120 s", size.reminders))
    };
    let next_update = AtomicUsize::new(0);
    let sent: Arc<Mutex<HashMap<i64, Vec<String>>>> = Arc::default();
    let update_worker = |i: usize| {
        let (next_update, sent, report) = (&next_update, sent.clone(), report.clone());
        async move {
            let user = worker(i);
            loop {
                let k = next_update.fetch_add(1, Ordering::SeqCst);
                if k >= size.updates || updated.is_empty() {
                    return anyhow::Ok(());
                }
                let incident = &updated[k % updated.len()];
                let channel = incident.channel_id.clone().unwrap_or_default();
                let view = open_form(stack, &user, &channel, "update", &report).await?;
                let known = marker(incident.number.0, k);
                let ack = sb
                    .submit_view(&user, &view, update_values("identified", &known, "", ""))
                    .await?;
                report.lock().unwrap().submitted(ack.latency);
                if let Some(p) = ack.payload {
                    anyhow::bail!("update {k} was refused: {p}");
                }
                sent.lock().unwrap().entry(incident.number.0).or_default().push(known);
            }
        }
    };
    let (fired, updates) = tokio::join!(
        reminders_fired,
        futures_util::future::try_join_all((0..size.workers).map(update_worker))
    );
    updates?;
    fired?;

    // 3. Let the outbox drain, then audit.
    let drained = wait_for(Duration::from_secs(120), || async {
        (stack.db.pending_jobs().await.ok()? == 0).then_some(())
    })
    .await;
    let mut report = std::mem::take(&mut *report.lock().unwrap());
    if drained.is_none() {
        report.problems.push(format!(
            "{} outbox jobs still pending 120 s after the run",
            stack.db.pending_jobs().await?
        ));
    }
    let sent = sent.lock().unwrap().clone();
    audit(stack, size, &sent, &mut report).await?;
    report.wall = started.elapsed();
    Ok(report)
}

async fn audit(
    stack: &LocalStack,
    size: Size,
    sent: &HashMap<i64, Vec<String>>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sb = &stack.sandbox;
    let problems = &mut report.problems;
    let announce = sb.messages(ANNOUNCE_CHANNEL);
    if stack
        .db
        .incident_by_number(IncidentNumber(size.declares as i64 + 1))
        .await?
        .is_some()
    {
        problems.push(format!("more than {} incidents were declared", size.declares));
    }
    let channels = sb.channels();
    for n in 1..=size.declares as i64 {
        let Some(incident) = stack.db.incident_by_number(IncidentNumber(n)).await? else {
            problems.push(format!("INC-{n} is missing"));
            continue;
        };
        let inc = &incident.number;
        let prefix = format!("inc-{n}-");
        let made = channels.iter().filter(|c| c.name.starts_with(&prefix)).count();
        if made != 1 {
            problems.push(format!("{inc}: {made} channels"));
        }
        let Some(channel) = incident.channel_id.as_deref().and_then(|c| sb.channel(c)) else {
            problems.push(format!("{inc}: no channel"));
            continue;
        };
        let messages = sb.messages(&channel.id);
        // The card (kept up to date by `chat.update`), plus any second copy: a copy is never
        // refreshed, so it keeps its buttons even after the incident is canceled.
        let cards = messages
            .iter()
            .filter(|m| {
                m.thread_ts.is_none()
                    && (Some(&m.ts) == incident.card_ts.as_ref() || m.blocks.to_string().contains("incident_resolve"))
            })
            .count();
        if cards != 1 {
            problems.push(format!("{inc}: {cards} cards"));
        }
        if !incident.card_ts.as_ref().is_some_and(|ts| channel.pins.contains(ts)) {
            problems.push(format!("{inc}: card not pinned"));
        }
        let announced = announce
            .iter()
            .filter(|m| m.thread_ts.is_none() && m.text.contains(&incident.title))
            .count();
        if announced != 1 || incident.announce_ts.is_none() {
            problems.push(format!("{inc}: {announced} announcements"));
        }
        let confirmation = format!("✅ {inc} declared");
        let confirmed = sb
            .ephemerals(incident.declared_by.as_str())
            .iter()
            .filter(|m| m.text.starts_with(&confirmation))
            .count();
        // Ephemerals cannot be looked up: one whose answer Slack lost is sent again, so each
        // such lost answer may add one copy (seen only by the declarer). Anything beyond is a bug.
        let lost_answers = sb
            .late_answered("chat.postEphemeral")
            .iter()
            .filter(|a| a["text"].as_str().is_some_and(|t| t.starts_with(&confirmation)))
            .count();
        if confirmed == 0 || confirmed > 1 + lost_answers {
            problems.push(format!(
                "{inc}: confirmed {confirmed} times to the declarer ({lost_answers} answers lost)"
            ));
        }
        // Updates: once in the channel, once in the announcement thread, one event each.
        let markers = sent.get(&n).cloned().unwrap_or_default();
        let events = stack.db.timeline(incident.id).await?;
        let update_events = events.iter().filter(|e| e.kind == "update").count();
        if update_events != markers.len() {
            problems.push(format!(
                "{inc}: {update_events} update events for {} updates",
                markers.len()
            ));
        }
        for m in &markers {
            let in_channel = messages.iter().filter(|x| x.text.contains(m.as_str())).count();
            let in_thread = announce
                .iter()
                .filter(|x| x.thread_ts == incident.announce_ts && x.text.contains(m.as_str()))
                .count();
            if in_channel != 1 || in_thread != 1 {
                problems.push(format!(
                    "{inc}: update {m} posted {in_channel}× in the channel, {in_thread}× in the thread"
                ));
            } else {
                report.updates_posted += 1;
            }
        }
        // Reminders: one post per reminder event.
        let reminder_events = events.iter().filter(|e| e.kind == "reminder").count();
        let reminder_posts = messages.iter().filter(|x| x.text.starts_with("⏰")).count();
        if reminder_events != reminder_posts {
            problems.push(format!(
                "{inc}: {reminder_events} reminders fired, {reminder_posts} posted"
            ));
        }
        report.reminders_posted += reminder_posts;
    }
    if report.updates_posted != size.updates {
        problems.push(format!("{} of {} updates posted", report.updates_posted, size.updates));
    }
    if report.reminders_posted < size.reminders {
        problems.push(format!(
            "{} of {} reminders posted",
            report.reminders_posted, size.reminders
        ));
    }
    let violations = sb.block_kit_violations();
    if !violations.is_empty() {
        problems.push(format!(
            "{} Block Kit violations, e.g. {}",
            violations.len(),
            violations[0]
        ));
    }
    if sb.late_acks() > 0 {
        problems.push(format!("{} envelopes acked late", sb.late_acks()));
    }
    Ok(())
}

/// p-th percentile (nearest rank) of a sample.
pub fn percentile(sample: &[Duration], p: f64) -> Duration {
    let mut s = sample.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}
