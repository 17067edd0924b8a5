//! The chaos run on PostgreSQL: the queue (`Queue::postgres`) with transactional and
//! leased workers, and the inline receiver with `PostgresStore` and a transactional
//! handler, on a real PostgreSQL server started here.
//!
//! Every endpoint process serves three routes, each with its own tables:
//! - `tx`: the queue's `Enqueuer`; its workers run a transactional handler whose
//!   effect is a row of `chaos_effects` written through the run's transaction;
//! - `leased`: the queue's `Enqueuer`; its workers run a plain (leased) handler that
//!   logs its runs, as the Redis run does;
//! - `inline`: a `Receiver` with `PostgresStore` and a transactional handler that
//!   writes its `chaos_effects` row through the transaction, before answering.
//!
//! Faults: SIGKILL and SIGSTOP of workers and of endpoint processes (a killed
//! endpoint starts again on its port), PostgreSQL stopped with `-m immediate` and
//! started again (crash recovery) or frozen for a moment (SIGSTOP), every client
//! connection terminated, and a proxy between the workers and PostgreSQL that adds
//! latency, pauses and cuts connections; replays and purges of dead letters.
//!
//! The invariants, for every event answered 200:
//! - `tx` and `inline`: exactly one `chaos_effects` row if its handler succeeds at
//!   all, none if it fails for good (then it is a dead letter, or was purged). No
//!   kill window: a worker or endpoint killed at any point commits both or neither;
//! - `leased`: as on Redis (run to success once, runs never overlap, not lost; a run
//!   repeated because its worker was killed between the handler's end and the done
//!   mark is counted apart).

use super::{
    BoxError, BoxFuture, Faults, Process, Sent, VISIBILITY, check, dead_ids, fate, logged,
    next_fault, pause_and_decide, send, signal, spawn, summary, verdict,
};
use notmeta_test_support::proxy::Proxy;
use notmeta_test_support::redis_server::free_port;
use notmeta_test_support::{PostgresServer, Rng, TempDir};
use notmeta_webhooks::postgres::{PostgresStore, Tables, Transactional};
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{Event, Verifier};
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The routes, each its own tables.
const ROUTES: &[&str] = &["tx", "leased", "inline"];
/// Worker processes per queue.
const WORKERS: usize = 2;
const ENDPOINTS: usize = 2;

fn tables(route: &str) -> Result<Tables, BoxError> {
    Ok(Tables::default().with_prefix(format!("chaos_{route}_"))?)
}

async fn pool(url: &str, size: u32) -> Result<PgPool, BoxError> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// The handlers' own tables: one row per committed effect (no unique key, so a
/// second effect would show), and the run counter.
const SETUP: &str = "CREATE TABLE IF NOT EXISTS chaos_effects (event_id text NOT NULL, pid int NOT NULL); \
     CREATE TABLE IF NOT EXISTS chaos_runs (event_id text PRIMARY KEY, runs bigint NOT NULL)";

/// Counts a run of `id` (autocommit, outside any handler's transaction).
fn counter(pool: PgPool) -> impl Fn(String) -> BoxFuture<Option<u64>> + Clone + Send + Sync {
    move |id: String| -> BoxFuture<Option<u64>> {
        let pool = pool.clone();
        Box::pin(async move {
            let runs: i64 = sqlx::query_scalar(
                "INSERT INTO chaos_runs VALUES ($1, 1) \
                 ON CONFLICT (event_id) DO UPDATE SET runs = chaos_runs.runs + 1 RETURNING runs",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .ok()?;
            u64::try_from(runs).ok()
        })
    }
}

type TxFn = Box<
    dyn for<'t> Fn(
            Event<'static>,
            &'t mut sqlx::PgConnection,
        ) -> futures_util::future::BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// The transactional handler: counts the run, waits and decides as [`fate`] says;
