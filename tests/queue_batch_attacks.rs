//! Attacks on batched starts and batched successes (settler per partition).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, Worker};
use notmeta_webhooks::receiver::{Handler, HandlerError};

mod common;
use common::ordering::{start, until};
use common::queue::{body, enqueuer, send};

#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn add(&self, id: &str) {
        *self.0.lock().unwrap().entry(id.to_owned()).or_default() += 1;
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn twice(&self) -> Vec<(String, usize)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

fn counting(runs: &Runs) -> impl Handler + use<> {
    let runs = runs.clone();
    move |event: Event<'static>| {
        let runs = runs.clone();
        async move {
            runs.add(&event.id);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<(), HandlerError>(())
        }
    }
}

/// Waits (at most `secs` seconds) until nothing is left in the queue and each of
/// the `n` events has run.
async fn until_drained(direct: &Queue, runs: &Runs, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !(drained(direct).await && runs.distinct() == n) {
        assert!(
            Instant::now() < deadline,
            "not drained: {}",
            runs.distinct()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One worker handled each of the `n` events once, and lost none.
fn assert_each_once(stats: &notmeta_webhooks::queue::WorkerStats, runs: &Runs, n: usize) {
    eprintln!(
        "{stats:?}; runs {} distinct {}",
        runs.total(),
        runs.distinct()
    );
    assert_eq!(runs.twice(), vec![], "events run more than once");
    assert_eq!(stats.handled, n as u64);
    assert_eq!(stats.lost, 0);
}

async fn drained(queue: &Queue) -> bool {
    let c = queue.counts().await.unwrap();
    c.pending + c.in_progress + c.retrying == 0
}

/// Loads the scripts through a direct connection, so each later call is one round trip.
async fn warm(direct: &Queue) {
    let runs = Runs::default();
    for i in 0..3 {
        assert_eq!(
            send(&enqueuer(direct), &body(&format!("warm_{i}"))).await.0,
            200
        );
    }
    let w = start(
        Worker::new(direct.clone(), counting(&runs))
            .with_consumer_name("warm")
            .with_poll_interval(Duration::from_millis(10)),
    );
    until(20, "warm drained", || runs.distinct() == 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !drained(direct).await {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.stop().await;
}

/// `n` events queued on a fresh redis-server (its scripts loaded), the queue also
/// reached through a proxy with the time limit `limit`, and a handler counting
/// runs that holds the first `held` until the gate is opened.
struct Stalled<H> {
    _server: RedisServer,
    direct: Queue,
    proxy: Proxy,
    slow: Queue,
    runs: Runs,
    gate: Arc<tokio::sync::Notify>,
    handler: H,
}

async fn stalled(n: usize, held: usize, limit: Duration) -> Stalled<impl Handler + use<>> {
    let server = RedisServer::start();
    let direct = Queue::connect(&server.url()).await.unwrap();
    warm(&direct).await;
    for i in 0..n {
        assert_eq!(
            send(&enqueuer(&direct), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    let proxy = Proxy::start(server.port).await;
    let slow = Queue::connect(&proxy.redis_url())
        .await
        .unwrap()
        .with_timeout(limit);
    slow.check_layout().await.unwrap();
    let runs = Runs::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let (r, g) = (runs.clone(), gate.clone());
    let handler = move |event: Event<'static>| {
        let (runs, gate) = (r.clone(), g.clone());
        async move {
            runs.add(&event.id);
            if runs.distinct() <= held {
                gate.notified().await;
            }
            Ok::<(), HandlerError>(())
        }
    };
    Stalled {
        _server: server,
        direct,
        proxy,
        slow,
        runs,
        gate,
        handler,
    }
}

/// Redis stalls (the proxy holds everything) for many time limits while 300 runs
/// (more than a batch) wait to record their successes; after the stall everything
/// settles: each event runs once, `handled` counts each once, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_limit_with_many_successes_waiting() {
    let n = 600;
    let Stalled {
        _server,
        direct,
        proxy,
        slow,
        runs,
        gate,
        handler,
    } = stalled(n, 300, Duration::from_millis(200)).await;
    let a = start(
        Worker::new(slow, handler)
            .with_consumer_name("A")
            .with_concurrency(300)
            .with_visibility_timeout(Duration::from_secs(30))
            .with_poll_interval(Duration::from_millis(10))
            .with_shutdown_deadline(Duration::from_secs(10)),
    );
    until(30, "300 running", || runs.distinct() >= 300).await;
    proxy.pause();
    gate.notify_waiters();
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.resume();
    until_drained(&direct, &runs, n, 90).await;
    let stats = a.stop().await;
    assert_each_once(&stats, &runs, n);
}

/// Shutdown while Redis stalls with successes waiting in the settler: `run`
/// returns soon after the deadline; a second worker drains the rest; `handled`
/// over both counts each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_stall_with_successes_waiting() {
    let n = 250;
    let Stalled {
        _server,
        direct,
        proxy,
        slow,
        runs,
        gate,
        handler,
    } = stalled(n, 150, Duration::from_millis(300)).await;
    let a = start(
        Worker::new(slow, handler)
            .with_consumer_name("A")
            .with_concurrency(150)
            .with_visibility_timeout(Duration::from_secs(3))
            .with_poll_interval(Duration::from_millis(10))
            .with_shutdown_deadline(Duration::from_secs(2)),
    );
    until(30, "150 running", || runs.distinct() >= 150).await;
    proxy.pause();
    gate.notify_waiters();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let stats = a.stop().await;
    let took = stopping.elapsed();
    eprintln!("A stopped in {took:?}: {stats:?}; runs {}", runs.total());
    assert!(took < Duration::from_secs(6), "{took:?}");
    proxy.resume();
    let b = start(
        Worker::new(direct.clone(), counting(&runs))
            .with_consumer_name("B")
            .with_concurrency(50)
            .with_visibility_timeout(Duration::from_secs(3))
            .with_poll_interval(Duration::from_millis(10)),
    );
    until_drained(&direct, &runs, n, 60).await;
    let stats_b = b.stop().await;
    eprintln!(
        "B: {stats_b:?}; runs {} twice {}",
        runs.total(),
        runs.twice().len()
    );
    // A's successes sent before the deadline may be applied only once Redis is
    // back (A cannot know): handled over both is at most n.
    assert!(stats.handled + stats_b.handled <= n as u64);
}

/// A rate-limited worker over 4 partitions: the read of partition i+1 may hand over
/// an entry the gate no longer admits (a task ended meanwhile and gave its slot
/// back), and the batched start counts its run although the entry is not started
/// here. After a graceful shutdown a second worker (max_attempts 1) takes such
/// entries over: they must run, not be dead-lettered as "gave up after 1 attempts".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_gate_refuses_after_a_batched_start_are_not_dead_lettered() {
    let server = RedisServer::start();
    let direct = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(8);
    direct.check_layout().await.unwrap();
    let n = 200;
    for i in 0..n {
        assert_eq!(
            send(&enqueuer(&direct), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    let runs = Runs::default();
    let fast = |r: &Runs| {
        let r = r.clone();
        move |event: Event<'static>| {
            let runs = r.clone();
            async move {
                runs.add(&event.id);
                tokio::time::sleep(Duration::from_millis(11)).await;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let a = start(
        Worker::new(direct.clone(), fast(&runs))
            .with_consumer_name("A")
            .with_concurrency(2)
            .with_max_attempts(1)
            .with_rate_limit(1, Duration::from_millis(10))
            .with_visibility_timeout(Duration::from_secs(20))
            .with_poll_interval(Duration::from_millis(5)),
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let stats = a.stop().await;
    let c = direct.counts().await.unwrap();
    eprintln!("A: {stats:?}; ran {}; counts {c:?}", runs.distinct());
    let b = start(
        Worker::new(direct.clone(), fast(&runs))
            .with_consumer_name("B")
            .with_concurrency(8)
            .with_max_attempts(1)
            .with_visibility_timeout(Duration::from_millis(500))
            .with_poll_interval(Duration::from_millis(10)),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = direct.counts().await.unwrap();
        if c.pending + c.in_progress + c.retrying == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats_b = b.stop().await;
    let c = direct.counts().await.unwrap();
    let letters = direct.dead_letters(10).await.unwrap();
    eprintln!("B: {stats_b:?}; ran {}; counts {c:?}", runs.distinct());
    let first = letters.first().map(|l| (&l.event_id, &l.error, l.attempts));
    assert_eq!(
        c.dead_letters, 0,
        "dead-lettered without a run, e.g. {first:?}"
    );
    assert_eq!(runs.distinct(), n);
    assert_eq!(runs.twice(), vec![]);
}

/// Replies held past the time limit, again and again, while successes are batched:
/// every event runs once, `handled` counts each once, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_replies_during_batched_successes() {
    let server = RedisServer::start();
    let direct = Queue::connect(&server.url()).await.unwrap();
    warm(&direct).await;
    let n = 300;
    for i in 0..n {
        assert_eq!(
            send(&enqueuer(&direct), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    let proxy = Proxy::start(server.port).await;
    let slow = Queue::connect(&proxy.redis_url())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    slow.check_layout().await.unwrap();
    let runs = Runs::default();
    let a = start(
        Worker::new(slow, counting(&runs))
            .with_consumer_name("A")
            .with_concurrency(64)
            .with_visibility_timeout(Duration::from_secs(5))
            .with_poll_interval(Duration::from_millis(10))
            .with_shutdown_deadline(Duration::from_secs(5)),
    );
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.hold_replies(Duration::from_millis(700));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    until_drained(&direct, &runs, n, 60).await;
    let stats = a.stop().await;
    assert_each_once(&stats, &runs, n);
}

/// A Redis Cluster, 6 partitions, two workers, a handler failing temporarily on the
/// first attempt of every third event (max 3 attempts): each event succeeds once;
/// those that failed ran exactly twice; counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_partitions_batched_starts_and_successes_with_retries() {
    let cluster = notmeta_test_support::RedisCluster::start(3);
    let urls = cluster.urls();
    let queue = Queue::connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap()
        .with_partitions(6);
    queue.check_layout().await.unwrap();
    let n = 300;
    for i in 0..n {
        assert_eq!(
            send(&enqueuer(&queue), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    let runs = Runs::default();
    let handler = |r: &Runs| {
        let r = r.clone();
        move |event: Event<'static>| {
            let runs = r.clone();
            async move {
                runs.add(&event.id);
                let k: usize = event.id.trim_start_matches("evt_").parse().unwrap();
                let seen = runs.0.lock().unwrap()[event.id.as_str()];
                if k.is_multiple_of(3) && seen == 1 {
                    return Err(HandlerError::temporary("first try fails"));
                }
                Ok::<(), HandlerError>(())
            }
        }
    };
    let mk = |name: &str| {
        Worker::new(queue.clone(), handler(&runs))
            .with_consumer_name(name)
            .with_concurrency(40)
            .with_max_attempts(3)
            .with_backoff(Duration::from_millis(50), Duration::from_millis(100))
            .with_visibility_timeout(Duration::from_secs(5))
            .with_poll_interval(Duration::from_millis(10))
    };
    let a = start(mk("A"));
    let b = start(mk("B"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = queue.counts().await.unwrap();
        if c.pending + c.in_progress + c.retrying == 0 && runs.distinct() == n {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sa, sb) = (a.stop().await, b.stop().await);
    eprintln!("A {sa:?}\nB {sb:?}");
    let each = runs.0.lock().unwrap().clone();
    for (id, n) in &each {
        let k: usize = id.trim_start_matches("evt_").parse().unwrap();
        assert_eq!(*n, if k.is_multiple_of(3) { 2 } else { 1 }, "{id}");
    }
    assert_eq!(sa.handled + sb.handled, n as u64);
    assert_eq!(sa.retried + sb.retried, 100);
    assert_eq!(sa.dead_lettered + sb.dead_lettered + sa.lost + sb.lost, 0);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
}

/// After `run` returns, no settler (nor any other task of the worker) is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_is_left_after_run_returns() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(4);
    queue.check_layout().await.unwrap();
    for i in 0..50 {
        assert_eq!(
            send(&enqueuer(&queue), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let runs = Runs::default();
    let a = start(
        Worker::new(queue.clone(), counting(&runs))
            .with_consumer_name("A")
            .with_concurrency(16)
            .with_poll_interval(Duration::from_millis(10)),
    );
    until(30, "all run", || runs.distinct() == 50).await;
    let stats = a.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = metrics.num_alive_tasks();
    eprintln!("{stats:?} tasks before {before} after {after}");
    assert_eq!(stats.handled, 50);
    assert!(after <= before, "{before} -> {after}");
}
