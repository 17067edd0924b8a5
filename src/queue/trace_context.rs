//! Trace continuity across the queue: the W3C trace context an entry carries from
//! the request that enqueued it to the worker that runs it.
//!
//! The [`Enqueuer`](super::Enqueuer) asks the queue's [`TracePropagation`] for the
//! current context when it accepts a delivery, and stores it with the entry (Redis:
//! the fields `traceparent` and `tracestate`; PostgreSQL: the columns of the same
//! names). A [`Worker`](super::Worker) reads it back, validated, and with the
//! `tracing` feature records it on the run's span and hands it to
//! [`TracePropagation::resume`]. Retries, dead letters and replays keep it.

use std::fmt;

/// The length of a `traceparent` of version `00`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;

/// The longest `tracestate` kept, in bytes: W3C's 512, which every vendor must
/// propagate. A longer one is dropped (the `traceparent` is kept).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The most list members a `tracestate` may have (W3C's limit).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A W3C trace context, validated: a `traceparent` (always stored as version `00`,
/// [`TRACEPARENT_LEN`] bytes) and an optional `tracestate` (at most
/// [`MAX_TRACESTATE_LEN`] bytes).
///
/// ```
/// use notmeta_webhooks::queue::TraceContext;
///
/// let context = TraceContext::parse(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
///     Some("vendor=opaque"),
/// )?;
/// assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(context.span_id(), "00f067aa0ba902b7");
/// assert!(context.is_sampled());
/// assert_eq!(context.tracestate(), Some("vendor=opaque"));
///
/// // An all-zero trace id is invalid.
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_err());
/// # Ok::<(), notmeta_webhooks::queue::InvalidTraceContext>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

/// Why a `traceparent` was refused by [`TraceContext::parse`].
///
/// ```
/// use notmeta_webhooks::queue::{InvalidTraceContext, TraceContext};
/// assert_eq!(TraceContext::parse("garbage", None), Err(InvalidTraceContext::Malformed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTraceContext {
    /// Not `version-traceid-parentid-flags` in lower-case hex of the right lengths,
    /// or of version `ff`, or a version `00` with anything after the flags.
    #[error("the traceparent is not a W3C traceparent")]
    Malformed,
    /// The trace id or the parent id is all zeros.
    #[error("the traceparent's trace id or parent id is all zeros")]
    ZeroId,
}

impl TraceContext {
    /// Parses a W3C `traceparent` and, optionally, its `tracestate`.
    ///
    /// A `traceparent` of a later version is read as version `00` (its first four
    /// fields), as W3C asks, and stored as such. A `tracestate` that is longer than
    /// [`MAX_TRACESTATE_LEN`], has more than 32 members, holds anything but
    /// printable ASCII, or is empty is dropped; the context stays valid without it.
    ///
    /// # Errors
    ///
    /// If `traceparent` is malformed ([`InvalidTraceContext::Malformed`]) or has an
    /// all-zero id ([`InvalidTraceContext::ZeroId`]).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, InvalidTraceContext> {
        let traceparent = traceparent.trim_matches([' ', '\t']);
        let bytes = traceparent.as_bytes();
        let malformed = Err(InvalidTraceContext::Malformed);
        if bytes.len() < TRACEPARENT_LEN || !traceparent.is_ascii() {
            return malformed;
        }
        let version = &traceparent[..2];
        let exact = bytes.len() == TRACEPARENT_LEN;
        let later = version != "00" && bytes.get(TRACEPARENT_LEN).is_none_or(|b| *b == b'-');
        if version == "ff" || !(exact || later) {
            return malformed;
        }
        let dashes = [2, 35, 52].iter().all(|&i| bytes[i] == b'-');
        let hex = [(0, 2), (3, 35), (36, 52), (53, 55)]
            .iter()
            .all(|&(from, to)| {
                bytes[from..to]
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
        if !dashes || !hex {
            return malformed;
        }
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        if zero(&traceparent[3..35]) || zero(&traceparent[36..52]) {
            return Err(InvalidTraceContext::ZeroId);
        }
        Ok(Self {
            traceparent: format!("00{}", &traceparent[2..TRACEPARENT_LEN]),
            tracestate: tracestate.and_then(valid_tracestate).map(str::to_owned),
        })
    }

    /// A context from its parts: the trace id (32 lower-case hex digits), the span
    /// id (16) and the trace flags, as an OpenTelemetry `SpanContext` gives them.
    ///
    /// ```
    /// use notmeta_webhooks::queue::TraceContext;
    /// let context = TraceContext::from_parts("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1, None)?;
    /// assert_eq!(context.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// # Ok::<(), notmeta_webhooks::queue::InvalidTraceContext>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub fn from_parts(
        trace_id: &str,
        span_id: &str,
        flags: u8,
        tracestate: Option<&str>,
    ) -> Result<Self, InvalidTraceContext> {
        if trace_id.len() != 32 || span_id.len() != 16 {
            return Err(InvalidTraceContext::Malformed);
        }
        Self::parse(&format!("00-{trace_id}-{span_id}-{flags:02x}"), tracestate)
    }

