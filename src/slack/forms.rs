//! Parses submitted modal state (`view.state.values`, Slack's JSON) into domain types, or into
//! per-field errors that Slack shows under each input (`response_action: errors`).

use crate::config::Policy;
use crate::incident::change::{Change, StakeholderUpdate, MAX_TEXT_CHARS};
use crate::incident::followup::{Field, NewFollowUp, MAX_FOLLOW_UPS_AT_ONCE};
use crate::incident::model::*;
use crate::slack::text::{self, Lines};
use serde_json::Value;
use std::collections::BTreeMap;

/// Field errors keyed by block id, as Slack expects them.
pub type FieldErrors = BTreeMap<String, String>;

/// Reads one input's value from `state.values[block][action]`.
fn input<'a>(values: &'a Value, block: &str) -> &'a Value {
    &values[block][block]
}

/// A plain-text input's value, decoded from Slack's entities and cleaned of control characters
/// (newlines and tabs kept; one-line fields read through [`line_of`]).
fn text_of(values: &Value, block: &str) -> String {
    text::input_value(input(values, block)["value"].as_str().unwrap_or_default(), Lines::Many)
}

/// A one-line input's value: as [`text_of`], line breaks and tabs turned into spaces.
fn line_of(values: &Value, block: &str) -> String {
    text::input_value(input(values, block)["value"].as_str().unwrap_or_default(), Lines::One)
}

/// The origin channel stored in the modal's `private_metadata`.
pub fn origin_of(private_metadata: &str) -> Option<String> {
    serde_json::from_str::<Value>(private_metadata)
        .ok()?
        .get("origin")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The incident a modal belongs to (its `private_metadata`).
pub fn incident_of(private_metadata: &str) -> Option<IncidentId> {
    serde_json::from_str::<Value>(private_metadata)
        .ok()?
        .get("incident")?
        .as_i64()
        .map(IncidentId)
}

fn selected(values: &Value, block: &str) -> Option<String> {
    input(values, block)["selected_option"]["value"]
        .as_str()
        .map(str::to_string)
}

fn date_time(values: &Value, block: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    input(values, block)["selected_date_time"]
        .as_i64()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
}

/// Parses the stakeholder update modal.
pub fn parse_update(values: &Value) -> Result<StakeholderUpdate, FieldErrors> {
    let mut errors = FieldErrors::new();
    let status = match selected(values, "status").map(|s| s.parse::<Status>()) {
        Some(Ok(s)) if s.is_open() || s == Status::Resolved => Some(s),
        _ => {
            errors.insert(
                "status".into(),
                "Pick investigating, identified, mitigated or resolved.".into(),
            );
            None
        }
    };
    let field = |block: &str, errors: &mut FieldErrors| {
        let text = text_of(values, block).trim().to_string();
        if text.chars().count() > MAX_TEXT_CHARS {
            errors.insert(block.into(), format!("Keep this to {MAX_TEXT_CHARS} characters."));
        }
        text
    };
    let known = field("known", &mut errors);
    if known.is_empty() {
        errors.insert(
            "known".into(),
            "Say what we know, even if it is \"still investigating\".".into(),
        );
    }
    let impact = field("impact", &mut errors);
    let next = field("next", &mut errors);
    match status {
        Some(status) if errors.is_empty() => Ok(StakeholderUpdate {
            status,
            known,
            impact,
            next,
        }),
        _ => Err(errors),
    }
}

/// Parses the footprint modal (rules on values are checked by the domain).
pub fn parse_impact(values: &Value, policy: &Policy) -> Result<(Vec<String>, Footprint), FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut services = Vec::new();
    for opt in input(values, "services")["selected_options"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let v = opt["value"].as_str().unwrap_or_default();
        if !policy.services.iter().any(|s| s == v) {
            errors.insert("services".into(), format!("`{v}` is not a configured service line."));
        } else if !services.iter().any(|s| s == v) {
            services.push(v.to_string());
        }
    }
    let regions: Vec<String> = line_of(values, "regions")
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if regions.len() > 50 || regions.iter().any(|r| r.chars().count() > 50) {
        errors.insert(
            "regions".into(),
            "List at most 50 regions of at most 50 characters each.".into(),
        );
    }
    let mut count = |block: &str| -> Option<i64> {
        let raw = line_of(values, block).replace([',', '_', ' '], "");
        if raw.is_empty() {
            return None;
        }
        match raw.parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            _ => {
                errors.insert(block.into(), "Enter a whole number, 0 or more (e.g. 1200).".into());
                None
            }
        }
    };
    let footprint = Footprint {
        customers: count("customers"),
        merchants: count("merchants"),
        transactions: count("transactions"),
        regions,
        impact_start: date_time(values, "impact_start"),
        impact_end: date_time(values, "impact_end"),
    };
    if errors.is_empty() {
        Ok((services, footprint))
    } else {
        Err(errors)
    }
}

