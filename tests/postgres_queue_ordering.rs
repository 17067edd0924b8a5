//! Key limits on the queue in PostgreSQL (`Queue::with_key_limit`), against a real
//! PostgreSQL: per-key order and cap through random temporary failures, several
//! workers (their takes racing) and one killed mid-run; a cap of 2; the
//! dead-letter policies (release, hold, replay, purge); the upgrade of tables at
//! version 2. Built with the `postgres` and `queue` features alone.

use notmeta_test_support::PostgresServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::postgres::Tables;
use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue, Worker};

mod common;
use common::ordering::{Ledger, drained, fast, handler, many_keys, start, until};
use common::pg_queue::{execute, pool, scalar};
use common::queue::{enqueuer, send};

async fn ordered(url: &str, limit: KeyLimit) -> Queue {
    Queue::postgres(pool(url).await, &Tables::default())
        .await
        .unwrap()
        .with_key_limit(limit)
}

/// A proxy to `server`, and the URL through it.
async fn proxied(server: &PostgresServer) -> (Proxy, String) {
    let proxy = Proxy::start(server.port()).await;
    let url = server.url().replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", proxy.port()),
    );
    (proxy, url)
}

/// 50 keys × 20 events, a handler failing temporarily at random, three workers of
/// 8 handlers, one killed (its link cut, its task aborted) a third of the way:
/// each key's handlers start in enqueue order, one at a time, and every event is
/// handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_run_in_order_one_at_a_time_through_failures_and_a_killed_worker() {
    let server = PostgresServer::start();
    let queue = ordered(&server.url(), KeyLimit::per_key()).await;
    let (proxy, url) = proxied(&server).await;
    let doomed = ordered(&url, KeyLimit::per_key()).await;
    many_keys(&queue, doomed, &proxy, 50, 20).await;
}

common::ordering::key_limit_tests!(PostgresServer::start(), ordered);

/// Tables at version 2 (no order key) with an entry waiting are upgraded to
/// the newest version by `Queue::postgres`; the waiting entry (no key) still runs, and new
/// entries get their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_at_version_2_are_upgraded_and_keep_their_entries() {
    let server = PostgresServer::start();
    let main = pool(&server.url()).await;
    let plain = Queue::postgres(main.clone(), &Tables::default())
        .await
        .unwrap();
    execute(
        &main,
        "DROP INDEX notmeta_webhooks_jobs_order;
         ALTER TABLE notmeta_webhooks_jobs DROP COLUMN order_key;
         UPDATE notmeta_webhooks_schema_version SET version = 2;",
    )
    .await;
    // What a version-2 endpoint wrote.
    execute(
        &main,
        "INSERT INTO notmeta_webhooks_jobs
           (event_key, event_id, event_type, body, received_ms, secret, state, due_at)
         VALUES ('e000-000', 'e000-000', 'message.sent',
           convert_to('{\"id\":\"e000-000\",\"type\":\"message.sent\",\"created_at\":\"2024-01-01T12:00:00Z\",\"data\":{}}', 'UTF8'),
           0, 0, 'queued', now())",
    )
    .await;
    drop(plain);
    let queue = ordered(&server.url(), KeyLimit::per_key()).await;
    assert_eq!(
        scalar(
            &main,
            "SELECT version::bigint FROM notmeta_webhooks_schema_version"
        )
        .await,
        i64::from(notmeta_webhooks::postgres::SCHEMA_VERSION)
    );
    assert_eq!(
        send(&enqueuer(&queue), &common::ordering::keyed_body(0, 1))
            .await
            .1,
        "OK"
    );
    assert_eq!(
        scalar(
            &main,
            "SELECT count(*) FROM notmeta_webhooks_jobs WHERE order_key = 'conversation:c000'"
        )
        .await,
        1
    );
    let ledger = Ledger::default();
    let worker = start(fast(
        Worker::new(queue.clone(), handler(&ledger, 0, 1)),
        "a",
    ));
    until(30, "both events", || ledger.succeeded() == 2).await;
    drained(&queue, 30).await;
    worker.stop().await;
}
