//! The queue on PostgreSQL (`Queue::postgres`): the endpoint's dedup, the worker's
//! retries, dead letters, reclaim after a crash, transactional completion and
//! wake-ups, against a real PostgreSQL server each test starts for itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::Event;
use notmeta_webhooks::postgres::{PostgresStore, Tables};
use notmeta_webhooks::queue::{Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;

mod common;
use common::pg_queue::{
    TxFn, drained, effects, execute, is_done, jobs, pool, run_until, scalar, send_at_once, setup,
    write_effect, writer,
};
use common::queue::{body, enqueuer, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_enqueues_of_one_id_make_one_entry() {
    let (_server, pool, queue) = setup().await;
    let endpoint = Arc::new(enqueuer(&queue));
    let answers = send_at_once(&endpoint, &body("evt_dup"), 16).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let queued = answers.iter().filter(|(_, text)| text == "OK").count();
    assert_eq!(queued, 1, "{answers:?}");
    assert_eq!(jobs(&pool).await, 1);
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_progress), (1, 0));

    // Handled, the id stays a duplicate for the dedup window.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    });
    let stats = run_until(worker, Duration::from_secs(10), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!((stats.handled, runs.load(Ordering::SeqCst)), (1, 1));
    assert!(is_done(&pool, "evt_dup").await);
    assert_eq!(
        send(&endpoint, &body("evt_dup")).await,
        (200, "OK (duplicate)".to_owned())
    );
    assert_eq!(jobs(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_after_its_backoff_then_done() {
    let (_server, pool, queue) = setup().await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_flaky")).await.0, 200);
    let runs: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        let mut seen = seen.lock().unwrap();
        seen.push(Instant::now());
        let n = seen.len();
        async move {
            if n < 3 {
                Err(HandlerError::temporary("downstream down"))
            } else {
                Ok(())
            }
        }
    })
    .with_backoff(Duration::from_millis(200), Duration::from_secs(1))
    .with_poll_interval(Duration::from_millis(20));
    let stats = run_until(worker, Duration::from_secs(15), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(
        (stats.handled, stats.retried, stats.dead_lettered),
        (1, 2, 0)
    );
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 3);
    // Each pause is at least half its backoff: 100 ms, then 200 ms.
    assert!(runs[1] - runs[0] >= Duration::from_millis(100), "{runs:?}");
    assert!(runs[2] - runs[1] >= Duration::from_millis(200), "{runs:?}");
    assert!(is_done(&pool, "evt_flaky").await);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged() {
    let (_server, pool, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    for id in ["evt_perm", "evt_temp", "evt_bad"] {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let (fixed, runs) = (Arc::clone(&fixed), Arc::clone(&runs));
        move |event: Event<'static>| {
            *runs
                .lock()
                .unwrap()
                .entry(event.id.as_str().to_owned())
                .or_default() += 1;
            let fixed = fixed.load(Ordering::SeqCst);
            async move {
                match event.id.as_str() {
                    _ if fixed => Ok(()),
                    "evt_perm" => Err(HandlerError::permanent("no such customer")),
                    _ => Err(HandlerError::temporary("downstream down")),
                }
            }
        }
    };
    let worker = Worker::new(queue.clone(), handler.clone())
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .with_poll_interval(Duration::from_millis(10));
    let stats = run_until(worker, Duration::from_secs(15), async || {
        queue.counts().await.unwrap().dead_letters == 3
    })
    .await;
    assert_eq!(stats.dead_lettered, 3);
    assert_eq!(runs.lock().unwrap()["evt_perm"], 1);
    assert_eq!(runs.lock().unwrap()["evt_temp"], 3);
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.retrying, counts.dead_letters),
        (0, 0, 3)
    );
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 3);
    let perm = letters.iter().find(|l| l.event_id == "evt_perm").unwrap();
    assert_eq!(perm.attempts, 1);
    assert!(perm.error.contains("no such customer"), "{}", perm.error);
    assert_eq!(perm.body, body("evt_perm"));
    assert_eq!(perm.event_type, "user.online");
    let temp = letters.iter().find(|l| l.event_id == "evt_temp").unwrap();
    assert_eq!(temp.attempts, 3);
    assert!(temp.error.contains("attempt 3 of 3"), "{}", temp.error);
    assert_eq!(queue.dead_letters(2).await.unwrap().len(), 2);
    // A dead letter's id is still a duplicate.
    assert_eq!(send(&endpoint, &body("evt_perm")).await.1, "OK (duplicate)");

    // Purged by age: none is an hour old; then all of one.
    assert_eq!(
        queue
            .purge_dead_letters(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // Replay two (oldest first), then purge the third.
    assert_eq!(queue.replay_dead_letters(2).await.unwrap(), 2);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 1);
    assert_eq!(queue.purge_dead_letters(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
    fixed.store(true, Ordering::SeqCst);
    let worker = Worker::new(queue.clone(), handler).with_poll_interval(Duration::from_millis(10));
    let stats = run_until(worker, Duration::from_secs(15), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(stats.handled, 2);
    assert!(is_done(&pool, "evt_perm").await && is_done(&pool, "evt_temp").await);
    assert!(!is_done(&pool, "evt_bad").await);
    // The purged event stays remembered as given up on.
    assert_eq!(send(&endpoint, &body("evt_bad")).await.1, "OK (duplicate)");
    assert_eq!(jobs(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_whose_event_is_done_is_deleted_not_queued() {
    let (_server, pool, queue) = setup().await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_late")).await.0, 200);
    let worker = Worker::new(queue.clone(), |_: Event<'static>| async {
        Err::<(), _>(HandlerError::permanent("refused"))
    });
    run_until(worker, Duration::from_secs(10), async || {
        queue.counts().await.unwrap().dead_letters == 1
    })
    .await;
    // A run thought lost committed its done mark meanwhile.
    execute(
        &pool,
        "UPDATE notmeta_webhooks_events SET done = true WHERE event_id = 'evt_late'",
    )
    .await;
    assert_eq!(queue.replay_dead_letters(10).await.unwrap(), 0);
    assert_eq!(queue.counts().await.unwrap(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_handler_commits_its_writes_with_the_done_mark_once() {
    let (_server, pool, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    let ids: Vec<String> = (0..20).map(|n| format!("evt_tx_{n}")).collect();
    for id in &ids {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let worker = Worker::new(queue.clone(), writer(&pool, Duration::ZERO)).with_concurrency(4);
    let stats = run_until(worker, Duration::from_secs(15), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(stats.handled, 20);
    for id in &ids {
        assert_eq!(effects(&pool, id).await, 1, "{id}");
        assert!(is_done(&pool, id).await, "{id}");
    }
}

/// Worker A runs a transactional handler that waits after its write; the entry's
/// lease is made to lapse and worker B takes it over and handles it. A's
/// transaction then finds its token gone: rolled back, nothing of A's persists,
/// and A counts the run lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_entry_was_taken_over_commits_nothing() {
    let (_server, pool, queue) = setup().await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_over")).await.0, 200);
    let (written_tx, written) = tokio::sync::oneshot::channel::<()>();
    let written_tx = Arc::new(Mutex::new(Some(written_tx)));
    let go = Arc::new(tokio::sync::Notify::new());
    let store = PostgresStore::new(pool.clone(), &Tables::default());
    let slow: TxFn = {
        let (written_tx, go) = (Arc::clone(&written_tx), Arc::clone(&go));
        Box::new(move |event: Event<'static>, tx| {
            let (written_tx, go) = (Arc::clone(&written_tx), Arc::clone(&go));
            Box::pin(async move {
                write_effect(tx, event.id.as_str()).await?;
                if let Some(written) = written_tx.lock().unwrap().take() {
                    let _ = written.send(());
                }
                go.notified().await;
                Ok(())
            })
        })
    };
    // A renews every 10 s: not during this test.
    let a = Worker::new(queue.clone(), store.transactional(slow))
        .with_visibility_timeout(Duration::from_secs(30));
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn(a.run(async {
        let _ = stopped_a.await;
    }));
    written.await.unwrap();
    execute(
        &pool,
        "UPDATE notmeta_webhooks_jobs SET due_at = now() - interval '1 second'",
    )
    .await;
    let b = Worker::new(queue.clone(), writer(&pool, Duration::ZERO))
        .with_poll_interval(Duration::from_millis(10));
    let stats_b = run_until(b, Duration::from_secs(10), async || drained(&queue).await).await;
    assert_eq!(stats_b.handled, 1);
    assert_eq!(effects(&pool, "evt_over").await, 1);
    go.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_a.send(()).unwrap();
    let stats_a = a.await.unwrap().unwrap();
    assert_eq!((stats_a.handled, stats_a.lost), (0, 1), "{stats_a:?}");
    assert_eq!(effects(&pool, "evt_over").await, 1, "A's write rolled back");
    assert!(is_done(&pool, "evt_over").await);
    assert_eq!(queue.counts().await.unwrap(), Default::default());
}

/// PostgreSQL stopped (`-m immediate`) and started again while two workers drain
/// 200 events with a transactional handler: every event ends done, its effect
/// committed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_drain_handles_every_event_once() {
    let (mut server, pool, queue) = setup().await;
    let endpoint = enqueuer(&queue);
    let ids: Vec<String> = (0..200).map(|n| format!("evt_drain_{n}")).collect();
    for id in &ids {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let worker = Worker::new(queue.clone(), writer(&pool, Duration::from_millis(20)))
                .with_concurrency(4)
                .with_visibility_timeout(Duration::from_secs(2))
                .with_backoff(Duration::from_millis(50), Duration::from_millis(200))
                .with_max_attempts(1000)
                .with_poll_interval(Duration::from_millis(50));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(worker.run(async {
                let _ = stopped.await;
            }));
            (stop, running)
        })
        .collect();
    // Mid-drain: some handled (at 8 at a time and 20 ms each, all take 500 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let handled = scalar(&pool, "SELECT count(*) FROM effects").await;
        if handled >= 20 {
            assert!(handled < 200, "not mid-drain: {handled} handled");
            break;
        }
        assert!(Instant::now() < deadline, "the workers did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop_immediate();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(counts) = queue.counts().await
            && counts.pending + counts.in_progress + counts.retrying + counts.dead_letters == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "not drained in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (stop, running) in workers {
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM effects GROUP BY event_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(counts.len(), ids.len());
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    let done = scalar(
        &pool,
        "SELECT count(*) FROM notmeta_webhooks_events WHERE done",
    )
    .await;
    assert_eq!(done, 200);
}

// ---------------------------------------------------------------------------
// Wake-ups
// ---------------------------------------------------------------------------

/// With a 10 s poll interval, an enqueued event starts within ~100 ms: the
/// enqueue's `NOTIFY` wakes the worker. After every client connection is cut, the
/// listener connects again and the wake-ups go on; an entry inserted without a
/// notification is still found by the poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_the_worker_and_polling_is_the_fallback() {
    let (server, pool, queue) = setup().await;
    let endpoint_pool = self::pool(&server.url()).await;
    let endpoint_queue = Queue::postgres(endpoint_pool, &Tables::default())
        .await
        .unwrap();
    let endpoint = enqueuer(&endpoint_queue);
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = Arc::clone(&started);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        seen.lock()
            .unwrap()
            .insert(event.id.as_str().to_owned(), Instant::now());
        async { Ok::<(), HandlerError>(()) }
    })
    .with_poll_interval(Duration::from_secs(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Let the worker's first take and its listener's start pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wait_for = async |id: &str, limit: Duration| -> Duration {
        let sent = Instant::now();
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
        loop {
            if let Some(at) = started.lock().unwrap().get(id) {
                return at.duration_since(sent);
            }
            assert!(sent.elapsed() < limit, "{id} not started within {limit:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let mut delays = Vec::new();
    for n in 0..5 {
        delays.push(wait_for(&format!("evt_wake_{n}"), Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("wake-up delays: {delays:?}");
    assert!(
        delays.iter().all(|d| *d < Duration::from_millis(150)),
        "{delays:?}"
    );

    // Every connection cut: the listener comes back, and so do the wake-ups.
    assert!(server.terminate_backends() > 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = wait_for("evt_after_cut", Duration::from_secs(3)).await;
    println!("wake-up after the cut: {after:?}");
    assert!(after < Duration::from_millis(500), "{after:?}");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // Without a notification (one lost while the listener was away), the poll
    // finds the entry.
    let polling = Worker::new(queue.clone(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    })
    .with_poll_interval(Duration::from_millis(300));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(polling.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query(
        "INSERT INTO notmeta_webhooks_jobs (event_key, event_id, event_type, body, received_ms, secret, state, due_at)
         VALUES ('evt_silent', 'evt_silent', 'user.online', $1, 0, 0, 'queued', now())",
    )
    .bind(body("evt_silent"))
    .execute(&pool)
    .await
    .unwrap();
    let inserted = Instant::now();
    while !is_done(&pool, "evt_silent").await {
        assert!(inserted.elapsed() < Duration::from_secs(3), "not polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!(stats.handled, 1);
}

// ---------------------------------------------------------------------------
// A worker process killed mid-handler
// ---------------------------------------------------------------------------

/// Set in the child process: the database URL and the handler (`plain` or `tx`).
const CHILD: &str = "NOTMETA_POSTGRES_QUEUE_CHILD";

/// The worker process the crash tests kill: runs a worker (visibility timeout
/// 1 s) whose handler prints `handler-started` (`tx`: after writing its effect in
/// the transaction) and then never returns.
#[test]
#[ignore = "the worker process the crash tests start and kill"]
fn worker_process() {
    let Ok(setting) = std::env::var(CHILD) else {
        return;
    };
    let (url, mode) = setting.split_once(' ').unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mode = mode.to_owned();
    runtime.block_on(async move {
        let pool = pool(url).await;
        let queue = Queue::postgres(pool.clone(), &Tables::default())
            .await
            .unwrap();
        let stop = std::future::pending::<()>();
        if mode == "tx" {
            let store = PostgresStore::new(pool, &Tables::default());
            let hang: TxFn = Box::new(|event: Event<'static>, tx| {
                Box::pin(async move {
                    write_effect(tx, event.id.as_str()).await?;
                    println!("handler-started");
                    std::future::pending::<()>().await;
                    Ok(())
                })
            });
            let worker = Worker::new(queue, store.transactional(hang))
                .with_visibility_timeout(Duration::from_secs(1));
            worker.run(stop).await.unwrap();
        } else {
            let worker = Worker::new(queue, |_: Event<'static>| async {
                println!("handler-started");
                std::future::pending::<()>().await;
                Ok::<(), HandlerError>(())
            })
            .with_visibility_timeout(Duration::from_secs(1));
            worker.run(stop).await.unwrap();
        }
    });
}

/// Runs [`worker_process`] in a child process until it prints `handler-started`, then
/// kills it (SIGKILL).
fn kill_worker_mid_handler(url: &str, mode: &str) {
    common::postgres::kill_child_at(
        "worker_process",
        CHILD,
        &format!("{url} {mode}"),
        "handler-started",
        None,
    );
}

/// A worker killed mid-handler: its entry stays running until its lease lapses,
/// then another worker reclaims it, the event runs again (its second run, not
/// before the lapse) and ends done once.
async fn killed_worker_entry_is_reclaimed(mode: &str) {
    let (server, pool, queue) = setup().await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_crash")).await.0, 200);
    kill_worker_mid_handler(&server.url(), mode);
    assert_eq!(effects(&pool, "evt_crash").await, 0, "nothing committed");
    assert_eq!(queue.counts().await.unwrap().in_progress, 1);
    // When the dead worker's lease lapses, by the database's clock.
    let lapse: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM due_at)::float8 FROM notmeta_webhooks_jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
    let stats = if mode == "tx" {
        let worker = Worker::new(queue.clone(), writer(&pool, Duration::ZERO))
            .with_poll_interval(Duration::from_millis(20));
        run_until(worker, Duration::from_secs(10), async || {
            drained(&queue).await
        })
        .await
    } else {
        let seen: Arc<Mutex<Vec<(i32, f64)>>> = Arc::default();
        let (recorded, handler_pool) = (Arc::clone(&seen), pool.clone());
        let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
            let (recorded, pool) = (Arc::clone(&recorded), handler_pool.clone());
            async move {
                let run: (i32, f64) = sqlx::query_as(
                    "SELECT runs, extract(epoch FROM clock_timestamp())::float8
                     FROM notmeta_webhooks_jobs WHERE event_id = 'evt_crash'",
                )
                .fetch_one(&pool)
                .await
                .map_err(HandlerError::temporary)?;
                recorded.lock().unwrap().push(run);
                sqlx::query("INSERT INTO effects (event_id) VALUES ('evt_crash')")
                    .execute(&pool)
                    .await
                    .map_err(HandlerError::temporary)?;
                Ok::<(), HandlerError>(())
            }
        })
        .with_poll_interval(Duration::from_millis(20));
        let stats = run_until(worker, Duration::from_secs(10), async || {
            drained(&queue).await
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, 2, "the crashed run counts as an attempt");
        assert!(seen[0].1 >= lapse, "reclaimed before the lease lapsed");
        stats
    };
    assert_eq!(stats.handled, 1);
    assert_eq!(effects(&pool, "evt_crash").await, 1);
    assert!(is_done(&pool, "evt_crash").await);
    assert_eq!(jobs(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_handler_is_reclaimed_after_the_visibility_timeout() {
    killed_worker_entry_is_reclaimed("plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_transaction_commits_nothing_and_the_event_runs_once() {
    killed_worker_entry_is_reclaimed("tx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sweeps_event_ids_whose_window_ended() {
    let (_server, pool, queue) = setup().await;
    execute(
        &pool,
        "INSERT INTO notmeta_webhooks_events (event_id, token, done, expires_at)
         VALUES ('evt_old', 't', true, now() - interval '1 second'),
                ('evt_recent', 't', true, now() + interval '1 hour')",
    )
    .await;
    let worker = Worker::new(queue.clone(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    });
    run_until(worker, Duration::from_secs(5), async || {
        scalar(&pool, "SELECT count(*) FROM notmeta_webhooks_events").await == 1
    })
    .await;
    assert!(is_done(&pool, "evt_recent").await);
}

/// Tables at schema version 1 (the idempotency table alone) are upgraded in place
/// by `Queue::postgres`: the events recorded there stay, the jobs table appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_at_version_1_are_upgraded_and_keep_their_rows() {
    let (_server, pool, queue) = setup().await;
    execute(
        &pool,
        "INSERT INTO notmeta_webhooks_events (event_id, token, done, expires_at)
         VALUES ('evt_v1', 't', true, now() + interval '1 hour')",
    )
    .await;
    drop(queue);
    execute(&pool, "DROP TABLE notmeta_webhooks_jobs").await;
    execute(
        &pool,
        "UPDATE notmeta_webhooks_schema_version SET version = 1",
    )
    .await;
    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &pool,
            "SELECT version::bigint FROM notmeta_webhooks_schema_version"
        )
        .await,
        i64::from(notmeta_webhooks::postgres::SCHEMA_VERSION)
    );
    assert_eq!(jobs(&pool).await, 0);
    let endpoint = enqueuer(&queue);
    assert_eq!(send(&endpoint, &body("evt_v1")).await.1, "OK (duplicate)");
    assert_eq!(send(&endpoint, &body("evt_v2")).await.1, "OK");
    assert_eq!(queue.counts().await.unwrap().pending, 1);
}

/// At the shutdown deadline a running handler is cancelled and its entry left with
/// its lease: another worker runs it once the lease lapses, as its second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_cancelled_at_shutdown_is_left_for_reclaim() {
    let (_server, pool, queue) = setup().await;
    assert_eq!(send(&enqueuer(&queue), &body("evt_slow")).await.0, 200);
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&started);
    let slow = Worker::new(queue.clone(), move |_: Event<'static>| {
        signal.notify_one();
        async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .with_handler_isolation(false)
    .with_visibility_timeout(Duration::from_secs(1))
    .with_shutdown_deadline(Duration::from_millis(100));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(slow.run(async {
        let _ = stopped.await;
    }));
    started.notified().await;
    stop.send(()).unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!((stats.abandoned, stats.handled), (1, 0));
    assert_eq!(queue.counts().await.unwrap().in_progress, 1);
    let runs: Arc<Mutex<Vec<i32>>> = Arc::default();
    let (seen, handler_pool) = (Arc::clone(&runs), pool.clone());
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        let (seen, pool) = (Arc::clone(&seen), handler_pool.clone());
        async move {
            let run: i32 = sqlx::query_scalar("SELECT runs FROM notmeta_webhooks_jobs")
                .fetch_one(&pool)
                .await
                .map_err(HandlerError::temporary)?;
            seen.lock().unwrap().push(run);
            Ok::<(), HandlerError>(())
        }
    })
    .with_poll_interval(Duration::from_millis(20));
    let stats = run_until(worker, Duration::from_secs(10), async || {
        drained(&queue).await
    })
    .await;
    assert_eq!(stats.handled, 1);
    assert_eq!(*runs.lock().unwrap(), vec![2]);
    assert!(is_done(&pool, "evt_slow").await);
}

/// An endpoint on Redis given a queue in PostgreSQL as its previous one ignores it
/// (there is no layout to move from) and queues as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_queue_in_postgres_is_ignored() {
    let (_server, _pool, pg_queue) = setup().await;
    let redis = notmeta_test_support::RedisServer::start();
    let queue = Queue::connect(&redis.url()).await.unwrap();
    let endpoint = enqueuer(&queue).with_previous_queue(pg_queue.clone());
    assert_eq!(
        send(&endpoint, &body("evt_moved")).await,
        (200, "OK".to_owned())
    );
    assert_eq!(queue.counts().await.unwrap().pending, 1);
    assert_eq!(pg_queue.counts().await.unwrap(), Default::default());
}

/// Handlers block both threads of the worker's runtime for five visibility
/// timeouts, the worker's settings the defaults: its renewals, on a thread and a
/// connection of their own, keep the leases, so a worker on another runtime never
/// takes the entries over.
#[test]
fn handlers_blocking_every_thread_keep_their_entries() {
    let server = notmeta_test_support::PostgresServer::start();
    let url = server.url();
    common::blocked::blocked_threads_keep_their_entries(move || {
        let url = url.clone();
        async move {
            Queue::postgres(pool(&url).await, &Tables::default())
                .await
                .unwrap()
        }
    });
}
