//! Typed settings. Secrets and connections come from the environment; everything else has a
//! working default and may be set in a TOML file and overridden per top-level key by
//! `INCIDENT_BOT_<KEY>`. Any problem is one [`ConfigError`] naming the key and the fix.

use crate::incident::model::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A setting that is wrong or missing: which key, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A token that never prints: `Debug` and `Display` show only its kind.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The app id inside an app-level token (`xapp-1-A0123ABCD-…`), if it has one.
    pub fn app_id(&self) -> Option<&str> {
        let mut parts = self.0.split('-');
        let (kind, _version, app) = (parts.next()?, parts.next()?, parts.next()?);
        (kind == "xapp"
            && app.len() > 1
            && app.starts_with('A')
            && app.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        .then_some(app)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind: String = self.0.chars().take_while(|c| *c != '-').collect();
        write!(f, "Secret({kind}-…)")
    }
}

/// Per-severity service levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityPolicy {
    pub severity: Severity,
    pub description: String,
    /// Stakeholder update cadence; zero means no reminders.
    pub update_every: Duration,
    /// How long past due before a breach is recorded and escalated; zero means never.
    pub escalate_after: Duration,
}

/// A scheduled report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSchedule {
    pub cron: String,
    pub period: String,
    pub channel: String,
}

/// How the bot runs incidents: everything that is not a secret or a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub announce_channel: Option<String>,
    pub managers_group: Option<String>,
    pub timezone: chrono_tz::Tz,
    pub channel_prefix: String,
    pub services: Vec<String>,
    pub roles: Vec<String>,
    pub severities: Vec<SeverityPolicy>,
    pub reports: Vec<ReportSchedule>,
    /// How often the owner of an overdue follow-up is reminded; zero = never.
    pub follow_up_remind_every: Duration,
    /// Post-incident reviews: which severities, reminders, whether closing waits for one.
    pub pir: crate::incident::pir::PirRules,
    /// `[[vendors]]`: the vendor catalogue for vendor tickets (see [`crate::vendor`]).
    pub vendors: crate::vendor::Catalogue,
    /// Detection (issue 15): the triage channel, `[[alert_sources]]`, `[[alert_rules]]`.
    pub alerts: crate::alerts::AlertsConfig,
    /// The change calendar (issue 12): channel, look-back, digest, feed token, freezes.
    pub changes: crate::calendar::ChangeSettings,
    /// Customer communications and the public status page (issue 14); off when absent.
    pub status_page: Option<crate::comms::StatusPage>,
}

impl Policy {
    /// The SLA clock's settings per severity.
    pub fn slas(&self) -> crate::reminder::plan::Slas {
        let sla = |s: Severity| {
            let p = self.severity(s);
            let d = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            crate::reminder::plan::Sla {
                update_every: d(p.update_every),
                escalate_after: d(p.escalate_after),
                customer_every: self
                    .status_page
                    .as_ref()
                    .and_then(|page| page.cadence(s))
                    .unwrap_or_else(chrono::Duration::zero),
            }
        };
        crate::reminder::plan::Slas(Severity::ALL.map(sla))
    }

    /// The rules changes are applied under (see [`crate::incident::change::Rules`]).
    pub fn rules(&self) -> crate::incident::change::Rules {
        crate::incident::change::Rules {
            slas: self.slas(),
            pir: self.pir.clone(),
            timezone: self.timezone,
            follow_up_remind_every: chrono::Duration::from_std(self.follow_up_remind_every)
                .unwrap_or(chrono::Duration::MAX),
            vendors: self.vendors.clone(),
            status_page: self.status_page.clone(),
        }
    }

    pub fn severity(&self, severity: Severity) -> &SeverityPolicy {
        self.severities
            .iter()
            .find(|p| p.severity == severity)
            .expect("Policy always holds every severity (built from the defaults)")
    }
}

impl SeverityPolicy {
    /// `update every 30m, escalate after 10m`; a zero delay reads as what it means
    /// (`no update reminders`, `no escalation`), as `check-config` prints it.
    pub fn describe(&self) -> String {
        let update = if self.update_every.is_zero() {
            "no update reminders".to_string()
        } else {
            format!("update every {}", humanize(self.update_every))
        };
        let escalate = if self.escalate_after.is_zero() {
            "no escalation".to_string()
        } else {
            format!("escalate after {}", humanize(self.escalate_after))
        };
        format!("{update}, {escalate}")
    }
}

