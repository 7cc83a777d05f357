//! `incident-bot` command line: serve (default) · demo · check-config · migrate.

use clap::{Parser, Subcommand};
use incident_bot::app::{Bot, BotOptions};
use incident_bot::config::{self, ProcessEnv};
use incident_bot::db::Db;
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

/// Exit code 2: the settings are wrong (one line says which and how to fix it).
fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
                    println!(
                        "  {}: update every {:?}, escalate after {:?}",
                        p.severity, p.update_every, p.escalate_after
                    );
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
