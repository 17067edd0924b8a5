//! Chaos run of the queue: endpoint and worker processes on loopback, a real
//! `redis-server`, and faults injected while signed events flow; then an invariant
//! checker over every event an endpoint answered 200.
//!
//! ```text
//! chaos <seconds> [durable|volatile|postgres] [seed]
//! ```
//!
//! - `durable`: Redis with `appendonly yes` and `appendfsync always`, restarted
//!   with SIGKILL from time to time. Violations must be 0.
//! - `postgres`: the queue and the inline receiver on PostgreSQL, with
//!   transactional handlers (see the `postgres` module). Violations must be 0.
//! - `volatile`: Redis without persistence, restarted likewise. What Redis lost is
//!   reported (events answered 200 that never ran, events run again after their
//!   done mark was lost), and counted apart from violations.
//!
//! Faults: SIGKILL and SIGSTOP of workers (a stop shorter than a third of the
//! visibility timeout); a proxy between the workers and Redis that adds latency,
//! throttles, pauses (likewise short) and cuts connections; Redis restarts; an
//! endpoint started with another partition count (it must answer no 200; durable
//! runs only, see below); replays and purges of dead letters while events flow.
//!
//! The invariants, for every event answered 200:
//! - it ran to success exactly once, unless its handler fails for good (then never,
//!   and it ends in the dead letters or was purged from them);
//! - two runs of it never overlap in time;
//! - it is not lost (it ran at least once).
//!
//! A run repeated because its worker was killed after the handler returned and
//! before the outcome was recorded is the one window the README documents: it is
//! counted apart ("kill window"), not as a violation.
//!
//! With `NOTMETA_CHAOS_KEY_LIMIT=<n>` in the environment (inherited by the child
//! processes), the Redis queue runs with key limits: the events fall into `n` keys
//! (by a hash of their id), each run one at a time, so the faults also hit the
//! scripts that take and release a key's slots; the invariants are the same, and
//! every event must still end handled (a slot never released would leave its key's
//! later events unhandled).
//!
//! Exit status 1 if any violation was found. The child processes are this same
//! binary, started with `endpoint` or `worker` as their first argument.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notmeta_test_support::proxy::Proxy;
use notmeta_test_support::redis_server::free_port;
use notmeta_test_support::{RedisServer, Rng, TempDir};
use notmeta_webhooks::queue::{Enqueuer, KeyLimit, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Event, Verifier, sign};

#[path = "chaos/postgres.rs"]
mod postgres;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "whsec_chaos";
const NAMESPACE: &str = "chaos";
const PARTITIONS: u16 = 3;
const VISIBILITY: Duration = Duration::from_secs(3);
const WORKERS: usize = 3;
const ENDPOINTS: usize = 2;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("endpoint") => runtime.block_on(endpoint(&args[1], &args[2], &args[3])),
        Some("worker") => runtime.block_on(worker(&args[1], &args[2], &args[3], &args[4])),
        Some("pg-endpoint") => runtime.block_on(postgres::endpoint(&args[1], &args[2])),
        Some("pg-worker") => runtime.block_on(postgres::worker(
            &args[1], &args[2], &args[3], &args[4], &args[5],
        )),
        _ => {
            let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(30);
            let mode = args.get(1).map_or("durable", String::as_str);
            let seed: u64 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| now_nanos() as u64);
            let length = Duration::from_secs(seconds);
            let ok = if mode == "postgres" {
                runtime.block_on(postgres::run(length, seed))?
            } else {
                runtime.block_on(run(length, mode != "volatile", seed))?
            };
            if ok { Ok(()) } else { std::process::exit(1) }
        }
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the handler does with an event, chosen from its id: most succeed, some fail
/// temporarily on their first runs, a few fail for good.
fn fate(id: &str) -> (u64, bool) {
    let h = hash(id);
    let temporary_failures = match h % 100 {
        0..=9 => 1,
        10..=12 => 2,
        _ => 0,
    };
    let permanent = h % 50 == 17;
    (temporary_failures, permanent)
}

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

