//! The queue against a real `redis-server`: the endpoint's answers and the worker's
//! rules one at a time, and durability across a Redis restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use notmeta_test_support::{RedisServer, TempDir};
use notmeta_webhooks::queue::{Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::{HandlerError, Outcome};
use notmeta_webhooks::{Event, sign};
use redis::AsyncCommands as _;

mod common;
use common::queue::{SECRET, body, enqueuer, send};

async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Runs `worker` until `done` says so (checked every 20 ms), then shuts it down.
async fn run_until<H, F>(worker: Worker<H>, mut done: F) -> WorkerStats
where
    H: notmeta_webhooks::receiver::Handler,
    F: AsyncFnMut() -> bool,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "the worker did not get there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap()
}

#[tokio::test]
async fn the_endpoint_answers_like_the_inline_one_and_enqueues_once() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let enqueuer = enqueuer(&queue).with_max_event_age(Duration::from_secs(3600));
    let fresh = |id: &str| {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        format!(r#"{{"id":"{id}","type":"user.online","created_at":"{now}","data":{{}}}}"#)
            .into_bytes()
    };

    let b = fresh("evt_1");
    let signature = sign(&b, SECRET);
    let queued = enqueuer.receive(&b, [signature.as_bytes()]).await;
    assert_eq!((queued.status().as_u16(), queued.body()), (200, "OK"));
    // Reported as queued, not handled: no handler has run yet.
    assert_eq!(queued.outcome(), Outcome::Queued);
    assert_eq!(queued.outcome().as_str(), "queued");
    let again = enqueuer.receive(&b, [signature.as_bytes()]).await;
    assert_eq!(
        (again.status().as_u16(), again.body()),
        (200, "OK (duplicate)")
    );
    assert_eq!(again.outcome(), Outcome::Duplicate);
    // Forged, malformed, not an event, stale: refused, nothing queued.
    let forged = enqueuer
        .receive(&b, [sign(&b, "whsec_other").as_bytes()])
        .await;
    assert_eq!(forged.status(), 400);
    assert_eq!(
        enqueuer.receive(&b, [&b"sha256=zz"[..]]).await.status(),
        400
    );
    assert_eq!(send(&enqueuer, b"{}").await.0, 400);
    let stale = send(&enqueuer, &body("evt_old")).await;
    assert_eq!(stale, (400, "Event too old".into()));
    // The challenge is answered inline and not queued.
    let challenge = br#"{"id":"evt_verify","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z","data":{"webhook_id":"wh_1","challenge":"c123"}}"#;
    assert_eq!(
        enqueuer
            .receive(challenge, [sign(challenge, SECRET).as_bytes()])
            .await
            .body(),
        "c123"
    );
    // Concurrent duplicates: one is queued.
    let b2 = fresh("evt_2");
    let answers = futures_util::future::join_all((0..16).map(|_| send(&enqueuer, &b2))).await;
    assert_eq!(answers.iter().filter(|a| a.1 == "OK").count(), 1);
    assert_eq!(
        answers.iter().filter(|a| a.1 == "OK (duplicate)").count(),
        15
    );

    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.pending, 2);
    // The entry: raw body, type, secret index, received time, attempt.
    let mut redis = connection(&server).await;
    let entries: redis::streams::StreamRangeReply = redis
        .xrange_all("{notmeta-webhooks:0}:stream")
        .await
        .unwrap();
    let first = &entries.ids[0];
    assert_eq!(first.get::<Vec<u8>>("body").unwrap(), b);
    assert_eq!(first.get::<String>("type").unwrap(), "user.online");
    assert_eq!(first.get::<String>("secret").unwrap(), "0");
    assert_eq!(first.get::<String>("attempt").unwrap(), "0");
    assert!(first.get::<u64>("received").unwrap() > 1_700_000_000_000);
    let ttl: i64 = redis
        .pttl("{notmeta-webhooks:0}:event:evt_1")
        .await
        .unwrap();
    assert!(ttl > 7_000_000, "remembered for the dedup window: {ttl}");

    // A full queue and an unreachable Redis are answered 503, so NotMeta retries.
    let full = enqueuer.clone().with_max_len(2);
    assert_eq!(
        send(&full, &fresh("evt_3")).await.1,
        Outcome::StoreFull.response_text()
    );
    drop(server);
    let started = Instant::now();
    let down = enqueuer.with_timeout(Duration::from_millis(300));
    assert_eq!(send(&down, &fresh("evt_4")).await.0, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn failures_retry_then_dead_letter_and_replay_brings_them_back() {
    failures_retry_then_dead_letter(true).await;
}

/// The same with the handler in the worker's own task: its panic, errors and retries
/// come out the same.
#[tokio::test]
async fn without_isolation_failures_retry_and_dead_letter_the_same() {
    failures_retry_then_dead_letter(false).await;
}

/// The endpoint's counter names what it did: queued, then a duplicate; nothing is
/// counted as handled before a worker has run it.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn the_endpoint_counts_queued_events_as_queued() {
    let recorder = notmeta_test_support::recorder::Counters::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let enqueuer = enqueuer(&queue);
    let b = body("evt_counted");
    assert_eq!(send(&enqueuer, &b).await.0, 200);
    assert_eq!(send(&enqueuer, &b).await.0, 200);
    let count = |outcome: &str| {
        recorder.get(&format!(
            "notmeta_webhooks_enqueued_total{{outcome={outcome}}}"
        ))
    };
    assert_eq!((count("queued"), count("duplicate")), (1, 1));
    assert_eq!(count("handled"), 0);
}

