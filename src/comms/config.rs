//! `[status_page]`, read from the TOML file with every problem naming its whole path.

use super::{Component, ComponentStatus, StatusPage};
use crate::incident::model::Severity;
use std::collections::BTreeMap;

const KEYS: [&str; 9] = [
    "title",
    "logo_url",
    "timezone",
    "components",
    "cadence",
    "comms_approval",
    "allow_self_approval",
    "channel",
    "templates",
];
const COMPONENT_KEYS: [&str; 3] = ["id", "name", "services"];

type Problem = (String, String);

fn problem<T>(path: impl Into<String>, what: impl Into<String>) -> Result<T, Problem> {
    Err((path.into(), what.into()))
}

fn text(table: &toml::Table, path: &str, key: &str) -> Result<Option<String>, Problem> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => problem(
            format!("{path}.{key}"),
            format!("expected a string, found {}", other.type_str()),
        ),
    }
}

fn flag(table: &toml::Table, path: &str, key: &str, default: bool) -> Result<bool, Problem> {
    match table.get(key) {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => problem(
            format!("{path}.{key}"),
            format!("expected true or false, found {}", other.type_str()),
        ),
    }
}

/// Reads `[status_page]`; `services` are the configured service lines, `timezone` the policy's
/// (the default display zone).
pub fn parse_status_page(
    value: &toml::Value,
    services: &[String],
    timezone: chrono_tz::Tz,
) -> Result<StatusPage, Problem> {
    let path = "status_page";
    let Some(table) = value.as_table() else {
        return problem(path, "expected a table: [status_page]");
    };
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            return problem(
                format!("{path}.{key}"),
                format!("unknown setting; known: {}", KEYS.join(", ")),
            );
        }
    }
    let Some(title) = text(table, path, "title")?.filter(|t| !t.is_empty()) else {
        return problem(
            format!("{path}.title"),
            "missing; the page needs a title (\"Acme status\")",
        );
    };
    let logo_url = text(table, path, "logo_url")?;
    if let Some(url) = &logo_url {
        if !url.starts_with("https://") || url.contains(['"', '<', '>', ' ']) {
            return problem(format!("{path}.logo_url"), "give an https:// address of an image");
        }
    }
    let timezone = match text(table, path, "timezone")? {
        Some(tz) => tz.parse().map_err(|_| {
            (
                format!("{path}.timezone"),
                format!("\"{tz}\" is not a time zone (like Europe/Amsterdam)"),
            )
        })?,
        None => timezone,
    };
    let mut components: Vec<Component> = Vec::new();
    let Some(list) = table.get("components").and_then(|v| v.as_array()) else {
        return problem(
            format!("{path}.components"),
            "missing; list the public components as [[status_page.components]] tables",
        );
    };
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{path}.components[{i}]");
        let Some(c) = entry.as_table() else {
            return problem(at, "expected a table");
        };
        for key in c.keys() {
            if !COMPONENT_KEYS.contains(&key.as_str()) {
                return problem(
                    format!("{at}.{key}"),
                    format!("unknown setting; known: {}", COMPONENT_KEYS.join(", ")),
                );
            }
        }
        let Some(name) = text(c, &at, "name")?.filter(|n| !n.is_empty() && n.chars().count() <= 60) else {
            return problem(format!("{at}.name"), "every component needs a name of 1–60 characters");
        };
        let id = text(c, &at, "id")?.unwrap_or_else(|| crate::incident::model::slugify(&name));
        let id_ok = !id.is_empty()
            && id.len() <= 40
            && id
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !id_ok {
            return problem(
                format!("{at}.id"),
                format!("\"{id}\" must be 1–40 lowercase letters, digits or -"),
            );
        }
        if components.iter().any(|known| known.id == id) {
            return problem(format!("{at}.id"), format!("\"{id}\" is used by another component"));
        }
        let mut lines = Vec::new();
        match c.get("services") {
            None => return problem(format!("{at}.services"), "missing; name the service lines behind it"),
            Some(v) => {
                let Some(items) = v.as_array() else {
                    return problem(format!("{at}.services"), "expected a list of service lines");
                };
                for s in items {
                    let Some(s) = s.as_str() else {
                        return problem(format!("{at}.services"), "expected a list of strings");
                    };
                    if !services.iter().any(|known| known == s) {
                        return problem(
                            format!("{at}.services"),
                            format!(
                                "\"{s}\" is not a configured service line; known: {}",
                                services.join(", ")
                            ),
                        );
                    }
                    lines.push(s.to_string());
                }
            }
        }
        components.push(Component {
            id,
            name,
            services: lines,
        });
    }
    if components.is_empty() {
        return problem(format!("{path}.components"), "list at least one public component");
    }
    let mut cadence = [None; 4];
    if let Some(v) = table.get("cadence") {
        let Some(t) = v.as_table() else {
            return problem(format!("{path}.cadence"), "expected a table like { SEV1 = \"30m\" }");
        };
        for (name, every) in t {
            let at = format!("{path}.cadence.{name}");
            let Ok(severity) = name.parse::<Severity>() else {
                return problem(at, "unknown severity; use SEV1, SEV2, SEV3 or SEV4");
            };
            let Some(raw) = every.as_str() else {
                return problem(at, "expected a duration like \"30m\"");
            };
            let d = crate::config::parse_duration(raw).map_err(|e| (at.clone(), e))?;
            if d < std::time::Duration::from_secs(60) && !d.is_zero() {
                return problem(at, "a customer cadence under a minute is not a cadence; use 1m or more");
            }
            let i = Severity::ALL.iter().position(|s| *s == severity).unwrap_or(0);
            cadence[i] = (!d.is_zero()).then(|| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        }
    }
    let channel = text(table, path, "channel")?
        .map(|c| crate::config::check_conversation_id(&format!("{path}.channel"), &c))
        .transpose()
        .map_err(|e| (e.key, e.problem))?;
    let mut templates = BTreeMap::new();
    if let Some(v) = table.get("templates") {
        let Some(t) = v.as_table() else {
            return problem(format!("{path}.templates"), "expected a table of component statuses");
        };
        for (status, text) in t {
            let at = format!("{path}.templates.{status}");
            let status = ComponentStatus::parse(status).map_err(|e| (at.clone(), e))?;
            let Some(text) = text.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
                return problem(at, "expected the message text");
            };
            templates.insert(status, text.to_string());
        }
    }
    Ok(StatusPage {
        title,
        logo_url,
        timezone,
        components,
        cadence,
        comms_approval: flag(table, path, "comms_approval", true)?,
        allow_self_approval: flag(table, path, "allow_self_approval", false)?,
        channel,
        templates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StatusPage, Problem> {
        let table: toml::Table = text.parse().unwrap();
        parse_status_page(
            &table["status_page"],
            &["payments".to_string(), "payouts".to_string()],
            chrono_tz::UTC,
        )
    }

    #[test]
    fn a_full_status_page_reads() {
        let page = parse(
            r#"
            [status_page]
            title = "Acme status"
            timezone = "Europe/Amsterdam"
            comms_approval = true
            channel = "C0CUSTOMERS"
            cadence = { SEV1 = "30m", SEV2 = "1h" }
            templates = { major_outage = "{components} are down." }
            [[status_page.components]]
            name = "Card payments"
            services = ["payments"]
            [[status_page.components]]
            id = "payouts"
            name = "Payouts & settlements"
            services = ["payouts"]
            "#,
        )
        .unwrap();
        assert_eq!(page.components[0].id, "card-payments");
        assert_eq!(page.cadence(Severity::Sev1), Some(chrono::Duration::minutes(30)));
        assert_eq!(page.cadence(Severity::Sev3), None);
        assert!(!page.allow_self_approval);
        assert_eq!(
            page.template(ComponentStatus::MajorOutage, &[&page.components[1]]),
            "Payouts & settlements are down."
        );
    }

    #[test]
    fn every_problem_names_its_path() {
        let base =
            "[status_page]\ntitle = \"S\"\n[[status_page.components]]\nname = \"A\"\nservices = [\"payments\"]\n";
        let path = |extra: &str| parse(&format!("{base}{extra}")).unwrap_err().0;
        assert_eq!(
            parse("[status_page]\ntitle = \"S\"\n").unwrap_err().0,
            "status_page.components"
        );
        assert_eq!(
            path("[status_page.cadence]\nSEV9 = \"1h\"\n"),
            "status_page.cadence.SEV9"
        );
        assert_eq!(
            path("[status_page.cadence]\nSEV1 = \"soon\"\n"),
            "status_page.cadence.SEV1"
        );
        assert_eq!(
            path("[status_page.templates]\non_fire = \"x\"\n"),
            "status_page.templates.on_fire"
        );
        assert_eq!(
            path("[[status_page.components]]\nname = \"B\"\nservices = [\"crypto\"]\n"),
            "status_page.components[1].services"
        );
        assert_eq!(
            path("[[status_page.components]]\nname = \"a\"\nservices = [\"payouts\"]\n"),
            "status_page.components[1].id"
        );
        let e = parse(&base.replace("title = \"S\"", "title = \"S\"\ncolour = \"red\"")).unwrap_err();
        assert_eq!(e.0, "status_page.colour");
    }
}
