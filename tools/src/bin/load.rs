//! Load and soak over loopback, against a receiver in a child process.
//!
//! ```text
//! # 200,000 signed requests on 64 keep-alive connections against the axum endpoint,
//! # with ~1% forged, ~1% oversized and ~1% unknown-type events mixed in:
//! cargo run --release -p notmeta-tools --bin load -- run axum 200000 64
//! cargo run --release -p notmeta-tools --bin load -- run actix 200000 64
//!
//! # A short smoke run, judged on its answers only (as CI runs it):
//! cargo run --release -p notmeta-tools --bin load -- run axum 20000 64 --statuses-only
//!
//! # The ready-made endpoints (axum, actix-web, and the tower service on hyper alone)
//! # against bare handlers of the same server that read the same body and answer 200,
//! # at 16 and 64 connections, in one run; last, the axum endpoint against the
//! # hand-written seed approach (`axum:seed`: HMAC, a `serde_json::Value` parse and a
//! # `HashSet` of ids behind a mutex):
//! cargo run --release -p notmeta-tools --bin load -- compare 50000
//!
//! # The inline axum endpoint with the in-memory store against the same endpoint with
//! # `RedisStore` and the queue endpoint (Redis Streams), at 16 and 64 connections,
//! # then a worker draining what was enqueued; with a redis-server (started here)
//! # without persistence and one with `appendfsync always`. A floor row serves the
//! # in-memory endpoint plus `RedisStore`'s claim alone (one round trip per delivery):
//! # a practical ceiling for one round trip per delivery over this client.
//! cargo run --release -p notmeta-tools --bin load -- redis-compare 60000
//!
//! # The inline axum endpoint with the in-memory store against the same endpoint
//! # with `PostgresStore` (a no-op handler) and with a transactional no-op handler
//! # (the done mark committed in the handler's transaction), on a PostgreSQL server
//! # (started here) with `synchronous_commit` on and one with it off, and the queue
//! # endpoint on PostgreSQL; throughput and CPU per delivery of the receiver and of
//! # PostgreSQL. Then workers drain the queue, with a no-op (leased) handler and with
//! # a transactional no-op handler: events/s per worker core, PostgreSQL's CPU.
//! cargo run --release -p notmeta-tools --bin load -- postgres-compare 40000
//!
//! # The cost of key limits (`KeyLimit`): the same events (`message.sent` over 1,000
//! # conversations) drained by one worker (concurrency 64, a no-op handler) without
//! # key limits and with one handler at a time per conversation, on Redis (no
//! # persistence) and on PostgreSQL, in one run:
//! cargo run --release -p notmeta-tools --bin load -- queue-drain-ordered 20000 1000
//!
//! # One worker (concurrency 64, a no-op handler, the default settings otherwise)
//! # draining events enqueued in process beforehand, on Redis without persistence and
//! # with `appendfsync always`, its handler isolation as by default and turned on:
//! # events/s, the CPU of the worker's process and of redis-server, events/s per
//! # worker core:
//! cargo run --release -p notmeta-tools --bin load -- queue-drain 40000
//! ```
//!
//! `run` reports requests/s, p50/p99 latency and a count of every status, and exits
//! non-zero on any wrong status, any 5xx, any dropped connection, or if the
//! receiver's resident memory at the end is more than 10% above what it was after the
//! warm-up (the median of the last ten of twenty samples on each side). The receiver
//! runs in a child process (this same program, `serve`, with `MALLOC_ARENA_MAX=2` and
//! `MALLOC_MMAP_THRESHOLD_=65536`) so its memory is measured alone; its dedup store
//! remembers ids for 0.5 s (200,000 at most), and the warm-up (a quarter of the run, at
//! least 80,000 requests) fills it to its steady state, where ids expire as fast as
//! new ones arrive.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use notmeta_test_support::{RedisServer, TempDir};
use notmeta_webhooks::dedup::{
    Claim, ClaimToken, IdempotencyStore, MemoryStore, RedisStore, Settled, StoreError,
};
use notmeta_webhooks::queue::{Enqueuer, KeyLimit, Queue, Worker};
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, Event, Verifier, sign};

const SECRET: &str = "whsec_load";
/// The receiver's dedup store: ids are remembered for [`DEDUP_WINDOW`], so at the
/// rates reached here (under 100,000 requests/s) it holds fewer than this many, and
/// every new id is accepted; older ids expire and the store churns as a full
/// production store does.
const STORE_CAPACITY: usize = 200_000;
const DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------- the receiver side

fn receiver() -> Receiver<impl notmeta_webhooks::receiver::Handler> {
    Receiver::new(
        Verifier::new(SECRET).expect("a valid secret"),
        |_event: Event<'static>| async { Ok::<(), HandlerError>(()) },
    )
    .with_store(MemoryStore::with_capacity(STORE_CAPACITY))
    .with_dedup_window(DEDUP_WINDOW)
}

/// A practical floor for a store shared through Redis: the default in-memory store,
/// plus one round trip per delivery (`RedisStore`'s claim, a `SET … NX PX`), and
/// nothing else: no completion, no renewal, no isolation. It keeps no promise across
/// replicas; it measures how close a store that makes one round trip per delivery
/// (over redis-rs's multiplexed connection) comes to the in-memory endpoint on the
/// machine it runs on.
#[derive(Debug)]
struct FloorStore {
    memory: MemoryStore,
    redis: RedisStore,
}

impl IdempotencyStore for FloorStore {
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    async fn claim(&self, event_id: &str) -> Result<Claim, StoreError> {
        // Its answer is not used: the in-memory store decides.
        self.redis.claim(event_id).await?;
        self.memory.claim(event_id).await
    }

    fn renew(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        self.memory.renew(event_id, token)
    }

    fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: std::time::Duration,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        self.memory.complete(event_id, token, window)
    }

    fn release(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.memory.release(event_id, token)
    }
}

