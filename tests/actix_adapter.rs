//! The actix-web adapter over real HTTP on 127.0.0.1.

mod common;

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, web};
use common::harness::{SECRET, Seen, failing, recording};
use notmeta_webhooks::Verifier;
use notmeta_webhooks::actix::{VerifiedEvent, endpoint};

async fn extract(VerifiedEvent(event): VerifiedEvent, seen: web::Data<Seen>) -> HttpResponse {
    if let Some(challenge) = event.challenge() {
        return HttpResponse::Ok()
            .content_type("text/plain")
            .body(challenge.to_owned());
    }
    seen.push(event);
    HttpResponse::Ok().body("OK")
}

fn serve(seen: &Seen) -> SocketAddr {
    let seen = seen.clone();
    // Built once and cloned into each worker's app, as users are told to.
    let main = recording(SECRET, &seen);
    let (temporary, permanent, panic) =
        (failing("temporary"), failing("permanent"), failing("panic"));
    let per_secret: Vec<_> = common::harness::vector_secrets()
        .into_iter()
        .map(|secret| (recording(&secret, &seen), secret))
        .collect();
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(web::Data::new(seen.clone()))
            .route("/webhooks", endpoint(main.clone()))
            .service(
                web::scope("/extract")
                    .app_data(web::Data::new(Verifier::new(SECRET).unwrap()))
                    .route("", web::post().to(extract)),
            )
            .route("/temporary", endpoint(temporary.clone()))
            .route("/permanent", endpoint(permanent.clone()))
            .route("/panic", endpoint(panic.clone()));
        for (i, (receiver, secret)) in per_secret.iter().enumerate() {
            app = app
                .route(&format!("/s/{i}/webhooks"), endpoint(receiver.clone()))
                .service(
                    web::scope(&format!("/s/{i}/extract"))
                        .app_data(web::Data::new(Verifier::new(secret).unwrap()))
                        .route("", web::post().to(extract)),
                );
        }
        app
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    addr
}

#[actix_web::test]
async fn actix_adapter_meets_the_wire_contract() {
    let seen = Seen::default();
    let addr = serve(&seen);
    common::harness::run_all(addr, &seen).await;
}