impl Default for Policy {
    fn default() -> Self {
        let sev = |severity, description: &str, every_min: u64, escalate_min: u64| SeverityPolicy {
            severity,
            description: description.to_string(),
            update_every: Duration::from_secs(every_min * 60),
            escalate_after: Duration::from_secs(escalate_min * 60),
        };
        Policy {
            announce_channel: None,
            managers_group: None,
            timezone: chrono_tz::UTC,
            channel_prefix: "inc".into(),
            services: ["payments", "checkout", "settlement", "portal", "app"]
                .map(String::from)
                .to_vec(),
            roles: ["comms", "tech_lead", "scribe"].map(String::from).to_vec(),
            severities: vec![
                sev(Severity::Sev1, "Critical: core flow down for many customers", 30, 10),
                sev(
                    Severity::Sev2,
                    "Major: degraded core flow or secondary service down",
                    60,
                    15,
                ),
                sev(Severity::Sev3, "Minor: limited impact, workaround exists", 240, 60),
                sev(Severity::Sev4, "Low: no customer impact yet", 24 * 60, 0),
            ],
            reports: vec![],
            follow_up_remind_every: Duration::from_secs(24 * 3600),
            pir: crate::incident::pir::PirRules::default(),
            vendors: crate::vendor::Catalogue::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            changes: crate::calendar::ChangeSettings::default(),
            status_page: None,
        }
    }
}

/// Slack connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackSettings {
    pub bot_token: Secret,
    pub app_token: Secret,
    /// Web API base URL without trailing slash (GovSlack, Enterprise, the sandbox).
    pub api_url: String,
    /// Socket Mode connections per process (`SLACK_SOCKET_CONNECTIONS`, 1–10; default 2).
    /// Slack allows 10 per app across all replicas.
    pub socket_connections: Option<u32>,
}

/// Everything the bot needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub slack: SlackSettings,
    pub database_url: String,
    pub http_listen: Option<SocketAddr>,
    pub policy: Policy,
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://incident-bot.db";

/// The TOML file, as written. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    announce_channel: Option<String>,
    managers_group: Option<String>,
    timezone: Option<String>,
    channel_prefix: Option<String>,
    services: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    http_listen: Option<String>,
    follow_up_remind_every: Option<String>,
    pir_severities: Option<Vec<String>>,
    pir_remind_after: Option<String>,
    pir_remind_every: Option<String>,
    pir_required_to_close: Option<bool>,
    #[serde(default)]
    severities: BTreeMap<String, FileSeverity>,
    #[serde(default)]
    reports: Vec<FileReport>,
    /// Checked by [`crate::vendor::parse_catalogue`], which names the whole path.
    vendors: Option<toml::Value>,
    alerts_channel: Option<String>,
    #[serde(default)]
    alert_sources: Vec<crate::alerts::config::FileAlertSource>,
    #[serde(default)]
    alert_rules: Vec<crate::alerts::config::FileAlertRule>,
    changes_channel: Option<String>,
    change_lookback: Option<String>,
    change_digest_cron: Option<String>,
    calendar_token: Option<String>,
    #[serde(default)]
    freezes: Vec<FileFreeze>,
    /// Checked by [`crate::comms::config::parse_status_page`], which names the whole path.
    status_page: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFreeze {
    name: String,
    start: String,
    end: String,
    services: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSeverity {
    description: Option<String>,
    update_every: Option<String>,
    escalate_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReport {
    cron: String,
    period: String,
    channel: String,
}

/// A duration as configured: "30m", "4h", "1h30m", "1d" (the inverse of [`parse_duration`]).
pub fn humanize(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (v, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

/// Parses `30m`, `4h`, `10s`, `1d`, `1h30m`, `250ms`, `0s`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let fail = || format!("cannot read \"{raw}\" as a duration (write it like 30m, 4h, 10s)");
    if s.is_empty() {
        return Err(fail());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(fail());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| fail())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(fail)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(fail)?),
            "d" => Duration::from_secs(value.checked_mul(86_400).ok_or_else(fail)?),
            _ => return Err(fail()),
        };
        total = total.checked_add(step).ok_or_else(fail)?;
    }
    Ok(total)
}

/// Reads `2 working days`, `1 working day`, `3wd`, or a plain duration (`36h`).
pub fn parse_delay(raw: &str) -> Result<crate::incident::pir::Delay, String> {
    use crate::incident::pir::Delay;
    let s = raw.trim().to_ascii_lowercase();
    let days = s
        .strip_suffix("working days")
        .or_else(|| s.strip_suffix("working day"))
        .or_else(|| s.strip_suffix("wd"));
    if let Some(n) = days {
        return match n.trim().parse::<u32>() {
            Ok(n) if n <= 60 => Ok(Delay::WorkingDays(n)),
            _ => Err(format!(
                "cannot read \"{raw}\" as a delay (write it like \"2 working days\", at most 60, or a duration like 36h)"
            )),
        };
    }
    let d = parse_duration(raw).map_err(|_| {
        format!("cannot read \"{raw}\" as a delay (write it like \"2 working days\" or a duration like 36h)")
    })?;
    Ok(Delay::Fixed(
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
    ))
}

/// Where settings come from; a seam so tests do not touch the process environment.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
    /// Every variable name set (to refuse unknown `INCIDENT_BOT_*` ones).
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn names(&self) -> Vec<String> {
        std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// Reads the policy file (if any) and applies `INCIDENT_BOT_<KEY>` overrides.
pub fn load_policy(file: Option<&Path>, env: &dyn Env) -> Result<(Policy, Option<SocketAddr>), ConfigError> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--config", format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    policy_from_toml(text.as_deref().unwrap_or(""), env)
}

