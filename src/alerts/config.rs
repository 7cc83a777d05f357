//! `[[alert_sources]]` and `[[alert_rules]]` as written in the TOML file, checked into
//! [`AlertSource`] / [`AlertRule`]. Errors name the entry and key (`alert_sources[1].kind`).
//!
//! ```toml
//! alerts_channel = "C0ALERTS"
//!
//! [[alert_sources]]
//! name = "prometheus"
//! kind = "alertmanager"            # alertmanager | grafana | generic
//! token_env = "ALERTS_PROMETHEUS_TOKEN"   # or token = "…" (the file is then a secret)
//! service = "payments"             # when the labels name no service line
//! severity_label = "severity"      # default
//! severity_map = { critical = "SEV1", warning = "SEV3" }
//! service_label = "service"        # default
//! service_map = { "payments-api" = "payments" }
//!
//! [[alert_rules]]
//! source = "prometheus"
//! severity = "SEV1"                # the alert's mapped severity
//! service = "payments"
//! labels = { team = "payments" }
//! action = "declare"               # declare | post
//! declare_severity = "SEV2"
//! oncall_group = "S0123ONCALL"     # its first member is SPOC
//! spoc = "U0123ABCD"               # when the group is empty or unset
//! ```

use super::{AlertRule, AlertSource, SourceKind};
use crate::config::{ConfigError, Env, Policy, Secret};
use crate::incident::model::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAlertSource {
    name: Option<String>,
    kind: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    service: Option<String>,
    severity_label: Option<String>,
    #[serde(default)]
    severity_map: BTreeMap<String, String>,
    service_label: Option<String>,
    #[serde(default)]
    service_map: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAlertRule {
    source: Option<String>,
    severity: Option<String>,
    service: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    action: Option<String>,
    declare_severity: Option<String>,
    oncall_group: Option<String>,
    spoc: Option<String>,
}

fn err(key: String, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

fn service_line(key: String, policy: &Policy, s: &str) -> Result<String, ConfigError> {
    if policy.services.iter().any(|x| x == s) {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            format!(
                "\"{s}\" is not a configured service line (known: {})",
                policy.services.join(", ")
            ),
        ))
    }
}

fn severity(key: String, s: &str) -> Result<Severity, ConfigError> {
    s.parse::<Severity>().map_err(|e| err(key, e))
}

/// Checks the `[[alert_sources]]` entries.
pub fn sources(file: Vec<FileAlertSource>, policy: &Policy, env: &dyn Env) -> Result<Vec<AlertSource>, ConfigError> {
    let mut out: Vec<AlertSource> = Vec::new();
    for (i, f) in file.into_iter().enumerate() {
        let at = |k: &str| format!("alert_sources[{i}].{k}");
        let name = f
            .name
            .ok_or_else(|| err(at("name"), "missing; every source needs a unique name"))?;
        let name_ok = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(err(
                at("name"),
                format!("\"{name}\" must be 1–40 characters of a-z, 0-9, _ or -"),
            ));
        }
        if out.iter().any(|s| s.name == name) {
            return Err(err(at("name"), format!("\"{name}\" is used by another source")));
        }
        let kind = f
            .kind
            .ok_or_else(|| err(at("kind"), "missing; write alertmanager, grafana or generic"))?;
        let kind = SourceKind::parse(&kind).ok_or_else(|| {
            err(
                at("kind"),
                format!("\"{kind}\" is not a source kind (write alertmanager, grafana or generic)"),
            )
        })?;
        let token = match (f.token, f.token_env) {
            (Some(_), Some(_)) => return Err(err(at("token"), "set token or token_env, not both")),
            (Some(t), None) => t,
            (None, Some(var)) => env
                .get(&var)
                .ok_or_else(|| err(at("token_env"), format!("the environment variable {var} is not set")))?,
            (None, None) => {
                return Err(err(
                    at("token"),
                    "missing; set token_env (an environment variable holding the token) or token",
                ))
            }
        };
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // The token itself is never shown.
            return Err(err(at("token"), "must be at least 16 characters without spaces"));
        }
        if out.iter().any(|s| s.kind == kind && s.token.expose() == token) {
            return Err(err(
                at("token"),
                "the same token is used by another source of this kind",
            ));
        }
        let service = f.service.map(|s| service_line(at("service"), policy, &s)).transpose()?;
        let mut severity_map = BTreeMap::new();
        for (k, v) in f.severity_map {
            severity_map.insert(k.to_ascii_lowercase(), severity(at(&format!("severity_map.{k}")), &v)?);
        }
        let mut service_map = BTreeMap::new();
        for (k, v) in f.service_map {
            let line = service_line(at(&format!("service_map.{k}")), policy, &v)?;
            service_map.insert(k, line);
        }
        out.push(AlertSource {
            name,
            kind,
            token: Secret::new(token),
            service,
            severity_label: f.severity_label.unwrap_or_else(|| "severity".into()),
            severity_map,
            service_label: f.service_label.unwrap_or_else(|| "service".into()),
            service_map,
        });
    }
    Ok(out)
}

/// Checks the `[[alert_rules]]` entries.
pub fn rules(file: Vec<FileAlertRule>, policy: &Policy) -> Result<Vec<AlertRule>, ConfigError> {
    let mut out = Vec::new();
    for (i, f) in file.into_iter().enumerate() {
        let at = |k: &str| format!("alert_rules[{i}].{k}");
        let declare = match f.action.as_deref().unwrap_or("post") {
            "declare" => true,
            "post" => false,
            other => {
                return Err(err(
                    at("action"),
                    format!("\"{other}\" is not an action (write declare or post)"),
                ))
            }
        };
        let oncall_group = match f.oncall_group {
            Some(g) if g.starts_with('S') && g.len() > 1 && g.chars().all(|c| c.is_ascii_alphanumeric()) => Some(g),
            Some(g) => {
                return Err(err(
                    at("oncall_group"),
                    format!("\"{g}\" is not a user group id (it looks like S0123ABCD)"),
                ))
            }
            None => None,
        };
        let spoc = match f.spoc {
            Some(u) => Some(
                crate::incident::model::UserId::parse(&u)
                    .map_err(|e| err(at("spoc"), e))?
                    .to_string(),
            ),
            None => None,
        };
        if declare && oncall_group.is_none() && spoc.is_none() {
            return Err(err(
                at("spoc"),
                "a rule that declares needs a SPOC: set oncall_group, spoc, or both",
            ));
        }
        out.push(AlertRule {
            source: f.source,
            severity: f.severity.map(|s| severity(at("severity"), &s)).transpose()?,
            service: f.service.map(|s| service_line(at("service"), policy, &s)).transpose()?,
            labels: f.labels,
            declare,
            declare_severity: f
                .declare_severity
                .map(|s| severity(at("declare_severity"), &s))
                .transpose()?,
            oncall_group,
            spoc,
        });
    }
    Ok(out)
}