/// Serves `app` on a free loopback port, announcing it as the parent expects.
async fn serve_axum(app: axum::Router) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn serve(kind: &str) -> Result<(), BoxError> {
    match kind {
        "axum-queue" => {
            let url = std::env::var("NOTMETA_LOAD_REDIS")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let queue = Queue::connect(&url).await?.with_namespace("load");
                let enqueuer = Enqueuer::new(Verifier::new(SECRET)?, queue);
                let app = axum::Router::new()
                    .route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
                serve_axum(app).await
            })
        }
        "axum-redis-floor" => {
            let url = std::env::var("NOTMETA_LOAD_REDIS")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let store = FloorStore {
                    memory: MemoryStore::new(),
                    redis: RedisStore::connect(&url).await?.with_namespace("floor"),
                };
                let receiver =
                    Receiver::new(Verifier::new(SECRET)?, |_event: Event<'static>| async {
                        Ok::<(), HandlerError>(())
                    })
                    .with_store(store);
                let app = axum::Router::new()
                    .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
                serve_axum(app).await
            })
        }
        "axum-redis" | "axum-redis-async" => {
            // The inline endpoint with the Redis idempotency store (the default
            // dedup window and lease), as every replica of a scaled-out receiver runs;
            // `-async`: with the handler in the delivery's task (isolation off).
            let isolate = kind == "axum-redis";
            let url = std::env::var("NOTMETA_LOAD_REDIS")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                // A namespace per kind: both kinds share a redis-server in
                // `redis-compare`, and each must see fresh ids.
                let store = RedisStore::connect(&url).await?.with_namespace(kind);
                let receiver =
                    Receiver::new(Verifier::new(SECRET)?, |_event: Event<'static>| async {
                        Ok::<(), HandlerError>(())
                    })
                    .with_store(store)
                    .with_handler_isolation(isolate);
                let app = axum::Router::new()
                    .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
                serve_axum(app).await
            })
        }
        "axum-pgqueue" => {
            // The queue endpoint on PostgreSQL (tables prefixed `load_queue_`).
            let url = std::env::var("NOTMETA_LOAD_POSTGRES")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let queue = Queue::postgres(pg_pool(&url).await?, &pg_queue_tables()?).await?;
                let enqueuer = Enqueuer::new(Verifier::new(SECRET)?, queue);
                let app = axum::Router::new()
                    .route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
                serve_axum(app).await
            })
        }
        "axum-postgres"
        | "axum-postgres-tx"
        | "axum-postgres-noping"
        | "axum-postgres-tx-noping" => {
            // The inline endpoint with the PostgreSQL store (the default tables,
            // lease and dedup window); `-tx`: a transactional no-op handler, whose
            // transaction commits the done mark; `-noping`: a pool that does not
            // ping a connection before each use (sqlx's `test_before_acquire`, on
            // by default).
            let url = std::env::var("NOTMETA_LOAD_POSTGRES")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                use notmeta_webhooks::postgres::{PostgresStore, Tables};
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(80)
                    .test_before_acquire(!kind.ends_with("-noping"))
                    .connect(&url)
                    .await?;
                // A prefix per kind: both kinds share a server, each sees fresh ids.
                let tables = Tables::default().with_prefix(kind.replace('-', "_") + "_")?;
                let store = PostgresStore::open(pool, &tables).await?;
                let verifier = Verifier::new(SECRET)?;
                let app = if !kind.contains("-tx") {
                    let receiver = Receiver::new(verifier, |_event: Event<'static>| async {
                        Ok::<(), HandlerError>(())
                    })
                    .with_store(store);
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver))
                } else {
                    let handler = store.transactional(|_event: Event<'static>, _tx| {
                        Box::pin(async { Ok::<(), HandlerError>(()) })
                    });
                    let receiver = Receiver::new(verifier, handler).with_store(store);
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver))
                };
                serve_axum(app).await
            })
        }
        "axum" | "axum-default" | "axum-bare" => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let app = if kind == "axum" {
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver()))
                } else if kind == "axum-default" {
                    // The default in-memory store (500,000 ids), as an application
                    // that sets nothing has.
                    let receiver =
                        Receiver::new(Verifier::new(SECRET)?, |_event: Event<'static>| async {
                            Ok::<(), HandlerError>(())
                        });
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver))
                } else {
                    axum::Router::new().route(
                        "/webhooks",
                        axum::routing::post(|body: Bytes| async move {
                            std::hint::black_box(body);
                            "OK"
                        }),
                    )
                };
                serve_axum(app).await
            })
        }
        "actix" | "actix-bare" => {
            let bare = kind == "actix-bare";
            actix_web::rt::System::new().block_on(async move {
                let receiver = receiver();
                let server = actix_web::HttpServer::new(move || {
                    let app = actix_web::App::new();
                    if bare {
                        app.route(
                            "/webhooks",
                            actix_web::web::post().to(|body: actix_web::web::Bytes| async move {
                                std::hint::black_box(body);
                                "OK"
                            }),
                        )
                    } else {
                        app.route(
                            "/webhooks",
                            notmeta_webhooks::actix::endpoint(receiver.clone()),
                        )
                    }
                })
                .workers(2)
                .bind(("127.0.0.1", 0))?;
                println!("listening {}", server.addrs()[0]);
                server.run().await?;
                Ok(())
            })
        }
        "axum-seed" => {
            // What users write by hand from NotMeta's own samples, done right: an
            // HMAC check in constant time, a `serde_json::Value` parse, and a set of
            // seen ids behind a mutex for idempotency (never forgetting, unbounded).
            use std::collections::HashSet;
            use std::sync::Mutex;

            use hmac::{Hmac, KeyInit, Mac};
            let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/webhooks",
                    axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let header = headers
                                .get("x-notmeta-signature")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("sha256="))
                                .and_then(|hex| hex::decode(hex).ok());
                            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())
                                .expect("any key length");
                            mac.update(&body);
                            if header.is_none_or(|h| mac.verify_slice(&h).is_err()) {
                                return (http::StatusCode::BAD_REQUEST, "Invalid signature");
                            }
                            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body)
                            else {
                                return (http::StatusCode::BAD_REQUEST, "Invalid event");
                            };
                            let Some(id) = event["id"].as_str() else {
                                return (http::StatusCode::BAD_REQUEST, "Invalid event");
                            };
                            if !seen.lock().unwrap().insert(id.to_owned()) {
                                return (http::StatusCode::OK, "OK (duplicate)");
                            }
                            std::hint::black_box(&event);
                            (http::StatusCode::OK, "OK")
                        }
                    }),
                );
                serve_axum(app).await
            })
        }
        "tower" | "tower-bare" => {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            use hyper_util::server::conn::auto;
            let bare = kind == "tower-bare";
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let service = notmeta_webhooks::tower::WebhookService::new(receiver());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                println!("listening {}", listener.local_addr()?);
                loop {
                    let (socket, _) = listener.accept().await?;
                    let io = TokioIo::new(socket);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    if bare {
                        // hyper alone: read the whole body, answer 200.
                        tokio::spawn(async move {
                            let bare = hyper::service::service_fn(
                                |request: http::Request<hyper::body::Incoming>| async move {
                                    let body = request.into_body().collect().await?.to_bytes();
                                    std::hint::black_box(body);
                                    Ok::<_, hyper::Error>(http::Response::new(Full::new(
                                        Bytes::from_static(b"OK"),
                                    )))
                                },
                            );
                            let _ = builder.serve_connection(io, bare).await;
                        });
                    } else {
                        let service =
                            hyper_util::service::TowerToHyperService::new(service.clone());
                        tokio::spawn(async move {
                            let _ = builder.serve_connection(io, service).await;
                        });
                    }
                }
            })
        }
        other => Err(format!("unknown receiver kind {other:?}").into()),
    }
}

