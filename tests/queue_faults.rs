//! The queue's promise under the faults a production queue meets, against a real
//! `redis-server` and a fault-injecting TCP proxy between a worker and Redis: a
//! stale worker's settle, a lost consumer group, slow links, late replies, a
//! partition-count change. Built with the `queue` feature alone, so nothing that
//! another feature does (such as the `metrics` feature's periodic calls) can hide a
//! fault.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::dedup::RedisStore;
use notmeta_webhooks::queue::{Queue, QueueError, Worker, WorkerStats};
use notmeta_webhooks::receiver::{Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

mod common;
use common::queue::{SECRET, body, enqueuer, send};

const STREAM: &str = "{notmeta-webhooks:0}:stream";

/// A valid event body of about `size` bytes.
fn large_body(id: &str, size: usize) -> Vec<u8> {
    let pad = "x".repeat(size);
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{"pad":"{pad}"}}}}"#
    )
    .into_bytes()
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A worker running in a task of its own.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<WorkerStats, QueueError>>,
}

fn start<H: Handler>(worker: Worker<H>) -> Running {
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
    async fn stop(mut self) -> WorkerStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.await.unwrap().unwrap()
    }
}

/// Waits until `done` holds (checked every 20 ms), at most `secs` seconds.
async fn until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs of each event id.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn add(&self, id: &str) {
        *self.0.lock().unwrap().entry(id.to_owned()).or_default() += 1;
    }
    fn of(&self, id: &str) -> usize {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    fn each(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

fn fast(worker: Worker<impl Handler>, consumer: &str) -> Worker<impl Handler> {
    worker
        .with_consumer_name(consumer)
        .with_visibility_timeout(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(10))
        .with_backoff(Duration::from_millis(50), Duration::from_millis(50))
        .with_shutdown_deadline(Duration::from_secs(5))
}

/// A handler that records its run, then waits for its gate and answers `result`.
fn gated(runs: &Runs, gate: &watch::Receiver<bool>, fail: bool) -> impl Handler + use<> {
    let (runs, gate) = (runs.clone(), gate.clone());
    move |event: Event<'static>| {
        let (runs, mut gate) = (runs.clone(), gate.clone());
        async move {
            runs.add(&event.id);
            let _ = gate.wait_for(|open| *open).await;
            if fail {
                Err(HandlerError::temporary("downstream unavailable"))
            } else {
                Ok(())
            }
        }
    }
}

/// Finding 1: worker A is cut off from Redis longer than the visibility timeout
/// while its handler runs; B takes the entry over and runs it. A's late failure must
/// not schedule a retry over B's success (no third run), and must be counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_workers_failure_does_not_undo_the_owners_success() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port).await;
    let direct = Queue::connect(&server.url()).await.unwrap();
    let cut_off = Queue::connect(&proxy.redis_url()).await.unwrap();
    assert_eq!(send(&enqueuer(&direct), &body("evt_1")).await.0, 200);

    let runs = Runs::default();
    let (open_a, gate_a) = watch::channel(false);
    let (open_b, gate_b) = watch::channel(false);
    let a = start(fast(Worker::new(cut_off, gated(&runs, &gate_a, true)), "A"));
    until(10, "A runs the event", || runs.of("evt_1") == 1).await;
    proxy.pause();
    let b = start(fast(
        Worker::new(direct.clone(), gated(&runs, &gate_b, false)),
        "B",
    ));
    until(10, "B takes the entry over", || runs.of("evt_1") == 2).await;
    proxy.resume();
    open_a.send_replace(true); // A fails: a retry, if it were applied
    tokio::time::sleep(Duration::from_millis(500)).await;
    open_b.send_replace(true); // B succeeds
    // Long enough for a retry (50 ms backoff) to be promoted and run again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!(runs.of("evt_1"), 2, "a third run: {:?}", runs.each());
    assert_eq!((a.retried, a.lost), (0, 1), "{a:?}");
    assert_eq!((b.handled, b.lost), (1, 0), "{b:?}");
    let counts = direct.counts().await.unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.in_progress,
            counts.retrying,
            counts.dead_letters
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        send(&enqueuer(&direct), &body("evt_1")).await.1,
        "OK (duplicate)"
    );
}