fn date_of(values: &Value, block: &str) -> Result<Option<chrono::NaiveDate>, String> {
    match input(values, block)["selected_date"].as_str() {
        None | Some("") => Ok(None),
        Some(d) => crate::report::period::parse_date(d).map(Some),
    }
}

fn user_of(values: &Value, block: &str) -> Result<Option<UserId>, String> {
    input(values, block)["selected_user"]
        .as_str()
        .map(UserId::parse)
        .transpose()
}

/// Parses the follow-up modal. `today` is the local day in the configured time zone.
pub fn parse_follow_up(values: &Value, today: chrono::NaiveDate) -> Result<NewFollowUp, FieldErrors> {
    let mut errors = FieldErrors::new();
    let owner = user_of(values, "owner")
        .map_err(|e| errors.insert("owner".into(), e))
        .ok()
        .flatten();
    let due = date_of(values, "due")
        .map_err(|e| errors.insert("due".into(), e))
        .ok()
        .flatten();
    // url_text_input reports its value as `value`, like plain_text_input.
    let link = input(values, "link")["value"]
        .as_str()
        .map(|l| text::clean(l, Lines::One))
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string);
    if !errors.is_empty() {
        return Err(errors);
    }
    NewFollowUp::parse(&text_of(values, "text"), owner, due, link, today).map_err(|e| {
        let field = match e.field {
            Field::Text => "text",
            Field::Due => "due",
            Field::Link => "link",
        };
        FieldErrors::from([(field.to_string(), e.message)])
    })
}

/// The follow-ups typed in the resolve form: one per non-empty line, sharing owner and due day.
fn parse_resolve_follow_ups(values: &Value, today: chrono::NaiveDate) -> Result<Vec<NewFollowUp>, FieldErrors> {
    let owner =
        user_of(values, "follow_ups_owner").map_err(|e| FieldErrors::from([("follow_ups_owner".to_string(), e)]))?;
    let due = date_of(values, "follow_ups_due").map_err(|e| FieldErrors::from([("follow_ups_due".to_string(), e)]))?;
    let text = text_of(values, "follow_ups");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.len() > MAX_FOLLOW_UPS_AT_ONCE {
        return Err(FieldErrors::from([(
            "follow_ups".to_string(),
            format!("At most {MAX_FOLLOW_UPS_AT_ONCE} follow-ups here (there are {}); add more later with `/incident followup`.", lines.len()),
        )]));
    }
    let mut items = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match NewFollowUp::parse(line, owner.clone(), due, None, today) {
            Ok(item) => items.push(item),
            Err(e) if e.field == Field::Due => {
                return Err(FieldErrors::from([("follow_ups_due".to_string(), e.message)]))
            }
            Err(e) => {
                return Err(FieldErrors::from([(
                    "follow_ups".to_string(),
                    format!("Line {}: {e}", i + 1),
                )]))
            }
        }
    }
    Ok(items)
}