/// The receiver in a child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: &str) -> Result<Self, BoxError> {
        Self::start_with_redis(kind, "")
    }

    /// `redis`: the Redis URL of a queue endpoint (`axum-queue`).
    fn start_with_redis(kind: &str, redis: &str) -> Result<Self, BoxError> {
        Self::start_with_env(kind, "NOTMETA_LOAD_REDIS", redis)
    }

    /// `name=value` in the child's environment.
    fn start_with_env(kind: &str, name: &str, value: &str) -> Result<Self, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", kind])
            .env(name, value)
            // glibc gives each thread its own malloc arena and keeps freed large
            // buffers in them, which makes a server's resident memory jump between
            // samples; two arenas and returning buffers of 64 KiB and more to the OS
            // at once are common server settings and keep the samples about live memory.
            .env("MALLOC_ARENA_MAX", "2")
            .env("MALLOC_MMAP_THRESHOLD_", "65536")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }

    /// Resident memory in KiB, from `/proc`.
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the NotMeta side

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Valid,
    Forged,
    Oversized,
    UnknownType,
}

impl Kind {
    fn for_request(n: usize, mixed: bool) -> Self {
        match n % 100 {
            17 if mixed => Kind::Forged,
            42 if mixed => Kind::Oversized,
            73 if mixed => Kind::UnknownType,
            _ => Kind::Valid,
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Kind::Valid | Kind::UnknownType => 200,
            Kind::Forged => 400,
            Kind::Oversized => 413,
        }
    }
}

/// A signed request body of about 1 KiB, unique per `n`.
fn request(n: usize, kind: Kind, oversized: &Bytes) -> (Bytes, String) {
    let event_type = if kind == Kind::UnknownType {
        "call.started"
    } else {
        "message.received"
    };
    let text = "x".repeat(640);
    let body = Bytes::from(format!(
        r#"{{"id":"evt_load_{n}","type":"{event_type}","created_at":"2024-01-01T12:00:00Z","data":{{"message":{{"id":"msg_{n}","conversation_id":"conv_1","from":"1234567890","to":"0987654321","type":"text","text":"{text}","timestamp":"2024-01-01T12:00:00Z"}},"conversation":{{"id":"conv_1","status":"open","assigned_to":null}}}}}}"#
    ));
    match kind {
        Kind::Forged => {
            let header = sign(&body, "not-the-secret");
            (body, header)
        }
        Kind::Oversized => (oversized.clone(), sign(oversized, SECRET)),
        Kind::Valid | Kind::UnknownType => {
            let header = sign(&body, SECRET);
            (body, header)
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, usize>,
    wrong: usize,
    dropped: usize,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One keep-alive connection sending requests until `next` passes `total`.
async fn connection_loop(
    addr: SocketAddr,
    next: Arc<AtomicUsize>,
    total: usize,
    mixed: bool,
    oversized: Bytes,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return tally;
        }
        let kind = Kind::for_request(n, mixed);
        let (body, header) = request(n, kind, &oversized);
        let request = http::Request::post(format!("http://{addr}/webhooks"))
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("x-notmeta-signature", header)
            .body(Full::new(body))
            .expect("a valid request");
        let started = Instant::now();
        let mut s = match sender.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    tally.dropped += 1;
                    continue;
                }
            },
        };
        let response = match s.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                tally.dropped += 1;
                continue;
            }
        };
        let status = response.status().as_u16();
        let closes = response
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if response.into_body().collect().await.is_err() {
            tally.dropped += 1;
            continue;
        }
        tally
            .latencies_us
            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        *tally.statuses.entry(status).or_default() += 1;
        tally.wrong += usize::from(status != kind.expected_status());
        // The server may close after refusing a body it did not read (413).
        if !closes && !s.is_closed() {
            sender = Some(s);
        }
    }
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.wrong += other.wrong;
        self.dropped += other.dropped;
    }

    fn requests(&self) -> usize {
        self.latencies_us.len()
    }

    fn server_errors(&self) -> usize {
        self.statuses.range(500..).map(|(_, count)| count).sum()
    }

    /// The latency at quantile `q` (0..=1), in µs.
    fn percentile(&mut self, q: f64) -> u32 {
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len().max(1) - 1) as f64 * q).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0)
    }
}

