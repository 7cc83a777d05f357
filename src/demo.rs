//! `incident-bot demo`: the bot against the local Slack sandbox on a throwaway SQLite file,
//! playing the flows a responder would, printed as a readable transcript.
//!
//! [`LocalStack`] (sandbox + bot + database, wired together) is also what the integration tests
//! and benchmarks start.

use crate::app::{Bot, BotOptions};
use crate::config::{Policy, Secret, Settings, SlackSettings};
use crate::db::Db;
use crate::outbox::OutboxOptions;
use crate::sandbox::{self, Sandbox, SandboxOptions};
use crate::slack::listener::SocketOptions;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The sandbox's announcement channel.
pub const ANNOUNCE_CHANNEL: &str = "C0ANNOUNCE";

/// A sandbox and a bot connected to it, on one database.
pub struct LocalStack {
    pub sandbox: Sandbox,
    pub bot: Option<Bot>,
    pub db: Db,
    pub settings: Settings,
    sqlite_file: Option<PathBuf>,
}

/// Timings short enough for tests: retries in tens of milliseconds, reconnects in a second.
pub fn fast_options() -> BotOptions {
    BotOptions {
        outbox: OutboxOptions {
            base_backoff: Duration::from_millis(50),
            max_idle_sleep: Duration::from_millis(250),
            lease: Duration::from_secs(5),
            ..OutboxOptions::default()
        },
        socket: SocketOptions {
            connections: 2,
            // A silent connection is dropped 2–3 s after the last frame it carried; refused
            // connections are retried after 100 ms, 200 ms, 400 ms … up to 2 s.
            ping_interval: Duration::from_secs(1),
            missed_pongs: 2,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        },
        reminders: crate::reminder::ReminderOptions {
            max_sleep: Duration::from_millis(500),
            late_after: Duration::from_millis(500),
            ..Default::default()
        },
        http_listen: None,
        web_timeout: None,
        crash_point: None,
        report_lease: Some(Duration::from_secs(5)),
        alerts: crate::slack::alerts::PosterOptions {
            pace: Duration::ZERO,
            base_backoff: Duration::from_millis(50),
            max_idle_sleep: Duration::from_millis(250),
            lease: Duration::from_secs(5),
            ..Default::default()
        },
        calendar: crate::slack::calendar::CalendarOptions {
            max_sleep: Duration::from_millis(500),
            base_backoff: Duration::from_millis(50),
            lease: Duration::from_secs(5),
            ..Default::default()
        },
    }
}

/// The default policy with the sandbox's announcement channel.
pub fn demo_policy() -> Policy {
    Policy {
        announce_channel: Some(ANNOUNCE_CHANNEL.into()),
        ..Policy::default()
    }
}

impl LocalStack {
    /// Starts a sandbox, opens the database (`None`: a fresh SQLite file in the temp dir; on
    /// PostgreSQL `schema` isolates it) and starts the bot against both.
    pub async fn start(
        database: Option<(&str, Option<&str>)>,
        policy: Policy,
        opts: BotOptions,
    ) -> anyhow::Result<LocalStack> {
        Self::start_with_sandbox(database, policy, opts, SandboxOptions::default()).await
    }

    /// [`LocalStack::start`] with the sandbox's timing rules (e.g. a longer ack deadline).
    pub async fn start_with_sandbox(
        database: Option<(&str, Option<&str>)>,
        policy: Policy,
        opts: BotOptions,
        sandbox_opts: SandboxOptions,
    ) -> anyhow::Result<LocalStack> {
        let sandbox = Sandbox::start(sandbox_opts).await?;
        // `database_url` reaches the same database from another process (the CLI in tests).
        let (db, sqlite_file, database_url) = match database {
            Some((url, schema)) => {
                let reach = match schema {
                    // The schema is chosen per connection: a search_path option selects it.
                    Some(schema) => format!(
                        "{url}{}options=-csearch_path%3D{schema}",
                        if url.contains('?') { "&" } else { "?" }
                    ),
                    None => url.to_string(),
                };
                (Db::connect_with(url, schema).await?, None, reach)
            }
            None => {
                let file = std::env::temp_dir().join(format!("incident-bot-{}.db", uuid::Uuid::new_v4()));
                let url = format!("sqlite://{}", file.display());
                (Db::connect(&url).await?, Some(file), url)
            }
        };
        let settings = Settings {
            slack: SlackSettings {
                bot_token: Secret::new(sandbox::BOT_TOKEN),
                app_token: Secret::new(sandbox::APP_TOKEN),
                api_url: sandbox.api_url(),
                socket_connections: None,
            },
            database_url,
            http_listen: None,
            policy,
        };
        let bot = Bot::start(&settings, db.clone(), opts).await?;
        sandbox.wait_for_connections(1, Duration::from_secs(5)).await?;
        Ok(LocalStack {
            sandbox,
            bot: Some(bot),
            db,
            settings,
            sqlite_file,
        })
    }