/// Parses the resolve modal into a [`Change::Resolve`].
pub fn parse_resolve(values: &Value, today: chrono::NaiveDate) -> Result<Change, FieldErrors> {
    let mut errors = FieldErrors::new();
    let summary = text_of(values, "summary").trim().to_string();
    if summary.is_empty() {
        errors.insert("summary".into(), "Say in a sentence what fixed it.".into());
    } else if summary.chars().count() > MAX_TEXT_CHARS {
        errors.insert("summary".into(), format!("Keep this to {MAX_TEXT_CHARS} characters."));
    }
    let root_cause = selected(values, "root_cause").unwrap_or_default();
    if !crate::slack::blocks::ROOT_CAUSES.contains(&root_cause.as_str()) {
        errors.insert(
            "root_cause".into(),
            "Pick a root cause category (\"unknown\" is fine for now).".into(),
        );
    }
    let follow_ups = match parse_resolve_follow_ups(values, today) {
        Ok(items) => items,
        Err(more) => {
            errors.extend(more);
            Vec::new()
        }
    };
    if errors.is_empty() {
        Ok(Change::Resolve {
            summary,
            root_cause,
            mitigated_at: date_time(values, "mitigated_at"),
            follow_ups,
        })
    } else {
        Err(errors)
    }
}

/// The resolve form's "which linked change caused it" (issue 12): only with the root cause
/// "change / deploy", as a field error otherwise.
pub fn parse_caused_by(values: &Value) -> Result<Option<crate::calendar::ChangeNumber>, FieldErrors> {
    let Some(picked) = selected(values, "caused_by").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let field = |m: &str| Err(FieldErrors::from([("caused_by".to_string(), m.to_string())]));
    if selected(values, "root_cause").as_deref() != Some("change / deploy") {
        return field("A change is the cause only with the root cause \"change / deploy\": pick that, or clear this.");
    }
    match crate::calendar::ChangeNumber::parse(&picked) {
        Ok(n) => Ok(Some(n)),
        Err(why) => field(&why),
    }
}

/// What Slack's datetimepicker can express: people pick a minute (it sends whole seconds).
pub const PICKER_PRECISION_SECS: i64 = 60;

