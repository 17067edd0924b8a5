//! Requests refused while their body is read, over real HTTP on every entry point:
//! a body over the limit (413), a body too slow to arrive (503) and a body whose
//! stream fails part-way (503, retried: a body that could not be read is a temporary
//! failure), each with `Connection: close`; and every one of them reported like any
//! other delivery (the outcome hook, the metrics, the tracing span).
//!
//! The test servers put a body middleware in front of the entry point that, for a
//! request carrying [`CUT`], passes the body's first frame on and then fails, as a
//! middleware that times a slow upload out does.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use notmeta_test_support::http_server;
use notmeta_webhooks::receiver::{Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{ErrorKind, Event, Verifier, sign};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SECRET: &str = "whsec_body_refusals";
const LIMIT: usize = 1024;
const READ_TIME: Duration = Duration::from_millis(300);
const BODY: &[u8] =
    br#"{"id":"evt_body","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;

/// The request header that asks the test servers' middleware to cut the body off.
const CUT: &str = "x-test-cut-off";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn verifier() -> Verifier {
    Verifier::builder()
        .secret(SECRET)
        .max_body_size(LIMIT)
        .build()
        .unwrap()
}

/// The outcomes the receiver's hook was told of.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Outcome>>>);

impl Reports {
    fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn receiver(reports: &Reports) -> Receiver<impl Handler + use<>> {
    let reports = reports.clone();
    Receiver::new(verifier(), |_event: Event<'static>| async {
        Ok::<(), HandlerError>(())
    })
    .with_body_read_timeout(READ_TIME)
    .on_outcome(move |report| reports.0.lock().unwrap().push(report.outcome))
}

/// A body that passes its first frame on and then fails (when `cut`).
struct CutOff<B> {
    inner: B,
    cut: bool,
    passed: bool,
}

impl<B> CutOff<B> {
    fn new(inner: B, cut: bool) -> Self {
        Self {
            inner,
            cut,
            passed: false,
        }
    }
}

impl<B> Body for CutOff<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut && self.passed {
            return Poll::Ready(Some(Err("the upload took too long".into())));
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        self.passed = true;
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }
}

/// A reply read to the end of the connection.
struct Reply {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: String,
}

