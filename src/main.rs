//! `incident-bot` command line: serve (default) · demo · check-config · migrate · report · export ·
//! changes.

use clap::{Parser, Subcommand};
use incident_bot::app::{Bot, BotOptions};
use incident_bot::config::{self, ProcessEnv};
use incident_bot::db::Db;
use incident_bot::service::ReviewRecord;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "incident-bot", version, about = "Slack-native incident management bot")]
struct Cli {
    /// TOML settings file (also INCIDENT_BOT_CONFIG); see config.example.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connect to Slack over Socket Mode and run (the default).
    Serve,
    /// Play the whole flow against a local Slack sandbox and print a transcript. Needs nothing.
    Demo,
    /// Validate settings and token shapes without connecting, then exit.
    CheckConfig,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print a report from the configured database (DATABASE_URL); needs no Slack tokens.
    Report(ReportArgs),
    /// Print an incident's post-incident review draft (DATABASE_URL); needs no Slack tokens.
    Export(ExportArgs),
    /// Print the change calendar (DATABASE_URL), or `changes import FILE.csv` to load changes.
    Changes(ChangesArgs),
}

#[derive(clap::Args)]
struct ChangesArgs {
    #[command(subcommand)]
    action: Option<ChangesAction>,
    /// First day, YYYY-MM-DD (local); default 30 days ago.
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD, included; default 180 days ahead.
    #[arg(long)]
    to: Option<String>,
    /// markdown, csv, json or ics.
    #[arg(long, default_value = "markdown")]
    format: String,
}

#[derive(Subcommand)]
enum ChangesAction {
    /// Load changes from a CSV file (header row, one change a line): all rows or none.
    Import {
        file: PathBuf,
        /// Who the changes are recorded as planned by (a Slack user id, or a name).
        #[arg(long, default_value = "import")]
        actor: String,
    },
}

#[derive(clap::Args)]
struct ExportArgs {
    /// The incident, like INC-42 (or 42).
    incident: String,
    /// markdown or json.
    #[arg(long, default_value = "markdown")]
    format: String,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// First day, YYYY-MM-DD, in the configured time zone.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Last day, YYYY-MM-DD, included.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// `weekly` (previous ISO week) or `monthly` (previous month) instead of --from/--to;
    /// with neither, the last 7 days.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    period: Option<String>,
    /// Only incidents on this service line.
    #[arg(long)]
    service: Option<String>,
    /// markdown, csv or json.
    #[arg(long, default_value = "markdown")]
    format: String,
    /// Also write the chart (incidents per day, time to mitigate) to this PNG file.
    #[arg(long)]
    chart: Option<PathBuf>,
}

fn init_logs(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A structural mistake on the command line (unknown flag, `--from` without `--to`): one line
/// naming the problem, then clap's usage line; exit 2. `--help` and `--version` print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let text = e.render().to_string();
    // clap's first paragraph names the problem (its lines joined); the rest is tips and usage.
    let problem = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let problem = problem.strip_prefix("error: ").unwrap_or(&problem);
    eprintln!("incident-bot: {problem} (see --help)");
    if let Some(usage) = text.lines().find(|l| l.starts_with("Usage:")) {
        eprintln!("{usage}");
    }
    ExitCode::from(2)
}

