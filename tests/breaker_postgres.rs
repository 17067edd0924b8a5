//! A worker's circuit breaker on the queue in PostgreSQL: a downstream down for a
//! while costs a few attempts and no dead letter, and an open breaker takes
//! nothing (no run counted), against a real PostgreSQL server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::queue::Worker;

mod common;
use common::outage::{Downstream, flaky, outage};
use common::pg_queue::{scalar, setup};
use common::queue::{body, enqueuer, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_down_for_a_while_costs_a_few_attempts_and_no_dead_letter() {
    let (_server, _pool, queue) = setup().await;
    outage(queue, 30, Duration::from_secs(8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_open_nothing_is_taken_and_no_run_is_counted() {
    let (_server, pool, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    for i in 0..6 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    // One temporary failure opens it for 5 s.
    let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
    let seen = Arc::new(Mutex::new(Downstream::default()));
    let up_at = Instant::now() + Duration::from_millis(500);
    let worker = Worker::new(queue.clone(), flaky(up_at, &seen))
        .with_concurrency(1)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(50))
        .with_poll_interval(Duration::from_millis(20))
        .with_circuit_breaker(breaker.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(breaker.state(), BreakerState::Open { .. }) {
        assert!(Instant::now() < deadline, "never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Open: the one failed run is the only run counted, for a while.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let runs = scalar(
        &pool,
        "SELECT coalesce(sum(runs), 0)::bigint FROM notmeta_webhooks_jobs",
    )
    .await;
    assert_eq!(runs, 1);
    assert_eq!(seen.lock().unwrap().calls.len(), 1);
    // Then the probe succeeds and the rest follows.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.counts().await.unwrap().pending + queue.counts().await.unwrap().retrying > 0 {
        assert!(Instant::now() < deadline, "not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!(
        (stats.handled, stats.retried, stats.dead_lettered),
        (6, 1, 0)
    );
}
