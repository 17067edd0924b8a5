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
//! # `RedisStore` (its defaults; handler isolated; not isolated) and the queue endpoint
//! # (Redis Streams), at 16 and 64 connections, then workers draining what was
//! # enqueued; with a redis-server (started here) without persistence and one with
//! # `appendfsync always`. A floor row serves the in-memory endpoint plus
//! # `RedisStore`'s claim alone (one round trip per delivery). Per row: requests/s,
//! # the receiver's CPU µs per delivery (its /proc stat), redis-server's (`INFO cpu`),
//! # and the round trips per delivery (a second receiver of the kind, its store
//! # reached through a counting proxy, sent deliveries one at a time); per drain:
//! # events/s, the worker's and redis-server's CPU µs per event, round trips per event
//! # at concurrency 1 and 64, events/s per worker core. Also the round trips per
//! # renewal period with 32 live claims, and a line per target with its measure.
//! cargo run --release -p notmeta-tools --bin load -- redis-compare 40000
//!
//! # The inline axum endpoint with the in-memory store against the same endpoint
//! # with `PostgresStore` (a no-op handler) and with a transactional no-op handler
//! # (the done mark committed in the handler's transaction), on a PostgreSQL server
//! # (started here) with `synchronous_commit` on and one with it off, and the queue
//! # endpoint on PostgreSQL; the same columns as `redis-compare` (PostgreSQL's CPU:
//! # its postmaster and every backend). Then workers drain the queue, with a no-op
//! # (leased) handler and with a transactional no-op handler.
//! cargo run --release -p notmeta-tools --bin load -- postgres-compare 12000
//!
//! # The cost of key limits (`KeyLimit`): the same events (`message.sent` over 1,000
//! # conversations) drained by one worker (concurrency 64, a no-op handler) without
//! # key limits and with one handler at a time per conversation, on Redis (no
//! # persistence) and on PostgreSQL, in one run:
//! cargo run --release -p notmeta-tools --bin load -- queue-drain-ordered 20000 1000
//!
//! # The endpoints against bare handlers measured with wrk, an independent client
//! # (see load/wrk.rs):
//! cargo run --release -p notmeta-tools --bin load -- wrk-compare
//!
//! # One worker (concurrency 64, a no-op handler, the default settings otherwise)
//! # draining events enqueued in process beforehand, on Redis without persistence and
//! # with `appendfsync always`, its handler isolation as by default and turned on:
//! # events/s, the CPU of the worker's process and of redis-server (in cores and in
//! # µs per event), events/s per worker core, scripts per event:
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
use notmeta_test_support::proxy::Proxy;
use notmeta_test_support::{RedisServer, TempDir};
use notmeta_webhooks::dedup::{
    Claim, ClaimToken, IdempotencyStore, MemoryStore, RedisStore, Settled, StoreError,
};
use notmeta_webhooks::queue::{Enqueuer, KeyLimit, Queue, Worker};
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, Event, Verifier, sign};

#[path = "load/wrk.rs"]
mod wrk;

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

/// The `-verify` servers' whole handler: verify and parse the event, answer 200 (or
/// 400 if it is refused), nothing else. What any endpoint that verifies pays at the
/// least: the ceiling for the ready-made endpoints under the same client.
fn verified_status<'h>(
    verifier: &Verifier,
    signature_values: impl IntoIterator<Item = &'h [u8]>,
    body: &[u8],
) -> http::StatusCode {
    match verifier
        .verify(body, signature_values)
        .and_then(|v| v.parse())
    {
        Ok(event) => {
            std::hint::black_box(event);
            http::StatusCode::OK
        }
        Err(_) => http::StatusCode::BAD_REQUEST,
    }
}

