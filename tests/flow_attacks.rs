//! Hostile settings and awkward timings against the worker's circuit breaker,
//! rate limit, pause and `run_until_idle`, on the queue in memory (and a real
//! `redis-server` where the backend matters): each run ends within its limit, no
//! attempt is spent while work may not start, and no event runs twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::queue::{Queue, QueueCounts, QueueError, Worker, WorkerStats};
use notmeta_webhooks::receiver::{Answer, Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

mod common;
use common::outage::breaker_opened;
use common::queue::{Runs, body, count, counting, enqueuer, send};

/// Runs `worker` until idle with `limit`, which must end it (well within 20 s)
/// with `NotIdle`: what the queue held then.
async fn not_idle<H: Handler>(worker: Worker<H>, limit: Duration) -> QueueCounts {
    let result = tokio::time::timeout(Duration::from_secs(20), worker.run_until_idle(limit))
        .await
        .expect("run_until_idle keeps to its limit");
    match result {
        Err(QueueError::NotIdle { left, .. }) => left,
        other => panic!("{other:?}"),
    }
}

async fn filled(queue: &Queue, n: usize) {
    let endpoint = enqueuer(queue);
    for i in 0..n {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
}

/// A receiver whose handler succeeds, sharing `breaker`.
fn sharing(breaker: &CircuitBreaker) -> Receiver<impl Handler> {
    Receiver::new(
        Verifier::new("whsec_x").unwrap(),
        |_: Event<'static>| async { Ok::<(), HandlerError>(()) },
    )
    .with_circuit_breaker(breaker.clone())
}

/// Delivers the event `id`, signed, to `receiver`.
async fn deliver<H: Handler>(receiver: &Receiver<H>, id: &str) -> Answer {
    let b = body(id);
    receiver.receive(&b, [sign(&b, "whsec_x").as_bytes()]).await
}

/// A worker running in the background until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerStats, QueueError>>,
}

impl Running {
    fn start<H: Handler>(worker: Worker<H>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A scenario run on the queue in memory, on a real `redis-server` and (feature
/// `postgres`) on a real PostgreSQL: a module of tests named after it.
macro_rules! on_every_backend {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_memory() {
                super::$scenario(Queue::in_memory()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_redis() {
                let server = notmeta_test_support::RedisServer::start();
                super::$scenario(Queue::connect(&server.url()).await.unwrap()).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let (_server, _pool, queue) = common::pg_queue::setup().await;
                super::$scenario(queue).await;
            }
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_idle_with_the_breaker_open_for_ever_ends_at_its_limit_spending_nothing() {
    let queue = Queue::in_memory();
    filled(&queue, 3).await;
    let breaker = CircuitBreaker::new(1, Duration::MAX);
    breaker_opened(&breaker).await;
    let runs = Runs::default();
    let worker = Worker::new(queue.clone(), counting(&runs)).with_circuit_breaker(breaker);
    let started = Instant::now();
    not_idle(worker, Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(runs.lock().unwrap().is_empty());
    assert_eq!(queue.counts().await.unwrap().pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_idle_on_a_paused_queue_ends_at_its_limit_and_takes_nothing() {
    for queue in [Queue::in_memory()] {
        filled(&queue, 3).await;
        queue.pause().await.unwrap();
        let runs = Runs::default();
        let worker = Worker::new(queue.clone(), counting(&runs));
        let left = not_idle(worker, Duration::from_millis(500)).await;
        assert_eq!(left.pending, 3);
        assert!(left.paused);
        assert!(runs.lock().unwrap().is_empty());
        queue.resume().await.unwrap();
        let worker = Worker::new(queue.clone(), counting(&runs));
        let stats = worker
            .run_until_idle(Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(stats.handled, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_idle_with_limit_zero_never_hangs() {
    let queue = Queue::in_memory();
    let runs = Runs::default();
    let idle = Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(Duration::ZERO)
        .await;
    assert!(idle.is_ok(), "{idle:?}");
    filled(&queue, 2).await;
    let busy = tokio::time::timeout(
        Duration::from_secs(20),
        Worker::new(queue.clone(), counting(&runs)).run_until_idle(Duration::ZERO),
    )
    .await
    .expect("a zero limit ends at once");
    // Either it drained in the first pass or it says what is left: never a hang.
    if let Err(error) = busy {
        assert!(matches!(error, QueueError::NotIdle { .. }), "{error:?}");
    }
}

/// A probe that never returns: the limit ends the run, and the cancelled probe
/// decides nothing, so the breaker is half-open again for the next one (a
/// receiver sharing it runs its delivery as the probe instead of answering 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_never_returns_is_cut_by_the_limit_and_leaves_the_breaker_half_open() {
    let queue = Queue::in_memory();
    filled(&queue, 2).await;
    let breaker = CircuitBreaker::new(1, Duration::from_millis(100));
    breaker_opened(&breaker).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started_runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&started_runs);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<(), HandlerError>>()
    })
    .with_handler_isolation(false)
    .with_circuit_breaker(breaker.clone())
    .with_shutdown_deadline(Duration::from_millis(200));
    not_idle(worker, Duration::from_millis(800)).await;
    assert_eq!(
        started_runs.load(Ordering::SeqCst),
        1,
        "half-open: one probe"
    );
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let answer = deliver(&sharing(&breaker), "evt_after").await;
    assert_eq!(answer.outcome(), Outcome::Handled);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// A panicking probe counts as a failure: the breaker opens again, and the other
/// entries spend no attempt meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_reopens_the_breaker_and_spends_one_attempt_only() {
    let queue = Queue::in_memory();
    filled(&queue, 5).await;
    let breaker = CircuitBreaker::new(1, Duration::from_millis(100))
        .with_max_cool_down(Duration::from_secs(3_600));
    breaker_opened(&breaker).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started_runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&started_runs);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { panic!("the probe panics") }
    })
    .with_circuit_breaker(breaker.clone())
    .with_backoff(Duration::ZERO, Duration::ZERO);
    not_idle(worker, Duration::from_secs(2)).await;
    // The probe failed: open for 200 ms, then a probe again, 400 ms, 800 ms: a
    // handful of runs in two seconds, never the five entries' every attempt.
    let runs = started_runs.load(Ordering::SeqCst);
    assert!((1..=5).contains(&runs), "{runs} runs");
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
}

/// A worker whose `run` future is dropped mid-run: its handlers go on, renewed, and
/// settle; a second worker with a short visibility timeout never runs them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_worker_future_leaves_no_event_to_run_twice_in_memory() {
    let queue = Queue::in_memory();
    filled(&queue, 4).await;
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let slow = move |event: Event<'static>| {
        count(&counted, &event);
        async {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            Ok::<(), HandlerError>(())
        }
    };
    let visibility = Duration::from_millis(300);
    let first = Worker::new(queue.clone(), slow.clone())
        .with_concurrency(4)
        .with_visibility_timeout(visibility);
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        first.run(std::future::pending()),
    )
    .await;
    assert!(cut.is_err(), "the run was cut short");
    let second = Worker::new(queue.clone(), slow)
        .with_concurrency(4)
        .with_visibility_timeout(visibility);
    second
        .run_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
}

/// Concurrent duplicates and a length bound hit at once: one entry per event id,
/// and never more entries than the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_and_the_length_bound_in_memory() {
    let queue = Queue::in_memory();
    let endpoint = enqueuer(&queue).with_max_len(10);
    let mut sends = Vec::new();
    for i in 0..200 {
        let endpoint = endpoint.clone();
        sends.push(tokio::spawn(async move {
            let id = format!("evt_{}", i % 40);
            send(&endpoint, &body(&id)).await.0
        }));
    }
    let mut statuses = HashMap::<u16, usize>::new();
    for s in sends {
        *statuses.entry(s.await.unwrap()).or_default() += 1;
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.pending, 10, "{statuses:?}");
    assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "{statuses:?}");
    let runs = Runs::default();
    let stats = Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(stats.handled, 10);
    assert!(runs.lock().unwrap().values().all(|n| *n == 1));
}

/// Extreme rate limits and concurrency on the queue in memory still drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_rate_limits_and_concurrency_drain() {
    for (starts, per, concurrency) in [
        (0, Duration::from_millis(10), usize::MAX),
        (u32::MAX, Duration::from_nanos(1), usize::MAX),
        (5, Duration::ZERO, 0),
        (u32::MAX, Duration::MAX, 1),
    ] {
        let queue = Queue::in_memory();
        filled(&queue, 20).await;
        let runs = Runs::default();
        let stats = tokio::time::timeout(
            Duration::from_secs(30),
            Worker::new(queue.clone(), counting(&runs))
                .with_rate_limit(starts, per)
                .with_concurrency(concurrency)
                .run_until_idle(Duration::from_secs(20)),
        )
        .await
        .expect("ends")
        .unwrap_or_else(|e| panic!("{starts}/{per:?} x{concurrency}: {e}"));
        assert_eq!(stats.handled, 20, "{starts}/{per:?} x{concurrency}");
    }
}

/// A receiver sharing a half-open breaker with a worker whose queue is empty: the
/// worker has nothing to probe with, so the receiver's next delivery is the probe
/// (not a 503 for as long as the worker waits for work).
async fn an_idle_worker_leaves_the_probe_to_a_receiver_sharing_its_breaker(queue: Queue) {
    let breaker = CircuitBreaker::new(1, Duration::from_millis(100));
    breaker_opened(&breaker).await;
    let runs = Runs::default();
    let worker = Worker::new(queue.clone(), counting(&runs))
        .with_circuit_breaker(breaker.clone())
        .with_poll_interval(Duration::from_secs(3));
    let running = Running::start(worker);
    // Past the cool-down, with the worker waiting for work.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let receiver = sharing(&breaker);
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let answer = deliver(&receiver, &format!("evt_inline_{i}")).await;
        outcomes.push(answer.outcome());
        if answer.outcome() == Outcome::Handled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(outcomes.last(), Some(&Outcome::Handled), "{outcomes:?}");
    assert_eq!(breaker.state(), BreakerState::Closed);
    running.stop().await;
}

on_every_backend!(an_idle_worker_leaves_the_probe_to_a_receiver_sharing_its_breaker);

/// The same while the queue is paused: a paused worker takes nothing, so it must
/// not hold the probe either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_on_redis_leaves_the_probe_to_a_receiver() {
    let server = notmeta_test_support::RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    filled(&queue, 2).await;
    queue.pause().await.unwrap();
    an_idle_worker_leaves_the_probe_to_a_receiver_sharing_its_breaker(queue.clone()).await;
    assert_eq!(queue.counts().await.unwrap().pending, 2);
}

