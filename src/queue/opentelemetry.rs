//! The standard [`TracePropagation`]: OpenTelemetry through `tracing-opentelemetry`.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{TraceContext, TracePropagation};

/// Trace continuity through OpenTelemetry (feature `opentelemetry`): the
/// [`Enqueuer`](super::Enqueuer) stores the OpenTelemetry context of the current
/// `tracing` span (the request's) with each entry, and the [`Worker`](super::Worker)
/// links its `notmeta_webhook_job` span to it, or makes it the parent
/// ([`OpenTelemetry::parent`]).
///
/// It needs a `tracing_opentelemetry` layer of the same versions as this crate's
/// (tracing-opentelemetry 0.32, opentelemetry 0.31) in the subscriber: with another
/// version's layer the spans carry no context this one can read, and nothing is
/// stored. With other versions, implement [`TracePropagation`] in a few lines (its
/// docs show them).
///
/// **Link or parent.** A link by default, as OpenTelemetry's messaging conventions
/// recommend for a consumer: a run may start hours after the request ended, and an
/// event may run several times (retries, replays), each its own trace that points
/// back to the request. [`OpenTelemetry::parent`] makes each run a child of the
/// enqueuing span instead, so the whole story is one trace.
///
/// ```no_run
/// use notmeta_webhooks::queue::{OpenTelemetry, Queue};
///
/// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
/// // With a `tracing_opentelemetry::layer()` in the subscriber, in both processes.
/// let queue = Queue::connect("redis://127.0.0.1:6379/")
///     .await?
///     .with_trace_propagation(OpenTelemetry::link());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub struct OpenTelemetry {
    parent: bool,
}

impl OpenTelemetry {
    /// Each run's span links to the span that enqueued the entry (the default).
    #[must_use]
    pub fn link() -> Self {
        Self { parent: false }
    }

    /// Each run's span is a child of the span that enqueued the entry, in its
    /// trace.
    #[must_use]
    pub fn parent() -> Self {
        Self { parent: true }
    }
}

impl Default for OpenTelemetry {
    fn default() -> Self {
        Self::link()
    }
}

impl TracePropagation for OpenTelemetry {
    fn current(&self) -> Option<TraceContext> {
        let context = tracing::Span::current().context();
        let span = context.span();
        let span = span.span_context();
        if !span.is_valid() {
            return None;
        }
        let state = span.trace_state().header();
        TraceContext::from_parts(
            &span.trace_id().to_string(),
            &span.span_id().to_string(),
            span.trace_flags().to_u8(),
            Some(state.as_str()).filter(|s| !s.is_empty()),
        )
        .ok()
    }

    fn resume(&self, context: &TraceContext, span: &tracing::Span) {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(context.trace_id()),
            SpanId::from_hex(context.span_id()),
        ) else {
            return;
        };
        let state = context
            .tracestate()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let flags = TraceFlags::new(context.flags());
        let remote = SpanContext::new(trace_id, span_id, flags, true, state);
        if self.parent {
            // Refused only once the span has started, which it has not.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        } else {
            span.add_link(remote);
        }
    }
}