/// Builds the policy from TOML text plus environment overrides.
pub fn policy_from_toml(text: &str, env: &dyn Env) -> Result<(Policy, Option<SocketAddr>), ConfigError> {
    check_env_names(env)?;
    check_file_keys(text)?;
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        // toml's message names the unknown or mistyped key; keep it on one line.
        let msg = e.message().replace('\n', " ");
        let key = msg
            .split('`')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| "config file".into());
        ConfigError::new(key, msg)
    })?;

    let over = |key: &str| env.get(&format!("INCIDENT_BOT_{}", key.to_ascii_uppercase()));
    let list = |raw: String| -> Vec<String> {
        raw.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };

    let mut policy = Policy::default();
    if let Some(v) = over("announce_channel").or(file.announce_channel) {
        policy.announce_channel = Some(check_conversation_id("announce_channel", &v)?);
    }
    if let Some(v) = over("managers_group").or(file.managers_group) {
        if !(v.starts_with('S') && v.len() > 1 && v.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(ConfigError::new(
                "managers_group",
                format!("\"{v}\" is not a user group id (it looks like S0123ABCD)"),
            ));
        }
        policy.managers_group = Some(v);
    }
    if let Some(v) = over("timezone").or(file.timezone) {
        policy.timezone = v.parse().map_err(|_| {
            ConfigError::new(
                "timezone",
                format!("unknown time zone \"{v}\" (use an IANA name like Europe/London)"),
            )
        })?;
    }
    if let Some(v) = over("channel_prefix").or(file.channel_prefix) {
        let slug = crate::incident::model::slugify(&v);
        if slug.is_empty() || slug.len() > 20 {
            return Err(ConfigError::new(
                "channel_prefix",
                format!("\"{v}\" must be 1–20 characters of a-z, 0-9 or -"),
            ));
        }
        policy.channel_prefix = slug;
    }
    if let Some(v) = over("services").map(list).or(file.services) {
        policy.services = check_names("services", v)?;
    }
    if let Some(v) = over("roles").map(list).or(file.roles) {
        let roles = check_names("roles", v)?;
        if roles.iter().any(|r| r == "spoc") {
            return Err(ConfigError::new(
                "roles",
                "\"spoc\" is built in; list only the optional roles",
            ));
        }
        policy.roles = roles;
    }
    if let Some(v) = over("follow_up_remind_every").or(file.follow_up_remind_every) {
        policy.follow_up_remind_every =
            parse_duration(&v).map_err(|e| ConfigError::new("follow_up_remind_every", e))?;
    }
    if let Some(v) = over("pir_severities").map(list).or(file.pir_severities) {
        policy.pir.severities = v
            .iter()
            .map(|s| s.parse::<Severity>())
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::new("pir_severities", e))?;
    }
    if let Some(v) = over("pir_remind_after").or(file.pir_remind_after) {
        policy.pir.first_after = parse_delay(&v).map_err(|e| ConfigError::new("pir_remind_after", e))?;
    }
    if let Some(v) = over("pir_remind_every").or(file.pir_remind_every) {
        let every = parse_delay(&v).map_err(|e| ConfigError::new("pir_remind_every", e))?;
        if matches!(every, crate::incident::pir::Delay::WorkingDays(0))
            || every == crate::incident::pir::Delay::Fixed(chrono::Duration::zero())
        {
            return Err(ConfigError::new(
                "pir_remind_every",
                "must be more than zero (reminders stop when the review is marked done)",
            ));
        }
        policy.pir.repeat_every = every;
    }
    let required = match over("pir_required_to_close") {
        Some(v) => Some(
            v.parse::<bool>()
                .map_err(|_| ConfigError::new("pir_required_to_close", format!("\"{v}\" is not true or false")))?,
        ),
        None => file.pir_required_to_close,
    };
    if let Some(required) = required {
        policy.pir.required_to_close = required;
    }
    for (name, sev) in file.severities {
        let key = format!("severities.{name}");
        let severity: Severity = name.parse().map_err(|e: String| ConfigError::new(&key, e))?;
        let slot = policy
            .severities
            .iter_mut()
            .find(|p| p.severity == severity)
            .expect("defaults hold every severity");
        if let Some(d) = sev.description {
            slot.description = d;
        }
        if let Some(d) = sev.update_every {
            slot.update_every = parse_duration(&d).map_err(|e| ConfigError::new(format!("{key}.update_every"), e))?;
        }
        if let Some(d) = sev.escalate_after {
            slot.escalate_after =
                parse_duration(&d).map_err(|e| ConfigError::new(format!("{key}.escalate_after"), e))?;
        }
    }
    for (i, report) in file.reports.into_iter().enumerate() {
        let key = format!("reports[{i}]");
        report.cron.parse::<cron::Schedule>().map_err(|e| {
            ConfigError::new(
                format!("{key}.cron"),
                format!(
                    "cannot read \"{}\" as a cron schedule ({}); write 6 fields, seconds first, e.g. \"0 0 9 * * Mon\"",
                    report.cron,
                    // The cron crate's message spans lines (it draws a caret); keep its last line.
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
            )
        })?;
        if !["weekly", "monthly"].contains(&report.period.as_str()) {
            return Err(ConfigError::new(
                format!("{key}.period"),
                format!("\"{}\" is not a period (use weekly or monthly)", report.period),
            ));
        }
        let channel = check_conversation_id(&format!("{key}.channel"), &report.channel)?;
        policy.reports.push(ReportSchedule {
            cron: report.cron,
            period: report.period,
            channel,
        });
    }
    if let Some(v) = &file.vendors {
        policy.vendors = crate::vendor::parse_catalogue(v, &policy.services)
            .map_err(|(key, problem)| ConfigError::new(key, problem))?;
    }
    if let Some(v) = &file.status_page {
        policy.status_page = Some(
            crate::comms::config::parse_status_page(v, &policy.services, policy.timezone)
                .map_err(|(key, problem)| ConfigError::new(key, problem))?,
        );
    }
    if let Some(v) = over("alerts_channel").or(file.alerts_channel) {
        policy.alerts.channel = Some(check_conversation_id("alerts_channel", &v)?);
    }
    policy.alerts.sources = crate::alerts::config::sources(file.alert_sources, &policy, env)?;
    policy.alerts.rules = crate::alerts::config::rules(file.alert_rules, &policy)?;
    policy.changes = change_settings(
        over("changes_channel").or(file.changes_channel),
        over("change_lookback").or(file.change_lookback),
        over("change_digest_cron").or(file.change_digest_cron),
        over("calendar_token").or(file.calendar_token),
        file.freezes,
        &policy,
    )?;
    let http_listen = match over("http_listen").or(file.http_listen) {
        Some(v) => Some(v.parse().map_err(|_| {
            ConfigError::new(
                "http_listen",
                format!("\"{v}\" is not an address (write it like 127.0.0.1:9090)"),
            )
        })?),
        None => None,
    };
    Ok((policy, http_listen))
}