/// Finding 1, variant: B gives the entry up ("did not finish") while A still runs
/// it; A then succeeds. "Done" wins: the dead letter goes, and a replay cannot run
/// the event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_after_the_entry_was_given_up_removes_its_dead_letter() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port).await;
    let direct = Queue::connect(&server.url()).await.unwrap();
    let cut_off = Queue::connect(&proxy.redis_url()).await.unwrap();
    assert_eq!(send(&enqueuer(&direct), &body("evt_1")).await.0, 200);

    let runs = Runs::default();
    let (open_a, gate_a) = watch::channel(false);
    let a = start(fast(
        Worker::new(cut_off, gated(&runs, &gate_a, false)),
        "A",
    ));
    until(10, "A runs the event", || runs.of("evt_1") == 1).await;
    proxy.pause();
    let b_runs = Runs::default();
    let b_seen = b_runs.clone();
    let b = start(
        fast(
            Worker::new(direct.clone(), move |e: Event<'static>| {
                b_seen.add(&e.id);
                async { Ok::<(), HandlerError>(()) }
            }),
            "B",
        )
        .with_max_attempts(1),
    );
    let q = direct.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.counts().await.unwrap().dead_letters == 0 {
        assert!(Instant::now() < deadline, "B never gave the entry up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = direct.dead_letters(10).await.unwrap();
    assert!(letters[0].error.contains("did not finish"), "{letters:?}");
    proxy.resume();
    open_a.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.counts().await.unwrap().dead_letters != 0 {
        assert!(Instant::now() < deadline, "the dead letter stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(direct.replay_dead_letters(10).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!((runs.of("evt_1"), b_runs.total()), (1, 0));
    assert_eq!((a.handled, a.lost), (1, 1), "{a:?}");
    assert_eq!(b.dead_lettered, 1, "{b:?}");
}

/// Finding 2: Redis loses the consumer group (a flush, a restart without
/// persistence, a destroyed group). The workers heal it themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recreate_a_lost_consumer_group() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let endpoint = enqueuer(&queue);
    let runs = Runs::default();
    let seen = runs.clone();
    let worker = start(fast(
        Worker::new(queue.clone(), move |e: Event<'static>| {
            seen.add(&e.id);
            async { Ok::<(), HandlerError>(()) }
        }),
        "W",
    ));
    assert_eq!(send(&endpoint, &body("evt_1")).await.0, 200);
    until(10, "evt_1 handled", || runs.of("evt_1") == 1).await;

    let mut redis = redis(&server.url()).await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(send(&endpoint, &body("evt_2")).await.0, 200);
    until(10, "evt_2 handled after a flush", || runs.of("evt_2") == 1).await;

    // The stream stays, the group goes: the next append does not recreate it.
    let _: () = redis::cmd("XGROUP")
        .arg(&["DESTROY", "{notmeta-webhooks:0}:stream", "workers"])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(send(&endpoint, &body("evt_3")).await.0, 200);
    until(10, "evt_3 handled after the group was destroyed", || {
        runs.of("evt_3") == 1
    })
    .await;
    let stats = worker.stop().await;
    assert_eq!(runs.total(), 3, "{:?}", runs.each());
    assert_eq!(stats.handled, 3);
}

/// Finding 3: large entries behind a slow link. Reads carry no bodies, each run
/// fetches its own entry, and no hidden 500 ms reply limit cuts them: every entry
/// runs once, none is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_behind_a_slow_link_each_run_once() {
    let server = RedisServer::start();
    let direct = Queue::connect(&server.url()).await.unwrap();
    let endpoint = enqueuer(&direct);
    for i in 0..8 {
        let id = format!("evt_{i}");
        assert_eq!(send(&endpoint, &large_body(&id, 512 * 1024)).await.0, 200);
    }
    let proxy = Proxy::start(server.port).await;
    let slow = Queue::connect(&proxy.redis_url()).await.unwrap();
    proxy.set_rate(5 * 1024 * 1024);
    let runs = Runs::default();
    let seen = runs.clone();
    let worker = start(
        Worker::new(slow, move |e: Event<'static>| {
            seen.add(&e.id);
            async { Ok::<(), HandlerError>(()) }
        })
        .with_concurrency(8)
        .with_poll_interval(Duration::from_millis(10)),
    );
    until(30, "all 8 handled", || runs.each().len() == 8).await;
    let stats = worker.stop().await;
    assert!(runs.each().values().all(|n| *n == 1), "{:?}", runs.each());
    assert_eq!((stats.handled, stats.dead_lettered), (8, 0));
    assert_eq!(direct.counts().await.unwrap().dead_letters, 0);
}

