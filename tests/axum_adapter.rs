//! The axum adapter over real HTTP on 127.0.0.1.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::harness::{SECRET, Seen, failing, recording};
use notmeta_webhooks::Verifier;
use notmeta_webhooks::axum::{VerifiedEvent, endpoint};

fn extract_route(secret: &str, seen: &Seen) -> Router {
    let seen = seen.clone();
    Router::new()
        .route(
            "/",
            post(move |VerifiedEvent(event): VerifiedEvent| {
                let seen = seen.clone();
                async move {
                    if let Some(answer) = event.challenge_response() {
                        return answer.into_response();
                    }
                    seen.push(event);
                    Response::new("OK".into())
                }
            }),
        )
        .with_state(Verifier::new(secret).unwrap())
}

async fn serve(seen: &Seen) -> SocketAddr {
    let mut app = Router::new()
        .route("/webhooks", endpoint(recording(SECRET, seen)))
        .nest("/extract", extract_route(SECRET, seen))
        .route("/temporary", endpoint(failing("temporary")))
        .route("/permanent", endpoint(failing("permanent")))
        .route("/panic", endpoint(failing("panic")));
    for (i, secret) in common::harness::vector_secrets().iter().enumerate() {
        app = app
            .route(
                &format!("/s/{i}/webhooks"),
                endpoint(recording(secret, seen)),
            )
            .nest(&format!("/s/{i}/extract"), extract_route(secret, seen));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn axum_adapter_meets_the_wire_contract() {
    let seen = Seen::default();
    let addr = serve(&seen).await;
    common::harness::run_all(addr, &seen).await;
}