    /// Reads a stored context back: `None` for anything invalid (a garbled or
    /// hostile value is ignored, never trusted).
    pub(crate) fn stored(traceparent: Option<&[u8]>, tracestate: Option<&[u8]>) -> Option<Self> {
        let traceparent = std::str::from_utf8(traceparent?).ok()?;
        if traceparent.len() > 2 * TRACEPARENT_LEN {
            return None;
        }
        let tracestate = tracestate.and_then(|t| std::str::from_utf8(t).ok());
        Self::parse(traceparent, tracestate).ok()
    }

    /// The `traceparent`, version `00`.
    #[must_use]
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate`, if one was given and valid.
    #[must_use]
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id: 32 lower-case hex digits.
    #[must_use]
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The id of the span that enqueued the entry: 16 lower-case hex digits.
    #[must_use]
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// The trace flags (bit 0: sampled).
    #[must_use]
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.traceparent[53..55], 16).unwrap_or(0)
    }

    /// Whether the `sampled` flag is set.
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.flags() & 1 == 1
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent)
    }
}

/// `tracestate` if it is one W3C allows and within the limits kept here.
fn valid_tracestate(tracestate: &str) -> Option<&str> {
    let tracestate = tracestate.trim_matches([' ', '\t']);
    let printable = tracestate.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let members = tracestate.split(',').filter(|m| !m.trim().is_empty());
    let well_formed = members.clone().all(|m| {
        m.split_once('=')
            .is_some_and(|(k, v)| !k.trim().is_empty() && !v.is_empty() && !v.contains('='))
    });
    let count = members.count();
    (printable
        && well_formed
        && (1..=MAX_TRACESTATE_MEMBERS).contains(&count)
        && tracestate.len() <= MAX_TRACESTATE_LEN)
        .then_some(tracestate)
}

/// Where the trace context of queued entries comes from, and what a worker does
/// with it: set on a [`Queue`](super::Queue) with
/// [`Queue::with_trace_propagation`](super::Queue::with_trace_propagation), in the
/// endpoints' processes and the workers' alike.
///
/// [`current`](Self::current) is called by the [`Enqueuer`](super::Enqueuer) once
/// per verified delivery, in the caller's span (the request's, under a tracing
/// middleware), before the entry is appended. With the `tracing` feature a
/// [`Worker`](super::Worker) runs each handler in a `notmeta_webhook_job` span
/// (fields `event_id`, `event_type`, `attempt`, `traceparent`, `outcome`) and,
/// for an entry that carries a context, calls `resume` with that
/// span before the handler runs.
///
/// With OpenTelemetry (through `tracing-opentelemetry`), an implementation is a few
/// lines; it links the run to the request, as OpenTelemetry's messaging
/// conventions recommend for a consumer (a run may come hours later, and retry);
/// `span.set_parent(Context::new().with_remote_span_context(linked))` instead
/// makes each run a child in the request's trace.
///
/// ```ignore
/// use notmeta_webhooks::queue::{TraceContext, TracePropagation};
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
/// use tracing_opentelemetry::OpenTelemetrySpanExt as _;
///
/// struct Otel;
///
/// impl TracePropagation for Otel {
///     fn current(&self) -> Option<TraceContext> {
///         let context = tracing::Span::current().context();
///         let span = context.span();
///         let span = span.span_context();
///         let state = span.trace_state().header();
///         let state = (!state.is_empty()).then_some(state.as_str());
///         let (trace, id) = (span.trace_id().to_string(), span.span_id().to_string());
///         TraceContext::from_parts(&trace, &id, span.trace_flags().to_u8(), state).ok()
///     }
///
///     fn resume(&self, context: &TraceContext, span: &tracing::Span) {
///         let (Ok(trace), Ok(id)) = (TraceId::from_hex(context.trace_id()), SpanId::from_hex(context.span_id())) else {
///             return;
///         };
///         let state = context.tracestate().and_then(|s| s.parse().ok()).unwrap_or_default();
///         let flags = TraceFlags::new(context.flags());
///         span.add_link(SpanContext::new(trace, id, flags, true, state));
///     }
/// }
/// ```
///
/// Without OpenTelemetry, any source of W3C ids does; this one stores a fixed
/// context:
///
/// ```
/// use notmeta_webhooks::queue::{Queue, TraceContext, TracePropagation};
///
/// #[derive(Debug)]
/// struct Fixed(TraceContext);
///
/// impl TracePropagation for Fixed {
///     fn current(&self) -> Option<TraceContext> {
///         Some(self.0.clone())
///     }
/// }
///
/// # async fn f(queue: Queue) -> Result<(), notmeta_webhooks::queue::InvalidTraceContext> {
/// let context = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)?;
/// let queue = queue.with_trace_propagation(Fixed(context));
/// # Ok(()) }
/// ```
pub trait TracePropagation: Send + Sync + 'static {
    /// The trace context to store with the entry being enqueued (`None`: none).
    /// Called in the span the [`Enqueuer`](super::Enqueuer) was called in; a panic
    /// is caught and counts as `None`.
    fn current(&self) -> Option<TraceContext>;

