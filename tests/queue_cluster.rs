//! The queue end to end on a real Redis Cluster: three masters started on loopback
//! with `--cluster-enabled yes` and joined with `redis-cli --cluster create`. The
//! queue is split into six partitions (hash-tagged keys, one slot per partition),
//! so the streams spread over the shards; see `common::queue_end_to_end` for the run.
//!
//! `NOTMETA_QUEUE_CLUSTER_EVENTS` sets the number of events (default 3,000).
//!
//! The inline receivers' `RedisStore` runs on a cluster too: two replicas (the axum
//! endpoint and the tower service served by hyper) share one store over the cluster,
//! and every event is handled exactly once under concurrent duplicates, failures and
//! panics.

mod common;

use common::queue_end_to_end::{Target, end_to_end};
use notmeta_test_support::RedisCluster;
use notmeta_test_support::http_server;

/// The child side (does nothing unless started by `end_to_end`).
#[test]
fn worker_process() {
    common::queue_end_to_end::worker_process();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_exactly_once_on_a_cluster() {
    if std::env::var("NOTMETA_QUEUE_E2E_WORKER").is_ok() {
        return;
    }
    let events = std::env::var("NOTMETA_QUEUE_CLUSTER_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let cluster = RedisCluster::start(3);
    let target = Target::Cluster(cluster.urls());

    // The partitions really are on different shards.
    let queue = common::queue_end_to_end::queue(target.connect().await, 6);
    let mut masters = std::collections::BTreeSet::new();
    for p in 0..6u16 {
        let key = format!("{{e2e:{p}}}:stream");
        let slot = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &cluster.nodes[0].port.to_string(),
                "cluster",
                "keyslot",
                &key,
            ])
            .output()
            .unwrap();
        let slot: u16 = String::from_utf8_lossy(&slot.stdout)
            .trim()
            .parse()
            .unwrap();
        masters.insert(slot / 5462);
    }
    assert!(
        masters.len() >= 2,
        "partitions on {} shard(s)",
        masters.len()
    );
    drop(queue);

    let summary = end_to_end("worker_process", target, 6, events).await;
    eprintln!("{summary}");
}

