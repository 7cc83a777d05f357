//! The three payload shapes an intake endpoint reads, into [`Alert`]s:
//!
//! - **Alertmanager** webhook, version 4: `{"version": "4", "status", "alerts": [{"status",
//!   "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}], "groupLabels",
//!   "commonLabels", "commonAnnotations", "externalURL", "groupKey", "truncatedAlerts", …}`.
//! - **Grafana** unified alerting webhook: the same envelope plus `orgId`, `title`, `state`,
//!   `message`, and per alert `silenceURL`, `dashboardURL`, `panelURL`, `values`/`valueString`.
//! - **Generic**: one object or a list of them: `source`, `fingerprint`, `status`
//!   (`firing`|`resolved`), `title` (required); `severity`, `service`, `labels` (string map),
//!   `links` (URLs, or `{"url", "title"}`), `starts_at` (RFC 3339), `description` (optional).
//!
//! Every refusal is one line naming the field, so the sender's log says what to fix.

use super::{map_service, map_severity, Alert, AlertSource, AlertStatus, Link, SourceKind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;

/// Reads `body` as `source`'s payload shape. `services`: the configured service lines.
pub fn parse(source: &AlertSource, body: &[u8], services: &[String]) -> Result<Vec<Alert>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let alerts = match source.kind {
        SourceKind::Alertmanager | SourceKind::Grafana => webhook(source, &value, services)?,
        SourceKind::Generic => match &value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| generic(source, item, services).map_err(|e| format!("alert [{i}]: {e}")))
                .collect::<Result<_, _>>()?,
            Value::Object(_) => vec![generic(source, &value, services)?],
            _ => return Err("body must be a JSON object (or a list of them)".into()),
        },
    };
    if alerts.is_empty() {
        return Err("no alerts in the body".into());
    }
    Ok(alerts)
}

/// An Alertmanager (v4) or Grafana webhook.
fn webhook(source: &AlertSource, v: &Value, services: &[String]) -> Result<Vec<Alert>, String> {
    if !v.is_object() {
        return Err("body must be a JSON object".into());
    }
    if source.kind == SourceKind::Alertmanager {
        match v.get("version") {
            Some(Value::String(s)) if s == "4" => {}
            Some(other) => {
                return Err(format!(
                    "unsupported Alertmanager webhook version {other} (this endpoint reads version \"4\")"
                ))
            }
            None => return Err("missing field `version` (Alertmanager sends \"4\")".into()),
        }
    }
    let list = v
        .get("alerts")
        .ok_or("missing field `alerts`")?
        .as_array()
        .ok_or("field `alerts` must be a list")?;
    let common_labels = string_map(v.get("commonLabels")).unwrap_or_default();
    let common_annotations = string_map(v.get("commonAnnotations")).unwrap_or_default();
    let external = v.get("externalURL").and_then(Value::as_str).unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let at = |field: &str| format!("alerts[{i}].{field}");
        let status = a
            .get("status")
            .ok_or_else(|| format!("missing field `{}`", at("status")))?
            .as_str()
            .and_then(AlertStatus::parse)
            .ok_or_else(|| format!("field `{}` must be \"firing\" or \"resolved\"", at("status")))?;
        let labels = match a.get("labels") {
            Some(l) => {
                string_map(Some(l)).ok_or_else(|| format!("field `{}` must be an object of strings", at("labels")))?
            }
            None => return Err(format!("missing field `{}`", at("labels"))),
        };
        let annotations = string_map(a.get("annotations")).unwrap_or_default();
        let pick = |key: &str| {
            annotations
                .get(key)
                .or_else(|| common_annotations.get(key))
                .filter(|s| !s.trim().is_empty())
                .cloned()
        };
        let fingerprint = match a.get("fingerprint").and_then(Value::as_str) {
            Some(f) if !f.trim().is_empty() => f.trim().to_string(),
            _ => super::fingerprint_of(&labels),
        };
        let title = pick("summary")
            .or_else(|| labels.get("alertname").cloned())
            .or_else(|| common_labels.get("alertname").cloned())
            .or_else(|| v.get("title").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| format!("alert {fingerprint}"));
        let starts_at = match a.get("startsAt") {
            Some(Value::String(s)) => time(s).map_err(|e| format!("field `{}`: {e}", at("startsAt")))?,
            _ => None,
        };
        let mut links = Vec::new();
        add_link(&mut links, pick("runbook_url").as_deref(), "Runbook");
        add_link(&mut links, a.get("dashboardURL").and_then(Value::as_str), "Dashboard");
        add_link(&mut links, a.get("panelURL").and_then(Value::as_str), "Panel");
        add_link(&mut links, a.get("generatorURL").and_then(Value::as_str), "Source");
        if links.is_empty() {
            add_link(&mut links, Some(external), "Alertmanager");
        }
        let raw_severity = labels.get(&source.severity_label).cloned();
        out.push(Alert {
            source: source.name.clone(),
            fingerprint,
            status,
            title: one_line(&title, 200),
            severity: raw_severity.as_deref().and_then(|r| map_severity(source, r)),
            raw_severity,
            service: map_service(source, &labels, services),
            description: pick("description").unwrap_or_default(),
            labels,
            links,
            starts_at,
        });
    }
    Ok(out)
}

/// Adds an http(s) link once.
fn add_link(links: &mut Vec<Link>, url: Option<&str>, title: &str) {
    if let Some(url) = url
        .map(str::trim)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    {
        if !links.iter().any(|l| l.url == url) {
            links.push(Link {
                url: url.to_string(),
                title: title.to_string(),
            });
        }
    }
}

