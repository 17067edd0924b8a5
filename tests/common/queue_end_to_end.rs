//! The end-to-end run shared by the single-server and the cluster tests: two
//! enqueueing endpoints (axum and actix-web) in this process, three workers in
//! child processes (this test binary again, in its `worker_process` test), a mix of
//! duplicates, failures and panics, one worker killed mid-handler, one handler
//! that outlives the visibility timeout, and a graceful shutdown at the end.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use notmeta_test_support::http_server;
use notmeta_webhooks::dedup::RedisConnection;
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Event, Verifier, sign};
use redis::AsyncCommands as _;

pub(crate) use super::queue::SECRET;
/// Where the handlers record what they did (one hash each, on any shard).
pub(crate) const RUNS: &str = "e2e:runs";
pub(crate) const ATTEMPTS: &str = "e2e:attempts";
pub(crate) const KILL_ME: &str = "e2e:kill-me";
pub(crate) const VISIBILITY: Duration = Duration::from_secs(2);
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// What the handler does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Ok,
    /// Fails temporarily this many times, then succeeds.
    TemporaryThenOk(u64),
    /// Panics on its first run, then succeeds.
    PanicOnce,
    /// Fails permanently: a dead letter.
    Permanent,
    /// Fails temporarily every time: a dead letter after the last attempt.
    AlwaysTemporary,
    /// On its first run, freezes its worker and asks to be killed.
    Kill,
    /// Runs for several visibility timeouts.
    Long,
    /// Runs for a while (for the shutdown).
    Slow,
}

pub(crate) fn plan(id: &str) -> Plan {
    if id == "evt_kill" {
        return Plan::Kill;
    }
    if id == "evt_long" {
        return Plan::Long;
    }
    if id.starts_with("evt_slow") {
        return Plan::Slow;
    }
    let i: u64 = id.trim_start_matches("evt_").parse().unwrap_or(0);
    if i % 101 == 13 {
        Plan::Permanent
    } else if i % 103 == 17 {
        Plan::AlwaysTemporary
    } else if i % 37 == 5 {
        Plan::TemporaryThenOk(1 + (i / 37) % 3)
    } else if i % 41 == 7 {
        Plan::PanicOnce
    } else {
        Plan::Ok
    }
}

pub(crate) fn fails(plan: Plan) -> bool {
    matches!(plan, Plan::Permanent | Plan::AlwaysTemporary)
}

pub(crate) fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{{"message":{{"id":"msg_{id}","text":"hola"}},"conversation":{{"id":"conv_1"}}}}}}"#
    )
    .into_bytes()
}

/// Where the children find Redis.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Single(String),
    Cluster(Vec<String>),
}

impl Target {
    pub(crate) async fn connect(&self) -> RedisConnection {
        match self {
            Self::Single(url) => RedisConnection::connect(url).await.unwrap(),
            Self::Cluster(urls) => {
                RedisConnection::connect_cluster(urls.iter().map(String::as_str))
                    .await
                    .unwrap()
            }
        }
    }

    fn to_env(&self) -> String {
        match self {
            Self::Single(url) => url.clone(),
            Self::Cluster(urls) => format!("cluster:{}", urls.join(",")),
        }
    }

    fn from_env(value: &str) -> Self {
        match value.strip_prefix("cluster:") {
            Some(list) => Self::Cluster(list.split(',').map(str::to_owned).collect()),
            None => Self::Single(value.to_owned()),
        }
    }
}

pub(crate) fn queue(connection: RedisConnection, partitions: u16) -> Queue {
    Queue::new(connection)
        .with_namespace("e2e")
        .with_partitions(partitions)
}

static FROZEN: AtomicBool = AtomicBool::new(false);