/// Concurrent deliveries of one event to a `Split`, for each route: the inline
/// handler runs once, the queue holds one entry, and every answer is a 2xx or a
/// retryable 409/503, never a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_under_concurrent_duplicates_runs_each_event_once() {
    use notmeta_webhooks::queue::{Enqueuer, Split};
    let queue = Queue::in_memory();
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let verifier = Verifier::new(common::queue::SECRET).unwrap();
    let receiver = Receiver::new(verifier.clone(), move |event: Event<'static>| {
        count(&counted, &event);
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<(), HandlerError>(())
        }
    });
    let split = Split::new(receiver, Enqueuer::new(verifier, queue.clone())).route_with(
        |event: &Event<'_>| {
            if event.id.as_str().starts_with("evt_inline") {
                notmeta_webhooks::queue::Route::Inline
            } else {
                notmeta_webhooks::queue::Route::Queue
            }
        },
    );
    for id in ["evt_inline", "evt_queued"] {
        let b = body(id);
        let mut sends = Vec::new();
        for _ in 0..40 {
            let (split, b) = (split.clone(), b.clone());
            sends.push(tokio::spawn(async move {
                let signature = sign(&b, common::queue::SECRET);
                split
                    .receive(&b, [signature.as_bytes()])
                    .await
                    .status()
                    .as_u16()
            }));
        }
        for s in sends {
            let status = s.await.unwrap();
            assert!(matches!(status, 200 | 409 | 503), "{id}: {status}");
        }
    }
    assert_eq!(queue.counts().await.unwrap().pending, 1);
    Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let runs = runs.lock().unwrap();
    assert_eq!(runs.get("evt_inline"), Some(&1), "{runs:?}");
    assert_eq!(runs.get("evt_queued"), Some(&1), "{runs:?}");
}

