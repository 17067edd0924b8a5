//! Attacks on the PostgreSQL store's promises, against a real PostgreSQL server each
//! test starts for itself: several replicas under crashes, restarts, pauses and cut
//! connections; ambiguous commits; a partitioned replica; pool exhaustion; a sweep
//! running all the time; hostile event ids; schema names and concurrent migrations;
//! `synchronous_commit = off`; handlers that end the transaction themselves.
//!
//! Each test asserts the promise. A test that fails shows a defect; its comment says
//! what happens instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, join_all};
use notmeta_test_support::PostgresServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::dedup::{Claim, IdempotencyStore};
use notmeta_webhooks::postgres::{PostgresError, PostgresStore, Tables, migrate};
use notmeta_webhooks::receiver::{Answer, Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const SECRET: &str = "whsec_postgres_attacks";

fn body(id: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "type": "user.online",
        "created_at": "2024-01-01T12:00:00Z",
        "data": {}
    })
    .to_string()
    .into_bytes()
}

async fn deliver<H: Handler>(receiver: &Receiver<H, PostgresStore>, id: &str) -> Answer {
    let body = body(id);
    let header = sign(&body, SECRET);
    receiver.receive(&body, [header.as_bytes()]).await
}

/// One replica's endpoint, whatever its handler's type.
type Endpoint = Arc<dyn Fn(String) -> BoxFuture<'static, Answer> + Send + Sync>;

fn endpoint<H: Handler>(receiver: Receiver<H, PostgresStore>) -> Endpoint {
    let receiver = Arc::new(receiver);
    Arc::new(move |id: String| {
        let receiver = Arc::clone(&receiver);
        Box::pin(async move { deliver(&receiver, &id).await })
    })
}

async fn pool_on(port: u16, database: &str, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&format!("postgres://postgres@127.0.0.1:{port}/{database}"))
        .await
        .unwrap()
}

