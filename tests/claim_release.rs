//! A claimed delivery whose runtime goes away while the receiver lives on (a server
//! restarted in-process, an actix-web worker stopped) gives its claim back: NotMeta's
//! retry, served by a fresh server with the same receiver, runs the handler and is
//! answered 200 instead of "in progress" until NotMeta gives up.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use notmeta_test_support::client;
use notmeta_test_support::http_server;
use notmeta_webhooks::receiver::{Handler, HandlerError, Receiver};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_claim_release";
const BODY: &[u8] =
    br#"{"id":"evt_cut_short","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;

/// A receiver whose handler, the first time, waits for a signal that never comes;
/// every later call succeeds. `calls` counts the calls.
fn receiver(calls: &Arc<AtomicUsize>) -> Receiver<impl Handler + use<>> {
    let calls = Arc::clone(calls);
    Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |_event: Event<'static>| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    let never = tokio::sync::Notify::new();
                    never.notified().await;
                }
                Ok::<(), HandlerError>(())
            }
        },
    )
}

/// Sends the delivery on a connection that is kept (and never read), so that the
/// request is not cancelled by a client going away.
fn send_and_keep(addr: SocketAddr) -> std::net::TcpStream {
    let header = sign(BODY, SECRET);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /webhooks HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-NotMeta-Signature: {header}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(BODY).unwrap();
    stream
}

/// Waits (up to a generous 10 s) until `done` holds.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn retry(addr: SocketAddr) -> client::Reply {
    let header = sign(BODY, SECRET);
    client::post(addr, "/webhooks", &[("x-notmeta-signature", &header)], BODY).await
}

#[test]
fn a_runtime_shut_down_mid_handler_gives_the_claim_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let receiver = receiver(&calls);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };

    let first = runtime();
    let addr = first.block_on(http_server::hyper(WebhookService::new(receiver.clone())));
    let _connection = send_and_keep(addr);
    wait_for("the handler runs", || calls.load(Ordering::SeqCst) == 1);
    assert_eq!(
        receiver.store().unwrap().len(),
        1,
        "the delivery holds its claim"
    );
    // The server and its runtime go away mid-handler; the receiver lives on.
    drop(first);
    assert!(
        receiver.store().unwrap().is_empty(),
        "the cancelled delivery gave its claim back"
    );

    let second = runtime();
    let reply = second.block_on(async {
        let addr = http_server::hyper(WebhookService::new(receiver.clone())).await;
        retry(addr).await
    });
    assert_eq!(reply.status, 200, "the retry: {}", reply.text());
    assert_eq!(reply.text(), "OK");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry ran the handler");
}

#[actix_web::test]
async fn an_actix_server_stopped_mid_handler_gives_the_claim_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let receiver = receiver(&calls);
    let serve = |receiver: Receiver<_>| {
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().route(
                "/webhooks",
                notmeta_webhooks::actix::endpoint(receiver.clone()),
            )
        })
        .workers(1)
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        (server.addrs()[0], http_server::actix_spawn(server.run()))
    };

    let (addr, handle) = serve(receiver.clone());
    let _connection = send_and_keep(addr);
    let running = calls.clone();
    actix_web::rt::task::spawn_blocking(move || {
        wait_for("the handler runs", || running.load(Ordering::SeqCst) == 1);
    })
    .await
    .unwrap();
    assert_eq!(
        receiver.store().unwrap().len(),
        1,
        "the delivery holds its claim"
    );
    // The worker stops mid-handler (after its shutdown time-out); the receiver lives on.
    handle.stop(true).await;
    let store = receiver.clone();
    actix_web::rt::task::spawn_blocking(move || {
        wait_for("the stopped worker's delivery gives its claim back", || {
            store.store().unwrap().is_empty()
        });
    })
    .await
    .unwrap();

    let (addr, handle) = serve(receiver.clone());
    let reply = retry(addr).await;
    assert_eq!(reply.status, 200, "the retry: {}", reply.text());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry ran the handler");
    handle.stop(true).await;
}
