//! What the tests of the queue in PostgreSQL share: a pool, statements, counts of
//! entries and effects, a worker run until a condition, and a transactional
//! handler writing one `effects` row per run.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use notmeta_test_support::PostgresServer;

use notmeta_webhooks::Event;
use notmeta_webhooks::postgres::{PostgresStore, Tables, Transactional};
use notmeta_webhooks::queue::{Enqueuer, Queue};
use notmeta_webhooks::receiver::HandlerError;
use sqlx::PgPool;

pub(crate) use super::postgres::pool;
// Shared with the Redis tests; the files that take them from here keep doing so.
#[allow(unused_imports)]
pub(crate) use super::queue::{drained, run_until};

pub(crate) async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

pub(crate) async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// How many entries the jobs table holds (waiting, running, retrying or dead).
pub(crate) async fn jobs(pool: &PgPool) -> i64 {
    scalar(pool, "SELECT count(*) FROM notmeta_webhooks_jobs").await
}

pub(crate) async fn effects(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub(crate) async fn is_done(pool: &PgPool, id: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT coalesce((SELECT done FROM notmeta_webhooks_events WHERE event_id = $1), false)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A transactional handler's function, boxed.
pub(crate) type TxFn = Box<
    dyn for<'t> Fn(
            Event<'static>,
            &'t mut sqlx::PgConnection,
        ) -> futures_util::future::BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// Writes the event's `effects` row through the handler's transaction.
pub(crate) async fn write_effect(
    tx: &mut sqlx::PgConnection,
    id: &str,
) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind(id)
        .execute(tx)
        .await
        .map_err(HandlerError::temporary)?;
    Ok(())
}

/// A transactional handler that writes one `effects` row per run, after waiting
/// `pause`.
pub(crate) fn writer(pool: &PgPool, pause: Duration) -> Transactional<TxFn> {
    let store = PostgresStore::new(pool.clone(), &Tables::default());
    let handler: TxFn = Box::new(move |event: Event<'static>, tx| {
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            write_effect(tx, event.id.as_str()).await?;
            Ok(())
        })
    });
    store.transactional(handler)
}

/// A server, a pool on it, an `effects` table for the handlers' writes, and the
/// queue.
pub(crate) async fn setup() -> (PostgresServer, PgPool, Queue) {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    execute(&pool, "CREATE TABLE effects (event_id text NOT NULL)").await;
    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap();
    (server, pool, queue)
}

/// Sends `body` `n` times at once to `endpoint`: the answers.
pub(crate) async fn send_at_once(
    endpoint: &Arc<Enqueuer>,
    body: &[u8],
    n: usize,
) -> Vec<(u16, String)> {
    let sends = (0..n).map(|_| {
        let (endpoint, body) = (Arc::clone(endpoint), body.to_vec());
        tokio::spawn(async move { super::queue::send(&endpoint, &body).await })
    });
    join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}
