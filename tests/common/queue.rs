//! What the queue's test files share: a signing secret, event bodies, an endpoint,
//! sending to it, and a worker run until a condition (such as drained).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::{Handler, HandlerError};
use notmeta_webhooks::{Verifier, sign};

/// The webhook secret of these tests.
pub(crate) const SECRET: &str = "whsec_queue";

/// A `user.online` event with this id.
pub(crate) fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

/// The queue's endpoint with [`SECRET`].
pub(crate) fn enqueuer(queue: &Queue) -> Enqueuer {
    Enqueuer::new(Verifier::new(SECRET).unwrap(), queue.clone())
}

/// Sends `body`, signed, to `enqueuer`: the status and the answer's text.
pub(crate) async fn send(enqueuer: &Enqueuer, body: &[u8]) -> (u16, String) {
    let answer = enqueuer
        .receive(body, [sign(body, SECRET).as_bytes()])
        .await;
    (answer.status().as_u16(), answer.body().to_owned())
}

/// Runs `worker` until `done` says so (checked every 20 ms, for at most `limit`),
/// then shuts it down.
pub(crate) async fn run_until<H, F>(worker: Worker<H>, limit: Duration, mut done: F) -> WorkerStats
where
    H: Handler,
    F: AsyncFnMut() -> bool,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "the worker did not get there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap()
}

/// Nothing waiting, running or retrying.
pub(crate) async fn drained(queue: &Queue) -> bool {
    let counts = queue.counts().await.unwrap();
    counts.pending + counts.in_progress + counts.retrying == 0
}

/// Runs of each event id, as a handler saw them.
pub(crate) type Runs = Arc<Mutex<HashMap<String, usize>>>;

/// How many runs `id` has had.
pub(crate) fn runs_of(runs: &Runs, id: &str) -> usize {
    runs.lock().unwrap().get(id).copied().unwrap_or(0)
}

/// Counts a run of `event`: how many it had before.
pub(crate) fn count(runs: &Runs, event: &Event<'_>) -> usize {
    let mut runs = runs.lock().unwrap();
    let n = runs.entry(event.id.as_str().to_owned()).or_default();
    *n += 1;
    *n - 1
}

/// A handler that counts runs and succeeds.
pub(crate) fn counting(
    runs: &Runs,
) -> impl Fn(Event<'static>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let runs = Arc::clone(runs);
    move |event: Event<'static>| {
        count(&runs, &event);
        std::future::ready(Ok(()))
    }
}
