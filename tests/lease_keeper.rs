//! The lease keeper: the claims of a store with leases are renewed from a thread of
//! their receiver's own, so handlers that block every worker of the application's
//! runtime still keep their claims; the renewals of all deliveries in flight go out
//! in one round trip per third of the lease; a claim the keeper finds lost is
//! reported lost; the thread ends with the receiver.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::keeper::{
    LEASE, Runs, SECRET, index, keeper_threads, receive, runtime, serial, wait_for,
};
use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::{IdempotencyStore, RedisStore};
use notmeta_webhooks::receiver::{DeliveryReport, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier};
use tokio::runtime::Runtime;

/// A handler that counts its runs and blocks its thread for `block`.
fn blocking(runs: &Runs, block: Duration) -> impl notmeta_webhooks::receiver::Handler {
    blocking_together(runs, block, 0)
}

/// [`blocking`], blocking only once `together` handlers have started (awaiting
/// until then), so that they block their runtime's workers at the same time
/// whatever else the runtime had queued on them.
fn blocking_together(
    runs: &Runs,
    block: Duration,
    together: usize,
) -> impl notmeta_webhooks::receiver::Handler {
    let runs = Arc::clone(runs);
    move |event: Event<'static>| {
        *runs.lock().unwrap().entry(index(&event)).or_default() += 1;
        let runs = Arc::clone(&runs);
        async move {
            while runs.lock().unwrap().len() < together {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            std::thread::sleep(block);
            Ok::<(), HandlerError>(())
        }
    }
}

/// Two handlers block both workers of their runtime for 3.5 leases, with default
/// settings: their claims are still renewed, so the same events delivered to
/// another receiver (another runtime, the same store) 2 leases in are answered
/// "in progress", and each handler runs once. (They start blocking together: a
/// handler that blocks a worker also stalls the tasks queued on that worker, such
/// as the return of a pooled PostgreSQL connection another claim waits for.)
/// `ids`: the two events' numbers.
fn blocked_workers_keep_their_claims<S: IdempotencyStore + Clone>(
    ids: [usize; 2],
    open: impl Fn(&Runtime) -> S,
) {
    let busy = runtime(2);
    let other = runtime(1);
    let runs = Runs::default();
    let receiver = Arc::new(
        Receiver::new(
            Verifier::new(SECRET).unwrap(),
            blocking_together(&runs, LEASE * 7 / 2, 2),
        )
        .with_store(open(&busy)),
    );
    let duplicate = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::ZERO),
    )
    .with_store(open(&other));
    let first: Vec<_> = ids
        .into_iter()
        .map(|i| {
            let receiver = Arc::clone(&receiver);
            busy.spawn(async move { receive(&*receiver, i).await })
        })
        .collect();
    wait_for("both handlers", Duration::from_secs(5), || {
        runs.lock().unwrap().len() == 2
    });
    assert_eq!(keeper_threads(), 1, "the keeper renews the claims");
    std::thread::sleep(LEASE * 2);
    for i in ids {
        assert_eq!(
            other.block_on(receive(&duplicate, i)),
            Outcome::InProgress,
            "event {i}"
        );
    }
    for handle in first {
        assert_eq!(busy.block_on(handle).unwrap(), Outcome::Handled);
    }
    for i in ids {
        assert_eq!(other.block_on(receive(&duplicate, i)), Outcome::Duplicate);
    }
    assert_eq!(*runs.lock().unwrap(), HashMap::from(ids.map(|i| (i, 1))));
}

fn redis_store(redis: &RedisServer, runtime: &Runtime) -> RedisStore {
    runtime
        .block_on(RedisStore::connect(&redis.url()))
        .unwrap()
        .with_lease(LEASE)
}

#[test]
fn handlers_blocking_every_worker_keep_their_redis_claims() {
    let _serial = serial();
    let redis = RedisServer::start();
    blocked_workers_keep_their_claims([1, 2], |runtime| redis_store(&redis, runtime));
}

