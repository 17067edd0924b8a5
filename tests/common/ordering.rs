//! The key-limit tests' shared parts, for Redis and PostgreSQL alike: keyed event
//! bodies, a ledger of handler starts and ends per key, a handler that fails
//! temporarily at random (deterministically per event and attempt), and the run
//! of many keys through several workers, one of them killed mid-run.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, QueueCounts, Worker, WorkerStats};
use notmeta_webhooks::receiver::{Handler, HandlerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::queue::{enqueuer, send};

/// The id of event `i` of key `k`.
pub(crate) fn event_id(k: usize, i: usize) -> String {
    format!("e{k:03}-{i:03}")
}

/// Key and position of an event id made by [`event_id`].
fn parse(id: &str) -> (usize, usize) {
    let (k, i) = id[1..].split_once('-').unwrap();
    (k.parse().unwrap(), i.parse().unwrap())
}

/// A `message.sent` event of conversation `c<k>`: its default key.
pub(crate) fn keyed_body(k: usize, i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"{}","type":"message.sent","created_at":"2024-01-01T12:00:00Z","data":{{"conversation":{{"id":"c{k:03}"}},"message":{{"id":"m{i}"}}}}}}"#,
        event_id(k, i)
    )
    .into_bytes()
}

#[derive(Default)]
struct Book {
    /// Handler starts per key, in order (event positions).
    starts: HashMap<usize, Vec<usize>>,
    /// Runs in progress per key.
    running: HashMap<usize, usize>,
    /// The most runs of one key at once, over all keys.
    most: usize,
    /// Runs in progress: (worker tag, event id).
    in_flight: HashSet<(usize, String)>,
    /// Successes per event id, by worker tag.
    ok: HashMap<String, Vec<usize>>,
    /// Attempts per event id.
    attempts: HashMap<String, u32>,
    /// What broke a rule, as it happened.
    violations: Vec<String>,
    /// Workers killed: their runs end at the kill, and record nothing after.
    killed: HashSet<usize>,
}

/// What the handlers saw.
#[derive(Clone, Default)]
pub(crate) struct Ledger(Arc<Mutex<Book>>);

impl Ledger {
    fn enter(&self, tag: usize, id: &str, cap: usize) -> u32 {
        let (k, i) = parse(id);
        let mut b = self.0.lock().unwrap();
        if b.killed.contains(&tag) {
            return 1; // a dead process runs nothing
        }
        let first = !b.starts.get(&k).is_some_and(|s| s.contains(&i));
        b.starts.entry(k).or_default().push(i);
        let running = b.running.entry(k).or_default();
        *running += 1;
        let now = *running;
        b.most = b.most.max(now);
        if now > cap {
            b.violations
                .push(format!("{now} runs of key {k} at once (cap {cap}) at {id}"));
        }
        // Started only while fewer than `cap` of the key's earlier events are
        // unsettled (this one takes the last slot).
        if first {
            let open: Vec<String> = (0..i)
                .map(|j| event_id(k, j))
                .filter(|e| !b.ok.contains_key(e))
                .collect();
            if open.len() >= cap {
                b.violations.push(format!(
                    "{id} started while {open:?} were not done (cap {cap})"
                ));
            }
        }
        b.in_flight.insert((tag, id.to_owned()));
        let attempts = b.attempts.entry(id.to_owned()).or_default();
        *attempts += 1;
        *attempts
    }

    fn leave(&self, tag: usize, id: &str, ok: bool) {
        let (k, _) = parse(id);
        let mut b = self.0.lock().unwrap();
        if !b.in_flight.remove(&(tag, id.to_owned())) {
            return; // its worker was killed meanwhile
        }
        *b.running.get_mut(&k).unwrap() -= 1;
        if ok {
            b.ok.entry(id.to_owned()).or_default().push(tag);
        }
    }

    /// Worker `tag` is dead: its runs end now.
    pub(crate) fn kill(&self, tag: usize) {
        let mut b = self.0.lock().unwrap();
        b.killed.insert(tag);
        let ended: Vec<(usize, String)> = b
            .in_flight
            .iter()
            .filter(|(t, _)| *t == tag)
            .cloned()
            .collect();
        for (t, id) in ended {
            b.in_flight.remove(&(t, id.clone()));
            *b.running.get_mut(&parse(&id).0).unwrap() -= 1;
        }
    }

    /// Events that succeeded at least once.
    pub(crate) fn succeeded(&self) -> usize {
        self.0.lock().unwrap().ok.len()
    }