/// Where the handler's writes go: `effects` (one row per run that committed, no
/// constraint, so a second commit shows) and `unique_effects` (a primary key on the
/// event id, as many services have).
async fn effects_tables(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS effects (event_id text NOT NULL, replica int NOT NULL);
         CREATE TABLE IF NOT EXISTS unique_effects (event_id text PRIMARY KEY)",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A server, a pool on it, and the effects tables.
async fn setup() -> (PostgresServer, PgPool) {
    let server = PostgresServer::start();
    let direct = pool_on(server.port(), "postgres", 4).await;
    effects_tables(&direct).await;
    (server, direct)
}

async fn effects(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1")
        .bind(id.replace('\0', "\\0"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn effect_counts(pool: &PgPool) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT event_id, count(*) FROM effects GROUP BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// A stable pseudo-random number from a string.
fn spread(id: &str, modulo: u64) -> u64 {
    id.bytes()
        .fold(1469598103934665603u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(1099511628211)
        })
        .rotate_left(17)
        % modulo
}

/// A transactional handler that writes one `effects` row tagged with `replica`, then
/// sleeps as long as `sleep(id)` says.
macro_rules! writer {
    ($store:expr, $replica:expr, $sleep:expr) => {{
        let replica: i32 = $replica;
        let sleep = $sleep;
        $store.transactional(move |event: Event<'static>, tx| {
            let pause: Duration = sleep(event.id.as_str());
            Box::pin(async move {
                // PostgreSQL's text cannot hold a NUL: `effects` keeps it as `\0`.
                sqlx::query("INSERT INTO effects (event_id, replica) VALUES ($1, $2)")
                    .bind(event.id.as_str().replace('\0', "\\0"))
                    .bind(replica)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                Ok::<(), HandlerError>(())
            })
        })
    }};
}

/// A store on `pool`, its tables in the default place.
async fn store(pool: PgPool) -> PostgresStore {
    PostgresStore::open(pool, &Tables::default()).await.unwrap()
}

fn receiver<H: Handler>(handler: H, store: PostgresStore) -> Receiver<H, PostgresStore> {
    Receiver::new(Verifier::new(SECRET).unwrap(), handler).with_store(store)
}

/// What NotMeta saw for one event: every answer's outcome.
type Seen = Arc<Mutex<BTreeMap<String, Vec<Outcome>>>>;

/// Delivers `id` through `endpoints` (starting at `first`, moving on at each retry)
/// until it is answered 200 or `deadline` passes; records every outcome.
async fn until_ok(endpoints: &[Endpoint], first: usize, id: &str, seen: &Seen, deadline: Instant) {
    let mut at = first;
    loop {
        let answer = endpoints[at % endpoints.len()](id.to_owned()).await;
        seen.lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push(answer.outcome());
        if answer.status() == 200 || Instant::now() > deadline {
            return;
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(
            100 + spread(&format!("{id}{at}"), 150),
        ))
        .await;
    }
}

fn histogram(seen: &Seen) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for outcomes in seen.lock().unwrap().values() {
        for outcome in outcomes {
            *counts.entry(format!("{outcome:?}")).or_default() += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------
// Many replicas, every fault
// ---------------------------------------------------------------------------

/// Three replicas, each with its own pool behind its own proxy, a lease of 1 s (one
/// replica with the handler isolation off), handlers of which a third outlive the
/// lease; 150 events, each sent by three senders at once and retried until 200,
/// while the connections are cut, one replica is partitioned for 2 s, PostgreSQL is
/// stopped (immediate) and restarted, every backend is terminated, and replies are
/// held. Every event must end answered 200 with exactly one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_replicas_under_every_fault_take_each_effect_exactly_once() {
    let server = Arc::new(Mutex::new(PostgresServer::start()));
    let port = server.lock().unwrap().port();
    let direct = pool_on(port, "postgres", 4).await;
    effects_tables(&direct).await;
    let mut proxies = Vec::new();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for replica in 0..3 {
        let proxy = Arc::new(Proxy::start(port).await);
        let pool = pool_on(proxy.port(), "postgres", 6).await;
        let store = store(pool)
            .await
            .with_lease(Duration::from_secs(1))
            .with_sweep_interval(Some(Duration::from_millis(500)));
        // A third of the events outlive the lease (renewed), a few the time limit.
        let sleep = |id: &str| Duration::from_millis([0, 50, 1_300][spread(id, 3) as usize]);
        let handler = writer!(store, replica, sleep);
        let receiver = receiver(handler, store)
            .with_handler_timeout(Duration::from_secs(3))
            .with_handler_isolation(replica != 0);
        endpoints.push(endpoint(receiver));
        proxies.push(proxy);
    }
    let seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(150);
    let ids: Vec<String> = (0..150).map(|n| format!("evt_chaos_{n}")).collect();
    let senders: Vec<_> = ids
        .iter()
        .enumerate()
        .flat_map(|(n, id)| {
            (0..3).map({
                let (endpoints, seen) = (endpoints.clone(), Arc::clone(&seen));
                move |sender| {
                    let (endpoints, seen, id) = (endpoints.clone(), Arc::clone(&seen), id.clone());
                    tokio::spawn(async move {
                        // Spread over the first 9 s, while the faults happen.
                        tokio::time::sleep(Duration::from_millis(60 * n as u64)).await;
                        until_ok(&endpoints, n + sender, &id, &seen, deadline).await;
                    })
                }
            })
        })
        .collect();
    let faults = {
        let (server, proxies) = (Arc::clone(&server), proxies.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            for proxy in &proxies {
                proxy.cut();
            }
            tokio::time::sleep(Duration::from_millis(800)).await;
            proxies[1].pause();
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxies[1].resume();
            tokio::time::sleep(Duration::from_millis(700)).await;
            let s = Arc::clone(&server);
            tokio::task::spawn_blocking(move || s.lock().unwrap().stop_immediate())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = Arc::clone(&server);
            tokio::task::spawn_blocking(move || s.lock().unwrap().restart())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let s = Arc::clone(&server);
            tokio::task::spawn_blocking(move || s.lock().unwrap().terminate_backends())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
            proxies[2].hold_replies(Duration::from_millis(1_500));
            tokio::time::sleep(Duration::from_millis(500)).await;
            proxies[0].cut();
        })
    };
    join_all(senders).await;
    faults.await.unwrap();
    let counts = effect_counts(&pool_on(port, "postgres", 2).await).await;
    let seen = seen.lock().unwrap().clone();
    let never_ok: Vec<&String> = ids
        .iter()
        .filter(|id| !seen[*id].iter().any(|o| o.status() == 200))
        .collect();
    let wrong: Vec<(&String, i64)> = ids
        .iter()
        .map(|id| (id, counts.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    let all = Seen::new(Mutex::new(seen));
    eprintln!("outcomes: {:?}", histogram(&all));
    assert!(never_ok.is_empty(), "never answered 200: {never_ok:?}");
    assert!(wrong.is_empty(), "effects not exactly once: {wrong:?}");
}

// ---------------------------------------------------------------------------
// Ambiguous commits
// ---------------------------------------------------------------------------

/// The replies of the replica's connections are held (or the connections paused)
/// at every moment around the done mark and the commit, past the handler's time
/// limit; NotMeta retries through a second replica. Whatever the first delivery was
/// answered, the event ends answered 200 with exactly one effect, and an event
/// answered 200 by the first delivery has its effect.
///
/// Sixteen events, a fault each, one after the other (the fault is the proxy's, so
/// the events of one run cannot overlap); the two halves run as two tests, each on
/// its own server, so that they run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_whose_answers_are_held_or_lost_count_once() {
    ambiguous_commits(0..8).await;
}

/// The second half of [`commits_whose_answers_are_held_or_lost_count_once`]: the
/// faults that come later after the handler returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_commits_whose_answers_are_held_or_lost_count_once() {
    ambiguous_commits(8..16).await;
}

/// Event `n` of `events`: its fault comes 20 ms × (`n` / 2) after its handler
/// returned; an odd `n` pauses the connections, an even one holds their replies.
async fn ambiguous_commits(events: std::ops::Range<u64>) {
    let (server, direct) = setup().await;
    let proxy = Arc::new(Proxy::start(server.port()).await);
    proxy.set_latency(Duration::from_millis(40));
    let pool = pool_on(proxy.port(), "postgres", 4).await;
    let held = store(pool).await.with_lease(Duration::from_secs(1));
    // The handler returns at once; the fault comes `offset` after it returned.
    let offsets: Arc<Mutex<HashMap<String, (Duration, bool)>>> = Arc::default();
    let handler = held.transactional({
        let (proxy, offsets) = (Arc::clone(&proxy), Arc::clone(&offsets));
        move |event: Event<'static>, tx| {
            let fault = offsets.lock().unwrap().get(event.id.as_str()).copied();
            let proxy = Arc::clone(&proxy);
            Box::pin(async move {
                sqlx::query("INSERT INTO effects (event_id, replica) VALUES ($1, 0)")
                    .bind(event.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                if let Some((offset, pause)) = fault {
                    tokio::spawn(async move {
                        tokio::time::sleep(offset).await;
                        if pause {
                            proxy.pause();
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            proxy.resume();
                        } else {
                            proxy.hold_replies(Duration::from_secs(3));
                        }
                    });
                }
                Ok(())
            })
        }
    });
    let first = receiver(handler, held).with_handler_timeout(Duration::from_millis(1_500));
    let other_store = store(direct.clone()).await;
    let other = receiver(
        writer!(other_store, 1, |_: &str| Duration::ZERO),
        other_store,
    );
    let mut report = Vec::new();
    for n in events {
        let pause = n % 2 == 1;
        let offset = Duration::from_millis(20 * (n / 2));
        let id = format!("evt_ambiguous_{n}");
        offsets.lock().unwrap().insert(id.clone(), (offset, pause));
        let answer = deliver(&first, &id).await;
        // NotMeta retries until 200 (through the other replica).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut retries = Vec::new();
        if answer.status() != 200 {
            loop {
                let retry = deliver(&other, &id).await;
                retries.push(retry.outcome());
                if retry.status() == 200 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        proxy.heal();
        proxy.set_latency(Duration::from_millis(40));
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        let n_effects = effects(&direct, &id).await;
        report.push((id, offset, pause, answer.outcome(), retries, n_effects));
    }
    for line in &report {
        eprintln!("{line:?}");
    }
    let bad: Vec<_> = report
        .iter()
        .filter(|(_, _, _, first, retries, n)| {
            *n != 1 || (first.status() != 200 && retries.last().is_none_or(|o| o.status() != 200))
        })
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}

// ---------------------------------------------------------------------------
// A partitioned replica
// ---------------------------------------------------------------------------

/// Replica A is cut off from PostgreSQL (a network partition: its TCP connections
/// stay open, nothing flows) while its handler's transaction is open, after the
/// handler wrote its row (`unique_effects`, keyed by the event id, as most services
/// key the rows a webhook makes). NotMeta retries through replica B.
///
/// Promised: a lapsed claim is taken over, so once A's lease (1 s) has lapsed the
/// retry runs on B and the event is handled; and a partition of A does not stop B.
///
/// What happens: the server keeps A's transaction open (nothing tells it the client
/// is gone: no `idle_in_transaction_session_timeout`, TCP keepalive after 2 h by
/// default), so its uncommitted row lock stays. B takes the claim over, and B's
/// handler waits on that lock until its time limit: 503, every retry, for as long
/// as the partition lasts. Worse, each of those retries leaves one of B's pooled
/// connections stuck behind the lock (sqlx waits for the cancelled statement's
/// answer before reusing it), so after a few retries B answers 503 to every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_replica_blocks_neither_its_event_nor_the_other_replicas() {
    partitioned_replica(PostgresServer::start(), Some(Duration::from_secs(3))).await;
}

/// The same partition with `idle_in_transaction_session_timeout = 3s` on the
/// server and the transaction's own limit left at its default (10 s): the shorter
/// limit stays in force, the server ends A's transaction 3 s into the partition,
/// its lock goes, and B handles the event and every other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_replica_with_an_idle_transaction_timeout_lets_the_retry_run() {
    partitioned_replica(
        PostgresServer::start_with(&[("idle_in_transaction_session_timeout", "3s")]),
        None,
    )
    .await;
}

/// A replica (A) loses the network while its transaction is open; `idle`: its
/// transactions' idle limit, if set.
async fn partitioned_replica(server: PostgresServer, idle: Option<Duration>) {
    let direct = pool_on(server.port(), "postgres", 4).await;
    effects_tables(&direct).await;
    let proxy = Proxy::start(server.port()).await;
    let make = |pool: PgPool| async move {
        let store = store(pool).await.with_lease(Duration::from_secs(1));
        let handler = store.transactional(|event: Event<'static>, tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO unique_effects (event_id) VALUES ($1)")
                    .bind(event.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<(), HandlerError>(())
            })
        });
        let handler = match idle {
            Some(idle) => handler.with_idle_timeout(idle),
            None => handler,
        };
        endpoint(receiver(handler, store).with_handler_timeout(Duration::from_secs(2)))
    };
    let a = make(pool_on(proxy.port(), "postgres", 4).await).await;
    let b = make(pool_on(server.port(), "postgres", 4).await).await;
    let first = tokio::spawn(a("evt_partitioned".to_owned()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.pause();
    let started = Instant::now();
    // NotMeta's retries (sped up) through B for 20 s, and other events meanwhile.
    let mut handled_after = None;
    let mut retries = BTreeMap::<String, usize>::new();
    let mut others = BTreeMap::<String, usize>::new();
    let mut other_n = 0;
    while started.elapsed() < Duration::from_secs(20) {
        let answer = b("evt_partitioned".to_owned()).await;
        *retries
            .entry(format!("{:?}", answer.outcome()))
            .or_default() += 1;
        if answer.status() == 200 {
            handled_after = Some(started.elapsed());
            break;
        }
        other_n += 1;
        let other = b(format!("evt_bystander_{other_n}")).await;
        *others.entry(format!("{:?}", other.outcome())).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "partitioned event handled after {handled_after:?}; its retries: {retries:?}; other events on B: {others:?}; A answered {:?}",
        first.await.unwrap().outcome()
    );
    let stuck: Vec<(Option<String>, Option<String>, i64)> = sqlx::query_as(
        "SELECT state, wait_event_type, count(*) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&direct)
    .await
    .unwrap();
    eprintln!("backends (state, waiting on, count): {stuck:?}");
    proxy.resume();
    assert!(
        handled_after.is_some_and(|t| t < Duration::from_secs(10)),
        "the event was not handled on B while A was partitioned: {retries:?}"
    );
    assert!(
        !others.contains_key("StoreUnavailable") && !others.contains_key("TimedOut"),
        "B failed other events: {others:?}"
    );
}

/// The same partition, caught between A's done mark and its commit (the event's row
/// locked by A's transaction): duplicates on B must be answered 503 within the
/// store's time limit (1 s), and B must keep handling other events.
///
/// What happens: each duplicate's claim waits on the locked row; the receiver gives
/// up after 1 s (503), but the statement goes on waiting in PostgreSQL and its
/// pooled connection cannot be used again until it ends, so every duplicate takes
/// one of B's connections for as long as the partition lasts: after as many
/// duplicates as B's pool holds, B answers 503 to every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_between_done_mark_and_commit_does_not_drain_the_others() {
    let (server, direct) = setup().await;
    let proxy = Arc::new(Proxy::start(server.port()).await);
    let store_a = store(pool_on(proxy.port(), "postgres", 4).await).await;
    // Each message takes 400 ms through the proxy from now on: the done mark is
    // applied 400 ms after the handler returns, the commit sent 400 ms later (a
    // window the 5 ms poll below cannot miss, however busy the machine). A's store
    // calls (a claim is two round trips with sqlx's ping) get a time limit to match.
    proxy.set_latency(Duration::from_millis(400));
    let a = endpoint(
        receiver(
            store_a.transactional(|_event: Event<'static>, _tx| Box::pin(async { Ok(()) })),
            store_a,
        )
        .with_store_timeout(Duration::from_secs(5))
        .with_handler_timeout(Duration::from_secs(20)),
    );
    let store_b = store(pool_on(server.port(), "postgres", 4).await).await;
    let b = endpoint(receiver(
        writer!(store_b, 1, |_: &str| Duration::ZERO),
        store_b,
    ));
    let first = tokio::spawn(a("evt_locked".to_owned()));
    // Partitioned as soon as the done mark holds the row.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The row's current version names a deleting transaction once the done
        // mark (an update) ran and before it commits.
        let marked: Option<bool> = sqlx::query_scalar(
            "SELECT xmax::text <> '0' FROM notmeta_webhooks_events WHERE event_id = 'evt_locked'",
        )
        .fetch_optional(&direct)
        .await
        .unwrap();
        if marked == Some(true) {
            proxy.pause();
            break;
        }
        assert!(Instant::now() < deadline, "the done mark never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut slowest = Duration::ZERO;
    let mut duplicates = BTreeMap::<String, usize>::new();
    let mut others = BTreeMap::<String, usize>::new();
    for n in 0..8 {
        let asked = Instant::now();
        let answer = b("evt_locked".to_owned()).await;
        slowest = slowest.max(asked.elapsed());
        *duplicates
            .entry(format!("{:?}", answer.outcome()))
            .or_default() += 1;
        let other = b(format!("evt_fresh_{n}")).await;
        *others.entry(format!("{:?}", other.outcome())).or_default() += 1;
    }
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            .fetch_one(&direct)
            .await
            .unwrap();
    eprintln!(
        "duplicates: {duplicates:?} (slowest {slowest:?}); other events on B: {others:?}; statements still waiting on the lock: {waiting}"
    );
    proxy.resume();
    let _ = first.await;
    assert!(slowest < Duration::from_millis(1_500), "{slowest:?}");
    assert_eq!(
        others.get("Handled").copied().unwrap_or(0),
        8,
        "B failed other events while one event's row was locked: {others:?}"
    );
}

// ---------------------------------------------------------------------------
// Pool exhaustion
// ---------------------------------------------------------------------------

/// A pool of 2 connections, 32 distinct events delivered at once, each with a
/// duplicate, handlers of 100 ms, retried until 200: nothing hangs past 30 s,
/// nothing is lost, every effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_under_32_concurrent_deliveries_loses_nothing_and_never_hangs() {
    let (server, direct) = setup().await;
    let store = store(pool_on(server.port(), "postgres", 2).await)
        .await
        .with_lease(Duration::from_secs(1));
    let handler = writer!(store, 0, |_: &str| Duration::from_millis(100));
    let endpoints = [endpoint(receiver(handler, store))];
    let seen = Seen::default();
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let (endpoints, seen, slowest) =
                (endpoints.clone(), Arc::clone(&seen), Arc::clone(&slowest));
            tokio::spawn(async move {
                let id = format!("evt_pool_{}", n % 32);
                let asked = Instant::now();
                let answer = endpoints[0](id.clone()).await;
                {
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(asked.elapsed());
                }
                seen.lock()
                    .unwrap()
                    .entry(id.clone())
                    .or_default()
                    .push(answer.outcome());
                if answer.status() != 200 {
                    until_ok(&endpoints, 0, &id, &seen, deadline).await;
                }
            })
        })
        .collect();
    join_all(tasks).await;
    let counts = effect_counts(&direct).await;
    eprintln!(
        "all 200 after {:?}; slowest first answer {:?}; outcomes {:?}",
        started.elapsed(),
        slowest.lock().unwrap(),
        histogram(&seen)
    );
    assert!(*slowest.lock().unwrap() < Duration::from_secs(30));
    for n in 0..32 {
        let id = format!("evt_pool_{n}");
        assert!(
            seen.lock().unwrap()[&id].iter().any(|o| o.status() == 200),
            "{id} never answered 200"
        );
        assert_eq!(counts.get(&id).copied(), Some(1), "{id}");
    }
}

// ---------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------

/// The sweep due at every claim (interval 0) while 200 events and their duplicates
/// are delivered and expired rows keep arriving: no live claim or done mark is
/// swept (every effect once, every duplicate after 200 is a duplicate), and sweeps
/// do not pile up on the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_at_every_claim_harms_no_live_row() {
    let (server, direct) = setup().await;
    let store = store(pool_on(server.port(), "postgres", 8).await)
        .await
        .with_lease(Duration::from_secs(1))
        .with_sweep_interval(Some(Duration::ZERO));
    let events = Tables::default().events();
    let handler = writer!(store, 0, |id: &str| Duration::from_millis(
        spread(id, 4) * 400
    ));
    let endpoints = [endpoint(receiver(handler, store))];
    // Expired rows keep arriving, so every sweep has work.
    let stop = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (pool, stop, events) = (direct.clone(), Arc::clone(&stop), events.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while stop.load(Ordering::Relaxed) == 0 {
                sqlx::query(&format!(
                    "INSERT INTO {events} SELECT 'old_{n}_' || g, 'x', g % 2 = 0, now() - interval '1 second' FROM generate_series(1, 2000) g"
                ))
                .execute(&pool)
                .await
                .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let sweeping = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (pool, stop, sweeping) = (direct.clone(), Arc::clone(&stop), Arc::clone(&sweeping));
        tokio::spawn(async move {
            while stop.load(Ordering::Relaxed) == 0 {
                let now: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DELETE FROM%SKIP LOCKED%' AND state = 'active'",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                sweeping.fetch_max(usize::try_from(now).unwrap(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let tasks: Vec<_> = (0..400)
        .map(|n| {
            let (endpoints, seen) = (endpoints.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(15 * (n / 2) as u64)).await;
                let id = format!("evt_sweep_{}", n / 2);
                until_ok(&endpoints, 0, &id, &seen, deadline).await;
                // A later duplicate in the window never runs the handler again.
                let again = endpoints[0](id.clone()).await;
                seen.lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .push(again.outcome());
                assert_ne!(again.outcome(), Outcome::Handled);
            })
        })
        .collect();
    let results = join_all(tasks).await;
    stop.store(1, Ordering::Relaxed);
    feeder.await.unwrap();
    watcher.await.unwrap();
    let counts = effect_counts(&direct).await;
    let answers = histogram(&seen);
    let total: usize = answers.values().sum();
    eprintln!(
        "outcomes {answers:?} ({}% answered 503 for want of a connection); most sweeps at once {}",
        answers.get("StoreUnavailable").copied().unwrap_or(0) * 100 / total.max(1),
        sweeping.load(Ordering::Relaxed)
    );
    for result in results {
        result.unwrap();
    }
    for n in 0..200 {
        assert_eq!(counts.get(&format!("evt_sweep_{n}")).copied(), Some(1));
    }
    assert!(
        sweeping.load(Ordering::Relaxed) <= 1,
        "{} sweeps ran at once, each holding a pooled connection",
        sweeping.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------
// Hostile event ids
// ---------------------------------------------------------------------------

/// Ids that are huge, hold a NUL, are SQL-ish, unicode, at the hashing limit, or
/// spell the stored form of a hashed id: each is its own event (handled once, then
/// a duplicate), and none is mistaken for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_are_each_their_own_event() {
    use sha2::Digest as _;
    let (_server, direct) = setup().await;
    let store = store(direct.clone()).await;
    let endpoint = endpoint(receiver(writer!(store, 0, |_: &str| Duration::ZERO), store));
    let long = format!("evt_{}", "x".repeat(300));
    let stored_form = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(long.as_bytes()))
    );
    let ids = [
        long.clone(),
        "evt_a\0b".to_owned(),
        "evt_'); DROP TABLE effects; --".to_owned(),
        "evt_é😀\u{202e}".to_owned(),
        format!("evt_{}", "y".repeat(252)),
        format!("evt_{}", "y".repeat(253)),
        "evt_%_\\".to_owned(),
        // A different id that is, byte for byte, how `long` is stored.
        stored_form,
    ];
    let mut wrong = Vec::new();
    for id in &ids {
        let first = endpoint(id.clone()).await.outcome();
        let second = endpoint(id.clone()).await.outcome();
        let n = effects(&direct, id).await;
        if (first, second, n) != (Outcome::Handled, Outcome::Duplicate, 1) {
            wrong.push((format!("{id:.40?}"), first, second, n));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

/// A database whose encoding is not UTF-8 (LATIN1, still met in older
/// installations) could not hold every event id (an id it cannot encode would be
/// answered 503 at every retry and never handled): the store refuses it when it
/// opens, with the encoding named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_utf8_is_refused_when_the_store_opens() {
    let server = PostgresServer::start();
    server.psql(
        "postgres",
        "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    let pool = pool_on(server.port(), "latin", 4).await;
    let error = PostgresStore::open(pool, &Tables::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PostgresError::Encoding { encoding } if encoding == "LATIN1"),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// Several services (different prefixes) migrating into one new schema at once, as
/// replicas of each start together: every migration succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_with_other_prefixes_into_a_new_schema_all_succeed() {
    let server = PostgresServer::start();
    let mut failures = Vec::new();
    for round in 0..5 {
        let pool = pool_on(server.port(), "postgres", 12).await;
        let schema = format!("fresh_{round}");
        let tables: Vec<Tables> = (0..8)
            .map(|n| {
                Tables::default()
                    .with_schema(schema.clone())
                    .unwrap()
                    .with_prefix(format!("svc{n}_"))
                    .unwrap()
            })
            .collect();
        let results = join_all(tables.iter().map(|t| migrate(&pool, t))).await;
        for result in results {
            if let Err(error) = result {
                let source = std::error::Error::source(&error).map(ToString::to_string);
                failures.push(format!("{schema}: {error} ({source:?})"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

/// Schema names PostgreSQL reserves are refused by `Tables`, like any unsafe name
/// (what `migrate` then does with each is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_schema_names_are_refused() {
    let server = PostgresServer::start();
    let pool = pool_on(server.port(), "postgres", 2).await;
    let mut accepted = Vec::new();
    for name in ["pg_catalog", "pg_toast", "information_schema", "pg_temp"] {
        if let Ok(tables) = Tables::default().with_schema(name) {
            let migrated = migrate(&pool, &tables).await.map_err(|e| {
                std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string)
            });
            accepted.push((name, migrated));
        }
    }
    assert!(accepted.is_empty(), "accepted, then migrate: {accepted:?}");
}

/// The longest names `Tables` accepts work end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_accepted_names_work() {
    let server = PostgresServer::start();
    let pool = pool_on(server.port(), "postgres", 4).await;
    let tables = Tables::default()
        .with_schema("s".repeat(63))
        .unwrap()
        .with_prefix("p".repeat(40))
        .unwrap();
    let store = PostgresStore::open(pool, &tables).await.unwrap();
    let Claim::Claimed(token) = store.claim("evt_long_names").await.unwrap() else {
        panic!("claimed")
    };
    store
        .complete("evt_long_names", &token, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.claim("evt_long_names").await.unwrap(), Claim::Done);
}

// ---------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------

/// `synchronous_commit = off`, then PostgreSQL crashes right after 40 events were
/// answered 200. The guide says the lost commits lose "the handler's writes and the
/// done mark together, so they still agree: those events run again on NotMeta's
/// retry". But NotMeta does not retry an event answered 200: such an event has no
/// effect at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synchronous_commit_off_an_event_answered_200_keeps_its_effect() {
    let mut server = PostgresServer::start_with(&[
        ("synchronous_commit", "off"),
        ("wal_writer_delay", "10000ms"),
        ("wal_writer_flush_after", "0"),
    ]);
    let port = server.port();
    {
        let pool = pool_on(port, "postgres", 4).await;
        effects_tables(&pool).await;
        let store = store(pool.clone()).await;
        // Make the tables durable before the test proper.
        sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
        let endpoint = endpoint(receiver(writer!(store, 0, |_: &str| Duration::ZERO), store));
        for n in 0..40 {
            let answer = endpoint(format!("evt_async_{n}")).await;
            assert_eq!(answer.status(), 200);
        }
        pool.close().await;
    }
    tokio::task::block_in_place(|| {
        server.stop_immediate();
        server.restart();
    });
    let pool = pool_on(port, "postgres", 2).await;
    let counts = effect_counts(&pool).await;
    let lost: Vec<String> = (0..40)
        .map(|n| format!("evt_async_{n}"))
        .filter(|id| counts.get(id).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of 40 events answered 200 have no effect after the crash: {lost:?}",
        lost.len()
    );
}

// ---------------------------------------------------------------------------
// Handlers that step outside the transaction
// ---------------------------------------------------------------------------

/// A handler runs `COMMIT` itself, then fails temporarily (or runs `ROLLBACK`, then
/// succeeds). The receiver notices that the transaction it began is no longer the
/// one open (`TransactionEnded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ends_the_transaction_itself_is_not_trusted() {
    let (_server, direct) = setup().await;
    let store = store(direct.clone()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = store.transactional({
        let runs = Arc::clone(&runs);
        move |event: Event<'static>, tx| {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let id = event.id.as_str();
                sqlx::query("INSERT INTO effects (event_id, replica) VALUES ($1, 0)")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                if id == "evt_commits" {
                    sqlx::query("COMMIT").execute(&mut *tx).await.unwrap();
                    if run == 0 {
                        return Err(HandlerError::temporary("failed after its own COMMIT"));
                    }
                } else {
                    sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
                }
                Ok(())
            })
        }
    });
    let endpoint = endpoint(receiver(handler, store));
    let mut answers = Vec::new();
    for id in ["evt_commits", "evt_commits", "evt_rolls_back"] {
        let answer = endpoint(id.to_owned()).await;
        answers.push((id, answer.outcome(), effects(&direct, id).await));
    }
    // Caught: recorded as done and answered 400, so the writes its own COMMIT kept
    // are not repeated (the retry is a duplicate), and nothing is claimed done with
    // writes rolled back behind it.
    assert_eq!(
        answers,
        [
            ("evt_commits", Outcome::PermanentFailure, 1),
            ("evt_commits", Outcome::Duplicate, 1),
            ("evt_rolls_back", Outcome::PermanentFailure, 0),
        ]
    );
}

/// A handler that returns `Ok` without touching its connection: the event is done
/// (a duplicate is answered 200) and the connection goes back to the pool clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_its_transaction_still_records_done() {
    let server = PostgresServer::start();
    let pool = pool_on(server.port(), "postgres", 1).await;
    let store = store(pool.clone()).await;
    let endpoint = endpoint(receiver(
        store.transactional(|_event: Event<'static>, _tx| Box::pin(async { Ok(()) })),
        store,
    ));
    for n in 0..20 {
        let id = format!("evt_untouched_{n}");
        assert_eq!(endpoint(id.clone()).await.outcome(), Outcome::Handled);
        assert_eq!(endpoint(id).await.outcome(), Outcome::Duplicate);
    }
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 0);
}

// ---------------------------------------------------------------------------
// A runtime shut down mid-delivery
// ---------------------------------------------------------------------------

/// A receiver's runtime shuts down while transactional handlers are inside their
/// transactions (isolated and not): nothing they wrote commits, and after the lease
/// NotMeta's retry (on a live replica) runs each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_shut_down_mid_delivery_commits_nothing_and_the_retry_runs_once() {
    let (server, direct) = setup().await;
    let port = server.port();
    let ids: Vec<String> = (0..8).map(|n| format!("evt_shutdown_{n}")).collect();
    let doomed_ids = ids.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = store(pool_on(port, "postgres", 10).await)
                .await
                .with_lease(Duration::from_secs(1));
            let isolated = endpoint(receiver(
                writer!(store, 7, |_: &str| Duration::from_secs(5)),
                store.clone(),
            ));
            let inline = endpoint(
                receiver(writer!(store, 7, |_: &str| Duration::from_secs(5)), store)
                    .with_handler_isolation(false),
            );
            for (n, id) in doomed_ids.into_iter().enumerate() {
                let endpoint = if n % 2 == 0 { &isolated } else { &inline };
                tokio::spawn(endpoint(id));
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        });
        runtime.shutdown_timeout(Duration::ZERO);
    })
    .join()
    .unwrap();
    let store = store(direct.clone()).await;
    let endpoints = [endpoint(receiver(
        writer!(store, 1, |_: &str| Duration::ZERO),
        store,
    ))];
    let seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    join_all(
        ids.iter()
            .map(|id| until_ok(&endpoints, 0, id, &seen, deadline)),
    )
    .await;
    let counts: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT event_id, replica, count(*) FROM effects GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&direct)
    .await
    .unwrap();
    assert_eq!(counts.len(), ids.len(), "{counts:?}");
    assert!(
        counts
            .iter()
            .all(|(_, replica, n)| *replica == 1 && *n == 1),
        "{counts:?}"
    );
}