/// One generic alert object.
fn generic(source: &AlertSource, v: &Value, services: &[String]) -> Result<Alert, String> {
    if !v.is_object() {
        return Err("each alert must be a JSON object".into());
    }
    let text = |field: &str| -> Result<String, String> {
        match v.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::String(_)) => Err(format!("field `{field}` is empty")),
            Some(_) => Err(format!("field `{field}` must be a string")),
            None => Err(format!("missing field `{field}`")),
        }
    };
    let optional = |field: &str| -> Result<Option<String>, String> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Some(_) => Err(format!("field `{field}` must be a string")),
        }
    };
    let origin = text("source")?;
    let fingerprint = text("fingerprint")?;
    let status = AlertStatus::parse(&text("status")?).ok_or("field `status` must be \"firing\" or \"resolved\"")?;
    let title = text("title")?;
    let labels = match v.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(l) => string_map(Some(l)).ok_or("field `labels` must be an object of strings")?,
    };
    let mut links = Vec::new();
    match v.get("links") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let (url, title) = match item {
                    Value::String(u) => (u.as_str(), "Link"),
                    Value::Object(o) => (
                        o.get("url").and_then(Value::as_str).unwrap_or_default(),
                        o.get("title").and_then(Value::as_str).unwrap_or("Link"),
                    ),
                    _ => ("", ""),
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err("field `links` must hold http(s) URLs or {\"url\", \"title\"} objects".into());
                }
                links.push(Link {
                    url: url.to_string(),
                    title: one_line(title, 75),
                });
            }
        }
        Some(_) => return Err("field `links` must be a list".into()),
    }
    let starts_at = match optional("starts_at")? {
        Some(s) => time(&s).map_err(|e| format!("field `starts_at`: {e}"))?,
        None => None,
    };
    let raw_severity = optional("severity")?.or_else(|| labels.get(&source.severity_label).cloned());
    let service = match optional("service")? {
        Some(s) => source
            .service_map
            .get(&s)
            .cloned()
            .or_else(|| services.contains(&s).then_some(s))
            .or_else(|| source.service.clone()),
        None => map_service(source, &labels, services),
    };
    Ok(Alert {
        source: format!("{}/{}", source.name, one_line(&origin, 60)),
        fingerprint: one_line(&fingerprint, 200),
        status,
        title: one_line(&title, 200),
        severity: raw_severity.as_deref().and_then(|r| map_severity(source, r)),
        raw_severity,
        service,
        labels,
        links,
        description: optional("description")?.unwrap_or_default(),
        starts_at,
    })
}

/// An object of strings (numbers and booleans are written as text); `None` if not an object.
fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let o = v?.as_object()?;
    let mut out = BTreeMap::new();
    for (k, v) in o {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return None,
        };
        out.insert(k.clone(), s);
    }
    Some(out)
}

/// RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`, "unset") reads as none.
fn time(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| format!("cannot read \"{}\" as an RFC 3339 time", one_line(s, 40)))
}

/// One line of at most `max` characters, without control characters.
fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn source(kind: SourceKind) -> AlertSource {
        AlertSource {
            name: "src".into(),
            kind,
            token: Secret::new("x"),
            service: None,
            severity_label: "severity".into(),
            severity_map: BTreeMap::new(),
            service_label: "service".into(),
            service_map: BTreeMap::new(),
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let am = source(SourceKind::Alertmanager);
        assert!(parse(&am, b"{", &[]).unwrap_err().starts_with("body is not valid JSON"));
        assert_eq!(
            parse(&am, br#"{"version":"4"}"#, &[]).unwrap_err(),
            "missing field `alerts`"
        );
        assert!(parse(&am, br#"{"version":"3","alerts":[]}"#, &[])
            .unwrap_err()
            .contains("version"));
        assert_eq!(
            parse(&am, br#"{"version":"4","alerts":[{"labels":{}}]}"#, &[]).unwrap_err(),
            "missing field `alerts[0].status`"
        );
        let g = source(SourceKind::Generic);
        assert_eq!(
            parse(&g, br#"{"source":"s","status":"firing","title":"t"}"#, &[]).unwrap_err(),
            "missing field `fingerprint`"
        );
        assert_eq!(
            parse(
                &g,
                br#"{"source":"s","fingerprint":"f","status":"on","title":"t"}"#,
                &[]
            )
            .unwrap_err(),
            "field `status` must be \"firing\" or \"resolved\""
        );
    }

    #[test]
    fn generic_reads_every_field() {
        let g = source(SourceKind::Generic);
        let body = br#"{"source":"pingdom","fingerprint":"chk-1","status":"firing","title":"Checkout down",
            "severity":"critical","service":"checkout","labels":{"region":"eu"},
            "links":["https://status.example/1",{"url":"https://runbook.example","title":"Runbook"}],
            "starts_at":"2026-12-03T07:00:00Z","description":"HTTP 503"}"#;
        let a = &parse(&g, body, &["checkout".to_string()]).unwrap()[0];
        assert_eq!(a.source, "src/pingdom");
        assert_eq!(a.severity, Some(crate::incident::model::Severity::Sev1));
        assert_eq!(a.service.as_deref(), Some("checkout"));
        assert_eq!(a.links.len(), 2);
        assert_eq!(a.starts_at.unwrap().to_rfc3339(), "2026-12-03T07:00:00+00:00");
    }
}
