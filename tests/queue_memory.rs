//! The queue in memory (`Queue::in_memory`) with the same `Enqueuer` and `Worker`
//! as on Redis: dedup, retries, dead letters, several workers, the length bound,
//! renewal, hostile settings, and `Worker::run_until_idle`; then the test kit's
//! `TestQueue` (feature `testing`). An entry left running by a worker is waited for
//! and taken over in `tests/queue_idle.rs`, on every backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, QueueError, Worker};
use notmeta_webhooks::receiver::{HandlerError, Outcome};

mod common;
use common::queue::{body, enqueuer, send};

/// Plenty for every run here; the queue is idle long before.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs per event id, shared with a handler.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    /// Counts a run of `event`; how many runs it had before.
    fn count(&self, event: &Event<'_>) -> usize {
        let mut runs = self.0.lock().unwrap();
        let n = runs.entry(event.id.as_str().to_owned()).or_default();
        *n += 1;
        *n - 1
    }

    fn of(&self, id: &str) -> usize {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }

    fn ids(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A handler that counts runs and succeeds.
fn counting(
    runs: &Runs,
) -> impl Fn(Event<'static>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let runs = runs.clone();
    move |event: Event<'static>| {
        runs.count(&event);
        std::future::ready(Ok(()))
    }
}

fn idle(counts: notmeta_webhooks::queue::QueueCounts) -> bool {
    counts.pending + counts.in_progress + counts.retrying == 0
}

