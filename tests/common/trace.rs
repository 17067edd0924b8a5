//! What the trace continuity tests share: a subscriber that records every span's
//! fields (installed once, globally, since workers run on other threads), a
//! [`TracePropagation`] that takes the context from a `ctx` field of the current
//! span (as OpenTelemetry takes it from the span's extension) and records what the
//! worker resumes, and a handler that records the span each run is in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{TraceContext, TracePropagation};
use notmeta_webhooks::receiver::HandlerError;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A known context: what the request span carries.
pub(crate) const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// Its `tracestate`.
pub(crate) const STATE: &str = "vendor=opaque,other=x";

/// A span as recorded: its name and fields, as text.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpanRecord {
    pub(crate) name: &'static str,
    pub(crate) fields: HashMap<String, String>,
}

impl SpanRecord {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// One call of `TracePropagation::resume`: the span's id and record, the context.
#[derive(Debug, Clone)]
pub(crate) struct Resumed {
    pub(crate) span: u64,
    pub(crate) record: SpanRecord,
    pub(crate) context: TraceContext,
}

#[derive(Default)]
pub(crate) struct Recorded {
    spans: Mutex<HashMap<u64, SpanRecord>>,
    resumed: Mutex<Vec<Resumed>>,
}

impl Recorded {
    fn span(&self, id: &Id) -> Option<SpanRecord> {
        self.spans.lock().unwrap().get(&id.into_u64()).cloned()
    }

    /// The current span's id and record (while it is alive).
    pub(crate) fn current(&self) -> Option<(u64, SpanRecord)> {
        let id = tracing::Span::current().id()?;
        Some((id.into_u64(), self.span(&id)?))
    }

    /// What `resume` was called with for the runs of `event_id`.
    pub(crate) fn resumed(&self, event_id: &str) -> Vec<Resumed> {
        let resumed = self.resumed.lock().unwrap();
        resumed
            .iter()
            .filter(|r| r.record.field("event_id") == Some(event_id))
            .cloned()
            .collect()
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Recorder;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name(),
            fields: HashMap::new(),
        };
        attrs.record(&mut Fields(&mut record.fields));
        recorded()
            .spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(record) = recorded().spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }
}

/// The recording, its subscriber installed as the global default on first use.
pub(crate) fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let recorded = RECORDED.get_or_init(Recorded::default);
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Recorder);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    recorded
}

/// Takes the context from the current span's `ctx` and `state` fields; records
/// what the worker resumes.
#[derive(Debug)]
pub(crate) struct FromFields;

impl TracePropagation for FromFields {
    fn current(&self) -> Option<TraceContext> {
        let (_, span) = recorded().current()?;
        TraceContext::parse(span.field("ctx")?, span.field("state")).ok()
    }

    fn resume(&self, context: &TraceContext, span: &tracing::Span) {
        let id = span.id().expect("the worker's span is enabled");
        let record = recorded().span(&id).expect("the worker's span is recorded");
        recorded().resumed.lock().unwrap().push(Resumed {
            span: id.into_u64(),
            record,
            context: context.clone(),
        });
    }
}

/// A request span carrying [`PARENT`] and [`STATE`].
pub(crate) fn request_span() -> tracing::Span {
    recorded();
    tracing::info_span!("request", ctx = PARENT, state = STATE)
}

/// What each run of each event saw: the id and record of the span it ran in.
pub(crate) type Seen = Arc<Mutex<HashMap<String, Vec<(u64, SpanRecord)>>>>;

/// A handler that records the span it runs in, then answers as `answer` says for
/// the event's id and run (counted from 1).
pub(crate) fn recording(
    seen: &Seen,
    answer: impl Fn(&str, usize) -> Result<(), HandlerError> + Send + Sync + 'static,
) -> impl Fn(Event<'static>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let seen = Arc::clone(seen);
    move |event: Event<'static>| {
        let (id, record) = recorded().current().unwrap_or_default();
        let mut seen = seen.lock().unwrap();
        let runs = seen.entry(event.id.to_string()).or_default();
        runs.push((id, record));
        std::future::ready(answer(&event.id, runs.len()))
    }
}