/// Dead letters are kept until replayed or purged; a purge takes those older than
/// its age, in every partition, and leaves their ids remembered for the window.
/// The margins (1.5 s between the two groups, a 1 s age) leave the newest letter a
/// second to spare on a slow, busy machine.
/// Renewals are counted as renewals, not as runs.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn renewals_are_not_counted_as_runs() {
    let recorder = notmeta_test_support::recorder::Counters::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_slow")).await.0, 200);
    let done = Arc::new(AtomicUsize::new(0));
    let finished = Arc::clone(&done);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        let finished = Arc::clone(&finished);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .with_handler_isolation(false)
    .with_visibility_timeout(Duration::from_millis(300))
    .with_poll_interval(Duration::from_millis(10));
    let stats = run_until(worker, async || done.load(Ordering::SeqCst) == 1).await;
    assert_eq!(stats.handled, 1);
    let runs = |outcome: &str| {
        recorder.get(&format!(
            "notmeta_webhooks_queue_runs_total{{outcome={outcome}}}"
        ))
    };
    assert_eq!((runs("handled"), runs("renewed")), (1, 0));
    assert!(recorder.get("notmeta_webhooks_queue_renewals_total") >= 2);
}

/// Events that fail together (a downstream outage) do not come back together: each
/// retry waits a random point between half and all of the backoff.
#[tokio::test]
async fn retries_of_events_that_failed_together_are_spread_over_the_backoff() {
    const EVENTS: usize = 24;
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let endpoint = enqueuer(&queue);
    for n in 0..EVENTS {
        assert_eq!(send(&endpoint, &body(&format!("evt_{n}"))).await.0, 200);
    }
    let runs: Arc<std::sync::Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let first = {
            let mut runs = seen.lock().unwrap();
            let times = runs.entry(event.id.to_string()).or_default();
            times.push(Instant::now());
            times.len() == 1
        };
        async move {
            if first {
                Err(HandlerError::temporary("downstream down"))
            } else {
                Ok(())
            }
        }
    })
    .with_concurrency(EVENTS)
    .with_backoff(Duration::from_secs(2), Duration::from_secs(2))
    .with_poll_interval(Duration::from_millis(10));
    let stats = run_until(worker, async || {
        let runs = runs.lock().unwrap();
        runs.len() == EVENTS && runs.values().all(|times| times.len() == 2)
    })
    .await;
    assert_eq!(
        (stats.handled, stats.retried),
        (EVENTS as u64, EVENTS as u64)
    );
    let mut waits: Vec<Duration> = runs
        .lock()
        .unwrap()
        .values()
        .map(|times| times[1] - times[0])
        .collect();
    waits.sort();
    let (shortest, longest) = (waits[0], waits[EVENTS - 1]);
    // Each wait is between half and all of the 2 s backoff (plus polling and
    // scheduling slack), and together they spread over that range: without jitter
    // they would all be 2 s within a few milliseconds of each other.
    assert!(shortest >= Duration::from_millis(990), "{waits:?}");
    assert!(longest <= Duration::from_millis(2600), "{waits:?}");
    assert!(
        longest - shortest >= Duration::from_millis(300),
        "retries came back together: {waits:?}"
    );
}