/// The handler every worker runs: counts attempts, acts on the plan, and records a
/// run (the side effect that must happen exactly once) when it succeeds.
pub(crate) fn handler(
    connection: RedisConnection,
) -> impl Fn(Event<'static>) -> futures_util::future::BoxFuture<'static, Result<(), HandlerError>>
+ Send
+ Sync
+ 'static {
    move |event: Event<'static>| {
        let mut connection = connection.clone();
        Box::pin(async move {
            let id = event.id.as_str().to_owned();
            let attempt: u64 = connection
                .hincr(ATTEMPTS, &id, 1)
                .await
                .map_err(HandlerError::temporary)?;
            match plan(&id) {
                Plan::Ok => {}
                Plan::TemporaryThenOk(n) if attempt <= n => {
                    return Err(HandlerError::temporary("designed temporary failure"));
                }
                Plan::TemporaryThenOk(_) => {}
                Plan::PanicOnce if attempt == 1 => panic!("designed panic"),
                Plan::PanicOnce => {}
                Plan::Permanent => {
                    return Err(HandlerError::permanent("designed permanent failure"));
                }
                Plan::AlwaysTemporary => {
                    return Err(HandlerError::temporary("designed temporary failure"));
                }
                Plan::Kill if attempt == 1 => {
                    // Every other handler of this process stops before its side
                    // effect; the ones past that point settle within the pause.
                    FROZEN.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    let _: () = connection
                        .set(KILL_ME, std::process::id())
                        .await
                        .map_err(HandlerError::temporary)?;
                    std::future::pending::<()>().await;
                }
                Plan::Kill => {}
                Plan::Long => tokio::time::sleep(VISIBILITY * 3 + VISIBILITY / 2).await,
                Plan::Slow => tokio::time::sleep(Duration::from_millis(1500)).await,
            }
            if FROZEN.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let _: u64 = connection
                .hincr(RUNS, &id, 1)
                .await
                .map_err(HandlerError::temporary)?;
            Ok(())
        })
    }
}

/// The child side: runs a worker until stdin closes, then prints its stats.
pub(crate) fn worker_process() {
    let Ok(target) = std::env::var("NOTMETA_QUEUE_E2E_WORKER") else {
        return;
    };
    let partitions: u16 = std::env::var("NOTMETA_QUEUE_E2E_PARTITIONS")
        .unwrap()
        .parse()
        .unwrap();
    // The designed panics are expected; keep the output readable.
    std::panic::set_hook(Box::new(|_| {}));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let target = Target::from_env(&target);
        let connection = target.connect().await;
        let worker = Worker::new(queue(connection.clone(), partitions), handler(connection))
            .with_concurrency(8)
            .with_max_attempts(MAX_ATTEMPTS)
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .with_visibility_timeout(VISIBILITY)
            .with_poll_interval(Duration::from_millis(20))
            .with_shutdown_deadline(Duration::from_secs(20));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = stop.send(());
        });
        let stats = worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        println!(
            "STATS handled={} retried={} dead={} skipped={} lost={} abandoned={}",
            stats.handled,
            stats.retried,
            stats.dead_lettered,
            stats.skipped,
            stats.lost,
            stats.abandoned
        );
    });
}

fn spawn_worker(test_name: &str, target: &Target, partitions: u16) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env("NOTMETA_QUEUE_E2E_WORKER", target.to_env())
        .env("NOTMETA_QUEUE_E2E_PARTITIONS", partitions.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Stats printed by a worker that shut down.
fn stats_of(mut child: Child) -> HashMap<String, u64> {
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "a worker exited with {status}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let line = out
        .lines()
        .find_map(|l| l.split_once("STATS ").map(|(_, s)| s))
        .unwrap_or_else(|| panic!("no stats in {out:?}"));
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// A keep-alive HTTP/1.1 connection.
struct Connection(
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    SocketAddr,
);

impl Connection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self(sender, addr)
    }

    async fn post(&mut self, body: &[u8]) -> (u16, String) {
        self.0.ready().await.unwrap();
        let request = http::Request::post(format!("http://{}/webhooks", self.1))
            .header("host", self.1.to_string())
            .header("content-type", "application/json")
            .header("x-notmeta-signature", sign(body, SECRET))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = self.0.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    }
}

