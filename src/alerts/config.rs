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

/// What `check-config` prints about detection (tokens never shown).
pub fn describe(alerts: &super::AlertsConfig) -> Vec<String> {
    if alerts.sources.is_empty() {
        return vec!["alert intake: off (no [[alert_sources]])".into()];
    }
    let mut out = vec![format!(
        "alert intake: POST /alerts/<kind> on http_listen; triage channel {}",
        alerts
            .channel
            .as_deref()
            .unwrap_or("(none: alerts are stored and counted, not posted)")
    )];
    for s in &alerts.sources {
        out.push(format!(
            "  source {} ({}): bearer token set; default service {}",
            s.name,
            s.kind.as_str(),
            s.service.as_deref().unwrap_or("(none)")
        ));
    }
    for (i, r) in alerts.rules.iter().enumerate() {
        out.push(format!(
            "  rule {i}: {}",
            if r.declare {
                "declares an incident"
            } else {
                "posts only"
            }
        ));
    }
    out
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

#[cfg(test)]
mod tests {
    use crate::config::{policy_from_toml, Env};
    use crate::incident::model::Severity;
    use std::collections::BTreeMap;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const FILE: &str = r#"
alerts_channel = "C0ALERTS"

[[alert_sources]]
name = "prometheus"
kind = "alertmanager"
token_env = "PROM_TOKEN"
service = "payments"
severity_map = { Critical = "SEV1", warning = "SEV4" }
service_map = { "payments-api" = "payments" }

[[alert_sources]]
name = "hooks"
kind = "generic"
token = "generic-token-0123456789"

[[alert_rules]]
source = "prometheus"
severity = "SEV1"
service = "payments"
labels = { team = "pay" }
action = "declare"
declare_severity = "SEV2"
oncall_group = "S0ONCALL"
"#;

    #[test]
    fn sources_and_rules_are_read_and_checked() {
        let e = env(&[("PROM_TOKEN", "prom-token-0123456789abc")]);
        let (p, _) = policy_from_toml(FILE, &e).unwrap();
        let a = &p.alerts;
        assert_eq!(a.channel.as_deref(), Some("C0ALERTS"));
        assert_eq!(a.sources.len(), 2);
        assert_eq!(a.sources[0].token.expose(), "prom-token-0123456789abc");
        assert_eq!(
            a.sources[0].severity_map.get("critical"),
            Some(&Severity::Sev1),
            "keys lowercase"
        );
        assert_eq!(a.sources[0].severity_label, "severity");
        assert!(a.rules[0].declare);
        assert_eq!(a.rules[0].declare_severity, Some(Severity::Sev2));
        // Tokens never print.
        let shown = format!("{:?} {}", p.alerts, super::describe(&p.alerts).join("\n"));
        assert!(
            !shown.contains("prom-token") && !shown.contains("generic-token"),
            "{shown}"
        );
        let _ = e.names();
    }

    #[test]
    fn mistakes_name_the_entry_and_key() {
        let e = env(&[("PROM_TOKEN", "prom-token-0123456789abc")]);
        let cases = [
            (
                FILE.replace("kind = \"alertmanager\"", "kind = \"zabbix\""),
                "alert_sources[0].kind",
            ),
            (
                FILE.replace("token_env = \"PROM_TOKEN\"", "token_env = \"NOPE\""),
                "alert_sources[0].token_env",
            ),
            (
                FILE.replace("generic-token-0123456789", "short"),
                "alert_sources[1].token",
            ),
            (
                FILE.replace(
                    "service = \"payments\"\nseverity_map",
                    "service = \"billing\"\nseverity_map",
                ),
                "alert_sources[0].service",
            ),
            (
                FILE.replace("warning = \"SEV4\"", "warning = \"SEV9\""),
                "alert_sources[0].severity_map.warning",
            ),
            (
                FILE.replace("action = \"declare\"", "action = \"page\""),
                "alert_rules[0].action",
            ),
            (FILE.replace("oncall_group = \"S0ONCALL\"", ""), "alert_rules[0].spoc"),
            (
                FILE.replace("name = \"hooks\"", "name = \"prometheus\""),
                "alert_sources[1].name",
            ),
            (
                FILE.replace("alerts_channel = \"C0ALERTS\"", "alerts_channel = \"alerts\""),
                "alerts_channel",
            ),
        ];
        for (text, key) in cases {
            let err = policy_from_toml(&text, &e).unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(
                !err.to_string().contains("0123456789"),
                "a token never shows in an error: {err}"
            );
        }
        let err = policy_from_toml(&FILE.replace("token_env", "tokn_env"), &e).unwrap_err();
        assert!(err.to_string().contains("tokn_env"), "{err}");
    }
}