/// Sends requests `from..to` (the number is also the event id) on `connections`
/// keep-alive connections; `mixed` adds the forged, oversized and unknown-type ones.
/// Returns what came back and how long it took.
async fn drive(
    addr: SocketAddr,
    from: usize,
    to: usize,
    connections: usize,
    mixed: bool,
) -> (Tally, f64) {
    let mut oversized = request(0, Kind::Valid, &Bytes::new()).0.to_vec();
    oversized.resize(DEFAULT_MAX_BODY_SIZE + 1, b' ');
    let oversized = Bytes::from(oversized);
    let next = Arc::new(AtomicUsize::new(from));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(connection_loop(
                addr,
                Arc::clone(&next),
                to,
                mixed,
                oversized.clone(),
            ))
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        all.absorb(task.await.expect("a connection task"));
    }
    (all, started.elapsed().as_secs_f64())
}

async fn run(
    kind: &str,
    total: usize,
    connections: usize,
    check_memory: bool,
) -> Result<bool, BoxError> {
    const SLICES: usize = 20;
    let server = Server::start(kind)?;
    let rss = || server.rss_kib().ok_or("cannot read the receiver's memory");
    // The warm-up brings the dedup store to its steady state and lets every connection's buffers
    // reach their working size, so what follows is the steady state. Memory is
    // sampled after every twentieth of each phase; the comparison uses the median of
    // the last ten samples on each side, since the allocator's page use moves by a few
    // MB from one instant to the next.
    let warm_up = (total / 4).max(80_000);
    let mut warm = Tally::default();
    let mut warm_samples = Vec::new();
    for slice in 0..SLICES {
        let (from, to) = (slice * warm_up / SLICES, (slice + 1) * warm_up / SLICES);
        let (tally, _) = drive(server.addr, from, to, connections, true).await;
        warm.absorb(tally);
        warm_samples.push(rss()?);
    }
    let mut measured = Tally::default();
    let mut seconds = 0.0;
    let mut rss_samples = Vec::new();
    for slice in 0..SLICES {
        let from = warm_up + slice * total / SLICES;
        let to = warm_up + (slice + 1) * total / SLICES;
        let (tally, elapsed) = drive(server.addr, from, to, connections, true).await;
        measured.absorb(tally);
        seconds += elapsed;
        rss_samples.push(rss()?);
    }
    let median_of_last_half = |samples: &[u64]| {
        let mut last: Vec<u64> = samples[samples.len() / 2..].to_vec();
        last.sort_unstable();
        last[last.len() / 2]
    };
    let rss_after_warm_up = median_of_last_half(&warm_samples);
    let rss_end = median_of_last_half(&rss_samples);

    let wrong = measured.wrong + warm.wrong;
    let dropped = measured.dropped + warm.dropped;
    let server_errors = measured.server_errors() + warm.server_errors();
    let growth = rss_end as f64 / rss_after_warm_up as f64 - 1.0;
    println!(
        "receiver: {kind}; {connections} connections; {} requests after a {}-request warm-up",
        measured.requests(),
        warm.requests()
    );
    println!(
        "throughput: {:.0} requests/s over {seconds:.1} s",
        measured.requests() as f64 / seconds
    );
    println!(
        "latency: p50 {} µs, p99 {} µs",
        measured.percentile(0.50),
        measured.percentile(0.99)
    );
    println!("statuses: {:?}", measured.statuses);
    println!("wrong statuses: {wrong}, 5xx: {server_errors}, dropped connections: {dropped}");
    println!(
        "receiver RSS (KiB) during warm-up: {warm_samples:?}; after each twentieth: {rss_samples:?}"
    );
    println!(
        "receiver RSS: {rss_after_warm_up} KiB after warm-up, {rss_end} KiB at the end ({:+.1}%)",
        growth * 100.0
    );
    let ok = wrong == 0
        && dropped == 0
        && server_errors == 0
        && measured.requests() == total
        && (growth <= 0.10 || !check_memory);
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

async fn compare(total: usize) -> Result<bool, BoxError> {
    // Alternating slices, so that whatever else the machine does falls on both sides.
    const SLICES: usize = 8;
    println!(
        "{:<9} {:>5} {:>14} {:>15} {:>6}",
        "framework", "conns", "bare req/s", "endpoint req/s", "ratio"
    );
    let mut ok = true;
    // The last pair: the axum endpoint against the hand-written seed approach.
    for label in ["axum", "actix", "tower", "axum:seed"] {
        for connections in [16, 64] {
            let (framework, bare) = match label.split_once(':') {
                Some((endpoint, peer)) => (endpoint, format!("{endpoint}-{peer}")),
                None => (label, format!("{label}-bare")),
            };
            let bare = Server::start(&bare)?;
            let endpoint = Server::start(framework)?;
            drive(bare.addr, 0, total / 5, connections, false).await;
            drive(endpoint.addr, 0, total / 5, connections, false).await;
            let (mut bare_s, mut endpoint_s) = (0.0, 0.0);
            for slice in 0..SLICES {
                let from = total + slice * total / SLICES;
                let to = total + (slice + 1) * total / SLICES;
                let (b, bs) = drive(bare.addr, from, to, connections, false).await;
                let (e, es) = drive(endpoint.addr, from, to, connections, false).await;
                ok &= b.wrong + e.wrong + b.dropped + e.dropped == 0;
                bare_s += bs;
                endpoint_s += es;
            }
            let (b, e) = (total as f64 / bare_s, total as f64 / endpoint_s);
            println!(
                "{label:<9} {connections:>5} {b:>14.0} {e:>15.0} {:>6.2}",
                e / b
            );
        }
    }
    Ok(ok)
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `INFO cpu` of a redis-server: its CPU seconds, user + system (main and
/// background threads).
fn redis_cpu_seconds(port: u16) -> f64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "cpu"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// What Redis costs an endpoint: the inline endpoint (axum, no-op handler) with the
/// default in-memory store, against the same endpoint with [`RedisStore`] and the
/// queue endpoint, each on a redis-server without persistence and on one with
/// `appendonly yes` and `appendfsync always`; alternating slices, at 16 and 64
/// connections. Then a worker (no-op handler) drains each queue, with its handler
/// isolated (the default); the queue is filled again with as many events and a
/// worker without isolation drains it.
async fn redis_compare(total: usize) -> Result<bool, BoxError> {
    const SLICES: usize = 8;
    let dir = TempDir::new("load-aof");
    let redis = [
        ("no persistence", RedisServer::start()),
        ("AOF, fsync always", RedisServer::start_durable(dir.path())),
    ];
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "{total} requests per side and connection count, in {SLICES} alternating slices; \
         {cores} cores shared by the load, the receivers and redis-server"
    );
    println!(
        "{:<50} {:>5} {:>10} {:>9} {:>9} {:>7}",
        "endpoint", "conns", "req/s", "p50 µs", "p99 µs", "ratio"
    );
    let mut ok = true;
    let mut offset = 0;
    for connections in [16, 64] {
        let mut servers = vec![(
            "inline, MemoryStore".to_owned(),
            Server::start("axum-default")?,
        )];
        for (name, server) in &redis {
            servers.push((
                format!("inline, RedisStore, {name}"),
                Server::start_with_redis("axum-redis", &server.url())?,
            ));
            servers.push((
                format!("inline, RedisStore, not isolated, {name}"),
                Server::start_with_redis("axum-redis-async", &server.url())?,
            ));
        }
        // The floor: one round trip per delivery, nothing more (no persistence).
        servers.push((
            "floor: in-memory + RedisStore claim only".to_owned(),
            Server::start_with_redis("axum-redis-floor", &redis[0].1.url())?,
        ));
        for (name, server) in &redis {
            servers.push((
                format!("queue, {name}"),
                Server::start_with_redis("axum-queue", &server.url())?,
            ));
        }
        // Warm-up: connections, buffers, the Lua script cache.
        for (_, server) in &servers {
            drive(server.addr, offset, offset + total / 10, connections, false).await;
        }
        offset += total / 10;
        let mut results: Vec<(Tally, f64)> =
            servers.iter().map(|_| (Tally::default(), 0.0)).collect();
        for slice in 0..SLICES {
            let from = offset + slice * total / SLICES;
            let to = offset + (slice + 1) * total / SLICES;
            for ((name, server), (tally, seconds)) in servers.iter().zip(&mut results) {
                let (t, s) = drive(server.addr, from, to, connections, false).await;
                if t.wrong + t.dropped != 0 {
                    println!("{name}: statuses {:?}, dropped {}", t.statuses, t.dropped);
                    ok = false;
                }
                tally.absorb(t);
                *seconds += s;
            }
        }
        offset += total;
        let inline_rate = results[0].0.requests() as f64 / results[0].1;
        for ((name, _), (tally, seconds)) in servers.iter().zip(&mut results) {
            let rate = tally.requests() as f64 / *seconds;
            println!(
                "{name:<50} {connections:>5} {rate:>10.0} {:>9} {:>9} {:>7.2}",
                tally.percentile(0.50),
                tally.percentile(0.99),
                rate / inline_rate
            );
        }
    }

    // The worker drains what the queue endpoints enqueued: warm-ups and slices.
    println!();
    println!(
        "{:<40} {:>8} {:>10} {:>12} {:>12} {:>12}",
        "worker (no-op handler)",
        "events",
        "events/s",
        "worker cores",
        "redis cores",
        "events/s/core"
    );
    let pid = std::process::id().to_string();
    let drains = redis
        .iter()
        .flat_map(|redis| [(redis, true), (redis, false)]);
    let mut drained = 0;
    for ((name, server), isolate) in drains {
        let queue = Queue::connect(&server.url()).await?.with_namespace("load");
        if !isolate {
            // As many events again as the isolated worker drained, for the worker
            // without isolation.
            let filler = Server::start_with_redis("axum-queue", &server.url())?;
            let count = drained;
            let (t, _) = drive(filler.addr, offset, offset + count, 64, false).await;
            offset += count;
            ok &= t.wrong + t.dropped == 0;
        }
        let waiting = queue.counts().await?.pending;
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&handled);
        let worker = Worker::new(
            queue.clone(),
            move |_event: notmeta_webhooks::Event<'static>| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), HandlerError>(()) }
            },
        )
        .with_concurrency(64)
        .with_poll_interval(std::time::Duration::from_millis(5))
        .with_handler_isolation(isolate);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (cpu0, redis0) = (
            cpu_seconds(&pid).unwrap_or(0.0),
            redis_cpu_seconds(server.port),
        );
        let started = Instant::now();
        let running = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        // Drained: nothing waiting, nothing in progress (acknowledged and deleted).
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let counts = queue.counts().await?;
            if counts.pending == 0 && counts.in_progress == 0 {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
        let redis_cpu = redis_cpu_seconds(server.port) - redis0;
        let _ = stop.send(());
        let stats = running.await??;
        let n = handled.load(Ordering::Relaxed);
        drained = n;
        if n == 0 || n as u64 != waiting || stats.handled != waiting {
            println!("{name}: {waiting} waiting, {n} handled, {stats:?}");
            ok = false;
        }
        let rate = n as f64 / seconds;
        let label = if isolate { "" } else { ", not isolated" };
        println!(
            "{:<40} {n:>8} {rate:>10.0} {:>12.2} {:>12.2} {:>12.0}",
            format!("queue, {name}{label}"),
            cpu / seconds,
            redis_cpu / seconds,
            rate / (cpu / seconds).max(f64::EPSILON)
        );
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// CPU seconds of a PostgreSQL server: its postmaster and every process whose
/// parent it is (the backends of pooled connections live as long as the run).
fn postgres_cpu_seconds(postmaster: u32) -> f64 {
    let parent = |pid: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|pid| {
            pid.parse::<u32>().is_ok_and(|p| p == postmaster) || parent(pid) == Some(postmaster)
        })
        .filter_map(|pid| cpu_seconds(&pid))
        .sum()
}

/// What PostgreSQL costs an endpoint: the inline axum endpoint (no-op handler) with
/// the in-memory store, against the same endpoint with [`PostgresStore`] and with a
/// transactional handler, on a server with `synchronous_commit = on` and one with it
/// off, and the queue endpoint on PostgreSQL; alternating slices at 16 and 64
/// connections. Reports throughput, its ratio to the in-memory endpoint, and the CPU
/// per delivery of the receiver process and of the PostgreSQL server. Then a worker
/// (in this process, concurrency 64) drains each server's queue with a no-op handler
/// (leased); the queue is filled again and a worker with a transactional no-op
/// handler drains it.
///
/// [`PostgresStore`]: notmeta_webhooks::postgres::PostgresStore
async fn postgres_compare(total: usize) -> Result<bool, BoxError> {
    use notmeta_test_support::PostgresServer;
    const SLICES: usize = 6;
    // Four receivers per server, each with a pool of up to 80 connections.
    let postgres = [
        (
            "sync commit on",
            PostgresServer::start_with(&[("max_connections", "400")]),
        ),
        (
            "sync commit off",
            PostgresServer::start_with(&[
                ("max_connections", "400"),
                ("synchronous_commit", "off"),
            ]),
        ),
    ];
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "{total} requests per side and connection count, in {SLICES} alternating slices; \
         {cores} cores shared by the load, the receivers and PostgreSQL \
         (fsync off: commits wait for the WAL write, not for the disk)"
    );
    println!(
        "{:<54} {:>5} {:>9} {:>8} {:>8} {:>6} {:>12} {:>10}",
        "endpoint", "conns", "req/s", "p50 µs", "p99 µs", "ratio", "recv µs/del", "pg µs/del"
    );
    let mut ok = true;
    let mut offset = 0;
    for connections in [16, 64] {
        // (name, server, the PostgreSQL server it uses)
        let mut servers = vec![(
            "inline, MemoryStore".to_owned(),
            Server::start("axum-default")?,
            None,
        )];
        for (name, server) in &postgres {
            for (kind, label) in [
                ("axum-postgres", "PostgresStore"),
                ("axum-postgres-noping", "PostgresStore, no ping"),
                ("axum-postgres-tx", "transactional"),
                ("axum-postgres-tx-noping", "transactional, no ping"),
            ] {
                servers.push((
                    format!("inline, {label}, {name}"),
                    Server::start_with_env(kind, "NOTMETA_LOAD_POSTGRES", &server.url())?,
                    Some(server.pid()),
                ));
            }
            servers.push((
                format!("queue endpoint (enqueue), {name}"),
                Server::start_with_env("axum-pgqueue", "NOTMETA_LOAD_POSTGRES", &server.url())?,
                Some(server.pid()),
            ));
        }
        for (_, server, _) in &servers {
            drive(server.addr, offset, offset + total / 10, connections, false).await;
        }
        offset += total / 10;
        // (tally, seconds, receiver CPU seconds, PostgreSQL CPU seconds)
        let mut results: Vec<(Tally, f64, f64, f64)> = servers
            .iter()
            .map(|_| (Tally::default(), 0.0, 0.0, 0.0))
            .collect();
        for slice in 0..SLICES {
            let from = offset + slice * total / SLICES;
            let to = offset + (slice + 1) * total / SLICES;
            for ((name, server, pg), (tally, seconds, cpu, pg_cpu)) in
                servers.iter().zip(&mut results)
            {
                let pid = server.child.id().to_string();
                let before = (
                    cpu_seconds(&pid).unwrap_or(0.0),
                    pg.map_or(0.0, postgres_cpu_seconds),
                );
                let (t, s) = drive(server.addr, from, to, connections, false).await;
                *cpu += cpu_seconds(&pid).unwrap_or(0.0) - before.0;
                *pg_cpu += pg.map_or(0.0, postgres_cpu_seconds) - before.1;
                if t.wrong + t.dropped != 0 {
                    println!("{name}: statuses {:?}, dropped {}", t.statuses, t.dropped);
                    ok = false;
                }
                tally.absorb(t);
                *seconds += s;
            }
        }
        offset += total;
        let inline_rate = results[0].0.requests() as f64 / results[0].1;
        for ((name, _, pg), (tally, seconds, cpu, pg_cpu)) in servers.iter().zip(&mut results) {
            let n = tally.requests() as f64;
            let rate = n / *seconds;
            let pg_per = if pg.is_some() {
                format!("{:.0}", *pg_cpu / n * 1e6)
            } else {
                "-".to_owned()
            };
            println!(
                "{name:<54} {connections:>5} {rate:>9.0} {:>8} {:>8} {:>6.2} {:>12.0} {pg_per:>10}",
                tally.percentile(0.50),
                tally.percentile(0.99),
                rate / inline_rate,
                *cpu / n * 1e6,
            );
        }
    }

    // Workers (in this process, concurrency 64) drain what the queue endpoints
    // enqueued; the queue is filled again with as many events for the next worker.
    println!();
    println!(
        "{:<54} {:>7} {:>9} {:>12} {:>10} {:>13} {:>10}",
        "worker (no-op handler)",
        "events",
        "events/s",
        "worker cores",
        "pg cores",
        "events/s/core",
        "pg µs/ev"
    );
    for (name, server) in &postgres {
        let pool = pg_pool(&server.url()).await?;
        let queue = Queue::postgres(pool.clone(), &pg_queue_tables()?).await?;
        for transactional in [false, true] {
            let waiting = queue.counts().await?.pending;
            if waiting == 0 || transactional {
                let filler =
                    Server::start_with_env("axum-pgqueue", "NOTMETA_LOAD_POSTGRES", &server.url())?;
                let count = total * 2;
                let (t, _) = drive(filler.addr, offset, offset + count, 64, false).await;
                offset += count;
                if t.wrong + t.dropped != 0 {
                    println!(
                        "filling, {name}: statuses {:?}, dropped {}",
                        t.statuses, t.dropped
                    );
                    ok = false;
                }
            }
            let waiting = queue.counts().await?.pending;
            let handled = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&handled);
            let (seconds, cpu, pg_cpu, stats) = if transactional {
                use notmeta_webhooks::postgres::PostgresStore;
                let store = PostgresStore::new(pool.clone(), &pg_queue_tables()?);
                let handler = store.transactional(move |_event: Event<'static>, _tx| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Box::pin(async { Ok::<(), HandlerError>(()) })
                });
                let worker = pg_worker(Worker::new(queue.clone(), handler));
                pg_drain(&queue, server.pid(), |stop| worker.run(stop)).await?
            } else {
                let worker = pg_worker(Worker::new(queue.clone(), move |_: Event<'static>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async { Ok::<(), HandlerError>(()) }
                }));
                pg_drain(&queue, server.pid(), |stop| worker.run(stop)).await?
            };
            let n = handled.load(Ordering::Relaxed);
            if n == 0 || n as u64 != waiting || stats.handled != waiting {
                println!("{name}: {waiting} waiting, {n} handled, {stats:?}");
                ok = false;
            }
            let rate = n as f64 / seconds;
            let mode = if transactional {
                "transactional"
            } else {
                "leased"
            };
            println!(
                "{:<54} {n:>7} {rate:>9.0} {:>12.2} {:>10.2} {:>13.0} {:>10.0}",
                format!("queue worker, {mode}, {name}"),
                cpu / seconds,
                pg_cpu / seconds,
                rate / (cpu / seconds).max(f64::EPSILON),
                pg_cpu / n.max(1) as f64 * 1e6
            );
        }
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// A pool for the PostgreSQL queue's endpoint and workers.
async fn pg_pool(url: &str) -> Result<sqlx::PgPool, BoxError> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(80)
        .connect(url)
        .await?)
}

