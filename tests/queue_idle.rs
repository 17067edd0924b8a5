//! `Worker::run_until_idle` on every backend: a real `redis-server`, a real
//! PostgreSQL (feature `postgres`), and the queue in memory. The same scenarios
//! run on each: what was enqueued before the call is handled before it returns,
//! retries are awaited, an entry another worker left running is waited for, and
//! the limit ends a run that cannot get idle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, QueueError, Worker};
use notmeta_webhooks::receiver::HandlerError;

mod common;
use common::queue::{Runs, body, count, counting, enqueuer, runs_of, send};

/// Far more than any run here needs.
const LIMIT: Duration = Duration::from_secs(60);

/// Thirty events, one failing twice temporarily and one permanently, with a real
/// backoff: everything enqueued before the call is settled when it returns.
async fn drains_with_retries_and_dead_letters(queue: Queue) {
    let endpoint = enqueuer(&queue);
    for i in 0..28 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    for id in ["evt_flaky", "evt_bad"] {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let id = event.id.as_str().to_owned();
        let before = count(&counted, &event);
        async move {
            match id.as_str() {
                "evt_flaky" if before < 2 => Err(HandlerError::temporary("downstream down")),
                "evt_bad" => Err(HandlerError::permanent("no such customer")),
                _ => Ok(()),
            }
        }
    })
    .with_backoff(Duration::from_millis(20), Duration::from_millis(100))
    .with_poll_interval(Duration::from_millis(20));
    let stats = worker.run_until_idle(LIMIT).await.unwrap();
    assert_eq!(
        (stats.handled, stats.retried, stats.dead_lettered),
        (29, 2, 1),
        "{stats:?}"
    );
    assert_eq!(runs_of(&runs, "evt_flaky"), 3);
    assert_eq!(runs_of(&runs, "evt_bad"), 1);
    for i in 0..28 {
        assert_eq!(runs_of(&runs, &format!("evt_{i}")), 1);
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.in_progress,
            counts.retrying,
            counts.dead_letters
        ),
        (0, 0, 0, 1)
    );
}

/// One event enqueued, then at once a run until idle, many times over: the run
/// never finds the queue idle before the entry is settled.
async fn never_idle_before_an_acknowledged_entry_is_settled(queue: Queue) {
    let endpoint = enqueuer(&queue);
    let runs = Runs::default();
    for i in 0..15 {
        let id = format!("evt_race_{i}");
        assert_eq!(send(&endpoint, &body(&id)).await.0, 200);
        let stats = Worker::new(queue.clone(), counting(&runs))
            .with_poll_interval(Duration::from_millis(5))
            .run_until_idle(LIMIT)
            .await
            .unwrap();
        assert_eq!(stats.handled, 1, "{id}");
        assert_eq!(runs_of(&runs, &id), 1, "{id}");
    }
}

/// A worker cut short at its shutdown deadline leaves its entry running; a run
/// until idle waits for its visibility timeout, takes it over and handles it.
async fn waits_for_an_entry_left_running(queue: Queue) {
    assert_eq!(send(&enqueuer(&queue), &body("evt_left")).await.0, 200);
    let (started, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Mutex::new(Some(started));
    let stuck = Worker::new(queue.clone(), move |_: Event<'static>| {
        if let Some(started) = started.lock().unwrap().take() {
            let _ = started.send(());
        }
        std::future::pending::<Result<(), HandlerError>>()
    })
    .with_handler_isolation(false)
    .with_visibility_timeout(Duration::from_millis(600))
    .with_shutdown_deadline(Duration::ZERO);
    let stats = stuck
        .run(async {
            let _ = started_rx.await;
        })
        .await
        .unwrap();
    assert_eq!(stats.abandoned, 1);
    assert_eq!(queue.counts().await.unwrap().in_progress, 1);

    let runs = Runs::default();
    let stats = Worker::new(queue.clone(), counting(&runs))
        .with_visibility_timeout(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(20))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!((stats.handled, runs_of(&runs, "evt_left")), (1, 1));
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.pending + counts.in_progress + counts.retrying, 0);
}

