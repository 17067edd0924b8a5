//! Attacks on the lease keeper and the queue worker's renewal thread against a real
//! Redis and PostgreSQL: their own connection refused, a handler blocking the only
//! thread of a `#[tokio::test]` runtime, and thousands of claims renewed at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::keeper::{LEASE, Runs, SECRET, index, receive, runtime, serial, wait_for};
use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::RedisStore;
use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier};
use tokio::runtime::Runtime;

/// Counts its runs, then sleeps `sleep` (awaiting) and blocks its thread `block`.
fn handler(
    runs: &Runs,
    sleep: Duration,
    block: Duration,
) -> impl notmeta_webhooks::receiver::Handler {
    let runs = Arc::clone(runs);
    move |event: Event<'static>| {
        *runs.lock().unwrap().entry(index(&event)).or_default() += 1;
        async move {
            tokio::time::sleep(sleep).await;
            std::thread::sleep(block);
            Ok::<(), HandlerError>(())
        }
    }
}

async fn redis_store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .with_lease(LEASE)
}

/// A receiver on `busy` whose handlers await 2.5 leases, and another on `other`
/// (the same Redis) whose handlers return at once.
fn pair(
    redis: &RedisServer,
    runs: &Runs,
    busy: &Runtime,
    other: &Runtime,
) -> (
    Arc<Receiver<impl notmeta_webhooks::receiver::Handler, RedisStore>>,
    Receiver<impl notmeta_webhooks::receiver::Handler, RedisStore>,
) {
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler(runs, LEASE * 5 / 2, Duration::ZERO),
    )
    .with_store(busy.block_on(redis_store(redis)));
    let duplicate = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler(runs, Duration::ZERO, Duration::ZERO),
    )
    .with_store(other.block_on(redis_store(redis)));
    (Arc::new(receiver), duplicate)
}

/// A handler blocks the only thread of a `#[tokio::test]` (current-thread) runtime
/// for 2.5 leases; the same event delivered meanwhile to another receiver, from a
/// runtime of its own, is answered "in progress" and the handler runs once.
#[tokio::test]
// The test's only thread holds the serial lock throughout, on purpose.
#[allow(clippy::await_holding_lock)]
async fn a_handler_blocking_a_current_thread_test_runtime_keeps_its_claim() {
    let _serial = serial();
    let redis = RedisServer::start();
    let runs = Runs::default();
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler(&runs, Duration::ZERO, LEASE * 5 / 2),
    )
    .with_store(redis_store(&redis).await);
    let duplicate = std::thread::spawn({
        let runs = Arc::clone(&runs);
        let url = redis.url();
        move || {
            let other = runtime(1);
            let store = other
                .block_on(RedisStore::connect(&url))
                .unwrap()
                .with_lease(LEASE);
            let receiver = Receiver::new(
                Verifier::new(SECRET).unwrap(),
                handler(&runs, Duration::ZERO, Duration::ZERO),
            )
            .with_store(store);
            wait_for("the handler", Duration::from_secs(5), || {
                runs.lock().unwrap().contains_key(&1)
            });
            std::thread::sleep(LEASE * 3 / 2);
            other.block_on(receive(&receiver, 1))
        }
    });
    assert_eq!(receive(&receiver, 1).await, Outcome::Handled);
    assert_eq!(duplicate.join().unwrap(), Outcome::InProgress);
    assert_eq!(*runs.lock().unwrap(), HashMap::from([(1, 1)]));
}