/// Finding 3: the documented limits are the ones in force. Over a link with a
/// 600 ms round trip (longer than redis-rs's default 500 ms reply limit), the
/// endpoint's 2 s, the queue's 5 s and the idempotency store's 1 s all hold; a
/// shorter limit set by the user is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_time_limits_are_the_ones_in_force() {
    let server = RedisServer::start();
    // Load the scripts through a fast connection, so a call is one round trip.
    let direct = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&direct), &body("evt_warm")).await.0, 200);
    let fast_store = RedisStore::connect(&server.url()).await.unwrap();
    let receiver = Receiver::new(Verifier::new(SECRET).unwrap(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    });
    let warm = receiver.clone().with_store(fast_store);
    let b = body("evt_warm_store");
    warm.receive(&b, [sign(&b, SECRET).as_bytes()]).await;

    let proxy = Proxy::start(server.port).await;
    let slow = Queue::connect(&proxy.redis_url()).await.unwrap();
    slow.check_layout().await.unwrap();
    proxy.set_latency(Duration::from_millis(300));

    let endpoint = enqueuer(&slow);
    let started = Instant::now();
    assert_eq!(
        send(&endpoint, &body("evt_1")).await,
        (200, "OK".to_owned())
    );
    assert!(started.elapsed() > Duration::from_millis(600));

    let short = endpoint.clone().with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(send(&short, &body("evt_2")).await.0, 503);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(900),
        "{took:?}"
    );

    // evt_2 may or may not have been appended before its time limit passed.
    let pending = slow.counts().await.unwrap().pending;
    assert!((2..=3).contains(&pending), "{pending}");
    let impatient = slow.clone().with_timeout(Duration::from_millis(200));
    assert!(matches!(
        impatient.counts().await,
        Err(QueueError::TimedOut { .. })
    ));

    let store = RedisStore::connect(&proxy.redis_url()).await.unwrap();
    let receiver = receiver.with_store(store);
    let b = body("evt_3");
    let answer = receiver.receive(&b, [sign(&b, SECRET).as_bytes()]).await;
    assert_eq!(answer.outcome(), Outcome::Handled);
}

/// Finding 4: processes configured with another partition count than the queue in
/// Redis are refused, with a clear error, before anything is queued or read.
#[tokio::test]
async fn a_mismatched_partition_count_is_refused() {
    let server = RedisServer::start();
    let four = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(4);
    let two = four.clone().with_partitions(2);
    four.check_layout().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = format!("evt_{i}");
        assert_eq!(send(&enqueuer(&four), &body(&id)).await.0, 200);
        ids.push(id);
    }
    // The endpoint with the other count answers 503 (NotMeta retries) and queues
    // nothing: neither duplicates nor events in partitions no worker reads.
    for id in &ids {
        assert_eq!(send(&enqueuer(&two), &body(id)).await.0, 503);
    }
    assert_eq!(send(&enqueuer(&two), &body("evt_new")).await.0, 503);
    assert_eq!(four.counts().await.unwrap().pending, 20);
    let error = two.counts().await.unwrap_err();
    assert!(matches!(
        error,
        QueueError::LayoutMismatch {
            stored: 4,
            configured: 2
        }
    ));
    assert!(error.to_string().contains("4 partitions"), "{error}");
    let worker = Worker::new(two.clone(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    });
    assert!(matches!(
        worker.run(std::future::pending()).await,
        Err(QueueError::LayoutMismatch { .. })
    ));
}

