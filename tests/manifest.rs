//! manifest.yml is a valid Slack app manifest and declares what the bot relies on.

use serde_json::Value;

fn manifest() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.yml")).unwrap();
    serde_yaml::from_str(&text).expect("manifest.yml is YAML")
}

#[test]
fn manifest_validates_against_slacks_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/slack/app-manifest.schema.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e} (shared/ must sit beside the repo)")),
    )
    .unwrap();
    let validator = jsonschema::JSONSchema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .compile(&schema)
        .expect("the schema compiles");
    let m = manifest();
    let result = validator.validate(&m);
    if let Err(errors) = result {
        let errors: Vec<String> = errors.map(|e| format!("{} at {}", e, e.instance_path)).collect();
        panic!("manifest.yml is invalid: {errors:#?}");
    }
}

#[test]
fn manifest_enables_what_the_bot_needs() {
    let m = manifest();
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
    let cmd = &m["features"]["slash_commands"][0];
    assert_eq!(cmd["command"], "/incident");
    assert_eq!(cmd["should_escape"], true, "the parser expects escaped mentions");
    let scopes: Vec<&str> = m["oauth_config"]["scopes"]["bot"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needed in [
        "commands",
        "chat:write",
        "channels:manage",
        "groups:write",
        "pins:write",
    ] {
        assert!(scopes.contains(&needed), "missing scope {needed}");
    }
}
