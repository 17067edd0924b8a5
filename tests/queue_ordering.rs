//! Key limits on the queue in Redis (`Queue::with_key_limit`), against a real
//! `redis-server`: per-key order and cap through random temporary failures,
//! several workers and one killed mid-run; a cap of 2; the dead-letter policies
//! (release, hold, replay, purge); duplicates; the counts. Built with the `queue`
//! feature alone.

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};

mod common;
use common::ordering::{Ledger, enqueue_all, fast, handler, many_keys, start, until};

async fn ordered(url: &str, limit: KeyLimit) -> Queue {
    Queue::connect(url)
        .await
        .unwrap()
        .with_partitions(4)
        .with_key_limit(limit)
}

/// 50 keys × 20 events, a handler failing temporarily at random, three workers of
/// 8 handlers, one killed (its link cut, its task aborted) a third of the way:
/// each key's handlers start in enqueue order, one at a time, and every event is
/// handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_run_in_order_one_at_a_time_through_failures_and_a_killed_worker() {
    let server = RedisServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key()).await;
    let proxy = Proxy::start(server.port).await;
    let doomed = ordered(&proxy.redis_url(), KeyLimit::per_key()).await;
    many_keys(&queue, doomed, &proxy, 50, 20).await;
}

common::ordering::key_limit_tests!(RedisServer::start(), ordered);

/// Without key limits the same run overlaps a key's events: the check above can
/// fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_key_limits_a_keys_events_overlap() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let ledger = Ledger::default();
    let worker = start(fast(
        Worker::new(queue.clone(), handler(&ledger, 0, 1_000)),
        "a",
    ));
    enqueue_all(&queue, 2, 40).await;
    until(60, "every event", || ledger.succeeded() == 80).await;
    worker.stop().await;
    assert!(ledger.most() > 1, "a key's events never overlapped");
}
