//! # incident-bot
//!
//! A Slack-native incident management bot: declare with `/incident`, run the incident in its
//! own channel, keep stakeholders updated within service levels, report on it.
//!
//! ## Codemap
//! - [`config`]: typed settings: environment (tokens, `SLACK_API_URL`, `DATABASE_URL`) plus an
//!   optional TOML file (severities, services, roles, channels). Errors name the key.
//! - [`incident`]: the domain, pure and unit-tested: [`incident::model`] (incidents,
//!   severities, statuses, titles, channel names, timeline events), [`incident::change`] (the
//!   lifecycle state machine), [`incident::followup`] (follow-up actions: validation, who closes
//!   them, overdue reminders) and [`incident::pir`] (which incidents need a post-incident review,
//!   its reminders in working days, the Markdown / JSON draft).
//! - [`db`]: the only module that knows SQL: incidents, timeline events, follow-ups, outbox
//!   jobs, report aggregates, on SQLite or PostgreSQL with the same SQL text.
//! - [`reminder`]: the SLA clock: pure planning (`reminder::plan`) and the scheduler loop that
//!   reminds the SPOC, escalates breaches and repeats, and reminds owners of overdue
//!   follow-ups and SPOCs of due reviews, once across restarts and replicas.
//! - [`report`]: weekly and monthly reports: periods, figures (aggregated in SQL by `db`),
//!   Markdown / CSV / JSON and a PNG chart; Block Kit in `slack::report`.
//! - [`outbox`]: Slack side effects stored with the change that caused them, then driven to
//!   done with retries and leases (survives restarts, runs once across replicas).
//! - [`slack`]: the only module that imports slack_morphism: our Socket Mode transport
//!   ([`slack::socket_mode`]: connections, acks written by a task no handler can block, pings,
//!   disconnects, drain on shutdown), envelopes → flows ([`slack::listener`]), command and modal
//!   parsing, Block Kit, the Web API client, the outbox runner.
//! - [`app`]: wires the above into a running [`app::Bot`].
//! - [`sandbox`]: a local Slack (Web API over HTTP, Socket Mode over WebSocket) that enforces
//!   Slack's rules; used by the tests, the benchmarks and `incident-bot demo`.
//! - [`demo`]: `incident-bot demo`, the whole flow against the sandbox, as a transcript.
//! - [`metrics`], [`http`]: Prometheus counters and the `/healthz`, `/readyz`, `/metrics`
//!   endpoint (on when `http_listen` is set).
//!
//! ## Invariants
//! - The domain (`incident::*`) imports neither sqlx nor slack_morphism and never reads the
//!   clock: callers pass `now`.
//! - Only `slack/` knows Slack's JSON; only `db/` knows SQL (bind parameters only).
//! - Every state change is stored with its timeline event in the same transaction, together
//!   with the outbox jobs for its Slack side effects: a Slack failure never loses a change.
//! - Raw Slack input is parsed into domain types at the edge; a parse error becomes an
//!   ephemeral message or a modal field error, never a panic or a half write.
//! - Tokens never reach logs or error messages ([`config::Secret`], [`slack::redact`]).

pub mod app;
pub mod config;
pub mod db;
pub mod demo;
pub mod http;
pub mod incident;
pub mod metrics;
pub mod outbox;
pub mod reminder;
pub mod report;
pub mod sandbox;
pub mod slack;
