//! Answering the verification challenge.
//!
//! When a webhook is created NotMeta sends a signed `webhook.verified` event; the
//! receiver proves it holds the secret by answering `200` with the body being exactly
//! the `challenge` string, as `text/plain`.

use http::{HeaderValue, Response, StatusCode, header};

use super::{Event, WebhookVerified};

/// The `Content-Type` of a challenge answer, and of every answer the endpoints send.
pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

impl WebhookVerified<'_> {
    /// The answer NotMeta expects: `200`, `text/plain`, body exactly the challenge.
    ///
    /// ```
    /// use notmeta_webhooks::{Event, EventKind};
    ///
    /// let event = Event::parse_unverified(br#"{"id":"evt_verify_123","type":"webhook.verified",
    ///   "created_at":"2024-01-01T00:00:00Z","data":{"webhook_id":"wh_1","challenge":"challenge_string_123"}}"#)?;
    /// let EventKind::WebhookVerified(v) = &event.kind else { unreachable!() };
    /// let response = v.response();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.body(), "challenge_string_123");
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn response(&self) -> Response<String> {
        challenge_response(&self.challenge)
    }
}

impl Event<'_> {
    /// For a `webhook.verified` event, the answer NotMeta expects; `None` for every
    /// other event.
    ///
    /// ```
    /// use notmeta_webhooks::{sign, Verifier};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let body = br#"{"id":"evt_verify_123","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z",
    ///                "data":{"webhook_id":"wh_123456789","challenge":"challenge_string_123"}}"#;
    /// let event = verifier.verify(body, [&sign(body, "whsec_abc123")])?.parse()?;
    /// if let Some(answer) = event.challenge_response() {
    ///     assert_eq!(answer.status(), http::StatusCode::OK);
    ///     assert_eq!(answer.headers()["content-type"], "text/plain; charset=utf-8");
    ///     assert_eq!(answer.body(), "challenge_string_123");
    /// }
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn challenge_response(&self) -> Option<Response<String>> {
        self.challenge().map(challenge_response)
    }
}

fn challenge_response(challenge: &str) -> Response<String> {
    let mut response = Response::new(challenge.to_owned());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
}