/// Two inline replicas sharing `RedisStore::connect_cluster`: every event is sent to
/// both at once and each delivery is retried until it gets a 2xx, as NotMeta does,
/// while the handler fails temporarily once or twice for some events and panics once
/// for others. Every event is handled exactly once, none is lost, and the store's
/// keys are spread over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_on_a_cluster_handles_every_event_exactly_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use notmeta_test_support::client;
    use notmeta_webhooks::dedup::RedisStore;
    use notmeta_webhooks::receiver::{HandlerError, Receiver};
    use notmeta_webhooks::{Event, Verifier, sign};

    if std::env::var("NOTMETA_QUEUE_E2E_WORKER").is_ok() {
        return;
    }
    const EVENTS: usize = 1_500;
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let store = RedisStore::connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap()
        .with_namespace("inline");

    #[derive(Default)]
    struct Record {
        attempts: HashMap<String, u64>,
        runs: HashMap<String, u64>,
    }
    let record = Arc::new(Mutex::new(Record::default()));
    let replica = || {
        let record = Arc::clone(&record);
        Receiver::new(
            Verifier::new(common::queue_end_to_end::SECRET).unwrap(),
            move |event: Event<'static>| {
                let record = Arc::clone(&record);
                async move {
                    let id = event.id.as_str().to_owned();
                    let i: u64 = id.trim_start_matches("evt_").parse().unwrap();
                    let attempt = {
                        let mut record = record.lock().unwrap();
                        let n = record.attempts.entry(id.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    // One in seven fails temporarily once or twice; one in eleven
                    // panics on its first run.
                    if i % 7 == 3 && attempt <= 1 + i % 2 {
                        return Err(HandlerError::temporary("designed temporary failure"));
                    }
                    if i % 11 == 5 && attempt == 1 {
                        panic!("designed panic");
                    }
                    tokio::time::sleep(Duration::from_millis(i % 5)).await;
                    *record.lock().unwrap().runs.entry(id).or_default() += 1;
                    Ok::<(), HandlerError>(())
                }
            },
        )
        .with_store(store.clone())
    };
    let a = {
        let app =
            axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(replica()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    };
    let b = http_server::hyper(notmeta_webhooks::tower::WebhookService::new(replica())).await;

    // The designed panics are expected; keep the output readable.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));

    /// One delivery, retried until it gets a 2xx.
    async fn until_2xx(addr: std::net::SocketAddr, body: Vec<u8>) -> String {
        let header = sign(&body, common::queue_end_to_end::SECRET);
        for _ in 0..200 {
            let reply = client::post(
                addr,
                "/webhooks",
                &[("x-notmeta-signature", &header)],
                &body,
            )
            .await;
            if (200..300).contains(&reply.status) {
                return reply.text();
            }
            assert!(
                matches!(reply.status, 500 | 503),
                "unexpected {} {:?}",
                reply.status,
                reply.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no 2xx after 200 attempts");
    }

    let started = std::time::Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= EVENTS {
                        return answers;
                    }
                    let body = common::queue_end_to_end::body(&format!("evt_{i}"));
                    let (x, y) = tokio::join!(until_2xx(a, body.clone()), until_2xx(b, body));
                    answers.push(x);
                    answers.push(y);
                }
            })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        for answer in task.await.unwrap() {
            match answer.as_str() {
                "OK" => firsts += 1,
                "OK (duplicate)" => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
    std::panic::set_hook(default_hook);

    let record = record.lock().unwrap();
    assert_eq!(record.runs.len(), EVENTS, "events lost");
    let twice: Vec<_> = record.runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert_eq!(firsts, EVENTS, "one delivery of each event is the first");
    let failed_first = record.attempts.values().filter(|n| **n > 1).count();
    assert!(failed_first > EVENTS / 7, "{failed_first} events retried");

    // The store's keys (one per event id, no hash tag) are spread over the masters.
    let sizes: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|node| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "dbsize"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        })
        .collect();
    assert_eq!(
        sizes.iter().sum::<u64>(),
        EVENTS as u64,
        "keys per master {sizes:?}"
    );
    assert!(
        sizes.iter().filter(|&&n| n > 0).count() >= 2,
        "keys per master {sizes:?}"
    );
    eprintln!(
        "{EVENTS} events through two replicas on a 3-master cluster in {:.1} s; \
         {failed_first} handled after a failure or a panic; keys per master {sizes:?}",
        started.elapsed().as_secs_f64()
    );
}

