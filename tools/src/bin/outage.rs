//! A downstream that is down for a while and then recovers, played against a queue
//! worker on Redis (a redis-server started here) with and without a circuit
//! breaker: attempts spent against the dead downstream, dead letters, and how long
//! after the downstream's recovery the worker handled again and had drained what
//! arrived meanwhile.
//!
//! ```text
//! # Down for 60 s, events arriving at 5/s for 80 s; the worker's defaults
//! # (8 at once, 5 attempts, backoff 1 s doubling), the breaker opening after 5
//! # consecutive failures for 5 s:
//! cargo run --release -p notmeta-tools --bin outage
//!
//! # Down for 20 s, 10 events/s, a breaker cool-down of 2 s:
//! cargo run --release -p notmeta-tools --bin outage -- --down 20 --rate 10 --cool-down 2
//! ```
//!
//! Exits non-zero if the run with the breaker dead-letters anything or does not
//! handle every event exactly once.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_webhooks::breaker::CircuitBreaker;
use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_outage";

/// The scenario's settings.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    /// How long the downstream is down from the start.
    down: Duration,
    /// Events arriving per second...
    rate: u32,
    /// ...for this long.
    arriving: Duration,
    /// The breaker's threshold and cool-down.
    threshold: u32,
    cool_down: Duration,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Measured {
    events: u64,
    failed_calls: u64,
    calls: u64,
    dead_letters: u64,
    handled_once: bool,
    first_success_after_recovery: Option<Duration>,
    drained_after_recovery: Option<Duration>,
}

fn parse() -> Result<Scenario, String> {
    let mut scenario = Scenario {
        down: Duration::from_secs(60),
        rate: 5,
        arriving: Duration::from_secs(80),
        threshold: 5,
        cool_down: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    let mut arriving = None;
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--down" => scenario.down = Duration::from_secs(value),
            "--rate" => scenario.rate = u32::try_from(value).map_err(|e| e.to_string())?.max(1),
            "--for" => arriving = Some(Duration::from_secs(value)),
            "--threshold" => {
                scenario.threshold = u32::try_from(value).map_err(|e| e.to_string())?
            }
            "--cool-down" => scenario.cool_down = Duration::from_secs(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    scenario.arriving = arriving.unwrap_or(scenario.down + Duration::from_secs(20));
    Ok(scenario)
}

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

async fn run(scenario: Scenario, breaker: Option<CircuitBreaker>, label: &str) -> Measured {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.expect("redis");
    let enqueuer = Enqueuer::new(Verifier::new(SECRET).expect("secret"), queue.clone());
    let start = Instant::now();
    let up_at = start + scenario.down;
    let calls: Arc<Mutex<Vec<(String, Instant, bool)>>> = Arc::default();
    let seen = Arc::clone(&calls);
    let mut worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let now = Instant::now();
        let down = now < up_at;
        seen.lock()
            .expect("calls")
            .push((event.id.as_str().to_owned(), now, down));
        async move {
            // A downstream call: 20 ms.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if down {
                Err(HandlerError::temporary("downstream down"))
            } else {
                Ok(())
            }
        }
    });
    if let Some(breaker) = breaker {
        worker = worker.with_circuit_breaker(breaker);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Arrivals at the rate, for the period.
    let every = Duration::from_secs(1) / scenario.rate;
    let mut sent = 0u64;
    let mut next = start;
    while next < start + scenario.arriving {
        tokio::time::sleep_until(next.into()).await;
        let b = body(&format!("evt_{sent}"));
        let answer = enqueuer.receive(&b, [sign(&b, SECRET).as_bytes()]).await;
        assert_eq!(answer.status(), 200, "enqueue");
        sent += 1;
        next += every;
    }
    // Then until nothing waits, runs or retries (or 10 minutes).
    let mut drained_at = None;
    let give_up = Instant::now() + Duration::from_secs(600);
    while Instant::now() < give_up {
        let counts = queue.counts().await.expect("counts");
        if counts.pending + counts.in_progress + counts.retrying == 0 {
            drained_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = queue.counts().await.expect("counts");
    let _ = stop.send(());
    let _ = running.await;
    let calls = calls.lock().expect("calls");
    let mut successes: HashMap<&str, u64> = HashMap::new();
    for (id, _, failed) in calls.iter() {
        if !failed {
            *successes.entry(id).or_default() += 1;
        }
    }
    let measured = Measured {
        events: sent,
        failed_calls: calls.iter().filter(|c| c.2).count() as u64,
        calls: calls.len() as u64,
        dead_letters: counts.dead_letters,
        handled_once: successes.len() as u64 + counts.dead_letters == sent
            && successes.values().all(|n| *n == 1),
        first_success_after_recovery: calls
            .iter()
            .filter(|c| !c.2)
            .map(|c| c.1.saturating_duration_since(up_at))
            .min(),
        drained_after_recovery: drained_at.map(|t| t.saturating_duration_since(up_at)),
    };
    println!(
        "{label:<16} events {:>5}  handler calls {:>5}  failed calls (attempts spent) {:>5}  dead letters {:>4}  first success {:>8}  drained {:>8}  each handled once: {}",
        measured.events,
        measured.calls,
        measured.failed_calls,
        measured.dead_letters,
        show(measured.first_success_after_recovery),
        show(measured.drained_after_recovery),
        measured.handled_once,
    );
    measured
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("+{:.2}s", d.as_secs_f64()),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let scenario = match parse() {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("outage: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "downstream down for {:?}, {} events/s for {:?}; worker defaults (8 at once, 5 attempts, backoff 1 s doubling); breaker: {} failures, cool-down {:?}",
        scenario.down, scenario.rate, scenario.arriving, scenario.threshold, scenario.cool_down
    );
    println!("times are after the downstream's recovery");
    run(scenario, None, "no breaker").await;
    let breaker = CircuitBreaker::new(scenario.threshold, scenario.cool_down).with_name("outage");
    let with = run(scenario, Some(breaker), "circuit breaker").await;
    if with.dead_letters > 0 || !with.handled_once {
        eprintln!("outage: the run with the breaker lost events or handled one twice");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
