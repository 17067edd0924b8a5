//! Nothing a client sends and no setting a user picks crashes, stalls or misleads the
//! receiver. Each promise is checked over real HTTP on 127.0.0.1, through every entry
//! point: axum's endpoint and extractor, actix-web's endpoint and extractor, and the
//! tower service served by hyper alone. Requests are written byte by byte on raw TCP
//! where the wire form matters.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use notmeta_webhooks::dedup::{MemoryStore, RedisStore};
use notmeta_webhooks::receiver::{Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{ErrorKind, Event, EventKind, EventType, Verifier, sign};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SECRET: &str = "whsec_hardening";

/// The body limit of the shared servers: small, so that oversized bodies are cheap.
const LIMIT: usize = 4096;

/// The body read time limit of the shared servers.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Servers: every entry point over one receiver
// ---------------------------------------------------------------------------

/// One way into a receiver: a name for messages, an address and a path.
#[derive(Debug, Clone)]
struct Entry {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    /// Whether it runs the receiver's handler (an endpoint), or only extracts.
    endpoint: bool,
}

/// A value a handler panics with that is neither `&str` nor `String`.
#[derive(Debug)]
struct PanicPayload {
    _detail: String,
}

/// Counts the events it handled; some event ids make it fail in hostile ways.
fn handler(handled: Arc<AtomicUsize>) -> impl Handler + Clone {
    move |event: Event<'static>| {
        let handled = Arc::clone(&handled);
        async move {
            match event.id.as_str() {
                "evt_huge_error" => Err(HandlerError::temporary(format!(
                    "secret-ish {}",
                    "e".repeat(1 << 20)
                ))),
                "evt_huge_permanent" => Err(HandlerError::permanent("p".repeat(1 << 20))),
                "evt_panic_int" => std::panic::panic_any(42_i32),
                "evt_panic_struct" => std::panic::panic_any(PanicPayload {
                    _detail: "d".repeat(1 << 20),
                }),
                _ => {
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        }
    }
}

/// Starts axum (endpoint at `/webhooks`, extractor at `/extract`), actix-web (the
/// same) and the tower service under hyper (at `/`), each on threads of its own, all
/// with `verifier` and without dedup (the tests repeat event ids on purpose).
fn start(verifier: Verifier, read_timeout: Duration, handled: Arc<AtomicUsize>) -> Vec<Entry> {
    let receiver = Receiver::new(verifier.clone(), handler(handled))
        .without_dedup()
        .with_body_read_timeout(read_timeout);
    let (axum_addr, tower_addr) = start_tokio(receiver.clone(), verifier.clone());
    let actix_addr = start_actix(receiver, verifier);
    vec![
        Entry {
            name: "axum endpoint",
            addr: axum_addr,
            path: "/webhooks",
            endpoint: true,
        },
        Entry {
            name: "axum extractor",
            addr: axum_addr,
            path: "/extract",
            endpoint: false,
        },
        Entry {
            name: "actix endpoint",
            addr: actix_addr,
            path: "/webhooks",
            endpoint: true,
        },
        Entry {
            name: "actix extractor",
            addr: actix_addr,
            path: "/extract",
            endpoint: false,
        },
        Entry {
            name: "tower service",
            addr: tower_addr,
            path: "/",
            endpoint: true,
        },
    ]
}

fn start_tokio<H: Handler>(receiver: Receiver<H>, verifier: Verifier) -> (SocketAddr, SocketAddr) {
    use axum::routing::post;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/webhooks",
                    notmeta_webhooks::axum::endpoint(receiver.clone()),
                )
                .route(
                    "/extract",
                    post(
                        |notmeta_webhooks::axum::VerifiedEvent(_event): notmeta_webhooks::axum::VerifiedEvent| async {
                            "OK"
                        },
                    ),
                )
                .with_state(verifier)
                .layer(axum::Extension(notmeta_webhooks::axum::BodyReadTimeout(
                    receiver.body_read_timeout(),
                )));
            let axum_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tower_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((
                axum_listener.local_addr().unwrap(),
                tower_listener.local_addr().unwrap(),
            ))
            .unwrap();
            tokio::spawn(async move { axum::serve(axum_listener, app).await.unwrap() });
            // The tower service served by hyper alone, as in the `tower` module's docs.
            let service = WebhookService::new(receiver);
            loop {
                let Ok((socket, _)) = tower_listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn start_actix<H: Handler>(receiver: Receiver<H>, verifier: Verifier) -> SocketAddr {
    use actix_web::{App, HttpServer, web};
    async fn extract(_event: notmeta_webhooks::actix::VerifiedEvent) -> &'static str {
        "OK"
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .route(
                        "/webhooks",
                        notmeta_webhooks::actix::endpoint(receiver.clone()),
                    )
                    .service(
                        web::scope("/extract")
                            .app_data(web::Data::new(verifier.clone()))
                            // Registered plainly here; `body_refusals` registers it as
                            // `web::Data`: the extractor finds either.
                            .app_data(notmeta_webhooks::actix::BodyReadTimeout(
                                receiver.body_read_timeout(),
                            ))
                            .route("", web::post().to(extract)),
                    )
            })
            .workers(2)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// The servers most tests share: a 4 KiB limit and a 1 s read time limit.
fn shared() -> &'static (Vec<Entry>, Arc<AtomicUsize>) {
    static SERVERS: OnceLock<(Vec<Entry>, Arc<AtomicUsize>)> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let verifier = Verifier::builder()
            .secret(SECRET)
            .max_body_size(LIMIT)
            .build()
            .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        (start(verifier, READ_TIMEOUT, Arc::clone(&handled)), handled)
    })
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------