fn queue_for(
    connection_url: &str,
    partitions: u16,
) -> impl Future<Output = Result<Queue, BoxError>> {
    let url = connection_url.to_owned();
    async move {
        let queue = Queue::connect(&url)
            .await?
            .with_namespace(NAMESPACE)
            .with_partitions(partitions);
        Ok(match key_groups() {
            Some(groups) => queue.with_key_limit(KeyLimit::per_key().with_key(move |event| {
                let hash = event
                    .id
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                Some(format!("group-{}", hash % groups))
            })),
            None => queue,
        })
    }
}

/// `NOTMETA_CHAOS_KEY_LIMIT`: the number of keys the events fall into, if set.
fn key_groups() -> Option<u64> {
    std::env::var("NOTMETA_CHAOS_KEY_LIMIT")
        .ok()?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// An endpoint process: the queue endpoint on `port`.
async fn endpoint(redis: &str, port: &str, partitions: &str) -> Result<(), BoxError> {
    let queue = queue_for(redis, partitions.parse()?).await?;
    let enqueuer = Enqueuer::new(Verifier::new(SECRET)?, queue);
    let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// A worker process: runs the handler, logging each run's start and end to `log`
/// (one line per write, so a kill loses nothing written). How often an event has
/// run is counted in Redis itself (`direct`, not through the proxy), across every
/// worker process: a handler fails temporarily on an event's first runs overall.
async fn worker(redis: &str, log: &str, consumer: &str, direct: &str) -> Result<(), BoxError> {
    let queue = queue_for(redis, PARTITIONS).await?;
    let counter = redis::Client::open(direct)?;
    let counter = redis::aio::ConnectionManager::new(counter).await?;
    let count = move |id: String| -> BoxFuture<Option<u64>> {
        let mut counter = counter.clone();
        Box::pin(async move {
            redis::cmd("INCR")
                .arg(format!("chaos-runs:{id}"))
                .query_async(&mut counter)
                .await
                .ok()
        })
    };
    let handler = logged(log, count)?;
    let worker = Worker::new(queue, handler)
        .with_consumer_name(consumer)
        .with_concurrency(16)
        .with_visibility_timeout(VISIBILITY)
        .with_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .with_max_attempts(8)
        .with_poll_interval(Duration::from_millis(20));
    let stats = worker.run(std::future::pending()).await?;
    eprintln!("worker {consumer}: {stats:?}");
    Ok(())
}

/// The sender: NotMeta, compressed. For `length`, each event is posted (sometimes
/// twice at once, to two endpoints) to its route ([`route`]) and retried on
/// anything but 200; returns how many events were sent.
async fn send(
    length: Duration,
    seed: u64,
    routes: &'static [&'static str],
    sent: Arc<Mutex<Sent>>,
    targets: Arc<Mutex<Vec<(SocketAddr, bool)>>>,
) -> u64 {
    let mut rng = Rng(seed ^ 0x5eed);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < length {
        let id = format!("evt_{seed:x}_{n}");
        n += 1;
        let copies = if rng.below(10) == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let (sent, targets, id) = (Arc::clone(&sent), Arc::clone(&targets), id.clone());
            let pick = rng.next();
            tasks.spawn(async move {
                let body = body(&id);
                let path = route(&id, routes);
                for attempt in 0..40u64 {
                    let (addr, right) = {
                        let t = targets.lock().unwrap();
                        t[((pick + attempt) % t.len() as u64) as usize]
                    };
                    match post(addr, path, &body).await {
                        Some(200) => {
                            let mut s = sent.lock().unwrap();
                            if !right {
                                s.wrong_layout_200 += 1;
                            }
                            s.accepted.entry(id).or_insert_with(now_nanos);
                            return;
                        }
                        _ => {
                            sent.lock().unwrap().retried += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
                sent.lock().unwrap().refused += 1;
            });
        }
        while tasks.len() > 64 {
            tasks.join_next().await;
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    while tasks.join_next().await.is_some() {}
    n
}

/// The route an event is posted to, chosen from its id.
fn route<'a>(id: &str, routes: &[&'a str]) -> &'a str {
    routes[(hash(&format!("{id}/route")) % routes.len() as u64) as usize]
}

/// A boxed future, as the handlers here return.
type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// The handler of a leased run: logs each run's start and end to `log` (one line per
/// write, so a kill loses nothing written), counts the run with `count`, waits a
/// little (sometimes blocking its thread) and succeeds or fails as [`fate`] says.
/// `count` returns how often the event has run, this run included, across every
/// worker process (`None` if its counter is unreachable).
fn logged<C>(
    log: &str,
    count: C,
) -> Result<
    impl Fn(Event<'static>) -> BoxFuture<Result<(), HandlerError>> + Clone + Send + Sync + 'static,
    BoxError,
>
where
    C: Fn(String) -> BoxFuture<Option<u64>> + Clone + Send + Sync + 'static,
{
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let file = Arc::new(Mutex::new(file));
    let pid = std::process::id();
    Ok(
        move |event: Event<'static>| -> BoxFuture<Result<(), HandlerError>> {
            let (file, count) = (Arc::clone(&file), count.clone());
            Box::pin(async move {
                let id = event.id.to_string();
                let line = |what: &str| {
                    let text = format!("{what} {id} {pid} {}\n", now_nanos());
                    let _ = file.lock().unwrap().write_all(text.as_bytes());
                };
                line("S");
                let Some(run) = count(id.clone()).await else {
                    line("E temp");
                    return Err(HandlerError::temporary("the run counter is unreachable"));
                };
                let result = pause_and_decide(&id, run).await;
                line(match result {
                    Ok(()) => "E ok",
                    Err(ref e) if e.is_temporary() => "E temp",
                    Err(_) => "E perm",
                });
                result
            })
        },
    )
}

/// A handler's work on its `run`-th run of `id`: a pause (sometimes blocking its
/// thread), then the outcome [`fate`] chose.
async fn pause_and_decide(id: &str, run: u64) -> Result<(), HandlerError> {
    let (failures, permanent) = fate(id);
    let pause = hash(id) % 40;
    if hash(id).is_multiple_of(7) {
        // A handler that blocks its thread.
        std::thread::sleep(Duration::from_millis(pause));
    } else {
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    if permanent {
        Err(HandlerError::permanent("fails for good"))
    } else if run <= failures {
        Err(HandlerError::temporary("fails for now"))
    } else {
        Ok(())
    }
}

/// One process of the run.
struct Process {
    child: Child,
    name: String,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Result<Child, BoxError> {
    Ok(Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// What the sender saw of each event.
#[derive(Default)]
struct Sent {
    /// Event ids answered 200 at least once, with the time of the first 200.
    accepted: HashMap<String, u128>,
    /// Events never answered 200 (gave up after retries).
    refused: u64,
    /// 200s from the endpoint with the wrong partition count (must be 0).
    wrong_layout_200: u64,
    /// Requests answered 503 (retried).
    retried: u64,
}

#[derive(Default)]
struct Faults {
    kills: Vec<(u32, u128)>,
    counts: BTreeMap<&'static str, u64>,
}

impl Faults {
    fn add(&mut self, name: &'static str) {
        *self.counts.entry(name).or_default() += 1;
    }
}

/// POSTs a signed body; the status, or `None` if the connection failed (the
/// endpoint was down, or cut the connection).
async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let signature = sign(body, SECRET);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "POST /{path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             x-notmeta-signature: {signature}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(body).await.ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.ok()?;
        let line = reply.split(|b| *b == b'\n').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

#[allow(clippy::too_many_lines)]
async fn run(length: Duration, durable: bool, seed: u64) -> Result<bool, BoxError> {
    let dir = TempDir::new("chaos");
    let mut redis = if durable {
        RedisServer::start_durable(dir.path())
    } else {
        RedisServer::start()
    };
    let proxy = Proxy::start(redis.port).await;
    let direct = redis.url();
    let through = proxy.redis_url();
    let queue = queue_for(&direct, PARTITIONS).await?;
    queue.check_layout().await?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut rng = Rng(seed);
    println!(
        "chaos: {} s, Redis {}, seed {seed}",
        length.as_secs(),
        if durable {
            "durable (AOF always)"
        } else {
            "volatile (no persistence)"
        }
    );

    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        let port = free_port();
        let child = spawn(&[
            "endpoint",
            &direct,
            &port.to_string(),
            &PARTITIONS.to_string(),
        ])?;
        endpoints.push((
            Process {
                child,
                name: format!("endpoint-{i}"),
            },
            SocketAddr::from(([127, 0, 0, 1], port)),
        ));
    }
    let generation = AtomicU64::new(0);
    let start_worker = |i: usize| -> Result<Process, BoxError> {
        let g = generation.fetch_add(1, Ordering::Relaxed);
        let name = format!("worker-{i}-{g}");
        let log = logs.join(format!("{name}.log"));
        let child = spawn(&["worker", &through, log.to_str().unwrap(), &name, &direct])?;
        Ok(Process { child, name })
    };
    let mut workers: Vec<Process> = (0..WORKERS).map(start_worker).collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The sender: NotMeta, compressed: each event is posted (sometimes twice at
    // once, to two endpoints), and retried on anything but 200.
    let sent = Arc::new(Mutex::new(Sent::default()));
    let targets: Arc<Mutex<Vec<(SocketAddr, bool)>>> = Arc::new(Mutex::new(
        endpoints.iter().map(|(_, addr)| (*addr, true)).collect(),
    ));
    let sending = tokio::spawn(send(
        length,
        seed,
        &["webhooks"],
        Arc::clone(&sent),
        Arc::clone(&targets),
    ));

    // The faults.
    let mut faults = Faults::default();
    let started = Instant::now();
    let mut wrong: Option<Process> = None;
    // Every kind of fault in turn, in a shuffled order each round.
    let mut order: Vec<usize> = Vec::new();
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(1300) as u64)).await;
        if started.elapsed() >= length {
            break;
        }
        let mut fault = next_fault(&mut order, 9, &mut rng);
        if fault == 8 && !durable {
            // Without persistence, Redis that restarts forgets the stored layout, and
            // the first process to reach it records its count: a process with the
            // wrong count joining then is a double fault the layout check cannot
            // resolve (the README says so). Only with a durable Redis.
            fault = 7;
        }
        match fault {
            0 => {
                let i = rng.below(workers.len());
                signal("KILL", workers[i].pid());
                faults.kills.push((workers[i].pid(), now_nanos()));
                faults.add("worker SIGKILL");
                workers[i] = start_worker(i)?;
            }
            1 => {
                let pid = workers[rng.below(workers.len())].pid();
                faults.add("worker SIGSTOP");
                signal("STOP", pid);
                let pause = VISIBILITY / 3 * (rng.below(80) as u32 + 10) / 100;
                tokio::time::sleep(pause).await;
                signal("CONT", pid);
            }
            2 => {
                faults.add("proxy latency");
                proxy.set_latency(Duration::from_millis(rng.below(200) as u64));
                tokio::time::sleep(Duration::from_secs(2)).await;
                proxy.set_latency(Duration::ZERO);
            }
            3 => {
                faults.add("proxy throttle");
                proxy.set_rate(64 * 1024);
                tokio::time::sleep(Duration::from_secs(2)).await;
                proxy.set_rate(0);
            }
            4 => {
                faults.add("proxy pause");
                proxy.pause();
                tokio::time::sleep(VISIBILITY / 3 * (rng.below(80) as u32 + 10) / 100).await;
                proxy.resume();
            }
            5 => {
                faults.add("proxy cut");
                proxy.cut();
            }
            6 => {
                faults.add(if durable {
                    "Redis restart (AOF always)"
                } else {
                    "Redis restart (no persistence)"
                });
                redis.restart();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            7 => {
                faults.add("replay and purge");
                let _ = queue.replay_dead_letters(20).await;
                let _ = queue.purge_dead_letters(Duration::from_secs(5)).await;
            }
            _ => {
                // An endpoint with another partition count joins for a while: it must
                // refuse everything (the sender retries elsewhere).
                faults.add("endpoint with another partition count");
                if let Some(p) = wrong.take() {
                    drop(p);
                    targets.lock().unwrap().retain(|(_, right)| *right);
                } else {
                    let port = free_port();
                    let child = spawn(&[
                        "endpoint",
                        &direct,
                        &port.to_string(),
                        &(PARTITIONS + 1).to_string(),
                    ])?;
                    wrong = Some(Process {
                        child,
                        name: "endpoint-wrong".into(),
                    });
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    targets
                        .lock()
                        .unwrap()
                        .push((SocketAddr::from(([127, 0, 0, 1], port)), false));
                }
            }
        }
    }
    let total = sending.await?;
    drop(wrong);
    proxy.heal();

    // Drain: wait until nothing waits, runs or is due, replaying what is dead for
    // a temporary reason once more.
    let drained = Instant::now();
    loop {
        match queue.counts().await {
            Ok(c) if c.pending + c.in_progress + c.retrying == 0 => break,
            _ if drained.elapsed() > Duration::from_secs(90) => {
                println!("chaos: the queue did not drain in 90 s");
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = dead_ids(&queue).await;
    for (p, _) in &endpoints {
        let _ = &p.name;
    }
    drop(workers);
    drop(endpoints);

    let sent = Arc::try_unwrap(sent)
        .map_err(|_| "sender still running")?
        .into_inner()
        .unwrap();
    let report = check(&logs, &sent, &faults, &dead, durable)?;
    summary(total, &sent, &faults);
    println!("{report}");
    Ok(report.violations == 0)
}

/// The next kind of fault (of `kinds`): every kind in turn, in a shuffled order each
/// round.
fn next_fault(order: &mut Vec<usize>, kinds: usize, rng: &mut Rng) -> usize {
    if order.is_empty() {
        *order = (0..kinds).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    order.pop().unwrap_or(0)
}

/// The event ids of the queue's dead letters (none, said so, if they cannot be read).
async fn dead_ids(queue: &Queue) -> Vec<String> {
    match queue.dead_letters(usize::MAX).await {
        Ok(letters) => letters.into_iter().map(|l| l.event_id).collect(),
        Err(e) => {
            println!("chaos: the dead letters cannot be read: {e}");
            Vec::new()
        }
    }
}

/// Prints what was sent and answered, and the faults injected.
fn summary(total: u64, sent: &Sent, faults: &Faults) {
    println!(
        "chaos: {total} events sent, {} answered 200, {} gave up after retries, {} answers not 200 retried",
        sent.accepted.len(),
        sent.refused,
        sent.retried
    );
    println!(
        "chaos: faults injected: {}",
        faults
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

struct Report {
    handled_once: u64,
    dead: u64,
    kill_window: u64,
    lost_by_redis: u64,
    rerun_after_redis_loss: u64,
    violations: u64,
    examples: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos: {} handled exactly once, {} failed for good (dead letters), {} run again in the documented kill window",
            self.handled_once, self.dead, self.kill_window
        )?;
        if self.lost_by_redis + self.rerun_after_redis_loss > 0 {
            writeln!(
                f,
                "chaos: lost by Redis without persistence: {} never ran, {} ran again",
                self.lost_by_redis, self.rerun_after_redis_loss
            )?;
        }
        verdict(
            f,
            &self.examples,
            self.handled_once + self.dead + self.kill_window,
            self.violations,
        )
    }
}

/// The violations' examples, then `<passed> passed, <failed> failed`.
fn verdict(
    f: &mut std::fmt::Formatter<'_>,
    examples: &[String],
    passed: u64,
    failed: u64,
) -> std::fmt::Result {
    for e in examples {
        writeln!(f, "chaos: violation: {e}")?;
    }
    write!(f, "{passed} passed, {failed} failed")
}

/// One run of an event, from the worker logs.
#[derive(Debug)]
struct RunLog {
    pid: u32,
    start: u128,
    end: Option<(u128, String)>,
}

fn read_logs(dir: &Path) -> Result<HashMap<String, Vec<RunLog>>, BoxError> {
    let mut runs: HashMap<String, Vec<RunLog>> = HashMap::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["S", id, pid, at] => runs.entry((*id).to_owned()).or_default().push(RunLog {
                    pid: pid.parse()?,
                    start: at.parse()?,
                    end: None,
                }),
                ["E", how, id, pid, at] => {
                    let pid: u32 = pid.parse()?;
                    if let Some(run) = runs
                        .get_mut(*id)
                        .and_then(|r| r.iter_mut().rev().find(|r| r.pid == pid && r.end.is_none()))
                    {
                        run.end = Some((at.parse()?, (*how).to_owned()));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(runs)
}

fn check(
    logs: &Path,
    sent: &Sent,
    faults: &Faults,
    dead: &[String],
    durable: bool,
) -> Result<Report, BoxError> {
    let runs = read_logs(logs)?;
    let kill_of: HashMap<u32, u128> = faults.kills.iter().copied().collect();
    let mut report = Report {
        handled_once: 0,
        dead: 0,
        kill_window: 0,
        lost_by_redis: 0,
        rerun_after_redis_loss: 0,
        violations: 0,
        examples: Vec::new(),
    };
    let violation = |report: &mut Report, text: String| {
        report.violations += 1;
        if report.examples.len() < 10 {
            report.examples.push(text);
        }
    };
    if sent.wrong_layout_200 > 0 {
        violation(
            &mut report,
            format!(
                "the endpoint with another partition count answered 200 {} times",
                sent.wrong_layout_200
            ),
        );
    }
    for id in sent.accepted.keys() {
        let list = runs.get(id).map(Vec::as_slice).unwrap_or_default();
        let (_, permanent) = fate(id);
        // Overlapping runs (a killed run ends at its kill).
        let mut spans: Vec<(u128, u128)> = list
            .iter()
            .map(|r| {
                let end = r
                    .end
                    .as_ref()
                    .map(|(t, _)| *t)
                    .or_else(|| kill_of.get(&r.pid).copied())
                    .unwrap_or(u128::MAX);
                (r.start, end)
            })
            .collect();
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1].0 < w[0].1) {
            violation(&mut report, format!("{id}: two runs at once: {list:?}"));
            continue;
        }
        let oks: Vec<&RunLog> = list
            .iter()
            .filter(|r| r.end.as_ref().is_some_and(|(_, how)| how == "ok"))
            .collect();
        if list.is_empty() {
            if durable {
                violation(&mut report, format!("{id}: answered 200, never ran"));
            } else {
                report.lost_by_redis += 1;
            }
            continue;
        }
        if permanent {
            if !oks.is_empty() {
                violation(&mut report, format!("{id}: fails for good, yet succeeded"));
            } else if !dead.contains(id) && !faults.counts.contains_key("replay and purge") {
                violation(
                    &mut report,
                    format!("{id}: failed for good, not in the dead letters"),
                );
            } else {
                report.dead += 1;
            }
            continue;
        }
        match oks.len() {
            1 => report.handled_once += 1,
            0 => {
                if durable {
                    violation(&mut report, format!("{id}: never succeeded: {list:?}"));
                } else {
                    report.lost_by_redis += 1;
                }
            }
            _ => {
                // Repeated because the first success's worker was killed before it
                // recorded the outcome?
                let window = oks[..oks.len() - 1].iter().all(|r| {
                    let ended = r.end.as_ref().map_or(0, |(t, _)| *t);
                    kill_of
                        .get(&r.pid)
                        .is_some_and(|killed| *killed >= ended && *killed - ended < 2_000_000_000)
                });
                if window {
                    report.kill_window += 1;
                } else if !durable {
                    report.rerun_after_redis_loss += 1;
                } else {
                    violation(
                        &mut report,
                        format!("{id}: succeeded {} times: {list:?}", oks.len()),
                    );
                }
            }
        }
    }
    Ok(report)
}