/// Checks the resolve form's "Service restored at" (`mitigated_at`) against the incident, so a
/// problem shows under that field. Its default is the time the form opened, cut to whole seconds:
/// right after a declaration (stored to the millisecond) it can fall just before it. A time
/// before the impact started (or the declaration) by less than the picker's precision is
/// therefore taken as that instant; further before, or in the future, is a field error.
pub fn check_restored_at(
    change: Change,
    incident: &Incident,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Change, FieldErrors> {
    let Change::Resolve {
        summary,
        root_cause,
        mitigated_at: Some(restored),
        follow_ups,
    } = change
    else {
        return Ok(change);
    };
    let started = incident
        .footprint
        .impact_start
        .unwrap_or(incident.declared_at)
        .min(incident.declared_at);
    let field = |message: &str| Err(FieldErrors::from([("mitigated_at".to_string(), message.to_string())]));
    let restored = if restored > now {
        return field("The service cannot be restored in the future; pick the time it came back.");
    } else if restored >= started {
        restored
    } else if (started - restored).num_milliseconds() < PICKER_PRECISION_SECS * 1000 {
        started
    } else {
        return field("That is before the impact started; pick the time the service came back.");
    };
    Ok(Change::Resolve {
        summary,
        root_cause,
        mitigated_at: Some(restored),
        follow_ups,
    })
}

/// Parses the declare modal.
pub fn parse_declare(
    values: &Value,
    private_metadata: &str,
    declarer: &UserId,
    policy: &Policy,
) -> Result<NewIncident, FieldErrors> {
    let mut errors = FieldErrors::new();

    let title = Title::parse(&line_of(values, "title"))
        .map_err(|e| errors.insert("title".into(), e))
        .ok();

    let severity = match input(values, "severity")["selected_option"]["value"].as_str() {
        Some(v) => v
            .parse::<Severity>()
            .map_err(|e| errors.insert("severity".into(), e))
            .ok(),
        None => {
            errors.insert("severity".into(), "Pick a severity (SEV1 is the worst).".into());
            None
        }
    };

    let mut services = Vec::new();
    if let Some(selected) = input(values, "services")["selected_options"].as_array() {
        for opt in selected {
            let v = opt["value"].as_str().unwrap_or_default();
            if policy.services.iter().any(|s| s == v) {
                if !services.iter().any(|s| s == v) {
                    services.push(v.to_string());
                }
            } else {
                errors.insert(
                    "services".into(),
                    format!(
                        "`{v}` is not a configured service line (known: {}).",
                        policy.services.join(", ")
                    ),
                );
            }
        }
    }

    let description = text_of(values, "description").trim().to_string();
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        errors.insert(
            "description".into(),
            format!("Keep the description to {MAX_DESCRIPTION_CHARS} characters (it has {chars})."),
        );
    }

    let spoc = match input(values, "spoc")["selected_user"].as_str() {
        Some(u) => UserId::parse(u).map_err(|e| errors.insert("spoc".into(), e)).ok(),
        None => Some(declarer.clone()),
    };

    let is_private = input(values, "private")["selected_options"]
        .as_array()
        .is_some_and(|opts| opts.iter().any(|o| o["value"] == "private"));

    match (title, severity, spoc) {
        (Some(title), Some(severity), Some(spoc)) if errors.is_empty() => Ok(NewIncident {
            title,
            severity,
            services,
            description,
            spoc,
            declared_by: declarer.clone(),
            is_private,
            origin_channel: origin_of(private_metadata),
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(title: &str, severity: Option<&str>) -> Value {
        let mut v = json!({
            "title": { "title": { "type": "plain_text_input", "value": title } },
            "services": { "services": { "type": "multi_static_select", "selected_options": [
                { "text": { "type": "plain_text", "text": "payments" }, "value": "payments" } ] } },
            "description": { "description": { "type": "plain_text_input", "value": "  500s  " } },
            "spoc": { "spoc": { "type": "users_select", "selected_user": "U0BOB" } },
            "private": { "private": { "type": "checkboxes", "selected_options": [] } },
        });
        if let Some(s) = severity {
            v["severity"] = json!({ "severity": { "type": "static_select",
                "selected_option": { "text": { "type": "plain_text", "text": s }, "value": s } } });
        }
        v
    }

    fn alice() -> UserId {
        UserId::parse("U0ALICE").unwrap()
    }

    #[test]
    fn a_complete_form_parses() {
        let new = parse_declare(
            &values(" Payments down ", Some("SEV2")),
            r#"{"origin":"C0GENERAL"}"#,
            &alice(),
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(new.title.as_str(), "Payments down");
        assert_eq!(new.severity, Severity::Sev2);
        assert_eq!(new.services, vec!["payments"]);
        assert_eq!(new.description, "500s");
        assert_eq!(new.spoc.as_str(), "U0BOB");
        assert!(!new.is_private);
        assert_eq!(new.origin_channel.as_deref(), Some("C0GENERAL"));
    }

    #[test]
    fn each_bad_field_gets_its_own_error() {
        let errs = parse_declare(&values("   ", None), "", &alice(), &Policy::default()).unwrap_err();
        assert!(errs["title"].contains("title"));
        assert!(errs["severity"].contains("severity"));
        let long = "x".repeat(MAX_TITLE_CHARS + 5);
        let errs = parse_declare(&values(&long, Some("SEV1")), "", &alice(), &Policy::default()).unwrap_err();
        assert_eq!(errs.keys().collect::<Vec<_>>(), vec!["title"]);
        let mut v = values("ok", Some("SEV7"));
        v["services"]["services"]["selected_options"][0]["value"] = json!("mainframe");
        let errs = parse_declare(&v, "", &alice(), &Policy::default()).unwrap_err();
        assert!(errs["severity"].contains("SEV7"));
        assert!(errs["services"].contains("mainframe"));
    }

    #[test]
    fn private_checkbox_and_default_spoc() {
        let mut v = values("ok", Some("SEV3"));
        v["private"]["private"]["selected_options"] =
            json!([{ "text": { "type": "plain_text", "text": "p" }, "value": "private" }]);
        v["spoc"]["spoc"] = json!({ "type": "users_select" });
        let new = parse_declare(&v, "not json", &alice(), &Policy::default()).unwrap();
        assert!(new.is_private);
        assert_eq!(new.spoc, alice());
        assert_eq!(new.origin_channel, None);
    }

    #[test]
    fn garbage_state_never_panics() {
        for v in [
            json!(null),
            json!([]),
            json!({"title": 5}),
            json!({"title": {"title": {"value": 7}}}),
        ] {
            assert!(parse_declare(&v, "", &alice(), &Policy::default()).is_err());
        }
    }
}
