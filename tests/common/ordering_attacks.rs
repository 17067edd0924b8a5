//! Attacks on key limits that both backends run: keys a key function may answer
//! that are hostile to a store (empty, 1 MB, NUL, Redis hash-tag braces and the
//! separators of the queue's own key names, unicode, a look-alike of a hashed key),
//! a key function that panics, and a watch of the runs of each key at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{KeyLimit, Queue, Worker};
use notmeta_webhooks::receiver::Handler;

use super::ordering::{drained, event_id, fast, keyed_body, start, until};
use super::queue::{enqueuer, send};

/// What the handlers saw: every start in order, the runs of each conversation
/// (the part of the event id before `-`) in progress, and the most at once.
#[derive(Clone, Default)]
pub(crate) struct Watch(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    starts: Vec<String>,
    /// Runs of the event's conversation in progress at each start, itself included.
    at_start: Vec<usize>,
    running: HashMap<String, usize>,
    most: usize,
}

impl Watch {
    /// A handler that runs `ms` milliseconds, watched.
    pub(crate) fn handler(&self, ms: u64) -> impl Handler + use<> {
        let watch = self.clone();
        move |event: Event<'static>| {
            let watch = watch.clone();
            async move {
                let key = event.id.split('-').next().unwrap_or_default().to_owned();
                {
                    let mut w = watch.0.lock().unwrap();
                    w.starts.push(event.id.to_string());
                    let n = w.running.entry(key.clone()).or_default();
                    *n += 1;
                    let now = *n;
                    w.at_start.push(now);
                    w.most = w.most.max(now);
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                *watch.0.lock().unwrap().running.get_mut(&key).unwrap() -= 1;
                Ok(())
            }
        }
    }

    /// Every start, in order.
    pub(crate) fn starts(&self) -> Vec<String> {
        self.0.lock().unwrap().starts.clone()
    }

    /// The starts with the runs of their conversation in progress then (the
    /// started one included).
    pub(crate) fn starts_with_running(&self) -> Vec<(String, usize)> {
        let w = self.0.lock().unwrap();
        w.starts
            .iter()
            .cloned()
            .zip(w.at_start.iter().copied())
            .collect()
    }

    /// The starts of conversation `k`, in order.
    pub(crate) fn starts_of(&self, k: usize) -> Vec<String> {
        let prefix = format!("e{k:03}-");
        self.starts()
            .into_iter()
            .filter(|id| id.starts_with(&prefix))
            .collect()
    }

    /// The most runs of one conversation at once.
    pub(crate) fn most(&self) -> usize {
        self.0.lock().unwrap().most
    }
}

/// The hostile keys, one per conversation `c000`, `c001`, …
pub(crate) fn hostile_keys() -> Vec<String> {
    vec![
        String::new(),
        "x".repeat(1 << 20),
        "a\0b".to_owned(),
        "}{evil}:hold:{".to_owned(),
        ":wait:".to_owned(),
        "ünï😀コード\u{202e}".to_owned(),
        format!("sha256:{}", "0".repeat(64)),
        "k".repeat(200),
        "\u{7f}\u{1}\t\r\n ".to_owned(),
    ]
}

/// A key limit whose key function answers [`hostile_keys`] by conversation.
pub(crate) fn hostile_limit() -> KeyLimit {
    let keys = hostile_keys();
    KeyLimit::per_key().with_key(move |event: &Event<'_>| {
        let k: usize = event.id[1..4].parse().ok()?;
        keys.get(k).cloned()
    })
}

/// Each hostile key's events (`queue` has [`hostile_limit`]) run one at a time, in
/// enqueue order, every one once; a duplicate is answered as one.
pub(crate) async fn hostile_keys_run_in_order(queue: &Queue) {
    let keys = hostile_keys().len();
    let per_key = 5;
    let endpoint = enqueuer(queue);
    for i in 0..per_key {
        for k in 0..keys {
            assert_eq!(send(&endpoint, &keyed_body(k, i)).await.1, "OK");
        }
    }
    assert_eq!(send(&endpoint, &keyed_body(1, 1)).await.1, "OK (duplicate)");
    let watch = Watch::default();
    let worker = start(fast(Worker::new(queue.clone(), watch.handler(20)), "a"));
    until(60, "every event", || watch.starts().len() >= keys * per_key).await;
    drained(queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "two runs of one key at once");
    assert_eq!(watch.starts().len(), keys * per_key);
    for k in 0..keys {
        let expected: Vec<String> = (0..per_key).map(|i| event_id(k, i)).collect();
        assert_eq!(watch.starts_of(k), expected, "key {k}");
    }
}