/// Three thousand handlers run at once on a two-thread runtime for 2.5 leases: one
/// `renew_many` of three thousand keys per tick keeps every claim, so a duplicate of
/// each, delivered 1.5 leases in to another receiver, is answered "in progress".
#[test]
fn thousands_of_claims_are_renewed_at_once() {
    const HANDLERS: usize = 3000;
    let _serial = serial();
    let redis = RedisServer::start();
    let (busy, other) = (runtime(2), runtime(1));
    let runs = Runs::default();
    let (receiver, duplicate) = pair(&redis, &runs, &busy, &other);
    let deliveries: Vec<_> = (0..HANDLERS)
        .map(|i| {
            let receiver = Arc::clone(&receiver);
            busy.spawn(async move { receive(&*receiver, i).await })
        })
        .collect();
    wait_for("every handler", Duration::from_secs(10), || {
        runs.lock().unwrap().len() == HANDLERS
    });
    let started = Instant::now();
    std::thread::sleep(LEASE * 3 / 2);
    let outcomes = other.block_on(async {
        let mut outcomes = HashMap::<Outcome, usize>::new();
        for i in (0..HANDLERS).step_by(100) {
            *outcomes.entry(receive(&duplicate, i).await).or_default() += 1;
        }
        outcomes
    });
    assert!(
        started.elapsed() < LEASE * 5 / 2,
        "duplicates sent too late"
    );
    assert_eq!(
        outcomes,
        HashMap::from([(Outcome::InProgress, HANDLERS / 100)])
    );
    for delivery in deliveries {
        assert_eq!(busy.block_on(delivery).unwrap(), Outcome::Handled);
    }
    assert!(runs.lock().unwrap().values().all(|&runs| runs == 1));
}

/// Redis refuses the keeper's own connection (`maxclients` reached once the
/// receivers' connections are open): the receiver's own connection still works, so
/// the keeper renews the claim on it while the handler runs; a duplicate delivered
/// 1.5 leases in is answered "in progress" and the handler runs once.
#[test]
fn a_claim_is_kept_when_the_keepers_connection_is_refused() {
    let _serial = serial();
    let redis = RedisServer::start();
    let (busy, other) = (runtime(2), runtime(1));
    let runs = Runs::default();
    let (receiver, duplicate) = pair(&redis, &runs, &busy, &other);
    let admin = refuse_new_clients(&redis, &other);
    let outcome = deliver_twice(&busy, &receiver, &other, &duplicate, &runs);
    let refused = lift_limit(&other, admin);
    assert!(refused > 0, "the keeper's connection was not refused");
    assert_eq!(outcome, Outcome::InProgress);
    assert_eq!(runs.lock().unwrap().get(&1), Some(&1));
}

/// Redis refuses the renewal thread's own connection of a queue worker
/// (`maxclients` reached once the workers' queues are connected): the worker's
/// entry must still be renewed while its handler runs (five visibility timeouts),
/// so another worker never takes it over and the handler runs once.
#[cfg(feature = "queue")]
#[test]
fn a_queue_entry_is_kept_when_the_renewal_connection_is_refused() {
    use common::queue::{body as queue_body, drained, enqueuer, send};
    use notmeta_webhooks::queue::{Queue, Worker};

    let _serial = serial();
    let redis = RedisServer::start();
    let (a, b, b2) = (runtime(2), runtime(1), runtime(1));
    let visibility = Duration::from_millis(300);
    let (queue_a, queue_b) = (
        a.block_on(Queue::connect(&redis.url())).unwrap(),
        b.block_on(Queue::connect(&redis.url())).unwrap(),
    );
    a.block_on(async {
        assert_eq!(send(&enqueuer(&queue_a), &queue_body("evt_1")).await.0, 200);
    });
    let runs = Arc::new(std::sync::Mutex::new(HashMap::<&str, usize>::new()));
    let worker = |name: &'static str, queue: Queue, sleep: Duration| {
        let runs = Arc::clone(&runs);
        Worker::new(queue, move |_: Event<'static>| {
            *runs.lock().unwrap().entry(name).or_default() += 1;
            async move {
                tokio::time::sleep(sleep).await;
                Ok::<(), HandlerError>(())
            }
        })
        .with_consumer_name(name)
        .with_visibility_timeout(visibility)
        .with_poll_interval(Duration::from_millis(10))
    };
    let admin = refuse_new_clients(&redis, &b2);
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let running_a = a.spawn(worker("A", queue_a.clone(), visibility * 5).run(async {
        let _ = stopped_a.await;
    }));
    wait_for("A's handler", Duration::from_secs(5), || {
        runs.lock().unwrap().contains_key("A")
    });
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let running_b = b.spawn(worker("B", queue_b, Duration::ZERO).run(async {
        let _ = stopped_b.await;
    }));
    let b_thread = std::thread::spawn(move || b.block_on(running_b));
    a.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !drained(&queue_a).await {
            assert!(Instant::now() < deadline, "the queue was not drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(visibility * 2).await;
    });
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let stats_a = a.block_on(running_a).unwrap().unwrap();
    let stats_b = b_thread.join().unwrap().unwrap().unwrap();
    let refused = lift_limit(&b2, admin);
    assert!(refused > 0, "no connection was refused");
    assert_eq!(
        *runs.lock().unwrap(),
        HashMap::from([("A", 1)]),
        "A {stats_a:?}, B {stats_b:?}"
    );
}