/// A handler that keeps failing with endless attempts: the limit ends the run,
/// with what is left.
async fn the_limit_ends_a_run_that_cannot_get_idle(queue: Queue) {
    assert_eq!(send(&enqueuer(&queue), &body("evt_endless")).await.0, 200);
    let error = Worker::new(queue.clone(), |_: Event<'static>| async {
        Err::<(), _>(HandlerError::temporary("down"))
    })
    .with_max_attempts(u32::MAX)
    .with_backoff(Duration::from_millis(5), Duration::from_millis(5))
    .with_poll_interval(Duration::from_millis(20))
    .run_until_idle(Duration::from_millis(800))
    .await
    .unwrap_err();
    let QueueError::NotIdle { limit, left } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*limit, Duration::from_millis(800));
    assert_eq!(
        left.pending + left.in_progress + left.retrying,
        1,
        "{left:?}"
    );
    assert!(
        error.to_string().contains("not idle within 800ms"),
        "{error}"
    );
}

/// As many handlers at once as a semaphore allows, or none at all (taken as one):
/// no read asks for more entries than exist.
async fn any_concurrency_drains(queue: Queue) {
    let endpoint = enqueuer(&queue);
    for concurrency in [usize::MAX, 0] {
        for i in 0..5 {
            let id = format!("evt_c{concurrency}_{i}");
            assert_eq!(send(&endpoint, &body(&id)).await.0, 200);
        }
        let stats = Worker::new(queue.clone(), |_: Event<'static>| async {
            Ok::<(), HandlerError>(())
        })
        .with_concurrency(concurrency)
        .with_poll_interval(Duration::from_millis(20))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
        assert_eq!(stats.handled, 5, "{concurrency}");
    }
}

async fn all_scenarios(queue: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Queue>>>) {
    drains_with_retries_and_dead_letters(queue().await).await;
    never_idle_before_an_acknowledged_entry_is_settled(queue().await).await;
    waits_for_an_entry_left_running(queue().await).await;
    the_limit_ends_a_run_that_cannot_get_idle(queue().await).await;
    any_concurrency_drains(queue().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    all_scenarios(|| Box::pin(async { Queue::in_memory() })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let namespaces = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    all_scenarios(move || {
        let (url, n) = (
            url.clone(),
            namespaces.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        );
        Box::pin(async move {
            Queue::connect(&url)
                .await
                .unwrap()
                .with_namespace(format!("idle{n}"))
                // Idleness is summed over partitions, each read atomically.
                .with_partitions(3)
        })
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    use notmeta_webhooks::postgres::Tables;
    let server = notmeta_test_support::PostgresServer::start();
    let pool = common::postgres::pool(&server.url()).await;
    let tables = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    all_scenarios(move || {
        let (pool, n) = (
            pool.clone(),
            tables.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        );
        Box::pin(async move {
            let tables = Tables::default().with_prefix(format!("idle{n}_")).unwrap();
            Queue::postgres(pool, &tables).await.unwrap()
        })
    })
    .await;
}

#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_kit_on_redis() {
    use notmeta_webhooks::EventType;
    use notmeta_webhooks::testing::{TestQueue, sample};
    let server = RedisServer::start();
    let kit = TestQueue::on(Queue::connect(&server.url()).await.unwrap());
    let event = sample(EventType::MessageReceived);
    assert_eq!(kit.post(&event).await.body(), "OK");
    assert_eq!(kit.post(&event).await.body(), "OK (duplicate)");
    let runs = Runs::default();
    let counted = Arc::clone(&runs);
    let stats = kit
        .run_until_idle(move |event: Event<'static>| {
            let before = count(&counted, &event);
            async move {
                if before == 0 {
                    Err(HandlerError::temporary("once"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!((stats.retried, stats.handled), (1, 1));
    assert_eq!(runs_of(&runs, event.event_id()), 2);
}