fn body_with(id: &str, event_type: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"{event_type}","created_at":"2024-01-01T12:00:00Z","data":{data}}}"#
    )
    .into_bytes()
}

fn event_body(id: &str) -> Vec<u8> {
    body_with(id, "user.online", r#"{"user":{"id":"user_1"}}"#)
}

/// A request head for `entry`, with `extra` header lines (each ending in CRLF).
fn head(entry: &Entry, extra: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{extra}\r\n",
        entry.path, entry.addr
    )
    .into_bytes()
}

/// A complete signed request.
fn signed_request(entry: &Entry, body: &[u8]) -> Vec<u8> {
    let mut request = head(
        entry,
        &format!(
            "Content-Length: {}\r\nX-NotMeta-Signature: {}\r\n",
            body.len(),
            sign(body, SECRET)
        ),
    );
    request.extend_from_slice(body);
    request
}

/// One response read off a connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header lines, lower-cased.
    headers: Vec<String>,
    body: Vec<u8>,
    /// When the status line had arrived, from when the connection was opened.
    at: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }
    fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    opened: Instant,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
            opened: Instant::now(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.unwrap();
    }

    /// Reads more bytes; `false` at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response (a `100 Continue` is a response of its own), or `None` if the
    /// connection ends first. Panics after `limit`.
    async fn reply(&mut self, limit: Duration) -> Option<Reply> {
        tokio::time::timeout(limit, self.reply_inner())
            .await
            .unwrap_or_else(|_| panic!("no response within {limit:?}"))
    }

    async fn reply_inner(&mut self) -> Option<Reply> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !self.fill().await {
                return None;
            }
        };
        let at = self.opened.elapsed();
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("http/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<String> = lines.map(str::to_owned).collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
            at,
        };
        if status == 100 {
            return Some(reply);
        }
        if let Some(len) = reply.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if !self.fill().await {
                    break;
                }
            }
            let len = len.min(self.buf.len());
            reply.body = self.buf.drain(..len).collect();
        } else if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                match parse_chunked(&self.buf) {
                    Some((body, used)) => {
                        reply.body = body;
                        self.buf.drain(..used);
                        break;
                    }
                    None if !self.fill().await => break,
                    None => {}
                }
            }
        }
        Some(reply)
    }

    /// Whether the server closed the connection within `limit`.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            while self.fill().await {
                self.buf.clear();
            }
        })
        .await
        .is_ok()
    }
}