/// Replays and retries while the partition's slot is half-way through a migration
/// to another master (the state `redis-cli --cluster reshard` passes through, held
/// for 3 s): every script declares the keys it touches and checks before it writes,
/// so a script refused mid-migration changed nothing, and trying it again queues
/// nothing twice. Every event ends handled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_retries_during_a_slot_migration_queue_nothing_twice() {
    use std::collections::HashMap;
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
    use notmeta_webhooks::receiver::HandlerError;
    use notmeta_webhooks::{Event, Verifier, sign};

    if std::env::var("NOTMETA_QUEUE_E2E_WORKER").is_ok() {
        return;
    }
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let queue = Queue::connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap()
        .with_namespace("reshard");
    let endpoint = Enqueuer::new(
        Verifier::new(common::queue_end_to_end::SECRET).unwrap(),
        queue.clone(),
    );
    let send = async |id: String| {
        let body = format!(
            r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
        );
        let signature = sign(body.as_bytes(), common::queue_end_to_end::SECRET);
        let answer = endpoint
            .receive(body.as_bytes(), [signature.as_bytes()])
            .await;
        assert_eq!(answer.status(), 200, "{id}");
    };
    fn fast<H>(worker: Worker<H>) -> Worker<H> {
        worker
            .with_visibility_timeout(Duration::from_secs(2))
            .with_poll_interval(Duration::from_millis(10))
            .with_backoff(Duration::from_millis(100), Duration::from_millis(100))
            .with_max_attempts(50)
    }

    // 150 dead letters.
    for i in 0..150 {
        send(format!("d_{i}")).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let failing = fast(Worker::new(queue.clone(), |_: Event<'static>| async {
        Err::<(), _>(HandlerError::permanent("not yet"))
    }));
    let first = tokio::spawn(failing.run(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.counts().await.unwrap().dead_letters < 150 {
        assert!(Instant::now() < deadline, "the dead letters never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    first.await.unwrap().unwrap();

    // 100 events that fail twice each, so retries are promoted throughout.
    for i in 0..100 {
        send(format!("r_{i}")).await;
    }
    #[derive(Default)]
    struct Record {
        runs: HashMap<String, u32>,
        done: HashMap<String, u32>,
    }
    let record = Arc::new(Mutex::new(Record::default()));
    let seen = Arc::clone(&record);
    let worker = fast(Worker::new(queue.clone(), move |event: Event<'static>| {
        let mut record = seen.lock().unwrap();
        let id = event.id.to_string();
        let runs = record.runs.entry(id.clone()).or_default();
        *runs += 1;
        let result = if id.starts_with("r_") && *runs <= 2 {
            Err(HandlerError::temporary("twice"))
        } else {
            *record.done.entry(id).or_default() += 1;
            Ok(())
        };
        async move { result }
    }));

    // Move the partition's slot to another master by hand, as `redis-cli --cluster
    // reshard` does, but holding it half-migrated for 3 s while replays and
    // retries run: some of its keys on each master, so every multi-key script is
    // refused (TRYAGAIN) until the move is over.
    let cli = |port: u16, args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let first_port = cluster.nodes[0].port;
    let slot = cli(first_port, &["cluster", "keyslot", "{reshard:0}:dead"]);
    let owner_of = |slot: &str| -> u16 {
        let slot: u16 = slot.parse().unwrap();
        let nodes = cli(first_port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owns = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-').filter_map(|b| b.parse::<u16>().ok());
                match (bounds.next(), bounds.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if owns {
                let port = fields[1].split(['@', ':']).nth(1).unwrap();
                return port.parse().unwrap();
            }
        }
        panic!("no owner of slot {slot}");
    };
    let from = owner_of(&slot);
    let to = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != from)
        .unwrap();
    let from_id = cli(from, &["cluster", "myid"]);
    let to_id = cli(to, &["cluster", "myid"]);
    assert_eq!(
        cli(to, &["cluster", "setslot", &slot, "importing", &from_id]),
        "OK"
    );
    assert_eq!(
        cli(from, &["cluster", "setslot", &slot, "migrating", &to_id]),
        "OK"
    );
    let migrate = |keys: &[String]| {
        for key in keys {
            let moved = cli(
                from,
                &[
                    "migrate",
                    "127.0.0.1",
                    &to.to_string(),
                    key,
                    "0",
                    "5000",
                    "REPLACE",
                ],
            );
            assert!(moved == "OK" || moved == "NOKEY", "{moved}");
        }
    };
    let keys: Vec<String> = cli(from, &["cluster", "getkeysinslot", &slot, "10000"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(keys.len() > 100, "{} keys in the slot", keys.len());
    let half: Vec<String> = keys.iter().step_by(2).cloned().collect();
    migrate(&half);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let mut replay_errors = 0;
    let split_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < split_until {
        if queue.replay_dead_letters(5).await.is_err() {
            replay_errors += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Finish the move: the rest of the keys, then the slot's new owner everywhere.
    let rest: Vec<String> = cli(from, &["cluster", "getkeysinslot", &slot, "10000"])
        .lines()
        .map(str::to_owned)
        .collect();
    migrate(&rest);
    for node in &cluster.nodes {
        cli(node.port, &["cluster", "setslot", &slot, "node", &to_id]);
    }
    assert_eq!(owner_of(&slot), to);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if queue.replay_dead_letters(5).await.is_err() {
            replay_errors += 1;
        }
        let done = record.lock().unwrap().done.len();
        if done == 250 {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of 250 handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    let stats = running.await.unwrap().unwrap();
    let (twice, runs) = {
        let record = record.lock().unwrap();
        let twice: Vec<_> = record
            .done
            .iter()
            .filter(|(_, n)| **n != 1)
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        (twice, record.runs.values().sum::<u32>())
    };
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.in_progress,
            counts.retrying,
            counts.dead_letters
        ),
        (0, 0, 0, 0)
    );
    eprintln!(
        "slot migration: 250 events handled once each, {} runs, {} retried, {replay_errors} replay calls failed and were tried again",
        runs, stats.retried
    );
}