/// A key function that panics for one event: the endpoint answers it with a server
/// error (NotMeta delivers it again later) instead of panicking, and goes on with
/// the others.
pub(crate) async fn a_panicking_key_function_is_a_server_error(queue: Queue) {
    let queue = queue.with_key_limit(KeyLimit::per_key().with_key(|event: &Event<'_>| {
        assert!(!event.id.starts_with("e001"), "no key for {}", event.id);
        Some("one".to_owned())
    }));
    let endpoint = enqueuer(&queue);
    let (status, _) = send(&endpoint, &keyed_body(1, 0)).await;
    assert!((500..600).contains(&status), "answered {status}");
    assert_eq!(send(&endpoint, &keyed_body(0, 0)).await.1, "OK");
    assert_eq!(queue.counts().await.unwrap().pending, 1);
}

/// Events that waited longer than the dedup window (`queue`'s window is 1 s; no
/// worker running) are delivered again: the copy of the event that holds the key's
/// slot is answered as a duplicate (it is still queued), the copy of the waiting
/// one never runs beside or after its first copy, and the key is not left blocked:
/// its next event runs.
pub(crate) async fn a_redelivery_after_the_window_neither_doubles_nor_blocks(queue: &Queue) {
    let endpoint = enqueuer(queue);
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
    drained(queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "two runs of one key at once");
    let expected: Vec<String> = (0..3).map(|i| event_id(0, i)).collect();
    assert_eq!(watch.starts(), expected);
}

/// A cap of `u32::MAX` (`queue` has it): a key's events run at once, as many as
/// the worker's concurrency (8), and each once.
pub(crate) async fn the_largest_cap_runs_a_keys_events_at_once(queue: &Queue) {
    let endpoint = enqueuer(queue);
    for i in 0..16 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    let watch = Watch::default();
    let worker = start(fast(Worker::new(queue.clone(), watch.handler(500)), "a"));
    until(60, "every event", || watch.starts().len() >= 16).await;
    drained(queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.starts().len(), 16);
    assert!(watch.most() > 1, "a cap of u32::MAX ran one at a time");
}

/// Release (the default): a key's first event goes to the dead letters, its second
/// runs (slowly); the dead letter is replayed while the second runs and a third
/// waits: the replayed event starts only once the second ended (the cap holds) and
/// before the third (it was enqueued first).
pub(crate) async fn a_released_dead_letter_replayed_mid_run_waits_then_goes_first(queue: &Queue) {
    use notmeta_webhooks::receiver::HandlerError;
    let endpoint = enqueuer(queue);
    for i in 0..3 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    let watch = Watch::default();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let (inner, refuse) = (Arc::new(watch.handler(1_500)), Arc::clone(&refuse));
        move |event: Event<'static>| {
            let refused = *event.id == event_id(0, 0)
                && refuse.swap(false, std::sync::atomic::Ordering::AcqRel);
            let run = Arc::clone(&inner);
            async move {
                if refused {
                    return Err(HandlerError::permanent("refused once"));
                }
                run.call(event).await
            }
        }
    };
    let worker = start(fast(Worker::new(queue.clone(), handler), "a"));
    until(30, "the second event", || {
        watch.starts().contains(&event_id(0, 1))
    })
    .await;
    assert_eq!(queue.replay_dead_letters(10).await.unwrap(), 1);
    until(60, "every event", || watch.starts().len() == 3).await;
    drained(queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "{:?}", watch.starts_with_running());
    let expected = [event_id(0, 1), event_id(0, 0), event_id(0, 2)];
    assert_eq!(watch.starts(), expected);
}

/// Events queued through `endpoint` (with key limits) and run by a worker on
/// `plain` (the same queue, without key limits: a process configured apart): a
/// key's events still run one at a time, in order.
pub(crate) async fn a_worker_without_the_limit_keeps_the_order(endpoint: &Queue, plain: Queue) {
    let sender = enqueuer(endpoint);
    for i in 0..4 {
        assert_eq!(send(&sender, &keyed_body(0, i)).await.1, "OK");
    }
    let watch = Watch::default();
    let worker = start(fast(Worker::new(plain, watch.handler(200)), "a"));
    until(60, "every event", || watch.starts().len() >= 4).await;
    drained(endpoint, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "{:?}", watch.starts_with_running());
    let expected: Vec<String> = (0..4).map(|i| event_id(0, i)).collect();
    assert_eq!(watch.starts(), expected);
}

/// The queue paused while a key's events run (each settle moves the key's next
/// entry forward, but nothing new starts), then resumed: the rest run, in order,
/// one at a time.
pub(crate) async fn a_pause_mid_run_keeps_the_order(queue: &Queue) {
    let endpoint = enqueuer(queue);
    for i in 0..6 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    let watch = Watch::default();
    let worker = start(fast(Worker::new(queue.clone(), watch.handler(300)), "a"));
    until(30, "the second event", || watch.starts().len() >= 2).await;
    queue.pause().await.unwrap();
    // The run in progress ends; nothing starts while paused.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let paused = watch.starts().len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        watch.starts().len(),
        paused,
        "an event started while paused"
    );
    queue.resume().await.unwrap();
    until(60, "every event", || watch.starts().len() >= 6).await;
    drained(queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "{:?}", watch.starts_with_running());
    let expected: Vec<String> = (0..6).map(|i| event_id(0, i)).collect();
    assert_eq!(watch.starts(), expected);
}