/// A whole chunked body and the bytes it used, if all of it is there.
fn parse_chunked(mut data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = data.len();
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            let rest = data.windows(2).position(|w| w == b"\r\n")?;
            return Some((out, total - data.len() + rest + 2));
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Sends a signed event on a fresh connection and returns the reply.
async fn deliver(entry: &Entry, body: &[u8]) -> Reply {
    let mut conn = Conn::open(entry.addr).await;
    conn.send(&signed_request(entry, body)).await;
    conn.reply(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("{}: connection closed without a response", entry.name))
}

/// The entry point still answers a good delivery with 200.
async fn still_serves(entry: &Entry) {
    let reply = deliver(entry, &event_body("evt_after")).await;
    assert_eq!(reply.status, 200, "{}: {}", entry.name, reply.text());
}

/// Runs `check` for every entry at once.
async fn for_each<F, Fut>(entries: &[Entry], check: F)
where
    F: Fn(Entry) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = entries
        .iter()
        .cloned()
        .map(|e| tokio::spawn(check(e)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// A declared length is never allocated
// ---------------------------------------------------------------------------

/// Set in the child process that serves for
/// [`a_declared_petabyte_takes_nothing_down`].
const CHILD_ENV: &str = "NOTMETA_HARDENING_SERVER";

/// With no body limit (`usize::MAX`), a request declaring a petabyte and sending
/// three bytes gets an answer and the process keeps serving: nothing is sized from
/// the declared length. The server runs in a child process (this test binary run
/// again), so that an abort shows as the child's death, not this test's.
#[test]
fn a_declared_petabyte_takes_nothing_down() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return serve_without_limit();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_declared_petabyte_takes_nothing_down",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut entries = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The test harness prints the test's name without a line break first.
        let line = line.find("entry\t").map_or(line.as_str(), |at| &line[at..]);
        let mut words = line.split('\t');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("entry"), Some(name), Some(addr), Some(path)) => entries.push(Entry {
                name: Box::leak(name.to_owned().into_boxed_str()),
                addr: addr.parse().unwrap(),
                path: Box::leak(path.to_owned().into_boxed_str()),
                endpoint: true,
            }),
            (Some("ready"), ..) => break,
            _ => {}
        }
    }
    assert_eq!(entries.len(), 5, "the server process did not start");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(for_each(&entries, |entry| async move {
        let mut conn = Conn::open(entry.addr).await;
        conn.send(&head(
            &entry,
            &format!(
                "Content-Length: 1000000000000000\r\nX-NotMeta-Signature: {}\r\n",
                sign(b"abc", SECRET)
            ),
        ))
        .await;
        for part in [b"a", b"b", b"c"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.send(part).await;
        }
        // The rest never comes: the read time limit (1 s here) answers.
        let reply = conn.reply(Duration::from_secs(10)).await;
        let reply = reply.unwrap_or_else(|| panic!("{}: no response", entry.name));
        assert_eq!(reply.status, 503, "{}: {}", entry.name, reply.text());
        assert!(reply.closes(), "{}", entry.name);
    }));
    let status = child.try_wait().unwrap();
    let mut stderr = String::new();
    if status.is_some() {
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    }
    assert!(
        status.is_none(),
        "the server process died ({status:?}): {stderr}"
    );
    runtime.block_on(for_each(&entries, |entry| async move {
        still_serves(&entry).await;
    }));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The child's side: every entry point with no body limit and a 1 s read time
/// limit; prints where they listen, then serves until its stdin closes.
fn serve_without_limit() {
    let verifier = Verifier::builder()
        .secret(SECRET)
        .max_body_size(usize::MAX)
        .build()
        .unwrap();
    let entries = start(
        verifier,
        Duration::from_secs(1),
        Arc::new(AtomicUsize::new(0)),
    );
    for entry in &entries {
        println!("entry\t{}\t{}\t{}", entry.name, entry.addr, entry.path);
    }
    println!("ready");
    // Serve until the parent closes stdin (or goes away).
    let _ = std::io::stdin().read_line(&mut String::new());
}

