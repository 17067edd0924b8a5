//! What the queue's test files share: a signing secret, event bodies, an endpoint,
//! sending to it, and a worker run until a condition (such as drained).

use std::time::{Duration, Instant};

use notmeta_webhooks::queue::{Enqueuer, Queue, Worker, WorkerStats};
use notmeta_webhooks::receiver::Handler;
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