#[tokio::test]
async fn dead_letters_are_purged_by_age() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_partitions(3);
    let enqueuer = enqueuer(&queue);
    let refuse = |_event: Event<'static>| async { Err(HandlerError::permanent("refused")) };
    let dead_letters = async |n: u64| {
        let q = queue.clone();
        let worker = Worker::new(queue.clone(), refuse)
            .with_poll_interval(Duration::from_millis(10))
            .with_handler_isolation(false);
        run_until(worker, async || q.counts().await.unwrap().dead_letters == n).await;
    };
    for id in ["evt_old_1", "evt_old_2", "evt_old_3", "evt_old_4"] {
        assert_eq!(send(&enqueuer, &body(id)).await.0, 200);
    }
    dead_letters(4).await;
    let partitions: std::collections::HashSet<u16> =
        ["evt_old_1", "evt_old_2", "evt_old_3", "evt_old_4"]
            .iter()
            .map(|id| queue.partition_of(id))
            .collect();
    assert!(
        partitions.len() > 1,
        "spread over partitions: {partitions:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(&enqueuer, &body("evt_new")).await.0, 200);
    dead_letters(5).await;

    // Nothing is that old yet.
    assert_eq!(
        queue
            .purge_dead_letters(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // Ten years: a threshold far in the past, given to Redis as it is.
    let ten_years = Duration::from_secs(10 * 365 * 24 * 3600);
    assert_eq!(queue.purge_dead_letters(ten_years).await.unwrap(), 0);
    assert_eq!(queue.purge_dead_letters(Duration::MAX).await.unwrap(), 0);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 5);
    // The four given up on before the pause go; the newest stays.
    assert_eq!(
        queue
            .purge_dead_letters(Duration::from_millis(1000))
            .await
            .unwrap(),
        4
    );
    let left: Vec<String> = queue
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.event_id)
        .collect();
    assert_eq!(left, ["evt_new"]);
    // A purged event is still a duplicate for the rest of its window.
    assert_eq!(
        send(&enqueuer, &body("evt_old_1")).await,
        (200, "OK (duplicate)".into())
    );
    // Zero: all of them, even one whose id runs ahead of the server's clock (as
    // after the clock stepped back).
    let mut redis = connection(&server).await;
    let (seconds, _): (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    let ahead = format!("{}-0", (seconds + 3600) * 1000);
    let _: String = redis
        .xadd(
            "{notmeta-webhooks:0}:dead",
            &ahead,
            &[
                ("id", "evt_ahead"),
                ("type", "user.online"),
                ("attempt", "1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(queue.purge_dead_letters(Duration::ZERO).await.unwrap(), 2);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
}

async fn failures_retry_then_dead_letter(isolate: bool) {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let enqueuer = enqueuer(&queue);
    for id in ["evt_ok", "evt_flaky", "evt_refused", "evt_always"] {
        assert_eq!(send(&enqueuer, &body(id)).await.0, 200);
    }
    // A body that no longer parses (written by an older version, say).
    let mut redis = connection(&server).await;
    let _: String = redis
        .xadd(
            "{notmeta-webhooks:0}:stream",
            "*",
            &[
                ("id", "evt_poison"),
                ("type", "user.online"),
                ("body", "{not json"),
                ("attempt", "0"),
            ],
        )
        .await
        .unwrap();

    let runs = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let fixed = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = Arc::clone(&runs);
        let fixed = Arc::clone(&fixed);
        move |event: Event<'static>| {
            let n = {
                let mut runs = runs.lock().unwrap();
                let n = runs.entry(event.id.to_string()).or_default();
                *n += 1;
                *n
            };
            let fixed = fixed.load(Ordering::Relaxed) > 0;
            if event.id.as_str() == "evt_flaky" && n == 1 {
                panic!("designed panic, before the handler's future exists");
            }
            async move {
                match event.id.as_str() {
                    "evt_flaky" if n == 2 => panic!("designed panic, in the future"),
                    "evt_refused" if !fixed => Err(HandlerError::permanent("no such conversation")),
                    "evt_always" if !fixed => Err(HandlerError::temporary("downstream down")),
                    _ => Ok(()),
                }
            }
        }
    };
    let worker = |queue: &Queue| {
        Worker::new(queue.clone(), handler.clone())
            .with_max_attempts(3)
            .with_backoff(Duration::from_millis(50), Duration::from_millis(100))
            .with_poll_interval(Duration::from_millis(10))
            .with_handler_isolation(isolate)
    };
    let q = queue.clone();
    let stats = run_until(worker(&queue), async || {
        let c = q.counts().await.unwrap();
        c.dead_letters == 3 && c.pending + c.in_progress + c.retrying == 0
    })
    .await;
    assert_eq!(
        (stats.handled, stats.dead_lettered, stats.retried),
        (2, 3, 4)
    );
    assert_eq!(runs.lock().unwrap()["evt_flaky"], 3);
    assert_eq!(runs.lock().unwrap()["evt_always"], 3);
    let mut letters = queue.dead_letters(10).await.unwrap();
    letters.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let summary: Vec<(&str, u32)> = letters
        .iter()
        .map(|l| (l.event_id.as_str(), l.attempts))
        .collect();
    assert_eq!(
        summary,
        [("evt_always", 3), ("evt_poison", 1), ("evt_refused", 1)]
    );
    assert!(
        letters[0]
            .error
            .contains("downstream down (attempt 3 of 3)"),
        "{}",
        letters[0].error
    );
    assert!(
        letters[1].error.starts_with("the body does not parse"),
        "{}",
        letters[1].error
    );
    assert_eq!(
        letters[2].error,
        "permanent handler failure: no such conversation"
    );
    assert_eq!(letters[2].body, body("evt_refused"));
    // Dead events stay duplicates for the window.
    assert_eq!(
        send(&enqueuer, &body("evt_refused")).await.1,
        "OK (duplicate)"
    );

    // The cause is fixed: replay. The poison entry dies again, the others are handled.
    fixed.store(1, Ordering::Relaxed);
    assert_eq!(queue.replay_dead_letters(usize::MAX).await.unwrap(), 3);
    assert_eq!(queue.counts().await.unwrap().pending, 3);
    let q = queue.clone();
    let stats = run_until(worker(&queue), async || {
        let c = q.counts().await.unwrap();
        c.dead_letters == 1 && c.pending + c.in_progress + c.retrying == 0
    })
    .await;
    assert_eq!((stats.handled, stats.dead_lettered), (2, 1));
    assert_eq!(
        queue.dead_letters(10).await.unwrap()[0].event_id,
        "evt_poison"
    );
    // Acknowledged entries are deleted: the stream is empty.
    let len: u64 = redis.xlen("{notmeta-webhooks:0}:stream").await.unwrap();
    assert_eq!(len, 0);
}

#[tokio::test]
async fn a_reclaimed_entry_already_done_is_not_run_again() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    assert_eq!(send(&enqueuer(&queue), &body("evt_1")).await.0, 200);
    assert_eq!(send(&enqueuer(&queue), &body("evt_2")).await.0, 200);
    queue.counts().await.unwrap(); // creates the group
    // A worker read both and died; it had marked evt_1 done (its acknowledgement
    // never arrived: the state stands for a settle whose reply was lost).
    let mut redis = connection(&server).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            "workers",
            "ghost",
            "COUNT",
            "2",
            "STREAMS",
            "{notmeta-webhooks:0}:stream",
            ">",
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis
        .hset("{notmeta-webhooks:0}:event:evt_1", "s", "done")
        .await
        .unwrap();

    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        seen.lock().unwrap().push(event.id.to_string());
        async { Ok::<(), HandlerError>(()) }
    })
    .with_visibility_timeout(Duration::from_millis(300))
    .with_poll_interval(Duration::from_millis(10));
    let q = queue.clone();
    let stats = run_until(worker, async || {
        let c = q.counts().await.unwrap();
        c.pending + c.in_progress == 0
    })
    .await;
    assert_eq!(*ran.lock().unwrap(), ["evt_2"]);
    assert_eq!((stats.handled, stats.skipped), (1, 1));
}

