//! The binary's configuration errors: one line naming the setting, exit code 2, no token.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_incident-bot"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_tokens_stop_with_exit_code_2_and_one_line() {
    let (code, _, err) = run(&["check-config"], &[]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("SLACK_BOT_TOKEN"), "{err}");
    let (code, _, err) = run(&["serve"], &[("SLACK_BOT_TOKEN", "xoxb-1-secret")]);
    assert_eq!(code, 2);
    assert!(err.contains("SLACK_APP_TOKEN") && !err.contains("secret"), "{err}");
}

#[test]
fn a_bad_config_file_names_the_key() {
    let dir = std::env::temp_dir().join(format!("incident-bot-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[severities.SEV1]\nupdate_every = \"soon\"\n").unwrap();
    let tokens = [
        ("SLACK_BOT_TOKEN", "xoxb-1-secret"),
        ("SLACK_APP_TOKEN", "xapp-1-secret"),
    ];
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()], &tokens);
    assert_eq!(code, 2);
    assert!(
        err.contains("severities.SEV1.update_every") && err.contains("soon"),
        "{err}"
    );
    let (code, out, err) = run(
        &[
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"),
        ],
        &tokens,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("config OK") && !out.contains("secret") && !err.contains("secret"),
        "{out}{err}"
    );
    assert!(
        out.contains(
            "post-incident reviews for SEV1, SEV2: first reminder 2 working days after resolving, \
             then every 1 working day; closing waits for the review"
        ),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
