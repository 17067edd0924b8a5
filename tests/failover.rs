//! A Redis primary failover on a real Redis Cluster with replicas (three
//! primaries, three replicas, `cluster-node-timeout` 1 s), for the idempotency
//! store (feature `redis`) and the queue (feature `queue`).
//!
//! - Deterministic: a replica is frozen (SIGSTOP) and its link closed, so it
//!   receives nothing, events
//!   are delivered, its primary is killed (SIGKILL), the replica resumed and
//!   promoted (`CLUSTER FAILOVER TAKEOVER`), and every event is delivered again
//!   until answered 200. With `with_replicas` no event runs twice; without it,
//!   every event handled while the replica was frozen runs again (the exposure
//!   the README documents).
//! - Live: deliveries (each with a concurrent duplicate) run while the primary is
//!   stalled (SIGSTOP) until its replica has taken over, then resumed (and
//!   demoted): with `with_replicas`, every event runs exactly once.
//!
//! Every event id carries the hash tag `{f}`, so every key of the test is on one
//! shard: the one that fails over.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{SECRET, Seen, recording};
use futures_util::future::join_all;
use notmeta_test_support::{RedisCluster, Shard};
use notmeta_webhooks::dedup::RedisStore;
use notmeta_webhooks::receiver::{Handler, Receiver};
use notmeta_webhooks::sign;

/// How long a primary may be unreachable before its replica takes over.
const NODE_TIMEOUT_MS: u32 = 1000;

/// How long Redis waits for the replica's acknowledgement.
const WAIT: Duration = Duration::from_millis(200);

/// How long an event is delivered again (NotMeta's retries, compressed) before
/// the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(40);

/// A `user.online` event with this id.
fn event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

fn ids(label: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{{f}}evt_{label}_{i}")).collect()
}

/// How many times the handler ran, per event id.
fn runs(seen: &Seen, ids: &[String]) -> HashMap<String, usize> {
    let mut runs: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
    for id in seen.ids() {
        *runs.entry(id).or_default() += 1;
    }
    runs
}

/// The nodes of the shard `key` lives on, and the nodes that stay up.
fn failing_shard(cluster: &RedisCluster, key: &str) -> (Shard, usize, Vec<usize>) {
    let shard = cluster.shard(key);
    let replica = shard.replica.expect("the shard has a replica");
    let live = (0..cluster.nodes.len())
        .filter(|&i| i != shard.primary)
        .collect();
    (shard, replica, live)
}

