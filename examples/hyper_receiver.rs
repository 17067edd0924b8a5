//! A complete NotMeta webhook receiver on hyper alone, through the tower service.
//!
//! ```text
//! NOTMETA_WEBHOOK_SECRET=whsec_... PORT=3000 cargo run --example hyper_receiver --features tower
//! ```
//!
//! `NOTMETA_WEBHOOK_SECRET` defaults to `whsec_demo`, `PORT` to 3000; it listens on
//! 127.0.0.1 (every path and method go to the webhook service), answers the
//! challenge by itself and logs each event. The same `WebhookService` mounts in axum
//! with `Router::route_service`, in tonic, or in `lambda_http`.

mod common;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{Event, Verifier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let receiver = Receiver::new(
        Verifier::new(common::secret_from_env())?,
        |event: Event<'static>| async move {
            println!("{}", common::describe(&event));
            Ok::<(), HandlerError>(())
        },
    );
    let service = WebhookService::new(receiver);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", common::port_from_env())).await?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // A connection that fails (a client gone) only ends that connection.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
