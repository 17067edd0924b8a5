//! Attacks on the queue's key limits in PostgreSQL (`Queue::with_key_limit`),
//! against a real PostgreSQL: workers with pools of their own racing for one
//! key's entries while every connection is cut again and again, hostile keys, a
//! panicking key function, a redelivery after the dedup window, the largest cap.
//! Built with the `postgres` and `queue` features alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notmeta_test_support::PostgresServer;
use notmeta_webhooks::postgres::Tables;
use notmeta_webhooks::queue::{KeyLimit, Queue, Worker};

mod common;
use common::ordering::{Ledger, drained, enqueue_all, fast, handler, start, until};
use common::ordering_attacks::{
    a_panicking_key_function_is_a_server_error,
    a_redelivery_after_the_window_neither_doubles_nor_blocks, hostile_keys_run_in_order,
    hostile_limit,
};
use common::pg_queue::pool;

async fn queue(url: &str) -> Queue {
    Queue::postgres(pool(url).await, &Tables::default())
        .await
        .unwrap()
}

/// Four workers, each with a pool of its own, race for 5 keys × 20 events (a cap
/// of 1, a handler failing temporarily at random) while every connection is cut
/// every 400 ms: each key's handlers start in order, one at a time, and every
/// event is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_keep_the_order_while_their_connections_are_cut() {
    let server = Arc::new(PostgresServer::start());
    let endpoint = queue(&server.url())
        .await
        .with_key_limit(KeyLimit::per_key());
    let ledger = Ledger::default();
    let mut workers = Vec::new();
    for tag in 0..4 {
        let own = queue(&server.url())
            .await
            .with_key_limit(KeyLimit::per_key());
        let name = format!("w{tag}");
        workers.push(start(fast(
            Worker::new(own, handler(&ledger, tag, 1)),
            &name,
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || {
            let mut cuts = 0;
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(400));
                cuts += server.terminate_backends();
            }
            cuts
        })
    };
    enqueue_all(&endpoint, 5, 20).await;
    until(240, "every event", || ledger.succeeded() == 100).await;
    stop.store(true, Ordering::Release);
    let cuts = cutter.await.unwrap();
    drained(&endpoint, 60).await;
    for worker in workers {
        worker.stop().await;
    }
    assert!(cuts > 0, "no connection was cut");
    ledger.check(5, 20, 1);
}

/// Hostile keys (empty, 1 MB, NUL, braces, separators, unicode) keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_keep_their_order() {
    let server = PostgresServer::start();
    let q = queue(&server.url()).await.with_key_limit(hostile_limit());
    hostile_keys_run_in_order(&q).await;
}

/// A key function that panics: a server error for that event, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_key_function_is_answered_with_a_server_error() {
    let server = PostgresServer::start();
    a_panicking_key_function_is_a_server_error(queue(&server.url()).await).await;
}

/// A redelivery after the dedup window of a key's queued events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_dedup_window_neither_doubles_nor_blocks_a_key() {
    let server = PostgresServer::start();
    let q = queue(&server.url())
        .await
        .with_dedup_window(Duration::from_secs(1))
        .with_key_limit(KeyLimit::per_key());
    a_redelivery_after_the_window_neither_doubles_nor_blocks(&q).await;
}

/// A cap of `u32::MAX` lets a key's events run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_cap_runs_a_keys_events_at_once() {
    let server = PostgresServer::start();
    let q = queue(&server.url())
        .await
        .with_key_limit(KeyLimit::per_key().with_max_running(u32::MAX));
    common::ordering_attacks::the_largest_cap_runs_a_keys_events_at_once(&q).await;
}

/// Release: a dead letter replayed while its key's next event runs waits for it,
/// then runs before the key's later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_dead_letter_replayed_mid_run_waits_then_goes_first() {
    let server = PostgresServer::start();
    let queue = queue(&server.url())
        .await
        .with_key_limit(KeyLimit::per_key());
    common::ordering_attacks::a_released_dead_letter_replayed_mid_run_waits_then_goes_first(&queue)
        .await;
}

/// A worker configured without the key limit the endpoints have still runs a key's
/// events one at a time, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_key_limit_keeps_the_order() {
    let server = PostgresServer::start();
    let endpoint = queue(&server.url())
        .await
        .with_key_limit(KeyLimit::per_key());
    let plain = queue(&server.url()).await;
    common::ordering_attacks::a_worker_without_the_limit_keeps_the_order(&endpoint, plain).await;
}

/// A pause while a key's events run, then a resume: order and cap hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_mid_run_keeps_the_order() {
    let server = PostgresServer::start();
    let queue = queue(&server.url())
        .await
        .with_key_limit(KeyLimit::per_key());
    common::ordering_attacks::a_pause_mid_run_keeps_the_order(&queue).await;
}