/// on success writes the event's `chaos_effects` row through the transaction.
fn writer(
    store: &PostgresStore,
    counter_pool: PgPool,
    permanent_allowed: bool,
) -> Transactional<TxFn> {
    let count = counter(counter_pool);
    let pid = i32::try_from(std::process::id()).unwrap_or(-1);
    let handler: TxFn = Box::new(move |event: Event<'static>, tx| {
        let count = count.clone();
        Box::pin(async move {
            let id = event.id.to_string();
            let Some(run) = count(id.clone()).await else {
                return Err(HandlerError::temporary("the run counter is unreachable"));
            };
            match pause_and_decide(&id, run).await {
                Err(e) if !e.is_temporary() && !permanent_allowed => {}
                other => other?,
            }
            sqlx::query("INSERT INTO chaos_effects VALUES ($1, $2)")
                .bind(&id)
                .bind(pid)
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            Ok(())
        })
    });
    store.transactional(handler)
}

/// An endpoint process: the three routes on `port`, on PostgreSQL at `url`.
pub(super) async fn endpoint(url: &str, port: &str) -> Result<(), BoxError> {
    let pool = pool(url, 24).await?;
    let verifier = || Verifier::new(super::SECRET);
    let tx = Queue::postgres(pool.clone(), &tables("tx")?).await?;
    let leased = Queue::postgres(pool.clone(), &tables("leased")?).await?;
    let store = PostgresStore::open(pool.clone(), &tables("inline")?)
        .await?
        .with_lease(Duration::from_secs(2));
    // The inline receiver answers a permanent failure 400, which the sender would
    // retry to the end: its events only fail for a while.
    let receiver = Receiver::new(verifier()?, writer(&store, pool, false)).with_store(store);
    let app = axum::Router::new()
        .route(
            "/tx",
            notmeta_webhooks::axum::endpoint(Enqueuer::new(verifier()?, tx)),
        )
        .route(
            "/leased",
            notmeta_webhooks::axum::endpoint(Enqueuer::new(verifier()?, leased)),
        )
        .route("/inline", notmeta_webhooks::axum::endpoint(receiver));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// A worker process on the `tx` or `leased` queue, through `url` (the proxy); runs
/// are counted on `direct`.
pub(super) async fn worker(
    url: &str,
    route: &str,
    log: &str,
    consumer: &str,
    direct: &str,
) -> Result<(), BoxError> {
    let pool = pool(url, 24).await?;
    let counter_pool = pool_lazy(direct)?;
    let queue = Queue::postgres(pool.clone(), &tables(route)?).await?;
    let stats = if route == "tx" {
        let store = PostgresStore::new(pool, &tables(route)?);
        configure(
            Worker::new(queue, writer(&store, counter_pool, true)),
            consumer,
        )
        .run(std::future::pending())
        .await?
    } else {
        let handler = logged(log, counter(counter_pool))?;
        configure(Worker::new(queue, handler), consumer)
            .run(std::future::pending())
            .await?
    };
    eprintln!("worker {consumer}: {stats:?}");
    Ok(())
}

fn pool_lazy(url: &str) -> Result<PgPool, BoxError> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)?)
}

fn configure<H>(worker: Worker<H>, consumer: &str) -> Worker<H> {
    worker
        .with_consumer_name(consumer)
        .with_concurrency(16)
        .with_visibility_timeout(VISIBILITY)
        .with_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .with_max_attempts(8)
        .with_poll_interval(Duration::from_millis(200))
}