    /// Continues the stored `context` in `span`, the worker's span of one run,
    /// before the handler runs in it: a link (or a parent) in the tracing system.
    /// The default does nothing (the span's `traceparent` field already holds it).
    /// A panic is caught.
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    fn resume(&self, context: &TraceContext, span: &tracing::Span) {
        let _ = (context, span);
    }
}

/// The propagation's current context, a panic caught.
pub(crate) fn current(propagation: Option<&dyn TracePropagation>) -> Option<TraceContext> {
    let propagation = propagation?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| propagation.current()))
        .ok()
        .flatten()
}

/// The span of one run of a queued entry, with the stored context recorded and
/// resumed.
#[cfg(feature = "tracing")]
pub(crate) fn run_span(
    event: &crate::event::Event<'_>,
    attempt: u64,
    context: Option<&TraceContext>,
    propagation: Option<&dyn TracePropagation>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "notmeta_webhook_job",
        event_id = event.id.as_str(),
        event_type = event.type_str(),
        attempt,
        traceparent = context.map(TraceContext::traceparent),
        outcome = tracing::field::Empty,
    );
    if let (Some(context), Some(propagation)) = (context, propagation) {
        let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            propagation.resume(context, &span);
        }));
        if resumed.is_err() {
            span.in_scope(|| tracing::warn!("the trace propagation's resume panicked"));
        }
    }
    span
}

impl super::Queue {
    /// Stores a W3C trace context with every entry enqueued through this queue, as
    /// `propagation` gives it, and lets workers continue it (see
    /// [`TracePropagation`]). Set it on the queue of the endpoints' processes and of
    /// the workers' alike. Off by default: no context is stored, and entries that
    /// carry one (from an endpoint that has it) are still handled, their context
    /// recorded on the worker's span (feature `tracing`).
    ///
    /// The context is stored in the entry (Redis: fields `traceparent` and
    /// `tracestate`; PostgreSQL: columns of the same names) and kept by retries,
    /// dead letters and replays. It is validated when read back: a garbled or
    /// hostile value is ignored. At most [`TRACEPARENT_LEN`] plus
    /// [`MAX_TRACESTATE_LEN`] bytes per entry.
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::{Queue, TraceContext, TracePropagation};
    ///
    /// struct FromSpan;
    ///
    /// impl TracePropagation for FromSpan {
    ///     fn current(&self) -> Option<TraceContext> {
    ///         // Here: the current span's W3C ids, e.g. from OpenTelemetry.
    ///         None
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .with_trace_propagation(FromSpan);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_trace_propagation(mut self, propagation: impl TracePropagation) -> Self {
        self.trace = Some(std::sync::Arc::new(propagation));
        self
    }