/// Shutdown waits for handlers up to the deadline, then cancels the rest; an entry
/// whose handler may still run is never handed on: an isolated handler blocking its
/// thread is waited for (and its entry renewed meanwhile), and an entry cancelled
/// at the deadline is reclaimed only after the visibility timeout, so work the
/// handler started with `spawn_blocking` never runs twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_never_hands_on_an_entry_whose_handler_may_still_run() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    for id in ["evt_short", "evt_blocking", "evt_offloaded"] {
        assert_eq!(send(&enqueuer(&queue), &body(id)).await.0, 200);
    }
    // How many copies of the offloaded work run at once, at most.
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let (running, most, runs) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&runs));
        move |event: Event<'static>| {
            let (running, most, runs) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&runs));
            runs.lock().unwrap().push(event.id.to_string());
            async move {
                match event.id.as_str() {
                    "evt_short" => tokio::time::sleep(Duration::from_millis(200)).await,
                    // Blocks its (isolated) thread past the deadline.
                    "evt_blocking" => std::thread::sleep(Duration::from_millis(1500)),
                    _ => {
                        let work = tokio::task::spawn_blocking(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1500));
                            running.fetch_sub(1, Ordering::SeqCst);
                        });
                        let _ = work.await;
                    }
                }
                Ok::<(), HandlerError>(())
            }
        }
    };
    let visibility = Duration::from_secs(3);
    let worker = Worker::new(queue.clone(), handler.clone())
        .with_visibility_timeout(visibility)
        .with_shutdown_deadline(Duration::from_millis(500))
        .with_poll_interval(Duration::from_millis(10));
    let started = Instant::now();
    let stats = run_until(worker, async || runs.lock().unwrap().len() == 3).await;
    let stopped = Instant::now();
    // The blocking handler was waited for and finished; the offloaded one was
    // cancelled at the deadline and left.
    assert!(
        stopped - started >= Duration::from_millis(1400),
        "{:?}",
        stopped - started
    );
    assert_eq!((stats.handled, stats.abandoned), (2, 1), "{stats:?}");

    let next = Worker::new(queue.clone(), handler)
        .with_visibility_timeout(visibility)
        .with_poll_interval(Duration::from_millis(10));
    let stats = run_until(next, async || runs.lock().unwrap().len() == 4).await;
    let reclaimed = Instant::now();
    assert_eq!(runs.lock().unwrap()[3], "evt_offloaded");
    assert!(
        reclaimed - stopped >= Duration::from_millis(1500),
        "reclaimed {:?} after the shutdown",
        reclaimed - stopped
    );
    assert_eq!(stats.handled, 1);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two copies of the work ran at once"
    );
}