// ---------------------------------------------------------------------------
// Settings of any size
// ---------------------------------------------------------------------------

/// Durations from zero to `Duration::MAX`, with the edges and the ranges between.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(100 * 365 * 24 * 3600)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        (0..u64::MAX, 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
        (0..100_000u64).prop_map(Duration::from_millis),
    ]
}

fn any_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(usize::MAX),
        Just(usize::MAX - 1),
        0..100_000usize
    ]
}

/// How old the event of [`settings_of_any_size`] is.
fn age_of_fixture() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .saturating_sub(Duration::from_secs(1_704_110_400)) // 2024-01-01T12:00:00Z
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Receivers, verifiers and stores built with any durations, sizes and capacities
    /// print with `Debug` and answer deliveries as their settings say, without a
    /// panic: a signed event, the same event again, and an event dated far in the
    /// future.
    #[test]
    fn settings_of_any_size(
        read_timeout in any_duration(),
        max_body_size in any_size(),
        capacity in any_size(),
        window in any_duration(),
        max_age in proptest::option::of(any_duration()),
        handler_timeout in any_duration(),
        store_timeout in any_duration(),
    ) {
        let verifier = Verifier::builder()
            .secret(SECRET)
            .max_body_size(max_body_size)
            .build()
            .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let store = MemoryStore::with_capacity(capacity);
        let _ = format!("{verifier:?} {store:?}");
        let mut receiver = Receiver::new(verifier, handler(Arc::clone(&handled)))
            .with_store(store)
            .with_dedup_window(window)
            .with_handler_timeout(handler_timeout)
            .with_store_timeout(store_timeout)
            .with_body_read_timeout(read_timeout);
        prop_assert!(receiver.body_read_timeout() <= notmeta_webhooks::clock::MAX_DURATION);
        if let Some(age) = max_age {
            receiver = receiver.with_max_event_age(age);
        }
        let _ = format!("{receiver:?}");
        let _ = receiver.effective_dedup_window();

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let past = event_body("evt_past");
        let future = String::from_utf8(body_with("evt_future", "user.online", "{}"))
            .unwrap()
            .replace("2024-01-01T12:00:00Z", "9999-12-31T23:59:59Z");
        for body in [past.as_slice(), future.as_bytes()] {
            let header = sign(body, SECRET);
            let first = runtime.block_on(receiver.receive(body, [header.as_bytes()]));
            let again = runtime.block_on(receiver.receive(body, [header.as_bytes()]));
            let _ = format!("{first:?} {again:?}");
            if body.len() > max_body_size {
                prop_assert_eq!(first.outcome(), Outcome::Rejected(ErrorKind::BodyTooLarge));
                prop_assert_eq!(again.outcome(), Outcome::Rejected(ErrorKind::BodyTooLarge));
                continue;
            }
            let stale = body == past.as_slice() && max_age.is_some_and(|age| age < age_of_fixture());
            if stale {
                prop_assert_eq!(first.outcome(), Outcome::Stale);
                prop_assert_eq!(again.outcome(), Outcome::Stale);
                continue;
            }
            // A store with room for one id is full while the first event's id is
            // remembered.
            if first.outcome() == Outcome::StoreFull {
                prop_assert!(capacity <= 1 && body != past.as_slice(), "{:?}", receiver);
                prop_assert_eq!(again.outcome(), Outcome::StoreFull);
                continue;
            }
            // A zero time limit still lets a handler or store that is ready at once
            // finish: the work is polled before the clock.
            prop_assert_eq!(first.outcome(), Outcome::Handled, "{:?}", receiver);
            prop_assert!(
                matches!(again.outcome(), Outcome::Duplicate | Outcome::Handled),
                "{:?}", again
            );
            if receiver.effective_dedup_window() >= Duration::from_secs(1) {
                prop_assert_eq!(again.outcome(), Outcome::Duplicate);
            }
        }
    }
}