/// Per consumer, how many entries of partition 0 the group's pending list holds.
async fn pending_by_consumer(url: &str) -> HashMap<String, u64> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    type Summary = (u64, Option<String>, Option<String>, Vec<(String, String)>);
    let (_, _, _, consumers): Summary = redis::cmd("XPENDING")
        .arg("{notmeta-webhooks:0}:stream")
        .arg("workers")
        .query_async(&mut connection)
        .await
        .unwrap();
    consumers
        .into_iter()
        .map(|(name, n)| (name, n.parse().unwrap()))
        .collect()
}

/// Entries a dead worker left, reclaimed by a worker whose rate limit admits one
/// start: it takes over that one only, whatever its concurrency (the others stay
/// where they are, for a worker that may start them), so nothing sits unstarted
/// in its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_reclaim_takes_no_more_than_it_starts_at_any_concurrency() {
    for concurrency in [8, usize::MAX] {
        let server = notmeta_test_support::RedisServer::start();
        let queue = Queue::connect(&server.url()).await.unwrap();
        filled(&queue, 5).await;
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg(&["GROUP", "workers", "dead", "COUNT", "10", "STREAMS"])
            .arg("{notmeta-webhooks:0}:stream")
            .arg(">")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(
            pending_by_consumer(&server.url()).await.get("dead"),
            Some(&5)
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let runs = Runs::default();
        let worker = Worker::new(queue.clone(), counting(&runs))
            .with_concurrency(concurrency)
            .with_consumer_name("alive")
            .with_visibility_timeout(Duration::from_millis(400))
            .with_rate_limit(1, Duration::from_secs(3_600));
        worker
            .run(tokio::time::sleep(Duration::from_millis(1_500)))
            .await
            .unwrap();
        let started = runs.lock().unwrap().len();
        assert_eq!(started, 1, "x{concurrency}");
        let pending = pending_by_consumer(&server.url()).await;
        assert_eq!(
            pending.get("alive").copied().unwrap_or(0),
            0,
            "x{concurrency}: {pending:?}"
        );
    }
}

