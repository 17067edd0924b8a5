//! Attacks on the queue's key limits in Redis (`Queue::with_key_limit`), against a
//! real `redis-server` and a Redis Cluster: duplicates arriving after the dedup
//! window while their first copy still waits or holds the key's slot, hostile keys
//! from a key function, a panicking key function. Built with the `queue` feature
//! alone.

use std::time::Duration;

use notmeta_test_support::{RedisCluster, RedisServer};
use notmeta_webhooks::queue::{KeyLimit, Queue};

mod common;
use common::ordering_attacks::{
    a_panicking_key_function_is_a_server_error,
    a_redelivery_after_the_window_neither_doubles_nor_blocks, hostile_keys_run_in_order,
    hostile_limit,
};

/// A redelivery after the dedup window of a key's queued events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_dedup_window_neither_doubles_nor_blocks_a_key() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1))
        .with_key_limit(KeyLimit::per_key());
    a_redelivery_after_the_window_neither_doubles_nor_blocks(&queue).await;
}

/// A cap of `u32::MAX` lets a key's events run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_cap_runs_a_keys_events_at_once() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_key_limit(KeyLimit::per_key().with_max_running(u32::MAX));
    common::ordering_attacks::the_largest_cap_runs_a_keys_events_at_once(&queue).await;
}

/// Hostile keys (empty, 1 MB, NUL, hash-tag braces, the scripts' own separators,
/// unicode, a hashed key's look-alike) on four partitions: each key's events run
/// one at a time in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_keep_their_order() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(4)
        .with_key_limit(hostile_limit());
    hostile_keys_run_in_order(&queue).await;
}

/// The same on a Redis Cluster, where a brace in a key name could move it to
/// another slot than its partition's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_keep_their_order_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let queue = Queue::connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap()
        .with_partitions(6)
        .with_key_limit(hostile_limit());
    hostile_keys_run_in_order(&queue).await;
}

/// A key function that panics: a server error for that event, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_key_function_is_answered_with_a_server_error() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    a_panicking_key_function_is_a_server_error(queue).await;
}

/// A worker cut off from Redis for longer than the visibility timeout while its
/// handler runs: another worker takes the entry over and runs it again. The key's
/// next event starts only once the event succeeded, but the first success (the
/// cut-off worker's, recorded whoever ran it) releases the slot while the other run
/// goes on: the next event overlaps it, as the documentation says (two runs of the
/// key at once, no more).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_taken_over_overlaps_the_keys_next_event_only_as_documented() {
    use common::ordering::{event_id, fast, keyed_body, start, until};
    use common::ordering_attacks::Watch;
    use common::queue::{enqueuer, send};
    use notmeta_test_support::proxy::Proxy;
    use notmeta_webhooks::queue::Worker;

    let server = RedisServer::start();
    let proxy = Proxy::start(server.port).await;
    let ordered = async |url: &str| {
        Queue::connect(url)
            .await
            .unwrap()
            .with_key_limit(KeyLimit::per_key())
    };
    let near = ordered(&server.url()).await;
    let far = ordered(&proxy.redis_url()).await;
    let endpoint = enqueuer(&near);
    for i in 0..2 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    let watch = Watch::default();
    let a = start(fast(Worker::new(far, watch.handler(3_000)), "a"));
    until(30, "the first run", || !watch.starts().is_empty()).await;
    proxy.pause();
    let b = start(fast(Worker::new(near.clone(), watch.handler(3_000)), "b"));
    until(30, "the run taken over", || watch.starts().len() == 2).await;
    proxy.resume();
    until(60, "the key's next event", || {
        watch.starts().contains(&event_id(0, 1))
    })
    .await;
    common::ordering::drained(&near, 30).await;
    let stats = [a.stop().await, b.stop().await];
    assert!(stats.iter().any(|s| s.lost > 0), "{stats:?}");
    let seen = watch.starts_with_running();
    assert!(seen.iter().all(|(_, n)| *n <= 2), "{seen:?}");
    assert_eq!(
        watch.starts(),
        [event_id(0, 0), event_id(0, 0), event_id(0, 1)]
    );
}

/// Release: a dead letter replayed while its key's next event runs waits for it,
/// then runs before the key's later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_dead_letter_replayed_mid_run_waits_then_goes_first() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_key_limit(KeyLimit::per_key());
    common::ordering_attacks::a_released_dead_letter_replayed_mid_run_waits_then_goes_first(&queue)
        .await;
}

/// Redis with an append-only file, killed and restarted while two workers run 10
/// keys × 10 events (a handler failing temporarily at random): the slots and the
/// waiting entries survive with the rest, so each key's handlers still start in
/// order, one at a time, and every event is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_keeps_every_key_in_order() {
    use common::ordering::{Ledger, drained, enqueue_all, until};

    let dir = std::env::temp_dir().join(format!(
        "notmeta-order-restart-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start_durable(&dir)));
    let url = server.lock().unwrap().url();
    let queue = Queue::connect(&url)
        .await
        .unwrap()
        .with_partitions(2)
        .with_key_limit(KeyLimit::per_key());
    let ledger = Ledger::default();
    let workers = common::ordering::workers(&queue, &ledger, 2, 1);
    enqueue_all(&queue, 10, 10).await;
    until(60, "a third of the events", || ledger.succeeded() >= 33).await;
    let restarting = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || restarting.lock().unwrap().restart())
        .await
        .unwrap();
    until(120, "every event", || ledger.succeeded() == 100).await;
    drained(&queue, 60).await;
    for worker in workers {
        worker.stop().await;
    }
    ledger.check(10, 10, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker configured without the key limit the endpoints have still runs a key's
/// events one at a time, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_key_limit_keeps_the_order() {
    let server = RedisServer::start();
    let endpoint = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_key_limit(KeyLimit::per_key());
    let plain = Queue::connect(&server.url()).await.unwrap();
    common::ordering_attacks::a_worker_without_the_limit_keeps_the_order(&endpoint, plain).await;
}

/// A pause while a key's events run, then a resume: order and cap hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_mid_run_keeps_the_order() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_key_limit(KeyLimit::per_key());
    common::ordering_attacks::a_pause_mid_run_keeps_the_order(&queue).await;
}
