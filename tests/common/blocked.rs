//! A worker with the default settings (a short visibility timeout aside) whose
//! handlers block both threads of its runtime for five visibility timeouts, while
//! another worker, on a runtime of its own, takes over every entry left idle that
//! long: the first worker's renewals go on regardless, so each event runs once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::HandlerError;

use super::queue::{body, enqueuer, send};

/// Runs by worker and event id ("A:evt_1").
type Runs = Arc<Mutex<HashMap<String, usize>>>;

/// A handler that records its runs under `name`, and blocks its thread for
/// `block` (counted in `blocking` meanwhile).
fn blocking(
    name: &'static str,
    runs: &Runs,
    blocking: &Arc<AtomicUsize>,
    block: Duration,
) -> impl notmeta_webhooks::receiver::Handler + use<> {
    let (runs, blocking) = (Arc::clone(runs), Arc::clone(blocking));
    move |event: Event<'static>| {
        *runs
            .lock()
            .unwrap()
            .entry(format!("{name}:{}", event.id))
            .or_default() += 1;
        blocking.fetch_add(1, Ordering::SeqCst);
        // Blocking work (a sync client, a CPU-bound step): no `.await`.
        std::thread::sleep(block);
        blocking.fetch_sub(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    }
}

/// Waits (blocking the calling thread) until `done`, at most 10 s.
fn wait(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The run: `connect` opens the queue (on the runtime that calls it: each
/// worker's runtime has its own).
pub(crate) fn blocked_threads_keep_their_entries<C, F>(connect: C)
where
    C: Fn() -> F + Send + Clone + 'static,
    F: Future<Output = Queue>,
{
    let visibility = Duration::from_millis(300);
    let block = visibility * 5;
    let runs = Runs::default();
    let (blocked, idle) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = a.block_on(connect());
    a.block_on(async {
        for id in ["evt_1", "evt_2"] {
            assert_eq!(send(&enqueuer(&queue), &body(id)).await.0, 200);
        }
    });
    // A: the defaults but for the visibility timeout (renewed every 100 ms).
    let worker = Worker::new(queue.clone(), blocking("A", &runs, &blocked, block))
        .with_consumer_name("A")
        .with_visibility_timeout(visibility)
        .with_poll_interval(Duration::from_millis(10));
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let running_a = a.spawn(worker.run(async {
        let _ = stopped_a.await;
    }));
    // Both threads of A's runtime blocked at once, nothing of it runs: by both
    // handlers, or by one and a task that blocks too (Tokio may hold the second
    // entry's task behind the first, on the first's thread).
    wait("a handler of A blocking", || {
        blocked.load(Ordering::SeqCst) >= 1
    });
    if blocked.load(Ordering::SeqCst) < 2 {
        let blocked = Arc::clone(&blocked);
        drop(a.spawn(async move {
            blocked.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(block);
            blocked.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    wait("both of A's threads blocked", || {
        blocked.load(Ordering::SeqCst) >= 2
    });
    // B, on a runtime of its own, takes over any entry idle for the visibility
    // timeout.
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let running_b = std::thread::spawn({
        let (connect, runs, idle) = (connect.clone(), Arc::clone(&runs), Arc::clone(&idle));
        move || -> WorkerStats {
            let b = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            b.block_on(async move {
                let worker =
                    Worker::new(connect().await, blocking("B", &runs, &idle, Duration::ZERO))
                        .with_consumer_name("B")
                        .with_visibility_timeout(visibility)
                        .with_poll_interval(Duration::from_millis(10));
                worker
                    .run(async {
                        let _ = stopped_b.await;
                    })
                    .await
                    .unwrap()
            })
        }
    });
    let stats_a = a.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !super::queue::drained(&queue).await {
            assert!(Instant::now() < deadline, "the queue was not drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // B had the time to take over what it could.
        tokio::time::sleep(visibility * 2).await;
        stop_a.send(()).unwrap();
        running_a.await.unwrap().unwrap()
    });
    stop_b.send(()).unwrap();
    let stats_b = running_b.join().unwrap();
    let runs = runs.lock().unwrap().clone();
    let expected: HashMap<String, usize> = [("A:evt_1".to_owned(), 1), ("A:evt_2".to_owned(), 1)]
        .into_iter()
        .collect();
    assert_eq!(runs, expected, "A {stats_a:?}, B {stats_b:?}");
    assert_eq!((stats_a.handled, stats_a.lost), (2, 0), "{stats_a:?}");
    assert_eq!(stats_b.handled, 0, "{stats_b:?}");
}
