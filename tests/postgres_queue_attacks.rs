//! Attacks on the queue in PostgreSQL (`Queue::postgres`) against a real server:
//! crashes between the handler's commit and the entry's removal, the dedup window
//! ending while an entry waits, and a worker stalled past its lease. A failing test
//! is a broken promise; its doc comment says what happens instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use notmeta_test_support::PostgresServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::Event;
use notmeta_webhooks::postgres::{PostgresStore, Tables};
use notmeta_webhooks::queue::{Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::{Handler, HandlerError};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

mod common;
use common::pg_queue::{
    TxFn, drained, effects, execute, pool, run_until, scalar, send_at_once, setup, writer,
};
use common::queue::{body, enqueuer, send};

/// Waits (at most 10 s) until `sql` counts at least `n`.
async fn wait_for_count(pool: &PgPool, sql: &str, n: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(pool, sql).await < n {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `worker` in a task: the sender that stops it, and its stats.
fn started<H: Handler>(
    worker: Worker<H>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<WorkerStats>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    (stop, running)
}

/// Waits (at most `limit`; failed counts are tried again) until nothing waits,
/// runs or retries, then stops the `workers`: their stats.
async fn drain_then_stop(
    queue: &Queue,
    limit: Duration,
    stop: &tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<WorkerStats>>,
) -> Vec<WorkerStats> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(counts) = queue.counts().await
            && counts.pending + counts.in_progress + counts.retrying == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let mut stats = Vec::new();
    for worker in workers {
        stats.push(worker.await.unwrap());
    }
    stats
}

/// A proxy to `server`, a pool through it, and the queue on that pool.
async fn through_proxy(server: &PostgresServer) -> (Proxy, PgPool, Queue) {
    let proxy = Proxy::start(server.port()).await;
    let proxied = server.url().replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", proxy.port()),
    );
    let pool = pool(&proxied).await;
    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap();
    (proxy, pool, queue)
}

const RUNNING: &str = "SELECT count(*) FROM notmeta_webhooks_jobs WHERE state = 'running'";

/// Finding: the done mark a transactional run committed is swept once its dedup
/// window ends even though the run's entry is still in the jobs table (the worker
/// died between the handler's commit and the entry's deletion, and no worker
/// reclaimed it within the window). The reclaiming worker then finds no done mark,
/// runs the handler again and commits the effect a second time: 2 effects for one
/// event answered 200. The guide promises "a crash at any point leaves either both
/// or neither: effects in that database happen exactly once".
///
/// The crash is a worker whose runtime is shut down while the deletion of its
/// entry is refused by a trigger (as if the process died right after the commit);
/// the window is the shortest allowed (1 s) so the test needs no hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_mark_outlives_its_entry_whatever_the_window() {
    let server = PostgresServer::start();
    let url = server.url();
    let main = pool(&url).await;
    execute(&main, "CREATE TABLE effects (event_id text NOT NULL)").await;
    let queue = Queue::postgres(main.clone(), &Tables::default())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1));
    // Entries cannot be deleted while `hold_deletes` has a row.
    execute(
        &main,
        "CREATE TABLE hold_deletes (x int);
         INSERT INTO hold_deletes VALUES (1);
         CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM hold_deletes) THEN RAISE EXCEPTION 'held'; END IF;
           RETURN OLD;
         END $$;
         CREATE TRIGGER hold BEFORE DELETE ON notmeta_webhooks_jobs
           FOR EACH ROW EXECUTE FUNCTION hold();",
    )
    .await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_crash")).await.0, 200);

    // Worker A, in a runtime of its own: commits the effect, cannot delete the
    // entry, and dies (its runtime shut down: nothing of it runs any more).
    let (die, dying) = std::sync::mpsc::channel::<()>();
    let a_url = url.clone();
    let a = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let pool = pool(&a_url).await;
            let queue = Queue::postgres(pool.clone(), &Tables::default())
                .await
                .unwrap()
                .with_dedup_window(Duration::from_secs(1));
            let worker = Worker::new(queue, writer(&pool, Duration::ZERO))
                .with_visibility_timeout(Duration::from_secs(2))
                .with_poll_interval(Duration::from_millis(20));
            let _ = worker.run(std::future::pending::<()>()).await;
        });
        dying.recv().unwrap();
        runtime.shutdown_background();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while effects(&main, "evt_crash").await == 0 {
        assert!(Instant::now() < deadline, "worker A never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    die.send(()).unwrap();
    a.join().unwrap();
    execute(&main, "DELETE FROM hold_deletes").await;
    // The entry is still there, held by the dead worker's lapsing lease.
    assert_eq!(
        scalar(&main, "SELECT count(*) FROM notmeta_webhooks_jobs").await,
        1
    );

    // The lease lapses and the window ends; a sweep runs (every worker runs one
    // when it starts and once a minute).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let swept = PostgresStore::new(main.clone(), &Tables::default())
        .sweep()
        .await
        .unwrap();

    let worker = Worker::new(queue.clone(), writer(&main, Duration::ZERO))
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(20));
    let stats = run_until(worker, Duration::from_secs(10), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(
        effects(&main, "evt_crash").await,
        1,
        "the event's effect was committed twice (sweep deleted {swept} rows; reclaiming \
         worker: {stats:?})"
    );
}

/// Holds: an entry that waits longer than the dedup window (its event id's row
/// expired, and kept by the sweep while the entry exists) still makes every
/// duplicate `OK (duplicate)`: sixteen concurrent duplicates leave one entry, and
/// the event runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_ending_while_an_entry_waits_makes_no_second_entry() {
    let (_server, main, queue) = setup().await;
    let queue = queue.with_dedup_window(Duration::from_secs(1));
    let endpoint = Arc::new(enqueuer(&queue));
    assert_eq!(
        send(&endpoint, &body("evt_wait")).await,
        (200, "OK".to_owned())
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let swept = PostgresStore::new(main.clone(), &Tables::default())
        .sweep()
        .await
        .unwrap();
    assert_eq!(
        swept, 0,
        "the sweep deleted the row of an event still queued"
    );
    let answers = send_at_once(&endpoint, &body("evt_wait"), 16).await;
    assert!(
        answers
            .iter()
            .all(|a| *a == (200, "OK (duplicate)".to_owned())),
        "{answers:?}"
    );
    assert_eq!(
        scalar(&main, "SELECT count(*) FROM notmeta_webhooks_jobs").await,
        1
    );
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    })
    .with_poll_interval(Duration::from_millis(20));
    run_until(worker, Duration::from_secs(10), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Holds: worker A (transactional, its pool through a proxy) stalls mid-run past
/// its visibility timeout (the proxy paused: a partition); worker B reclaims the
/// entry and commits; A, resumed, commits nothing and counts the run lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transactional_worker_commits_nothing_after_a_reclaim() {
    let (server, main, queue) = setup().await;
    let (proxy, a_pool, a_queue) = through_proxy(&server).await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_stall")).await.0, 200);

    // A's handler waits 1.5 s before writing; 200 ms in, the network stalls.
    let a = Worker::new(a_queue, writer(&a_pool, Duration::from_millis(1_500)))
        .with_visibility_timeout(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(20));
    let (stop_a, a_run) = started(a);
    wait_for_count(&main, RUNNING, 1, "A never took the entry").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.pause();

    // B reclaims once A's lease lapsed, and commits.
    let b = Worker::new(queue.clone(), writer(&main, Duration::ZERO))
        .with_visibility_timeout(Duration::from_secs(5))
        .with_poll_interval(Duration::from_millis(20));
    let b_stats = run_until(b, Duration::from_secs(15), async || drained(&queue).await).await;
    assert_eq!(b_stats.handled, 1, "{b_stats:?}");
    assert_eq!(effects(&main, "evt_stall").await, 1);

    proxy.resume();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop_a.send(()).unwrap();
    let a_stats = a_run.await.unwrap();
    assert_eq!(effects(&main, "evt_stall").await, 1, "A: {a_stats:?}");
    assert_eq!(a_stats.handled, 0, "{a_stats:?}");
}