#[tokio::test]
async fn everything_enqueued_before_the_call_is_handled_once_before_it_returns() {
    let queue = Queue::in_memory();
    assert!(queue.is_in_memory() && !queue.is_postgres());
    queue.check_layout().await.unwrap();
    let endpoint = enqueuer(&queue);
    for i in 0..50 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    assert_eq!(queue.counts().await.unwrap().pending, 50);

    let runs = Runs::default();
    let stats = Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!(stats.handled, 50);
    assert_eq!((runs.ids(), runs.total()), (50, 50));
    assert!(idle(queue.counts().await.unwrap()));

    // Idle already: returns at once, having done nothing, even with no time at all.
    let again = Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.handled, 0);
    assert_eq!(runs.total(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entry_per_event_id_and_duplicates_are_answered_for_the_window() {
    let queue = Queue::in_memory();
    let endpoint = Arc::new(enqueuer(&queue));
    // Sixteen concurrent deliveries of one id: one entry.
    let sends: Vec<_> = (0..16)
        .map(|_| {
            let endpoint = Arc::clone(&endpoint);
            tokio::spawn(async move { send(&endpoint, &body("evt_dup")).await })
        })
        .collect();
    let mut queued = 0;
    for sent in sends {
        let (status, text) = sent.await.unwrap();
        assert_eq!(status, 200);
        queued += usize::from(text == "OK");
    }
    assert_eq!(queued, 1);
    assert_eq!(queue.counts().await.unwrap().pending, 1);

    let runs = Runs::default();
    let stats = Worker::new(queue.clone(), counting(&runs))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!((stats.handled, runs.of("evt_dup")), (1, 1));
    // Handled: still a duplicate for the window, and the answer says so.
    let answer = endpoint
        .receive(
            &body("evt_dup"),
            [notmeta_webhooks::sign(
                &body("evt_dup"),
                common::queue::SECRET,
            )],
        )
        .await;
    assert_eq!(
        (answer.body(), answer.outcome()),
        ("OK (duplicate)", Outcome::Duplicate)
    );
    assert_eq!(queue.counts().await.unwrap().pending, 0);
}

#[tokio::test(start_paused = true)]
async fn the_dedup_window_and_the_backoff_pass_on_a_paused_clock() {
    let queue = Queue::in_memory().with_dedup_window(Duration::from_secs(10));
    let endpoint = enqueuer(&queue);
    assert_eq!(send(&endpoint, &body("evt_1")).await.1, "OK");
    // Fails three times (the default backoff: at most 1 s, 2 s, 4 s), then succeeds.
    let runs = Runs::default();
    let counted = runs.clone();
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let before = counted.count(&event);
        async move {
            if before < 3 {
                Err(HandlerError::temporary("downstream down"))
            } else {
                Ok(())
            }
        }
    })
    .with_handler_isolation(false)
    // The lease keeps the id too: shorter than the window, so the window decides.
    .with_visibility_timeout(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let stats = worker.run_until_idle(LIMIT).await.unwrap();
    let waited = started.elapsed();
    assert_eq!((stats.retried, stats.handled, runs.of("evt_1")), (3, 1, 4));
    // Each wait is between half and all of its step.
    assert!(
        waited >= Duration::from_millis(3_500) && waited <= Duration::from_secs(8),
        "{waited:?}"
    );

    // Within the window a duplicate; after it, a new entry.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(send(&endpoint, &body("evt_1")).await.1, "OK (duplicate)");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(send(&endpoint, &body("evt_1")).await.1, "OK");
    assert_eq!(queue.counts().await.unwrap().pending, 1);
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged() {
    let queue = Queue::in_memory();
    let endpoint = enqueuer(&queue);
    for id in ["evt_bad", "evt_flaky", "evt_fine"] {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let runs = Runs::default();
    let counted = runs.clone();
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        counted.count(&event);
        let id = event.id.as_str().to_owned();
        async move {
            match id.as_str() {
                "evt_bad" => Err(HandlerError::permanent("no such customer")),
                "evt_flaky" => Err(HandlerError::temporary("CRM down")),
                _ => Ok(()),
            }
        }
    })
    .with_max_attempts(3)
    .with_backoff(Duration::ZERO, Duration::ZERO);
    let stats = worker.run_until_idle(LIMIT).await.unwrap();
    assert_eq!(
        (stats.handled, stats.dead_lettered, stats.retried),
        (1, 2, 2)
    );
    assert_eq!((runs.of("evt_bad"), runs.of("evt_flaky")), (1, 3));
    let counts = queue.counts().await.unwrap();
    assert!(idle(counts));
    assert_eq!(counts.dead_letters, 2);

    // Oldest first, with what a person needs to decide.
    let letters = queue.dead_letters(10).await.unwrap();
    let seen: Vec<_> = letters
        .iter()
        .map(|l| (l.event_id.as_str(), l.attempts))
        .collect();
    assert_eq!(seen, [("evt_bad", 1), ("evt_flaky", 3)]);
    assert!(
        letters[0].error.contains("no such customer"),
        "{}",
        letters[0].error
    );
    assert!(
        letters[1].error.contains("(attempt 3 of 3)"),
        "{}",
        letters[1].error
    );
    assert_eq!(letters[0].body, body("evt_bad"));
    assert_eq!(letters[0].event_type, "user.online");
    assert_eq!(queue.dead_letters(1).await.unwrap().len(), 1);
    // A dead letter's id stays a duplicate.
    assert_eq!(send(&endpoint, &body("evt_bad")).await.1, "OK (duplicate)");

    // Fixed: replayed, with their attempts reset, and handled.
    assert_eq!(queue.replay_dead_letters(1).await.unwrap(), 1);
    assert_eq!(queue.replay_dead_letters(usize::MAX).await.unwrap(), 1);
    let fixed = Runs::default();
    let stats = Worker::new(queue.clone(), counting(&fixed))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!(stats.handled, 2);
    assert_eq!((fixed.of("evt_bad"), fixed.of("evt_flaky")), (1, 1));
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);

    // Purged by age; the id stays a duplicate for its window.
    assert_eq!(send(&endpoint, &body("evt_gone")).await.1, "OK");
    let stats = Worker::new(queue.clone(), |_: Event<'static>| async {
        Err::<(), _>(HandlerError::permanent("no"))
    })
    .run_until_idle(LIMIT)
    .await
    .unwrap();
    assert_eq!(stats.dead_lettered, 1);
    let day = Duration::from_secs(24 * 60 * 60);
    assert_eq!(queue.purge_dead_letters(day).await.unwrap(), 0);
    assert_eq!(queue.purge_dead_letters(Duration::MAX).await.unwrap(), 0);
    assert_eq!(queue.purge_dead_letters(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);
    assert_eq!(send(&endpoint, &body("evt_gone")).await.1, "OK (duplicate)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_on_clones_share_the_entries_and_run_each_once() {
    let queue = Queue::in_memory();
    let endpoint = enqueuer(&queue);
    for i in 0..300 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    let runs = Runs::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let counted = runs.clone();
            let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
                counted.count(&event);
                async {
                    // Long enough that one worker alone would take a third of a second.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<(), HandlerError>(())
                }
            })
            .with_concurrency(4);
            tokio::spawn(worker.run_until_idle(LIMIT))
        })
        .collect();
    let mut handled = Vec::new();
    for worker in workers {
        handled.push(worker.await.unwrap().unwrap().handled);
    }
    assert_eq!(handled.iter().sum::<u64>(), 300, "{handled:?}");
    assert_eq!((runs.ids(), runs.total()), (300, 300));
    // The work was shared.
    assert!(
        handled.iter().filter(|&&n| n > 0).count() >= 2,
        "{handled:?}"
    );
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_an_enqueue_without_polling() {
    let queue = Queue::in_memory();
    let (ran, mut ran_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let _ = ran.send(event.id.as_str().to_owned());
        async { Ok::<(), HandlerError>(()) }
    })
    // A poll interval that would show: a wake-up must not wait for it.
    .with_poll_interval(Duration::from_secs(3600));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let endpoint = enqueuer(&queue);
    for id in ["evt_a", "evt_b"] {
        let sent = tokio::time::Instant::now();
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
        let got = tokio::time::timeout(Duration::from_secs(10), ran_rx.recv())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(id));
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
    }
    stop.send(()).unwrap();
    assert_eq!(running.await.unwrap().unwrap().handled, 2);
}