/// Finding 4, the procedure: a new layout in a new namespace, with the old queue as
/// its previous one. Old and new endpoints run side by side (a rolling deploy),
/// both receive every event twice, and workers drain both: each event runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_partition_count_keeps_every_event_once() {
    let server = RedisServer::start();
    let old = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("shop")
        .with_partitions(4);
    let new = old.clone().with_namespace("shop-v2").with_partitions(2);
    let old_endpoint = enqueuer(&old);
    let new_endpoint = enqueuer(&new).with_previous_queue(old.clone());
    let mut answers = HashMap::new();
    for i in 0..60 {
        let id = format!("evt_{i}");
        // Each event reaches both endpoints, in either order.
        let (first, second) = if i % 2 == 0 {
            (&old_endpoint, &new_endpoint)
        } else {
            (&new_endpoint, &old_endpoint)
        };
        let a = send(first, &body(&id)).await;
        let b = send(second, &body(&id)).await;
        answers.insert(id, (a, b));
    }
    for (id, (a, b)) in &answers {
        assert_eq!((a.0, b.0), (200, 200), "{id}");
        assert_eq!(b.1, "OK (duplicate)", "{id}");
    }
    let runs = Runs::default();
    let handler = |runs: &Runs| {
        let seen = runs.clone();
        move |e: Event<'static>| {
            seen.add(&e.id);
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let a = start(fast(Worker::new(old.clone(), handler(&runs)), "old"));
    let b = start(fast(Worker::new(new.clone(), handler(&runs)), "new"));
    until(20, "every event handled", || runs.each().len() == 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (a.stop().await, b.stop().await);
    assert!(runs.each().values().all(|n| *n == 1), "{:?}", runs.each());
    assert_eq!(a.handled + b.handled, 60);
    assert!(a.handled > 0 && b.handled > 0, "{a:?} {b:?}");
}

/// Finding 7: a settle applied by Redis whose reply comes late is sent again; the
/// second try is recognised as the same owner's, not counted a loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_to_an_applied_settle_is_not_a_loss() {
    let server = RedisServer::start();
    let proxy = Arc::new(Proxy::start(server.port).await);
    let queue = Queue::connect(&proxy.redis_url())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(250));
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let seen = runs.clone();
    let held = Arc::clone(&proxy);
    let worker = start(fast(
        Worker::new(queue.clone(), move |e: Event<'static>| {
            seen.add(&e.id);
            // The settle that follows reaches Redis; its reply arrives after the
            // queue's 250 ms limit.
            held.hold_replies(Duration::from_millis(600));
            async { Ok::<(), HandlerError>(()) }
        }),
        "W",
    ));
    let q = queue.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = q.counts().await
            && runs.total() == 1
            && c.pending + c.in_progress == 0
        {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = worker.stop().await;
    assert_eq!(runs.total(), 1);
    assert_eq!((stats.handled, stats.lost), (1, 0), "{stats:?}");
}

/// Finding 7, the inline receiver: a completion applied whose reply comes late is
/// sent again and recognised, so no lost lease is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_to_an_applied_completion_is_not_a_lost_lease() {
    let server = RedisServer::start();
    let proxy = Arc::new(Proxy::start(server.port).await);
    let store = RedisStore::connect(&proxy.redis_url()).await.unwrap();
    let lost = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let (held, seen, noted) = (Arc::clone(&proxy), Arc::clone(&runs), Arc::clone(&lost));
    let receiver = Receiver::new(Verifier::new(SECRET).unwrap(), move |_: Event<'static>| {
        seen.fetch_add(1, Ordering::SeqCst);
        held.hold_replies(Duration::from_millis(400));
        async { Ok::<(), HandlerError>(()) }
    })
    .with_store(store)
    .with_store_timeout(Duration::from_millis(250))
    .on_outcome(move |report| {
        if report.lease_lost {
            noted.store(true, Ordering::SeqCst);
        }
    });
    let b = body("evt_1");
    let answer = receiver.receive(&b, [sign(&b, SECRET).as_bytes()]).await;
    assert_eq!(answer.outcome(), Outcome::Handled);
    assert!(!lost.load(Ordering::SeqCst), "a lost lease was reported");
    let again = receiver.receive(&b, [sign(&b, SECRET).as_bytes()]).await;
    assert_eq!(again.outcome(), Outcome::Duplicate);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Records the run and succeeds.
fn counting(runs: &Runs) -> impl Handler + use<> {
    let runs = runs.clone();
    move |event: Event<'static>| {
        runs.add(&event.id);
        async { Ok::<(), HandlerError>(()) }
    }
}

