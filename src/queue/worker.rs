//! The worker: reads the queue and runs the handler.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{Future, pending};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::protocol::{self, Begun, Consumer, Entry, Settle, Settled, Take};
use super::{Keys, Queue, QueueError, TraceContext};
use crate::clock::clamp;
use crate::dedup::RedisConnection;
use crate::event::Event;
use crate::random::{jitter, random_fraction};
use crate::receiver::delivery::{Call, Ran, retrying, run_beside};
use crate::receiver::{Claimed, Handler, HandlerError};

mod gate;
mod idle;
mod memory;
#[cfg(feature = "postgres")]
mod pg;

/// How often a running worker checks the queue's layout in Redis again.
const LAYOUT_RECHECK: Duration = Duration::from_secs(5);

/// The most entries one read, reclaim or take asks for, whatever the concurrency:
/// Redis's scripts take the count as a Lua number (exact only below 2^53) and
/// PostgreSQL's take draws one token per entry asked for.
const MAX_TAKE: usize = 1_000;

/// Runs a [`Handler`] on the events of a [`Queue`].
///
/// - **Reading**: a consumer group, at most [`with_concurrency`](Self::with_concurrency)
///   handlers at once; while all are busy it reads nothing (backpressure). A read
///   returns entry ids only, and each entry's body is fetched when its run starts,
///   so no reply holds more than one entry.
/// - **Before each run** the worker checks, in one atomic step, that it still owns
///   the entry and that the event is not done or dead already (a retry, a reclaim
///   or a replay of an event handled meanwhile is not run again), and counts the
///   run as started.
/// - **Success or permanent failure**: the entry is acknowledged and deleted, and
///   the event marked done, in one step; a permanent failure also goes to the dead
///   letters with the error text.
/// - **Temporary failure or panic**: retried after at most 1 s, 2 s, 4 s, … (each
///   wait a random point between half and all of it, so that events that failed
///   together during an outage do not all come back at once; see
///   [`with_backoff`](Self::with_backoff)) up to
///   [`with_max_attempts`](Self::with_max_attempts) runs in all, then dead-lettered.
/// - **No time limit**: a running handler keeps its entry (renewed every third of the
///   [visibility timeout](Self::with_visibility_timeout), for every running entry
///   in one call per partition), however long it runs. The renewals run on a
///   thread of their own (`notmeta-renewal`, with a Tokio runtime and a connection
///   of their own, for as long as [`run`](Self::run) or a handler it started
///   runs), so a handler that blocks its thread, even every thread of the runtime,
///   stalls no renewal; handlers therefore run in their entry's task, without a
///   hand-off to another thread (see
///   [`with_handler_isolation`](Self::with_handler_isolation)). Renewal keeps an entry only
///   while this worker still owns it; an entry another worker took over meanwhile
///   (this one lost Redis for longer than the visibility timeout) is counted
///   `lost` and logged, and its run's result is not applied as if owned, except a
///   success: "done" is recorded whoever ran the event, and removes any retry or
///   dead letter written for it.
/// - **Crashes**: the entries of a worker that died are reclaimed by the others once
///   idle for the visibility timeout. A run that started and never settled counts
///   as an attempt, so an event that kills its worker every time ends in the dead
///   letters; a read or start whose reply was lost does not count, and the worker
///   takes its own entries back after such a failure.
/// - **Failover**: with [`Queue::with_replicas`], a run starts only once a replica
///   knows this worker owns the entry, and its settle counts only once a replica
///   has it, so a primary lost in a failover cannot make the event run twice.
/// - **Redis lost its data** (a restart without persistence, a flush, a failover
///   to an empty replica): the worker recreates the consumer group and goes on;
///   what Redis lost cannot be handled.
/// - **Poison**: a body that no longer parses goes straight to the dead letters.
/// - **Paused** ([`Queue::pause`]): the worker takes nothing (no new entry, no due
///   retry, no reclaim) until [`Queue::resume`]; what runs goes on and settles.
/// - **Tracing** (feature `tracing`): each run is a `notmeta_webhook_job` span
///   (`event_id`, `event_type`, `attempt`, `outcome`, and the `traceparent` the
///   entry carries from the request that enqueued it); the handler runs in it, and
///   the queue's [`TracePropagation`](super::TracePropagation) can link it to the
///   request's span (see [`Queue::with_trace_propagation`]).
/// - **Shutdown**: when the future passed to [`run`](Self::run) completes, the
///   worker stops reading and waits for running handlers up to the
///   [shutdown deadline](Self::with_shutdown_deadline); then the rest are
///   cancelled at their next `.await`. An entry is never given up while its handler
///   may still run: the worker keeps renewing it until the handler has stopped (a
///   handler blocking its thread is waited for), and then leaves it to be
///   reclaimed after the visibility timeout, not at once. Work a handler hands to
///   another thread and stops awaiting (a `spawn_blocking` whose handle it drops)
///   is beyond what the worker can see: keep the visibility timeout above such
///   work, or await it.
/// - **Dropping the future** [`run`](Self::run) returns (a `select!` against a
///   signal, an aborted task) stops the reading; handlers already running go on
///   to their end and settle, their entries renewed meanwhile, as if the shutdown
///   deadline were infinite. A process that exits instead is a crash (above).
///
/// **On PostgreSQL** (`Queue::postgres`) the same holds, with these storage calls:
/// a take of due entries (`FOR UPDATE SKIP LOCKED`, as many as there are free slots)
/// gives each a token of its own run and a lease of the visibility timeout; every
/// running entry is renewed in one statement per tick; reclaim is a take of an
/// entry whose lease lapsed; an idle worker is woken by `LISTEN/NOTIFY` and polls
/// every [poll interval](Self::with_poll_interval) as a fallback. The handler is
/// called with the run's claim, so a
/// `postgres::Transactional` handler (made by `PostgresStore::transactional` on
/// the queue's pool and tables) commits its writes with the event's done mark,
/// checked against the run's token: a run whose entry another worker took over
/// commits nothing. Pick that *transactional mode* for short handlers that write to
/// the database, and a plain handler (the *leased mode*: no transaction held while
/// it runs) for slow ones; the [queue chapter](crate::guide::queue) says more.
///
/// **In memory** ([`Queue::in_memory`]) the PostgreSQL model holds, in the
/// process: a take hands out due entries under a lease of the visibility timeout,
/// renewed every third of it; an idle worker sleeps until an entry is queued,
/// replayed or settled, or the next one is due (no polling). A handler is called
/// with no claim, as on Redis. [`run_until_idle`](Self::run_until_idle) runs a
/// worker until the queue is drained, on every backend.
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
    /// Set by `with_handler_isolation`; otherwise off where the renewal runs on a
    /// thread of its own (see `renews_apart`).
    isolate: Option<bool>,
    gate: gate::Gate,
}

