//! `Worker::run_until_idle`: a worker run whose shutdown signal is the queue
//! found idle, on every backend.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};

use super::{Worker, WorkerStats};
use crate::clock::clamp;
use crate::queue::{Queue, QueueCounts, QueueError};
use crate::receiver::Handler;

impl<H: Handler> Worker<H> {
    /// Runs the worker until the queue is idle: nothing waiting, nothing running
    /// (here or in any other worker) and nothing waiting for a retry; dead letters
    /// are final and do not count. Then it stops as after a shutdown signal and
    /// returns what it did. For tests, and for batch jobs that drain a queue: a test
    /// enqueues, calls this, and checks the effects, with no polling or sleeping of
    /// its own.
    ///
    /// - **Nothing enqueued before the call is missed**: idleness is read from the
    ///   queue's store itself ([`Queue::counts`]: per partition one atomic read on
    ///   Redis, one statement on PostgreSQL, under the lock in memory), where an
    ///   entry is acknowledged before its endpoint answers 200 and stays counted
    ///   until it is done or a dead letter. An entry enqueued and acknowledged before
    ///   this call is therefore handled (or dead-lettered) before it returns.
    ///   Entries enqueued during the call are handled too if they arrive before the
    ///   queue is found idle.
    /// - **Retries are awaited**: an entry waiting for its retry keeps the queue
    ///   busy, so this returns only once every retry has run, and a handler that
    ///   keeps failing temporarily ends in the dead letters after
    ///   [`with_max_attempts`](Self::with_max_attempts) runs: it terminates. The
    ///   backoff is waited for in real time (1 s, 2 s, 4 s, … by default): in tests
    ///   set [`with_backoff`](Self::with_backoff)`(Duration::ZERO, Duration::ZERO)`
    ///   (retries at once) or a few milliseconds; on a queue in memory a paused
    ///   Tokio clock (`#[tokio::test(start_paused = true)]`) also skips the waits
    ///   (the rate limit's too). A circuit breaker's cool-down follows the breaker's
    ///   own clock ([`CircuitBreaker::with_clock`](crate::breaker::CircuitBreaker::with_clock),
    ///   the system's by default), not Tokio's: on a paused clock the limit can pass
    ///   before it does.
    /// - **An entry another worker left running** (it crashed, or its `run` was cut
    ///   short) is taken over once its visibility timeout has passed, then handled:
    ///   keep [`with_visibility_timeout`](Self::with_visibility_timeout) short in
    ///   tests that do that.
    /// - **Detection**: on a queue in memory, at once (the check runs on each change
    ///   of the queue); on Redis and PostgreSQL, within the worker's
    ///   [poll interval](Self::with_poll_interval) (one [`Queue::counts`] call per
    ///   interval beside the worker's own reads).
    /// - **A paused queue** ([`Queue::pause`]) with entries waiting is not idle, nor
    ///   is one whose entries wait behind this worker's open
    ///   [circuit breaker](Self::with_circuit_breaker): this waits for the resume
    ///   (or the probe) until `limit`, and the [`QueueError::NotIdle`] it then
    ///   returns says `paused` in its counts.
    /// - **`limit`** is a safety limit (a handler that never returns, a store that
    ///   never answers): once it has passed, the worker stops as after a shutdown
    ///   signal (running handlers get the [shutdown deadline](Self::with_shutdown_deadline))
    ///   and this returns [`QueueError::NotIdle`] with what the queue held then. A
    ///   handler that blocks its thread (on the blocking pool, the default) cannot be
    ///   cancelled: as after any shutdown it is waited for, its entry renewed, so this
    ///   returns only once that thread is free, however long after the limit. The
    ///   limit is clamped to 100 years. A paused queue ([`Queue::pause`]) or an open
    ///   [circuit breaker](Self::with_circuit_breaker) lets nothing start, so the
    ///   queue never gets idle: this then ends at the limit with
    ///   [`QueueError::NotIdle`] (its counts say `paused`), having spent no attempt.
    ///
    /// Store errors while running are retried, as in [`run`](Self::run) (a failed
    /// count is "not idle yet").
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
    /// use notmeta_webhooks::receiver::HandlerError;
    /// use notmeta_webhooks::{sign, Event, Verifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::in_memory();
    /// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue.clone());
    /// for id in ["evt_1", "evt_2"] {
    ///     let body = format!(r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#);
    ///     enqueuer.receive(body.as_bytes(), [sign(body.as_bytes(), "whsec_abc123")]).await;
    /// }
    ///
    /// // evt_2 fails once, temporarily: retried at once, then done.
    /// let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
    ///     let first = event.id == "evt_2" && !failed.swap(true, std::sync::atomic::Ordering::SeqCst);
    ///     async move {
    ///         if first { Err(HandlerError::temporary("downstream down")) } else { Ok(()) }
    ///     }
    /// })
    /// .with_backoff(Duration::ZERO, Duration::ZERO);
    /// let stats = worker.run_until_idle(Duration::from_secs(10)).await?;
    /// assert_eq!((stats.handled, stats.retried), (2, 1));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), and [`QueueError::NotIdle`] when the queue was not
    /// found idle within `limit`.
    pub async fn run_until_idle(self, limit: Duration) -> Result<WorkerStats, QueueError> {
        let limit = clamp(limit);
        let queue = self.queue.clone();
        let poll = self.settings.poll;
        let timed_out = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&timed_out);
        let watch = queue.clone();
        let until_idle = async move {
            let idle = pin!(idle(&watch, poll));
            if let Either::Right(_) = select(idle, pin!(tokio::time::sleep(limit))).await {
                flag.store(true, Ordering::Release);
            }
        };
        let stats = self.run(until_idle).await?;
        if timed_out.load(Ordering::Acquire) {
            let left = queue.counts().await.unwrap_or_default();
            return Err(QueueError::NotIdle { limit, left });
        }
        Ok(stats)
    }
}

/// Nothing waiting, running or waiting for a retry.
fn is_idle(counts: &QueueCounts) -> bool {
    counts.pending == 0 && counts.in_progress == 0 && counts.retrying == 0
}

/// Completes once the queue is found idle: checked on each change of a queue in
/// memory, every `poll` on the others.
async fn idle(queue: &Queue, poll: Duration) {
    loop {
        if let Some(memory) = queue.memory() {
            let mut changed = pin!(memory.changed());
            changed.as_mut().enable();
            if is_idle(&memory.counts()) {
                return;
            }
            changed.await;
            continue;
        }
        if queue.counts().await.is_ok_and(|counts| is_idle(&counts)) {
            return;
        }
        tokio::time::sleep(poll).await;
    }
}
