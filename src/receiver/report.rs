//! What a receiver tells the world about each delivery: the outcome hook, metrics
//! (feature `metrics`) and log lines (feature `tracing`).
//!
//! Without `tracing`, nothing is logged: a handler's error reaches you through the
//! outcome hook ([`Receiver::on_outcome`](super::Receiver::on_outcome)) and the
//! `source()` chain of the [`HandlerError`] it carries.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use super::{HandlerError, Outcome};
use crate::dedup::StoreError;

/// One delivery as the outcome hook sees it.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use notmeta_webhooks::receiver::{DeliveryReport, HandlerError, Outcome, Receiver};
/// use notmeta_webhooks::{sign, Event, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), notmeta_webhooks::Error> {
/// let failures = Arc::new(AtomicUsize::new(0));
/// let counted = Arc::clone(&failures);
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
///     Err(HandlerError::temporary("downstream unavailable"))
/// })
/// .on_outcome(move |report: &DeliveryReport<'_>| {
///     if let Some(error) = report.handler_error {
///         eprintln!("{:?} {}: {error}", report.event_id, report.outcome.as_str());
///         counted.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let answer = receiver.receive(body, [sign(body, "whsec_abc123").as_bytes()]).await;
/// assert_eq!(answer.outcome(), Outcome::TemporaryFailure);
/// assert_eq!(failures.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct DeliveryReport<'a> {
    /// The event id, once the body verified and parsed.
    pub event_id: Option<&'a str>,
    /// The event type as sent, once the body verified and parsed.
    pub event_type: Option<&'a str>,
    /// What happened.
    pub outcome: Outcome,
    /// Which configured secret verified the signature (0 is the first), once one did.
    pub secret_index: Option<usize>,
    /// The handler's error, when it returned one.
    pub handler_error: Option<&'a HandlerError>,
    /// How long the handler ran, when it ran.
    pub handler_time: Option<Duration>,
    /// Whether this delivery's claim lapsed while it ran (another delivery may have
    /// run the handler too).
    pub lease_lost: bool,
}

impl<'a> DeliveryReport<'a> {
    /// A delivery answered before any handler ran (rejected, the challenge, stale, a
    /// duplicate, queued, …).
    pub(crate) fn before_handler(
        event: Option<&'a crate::event::Event<'_>>,
        outcome: Outcome,
        secret_index: Option<usize>,
    ) -> Self {
        Self {
            event_id: event.map(|e| e.id.as_str()),
            event_type: event.map(crate::event::Event::type_str),
            outcome,
            secret_index,
            handler_error: None,
            handler_time: None,
            lease_lost: false,
        }
    }
}

/// The outcome hook.
pub(crate) type Hook = Arc<dyn Fn(&DeliveryReport<'_>) + Send + Sync>;

/// Reports one delivery: hook, metrics, log.
pub(super) fn delivered(hook: Option<&Hook>, report: &DeliveryReport<'_>) {
    #[cfg(feature = "metrics")]
    count_outcome(crate::receiver::metrics::DELIVERIES_TOTAL, report.outcome);
    answered(hook, report);
}

/// Reports one delivery the queue's endpoint answered: hook, metrics, log.
#[cfg(feature = "queue")]
pub(crate) fn enqueued(hook: Option<&Hook>, report: &DeliveryReport<'_>) {
    #[cfg(feature = "metrics")]
    count_outcome(crate::receiver::metrics::ENQUEUED_TOTAL, report.outcome);
    answered(hook, report);
}

/// What every endpoint reports for a delivery besides its counter.
/// Counts one delivery in the counter `name`, labelled with its outcome. Each
/// outcome's label is static, so counting allocates nothing (a label made at run
/// time is a vector of its own each time).
#[cfg(feature = "metrics")]
fn count_outcome(name: &'static str, outcome: Outcome) {
    macro_rules! labelled {
        ($($value:literal),+) => {
            match outcome.as_str() {
                $($value => ::metrics::counter!(name, "outcome" => $value),)+
                other => ::metrics::counter!(name, "outcome" => other),
            }
        };
    }
    labelled!(
        "handled",
        "queued",
        "challenge",
        "rejected",
        "temporary_failure",
        "permanent_failure",
        "panicked",
        "timed_out",
        "duplicate",
        "in_progress",
        "stale",
        "store_unavailable",
        "store_full",
        "circuit_open"
    )
    .increment(1);
}

fn answered(hook: Option<&Hook>, report: &DeliveryReport<'_>) {
    #[cfg(feature = "metrics")]
    {
        if let Some(time) = report.handler_time {
            ::metrics::histogram!(crate::receiver::metrics::HANDLER_SECONDS)
                .record(time.as_secs_f64());
        }
    }
    #[cfg(feature = "tracing")]
    super::trace::delivered(report);
    if let Some(hook) = hook {
        // A panicking hook must not take the delivery with it.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| hook(report)));
    }
}

pub(super) fn lease_renewed() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::LEASE_RENEWALS_TOTAL).increment(1);
}

pub(super) fn lease_lost(_id: &str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::LEASES_LOST_TOTAL).increment(1);
    #[cfg(feature = "tracing")]
    tracing::error!(
        event_id = _id,
        "the claim's lease was lost while the handler ran: another delivery may have run it too"
    );
}

pub(crate) fn store_failed(_operation: &'static str, _error: &StoreError) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::STORE_ERRORS_TOTAL, "operation" => _operation)
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        operation = _operation,
        error = %_error,
        cause = _error_cause(_error),
        "idempotency store call failed"
    );
}

pub(super) fn settle_failed(_id: &str, _operation: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::receiver::metrics::SETTLE_FAILURES_TOTAL, "operation" => _operation)
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::error!(
        event_id = _id,
        operation = _operation,
        "cannot record the event's outcome: a later duplicate may run the handler again"
    );
}

#[cfg(feature = "tracing")]
fn _error_cause(error: &StoreError) -> String {
    std::error::Error::source(error).map_or_else(String::new, ToString::to_string)
}
