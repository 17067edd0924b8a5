//! The queue end to end against a real `redis-server`: see `common::queue_end_to_end`.
//!
//! `NOTMETA_QUEUE_E2E_EVENTS` sets the number of events (default 20,000).

mod common;

use common::queue_end_to_end::{Target, end_to_end};
use notmeta_test_support::RedisServer;

/// The child side (does nothing unless started by `end_to_end`).
#[test]
fn worker_process() {
    common::queue_end_to_end::worker_process();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_exactly_once() {
    if std::env::var("NOTMETA_QUEUE_E2E_WORKER").is_ok() {
        return;
    }
    let events = std::env::var("NOTMETA_QUEUE_E2E_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let server = RedisServer::start();
    let summary = end_to_end("worker_process", Target::Single(server.url()), 1, events).await;
    eprintln!("{summary}");
}