/// What a setting holds, for checking the file before serde reads it: serde's errors name
/// only the leaf key (`update_evry`), ours give the whole path (`severities.SEV1.update_evry`).
#[derive(Clone, Copy)]
enum Shape {
    Text,
    Flag,
    Names,
    /// `[severities.<name>]` tables.
    Severities,
    /// `[[reports]]` tables.
    Reports,
    /// `[[vendors]]` tables (checked by `vendor::parse_catalogue`).
    Vendors,
    /// `[status_page]` (checked by `comms::config`).
    StatusPage,
    /// `[[alert_sources]]` / `[[alert_rules]]` tables (checked by `alerts::config`).
    AlertTables,
    /// `[[freezes]]` tables (keys checked by serde).
    Freezes,
}

/// The file's top-level keys; every scalar one may be overridden as `INCIDENT_BOT_<KEY>`.
const TOP_KEYS: [(&str, Shape); 24] = [
    ("announce_channel", Shape::Text),
    ("managers_group", Shape::Text),
    ("timezone", Shape::Text),
    ("channel_prefix", Shape::Text),
    ("services", Shape::Names),
    ("roles", Shape::Names),
    ("http_listen", Shape::Text),
    ("follow_up_remind_every", Shape::Text),
    ("pir_severities", Shape::Names),
    ("pir_remind_after", Shape::Text),
    ("pir_remind_every", Shape::Text),
    ("pir_required_to_close", Shape::Flag),
    ("severities", Shape::Severities),
    ("reports", Shape::Reports),
    ("vendors", Shape::Vendors),
    ("alerts_channel", Shape::Text),
    ("alert_sources", Shape::AlertTables),
    ("alert_rules", Shape::AlertTables),
    ("changes_channel", Shape::Text),
    ("change_lookback", Shape::Text),
    ("change_digest_cron", Shape::Text),
    ("calendar_token", Shape::Text),
    ("freezes", Shape::Freezes),
    ("status_page", Shape::StatusPage),
];
const SEVERITY_KEYS: [&str; 3] = ["description", "update_every", "escalate_after"];
const REPORT_KEYS: [&str; 3] = ["cron", "period", "channel"];

/// Edit distance (Levenshtein), to name the closest known key in an error.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn closest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> &'a str {
    known
        .into_iter()
        .min_by_key(|k| distance(&wrong.to_ascii_lowercase(), &k.to_ascii_lowercase()))
        .unwrap_or_default()
}

fn unknown(path: &str, wrong: &str, known: &[&str]) -> ConfigError {
    let prefix = path.strip_suffix(wrong).unwrap_or_default();
    ConfigError::new(
        path,
        format!(
            "unknown setting; the closest known one is `{prefix}{}`",
            closest(wrong, known.iter().copied())
        ),
    )
}