/// The PostgreSQL queue's tables.
fn pg_queue_tables() -> Result<notmeta_webhooks::postgres::Tables, BoxError> {
    Ok(notmeta_webhooks::postgres::Tables::default().with_prefix("load_queue_")?)
}

/// The drain's worker settings: as in `redis-compare`.
fn pg_worker<H>(worker: Worker<H>) -> Worker<H> {
    worker
        .with_concurrency(64)
        .with_poll_interval(std::time::Duration::from_millis(5))
}

/// Runs a worker (`run`, given the shutdown signal) until the PostgreSQL queue is
/// drained; returns the seconds taken, this process's and PostgreSQL's (postmaster
/// `pg`) CPU seconds meanwhile, and the worker's stats.
async fn pg_drain<F>(
    queue: &Queue,
    pg: u32,
    run: impl FnOnce(futures_util::future::BoxFuture<'static, ()>) -> F,
) -> Result<(f64, f64, f64, notmeta_webhooks::queue::WorkerStats), BoxError>
where
    F: Future<
            Output = Result<
                notmeta_webhooks::queue::WorkerStats,
                notmeta_webhooks::queue::QueueError,
            >,
        > + Send
        + 'static,
{
    let pid = std::process::id().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (cpu0, pg0) = (cpu_seconds(&pid).unwrap_or(0.0), postgres_cpu_seconds(pg));
    let started = Instant::now();
    let running = tokio::spawn(run(Box::pin(async {
        let _ = stopped.await;
    })));
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let c = queue.counts().await?;
        if c.pending + c.in_progress + c.retrying == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
    let pg_cpu = postgres_cpu_seconds(pg) - pg0;
    let _ = stop.send(());
    let stats = running.await??;
    Ok((seconds, cpu, pg_cpu, stats))
}

/// Enqueues `total` `message.sent` events over `keys` conversations into `queue`
/// (64 at a time, in process), then drains them with one worker (concurrency 64, a
/// no-op handler); the drain's events/s.
async fn ordered_drain_once(queue: &Queue, total: usize, keys: usize) -> Result<f64, BoxError> {
    fill(queue, 0..total, |i| {
        format!(
            r#"{{"id":"evt_{i}","type":"message.sent","created_at":"2024-01-01T12:00:00Z","data":{{"conversation":{{"id":"c{}"}}}}}}"#,
            i % keys.max(1)
        )
    })
    .await?;
    let (worker, handled) = counting_worker(queue);
    let worker = worker.with_poll_interval(std::time::Duration::from_millis(5));
    let seconds = drain(worker, &handled, total).await?;
    Ok(total as f64 / seconds)
}

/// Enqueues the events `body` makes of `ids` into `queue` (64 at a time, in
/// process); an error if any is refused.
async fn fill(
    queue: &Queue,
    ids: std::ops::Range<usize>,
    body: impl Fn(usize) -> String,
) -> Result<(), BoxError> {
    use futures_util::StreamExt as _;
    let endpoint = Enqueuer::new(Verifier::new(SECRET)?, queue.clone());
    let (endpoint, body) = (&endpoint, &body);
    let refused = futures_util::stream::iter(ids)
        .map(|i| async move {
            let body = body(i);
            let signature = sign(body.as_bytes(), SECRET);
            endpoint
                .receive(body.as_bytes(), [signature.as_bytes()])
                .await
                .status()
                .as_u16()
        })
        .buffer_unordered(64)
        .filter(|status| std::future::ready(*status != 200))
        .count()
        .await;
    if refused > 0 {
        return Err(format!("{refused} enqueues refused").into());
    }
    Ok(())
}

/// A worker on `queue` with a no-op handler and concurrency 64 (the default
/// settings otherwise), and its count of events handled.
fn counting_worker(
    queue: &Queue,
) -> (
    Worker<impl notmeta_webhooks::receiver::Handler + use<>>,
    Arc<AtomicUsize>,
) {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let worker = Worker::new(queue.clone(), move |_: Event<'static>| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok::<(), HandlerError>(()) }
    })
    .with_concurrency(64);
    (worker, handled)
}