    /// How many times `id`'s handler started.
    pub(crate) fn attempts(&self, id: &str) -> u32 {
        self.0
            .lock()
            .unwrap()
            .attempts
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `id` succeeded.
    pub(crate) fn ok(&self, id: &str) -> bool {
        self.0.lock().unwrap().ok.contains_key(id)
    }

    /// Start positions of key `k`, consecutive repeats (retries) folded.
    pub(crate) fn order(&self, k: usize) -> Vec<usize> {
        let b = self.0.lock().unwrap();
        let mut order: Vec<usize> = b.starts.get(&k).cloned().unwrap_or_default();
        order.dedup();
        order
    }

    /// Successes recorded by worker `tag`.
    pub(crate) fn successes_of(&self, tag: usize) -> usize {
        let b = self.0.lock().unwrap();
        b.ok.values().flatten().filter(|t| **t == tag).count()
    }

    /// The most runs of one key at once.
    pub(crate) fn most(&self) -> usize {
        self.0.lock().unwrap().most
    }

    /// Checks the rules over `keys` keys of `per_key` events each: no violation,
    /// every event succeeded once (twice only if one success was the killed
    /// worker's, whose settle may have been lost: the documented crash window),
    /// and, with a cap of 1, each key's starts in enqueue order.
    pub(crate) fn check(&self, keys: usize, per_key: usize, cap: usize) {
        let b = self.0.lock().unwrap();
        assert!(
            b.violations.is_empty(),
            "{:#?}",
            &b.violations[..b.violations.len().min(20)]
        );
        for k in 0..keys {
            for i in 0..per_key {
                let id = event_id(k, i);
                let ok = b.ok.get(&id).cloned().unwrap_or_default();
                let survivors = ok.iter().filter(|t| !b.killed.contains(t)).count();
                assert!(
                    ok.len() == 1 || (ok.len() == 2 && survivors == 1),
                    "{id} succeeded {} times (by workers {ok:?})",
                    ok.len()
                );
            }
            if cap == 1 {
                let mut order = b.starts.get(&k).cloned().unwrap_or_default();
                order.dedup();
                assert_eq!(order, (0..per_key).collect::<Vec<_>>(), "key {k}");
            }
        }
    }
}

/// Whether the run `attempt` of `id` fails temporarily: about one in five, never
/// more than three times in a row.
fn flaky(id: &str, attempt: u32) -> bool {
    let mut hasher = DefaultHasher::new();
    (id, attempt).hash(&mut hasher);
    attempt <= 3 && hasher.finish().is_multiple_of(5)
}

/// A handler of worker `tag` recording into `ledger`: runs 1 to 4 ms, fails
/// temporarily at random.
pub(crate) fn handler(ledger: &Ledger, tag: usize, cap: usize) -> impl Handler + use<> {
    let ledger = ledger.clone();
    move |event: Event<'static>| {
        let ledger = ledger.clone();
        async move {
            let attempt = ledger.enter(tag, &event.id, cap);
            let pause = 1 + (attempt as u64 * 7 + event.id.len() as u64) % 4;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let fail = flaky(&event.id, attempt);
            ledger.leave(tag, &event.id, !fail);
            if fail {
                Err(HandlerError::temporary("flaky downstream"))
            } else {
                Ok(())
            }
        }
    }
}

/// Settings fast enough for a test: visibility 1 s, poll 10 ms, short backoff.
pub(crate) fn fast<H: Handler>(worker: Worker<H>, name: &str) -> Worker<H> {
    worker
        .with_consumer_name(name)
        .with_concurrency(8)
        .with_max_attempts(10)
        .with_visibility_timeout(Duration::from_secs(1))
        .with_poll_interval(Duration::from_millis(10))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .with_shutdown_deadline(Duration::from_secs(5))
}

/// A worker running in a task of its own.
pub(crate) struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<WorkerStats, notmeta_webhooks::queue::QueueError>>,
}

pub(crate) fn start<H: Handler>(worker: Worker<H>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        handle,
    }
}

impl Running {
    /// Stops the worker and waits (at most a minute: a worker that does not
    /// return fails the test) for its stats.
    pub(crate) async fn stop(mut self) -> WorkerStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("run did not return")
            .unwrap()
            .unwrap()
    }

    pub(crate) fn abort(&self) {
        self.handle.abort();
    }
}

