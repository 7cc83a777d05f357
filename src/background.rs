//! The background lane: the work no person is waiting on runs on a runtime of its own, at a
//! lower CPU priority, with a database pool of its own.
//!
//! Envelope handlers have Slack's 3 s ack deadline and a person watching; the outbox (channels,
//! invites, posts, pins), the reminder and report schedulers, the change calendar's loop and
//! the triage poster do not. On one runtime they share one run queue, so a burst of background
//! work (a major incident's 200 channels and their posts) put every envelope's next poll, and
//! each of its database statements, behind hundreds of tasks: the soak's handlers took 10–25 ms
//! instead of well under one. Here the background runtime's threads run at nice +10 (a share
//! of 1 to 9 of a contended CPU, all of an idle one) and its tasks take connections from their
//! own pool, so background work never queues ahead of an ack for a thread, a place in a run
//! queue or a database connection (measured in the README, "Why the transport is ours").
//!
//! The Slack Web API client stays shared (its rate limits, member cache and auth state are one
//! per token); a pooled HTTP connection opened here is driven here, which can only delay a
//! `views.open`, never an ack.

use crate::db::Db;
use std::future::Future;
use tokio::task::JoinHandle;

/// Worker threads of the background runtime: its work mostly waits on Slack and the database,
/// and one thread leaves the other core to the envelopes even when it is busy.
const WORKERS: usize = 1;

/// The niceness of the background threads (Linux; elsewhere they run at normal priority).
pub const NICENESS: i32 = 10;

/// Database connections of the background lane, beside the main pool's.
pub const CONNECTIONS: u32 = 4;

/// The background runtime; dropping it stops whatever still runs on it.
pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Background {
    pub fn start() -> std::io::Result<Background> {
        // Its threads log where the starting thread logs (a test's scoped subscriber too).
        let logs = tracing::dispatcher::get_default(|d| d.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("incident-bot-background")
            .on_thread_start(move || {
                // Kept for the thread's life: the guard would only restore the thread's
                // previous default, and it has none.
                std::mem::forget(tracing::dispatcher::set_default(&logs));
                ON_BACKGROUND_THREAD.set(true);
                lower_priority();
            })
            .enable_all()
            .build()?;
        Ok(Background { runtime: Some(runtime) })
    }

    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(work)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the background runtime lives until it is dropped")
            .handle()
    }

    /// A pool of its own on `db`'s database, opened on this runtime (a PostgreSQL connection
    /// is driven by the runtime that opened it).
    pub async fn pool(&self, db: &Db) -> anyhow::Result<Db> {
        let db = db.clone();
        self.spawn(async move { db.second_pool(CONNECTIONS).await }).await?
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Not `drop(runtime)`: that blocks until its tasks end, and panics inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

thread_local! {
    static ON_BACKGROUND_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs on the background lane (its database writers line up behind each
/// other, see [`Db::writer`]).
pub fn on_background_thread() -> bool {
    ON_BACKGROUND_THREAD.get()
}

/// Lowers the calling thread's CPU priority; threads it starts (SQLite's connection threads)
/// inherit it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = thread_id();
        // SAFETY: syscalls on the calling thread, no memory shared with them. On Linux,
        // PRIO_PROCESS with a thread id reads and sets that one thread's niceness (relative to
        // the process's own: a bot started at nice 5 runs its background at 15).
        let done = unsafe {
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + NICENESS).min(19))
        };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
        }
    }
}

#[cfg(target_os = "linux")]
fn thread_id() -> libc::id_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's niceness.
    #[cfg(target_os = "linux")]
    fn niceness() -> i32 {
        // SAFETY: reads the calling thread's scheduling priority.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, thread_id()) }
    }

    #[test]
    fn background_work_runs_on_its_own_threads_at_lower_priority() {
        let background = Background::start().unwrap();
        let here = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let main = std::thread::current().id();
        let ran = here
            .block_on(background.spawn(async move {
                let thread = std::thread::current();
                (thread.id(), thread.name().map(str::to_string), on_background_thread())
            }))
            .unwrap();
        assert_ne!(ran.0, main);
        assert_eq!(ran.1.as_deref(), Some("incident-bot-background"));
        assert!(ran.2);
        assert!(!on_background_thread());
        #[cfg(target_os = "linux")]
        {
            let ours = niceness();
            let theirs = here.block_on(background.spawn(async { niceness() })).unwrap();
            assert_eq!(theirs, (ours + NICENESS).min(19));
        }
    }
}
