//! The PostgreSQL store and transactional handlers, against a real PostgreSQL server
//! each test starts for itself (as an unprivileged user when the tests run as root).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use notmeta_test_support::PostgresServer;
use notmeta_webhooks::dedup::{Claim, ClaimToken, IdempotencyStore, Settled};
use notmeta_webhooks::postgres::{
    PostgresError, PostgresStore, SCHEMA_VERSION, Tables, Transactional, migrate,
};
use notmeta_webhooks::receiver::{Answer, Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};
use sqlx::PgPool;

mod common;
use common::postgres::pool;

const SECRET: &str = "whsec_postgres_test";

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

async fn deliver<H: Handler, S: IdempotencyStore>(receiver: &Receiver<H, S>, id: &str) -> Answer {
    let body = body(id);
    let header = sign(&body, SECRET);
    receiver.receive(&body, [header.as_bytes()]).await
}

/// A server, a pool on it, and the store's tables with an `effects` table beside
/// them for the handlers' writes.
async fn setup() -> (PostgresServer, PgPool) {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    sqlx::query("CREATE TABLE effects (event_id text NOT NULL, at timestamptz DEFAULT now())")
        .execute(&pool)
        .await
        .unwrap();
    (server, pool)
}

async fn effects(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What the transactional handler does for an event, after writing its effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Succeed,
    FailTemporarily,
    FailPermanently,
    Panic,
    Sleep(Duration),
}

type Plan = Arc<Mutex<HashMap<String, Then>>>;

/// A handler that writes one `effects` row through the transaction, then does what
/// the plan says for the event (succeed by default).
fn writer(
    store: &PostgresStore,
    plan: &Plan,
) -> Transactional<
    impl for<'t> Fn(
        Event<'static>,
        &'t mut sqlx::PgConnection,
    ) -> futures_util::future::BoxFuture<'t, Result<(), HandlerError>>
    + Send
    + Sync
    + 'static,
> {
    let plan = Arc::clone(plan);
    store.transactional(move |event: Event<'static>, tx| {
        let then = plan
            .lock()
            .unwrap()
            .get(event.id.as_str())
            .copied()
            .unwrap_or(Then::Succeed);
        Box::pin(async move {
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                .bind(event.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            match then {
                Then::Succeed => Ok(()),
                Then::FailTemporarily => Err(HandlerError::temporary("downstream down")),
                Then::FailPermanently => Err(HandlerError::permanent("no such thing")),
                Then::Panic => panic!("the handler panicked"),
                Then::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            }
        })
    })
}

fn receiver<H: Handler>(handler: H, store: PostgresStore) -> Receiver<H, PostgresStore> {
    Receiver::new(Verifier::new(SECRET).unwrap(), handler).with_store(store)
}