/// A Redis store with the longest lease prints, claims and settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_lease_of_any_length() {
    let redis = notmeta_test_support::RedisServer::start();
    for (i, lease) in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ]
    .into_iter()
    .enumerate()
    {
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{}/", redis.port))
            .await
            .unwrap()
            .with_namespace(format!("lease-{i}"))
            .with_lease(lease);
        let _ = format!("{store:?}");
        let receiver = Receiver::new(
            Verifier::new(SECRET).unwrap(),
            handler(Arc::new(AtomicUsize::new(0))),
        )
        .with_store(store)
        .with_dedup_window(Duration::MAX)
        .with_max_event_age(Duration::MAX)
        .with_handler_timeout(Duration::MAX)
        .with_store_timeout(Duration::MAX);
        let _ = format!("{receiver:?}");
        let body = event_body("evt_lease");
        let header = sign(&body, SECRET);
        let first = receiver.receive(&body, [header.as_bytes()]).await;
        assert_eq!(first.outcome(), Outcome::Handled, "{lease:?}");
        let again = receiver.receive(&body, [header.as_bytes()]).await;
        assert_eq!(again.outcome(), Outcome::Duplicate, "{lease:?}");
    }
}

// ---------------------------------------------------------------------------
// A runtime without timers
// ---------------------------------------------------------------------------

/// Polls `future` to its end on this thread, with no runtime of any kind.
fn block_on_without_runtime<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// On a runtime without timers, or with no runtime at all, a delivery is answered
/// 500 (misconfigured, retried) and nothing is claimed: the same event is handled
/// once the receiver runs on a proper runtime.
#[test]
fn a_runtime_without_timers_claims_nothing() {
    let handled = Arc::new(AtomicUsize::new(0));
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler(Arc::clone(&handled)),
    );
    let body = event_body("evt_no_timers");
    let header = sign(&body, SECRET);

    let without_timers = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let answer = without_timers.block_on(receiver.receive(&body, [header.as_bytes()]));
    assert_eq!(answer.outcome(), Outcome::Rejected(ErrorKind::Config));
    assert_eq!(answer.status(), 500);
    assert_eq!(answer.body(), "Webhook receiver misconfigured");

    let answer = block_on_without_runtime(receiver.receive(&body, [header.as_bytes()]));
    assert_eq!(answer.outcome(), Outcome::Rejected(ErrorKind::Config));
    assert_eq!(handled.load(Ordering::SeqCst), 0);

    let proper = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = proper.block_on(receiver.receive(&body, [header.as_bytes()]));
    assert_eq!(answer.outcome(), Outcome::Handled);
    let answer = proper.block_on(receiver.receive(&body, [header.as_bytes()]));
    assert_eq!(answer.outcome(), Outcome::Duplicate);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Expect: 100-continue
// ---------------------------------------------------------------------------

/// A client that asks before sending an oversized body is answered 413 at once,
/// never told to go on. actix-web's server answers `100 Continue` itself before any
/// handler runs (it has no per-route say in it); there the body that follows is read
/// and discarded within the usual bounds and the 413 comes next.
#[tokio::test]
async fn expect_continue_over_the_limit_is_refused_without_asking_for_the_body() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        let mut conn = Conn::open(entry.addr).await;
        conn.send(&head(
            &entry,
            &format!(
                "Content-Length: {}\r\nExpect: 100-continue\r\nX-NotMeta-Signature: {}\r\n",
                LIMIT + 1,
                sign(b"", SECRET)
            ),
        ))
        .await;
        let mut reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        if entry.name.starts_with("actix") {
            assert_eq!(reply.status, 100, "{}", entry.name);
            conn.send(&vec![b' '; LIMIT + 1]).await;
            reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        }
        assert_eq!(reply.status, 413, "{}: {}", entry.name, reply.text());
        assert!(reply.closes(), "{}", entry.name);
        assert!(
            reply.at < Duration::from_secs(1),
            "{}: {:?}",
            entry.name,
            reply.at
        );
        still_serves(&entry).await;
    })
    .await;
}