/// `INCIDENT_BOT_*` variables must be known, like file keys (a typo is not silently ignored).
fn check_env_names(env: &dyn Env) -> Result<(), ConfigError> {
    let known: Vec<String> = std::iter::once("CONFIG")
        .chain(
            TOP_KEYS
                .iter()
                .filter(|(_, shape)| {
                    !matches!(
                        shape,
                        Shape::Severities
                            | Shape::Reports
                            | Shape::Vendors
                            | Shape::StatusPage
                            | Shape::AlertTables
                            | Shape::Freezes
                    )
                })
                .map(|(k, _)| *k),
        )
        .map(|k| format!("INCIDENT_BOT_{}", k.to_ascii_uppercase()))
        .collect();
    let mut names = env.names();
    names.sort();
    for name in names {
        if name.starts_with("INCIDENT_BOT_") && !known.contains(&name) {
            return Err(ConfigError::new(
                &name,
                format!(
                    "unknown environment variable; the closest known one is `{}`",
                    closest(&name, known.iter().map(String::as_str))
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the file's keys and value types, naming the whole path of what is wrong.
fn check_file_keys(text: &str) -> Result<(), ConfigError> {
    // A syntax error is reported by the typed parse, with its own message.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let top: Vec<&str> = TOP_KEYS.iter().map(|(k, _)| *k).collect();
    for (key, value) in &table {
        let Some((_, shape)) = TOP_KEYS.iter().find(|(k, _)| k == key) else {
            return Err(unknown(key, key, &top));
        };
        match shape {
            Shape::Severities => {
                let table = value
                    .as_table()
                    .ok_or_else(|| expected(key, "a table of severities like [severities.SEV1]", value))?;
                for (name, severity) in table {
                    let path = format!("{key}.{name}");
                    check_table(&path, severity, &SEVERITY_KEYS, &[])?;
                }
            }
            Shape::Reports => {
                let list = value
                    .as_array()
                    .ok_or_else(|| expected(key, "[[reports]] tables", value))?;
                for (i, report) in list.iter().enumerate() {
                    check_table(&format!("{key}[{i}]"), report, &REPORT_KEYS, &REPORT_KEYS)?;
                }
            }
            Shape::Freezes => {
                value
                    .as_array()
                    .ok_or_else(|| expected(key, "[[freezes]] tables", value))?;
            }
            shape => check_leaf(key, *shape, value)?,
        }
    }
    Ok(())
}

/// A table of text settings: known keys only, `required` present, each a string.
fn check_table(path: &str, value: &toml::Value, known: &[&str], required: &[&str]) -> Result<(), ConfigError> {
    let table = value.as_table().ok_or_else(|| expected(path, "a table", value))?;
    for (key, v) in table {
        let leaf = format!("{path}.{key}");
        if !known.contains(&key.as_str()) {
            return Err(unknown(&leaf, key, known));
        }
        check_leaf(&leaf, Shape::Text, v)?;
    }
    match required.iter().find(|k| !table.contains_key(**k)) {
        Some(missing) => Err(ConfigError::new(
            format!("{path}.{missing}"),
            "missing; every [[reports]] entry needs cron, period and channel",
        )),
        None => Ok(()),
    }
}

fn check_leaf(path: &str, shape: Shape, value: &toml::Value) -> Result<(), ConfigError> {
    let ok = match shape {
        Shape::Text => value.is_str(),
        Shape::Flag => value.is_bool(),
        Shape::Names => value.as_array().is_some_and(|a| a.iter().all(toml::Value::is_str)),
        Shape::Severities
        | Shape::Reports
        | Shape::Vendors
        | Shape::StatusPage
        | Shape::AlertTables
        | Shape::Freezes => true,
    };
    if ok {
        return Ok(());
    }
    let wanted = match shape {
        Shape::Flag => "true or false",
        Shape::Names => "a list of strings, like [\"a\", \"b\"]",
        _ => "a string (in quotes)",
    };
    Err(expected(path, wanted, value))
}

fn expected(path: &str, wanted: &str, found: &toml::Value) -> ConfigError {
    let shown = crate::incident::model::truncate(&found.to_string().replace('\n', " "), 40);
    ConfigError::new(path, format!("expected {wanted}, found {} {shown}", found.type_str()))
}

pub(crate) fn check_conversation_id(key: &str, v: &str) -> Result<String, ConfigError> {
    let ok = v.len() > 1
        && (v.starts_with('C') || v.starts_with('G'))
        && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(v.to_string())
    } else {
        Err(ConfigError::new(
            key,
            format!("\"{v}\" is not a channel id (copy it from the channel details; it looks like C0123ABCD)"),
        ))
    }
}

fn check_names(key: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(key, "list at least one name"));
    }
    for n in &names {
        let ok = !n.is_empty()
            && n.len() <= 40
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(ConfigError::new(
                key,
                format!("\"{n}\" must be 1–40 characters of a-z, 0-9, _ or -"),
            ));
        }
    }
    Ok(names)
}

/// Reads Slack and database settings from the environment.
pub fn slack_and_db_from_env(env: &dyn Env) -> Result<(SlackSettings, String), ConfigError> {
    let bot_token = env.get("SLACK_BOT_TOKEN").ok_or_else(|| {
        ConfigError::new(
            "SLACK_BOT_TOKEN",
            "not set: copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page",
        )
    })?;
    if !bot_token.starts_with("xoxb-") {
        return Err(ConfigError::new(
            "SLACK_BOT_TOKEN",
            "must be a bot token starting with xoxb-",
        ));
    }
    let app_token = env.get("SLACK_APP_TOKEN").ok_or_else(|| {
        ConfigError::new(
            "SLACK_APP_TOKEN",
            "not set: create an app-level token (xapp-…) with connections:write under Basic Information",
        )
    })?;
    if !app_token.starts_with("xapp-") {
        return Err(ConfigError::new(
            "SLACK_APP_TOKEN",
            "must be an app-level token starting with xapp-",
        ));
    }
    let api_url = env
        .get("SLACK_API_URL")
        .unwrap_or_else(|| DEFAULT_API_URL.into())
        .trim_end_matches('/')
        .to_string();
    if url::Url::parse(&api_url)
        .map(|u| !["http", "https"].contains(&u.scheme()))
        .unwrap_or(true)
    {
        return Err(ConfigError::new(
            "SLACK_API_URL",
            format!("\"{api_url}\" is not an http(s) URL"),
        ));
    }
    let socket_connections = match env.get("SLACK_SOCKET_CONNECTIONS") {
        None => None,
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n @ 1..=10) => Some(n),
            _ => {
                return Err(ConfigError::new(
                    "SLACK_SOCKET_CONNECTIONS",
                    format!("\"{raw}\" is not a number from 1 to 10 (Slack allows 10 Socket Mode connections per app)"),
                ))
            }
        },
    };
    let database_url = env.get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "use sqlite://PATH (default sqlite://incident-bot.db) or postgres://USER@HOST/DB",
        ));
    }
    Ok((
        SlackSettings {
            bot_token: Secret::new(bot_token),
            app_token: Secret::new(app_token),
            api_url,
            socket_connections,
        },
        database_url,
    ))
}