/// During a partition-count change the new endpoint marks the event in the old
/// namespace, then its append to the new namespace fails (503, so NotMeta
/// retries). A retry that reaches an endpoint still on the old layout must not be
/// answered 200 unless the event is queued somewhere: it is answered 503 until the
/// new endpoint has queued it, and then as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_during_a_layout_change_loses_nothing() {
    let server = RedisServer::start();
    let old = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("shop");
    let new = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("shop-v2")
        .with_partitions(2);
    let old_endpoint = enqueuer(&old);
    // The new endpoint bounds its streams (any append failure does the same: a
    // time-out, the new namespace's node failing over, a layout mismatch).
    let new_endpoint = enqueuer(&new)
        .with_previous_queue(old.clone())
        .with_max_len(1);
    let target = "evt_lost";
    let filler = (0..)
        .map(|i| format!("evt_fill_{i}"))
        .find(|id| new.partition_of(id) == new.partition_of(target))
        .unwrap();
    assert_eq!(send(&new_endpoint, &body(&filler)).await.0, 200);

    // Refused for sure (full): the mark in the old namespace is taken back.
    let first = send(&new_endpoint, &body(target)).await;
    assert_eq!(first.0, 503, "{first:?}");
    // NotMeta retries; an old endpoint takes it, and the new ones then answer it
    // as a duplicate.
    let retry = send(&old_endpoint, &body(target)).await;
    assert_eq!(retry, (200, "OK".to_owned()));
    let roomy = enqueuer(&new).with_previous_queue(old.clone());
    assert_eq!(
        send(&roomy, &body(target)).await,
        (200, "OK (duplicate)".to_owned())
    );
    let (o, n) = (old.counts().await.unwrap(), new.counts().await.unwrap());
    assert_eq!((o.pending, n.pending), (1, 1), "old {o:?}, new {n:?}");

    // An append that fails without an answer (it may have been applied) keeps the
    // mark: the old endpoints answer 503 until a new one has queued the event.
    let proxy = Proxy::start(server.port).await;
    let cut_off = Queue::connect(&proxy.redis_url())
        .await
        .unwrap()
        .with_namespace("shop-v2")
        .with_partitions(2);
    cut_off.check_layout().await.unwrap();
    let stalled = enqueuer(&cut_off)
        .with_previous_queue(old.clone())
        .with_timeout(Duration::from_millis(300));
    // The layout check is fresh and the old queue is reached directly: only the
    // append's reply does not come in time.
    assert_eq!(send(&stalled, &body("evt_warm")).await.0, 200);
    let second = "evt_stalled";
    proxy.set_latency(Duration::from_millis(400));
    let (status, _) = send(&stalled, &body(second)).await;
    assert_eq!(status, 503);
    proxy.heal();
    let state: Option<String> = redis::cmd("HGET")
        .arg(format!(
            "{{shop:{}}}:event:{second}",
            old.partition_of(second)
        ))
        .arg("s")
        .query_async(&mut redis(&server.url()).await)
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("moving"));
    assert_eq!(send(&old_endpoint, &body(second)).await.0, 503);
    assert_eq!(send(&roomy, &body(second)).await.0, 200);
    assert_eq!(
        send(&old_endpoint, &body(second)).await,
        (200, "OK (duplicate)".to_owned())
    );
}

/// A stale worker's success is recorded ("done_not_owner") while the entry is
/// pending for a worker that took it over and died: the entry is deleted with the
/// success, so it cannot outlive the done mark (the dedup window) and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_event_never_runs_again_after_its_done_mark_expires() {
    let server = RedisServer::start();
    let window = Duration::from_secs(1);
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(window);
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let (open, gate) = watch::channel(false);
    let a = start(
        Worker::new(queue.clone(), gated(&runs, &gate, false))
            .with_consumer_name("A")
            .with_poll_interval(Duration::from_millis(10))
            .with_visibility_timeout(Duration::from_secs(30)),
    );
    until(10, "A runs the event", || runs.of("evt_1") == 1).await;

    // A stalls; worker B takes the entry over (XAUTOCLAIM, here an XCLAIM), then
    // B's process dies before it runs or settles it.
    let mut r = redis(&server.url()).await;
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut r)
        .await
        .unwrap();
    let entry = pending[0].0.clone();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(STREAM)
        .arg("workers")
        .arg("B")
        .arg(0)
        .arg(&entry)
        .arg("JUSTID")
        .query_async(&mut r)
        .await
        .unwrap();

    open.send_replace(true); // A's run succeeds: done, recorded although B owns it
    let a = a.stop().await;
    assert_eq!((a.handled, a.lost), (1, 1), "{a:?}");
    let state: Option<String> = redis::cmd("HGET")
        .arg("{notmeta-webhooks:0}:event:evt_1")
        .arg("s")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("done"));

    tokio::time::sleep(window + Duration::from_millis(500)).await;
    // Worker C reclaims what the dead B held.
    let c = start(fast(Worker::new(queue.clone(), counting(&runs)), "C"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = c.stop().await;
    assert_eq!(
        runs.of("evt_1"),
        1,
        "the event ran again after its success was recorded: C {c:?}"
    );
}

/// `with_max_attempts` holds when a retry is due later than the dedup window: the
/// event's state (with its run count) is kept until the retry is due, and an entry
/// written for a retry carries the runs before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_holds_when_a_backoff_outlasts_the_dedup_window() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1));
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let (_open, gate) = watch::channel(true);
    let w = start(
        fast(Worker::new(queue.clone(), gated(&runs, &gate, true)), "W")
            .with_max_attempts(2)
            .with_backoff(Duration::from_millis(1300), Duration::from_millis(1300)),
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stats = w.stop().await;
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (runs.of("evt_1"), counts.dead_letters),
        (2, 1),
        "max_attempts 2: {stats:?} {counts:?}"
    );
}

