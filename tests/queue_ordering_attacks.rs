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