    /// The trace propagation in force, if any.
    pub(crate) fn trace_propagation(&self) -> Option<&dyn TracePropagation> {
        self.trace.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_kept_as_given() {
        let context = TraceContext::parse(PARENT, None).unwrap();
        assert_eq!(context.traceparent(), PARENT);
        assert_eq!(context.to_string(), PARENT);
        assert_eq!(context.flags(), 1);
        assert_eq!(context.tracestate(), None);
        let padded = TraceContext::parse(&format!(" {PARENT}\t"), None).unwrap();
        assert_eq!(padded, context);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let bad = [
            "",
            "00",
            &PARENT[..54],
            &format!("{PARENT}-extra"),
            &PARENT.replace("00-4b", "ff-4b"),
            &PARENT.to_uppercase(),
            &PARENT.replacen('-', "_", 1),
            &PARENT.replace("0e4736", "0e473g"),
            &format!("{PARENT}x"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ];
        for value in bad {
            assert_eq!(
                TraceContext::parse(value, None),
                Err(InvalidTraceContext::Malformed),
                "{value:?}"
            );
        }
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        for value in [zero_trace, zero_span] {
            assert_eq!(
                TraceContext::parse(value, None),
                Err(InvalidTraceContext::ZeroId)
            );
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = PARENT.replacen("00", "cc", 1);
        let context = TraceContext::parse(&format!("{later}-what-comes-next"), None).unwrap();
        assert_eq!(context.traceparent(), PARENT);
        assert!(TraceContext::parse(&later, None).is_ok());
    }

    #[test]
    fn a_bad_tracestate_is_dropped_and_the_traceparent_kept() {
        let long = vec!["k=v"; 200].join(",");
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        for state in ["", "novalue", "a=b=c", "k=\u{7f}", "k=v\n", &long, &many] {
            let context = TraceContext::parse(PARENT, Some(state)).unwrap();
            assert_eq!(context.tracestate(), None, "{state:?}");
        }
        let good = (0..32)
            .map(|i| format!("k{i}=v {i}"))
            .collect::<Vec<_>>()
            .join(" , ");
        let context = TraceContext::parse(PARENT, Some(&good)).unwrap();
        assert_eq!(context.tracestate(), Some(good.as_str()));
    }

    #[test]
    fn stored_values_that_do_not_read_are_ignored() {
        assert!(TraceContext::stored(None, Some(b"k=v")).is_none());
        assert!(TraceContext::stored(Some(b"\xff\xfe"), None).is_none());
        let huge = format!("cc{}", &PARENT[2..]) + &"-x".repeat(10_000);
        assert!(TraceContext::stored(Some(huge.as_bytes()), None).is_none());
        let back = TraceContext::stored(Some(PARENT.as_bytes()), Some(b"\xff")).unwrap();
        assert_eq!((back.traceparent(), back.tracestate()), (PARENT, None));
    }

    #[test]
    fn parts_make_the_traceparent() {
        let context = TraceContext::from_parts(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            0,
            None,
        )
        .unwrap();
        assert_eq!(context.traceparent(), PARENT.replace("-01", "-00"));
        assert!(!context.is_sampled());
        assert!(TraceContext::from_parts("4bf9", "00f067aa0ba902b7", 0, None).is_err());
        assert!(
            TraceContext::from_parts(
                "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "",
                0,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn a_panicking_propagation_gives_no_context() {
        struct Panics;
        impl TracePropagation for Panics {
            fn current(&self) -> Option<TraceContext> {
                panic!("no context here")
            }
        }
        assert_eq!(current(Some(&Panics)), None);
        assert_eq!(current(None), None);
    }
}