/// The queue paused while the worker's probe runs: the probe finishes, settles and
/// closes the breaker; nothing else starts until the resume; a receiver sharing
/// the breaker is answered 503, with a `Retry-After` of at least a second, while
/// the probe runs.
async fn a_pause_during_the_probe(queue: Queue) {
    filled(&queue, 4).await;
    let breaker = CircuitBreaker::new(1, Duration::from_millis(100));
    breaker_opened(&breaker).await;
    let started = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&started);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .with_concurrency(4)
    .with_poll_interval(Duration::from_millis(20))
    .with_circuit_breaker(breaker.clone());
    let running = Running::start(worker);
    let deadline = Instant::now() + Duration::from_secs(20);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no probe");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    queue.pause().await.unwrap();
    let answer = deliver(&sharing(&breaker), "evt_during_probe").await;
    assert_eq!(answer.outcome(), Outcome::CircuitOpen);
    assert!(answer.retry_after().is_some_and(|w| w > Duration::ZERO));
    let response = answer.into_response();
    let seconds: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1, "{seconds}");
    // The probe ends and closes the breaker; the pause holds the rest back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_progress), (3, 0), "{counts:?}");
    queue.resume().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !common::queue::drained(&queue).await {
        assert!(Instant::now() < deadline, "not drained after the resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 4);
    running.stop().await;
}

on_every_backend!(a_pause_during_the_probe);

/// The breaker opens while many handlers run: at most threshold + concurrency − 1
/// runs fail before it holds the worker back (those already started finish), then
/// one probe per cool-down; no entry runs out of attempts meanwhile.
async fn the_breaker_opens_while_many_handlers_run(queue: Queue) {
    filled(&queue, 60).await;
    let (threshold, concurrency) = (3_u32, 16_usize);
    let breaker = CircuitBreaker::new(threshold, Duration::from_millis(700))
        .with_max_cool_down(Duration::from_secs(3_600));
    let started = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&started);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<(), _>(HandlerError::temporary("downstream down"))
        }
    })
    .with_concurrency(concurrency)
    .with_max_attempts(3)
    .with_backoff(Duration::ZERO, Duration::ZERO)
    .with_poll_interval(Duration::from_millis(20))
    .with_circuit_breaker(breaker.clone());
    let stats = worker
        .run(tokio::time::sleep(Duration::from_millis(1_800)))
        .await
        .unwrap();
    // The first burst, then a probe at 0.7 s (fails: 1.4 s more): two probes at most.
    let runs = started.load(Ordering::SeqCst);
    let most = threshold as usize + concurrency - 1 + 2;
    assert!(runs <= most, "{runs} runs > {most}: {stats:?}");
    assert!(runs >= threshold as usize, "{runs}");
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
}