#[tokio::test]
async fn a_slow_handler_does_not_stall_the_others_and_concurrency_is_bounded() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            send(&enqueuer(&queue), &body(&format!("evt_{i}"))).await.0,
            200
        );
    }
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (r, p, d) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&done));
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        let (r, p, d) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&d));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .with_concurrency(4)
    .with_poll_interval(Duration::from_millis(5));
    // While all four run, nothing more is read: the rest stays pending.
    let q = queue.clone();
    let mut saw_backpressure = false;
    run_until(worker, async || {
        let c = q.counts().await.unwrap();
        if c.in_progress > 0 && c.pending > 0 {
            assert!(c.in_progress <= 4, "{c:?}");
            saw_backpressure = true;
        }
        done.load(Ordering::SeqCst) == 20
    })
    .await;
    assert!(saw_backpressure);
    assert_eq!(peak.load(Ordering::SeqCst), 4);
}

/// Redis killed (SIGKILL) and restarted mid-run with `appendfsync always`: every
/// event answered 200 survives and is handled exactly once; deliveries answered 503
/// while Redis was down are retried, as NotMeta does, until answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_a_redis_restart() {
    let dir = TempDir::new("aof");
    let mut server = RedisServer::start_durable(dir.path());
    let queue = Queue::connect(&server.url()).await.unwrap();
    let enqueuer = enqueuer(&queue).with_timeout(Duration::from_millis(500));
    let runs = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        *seen
            .lock()
            .unwrap()
            .entry(event.id.to_string())
            .or_default() += 1;
        async { Ok::<(), HandlerError>(()) }
    })
    .with_visibility_timeout(Duration::from_secs(2))
    .with_poll_interval(Duration::from_millis(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    const EVENTS: usize = 3000;
    let unavailable = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..8)
        .map(|c| {
            let enqueuer = enqueuer.clone();
            let unavailable = Arc::clone(&unavailable);
            tokio::spawn(async move {
                for i in (c..EVENTS).step_by(8) {
                    let b = body(&format!("evt_{i}"));
                    loop {
                        let (status, _) = send(&enqueuer, &b).await;
                        if status == 200 {
                            break;
                        }
                        assert_eq!(status, 503);
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    for sender in senders {
        sender.await.unwrap();
    }
    let q = queue.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = q.counts().await.unwrap();
        if c.pending + c.in_progress + c.retrying == 0 && runs.lock().unwrap().len() == EVENTS {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "Redis was down for some deliveries"
    );
    let runs = runs.lock().unwrap();
    assert!(runs.values().all(|&n| n == 1), "handled once each");
}

#[tokio::test]
async fn with_replicas_an_event_is_answered_200_once_a_replica_has_it() {
    let primary = RedisServer::start();
    let queue = Queue::connect(&primary.url())
        .await
        .unwrap()
        .with_replicas(1, Duration::from_millis(500));
    // (A replica just synced acknowledges its first write after about 100 ms.)
    let enqueuer = enqueuer(&queue);

    // No replica: 503, and NotMeta retries.
    let (status, _) = send(&enqueuer, &body("evt_alone")).await;
    assert_eq!(status, 503);

    let replica = RedisServer::start_replica_of(primary.port);
    let mut on_replica = connection(&replica).await;
    // The entry the primary took all the same is answered as a duplicate only
    // once the replica has it.
    let (status, text) = send(&enqueuer, &body("evt_alone")).await;
    assert_eq!((status, text.as_str()), (200, "OK (duplicate)"));
    let len: u64 = on_replica
        .xlen("{notmeta-webhooks:0}:stream")
        .await
        .unwrap();
    assert_eq!(len, 1);
    // A new event: on the replica as soon as it is answered 200.
    let (status, text) = send(&enqueuer, &body("evt_replicated")).await;
    assert_eq!((status, text.as_str()), (200, "OK"));
    let len: u64 = on_replica
        .xlen("{notmeta-webhooks:0}:stream")
        .await
        .unwrap();
    assert_eq!(len, 2);
}

/// The marks a new layout leaves in the previous one guard the same event as its
/// own writes: they are acknowledged as the new queue's are, even when the previous
/// `Queue` was not given `with_replicas` (its primary here has no replica at all).
#[tokio::test]
async fn with_replicas_the_previous_layout_s_marks_are_acknowledged_too() {
    let primary = RedisServer::start();
    let _replica = RedisServer::start_replica_of(primary.port);
    let alone = RedisServer::start();
    let new = Queue::connect(&primary.url())
        .await
        .unwrap()
        .with_namespace("shop-v2")
        .with_replicas(1, Duration::from_millis(300));
    let old = Queue::connect(&alone.url())
        .await
        .unwrap()
        .with_namespace("shop");
    let endpoint = enqueuer(&new).with_previous_queue(old.clone());
    // The old layout's primary cannot acknowledge the mark: 503, NotMeta retries.
    let (status, text) = send(&endpoint, &body("evt_moving")).await;
    assert_eq!(status, 503, "{text}");
    // Without the previous layout, the new queue takes it (its replica is there).
    let (status, text) = send(&enqueuer(&new), &body("evt_new")).await;
    assert_eq!((status, text.as_str()), (200, "OK"));
}

/// How many scripts Redis ran since its statistics were last reset.
async fn scripts_run(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The runs of the entries one read hands over start in one script, and successes
/// that end together are recorded together: 64 events handled at once (each
/// handler waits until all have started) take far fewer scripts than the two per
/// event a start and a settle each would (128), reads and reclaims included; each
/// event runs once and is settled.
#[tokio::test]
async fn runs_start_and_successes_settle_in_batches() {
    const N: usize = 64;
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let enqueuer = enqueuer(&queue);
    for i in 0..N {
        assert_eq!(
            send(&enqueuer, &body(&format!("evt_batch_{i}"))).await.0,
            200
        );
    }
    let mut redis = connection(&server).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis)
        .await
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let runs: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let worker = Worker::new(queue.clone(), {
        let (started, runs) = (Arc::clone(&started), Arc::clone(&runs));
        move |event: Event<'static>| {
            let started = Arc::clone(&started);
            *runs
                .lock()
                .unwrap()
                .entry(event.id.to_string())
                .or_default() += 1;
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                while started.load(Ordering::SeqCst) < N {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok::<(), HandlerError>(())
            }
        }
    })
    .with_concurrency(N);
    // Done once the stream is empty (each settled entry is deleted), asked without
    // a script.
    let mut polling = connection(&server).await;
    let stats = run_until(worker, async || {
        let left: u64 = polling.xlen("{notmeta-webhooks:0}:stream").await.unwrap();
        left == 0 && started.load(Ordering::SeqCst) == N
    })
    .await;
    let scripts = scripts_run(&mut redis).await;
    assert_eq!(stats.handled, N as u64);
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), N);
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
    assert!(
        scripts <= 32,
        "{scripts} scripts for {N} events (two each would be {})",
        2 * N
    );
}