/// While an event waits for a retry due later than the dedup window, its id is
/// still remembered: a duplicate delivery is not queued beside the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_not_queued_again_while_its_retry_waits() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1));
    let endpoint = enqueuer(&queue);
    assert_eq!(send(&endpoint, &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let (_open, gate) = watch::channel(true);
    let w = start(
        fast(Worker::new(queue.clone(), gated(&runs, &gate, true)), "W")
            .with_backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    until(10, "the first run", || runs.of("evt_1") == 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = send(&endpoint, &body("evt_1")).await;
    let counts = queue.counts().await.unwrap();
    w.stop().await;
    assert_eq!(
        again.1, "OK (duplicate)",
        "queued a second time while a retry is scheduled: {counts:?}"
    );
}

/// A worker whose `run` future is dropped (a `tokio::select!` against Ctrl-C, a task
/// aborted) stops reading, but its running handler goes on to its end with its
/// entry renewed: no other worker runs the event meanwhile, and the handler's
/// success is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_lets_running_handlers_finish() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let (open, gate) = watch::channel(false);
    let a = fast(Worker::new(queue.clone(), gated(&runs, &gate, false)), "A");
    let a = tokio::spawn(a.run(std::future::pending()));
    until(10, "A runs the event", || runs.of("evt_1") == 1).await;
    a.abort();
    let _ = a.await;

    let b = start(fast(Worker::new(queue.clone(), counting(&runs)), "B"));
    // Several visibility timeouts (600 ms): the entry stays with A's handler.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        runs.of("evt_1"),
        1,
        "B ran an event whose handler still ran"
    );
    open.send_replace(true);
    let q = queue.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = q.counts().await.unwrap();
        if c.pending + c.in_progress == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A's run was not recorded: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = b.stop().await;
    assert_eq!((runs.of("evt_1"), b.handled), (1, 0), "{b:?}");
}

/// A huge concurrency is clamped to what Tokio's semaphore holds, not a panic.
#[tokio::test]
async fn a_huge_concurrency_does_not_panic() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let worker = Worker::new(queue, |_e: Event<'static>| async {
        Ok::<(), HandlerError>(())
    })
    .with_concurrency(usize::MAX);
    let ran = tokio::spawn(worker.run(tokio::time::sleep(Duration::from_millis(200)))).await;
    assert!(ran.is_ok(), "the worker panicked: {ran:?}");
}

/// A run cut short by a crash counts as an attempt even when the worker restarts
/// under the same consumer name (a stable pod name) and takes its own entry back:
/// with `max_attempts(1)` the event goes to the dead letters instead of running
/// again, so an event that crashes its worker every time cannot loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_counts_for_a_worker_restarted_under_its_name() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let runs = Runs::default();
    let (_open, gate) = watch::channel(false);
    // The first process reaches Redis through a proxy that is then cut for good:
    // to Redis, a process that died mid-run.
    let proxy = Proxy::start(server.port).await;
    let doomed = Queue::connect(&proxy.redis_url()).await.unwrap();
    let first = fast(Worker::new(doomed, gated(&runs, &gate, false)), "pod-0").with_max_attempts(1);
    let first = tokio::spawn(first.run(std::future::pending()));
    until(10, "the first run", || runs.of("evt_1") == 1).await;
    proxy.pause();
    proxy.cut();

    let other = Queue::connect(&server.url()).await.unwrap();
    let again = start(fast(Worker::new(other, counting(&runs)), "pod-0").with_max_attempts(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = again.stop().await;
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (runs.of("evt_1"), counts.dead_letters),
        (1, 1),
        "max_attempts 1, one run crashed: {stats:?} {counts:?}"
    );
    first.abort();
}

/// Successes and overlaps, per event.
#[derive(Clone, Default)]
struct Ledger {
    ok: Arc<Mutex<HashMap<String, usize>>>,
    starts: Arc<Mutex<HashMap<String, usize>>>,
    now: Arc<Mutex<HashMap<String, usize>>>,
    overlaps: Arc<Mutex<Vec<String>>>,
}

impl Ledger {
    fn enter(&self, id: &str) {
        *self
            .starts
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default() += 1;
        let mut now = self.now.lock().unwrap();
        let n = now.entry(id.to_owned()).or_default();
        *n += 1;
        if *n > 1 {
            self.overlaps.lock().unwrap().push(id.to_owned());
        }
    }
    fn leave(&self, id: &str, ok: bool) {
        *self.now.lock().unwrap().get_mut(id).unwrap() -= 1;
        if ok {
            *self.ok.lock().unwrap().entry(id.to_owned()).or_default() += 1;
        }
    }
    fn done(&self) -> usize {
        self.ok.lock().unwrap().len()
    }
}