/// Runs `worker` until `handled` reaches `total`, then stops it: the seconds until
/// then. An error unless it handled exactly `total`.
async fn drain<H: notmeta_webhooks::receiver::Handler>(
    worker: Worker<H>,
    handled: &AtomicUsize,
    total: usize,
) -> Result<f64, BoxError> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    while handled.load(Ordering::Relaxed) < total {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let stats = running.await??;
    if stats.handled != total as u64 {
        return Err(format!("{total} enqueued, {stats:?}").into());
    }
    Ok(seconds)
}

/// `queue-drain-ordered`: the drain rate without and with key limits, on Redis and
/// on PostgreSQL.
async fn queue_drain_ordered(total: usize, keys: usize) -> Result<bool, BoxError> {
    use notmeta_test_support::PostgresServer;
    let redis = RedisServer::start();
    let pg = PostgresServer::start_with(&[("max_connections", "200")]);
    println!("{total} events over {keys} keys, one worker (concurrency 64), no-op handler");
    println!("{:<44} {:>10}", "queue", "events/s");
    let mut rates = Vec::new();
    for backend in ["redis", "postgres"] {
        for ordered in [false, true] {
            let queue = if backend == "redis" {
                let namespace = format!("drain-{ordered}");
                Queue::connect(&redis.url())
                    .await?
                    .with_namespace(namespace)
            } else {
                let prefix = if ordered { "ordered_" } else { "plain_" };
                let tables = notmeta_webhooks::postgres::Tables::default().with_prefix(prefix)?;
                Queue::postgres(pg_pool(&pg.url()).await?, &tables).await?
            };
            let queue = if ordered {
                queue.with_key_limit(KeyLimit::per_key())
            } else {
                queue
            };
            let rate = ordered_drain_once(&queue, total, keys).await?;
            let mode = if ordered {
                "key limit, 1 per conversation"
            } else {
                "no key limit"
            };
            println!("{:<44} {rate:>10.0}", format!("{backend}, {mode}"));
            rates.push(rate);
        }
    }
    println!(
        "ordered / unordered: redis {:.2}, postgres {:.2}",
        rates[1] / rates[0],
        rates[3] / rates[2]
    );
    Ok(true)
}