/// Within the limit, `Expect: 100-continue` works as usual.
#[tokio::test]
async fn expect_continue_within_the_limit_is_asked_for_and_handled() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        let body = event_body("evt_continue");
        let mut conn = Conn::open(entry.addr).await;
        conn.send(&head(
            &entry,
            &format!(
                "Content-Length: {}\r\nExpect: 100-continue\r\nX-NotMeta-Signature: {}\r\n",
                body.len(),
                sign(&body, SECRET)
            ),
        ))
        .await;
        let reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 100, "{}", entry.name);
        conn.send(&body).await;
        let reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 200, "{}: {}", entry.name, reply.text());
    })
    .await;
}

// ---------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------

/// A body dripping one byte at a time is cut off at the read time limit (1 s here)
/// with 503 (retried: the sender may be fine and the network slow) and the
/// connection closed, whether it declares its length or is chunked.
#[tokio::test]
async fn a_dripping_body_is_cut_off_at_the_read_time_limit() {
    let (entries, _) = shared();
    for chunked in [false, true] {
        for_each(entries, move |entry| async move {
            let body = event_body("evt_drip");
            let length = if chunked {
                "Transfer-Encoding: chunked\r\n".to_owned()
            } else {
                format!("Content-Length: {}\r\n", body.len())
            };
            let mut conn = Conn::open(entry.addr).await;
            conn.send(&head(
                &entry,
                &format!("{length}X-NotMeta-Signature: {}\r\n", sign(&body, SECRET)),
            ))
            .await;
            let read_started = Instant::now();
            let (mut read, mut write) = conn.stream.split();
            let drip = async {
                for byte in &body {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let bytes = if chunked {
                        format!("1\r\n{}\r\n", *byte as char).into_bytes()
                    } else {
                        vec![*byte]
                    };
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            };
            // The drip would take several seconds; the reply must come first.
            let mut peek = [0u8; 1];
            tokio::select! {
                () = drip => panic!("{}: the whole body was read", entry.name),
                read = read.peek(&mut peek) => { read.unwrap(); }
            }
            let reply = conn.reply(Duration::from_secs(5)).await.unwrap();
            assert_eq!(
                reply.status,
                503,
                "{} chunked={chunked}: {}",
                entry.name,
                reply.text()
            );
            assert_eq!(reply.text(), "Body too slow, retry later");
            assert!(reply.closes(), "{}: {:?}", entry.name, reply.headers);
            let waited = read_started.elapsed();
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
                "{}: {waited:?}",
                entry.name
            );
            // actix-web closes after its client disconnect timeout (1 s). Behind its
            // extractor, it goes on reading a chunked body to its end instead: the
            // extractor cannot hold the payload until the answer is written.
            let closed = conn.closed_within(Duration::from_secs(2)).await;
            if entry.name == "actix extractor" && chunked {
                assert!(!closed, "actix-web now closes: say so in the docs");
            } else {
                assert!(closed, "{} chunked={chunked}", entry.name);
            }
        })
        .await;
    }
    for entry in entries {
        still_serves(entry).await;
    }
}

/// A body refused for its declared size is read and discarded for at most 2 s...
#[tokio::test]
async fn the_drain_of_a_refused_body_is_bounded_in_time() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        let mut conn = Conn::open(entry.addr).await;
        conn.send(&head(
            &entry,
            &format!(
                "Content-Length: 10000000\r\nX-NotMeta-Signature: {}\r\n",
                sign(b"", SECRET)
            ),
        ))
        .await;
        let (mut read, mut write) = conn.stream.split();
        let drip = async {
            loop {
                if write.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut peek = [0u8; 1];
        tokio::select! {
            () = drip => {}
            read = read.peek(&mut peek) => { read.unwrap(); }
        }
        let reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 413, "{}: {}", entry.name, reply.text());
        assert!(reply.closes(), "{}", entry.name);
        assert!(
            reply.at >= Duration::from_millis(1900) && reply.at < Duration::from_secs(4),
            "{}: {:?}",
            entry.name,
            reply.at
        );
    })
    .await;
}