async fn store(pool: &PgPool) -> PostgresStore {
    PostgresStore::open(pool.clone(), &Tables::default())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// The store's protocol
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_complete_release_and_renew_check_the_token() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let Claim::Claimed(token) = store.claim("evt_a").await.unwrap() else {
        panic!("the first claim must win")
    };
    assert_eq!(store.claim("evt_a").await.unwrap(), Claim::InProgress);
    let stranger = ClaimToken::new();
    assert_eq!(
        store.renew("evt_a", &stranger).await.unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(
        store
            .complete("evt_a", &stranger, Duration::from_secs(60))
            .await
            .unwrap(),
        Settled::LeaseLost
    );
    store.release("evt_a", &stranger).await.unwrap();
    assert_eq!(store.claim("evt_a").await.unwrap(), Claim::InProgress);
    assert_eq!(
        store.renew("evt_a", &token).await.unwrap(),
        Settled::Recorded
    );
    // Released by its holder: claimable again.
    store.release("evt_a", &token).await.unwrap();
    let Claim::Claimed(token) = store.claim("evt_a").await.unwrap() else {
        panic!("a released id is claimable")
    };
    let window = Duration::from_secs(60);
    assert_eq!(
        store.complete("evt_a", &token, window).await.unwrap(),
        Settled::Recorded
    );
    // The same completion again (its first answer lost) is recognised as applied.
    assert_eq!(
        store.complete("evt_a", &token, window).await.unwrap(),
        Settled::Recorded
    );
    assert_eq!(store.claim("evt_a").await.unwrap(), Claim::Done);
    // A done mark is never released, nor renewed into a claim.
    store.release("evt_a", &token).await.unwrap();
    assert_eq!(store.claim("evt_a").await.unwrap(), Claim::Done);
    // Completing a free id records it.
    let free = ClaimToken::new();
    assert_eq!(
        store.complete("evt_b", &free, window).await.unwrap(),
        Settled::Recorded
    );
    assert_eq!(store.claim("evt_b").await.unwrap(), Claim::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_claim_is_taken_over_and_its_old_holder_changes_nothing() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await.with_lease(Duration::from_secs(1));
    let Claim::Claimed(old) = store.claim("evt_l").await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let Claim::Claimed(new) = store.claim("evt_l").await.unwrap() else {
        panic!("a lapsed claim is taken over")
    };
    assert_ne!(old, new);
    assert_eq!(
        store.renew("evt_l", &old).await.unwrap(),
        Settled::LeaseLost
    );
    let window = Duration::from_secs(60);
    assert_eq!(
        store.complete("evt_l", &old, window).await.unwrap(),
        Settled::LeaseLost
    );
    store.release("evt_l", &old).await.unwrap();
    assert_eq!(store.claim("evt_l").await.unwrap(), Claim::InProgress);
    assert_eq!(
        store.complete("evt_l", &new, window).await.unwrap(),
        Settled::Recorded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_mark_lasts_its_window_and_the_sweep_removes_only_expired_rows() {
    let (_server, pool) = setup().await;
    let store = store(&pool)
        .await
        .with_lease(Duration::from_secs(1))
        .with_sweep_interval(None);
    for id in ["short", "long"] {
        let Claim::Claimed(token) = store.claim(id).await.unwrap() else {
            panic!()
        };
        let window = if id == "short" { 1 } else { 3600 };
        store
            .complete(id, &token, Duration::from_secs(window))
            .await
            .unwrap();
    }
    let Claim::Claimed(_live) = store.claim("claimed").await.unwrap() else {
        panic!()
    };
    assert_eq!(store.claim("short").await.unwrap(), Claim::Done);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // "short"'s window and "claimed"'s lease have ended; "long" is still done.
    assert_eq!(store.sweep().await.unwrap(), 2);
    assert_eq!(store.sweep().await.unwrap(), 0);
    let rows: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT event_id FROM {} ORDER BY event_id",
        Tables::default().events()
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows, ["long"]);
    assert_eq!(store.claim("long").await.unwrap(), Claim::Done);
    assert!(matches!(
        store.claim("short").await.unwrap(),
        Claim::Claimed(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_sweeps_by_itself_once_per_interval() {
    let (_server, pool) = setup().await;
    let store = store(&pool)
        .await
        .with_sweep_interval(Some(Duration::from_secs(1)));
    let events = Tables::default().events();
    sqlx::query(&format!(
        "INSERT INTO {events} SELECT 'old_' || n, 'x', true, now() - interval '1 hour' FROM generate_series(1, 12000) n"
    ))
    .execute(&pool)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // A claim starts the sweep in the background; 12,000 rows take three batches.
    assert!(matches!(
        store.claim("new").await.unwrap(),
        Claim::Claimed(_)
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {events}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} rows left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_and_ids_with_nul_are_kept_apart() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let long_a = format!("{}a", "x".repeat(10_000));
    let long_b = format!("{}b", "x".repeat(10_000));
    for id in [long_a.as_str(), long_b.as_str(), "a\0b", "a\0c", "é😀"] {
        let Claim::Claimed(token) = store.claim(id).await.unwrap() else {
            panic!("{id:.20?} is new")
        };
        store
            .complete(id, &token, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.claim(id).await.unwrap(), Claim::Done);
    }
}

// ---------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_idempotent_safe_at_once_and_refuses_a_newer_schema() {
    let (_server, pool) = setup().await;
    let tables = Tables::default()
        .with_schema("hooks")
        .unwrap()
        .with_prefix("nm_")
        .unwrap();
    // Eight replicas starting at once.
    let results = join_all((0..8).map(|_| migrate(&pool, &tables))).await;
    for result in results {
        result.unwrap();
    }
    migrate(&pool, &tables).await.unwrap();
    let version: i32 =
        sqlx::query_scalar(&format!("SELECT version FROM {}", tables.schema_version()))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let store = PostgresStore::new(pool.clone(), &tables);
    assert!(matches!(
        store.claim("evt").await.unwrap(),
        Claim::Claimed(_)
    ));
    // Not in the default place.
    let default_table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(Tables::default().events())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(default_table, None);

    sqlx::query(&format!(
        "UPDATE {} SET version = 99",
        tables.schema_version()
    ))
    .execute(&pool)
    .await
    .unwrap();
    let error = PostgresStore::open(pool.clone(), &tables)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PostgresError::SchemaTooNew {
                stored: 99,
                supported: SCHEMA_VERSION
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_script_makes_the_same_tables() {
    let (_server, pool) = setup().await;
    let tables = Tables::default().with_prefix("by_hand_").unwrap();
    sqlx::raw_sql(&tables.sql()).execute(&pool).await.unwrap();
    // migrate finds the version and changes nothing.
    migrate(&pool, &tables).await.unwrap();
    let store = PostgresStore::new(pool.clone(), &tables);
    let Claim::Claimed(token) = store.claim("evt").await.unwrap() else {
        panic!()
    };
    store
        .complete("evt", &token, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.claim("evt").await.unwrap(), Claim::Done);
}

// ---------------------------------------------------------------------------
// Transactional handlers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_duplicates_take_effect_once() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let plan = Plan::default();
    let receiver = Arc::new(receiver(writer(&store, &plan), store));
    for round in 0..5 {
        let id = format!("evt_dup_{round}");
        let answers = join_all((0..16).map(|_| {
            let (receiver, id) = (Arc::clone(&receiver), id.clone());
            tokio::spawn(async move { deliver(&receiver, &id).await.outcome() })
        }))
        .await;
        let outcomes: Vec<Outcome> = answers.into_iter().map(Result::unwrap).collect();
        let handled = outcomes.iter().filter(|o| **o == Outcome::Handled).count();
        assert_eq!(handled, 1, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                Outcome::Handled | Outcome::Duplicate | Outcome::InProgress
            )),
            "{outcomes:?}"
        );
        assert_eq!(effects(&pool, &id).await, 1);
        assert_eq!(deliver(&receiver, &id).await.outcome(), Outcome::Duplicate);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_panicking_or_late_handler_commits_nothing_and_the_retry_runs() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let plan = Plan::default();
    let receiver =
        receiver(writer(&store, &plan), store).with_handler_timeout(Duration::from_millis(300));
    let cases = [
        (
            "evt_temporary",
            Then::FailTemporarily,
            Outcome::TemporaryFailure,
        ),
        ("evt_panic", Then::Panic, Outcome::Panicked),
        (
            "evt_late",
            Then::Sleep(Duration::from_secs(5)),
            Outcome::TimedOut,
        ),
    ];
    for (id, then, expected) in cases {
        plan.lock().unwrap().insert(id.to_owned(), then);
        let answer = deliver(&receiver, id).await;
        assert_eq!(answer.outcome(), expected, "{id}");
        // Retried by NotMeta: 503, or 500 after a panic.
        assert!(answer.status().is_server_error(), "{id}");
        assert_eq!(effects(&pool, id).await, 0, "{id}: rolled back");
        // NotMeta's retry runs the handler again, and this time it succeeds.
        plan.lock().unwrap().insert(id.to_owned(), Then::Succeed);
        let answer = deliver(&receiver, id).await;
        assert_eq!(answer.outcome(), Outcome::Handled, "{id}");
        assert_eq!(effects(&pool, id).await, 1, "{id}");
        assert_eq!(deliver(&receiver, id).await.outcome(), Outcome::Duplicate);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_done_without_its_writes() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let plan = Plan::default();
    plan.lock()
        .unwrap()
        .insert("evt_p".to_owned(), Then::FailPermanently);
    let receiver = receiver(writer(&store, &plan), store);
    let answer = deliver(&receiver, "evt_p").await;
    assert_eq!(answer.outcome(), Outcome::PermanentFailure);
    assert_eq!(effects(&pool, "evt_p").await, 0);
    assert_eq!(
        deliver(&receiver, "evt_p").await.outcome(),
        Outcome::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_during_the_open_transaction_is_answered_503_at_once() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let plan = Plan::default();
    plan.lock()
        .unwrap()
        .insert("evt_slow".to_owned(), Then::Sleep(Duration::from_secs(3)));
    let receiver = Arc::new(receiver(writer(&store, &plan), store));
    let first = tokio::spawn({
        let receiver = Arc::clone(&receiver);
        async move { deliver(&receiver, "evt_slow").await.outcome() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let answer = deliver(&receiver, "evt_slow").await;
    assert_eq!(answer.outcome(), Outcome::InProgress);
    assert_eq!(answer.status(), 503);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(first.await.unwrap(), Outcome::Handled);
    assert_eq!(effects(&pool, "evt_slow").await, 1);
    assert_eq!(
        deliver(&receiver, "evt_slow").await.outcome(),
        Outcome::Duplicate
    );
}

/// The delivery's claim is taken over while its handler runs (as when its lease
/// lapsed and another replica claimed the event): its done mark finds another
/// token, and nothing it wrote is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_claim_was_taken_over_commits_nothing() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    let events = Tables::default().events();
    let handler = store.transactional({
        let pool = pool.clone();
        move |event: Event<'static>, tx| {
            let (pool, events) = (pool.clone(), events.clone());
            Box::pin(async move {
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                // Another replica takes the claim over, on its own connection.
                sqlx::query(&format!(
                    "UPDATE {events} SET token = 'another', expires_at = now() + interval '1 hour' WHERE event_id = $1"
                ))
                .bind(event.id.as_str())
                .execute(&pool)
                .await
                .unwrap();
                Ok(())
            })
        }
    });
    let receiver = receiver(handler, store);
    let answer = deliver(&receiver, "evt_taken").await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.outcome(), Outcome::TemporaryFailure);
    assert_eq!(effects(&pool, "evt_taken").await, 0);
}

/// A connection cut while the handler's transaction is open: the commit fails, the
/// delivery is answered 503, nothing was committed, and the retry runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_transaction_commits_nothing() {
    let (server, pool) = setup().await;
    let store = store(&pool).await;
    let plan = Plan::default();
    plan.lock()
        .unwrap()
        .insert("evt_cut".to_owned(), Then::Sleep(Duration::from_secs(1)));
    let receiver = Arc::new(receiver(writer(&store, &plan), store));
    let first = tokio::spawn({
        let receiver = Arc::clone(&receiver);
        async move { deliver(&receiver, "evt_cut").await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate_backends();
    let answer = first.await.unwrap();
    assert_eq!(answer.status(), 503, "{:?}", answer.outcome());
    assert_eq!(effects(&pool, "evt_cut").await, 0);
    // The claim was given back (or lapses with its lease): the retry runs.
    plan.lock()
        .unwrap()
        .insert("evt_cut".to_owned(), Then::Succeed);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = deliver(&receiver, "evt_cut").await;
        if answer.outcome() == Outcome::Handled {
            break;
        }
        assert_eq!(answer.status(), 503);
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(effects(&pool, "evt_cut").await, 1);
}

/// PostgreSQL stopped (`pg_ctl -m immediate`) and started again while events are
/// delivered and retried as NotMeta does: 503s meanwhile, then every event is
/// answered 200, and each has its effect exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_flow_keeps_every_effect_once() {
    let (mut server, pool) = setup().await;
    let store = store(&pool).await.with_lease(Duration::from_secs(2));
    let plan = Plan::default();
    let receiver = Arc::new(receiver(writer(&store, &plan), store));
    let events: Vec<String> = (0..200).map(|n| format!("evt_flow_{n}")).collect();
    let unavailable = Arc::new(Mutex::new(0usize));
    let senders = events.chunks(25).map(|chunk| {
        let (receiver, chunk, unavailable) = (
            Arc::clone(&receiver),
            chunk.to_vec(),
            Arc::clone(&unavailable),
        );
        tokio::spawn(async move {
            for id in chunk {
                // Retried until answered 200, as NotMeta would (faster).
                loop {
                    let answer = deliver(&receiver, &id).await;
                    if answer.status() == 200 {
                        break;
                    }
                    assert_eq!(answer.status(), 503, "{id}: {:?}", answer.outcome());
                    *unavailable.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    });
    let senders: Vec<_> = senders.collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop_immediate();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    tokio::time::timeout(Duration::from_secs(120), join_all(senders))
        .await
        .expect("every event answered 200 in time");
    assert!(*unavailable.lock().unwrap() > 0, "the outage was seen");
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM effects GROUP BY event_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(counts.len(), events.len());
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
}

// ---------------------------------------------------------------------------
// A receiver process killed mid-delivery
// ---------------------------------------------------------------------------

/// Set in the child process: the database URL and where to stop.
const CHILD: &str = "NOTMETA_POSTGRES_CHILD";

/// The receiver process the crash tests kill: it delivers one event through a
/// transactional handler, printing `written` once the handler's write is made
/// (then, with `before-commit`, waits forever inside the transaction), and
/// `outcome` when the delivery has been settled (then, with `before-answer`,
/// waits forever before answering).
#[test]
#[ignore = "the receiver process the crash tests start and kill"]
fn receiver_process() {
    let Ok(setting) = std::env::var(CHILD) else {
        return;
    };
    let (url, stop) = setting.split_once(' ').unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = stop.to_owned();
    runtime.block_on(async move {
        let pool = pool(url).await;
        let store = store(&pool).await.with_lease(Duration::from_secs(1));
        let stop_in_tx = stop == "before-commit";
        let handler = store.transactional(move |event: Event<'static>, tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::temporary)?;
                println!("written");
                if stop_in_tx {
                    std::future::pending::<()>().await;
                }
                Ok(())
            })
        });
        let stop_before_answer = stop == "before-answer";
        let receiver = receiver(handler, store).on_outcome(move |_| {
            println!("outcome");
            if stop_before_answer {
                std::thread::sleep(Duration::from_secs(3600));
            }
        });
        let answer = deliver(&receiver, "evt_crash").await;
        println!("answered {}", answer.status());
    });
}

/// Runs [`receiver_process`] in a child process until it prints `until`, then kills
/// it (SIGKILL).
fn kill_child_at(url: &str, stop: &str, until: &str) {
    common::postgres::kill_child_at(
        "receiver_process",
        CHILD,
        &format!("{url} {stop}"),
        until,
        Some("answered"),
    );
}

/// Killed after the handler's write and before the commit: nothing persisted, and
/// NotMeta's redelivery (after the dead process's lease) runs the handler once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_commit_nothing_persists_and_the_redelivery_runs_once() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await.with_lease(Duration::from_secs(1));
    kill_child_at(&_server.url(), "before-commit", "written");
    assert_eq!(effects(&pool, "evt_crash").await, 0);
    let plan = Plan::default();
    let receiver = receiver(writer(&store, &plan), store);
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = deliver(&receiver, "evt_crash").await;
        if answer.outcome() != Outcome::InProgress {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the dead process's claim never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer.outcome(), Outcome::Handled);
    assert_eq!(effects(&pool, "evt_crash").await, 1);
    assert_eq!(
        deliver(&receiver, "evt_crash").await.outcome(),
        Outcome::Duplicate
    );
}

/// Killed after the commit and before the answer: NotMeta retries (it got no
/// answer), and the redelivery is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_commit_the_redelivery_is_a_duplicate() {
    let (_server, pool) = setup().await;
    let store = store(&pool).await;
    kill_child_at(&_server.url(), "before-answer", "outcome");
    assert_eq!(effects(&pool, "evt_crash").await, 1);
    let plan = Plan::default();
    let receiver = receiver(writer(&store, &plan), store);
    assert_eq!(
        deliver(&receiver, "evt_crash").await.outcome(),
        Outcome::Duplicate
    );
    assert_eq!(effects(&pool, "evt_crash").await, 1);
}
