//! Issue 2 figures, measured through the in-crate Slack sandbox. Prints numbers, asserts nothing
//! about time.
//!
//! 1. Slash-command ack latency (envelope delivered → ack received, as the sandbox measures it):
//!    2,000 `/incident` (the declare form, which spawns `views.open`) and 2,000 `/incident help`,
//!    each sent at 200/s (one task every 5 ms).
//! 2. Declare submission → channel ready, over 200 sequential declares. The start is taken just
//!    before `submit_view`; the end is the arrival time of the last Web API call the bot made for
//!    that incident (the sandbox timestamps every call), so the polling in `wait_ready` does not
//!    blur the figure.
//! 3. Idle memory of the real `incident-bot serve` binary, connected to a sandbox, after one
//!    declare and 3 s idle (`VmRSS`/`VmHWM` from `/proc/<pid>/status`).
//!
//! ```sh
//! cargo bench --bench declare                 # SQLite (a fresh temp file per phase)
//! cargo bench --bench declare -- --pg         # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
//! BENCH_DATABASE_URL=postgres://… cargo bench --bench declare
//! ```
//! On PostgreSQL every phase runs in a fresh schema `bench_<uuid>`, dropped at the end.
//!
//! `--transport` runs instead the Socket Mode transport figures of issue 18, on one sandbox:
//! 2,000 `/incident` at 200/s acked by the bot, then by a do-nothing acker (the floor: two
//! connections with TCP_NODELAY that answer each envelope with `{"envelope_id"}` from the read
//! loop, then open a bare modal), then by the bot again while one `/incident note` at a time is stalled
//! 2 s on a locked database (a new one every 2 s); prints p50/p99/max of each and the ratios.
//! ```sh
//! cargo bench --bench declare -- --transport [--pg]
//! ```
//!
//! `--rss` runs only phase 3 (the `serve` binary's idle memory and where it is); with
//! `BENCH_SERVE_BIN` it measures another build of the binary, so the bench itself may be a
//! debug build: `BENCH_SERVE_BIN=target/release/incident-bot cargo bench --profile dev --bench
//! declare -- --rss`.
//!
//! `--faults` runs instead the soak of `tests/faults.rs` at the issue's full size (200 declares,
//! 1,000 updates, 500 reminders; `--scale 0.2` for a fifth), once without faults and once with
//! 20 % of Web API calls failing (429 + `Retry-After: 1`, 500, or a timeout past the bot's 2 s
//! limit), and prints ack latency (every command and submission) and declare → ready
//! (submission to channel + pinned card + announcement, polled every 20 ms) for both, with the
//! run's audit (nothing lost, nothing doubled); `--no-faults` skips the second run.
//! ```sh
//! cargo bench --bench declare -- --faults [--pg] [--scale 0.2] [--no-faults]
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use incident_bot::demo::{declare_values, demo_policy, fast_options, wait_for, LocalStack, ANNOUNCE_CHANNEL};
use incident_bot::sandbox::{self, Sandbox, SandboxOptions};
use serde_json::json;
use tokio::time::MissedTickBehavior;

#[path = "../tests/common/soak.rs"]
mod soak;

/// The test harness's helpers (the database lock).
#[path = "../tests/common/mod.rs"]
mod common;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const ACK_COMMANDS: usize = 2_000;
const ACK_INTERVAL: Duration = Duration::from_millis(5);
const ACK_WARMUP: usize = 20;
const DECLARES: usize = 200;
const IDLE: Duration = Duration::from_secs(3);
const USERS: [&str; 4] = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"];
const CHANNEL: &str = "C0GENERAL";
/// The Web API calls that make an incident "ready" (create, invite, topic, card, pin, announce,
/// confirm to the declarer).
const READY_METHODS: [&str; 6] = [
    "conversations.create",
    "conversations.invite",
    "conversations.setTopic",
    "chat.postMessage",
    "pins.add",
    "chat.postEphemeral",
];

/// Where the bench stores its data.
#[derive(Clone)]
enum Backend {
    Sqlite,
    Postgres { url: String, schemas: Vec<String> },
}

