//! Trace continuity through the queue in Redis (features `queue` and `tracing`):
//! an entry carries the trace context of the request that enqueued it to the span
//! its handler runs in, through retries, dead letters and replays; a missing,
//! garbled or oversized context is ignored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::queue::{Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use redis::AsyncCommands as _;
use tracing::Instrument as _;

mod common;
use common::queue::{body, drained, enqueuer, run_until, send};
use common::trace::{FromFields, PARENT, STATE, Seen, recorded, recording, request_span};

async fn context_reaches_the_handlers_span(isolate: bool) {
    // The recording is global: each test its own ids.
    let (traced_id, plain_id) = if isolate {
        ("evt_traced_isolated", "evt_plain_isolated")
    } else {
        ("evt_traced_inline", "evt_plain_inline")
    };
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_trace_propagation(FromFields);
    let endpoint = enqueuer(&queue);
    let traced = send(&endpoint, &body(traced_id))
        .instrument(request_span())
        .await;
    assert_eq!(traced, (200, "OK".to_owned()));
    // Outside any span: nothing to store.
    assert_eq!(send(&endpoint, &body(plain_id)).await.0, 200);

    let seen = Seen::default();
    let worker =
        Worker::new(queue.clone(), recording(&seen, |_, _| Ok(()))).with_handler_isolation(isolate);
    let stats = run_until(worker, Duration::from_secs(15), || drained(&queue)).await;
    assert_eq!(stats.handled, 2);

    let seen = seen.lock().unwrap();
    let (span, record) = &seen[traced_id][0];
    assert_eq!(record.name, "notmeta_webhook_job", "{record:?}");
    assert_eq!(record.field("traceparent"), Some(PARENT), "{record:?}");
    assert_eq!(record.field("event_id"), Some(traced_id));
    assert_eq!(record.field("attempt"), Some("1"));
    let resumed = recorded().resumed(traced_id);
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(
        resumed[0].span, *span,
        "resumed in another span than the handler's"
    );
    assert_eq!(resumed[0].context.traceparent(), PARENT);
    assert_eq!(resumed[0].context.tracestate(), Some(STATE));

    let (_, plain) = &seen[plain_id][0];
    assert_eq!(plain.name, "notmeta_webhook_job");
    assert_eq!(plain.field("traceparent"), None, "{plain:?}");
    assert!(recorded().resumed(plain_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requests_context_reaches_an_isolated_handlers_span() {
    context_reaches_the_handlers_span(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requests_context_reaches_a_handlers_span_without_isolation() {
    context_reaches_the_handlers_span(false).await;
}

/// Run 1 fails temporarily (a retry), run 2 permanently (a dead letter), which is
/// replayed; run 3 succeeds. Each run carries the context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_dead_letters_and_replays_keep_the_context() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_trace_propagation(FromFields);
    let sent = send(&enqueuer(&queue), &body("evt_again"))
        .instrument(request_span())
        .await;
    assert_eq!(sent.0, 200);

    let seen = Seen::default();
    let worker = Worker::new(
        queue.clone(),
        recording(&seen, |_, run| match run {
            1 => Err(HandlerError::temporary("downstream down")),
            2 => Err(HandlerError::permanent("refused")),
            _ => Ok(()),
        }),
    )
    .with_backoff(Duration::from_millis(100), Duration::from_millis(200))
    .with_poll_interval(Duration::from_millis(20));
    let replayed = Arc::new(Mutex::new(false));
    let stats = run_until(worker, Duration::from_secs(20), || {
        let (queue, replayed) = (queue.clone(), Arc::clone(&replayed));
        async move {
            let counts = queue.counts().await.unwrap();
            if counts.dead_letters == 1 && !*replayed.lock().unwrap() {
                assert_eq!(queue.replay_dead_letters(10).await.unwrap(), 1);
                *replayed.lock().unwrap() = true;
                return false;
            }
            *replayed.lock().unwrap() && drained(&queue).await && counts.dead_letters == 0
        }
    })
    .await;
    assert_eq!(stats.handled, 1);

    let seen = seen.lock().unwrap();
    let runs = &seen["evt_again"];
    assert_eq!(runs.len(), 3);
    for (_, record) in runs {
        assert_eq!(record.field("traceparent"), Some(PARENT), "{record:?}");
    }
    let resumed = recorded().resumed("evt_again");
    assert_eq!(resumed.len(), 3);
    assert!(
        resumed
            .iter()
            .all(|r| r.context.tracestate() == Some(STATE))
    );
    let spans: Vec<u64> = runs.iter().map(|(id, _)| *id).collect();
    let resumed_in: Vec<u64> = resumed.iter().map(|r| r.span).collect();
    assert_eq!(spans, resumed_in);
}

/// Field/value pairs of a stream entry.
type Fields<'a> = Vec<(&'a str, &'a [u8])>;

/// Entries written directly: as an older version wrote them (no context), and with
/// garbled, hostile or oversized values. All run; only a valid `traceparent` is
/// recorded and resumed, and a bad `tracestate` is dropped from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_garbled_and_oversized_contexts_are_ignored() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_trace_propagation(FromFields);
    queue.check_layout().await.unwrap();
    let huge = "00-".to_owned() + &"a".repeat(100_000);
    let later = format!("cc{}-{}", &PARENT[2..], "x".repeat(100_000));
    let hostile_state = "k=".to_owned() + &"v".repeat(600);
    let entries: Vec<(&str, Fields)> = vec![
        ("evt_old", vec![]),
        ("evt_garbled", vec![("traceparent", b"00-zz-yy-01")]),
        ("evt_huge", vec![("traceparent", huge.as_bytes())]),
        ("evt_later", vec![("traceparent", later.as_bytes())]),
        ("evt_bytes", vec![("traceparent", b"\xff\xfe\x00")]),
        (
            "evt_zero",
            vec![(
                "traceparent",
                b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
        ),
        (
            "evt_state",
            vec![
                ("traceparent", PARENT.as_bytes()),
                ("tracestate", hostile_state.as_bytes()),
            ],
        ),
        (
            "evt_control",
            vec![
                ("traceparent", PARENT.as_bytes()),
                ("tracestate", b"k=v\r\nx=y"),
            ],
        ),
    ];
    let url = server.url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    for (id, trace) in &entries {
        let body = body(id);
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("id", id.as_bytes()),
            ("type", b"user.online"),
            ("body", &body),
            ("received", b"0"),
            ("secret", b"0"),
            ("attempt", b"0"),
        ];
        fields.extend(trace.iter().copied());
        let _: String = redis
            .xadd("{notmeta-webhooks:0}:stream", "*", &fields)
            .await
            .unwrap();
    }

    let seen = Seen::default();
    let worker = Worker::new(queue.clone(), recording(&seen, |_, _| Ok(())));
    let stats = run_until(worker, Duration::from_secs(15), || drained(&queue)).await;
    assert_eq!(stats.handled, entries.len() as u64);

    let seen = seen.lock().unwrap();
    for (id, _) in &entries {
        let (_, record) = &seen[*id][0];
        assert_eq!(record.name, "notmeta_webhook_job", "{id}: {record:?}");
        let (expected, resumed) = match *id {
            "evt_state" | "evt_control" => (Some(PARENT), 1),
            _ => (None, 0),
        };
        assert_eq!(record.field("traceparent"), expected, "{id}");
        let calls = recorded().resumed(id);
        assert_eq!(calls.len(), resumed, "{id}");
        assert!(
            calls.iter().all(|c| c.context.tracestate().is_none()),
            "{id}"
        );
    }
}
