//! Serving an app on a free loopback port for the tests: with axum, with actix-web,
//! or with hyper alone (any tower service, such as a receiver's `WebhookService`).

use std::error::Error as StdError;
use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};

/// An error a hyper connection can carry.
type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves `app` with axum on a free loopback port, on the current Tokio runtime.
///
/// # Panics
///
/// If no loopback port can be bound.
pub async fn axum(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Serves the route `route()` makes at `/webhooks` with actix-web (two workers) on
/// a free loopback port, on the current actix runtime.
///
/// # Panics
///
/// If no loopback port can be bound.
pub fn actix<F>(route: F) -> SocketAddr
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
pub fn actix_spawn(server: actix_web::dev::Server) -> actix_web::dev::ServerHandle {
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

/// Serves `service` with hyper alone (HTTP/1.1) on a free loopback
/// port, every path, each connection with a clone of it.
///
/// # Panics
///
/// If no loopback port can be bound.
pub async fn hyper<S, B>(service: S) -> SocketAddr
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
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