/// The same on a Redis Cluster: the keeper opens a cluster connection of its own
/// (the receiver's is driven by the blocked runtime) and renews claims that live
/// on different shards.
#[test]
fn handlers_blocking_every_worker_keep_their_redis_cluster_claims() {
    let _serial = serial();
    let cluster = notmeta_test_support::RedisCluster::start(3);
    let urls = cluster.urls();
    // The two events' claims are on two shards.
    assert_ne!(
        cluster.shard("notmeta-webhooks:event:evt_1").primary,
        cluster.shard("notmeta-webhooks:event:evt_3").primary,
        "pick ids on two shards"
    );
    blocked_workers_keep_their_claims([1, 3], |runtime| {
        runtime
            .block_on(RedisStore::connect_cluster(urls.iter().map(String::as_str)))
            .unwrap()
            .with_lease(LEASE)
    });
}

#[cfg(feature = "postgres")]
#[test]
fn handlers_blocking_every_worker_keep_their_postgres_claims() {
    use notmeta_test_support::PostgresServer;
    use notmeta_webhooks::postgres::{PostgresStore, Tables};

    let _serial = serial();
    let server = PostgresServer::start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port());
    blocked_workers_keep_their_claims([1, 2], |runtime| {
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            PostgresStore::open(pool, &Tables::default())
                .await
                .unwrap()
                .with_lease(LEASE)
        })
    });
}

/// How many times Redis ran each command so far (`INFO commandstats`).
fn command_calls(redis: &RedisServer, runtime: &Runtime) -> HashMap<String, u64> {
    let info: String = runtime.block_on(async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap()
    });
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Twenty handlers run at once for 3.5 leases: their renewals take one script per
/// third of the lease in all, not one per claim (about 10 against 200), and every
/// claim is kept.
#[test]
fn the_renewals_of_all_deliveries_in_flight_take_one_round_trip() {
    const HANDLERS: usize = 20;
    let _serial = serial();
    let redis = RedisServer::start();
    let runtime = runtime(2);
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let receiver = Arc::new(
        Receiver::new(
            Verifier::new(SECRET).unwrap(),
            move |event: Event<'static>| {
                *counted.lock().unwrap().entry(index(&event)).or_default() += 1;
                // Event 0 warms up: Redis has every script once it has run.
                let long = if index(&event) == 0 {
                    LEASE / 2
                } else {
                    LEASE * 7 / 2
                };
                async move {
                    tokio::time::sleep(long).await;
                    Ok::<(), HandlerError>(())
                }
            },
        )
        .with_store(redis_store(&redis, &runtime)),
    );
    assert_eq!(runtime.block_on(receive(&*receiver, 0)), Outcome::Handled);
    let before = command_calls(&redis, &runtime);
    let started = Instant::now();
    let deliveries: Vec<_> = (1..=HANDLERS)
        .map(|i| {
            let receiver = Arc::clone(&receiver);
            runtime.spawn(async move { receive(&*receiver, i).await })
        })
        .collect();
    for delivery in deliveries {
        assert_eq!(runtime.block_on(delivery).unwrap(), Outcome::Handled);
    }
    let elapsed = started.elapsed();
    let after = command_calls(&redis, &runtime);
    let delta =
        |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    // Scripts: one completion per delivery, and the renewals.
    let scripts = delta("evalsha") + delta("eval");
    let ticks = u64::try_from(elapsed.as_millis() / (LEASE / 3).as_millis()).unwrap() + 1;
    assert!(ticks >= 9, "the handlers ran {elapsed:?}");
    let most = HANDLERS as u64 + ticks + 1;
    assert!(
        scripts <= most,
        "{scripts} scripts for {HANDLERS} deliveries over {ticks} ticks (at most {most})"
    );
    // The renewals did go out: at least one per tick the handlers ran through.
    assert!(scripts >= HANDLERS as u64 + ticks - 3, "{scripts} scripts");
    assert_eq!(runs.lock().unwrap().len(), HANDLERS + 1);
    assert!(runs.lock().unwrap().values().all(|&runs| runs == 1));
}