/// All settings: environment plus optional file (`--config` or `INCIDENT_BOT_CONFIG`).
pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
    let env_file = env.get("INCIDENT_BOT_CONFIG");
    let file = file.map(Path::to_path_buf).or(env_file.map(Into::into));
    let (policy, http_listen) = load_policy(file.as_deref(), env)?;
    let (slack, database_url) = slack_and_db_from_env(env)?;
    Ok(Settings {
        slack,
        database_url,
        http_listen,
        policy,
    })
}

/// The change calendar's settings (issue 12): `changes_channel`, `change_lookback`,
/// `change_digest_cron`, `calendar_token` and the `[[freezes]]`, whose service lines must be in
/// the catalogue and which must not overlap one another.
fn change_settings(
    channel: Option<String>,
    lookback: Option<String>,
    digest_cron: Option<String>,
    token: Option<String>,
    freezes: Vec<FileFreeze>,
    policy: &Policy,
) -> Result<crate::calendar::ChangeSettings, ConfigError> {
    let mut settings = crate::calendar::ChangeSettings::default();
    if let Some(v) = channel {
        settings.channel = Some(check_conversation_id("changes_channel", &v)?);
    }
    if let Some(v) = lookback {
        let d = parse_duration(&v).map_err(|e| ConfigError::new("change_lookback", e))?;
        settings.lookback = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    }
    if let Some(v) = digest_cron {
        v.parse::<cron::Schedule>().map_err(|e| {
            ConfigError::new(
                "change_digest_cron",
                format!(
                    "cannot read \"{v}\" as a cron schedule ({}); write 6 fields, seconds first, e.g. \"0 0 8 * * Mon-Fri\"",
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
            )
        })?;
        settings.digest_cron = v;
    }
    if let Some(v) = token {
        if v.len() < 16 {
            return Err(ConfigError::new(
                "calendar_token",
                "use at least 16 characters (it is the only thing protecting the feed)",
            ));
        }
        settings.calendar_token = Some(Secret::new(v));
    }
    for (i, f) in freezes.into_iter().enumerate() {
        let key = format!("freezes[{i}]");
        let start = crate::calendar::parse_local(&f.start, policy.timezone, false)
            .map_err(|e| ConfigError::new(format!("{key}.start"), e))?;
        let end = crate::calendar::parse_local(&f.end, policy.timezone, true)
            .map_err(|e| ConfigError::new(format!("{key}.end"), e))?;
        if end <= start {
            return Err(ConfigError::new(
                format!("{key}.end"),
                "the freeze ends before it starts",
            ));
        }
        let services = match f.services {
            None => None,
            Some(list) if list.iter().any(|s| s == "all") => None,
            Some(list) => {
                if let Some(unknown) = list.iter().find(|s| !policy.services.contains(s)) {
                    return Err(ConfigError::new(
                        format!("{key}.services"),
                        format!("\"{unknown}\" is not in services ({})", policy.services.join(", ")),
                    ));
                }
                Some(list)
            }
        };
        settings.freezes.push(crate::calendar::Freeze {
            name: f.name,
            starts_at: start,
            ends_at: end,
            services,
        });
    }
    if let Some((a, b)) = crate::calendar::overlapping_freezes(&settings.freezes) {
        return Err(ConfigError::new(
            format!("freezes[{b}]"),
            format!(
                "overlaps freezes[{a}] (\"{}\") on a common service line; merge them into one freeze",
                settings.freezes[a].name
            ),
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "30", "m", "3x", "-5m", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_documented_example_file_parses() {
        let text = include_str!("../config.example.toml");
        let (policy, listen) = policy_from_toml(text, &env(&[])).unwrap();
        assert_eq!(policy.announce_channel.as_deref(), Some("C0123ABCD"));
        assert_eq!(policy.timezone, chrono_tz::Europe::London);
        assert_eq!(policy.severity(Severity::Sev1).update_every, Duration::from_secs(1800));
        assert_eq!(policy.reports.len(), 1);
        assert_eq!(listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(policy.pir, crate::incident::pir::PirRules::default());
        assert_eq!(policy.follow_up_remind_every, Duration::from_secs(86_400));
    }

    #[test]
    fn app_tokens_name_their_app() {
        assert_eq!(Secret::new("xapp-1-A0123ABCD-4567-abcdef").app_id(), Some("A0123ABCD"));
        assert_eq!(Secret::new("xapp-1-secret").app_id(), None);
        assert_eq!(Secret::new("xoxb-1-A0123ABCD-x").app_id(), None);
        assert_eq!(Secret::new("xapp-1-a0lower-x").app_id(), None);
    }

    #[test]
    fn review_and_follow_up_settings() {
        use crate::incident::pir::Delay;
        let text = "pir_severities = [\"SEV1\"]\npir_remind_after = \"36h\"\npir_remind_every = \"3 working days\"\n\
                    pir_required_to_close = false\nfollow_up_remind_every = \"12h\"\n";
        let (p, _) = policy_from_toml(text, &env(&[("INCIDENT_BOT_PIR_REQUIRED_TO_CLOSE", "true")])).unwrap();
        assert_eq!(p.pir.severities, [Severity::Sev1]);
        assert_eq!(p.pir.first_after, Delay::Fixed(chrono::Duration::hours(36)));
        assert_eq!(p.pir.repeat_every, Delay::WorkingDays(3));
        assert!(p.pir.required_to_close, "the environment wins");
        assert_eq!(p.follow_up_remind_every, Duration::from_secs(12 * 3600));
        assert_eq!(parse_delay("1 working day"), Ok(Delay::WorkingDays(1)));
        assert_eq!(parse_delay("2wd"), Ok(Delay::WorkingDays(2)));
        for (text, key) in [
            ("pir_severities = [\"SEV7\"]", "pir_severities"),
            ("pir_remind_after = \"soon\"", "pir_remind_after"),
            ("pir_remind_every = \"0 working days\"", "pir_remind_every"),
            ("follow_up_remind_every = \"daily\"", "follow_up_remind_every"),
        ] {
            let e = policy_from_toml(text, &env(&[])).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
        let e = policy_from_toml("", &env(&[("INCIDENT_BOT_PIR_REQUIRED_TO_CLOSE", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("pir_required_to_close"), "{e}");
    }

    #[test]
    fn defaults_match_the_product_table() {
        let (p, listen) = policy_from_toml("", &env(&[])).unwrap();
        assert_eq!(listen, None);
        assert_eq!(p.channel_prefix, "inc");
        assert_eq!(p.severity(Severity::Sev2).update_every, Duration::from_secs(3600));
        assert_eq!(p.severity(Severity::Sev3).escalate_after, Duration::from_secs(3600));
        assert_eq!(p.severity(Severity::Sev4).escalate_after, Duration::ZERO);
        assert_eq!(p.services.len(), 5);
    }

    #[test]
    fn environment_overrides_the_file() {
        let (p, _) = policy_from_toml(
            "announce_channel = \"C111\"\nservices = [\"a\"]",
            &env(&[
                ("INCIDENT_BOT_ANNOUNCE_CHANNEL", "C222"),
                ("INCIDENT_BOT_SERVICES", "x, y"),
            ]),
        )
        .unwrap();
        assert_eq!(p.announce_channel.as_deref(), Some("C222"));
        assert_eq!(p.services, vec!["x", "y"]);
    }

    #[test]
    fn bad_files_name_the_key() {
        let cases = [
            ("colour = \"red\"", "colour"),
            (
                "[severities.SEV1]\nupdate_every = \"3x\"",
                "severities.SEV1.update_every",
            ),
            ("[severities.SEV9]\nupdate_every = \"3m\"", "severities.SEV9"),
            (
                "[[reports]]\ncron = \"nope\"\nperiod = \"weekly\"\nchannel = \"C1\"",
                "reports[0].cron",
            ),
            (
                "[[reports]]\ncron = \"0 0 9 * * Mon\"\nperiod = \"daily\"\nchannel = \"C1\"",
                "reports[0].period",
            ),
            ("timezone = \"Mars/Olympus\"", "timezone"),
            ("announce_channel = \"#incidents\"", "announce_channel"),
            ("roles = [\"spoc\"]", "roles"),
            ("http_listen = \"localhost\"", "http_listen"),
        ];
        for (text, key) in cases {
            let err = policy_from_toml(text, &env(&[])).unwrap_err();
            assert_eq!(err.key, key, "{text} → {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_variables_are_refused_with_the_whole_path_and_the_closest_key() {
        for (text, key, closest) in [
            (
                "[severities.SEV1]\nupdate_evry = \"30m\"",
                "severities.SEV1.update_evry",
                "`severities.SEV1.update_every`",
            ),
            ("anounce_channel = \"C1\"", "anounce_channel", "`announce_channel`"),
            (
                "[[reports]]\ncron = \"0 0 9 * * Mon\"\nperiod = \"weekly\"\nchanel = \"C1\"",
                "reports[0].chanel",
                "`reports[0].channel`",
            ),
        ] {
            let err = policy_from_toml(text, &env(&[])).unwrap_err();
            assert_eq!(err.key, key, "{text} → {err}");
            assert!(err.problem.contains(closest), "{text} → {err}");
        }
        for (text, key) in [
            ("[severities.SEV1]\nupdate_every = 30", "severities.SEV1.update_every"),
            (
                "[[reports]]\ncron = \"0 0 9 * * Mon\"\nperiod = \"weekly\"",
                "reports[0].channel",
            ),
            ("services = \"payments\"", "services"),
            ("pir_required_to_close = \"yes\"", "pir_required_to_close"),
        ] {
            let err = policy_from_toml(text, &env(&[])).unwrap_err();
            assert_eq!(err.key, key, "{text} → {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
        let err = policy_from_toml("", &env(&[("INCIDENT_BOT_ANOUNCE_CHANNEL", "C1")])).unwrap_err();
        assert_eq!(err.key, "INCIDENT_BOT_ANOUNCE_CHANNEL");
        assert!(err.problem.contains("`INCIDENT_BOT_ANNOUNCE_CHANNEL`"), "{err}");
        let known = [
            ("INCIDENT_BOT_CONFIG", "x.toml"),
            ("INCIDENT_BOT_HTTP_LISTEN", "127.0.0.1:1"),
            ("OTHER_VAR", "x"),
        ];
        assert!(policy_from_toml("", &env(&known)).is_ok());
    }

    #[test]
    fn zero_delays_read_as_what_they_mean() {
        let (p, _) = policy_from_toml("", &env(&[])).unwrap();
        assert_eq!(
            p.severity(Severity::Sev1).describe(),
            "update every 30m, escalate after 10m"
        );
        assert_eq!(p.severity(Severity::Sev4).describe(), "update every 1d, no escalation");
        let mut quiet = p.severity(Severity::Sev3).clone();
        quiet.update_every = Duration::ZERO;
        assert_eq!(quiet.describe(), "no update reminders, escalate after 1h");
    }

    #[test]
    fn tokens_are_required_shaped_and_never_printed() {
        let missing = slack_and_db_from_env(&env(&[])).unwrap_err();
        assert_eq!(missing.key, "SLACK_BOT_TOKEN");
        let wrong =
            slack_and_db_from_env(&env(&[("SLACK_BOT_TOKEN", "xapp-1"), ("SLACK_APP_TOKEN", "xapp-1")])).unwrap_err();
        assert_eq!(wrong.key, "SLACK_BOT_TOKEN");
        let (slack, db) = slack_and_db_from_env(&env(&[
            ("SLACK_BOT_TOKEN", "xoxb-secret-value"),
            ("SLACK_APP_TOKEN", "xapp-secret-value"),
            ("SLACK_API_URL", "http://127.0.0.1:1/api/"),
        ]))
        .unwrap();
        assert_eq!(slack.api_url, "http://127.0.0.1:1/api");
        assert_eq!(db, DEFAULT_DATABASE_URL);
        let shown = format!("{slack:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
        let bad_db = slack_and_db_from_env(&env(&[
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_APP_TOKEN", "xapp-1"),
            ("DATABASE_URL", "mysql://x"),
        ]))
        .unwrap_err();
        assert_eq!(bad_db.key, "DATABASE_URL");
    }
}