/// A transactional worker on a pool of its own, until `stop` fires.
fn spawn_worker(
    pool: PgPool,
    queue: Queue,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<WorkerStats> {
    let worker = Worker::new(queue, writer(&pool, Duration::from_millis(5)))
        .with_concurrency(8)
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(20))
        .with_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .with_max_attempts(50);
    tokio::spawn(async move {
        let mut stop = stop;
        worker
            .run(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
            .unwrap()
    })
}

/// Holds: 300 events, each sent three times at once by an endpoint, while two
/// transactional workers (pools of their own) drain the queue and PostgreSQL is
/// stopped with `-m immediate` and restarted mid-way; every event NotMeta was not
/// answered 200 for is sent again until it is. Every event ends with exactly one
/// effect and no entry is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_a_restart_leave_one_effect_per_event() {
    let mut server = PostgresServer::start();
    let url = server.url();
    let main = pool(&url).await;
    execute(&main, "CREATE TABLE effects (event_id text NOT NULL)").await;
    let queue = Queue::postgres(main.clone(), &Tables::default())
        .await
        .unwrap();
    let endpoint = Arc::new(enqueuer(&queue));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for _ in 0..2 {
        let pool = pool(&url).await;
        let queue = Queue::postgres(pool.clone(), &Tables::default())
            .await
            .unwrap();
        workers.push(spawn_worker(pool, queue, stopped.clone()));
    }
    let ids: Vec<String> = (0..300).map(|n| format!("evt_hammer_{n}")).collect();
    let sending = {
        let (endpoint, ids) = (Arc::clone(&endpoint), ids.clone());
        tokio::spawn(async move {
            let mut answered = std::collections::HashMap::<String, Vec<u16>>::new();
            for chunk in ids.chunks(10) {
                let sends = chunk.iter().flat_map(|id| {
                    (0..3).map(|_| {
                        let (endpoint, id) = (Arc::clone(&endpoint), id.clone());
                        tokio::spawn(async move {
                            let status = send(&endpoint, &body(&id)).await.0;
                            (id, status)
                        })
                    })
                });
                for (id, status) in join_all(sends).await.into_iter().map(Result::unwrap) {
                    answered.entry(id).or_default().push(status);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.stop_immediate();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    let answered = sending.await.unwrap();
    let unanswered: Vec<&String> = ids
        .iter()
        .filter(|id| !answered[*id].contains(&200))
        .collect();
    // NotMeta's retries.
    for id in &unanswered {
        let deadline = Instant::now() + Duration::from_secs(10);
        while send(&endpoint, &body(id)).await.0 != 200 {
            assert!(Instant::now() < deadline, "{id} never answered 200");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let stats = drain_then_stop(&queue, Duration::from_secs(25), &stop, workers).await;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM effects GROUP BY event_id")
            .fetch_all(&main)
            .await
            .unwrap();
    let counts: std::collections::HashMap<String, i64> = counts.into_iter().collect();
    let wrong: Vec<(&String, i64)> = ids
        .iter()
        .map(|id| (id, counts.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "effects != 1: {wrong:?} ({} retried by NotMeta; workers {stats:?})",
        unanswered.len()
    );
    assert_eq!(
        scalar(&main, "SELECT count(*) FROM notmeta_webhooks_jobs").await,
        0
    );
    eprintln!(
        "{} of 300 sent again after no 200; workers: {stats:?}",
        unanswered.len()
    );
}

/// A body of `type` with the id `id` (both JSON-escaped by the caller).
fn raw_body(id: &str, kind: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"{kind}","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#)
        .into_bytes()
}

/// Finding: an id or a type holding a NUL (`\u0000` in the JSON; PostgreSQL's
/// `text` cannot hold it) is answered 503 at every delivery, so NotMeta retries it
/// until it gives up and the event is never handled. The jobs table stores the raw
/// `event_id` and `event_type` in `text` columns (the events table's key is hashed,
/// the entry's copies are not). The inline `PostgresStore` handles such ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_types_holding_a_nul_are_queued_and_handled() {
    hostile(vec![
        ("evt_\\u0000nul".into(), "user.online", "evt_\0nul".into()),
        (
            "evt_type_nul".into(),
            "user.\\u0000online",
            "evt_type_nul".into(),
        ),
    ])
    .await;
}

/// Holds: a 100 KiB id and an id spelled like a stored hash are each queued once,
/// answered `OK (duplicate)` the second time, and handled with their exact id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_hash_spelled_ids_are_queued_and_handled() {
    let long = "x".repeat(100 * 1024);
    let hashed = format!("sha256:{}", "0".repeat(64));
    hostile(vec![
        (long.clone(), "user.online", long),
        (hashed.clone(), "user.online", hashed),
    ])
    .await;
}

/// Sends each `(JSON id, JSON type, id)` twice, then runs a worker: each is queued
/// once and handled with its id.
async fn hostile(cases: Vec<(String, &str, String)>) {
    let (_server, _pool, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    let mut answers = Vec::new();
    for (id, kind, _) in &cases {
        let first = send(&endpoint, &raw_body(id, kind)).await;
        let again = send(&endpoint, &raw_body(id, kind)).await;
        answers.push((id.chars().take(20).collect::<String>(), first, again));
    }
    for (id, first, again) in &answers {
        assert_eq!(first.0, 200, "{id}: {answers:?}");
        assert_eq!(
            again,
            &(200, "OK (duplicate)".to_owned()),
            "{id}: {answers:?}"
        );
    }
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        record.lock().unwrap().push(event.id.as_str().to_owned());
        async { Ok::<(), HandlerError>(()) }
    })
    .with_poll_interval(Duration::from_millis(20));
    let stats = run_until(worker, Duration::from_secs(10), async || {
        drained(&queue).await
    })
    .await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut expected: Vec<String> = cases.into_iter().map(|(_, _, id)| id).collect();
    expected.sort();
    assert!(seen == expected, "handled {} ids; {stats:?}", seen.len());
}

/// Leased handlers (4 s each) on two workers; PostgreSQL is frozen (SIGSTOP) for
/// 3 s, longer than the 1.5 s visibility timeout, while every handler runs. No
/// worker stalled: each renewal was sent on time and queued behind the freeze.
/// A running handler keeps its entry: each event runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_does_not_hand_running_entries_to_another_worker() {
    let (server, _pool, queue) = setup().await;
    let url = server.url();
    let endpoint = enqueuer(&queue);
    for n in 0..8 {
        assert_eq!(
            send(&endpoint, &body(&format!("evt_frozen_{n}"))).await.0,
            200
        );
    }
    let runs: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for _ in 0..2 {
        let pool = pool(&url).await;
        let queue = Queue::postgres(pool, &Tables::default()).await.unwrap();
        let runs = Arc::clone(&runs);
        let worker = Worker::new(queue, move |event: Event<'static>| {
            *runs
                .lock()
                .unwrap()
                .entry(event.id.as_str().to_owned())
                .or_default() += 1;
            async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok::<(), HandlerError>(())
            }
        })
        .with_concurrency(4)
        .with_visibility_timeout(Duration::from_millis(1_500))
        .with_poll_interval(Duration::from_millis(20));
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap()
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.lock().unwrap().len() < 8 {
        assert!(Instant::now() < deadline, "not every event started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume();
    let stats = drain_then_stop(&queue, Duration::from_secs(20), &stop, workers).await;
    let runs = runs.lock().unwrap().clone();
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "ran more than once: {twice:?}; workers {stats:?}"
    );
}

/// Finding: the worker's `LISTEN` connection is one of the pool's, held for the
/// worker's whole life (sqlx's `PgListener::connect_with(&pool)`), while the guide
/// says "one connection of its own for `LISTEN`" and "size the pool for the
/// concurrency plus a few". With a pool of concurrency + 1 and transactional
/// handlers (each holding a connection for its run), the keeper finds no free
/// connection: the leases lapse while every handler runs, another worker takes the
/// entries over, and the first worker's runs are all lost (rolled back, run again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_concurrency_plus_one_keeps_its_running_entries() {
    let (server, main, queue) = setup().await;
    let url = server.url();
    let endpoint = enqueuer(&queue);
    for n in 0..4 {
        assert_eq!(
            send(&endpoint, &body(&format!("evt_pool_{n}"))).await.0,
            200
        );
    }
    // Worker A: concurrency 4, a pool of 5.
    let small = PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap();
    let a_queue = Queue::postgres(small.clone(), &Tables::default())
        .await
        .unwrap();
    let a = Worker::new(a_queue, writer(&small, Duration::from_secs(3)))
        .with_concurrency(4)
        .with_visibility_timeout(Duration::from_millis(1_200))
        .with_poll_interval(Duration::from_millis(20));
    let (stop_a, a_run) = started(a);
    wait_for_count(&main, RUNNING, 4, "A did not take the entries").await;
    // Worker B, with room to spare, takes what A does not keep.
    let b = Worker::new(queue.clone(), writer(&main, Duration::ZERO))
        .with_visibility_timeout(Duration::from_secs(5))
        .with_poll_interval(Duration::from_millis(20));
    let b_stats = run_until(b, Duration::from_secs(20), async || drained(&queue).await).await;
    stop_a.send(()).unwrap();
    let a_stats = a_run.await.unwrap();
    let total = scalar(&main, "SELECT count(*) FROM effects").await;
    assert_eq!(total, 4, "A {a_stats:?}, B {b_stats:?}");
    assert_eq!(
        (a_stats.handled, b_stats.handled),
        (4, 0),
        "A's running entries were taken over: A {a_stats:?}, B {b_stats:?}"
    );
}

/// Holds: 1,200 dead letters; three replays and three purges of every age race
/// (each in a loop until nothing is left to do). Every letter is either replayed
/// (queued once, its runs reset) or purged, never both, never twice: the counts
/// the operations return add up to 1,200 and the table agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_purges_racing_move_each_dead_letter_once() {
    let (_server, main, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    for chunk in (0..1_200).collect::<Vec<u32>>().chunks(50) {
        let bodies: Vec<Vec<u8>> = chunk
            .iter()
            .map(|n| body(&format!("evt_dead_{n}")))
            .collect();
        let sends = bodies.iter().map(|b| send(&endpoint, b));
        assert!(join_all(sends).await.iter().all(|a| a.0 == 200));
    }
    let worker = Worker::new(queue.clone(), |_: Event<'static>| async {
        Err::<(), HandlerError>(HandlerError::permanent("no"))
    })
    .with_concurrency(32)
    .with_poll_interval(Duration::from_millis(20));
    run_until(worker, Duration::from_secs(25), async || {
        queue.counts().await.unwrap().dead_letters == 1_200
    })
    .await;

    let replays = (0..3).map(|_| {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut moved = 0;
            loop {
                let n = queue.replay_dead_letters(300).await.unwrap();
                moved += n as u64;
                if n == 0 {
                    return moved;
                }
            }
        })
    });
    let purges = (0..3).map(|_| {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut gone = 0;
            loop {
                let n = queue.purge_dead_letters(Duration::ZERO).await.unwrap();
                gone += n;
                if queue.counts().await.unwrap().dead_letters == 0 {
                    return gone;
                }
            }
        })
    });
    let (replayed, purged) = futures_util::future::join(join_all(replays), join_all(purges)).await;
    let replayed: u64 = replayed.into_iter().map(Result::unwrap).sum();
    let purged: u64 = purged.into_iter().map(Result::unwrap).sum();
    assert_eq!(
        replayed + purged,
        1_200,
        "replayed {replayed}, purged {purged}"
    );
    let queued = scalar(
        &main,
        "SELECT count(*) FROM notmeta_webhooks_jobs WHERE state = 'queued' AND runs = 0",
    )
    .await;
    assert_eq!(queued.unsigned_abs(), replayed);
    assert_eq!(
        scalar(&main, "SELECT count(*) FROM notmeta_webhooks_jobs").await,
        queued
    );
}

