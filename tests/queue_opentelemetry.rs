//! The `opentelemetry` feature: `queue::OpenTelemetry` stores the request span's
//! OpenTelemetry context with the entry, and the worker's span is linked to it (or
//! is its child), as an in-memory exporter of the OpenTelemetry SDK records them.

use std::sync::OnceLock;
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{OpenTelemetry, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

mod common;
use common::queue::{body, enqueuer, run_until, send};

/// The exporter of the global subscriber (installed once: workers run on other
/// threads).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

/// Enqueues `id` in a request span through a queue with `propagation`, runs a
/// worker until it is handled: the request span's context and the exported span
/// of the run.
async fn enqueue_and_run(id: &str, propagation: OpenTelemetry) -> (SpanContext, SpanData) {
    let exporter = exporter();
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_trace_propagation(propagation);
    let request = tracing::info_span!("request");
    let context = request.context().span().span_context().clone();
    assert!(context.is_valid());
    let sent = send(&enqueuer(&queue), &body(id)).instrument(request).await;
    assert_eq!(sent.0, 200);

    let worker = Worker::new(queue.clone(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    });
    run_until(worker, Duration::from_secs(15), || {
        let queue = queue.clone();
        async move {
            let counts = queue.counts().await.unwrap();
            counts.pending + counts.in_progress == 0
        }
    })
    .await;
    let run = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|span| {
            span.name == "notmeta_webhook_job"
                && span
                    .attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "event_id" && kv.value.as_str() == id)
        })
        .unwrap_or_else(|| panic!("no span of the run of {id}"));
    (context, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_links_to_the_request_by_default() {
    let (request, run) = enqueue_and_run("evt_otel_link", OpenTelemetry::default()).await;
    let links = &run.links.links;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].span_context.trace_id(), request.trace_id());
    assert_eq!(links[0].span_context.span_id(), request.span_id());
    // A trace of its own, pointing back.
    assert_ne!(run.span_context.trace_id(), request.trace_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_is_the_requests_child_when_asked() {
    let (request, run) = enqueue_and_run("evt_otel_parent", OpenTelemetry::parent()).await;
    assert_eq!(run.span_context.trace_id(), request.trace_id());
    assert_eq!(run.parent_span_id, request.span_id());
    assert!(run.links.links.is_empty());
}
