//! Attacks on the queue's key limits in Redis (`Queue::with_key_limit`), against a
//! real `redis-server` and a Redis Cluster: duplicates arriving after the dedup
//! window while their first copy still waits or holds the key's slot, hostile keys
//! from a key function, a panicking key function. Built with the `queue` feature
//! alone.

use std::time::Duration;

use notmeta_test_support::{RedisCluster, RedisServer};
use notmeta_webhooks::queue::{KeyLimit, Queue, Worker};

mod common;
use common::ordering::{drained, event_id, fast, keyed_body, start, until};
use common::ordering_attacks::{
    Watch, a_panicking_key_function_is_a_server_error, hostile_keys_run_in_order, hostile_limit,
};
use common::queue::{enqueuer, send};

/// Events that waited longer than the dedup window (no worker running) are
/// delivered again: the copy of the event that holds the key's slot is answered
/// as a duplicate (it is still queued), the copy of the waiting one never runs
/// beside or after its first copy, and the key is not left blocked: its next
/// event runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_dedup_window_neither_doubles_nor_blocks_a_key() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1))
        .with_key_limit(KeyLimit::per_key());
    let endpoint = enqueuer(&queue);
    for i in 0..2 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    // The window passes while both wait (event 0 holds the slot, 1 waits for it).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        send(&endpoint, &keyed_body(0, 0)).await.1,
        "OK (duplicate)",
        "the event holding the key's slot was queued a second time"
    );
    assert_eq!(send(&endpoint, &keyed_body(0, 1)).await.0, 200);
    assert_eq!(send(&endpoint, &keyed_body(0, 2)).await.1, "OK");

    let watch = Watch::default();
    let worker = start(fast(Worker::new(queue.clone(), watch.handler(300)), "a"));
    until(30, "the key's last event", || {
        watch.starts().contains(&event_id(0, 2))
    })
    .await;
    drained(&queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "two runs of one key at once");
    let expected: Vec<String> = (0..3).map(|i| event_id(0, i)).collect();
    assert_eq!(watch.starts(), expected);
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
