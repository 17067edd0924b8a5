//! Key limits on the queue in memory (`Queue::in_memory().with_key_limit(…)`): the
//! same scenarios as on Redis and PostgreSQL (a cap of 2, the dead-letter policies,
//! a retry keeping its slot) and many keys through random temporary failures with
//! several workers. Built with the `queue` feature alone.

use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};

mod common;
use common::ordering::{Ledger, drained, enqueue_all, fast, handler, start, until};

/// The queue in memory needs no server: the scenarios' `server.url()` is unused.
struct NoServer;

impl NoServer {
    fn url(&self) -> String {
        String::new()
    }
}

async fn ordered(_url: &str, limit: KeyLimit) -> Queue {
    Queue::in_memory().with_key_limit(limit)
}

common::ordering::key_limit_tests!(NoServer, ordered);

/// 40 keys × 15 events, a handler failing temporarily at random, three workers of
/// 8 handlers on clones of one queue: each key's handlers start in enqueue order,
/// one at a time, and every event is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_run_in_order_one_at_a_time_through_failures() {
    let queue = Queue::in_memory().with_key_limit(KeyLimit::per_key());
    let ledger = Ledger::default();
    let workers: Vec<_> = (0..3)
        .map(|tag| {
            let worker = Worker::new(queue.clone(), handler(&ledger, tag, 1));
            start(fast(worker, &format!("w{tag}")))
        })
        .collect();
    enqueue_all(&queue, 40, 15).await;
    until(120, "every event", || ledger.succeeded() == 600).await;
    let counts = drained(&queue, 30).await;
    assert_eq!(counts.dead_letters, 0, "{counts:?}");
    for worker in workers {
        worker.stop().await;
    }
    ledger.check(40, 15, 1);
}

/// Without a key limit the same run overlaps a key's events: the checks can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_key_limit_a_keys_events_overlap() {
    let queue = Queue::in_memory();
    let ledger = Ledger::default();
    let worker = start(fast(
        Worker::new(queue.clone(), handler(&ledger, 0, 1)),
        "w",
    ));
    enqueue_all(&queue, 4, 30).await;
    until(60, "every event", || ledger.succeeded() == 120).await;
    worker.stop().await;
    assert!(
        ledger.most() > 1,
        "a key never ran two at once without a limit"
    );
}