/// The events of `ids` answered 200 (`statuses` in the same order); any other
/// answer must be 503.
fn answered_200(ids: &[String], statuses: &[u16]) -> Vec<String> {
    for (id, status) in ids.iter().zip(statuses) {
        assert!(*status == 200 || *status == 503, "{id}: {status}");
    }
    ids.iter()
        .zip(statuses)
        .filter(|(_, status)| **status == 200)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The primary dies; its replica, frozen and cut off, is resumed and takes over;
/// the old primary comes back as the new primary's replica (without one, a write
/// that needs a replica cannot count).
fn lose_primary(cluster: &mut RedisCluster, shard: Shard, live: &[usize]) {
    let replica = shard.replica.expect("a replica");
    cluster.nodes[shard.primary].kill();
    cluster.nodes[replica].resume();
    cluster.take_over(replica, live);
    cluster.rejoin(shard.primary);
}

/// Stalls the primary (SIGSTOP) until its replica has taken over, then resumes it
/// (it is demoted and becomes the new primary's replica).
async fn stall_primary(cluster: RedisCluster, shard: Shard) -> RedisCluster {
    let replica = shard.replica.expect("a replica");
    cluster.nodes[shard.primary].pause();
    tokio::task::spawn_blocking(move || {
        cluster.wait_for_primary(replica);
        cluster.nodes[shard.primary].resume();
        cluster
    })
    .await
    .unwrap()
}

/// Delivers each of `all` twice at once (a duplicate), ten events at a time, with
/// `send` (which retries until answered 200).
fn traffic<F, Fut>(all: &[String], send: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let all = all.to_vec();
    tokio::spawn(async move {
        for chunk in all.chunks(10) {
            let copies = chunk.iter().flat_map(|id| [id.clone(), id.clone()]);
            join_all(copies.map(&send)).await;
        }
    })
}

/// Waits until `ready` holds, polling every 10 ms.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every event ran exactly once.
fn assert_once(runs: &HashMap<String, usize>) {
    let wrong: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(wrong.is_empty(), "events not run exactly once: {wrong:?}");
}

/// Without the option: every event answered 200 while the replica was cut off
/// ran again after the failover, and only those.
fn assert_ran_again(runs: &HashMap<String, usize>, answered: &[String]) {
    assert_eq!(answered.len(), 20, "{answered:?}");
    for (id, n) in runs {
        let expected = if id.contains("_during_") { 2 } else { 1 };
        assert_eq!(*n, expected, "{id}");
    }
}

async fn deliver<H: Handler>(receiver: &Receiver<H, RedisStore>, id: &str) -> u16 {
    let body = event(id);
    let answer = receiver
        .receive(&body, [sign(&body, SECRET).as_bytes()])
        .await;
    answer.status().as_u16()
}

/// Delivers `id` with `send` (which answers the status) until it is answered 200,
/// pausing 50 ms after each 503.
async fn until_200<Fut>(id: &str, send: impl Fn() -> Fut)
where
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = send().await;
        if status == 200 {
            return;
        }
        assert!(status == 503, "{id}: answered {status}");
        assert!(Instant::now() < deadline, "{id}: never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliver_until_ok<H: Handler>(receiver: &Receiver<H, RedisStore>, id: &str) {
    until_200(id, || deliver(receiver, id)).await;
}

async fn store(cluster: &RedisCluster, replicated: bool) -> RedisStore {
    let urls = cluster.urls();
    let store = RedisStore::connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap();
    if replicated {
        store.with_replicas(1, WAIT)
    } else {
        store
    }
}

/// The deterministic failover for the store: how many times each event ran, and
/// the events answered 200 while the replica was frozen.
async fn store_failover(replicated: bool) -> (HashMap<String, usize>, Vec<String>) {
    let cluster = RedisCluster::start_with_replicas(3, NODE_TIMEOUT_MS);
    let (shard, replica, live) = failing_shard(&cluster, "{f}");
    let seen = Seen::default();
    let receiver = recording(SECRET, &seen).with_store(store(&cluster, replicated).await);

    // Handled while the replica follows: on the replica once it has caught up.
    let before = ids("before", 10);
    for id in &before {
        assert_eq!(deliver(&receiver, id).await, 200, "{id}");
    }
    cluster.wait_for_sync(shard.primary);

    // The replica receives nothing from here on.
    cluster.cut_replica(shard.primary, replica);
    let during = ids("during", 20);
    let statuses = join_all(during.iter().map(|id| deliver(&receiver, id))).await;
    let answered = answered_200(&during, &statuses);

    let mut cluster = cluster;
    lose_primary(&mut cluster, shard, &live);

    // NotMeta delivers every event again until it is answered 200.
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    for id in &all {
        deliver_until_ok(&receiver, id).await;
    }
    (runs(&seen, &all), answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_with_replicas_runs_no_event_twice_across_a_failover() {
    let (runs, answered) = store_failover(true).await;
    // Nothing counted while the replica could not acknowledge it.
    assert!(
        answered.is_empty(),
        "answered 200 unreplicated: {answered:?}"
    );
    assert_once(&runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_without_replicas_runs_events_again_after_a_failover() {
    let (runs, answered) = store_failover(false).await;
    assert_ran_again(&runs, &answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_with_replicas_runs_each_event_once_through_a_live_failover() {
    let cluster = RedisCluster::start_with_replicas(3, NODE_TIMEOUT_MS);
    let (shard, _, _) = failing_shard(&cluster, "{f}");
    let seen = Seen::default();
    let receiver = Arc::new(recording(SECRET, &seen).with_store(store(&cluster, true).await));
    let all = ids("live", 300);
    let sending = traffic(&all, {
        let receiver = Arc::clone(&receiver);
        move |id| {
            let receiver = Arc::clone(&receiver);
            async move { deliver_until_ok(&receiver, &id).await }
        }
    });
    // The primary stalls once a third of the events ran.
    until("a third handled", || seen.len() >= all.len() / 3).await;
    let cluster = stall_primary(cluster, shard).await;
    sending.await.unwrap();
    for id in &all {
        deliver_until_ok(&receiver, id).await;
    }
    assert_once(&runs(&seen, &all));
    drop(cluster);
}

#[cfg(feature = "queue")]
mod queue {
    use super::*;

    use std::sync::Mutex;

    use crate::common::queue::{body, send};
    use notmeta_webhooks::Event;
    use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
    use notmeta_webhooks::receiver::HandlerError;

    type Runs = Arc<Mutex<HashMap<String, usize>>>;

    /// A queue on the cluster, and a worker for it recording every run; the
    /// worker stops when the sender is dropped.
    async fn queue(
        cluster: &RedisCluster,
        replicated: bool,
    ) -> (Enqueuer, Runs, tokio::sync::oneshot::Sender<()>) {
        let urls = cluster.urls();
        let mut queue = Queue::connect_cluster(urls.iter().map(String::as_str))
            .await
            .unwrap()
            .with_namespace("f");
        if replicated {
            queue = queue.with_replicas(1, WAIT);
        }
        let runs: Runs = Arc::default();
        let worker = Worker::new(queue.clone(), {
            let runs = Arc::clone(&runs);
            move |event: Event<'static>| {
                let runs = Arc::clone(&runs);
                async move {
                    *runs
                        .lock()
                        .unwrap()
                        .entry(event.id.to_string())
                        .or_default() += 1;
                    Ok::<(), HandlerError>(())
                }
            }
        })
        .with_visibility_timeout(Duration::from_secs(5))
        .with_poll_interval(Duration::from_millis(10));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        (crate::common::queue::enqueuer(&queue), runs, stop)
    }

    /// Enqueues `id` until it is answered 200.
    async fn send_until_ok(enqueuer: &Enqueuer, id: &str) {
        until_200(id, || async { send(enqueuer, &body(id)).await.0 }).await;
    }

    /// Whether the queue's stream on `node` has no entry pending in the workers'
    /// group (every run read from it is settled).
    fn nothing_pending(cluster: &RedisCluster, node: usize) -> bool {
        let pending = cluster.cli(node, &["xpending", "{f:0}:stream", "workers"]);
        pending.lines().next().map(str::trim) == Some("0")
    }

    /// How many times each of `ids` ran.
    fn count(runs: &Runs, ids: &[String]) -> Vec<usize> {
        let runs = runs.lock().unwrap();
        ids.iter()
            .map(|id| runs.get(id).copied().unwrap_or(0))
            .collect()
    }

    /// The deterministic failover for the queue: how many times each event ran,
    /// and the events answered 200 while the replica was frozen.
    async fn queue_failover(replicated: bool) -> (HashMap<String, usize>, Vec<String>) {
        let cluster = RedisCluster::start_with_replicas(3, NODE_TIMEOUT_MS);
        // The queue's partition keys are tagged `{f:0}`: that shard fails over.
        let (shard, replica, live) = failing_shard(&cluster, "{f:0}");
        let (enqueuer, runs, stop) = queue(&cluster, replicated).await;

        let before = ids("before", 10);
        for id in &before {
            send_until_ok(&enqueuer, id).await;
        }
        until("handled", || count(&runs, &before).iter().all(|n| *n > 0)).await;
        cluster.wait_for_sync(shard.primary);

        cluster.cut_replica(shard.primary, replica);
        let during = ids("during", 20);
        let statuses = join_all(during.iter().map(|id| {
            let enqueuer = &enqueuer;
            async move { send(enqueuer, &body(id)).await.0 }
        }))
        .await;
        let answered = answered_200(&during, &statuses);
        // What was answered 200 runs, and is settled, before the failover. (A run
        // still settling when the primary dies settles on the new primary, which
        // then holds its done mark: that event, sent again, is not run again.)
        until("handled", || count(&runs, &answered).iter().all(|n| *n > 0)).await;
        if !replicated {
            // With replicas nothing is answered 200 here, and what was queued cannot
            // settle until the replica acknowledges it: it stays pending.
            until("settled", || nothing_pending(&cluster, shard.primary)).await;
        }

        let mut cluster = cluster;
        lose_primary(&mut cluster, shard, &live);

        let all: Vec<String> = before.iter().chain(&during).cloned().collect();
        for id in &all {
            send_until_ok(&enqueuer, id).await;
        }
        until("handled", || count(&runs, &all).iter().all(|n| *n > 0)).await;
        if !replicated {
            // The lost entries, queued again, run again.
            until("ran again", || {
                count(&runs, &answered).iter().all(|n| *n > 1)
            })
            .await;
        }
        drop(stop);
        let runs = runs.lock().unwrap().clone();
        (runs, answered)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_with_replicas_runs_no_event_twice_across_a_failover() {
        let (runs, answered) = queue_failover(true).await;
        assert!(
            answered.is_empty(),
            "answered 200 unreplicated: {answered:?}"
        );
        assert_once(&runs);
        assert_eq!(runs.len(), 30);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_without_replicas_runs_events_again_after_a_failover() {
        let (runs, answered) = queue_failover(false).await;
        assert_ran_again(&runs, &answered);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_with_replicas_runs_each_event_once_through_a_live_failover() {
        let cluster = RedisCluster::start_with_replicas(3, NODE_TIMEOUT_MS);
        let (shard, _, _) = failing_shard(&cluster, "{f:0}");
        let (enqueuer, runs, stop) = queue(&cluster, true).await;
        let enqueuer = Arc::new(enqueuer);
        let all = ids("live", 300);
        let sending = traffic(&all, {
            let enqueuer = Arc::clone(&enqueuer);
            move |id| {
                let enqueuer = Arc::clone(&enqueuer);
                async move { send_until_ok(&enqueuer, &id).await }
            }
        });
        until("a third handled", || {
            runs.lock().unwrap().len() >= all.len() / 3
        })
        .await;
        let cluster = stall_primary(cluster, shard).await;
        sending.await.unwrap();
        for id in &all {
            send_until_ok(&enqueuer, id).await;
        }
        until("handled", || count(&runs, &all).iter().all(|n| *n > 0)).await;
        drop(stop);
        assert_once(&runs.lock().unwrap());
        drop(cluster);
    }
}