/// Holds: a duplicate arriving while a transactional run holds its event's row
/// locked (as between its done mark and its commit; here the handler locks the row
/// itself and waits 2 s) is answered `OK (duplicate)` at once, without waiting on
/// the lock; the run then commits its one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_does_not_wait_for_a_run_holding_its_event_row() {
    let (_server, main, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    assert_eq!(send(&endpoint, &body("evt_locked")).await.0, 200);
    let store = PostgresStore::new(main.clone(), &Tables::default());
    let handler: TxFn = Box::new(move |event: Event<'static>, tx| {
        Box::pin(async move {
            sqlx::query("SELECT 1 FROM notmeta_webhooks_events WHERE event_id = $1 FOR UPDATE")
                .bind(event.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                .bind(event.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        })
    });
    let worker = Worker::new(queue.clone(), store.transactional(handler))
        .with_poll_interval(Duration::from_millis(20));
    let (stop, running) = started(worker);
    wait_for_count(
        &main,
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'notmeta_webhooks_events' AND l.mode = 'RowShareLock'",
        1,
        "the run never locked its row",
    )
    .await;
    let started = Instant::now();
    let answer = send(&endpoint, &body("evt_locked")).await;
    let waited = started.elapsed();
    assert_eq!(answer, (200, "OK (duplicate)".to_owned()));
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !drained(&queue).await {
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let stats = running.await.unwrap();
    assert_eq!((stats.handled, effects(&main, "evt_locked").await), (1, 1));
}

/// Holds: the COMMIT of a transactional run reaches the server and commits (a
/// deferred trigger makes it last 500 ms) but its reply is lost (held by the proxy,
/// then the connections are cut). The worker sees a failure and schedules a retry;
/// the retry finds the event done and only deletes the entry: one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_is_lost_is_not_run_again() {
    let (server, main, queue) = setup().await;
    execute(
        &main,
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON effects
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    )
    .await;
    let (proxy, a_pool, a_queue) = through_proxy(&server).await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_ambiguous")).await.0, 200);
    let a = Worker::new(a_queue, writer(&a_pool, Duration::ZERO))
        .with_backoff(Duration::from_millis(100), Duration::from_millis(200))
        .with_poll_interval(Duration::from_millis(20));
    let (stop_a, a_run) = started(a);
    wait_for_count(
        &main,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'COMMIT'",
        1,
        "the run never committed",
    )
    .await;
    proxy.hold_replies(Duration::from_millis(1_500));
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !drained(&queue).await {
        assert!(Instant::now() < deadline, "the entry was not settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_a.send(()).unwrap();
    let stats = a_run.await.unwrap();
    assert_eq!(effects(&main, "evt_ambiguous").await, 1, "{stats:?}");
    // The lost reply was seen as a failure, and the retry found the event done.
    assert_eq!((stats.retried, stats.skipped), (1, 1), "{stats:?}");
}