// ---------------------------------------------------------------------------
// Slow handlers and takeovers
// ---------------------------------------------------------------------------

/// Two replicas with a lease of 1 s whose handlers block their thread for 2.5 s
/// (isolation off: the renewal stalls with them, and the lease lapses), 12 events
/// each sent to both replicas 1.2 s apart and retried until 200: the second
/// replica takes the lapsed claims over while the first handler still runs, and
/// exactly one of the two commits. Then the same with isolation on (renewed: the
/// second replica never runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_handlers_past_the_lease_on_two_replicas_commit_once() {
    let (server, direct) = setup().await;
    for isolate in [false, true] {
        let mut endpoints = Vec::new();
        for replica in 0..2 {
            let store = store(pool_on(server.port(), "postgres", 16).await)
                .await
                .with_lease(Duration::from_secs(1));
            let handler = store.transactional(move |event: Event<'static>, tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO effects (event_id, replica) VALUES ($1, $2)")
                        .bind(event.id.as_str())
                        .bind(replica)
                        .execute(&mut *tx)
                        .await
                        .map_err(HandlerError::temporary)?;
                    std::thread::sleep(Duration::from_millis(2_500));
                    Ok::<(), HandlerError>(())
                })
            });
            endpoints.push(endpoint(
                receiver(handler, store)
                    .with_handler_isolation(isolate)
                    .with_handler_timeout(Duration::from_secs(10)),
            ));
        }
        let seen = Seen::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ids: Vec<String> = (0..12).map(|n| format!("evt_slow_{isolate}_{n}")).collect();
        let tasks: Vec<_> = ids
            .iter()
            .flat_map(|id| {
                (0..2).map({
                    let (endpoints, seen) = (endpoints.clone(), Arc::clone(&seen));
                    move |replica| {
                        let (endpoints, seen, id) =
                            (endpoints.clone(), Arc::clone(&seen), id.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(1_200 * replica as u64)).await;
                            until_ok(&endpoints, replica, &id, &seen, deadline).await;
                        })
                    }
                })
            })
            .collect();
        join_all(tasks).await;
        let runs: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_id, count(*) FROM effects WHERE event_id LIKE $1 GROUP BY 1",
        )
        .bind(format!("evt_slow_{isolate}_%"))
        .fetch_all(&direct)
        .await
        .unwrap();
        eprintln!("isolation {isolate}: outcomes {:?}", histogram(&seen));
        assert_eq!(runs.len(), ids.len(), "isolation {isolate}: {runs:?}");
        assert!(
            runs.iter().all(|(_, n)| *n == 1),
            "isolation {isolate}: {runs:?}"
        );
    }
}

