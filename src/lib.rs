//! # incident-bot
//!
//! A Slack-native incident management bot: declare with `/incident`, run the incident in its
//! own channel, keep stakeholders updated within service levels, report on it.
//!
//! ## Codemap
//! - [`config`]: typed settings: environment (tokens, `SLACK_API_URL`, `DATABASE_URL`) plus an
//!   optional TOML file (severities, services, roles, channels). Errors name the key by its
//!   whole path; unknown keys and `INCIDENT_BOT_*` variables are refused, naming the closest.
//! - [`incident`]: the domain, pure and unit-tested: [`incident::model`] (incidents,
//!   severities, statuses, titles, channel names, timeline events), [`incident::change`] (the
//!   lifecycle state machine), [`incident::followup`] (follow-up actions: validation, who closes
//!   them, overdue reminders) and [`incident::pir`] (which incidents need a post-incident review,
//!   its reminders in working days, the Markdown / JSON draft).
//! - [`calendar`]: the change calendar (issue 12), pure: `CHG-<n>` changes and their states,
//!   validation, freezes, conflicts, which changes an incident may have been caused by
//!   ([`calendar::suspects`]), the iCalendar feed ([`calendar::ics`]) and CSV import/export.
//!   SQL in `db::calendar`, use-cases in [`service::calendar`], `/change`, its form and the
//!   loop that posts announcements, reminders, digests and suspects in [`slack::calendar`].
//! - [`comms`]: customer communications (issue 14), pure: `[status_page]` settings
//!   ([`comms::config`]), customer updates (draft → published, superseded by an edit), who may
//!   approve, the public view of incidents ([`comms::page_view`]) and the report figures
//!   ([`comms::metrics`]: time to first customer update, cadence compliance, minutes per
//!   component status). SQL in `db/comms.rs`, use-cases in `service/comms.rs`, the form, the
//!   Approve / Edit buttons and the outbox posts in `slack::comms`.
//! - [`db`]: the only module that knows SQL: incidents, timeline events, follow-ups, outbox
//!   jobs, report aggregates, on SQLite or PostgreSQL with the same SQL text. Read-only
//!   commands connect with `Db::connect_existing`, which checks the schema and never migrates.
//!   On SQLite, writers take turns (`Db::writer`); people's changes and declarations are
//!   committed in groups (`db/group.rs`, used by `db/changes.rs` and `db/incidents.rs`), and a
//!   transaction is as few round trips as it can be (`OneTrip` in `db/mod.rs`: `BEGIN` and
//!   `COMMIT` inside the statement texts; `db/writes.rs` for plain writes).
//! - [`reminder`]: the SLA clock: pure planning (`reminder::plan`) and the scheduler loop that
//!   reminds the SPOC, escalates breaches and repeats, and reminds owners of overdue
//!   follow-ups and SPOCs of due reviews, once across restarts and replicas.
//! - [`report`]: weekly and monthly reports: periods, figures (aggregated in SQL by `db`),
//!   Markdown / CSV / JSON and a PNG chart; Block Kit in `slack::report`.
//! - [`outbox`]: Slack side effects stored with the change that caused them, then driven to
//!   done with retries and short leases renewed by a heartbeat (survives restarts, runs once
//!   across replicas); the results of jobs that finish together are written in one
//!   transaction. A call whose outcome is unknown (timeout, 5xx, crash) is reconciled before
//!   it is repeated: `slack::web` classifies outcomes, `slack::effects` tags what it
//!   creates with the job (message metadata, channel purpose) and looks for it first.
//! - [`service`]: the application layer, the one home of the use-cases (declare, apply a
//!   change, list incidents, follow-ups, review drafts, reports). It knows neither Slack nor
//!   HTTP: domain requests and the acting person in, results or a [`service::Refusal`] out;
//!   people and channel membership come through the [`service::People`] trait. Slack, the CLI
//!   and the HTTP endpoints call it.
//! - [`slack`]: the only module that imports slack_morphism, and only transport, parsing and
//!   rendering: our Socket Mode transport ([`slack::socket_mode`]: connections, acks written by
//!   a task no handler can block, pings, disconnects, drain on shutdown), envelopes parsed and
//!   dispatched ([`slack::listener`]), command and modal parsing into domain requests, Block
//!   Kit, the Web API client (which also answers [`service::People`]), the outbox runner;
//!   [`slack::text`] decodes what people type (entities, mentions, links, control characters)
//!   once, at the edge.
//! - [`vendor`]: vendor escalations, pure: the `[[vendors]]` catalogue, tickets `V<n>` and
//!   their states, the aging clock the scheduler fires (`vendor::report`: per-vendor report
//!   rows); SQL in `db/vendors.rs`, use-cases in `service/vendors.rs`, Slack in `slack::vendors`.
//! - [`app`]: wires the above into a running [`app::Bot`]; [`background`]: the lane the
//!   outbox, schedulers and pollers run on (a runtime of its own at lower CPU priority, its own
//!   pool), so that no background work queues ahead of an ack; on SQLite its writers line up
//!   behind a person's ([`db::Db::writer`]) and it checkpoints the write-ahead log
//!   ([`db::Db::checkpoint_every`]), which no commit does.
//! - [`sandbox`]: a local Slack (Web API over HTTP, Socket Mode over WebSocket) that enforces
//!   Slack's rules (bot scopes from `manifest.yml`, entity-encoded text, Block Kit, membership
//!   for ephemerals, per-user invite errors, `response_url` limits, rate tiers on request in
//!   `sandbox::rate`); used by the tests, the benchmarks and `incident-bot demo`.
//! - [`demo`]: `incident-bot demo`, the whole flow against the sandbox, as a transcript.
//! - [`metrics`], [`http`]: Prometheus counters and the `/healthz`, `/readyz`, `/metrics`
//!   endpoint (on when `http_listen` is set).
//! - Detection (issue 15): [`alerts`] (pure: sources and rules, the Alertmanager / Grafana /
//!   generic payloads, dedupe, flapping and resolve decisions), [`intake`] (`POST /alerts/…` on
//!   the [`http`] server: token, size, parse, stored before the 202), `db::alerts` (groups,
//!   events, the triage message's leased sync, links), `service::alerts` (intake batches,
//!   triage, linking, declaring from an alert), [`slack::alerts`] (the triage message and its
//!   buttons, the poster loop, rule declarations); time to declare in [`report::alerts`].
//! - [`status_page`]: the public status page (issue 14) on the [`http`] server: `/status` (HTML
//!   via maud), `/status/incidents/<id>`, `/status.json` and `/status/feed.atom`, from the
//!   public reads of `db::comms` only (domain in [`comms`]); CSP, ETag and 304s.
//!
//! ## Invariants
//! - The domain (`incident::*`) imports neither sqlx nor slack_morphism and never reads the
//!   clock: callers pass `now`.
//! - Only `slack/` knows Slack's JSON; only `db/` knows SQL (bind parameters only).
//! - `service/` imports neither slack_morphism nor hyper: a use-case is written once and
//!   called by every adapter.
//! - Every state change is stored with its timeline event in the same transaction, together
//!   with the outbox jobs for its Slack side effects: a Slack failure never loses a change.
//! - Raw Slack input is parsed into domain types at the edge; a parse error becomes an
//!   ephemeral message or a modal field error, never a panic or a half write. Stored text is
//!   plain (decoded once by `slack::text`, no control characters) and escaped once on output.
//! - Tokens never reach logs or error messages ([`config::Secret`], [`slack::redact`]).

pub mod alerts;
pub mod app;
pub mod background;
pub mod calendar;
pub mod comms;
pub mod config;
pub mod db;
pub mod demo;
pub mod http;
pub mod incident;
pub mod intake;
pub mod metrics;
pub mod outbox;
pub mod reminder;
pub mod report;
pub mod sandbox;
pub mod service;
pub mod slack;
pub mod status_page;
pub mod vendor;