impl Settings {
    /// How often running entries are renewed.
    fn renew_every(&self) -> Duration {
        (self.visibility / 3).max(Duration::from_millis(10))
    }

    /// How often stale entries are reclaimed and this worker's own are checked.
    fn reclaim_every(&self) -> Duration {
        (self.visibility / 4).max(Duration::from_millis(10))
    }
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
    /// Runs whose entry another worker took over meanwhile (this one lost Redis, or
    /// stalled, for longer than the visibility timeout): the event may have run
    /// twice.
    pub lost: u64,
    /// Runs cancelled at the shutdown deadline (left for reclaim after the
    /// visibility timeout).
    pub abandoned: u64,
}

#[derive(Default)]
struct Counters {
    handled: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
    lost: AtomicU64,
    abandoned: AtomicU64,
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
                isolate: None,
                gate: gate::Gate::default(),
            },
        }
    }
}

impl<H> Worker<H> {
    /// How many handlers run at once (at least 1, at most `u32::MAX`, and
    /// `tokio::sync::Semaphore::MAX_PERMITS` where that is less; default 8). The
    /// bound lets a [rate limit](Self::with_rate_limit) or
    /// [circuit breaker](Self::with_circuit_breaker) hold back every free slot it
    /// did not admit.
    #[must_use]
    pub fn with_concurrency(mut self, handlers: usize) -> Self {
        let most = usize::try_from(u32::MAX).map_or(Semaphore::MAX_PERMITS, |most| {
            most.min(Semaphore::MAX_PERMITS)
        });
        self.settings.concurrency = handlers.clamp(1, most);
        self
    }

    /// Whether each handler runs on Tokio's blocking pool (`true`) or in its entry's
    /// task on the caller's runtime (`false`).
    ///
    /// Off by default on Redis and PostgreSQL: the worker renews its entries on a
    /// thread of its own, with a runtime and a connection of its own, so a handler
    /// that blocks its thread (even every thread of the runtime) for longer than
    /// the visibility timeout stalls neither the renewal of its entry nor its
    /// guarantee, and the hand-off to another thread (tens of µs of CPU per event)
    /// is not paid. Isolation on still lets a handler that blocks leave the
    /// runtime's threads to the other handlers and to the reading.
    ///
    /// On by default where the renewals run on the caller's runtime: in memory
    /// (they follow Tokio's clock, which a test may pause) and on Redis over a
    /// connection made from a `ConnectionManager` or `ClusterConnection` opened
    /// elsewhere (the worker cannot open another like it). There, turned off, a
    /// handler that blocks every thread of the runtime for longer than the
    /// visibility timeout stalls the renewal, and another worker may run the
    /// event again.
    #[must_use]
    pub fn with_handler_isolation(mut self, isolate: bool) -> Self {
        self.settings.isolate = Some(isolate);
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

    /// The longest pause before the first retry, doubled for each further one up to
    /// `max` (defaults 1 s and 5 min). Each pause is a random point between half and
    /// all of that, so retries of events that failed together spread out.
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
    /// signal before it cancels them (default 30 s). `run` returns once every
    /// cancelled handler has really stopped.
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
    /// This worker's name and the token of this run.
    consumer: Consumer,
    queue: Queue,
    handler: Arc<H>,
    settings: Settings,
    counters: Counters,
    /// Whether handlers run on Tokio's blocking pool.
    isolate: bool,
    /// The key names of each partition (Redis), made once.
    keys: Vec<Keys>,
    /// The settler of each partition (Redis): it records the successes the entry
    /// tasks send it, as many at once as are waiting.
    settlers: Vec<mpsc::UnboundedSender<Success>>,
    /// Wakes the keeper once the worker is closed, and as entries land after that,
    /// so that it ends as soon as nothing runs here any more.
    wake: Notify,
    /// Entries being run (or settled) here, by (partition, entry id).
    in_flight: Mutex<HashMap<(u16, String), Arc<Flight>>>,
    /// Fired at the shutdown deadline: running handlers are cancelled, and settles
    /// that fail are not tried again.
    stopped: Notify,
    is_stopped: AtomicBool,
    /// `run` has ended or was dropped.
    closed: AtomicBool,
}

/// One entry being run here.
struct Flight {
    /// The entry's event.
    event_id: String,
    /// The run's token (PostgreSQL, memory; empty on Redis, where the consumer's is
    /// used).
    token: String,
    /// Settling: renewal may find it settled, which is no loss.
    settling: AtomicBool,
    /// Another worker took it over.
    lost: AtomicBool,
    /// Renewals so far. They run on the renewal thread and are counted when the
    /// entry's task ends, in the worker's own context (so a thread-local metrics
    /// recorder sees them).
    renewed: AtomicU64,
}

impl Flight {
    fn new(event_id: String, token: String) -> Self {
        Self {
            event_id,
            token,
            settling: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            renewed: AtomicU64::new(0),
        }
    }

    /// A renewal found the entry held (`true`), or taken over by another worker.
    fn renewal(&self, held: bool) {
        if held {
            self.renewed.fetch_add(1, Ordering::Relaxed);
        } else if !self.settling.load(Ordering::Relaxed) {
            self.lost.store(true, Ordering::Relaxed);
            warn_text("an entry being handled was taken over by another worker");
        }
    }
}

impl<H> Shared<H> {
    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<(u16, String), Arc<Flight>>> {
        // A panic cannot happen while the lock is held; recover the map regardless.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The worker is closed and nothing runs here any more: the keeper ends.
    fn ended(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.flights().is_empty()
    }

    /// Waits for the next renewal, every third of the visibility timeout; `false`
    /// (at once) once the worker is closed and nothing runs here any more.
    async fn next_tick(&self) -> bool {
        let mut sleep = pin!(tokio::time::sleep(self.settings.renew_every()));
        loop {
            if self.ended() {
                return false;
            }
            let woken = pin!(self.wake.notified());
            if let Either::Left(_) = select(sleep.as_mut(), woken).await {
                return !self.ended();
            }
        }
    }

    fn stopped(&self) -> impl Future<Output = ()> + '_ {
        let notified = self.stopped.notified();
        async move {
            if !self.is_stopped.load(Ordering::Acquire) {
                notified.await;
            }
        }
    }

