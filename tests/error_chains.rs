//! Every error type prints its cause once in an error chain (as anyhow's `{:#}` and
//! tracing's error fields print it): either in `Display` or through `source()`,
//! never both.

use std::error::Error as StdError;

use notmeta_webhooks::axum::WebhookRejection;
use notmeta_webhooks::dedup::StoreError;
use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Error, Event};

/// The error and its sources, joined as a chain printer joins them.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn assert_once(error: &dyn StdError, cause: &str) {
    let text = chain(error);
    assert_eq!(text.matches(cause).count(), 1, "{cause:?} in {text:?}");
}

#[derive(Debug)]
struct Cause;

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the distinctive cause")
    }
}

impl StdError for Cause {}

#[test]
fn handler_error() {
    for error in [
        HandlerError::temporary(Cause),
        HandlerError::permanent(Cause),
    ] {
        assert_once(&error, "the distinctive cause");
        assert!(!error.to_string().contains("distinctive"), "{error}");
    }
}

#[test]
fn store_error() {
    let error = StoreError::new(Cause);
    assert_once(&error, "the distinctive cause");
    assert_eq!(error.to_string(), "the idempotency store failed");
}

#[test]
fn parse_error_and_rejection() {
    let error: Error = Event::parse_unverified(b"{\"id\": nope}").unwrap_err();
    let cause = error.source().expect("the JSON parser's error").to_string();
    assert_once(&error, &cause);
    let rejection = WebhookRejection::from(error);
    assert_once(&rejection, &cause);
    assert_eq!(rejection.to_string(), rejection.error().to_string());
}

#[test]
fn data_and_timestamp_errors() {
    let event = Event::parse_unverified(
        br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":"user_1"}}}"#,
    )
    .unwrap();
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Mine {
        missing: String,
    }
    let error = event.data_as::<Mine>().unwrap_err();
    let cause = error.source().expect("serde's error").to_string();
    assert_once(&error, &cause);

    let error = "yesterday".parse::<Timestamp>().unwrap_err();
    let cause = error.source().expect("the date parser's error").to_string();
    assert_once(&error, &cause);
}
