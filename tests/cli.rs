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
    // The status page (issue 14): a mistake names its whole path; a good one is described.
    let page = "[status_page]\ntitle = \"Acme status\"\ncadence = { SEV1 = \"30m\" }\n\
                [[status_page.components]]\nname = \"Card payments\"\nservices = [\"crypto\"]\n";
    std::fs::write(&file, page).unwrap();
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()], &tokens);
    assert_eq!(code, 2);
    assert!(
        err.contains("status_page.components[0].services") && err.contains("crypto"),
        "{err}"
    );
    std::fs::write(&file, page.replace("crypto", "payments")).unwrap();
    let (code, out, err) = run(&["check-config", "--config", file.to_str().unwrap()], &tokens);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("status page \"Acme status\": 1 component(s) (Card payments); customer updates SEV1 every 30m"),
        "{out}"
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

#[test]
fn structural_mistakes_lead_with_one_line_naming_the_problem() {
    for (args, names) in [
        (vec!["report", "--from", "2026-11-16"], "--to"),
        (vec!["report", "--bogus"], "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("incident-bot: ") && first.contains(names),
            "{args:?}: {err}"
        );
        assert!(
            err.trim().lines().count() <= 2,
            "{args:?}: the problem and the usage line: {err}"
        );
        assert!(out.is_empty(), "{out}");
    }
    let (code, out, _) = run(&["report", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--from"), "{out}");
}

#[test]
fn unknown_settings_name_the_whole_path_and_the_closest_key() {
    let tokens = [
        ("SLACK_BOT_TOKEN", "xoxb-1-secret"),
        ("SLACK_APP_TOKEN", "xapp-1-secret"),
    ];
    let typo = [tokens[0], tokens[1], ("INCIDENT_BOT_ANOUNCE_CHANNEL", "C0123ABCD")];
    let (code, _, err) = run(&["check-config"], &typo);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("INCIDENT_BOT_ANOUNCE_CHANNEL") && err.contains("INCIDENT_BOT_ANNOUNCE_CHANNEL"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[severities.SEV1]\nupdate_evry = \"30m\"\n").unwrap();
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()], &tokens);
    assert_eq!(code, 2);
    assert!(
        err.contains("`severities.SEV1.update_evry`") && err.contains("`severities.SEV1.update_every`"),
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
    assert!(out.contains("SEV1: update every 30m, escalate after 10m"), "{out}");
    assert!(out.contains("SEV4: update every 1d, no escalation"), "{out}");
    assert!(!out.contains("0ns") && !out.contains("0s,"), "{out}");
}

/// A database URL the binary can reach, not migrated: a fresh SQLite path, or a fresh
/// PostgreSQL schema (created empty) when `TEST_DATABASE_URL` is set.
async fn empty_database(dir: &std::path::Path) -> String {
    match std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            format!(
                "{url}{}options=-csearch_path%3D{schema}",
                if url.contains('?') { "&" } else { "?" }
            )
        }
        None => format!("sqlite://{}", dir.join("cli.db").display()),
    }
}

/// Runs the binary with `DATABASE_URL=url` and `RUST_LOG=info`.
fn run_at_info(url: &str, args: &[&str]) -> (i32, String, String) {
    run(args, &[("DATABASE_URL", url), ("RUST_LOG", "info")])
}

#[tokio::test]
async fn read_only_commands_never_migrate_and_print_only_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let url = empty_database(dir.path()).await;
    let not_migrated = "database not migrated; run `incident-bot migrate`";
    for args in [vec!["report"], vec!["export", "INC-1"]] {
        let (code, out, err) = run_at_info(&url, &args);
        assert_ne!(code, 0, "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(not_migrated), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
    }
    let (code, _, err) = run(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run_at_info(&url, &["report"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# Incident report"), "{out}");
    assert_eq!(err, "", "no notices or logs at RUST_LOG=info");
    let (code, _, err) = run_at_info(&url, &["export", "INC-1"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim(), "export: there is no INC-1 in this database");

    // A schema one migration behind this binary is refused the same way, and left as it is.
    let behind = "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    let count = "SELECT COUNT(*) FROM _sqlx_migrations";
    let applied: i64 = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(behind).execute(&pool).await.unwrap();
        pool.close().await;
        let (code, _, err) = run_at_info(&url, &["report"]);
        assert!(code != 0 && err.contains(not_migrated), "{err}");
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query_scalar(count).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(behind).execute(&pool).await.unwrap();
        let (code, _, err) = run_at_info(&url, &["report"]);
        assert!(code != 0 && err.contains(not_migrated), "{err}");
        sqlx::query_scalar(count).fetch_one(&pool).await.unwrap()
    };
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, embedded - 1, "the read-only command did not migrate");
}