/// The keeper's thread starts with the first delivery under a lease and ends once
/// the receiver and its deliveries are gone, also when the receiver is dropped
/// while a handler runs (which keeps its claim renewed until it ends).
#[test]
fn the_keeper_thread_ends_with_its_receiver() {
    let _serial = serial();
    let redis = RedisServer::start();
    let runtime = runtime(2);
    assert_eq!(keeper_threads(), 0);
    let runs = Runs::default();
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::from_millis(10)),
    )
    .with_store(redis_store(&redis, &runtime));
    assert_eq!(keeper_threads(), 0, "started before any delivery");
    assert_eq!(runtime.block_on(receive(&receiver, 1)), Outcome::Handled);
    assert_eq!(keeper_threads(), 1);
    let clone = receiver.clone();
    assert_eq!(runtime.block_on(receive(&clone, 2)), Outcome::Handled);
    assert_eq!(keeper_threads(), 1, "one keeper per store");
    drop((receiver, clone));
    wait_for("the keeper to end", Duration::from_secs(2), || {
        keeper_threads() == 0
    });

    // Dropped while a handler blocks for 2.5 leases.
    let slow = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, LEASE * 5 / 2),
    )
    .with_store(redis_store(&redis, &runtime));
    let delivery = runtime.spawn(async move { receive(&slow, 3).await });
    wait_for("the handler", Duration::from_secs(5), || {
        runs.lock().unwrap().contains_key(&3)
    });
    // `slow` went with the task; the delivery still holds the keeper.
    std::thread::sleep(LEASE * 2);
    let other = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::ZERO),
    )
    .with_store(redis_store(&redis, &runtime));
    assert_eq!(runtime.block_on(receive(&other, 3)), Outcome::InProgress);
    assert_eq!(runtime.block_on(delivery).unwrap(), Outcome::Handled);
    drop(other);
    wait_for("every keeper to end", Duration::from_secs(2), || {
        keeper_threads() == 0
    });
    assert_eq!(runs.lock().unwrap().get(&3), Some(&1));
}