/// ...and for at most 2 MiB: after that much, the 413 is sent without waiting for
/// the rest.
#[tokio::test]
async fn the_drain_of_a_refused_body_is_bounded_in_size() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        let mut conn = Conn::open(entry.addr).await;
        conn.send(&head(
            &entry,
            &format!(
                "Content-Length: 10000000\r\nX-NotMeta-Signature: {}\r\n",
                sign(b"", SECRET)
            ),
        ))
        .await;
        // 2 MiB and a little more at once, then nothing more: only the size bound
        // can end the drain before its 2 s.
        conn.send(&vec![b' '; 2 * 1024 * 1024 + 64 * 1024]).await;
        let reply = conn.reply(Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.status, 413, "{}: {}", entry.name, reply.text());
        assert!(reply.closes(), "{}", entry.name);
        assert!(
            reply.at < Duration::from_millis(1500),
            "{}: {:?}",
            entry.name,
            reply.at
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// `data` of the wrong JSON type
// ---------------------------------------------------------------------------

const NOT_OBJECTS: [&str; 6] = [
    "[]",
    r#"[{"user":{"id":"u"}}]"#,
    r#""x""#,
    "1",
    "null",
    "true",
];

/// For a known type, `data` must be an object: anything else is an invalid event
/// (400) whose error points at `data`, in either field order. An unknown type keeps
/// its `data` raw, whatever it is.
#[test]
fn data_that_is_not_an_object() {
    let verifier = Verifier::new(SECRET).unwrap();
    for &event_type in EventType::ALL {
        for data in NOT_OBJECTS {
            let body = body_with("evt_1", event_type.as_str(), data);
            let err = verifier
                .verify(&body, [&sign(&body, SECRET)])
                .and_then(|payload| payload.parse())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{event_type} {data}");
            assert_eq!(err.json_path(), Some("data"), "{event_type} {data}: {err}");
            // `data` before `type`.
            let body = format!(
                r#"{{"id":"evt_1","data":{data},"created_at":"2024-01-01T12:00:00Z","type":"{event_type}"}}"#
            );
            let err = verifier
                .verify(body.as_bytes(), [&sign(body.as_bytes(), SECRET)])
                .and_then(|payload| payload.parse())
                .unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidEvent,
                "{event_type} {data} (data first)"
            );
        }
    }
    for data in NOT_OBJECTS {
        let body = body_with("evt_1", "call.started", data);
        let event = verifier
            .verify(&body, [&sign(&body, SECRET)])
            .and_then(|payload| payload.parse())
            .unwrap();
        let EventKind::Unknown {
            event_type,
            data: raw,
        } = &event.kind
        else {
            panic!("{:?}", event.kind)
        };
        assert_eq!(event_type, "call.started");
        assert_eq!(raw.get(), data);
    }
}

