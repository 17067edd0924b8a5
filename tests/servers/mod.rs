//! Serving an entry point on 127.0.0.1 for the tests: axum, actix-web, or the tower
//! service on hyper alone. Each test file uses the ones it needs.
#![allow(dead_code)]

use std::net::SocketAddr;

/// Serves `app` with axum on a free loopback port, on the current runtime.
pub(crate) async fn axum(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Serves the route `route()` makes at `/webhooks` with actix-web (two workers) on a
/// free loopback port, on the current actix runtime.
pub(crate) fn actix<F>(route: F) -> SocketAddr
where
    F: Fn() -> actix_web::Route + Clone + Send + 'static,
{
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().route("/webhooks", route()))
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    addr
}

/// Runs an actix-web server on the current actix runtime; the handle stops it.
pub(crate) fn actix_spawn(server: actix_web::dev::Server) -> actix_web::dev::ServerHandle {
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

/// Serves `service` with hyper alone on a free loopback port (every path).
pub(crate) async fn hyper(service: notmeta_webhooks::tower::WebhookService) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}
