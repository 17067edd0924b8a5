//! Exactly-once effects with PostgreSQL: an axum endpoint whose handler writes
//! through the same transaction that records the event as done, so a crash at any
//! point leaves either both or neither.
//!
//! ```text
//! export DATABASE_URL=postgres://app@127.0.0.1/app
//! export NOTMETA_WEBHOOK_SECRET=whsec_...          # as NotMeta shows it
//! cargo run --example postgres_receiver --features postgres,axum   # POST /webhooks on 127.0.0.1:3000
//! ```
//!
//! The crate's tables are created on start (`notmeta_webhooks_events`, and
//! `notmeta_webhooks_schema_version`), beside this app's own `messages`.

use std::time::Duration;

use axum::Router;
use notmeta_webhooks::postgres::{PostgresStore, Tables};
use notmeta_webhooks::receiver::{HandlerError, Receiver, ResultExt as _};
use notmeta_webhooks::{Event, EventKind, Verifier};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let pool = PgPoolOptions::new()
        // One connection per handler running at once, plus a few for claims.
        .max_connections(32)
        .connect(&std::env::var("DATABASE_URL")?)
        .await?;
    let verifier = Verifier::new(std::env::var("NOTMETA_WEBHOOK_SECRET")?)?;
    let app = app(pool, verifier).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("POST http://{}/webhooks", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The app's table, the crate's tables, and the endpoint on `/webhooks`.
pub(crate) async fn app(pool: PgPool, verifier: Verifier) -> Result<Router, BoxError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS messages (
            event_id        text PRIMARY KEY,
            conversation_id text,
            text            text,
            stored_at       timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&pool)
    .await?;
    let store = PostgresStore::open(pool, &Tables::default()).await?;
    let handler = store.transactional(|event: Event<'static>, tx| {
        Box::pin(async move {
            if let EventKind::MessageReceived(m) = &event.kind {
                // Written through `tx`: committed only together with the done mark.
                sqlx::query(
                    "INSERT INTO messages (event_id, conversation_id, text) VALUES ($1, $2, $3)",
                )
                .bind(event.id.as_str())
                .bind(m.conversation.id.as_ref().map(|id| id.as_str()))
                .bind(m.message.text.as_deref())
                .execute(&mut *tx)
                .await
                .temporary()?;
            }
            // Every other type, including ones NotMeta adds later, is done at once.
            Ok::<(), HandlerError>(())
        })
    });
    let receiver = Receiver::new(verifier, handler)
        .with_store(store)
        // NotMeta's last retry comes about 81 minutes after the first attempt.
        .with_max_event_age(Duration::from_secs(90 * 60));
    Ok(Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver)))
}
