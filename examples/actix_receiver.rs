//! A complete NotMeta webhook receiver on actix-web.
//!
//! ```text
//! NOTMETA_WEBHOOK_SECRET=whsec_... PORT=3000 cargo run --example actix_receiver --features actix
//! ```
//!
//! `NOTMETA_WEBHOOK_SECRET` defaults to `whsec_demo`, `PORT` to 3000; it listens on
//! 127.0.0.1 at `POST /webhooks`, answers the challenge by itself and logs each event.

mod common;

use actix_web::{App, HttpServer};
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{Event, Verifier};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let verifier = Verifier::new(common::secret_from_env()).map_err(std::io::Error::other)?;
    let port = common::port_from_env();
    // One receiver for all workers: its clones share the handler and the dedup store.
    let receiver = Receiver::new(verifier, |event: Event<'static>| async move {
        println!("{}", common::describe(&event));
        Ok::<(), HandlerError>(())
    });
    println!("listening on http://127.0.0.1:{port}/webhooks");
    HttpServer::new(move || {
        App::new().route(
            "/webhooks",
            notmeta_webhooks::actix::endpoint(receiver.clone()),
        )
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
