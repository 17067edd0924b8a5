//! What the queue's test files share: a signing secret, event bodies, an endpoint,
//! and sending to it.

use notmeta_webhooks::queue::{Enqueuer, Queue};
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