    fn stop(&self) {
        self.is_stopped.store(true, Ordering::Release);
        self.stopped.notify_waiters();
    }

    fn add(&self, counter: &AtomicU64, name: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        count(name);
    }

    /// Runs `future` within the Redis time limit.
    fn bounded<T>(
        &self,
        what: &'static str,
        future: impl Future<Output = Result<T, QueueError>>,
    ) -> impl Future<Output = Result<T, QueueError>> {
        protocol::bounded(self.queue.timeout(), what, future)
    }
}

/// Marks the worker closed when `run` ends or is dropped: the renewal stops once
/// no entry is running here any more.
struct Closing<H>(Arc<Shared<H>>);

impl<H> Drop for Closing<H> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// The entry tasks: detached (dropping a handle does not abort its task).
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }

    /// Forgets the tasks that have ended.
    fn reap(&mut self) {
        self.0.retain(|task| !task.is_finished());
    }

    /// Waits for every task.
    async fn join_all(&mut self) {
        for task in self.0.drain(..) {
            let _ = task.await;
        }
    }
}

/// Removes an entry from the in-flight map when its task ends, or is dropped (or
/// its admission is dropped before its task started).
struct Landed<H> {
    shared: Arc<Shared<H>>,
    key: (u16, String),
}

impl<H> Drop for Landed<H> {
    fn drop(&mut self) {
        let flight = self.shared.flights().remove(&self.key);
        if let Some(flight) = flight {
            count_renewals(flight.renewed.load(Ordering::Relaxed));
        }
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.wake.notify_one();
        }
    }
}

/// When the reader last did each periodic step, and where it stands.
struct Reader {
    /// XAUTOCLAIM cursor of each partition.
    cursors: Vec<String>,
    /// Partitions whose last read failed: their own entries are taken back.
    recheck: Vec<bool>,
    last_reclaim: Option<Instant>,
    last_promote: Option<Instant>,
    last_layout: Instant,
    /// When the queue gauges were last set (feature `metrics`).
    #[cfg(feature = "metrics")]
    last_counts: Instant,
    /// The partition read first next time (so every partition gets its turn).
    start: u16,
}