/// `queue-drain`: one worker (concurrency 64, no-op handler, default settings
/// otherwise) drains `total` events enqueued beforehand, on a redis-server without
/// persistence and on one with `appendfsync always`, with its handler isolation as
/// by default and turned on; events/s, worker process and redis-server CPU.
async fn queue_drain(total: usize) -> Result<bool, BoxError> {
    let dir = TempDir::new("drain-aof");
    let redis = [
        ("no persistence", RedisServer::start()),
        ("AOF always", RedisServer::start_durable(dir.path())),
    ];
    println!("{total} events per drain, one worker (concurrency 64), no-op handler");
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>14}",
        "queue", "events/s", "worker cores", "redis cores", "events/s/core"
    );
    let pid = std::process::id().to_string();
    let mut offset = 0;
    for (name, server) in &redis {
        for isolation in [None, Some(true)] {
            let queue = Queue::connect(&server.url()).await?.with_namespace("drain");
            fill(&queue, offset..offset + total, |i| {
                format!(
                    r#"{{"id":"evt_{i}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
                )
            })
            .await?;
            offset += total;
            let (worker, handled) = counting_worker(&queue);
            let worker = match isolation {
                Some(isolate) => worker.with_handler_isolation(isolate),
                None => worker,
            };
            let (cpu0, redis0) = (
                cpu_seconds(&pid).unwrap_or(0.0),
                redis_cpu_seconds(server.port),
            );
            // The CPU read after the worker has stopped: its shutdown counts too.
            let seconds = drain(worker, &handled, total).await?;
            let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
            let redis_cpu = redis_cpu_seconds(server.port) - redis0;
            let rate = total as f64 / seconds;
            let label = if isolation.is_some() {
                ", isolated"
            } else {
                ""
            };
            println!(
                "{:<34} {rate:>10.0} {:>12.2} {:>12.2} {:>14.0}",
                format!("{name}{label}"),
                cpu / seconds,
                redis_cpu / seconds,
                rate / (cpu / seconds).max(f64::EPSILON)
            );
        }
    }
    Ok(true)
}