/// Over HTTP: a known type with an array as `data` is 400 at every entry point, and
/// the handler does not run.
#[tokio::test]
async fn data_that_is_not_an_object_is_refused_over_http() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        for data in NOT_OBJECTS {
            let body = body_with("evt_array", "user.online", data);
            let reply = deliver(&entry, &body).await;
            assert_eq!(reply.status, 400, "{} {data}: {}", entry.name, reply.text());
            assert_eq!(reply.text(), "Invalid event", "{}", entry.name);
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Hostile header bytes
// ---------------------------------------------------------------------------

/// A signature header with an obsolete line fold, a NUL, or bytes of 0x80 and above
/// is refused with 400 (by the HTTP server's parser or by the verifier), never 500,
/// and the server keeps serving.
#[tokio::test]
async fn hostile_bytes_in_the_signature_header_are_400() {
    let (entries, _) = shared();
    for_each(entries, |entry| async move {
        let body = event_body("evt_header");
        let good = sign(&body, SECRET);
        let (label, hex) = good.split_at(7);
        let values: Vec<Vec<u8>> = vec![
            format!("{label}\r\n {hex}").into_bytes(), // obs-fold inside
            format!("{good}\r\n\textra").into_bytes(), // obs-fold after
            format!("\r\n {good}").into_bytes(),       // obs-fold before
            [good.as_bytes(), b"\0"].concat(),
            [b"\0".as_slice(), good.as_bytes()].concat(),
            [label.as_bytes(), b"\0", hex.as_bytes()].concat(),
            [good.as_bytes(), b"\xff"].concat(),
            [good.as_bytes(), "é".as_bytes()].concat(),
            [label.as_bytes(), b"\x80\x81", &hex.as_bytes()[2..]].concat(),
            [b"\xc3\xa9".as_slice(), good.as_bytes()].concat(),
            b"\xff\xfe\xfd".to_vec(),
        ];
        for value in values {
            let mut request = head(&entry, "");
            request.truncate(request.len() - 2);
            request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            request.extend_from_slice(b"X-NotMeta-Signature: ");
            request.extend_from_slice(&value);
            request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
            request.extend_from_slice(&body);
            let mut conn = Conn::open(entry.addr).await;
            conn.send(&request).await;
            let reply = conn.reply(Duration::from_secs(5)).await;
            let reply = reply.unwrap_or_else(|| panic!("{}: no reply to {value:?}", entry.name));
            assert_eq!(
                reply.status,
                400,
                "{} {:?}: {}",
                entry.name,
                String::from_utf8_lossy(&value),
                reply.text()
            );
        }
        still_serves(&entry).await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Hostile handlers
// ---------------------------------------------------------------------------

/// A handler failing with a 1 MiB message, or panicking with a huge message, an
/// integer or a struct, is answered with the short fixed text only, and the server
/// keeps serving.
#[tokio::test]
async fn what_a_handler_fails_with_stays_inside() {
    let (entries, _) = shared();
    let endpoints: Vec<Entry> = entries.iter().filter(|e| e.endpoint).cloned().collect();
    for_each(&endpoints, |entry| async move {
        for (id, status, text) in [
            ("evt_huge_error", 503, "Temporary failure, retry later"),
            ("evt_huge_permanent", 400, "Event refused"),
            ("evt_panic_int", 500, "Internal error"),
            ("evt_panic_struct", 500, "Internal error"),
        ] {
            let reply = deliver(&entry, &event_body(id)).await;
            assert_eq!(reply.status, status, "{} {id}", entry.name);
            assert_eq!(reply.text(), text, "{} {id}", entry.name);
            assert!(reply.headers.iter().map(String::len).sum::<usize>() < 1024);
        }
        still_serves(&entry).await;
    })
    .await;
}

/// The handler's time limit counts from its start, its first poll included: a handler
/// that blocks 300 ms before its first `.await`, then waits 150 ms, is past a 200 ms
/// limit when it first waits, and is stopped there (503, retried) rather than given
/// another 200 ms. One that finishes at its first poll, however long that took, has
/// nothing left to stop.
#[tokio::test]
async fn the_time_limit_counts_the_first_poll() {
    let runs = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (counted, done) = (Arc::clone(&runs), Arc::clone(&finished));
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |event: Event<'static>| {
            let (counted, done) = (Arc::clone(&counted), Arc::clone(&done));
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                if event.id.as_str() == "evt_waits" {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        },
    )
    .with_handler_timeout(Duration::from_millis(200));
    let waits = event_body("evt_waits");
    let answer = receiver
        .receive(&waits, [sign(&waits, SECRET).as_bytes()])
        .await;
    assert_eq!(answer.outcome(), Outcome::TimedOut);
    let at_once = event_body("evt_at_once");
    let answer = receiver
        .receive(&at_once, [sign(&at_once, SECRET).as_bytes()])
        .await;
    assert_eq!(answer.outcome(), Outcome::Handled);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}
