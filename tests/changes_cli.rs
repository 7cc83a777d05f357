//! `incident-bot changes` (export in four formats, CSV import all-or-nothing) and the change
//! calendar's settings (issue 12). On SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.

mod common;

use common::{run_cli, stack_with};
use incident_bot::calendar::ChangeNumber;
use incident_bot::demo::{demo_policy, fast_options};
use std::collections::BTreeMap;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("incident-bot-{}-{name}", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    path
}

// Multi-threaded: `run_cli` blocks the test's thread while the CLI waits for SQLite's write
// lock, which a bot loop may hold for a moment; on a current-thread runtime that loop could not
// run meanwhile to release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_is_all_or_nothing_and_export_prints_every_format() {
    let stack = stack_with(demo_policy(), fast_options()).await;
    let url = stack.settings.database_url.clone();
    let day = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    // A bad date on line 3: nothing is imported, the line is named.
    let bad = write(
        "bad.csv",
        &format!(
            "kind,title,services,start,end,owner,risk\n\
             deployment,payments-api v42,payments,{day}T09:00,{day}T10:00,U0CAROL,low\n\
             migration,ledger,settlement,{day}T25:00,{day}T26:00,U0CAROL,high\n"
        ),
    );
    let (code, _, err) = run_cli(&url, &[], &["changes", "import", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 3: start:") && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(stack.db.change_by_number(ChangeNumber(1)).await.unwrap().is_none());
    let good = write(
        "good.csv",
        &format!(
            "kind,title,services,start,end,owner,risk,link\n\
             deployment,\"payments-api v42, canary\",payments,{day}T09:00,{day}T10:00,U0CAROL,low,https://tickets.example/CHG-1\n\
             migration,ledger,settlement;payments,{day}T11:00,{day}T12:00,U0BOB,high,\n"
        ),
    );
    let (code, out, err) = run_cli(&url, &[], &["changes", "import", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 2 changes (CHG-1 … CHG-2)"), "{out}");
    // The same file again stores nothing new.
    let (code, _, err) = run_cli(&url, &[], &["changes", "import", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stack.db.change_by_number(ChangeNumber(3)).await.unwrap().is_none());
    let c = stack.db.change_by_number(ChangeNumber(1)).await.unwrap().unwrap();
    assert_eq!(c.title, "payments-api v42, canary");
    assert_eq!(stack.db.change_timeline(c.id).await.unwrap()[0].kind, "planned");

    let (code, md, err) = run_cli(&url, &[], &["changes", "--format", "markdown"]);
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("| CHG-1 | deployment | payments-api v42, canary |"), "{md}");
    let (_, csv, _) = run_cli(&url, &[], &["changes", "--format", "csv"]);
    assert!(csv.starts_with("number,kind,title"), "{csv}");
    assert!(csv.contains("CHG-2,migration,ledger,settlement;payments"), "{csv}");
    let (_, json, _) = run_cli(&url, &[], &["changes", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 2);
    let (_, ics, _) = run_cli(
        &url,
        &[],
        &[
            "changes",
            "--format",
            "ics",
            "--from",
            &day.to_string(),
            "--to",
            &day.to_string(),
        ],
    );
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(ics.as_bytes()));
    assert_eq!(parser.next().unwrap().unwrap().events.len(), 2);
    // A window with nothing in it, and bad arguments.
    let (code, md, _) = run_cli(&url, &[], &["changes", "--from", "2020-01-01", "--to", "2020-01-02"]);
    assert_eq!(code, 0);
    assert!(md.contains("No changes in this window"), "{md}");
    let (code, _, err) = run_cli(&url, &[], &["changes", "--format", "pdf"]);
    assert_eq!(code, 2);
    assert!(err.contains("pdf"), "{err}");
    let (code, _, err) = run_cli(&url, &[], &["changes", "--from", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("yesterday"), "{err}");
}

#[test]
fn change_settings_are_checked_naming_the_key() {
    let env = BTreeMap::new();
    let read = |toml: &str| incident_bot::config::policy_from_toml(toml, &env).map(|(p, _)| p);
    let ok = read(
        "changes_channel = \"C0CHANGES\"\nchange_lookback = \"12h\"\ncalendar_token = \"0123456789abcdef\"\n\
         [[freezes]]\nname = \"peak\"\nstart = \"2026-12-24\"\nend = \"2026-12-26\"\nservices = [\"payments\"]\n\
         [[freezes]]\nname = \"year end\"\nstart = \"2026-12-31T18:00\"\nend = \"2027-01-01T06:00\"\n",
    )
    .unwrap();
    assert_eq!(ok.changes.channel.as_deref(), Some("C0CHANGES"));
    assert_eq!(ok.changes.lookback, chrono::Duration::hours(12));
    assert_eq!(ok.changes.freezes.len(), 2);
    assert_eq!(
        ok.changes.freezes[0].ends_at - ok.changes.freezes[0].starts_at,
        chrono::Duration::days(3),
        "an end day is included"
    );
    let key = |toml: &str| read(toml).unwrap_err().to_string();
    let e = key(
        "[[freezes]]\nname = \"a\"\nstart = \"2026-12-24\"\nend = \"2026-12-26\"\n\
         [[freezes]]\nname = \"b\"\nstart = \"2026-12-25\"\nend = \"2026-12-27\"\nservices = [\"payments\"]\n",
    );
    assert!(e.contains("freezes[1]") && e.contains("overlaps freezes[0]"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(key("[[freezes]]\nname = \"a\"\nstart = \"soon\"\nend = \"2026-12-26\"\n").contains("freezes[0].start"));
    assert!(key(
        "[[freezes]]\nname = \"a\"\nstart = \"2026-12-24\"\nend = \"2026-12-26\"\nservices = [\"mainframe\"]\n"
    )
    .contains("freezes[0].services"));
    assert!(
        key("[[freezes]]\nname = \"a\"\nstart = \"2026-12-24\"\nend = \"2026-12-26\"\ncolour = \"red\"\n")
            .contains("colour")
    );
    assert!(key("change_digest_cron = \"daily\"\n").contains("change_digest_cron"));
    assert!(key("change_lookback = \"a day\"\n").contains("change_lookback"));
    assert!(key("calendar_token = \"short\"\n").contains("calendar_token"));
    assert!(key("changes_channel = \"#changes\"\n").contains("changes_channel"));
    // The token may come from the environment.
    let env = BTreeMap::from([(
        "INCIDENT_BOT_CALENDAR_TOKEN".to_string(),
        "from-the-environment".to_string(),
    )]);
    let p = incident_bot::config::policy_from_toml("", &env).unwrap().0;
    assert_eq!(p.changes.calendar_token.unwrap().expose(), "from-the-environment");
}
