//! Group commits on SQLite: writers queue their requests; whoever gets the file's write turn
//! next commits every request queued by then in one transaction, and answers each.
//!
//! SQLite takes one writer at a time, and every statement is a round trip to the connection's
//! thread, so with many people at once each writer used to wait in line for the round trips of
//! everyone ahead of it (the soak's sixteen users declaring at once waited 10–14 ms for the
//! turn, for a transaction of under 1 ms). A group takes the same few round trips for all.
//! People's changes ([`super::changes`]) and declarations ([`super::incidents`]) are grouped.

use super::Db;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A request waiting in its database file's queue for the next group commit.
pub(super) struct Queued<R, O> {
    pub(super) request: Arc<R>,
    pub(super) answer: oneshot::Sender<O>,
}

/// An SQLite database file's requests of one kind waiting for a group commit.
pub(super) struct GroupQueue<R, O> {
    queued: Mutex<Vec<Queued<R, O>>>,
}

impl<R, O> Default for GroupQueue<R, O> {
    fn default() -> Self {
        GroupQueue {
            queued: Mutex::new(Vec::new()),
        }
    }
}

/// At most this many requests are committed together: enough for every person of a busy
/// incident room at once, few enough that one group's transaction stays short.
pub(super) const GROUP_MAX: usize = 16;

impl<R, O> GroupQueue<R, O> {
    fn enqueue(&self, request: &Arc<R>) -> oneshot::Receiver<O> {
        let (answer, answered) = oneshot::channel();
        self.queued.lock().unwrap_or_else(|p| p.into_inner()).push(Queued {
            request: request.clone(),
            answer,
        });
        answered
    }

    /// Takes the next group: at most [`GROUP_MAX`] requests, oldest first, no two of which
    /// `clash` (a second change to one incident waits for the next group, so that it reads the
    /// first one's result), leaving out those whose caller is gone (timed out: it has answered
    /// the person already).
    fn take_group(&self, clash: impl Fn(&R, &R) -> bool) -> Vec<Queued<R, O>> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let mut group: Vec<Queued<R, O>> = Vec::new();
        let mut waiting = Vec::with_capacity(queued.len());
        for q in queued.drain(..) {
            if q.answer.is_closed() {
                continue;
            }
            if group.len() < GROUP_MAX && group.iter().all(|g| !clash(&g.request, &q.request)) {
                group.push(q);
            } else {
                waiting.push(q);
            }
        }
        *queued = waiting;
        group
    }
}

/// Queues `request` on `queue` and waits for its answer, committing groups (`commit`) whenever
/// this caller gets `db`'s write turn first.
///
/// Cancellation-safe: a caller that gives up while queued is left out of the next group; one
/// that gives up while committing a group rolls the whole group back, and the others queue
/// again.
pub(super) async fn in_group<R, O, C, F>(
    db: &Db,
    queue: &GroupQueue<R, O>,
    request: Arc<R>,
    clash: impl Fn(&R, &R) -> bool,
    commit: C,
) -> O
where
    C: Fn(Vec<Queued<R, O>>) -> F,
    F: Future<Output = ()>,
{
    let mut answer = queue.enqueue(&request);
    loop {
        let turn = tokio::select! {
            biased;
            answered = &mut answer => match answered {
                Ok(outcome) => return outcome,
                // The group it was in was abandoned (its committer gave up): queue again.
                Err(_) => {
                    answer = queue.enqueue(&request);
                    continue;
                }
            },
            turn = db.writer() => turn,
        };
        let group = queue.take_group(&clash);
        if !group.is_empty() {
            commit(group).await;
        }
        // Answers are sent before the turn is passed on: a caller whose request was taken by
        // another group finds its answer when it next looks.
        drop(turn);
    }
}

/// Commits `group` with `commit_all` (one transaction for all of them: an answer each, in
/// order) and answers each request. When the database refuses the group, each request is
/// committed alone (under the same write turn), so that one's refusal stays its own.
pub(super) async fn commit_or_each_alone<R, T, E>(
    group: Vec<Queued<R, Result<T, E>>>,
    commit_all: impl for<'a> Fn(&'a [&'a R]) -> BoxFuture<'a, Result<Vec<T>, E>>,
) where
    E: std::fmt::Display,
{
    let requests: Vec<&R> = group.iter().map(|q| &*q.request).collect();
    let together = commit_all(&requests).await;
    drop(requests);
    match together {
        Ok(answers) => {
            for (queued, answer) in group.into_iter().zip(answers) {
                // Not sent: its caller gave up meanwhile.
                let _ = queued.answer.send(Ok(answer));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(alone) = group.into_iter().next() {
                let _ = alone.answer.send(Err(e));
            }
        }
        Err(e) => {
            tracing::info!(error = %e, requests = group.len(), "a group failed together; committing each alone");
            for queued in group {
                let alone = commit_all(&[&*queued.request]).await.map(|mut one| one.remove(0));
                let _ = queued.answer.send(alone);
            }
        }
    }
}