pub(crate) async fn serve_axum(enqueuer: Enqueuer) -> SocketAddr {
    let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
    http_server::axum(app).await
}

pub(crate) fn serve_actix(enqueuer: Enqueuer) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().route(
                    "/webhooks",
                    notmeta_webhooks::actix::endpoint(enqueuer.clone()),
                )
            })
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Sends every event, with duplicates (every tenth concurrently to both endpoints,
/// every tenth plus one again after its 200); returns how many were answered `OK`
/// and `OK (duplicate)`. Any other answer fails the test.
async fn deliver_all(
    ids: Vec<String>,
    a: SocketAddr,
    b: SocketAddr,
    connections: usize,
) -> (usize, usize) {
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let ids = Arc::clone(&ids);
        tasks.push(tokio::spawn(async move {
            let mut to_a = Connection::open(a).await;
            let mut to_b = Connection::open(b).await;
            let (mut ok, mut dup) = (0, 0);
            let mut tally = |(status, text): (u16, String)| {
                assert_eq!(status, 200, "{text}");
                match text.as_str() {
                    "OK" => ok += 1,
                    "OK (duplicate)" => dup += 1,
                    other => panic!("unexpected answer {other:?}"),
                }
            };
            for (i, id) in ids.iter().enumerate().skip(c).step_by(connections) {
                let body = body(id);
                let (first, second) = if i % 2 == 0 {
                    (&mut to_a, &mut to_b)
                } else {
                    (&mut to_b, &mut to_a)
                };
                match i % 10 {
                    0 => {
                        let (x, y) = tokio::join!(first.post(&body), second.post(&body));
                        tally(x);
                        tally(y);
                    }
                    1 => {
                        tally(first.post(&body).await);
                        tally(second.post(&body).await);
                    }
                    _ => tally(first.post(&body).await),
                }
            }
            (ok, dup)
        }));
    }
    let mut totals = (0, 0);
    for task in tasks {
        let (ok, dup) = task.await.unwrap();
        totals.0 += ok;
        totals.1 += dup;
    }
    totals
}

