//! Key limits on the queue in Redis (`Queue::with_key_limit`), against a real
//! `redis-server`: per-key order and cap through random temporary failures,
//! several workers and one killed mid-run; a cap of 2; the dead-letter policies
//! (release, hold, replay, purge); duplicates; the counts. Built with the `queue`
//! feature alone.

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};

mod common;
use std::time::Duration;

use common::ordering::dead_letters::{failing, list};
use common::ordering::{
    Ledger, drained, enqueue_all, event_id, fast, handler, keyed_body, many_keys, start, until,
};
use common::queue::{enqueuer, send};

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

/// An operator's purge from a process without key limits (a CLI, say) still
/// releases the key a held dead letter blocks, and the counts there still see the
/// events waiting for their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_without_key_limits_still_releases_a_held_key() {
    let server = RedisServer::start();
    let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    let queue = ordered(&server.url(), limit).await;
    let endpoint = enqueuer(&queue);
    for i in 0..3 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.0, 200);
    }
    let starts = list(&[]);
    let fail = list(&[&event_id(0, 0)]);
    let worker = start(fast(
        Worker::new(queue.clone(), failing(&starts, &fail)),
        "a",
    ));
    let operator = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(4);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while operator.counts().await.unwrap().dead_letters == 0 {
        assert!(std::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(starts.lock().unwrap().len(), 1, "a held key's events ran");
    assert_eq!(operator.counts().await.unwrap().pending, 2);
    assert_eq!(
        operator.purge_dead_letters(Duration::ZERO).await.unwrap(),
        1
    );
    until(30, "the rest", || starts.lock().unwrap().len() == 3).await;
    drained(&queue, 30).await;
    worker.stop().await;
}

/// On a Redis Cluster (three masters, six partitions) the key-limit scripts touch
/// one slot each, the purge's included: a held key is released by a purge, a
/// replayed dead letter runs first, and a cap of 2 holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_limits_work_on_a_cluster() {
    let cluster = notmeta_test_support::RedisCluster::start(3);
    let urls = cluster.urls();
    let on_cluster = async |namespace: &str, limit: KeyLimit| {
        Queue::connect_cluster(urls.iter().map(String::as_str))
            .await
            .unwrap()
            .with_namespace(namespace)
            .with_partitions(6)
            .with_key_limit(limit)
    };
    let hold = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    let queue = on_cluster("purge", hold.clone()).await;
    common::ordering::dead_letters::a_held_dead_letter_blocks_its_key_until_purged(&queue).await;
    let queue = on_cluster("replay", hold).await;
    common::ordering::dead_letters::a_replayed_held_dead_letter_runs_first(&queue).await;
    let queue = on_cluster("cap", KeyLimit::per_key().with_max_running(2)).await;
    common::ordering::cap_of_two(&queue).await;
}