impl Backend {
    fn from_env_and_args() -> Backend {
        let env_url = std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty());
        let flag = std::env::args().skip(1).any(|a| a == "--pg");
        match (env_url, flag) {
            (Some(url), _) => Backend::Postgres {
                url,
                schemas: Vec::new(),
            },
            (None, true) => Backend::Postgres {
                url: DEFAULT_PG_URL.into(),
                schemas: Vec::new(),
            },
            (None, false) => Backend::Sqlite,
        }
    }

    fn label(&self) -> String {
        match self {
            Backend::Sqlite => "SQLite".into(),
            Backend::Postgres { url, .. } => format!("PostgreSQL ({})", redact_password(url)),
        }
    }

    /// A fresh schema name on PostgreSQL (remembered for the cleanup), `None` on SQLite.
    fn fresh_schema(&mut self) -> Option<(String, String)> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres { url, schemas } => {
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                schemas.push(schema.clone());
                Some((url.clone(), schema))
            }
        }
    }

    async fn start_stack(&mut self) -> anyhow::Result<LocalStack> {
        let db = self.fresh_schema();
        LocalStack::start(
            db.as_ref().map(|(url, schema)| (url.as_str(), Some(schema.as_str()))),
            demo_policy(),
            fast_options(),
        )
        .await
    }

    async fn drop_schemas(&self) -> anyhow::Result<()> {
        let Backend::Postgres { url, schemas } = self else {
            return Ok(());
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        for schema in schemas {
            // Generated above from [a-z0-9_]; schema names cannot be bound.
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        Ok(())
    }
}

fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// p50/p90/p99/max of a sample (nearest rank).
struct Summary {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

impl Summary {
    fn of(mut sample: Vec<Duration>) -> Summary {
        assert!(!sample.is_empty(), "an empty sample has no percentiles");
        sample.sort();
        let n = sample.len();
        let rank = |p: f64| sample[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Summary {
            n,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sample[n - 1],
            mean: sample.iter().sum::<Duration>() / n as u32,
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  max {}  (mean {}, n={})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean),
            self.n
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Slack's verdicts from one sandbox: envelopes acked late, Block Kit violations.
#[derive(Default, Clone, Copy)]
struct Verdicts {
    late_acks: usize,
    violations: usize,
}

impl Verdicts {
    fn of(sandbox: &Sandbox) -> Verdicts {
        let violations = sandbox.block_kit_violations();
        for v in violations.iter().take(5) {
            println!("    Block Kit violation: {v}");
        }
        Verdicts {
            late_acks: sandbox.late_acks(),
            violations: violations.len(),
        }
    }

    fn add(self, other: Verdicts) -> Verdicts {
        Verdicts {
            late_acks: self.late_acks + other.late_acks,
            violations: self.violations + other.violations,
        }
    }
}

/// Sends `n` `/incident <text>` commands at one per `ACK_INTERVAL`, each from its own task, and
/// returns the ack latencies the sandbox measured.
async fn ack_latencies(sandbox: &Sandbox, text: &'static str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut tick = tokio::time::interval(ACK_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        tick.tick().await;
        let sandbox = sandbox.clone();
        let user = USERS[i % USERS.len()];
        tasks.push(tokio::spawn(
            async move { sandbox.slash_command(user, CHANNEL, text).await },
        ));
    }
    let sent_in = started.elapsed();
    let mut latencies = Vec::with_capacity(n);
    let mut failures = 0usize;
    let mut with_text = 0usize;
    for task in tasks {
        match task.await? {
            Ok(ack) => {
                if ack.payload.as_ref().is_some_and(|p| p["text"].is_string()) {
                    with_text += 1;
                }
                latencies.push(ack.latency);
            }
            Err(e) => {
                if failures < 3 {
                    println!("    command failed: {e:#}");
                }
                failures += 1;
            }
        }
    }
    println!(
        "    sent {n} in {:.2} s ({:.0}/s), acked {}, failed {failures}, acks with a text payload {with_text}",
        sent_in.as_secs_f64(),
        n as f64 / sent_in.as_secs_f64(),
        latencies.len()
    );
    if latencies.is_empty() {
        bail!("no `/incident {text}` command was acknowledged");
    }
    Ok(latencies)
}

/// Phase 1: ack latency for the declare command and for `help`, on one stack.
async fn phase_acks(backend: &mut Backend) -> anyhow::Result<(Summary, Summary, Verdicts)> {
    let stack = backend
        .start_stack()
        .await
        .context("starting the stack for the ack phase")?;
    let sb = &stack.sandbox;
    println!("[1] slash-command ack latency, {ACK_COMMANDS} commands at 200/s each");
    // Warm the connections and the database pool; not counted.
    for i in 0..ACK_WARMUP {
        sb.slash_command(USERS[i % USERS.len()], CHANNEL, "help").await?;
    }

    println!("  `/incident` (declare form; spawns views.open):");
    let opened_before = sb.calls_to("views.open").len();
    let declare = Summary::of(ack_latencies(sb, "", ACK_COMMANDS).await?);
    // Every command should have opened its modal (trigger_id still valid).
    let opened = wait_for(Duration::from_secs(10), || async {
        let n = sb.calls_to("views.open").len() - opened_before;
        (n >= ACK_COMMANDS).then_some(n)
    })
    .await
    .unwrap_or_else(|| sb.calls_to("views.open").len() - opened_before);
    let open_errors = sb
        .calls_to("views.open")
        .iter()
        .filter(|c| c.response["ok"] != json!(true))
        .count();
    println!("    views.open calls {opened}/{ACK_COMMANDS}, of which refused {open_errors}");
    println!("    {}", declare.line());

    println!("  `/incident help`:");
    let help = Summary::of(ack_latencies(sb, "help", ACK_COMMANDS).await?);
    println!("    {}", help.line());

    let verdicts = Verdicts::of(sb);
    let mut stack = stack;
    stack.stop_bot().await;
    stack.db.close().await;
    Ok((declare, help, verdicts))
}

/// Phase 2: declare submission → channel ready, sequentially.
async fn phase_declare(backend: &mut Backend) -> anyhow::Result<(Summary, Summary, Verdicts)> {
    let stack = backend
        .start_stack()
        .await
        .context("starting the stack for the declare phase")?;
    let sb = &stack.sandbox;
    println!("[2] declare submission → channel ready, {DECLARES} sequential declares");
    let mut ready = Vec::with_capacity(DECLARES);
    let mut submit_acks = Vec::with_capacity(DECLARES);
    let mut calls_per_incident = Vec::with_capacity(DECLARES);
    let phase_started = Instant::now();
    for n in 1..=DECLARES {
        let user = USERS[(n - 1) % USERS.len()];
        let title = format!("Bench {n}");
        let view = stack.open_form(user, CHANNEL, &format!("declare {title}")).await?;
        let values = declare_values(&title, user, &json!({}));
        let start = Instant::now();
        let ack = sb.submit_view(user, &view.id, values).await?;
        if let Some(payload) = ack.payload.as_ref().filter(|p| p["response_action"] == "errors") {
            bail!("declare {n} was refused: {payload}");
        }
        submit_acks.push(ack.latency);
        stack
            .wait_ready(n as i64, Duration::from_secs(10))
            .await
            .with_context(|| format!("waiting for INC-{n}"))?;
        // Declares are sequential: every call that arrived after `start` is this incident's.
        let calls: Vec<_> = sb.calls().into_iter().filter(|c| c.at >= start).collect();
        let last = calls
            .iter()
            .filter(|c| READY_METHODS.contains(&c.method.as_str()))
            .map(|c| c.at)
            .max()
            .with_context(|| format!("INC-{n} is ready but no Web API call was seen after its submission"))?;
        if let Some(refused) = calls.iter().find(|c| c.response["ok"] != json!(true)) {
            println!(
                "    INC-{n}: {} answered {} {}",
                refused.method, refused.status, refused.response
            );
        }
        if n == 1 {
            let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
            println!("    INC-1's calls after submission: {}", methods.join(", "));
        }
        calls_per_incident.push(calls.len());
        ready.push(last - start);
    }
    let mut slowest: Vec<(usize, Duration)> = ready.iter().copied().enumerate().map(|(i, d)| (i + 1, d)).collect();
    slowest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let slowest: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|(n, d)| format!("INC-{n} {} (submission ack {})", ms(*d), ms(submit_acks[n - 1])))
        .collect();
    println!("    slowest: {}", slowest.join(", "));
    let (min_calls, max_calls) = (
        calls_per_incident.iter().min().copied().unwrap_or_default(),
        calls_per_incident.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "    {DECLARES} declares in {:.1} s; Web API calls per declare {min_calls}..={max_calls}",
        phase_started.elapsed().as_secs_f64()
    );
    let ready = Summary::of(ready);
    let submit = Summary::of(submit_acks);
    println!("    submission ack:   {}", submit.line());
    println!("    submit → ready:   {}", ready.line());

    let verdicts = Verdicts::of(sb);
    let mut stack = stack;
    stack.stop_bot().await;
    stack.db.close().await;
    Ok((ready, submit, verdicts))
}

/// What `/proc/<pid>/status` says about a process's memory, in kB.
#[derive(Default, Debug)]
struct ProcMemory {
    rss_kb: u64,
    hwm_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    threads: u64,
}

fn proc_memory(pid: u32) -> anyhow::Result<ProcMemory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let mut mem = ProcMemory::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
        match key {
            "VmRSS" => mem.rss_kb = number,
            "VmHWM" => mem.hwm_kb = number,
            "RssAnon" => mem.anon_kb = number,
            "RssFile" => mem.file_kb = number,
            "Threads" => mem.threads = number,
            _ => {}
        }
    }
    if mem.rss_kb == 0 {
        bail!("no VmRSS in /proc/{pid}/status");
    }
    Ok(mem)
}

/// Where the resident memory is (RSS per mapped file, anonymous memory together) and which
/// threads exist: what to look at when the idle RSS is over budget.
fn print_breakdown(pid: u32) {
    if let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) {
        let mut by_mapping: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let mut current = String::new();
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // A mapping header: `start-end perms offset dev inode [path]`.
                let path = fields.nth(4).unwrap_or_default();
                current = match path {
                    "" => "[anon]".to_string(),
                    p => p.rsplit('/').next().unwrap_or(p).to_string(),
                };
            } else if first == "Rss:" {
                *by_mapping.entry(current.clone()).or_default() +=
                    fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        let mut top: Vec<_> = by_mapping.into_iter().filter(|(_, kb)| *kb > 0).collect();
        top.sort_by_key(|(_, kb)| std::cmp::Reverse(*kb));
        let top: Vec<String> = top
            .iter()
            .take(6)
            .map(|(name, kb)| format!("{name} {}", mib(*kb)))
            .collect();
        println!("    RSS by mapping: {}", top.join(", "));
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut names: Vec<String> = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect();
        names.sort();
        println!("    threads: {}", names.join(", "));
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// The `serve` binary measured: this build's, or `BENCH_SERVE_BIN` (e.g. a build with another
/// release profile, to compare).
fn serve_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_SERVE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_incident-bot").into())
}

struct RssReport {
    mem: ProcMemory,
    exit: String,
}

/// Phase 3: the real `serve` binary against a sandbox: one declare, 3 s idle, then its memory.
async fn phase_rss(backend: &mut Backend) -> anyhow::Result<(RssReport, Verdicts)> {
    println!("[3] idle memory of `incident-bot serve`");
    let sb = Sandbox::start(SandboxOptions::default()).await?;
    let sqlite_file = std::env::temp_dir().join(format!("incident-bot-bench-{}.db", uuid::Uuid::new_v4()));
    let database_url = match backend.fresh_schema() {
        None => format!("sqlite://{}", sqlite_file.display()),
        Some((url, schema)) => {
            // Create and migrate the schema, then point the binary at it with `search_path`.
            incident_bot::db::Db::connect_with(&url, Some(&schema))
                .await?
                .close()
                .await;
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options[search_path]={schema}")
        }
    };
    let mut child = tokio::process::Command::new(serve_binary())
        .arg("serve")
        .env("SLACK_BOT_TOKEN", sandbox::BOT_TOKEN)
        .env("SLACK_APP_TOKEN", sandbox::APP_TOKEN)
        .env("SLACK_API_URL", sb.api_url())
        .env("DATABASE_URL", &database_url)
        .env("INCIDENT_BOT_ANNOUNCE_CHANNEL", ANNOUNCE_CHANNEL)
        .env("RUST_LOG", "warn")
        .env_remove("INCIDENT_BOT_CONFIG")
        .kill_on_drop(true)
        .spawn()
        .context("spawning incident-bot serve")?;
    let pid = child.id().context("the child has no pid")?;
    let result = async {
        let t0 = Instant::now();
        sb.wait_for_connections(1, Duration::from_secs(10)).await?;
        println!(
            "    pid {pid} connected in {:.0} ms",
            t0.elapsed().as_secs_f64() * 1000.0
        );
        let connected = proc_memory(pid)?;

        // One declare, so the process has done real work (pool, Web API client, outbox).
        let user = "U0ALICE";
        sb.slash_command(user, CHANNEL, "declare RSS probe").await?;
        let view = wait_for(Duration::from_secs(3), || async { sb.views_opened().first().cloned() })
            .await
            .context("the declare modal did not open")?;
        sb.submit_view(user, &view.id, declare_values("RSS probe", user, &json!({})))
            .await?;
        wait_for(Duration::from_secs(10), || async {
            let done = !sb.calls_to("pins.add").is_empty()
                && !sb.calls_to("chat.postEphemeral").is_empty()
                && !sb.messages(ANNOUNCE_CHANNEL).is_empty();
            done.then_some(())
        })
        .await
        .context("the declare through `serve` did not complete")?;
        println!("    declared INC-1 through the binary; idling {} s", IDLE.as_secs());
        tokio::time::sleep(IDLE).await;
        let mem = proc_memory(pid)?;
        println!(
            "    after connect: VmRSS {} (threads {}); after 1 declare + {} s idle: VmRSS {} (anon {}, file {}), VmHWM {}, threads {}",
            mib(connected.rss_kb),
            connected.threads,
            IDLE.as_secs(),
            mib(mem.rss_kb),
            mib(mem.anon_kb),
            mib(mem.file_kb),
            mib(mem.hwm_kb),
            mem.threads
        );
        print_breakdown(pid);
        anyhow::Ok(mem)
    }
    .await;

    let signal = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .context("running kill -TERM")?;
    let stopping = Instant::now();
    let exit = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => format!(
            "{} {:.0} ms after SIGTERM",
            status?,
            stopping.elapsed().as_secs_f64() * 1000.0
        ),
        Err(_) => {
            child.kill().await?;
            "did not stop within 10 s of SIGTERM; killed".to_string()
        }
    };
    if !signal.success() {
        println!("    kill -TERM {pid} failed: {signal}");
    }
    println!("    exit: {exit}");
    let verdicts = Verdicts::of(&sb);
    sb.shutdown();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_file.display()));
    }
    Ok((RssReport { mem: result?, exit }, verdicts))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut backend = Backend::from_env_and_args();
    if std::env::args().any(|a| a == "--transport") {
        let outcome = transport_mode(&mut backend).await;
        if let Err(e) = backend.drop_schemas().await {
            println!("(could not drop the bench schemas: {e:#})");
        }
        return outcome;
    }
    if std::env::args().any(|a| a == "--rss") {
        let outcome = rss_mode(&mut backend).await;
        if let Err(e) = backend.drop_schemas().await {
            println!("(could not drop the bench schemas: {e:#})");
        }
        return outcome;
    }
    if std::env::args().any(|a| a == "--faults") {
        let outcome = fault_mode(&mut backend).await;
        if let Err(e) = backend.drop_schemas().await {
            println!("(could not drop the bench schemas: {e:#})");
        }
        return outcome;
    }
    println!(
        "incident-bot issue-2 bench on {} · {} CPUs · bench runtime: tokio multi-thread",
        backend.label(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("load average before: {}", load_average());
    let started = Instant::now();
    let outcome = async {
        let (ack_declare, ack_help, v1) = phase_acks(&mut backend).await?;
        let (ready, submit, v2) = phase_declare(&mut backend).await?;
        let (rss, v3) = phase_rss(&mut backend).await?;
        anyhow::Ok((ack_declare, ack_help, ready, submit, rss, v1.add(v2).add(v3)))
    }
    .await;
    if let Err(e) = backend.drop_schemas().await {
        println!("(could not drop the bench schemas: {e:#})");
    }
    let (ack_declare, ack_help, ready, submit, rss, verdicts) = outcome?;

    println!();
    println!(
        "── summary ({}, {:.0} s) ──",
        backend.label(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "ack latency (declare, {ACK_COMMANDS} @ 200/s): p50 {}  p90 {}  p99 {}  max {}",
        ms(ack_declare.p50),
        ms(ack_declare.p90),
        ms(ack_declare.p99),
        ms(ack_declare.max)
    );
    println!(
        "ack latency (help,    {ACK_COMMANDS} @ 200/s): p50 {}  p90 {}  p99 {}  max {}",
        ms(ack_help.p50),
        ms(ack_help.p90),
        ms(ack_help.p99),
        ms(ack_help.max)
    );
    println!(
        "declare → ready ({DECLARES} sequential):    p50 {}  p90 {}  p99 {}  max {}",
        ms(ready.p50),
        ms(ready.p90),
        ms(ready.p99),
        ms(ready.max)
    );
    println!(
        "declare submission ack:             p50 {}  p90 {}  p99 {}  max {}",
        ms(submit.p50),
        ms(submit.p90),
        ms(submit.p99),
        ms(submit.max)
    );
    println!(
        "idle RSS of `serve`: {} (peak {}, {} threads); {}",
        mib(rss.mem.rss_kb),
        mib(rss.mem.hwm_kb),
        rss.mem.threads,
        rss.exit
    );
    println!(
        "late acks: {} · Block Kit violations: {}",
        verdicts.late_acks, verdicts.violations
    );
    println!(
        "load average after: {} (other builds on this machine skew every figure)",
        load_average()
    );
    println!("targets: ack p99 ≤ 5 ms, declare-to-ready p99 ≤ 50 ms, idle RSS ≤ 20 MB");
    Ok(())
}

/// `--rss`: only the idle memory of the `serve` binary (phase 3), with where it is.
async fn rss_mode(backend: &mut Backend) -> anyhow::Result<()> {
    let (rss, _) = phase_rss(backend).await?;
    let binary = serve_binary();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!(
        "serve binary {} ({:.1} MB); idle RSS {} (anon {}, file {}; peak {}, {} threads); {}",
        binary.display(),
        size as f64 / 1_048_576.0,
        mib(rss.mem.rss_kb),
        mib(rss.mem.anon_kb),
        mib(rss.mem.file_kb),
        mib(rss.mem.hwm_kb),
        rss.mem.threads,
        rss.exit
    );
    println!("target: idle RSS ≤ 12 MB");
    Ok(())
}

/// `--faults`: the soak without faults, then under the 20 % fault mix.
async fn fault_mode(backend: &mut Backend) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let scaled = |n: usize| ((n as f64 * scale).round() as usize).max(1);
    let size = soak::Size {
        declares: scaled(soak::FULL.declares).max(2),
        updates: scaled(soak::FULL.updates),
        reminders: scaled(soak::FULL.reminders),
        workers: soak::FULL.workers,
    };
    println!(
        "incident-bot fault-mix bench on {} · {} CPUs · {size:?}",
        backend.label(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("load average before: {}", load_average());
    // Slack's side (the sandbox's Web API and Socket Mode) is served by a runtime of its own,
    // as Slack runs on machines of its own: on one runtime the bot's tasks queued behind the
    // sandbox's in one run queue. `--shared-runtime` measures the old way, for comparison.
    let slack_side = match args.iter().any(|a| a == "--shared-runtime") {
        true => None,
        false => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sandbox")
                .enable_all()
                .build()?,
        ),
    };
    let mut rows = Vec::new();
    // `--no-faults`: only the first run (a quicker loop when working on the no-fault tail).
    let runs = if args.iter().any(|a| a == "--no-faults") { 1 } else { 2 };
    for (label, mix) in [
        ("no faults", None),
        ("20% faults", Some(sandbox::FaultMix::twenty_percent(7, soak::HOLD))),
    ]
    .into_iter()
    .take(runs)
    {
        let db = backend.fresh_schema();
        let mut stack = LocalStack::start_with_sandbox(
            db.as_ref().map(|(url, schema)| (url.as_str(), Some(schema.as_str()))),
            soak::soak_policy(),
            soak::soak_options(),
            SandboxOptions {
                runtime: slack_side.as_ref().map(|r| r.handle().clone()),
                ..SandboxOptions::default()
            },
        )
        .await?;
        stack.sandbox.set_fault_mix(mix);
        let report = soak::run(&stack, size).await?;
        stack.sandbox.set_fault_mix(None);
        let faults = stack.sandbox.fault_counts();
        let calls = stack.sandbox.calls().len();
        println!(
            "[{label}] {:.1} s, {calls} Web API calls, faults {faults:?} ({:.1} %), form retries {}",
            report.wall.as_secs_f64(),
            100.0 * faults.total() as f64 / calls.max(1) as f64,
            report.form_retries
        );
        println!(
            "    audit: {} of {} updates posted once in channel and thread, {} reminders posted; problems: {}",
            report.updates_posted,
            size.updates,
            report.reminders_posted,
            if report.problems.is_empty() {
                "none".to_string()
            } else {
                format!("{} e.g. {}", report.problems.len(), report.problems[0])
            }
        );
        rows.push((label, report));
        stack.stop_bot().await;
        stack.db.close().await;
    }
    println!();
    println!("── summary ({}, {size:?}) ──", backend.label());
    for (label, r) in &rows {
        println!(
            "{label:>10}: ack p50 {}  p99 {}  max {} (n={}; submissions p50 {}  p99 {}, n={}, of which declares p50 {}  p99 {}; commands p50 {}  p99 {}, n={}) · declare → ready p50 {}  p99 {}  max {} (n={}) · wall {:.0} s",
            ms(soak::percentile(&r.acks, 50.0)),
            ms(soak::percentile(&r.acks, 99.0)),
            ms(soak::percentile(&r.acks, 100.0)),
            r.acks.len(),
            ms(soak::percentile(&r.submission_acks, 50.0)),
            ms(soak::percentile(&r.submission_acks, 99.0)),
            r.submission_acks.len(),
            ms(soak::percentile(&r.declare_acks, 50.0)),
            ms(soak::percentile(&r.declare_acks, 99.0)),
            ms(soak::percentile(&r.command_acks, 50.0)),
            ms(soak::percentile(&r.command_acks, 99.0)),
            r.command_acks.len(),
            ms(soak::percentile(&r.ready, 50.0)),
            ms(soak::percentile(&r.ready, 99.0)),
            ms(soak::percentile(&r.ready, 100.0)),
            r.ready.len(),
            r.wall.as_secs_f64()
        );
    }
    println!("load average after: {}", load_average());
    if let Some(runtime) = slack_side {
        runtime.shutdown_background();
    }
    Ok(())
}

/// The floor for ack latency: `connections` Socket Mode connections (TCP_NODELAY) that ack
/// every envelope with `{"envelope_id"}` straight from the read loop, then open a bare modal
/// for a command (spawned), as the issue's Python floor did.
async fn floor_acker(api_url: &str, connections: usize) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use futures_util::{SinkExt, StreamExt};
    use slack_morphism::prelude::*;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let client = incident_bot::slack::web::build_client(api_url)?;
    let token = SlackApiToken::new(sandbox::APP_TOKEN.into());
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let url = client
            .open_session(&token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .context("apps.connections.open")?
            .url;
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url.0.as_str(), None, true).await?;
        let (mut sink, mut stream) = socket.split();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Frame::Text(text) = frame else { continue };
                let Ok(envelope) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = envelope["envelope_id"].as_str() {
                    let ack = json!({ "envelope_id": id }).to_string();
                    if sink.send(Frame::text(ack)).await.is_err() {
                        break;
                    }
                }
                // Then, like the issue's floor, open a bare modal (off the ack path).
                if let Some(trigger) = envelope["payload"]["trigger_id"].as_str() {
                    let (client, trigger) = (client.clone(), trigger.to_owned());
                    tokio::spawn(async move {
                        let view = SlackView::Modal(SlackModalView::new(
                            SlackBlockPlainTextOnly::from("Floor"),
                            vec![SlackSectionBlock::new().with_text(md!("A bare modal")).into()],
                        ));
                        let request = SlackApiViewsOpenRequest::new(trigger.into(), view);
                        let _ = client
                            .open_session(&SlackApiToken::new(sandbox::BOT_TOKEN.into()))
                            .views_open(&request)
                            .await;
                    });
                }
            }
        }));
    }
    Ok(tasks)
}

