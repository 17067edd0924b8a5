//! Key limits on the queue in Redis (`Queue::with_key_limit`), against a real
//! `redis-server`: per-key order and cap through random temporary failures,
//! several workers and one killed mid-run; a cap of 2; the dead-letter policies
//! (release, hold, replay, purge); duplicates; the counts. Built with the `queue`
//! feature alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;

mod common;
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

/// A cap of 2: never more than 2 handlers of a key at once, the cap reached, and an
/// event starts only once every event 2 or more places before it has succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_of_two_runs_at_most_two_per_key() {
    let server = RedisServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key().with_max_running(2)).await;
    let ledger = Ledger::default();
    let workers = [
        start(fast(Worker::new(queue.clone(), handler(&ledger, 0, 2)), "a")),
        start(fast(Worker::new(queue.clone(), handler(&ledger, 1, 2)), "b")),
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
    let worker = start(fast(Worker::new(queue.clone(), handler(&ledger, 0, 1_000)), "a"));
    enqueue_all(&queue, 2, 40).await;
    until(60, "every event", || ledger.succeeded() == 80).await;
    worker.stop().await;
    assert!(ledger.most() > 1, "a key's events never overlapped");
}

/// A handler for the dead-letter tests: records each start; fails permanently for
/// the event ids in `fail` (until they are removed from it).
fn failing(
    starts: &Arc<Mutex<Vec<String>>>,
    fail: &Arc<Mutex<Vec<String>>>,
) -> impl notmeta_webhooks::receiver::Handler + use<> {
    let (starts, fail) = (Arc::clone(starts), Arc::clone(fail));
    move |event: Event<'static>| {
        let (starts, fail) = (Arc::clone(&starts), Arc::clone(&fail));
        async move {
            starts.lock().unwrap().push(event.id.to_string());
            if fail.lock().unwrap().contains(&event.id.to_string()) {
                Err(HandlerError::permanent("refused"))
            } else {
                Ok(())
            }
        }
    }
}

fn list(ids: &[&str]) -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(ids.iter().map(|s| (*s).to_owned()).collect()))
}

/// Release (the default): a dead letter frees its key, the later events go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_releases_its_key_by_default() {
    let server = RedisServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key()).await;
    let endpoint = enqueuer(&queue);
    for i in 0..3 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.0, 200);
    }
    let starts = list(&[]);
    let worker = start(fast(
        Worker::new(queue.clone(), failing(&starts, &list(&[&event_id(0, 0)]))),
        "a",
    ));
    until(30, "the later events", || starts.lock().unwrap().len() == 3).await;
    let counts = drained(&queue, 30).await;
    worker.stop().await;
    assert_eq!(counts.dead_letters, 1);
    let expected: Vec<String> = (0..3).map(|i| event_id(0, i)).collect();
    assert_eq!(*starts.lock().unwrap(), expected);
}

/// Hold: a dead letter keeps its key blocked (the later events count as pending, a
/// duplicate takes no slot) until it is purged: then the rest go on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dead_letter_blocks_its_key_until_purged() {
    let server = RedisServer::start();
    let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    let queue = ordered(&server.url(), limit).await;
    let endpoint = enqueuer(&queue);
    for k in 0..2 {
        for i in 0..3 {
            assert_eq!(send(&endpoint, &keyed_body(k, i)).await.0, 200);
        }
    }
    let starts = list(&[]);
    let fail = list(&[&event_id(0, 0), &event_id(1, 0)]);
    let worker = start(fast(Worker::new(queue.clone(), failing(&starts, &fail)), "a"));
    until(30, "both first events", || starts.lock().unwrap().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(starts.lock().unwrap().len(), 2, "a held key's events ran");
    // A duplicate of a blocked event is not queued again.
    assert_eq!(send(&endpoint, &keyed_body(0, 1)).await.1, "OK (duplicate)");
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.dead_letters), (4, 2), "{counts:?}");

    // The operator gives both up: the purge releases both keys.
    assert_eq!(queue.purge_dead_letters(Duration::ZERO).await.unwrap(), 2);
    until(30, "the later events", || starts.lock().unwrap().len() == 6).await;
    for k in 0..2 {
        let s = starts.lock().unwrap();
        let of_key: Vec<&String> = s[2..].iter().filter(|id| id.starts_with(&format!("e{k:03}"))).collect();
        assert_eq!(of_key, [&event_id(k, 1), &event_id(k, 2)]);
    }
    drained(&queue, 30).await;
    worker.stop().await;
}

/// Hold, then replay: the replayed event runs before the key's waiting events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_held_dead_letter_runs_first() {
    let server = RedisServer::start();
    let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
    let queue = ordered(&server.url(), limit).await;
    let endpoint = enqueuer(&queue);
    for i in 0..3 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.0, 200);
    }
    let starts = list(&[]);
    let fail = list(&[&event_id(0, 0)]);
    let worker = start(fast(Worker::new(queue.clone(), failing(&starts, &fail)), "a"));
    until(30, "the first event", || starts.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(starts.lock().unwrap().len(), 1, "a held key's events ran");
    fail.lock().unwrap().clear();
    assert_eq!(queue.replay_dead_letters(10).await.unwrap(), 1);
    until(30, "every event", || starts.lock().unwrap().len() == 4).await;
    let counts = drained(&queue, 30).await;
    worker.stop().await;
    assert_eq!(counts.dead_letters, 0);
    let mut expected = vec![event_id(0, 0)];
    expected.extend((0..3).map(|i| event_id(0, i)));
    assert_eq!(*starts.lock().unwrap(), expected);
}

/// A temporary failure keeps its key's slot while the retry waits: the key's later
/// events wait, the other keys go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_its_keys_slot() {
    let server = RedisServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key()).await;
    let endpoint = enqueuer(&queue);
    for k in 0..2 {
        for i in 0..2 {
            assert_eq!(send(&endpoint, &keyed_body(k, i)).await.0, 200);
        }
    }
    let starts = list(&[]);
    let handler = {
        let starts = Arc::clone(&starts);
        move |event: Event<'static>| {
            let starts = Arc::clone(&starts);
            async move {
                let first = {
                    let mut starts = starts.lock().unwrap();
                    starts.push(event.id.to_string());
                    starts.iter().filter(|s| **s == *event.id).count() == 1
                };
                if first && *event.id == event_id(0, 0) {
                    Err(HandlerError::temporary("later"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let worker = start(
        fast(Worker::new(queue.clone(), handler), "a")
            .with_backoff(Duration::from_millis(800), Duration::from_millis(800)),
    );
    until(30, "key 1's events", || {
        let s = starts.lock().unwrap();
        s.contains(&event_id(1, 1))
    })
    .await;
    let counts = queue.counts().await.unwrap();
    assert!(
        !starts.lock().unwrap().contains(&event_id(0, 1)),
        "a key's next event ran while its first waited for a retry"
    );
    assert_eq!((counts.retrying, counts.pending), (1, 1), "{counts:?}");
    until(30, "every event", || starts.lock().unwrap().len() == 5).await;
    drained(&queue, 30).await;
    worker.stop().await;
    let s = starts.lock().unwrap();
    let key0: Vec<&String> = s.iter().filter(|id| id.starts_with("e000")).collect();
    assert_eq!(key0, [&event_id(0, 0), &event_id(0, 0), &event_id(0, 1)]);
}
