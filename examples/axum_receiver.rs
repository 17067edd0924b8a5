//! A complete NotMeta webhook receiver on axum.
//!
//! ```text
//! NOTMETA_WEBHOOK_SECRET=whsec_... PORT=3000 cargo run --example axum_receiver --features axum
//! ```
//!
//! `NOTMETA_WEBHOOK_SECRET` defaults to `whsec_demo`, `PORT` to 3000; it listens on
//! 127.0.0.1 at `POST /webhooks`, answers the challenge by itself and logs each event.

mod common;

use axum::Router;
use notmeta_webhooks::receiver::{HandlerError, Receiver};
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
    let app = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", common::port_from_env())).await?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