/// Exit code 2: the settings are wrong (one line says which and how to fix it).
fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core), each with
/// pages of its own that stay resident. The bot's threads (tokio workers, one per SQLite
/// connection) allocate little and rarely at the same time, so two arenas serve them with less
/// idle memory. Set before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let command = cli.command.unwrap_or(Cmd::Serve);
    match command {
        Cmd::Demo => {
            init_logs(cli.json_logs, "warn");
            match incident_bot::demo::run(&mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::CheckConfig => match config::load(cli.config.as_deref(), &ProcessEnv) {
            Ok(s) => {
                println!("config OK");
                println!("  Slack API: {}", s.slack.api_url);
                println!(
                    "  database: {}",
                    if s.database_url.starts_with("sqlite:") {
                        "SQLite"
                    } else {
                        "PostgreSQL"
                    }
                );
                println!(
                    "  announce channel: {}",
                    s.policy.announce_channel.as_deref().unwrap_or("(none)")
                );
                println!("  services: {}", s.policy.services.join(", "));
                println!("  roles: spoc, {}", s.policy.roles.join(", "));
                for p in &s.policy.severities {
                    println!("  {}: {}", p.severity, p.describe());
                }
                if s.policy.follow_up_remind_every.is_zero() {
                    println!("  overdue follow-ups: owners are not reminded");
                } else {
                    println!(
                        "  overdue follow-ups: owner reminded every {}",
                        incident_bot::slack::blocks::humanize(s.policy.follow_up_remind_every)
                    );
                }
                for v in &s.policy.vendors.vendors {
                    println!("  vendor {}", v.describe());
                }
                if let Some(page) = &s.policy.status_page {
                    println!("  status page {}", page.describe());
                }
                let pir = &s.policy.pir;
                println!(
                    "  post-incident reviews for {}: first reminder {} after resolving, then every {}; {}",
                    pir.severities.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    pir.first_after,
                    pir.repeat_every,
                    if pir.required_to_close {
                        "closing waits for the review"
                    } else {
                        "closing does not wait"
                    }
                );
                for line in incident_bot::alerts::config::describe(&s.policy.alerts) {
                    println!("  {line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Cmd::Migrate => {
            init_logs(cli.json_logs, "info");
            let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| config::DEFAULT_DATABASE_URL.into());
            match Db::connect(&url).await {
                Ok(_) => {
                    println!("database is up to date");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Report(args) => {
            init_logs(cli.json_logs, "warn");
            report(cli.config, args).await
        }
        Cmd::Export(args) => {
            init_logs(cli.json_logs, "warn");
            export(cli.config, args).await
        }
        Cmd::Changes(args) => {
            init_logs(cli.json_logs, "warn");
            changes(cli.config, args).await
        }
        Cmd::Serve => {
            let settings = match config::load(cli.config.as_deref(), &ProcessEnv) {
                Ok(s) => s,
                Err(e) => return config_error(e),
            };
            init_logs(cli.json_logs, "info,slack_morphism=warn");
            match serve(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{}", incident_bot::slack::redact(&format!("{e:#}")));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The settings file's policy, for the commands that need no Slack (report, export).
fn file_policy(config_file: Option<PathBuf>) -> Result<config::Policy, config::ConfigError> {
    let file = config_file.or_else(|| std::env::var_os("INCIDENT_BOT_CONFIG").map(PathBuf::from));
    config::load_policy(file.as_deref(), &ProcessEnv).map(|(policy, _)| policy)
}

/// `incident-bot export INC-42`: bad arguments exit 2, database errors 1.
async fn export(config_file: Option<PathBuf>, args: ExportArgs) -> ExitCode {
    use incident_bot::incident::model::IncidentNumber;
    let policy = match file_policy(config_file) {
        Ok(policy) => policy,
        Err(e) => return config_error(e),
    };
    let number: IncidentNumber = match args.incident.parse() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("export: {e}");
            return ExitCode::from(2);
        }
    };
    let json = match args.format.as_str() {
        "markdown" | "md" => false,
        "json" => true,
        other => {
            eprintln!("export: --format \"{other}\" is not markdown or json");
            return ExitCode::from(2);
        }
    };
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| config::DEFAULT_DATABASE_URL.into());
    let run = async {
        let db = Db::connect_existing(&url).await?;
        let Some(incident) = db.incident_by_number(number).await? else {
            db.close().await;
            return anyhow::Ok(false);
        };
        let record = ReviewRecord::load(&db, incident.id).await?;
        let names = Default::default();
        let input = record.input(&policy, &names, chrono::Utc::now());
        if json {
            println!("{}", serde_json::to_string_pretty(&record.json(&input))?);
        } else {
            print!("{}", record.markdown(&input));
        }
        db.close().await;
        anyhow::Ok(true)
    };
    match run.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("export: there is no {number} in this database");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("export failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `incident-bot report`: settings errors exit 2 (like check-config), database errors 1.
async fn report(config_file: Option<PathBuf>, args: ReportArgs) -> ExitCode {
    use incident_bot::report::{chart, render, PeriodSpec, Report};
    let policy = match file_policy(config_file) {
        Ok(policy) => policy,
        Err(e) => return config_error(e),
    };
    let usage = |problem: String| {
        eprintln!("report: {problem}");
        ExitCode::from(2)
    };
    let spec = match (&args.from, &args.to, &args.period) {
        (Some(from), Some(to), _) => PeriodSpec::parse(&format!("{from}..{to}")),
        (_, _, Some(word)) if ["weekly", "monthly"].contains(&word.as_str()) => PeriodSpec::parse(word),
        (_, _, Some(word)) => Err(format!("--period \"{word}\" is not weekly or monthly")),
        _ => Ok(PeriodSpec::Last7Days),
    };
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => return usage(e),
    };
    let format: render::Format = match args.format.parse() {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    if let Some(service) = &args.service {
        if !policy.services.contains(service) {
            return usage(format!(
                "\"{service}\" is not a service line (configured: {})",
                policy.services.join(", ")
            ));
        }
    }
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| config::DEFAULT_DATABASE_URL.into());
    let run = async {
        let db = Db::connect_existing(&url).await?;
        let report = Report::build(&db, &policy, spec, args.service.as_deref(), chrono::Utc::now()).await?;
        print!("{}", render::render(&report, format));
        if let Some(path) = &args.chart {
            let png = chart::render(&render::title(&report), &report.daily(&db).await?)?;
            std::fs::write(path, png).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("chart written to {}", path.display());
        }
        db.close().await;
        anyhow::Ok(())
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `incident-bot changes [--from --to] [--format]` and `changes import FILE.csv`: bad
/// arguments and bad rows exit 2 (each bad row said by line number, nothing stored), database
/// errors 1.
async fn changes(config_file: Option<PathBuf>, args: ChangesArgs) -> ExitCode {
    use incident_bot::service::calendar::{export_changes, import_changes, ExportFormat};
    let policy = match file_policy(config_file) {
        Ok(policy) => policy,
        Err(e) => return config_error(e),
    };
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| config::DEFAULT_DATABASE_URL.into());
    if let Some(ChangesAction::Import { file, actor }) = args.action {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("changes import: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let db = match Db::connect_existing(&url).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("changes import failed: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let result = import_changes(&db, &policy, &text, &actor).await;
        db.close().await;
        return match result {
            Ok(stored) => {
                let first = stored.first().map(|c| c.number.to_string()).unwrap_or_default();
                let last = stored.last().map(|c| c.number.to_string()).unwrap_or_default();
                println!("imported {} changes ({first} … {last})", stored.len());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", file.display());
                }
                eprintln!("changes import: nothing was imported");
                ExitCode::from(2)
            }
        };
    }
    let format: ExportFormat = match args.format.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("changes: {e}");
            return ExitCode::from(2);
        }
    };
    let now = chrono::Utc::now();
    let (default_from, default_to) = incident_bot::calendar::ics::feed_window(now);
    let tz = policy.timezone;
    let day = |raw: &Option<String>, end: bool, default: chrono::DateTime<chrono::Utc>| match raw {
        None => Ok(default),
        Some(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() => {
            incident_bot::calendar::parse_local(d, tz, end)
        }
        Some(d) => Err(format!("\"{d}\" is not a day (write it like 2026-12-01)")),
    };
    let window =
        day(&args.from, false, default_from).and_then(|from| day(&args.to, true, default_to).map(|to| (from, to)));
    let (from, to) = match window {
        Ok((from, to)) if to > from => (from, to),
        Ok(_) => {
            eprintln!("changes: --to is before --from");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("changes: {e}");
            return ExitCode::from(2);
        }
    };
    let run = async {
        let db = Db::connect_existing(&url).await?;
        let out = export_changes(&db, &policy, from, to, format).await;
        db.close().await;
        out
    };
    match run.await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("changes failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database_url).await?;
    let bot = Bot::start(&settings, db, BotOptions::default()).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    let db = bot.db.clone();
    bot.stop().await;
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