/// A claim taken over while its handler runs is found lost by the keeper's renewal
/// and reported so, even when the id is free again by the time the delivery
/// settles (so only the renewal could tell).
#[test]
fn a_claim_the_keeper_finds_lost_is_reported_lost() {
    let _serial = serial();
    let redis = RedisServer::start();
    let runtime = runtime(2);
    let lost = Arc::new(AtomicBool::new(false));
    let reports = Arc::new(AtomicUsize::new(0));
    let (seen, counted) = (Arc::clone(&lost), Arc::clone(&reports));
    let receiver = Receiver::new(Verifier::new(SECRET).unwrap(), |_: Event<'static>| async {
        tokio::time::sleep(LEASE * 2).await;
        Ok::<(), HandlerError>(())
    })
    .with_store(redis_store(&redis, &runtime).with_namespace("lost"))
    .on_outcome(move |report: &DeliveryReport<'_>| {
        counted.fetch_add(1, Ordering::SeqCst);
        seen.store(report.lease_lost, Ordering::SeqCst);
    });
    let receiver = Arc::new(receiver);
    let delivery = runtime.spawn({
        let receiver = Arc::clone(&receiver);
        async move { receive(&*receiver, 1).await }
    });
    let redis_cli = |args: &[&str]| {
        runtime.block_on(async {
            let client = redis::Client::open(redis.url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            cmd.query_async::<redis::Value>(&mut connection)
                .await
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    redis_cli(&["SET", "lost:event:evt_1", "claim:another", "PX", "60000"]);
    // Two renewals later, the id is free again.
    std::thread::sleep(LEASE * 4 / 5);
    redis_cli(&["DEL", "lost:event:evt_1"]);
    assert_eq!(runtime.block_on(delivery).unwrap(), Outcome::Handled);
    assert_eq!(reports.load(Ordering::SeqCst), 1);
    assert!(
        lost.load(Ordering::SeqCst),
        "the lost lease was not reported"
    );
}

/// A keeper whose Redis restarts (AOF `always`, so the claim survives) or freezes
/// for a moment while a handler runs: the renewals that fail are counted as store
/// failures, the next ones go out once Redis answers again (the keeper's connection
/// is re-established), and the claim is kept to the end.
#[test]
fn renewals_resume_after_redis_restarts_or_stalls() {
    let _serial = serial();
    let dir = notmeta_test_support::TempDir::new("keeper-aof");
    let mut redis = RedisServer::start_durable(dir.path());
    let runtime = runtime(2);
    let lease = Duration::from_secs(3);
    let runs = Runs::default();
    let lost = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&lost);
    let url = redis.url();
    let open = |runtime: &Runtime| {
        runtime
            .block_on(RedisStore::connect(&url))
            .unwrap()
            .with_lease(lease)
    };
    let receiver = Arc::new(
        Receiver::new(
            Verifier::new(SECRET).unwrap(),
            blocking(&runs, lease * 7 / 3),
        )
        .with_store(open(&runtime))
        .on_outcome(move |report: &DeliveryReport<'_>| {
            if report.lease_lost {
                seen.store(true, Ordering::SeqCst);
            }
        }),
    );
    let other = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::ZERO),
    )
    .with_store(open(&runtime));
    for (i, fault) in [(1, "restart"), (2, "stall")] {
        let delivery = runtime.spawn({
            let receiver = Arc::clone(&receiver);
            async move { receive(&*receiver, i).await }
        });
        wait_for("the handler", Duration::from_secs(5), || {
            runs.lock().unwrap().contains_key(&i)
        });
        std::thread::sleep(Duration::from_millis(500));
        if fault == "restart" {
            redis.restart();
        } else {
            redis.pause();
            std::thread::sleep(Duration::from_secs(1));
            redis.resume();
        }
        // Past the claim's first lease: held only if renewals went out again.
        std::thread::sleep(lease * 4 / 3);
        let duplicate = runtime.block_on(async {
            // The other receiver's connection may need a moment after a restart.
            for _ in 0..20 {
                match receive(&other, i).await {
                    Outcome::StoreUnavailable => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    outcome => return outcome,
                }
            }
            Outcome::StoreUnavailable
        });
        assert_eq!(duplicate, Outcome::InProgress, "after a {fault}");
        assert_eq!(runtime.block_on(delivery).unwrap(), Outcome::Handled);
        assert_eq!(runs.lock().unwrap().get(&i), Some(&1), "after a {fault}");
    }
    assert!(!lost.load(Ordering::SeqCst));
}

/// Leases at their bounds: the shortest a store allows (1 s) is renewed often
/// enough under a handler that blocks for 4 leases, and the longest (100 years) is
/// never due and still lets the keeper end with its receiver.
#[test]
fn the_shortest_and_the_longest_lease() {
    let _serial = serial();
    let redis = RedisServer::start();
    let runtime = runtime(2);
    let runs = Runs::default();
    let long = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::from_millis(50)),
    )
    .with_store(redis_store(&redis, &runtime).with_lease(Duration::MAX));
    assert_eq!(runtime.block_on(receive(&long, 1)), Outcome::Handled);
    assert_eq!(keeper_threads(), 1);
    drop(long);
    wait_for("the keeper to end", Duration::from_secs(2), || {
        keeper_threads() == 0
    });

    let short = Arc::new(
        Receiver::new(Verifier::new(SECRET).unwrap(), blocking(&runs, LEASE * 4))
            .with_store(redis_store(&redis, &runtime).with_lease(Duration::ZERO)),
    );
    let delivery = runtime.spawn({
        let short = Arc::clone(&short);
        async move { receive(&*short, 2).await }
    });
    wait_for("the handler", Duration::from_secs(5), || {
        runs.lock().unwrap().contains_key(&2)
    });
    let other = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        blocking(&runs, Duration::ZERO),
    )
    .with_store(redis_store(&redis, &runtime));
    for _ in 0..3 {
        std::thread::sleep(LEASE);
        assert_eq!(runtime.block_on(receive(&other, 2)), Outcome::InProgress);
    }
    assert_eq!(runtime.block_on(delivery).unwrap(), Outcome::Handled);
    assert_eq!(runs.lock().unwrap().get(&2), Some(&1));
}