fn main() -> Result<ExitCode, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("serve") => {
            serve(args.get(1).map_or("axum", String::as_str))?;
            Ok(ExitCode::SUCCESS)
        }
        Some("run") => {
            let kind = args.get(1).cloned().unwrap_or_else(|| "axum".to_owned());
            let runtime = tokio::runtime::Runtime::new()?;
            // `--statuses-only`: a short smoke run judged on its answers alone, too short
            // for a memory verdict.
            let check_memory = !args.iter().any(|a| a == "--statuses-only");
            let ok = runtime.block_on(run(&kind, arg(2, 200_000), arg(3, 64), check_memory))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("drive") => {
            // Valid events only, against a receiver started elsewhere (for profiling);
            // ids from `first` on.
            let addr: SocketAddr = args
                .get(1)
                .ok_or("drive ADDR [requests] [connections] [first]")?
                .parse()?;
            let runtime = tokio::runtime::Runtime::new()?;
            let from = arg(4, 0);
            let (tally, seconds) =
                runtime.block_on(drive(addr, from, from + arg(2, 100_000), arg(3, 64), false));
            println!(
                "{:.0} requests/s, statuses {:?}",
                tally.requests() as f64 / seconds,
                tally.statuses
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("compare") => {
            let runtime = tokio::runtime::Runtime::new()?;
            let ok = runtime.block_on(compare(arg(1, 50_000)))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("postgres-compare") => {
            let runtime = tokio::runtime::Runtime::new()?;
            let ok = runtime.block_on(postgres_compare(arg(1, 40_000)))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("redis-compare") => {
            let runtime = tokio::runtime::Runtime::new()?;
            let ok = runtime.block_on(redis_compare(arg(1, 40_000)))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("queue-drain") => {
            let runtime = tokio::runtime::Runtime::new()?;
            let ok = runtime.block_on(queue_drain(arg(1, 40_000)))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("queue-drain-ordered") => {
            let runtime = tokio::runtime::Runtime::new()?;
            let ok = runtime.block_on(queue_drain_ordered(arg(1, 20_000), arg(2, 1_000)))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        _ => {
            eprintln!(
                "usage: load run <axum|actix> [requests] [connections] | load compare [requests] \
                 | load redis-compare [requests] | load postgres-compare [requests] \
                 | load queue-drain [events] | load queue-drain-ordered [events] [keys]"
            );
            Ok(ExitCode::from(2))
        }
    }
}