/// 100 events, each delivered 8 times at once across two replicas, with handlers
/// that return at once, so duplicates arrive while the done mark commits: for each
/// event one `Handled`, the rest duplicates or in progress, one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_racing_the_done_mark_never_run_twice() {
    let (server, direct) = setup().await;
    let mut endpoints = Vec::new();
    for replica in 0..2 {
        let store = store(pool_on(server.port(), "postgres", 12).await).await;
        endpoints.push(endpoint(
            receiver(writer!(store, replica, |_: &str| Duration::ZERO), store)
                .with_handler_isolation(replica == 0),
        ));
    }
    let mut wrong = Vec::new();
    for n in 0..100 {
        let id = format!("evt_race_{n}");
        let answers = join_all((0..8).map(|k| {
            let (endpoint, id) = (Arc::clone(&endpoints[k % 2]), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(700 * k as u64)).await;
                endpoint(id).await.outcome()
            })
        }))
        .await;
        let outcomes: Vec<Outcome> = answers.into_iter().map(Result::unwrap).collect();
        let handled = outcomes.iter().filter(|o| **o == Outcome::Handled).count();
        let effects = effects(&direct, &id).await;
        let odd = outcomes.iter().any(|o| {
            !matches!(
                o,
                Outcome::Handled | Outcome::Duplicate | Outcome::InProgress
            )
        });
        if handled > 1 || effects > 1 || (handled == 1) != (effects == 1) || odd {
            wrong.push((id, outcomes, effects));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

// ---------------------------------------------------------------------------
// Isolation levels
// ---------------------------------------------------------------------------

/// A database whose default isolation is `repeatable read` (or `serializable`), as
/// some services set it: a transactional handler that outlives one renewal of its
/// lease (every third of it) must still commit. What happens: the renewal updates
/// the event's row after the transaction's snapshot was taken, so the done mark's
/// update fails with a serialization error ("could not serialize access due to
/// concurrent update"), the delivery is answered 503, and so is every retry: the
/// event is never handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_defaulting_to_repeatable_read_still_completes_long_handlers() {
    let server = PostgresServer::start();
    let mut outcomes = BTreeMap::new();
    for level in ["repeatable read", "serializable"] {
        let database = format!("db_{}", level.replace(' ', "_"));
        server.create_database(&database);
        server.psql(
            "postgres",
            &format!("ALTER DATABASE {database} SET default_transaction_isolation = '{level}'"),
        );
        let pool = pool_on(server.port(), &database, 8).await;
        effects_tables(&pool).await;
        let store = store(pool.clone()).await.with_lease(Duration::from_secs(1));
        // 800 ms: past one renewal (every 333 ms), well within the lease and the
        // time limit.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let endpoint = endpoint(
            receiver(
                writer!(store, 0, |_: &str| Duration::from_millis(800)),
                store,
            )
            .on_outcome({
                let errors = Arc::clone(&errors);
                move |report| {
                    if let Some(error) = report.handler_error {
                        let mut chain = error.to_string();
                        let mut source = std::error::Error::source(error);
                        while let Some(cause) = source {
                            chain.push_str(&format!(": {cause}"));
                            source = cause.source();
                        }
                        errors.lock().unwrap().push(chain);
                    }
                }
            }),
        );
        let id = format!("evt_{database}");
        let mut answers = Vec::new();
        for _ in 0..3 {
            let answer = endpoint(id.clone()).await;
            answers.push(answer.outcome());
            if answer.status() == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
        eprintln!("{level}: {:?}", errors.lock().unwrap());
        outcomes.insert(level, (answers, effects(&pool, &id).await));
    }
    assert!(
        outcomes
            .values()
            .all(|(answers, n)| answers.contains(&Outcome::Handled) && *n == 1),
        "{outcomes:?}"
    );
}

/// A handler that swallows a failed statement (its transaction is then aborted) and
/// returns `Ok`: the done mark cannot be written in the aborted transaction, so the
/// delivery is answered 503 with nothing committed, never 200 without its effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_swallows_a_failed_statement_is_never_answered_200() {
    let (_server, direct) = setup().await;
    let store = store(direct.clone()).await;
    let handler = store.transactional(|event: Event<'static>, tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO effects (event_id, replica) VALUES ($1, 0)")
                .bind(event.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            // Fails (no such table); the error is ignored.
            let _ = sqlx::query("INSERT INTO no_such_table VALUES (1)")
                .execute(&mut *tx)
                .await;
            Ok::<(), HandlerError>(())
        })
    });
    let endpoint = endpoint(receiver(handler, store));
    for _ in 0..3 {
        let answer = endpoint("evt_swallowed".to_owned()).await;
        assert_eq!(answer.outcome(), Outcome::TemporaryFailure);
        assert_eq!(effects(&direct, "evt_swallowed").await, 0);
    }
}
