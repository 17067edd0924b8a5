//! Trace continuity through the queue in PostgreSQL (features `postgres`, `queue`
//! and `tracing`): the `traceparent` and `tracestate` columns of version 3 carry
//! the request's context to the span the handler runs in, through a retry; garbled
//! values are ignored; an entry written before the upgrade from version 2 runs.

use std::time::Duration;

use notmeta_webhooks::postgres::{SCHEMA_VERSION, Tables};
use notmeta_webhooks::queue::{Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use tracing::Instrument as _;

mod common;
use common::pg_queue::{drained, execute, scalar, setup};
use common::queue::{body, enqueuer, run_until, send};
use common::trace::{FromFields, PARENT, STATE, Seen, recorded, recording, request_span};

/// A worker whose handler records the span it runs in, failing temporarily on
/// the first run of `evt_pg_flaky`.
fn worker(queue: &Queue, seen: &Seen) -> Worker<impl notmeta_webhooks::receiver::Handler> {
    let handler = recording(seen, |id, run| match (id, run) {
        ("evt_pg_flaky", 1) => Err(HandlerError::temporary("downstream down")),
        _ => Ok(()),
    });
    Worker::new(queue.clone(), handler)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(200))
        .with_poll_interval(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requests_context_reaches_the_handlers_span_through_a_retry() {
    let (_server, pool, queue) = setup().await;
    let queue = queue.with_trace_propagation(FromFields);
    let endpoint = enqueuer(&queue);
    for id in ["evt_pg_traced", "evt_pg_flaky"] {
        let sent = send(&endpoint, &body(id)).instrument(request_span()).await;
        assert_eq!(sent.0, 200);
    }
    assert_eq!(send(&endpoint, &body("evt_pg_plain")).await.0, 200);
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM notmeta_webhooks_jobs WHERE traceparent IS NOT NULL"
        )
        .await,
        2
    );

    let seen = Seen::default();
    let stats = run_until(worker(&queue, &seen), Duration::from_secs(20), || {
        drained(&queue)
    })
    .await;
    assert_eq!(stats.handled, 3);

    let seen = seen.lock().unwrap();
    for id in ["evt_pg_traced", "evt_pg_flaky"] {
        let runs = &seen[id];
        let resumed = recorded().resumed(id);
        assert_eq!(runs.len(), resumed.len(), "{id}");
        for ((span, record), resumed) in runs.iter().zip(&resumed) {
            assert_eq!(record.name, "notmeta_webhook_job", "{record:?}");
            assert_eq!(record.field("traceparent"), Some(PARENT), "{id}");
            assert_eq!(resumed.span, *span, "{id}");
            assert_eq!(resumed.context.tracestate(), Some(STATE), "{id}");
        }
    }
    assert_eq!(seen["evt_pg_flaky"].len(), 2);
    assert_eq!(seen["evt_pg_flaky"][1].1.field("attempt"), Some("2"));
    let (_, plain) = &seen["evt_pg_plain"][0];
    assert_eq!(plain.field("traceparent"), None);
    assert!(recorded().resumed("evt_pg_plain").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_columns_are_ignored() {
    let (_server, pool, queue) = setup().await;
    let queue = queue.with_trace_propagation(FromFields);
    let endpoint = enqueuer(&queue);
    let ids = [
        "evt_pg_garbled",
        "evt_pg_huge",
        "evt_pg_state",
        "evt_pg_zero",
    ];
    for id in ids {
        let sent = send(&endpoint, &body(id)).instrument(request_span()).await;
        assert_eq!(sent.0, 200);
    }
    for (id, set) in [
        (
            "evt_pg_garbled",
            "traceparent = '00-not-a-trace-01'".to_owned(),
        ),
        (
            "evt_pg_huge",
            format!("traceparent = '{PARENT}' || repeat('f', 1000000)"),
        ),
        (
            "evt_pg_state",
            "tracestate = repeat('k=v,', 10000)".to_owned(),
        ),
        (
            "evt_pg_zero",
            "traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01'".to_owned(),
        ),
    ] {
        execute(
            &pool,
            &format!("UPDATE notmeta_webhooks_jobs SET {set} WHERE event_id = '{id}'"),
        )
        .await;
    }

    let seen = Seen::default();
    let stats = run_until(worker(&queue, &seen), Duration::from_secs(20), || {
        drained(&queue)
    })
    .await;
    assert_eq!(stats.handled, ids.len() as u64);
    let seen = seen.lock().unwrap();
    for id in ids {
        let (_, record) = &seen[id][0];
        let resumed = recorded().resumed(id);
        if id == "evt_pg_state" {
            // The traceparent is kept, the oversized tracestate dropped.
            assert_eq!(record.field("traceparent"), Some(PARENT));
            assert_eq!(resumed.len(), 1);
            assert_eq!(resumed[0].context.tracestate(), None);
        } else {
            assert_eq!(record.field("traceparent"), None, "{id}");
            assert!(resumed.is_empty(), "{id}");
        }
    }
}

/// Tables at version 2 (no trace columns) holding an entry are upgraded by
/// `Queue::postgres`; the entry runs, with no context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_written_at_version_2_runs_after_the_upgrade() {
    let (_server, pool, queue) = setup().await;
    drop(queue);
    execute(
        &pool,
        "ALTER TABLE notmeta_webhooks_jobs DROP COLUMN traceparent, DROP COLUMN tracestate",
    )
    .await;
    execute(
        &pool,
        "UPDATE notmeta_webhooks_schema_version SET version = 2",
    )
    .await;
    let old = String::from_utf8(body("evt_pg_v2")).unwrap();
    execute(
        &pool,
        &format!(
            "INSERT INTO notmeta_webhooks_jobs
               (event_key, event_id, event_type, body, received_ms, secret, state, due_at)
             VALUES ('evt_pg_v2', 'evt_pg_v2', 'user.online', convert_to('{old}', 'UTF8'), 0, 0,
                     'queued', now())"
        ),
    )
    .await;

    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap()
        .with_trace_propagation(FromFields);
    assert_eq!(
        scalar(
            &pool,
            "SELECT version::bigint FROM notmeta_webhooks_schema_version"
        )
        .await,
        i64::from(SCHEMA_VERSION)
    );
    const { assert!(SCHEMA_VERSION >= 3) };
    let sent = send(&enqueuer(&queue), &body("evt_pg_v3"))
        .instrument(request_span())
        .await;
    assert_eq!(sent.0, 200);

    let seen = Seen::default();
    let stats = run_until(worker(&queue, &seen), Duration::from_secs(20), || {
        drained(&queue)
    })
    .await;
    assert_eq!(stats.handled, 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen["evt_pg_v2"][0].1.field("traceparent"), None);
    assert_eq!(seen["evt_pg_v3"][0].1.field("traceparent"), Some(PARENT));
}