/// The signature header's values in an `http` header map (axum, hyper).
fn signature_values(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(notmeta_webhooks::SIGNATURE_HEADER)
        .iter()
        .map(http::HeaderValue::as_bytes)
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
        "axum-redis" | "axum-redis-async" | "axum-redis-default" | "axum-redis-renew" => {
            // The inline endpoint with the Redis idempotency store (the default
            // dedup window and lease), as every replica of a scaled-out receiver runs:
            // the handler isolated, or (`-async`) in the delivery's task, or
            // (`-default`) as the receiver's default has it. `-renew`: handlers longer
            // than a renewal period (the shortest lease, handlers that sleep through
            // several renewals).
            let isolate = match kind {
                "axum-redis" => Some(true),
                "axum-redis-async" => Some(false),
                _ => None,
            };
            let renew = kind == "axum-redis-renew";
            let url = std::env::var("NOTMETA_LOAD_REDIS")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                // A namespace per kind: the kinds share a redis-server in
                // `redis-compare`, and each must see fresh ids.
                let store = RedisStore::connect(&url).await?.with_namespace(kind);
                let store = if renew {
                    store.with_lease(RENEWAL_LEASE)
                } else {
                    store
                };
                let receiver = Receiver::new(
                    Verifier::new(SECRET)?,
                    move |_event: Event<'static>| async move {
                        if renew {
                            tokio::time::sleep(RENEWAL_HANDLER).await;
                        }
                        Ok::<(), HandlerError>(())
                    },
                )
                .with_store(store);
                let receiver = match isolate {
                    Some(isolate) => receiver.with_handler_isolation(isolate),
                    None => receiver,
                };
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
        "axum" | "axum-default" | "axum-bare" | "axum-verify" | "axum-nodedup" => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let app = if kind == "axum" {
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver()))
                } else if kind == "axum-verify" {
                    // A bare handler that verifies and parses the event and does
                    // nothing else: what any verifying endpoint cannot avoid.
                    let verifier = Verifier::new(SECRET)?;
                    axum::Router::new().route(
                        "/webhooks",
                        axum::routing::post(
                            move |headers: http::HeaderMap, body: Bytes| async move {
                                verified_status(&verifier, signature_values(&headers), &body)
                            },
                        ),
                    )
                } else if kind == "axum-nodedup" {
                    let receiver =
                        Receiver::new(Verifier::new(SECRET)?, |_event: Event<'static>| async {
                            Ok::<(), HandlerError>(())
                        })
                        .without_dedup();
                    axum::Router::new()
                        .route("/webhooks", notmeta_webhooks::axum::endpoint(receiver))
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
        "actix" | "actix-bare" | "actix-verify" => {
            let bare = kind == "actix-bare";
            let verify = kind == "actix-verify";
            let verifier = Verifier::new(SECRET)?;
            actix_web::rt::System::new().block_on(async move {
                let receiver = receiver();
                let server = actix_web::HttpServer::new(move || {
                    let app = actix_web::App::new();
                    let verifier = verifier.clone();
                    if verify {
                        app.route(
                            "/webhooks",
                            actix_web::web::post().to(
                                move |request: actix_web::HttpRequest,
                                      body: actix_web::web::Bytes| {
                                    let verifier = verifier.clone();
                                    async move {
                                        let values = request
                                            .headers()
                                            .get_all(notmeta_webhooks::SIGNATURE_HEADER.as_str())
                                            .map(|v| v.as_bytes());
                                        let status = verified_status(&verifier, values, &body);
                                        let status =
                                            actix_web::http::StatusCode::from_u16(status.as_u16())
                                                .unwrap_or(
                                                    actix_web::http::StatusCode::BAD_REQUEST,
                                                );
                                        let body = if status.is_success() { "OK" } else { "" };
                                        actix_web::HttpResponse::build(status).body(body)
                                    }
                                },
                            ),
                        )
                    } else if bare {
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
        "tower" | "tower-bare" | "tower-verify" => {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            use hyper_util::server::conn::auto;
            let bare = kind == "tower-bare";
            let verifier = (kind == "tower-verify")
                .then(|| Verifier::new(SECRET))
                .transpose()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let service = notmeta_webhooks::tower::WebhookService::new(receiver());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                println!("listening {}", listener.local_addr()?);
                loop {
                    let (socket, _) = listener.accept().await?;
                    let io = TokioIo::new(socket);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    if let Some(verifier) = verifier.clone() {
                        // hyper, the whole body read, verified and parsed.
                        tokio::spawn(async move {
                            let verify = hyper::service::service_fn(
                                move |request: http::Request<hyper::body::Incoming>| {
                                    let verifier = verifier.clone();
                                    async move {
                                        let (parts, body) = request.into_parts();
                                        let body = body.collect().await?.to_bytes();
                                        let values = signature_values(&parts.headers);
                                        let status = verified_status(&verifier, values, &body);
                                        let mut response = http::Response::new(Full::new(
                                            Bytes::from_static(b"OK"),
                                        ));
                                        *response.status_mut() = status;
                                        Ok::<_, hyper::Error>(response)
                                    }
                                },
                            );
                            let _ = builder.serve_connection(io, verify).await;
                        });
                    } else if bare {
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

// ------------------------------------------------------------- what a store costs

/// The server a store runs on: its CPU time, and (through a [`Proxy`]) the round
/// trips made to it, are what the store comparisons report.
#[derive(Clone, Copy, Debug)]
enum StoreServer {
    /// A redis-server on this loopback port.
    Redis(u16),
    /// A PostgreSQL server: its postmaster's pid, and its loopback port.
    Postgres(u32, u16),
}

impl StoreServer {
    fn redis(server: &RedisServer) -> Self {
        Self::Redis(server.port)
    }

    fn postgres(server: &notmeta_test_support::PostgresServer) -> Self {
        Self::Postgres(server.pid(), server.port())
    }

    fn port(self) -> u16 {
        match self {
            Self::Redis(port) | Self::Postgres(_, port) => port,
        }
    }

    /// Its URL, or that of a proxy to it on `port`.
    fn url_at(self, port: u16) -> String {
        match self {
            Self::Redis(_) => format!("redis://127.0.0.1:{port}/"),
            Self::Postgres(..) => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        }
    }

    /// The variable that gives a receiver (`serve`) the URL.
    fn env(self) -> &'static str {
        match self {
            Self::Redis(_) => "NOTMETA_LOAD_REDIS",
            Self::Postgres(..) => "NOTMETA_LOAD_POSTGRES",
        }
    }

    /// CPU seconds (user + system) the server has used: redis-server's `INFO cpu`
    /// (main and background threads), or PostgreSQL's postmaster and every process
    /// whose parent it is.
    fn cpu_seconds(self) -> f64 {
        match self {
            Self::Redis(port) => ["used_cpu_sys", "used_cpu_user"]
                .iter()
                .filter_map(|name| redis_info(port, "cpu", name))
                .sum(),
            Self::Postgres(postmaster, _) => postgres_cpu_seconds(postmaster),
        }
    }

    /// Commands Redis has processed (`INFO stats` `total_commands_processed`: each
    /// command of a pipeline or a `MULTI` counts, and so does each command a script
    /// runs, besides the script's own); `None` for PostgreSQL.
    fn commands(self) -> Option<f64> {
        match self {
            Self::Redis(port) => redis_info(port, "stats", "total_commands_processed"),
            Self::Postgres(..) => None,
        }
    }
}

/// How many scripts a redis-server has run (`INFO commandstats`, `EVALSHA` and
/// `EVAL` calls; the scripts' own commands are not counted).
fn redis_scripts(port: u16) -> f64 {
    let Ok(out) = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
    else {
        return 0.0;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// A field of a redis-server's `INFO section`.
fn redis_info(port: u16, section: &str, field: &str) -> Option<f64> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", section])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
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

/// An endpoint to compare: its row's label, the receiver kind served (`serve`), and
/// the store server it uses (none: the in-memory store).
struct Spec {
    name: String,
    kind: &'static str,
    store: Option<StoreServer>,
}

impl Spec {
    fn new(name: impl Into<String>, kind: &'static str, store: Option<StoreServer>) -> Self {
        Self {
            name: name.into(),
            kind,
            store,
        }
    }

    /// Its receiver, its store reached at `port` (the server's own, or a proxy's).
    fn start(&self, port: Option<u16>) -> Result<Server, BoxError> {
        match self.store {
            None => Server::start(self.kind),
            Some(store) => Server::start_with_env(
                self.kind,
                store.env(),
                &store.url_at(port.unwrap_or(store.port())),
            ),
        }
    }
}

/// Round trips (and, on Redis, commands) per delivery or per event.
#[derive(Clone, Copy, Debug, Default)]
struct Trips {
    round_trips: f64,
    commands: Option<f64>,
}

impl Trips {
    /// What `proxy` and `store` counted between `before` and now, per `n`.
    fn since(before: (u64, Option<f64>), proxy: &Proxy, store: StoreServer, n: usize) -> Self {
        let n = n.max(1) as f64;
        Self {
            round_trips: (proxy.round_trips() - before.0) as f64 / n,
            // One `INFO` (the previous reading) is counted between two readings.
            commands: before
                .1
                .zip(store.commands())
                .map(|(a, b)| (b - a - 1.0) / n),
        }
    }

    fn mark(proxy: &Proxy, store: StoreServer) -> (u64, Option<f64>) {
        (proxy.round_trips(), store.commands())
    }
}

/// Deliveries sent one at a time to measure round trips, after as many again to warm up.
const TRIP_DELIVERIES: usize = 200;

/// Round trips per delivery of `spec`: a receiver of its kind of its own, its store
/// reached through a counting [`Proxy`], is sent [`TRIP_DELIVERIES`] deliveries one at
/// a time (one connection), ids from `from`, after as many to warm up (connections,
/// prepared statements, scripts). With one delivery in flight, each request→reply
/// turn on a store connection is one round trip the delivery waited for.
async fn delivery_trips(spec: &Spec, store: StoreServer, from: usize) -> Result<Trips, BoxError> {
    let proxy = Proxy::start(store.port()).await;
    let server = spec.start(Some(proxy.port()))?;
    let (warm, _) = drive(server.addr, from, from + TRIP_DELIVERIES, 1, false).await;
    let before = Trips::mark(&proxy, store);
    let from = from + TRIP_DELIVERIES;
    let (t, _) = drive(server.addr, from, from + TRIP_DELIVERIES, 1, false).await;
    let trips = Trips::since(before, &proxy, store, t.requests());
    if warm.wrong + warm.dropped + t.wrong + t.dropped != 0 || t.requests() != TRIP_DELIVERIES {
        return Err(format!("{}: statuses {:?}", spec.name, t.statuses).into());
    }
    Ok(trips)
}

/// One endpoint's totals over its slices at one connection count.
#[derive(Default)]
struct Measured {
    tally: Tally,
    seconds: f64,
    /// The receiver's CPU seconds.
    cpu: f64,
    /// The store server's CPU seconds.
    store_cpu: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.tally.requests() as f64 / self.seconds
    }

    /// Receiver CPU µs per request answered.
    fn cpu_per(&self) -> f64 {
        self.cpu / self.tally.requests().max(1) as f64 * 1e6
    }
}

/// Every endpoint's results at one connection count, in the order of the specs.
struct Compared {
    connections: usize,
    measured: Vec<Measured>,
}

/// Serves every endpoint of `specs` (the first is the baseline the ratios divide by)
/// and, at 16 and then 64 connections, alternates `slices` slices of `total` fresh
/// valid deliveries among them after a warm-up of a tenth; reads each receiver's and
/// its store server's CPU time around each of its slices. Before that, the round
/// trips per delivery of each endpoint with a store ([`delivery_trips`]). Prints a
/// row per endpoint and connection count; ids from `offset`, which it moves on.
async fn compare_endpoints(
    specs: &[Spec],
    total: usize,
    slices: usize,
    offset: &mut usize,
    ok: &mut bool,
) -> Result<(Vec<Option<Trips>>, Vec<Compared>), BoxError> {
    let mut trips = Vec::new();
    for spec in specs {
        trips.push(match spec.store {
            Some(store) => {
                let t = delivery_trips(spec, store, *offset).await?;
                *offset += 2 * TRIP_DELIVERIES;
                Some(t)
            }
            None => None,
        });
    }
    let commands = specs
        .iter()
        .any(|s| matches!(s.store, Some(StoreServer::Redis(_))));
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(8);
    println!(
        "{:<width$} {:>5} {:>8} {:>8} {:>8} {:>6} {:>12} {:>13} {:>7}{}",
        "endpoint",
        "conns",
        "req/s",
        "p50 µs",
        "p99 µs",
        "ratio",
        "recv µs/del",
        "store µs/del",
        "rt/del",
        if commands { "  cmds/del" } else { "" }
    );
    let mut all = Vec::new();
    for connections in [16, 64] {
        let servers = specs
            .iter()
            .map(|spec| spec.start(None))
            .collect::<Result<Vec<_>, _>>()?;
        // Warm-up: connections, buffers, pools, prepared statements, scripts.
        for server in &servers {
            drive(
                server.addr,
                *offset,
                *offset + total / 10,
                connections,
                false,
            )
            .await;
        }
        *offset += total / 10;
        let mut results: Vec<Measured> = specs.iter().map(|_| Measured::default()).collect();
        for slice in 0..slices {
            let from = *offset + slice * total / slices;
            let to = *offset + (slice + 1) * total / slices;
            for ((spec, server), m) in specs.iter().zip(&servers).zip(&mut results) {
                let pid = server.child.id().to_string();
                let store_cpu = || spec.store.map_or(0.0, StoreServer::cpu_seconds);
                let before = (cpu_seconds(&pid).unwrap_or(0.0), store_cpu());
                let (t, s) = drive(server.addr, from, to, connections, false).await;
                m.cpu += cpu_seconds(&pid).unwrap_or(0.0) - before.0;
                m.store_cpu += store_cpu() - before.1;
                if t.wrong + t.dropped != 0 {
                    println!(
                        "{}: statuses {:?}, dropped {}",
                        spec.name, t.statuses, t.dropped
                    );
                    *ok = false;
                }
                m.tally.absorb(t);
                m.seconds += s;
            }
        }
        *offset += total;
        let baseline = results[0].rate();
        for ((spec, m), trips) in specs.iter().zip(&mut results).zip(&trips) {
            let n = m.tally.requests().max(1) as f64;
            let dash = || "-".to_owned();
            let store_per = spec
                .store
                .map_or_else(dash, |_| format!("{:.0}", m.store_cpu / n * 1e6));
            let rt = trips.map_or_else(dash, |t| format!("{:.2}", t.round_trips));
            let cmds = trips
                .and_then(|t| t.commands)
                .map_or_else(dash, |c| format!("{c:.2}"));
            println!(
                "{:<width$} {connections:>5} {:>8.0} {:>8} {:>8} {:>6.2} {:>12.0} {store_per:>13} {rt:>7}{}",
                spec.name,
                m.rate(),
                m.tally.percentile(0.50),
                m.tally.percentile(0.99),
                m.rate() / baseline,
                m.cpu_per(),
                if commands {
                    format!(" {cmds:>9}")
                } else {
                    String::new()
                }
            );
        }
        all.push(Compared {
            connections,
            measured: results,
        });
    }
    Ok((trips, all))
}

/// How a drain's no-op handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handling {
    /// As the worker's default isolation has it.
    Default,
    /// Isolated (`true`) or not, set with `with_handler_isolation`.
    Isolated(bool),
    /// A transactional no-op handler (PostgreSQL): the done mark committed in its
    /// transaction.
    Transactional,
}

impl Handling {
    fn label(self) -> &'static str {
        match self {
            Self::Default => "default isolation",
            Self::Isolated(true) => "isolated",
            Self::Isolated(false) => "not isolated",
            Self::Transactional => "transactional",
        }
    }

    fn apply<H>(self, worker: Worker<H>, concurrency: usize) -> Worker<H> {
        let worker = worker
            .with_concurrency(concurrency)
            .with_poll_interval(std::time::Duration::from_millis(5));
        match self {
            Self::Isolated(isolate) => worker.with_handler_isolation(isolate),
            Self::Default | Self::Transactional => worker,
        }
    }
}

/// What a drain measured.
struct Drained {
    events: usize,
    seconds: f64,
    /// This process's CPU seconds (the worker's).
    cpu: f64,
    /// The store server's CPU seconds.
    store_cpu: f64,
}

/// Drains `queue` with one worker in this process (`concurrency`, poll 5 ms, a no-op
/// handler run as `handling`; `pg`: the pool and tables of a transactional handler's
/// store) until `watch` (the same queue, perhaps over another connection) has nothing
/// waiting, running or retrying. Checks that every waiting event was handled once.
async fn drain(
    queue: &Queue,
    watch: &Queue,
    handling: Handling,
    concurrency: usize,
    store: StoreServer,
    pg: Option<(&sqlx::PgPool, &notmeta_webhooks::postgres::Tables)>,
) -> Result<Drained, BoxError> {
    let waiting = watch.counts().await?.pending;
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let (seconds, cpu, store_cpu, stats) = match (handling, pg) {
        (Handling::Transactional, Some((pool, tables))) => {
            let pg_store = notmeta_webhooks::postgres::PostgresStore::new(pool.clone(), tables);
            let handler = pg_store.transactional(move |_event: Event<'static>, _tx| {
                counter.fetch_add(1, Ordering::Relaxed);
                Box::pin(async { Ok::<(), HandlerError>(()) })
            });
            let worker = handling.apply(Worker::new(queue.clone(), handler), concurrency);
            timed_drain(watch, store, |stop| worker.run(stop)).await?
        }
        (Handling::Transactional, None) => {
            return Err("a transactional handler needs PostgreSQL".into());
        }
        _ => {
            let handler = move |_event: Event<'static>| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), HandlerError>(()) }
            };
            let worker = handling.apply(Worker::new(queue.clone(), handler), concurrency);
            timed_drain(watch, store, |stop| worker.run(stop)).await?
        }
    };
    let events = handled.load(Ordering::Relaxed);
    if events == 0 || events as u64 != waiting || stats.handled != waiting {
        return Err(format!("{waiting} waiting, {events} handled, {stats:?}").into());
    }
    Ok(Drained {
        events,
        seconds,
        cpu,
        store_cpu,
    })
}

/// Runs a worker (`run`, given the shutdown signal) until `queue` is drained;
/// returns the seconds taken, this process's and the store server's CPU seconds
/// meanwhile, and the worker's stats.
async fn timed_drain<F>(
    queue: &Queue,
    store: StoreServer,
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
    let (cpu0, store0) = (cpu_seconds(&pid).unwrap_or(0.0), store.cpu_seconds());
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
    let store_cpu = store.cpu_seconds() - store0;
    let _ = stop.send(());
    let stats = running.await??;
    Ok((seconds, cpu, store_cpu, stats))
}

/// Enqueues the events `ids` into `queue`, 64 at a time, in this process: `signed`
/// gives an id's body and signature.
async fn enqueue(
    queue: &Queue,
    ids: std::ops::Range<usize>,
    signed: impl Fn(usize) -> (Bytes, String),
) -> Result<(), BoxError> {
    use futures_util::StreamExt as _;
    let endpoint = Enqueuer::new(Verifier::new(SECRET)?, queue.clone());
    let endpoint = &endpoint;
    let statuses: Vec<u16> = futures_util::stream::iter(ids)
        .map(|n| {
            let (body, signature) = signed(n);
            async move {
                endpoint
                    .receive(&body, [signature.as_bytes()])
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    if statuses.iter().any(|s| *s != 200) {
        return Err("an enqueue was refused".into());
    }
    Ok(())
}

/// A valid ~1 KiB event, signed, for [`enqueue`].
fn valid(n: usize) -> (Bytes, String) {
    request(n, Kind::Valid, &Bytes::new())
}

/// Events each drain's round-trip count is taken over.
const TRIP_EVENTS: usize = 500;

/// Round trips per event of a drain: [`TRIP_EVENTS`] events (ids from `from`) are
/// enqueued into a queue of their own (Redis namespace or PostgreSQL tables
/// `probe`), then a worker whose store connections go through a counting [`Proxy`]
/// drains them at `concurrency` (polls that find nothing included; the drain's
/// progress is read over a direct connection). At concurrency 1 each turn is a
/// round trip the event waited for; at 64, independent requests multiplexed on one
/// connection may share a turn, so it is a lower bound.
async fn drain_trips(
    store: StoreServer,
    handling: Handling,
    concurrency: usize,
    from: usize,
) -> Result<Trips, BoxError> {
    let proxy = Proxy::start(store.port()).await;
    let (direct, through) = (store.url_at(store.port()), store.url_at(proxy.port()));
    let tables = notmeta_webhooks::postgres::Tables::default().with_prefix("probe_")?;
    let (watch, queue, pool) = match store {
        StoreServer::Redis(_) => (
            Queue::connect(&direct).await?.with_namespace("probe"),
            Queue::connect(&through).await?.with_namespace("probe"),
            None,
        ),
        StoreServer::Postgres(..) => {
            let pool = pg_pool(&through).await?;
            (
                Queue::postgres(pg_pool(&direct).await?, &tables).await?,
                Queue::postgres(pool.clone(), &tables).await?,
                Some(pool),
            )
        }
    };
    enqueue(&watch, from..from + TRIP_EVENTS, valid).await?;
    let before = Trips::mark(&proxy, store);
    let pg = pool.as_ref().map(|pool| (pool, &tables));
    let drained = drain(&queue, &watch, handling, concurrency, store, pg).await?;
    Ok(Trips::since(before, &proxy, store, drained.events))
}

/// The header of the drains' table.
fn print_drain_header(width: usize) {
    println!(
        "{:<width$} {:>7} {:>9} {:>13} {:>12} {:>10} {:>10} {:>13}",
        "worker (no-op handler, concurrency 64)",
        "events",
        "events/s",
        "worker µs/ev",
        "store µs/ev",
        "rt/ev @1",
        "rt/ev @64",
        "events/s/core",
    );
}

/// A drain's row: `d` measured at concurrency 64, `alone` and `at_64` the round
/// trips of [`drain_trips`] at 1 and 64; returns the events/s per worker core.
fn print_drain_row(width: usize, label: &str, d: &Drained, alone: Trips, at_64: Trips) -> f64 {
    let n = d.events.max(1) as f64;
    let per_core = n / d.cpu.max(f64::EPSILON);
    println!(
        "{label:<width$} {:>7} {:>9.0} {:>13.1} {:>12.1} {:>10.2} {:>10.2} {per_core:>13.0}",
        d.events,
        n / d.seconds,
        d.cpu / n * 1e6,
        d.store_cpu / n * 1e6,
        alone.round_trips,
        at_64.round_trips,
    );
    per_core
}

/// The lease of the renewal measurement's claims (the shortest a store takes)…
const RENEWAL_LEASE: std::time::Duration = std::time::Duration::from_secs(1);
/// … renewed every third of it (as the receiver does) …
const RENEWAL_PERIOD: std::time::Duration = std::time::Duration::from_millis(333);
/// … by handlers that run this long.
const RENEWAL_HANDLER: std::time::Duration = std::time::Duration::from_millis(2_500);
/// Live claims at once.
const RENEWAL_CLAIMS: usize = 32;

/// Round trips (and commands) per renewal period while [`RENEWAL_CLAIMS`] claims are
/// live on `RedisStore` (lease [`RENEWAL_LEASE`], handlers of [`RENEWAL_HANDLER`]): a
/// receiver whose store goes through a counting [`Proxy`] is sent that many
/// deliveries, one per connection, their starts spread evenly over one renewal period
/// (so that renewals made claim by claim do not fall together); the count runs, one
/// period at a time, from when every claim is live until the first handler ends, when
/// only renewals reach Redis.
async fn renewal_trips(redis: &RedisServer, from: usize) -> Result<Renewals, BoxError> {
    let store = StoreServer::redis(redis);
    let proxy = Proxy::start(store.port()).await;
    let server = Server::start_with_redis("axum-redis-renew", &proxy.redis_url())?;
    let addr = server.addr;
    // A first delivery opens the store's connection and loads its scripts.
    let (warm, _) = drive(addr, from, from + 1, 1, false).await;
    let started = tokio::time::Instant::now();
    let deliveries: Vec<_> = (0..RENEWAL_CLAIMS)
        .map(|i| {
            tokio::spawn(async move {
                let at = RENEWAL_PERIOD * u32::try_from(i).unwrap_or(0)
                    / u32::try_from(RENEWAL_CLAIMS).unwrap_or(1);
                tokio::time::sleep_until(started + at).await;
                drive(addr, from + 1 + i, from + 2 + i, 1, false).await.0
            })
        })
        .collect();
    // Counted period by period: renewals made one by one may share a turn when the
    // receiver's threads wake late (a starved machine), never the reverse, so the
    // busiest period is the closest to the true count.
    let margin = std::time::Duration::from_millis(60);
    let first = started + RENEWAL_PERIOD + margin;
    let periods = ((RENEWAL_HANDLER - RENEWAL_PERIOD - 2 * margin).as_secs_f64()
        / RENEWAL_PERIOD.as_secs_f64()) as u32;
    tokio::time::sleep_until(first).await;
    let before = Trips::mark(&proxy, store);
    let mut busiest = 0;
    let mut last = proxy.round_trips();
    for period in 1..=periods {
        tokio::time::sleep_until(first + RENEWAL_PERIOD * period).await;
        let now = proxy.round_trips();
        busiest = busiest.max(now - last);
        last = now;
    }
    let trips = Trips::since(before, &proxy, store, periods as usize);
    let mut tally = warm;
    for delivery in deliveries {
        tally.absorb(delivery.await?);
    }
    if tally.wrong + tally.dropped != 0 || tally.requests() != RENEWAL_CLAIMS + 1 {
        return Err(format!("renewals: statuses {:?}", tally.statuses).into());
    }
    Ok(Renewals {
        periods,
        mean: trips,
        busiest,
    })
}

/// Round trips per renewal period: the mean over `periods`, and the busiest period's.
#[derive(Debug)]
struct Renewals {
    periods: u32,
    mean: Trips,
    busiest: u64,
}

/// What Redis costs an endpoint: the inline endpoint (axum, no-op handler) with the
/// default in-memory store, against the same endpoint with [`RedisStore`] (its
/// defaults; handler isolated; not isolated) and the queue endpoint, each on a
/// redis-server without persistence and on one with `appendonly yes` and
/// `appendfsync always` (the defaults row on the first only), and a floor (the
/// in-memory endpoint plus `RedisStore`'s claim alone); alternating slices, at 16 and
/// 64 connections ([`compare_endpoints`]). Then the renewals of live claims
/// ([`renewal_trips`]). Then a worker (no-op handler) drains each queue with its
/// default isolation; the queue is filled again (as many events, at most half of
/// `total`) for a worker with the handler isolated, and again for one without
/// isolation; after each, the round trips per event ([`drain_trips`]). Last, a line
/// per target with its measure.
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
    let store = |i: usize| Some(StoreServer::redis(&redis[i].1));
    let mut specs = vec![Spec::new("inline, MemoryStore", "axum-default", None)];
    specs.push(Spec::new(
        format!("inline, RedisStore, defaults, {}", redis[0].0),
        "axum-redis-default",
        store(0),
    ));
    for (i, (name, _)) in redis.iter().enumerate() {
        specs.push(Spec::new(
            format!("inline, RedisStore, isolated, {name}"),
            "axum-redis",
            store(i),
        ));
        specs.push(Spec::new(
            format!("inline, RedisStore, not isolated, {name}"),
            "axum-redis-async",
            store(i),
        ));
    }
    // The floor: one round trip per delivery, nothing more (no persistence).
    specs.push(Spec::new(
        "floor: in-memory + RedisStore claim only",
        "axum-redis-floor",
        store(0),
    ));
    for (i, (name, _)) in redis.iter().enumerate() {
        specs.push(Spec::new(format!("queue, {name}"), "axum-queue", store(i)));
    }
    let mut ok = true;
    let mut offset = 0;
    let (trips, compared) = compare_endpoints(&specs, total, SLICES, &mut offset, &mut ok).await?;

    println!();
    let renewals = renewal_trips(&redis[0].1, offset).await?;
    offset += RENEWAL_CLAIMS + 1;
    println!(
        "renewals, RedisStore, {}: {RENEWAL_CLAIMS} live claims (lease {RENEWAL_LEASE:?}, \
         renewed every {RENEWAL_PERIOD:?}), over {} periods: {:.2} round trips per period \
         (the busiest: {}), {} commands per period",
        redis[0].0,
        renewals.periods,
        renewals.mean.round_trips,
        renewals.busiest,
        renewals
            .mean
            .commands
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"))
    );

    // The worker drains what the queue endpoints enqueued (warm-ups, slices, round
    // trips), then as many again for each next worker.
    println!();
    let width = 56;
    print_drain_header(width);
    let mut drained: usize = 0;
    let mut drain_per_core = None;
    for (name, server) in &redis {
        let store = StoreServer::redis(server);
        let queue = Queue::connect(&server.url()).await?.with_namespace("load");
        for handling in [
            Handling::Default,
            Handling::Isolated(true),
            Handling::Isolated(false),
        ] {
            if handling != Handling::Default {
                // As many as the first drain, at most half a side's requests.
                let count = drained.min(total / 2);
                enqueue(&queue, offset..offset + count, valid).await?;
                offset += count;
            }
            let d = match drain(&queue, &queue, handling, 64, store, None).await {
                Ok(d) => d,
                Err(e) => {
                    println!("{name}, {}: {e}", handling.label());
                    ok = false;
                    continue;
                }
            };
            drained = d.events;
            let alone = drain_trips(store, handling, 1, offset).await?;
            offset += TRIP_EVENTS;
            let at_64 = drain_trips(store, handling, 64, offset).await?;
            offset += TRIP_EVENTS;
            let label = format!("queue, {name}, {}", handling.label());
            let per_core = print_drain_row(width, &label, &d, alone, at_64);
            if handling == Handling::Default && drain_per_core.is_none() {
                drain_per_core = Some(per_core);
            }
        }
    }

    // The targets, on Redis without persistence.
    println!();
    let ratios: Vec<String> = compared
        .iter()
        .map(|c| {
            let ratio = c.measured[1].cpu_per() / c.measured[0].cpu_per();
            format!("{ratio:.2}× at {} connections", c.connections)
        })
        .collect();
    println!(
        "RedisStore receiver CPU ÷ memory: {} (target ≤ 1.9×)",
        ratios.join(", ")
    );
    println!(
        "RedisStore round trips per delivery, handler shorter than a renewal period: {:.2} \
         (target ≤ 2)",
        trips[1].map_or(f64::NAN, |t| t.round_trips)
    );
    println!(
        "RedisStore round trips per renewal period, {RENEWAL_CLAIMS} live claims: {:.2}, \
         the busiest period {} (target ≤ 1)",
        renewals.mean.round_trips, renewals.busiest
    );
    println!(
        "worker drain, Redis without persistence: {:.0} events/s per worker core \
         (target ≥ 50,000)",
        drain_per_core.unwrap_or(f64::NAN)
    );
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// What PostgreSQL costs an endpoint: the inline axum endpoint (no-op handler) with
/// the in-memory store, against the same endpoint with [`PostgresStore`] and with a
/// transactional handler (each with sqlx's ping before each use and without), on a
/// server with `synchronous_commit = on` and one with it off, and the queue endpoint
/// on PostgreSQL; alternating slices at 16 and 64 connections
/// ([`compare_endpoints`]). Then a worker (in this process, concurrency 64) drains
/// each server's queue with a no-op handler (leased); the queue is filled again and a
/// worker with a transactional no-op handler drains it.
///
/// [`PostgresStore`]: notmeta_webhooks::postgres::PostgresStore
async fn postgres_compare(total: usize) -> Result<bool, BoxError> {
    use notmeta_test_support::PostgresServer;
    const SLICES: usize = 6;
    // Four receivers per server, each with a pool of up to 80 connections, and the
    // probes'.
    let postgres = [
        (
            "sync commit on",
            PostgresServer::start_with(&[("max_connections", "500")]),
        ),
        (
            "sync commit off",
            PostgresServer::start_with(&[
                ("max_connections", "500"),
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
    let mut specs = vec![Spec::new("inline, MemoryStore", "axum-default", None)];
    for (name, server) in &postgres {
        let store = Some(StoreServer::postgres(server));
        for (kind, label) in [
            ("axum-postgres", "PostgresStore"),
            ("axum-postgres-noping", "PostgresStore, no ping"),
            ("axum-postgres-tx", "transactional"),
            ("axum-postgres-tx-noping", "transactional, no ping"),
        ] {
            specs.push(Spec::new(format!("inline, {label}, {name}"), kind, store));
        }
        specs.push(Spec::new(
            format!("queue endpoint (enqueue), {name}"),
            "axum-pgqueue",
            store,
        ));
    }
    let mut ok = true;
    let mut offset = 0;
    compare_endpoints(&specs, total, SLICES, &mut offset, &mut ok).await?;

    // Workers (in this process, concurrency 64) drain what the queue endpoints
    // enqueued; the queue is filled again with as many events for the next worker.
    println!();
    let width = 56;
    print_drain_header(width);
    for (name, server) in &postgres {
        let store = StoreServer::postgres(server);
        let pool = pg_pool(&server.url()).await?;
        let tables = pg_queue_tables()?;
        let queue = Queue::postgres(pool.clone(), &tables).await?;
        for handling in [Handling::Default, Handling::Transactional] {
            let waiting = queue.counts().await?.pending;
            if waiting == 0 || handling == Handling::Transactional {
                let count = total * 2;
                enqueue(&queue, offset..offset + count, valid).await?;
                offset += count;
            }
            let d = match drain(&queue, &queue, handling, 64, store, Some((&pool, &tables))).await {
                Ok(d) => d,
                Err(e) => {
                    println!("{name}, {}: {e}", handling.label());
                    ok = false;
                    continue;
                }
            };
            let alone = drain_trips(store, handling, 1, offset).await?;
            offset += TRIP_EVENTS;
            let at_64 = drain_trips(store, handling, 64, offset).await?;
            offset += TRIP_EVENTS;
            let mode = if handling == Handling::Transactional {
                "transactional"
            } else {
                "leased"
            };
            print_drain_row(
                width,
                &format!("queue worker, {mode}, {name}"),
                &d,
                alone,
                at_64,
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

/// Enqueues `total` `message.sent` events over `keys` conversations into `queue`
/// (64 at a time, in process), then drains them with one worker (concurrency 64, a
/// no-op handler); the drain's events/s.
async fn ordered_drain_once(queue: &Queue, total: usize, keys: usize) -> Result<f64, BoxError> {
    enqueue(queue, 0..total, |i| {
        let body = Bytes::from(format!(
            r#"{{"id":"evt_{i}","type":"message.sent","created_at":"2024-01-01T12:00:00Z","data":{{"conversation":{{"id":"c{}"}}}}}}"#,
            i % keys.max(1)
        ));
        let signature = sign(&body, SECRET);
        (body, signature)
    })
    .await?;
    let (worker, handled) = counting_worker(queue);
    let worker = worker.with_poll_interval(std::time::Duration::from_millis(5));
    let seconds = drain_all(worker, &handled, total).await?;
    Ok(total as f64 / seconds)
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
async fn drain_all<H: notmeta_webhooks::receiver::Handler>(
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
/// by default and turned on; events/s, worker process and redis-server CPU (in
/// cores, and in µs per event), and the scripts Redis ran per event.
async fn queue_drain(total: usize) -> Result<bool, BoxError> {
    let dir = TempDir::new("drain-aof");
    let redis = [
        ("no persistence", RedisServer::start()),
        ("AOF always", RedisServer::start_durable(dir.path())),
    ];
    println!("{total} events per drain, one worker (concurrency 64), no-op handler");
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>14} {:>16} {:>15} {:>15}",
        "queue",
        "events/s",
        "worker cores",
        "redis cores",
        "events/s/core",
        "worker µs/event",
        "redis µs/event",
        "scripts/event"
    );
    let pid = std::process::id().to_string();
    let mut offset = 0;
    for (name, server) in &redis {
        for isolation in [None, Some(true)] {
            let queue = Queue::connect(&server.url()).await?.with_namespace("drain");
            enqueue(&queue, offset..offset + total, |i| {
                let body = Bytes::from(format!(
                    r#"{{"id":"evt_{i}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
                ));
                let signature = sign(&body, SECRET);
                (body, signature)
            })
            .await?;
            offset += total;
            let (worker, handled) = counting_worker(&queue);
            let worker = match isolation {
                Some(isolate) => worker.with_handler_isolation(isolate),
                None => worker,
            };
            let (cpu0, redis0, scripts0) = (
                cpu_seconds(&pid).unwrap_or(0.0),
                StoreServer::redis(server).cpu_seconds(),
                redis_scripts(server.port),
            );
            // The CPU read after the worker has stopped: its shutdown counts too.
            let seconds = drain_all(worker, &handled, total).await?;
            let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
            let redis_cpu = StoreServer::redis(server).cpu_seconds() - redis0;
            let scripts = redis_scripts(server.port) - scripts0;
            let rate = total as f64 / seconds;
            let label = if isolation.is_some() {
                ", isolated"
            } else {
                ""
            };
            println!(
                "{:<34} {rate:>10.0} {:>12.2} {:>12.2} {:>14.0} {:>16.1} {:>15.1} {:>15.2}",
                format!("{name}{label}"),
                cpu / seconds,
                redis_cpu / seconds,
                rate / (cpu / seconds).max(f64::EPSILON),
                cpu * 1e6 / total as f64,
                redis_cpu * 1e6 / total as f64,
                scripts / total as f64
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
            wrk::exit_with_parent();
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
        Some("wrk-compare") => wrk::compare(&args[1..]),
        Some("wrk-requests") => {
            let path = args.get(1).ok_or("wrk-requests FILE [count]")?;
            wrk::write_requests(path.as_ref(), 1_000_000_000, arg(2, 120_000))?;
            Ok(ExitCode::SUCCESS)
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
                 | load queue-drain-ordered [events] [keys] | load queue-drain [events] | load wrk-compare [options] \
                 | load wrk-requests FILE [count]"
            );
            Ok(ExitCode::from(2))
        }
    }
}