#[tokio::test]
async fn the_length_bound_refuses_with_503_until_entries_are_handled() {
    let queue = Queue::in_memory();
    let endpoint = enqueuer(&queue).with_max_len(3);
    for i in 0..3 {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    let refused = endpoint
        .receive(
            &body("evt_3"),
            [notmeta_webhooks::sign(
                &body("evt_3"),
                common::queue::SECRET,
            )],
        )
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.outcome(), Outcome::StoreFull);
    // Refused, so not remembered: NotMeta's retry is queued once there is room.
    assert_eq!(queue.counts().await.unwrap().pending, 3);
    let stats = Worker::new(queue.clone(), counting(&Runs::default()))
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!(stats.handled, 3);
    assert_eq!(
        send(&endpoint, &body("evt_3")).await,
        (200, "OK".to_owned())
    );
}

#[tokio::test]
async fn hostile_settings_are_clamped_or_end_in_a_clear_error() {
    let queue = Queue::in_memory().with_dedup_window(Duration::ZERO);
    let endpoint = enqueuer(&queue);
    // No concurrency at all is one handler; all of it is as many as there are.
    for concurrency in [0, usize::MAX] {
        for i in 0..20 {
            send(&endpoint, &body(&format!("evt_{concurrency}_{i}"))).await;
        }
        let runs = Runs::default();
        let stats = Worker::new(queue.clone(), counting(&runs))
            .with_concurrency(concurrency)
            .with_poll_interval(Duration::ZERO)
            .with_visibility_timeout(Duration::ZERO)
            .with_shutdown_deadline(Duration::ZERO)
            .run_until_idle(LIMIT)
            .await
            .unwrap();
        assert_eq!((stats.handled, runs.total()), (20, 20), "{concurrency}");
    }
    // A zero window is at least a second: a redelivery at once is a duplicate.
    assert_eq!(send(&endpoint, &body("evt_0_0")).await.1, "OK (duplicate)");

    // No attempts at all is one attempt.
    send(&endpoint, &body("evt_once")).await;
    let always_failing =
        |_: Event<'static>| async { Err::<(), _>(HandlerError::temporary("down")) };
    let stats = Worker::new(queue.clone(), always_failing)
        .with_max_attempts(0)
        .with_backoff(Duration::ZERO, Duration::ZERO)
        .run_until_idle(LIMIT)
        .await
        .unwrap();
    assert_eq!((stats.dead_lettered, stats.retried), (1, 0));

    // Endless attempts never make the queue idle: the limit ends the run, with
    // what is left.
    send(&endpoint, &body("evt_endless")).await;
    let error = Worker::new(queue.clone(), always_failing)
        .with_max_attempts(u32::MAX)
        .with_backoff(Duration::ZERO, Duration::ZERO)
        .run_until_idle(Duration::from_millis(300))
        .await
        .unwrap_err();
    let QueueError::NotIdle { limit, left } = error else {
        panic!("{error:?}");
    };
    assert_eq!(limit, Duration::from_millis(300));
    assert_eq!(
        left.pending + left.in_progress + left.retrying,
        1,
        "{left:?}"
    );
    assert!(error_text(&QueueError::NotIdle { limit, left }).contains("not idle within 300ms"));

    // A backoff of forever: the retry waits, the run ends at the limit.
    let queue = Queue::in_memory();
    send(&enqueuer(&queue), &body("evt_later")).await;
    let stats_error = Worker::new(queue.clone(), always_failing)
        .with_backoff(Duration::MAX, Duration::MAX)
        .run_until_idle(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(stats_error, QueueError::NotIdle { left, .. } if left.retrying == 1),
        "{stats_error:?}"
    );
    // A limit of forever is taken as 100 years, not an overflow.
    let fresh = Queue::in_memory();
    send(&enqueuer(&fresh), &body("evt_x")).await;
    let stats = Worker::new(fresh.clone(), counting(&Runs::default()))
        .run_until_idle(Duration::MAX)
        .await
        .unwrap();
    assert_eq!(stats.handled, 1);

    // A visibility timeout below a handler's run: renewed, run once, not lost.
    send(&enqueuer(&fresh), &body("evt_long")).await;
    let runs = Runs::default();
    let counted = runs.clone();
    let stats = Worker::new(fresh.clone(), move |event: Event<'static>| {
        counted.count(&event);
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .with_visibility_timeout(Duration::ZERO)
    .run_until_idle(LIMIT)
    .await
    .unwrap();
    assert_eq!((stats.handled, stats.lost, runs.of("evt_long")), (1, 0, 1));
}

fn error_text(error: &QueueError) -> String {
    error.to_string()
}

#[cfg(feature = "testing")]
mod kit {
    use super::*;
    use notmeta_webhooks::EventType;
    use notmeta_webhooks::testing::{TestQueue, sample};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn signed_samples_go_through_the_endpoint_and_a_worker_drains_them() {
        let kit = TestQueue::new();
        assert!(kit.queue().is_in_memory());
        // Every type but the challenge, which the endpoint answers itself.
        let events: Vec<_> = EventType::ALL
            .iter()
            .filter(|&&t| t != EventType::WebhookVerified)
            .map(|&t| sample(t))
            .collect();
        for event in &events {
            let answer = kit.post(event).await;
            assert_eq!((answer.status().as_u16(), answer.body()), (200, "OK"));
        }
        // Signed with the kit's secret: anything else is refused.
        let forged = kit
            .enqueuer()
            .receive(
                &events[0].body(),
                [notmeta_webhooks::sign(&events[0].body(), "whsec_other")],
            )
            .await;
        assert_eq!(forged.status(), 400);
        assert_eq!(kit.post(&events[0]).await.body(), "OK (duplicate)");

        let runs = Runs::default();
        let stats = kit.run_until_idle(counting(&runs)).await.unwrap();
        assert_eq!(stats.handled, events.len() as u64);
        for event in &events {
            assert_eq!(runs.of(event.event_id()), 1, "{}", event.event_id());
        }
    }

    #[tokio::test]
    async fn the_kit_retries_at_once_and_replays_dead_letters() {
        let kit = TestQueue::new();
        let clone = kit.clone();
        let event = sample(EventType::MessageReceived).text("hola");
        assert_eq!(clone.post(&event).await.status(), 200);
        let failures = Arc::new(AtomicUsize::new(0));
        let failed = Arc::clone(&failures);
        let stats = kit
            .worker(move |_: Event<'static>| {
                failed.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(HandlerError::temporary("down")) }
            })
            .with_max_attempts(4)
            .run_until_idle(LIMIT)
            .await
            .unwrap();
        assert_eq!((stats.retried, stats.dead_lettered), (3, 1));
        assert_eq!(failures.load(Ordering::SeqCst), 4);
        let letters = kit.queue().dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].event_id, event.event_id());
        assert_eq!(letters[0].body, event.body());

        assert_eq!(kit.queue().replay_dead_letters(10).await.unwrap(), 1);
        let runs = Runs::default();
        let stats = kit.run_until_idle(counting(&runs)).await.unwrap();
        assert_eq!((stats.handled, runs.of(event.event_id())), (1, 1));
    }

    #[tokio::test]
    async fn the_kit_endpoint_can_be_bounded() {
        let kit = TestQueue::new().with_enqueuer(|e| e.with_max_len(2));
        let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|_| async {
            kit.post(&sample(EventType::UserOnline))
                .await
                .status()
                .as_u16()
        }))
        .await;
        assert_eq!(
            statuses.iter().filter(|&&s| s == 200).count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|&&s| s == 503).count(),
            2,
            "{statuses:?}"
        );
        let stats = kit
            .run_until_idle(counting(&Runs::default()))
            .await
            .unwrap();
        assert_eq!(stats.handled, 2);
    }
}
