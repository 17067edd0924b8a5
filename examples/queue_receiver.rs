//! Acknowledge fast, process later: an axum endpoint that verifies and enqueues,
//! and a worker that runs the handler, in one program with two modes.
//!
//! ```text
//! redis-server --appendonly yes --appendfsync always &
//! export NOTMETA_WEBHOOK_SECRET=whsec_...          # as NotMeta shows it
//! cargo run --example queue_receiver --features queue,axum -- serve   # POST /webhooks on 127.0.0.1:3000
//! cargo run --example queue_receiver --features queue,axum -- work    # as many as you like
//! ```
//!
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`) points both at Redis. The worker
//! stops reading on Ctrl-C and lets running handlers finish (up to 30 s).

use std::time::Duration;

use axum::Router;
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Event, EventKind, Verifier};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let queue = Queue::connect(&url).await?.with_namespace("queue-example");
    match std::env::args().nth(1).as_deref() {
        Some("serve") => serve(queue).await,
        Some("work") => work(queue).await,
        _ => Err("usage: queue_receiver serve|work".into()),
    }
}

/// The endpoint: 400/413 for bad requests, the challenge inline, 200 once queued.
async fn serve(queue: Queue) -> Result<(), BoxError> {
    let verifier = Verifier::new(std::env::var("NOTMETA_WEBHOOK_SECRET")?)?;
    let enqueuer = Enqueuer::new(verifier, queue)
        // NotMeta's last retry comes about 81 minutes after the first attempt.
        .with_max_event_age(Duration::from_secs(90 * 60));
    let app = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("POST http://{}/webhooks", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The worker: no 25 s limit; failures retried, then dead-lettered.
async fn work(queue: Queue) -> Result<(), BoxError> {
    let worker = Worker::new(queue.clone(), |event: Event<'static>| async move {
        match &event.kind {
            EventKind::MessageReceived(m) => {
                // Stands for slow work: a model call, a CRM sync, a report.
                tokio::time::sleep(Duration::from_secs(2)).await;
                println!("{}: {:?}", event.id, m.message.text);
            }
            _ => println!("{} {}", event.id, event.type_str()),
        }
        Ok::<(), HandlerError>(())
    })
    .with_concurrency(16);
    println!("worker {} reading", worker.consumer_name());
    let stats = worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("{stats:?}");
    println!("{:?}", queue.counts().await?);
    Ok(())
}
