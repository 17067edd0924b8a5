//! Redis primary failovers under live traffic, for the idempotency store and the
//! queue: a Redis Cluster of three primaries with a replica each
//! (`cluster-node-timeout` 1 s) on loopback, signed events delivered (each twice
//! at once, every non-200 delivered again) while the primary of the shard they
//! live on is stalled (SIGSTOP) until its replica has taken over, then resumed (it
//! is demoted and rejoins as a replica). Each round fails the shard over once; the
//! next round fails it back.
//!
//! ```text
//! failover [rounds] [on|off] [events]
//! ```
//!
//! - `on` (the default): `RedisStore::with_replicas` and `Queue::with_replicas`.
//!   Exit status 1 if any event ran twice or never ran.
//! - `off`: without them, to see the exposure: events run twice are reported, not
//!   counted as failures.
//!
//! Each round ends by delivering every event once more: an event answered 200
//! whose claim or done mark the failover lost runs again then, and is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use notmeta_test_support::RedisCluster;
use notmeta_webhooks::dedup::RedisStore;
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
use notmeta_webhooks::receiver::{Answer, HandlerError, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Runs = Arc<Mutex<HashMap<String, usize>>>;

const SECRET: &str = "whsec_failover";
const WAIT: Duration = Duration::from_millis(200);
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().map_or(Ok(3), |a| a.parse())?;
    let on = args.get(1).is_none_or(|a| a != "off");
    let events: usize = args.get(2).map_or(Ok(600), |a| a.parse())?;
    println!(
        "{rounds} rounds of {events} events, with_replicas {}",
        if on { "on" } else { "off" }
    );

    let cluster = Arc::new(RedisCluster::start_with_replicas(3, 1000));
    let urls = cluster.urls();
    let nodes = || urls.iter().map(String::as_str);
    let mut store = RedisStore::connect_cluster(nodes()).await?;
    let mut queue = Queue::connect_cluster(nodes()).await?.with_namespace("f");
    if on {
        store = store.with_replicas(1, WAIT);
        queue = queue.with_replicas(1, WAIT);
    }

    let store_runs: Runs = Arc::default();
    let receiver =
        Arc::new(Receiver::new(Verifier::new(SECRET)?, recorder(&store_runs)).with_store(store));
    let queue_runs: Runs = Arc::default();
    let worker = Worker::new(queue.clone(), recorder(&queue_runs))
        .with_visibility_timeout(Duration::from_secs(5))
        .with_poll_interval(Duration::from_millis(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let working = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let enqueuer = Arc::new(Enqueuer::new(Verifier::new(SECRET)?, queue));

    let mut failures = 0;
    for round in 0..rounds {
        let store_ids = ids("store", round, events);
        let send = {
            let receiver = Arc::clone(&receiver);
            move |body: Vec<u8>| {
                let receiver = Arc::clone(&receiver);
                async move {
                    let signature = sign(&body, SECRET);
                    status(receiver.receive(&body, [signature.as_bytes()]).await)
                }
            }
        };
        fail_over(&cluster, "{f}", &store_ids, &store_runs, send).await?;
        failures += report("store", round, &store_ids, &store_runs);

        let ids = ids("queue", round, events);
        let send = {
            let enqueuer = Arc::clone(&enqueuer);
            move |body: Vec<u8>| {
                let enqueuer = Arc::clone(&enqueuer);
                async move {
                    let signature = sign(&body, SECRET);
                    status(enqueuer.receive(&body, [signature.as_bytes()]).await)
                }
            }
        };
        fail_over(&cluster, "{f:0}", &ids, &queue_runs, send).await?;
        failures += report("queue", round, &ids, &queue_runs);
    }
    drop(stop);
    working.await??;
    if on && failures > 0 {
        println!("FAILED: {failures} events ran twice or never");
        std::process::exit(1);
    }
    Ok(())
}

/// A handler that counts the runs of each event id.
fn recorder(
    runs: &Runs,
) -> impl Fn(Event<'static>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let runs = Arc::clone(runs);
    move |event: Event<'static>| {
        *runs
            .lock()
            .unwrap()
            .entry(event.id.to_string())
            .or_default() += 1;
        std::future::ready(Ok(()))
    }
}

fn ids(label: &str, round: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{f}}evt_{label}_{round}_{i}"))
        .collect()
}

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

fn status(answer: Answer) -> u16 {
    answer.status().as_u16()
}

/// One round: the events delivered (each twice at once) while the primary of
/// `key`'s shard is stalled until its replica took over; then each delivered once
/// more.
async fn fail_over<F, Fut>(
    cluster: &Arc<RedisCluster>,
    key: &str,
    ids: &[String],
    runs: &Runs,
    send: F,
) -> Result<(), BoxError>
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = u16> + Send,
{
    let shard = cluster.shard(key);
    let replica = shard.replica.ok_or("the shard has no replica")?;
    {
        let cluster = Arc::clone(cluster);
        tokio::task::spawn_blocking(move || cluster.wait_for_sync(shard.primary)).await?;
    }
    let traffic = {
        let ids = ids.to_vec();
        let send = send.clone();
        tokio::spawn(async move {
            for chunk in ids.chunks(10) {
                let copies = chunk.iter().flat_map(|id| [id, id]);
                join_all(copies.map(|id| until_200(id, send.clone()))).await;
            }
        })
    };
    let started = Instant::now();
    while handled(runs, ids) < ids.len() / 3 {
        if started.elapsed() > PATIENCE {
            return Err("the traffic did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stalled = Instant::now();
    cluster.nodes[shard.primary].pause();
    {
        let cluster = Arc::clone(cluster);
        tokio::task::spawn_blocking(move || {
            cluster.wait_for_primary(replica);
            cluster.nodes[shard.primary].resume();
        })
        .await?;
    }
    println!(
        "  node {} stalled {:?}, node {replica} took over",
        shard.primary,
        stalled.elapsed()
    );
    traffic.await?;
    for id in ids {
        until_200(id, send.clone()).await;
    }
    // Runs of the queue come after the answers: wait until every event ran.
    let started = Instant::now();
    while handled(runs, ids) < ids.len() && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Delivers `id` until it is answered 200 (503 is delivered again after 50 ms).
async fn until_200<F, Fut>(id: &str, send: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = u16>,
{
    let started = Instant::now();
    loop {
        let status = send(body(id)).await;
        if status == 200 || started.elapsed() > PATIENCE {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn handled(runs: &Runs, ids: &[String]) -> usize {
    let runs = runs.lock().unwrap();
    ids.iter().filter(|id| runs.contains_key(*id)).count()
}

/// Prints the round's figures; returns how many events did not run exactly once.
fn report(what: &str, round: usize, ids: &[String], runs: &Runs) -> usize {
    let runs = runs.lock().unwrap();
    let count = |n: usize| {
        ids.iter()
            .filter(|id| runs.get(*id).copied().unwrap_or(0) == n)
            .count()
    };
    let (never, once) = (count(0), count(1));
    let twice = ids.len() - never - once;
    println!(
        "{what} round {round}: {} events, {once} ran once, {twice} more than once, {never} never",
        ids.len()
    );
    twice + never
}