    /// Stops the bot (keeps the sandbox and database), e.g. to simulate a restart.
    pub async fn stop_bot(&mut self) {
        if let Some(bot) = self.bot.take() {
            bot.stop().await;
        }
    }

    /// Kills the bot as `kill -9` would (see [`Bot::kill`]): jobs in flight stay claimed and
    /// unrecorded. Keeps the sandbox and database.
    pub async fn kill_bot(&mut self) {
        if let Some(bot) = self.bot.take() {
            bot.kill().await;
        }
    }

    /// Starts the bot again on the same sandbox and database.
    pub async fn restart_bot(&mut self, opts: BotOptions) -> anyhow::Result<()> {
        self.stop_bot().await;
        self.bot = Some(Bot::start(&self.settings, self.db.clone(), opts).await?);
        self.sandbox.wait_for_connections(1, Duration::from_secs(5)).await
    }

    /// Types `/incident declare <title>` as `user`, waits for the modal and submits it with
    /// `fields` merged over sensible defaults (severity SEV1, service payments, SPOC = user).
    /// Returns the submission's ack payload (field errors, if any).
    pub async fn declare(
        &self,
        user: &str,
        channel: &str,
        title: &str,
        fields: Value,
    ) -> anyhow::Result<Option<Value>> {
        let before = self.sandbox.views_opened().len();
        self.sandbox
            .slash_command(user, channel, &format!("declare {title}"))
            .await?;
        let view = wait_for(Duration::from_secs(3), || async {
            self.sandbox.views_opened().get(before).cloned()
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the declare modal did not open"))?;
        let ack = self
            .sandbox
            .submit_view(user, &view.id, declare_values(title, user, &fields))
            .await?;
        Ok(ack.payload)
    }

    /// Runs a slash command that opens a form and returns the form.
    pub async fn open_form(&self, user: &str, channel: &str, text: &str) -> anyhow::Result<sandbox::View> {
        let before = self.sandbox.views_opened().len();
        let ack = self.sandbox.slash_command(user, channel, text).await?;
        if let Some(text) = ack.payload.as_ref().and_then(|p| p["text"].as_str()) {
            anyhow::bail!("`/incident {text}` answered instead of opening a form: {text}");
        }
        wait_for(Duration::from_secs(3), || async {
            self.sandbox.views_opened().get(before).cloned()
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("`/incident {text}` opened no form"))
    }

    /// Runs a slash command and returns the ephemeral text of its ack ("" when none).
    pub async fn command(&self, user: &str, channel: &str, text: &str) -> anyhow::Result<String> {
        let ack = self.sandbox.slash_command(user, channel, text).await?;
        Ok(ack
            .payload
            .as_ref()
            .and_then(|p| p["text"].as_str())
            .unwrap_or_default()
            .to_string())
    }

    /// Waits until the outbox has nothing left to do.
    pub async fn settle(&self) {
        wait_for(Duration::from_secs(10), || async {
            (self.db.pending_jobs().await.ok()? == 0).then_some(())
        })
        .await;
    }

    /// Waits until incident `number`'s channel is created, the card pinned and (when public and
    /// configured) the announcement posted. Returns the channel id.
    pub async fn wait_ready(&self, number: i64, timeout: Duration) -> anyhow::Result<String> {
        let ready = wait_for(timeout, || async {
            let incident = self
                .db
                .incident_by_number(crate::incident::model::IncidentNumber(number))
                .await
                .ok()??;
            let channel = self.sandbox.channel(incident.channel_id.as_deref()?)?;
            let announced = incident.is_private
                || self.settings.policy.announce_channel.is_none()
                || incident.announce_ts.is_some();
            let pinned = incident.card_ts.as_ref().is_some_and(|ts| channel.pins.contains(ts));
            (pinned && announced && self.db.pending_jobs().await.ok()? == 0).then_some(channel.id)
        })
        .await;
        ready.ok_or_else(|| anyhow::anyhow!("INC-{number} was not ready within {timeout:?}"))
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.sandbox.shutdown();
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Modal state as Slack sends it for the declare form; `fields` overrides per block id
/// (`{"severity": "SEV2", "services": ["checkout"], "private": true, "spoc": "U0BOB",
/// "description": "…", "title": "…"}`).
pub fn declare_values(title: &str, user: &str, fields: &Value) -> Value {
    let get = |k: &str| fields.get(k).cloned();
    let title = get("title")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| title.to_string());
    let severity = get("severity").unwrap_or(json!("SEV1"));
    let services = get("services").unwrap_or(json!(["payments"]));
    let spoc = get("spoc").unwrap_or(json!(user));
    let private = get("private").and_then(|v| v.as_bool()).unwrap_or(false);
    let description = get("description").unwrap_or(json!("Card payments failing for some customers"));
    let option = |v: &Value| json!({ "text": { "type": "plain_text", "text": v, "emoji": true }, "value": v });
    let mut values = json!({
        "title": { "title": { "type": "plain_text_input", "value": title } },
        "services": { "services": { "type": "multi_static_select",
            "selected_options": services.as_array().map(|a| a.iter().map(option).collect::<Vec<_>>()).unwrap_or_default() } },
        "description": { "description": { "type": "plain_text_input", "value": description } },
        "spoc": { "spoc": { "type": "users_select", "selected_user": spoc } },
        "private": { "private": { "type": "checkboxes",
            "selected_options": if private { vec![option(&json!("private"))] } else { vec![] } } },
    });
    if !severity.is_null() {
        values["severity"] = json!({ "severity": { "type": "static_select", "selected_option": option(&severity) } });
    }
    values
}

fn option_value(v: &str) -> Value {
    json!({ "text": { "type": "plain_text", "text": v, "emoji": true }, "value": v })
}

/// Modal state for the update form.
pub fn update_values(status: &str, known: &str, impact: &str, next: &str) -> Value {
    json!({
        "status": { "status": { "type": "static_select", "selected_option": option_value(status) } },
        "known": { "known": { "type": "plain_text_input", "value": known } },
        "impact": { "impact": { "type": "plain_text_input", "value": impact } },
        "next": { "next": { "type": "plain_text_input", "value": next } },
    })
}

/// Modal state for the resolve form.
pub fn resolve_values(summary: &str, root_cause: &str, mitigated_at: Option<i64>) -> Value {
    let mut v = json!({
        "summary": { "summary": { "type": "plain_text_input", "value": summary } },
        "root_cause": { "root_cause": { "type": "static_select", "selected_option": option_value(root_cause) } },
        "mitigated_at": { "mitigated_at": { "type": "datetimepicker" } },
    });
    if let Some(t) = mitigated_at {
        v["mitigated_at"]["mitigated_at"]["selected_date_time"] = json!(t);
    }
    v
}

/// The follow-up fields of the resolve form: one follow-up per line of `lines`, with an optional
/// shared owner and due day (`YYYY-MM-DD`). Merge into [`resolve_values`].
pub fn resolve_follow_up_values(values: &mut Value, lines: &str, owner: Option<&str>, due: Option<&str>) {
    values["follow_ups"] = json!({ "follow_ups": { "type": "plain_text_input", "value": lines } });
    values["follow_ups_owner"] = json!({ "follow_ups_owner": { "type": "users_select", "selected_user": owner } });
    values["follow_ups_due"] = json!({ "follow_ups_due": { "type": "datepicker", "selected_date": due } });
}

/// Modal state for the follow-up form.
pub fn follow_up_values(text: &str, owner: Option<&str>, due: Option<&str>, link: Option<&str>) -> Value {
    json!({
        "text": { "text": { "type": "plain_text_input", "value": text } },
        "owner": { "owner": { "type": "users_select", "selected_user": owner } },
        "due": { "due": { "type": "datepicker", "selected_date": due } },
        "link": { "link": { "type": "url_text_input", "value": link } },
    })
}

/// Modal state for the footprint form; `counts` are customers, merchants, transactions as typed.
pub fn impact_values(
    services: &[&str],
    regions: &str,
    counts: [&str; 3],
    start: Option<i64>,
    end: Option<i64>,
) -> Value {
    let mut v = json!({
        "services": { "services": { "type": "multi_static_select",
            "selected_options": services.iter().map(|s| option_value(s)).collect::<Vec<_>>() } },
        "regions": { "regions": { "type": "plain_text_input", "value": regions } },
        "customers": { "customers": { "type": "plain_text_input", "value": counts[0] } },
        "merchants": { "merchants": { "type": "plain_text_input", "value": counts[1] } },
        "transactions": { "transactions": { "type": "plain_text_input", "value": counts[2] } },
        "impact_start": { "impact_start": { "type": "datetimepicker" } },
        "impact_end": { "impact_end": { "type": "datetimepicker" } },
    });
    if let Some(t) = start {
        v["impact_start"]["impact_start"]["selected_date_time"] = json!(t);
    }
    if let Some(t) = end {
        v["impact_end"]["impact_end"]["selected_date_time"] = json!(t);
    }
    v
}

/// Polls `probe` every 10 ms until it yields `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::IntoFuture<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Renders a message's blocks as plain lines for the transcript.
pub fn render_blocks(blocks: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for block in blocks.as_array().into_iter().flatten() {
        let text = |v: &Value| v["text"].as_str().unwrap_or_default().to_string();
        match block["type"].as_str().unwrap_or_default() {
            "header" => lines.push(format!("## {}", text(&block["text"]))),
            "section" => {
                if !block["text"].is_null() {
                    lines.push(text(&block["text"]));
                }
                let fields: Vec<String> = block["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| text(f).replace('\n', ": "))
                    .collect();
                if !fields.is_empty() {
                    lines.push(fields.join(" | "));
                }
            }
            "context" => lines.push(
                block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "actions" => lines.push(format!(
                "[{}]",
                block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| text(&e["text"]))
                    .collect::<Vec<_>>()
                    .join("] [")
            )),
            other => lines.push(format!("({other} block)")),
        }
    }
    lines
}

/// Replaces Slack's `<@U…>`, `<#C…>` and `<!date^…|fallback>` markup with what a reader sees.
fn readable(sandbox: &Sandbox, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else { break };
        let inner = &rest[start + 1..start + len];
        let shown = if let Some(user) = inner.strip_prefix('@') {
            format!("@{}", sandbox_user_name(user))
        } else if let Some(channel) = inner.strip_prefix('#') {
            let id = channel.split('|').next().unwrap_or_default();
            format!(
                "#{}",
                sandbox.channel(id).map(|c| c.name).unwrap_or_else(|| id.to_string())
            )
        } else if let Some(group) = inner.strip_prefix("!subteam^") {
            format!("@{}", group.split('|').next().unwrap_or_default())
        } else if inner.starts_with("!date^") {
            inner.rsplit('|').next().unwrap_or_default().to_string()
        } else {
            format!("<{inner}>")
        };
        out.push_str(&shown);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

fn sandbox_user_name(id: &str) -> String {
    match id {
        "U0ALICE" => "alice".into(),
        "U0BOB" => "bob".into(),
        "U0CAROL" => "carol".into(),
        "U0DAVE" => "dave".into(),
        sandbox::BOT_USER_ID => sandbox::BOT_USER_NAME.into(),
        other => other.into(),
    }
}

fn print_channel(out: &mut dyn Write, sandbox: &Sandbox, channel_id: &str) -> std::io::Result<()> {
    let Some(ch) = sandbox.channel(channel_id) else {
        return Ok(());
    };
    writeln!(
        out,
        "#{} ({}{}) members: {}",
        ch.name,
        ch.id,
        if ch.is_private { ", private" } else { "" },
        ch.members
            .iter()
            .map(|m| sandbox_user_name(m))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if !ch.topic.is_empty() {
        writeln!(out, "  topic: {}", readable(sandbox, &ch.topic))?;
    }
    for m in sandbox.messages(channel_id) {
        let pin = if ch.pins.contains(&m.ts) { " 📌" } else { "" };
        let thread = if m.thread_ts.is_some() { "    ↳ " } else { "  " };
        let edited = if m.edited { " (edited)" } else { "" };
        writeln!(out, "{thread}{}{pin}{edited}:", sandbox_user_name(&m.user))?;
        let lines = render_blocks(&m.blocks);
        let lines = if lines.is_empty() { vec![m.text.clone()] } else { lines };
        for line in lines {
            for l in readable(sandbox, &line).lines() {
                writeln!(out, "{thread}  {l}")?;
            }
        }
    }
    Ok(())
}

/// The demo's vendor catalogue: Adyen answers SEV1/SEV2 within 2 s (seconds instead of
/// minutes, so the transcript shows the chase), escalation to a user group.
fn demo_vendors(services: &[String]) -> anyhow::Result<crate::vendor::Catalogue> {
    let text =
        "[[vendors]]\nname = \"Adyen\"\nservices = [\"payments\"]\nsupport_url = \"https://support.adyen.example\"\n\
                escalation = \"S0ADYENTAM\"\n[vendors.sla.SEV1]\nfirst_response = \"2s\"\nupdate = \"1h\"\n\
                [vendors.sla.SEV2]\nfirst_response = \"2s\"\nupdate = \"1h\"\n";
    let table: toml::Table = text.parse()?;
    crate::vendor::parse_catalogue(&table["vendors"], services).map_err(|(k, p)| anyhow::anyhow!("{k}: {p}"))
}

/// The demo's status page: card payments and checkout, customers updated every 30 minutes
/// at SEV1, drafts approved by the comms role.
fn demo_status_page(policy: &Policy) -> anyhow::Result<crate::comms::StatusPage> {
    let text = "[status_page]\ntitle = \"Acme Payments status\"\ncadence = { SEV1 = \"30m\", SEV2 = \"1h\" }\n\
                [[status_page.components]]\nname = \"Card payments\"\nservices = [\"payments\"]\n\
                [[status_page.components]]\nname = \"Checkout\"\nservices = [\"checkout\"]\n";
    let table: toml::Table = text.parse()?;
    crate::comms::config::parse_status_page(&table["status_page"], &policy.services, policy.timezone)
        .map_err(|(k, p)| anyhow::anyhow!("{k}: {p}"))
}

/// carol takes the comms role; bob writes a customer update in the form; carol approves it and
/// it is published (public words only).
async fn customer_scene(out: &mut dyn Write, stack: &LocalStack, channel: &str) -> anyhow::Result<()> {
    let sb = &stack.sandbox;
    writeln!(out, "▶ bob makes carol the comms lead: `/incident role comms @carol`")?;
    stack.command("U0BOB", channel, "role comms <@U0CAROL>").await?;
    writeln!(out, "▶ bob writes to customers: `/incident customer`")?;
    let form = stack.open_form("U0BOB", channel, "customer").await?;
    let option = |v: &str| json!({ "text": { "type": "plain_text", "text": v }, "value": v });
    let ack = sb
        .submit_view(
            "U0BOB",
            &form.id,
            json!({
                "public_title": { "public_title": { "type": "plain_text_input", "value": "Card payments failing" } },
                "components": { "components": { "type": "multi_static_select", "selected_options": [option("card-payments"), option("checkout")] } },
                "status": { "status": { "type": "static_select", "selected_option": option("partial_outage") } },
                "message": { "message": { "type": "plain_text_input", "value": "Some card payments are failing. We have found the cause and are rolling out a fix." } },
                "last": { "last": { "type": "checkboxes", "selected_options": [] } },
            }),
        )
        .await?;
    if let Some(errors) = ack.payload {
        anyhow::bail!("the customer-update form refused the demo's update: {errors}");
    }
    let draft = wait_for(Duration::from_secs(5), || async {
        sb.messages(channel)
            .into_iter()
            .find(|m| m.blocks.to_string().contains(crate::slack::comms::ACTION_APPROVE))
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the customer draft was not posted for approval"))?;
    writeln!(out, "  the draft waits for approval: {}", draft.text)?;
    let incident = stack
        .db
        .incident_by_number(crate::incident::model::IncidentNumber(1))
        .await?
        .ok_or_else(|| anyhow::anyhow!("INC-1 is gone"))?;
    let update = stack
        .db
        .customer_updates_of(incident.id)
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no customer update stored"))?;
    writeln!(out, "▶ bob tries to approve his own draft; carol approves it")?;
    for user in ["U0BOB", "U0CAROL"] {
        sb.click_button(
            user,
            channel,
            &draft.ts,
            crate::slack::comms::ACTION_APPROVE,
            &update.id.to_string(),
        )
        .await?;
    }
    let refused = wait_for(Duration::from_secs(3), || async {
        sb.ephemerals("U0BOB")
            .into_iter()
            .find(|m| m.text.contains("can approve"))
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the author's approval was not refused"))?;
    writeln!(out, "  bob is told: {}", refused.text)?;
    let public = wait_for(Duration::from_secs(5), || async {
        stack
            .db
            .public_incidents_since(chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .ok()?
            .pop()
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the approved update was not published"))?;
    writeln!(
        out,
        "  published on the status page as incident {}: \"{}\" ({} update)",
        public.public_id,
        public.title,
        public.updates.len()
    )?;
    Ok(())
}

/// bob raises a ticket with Adyen, the bot chases it at the SLA, then says to escalate; bob
/// escalates from the reminder, Adyen answers, and the open tickets are listed.
async fn vendor_scene(out: &mut dyn Write, stack: &LocalStack, channel: &str) -> anyhow::Result<()> {
    let sb = &stack.sandbox;
    writeln!(
        out,
        "▶ bob raises a ticket with the acquirer: `/incident vendor Adyen 48213 <https://ca.adyen.example/t/48213> Are card auths failing on your side?`"
    )?;
    let said = stack
        .command(
            "U0BOB",
            channel,
            "vendor Adyen 48213 <https://ca.adyen.example/t/48213> Are card auths failing on your side?",
        )
        .await?;
    writeln!(out, "  bob sees: {}", readable(sb, &said))?;
    writeln!(out, "▶ Adyen does not answer (demo SLA: first response within 2 s)")?;
    let chases = || {
        sb.messages(channel)
            .into_iter()
            .filter(|m| m.blocks.to_string().contains("vendor_chase_actions"))
            .collect::<Vec<_>>()
    };
    let second = wait_for(Duration::from_secs(8), || async { chases().get(1).cloned() })
        .await
        .ok_or_else(|| anyhow::anyhow!("the vendor ticket was not chased twice"))?;
    for m in chases() {
        writeln!(out, "  bot: {}", readable(sb, &m.text))?;
    }
    stack.settle().await;
    let card = sb
        .messages(channel)
        .into_iter()
        .flat_map(|m| m.blocks.as_array().cloned().unwrap_or_default())
        .find(|b| b["block_id"] == "card_vendors");
    if let Some(line) = card {
        writeln!(
            out,
            "  the pinned card: {}",
            readable(sb, line["elements"][0]["text"].as_str().unwrap_or_default())
        )?;
    }
    writeln!(
        out,
        "▶ bob presses Escalate on the reminder; then Adyen answers: `/incident vendor reply V1 …`"
    )?;
    let incident = stack
        .db
        .incident_by_channel(channel)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no incident in {channel}"))?;
    let ticket = stack
        .db
        .vendor_tickets_of(incident.id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no vendor ticket stored"))?;
    sb.click_button(
        "U0BOB",
        channel,
        &second.ts,
        crate::slack::vendors::ACTION_ESCALATE,
        &ticket.id.to_string(),
    )
    .await?;
    stack.settle().await;
    let said = stack
        .command(
            "U0BOB",
            channel,
            "vendor reply V1 Acquirer-side outage on EU cards, fix rolling out",
        )
        .await?;
    writeln!(out, "  bob sees: {}", readable(sb, &said))?;
    stack.settle().await;
    let list = sb.slash_command("U0ALICE", "C0GENERAL", "vendors").await?;
    writeln!(out, "  alice, anywhere: /incident vendors →")?;
    for line in render_blocks(&list.payload.unwrap_or_default()["blocks"]) {
        for l in readable(sb, &line).lines() {
            writeln!(out, "    {l}")?;
        }
    }
    Ok(())
}

/// Runs the demo, writing the transcript to `out`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    // Seconds instead of the default 30 minutes, so the transcript shows the SLA clock at work.
    let mut policy = demo_policy();
    policy.managers_group = Some("S0ONCALL".into());
    policy.severities[0].update_every = Duration::from_secs(2);
    policy.severities[0].escalate_after = Duration::from_secs(1);
    policy.vendors = demo_vendors(&policy.services)?;
    policy.changes.channel = Some("C0CHANGES".into());
    policy.status_page = Some(demo_status_page(&policy)?);
    let stack = LocalStack::start(None, policy, fast_options()).await?;
    let sb = &stack.sandbox;
    writeln!(
        out,
        "incident-bot demo: a local Slack sandbox at {} and a throwaway SQLite database\n",
        sb.api_url()
    )?;
    // Issue 12: a change goes out first; the incident then asks "what changed?".
    writeln!(
        out,
        "▶ carol plans a change with `/change new card router config` (config change, payments, now → +1 h) and starts it"
    )?;
    let now = chrono::Utc::now().timestamp();
    let planned = stack
        .plan_change(
            "U0CAROL",
            "C0GENERAL",
            "card router config",
            change_values(
                "card router config",
                &["payments"],
                now - 60,
                now + 3600,
                "U0CAROL",
                &json!({ "kind": "config_change", "risk": "high" }),
            ),
        )
        .await?;
    if let Some(errors) = planned {
        anyhow::bail!("the change form refused the demo's change: {errors}");
    }
    let said = stack.change("U0CAROL", "C0GENERAL", "start 1").await?;
    writeln!(out, "  {said}")?;
    if let Some(post) = wait_for(Duration::from_secs(3), || async {
        sb.messages("C0CHANGES")
            .into_iter()
            .find(|m| m.text.contains("started"))
    })
    .await
    {
        writeln!(out, "  #changes: {}", post.text)?;
    }
    writeln!(out, "▶ alice types `/incident declare Payments API 500s` in #general")?;
    // The change form opened above is a view too: wait for the one this command opens.
    let views_before = sb.views_opened().len();
    let ack = sb
        .slash_command("U0ALICE", "C0GENERAL", "declare Payments API 500s")
        .await?;
    writeln!(out, "  acked in {:.1} ms", ack.latency.as_secs_f64() * 1000.0)?;
    let view = wait_for(Duration::from_secs(3), || async {
        sb.views_opened().get(views_before).cloned()
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the declare modal did not open"))?;
    writeln!(out, "  modal \"{}\" opened with the title prefilled", view.title)?;

    writeln!(out, "▶ alice submits the form with an empty title")?;
    let bad = sb
        .submit_view(
            "U0ALICE",
            &view.id,
            declare_values("", "U0ALICE", &json!({ "title": "  " })),
        )
        .await?;
    let err = bad
        .payload
        .as_ref()
        .map(|p| p["errors"]["title"].clone())
        .unwrap_or_default();
    writeln!(out, "  the modal shows: {err}")?;

    writeln!(out, "▶ alice submits: SEV1, payments + checkout, SPOC bob")?;
    sb.submit_view(
        "U0ALICE",
        &view.id,
        declare_values(
            "Payments API 500s",
            "U0ALICE",
            &json!({ "services": ["payments", "checkout"], "spoc": "U0BOB", "description": "Card payments fail with HTTP 500 for about 30% of requests since 14:02." }),
        ),
    )
    .await?;
    let channel = stack.wait_ready(1, Duration::from_secs(5)).await?;
    let incident = stack
        .db
        .incident_by_number(crate::incident::model::IncidentNumber(1))
        .await?
        .ok_or_else(|| anyhow::anyhow!("INC-1 was not stored"))?;

    let suspects = wait_for(Duration::from_secs(5), || async {
        sb.messages(&channel)
            .into_iter()
            .find(|m| m.text.contains("What changed?"))
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the incident was not told what changed"))?;
    writeln!(out, "  the incident channel is told what changed:")?;
    for line in suspects.text.lines() {
        writeln!(out, "    {line}")?;
    }
    writeln!(out, "▶ bob links it as the suspected cause: `/incident change CHG-1`")?;
    let said = stack.command("U0BOB", &channel, "change CHG-1").await?;
    writeln!(out, "  {said}")?;
    writeln!(out, "▶ bob, the SPOC, presses Acknowledge on the pinned card")?;
    let card = incident.card_ts.clone().unwrap_or_default();
    sb.click_button(
        "U0BOB",
        &channel,
        &card,
        crate::slack::blocks::ACTION_ACK,
        &incident.id.0.to_string(),
    )
    .await?;
    stack.settle().await;
    writeln!(
        out,
        "▶ nobody posts an update (demo cadence: SEV1 updates every 2 s, escalation 1 s after)"
    )?;
    let breach = wait_for(Duration::from_secs(8), || async {
        let events = stack.db.timeline(incident.id).await.ok()?;
        events.iter().any(|e| e.kind == "breach").then_some(())
    })
    .await;
    if breach.is_none() {
        anyhow::bail!("the SLA clock did not fire");
    }
    stack.settle().await;
    writeln!(out, "▶ bob posts an update with `/incident update`: identified")?;
    let form = stack.open_form("U0BOB", &channel, "update").await?;
    sb.submit_view(
        "U0BOB",
        &form.id,
        update_values(
            "identified",
            "A config change to the card router at 13:58 sends 30% of traffic to a drained pool.",
            "About 30% of card payments fail; retries succeed.",
            "Rolling back the router config; next update in 30 minutes.",
        ),
    )
    .await?;
    vendor_scene(out, &stack, &channel).await?;
    customer_scene(out, &stack, &channel).await?;
    writeln!(
        out,
        "▶ carol rolls the change back: `/change rollback 1 router config reverted`"
    )?;
    let said = stack
        .change("U0CAROL", "C0GENERAL", "rollback 1 router config reverted")
        .await?;
    writeln!(out, "  {said}")?;
    writeln!(out, "▶ alice lowers the severity: `/incident severity SEV2`")?;
    stack.command("U0ALICE", &channel, "severity SEV2").await?;
    writeln!(
        out,
        "▶ bob hands over at shift end: `/incident handover @carol rollback at 50%, watch error rate`"
    )?;
    stack
        .command(
            "U0BOB",
            &channel,
            "handover <@U0CAROL|carol> rollback at 50%, watch error rate",
        )
        .await?;
    writeln!(
        out,
        "▶ carol reports mitigation, resolves with a follow-up, adds another, drafts the review, closes"
    )?;
    let form = stack.open_form("U0CAROL", &channel, "update").await?;
    sb.submit_view(
        "U0CAROL",
        &form.id,
        update_values(
            "mitigated",
            "Rollback complete; error rate back to 0.2%.",
            "None since 14:41.",
            "Watching for an hour.",
        ),
    )
    .await?;
    let form = stack.open_form("U0CAROL", &channel, "resolve").await?;
    let mut values = resolve_values(
        "Rolled back the router config; added a pool health check to the deploy.",
        "change / deploy",
        None,
    );
    let in_a_week = (chrono::Utc::now() + chrono::Duration::days(7))
        .date_naive()
        .to_string();
    resolve_follow_up_values(
        &mut values,
        "Block router config changes that drain a pool",
        Some("U0CAROL"),
        Some(&in_a_week),
    );
    sb.submit_view("U0CAROL", &form.id, values).await?;
    stack
        .command(
            "U0CAROL",
            &channel,
            &format!("followup <@U0DAVE|dave> Alert on card-router error rate due {in_a_week} <https://tracker.example/OPS-1234|OPS-1234>"),
        )
        .await?;
    stack.settle().await;
    stack
        .command("U0CAROL", &channel, "vendor close V1 fix confirmed by Adyen")
        .await?;
    let refused = stack.command("U0CAROL", &channel, "close").await?;
    writeln!(out, "  carol: /incident close → {}", readable(sb, &refused))?;
    let list = sb.slash_command("U0DAVE", "C0GENERAL", "followups").await?;
    writeln!(out, "  dave, anywhere: /incident followups →")?;
    for line in render_blocks(&list.payload.unwrap_or_default()["blocks"]) {
        writeln!(out, "    {}", readable(sb, &line))?;
    }
    stack.settle().await;
    stack.command("U0CAROL", &channel, "pir").await?;
    wait_for(Duration::from_secs(5), || async {
        (!sb.files().is_empty()).then_some(())
    })
    .await;
    if let Some((_, title, bytes)) = sb.files().first() {
        writeln!(out, "  carol: /incident pir → a file is shared in the channel: {title}")?;
        for line in String::from_utf8_lossy(bytes).lines().take(36) {
            writeln!(out, "    │ {line}")?;
        }
        writeln!(out, "    │ …")?;
    }
    stack
        .command("U0CAROL", &channel, "pir done <https://wiki.example/pir/inc-1>")
        .await?;
    stack.command("U0CAROL", &channel, "close").await?;
    stack.settle().await;

    writeln!(out, "\n── incident channel ──")?;
    print_channel(out, sb, &channel)?;
    writeln!(out, "\n── announcement channel ──")?;
    print_channel(out, sb, ANNOUNCE_CHANNEL)?;
    writeln!(out, "\n── only alice sees (ephemeral) ──")?;
    for m in sb.ephemerals("U0ALICE") {
        writeln!(out, "  {}", readable(sb, &m.text))?;
    }
    writeln!(
        out,
        "\n── alice types `/incident report` (last 7 days; only she sees it) ──"
    )?;
    let report = sb.slash_command("U0ALICE", "C0GENERAL", "report").await?;
    let payload = report.payload.unwrap_or_default();
    let lines = render_blocks(&payload["blocks"]);
    let lines = if lines.is_empty() {
        vec![payload["text"].as_str().unwrap_or_default().to_string()]
    } else {
        lines
    };
    for line in lines {
        for l in readable(sb, &line).lines() {
            writeln!(out, "  {l}")?;
        }
    }
    writeln!(out, "\n── timeline of INC-1 ──")?;
    for e in stack.db.timeline(incident.id).await? {
        writeln!(
            out,
            "  {} {:<16} by {:<8} {}",
            e.at.format("%H:%M:%S%.3f"),
            e.kind,
            sandbox_user_name(&e.actor),
            e.details
        )?;
    }
    writeln!(
        out,
        "\nSlack API calls made: {} · envelopes acked late: {} · Block Kit violations: {} · {:.1} s",
        sb.calls().len(),
        sb.late_acks(),
        sb.block_kit_violations().len(),
        started.elapsed().as_secs_f64()
    )?;
    let mut stack = stack;
    stack.stop_bot().await;
    Ok(())
}

/// The `/change` form's state as Slack sends it: a deployment of `title` on `services` from
/// `start` to `end` (unix seconds), owned by `owner`; `fields` overrides per block id.
pub fn change_values(title: &str, services: &[&str], start: i64, end: i64, owner: &str, fields: &Value) -> Value {
    let options: Vec<Value> = services
        .iter()
        .map(|s| json!({ "text": { "type": "plain_text", "text": s }, "value": s }))
        .collect();
    let select = |v: &str| json!({ "type": "static_select", "selected_option": { "text": { "type": "plain_text", "text": v }, "value": v } });
    let mut values = json!({
        "kind": { "kind": select("deployment") },
        "title": { "title": { "type": "plain_text_input", "value": title } },
        "services": { "services": { "type": "multi_static_select", "selected_options": options } },
        "start": { "start": { "type": "datetimepicker", "selected_date_time": start } },
        "end": { "end": { "type": "datetimepicker", "selected_date_time": end } },
        "owner": { "owner": { "type": "users_select", "selected_user": owner } },
        "risk": { "risk": select("medium") },
        "customer_facing": { "customer_facing": { "type": "radio_buttons", "selected_option": { "text": { "type": "plain_text", "text": "No" }, "value": "no" } } },
        "vendor": { "vendor": { "type": "plain_text_input", "value": null } },
        "link": { "link": { "type": "url_text_input", "value": null } },
        "override": { "override": { "type": "plain_text_input", "value": null } },
        "go_ahead": { "go_ahead": { "type": "checkboxes", "selected_options": [] } },
    });
    if let Some(map) = fields.as_object() {
        for (block, value) in map {
            let element = &mut values[block.as_str()][block.as_str()];
            match (block.as_str(), value) {
                ("kind" | "risk", Value::String(v)) => *element = select(v),
                ("go_ahead", Value::Bool(true)) => {
                    element["selected_options"] =
                        json!([{ "text": { "type": "plain_text", "text": "yes" }, "value": "yes" }])
                }
                ("customer_facing", Value::Bool(yes)) => {
                    let v = if *yes { "yes" } else { "no" };
                    element["selected_option"] = json!({ "text": { "type": "plain_text", "text": v }, "value": v })
                }
                (_, v) => element["value"] = v.clone(),
            }
        }
    }
    values
}

impl LocalStack {
    /// Types `/change <text>` as `user` in `channel`; returns the ack's ephemeral text ("" when none).
    pub async fn change(&self, user: &str, channel: &str, text: &str) -> anyhow::Result<String> {
        let ack = self.sandbox.slash_command_named("/change", user, channel, text).await?;
        Ok(ack
            .payload
            .as_ref()
            .and_then(|p| p["text"].as_str())
            .unwrap_or_default()
            .to_string())
    }

    /// Types `/change new <title>`, waits for the form and submits `values` (see
    /// [`change_values`]). Returns the submission's ack payload (field errors, if any).
    pub async fn plan_change(
        &self,
        user: &str,
        channel: &str,
        title: &str,
        values: Value,
    ) -> anyhow::Result<Option<Value>> {
        let before = self.sandbox.views_opened().len();
        let text = self.change(user, channel, &format!("new {title}")).await?;
        if !text.is_empty() {
            anyhow::bail!("`/change new` answered instead of opening the form: {text}");
        }
        let view = wait_for(Duration::from_secs(3), || async {
            self.sandbox.views_opened().get(before).cloned()
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the change form did not open"))?;
        Ok(self.sandbox.submit_view(user, &view.id, values).await?.payload)
    }
}
