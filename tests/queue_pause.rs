//! Pausing and resuming the queue in Redis, against a real `redis-server`: the flag
//! is seen by every worker and covers every partition.

use notmeta_test_support::RedisServer;
use notmeta_webhooks::queue::Queue;
use redis::AsyncCommands as _;

mod common;
#[path = "common/pause.rs"]
mod pause;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_starts_nothing_and_resume_drains() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    pause::a_paused_worker_starts_nothing_and_resume_drains(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partitions_one_flag_pauses_them_all() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("parts")
        .with_partitions(3);
    pause::a_paused_worker_starts_nothing_and_resume_drains(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_lets_running_handlers_settle_and_holds_retries() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    pause::a_pause_lets_running_handlers_settle_and_holds_retries(queue).await;
}

#[tokio::test]
async fn the_flag_is_one_key_in_the_namespace_seen_by_other_processes() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("shop")
        .with_partitions(4);
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    queue.pause().await.unwrap();
    let keys: Vec<String> = redis.keys("*paused*").await.unwrap();
    assert_eq!(keys, ["{shop}:paused"]);
    // Another process's queue on the same namespace sees it; another namespace not.
    let other = Queue::connect(&server.url()).await.unwrap();
    assert!(
        other
            .clone()
            .with_namespace("shop")
            .is_paused()
            .await
            .unwrap()
    );
    assert!(!other.is_paused().await.unwrap());
    queue.resume().await.unwrap();
    let keys: Vec<String> = redis.keys("*paused*").await.unwrap();
    assert!(keys.is_empty());
    // Resuming a running queue changes nothing.
    queue.resume().await.unwrap();
    assert!(!queue.is_paused().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_stops_taking_within_one_pass() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let (n, last) = pause::a_busy_worker_stops_taking_within_one_pass(queue).await;
    println!("Redis: {n} started after the pause returned, the last {last:?} after");
}

/// The queue in memory keeps the same rules: its flag is read by every take, and a
/// resume wakes the idle workers (which do not poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_in_memory_pauses_and_resumes_too() {
    pause::a_paused_worker_starts_nothing_and_resume_drains(Queue::in_memory()).await;
    pause::a_pause_lets_running_handlers_settle_and_holds_retries(Queue::in_memory()).await;
    let (n, _) = pause::a_busy_worker_stops_taking_within_one_pass(Queue::in_memory()).await;
    assert_eq!(
        n, 0,
        "a take in memory reads the flag under the queue's lock"
    );
}

/// With `metrics`, `Queue::counts` sets the paused gauge and how long the oldest
/// waiting entry has waited.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn counts_set_the_paused_and_oldest_pending_gauges() {
    use notmeta_test_support::recorder::Counters;
    use notmeta_webhooks::receiver::metrics::{QUEUE_OLDEST_PENDING_SECONDS, QUEUE_PAUSED};

    let recorder = Counters::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let queue = Queue::in_memory();
    let endpoint = common::queue::enqueuer(&queue);
    assert_eq!(
        common::queue::send(&endpoint, &common::queue::body("evt_1"))
            .await
            .0,
        200
    );
    queue.pause().await.unwrap();
    tokio::time::advance(std::time::Duration::from_secs(90)).await;
    let counts = queue.counts().await.unwrap();
    assert!(counts.paused);
    assert_eq!(
        counts.oldest_pending,
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(recorder.get(QUEUE_PAUSED), 1);
    assert_eq!(recorder.get(QUEUE_OLDEST_PENDING_SECONDS), 90);
    queue.resume().await.unwrap();
    let counts = queue.counts().await.unwrap();
    assert!(!counts.paused);
    assert_eq!(recorder.get(QUEUE_PAUSED), 0);
}