/// A handler that sleeps `ms` (async), fails temporarily on the first run of ids
/// ending in `7`, panics on the first run of ids ending in `3`.
fn ledgered(ledger: &Ledger, ms: u64) -> impl Handler + use<> + Clone {
    let ledger = ledger.clone();
    move |event: Event<'static>| {
        let ledger = ledger.clone();
        async move {
            let first = ledger
                .starts
                .lock()
                .unwrap()
                .get(event.id.as_str())
                .is_none();
            ledger.enter(&event.id);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if first && event.id.ends_with('7') {
                ledger.leave(&event.id, false);
                return Err(HandlerError::temporary("first run of a 7"));
            }
            if first && event.id.ends_with('3') {
                ledger.leave(&event.id, false);
                panic!("first run of a 3");
            }
            ledger.leave(&event.id, true);
            Ok::<(), HandlerError>(())
        }
    }
}

async fn check_all(ledger: &Ledger, queue: &Queue, ids: &[String], label: &str) {
    let ok = ledger.ok.lock().unwrap().clone();
    let not_once: Vec<_> = ids
        .iter()
        .filter(|id| ok.get(*id).copied().unwrap_or(0) != 1)
        .map(|id| (id.clone(), ok.get(id).copied().unwrap_or(0)))
        .take(20)
        .collect();
    let overlaps = ledger.overlaps.lock().unwrap().clone();
    let counts = queue.counts().await.unwrap();
    let letters = queue.dead_letters(20).await.unwrap();
    assert!(
        not_once.is_empty() && overlaps.is_empty() && letters.is_empty(),
        "{label}: not exactly one success: {not_once:?}; overlapping runs: {:?} ({}); counts {counts:?}; letters {:?}",
        &overlaps[..overlaps.len().min(20)],
        overlaps.len(),
        letters
            .iter()
            .map(|l| (&l.event_id, &l.error))
            .collect::<Vec<_>>()
    );
}

/// Dropping `Worker::run` (tokio::time::timeout, select!, an aborted task) while an
/// isolated handler blocks its thread: the handler goes on and its entry stays
/// renewed, so another worker never runs the same event at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_run_never_overlaps_a_blocking_handler() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let runs = Runs::default();
    let handler = {
        let (running, max_running, runs) = (running.clone(), max_running.clone(), runs.clone());
        move |event: Event<'static>| {
            let (running, max_running, runs) = (running.clone(), max_running.clone(), runs.clone());
            async move {
                runs.add(&event.id);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                // Blocking work (a sync HTTP client, a CPU-bound step).
                std::thread::sleep(Duration::from_secs(2));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let a = fast(Worker::new(queue.clone(), handler.clone()), "A");
    // The caller stops waiting on run after 300 ms (e.g. a select! on ctrl-c).
    let _ = tokio::time::timeout(Duration::from_millis(300), a.run(std::future::pending())).await;
    assert_eq!(runs.of("evt_1"), 1);
    let b = start(fast(Worker::new(queue.clone(), handler), "B"));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    b.stop().await;
    // A's handler finished and its success was recorded: B never ran it.
    assert_eq!(runs.of("evt_1"), 1);
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_progress), (0, 0), "{counts:?}");
    assert_eq!(
        max_running.load(Ordering::SeqCst),
        1,
        "two runs of evt_1 overlapped although no worker stalled"
    );
}

/// Edge settings: visibility at its 30 ms minimum, concurrency 1, zero backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_visibility_concurrency_one_zero_backoff_each_once() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let e = enqueuer(&queue);
    let ids: Vec<String> = (0..200).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        assert_eq!(send(&e, &body(id)).await.0, 200);
    }
    let ledger = Ledger::default();
    let mk = |name: &str| {
        Worker::new(queue.clone(), ledged(&ledger))
            .with_consumer_name(name)
            .with_concurrency(1)
            .with_visibility_timeout(Duration::from_millis(30))
            .with_poll_interval(Duration::from_millis(5))
            .with_backoff(Duration::ZERO, Duration::ZERO)
            .with_max_attempts(3)
    };
    fn ledged(l: &Ledger) -> impl Handler + use<> + Clone {
        ledgered(l, 60)
    }
    let ws: Vec<_> = ["A", "B", "C"].iter().map(|n| start(mk(n))).collect();
    let l2 = ledger.clone();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while l2.done() < ids.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stats = Vec::new();
    for w in ws {
        stats.push(w.stop().await);
    }
    eprintln!("stats {stats:?}");
    check_all(&ledger, &queue, &ids, "30 ms visibility").await;
}

