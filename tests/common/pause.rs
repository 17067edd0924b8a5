//! The pause scenarios, written once and run on each backend (`tests/queue_pause.rs`
//! on Redis, `tests/postgres_queue_pause.rs` on PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::HandlerError;
use tokio::sync::Notify;

use crate::common::queue::{body, enqueuer, send};

/// How many runs each event id had, shared with a handler.
type Runs = Arc<Mutex<HashMap<String, usize>>>;

fn runs_of(runs: &Runs, id: &str) -> usize {
    runs.lock().unwrap().get(id).copied().unwrap_or(0)
}

fn total(runs: &Runs) -> usize {
    runs.lock().unwrap().values().sum()
}

/// Waits until `done` holds, checked every 20 ms, for at most 30 s.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running worker and the means to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerStats, notmeta_webhooks::queue::QueueError>>,
}

impl Running {
    fn start<H: notmeta_webhooks::receiver::Handler>(worker: Worker<H>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) -> WorkerStats {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

/// A paused queue accepts events (200), its worker starts none of them while they
/// wait, and a resume lets the worker drain them.
pub(crate) async fn a_paused_worker_starts_nothing_and_resume_drains(queue: Queue) {
    assert!(!queue.is_paused().await.unwrap());
    assert_eq!(queue.counts().await.unwrap().oldest_pending, None);
    queue.pause().await.unwrap();
    assert!(queue.is_paused().await.unwrap());
    // Pausing again changes nothing.
    queue.pause().await.unwrap();
    assert!(queue.counts().await.unwrap().paused);

    let endpoint = enqueuer(&queue);
    for i in 0..5 {
        let answer = send(&endpoint, &body(&format!("evt_paused_{i}"))).await;
        assert_eq!(answer, (200, "OK".to_owned()));
    }
    let runs = Runs::default();
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        *seen
            .lock()
            .unwrap()
            .entry(event.id.to_string())
            .or_default() += 1;
        async { Ok::<(), HandlerError>(()) }
    })
    .with_poll_interval(Duration::from_millis(20));
    let running = Running::start(worker);

    // Dozens of passes of the read loop: nothing is taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total(&runs), 0);
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_progress), (5, 0), "{counts:?}");
    assert!(counts.paused);
    let oldest = counts.oldest_pending.expect("entries wait");
    assert!(
        oldest >= Duration::from_millis(1400) && oldest < Duration::from_secs(60),
        "{oldest:?}"
    );

    queue.resume().await.unwrap();
    assert!(!queue.is_paused().await.unwrap());
    wait_for("the queue drains after the resume", async || {
        total(&runs) == 5
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(stats.handled, 5);
    for i in 0..5 {
        assert_eq!(runs_of(&runs, &format!("evt_paused_{i}")), 1);
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.pending + counts.in_progress + counts.retrying, 0);
    assert!(!counts.paused);
    assert_eq!(counts.oldest_pending, None);
}

/// Paused while a handler runs: the run goes on and settles, a scheduled retry stays
/// scheduled past its time, and an event enqueued meanwhile waits; after the resume
/// both run.
pub(crate) async fn a_pause_lets_running_handlers_settle_and_holds_retries(queue: Queue) {
    let endpoint = enqueuer(&queue);
    let release = Arc::new(Notify::new());
    let runs = Runs::default();
    let (seen, gate) = (Arc::clone(&runs), Arc::clone(&release));
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let id = event.id.to_string();
        let run = {
            let mut runs = seen.lock().unwrap();
            let n = runs.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let gate = Arc::clone(&gate);
        async move {
            match id.as_str() {
                "evt_slow" => {
                    gate.notified().await;
                    Ok(())
                }
                "evt_flaky" if run == 1 => Err(HandlerError::temporary("not yet")),
                _ => Ok(()),
            }
        }
    })
    .with_concurrency(4)
    .with_poll_interval(Duration::from_millis(20))
    // The retry is due 1 to 2 s after the failure.
    .with_backoff(Duration::from_secs(2), Duration::from_secs(2));
    let running = Running::start(worker);

    for id in ["evt_slow", "evt_flaky"] {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    wait_for(
        "the slow run started and the flaky one failed",
        async || runs_of(&runs, "evt_slow") == 1 && queue.counts().await.unwrap().retrying == 1,
    )
    .await;
    queue.pause().await.unwrap();
    // Past any pass of the read loop that began before the pause.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        send(&endpoint, &body("evt_later")).await,
        (200, "OK".to_owned())
    );

    // The running handler finishes and its entry settles while paused.
    release.notify_one();
    wait_for("the running entry settled", async || {
        queue.counts().await.unwrap().in_progress == 0
    })
    .await;
    // Well past the retry's time: still scheduled, and nothing new started.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runs_of(&runs, "evt_flaky"), 1);
    assert_eq!(runs_of(&runs, "evt_later"), 0);
    let counts = queue.counts().await.unwrap();
    assert!(counts.paused);
    assert_eq!(counts.in_progress, 0, "{counts:?}");
    assert_eq!(
        counts.pending + counts.retrying,
        2,
        "the retry and the new entry wait: {counts:?}"
    );

    queue.resume().await.unwrap();
    wait_for("the retry and the new entry ran", async || {
        runs_of(&runs, "evt_flaky") == 2 && runs_of(&runs, "evt_later") == 1
    })
    .await;
    let stats = running.stop().await;
    assert_eq!((stats.handled, stats.retried), (3, 1));
    assert_eq!(runs_of(&runs, "evt_slow"), 1);
}

/// A worker busy on a backlog: once `pause` returns, it starts at most what one
/// pass of its read loop takes (its concurrency, 4), and then nothing. Returns how
/// many started after the pause returned, and the latest of those starts.
pub(crate) async fn a_busy_worker_stops_taking_within_one_pass(queue: Queue) -> (usize, Duration) {
    let endpoint = enqueuer(&queue);
    let ids: Vec<String> = (0..120).map(|i| format!("evt_busy_{i}")).collect();
    for id in &ids {
        assert_eq!(send(&endpoint, &body(id)).await.0, 200);
    }
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = Arc::clone(&starts);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        seen.lock().unwrap().push(Instant::now());
        async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .with_concurrency(4);
    let running = Running::start(worker);
    wait_for("the worker is busy", async || {
        starts.lock().unwrap().len() >= 20
    })
    .await;
    queue.pause().await.unwrap();
    let paused_at = Instant::now();
    // Many handler durations and poll intervals.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after: Vec<Duration> = starts
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > paused_at)
        .map(|t| t.duration_since(paused_at))
        .collect();
    assert!(
        after.len() <= 4,
        "{} started after the pause: {after:?}",
        after.len()
    );
    let total = starts.lock().unwrap().len();
    assert!(total < ids.len(), "the backlog drained while paused");
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.in_progress, 0, "{counts:?}");
    assert_eq!(
        counts.pending,
        u64::try_from(ids.len() - total).unwrap(),
        "{counts:?}"
    );
    queue.resume().await.unwrap();
    wait_for("the backlog drains after the resume", async || {
        starts.lock().unwrap().len() == ids.len()
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(stats.handled, 120);
    (after.len(), after.into_iter().max().unwrap_or_default())
}
