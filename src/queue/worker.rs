//! The worker: reads the queue and runs the handler.

use std::collections::HashSet;
use std::fmt;
use std::future::{Future, pending};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Keys, Queue, QueueError, field_bytes, field_str, field_u64, millis};
use crate::dedup::clamp;
use crate::event::Event;
use crate::receiver::delivery::{Ran, run_beside};
use crate::receiver::{Handler, HandlerError};

/// Runs a [`Handler`] on the events of a [`Queue`].
///
/// - **Reading**: a consumer group, at most [`with_concurrency`](Self::with_concurrency)
///   handlers at once; while all are busy it reads nothing (backpressure).
/// - **Success or permanent failure**: the entry is acknowledged and deleted, and
///   the event marked done, in one step; a permanent failure also goes to the dead
///   letters with the error text.
/// - **Temporary failure or panic**: retried after 1 s, 2 s, 4 s, … (see
///   [`with_backoff`](Self::with_backoff)) up to
///   [`with_max_attempts`](Self::with_max_attempts) runs in all, then dead-lettered.
/// - **No time limit**: a running handler keeps its entry (renewed every third of the
///   [visibility timeout](Self::with_visibility_timeout)), however long it runs.
/// - **Crashes**: the entries of a worker that died are reclaimed by the others once
///   idle for the visibility timeout, unless they were marked done. A run that
///   crashed counts as an attempt, so an event that kills its worker every time
///   ends in the dead letters.
/// - **Poison**: a body that no longer parses goes straight to the dead letters.
/// - **Shutdown**: when the future passed to [`run`](Self::run) completes, the
///   worker stops reading and waits for running handlers up to the
///   [shutdown deadline](Self::with_shutdown_deadline); the rest are cancelled and
///   their entries left for another worker to reclaim at once.
///
/// ```no_run
/// use std::time::Duration;
/// use notmeta_webhooks::queue::{Queue, Worker};
/// use notmeta_webhooks::receiver::HandlerError;
/// use notmeta_webhooks::{Event, EventKind};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let worker = Worker::new(queue, |event: Event<'static>| async move {
///     match &event.kind {
///         EventKind::MessageReceived(m) => { /* slow work: minutes are fine */ }
///         _ => {}
///     }
///     Ok::<(), HandlerError>(())
/// })
/// .with_concurrency(16)
/// .with_max_attempts(5)
/// .with_visibility_timeout(Duration::from_secs(60));
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// let stats = worker.run(async { let _ = stopped.await; }).await?;
/// println!("handled {}", stats.handled);
/// # Ok(()) }
/// ```
pub struct Worker<H> {
    queue: Queue,
    handler: Arc<H>,
    settings: Settings,
}

#[derive(Debug, Clone)]
struct Settings {
    concurrency: usize,
    max_attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    visibility: Duration,
    poll: Duration,
    shutdown_deadline: Duration,
    consumer: String,
    isolate: bool,
}

