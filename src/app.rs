//! Wires the bot together: database, Slack Web API, outbox loop, Socket Mode transport.

use crate::background::Background;
use crate::config::Settings;
use crate::db::Db;
use crate::http::OpsServer;
use crate::outbox::{self, OutboxOptions};
use crate::reminder::{self, ReminderOptions};
use crate::service::Service;
use crate::slack::effects::SlackEffects;
use crate::slack::listener::{Handler, SocketMode, SocketOptions};
use crate::slack::web::{BotIdentity, SlackWeb};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often the background lane checkpoints SQLite's write-ahead log ([`Db::checkpoint_every`]).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Tuning knobs; tests and the demo shorten the timings.
#[derive(Debug, Clone, Default)]
pub struct BotOptions {
    pub outbox: OutboxOptions,
    pub socket: SocketOptions,
    pub reminders: ReminderOptions,
    /// Serves `/healthz`, `/readyz`, `/metrics` here when `Settings::http_listen` is unset
    /// (tests pass `127.0.0.1:0`).
    pub http_listen: Option<SocketAddr>,
    /// How long one Web API call may take before it counts as failed (default 10 s).
    pub web_timeout: Option<std::time::Duration>,
    /// Test-only fault: "die" right after a chosen Slack call, before storing its result
    /// (see [`crate::slack::web::CrashPoint`]); then [`Bot::kill`] and start again.
    pub crash_point: Option<Arc<crate::slack::web::CrashPoint>>,
    /// How long a scheduled report's slot is claimed before another replica may take it over
    /// (default 2 min; tests shorten it).
    pub report_lease: Option<std::time::Duration>,
    /// The triage channel's poster (issue 15): leases, pacing.
    pub alerts: crate::slack::alerts::PosterOptions,
    /// The change calendar's loop (issue 12).
    pub calendar: crate::slack::calendar::CalendarOptions,
}

/// A running bot.
pub struct Bot {
    pub identity: BotIdentity,
    pub db: Db,
    socket: SocketMode,
    /// The runtime the outbox, schedulers and pollers run on, and their pool (see
    /// [`crate::background`]); [`Bot::stop`] ends those tasks first, and dropping it stops
    /// whatever [`Bot::kill`] left behind.
    _background: Background,
    background_db: Db,
    stop_outbox: Arc<Notify>,
    outbox: JoinHandle<()>,
    stop_reminders: Arc<Notify>,
    reminders: JoinHandle<()>,
    stop_schedules: Arc<Notify>,
    schedules: JoinHandle<()>,
    stop_alerts: Arc<Notify>,
    alerts: JoinHandle<()>,
    stop_calendar: Arc<Notify>,
    calendar: JoinHandle<()>,
    http: Option<OpsServer>,
}