impl<H: Handler> Worker<H> {
    /// Runs until `shutdown` completes, then stops reading and lets running handlers
    /// finish (up to the shutdown deadline). Redis errors while running are retried
    /// (and logged with the `tracing` feature); the worker does not stop for them.
    /// Each Redis call is bounded by the queue's [time limit](Queue::with_timeout).
    ///
    /// # Errors
    ///
    /// If the layout cannot be checked or the consumer groups created at start
    /// (Redis unreachable), or [`QueueError::LayoutMismatch`] at start or later (the
    /// worker then stops reading, lets running handlers finish, and returns it).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerStats, QueueError> {
        self.queue.prepare().await?;
        let consumer = Consumer {
            name: self.settings.consumer.clone(),
            token: crate::dedup::ClaimToken::new().to_string(),
            visibility: self.settings.visibility,
        };
        let apart = renews_apart(&self.queue);
        let keys: Vec<Keys> = if in_redis(&self.queue) {
            (0..self.queue.partitions())
                .map(|p| self.queue.keys(p))
                .collect()
        } else {
            Vec::new()
        };
        // Each ends once the worker's state is gone (its sender with it).
        let settlers = keys
            .iter()
            .map(|keys| {
                let (sender, successes) = mpsc::unbounded_channel();
                let settler = settle_successes(
                    self.queue.clone(),
                    keys.clone(),
                    consumer.clone(),
                    successes,
                );
                tokio::spawn(settler);
                sender
            })
            .collect();
        let shared = Arc::new(Shared {
            consumer,
            isolate: self.settings.isolate.unwrap_or(!apart),
            keys,
            settlers,
            queue: self.queue,
            handler: self.handler,
            settings: self.settings,
            wake: Notify::new(),
            counters: Counters::default(),
            in_flight: Mutex::new(HashMap::new()),
            stopped: Notify::new(),
            is_stopped: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        // Entry tasks and the renewal are not tied to this future: if it is dropped
        // (instead of `shutdown` completing), running handlers go on to their end
        // and settle, their entries renewed until then, as if the deadline were
        // infinite.
        let keeper = start_keeper(&shared, apart)?;
        let closing = Closing(Arc::clone(&shared));
        let mut tasks = Tasks::default();
        let ended = read(&shared, &mut tasks, shutdown).await;
        drain(&shared, &mut tasks).await;
        drop(closing);
        if let Some(keeper) = keeper {
            // Woken by the closing, it ends at once unless a renewal is under way.
            let _ = keeper.await;
        }
        let c = &shared.counters;
        let stats = WorkerStats {
            handled: c.handled.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
        };
        ended.map(|()| stats)
    }
}

/// Whether the worker's renewals run on a thread of their own, over a connection
/// of their own, so that handlers blocking every thread of the caller's runtime
/// cannot stall them (and handlers need no isolation): on PostgreSQL, and on Redis
/// when the queue's connection can be opened again (made from a URL). In memory the
/// renewals follow Tokio's clock, on the caller's runtime.
fn renews_apart(queue: &Queue) -> bool {
    if queue.memory().is_some() {
        return false;
    }
    #[cfg(feature = "postgres")]
    if queue.pg().is_some() {
        return true;
    }
    queue.connection().can_reopen()
}

/// Whether the queue is in Redis.
fn in_redis(queue: &Queue) -> bool {
    #[cfg(feature = "postgres")]
    if queue.pg().is_some() {
        return false;
    }
    queue.memory().is_none()
}

/// Starts the keeper: on a thread of its own when `apart` (then the receiver
/// completes once it has ended), else as a task of the caller's runtime.
///
/// # Errors
///
/// If the thread or its runtime cannot be made.
fn start_keeper<H: Handler>(
    shared: &Arc<Shared<H>>,
    apart: bool,
) -> Result<Option<tokio::sync::oneshot::Receiver<()>>, QueueError> {
    let shared = Arc::clone(shared);
    if let Some(memory) = shared.queue.memory() {
        let memory = Arc::clone(memory);
        tokio::spawn(memory::keep(shared, memory));
        return Ok(None);
    }
    if !apart {
        tokio::spawn(keep(shared, false));
        return Ok(None);
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = shared.queue.pg() {
        let pg = Arc::clone(pg);
        return keep_apart(move || pg::keep(shared, pg)).map(Some);
    }
    keep_apart(move || keep(shared, true)).map(Some)
}

/// Runs the future `make` returns on a thread of its own, in a current-thread
/// runtime of its own; the receiver completes once it has ended (and its runtime,
/// with the connections opened on it, is gone).
fn keep_apart<F, Fut>(make: F) -> Result<tokio::sync::oneshot::Receiver<()>, QueueError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(QueueError::new)?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("notmeta-renewal".to_owned())
        .spawn(move || {
            runtime.block_on(make());
            drop(runtime);
            let _ = done.send(());
        })
        .map_err(QueueError::new)?;
    Ok(ended)
}

/// Reads and starts entries until `shutdown` completes, from the queue's backend.
async fn read<H: Handler>(
    shared: &Arc<Shared<H>>,
    tasks: &mut Tasks,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), QueueError> {
    if let Some(memory) = shared.queue.memory() {
        let memory = Arc::clone(memory);
        return memory::read_until(shared, &memory, tasks, shutdown).await;
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = shared.queue.pg() {
        let pg = Arc::clone(pg);
        return pg::read_until(shared, &pg, tasks, shutdown).await;
    }
    read_until(shared, tasks, shutdown).await
}

/// Reads and starts entries until `shutdown` completes (or the layout turns out
/// wrong).
async fn read_until<H: Handler>(
    shared: &Arc<Shared<H>>,
    tasks: &mut Tasks,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueError> {
    let settings = &shared.settings;
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let mut shutdown = pin!(shutdown);
    let partitions = shared.queue.partitions();
    let mut reader = Reader {
        cursors: vec!["0-0".to_owned(); usize::from(partitions)],
        recheck: vec![false; usize::from(partitions)],
        last_reclaim: None,
        last_promote: None,
        last_layout: Instant::now(),
        #[cfg(feature = "metrics")]
        last_counts: Instant::now(),
        start: 0,
    };
    let mut connection = shared.queue.connection().clone();
    loop {
        tasks.reap();
        // Backpressure: wait for a free slot before reading anything.
        let Some(free) = free_slots(&slots, shutdown.as_mut()).await else {
            return Ok(());
        };
        let Some((free, round)) = gate::admit(shared, &slots, free, shutdown.as_mut()).await else {
            return Ok(());
        };
        if reader.last_layout.elapsed() >= LAYOUT_RECHECK {
            reader.last_layout = Instant::now();
            match shared.queue.check_layout().await {
                Err(error @ QueueError::LayoutMismatch { .. }) => {
                    warn("layout", &error);
                    return Err(error);
                }
                Err(error) => warn("layout", &error),
                Ok(()) => {}
            }
        }
        #[cfg(feature = "metrics")]
        if reader.last_counts.elapsed() >= LAYOUT_RECHECK {
            reader.last_counts = Instant::now();
            // Sets the queue gauges; only reads, so it can hide no fault.
            let _ = shared.queue.counts().await;
        }
        if super::pause::holds(&shared.queue).await {
            // Paused: nothing taken; what runs goes on and settles.
            drop(round);
            let pause = pin!(tokio::time::sleep(settings.poll));
            if let Either::Right(_) = select(pause, shutdown.as_mut()).await {
                return Ok(());
            }
            continue;
        }
        let mut got = promote(shared, &mut connection, &mut reader).await;
        got += reclaim(shared, &mut connection, &mut reader, &slots, tasks).await;
        // What the pass admits, less what the reclaim started.
        let left = free.saturating_sub(got);
        let (read, failed) =
            read_new(shared, &mut connection, &mut reader, &slots, tasks, left).await;
        got += read;
        if got == 0 || failed {
            // Nothing to start: an unused probe goes back while this waits.
            drop(round);
            let pause = pin!(tokio::time::sleep(settings.poll));
            if let Either::Right(_) = select(pause, shutdown.as_mut()).await {
                return Ok(());
            }
        }
    }
}

/// Waits for a free slot: how many are free then, or `None` once `shutdown` has
/// completed.
async fn free_slots(
    slots: &Semaphore,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<usize> {
    match select(pin!(slots.acquire()), shutdown).await {
        Either::Left((Ok(permit), _)) => {
            drop(permit);
            Some(slots.available_permits().min(MAX_TAKE))
        }
        Either::Left((Err(_), _)) | Either::Right(_) => None,
    }
}

/// Moves due retries back into the streams (every poll interval, at most every
/// 250 ms); counts nothing read.
async fn promote<H>(
    shared: &Shared<H>,
    connection: &mut RedisConnection,
    reader: &mut Reader,
) -> usize {
    let every = shared.settings.poll.min(Duration::from_millis(250));
    if reader.last_promote.is_some_and(|t| t.elapsed() < every) {
        return 0;
    }
    reader.last_promote = Some(Instant::now());
    for p in 0..shared.queue.partitions() {
        let due = protocol::promote_due(&shared.queue, connection, p, 100);
        if let Err(e) = shared.bounded("the promotion of retries", due).await {
            heal(shared, connection, p, &e).await;
            warn("promote retries", &e);
        }
    }
    0
}

/// Every quarter of the visibility timeout: takes over entries idle for the
/// visibility timeout (their worker died or lost Redis), and takes back this
/// worker's own entries that nothing here runs (a read or start whose reply was
/// lost). Returns how many were started.
async fn reclaim<H: Handler>(
    shared: &Arc<Shared<H>>,
    connection: &mut RedisConnection,
    reader: &mut Reader,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
) -> usize {
    let due = reader
        .last_reclaim
        .is_none_or(|t| t.elapsed() >= shared.settings.reclaim_every());
    if due {
        reader.last_reclaim = Some(Instant::now());
    }
    let mut got = 0;
    let consumer = shared.consumer.name.as_str();
    for p in 0..shared.queue.partitions() {
        let i = usize::from(p);
        let mut hows = Vec::with_capacity(2);
        if due || reader.recheck[i] {
            // Idle past two renewals: nothing here renews it.
            hows.push(Take::Mine(shared.settings.renew_every() * 2));
        }
        if due {
            hows.push(Take::Stale(shared.settings.visibility, &reader.cursors[i]));
        }
        let mut next_cursor = None;
        for how in hows {
            let room = slots.available_permits().min(MAX_TAKE);
            if room == 0 {
                break;
            }
            let taken = protocol::take(&shared.queue, connection, p, consumer, how, room);
            match shared.bounded("a reclaim", taken).await {
                Ok((next, entries)) => {
                    if matches!(how, Take::Stale(..)) {
                        next_cursor = Some(next);
                    } else {
                        reader.recheck[i] = false;
                    }
                    for (entry_id, event_id) in entries {
                        got += usize::from(spawn(shared, slots, tasks, p, entry_id, event_id));
                    }
                }
                Err(e) => {
                    heal(shared, connection, p, &e).await;
                    warn("reclaim", &e);
                }
            }
        }
        if let Some(next) = next_cursor {
            reader.cursors[i] = next;
        }
    }
    got
}

/// Reads entries never delivered, partition by partition, for the free slots.
/// Returns how many were started, and whether a read failed.
async fn read_new<H: Handler>(
    shared: &Arc<Shared<H>>,
    connection: &mut RedisConnection,
    reader: &mut Reader,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
    free: usize,
) -> (usize, bool) {
    let partitions = shared.queue.partitions();
    let consumer = shared.consumer.name.as_str();
    let (mut got, mut failed) = (0, false);
    for i in 0..partitions {
        let p = (reader.start + i) % partitions;
        let room = slots.available_permits().min(free.saturating_sub(got));
        if room == 0 {
            break;
        }
        let taken = protocol::take(&shared.queue, connection, p, consumer, Take::New, room);
        match shared.bounded("a read", taken).await {
            Ok((_, entries)) => {
                // Only entries admitted (a slot, the gate's ticket, their place in
                // flight) have their runs started: one the gate refuses is left
                // unstarted, and taken back later with no run counted.
                let admitted: Vec<_> = entries
                    .into_iter()
                    .filter_map(|(entry_id, event_id)| {
                        let key = (p, entry_id.clone());
                        let flight = Flight::new(event_id.clone(), String::new());
                        Some((admit(shared, slots, key, flight)?, entry_id, event_id))
                    })
                    .collect();
                let ids: Vec<(String, String)> = admitted
                    .iter()
                    .map(|(_, entry_id, event_id)| (entry_id.clone(), event_id.clone()))
                    .collect();
                let mut begun = begin_all(shared, connection, p, &ids).await;
                for (admission, entry_id, event_id) in admitted {
                    let begun = begun
                        .as_mut()
                        .and_then(|(all, acknowledged)| Some((all.next()?, *acknowledged)));
                    launch(tasks, admission, move |shared, flight| async move {
                        process(&shared, p, &entry_id, &event_id, &flight, begun).await;
                    });
                    got += 1;
                }
            }
            Err(e) => {
                failed = true;
                // The reply may have been lost after Redis handed entries over: take
                // this worker's own entries back at the next pass.
                reader.recheck[usize::from(p)] = true;
                heal(shared, connection, p, &e).await;
                warn("read", &e);
            }
        }
    }
    reader.start = (reader.start + 1) % partitions;
    (got, failed)
}

/// Starts the runs of entries just read, in one script: their answers in order,
/// and whether the replicas acknowledged them; `None` if that failed (each entry's
/// task then starts its run itself: a start sent again is not counted twice).
async fn begin_all<H>(
    shared: &Shared<H>,
    connection: &mut RedisConnection,
    p: u16,
    entries: &[(String, String)],
) -> Option<(std::vec::IntoIter<Begun>, bool)> {
    let keys = shared.keys.get(usize::from(p))?;
    if entries.is_empty() {
        return None;
    }
    let begun = protocol::begin_many(&shared.queue, connection, keys, &shared.consumer, entries);
    match shared.bounded("the start of runs", begun).await {
        Ok((begun, acknowledged)) => Some((begun.into_iter(), acknowledged)),
        Err(e) => {
            warn("start", &e);
            None
        }
    }
}

/// After an error that says the consumer group is missing (Redis lost its data),
/// creates it again, with the layout.
async fn heal<H>(shared: &Shared<H>, connection: &mut RedisConnection, p: u16, error: &QueueError) {
    if !protocol::is_missing_group(error) {
        return;
    }
    count_heal();
    if let Err(e) = shared.queue.ensure_group(connection, p).await {
        warn("recreate the consumer group", &e);
    }
    if let Err(e) = shared.queue.check_layout().await {
        warn("layout", &e);
    }
}

/// After the reading stopped: waits for running handlers up to the shutdown
/// deadline, then cancels the rest and waits until they have really stopped.
async fn drain<H>(shared: &Shared<H>, tasks: &mut Tasks) {
    let deadline = tokio::time::sleep(shared.settings.shutdown_deadline);
    let mut joined = Box::pin(async {
        tasks.join_all().await;
    });
    if let Either::Left(_) = select(joined.as_mut(), pin!(deadline)).await {
        return;
    }
    // Cancelled at their next `.await`; a handler blocking its thread is waited for,
    // and its entry renewed meanwhile.
    shared.stop();
    joined.await;
}

/// Starts a task for an entry (its task starts its run), unless it runs here
/// already; whether one started.
fn spawn<H: Handler>(
    shared: &Arc<Shared<H>>,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
    partition: u16,
    entry_id: String,
    event_id: String,
) -> bool {
    let key = (partition, entry_id.clone());
    let flight = Flight::new(event_id.clone(), String::new());
    start(
        shared,
        slots,
        tasks,
        key,
        flight,
        move |shared, flight| async move {
            process(&shared, partition, &entry_id, &event_id, &flight, None).await;
        },
    )
}

/// Starts `work` for the entry `key` in a task of its own, holding a slot, unless
/// the entry runs here already or is not admitted; whether it started. The entry
/// is in the in-flight map (which the keeper renews) until the task ends.
fn start<H, W, Fut>(
    shared: &Arc<Shared<H>>,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
    key: (u16, String),
    flight: Flight,
    work: W,
) -> bool
where
    H: Send + Sync + 'static,
    W: FnOnce(Arc<Shared<H>>, Arc<Flight>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match admit(shared, slots, key, flight) {
        Some(admission) => {
            launch(tasks, admission, work);
            true
        }
        None => false,
    }
}

/// An entry admitted to run here: its slot, the gate's ticket, and its place in
/// the in-flight map (given up if this is dropped before its task starts).
struct Admission<H> {
    landed: Landed<H>,
    flight: Arc<Flight>,
    permit: OwnedSemaphorePermit,
    ticket: gate::Ticket,
}

/// Admits the entry `key` to run here: `None` if it runs here already, no slot is
/// free, or the gate admits no more in this pass.
fn admit<H>(
    shared: &Arc<Shared<H>>,
    slots: &Arc<Semaphore>,
    key: (u16, String),
    flight: Flight,
) -> Option<Admission<H>> {
    let mut flights = shared.flights();
    if flights.contains_key(&key) {
        // Running here already: the reclaim only reset its idle time.
        return None;
    }
    // The reader asked for no more entries than there were free slots.
    let permit = Arc::clone(slots).try_acquire_owned().ok()?;
    let ticket = shared.settings.gate.ticket()?;
    let flight = Arc::new(flight);
    flights.insert(key.clone(), Arc::clone(&flight));
    drop(flights);
    Some(Admission {
        landed: Landed {
            shared: Arc::clone(shared),
            key,
        },
        flight,
        permit,
        ticket,
    })
}

/// Runs `work` for an admitted entry in a task of its own.
fn launch<H, W, Fut>(tasks: &mut Tasks, admission: Admission<H>, work: W)
where
    H: Send + Sync + 'static,
    W: FnOnce(Arc<Shared<H>>, Arc<Flight>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Admission {
        landed,
        flight,
        permit,
        ticket,
    } = admission;
    tasks.spawn(async move {
        let _permit = permit;
        let shared = Arc::clone(&landed.shared);
        let _landed = landed;
        // The run's future is made and boxed once the task runs: the task stays
        // small, and spawning it copies no more than what `work` holds (a run's
        // whole state, copied at each move, cost a tenth of a drain's CPU).
        let task = Box::pin(work(shared, flight));
        gate::carry(ticket, task).await;
    });
}

/// Renews every running entry, one call per partition, every third of the
/// visibility timeout; marks those another worker took over. Ends once the worker
/// is closed and nothing runs here any more. `own`: over a connection of its own,
/// opened (and, while that fails, tried again at each renewal) on the runtime
/// this runs on; else over the queue's.
async fn keep<H>(shared: Arc<Shared<H>>, own: bool) {
    let queue = shared.queue.connection();
    let open = || async {
        let opened = async {
            Ok(match queue.reopen() {
                Some(opening) => Some(opening.await?),
                None => None,
            })
        };
        match shared.bounded("a renewal", opened).await {
            Ok(connection) => connection,
            Err(e) => {
                warn("renew", &e);
                None
            }
        }
    };
    // Its own connection is opened beside the renewals (the first tick and any
    // while the server refuses it, at its client limit say): meanwhile they go out
    // on the worker's connection, given up once its own is open.
    let mut connection = if own { None } else { Some(queue.clone()) };
    let mut opening = None;
    loop {
        let tick = pin!(shared.next_tick());
        let more = if connection.is_some() {
            tick.await
        } else {
            let reopening = opening.get_or_insert_with(|| Box::pin(open()));
            match select(tick, reopening).await {
                Either::Left((more, _)) => more,
                Either::Right((opened, tick)) => {
                    (connection, opening) = (opened, None);
                    tick.await
                }
            }
        };
        if !more {
            return;
        }
        if connection.is_none() {
            let mut shared_connection = queue.clone();
            let reopening = opening.get_or_insert_with(|| Box::pin(open()));
            let renewing = pin!(renew_all(&shared, &mut shared_connection));
            if let Either::Right((opened, renewing)) = select(renewing, reopening).await {
                opening = None;
                match opened {
                    Some(opened) => connection = Some(opened),
                    None => renewing.await,
                }
            }
        }
        if let Some(connection) = connection.as_mut() {
            renew_all(&shared, connection).await;
        }
    }
}

/// Renews every running entry not lost, one call per partition (500 entries at
/// most per call); marks those another worker took over.
async fn renew_all<H>(shared: &Shared<H>, connection: &mut RedisConnection) {
    let consumer = &shared.consumer;
    let mut by_partition: HashMap<u16, Vec<(String, Arc<Flight>)>> = HashMap::new();
    for ((p, id), flight) in shared.flights().iter() {
        if !flight.lost.load(Ordering::Relaxed) {
            by_partition
                .entry(*p)
                .or_default()
                .push((id.clone(), Arc::clone(flight)));
        }
    }
    for (p, flights) in by_partition {
        for chunk in flights.chunks(500) {
            let entries: Vec<(String, String)> = chunk
                .iter()
                .map(|(id, flight)| (id.clone(), flight.event_id.clone()))
                .collect();
            let renewed = protocol::renew(&shared.queue, connection, p, consumer, &entries);
            match shared.bounded("a renewal", renewed).await {
                Ok(lost) => {
                    for (id, flight) in chunk {
                        flight.renewal(!lost.contains(id));
                    }
                }
                Err(e) => warn("renew", &e),
            }
        }
    }
}

/// Waits for the next renewal (every third of the visibility timeout), then gives
/// the entries running here and not lost, by their id as the backend numbers them,
/// with their flights; `None` once the worker is closed and nothing runs here any
/// more. For the backends with a token per run (PostgreSQL, memory).
async fn next_renewal<H, I: std::str::FromStr>(
    shared: &Shared<H>,
) -> Option<Vec<(I, Arc<Flight>)>> {
    if !shared.next_tick().await {
        return None;
    }
    Some(
        shared
            .flights()
            .iter()
            .filter(|(_, flight)| !flight.lost.load(Ordering::Relaxed))
            .filter_map(|((_, id), flight)| Some((id.parse().ok()?, Arc::clone(flight))))
            .collect(),
    )
}

/// After a renewal: marks lost the flights it did not find `held` (another worker
/// took them over), unless they were settling.
fn mark_lost<I>(flights: &[(I, Arc<Flight>)], held: impl Fn(&I) -> bool) {
    for (id, flight) in flights {
        flight.renewal(held(id));
    }
}

/// One entry: start the run (unless `begun` is its start, made already), run the
/// handler, settle.
async fn process<H: Handler>(
    shared: &Shared<H>,
    p: u16,
    entry_id: &str,
    event_id: &str,
    flight: &Flight,
    begun: Option<(Begun, bool)>,
) {
    if shared.is_stopped.load(Ordering::Acquire) {
        return;
    }
    let Some(keys) = shared.keys.get(usize::from(p)) else {
        return;
    };
    let begun = match begun {
        Some(begun) => Ok(begun),
        None => {
            let mut connection = shared.queue.connection().clone();
            let begun = protocol::begin(
                &shared.queue,
                &mut connection,
                keys,
                &shared.consumer,
                entry_id,
                event_id,
            );
            shared.bounded("the start of a run", begun).await
        }
    };
    let (runs, entry) = match begun {
        Ok((Begun::Run(runs, entry), acknowledged)) => {
            if !acknowledged && !confirm(shared, p, entry_id, event_id).await {
                return;
            }
            (runs, entry)
        }
        Ok((Begun::Settled, _)) => {
            shared.add(&shared.counters.skipped, "skipped");
            return;
        }
        Ok((Begun::Gone | Begun::NotOwner, _)) => return,
        Err(e) => {
            // Left in this worker's pending list: taken back at the next reclaim.
            warn("start", &e);
            return;
        }
    };
    if shared.is_stopped.load(Ordering::Acquire) {
        // Started as the shutdown deadline passed: not run, left for reclaim.
        shared.add(&shared.counters.abandoned, "abandoned");
        return;
    }
    let Some(how) = decide(shared, runs, &entry.body, None, entry.trace.as_ref()).await else {
        return;
    };
    settle(
        shared,
        p,
        keys,
        entry_id,
        &Entry {
            attempt: runs,
            ..entry
        },
        &how,
        flight,
    )
    .await;
}

/// Runs the handler on an entry's body (unless its runs are used up or the body no
/// longer parses) and says how to settle the entry; `None` when the run was
/// cancelled at the shutdown deadline (the entry is left for reclaim). `runs`
/// counts this run; `trace` is the entry's trace context (the handler runs in a
/// span that carries it, feature `tracing`).
async fn decide<H: Handler>(
    shared: &Shared<H>,
    runs: u64,
    body: &[u8],
    claim: Option<Claimed>,
    trace: Option<&TraceContext>,
) -> Option<Settle> {
    let max = u64::from(shared.settings.max_attempts);
    let before = runs.saturating_sub(1);
    if before >= max {
        return Some(Settle::Dead(format!(
            "gave up after {before} attempts; the last did not finish (its worker stopped)"
        )));
    }
    Some(match Event::parse_unverified(body) {
        Err(e) => Settle::Dead(format!("the body does not parse: {e}")),
        Ok(event) => match run_traced(shared, event, runs, trace, claim).await {
            None => {
                // Cancelled at the shutdown deadline: left for reclaim.
                shared.add(&shared.counters.abandoned, "abandoned");
                return None;
            }
            Some(Ok(())) => Settle::Done,
            Some(Err(Failure::Permanent(text))) => Settle::Dead(text),
            Some(Err(Failure::Temporary(text))) if runs >= max => {
                Settle::Dead(format!("{text} (attempt {runs} of {max})"))
            }
            Some(Err(Failure::Temporary(_))) => {
                Settle::Retry(jitter(backoff(&shared.settings, runs), random_fraction()))
            }
        },
    })
}

/// After a start the replicas did not acknowledge (it was applied on the primary):
/// asks again, while the keeper renews the entry, until they acknowledge that this
/// worker owns it (`true`: run it), it turns out lost, or the shutdown deadline
/// passes (left for reclaim).
async fn confirm<H>(shared: &Shared<H>, p: u16, entry_id: &str, event_id: &str) -> bool {
    let confirmed = retrying(
        || async {
            let connection = shared.queue.connection();
            let owned = protocol::confirm(
                &shared.queue,
                connection,
                p,
                &shared.consumer,
                entry_id,
                event_id,
            );
            shared.bounded("the start of a run", owned).await
        },
        |e| warn("start", e),
        |_, _| shared.is_stopped.load(Ordering::Acquire),
    )
    .await;
    confirmed == Some(true)
}

/// The longest pause before the next attempt after `failures` failed runs (each
/// pause is a random point between half and all of it).
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

/// Runs the handler (isolated on the blocking pool unless isolation is off) until
/// it ends, or until the shutdown deadline cancels it (`None`). Renewal is the
/// keeper's, which runs beside every handler.
async fn run<H: Handler>(
    shared: &Shared<H>,
    event: Event<'static>,
    claim: Option<Claimed>,
) -> Option<Result<(), Failure>> {
    let started = Instant::now();
    let ran = run_beside(
        &shared.handler,
        Call {
            event: Box::new(event),
            claim,
        },
        shared.isolate,
        pin!(pending()),
        pin!(shared.stopped()),
    )
    .await;
    gate::ran(&ran);
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(crate::receiver::metrics::QUEUE_HANDLER_SECONDS)
        .record(started.elapsed().as_secs_f64());
    let _ = started;
    match ran {
        Ran::Finished(Ok(())) => Some(Ok(())),
        Ran::Finished(Err(error)) if error.is_temporary() => {
            Some(Err(Failure::Temporary(describe(&error))))
        }
        Ran::Finished(Err(error)) => Some(Err(Failure::Permanent(describe(&error)))),
        // The panic's payload is not kept: it is the handler's, and may hold anything.
        Ran::Panicked => Some(Err(Failure::Temporary("the handler panicked".to_owned()))),
        Ran::Stopped | Ran::Cancelled => None,
    }
}

/// [`run`], in the run's span, which carries the entry's trace context (feature
/// `tracing`; see `TracePropagation`).
async fn run_traced<H: Handler>(
    shared: &Shared<H>,
    event: Event<'_>,
    runs: u64,
    trace: Option<&TraceContext>,
    claim: Option<Claimed>,
) -> Option<Result<(), Failure>> {
    #[cfg(feature = "tracing")]
    {
        let propagation = shared.queue.trace_propagation();
        let span = super::trace_context::run_span(&event, runs, trace, propagation);
        let ran = run(shared, event.into_owned(), claim);
        let ran = tracing::Instrument::instrument(ran, span.clone()).await;
        let outcome = match &ran {
            None => "cancelled",
            Some(Ok(())) => "handled",
            Some(Err(Failure::Temporary(_))) => "temporary_failure",
            Some(Err(Failure::Permanent(_))) => "permanent_failure",
        };
        span.record("outcome", outcome);
        ran
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (runs, trace);
        run(shared, event.into_owned(), claim).await
    }
}

/// Settles the entry, trying again while Redis fails (the keeper renews it
/// meanwhile) until it is applied or the shutdown deadline has passed.
async fn settle<H>(
    shared: &Shared<H>,
    p: u16,
    keys: &Keys,
    entry_id: &str,
    entry: &Entry,
    how: &Settle,
    flight: &Flight,
) {
    let consumer = &shared.consumer;
    // A success without a key limit goes to its partition's settler, which records
    // it with the others waiting.
    let settler = match how {
        Settle::Done
            if super::ordering::ordered_scripts(&shared.queue, entry.key.as_deref()).is_none() =>
        {
            shared.settlers.get(usize::from(p))
        }
        _ => None,
    };
    settle_with(shared, how, flight, || async {
        if let Some(settler) = settler {
            let (answer, answered) = oneshot::channel();
            let success = Success {
                entry_id: entry_id.to_owned(),
                event_id: entry.event_id.clone(),
                answer,
            };
            if settler.send(success).is_ok() {
                // Not bounded here: the settler answers each success it takes, each
                // of its scripts within the time limit (a wait bounded here would
                // count the time queued behind other scripts, and send again what
                // is about to be recorded).
                return answered
                    .await
                    .unwrap_or_else(|_| Err(QueueError::new("the settler stopped")));
            }
        }
        let mut connection = shared.queue.connection().clone();
        let settle = protocol::settle(
            &shared.queue,
            &mut connection,
            keys,
            consumer,
            entry_id,
            entry,
            how,
        );
        shared.bounded("a settle", settle).await
    })
    .await;
}

/// The most successes one script records.
const SETTLE_BATCH: usize = 100;

/// A success to record (Redis), sent to its partition's settler.
struct Success {
    entry_id: String,
    event_id: String,
    answer: oneshot::Sender<Result<Settled, QueueError>>,
}

/// A partition's settler: records the successes its entry tasks send, those
/// waiting (up to [`SETTLE_BATCH`] at a time) in one script, one script at a time,
/// each within the queue's time limit, and answers each; ends once every sender is
/// gone. Before each script it takes every success waiting and leaves out those
/// whose task stopped waiting (it was stopped, or sent it again): while Redis
/// stalls, what waits here stays about one success per waiting task.
async fn settle_successes(
    queue: Queue,
    keys: Keys,
    consumer: Consumer,
    mut successes: mpsc::UnboundedReceiver<Success>,
) {
    let mut connection = queue.connection().clone();
    let mut waiting: VecDeque<Success> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match successes.recv().await {
                Some(first) => waiting.push_back(first),
                None => return,
            }
        }
        while let Ok(next) = successes.try_recv() {
            waiting.push_back(next);
        }
        waiting.retain(|success| !success.answer.is_closed());
        let n = waiting.len().min(SETTLE_BATCH);
        let mut batch: Vec<Success> = waiting.drain(..n).collect();
        if batch.is_empty() {
            continue;
        }
        let entries: Vec<(String, String)> = batch
            .iter_mut()
            .map(|s| {
                (
                    std::mem::take(&mut s.entry_id),
                    std::mem::take(&mut s.event_id),
                )
            })
            .collect();
        let settled =
            protocol::settle_done_many(&queue, &mut connection, &keys, &consumer, &entries);
        match protocol::bounded(queue.timeout(), "a settle", settled).await {
            Ok(settled) => {
                for (success, settled) in batch.into_iter().zip(settled) {
                    let _ = success.answer.send(Ok(settled));
                }
            }
            Err(error) => {
                let text = error.to_string();
                for success in batch {
                    let _ = success.answer.send(Err(QueueError::new(text.clone())));
                }
            }
        }
    }
}

/// Applies a settle with `attempt`, trying again while the store fails until it is
/// applied or the shutdown deadline has passed, and counts what it found.
async fn settle_with<H, F, Fut>(shared: &Shared<H>, how: &Settle, flight: &Flight, attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Settled, QueueError>>,
{
    flight.settling.store(true, Ordering::Relaxed);
    let settled = retrying(
        attempt,
        |e| warn("settle", e),
        |_, _| shared.is_stopped.load(Ordering::Acquire),
    )
    .await;
    let c = &shared.counters;
    let lost_before = flight.lost.load(Ordering::Relaxed);
    let lost = match settled {
        None => {
            // The store failed until the shutdown deadline: the entry stays with
            // this worker, and runs again once reclaimed.
            warn_text("an entry's outcome could not be recorded before shutdown");
            return;
        }
        Some(Settled::Applied) => {
            match how {
                Settle::Done => shared.add(&c.handled, "handled"),
                Settle::Dead(_) => shared.add(&c.dead_lettered, "dead_lettered"),
                Settle::Retry(_) => shared.add(&c.retried, "retried"),
            }
            lost_before
        }
        Some(Settled::DoneNotOwner) => {
            shared.add(&c.handled, "handled");
            true
        }
        Some(Settled::AlreadyDone | Settled::NotOwner) => true,
    };
    if lost {
        shared.add(&c.lost, "lost");
        warn_text("a run's entry was taken over by another worker: the event may have run twice");
    }
}

fn count(_what: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::QUEUE_RUNS_TOTAL, "outcome" => _what)
        .increment(1);
}

fn count_renewals(_n: u64) {
    #[cfg(feature = "metrics")]
    if _n > 0 {
        ::metrics::counter!(crate::receiver::metrics::QUEUE_RENEWALS_TOTAL).increment(_n);
    }
}

fn count_heal() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::QUEUE_GROUPS_RECREATED_TOTAL).increment(1);
    warn_text("the consumer group was missing (Redis lost its data?): created again");
}

fn warn(_operation: &'static str, _error: &QueueError) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::QUEUE_REDIS_ERRORS_TOTAL, "operation" => _operation)
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        operation = _operation,
        error = %_error,
        cause = std::error::Error::source(_error).map(ToString::to_string),
        "queue storage call failed"
    );
}

fn warn_text(_text: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!("{_text}");
}
