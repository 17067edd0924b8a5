//! One span per delivery: event id, type and outcome; never a secret or a
//! signature. Refused requests are logged at `debug`, so forged traffic cannot flood
//! the logs; handler failures at `warn`, panics at `error`.

use std::future::Future;

use tracing::Instrument as _;
use tracing::field::Empty;

use super::report::DeliveryReport;
use super::{Answer, Outcome};
use crate::event::Event;

pub(super) async fn delivery(delivery: impl Future<Output = Answer>) -> Answer {
    let span = span();
    let answer = delivery.instrument(span.clone()).await;
    answered(&span, &answer);
    answer
}

/// The span of a request refused before a delivery began (while its body was read).
pub(super) fn refused(refuse: impl FnOnce() -> Answer) -> Answer {
    let span = span();
    let answer = span.in_scope(refuse);
    answered(&span, &answer);
    answer
}

fn span() -> tracing::Span {
    tracing::info_span!(
        "notmeta_webhook",
        event_id = Empty,
        event_type = Empty,
        outcome = Empty,
        status = Empty
    )
}

/// Records the answer in the span, and logs it at `debug`.
fn answered(span: &tracing::Span, answer: &Answer) {
    span.record("outcome", answer.outcome().as_str());
    span.record("status", answer.status().as_u16());
    span.in_scope(|| match answer.outcome() {
        Outcome::Rejected(kind) => tracing::debug!(reason = %kind, "delivery refused"),
        outcome => tracing::debug!(outcome = outcome.as_str(), "delivery answered"),
    });
}

pub(super) fn record_event(event: &Event<'_>) {
    let span = tracing::Span::current();
    span.record("event_id", event.id.as_str());
    span.record("event_type", event.type_str());
}

pub(super) fn delivered(report: &DeliveryReport<'_>) {
    let cause = report
        .handler_error
        .and_then(std::error::Error::source)
        .map(ToString::to_string);
    match report.outcome {
        Outcome::TemporaryFailure => {
            tracing::warn!(
                event_id = report.event_id,
                cause,
                "handler failed temporarily"
            );
        }
        Outcome::PermanentFailure => {
            tracing::warn!(
                event_id = report.event_id,
                cause,
                "handler failed permanently"
            );
        }
        Outcome::Panicked => tracing::error!("handler panicked"),
        Outcome::TimedOut => {
            tracing::warn!(
                event_id = report.event_id,
                "handler ran past its time limit"
            );
        }
        Outcome::StoreFull => {
            tracing::warn!("idempotency store full: delivery refused with 503");
        }
        Outcome::StoreUnavailable => {
            tracing::warn!("idempotency store unavailable");
        }
        _ => {}
    }
}