on_every_backend!(the_breaker_opens_while_many_handlers_run);

/// A handler that blocks its thread past the limit: the run cannot end before the
/// handler's thread is free (its entry stays renewed meanwhile, so nobody runs it
/// twice), and then says the queue was not idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocking_its_thread_past_the_limit_is_waited_for() {
    let queue = Queue::in_memory();
    filled(&queue, 1).await;
    let worker = Worker::new(queue.clone(), |_: Event<'static>| async {
        std::thread::sleep(Duration::from_secs(3));
        Ok::<(), HandlerError>(())
    })
    .with_shutdown_deadline(Duration::from_millis(100));
    let started = Instant::now();
    let left = not_idle(worker, Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2_900), "{took:?}");
    assert_eq!(left.in_progress, 0, "{left:?}");
}

/// On a paused Tokio clock the queue in memory skips its waits: the rate limit's
/// too, so a test of a rate-limited worker neither waits in real time nor spins
/// its limit away.
#[tokio::test(start_paused = true)]
async fn a_paused_clock_skips_the_rate_limits_waits_in_memory() {
    let queue = Queue::in_memory();
    filled(&queue, 3).await;
    let runs = Runs::default();
    let started = Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let stats = Worker::new(queue.clone(), counting(&runs))
        .with_rate_limit(1, Duration::from_secs(600))
        .run_until_idle(Duration::from_secs(3 * 3_600))
        .await
        .unwrap();
    assert_eq!(stats.handled, 3);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Two waits of ten minutes, on the runtime's clock.
    let waited = virtual_start.elapsed();
    assert!(
        waited >= Duration::from_secs(1_100) && waited < Duration::from_secs(1_300),
        "{waited:?}"
    );
}

/// Many workers on clones of a queue in memory, each cut short (its `run` future
/// dropped) at a different moment and started again: every event runs exactly
/// once, and the queue ends idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_cut_short_again_and_again_run_each_event_once_in_memory() {
    let queue = Queue::in_memory();
    filled(&queue, 300).await;
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let handler = move |event: Event<'static>| {
        let n = count(&counted, &event);
        async move {
            tokio::time::sleep(Duration::from_millis(5 + (n as u64 % 3) * 10)).await;
            Ok::<(), HandlerError>(())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0_u64;
    while !common::queue::drained(&queue).await {
        assert!(Instant::now() < deadline, "not drained");
        round += 1;
        let mut cut = Vec::new();
        for w in 0..5_u64 {
            let worker = Worker::new(queue.clone(), handler.clone())
                .with_concurrency(8)
                .with_handler_isolation(w % 2 == 0)
                .with_visibility_timeout(Duration::from_millis(500));
            let after = Duration::from_millis(10 + (round * 7 + w * 13) % 60);
            cut.push(tokio::spawn(async move {
                let _ = tokio::time::timeout(after, worker.run(std::future::pending())).await;
            }));
        }
        for c in cut {
            c.await.unwrap();
        }
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.dead_letters, 0);
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 300);
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "run more than once: {twice:?}");
}