/// Sets Redis's client limit to 1: the connections open stay (the one returned
/// too, to lift the limit with), no new one is accepted.
fn refuse_new_clients(redis: &RedisServer, runtime: &Runtime) -> redis::aio::MultiplexedConnection {
    runtime.block_on(async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("CONFIG")
            .arg(&["SET", "maxclients", "1"])
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        admin
    })
}

/// Lifts the client limit set by [`refuse_new_clients`]; how many connections
/// Redis refused so far.
fn lift_limit(runtime: &Runtime, mut admin: redis::aio::MultiplexedConnection) -> u64 {
    runtime.block_on(async {
        redis::cmd("CONFIG")
            .arg(&["SET", "maxclients", "100"])
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut admin)
            .await
            .unwrap();
        stats
            .lines()
            .find_map(|line| line.strip_prefix("rejected_connections:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

/// A PostgreSQL server with no room for the keeper's extra connection
/// (`max_connections` taken by the receivers' pools and one more client): the
/// keeper renews on the receiver's pool, so a duplicate delivered 1.5 leases in is
/// answered "in progress" and the handler runs once.
#[cfg(feature = "postgres")]
#[test]
fn a_postgres_claim_is_kept_when_the_server_has_no_room_for_the_keeper() {
    use notmeta_test_support::PostgresServer;
    use notmeta_webhooks::postgres::{PostgresStore, Tables};
    use sqlx::Connection;

    let _serial = serial();
    let server = PostgresServer::start_with(&[
        ("max_connections", "3"),
        ("superuser_reserved_connections", "0"),
    ]);
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port());
    let (busy, other) = (runtime(2), runtime(1));
    let open = |runtime: &Runtime| {
        runtime.block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect(&url)
                .await
                .unwrap();
            PostgresStore::open(pool, &Tables::default())
                .await
                .unwrap()
                .with_lease(LEASE)
        })
    };
    let runs = Runs::default();
    let receiver = Arc::new(
        Receiver::new(
            Verifier::new(SECRET).unwrap(),
            handler(&runs, LEASE * 5 / 2, Duration::ZERO),
        )
        .with_store(open(&busy)),
    );
    let duplicate = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler(&runs, Duration::ZERO, Duration::ZERO),
    )
    .with_store(open(&other));
    // The last slot.
    let filler = other.block_on(sqlx::PgConnection::connect(&url)).unwrap();
    assert!(
        other.block_on(sqlx::PgConnection::connect(&url)).is_err(),
        "the server had room for another connection"
    );
    assert_eq!(
        deliver_twice(&busy, &receiver, &other, &duplicate, &runs),
        Outcome::InProgress
    );
    assert_eq!(runs.lock().unwrap().get(&1), Some(&1));
    drop(filler);
}

/// Delivers event 1 to `receiver` on `busy` and, 1.5 leases after its handler
/// started, to `duplicate` on `other`; asserts the first was handled, and returns
/// the duplicate's outcome.
fn deliver_twice<H, S, D, T>(
    busy: &Runtime,
    receiver: &Arc<Receiver<H, S>>,
    other: &Runtime,
    duplicate: &Receiver<D, T>,
    runs: &Runs,
) -> Outcome
where
    H: notmeta_webhooks::receiver::Handler,
    S: notmeta_webhooks::dedup::IdempotencyStore,
    D: notmeta_webhooks::receiver::Handler,
    T: notmeta_webhooks::dedup::IdempotencyStore,
{
    let delivery = busy.spawn({
        let receiver = Arc::clone(receiver);
        async move { receive(&*receiver, 1).await }
    });
    wait_for("the handler", Duration::from_secs(5), || {
        runs.lock().unwrap().contains_key(&1)
    });
    std::thread::sleep(LEASE * 3 / 2);
    let outcome = other.block_on(receive(duplicate, 1));
    assert_eq!(busy.block_on(delivery).unwrap(), Outcome::Handled);
    outcome
}