impl<H> fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a worker did, returned by [`Worker::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Runs that succeeded (event done).
    pub handled: u64,
    /// Runs that failed temporarily or panicked and were scheduled again.
    pub retried: u64,
    /// Entries moved to the dead letters (permanent failure, retries exhausted,
    /// body that does not parse).
    pub dead_lettered: u64,
    /// Reclaimed entries found done already (not run again).
    pub skipped: u64,
    /// Runs whose entry another worker had settled meanwhile (its claim lapsed
    /// while Redis could not be reached).
    pub lost: u64,
    /// Runs cancelled at the shutdown deadline (left for reclaim).
    pub abandoned: u64,
}

#[derive(Default)]
struct Counters {
    handled: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
    lost: AtomicU64,
}

impl<H: Handler> Worker<H> {
    /// A worker for `queue` running `handler`: 8 handlers at once, 5 attempts,
    /// backoff 1 s doubling up to 5 min, a 30 s visibility timeout, a 100 ms poll
    /// interval when idle, and a 30 s shutdown deadline.
    #[must_use]
    pub fn new(queue: Queue, handler: H) -> Self {
        let token = crate::dedup::ClaimToken::new().to_string();
        Self {
            queue,
            handler: Arc::new(handler),
            settings: Settings {
                concurrency: 8,
                max_attempts: 5,
                first_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(5 * 60),
                visibility: Duration::from_secs(30),
                poll: Duration::from_millis(100),
                shutdown_deadline: Duration::from_secs(30),
                consumer: format!("worker-{}-{}", std::process::id(), &token[..8]),
                isolate: true,
            },
        }
    }
}

impl<H> Worker<H> {
    /// How many handlers run at once (at least 1; default 8).
    #[must_use]
    pub fn with_concurrency(mut self, handlers: usize) -> Self {
        self.settings.concurrency = handlers.max(1);
        self
    }

    /// Whether the handler runs on Tokio's blocking pool (the default) or in the
    /// task that renews its entry, as
    /// [`Receiver::with_handler_isolation`](crate::receiver::Receiver::with_handler_isolation)
    /// explains: `false` saves a hand-off to another thread per event, for handlers
    /// that only `.await`. A handler that then blocks its thread for longer than the
    /// visibility timeout stalls the renewal, and another worker may run the event
    /// again.
    #[must_use]
    pub fn with_handler_isolation(mut self, isolate: bool) -> Self {
        self.settings.isolate = isolate;
        self
    }

    /// How many times an event's handler runs at most before the event goes to the
    /// dead letters (at least 1; default 5). Temporary failures, panics and runs cut
    /// short by a crash count.
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// The pause before the first retry, doubled for each further one up to `max`
    /// (defaults 1 s and 5 min).
    #[must_use]
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.first_backoff = clamp(first);
        self.settings.max_backoff = clamp(max).max(self.settings.first_backoff);
        self
    }

    /// How long an entry of a worker that stopped renewing it (it crashed, or lost
    /// Redis) stays with it before another worker reclaims it (default 30 s, at
    /// least 30 ms). Running handlers renew every third of it.
    #[must_use]
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.settings.visibility = clamp(timeout).max(Duration::from_millis(30));
        self
    }

    /// How long to wait before reading again when the queue was empty (default
    /// 100 ms): the longest an event waits for an idle worker.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll = clamp(interval).max(Duration::from_millis(1));
        self
    }

    /// How long [`run`](Self::run) waits for running handlers after the shutdown
    /// signal (default 30 s).
    #[must_use]
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.settings.shutdown_deadline = clamp(deadline);
        self
    }

    /// This worker's consumer name in the group (default `worker-<pid>-<random>`;
    /// each worker needs its own).
    #[must_use]
    pub fn with_consumer_name(mut self, name: impl Into<String>) -> Self {
        self.settings.consumer = name.into();
        self
    }

    /// The consumer name.
    #[must_use]
    pub fn consumer_name(&self) -> &str {
        &self.settings.consumer
    }
}

/// What every entry task shares.
struct Shared<H> {
    queue: Queue,
    handler: Arc<H>,
    settings: Settings,
    counters: Counters,
    /// Entries being run here: (partition, entry id).
    in_flight: Mutex<HashSet<(u16, String)>>,
}

impl<H: Handler> Worker<H> {
    /// Runs until `shutdown` completes, then stops reading and lets running handlers
    /// finish (up to the shutdown deadline). Redis errors while running are retried
    /// (and logged with the `tracing` feature); the worker does not stop for them.
    ///
    /// # Errors
    ///
    /// If the consumer groups cannot be created at start (Redis unreachable).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerStats, QueueError> {
        self.queue.ensure_groups().await?;
        let shared = Arc::new(Shared {
            queue: self.queue,
            handler: self.handler,
            settings: self.settings,
            counters: Counters::default(),
            in_flight: Mutex::new(HashSet::new()),
        });
        let settings = &shared.settings;
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        let partitions = shared.queue.partitions();
        let mut cursors = vec!["0-0".to_owned(); usize::from(partitions)];
        let reclaim_every = (settings.visibility / 4).max(Duration::from_millis(10));
        let promote_every = settings.poll.min(Duration::from_millis(250));
        let mut last_reclaim: Option<Instant> = None;
        let mut last_promote: Option<Instant> = None;
        #[cfg(feature = "metrics")]
        let mut last_counts: Option<Instant> = None;
        let mut start = 0u16;
        let mut connection = shared.queue.connection().clone();
        'reading: loop {
            while tasks.try_join_next().is_some() {}
            // Backpressure: wait for a free slot before reading anything.
            let free = match select(pin!(slots.acquire()), shutdown.as_mut()).await {
                Either::Left((Ok(permit), _)) => {
                    drop(permit);
                    slots.available_permits()
                }
                Either::Left((Err(_), _)) | Either::Right(_) => break 'reading,
            };
            let mut got = 0;
            if last_promote.is_none_or(|t| t.elapsed() >= promote_every) {
                last_promote = Some(Instant::now());
                for p in 0..partitions {
                    if let Err(e) = promote(&shared.queue, &mut connection, p).await {
                        warn("promote retries", &e);
                    }
                }
            }
            #[cfg(feature = "metrics")]
            if last_counts.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                last_counts = Some(Instant::now());
                let _ = shared.queue.counts().await;
            }
            if last_reclaim.is_none_or(|t| t.elapsed() >= reclaim_every) {
                last_reclaim = Some(Instant::now());
                for p in 0..partitions {
                    let room = slots.available_permits();
                    if room == 0 {
                        break;
                    }
                    match reclaim(&shared, &mut connection, p, &cursors[usize::from(p)], room).await
                    {
                        Ok((next, entries)) => {
                            cursors[usize::from(p)] = next;
                            for entry in entries {
                                got += 1;
                                spawn(&shared, &slots, &mut tasks, p, entry, true);
                            }
                        }
                        Err(e) => warn("reclaim", &e),
                    }
                }
            }
            let mut failed = false;
            for i in 0..partitions {
                let p = (start + i) % partitions;
                let room = slots.available_permits().min(free);
                if room == 0 {
                    break;
                }
                match read(&shared, &mut connection, p, room).await {
                    Ok(entries) => {
                        for entry in entries {
                            got += 1;
                            spawn(&shared, &slots, &mut tasks, p, entry, false);
                        }
                    }
                    Err(e) => {
                        failed = true;
                        warn("read", &e);
                    }
                }
            }
            start = (start + 1) % partitions;
            if got == 0 || failed {
                let pause = pin!(tokio::time::sleep(settings.poll));
                if let Either::Right(_) = select(pause, shutdown.as_mut()).await {
                    break 'reading;
                }
            }
        }
        // Shutdown: nothing more is read; running handlers get the deadline.
        let deadline = pin!(tokio::time::sleep(settings.shutdown_deadline));
        let mut deadline = deadline;
        loop {
            let finished = match select(pin!(tasks.join_next()), deadline.as_mut()).await {
                Either::Left((Some(_), _)) => continue,
                Either::Left((None, _)) => true,
                Either::Right(_) => false,
            };
            if !finished {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
            break;
        }
        let left: Vec<(u16, String)> = shared
            .in_flight
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        for (p, entry_id) in &left {
            // Idle for the whole visibility timeout: another worker may take it now.
            let released: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
                .arg(shared.queue.keys(*p).stream)
                .arg(shared.queue.group())
                .arg(&settings.consumer)
                .arg(0)
                .arg(entry_id)
                .arg("IDLE")
                .arg(millis(settings.visibility))
                .arg("JUSTID")
                .query_async(&mut connection)
                .await;
            if let Err(e) = released {
                warn("release", &QueueError::from(e));
            }
        }
        let c = &shared.counters;
        Ok(WorkerStats {
            handled: c.handled.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            abandoned: left.len() as u64,
        })
    }
}

fn spawn<H: Handler>(
    shared: &Arc<Shared<H>>,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    partition: u16,
    entry: StreamId,
    reclaimed: bool,
) {
    let key = (partition, entry.id.clone());
    if let Ok(mut set) = shared.in_flight.lock()
        && !set.insert(key.clone())
    {
        // Running here already: the reclaim only reset its idle time.
        return;
    }
    // The reader asked for no more entries than there were free slots.
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        if let Ok(mut set) = shared.in_flight.lock() {
            set.remove(&key);
        }
        return;
    };
    let shared = Arc::clone(shared);
    tasks.spawn(async move {
        let _permit = permit;
        process(&shared, partition, &entry, reclaimed).await;
        if let Ok(mut set) = shared.in_flight.lock() {
            set.remove(&key);
        }
    });
}

async fn read<H>(
    shared: &Shared<H>,
    connection: &mut crate::dedup::RedisConnection,
    p: u16,
    count: usize,
) -> Result<Vec<StreamId>, QueueError> {
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(shared.queue.group())
        .arg(&shared.settings.consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(shared.queue.keys(p).stream)
        .arg(">")
        .query_async(connection)
        .await?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

async fn reclaim<H>(
    shared: &Shared<H>,
    connection: &mut crate::dedup::RedisConnection,
    p: u16,
    cursor: &str,
    count: usize,
) -> Result<(String, Vec<StreamId>), QueueError> {
    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(shared.queue.keys(p).stream)
        .arg(shared.queue.group())
        .arg(&shared.settings.consumer)
        .arg(millis(shared.settings.visibility))
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(connection)
        .await?;
    Ok((reply.next_stream_id, reply.claimed))
}

async fn promote(
    queue: &Queue,
    connection: &mut crate::dedup::RedisConnection,
    p: u16,
) -> Result<(), QueueError> {
    let keys = queue.keys(p);
    let _: i64 = queue
        .scripts()
        .promote
        .key(&keys.retry)
        .key(&keys.stream)
        .arg(100)
        .arg(&keys.retry_prefix)
        .invoke_async(connection)
        .await?;
    Ok(())
}

/// How an entry is settled.
enum Settle {
    /// Handled: mark done.
    Done,
    /// Already done: acknowledge only.
    Ack,
    /// To the dead letters, with this error text.
    Dead(String),
    /// Try again after this pause.
    Retry(Duration),
}

/// The fields of a queued entry.
struct Entry {
    entry_id: String,
    event_id: String,
    event_type: String,
    body: Vec<u8>,
    received: String,
    secret: String,
    attempt: u64,
}

impl Entry {
    fn fields(&self, attempt: u64) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("id", self.event_id.as_bytes().to_vec()),
            ("type", self.event_type.as_bytes().to_vec()),
            ("body", self.body.clone()),
            ("received", self.received.as_bytes().to_vec()),
            ("secret", self.secret.as_bytes().to_vec()),
            ("attempt", attempt.to_string().into_bytes()),
        ]
    }
}

async fn process<H: Handler>(shared: &Shared<H>, p: u16, raw: &StreamId, reclaimed: bool) {
    let entry = Entry {
        entry_id: raw.id.clone(),
        event_id: field_str(raw, "id"),
        event_type: field_str(raw, "type"),
        body: field_bytes(raw, "body"),
        received: field_str(raw, "received"),
        secret: field_str(raw, "secret"),
        attempt: field_u64(raw, "attempt"),
    };
    let keys = shared.queue.keys(p);
    let max = u64::from(shared.settings.max_attempts);
    // Runs before this one: failed attempts, plus runs cut short by a crash.
    let mut runs = entry.attempt;
    if reclaimed {
        match inspect(shared, &keys, &entry).await {
            Ok((state, _)) if state == "done" || state == "dead" => {
                settle(shared, &keys, &entry, Settle::Ack).await;
                shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
                count("skipped");
                return;
            }
            Ok((_, deliveries)) => runs += deliveries.saturating_sub(1),
            Err(e) => {
                // Unknown state: leave the entry for a later reclaim.
                warn("inspect", &e);
                return;
            }
        }
    }
    if runs >= max {
        let error =
            format!("gave up after {runs} attempts that did not finish (the worker stopped)");
        settle(shared, &keys, &entry, Settle::Dead(error)).await;
        return;
    }
    let event = match Event::parse_unverified(&entry.body) {
        Ok(event) => event.into_owned(),
        Err(e) => {
            let error = format!("the body does not parse: {e}");
            settle(shared, &keys, &entry, Settle::Dead(error)).await;
            return;
        }
    };
    let started = Instant::now();
    let result = run_renewing(shared, &keys, &entry, event).await;
    #[cfg(feature = "metrics")]
    metrics::histogram!("notmeta_webhooks_queue_handler_seconds")
        .record(started.elapsed().as_secs_f64());
    let _ = started;
    let this_run = runs + 1;
    let how = match result {
        Ok(()) => Settle::Done,
        Err(Failure::Permanent(text)) => Settle::Dead(text),
        Err(Failure::Temporary(text)) if this_run >= max => {
            Settle::Dead(format!("{text} (attempt {this_run} of {max})"))
        }
        Err(Failure::Temporary(_)) => Settle::Retry(backoff(&shared.settings, this_run)),
    };
    settle(shared, &keys, &entry, how).await;
}

/// The pause before the next attempt after `failures` failed runs.
fn backoff(settings: &Settings, failures: u64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    settings
        .first_backoff
        .saturating_mul(1 << doublings)
        .min(settings.max_backoff)
}

enum Failure {
    Temporary(String),
    Permanent(String),
}

/// A handler error with its sources, for the dead letters.
fn describe(error: &HandlerError) -> String {
    crate::error::chain(error)
}

/// Runs the handler, isolated on the blocking pool unless isolation is off (so
/// renewal goes on even if it blocks its thread), renewing the entry until it stops.
async fn run_renewing<H: Handler>(
    shared: &Shared<H>,
    keys: &Keys,
    entry: &Entry,
    event: Event<'static>,
) -> Result<(), Failure> {
    // Cancelling this future (shutdown deadline) stops the handler (isolated: at
    // its next `.await`). There is no time limit here: the visibility timeout and
    // the renewal bound how long an entry stays with this worker.
    let lost = AtomicBool::new(false);
    let renewing = renew(shared, keys, entry, &lost);
    let isolate = shared.settings.isolate;
    let ran = run_beside(
        &shared.handler,
        Box::new(event),
        isolate,
        renewing,
        pending(),
    );
    match ran.await {
        Ran::Finished(Ok(())) => Ok(()),
        Ran::Finished(Err(error)) if error.is_temporary() => {
            Err(Failure::Temporary(describe(&error)))
        }
        Ran::Finished(Err(error)) => Err(Failure::Permanent(describe(&error))),
        // The panic's payload is not kept: it is the handler's, and may hold anything.
        Ran::Panicked => Err(Failure::Temporary("the handler panicked".to_owned())),
        Ran::Stopped | Ran::Cancelled => {
            Err(Failure::Temporary("the handler was cancelled".to_owned()))
        }
    }
}

/// Resets the entry's idle time every third of the visibility timeout; never ends.
async fn renew<H>(shared: &Shared<H>, keys: &Keys, entry: &Entry, lost: &AtomicBool) {
    let every = (shared.settings.visibility / 3).max(Duration::from_millis(10));
    let mut connection = shared.queue.connection().clone();
    loop {
        tokio::time::sleep(every).await;
        let claimed: redis::RedisResult<Vec<String>> = redis::cmd("XCLAIM")
            .arg(&keys.stream)
            .arg(shared.queue.group())
            .arg(&shared.settings.consumer)
            .arg(0)
            .arg(&entry.entry_id)
            .arg("JUSTID")
            .query_async(&mut connection)
            .await;
        match claimed {
            Ok(ids) if ids.is_empty() => {
                if !lost.swap(true, Ordering::Relaxed) {
                    warn_text("an entry being handled was settled by another worker");
                }
            }
            Ok(_) => count("renewed"),
            Err(e) => warn("renew", &e.into()),
        }
    }
}

async fn inspect<H>(
    shared: &Shared<H>,
    keys: &Keys,
    entry: &Entry,
) -> Result<(String, u64), QueueError> {
    let mut connection = shared.queue.connection().clone();
    let (state, deliveries): (String, u64) = shared
        .queue
        .scripts()
        .inspect
        .key(keys.state(&entry.event_id))
        .key(&keys.stream)
        .arg(shared.queue.group())
        .arg(&entry.entry_id)
        .invoke_async(&mut connection)
        .await?;
    Ok((state, deliveries))
}

/// Settles the entry, trying again (and keeping it claimed) while Redis fails.
async fn settle<H>(shared: &Shared<H>, keys: &Keys, entry: &Entry, how: Settle) {
    let mut connection = shared.queue.connection().clone();
    let mut pause = Duration::from_millis(50);
    let (mode, delay, fields) = match &how {
        Settle::Done => ("done", 0, Vec::new()),
        Settle::Ack => ("ack", 0, Vec::new()),
        Settle::Dead(error) => {
            let mut fields = entry.fields(entry.attempt + 1);
            fields.push(("error", error.as_bytes().to_vec()));
            fields.push((
                "failed",
                super::unix_millis(std::time::SystemTime::now())
                    .to_string()
                    .into_bytes(),
            ));
            ("dead", 0, fields)
        }
        Settle::Retry(after) => ("retry", millis(*after), entry.fields(entry.attempt + 1)),
    };
    loop {
        let mut invocation = shared.queue.scripts().settle.prepare_invoke();
        invocation
            .key(&keys.stream)
            .key(keys.state(&entry.event_id))
            .key(&keys.dead)
            .key(&keys.retry)
            .key(keys.retry_hash(&entry.event_id))
            .arg(shared.queue.group())
            .arg(&entry.entry_id)
            .arg(mode)
            .arg(millis(shared.queue.dedup_window()))
            .arg(delay)
            .arg(&entry.event_id);
        for (name, value) in &fields {
            invocation.arg(*name).arg(value.as_slice());
        }
        let settled: redis::RedisResult<i64> = invocation.invoke_async(&mut connection).await;
        match settled {
            Ok(1) => {
                let c = &shared.counters;
                let (counter, name) = match how {
                    Settle::Done => (&c.handled, "handled"),
                    Settle::Dead(_) => (&c.dead_lettered, "dead_lettered"),
                    Settle::Retry(_) => (&c.retried, "retried"),
                    Settle::Ack => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                count(name);
                return;
            }
            Ok(_) => {
                shared.counters.lost.fetch_add(1, Ordering::Relaxed);
                count("lost");
                return;
            }
            Err(e) => {
                warn("settle", &e.into());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn count(_what: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("notmeta_webhooks_queue_runs_total", "outcome" => _what).increment(1);
}

fn warn(_operation: &'static str, _error: &QueueError) {
    #[cfg(feature = "metrics")]
    metrics::counter!("notmeta_webhooks_queue_redis_errors_total", "operation" => _operation)
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        operation = _operation,
        cause = std::error::Error::source(_error).map(ToString::to_string),
        "queue Redis call failed"
    );
}

fn warn_text(_text: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!("{_text}");
}