/// `--transport`: the bot's ack latency against the floor's, on one sandbox, and with one
/// handler at a time stalled on a locked database.
async fn transport_mode(backend: &mut Backend) -> anyhow::Result<()> {
    println!(
        "incident-bot issue-18 transport bench on {} · {} CPUs",
        backend.label(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("load average before: {}", load_average());
    let mut stack = backend.start_stack().await.context("starting the stack")?;
    let sb = stack.sandbox.clone();
    sb.wait_for_connections(2, Duration::from_secs(5)).await?;
    for i in 0..ACK_WARMUP {
        sb.slash_command(USERS[i % USERS.len()], CHANNEL, "help").await?;
    }

    println!("[1] the bot: {ACK_COMMANDS} `/incident` (declare form) at 200/s");
    let bot = Summary::of(ack_latencies(&sb, "", ACK_COMMANDS).await?);
    println!("    {}", bot.line());

    println!("[2] the floor (do-nothing acker, 2 connections) on the same sandbox");
    stack.stop_bot().await;
    wait_for(Duration::from_secs(5), || async {
        (sb.connection_count() == 0).then_some(())
    })
    .await;
    let floor_tasks = floor_acker(&sb.api_url(), 2).await?;
    sb.wait_for_connections(2, Duration::from_secs(5)).await?;
    for i in 0..ACK_WARMUP {
        sb.slash_command(USERS[i % USERS.len()], CHANNEL, "help").await?;
    }
    let floor = Summary::of(ack_latencies(&sb, "", ACK_COMMANDS).await?);
    println!("    {}", floor.line());
    for task in floor_tasks {
        task.abort();
    }
    wait_for(Duration::from_secs(5), || async {
        (sb.connection_count() == 0).then_some(())
    })
    .await;

    println!("[3] the bot with one `/incident note` at a time stalled 2 s on a locked database");
    stack.restart_bot(fast_options()).await?;
    sb.wait_for_connections(2, Duration::from_secs(5)).await?;
    for i in 0..ACK_WARMUP {
        sb.slash_command(USERS[i % USERS.len()], CHANNEL, "help").await?;
    }
    // A note writes, so it waits for the lock (reads do not, on SQLite in WAL mode).
    stack.declare("U0ALICE", CHANNEL, "Stalled notes", json!({})).await?;
    let incident_channel = stack.wait_ready(1, Duration::from_secs(10)).await?;
    let lock = common::lock_database(&stack.db).await;
    let stallers = {
        let sb = sb.clone();
        tokio::spawn(async move {
            let mut stalled = Vec::new();
            // The run lasts ~10 s: five stalls of 2 s back to back.
            for _ in 0..5 {
                let (sb, channel) = (sb.clone(), incident_channel.clone());
                stalled.push(tokio::spawn(async move {
                    sb.slash_command("U0ALICE", &channel, "note stalled").await
                }));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let mut latencies = Vec::new();
            for s in stalled {
                if let Ok(Ok(ack)) = s.await {
                    latencies.push(ack.latency);
                }
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stalled_run = Summary::of(ack_latencies(&sb, "", ACK_COMMANDS).await?);
    let stalled = stallers.await?;
    common::unlock(lock).await;
    println!("    others: {}", stalled_run.line());
    println!(
        "    the stalled ones: {}",
        stalled.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    let verdicts = Verdicts::of(&sb);
    stack.stop_bot().await;
    stack.db.close().await;
    let (rss, _) = phase_rss(backend).await?;
    let binary = serve_binary();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);

    println!();
    println!("── transport summary ({}) ──", backend.label());
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "max");
    for (label, s) in [
        ("floor (do-nothing acker)", &floor),
        ("incident-bot", &bot),
        ("incident-bot, one handler stalled 2 s", &stalled_run),
    ] {
        println!("{label:<44} {:>9} {:>9} {:>9}", ms(s.p50), ms(s.p99), ms(s.max));
    }
    println!(
        "bot p99 / floor p99 = {:.2} (target ≤ 1.5) · stalled − unstalled p99 = {:+.2} ms (target ≤ 2 ms)",
        bot.p99.as_secs_f64() / floor.p99.as_secs_f64(),
        (stalled_run.p99.as_secs_f64() - bot.p99.as_secs_f64()) * 1000.0
    );
    println!(
        "serve binary {} ({:.1} MB); idle RSS {} (peak {}, {} threads); {}",
        binary.display(),
        size as f64 / 1_048_576.0,
        mib(rss.mem.rss_kb),
        mib(rss.mem.hwm_kb),
        rss.mem.threads,
        rss.exit
    );
    println!(
        "late acks: {} · Block Kit violations: {}",
        verdicts.late_acks, verdicts.violations
    );
    println!("load average after: {}", load_average());
    Ok(())
}