impl Bot {
    /// Checks the bot token (`auth.test`), starts the outbox (which re-drives work left
    /// pending by a previous run) and connects Socket Mode.
    pub async fn start(settings: &Settings, db: Db, opts: BotOptions) -> anyhow::Result<Bot> {
        let mut web = SlackWeb::new(&settings.slack)?;
        if let Some(timeout) = opts.web_timeout {
            web = web.with_timeout(timeout);
        }
        let web = web.with_crash_point(opts.crash_point.clone());
        let identity = web
            .auth_test()
            .await
            .context("Slack auth.test failed: check SLACK_BOT_TOKEN and SLACK_API_URL")?;
        tracing::info!(team = %identity.team, team_id = %identity.team_id, bot_user = %identity.user_id, "connected to Slack");

        // Envelope handlers and the HTTP endpoints run here, on `db`; everything no person
        // waits on runs on the background lane, on its own pool.
        let background = Background::start().context("cannot start the background runtime")?;
        let background_db = background.pool(&db).await?;
        // SQLite's log is copied into the database file here, not by whichever commit
        // crosses the threshold (ends when the pool closes, in [`Bot::stop`]).
        background.spawn({
            let db = background_db.clone();
            async move { db.checkpoint_every(CHECKPOINT_EVERY).await }
        });
        let wake_outbox = Arc::new(Notify::new());
        let stop_outbox = Arc::new(Notify::new());
        let effects = Arc::new(SlackEffects {
            db: background_db.clone(),
            web: web.clone(),
            policy: settings.policy.clone(),
            bot_user_id: identity.user_id.clone(),
        });
        let outbox = background.spawn(outbox::run(
            background_db.clone(),
            effects,
            wake_outbox.clone(),
            stop_outbox.clone(),
            opts.outbox,
        ));
        let wake_reminders = Arc::new(Notify::new());
        let stop_reminders = Arc::new(Notify::new());
        let reminders = background.spawn(reminder::run(
            background_db.clone(),
            settings.policy.rules(),
            wake_reminders.clone(),
            wake_outbox.clone(),
            stop_reminders.clone(),
            opts.reminders,
        ));
        let stop_schedules = Arc::new(Notify::new());
        let schedules = background.spawn(crate::slack::report::run_schedules(
            background_db.clone(),
            web.clone(),
            settings.policy.clone(),
            identity.user_id.clone(),
            opts.report_lease.unwrap_or(crate::slack::report::REPORT_LEASE),
            stop_schedules.clone(),
        ));
        let wake_calendar = Arc::new(Notify::new());
        let stop_calendar = Arc::new(Notify::new());
        let calendar = background.spawn(crate::slack::calendar::run(
            background_db.clone(),
            web.clone(),
            identity.user_id.clone(),
            settings.policy.clone(),
            wake_calendar.clone(),
            wake_outbox.clone(),
            stop_calendar.clone(),
            opts.calendar.clone(),
        ));
        let auth_failure = web.auth_failure();
        let wake_alerts = Arc::new(Notify::new());
        let stop_alerts = Arc::new(Notify::new());
        let service = Service::new(
            db.clone(),
            settings.policy.clone(),
            Arc::new(web.clone()),
            wake_outbox,
            wake_reminders,
        )
        .with_alert_wake(wake_alerts.clone())
        .with_change_wake(wake_calendar);
        // The triage poster runs only when alerts can come in (issue 15).
        let alerts = if settings.policy.alerts.sources.is_empty() {
            background.spawn(async {})
        } else {
            background.spawn(crate::slack::alerts::run_poster(
                service.on(background_db.clone()),
                web.clone(),
                identity.user_id.clone(),
                wake_alerts,
                stop_alerts.clone(),
                opts.alerts.clone(),
            ))
        };
        let intake = (!settings.policy.alerts.sources.is_empty()).then(|| Arc::new(service.clone()));
        let feed = Arc::new(service.clone());
        if settings.policy.changes.calendar_token.is_some() && settings.http_listen.or(opts.http_listen).is_some() {
            // The feed's first render reads and renders every change in its window (about a
            // tenth of a second for 10,000): done now, so no calendar client waits for it.
            let warm = Arc::new(feed.on(background_db.clone()));
            background.spawn(async move {
                if let Err(e) = warm.calendar_feed(chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "cannot render the calendar feed ahead; the first request will");
                }
            });
        }
        let handler = Arc::new(Handler {
            app_id: settings.slack.app_token.app_id().map(str::to_string),
            service,
            web,
            identity: identity.clone(),
        });
        let mut socket_opts = opts.socket.clone();
        if let Some(n) = settings.slack.socket_connections {
            socket_opts.connections = n;
        }
        let socket = SocketMode::start(handler, &settings.slack.app_token, &socket_opts).await?;
        let http = match settings.http_listen.or(opts.http_listen) {
            Some(addr) => {
                match OpsServer::start_with_services(
                    addr,
                    db.clone(),
                    socket.connected(),
                    auth_failure,
                    intake,
                    Some(feed),
                )
                .await
                {
                    Ok(server) => Some(server),
                    Err(e) => {
                        // Leave nothing running behind a failed start.
                        socket.shutdown().await;
                        stop_reminders.notify_one();
                        stop_schedules.notify_one();
                        stop_alerts.notify_one();
                        stop_calendar.notify_one();
                        stop_outbox.notify_one();
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(Bot {
            identity,
            db,
            socket,
            _background: background,
            background_db,
            stop_outbox,
            outbox,
            stop_reminders,
            reminders,
            stop_schedules,
            schedules,
            stop_alerts,
            alerts,
            stop_calendar,
            calendar,
            http,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(OpsServer::addr)
    }

    /// The Socket Mode liveness flag `/readyz` reads (cleared first thing in [`Bot::stop`]).
    pub fn socket_connected(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.socket.connected()
    }

    /// Test-only: stops the bot the way `kill -9` would, as far as the database and Slack can
    /// tell: the outbox, reminder and schedule tasks are dropped mid-flight (nothing more is
    /// stored, leases stay taken), then the connections close.
    pub async fn kill(self) {
        self.outbox.abort();
        self.reminders.abort();
        self.schedules.abort();
        self.alerts.abort();
        self.calendar.abort();
        let _ = self.outbox.await;
        self.socket.shutdown().await;
        if let Some(http) = self.http {
            http.stop().await;
        }
    }

    /// Stops taking envelopes, lets the outbox finish the jobs it holds, and returns.
    pub async fn stop(self) {
        self.socket.shutdown().await;
        self.stop_reminders.notify_one();
        if let Err(e) = self.reminders.await {
            tracing::error!(error = %e, "reminder task ended abnormally");
        }
        self.stop_schedules.notify_one();
        if let Err(e) = self.schedules.await {
            tracing::error!(error = %e, "report schedule task ended abnormally");
        }
        self.stop_alerts.notify_one();
        if let Err(e) = self.alerts.await {
            tracing::error!(error = %e, "alert poster task ended abnormally");
        }
        self.stop_calendar.notify_one();
        if let Err(e) = self.calendar.await {
            tracing::error!(error = %e, "change calendar task ended abnormally");
        }
        self.stop_outbox.notify_one();
        if let Err(e) = self.outbox.await {
            tracing::error!(error = %e, "outbox task ended abnormally");
        }
        if let Some(http) = self.http {
            http.stop().await;
        }
        self.background_db.close().await;
    }
}
