//! Key limits on the queue in Redis (`Queue::with_key_limit`), against a real
//! `redis-server`: per-key order and cap through random temporary failures,
//! several workers and one killed mid-run; a cap of 2; the dead-letter policies
//! (release, hold, replay, purge); duplicates; the counts. Built with the `queue`
//! feature alone.

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};

mod common;
use common::ordering::{
    Ledger, dead_letters, drained, enqueue_all, fast, handler, many_keys, start, until,
};

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

/// Release (the default): a dead letter frees its key, the later events go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_releases_its_key_by_default() {
    let server = RedisServer::start();
    dead_letters::a_dead_letter_releases_its_key(
        &ordered(&server.url(), KeyLimit::per_key()).await,
    )
    .await;
}

/// Hold: the key stays blocked until the dead letter is purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dead_letter_blocks_its_key_until_purged() {
    let server = RedisServer::start();
    let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    dead_letters::a_held_dead_letter_blocks_its_key_until_purged(
        &ordered(&server.url(), limit).await,
    )
    .await;
}

/// Hold, then replay: the replayed event runs before the key's waiting events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_held_dead_letter_runs_first() {
    let server = RedisServer::start();
    let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    dead_letters::a_replayed_held_dead_letter_runs_first(&ordered(&server.url(), limit).await)
        .await;
}

/// A retry keeps its key's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_its_keys_slot() {
    let server = RedisServer::start();
    dead_letters::a_retry_keeps_its_keys_slot(&ordered(&server.url(), KeyLimit::per_key()).await)
        .await;
}

/// A cap of 2: never more than 2 handlers of a key at once, the cap reached, and an
/// event starts only once every event 2 or more places before it has succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_of_two_runs_at_most_two_per_key() {
    let server = RedisServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key().with_max_running(2)).await;
    let ledger = Ledger::default();
    let workers = [
        start(fast(
            Worker::new(queue.clone(), handler(&ledger, 0, 2)),
            "a",
        )),
        start(fast(
            Worker::new(queue.clone(), handler(&ledger, 1, 2)),
            "b",
        )),
    ];
    enqueue_all(&queue, 10, 20).await;
    until(120, "every event", || ledger.succeeded() == 200).await;
    drained(&queue, 30).await;
    for worker in workers {
        worker.stop().await;
    }
    ledger.check(10, 20, 2);
    assert_eq!(ledger.most(), 2, "the cap of 2 was never used");
}

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