/// A queue time limit of 1 ms (most replies arrive after it: the calls are
/// applied and reported failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_millisecond_queue_timeout_still_runs_each_once() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let e = enqueuer(&queue);
    let ids: Vec<String> = (0..200).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        assert_eq!(send(&e, &body(id)).await.0, 200);
    }
    let ledger = Ledger::default();
    let tight = queue.clone().with_timeout(Duration::from_millis(1));
    let mut ws = Vec::new();
    for name in ["A", "B"] {
        // `prepare` may time out at 1 ms: retry the start.
        ws.push(start(
            Worker::new(tight.clone(), ledgered(&ledger, 20))
                .with_consumer_name(name)
                .with_visibility_timeout(Duration::from_millis(600))
                .with_poll_interval(Duration::from_millis(5))
                .with_backoff(Duration::from_millis(10), Duration::from_millis(10)),
        ));
    }
    let l2 = ledger.clone();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while l2.done() < ids.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for w in ws {
        if let Some(stop) = w.stop {
            let _ = stop.send(());
        }
        eprintln!("worker: {:?}", w.handle.await.unwrap());
    }
    check_all(&ledger, &queue, &ids, "1 ms timeout").await;
}

/// max_attempts 1 and a handler that panics: one run, one dead letter that says
/// it panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_one_and_a_panic_give_one_dead_letter() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_3")).await.0, 200);
    let runs = Runs::default();
    let r = runs.clone();
    let w = start(
        fast(
            Worker::new(queue.clone(), move |event: Event<'static>| {
                let r = r.clone();
                async move {
                    r.add(&event.id);
                    panic!("boom");
                    #[allow(unreachable_code)]
                    Ok::<(), HandlerError>(())
                }
            }),
            "A",
        )
        .with_max_attempts(1),
    );
    until(10, "a dead letter", || runs.of("evt_3") >= 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = w.stop().await;
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(runs.of("evt_3"), 1, "{stats:?}");
    assert_eq!(letters.len(), 1, "{stats:?}");
    assert!(
        letters[0].error.contains("panicked"),
        "{:?}",
        letters[0].error
    );
}

/// A dedup window (1 s) shorter than the renewal interval (10 s at the default 30 s
/// visibility): the state is kept for the window plus the visibility timeout while
/// the handler runs, so a redelivery during the run is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_dedup_window_does_not_expire_while_the_handler_runs() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1));
    let e = enqueuer(&queue);
    assert_eq!(send(&e, &body("evt_1")).await.0, 200);
    let ledger = Ledger::default();
    let slow = {
        let ledger = ledger.clone();
        move |event: Event<'static>| {
            let ledger = ledger.clone();
            async move {
                ledger.enter(&event.id);
                tokio::time::sleep(Duration::from_secs(4)).await;
                ledger.leave(&event.id, true);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let a = start(
        Worker::new(queue.clone(), slow.clone())
            .with_consumer_name("A")
            .with_poll_interval(Duration::from_millis(10)),
    );
    let b = start(
        Worker::new(queue.clone(), slow)
            .with_consumer_name("B")
            .with_poll_interval(Duration::from_millis(10)),
    );
    until(10, "evt_1 runs", || {
        !ledger.starts.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // NotMeta redelivers (its 200 was lost) while the first run is still going.
    let again = send(&e, &body("evt_1")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (a, b) = (a.stop().await, b.stop().await);
    let ok = ledger.ok.lock().unwrap().clone();
    assert!(
        again.1 == "OK (duplicate)" && ok.get("evt_1") == Some(&1),
        "redelivery during the run answered {again:?}; successes {ok:?}; overlaps {:?}; A {a:?} B {b:?}",
        ledger.overlaps.lock().unwrap()
    );
}

/// Handlers block both threads of the worker's runtime for five visibility
/// timeouts, the worker's settings the defaults: its renewals, on a thread and a
/// connection of their own, keep the entries, so a worker on another runtime
/// never takes them over.
#[test]
fn handlers_blocking_every_thread_keep_their_entries() {
    let server = RedisServer::start();
    let url = server.url();
    common::blocked::blocked_threads_keep_their_entries(move || {
        let url = url.clone();
        async move { Queue::connect(&url).await.unwrap() }
    });
}