/// Runs `f` (which blocks: a server start, a psql call) off the runtime's threads'
/// task queue.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[allow(clippy::too_many_lines)]
pub(super) async fn run(length: Duration, seed: u64) -> Result<bool, BoxError> {
    let dir = TempDir::new("chaos-postgres");
    let mut server = blocking(|| PostgresServer::start_with(&[("max_connections", "400")]));
    let proxy = Proxy::start(server.port()).await;
    let direct = server.url();
    let through = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let admin = pool(&direct, 4).await?;
    sqlx::raw_sql(SETUP).execute(&admin).await?;
    let tx_queue = Queue::postgres(admin.clone(), &tables("tx")?).await?;
    let leased_queue = Queue::postgres(admin.clone(), &tables("leased")?).await?;
    PostgresStore::open(admin.clone(), &tables("inline")?).await?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut rng = Rng(seed);
    println!(
        "chaos: {} s, PostgreSQL (queue: transactional and leased workers; inline receiver, transactional), seed {seed}",
        length.as_secs()
    );

    let start_endpoint = |port: u16| -> Result<Process, BoxError> {
        Ok(Process {
            child: spawn(&["pg-endpoint", &direct, &port.to_string()])?,
            name: format!("endpoint-{port}"),
        })
    };
    let mut endpoints = Vec::new();
    for _ in 0..ENDPOINTS {
        let port = free_port();
        endpoints.push((start_endpoint(port)?, port));
    }
    let generation = AtomicU64::new(0);
    let start_worker = |i: usize| -> Result<Process, BoxError> {
        let route = if i < WORKERS { "tx" } else { "leased" };
        let g = generation.fetch_add(1, Ordering::Relaxed);
        let name = format!("worker-{route}-{i}-{g}");
        let log = logs.join(format!("{name}.log"));
        let child = spawn(&[
            "pg-worker",
            &through,
            route,
            log.to_str().unwrap(),
            &name,
            &direct,
        ])?;
        Ok(Process { child, name })
    };
    let mut workers: Vec<Process> = (0..2 * WORKERS)
        .map(start_worker)
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let sent = Arc::new(Mutex::new(Sent::default()));
    let targets: Arc<Mutex<Vec<(SocketAddr, bool)>>> = Arc::new(Mutex::new(
        endpoints
            .iter()
            .map(|(_, port)| (SocketAddr::from(([127, 0, 0, 1], *port)), true))
            .collect(),
    ));
    let sending = tokio::spawn(send(
        length,
        seed,
        ROUTES,
        Arc::clone(&sent),
        Arc::clone(&targets),
    ));

    // The faults.
    let mut faults = Faults::default();
    let started = Instant::now();
    let mut order: Vec<usize> = Vec::new();
    let short = |rng: &mut Rng| VISIBILITY / 3 * (rng.below(80) as u32 + 10) / 100;
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(1300) as u64)).await;
        if started.elapsed() >= length {
            break;
        }
        match next_fault(&mut order, 11, &mut rng) {
            0 => {
                let i = rng.below(workers.len());
                signal("KILL", workers[i].pid());
                faults.kills.push((workers[i].pid(), super::now_nanos()));
                faults.add("worker SIGKILL");
                workers[i] = start_worker(i)?;
            }
            1 => {
                let pid = workers[rng.below(workers.len())].pid();
                faults.add("worker SIGSTOP");
                signal("STOP", pid);
                tokio::time::sleep(short(&mut rng)).await;
                signal("CONT", pid);
            }
            2 => {
                let i = rng.below(endpoints.len());
                faults.add("endpoint SIGKILL");
                signal("KILL", endpoints[i].0.pid());
                let port = endpoints[i].1;
                endpoints[i].0 = start_endpoint(port)?;
            }
            3 => {
                let pid = endpoints[rng.below(endpoints.len())].0.pid();
                faults.add("endpoint SIGSTOP");
                signal("STOP", pid);
                tokio::time::sleep(Duration::from_millis(200 + rng.below(1800) as u64)).await;
                signal("CONT", pid);
            }
            4 => {
                faults.add("PostgreSQL stop -m immediate, restart");
                blocking(|| {
                    server.stop_immediate();
                    std::thread::sleep(Duration::from_millis(200));
                    server.restart();
                });
            }
            5 => {
                faults.add("PostgreSQL connections terminated");
                blocking(|| server.terminate_backends());
            }
            10 => {
                faults.add("PostgreSQL paused (SIGSTOP)");
                let pause = short(&mut rng);
                blocking(|| {
                    server.pause();
                    std::thread::sleep(pause);
                    server.resume();
                });
            }
            6 => {
                faults.add("proxy latency");
                proxy.set_latency(Duration::from_millis(rng.below(200) as u64));
                tokio::time::sleep(Duration::from_secs(2)).await;
                proxy.set_latency(Duration::ZERO);
            }
            7 => {
                faults.add("proxy pause");
                proxy.pause();
                tokio::time::sleep(short(&mut rng)).await;
                proxy.resume();
            }
            8 => {
                faults.add("proxy cut");
                proxy.cut();
            }
            _ => {
                faults.add("replay and purge");
                for queue in [&tx_queue, &leased_queue] {
                    let _ = queue.replay_dead_letters(20).await;
                    let _ = queue.purge_dead_letters(Duration::from_secs(5)).await;
                }
            }
        }
    }
    let total = sending.await?;
    proxy.heal();

    // Drain: wait until nothing waits, runs or is due in either queue.
    let drained = Instant::now();
    loop {
        let mut left = 0;
        for queue in [&tx_queue, &leased_queue] {
            left += match queue.counts().await {
                Ok(c) => c.pending + c.in_progress + c.retrying,
                Err(_) => 1,
            };
        }
        if left == 0 {
            break;
        }
        if drained.elapsed() > Duration::from_secs(90) {
            println!("chaos: the queues did not drain in 90 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut dead = HashMap::new();
    for (route, queue) in [("tx", &tx_queue), ("leased", &leased_queue)] {
        dead.insert(route, dead_ids(queue).await);
    }
    drop(workers);
    drop(endpoints);
    let effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM chaos_effects GROUP BY event_id")
            .fetch_all(&admin)
            .await?;
    let effects: HashMap<String, i64> = effects.into_iter().collect();

    let sent = Arc::try_unwrap(sent)
        .map_err(|_| "sender still running")?
        .into_inner()
        .unwrap();
    let of_route = |route: &str| Sent {
        accepted: sent
            .accepted
            .iter()
            .filter(|(id, _)| super::route(id, ROUTES) == route)
            .map(|(id, at)| (id.clone(), *at))
            .collect(),
        ..Sent::default()
    };
    let leased = check(&logs, &of_route("leased"), &faults, &dead["leased"], true)?;
    let mut committed = [Committed::default(), Committed::default()];
    for (route, committed) in ["tx", "inline"].into_iter().zip(&mut committed) {
        for id in of_route(route).accepted.keys() {
            let rows = effects.get(id).copied().unwrap_or(0);
            let permanent = route == "tx" && fate(id).1;
            committed.check(id, rows, permanent, || {
                dead["tx"].contains(id) || faults.counts.contains_key("replay and purge")
            });
        }
    }
    summary(total, &sent, &faults);
    println!("chaos: leased (queue, plain handler):");
    println!("{leased}");
    println!("chaos: transactional (queue workers):");
    println!("{}", committed[0]);
    println!("chaos: transactional (inline receiver):");
    println!("{}", committed[1]);
    Ok(leased.violations == 0 && committed.iter().all(|c| c.violations == 0))
}

/// What the effects table says of the transactional routes.
#[derive(Default)]
struct Committed {
    once: u64,
    dead: u64,
    violations: u64,
    examples: Vec<String>,
}

impl Committed {
    fn check(&mut self, id: &str, rows: i64, permanent: bool, dead: impl FnOnce() -> bool) {
        let problem = match (permanent, rows) {
            (false, 1) => {
                self.once += 1;
                return;
            }
            (true, 0) if dead() => {
                self.dead += 1;
                return;
            }
            (true, 0) => format!("{id}: failed for good, not in the dead letters"),
            (true, n) => format!("{id}: fails for good, yet {n} effects committed"),
            (false, 0) => format!("{id}: answered 200, no effect committed"),
            (false, n) => format!("{id}: {n} effects committed"),
        };
        self.violations += 1;
        if self.examples.len() < 10 {
            self.examples.push(problem);
        }
    }
}

impl std::fmt::Display for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos: {} with exactly one committed effect, {} failed for good (dead letters, no effect)",
            self.once, self.dead
        )?;
        verdict(f, &self.examples, self.once + self.dead, self.violations)
    }
}