/// The whole run; returns a summary line.
pub(crate) async fn end_to_end(
    test_name: &str,
    target: Target,
    partitions: u16,
    events: usize,
) -> String {
    let started = Instant::now();
    let connection = target.connect().await;
    let queue = queue(connection.clone(), partitions);
    let verifier = Verifier::new(SECRET).unwrap();
    let a = serve_axum(Enqueuer::new(verifier.clone(), queue.clone())).await;
    let b = serve_actix(Enqueuer::new(verifier, queue.clone()));

    let workers: Arc<Mutex<Vec<Child>>> = Arc::new(Mutex::new(
        (0..3)
            .map(|_| spawn_worker(test_name, &target, partitions))
            .collect(),
    ));

    // Kill the worker that asks for it (SIGKILL), mid-handler.
    let killer = {
        let workers = Arc::clone(&workers);
        let mut connection = connection.clone();
        tokio::spawn(async move {
            loop {
                let pid: Option<u32> = connection.get(KILL_ME).await.unwrap();
                if let Some(pid) = pid {
                    let mut workers = workers.lock().unwrap();
                    let at = workers.iter().position(|w| w.id() == pid).unwrap();
                    let mut victim = workers.remove(at);
                    victim.kill().unwrap();
                    victim.wait().unwrap();
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut ids: Vec<String> = (0..events).map(|i| format!("evt_{i}")).collect();
    ids.insert(events / 3, "evt_kill".to_owned());
    ids.insert(events / 2, "evt_long".to_owned());
    let expected_ok: BTreeSet<String> = ids.iter().filter(|id| !fails(plan(id))).cloned().collect();
    let expected_dead: BTreeSet<String> =
        ids.iter().filter(|id| fails(plan(id))).cloned().collect();
    let duplicates = ids.len() / 10 * 2 + 2;

    let (ok, dup) = deliver_all(ids.clone(), a, b, 32).await;
    let delivered = started.elapsed();
    assert_eq!(ok, ids.len(), "each event accepted once");
    assert!(
        dup + 2 >= duplicates && dup <= duplicates,
        "{dup} duplicates"
    );

    // Wait for the queue to drain.
    let mut redis = connection.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let counts = queue.counts().await.unwrap();
        let runs: usize = redis.hlen(RUNS).await.unwrap();
        if counts.pending + counts.in_progress + counts.retrying == 0
            && runs == expected_ok.len()
            && counts.dead_letters == expected_dead.len() as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {counts:?}, {runs} of {} runs",
            expected_ok.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    let killed = killer.await.unwrap();

    // Graceful shutdown: slow events in flight finish before the workers exit.
    let slow: Vec<String> = (0..6).map(|i| format!("evt_slow_{i}")).collect();
    let mut to_a = Connection::open(a).await;
    for id in &slow {
        assert_eq!(to_a.post(&body(id)).await, (200, "OK".to_owned()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.counts().await.unwrap().in_progress < slow.len() as u64 {
        assert!(Instant::now() < deadline, "the slow events did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<Child> = std::mem::take(&mut *workers.lock().unwrap());
    assert_eq!(survivors.len(), 2);
    let stats: Vec<HashMap<String, u64>> = survivors.into_iter().map(stats_of).collect();
    for s in &stats {
        assert_eq!(s["abandoned"], 0, "{s:?}");
        assert_eq!(s["lost"], 0, "{s:?}");
    }

    // Every event handled exactly once, none lost; the dead letters are exactly the
    // designed failures.
    let runs: HashMap<String, u64> = redis.hgetall(RUNS).await.unwrap();
    let attempts: HashMap<String, u64> = redis.hgetall(ATTEMPTS).await.unwrap();
    for id in expected_ok.iter().chain(&slow) {
        assert_eq!(runs.get(id), Some(&1), "{id} ran {:?} times", runs.get(id));
    }
    assert_eq!(runs.len(), expected_ok.len() + slow.len());
    let letters = queue.dead_letters(usize::MAX).await.unwrap();
    let dead: BTreeSet<String> = letters.iter().map(|l| l.event_id.clone()).collect();
    assert_eq!(dead, expected_dead);
    assert_eq!(letters.len(), expected_dead.len());
    for letter in &letters {
        match plan(&letter.event_id) {
            Plan::Permanent => {
                assert!(
                    letter.error.contains("designed permanent failure"),
                    "{}",
                    letter.error
                );
                assert_eq!(attempts[&letter.event_id], 1);
            }
            _ => {
                assert!(letter.error.contains("attempt 5 of 5"), "{}", letter.error);
                assert_eq!(attempts[&letter.event_id], u64::from(MAX_ATTEMPTS));
            }
        }
        assert_eq!(letter.body, body(&letter.event_id));
    }
    assert!(attempts["evt_kill"] >= 2, "the killed run was run again");
    assert_eq!(attempts["evt_long"], 1, "the long handler kept its entry");
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.in_progress, counts.retrying),
        (0, 0, 0)
    );

    let handled: u64 = stats.iter().map(|s| s["handled"]).sum();
    format!(
        "{} events (+{dup} duplicates) through 2 endpoints and 3 workers ({partitions} partitions): \
         delivered in {:.1} s, drained in {:.1} s; worker {killed} killed mid-handler; \
         survivors handled {handled}, retried {}, skipped {}",
        ids.len(),
        delivered.as_secs_f64(),
        drained.as_secs_f64(),
        stats.iter().map(|s| s["retried"]).sum::<u64>(),
        stats.iter().map(|s| s["skipped"]).sum::<u64>(),
    )
}
