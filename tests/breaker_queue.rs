//! A worker's circuit breaker and rate limit against a real `redis-server`: a
//! downstream that is down for a while and then recovers costs a few attempts, not
//! every event's, and handler starts keep to the rate limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_webhooks::Event;
use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::queue::{Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::HandlerError;

mod common;
use common::outage::{Downstream, breaker_opened, flaky, outage};
use common::queue::{body, enqueuer, run_until, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_down_for_a_while_costs_a_few_attempts_and_no_dead_letter() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    outage(queue, 40, Duration::from_secs(10)).await;
}

/// The same on the queue in memory, whose idle worker waits for a change instead of
/// polling: the breaker's cool-down and probe must still wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_in_memory_rides_out_a_downstream_outage_too() {
    outage(Queue::in_memory(), 40, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_open_the_worker_reads_nothing_and_resumes_with_one_probe() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let endpoint = enqueuer(&queue);
    for i in 0..10 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    // Opened by a failure elsewhere (a receiver sharing it, say), with a long
    // cool-down: the worker must not touch the queue.
    let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
    let seen = Arc::new(Mutex::new(Downstream::default()));
    let worker = Worker::new(queue.clone(), flaky(Instant::now(), &seen))
        .with_concurrency(8)
        .with_poll_interval(Duration::from_millis(20))
        .with_circuit_breaker(breaker.clone());
    // Open it with a failed run of a second worker on an empty namespace.
    let other = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("other");
    assert_eq!(send(&enqueuer(&other), &body("evt_other")).await.0, 200);
    let failing = Worker::new(other.clone(), |_: Event<'static>| async {
        Err::<(), _>(HandlerError::temporary("down"))
    })
    .with_poll_interval(Duration::from_millis(20))
    .with_circuit_breaker(breaker.clone());
    run_until(failing, Duration::from_secs(20), async || {
        matches!(breaker.state(), BreakerState::Open { .. })
    })
    .await;
    let opened = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_progress), (10, 0));
    assert!(seen.lock().unwrap().calls.is_empty());
    // After the cool-down: the probe, then the rest.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().calls.len() < 10 {
        assert!(Instant::now() < deadline, "not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!((stats.handled, stats.retried), (10, 0));
    let calls = &seen.lock().unwrap().calls;
    let first = calls.iter().map(|(_, at, _)| *at).min().unwrap();
    assert!(first >= opened + Duration::from_millis(1_500));
    // The probe ran alone: the next call started only once it had succeeded (it
    // takes 20 ms).
    let mut starts: Vec<Instant> = calls.iter().map(|(_, at, _)| *at).collect();
    starts.sort();
    assert!(
        starts[1] >= starts[0] + Duration::from_millis(20),
        "{:?}",
        starts[1] - starts[0]
    );
}

/// Queues `events` events named `prefix` and a number, and runs a worker with
/// `concurrency` slots and a rate limit of `starts` every `per` until each has
/// started: when they started, in order.
async fn starts_under(
    queue: &Queue,
    prefix: &str,
    events: usize,
    concurrency: usize,
    (starts, per): (u32, Duration),
) -> Vec<Instant> {
    let endpoint = enqueuer(queue);
    for i in 0..events {
        assert_eq!(send(&endpoint, &body(&format!("{prefix}{i}"))).await.0, 200);
    }
    let started: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = Arc::clone(&started);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        seen.lock().unwrap().push(Instant::now());
        async { Ok::<(), HandlerError>(()) }
    })
    .with_concurrency(concurrency)
    .with_poll_interval(Duration::from_millis(10))
    .with_rate_limit(starts, per);
    let stats = run_until(worker, Duration::from_secs(30), async || {
        started.lock().unwrap().len() == events
    })
    .await;
    assert_eq!(stats.handled, events as u64);
    let mut started = started.lock().unwrap().clone();
    started.sort();
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_starts_keep_to_the_rate_limit() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    // Evenly spaced: one start every 250 ms, with 8 slots free all along.
    let events = 12;
    let starts = starts_under(&queue, "evt_", events, 8, (1, Duration::from_millis(250))).await;
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Each start waited for its token; the margin is for a loaded machine, where a
    // start may be seen late and the next one on time.
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(150)),
        "{gaps:?}"
    );
    let span = starts[events - 1] - starts[0];
    assert!(
        span >= Duration::from_millis(250 * (events as u64 - 1) - 100),
        "{span:?}"
    );

    // A burst: 5 a second allows 5 at once, then one every 200 ms.
    let burst = starts_under(&queue, "evt_b", 15, 16, (5, Duration::from_secs(1))).await;
    // 15 starts at 5 a second with a bucket of 5: at least 2 s from first to last;
    // in any second, at most 5 + 5.
    assert!(
        burst[14] - burst[0] >= Duration::from_millis(1_900),
        "{:?}",
        burst[14] - burst[0]
    );
    for (i, at) in burst.iter().enumerate() {
        let within = burst[i..]
            .iter()
            .take_while(|later| **later - *at < Duration::from_secs(1))
            .count();
        assert!(within <= 10, "{within} starts within a second");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_on_the_queue_in_memory() {
    let queue = Queue::in_memory();
    let events = 8;
    let starts = starts_under(&queue, "evt_m", events, 8, (1, Duration::from_millis(250))).await;
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(150)),
        "{gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_at_once_while_its_breaker_is_open() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let breaker = CircuitBreaker::new(1, Duration::from_secs(3_600));
    breaker_opened(&breaker).await;
    let worker = Worker::new(queue, |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    })
    .with_circuit_breaker(breaker)
    .with_rate_limit(1, Duration::from_secs(3_600));
    let started = Instant::now();
    let stats = tokio::time::timeout(
        Duration::from_secs(10),
        worker.run(tokio::time::sleep(Duration::from_millis(300))),
    )
    .await
    .expect("the shutdown ends the wait")
    .unwrap();
    assert_eq!(stats, WorkerStats::default());
    assert!(started.elapsed() < Duration::from_secs(5));
}