/// Waits until `done` holds (checked every 20 ms), at most `secs` seconds.
pub(crate) async fn until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the queue holds nothing waiting, running or retrying.
pub(crate) async fn drained(queue: &Queue, secs: u64) -> QueueCounts {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = queue.counts().await.unwrap();
        if counts.pending + counts.in_progress + counts.retrying == 0 {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueues `per_key` events of each of `keys` keys, interleaved (event 0 of every
/// key, then event 1, …), each once, and a duplicate of every tenth.
pub(crate) async fn enqueue_all(queue: &Queue, keys: usize, per_key: usize) {
    let endpoint = enqueuer(queue);
    for i in 0..per_key {
        for k in 0..keys {
            let body = keyed_body(k, i);
            assert_eq!(send(&endpoint, &body).await.1, "OK", "{}", event_id(k, i));
            if (k + i) % 10 == 0 {
                assert_eq!(send(&endpoint, &body).await.1, "OK (duplicate)");
            }
        }
    }
}

/// The run of many keys: two workers on `queue`, a third on `doomed` (reached
/// through `proxy`) killed once a third of the events succeeded (its link cut for
/// good, its task aborted), while the events are enqueued; then checks every rule.
pub(crate) async fn many_keys(
    queue: &Queue,
    doomed: Queue,
    proxy: &Proxy,
    keys: usize,
    per_key: usize,
) {
    let ledger = Ledger::default();
    let a = start(fast(
        Worker::new(queue.clone(), handler(&ledger, 0, 1)),
        "a",
    ));
    let b = start(fast(
        Worker::new(queue.clone(), handler(&ledger, 1, 1)),
        "b",
    ));
    let c = start(fast(Worker::new(doomed, handler(&ledger, 2, 1)), "c"));
    let killed = Arc::new(AtomicBool::new(false));
    let killer = {
        let (ledger, killed) = (ledger.clone(), Arc::clone(&killed));
        let third = keys * per_key / 3;
        async move {
            until(300, "a third of the events", || ledger.succeeded() >= third).await;
            proxy.pause();
            proxy.cut();
            ledger.kill(2);
            c.abort();
            killed.store(true, Ordering::Release);
        }
    };
    tokio::join!(enqueue_all(queue, keys, per_key), killer);
    assert!(killed.load(Ordering::Acquire));
    let total = keys * per_key;
    until(300, "every event", || ledger.succeeded() == total).await;
    let counts = drained(queue, 60).await;
    assert_eq!(counts.dead_letters, 0, "{counts:?}");
    let stats = [a.stop().await, b.stop().await];
    ledger.check(keys, per_key, 1);
    assert!(stats.iter().all(|s| s.handled > 0), "{stats:?}");
    assert!(
        ledger.successes_of(2) > 0,
        "the killed worker had run nothing"
    );
}

/// `n` workers (tags 0 to `n - 1`, named `w<tag>`) on `queue`, each with
/// [`handler`] recording into `ledger` for a cap of `cap`.
pub(crate) fn workers(queue: &Queue, ledger: &Ledger, n: usize, cap: usize) -> Vec<Running> {
    (0..n)
        .map(|tag| {
            let name = format!("w{tag}");
            start(fast(
                Worker::new(queue.clone(), handler(ledger, tag, cap)),
                &name,
            ))
        })
        .collect()
}

/// A cap of 2, three workers racing for the same keys' entries: never more than 2
/// handlers of a key at once, the cap reached, and an event started only while
/// fewer than 2 of its key's earlier events were unsettled.
pub(crate) async fn cap_of_two(queue: &Queue) {
    let ledger = Ledger::default();
    let workers = workers(queue, &ledger, 3, 2);
    enqueue_all(queue, 10, 20).await;
    until(120, "every event", || ledger.succeeded() == 200).await;
    drained(queue, 30).await;
    for worker in workers {
        worker.stop().await;
    }
    ledger.check(10, 20, 2);
    assert_eq!(ledger.most(), 2, "the cap of 2 was never used");
}

/// The tests both backends run: `$server` starts a server (with `url()`), and
/// `$ordered(url, limit)` makes a queue on it with that key limit.
#[allow(unused_macros)] // used by the key-limit test files only
macro_rules! key_limit_tests {
    ($server:expr, $ordered:ident) => {
        /// A cap of 2: at most 2 handlers of a key at once.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn a_cap_of_two_runs_at_most_two_per_key() {
            let server = $server;
            let limit = KeyLimit::per_key().with_max_running(2);
            common::ordering::cap_of_two(&$ordered(&server.url(), limit).await).await;
        }

        /// Release (the default): a dead letter frees its key, the later events go on.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_dead_letter_releases_its_key_by_default() {
            let server = $server;
            let queue = $ordered(&server.url(), KeyLimit::per_key()).await;
            common::ordering::dead_letters::a_dead_letter_releases_its_key(&queue).await;
        }

        /// Hold: the key stays blocked until the dead letter is purged.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_held_dead_letter_blocks_its_key_until_purged() {
            let server = $server;
            let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
            let queue = $ordered(&server.url(), limit).await;
            common::ordering::dead_letters::a_held_dead_letter_blocks_its_key_until_purged(&queue)
                .await;
        }

        /// Hold, then replay: the replayed event runs before the key's waiting events.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_replayed_held_dead_letter_runs_first() {
            let server = $server;
            let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
            let queue = $ordered(&server.url(), limit).await;
            common::ordering::dead_letters::a_replayed_held_dead_letter_runs_first(&queue).await;
        }

        /// A retry keeps its key's slot.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_retry_keeps_its_keys_slot() {
            let server = $server;
            let queue = $ordered(&server.url(), KeyLimit::per_key()).await;
            common::ordering::dead_letters::a_retry_keeps_its_keys_slot(&queue).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use key_limit_tests;

/// The dead-letter policies and retries, one scenario per function, each on a
/// queue with the key limit its name says.
pub(crate) mod dead_letters {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use notmeta_webhooks::Event;
    use notmeta_webhooks::queue::{Queue, Worker};
    use notmeta_webhooks::receiver::HandlerError;

    use super::super::queue::{enqueuer, send};
    use super::{drained, event_id, fast, keyed_body, start, until};

    /// A handler for the dead-letter tests: records each start; fails permanently for
    /// the event ids in `fail` (until they are removed from it).
    pub(crate) fn failing(
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

    pub(crate) fn list(ids: &[&str]) -> Arc<Mutex<Vec<String>>> {
        Arc::new(Mutex::new(ids.iter().map(|s| (*s).to_owned()).collect()))
    }

    /// Release (the default): a dead letter frees its key, the later events go on.
    pub(crate) async fn a_dead_letter_releases_its_key(queue: &Queue) {
        let endpoint = enqueuer(queue);
        for i in 0..3 {
            assert_eq!(send(&endpoint, &keyed_body(0, i)).await.0, 200);
        }
        let starts = list(&[]);
        let worker = start(fast(
            Worker::new(queue.clone(), failing(&starts, &list(&[&event_id(0, 0)]))),
            "a",
        ));
        until(30, "the later events", || starts.lock().unwrap().len() == 3).await;
        let counts = drained(queue, 30).await;
        worker.stop().await;
        assert_eq!(counts.dead_letters, 1);
        let expected: Vec<String> = (0..3).map(|i| event_id(0, i)).collect();
        assert_eq!(*starts.lock().unwrap(), expected);
    }

    /// Hold: a dead letter keeps its key blocked (the later events count as pending, a
    /// duplicate takes no slot) until it is purged: then the rest go on without it.
    pub(crate) async fn a_held_dead_letter_blocks_its_key_until_purged(queue: &Queue) {
        let endpoint = enqueuer(queue);
        for k in 0..2 {
            for i in 0..3 {
                assert_eq!(send(&endpoint, &keyed_body(k, i)).await.0, 200);
            }
        }
        let starts = list(&[]);
        let fail = list(&[&event_id(0, 0), &event_id(1, 0)]);
        let worker = start(fast(
            Worker::new(queue.clone(), failing(&starts, &fail)),
            "a",
        ));
        until(30, "both first events", || {
            starts.lock().unwrap().len() == 2
        })
        .await;
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
            let of_key: Vec<&String> = s[2..]
                .iter()
                .filter(|id| id.starts_with(&format!("e{k:03}")))
                .collect();
            assert_eq!(of_key, [&event_id(k, 1), &event_id(k, 2)]);
        }
        drained(queue, 30).await;
        worker.stop().await;
    }

    /// Hold, then replay: the replayed event runs before the key's waiting events.
    pub(crate) async fn a_replayed_held_dead_letter_runs_first(queue: &Queue) {
        let endpoint = enqueuer(queue);
        for i in 0..3 {
            assert_eq!(send(&endpoint, &keyed_body(0, i)).await.0, 200);
        }
        let starts = list(&[]);
        let fail = list(&[&event_id(0, 0)]);
        let worker = start(fast(
            Worker::new(queue.clone(), failing(&starts, &fail)),
            "a",
        ));
        until(30, "the first event", || starts.lock().unwrap().len() == 1).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(starts.lock().unwrap().len(), 1, "a held key's events ran");
        fail.lock().unwrap().clear();
        assert_eq!(queue.replay_dead_letters(10).await.unwrap(), 1);
        until(30, "every event", || starts.lock().unwrap().len() == 4).await;
        let counts = drained(queue, 30).await;
        worker.stop().await;
        assert_eq!(counts.dead_letters, 0);
        let mut expected = vec![event_id(0, 0)];
        expected.extend((0..3).map(|i| event_id(0, i)));
        assert_eq!(*starts.lock().unwrap(), expected);
    }

    /// A temporary failure keeps its key's slot while the retry waits: the key's later
    /// events wait, the other keys go on.
    pub(crate) async fn a_retry_keeps_its_keys_slot(queue: &Queue) {
        let endpoint = enqueuer(queue);
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
        drained(queue, 30).await;
        worker.stop().await;
        let s = starts.lock().unwrap();
        let key0: Vec<&String> = s.iter().filter(|id| id.starts_with("e000")).collect();
        assert_eq!(key0, [&event_id(0, 0), &event_id(0, 0), &event_id(0, 1)]);
    }
}