/// Sends a request declaring `length` bytes of body and sends `body` (possibly
/// fewer bytes, then waits), and reads the reply until the server closes the
/// connection (the request does not ask it to).
async fn send(addr: SocketAddr, path: &str, extra: &str, length: usize, body: &[u8]) -> Reply {
    let header = sign(body, SECRET);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-NotMeta-Signature: {header}\r\n{extra}Content-Length: {length}\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap_or_else(|_| panic!("{path}: the server kept the connection open"))
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a reply");
    Reply {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A body whose stream fails is answered 503 (retried) with `Connection: close`.
async fn unreadable(addr: SocketAddr, path: &str) {
    let reply = send(addr, path, &format!("{CUT}: 1\r\n"), BODY.len(), BODY).await;
    assert_eq!(
        reply.status, 503,
        "{path}, a failed body stream: {}",
        reply.body
    );
    assert!(
        reply.head.contains("connection: close"),
        "{path}: {}",
        reply.head
    );
}

/// The three refusals, each answered with its status and `Connection: close`.
async fn refusals(addr: SocketAddr, path: &str) {
    let over = vec![b'x'; LIMIT + 1];
    let reply = send(addr, path, "", over.len(), &over).await;
    assert_eq!(reply.status, 413, "{path}, over the limit: {}", reply.body);
    assert!(reply.head.contains("connection: close"), "{}", reply.head);

    let reply = send(addr, path, "", BODY.len(), &BODY[..10]).await;
    assert_eq!(reply.status, 503, "{path}, too slow: {}", reply.body);
    assert!(reply.head.contains("connection: close"), "{}", reply.head);

    unreadable(addr, path).await;
}

const REFUSED: [Outcome; 3] = [
    Outcome::Rejected(ErrorKind::BodyTooLarge),
    Outcome::Rejected(ErrorKind::BodyTimeout),
    Outcome::Rejected(ErrorKind::BodyRead),
];

/// The tower service on hyper, behind the cutting middleware.
async fn hyper(service: notmeta_webhooks::tower::WebhookService) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower_service::Service as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let service = service.clone();
            let cutting = hyper::service::service_fn(move |request: http::Request<_>| {
                let mut service = service.clone();
                let cut = request.headers().contains_key(CUT);
                async move {
                    service
                        .call(request.map(|body: hyper::body::Incoming| CutOff::new(body, cut)))
                        .await
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), cutting)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tower_refusals_are_answered_and_reported() {
    let reports = Reports::default();
    let service = notmeta_webhooks::tower::WebhookService::new(receiver(&reports));
    let addr = hyper(service.clone()).await;
    refusals(addr, "/webhooks").await;
    assert_eq!(reports.take(), REFUSED);
    // Without the middleware, the same service handles the event.
    let plain = http_server::hyper(service).await;
    let header = sign(BODY, SECRET);
    let reply = notmeta_test_support::client::post(
        plain,
        "/webhooks",
        &[("x-notmeta-signature", &header)],
        BODY,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reports.take(), [Outcome::Handled]);
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn refusals_are_counted() {
    let recorder = notmeta_test_support::recorder::Counters::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let reports = Reports::default();
    let addr = hyper(notmeta_webhooks::tower::WebhookService::new(receiver(
        &reports,
    )))
    .await;
    refusals(addr, "/webhooks").await;
    assert_eq!(
        recorder.get("notmeta_webhooks_deliveries_total{outcome=rejected}"),
        3
    );
}

#[cfg(feature = "tracing")]
#[tokio::test]
async fn refusals_have_their_span() {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let reports = Reports::default();
    let addr = hyper(notmeta_webhooks::tower::WebhookService::new(receiver(
        &reports,
    )))
    .await;
    refusals(addr, "/webhooks").await;
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("delivery refused"))
        .collect();
    assert_eq!(refused.len(), 3, "{text}");
    assert!(
        refused.iter().all(|l| l.contains("notmeta_webhook{")),
        "{text}"
    );
    for status in ["status=413", "status=503"] {
        assert!(
            refused.iter().any(|l| l.contains(status)),
            "{status}: {text}"
        );
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_refusals_are_answered_and_reported() {
    async fn cut(request: axum::extract::Request) -> axum::extract::Request {
        let cut = request.headers().contains_key(CUT);
        request.map(|body| axum::body::Body::new(CutOff::new(body, cut)))
    }
    async fn extract(
        notmeta_webhooks::axum::VerifiedEvent(_event): notmeta_webhooks::axum::VerifiedEvent,
    ) -> &'static str {
        "OK"
    }
    let reports = Reports::default();
    let app = axum::Router::new()
        .route(
            "/webhooks",
            notmeta_webhooks::axum::endpoint(receiver(&reports)),
        )
        .route("/extract", axum::routing::post(extract))
        .with_state(verifier())
        .layer(axum::Extension(notmeta_webhooks::axum::BodyReadTimeout(
            READ_TIME,
        )))
        .layer(axum::middleware::map_request(cut));
    let addr = http_server::axum(app).await;
    refusals(addr, "/webhooks").await;
    assert_eq!(reports.take(), REFUSED);
    unreadable(addr, "/extract").await;
}

#[cfg(feature = "actix")]
#[actix_web::test]
async fn actix_refusals_are_answered_and_reported() {
    use actix_web::dev::{Payload, Service as _};
    use actix_web::{HttpMessage as _, web};
    use futures_util::StreamExt as _;

    async fn extract(
        notmeta_webhooks::actix::VerifiedEvent(_event): notmeta_webhooks::actix::VerifiedEvent,
    ) -> &'static str {
        "OK"
    }
    let reports = Reports::default();
    let receiver = receiver(&reports);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(web::Data::new(verifier()))
            .app_data(web::Data::new(notmeta_webhooks::actix::BodyReadTimeout(
                READ_TIME,
            )))
            .wrap_fn(|mut request, service| {
                if request.headers().contains_key(CUT) {
                    let failed = futures_util::stream::once(async {
                        Err(actix_web::error::PayloadError::Incomplete(None))
                    });
                    let cut: Pin<Box<dyn futures_util::Stream<Item = _>>> =
                        Box::pin(request.take_payload().take(1).chain(failed));
                    request.set_payload(Payload::from(cut));
                }
                service.call(request)
            })
            .route(
                "/webhooks",
                notmeta_webhooks::actix::endpoint(receiver.clone()),
            )
            .route("/extract", web::post().to(extract))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let handle = http_server::actix_spawn(server.run());

    refusals(addr, "/webhooks").await;
    assert_eq!(reports.take(), REFUSED);
    unreadable(addr, "/extract").await;
    handle.stop(true).await;
}

/// The queue's endpoint, over a real redis-server, reporting to `reports`.
#[cfg(feature = "queue")]
async fn enqueuer(
    reports: &Reports,
) -> (
    notmeta_test_support::redis_server::RedisServer,
    notmeta_webhooks::queue::Enqueuer,
) {
    let server = notmeta_test_support::redis_server::RedisServer::start();
    let queue = notmeta_webhooks::queue::Queue::connect(&server.url())
        .await
        .unwrap();
    let reports = reports.clone();
    let enqueuer = notmeta_webhooks::queue::Enqueuer::new(verifier(), queue)
        .with_body_read_timeout(READ_TIME)
        .on_outcome(move |report| reports.0.lock().unwrap().push(report.outcome));
    (server, enqueuer)
}

#[cfg(all(feature = "queue", feature = "axum"))]
#[tokio::test]
async fn the_queue_endpoint_reports_its_refusals_too() {
    async fn cut(request: axum::extract::Request) -> axum::extract::Request {
        let cut = request.headers().contains_key(CUT);
        request.map(|body| axum::body::Body::new(CutOff::new(body, cut)))
    }
    let reports = Reports::default();
    let (_server, enqueuer) = enqueuer(&reports).await;
    let app = axum::Router::new()
        .route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer))
        .layer(axum::middleware::map_request(cut));
    let addr = http_server::axum(app).await;
    refusals(addr, "/webhooks").await;
    assert_eq!(reports.take(), REFUSED);
}

#[cfg(all(feature = "queue", feature = "actix"))]
#[actix_web::test]
async fn the_actix_queue_endpoint_reports_its_refusals_too() {
    let reports = Reports::default();
    let (_server, enqueuer) = enqueuer(&reports).await;
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().route(
            "/webhooks",
            notmeta_webhooks::actix::endpoint(enqueuer.clone()),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let handle = http_server::actix_spawn(server.run());
    let over = vec![b'x'; LIMIT + 1];
    let reply = send(addr, "/webhooks", "", over.len(), &over).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let reply = send(addr, "/webhooks", "", BODY.len(), &BODY[..10]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reports.take(), REFUSED[..2]);
    handle.stop(true).await;
}
