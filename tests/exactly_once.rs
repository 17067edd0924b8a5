//! The handler runs once per event id, under the faults a production receiver meets:
//! a sustained rate over the whole dedup window, a full store, handlers that block
//! their thread past their lease, clients that disconnect mid-handler, events dated
//! in the future, a store that fails or stalls, a wall clock that steps, Redis frozen
//! and restarted, and a receiver process killed mid-handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notmeta_test_support::RedisServer;
use notmeta_test_support::client;
use notmeta_test_support::http_server;
use notmeta_webhooks::clock::ManualClock;
use notmeta_webhooks::dedup::{
    Claim, ClaimToken, IdempotencyStore, MemoryStore, RedisStore, Settled, StoreError,
};
use notmeta_webhooks::receiver::{Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{Event, Verifier, sign};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SECRET: &str = "whsec_exactly_once";
/// 2024-01-01T00:00:00Z.
const T0: u64 = 1_704_067_200;
/// NotMeta's attempts, in seconds after the first.
const ATTEMPTS: [u64; 5] = [0, 60, 6 * 60, 21 * 60, 81 * 60];

fn rfc3339(unix: u64) -> String {
    let day = (unix - T0) / 86_400;
    let secs = (unix - T0) % 86_400;
    format!(
        "2024-01-{:02}T{:02}:{:02}:{:02}Z",
        1 + day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn body(i: u64, created_at: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{i}","type":"message.received","created_at":"{}","data":{{"message":{{"id":"msg_{i}","text":"hola"}},"conversation":{{"id":"conv_1"}}}}}}"#,
        rfc3339(created_at)
    )
    .into_bytes()
}

fn index(event: &Event<'_>) -> usize {
    event.id.as_str()["evt_".len()..].parse().unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(SECRET).unwrap()
}

async fn receive<H: Handler, S: IdempotencyStore>(
    receiver: &Receiver<H, S>,
    body: &[u8],
) -> Outcome {
    let header = sign(body, SECRET);
    receiver.receive(body, [header.as_bytes()]).await.outcome()
}

/// Two hours of NotMeta traffic at a sustained rate (events/s; 20 by default, set
/// `NOTMETA_SOAK_RATE=200` for the full 1.44 M-id run, in release), every event
/// redelivered at each of NotMeta's retry times, one in fifty failing once first:
/// no handler runs twice, no event is lost, nothing is refused, and the memory the
/// whole run takes stays within the store's stated bound per id.
#[test]
fn a_sustained_rate_over_the_whole_window_never_runs_a_handler_twice() {
    let rate: u64 = std::env::var("NOTMETA_SOAK_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let window = 2 * 3600;
    let events = rate * window;
    let capacity = usize::try_from(events * 11 / 10).unwrap();
    let handled: Arc<Vec<AtomicU8>> = Arc::new((0..events).map(|_| AtomicU8::new(0)).collect());
    let calls: Arc<Vec<AtomicU8>> = Arc::new((0..events).map(|_| AtomicU8::new(0)).collect());
    let mut held = 0;
    let mut refused = 0;
    let info = allocation_counter::measure(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
        let (handled, calls) = (Arc::clone(&handled), Arc::clone(&calls));
        let receiver = Receiver::new(verifier(), move |event: Event<'static>| {
            let i = index(&event);
            let call = calls[i].fetch_add(1, Ordering::Relaxed);
            let fail = i.is_multiple_of(50) && call == 0;
            if !fail {
                handled[i].fetch_add(1, Ordering::Relaxed);
            }
            async move {
                if fail {
                    Err(HandlerError::temporary("downstream unavailable"))
                } else {
                    Ok(())
                }
            }
        })
        .with_store(MemoryStore::with_capacity(capacity))
        .with_clock(clock.clone())
        .with_max_event_age(Duration::from_secs(90 * 60));
        runtime.block_on(async {
            for second in 0..window + ATTEMPTS[4] + 1 {
                for (attempt, offset) in ATTEMPTS.iter().enumerate() {
                    let Some(created) = second.checked_sub(*offset) else {
                        continue;
                    };
                    if created >= window {
                        continue;
                    }
                    for i in created * rate..(created + 1) * rate {
                        let outcome = receive(&receiver, &body(i, T0 + created)).await;
                        let expected = match (i % 50 == 0, attempt) {
                            (true, 0) => Outcome::TemporaryFailure,
                            (true, 1) | (false, 0) => Outcome::Handled,
                            _ => Outcome::Duplicate,
                        };
                        assert_eq!(outcome, expected, "evt_{i}, attempt {attempt}");
                    }
                }
                clock.advance(Duration::from_secs(1));
            }
        });
        let store = receiver.store().unwrap();
        held = store.len();
        refused = store.refused();
    });
    for i in 0..events {
        assert_eq!(handled[i as usize].load(Ordering::Relaxed), 1, "evt_{i}");
    }
    assert_eq!(refused, 0);
    assert!(held <= capacity, "{held} ids held, capacity {capacity}");
    // The peak of everything the run allocated, per id the store held at most.
    let per_id = info.bytes_max / (rate * window);
    eprintln!(
        "{events} events at {rate}/s: peak {} MB, {per_id} bytes per id",
        info.bytes_max / 1_000_000
    );
    assert!(
        per_id <= BYTES_PER_ID_BOUND,
        "{per_id} bytes per id, stated bound {BYTES_PER_ID_BOUND}"
    );
}

/// What the README and `DEFAULT_CAPACITY`'s docs state a remembered id costs at most
/// (table and expiry queue at their least favourable fill, with the run's own
/// transient allocations).
const BYTES_PER_ID_BOUND: u64 = 200;

/// Beyond its capacity the store refuses new ids with 503 (counted), still knows the
/// ids it holds, and takes new ones again once their windows pass: nothing is
/// forgotten early, nothing runs twice, and NotMeta's retries get every refused event
/// handled.
#[tokio::test]
async fn beyond_its_capacity_the_store_refuses_and_forgets_nothing() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let runs: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let counted = Arc::clone(&runs);
    let refusals = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&refusals);
    let receiver = Receiver::new(verifier(), move |event: Event<'static>| {
        *counted.lock().unwrap().entry(index(&event)).or_default() += 1;
        async { Ok::<(), HandlerError>(()) }
    })
    .with_store(MemoryStore::with_capacity(100))
    .with_dedup_window(Duration::from_secs(600))
    .with_clock(clock.clone())
    .on_outcome(move |report| {
        if report.outcome == Outcome::StoreFull {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    for i in 0..150 {
        let outcome = receive(&receiver, &body(i, T0)).await;
        let expected = if i < 100 {
            Outcome::Handled
        } else {
            Outcome::StoreFull
        };
        assert_eq!(outcome, expected, "evt_{i}");
        assert_eq!(expected.status(), if i < 100 { 200 } else { 503 });
    }
    assert_eq!(receiver.store().unwrap().refused(), 50);
    assert_eq!(refusals.load(Ordering::Relaxed), 50);
    clock.advance(Duration::from_secs(599));
    for i in 0..150 {
        let expected = if i < 100 {
            Outcome::Duplicate
        } else {
            Outcome::StoreFull
        };
        assert_eq!(receive(&receiver, &body(i, T0)).await, expected);
    }
    clock.advance(Duration::from_secs(1));
    for i in 100..150 {
        assert_eq!(receive(&receiver, &body(i, T0)).await, Outcome::Handled);
    }
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 150);
    assert!(runs.values().all(|&n| n == 1), "{runs:?}");
}

async fn serve_axum<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> SocketAddr {
    let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    http_server::axum(app).await
}

fn serve_actix<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> SocketAddr {
    http_server::actix(move || notmeta_webhooks::actix::endpoint(receiver.clone()))
}

async fn deliver(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let header = sign(body, SECRET);
    let reply = client::post(addr, "/webhooks", &[("x-notmeta-signature", &header)], body).await;
    let text = reply.text();
    (reply.status, text)
}

/// A handler that blocks its thread for 3 s, far past its 200 ms time limit and the
/// Redis store's 1 s lease, while NotMeta sends a duplicate 1.5 s after the handler
/// started: the duplicate is told to retry (503), the handler runs once, and once it
/// has finished the next retry is a duplicate (200).
///
/// The blocked thread is one of the runtime's workers when the handler runs in the
/// delivery's task (the in-memory store), and a busy machine can leave the
/// duplicate's connection waiting behind it: answered only once the handler has
/// finished, it is then a duplicate (200), which is as right for NotMeta. Either
/// way the handler must have run once.
async fn blocking_handler_with_a_duplicate<S: IdempotencyStore>(store: S) {
    let runs = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (counted, done) = (Arc::clone(&runs), Arc::clone(&finished));
    let receiver = Receiver::new(verifier(), move |_: Event<'static>| {
        let (counted, done) = (Arc::clone(&counted), Arc::clone(&done));
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(3000));
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .with_store(store)
    .with_handler_timeout(Duration::from_millis(200));
    let addr = serve_axum(receiver).await;
    let event = body(1, T0);
    let first = tokio::spawn({
        let event = event.clone();
        async move { deliver(addr, &event).await }
    });
    // Timed from the handler's start, whatever delayed the first delivery.
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let duplicate = deliver(addr, &event).await;
    match duplicate {
        (503, _) => {}
        // Answered only after the handler had finished (a completion is recorded
        // after it): a duplicate.
        (200, ref text) if text == "OK (duplicate)" => {
            assert_eq!(finished.load(Ordering::SeqCst), 1);
        }
        other => panic!("the duplicate got {other:?}"),
    }
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(
        deliver(addr, &event).await,
        (200, "OK (duplicate)".to_owned())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocking_handler_keeps_its_memory_claim() {
    blocking_handler_with_a_duplicate(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocking_handler_keeps_its_redis_claim_renewed() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .with_lease(Duration::from_secs(1));
    blocking_handler_with_a_duplicate(store).await;
}

/// With isolation off, the handler runs in the delivery's task beside the renewal of
/// its lease: an `.await`-only handler that runs for 2.5 leases keeps its claim (a
/// duplicate 1.5 s in is told to retry, and the handler runs once); one past its time
/// limit is stopped and its claim released, so the retry runs it again; a panic, in
/// the handler's future or before it returns one, is answered 500 and releases the
/// claim too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_isolation_an_async_handler_keeps_its_renewed_claim() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .with_lease(Duration::from_secs(1));
    let runs = Arc::new(Mutex::new(HashMap::<usize, usize>::new()));
    let finished = Arc::new(AtomicUsize::new(0));
    let (counted, done) = (Arc::clone(&runs), Arc::clone(&finished));
    let receiver = Receiver::new(verifier(), move |event: Event<'static>| {
        let (counted, done) = (Arc::clone(&counted), Arc::clone(&done));
        let i = index(&event);
        let run = {
            let mut runs = counted.lock().unwrap();
            let run = runs.entry(i).or_default();
            *run += 1;
            *run
        };
        if (i, run) == (4, 1) {
            panic!("a handler bug before its future exists");
        }
        async move {
            match (i, run) {
                // Slow but polite: 2.5 leases.
                (1, _) => tokio::time::sleep(Duration::from_millis(2500)).await,
                // Past the 4 s time limit on its first run only.
                (2, 1) => tokio::time::sleep(Duration::from_secs(60)).await,
                (3, 1) => panic!("a handler bug"),
                _ => {}
            }
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .with_store(store)
    .with_handler_isolation(false)
    .with_handler_timeout(Duration::from_secs(4));
    let addr = serve_axum(receiver).await;
    let runs_of = |i: usize| runs.lock().unwrap().get(&i).copied().unwrap_or(0);

    let slow = body(1, T0);
    let first = tokio::spawn({
        let slow = slow.clone();
        async move { deliver(addr, &slow).await }
    });
    while runs_of(1) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(deliver(addr, &slow).await.0, 503);
    assert_eq!(first.await.unwrap(), (200, "OK".to_owned()));
    assert_eq!(
        deliver(addr, &slow).await,
        (200, "OK (duplicate)".to_owned())
    );
    assert_eq!(runs_of(1), 1);

    let too_slow = body(2, T0);
    assert_eq!(deliver(addr, &too_slow).await.0, 503);
    assert_eq!(deliver(addr, &too_slow).await, (200, "OK".to_owned()));
    assert_eq!(runs_of(2), 2);

    let panicking = body(3, T0);
    assert_eq!(deliver(addr, &panicking).await.0, 500);
    assert_eq!(deliver(addr, &panicking).await, (200, "OK".to_owned()));
    assert_eq!(runs_of(3), 2);

    let panicking_early = body(4, T0);
    assert_eq!(deliver(addr, &panicking_early).await.0, 500);
    assert_eq!(
        deliver(addr, &panicking_early).await,
        (200, "OK".to_owned())
    );
    assert_eq!(runs_of(4), 2);
    assert_eq!(finished.load(Ordering::SeqCst), 4);
}

/// Sends a signed delivery of `event` on a connection of its own, and returns the
/// connection without reading the answer (to hang up or to read it later).
async fn send_raw(addr: SocketAddr, event: &[u8]) -> tokio::net::TcpStream {
    let header = sign(event, SECRET);
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-notmeta-signature: {header}\r\ncontent-length: {}\r\n\r\n",
        event.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(event).await.unwrap();
    socket
}

/// The client hangs up while the handler runs: the handler still finishes, its
/// outcome is recorded, and NotMeta's redelivery is answered 200 as a duplicate.
async fn disconnect_mid_handler(addr: SocketAddr, runs: &AtomicUsize, finished: &AtomicUsize) {
    let event = body(7, T0);
    let socket = send_raw(addr, &event).await;
    wait_for(runs, "the handler to start").await;
    assert_eq!(finished.load(Ordering::SeqCst), 0, "hung up before the end");
    drop(socket);
    wait_for(finished, "the handler to finish").await;
    assert_eq!(
        deliver(addr, &event).await,
        (200, "OK (duplicate)".to_owned())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Waits (at most 10 s) until `counter` is 1.
async fn wait_for(counter: &AtomicUsize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>);

fn slow_receiver() -> (Receiver<impl Handler>, Counters) {
    let (runs, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, f) = (Arc::clone(&runs), Arc::clone(&finished));
    let receiver = Receiver::new(verifier(), move |_: Event<'static>| {
        let (r, f) = (Arc::clone(&r), Arc::clone(&f));
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    });
    (receiver, (runs, finished))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_finishes_a_delivery_whose_client_disconnected() {
    let (receiver, (runs, finished)) = slow_receiver();
    let addr = serve_axum(receiver).await;
    disconnect_mid_handler(addr, &runs, &finished).await;
}

#[actix_web::test]
async fn actix_finishes_a_delivery_whose_client_disconnected() {
    let (receiver, (runs, finished)) = slow_receiver();
    let addr = serve_actix(receiver);
    disconnect_mid_handler(addr, &runs, &finished).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_service_finishes_a_delivery_whose_client_disconnected() {
    let (receiver, (runs, finished)) = slow_receiver();
    let addr = http_server::hyper(WebhookService::new(receiver)).await;
    disconnect_mid_handler(addr, &runs, &finished).await;
}

/// NotMeta's clock runs 10 minutes ahead: the event is accepted as usual, and the
/// same signed request replayed 24 h 06 min later (still younger than the 24 h
/// maximum age, by its own date) is a duplicate; once it is older, it is stale.
#[tokio::test]
async fn a_future_dated_event_cannot_be_replayed() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let receiver = Receiver::new(verifier(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    })
    .with_clock(clock.clone())
    .with_max_event_age(Duration::from_secs(24 * 3600));
    let event = body(1, T0 + 600);
    assert_eq!(receive(&receiver, &event).await, Outcome::Handled);
    clock.advance(Duration::from_secs(24 * 3600 + 6 * 60));
    assert_eq!(receive(&receiver, &event).await, Outcome::Duplicate);
    clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(receive(&receiver, &event).await, Outcome::Stale);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A wall-clock step (NTP, a resumed VM) neither forgets ids early nor expires
/// claims: windows run on monotonic time.
#[tokio::test]
async fn a_wall_clock_step_forgets_nothing() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let receiver = Receiver::new(verifier(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    })
    .with_clock(clock.clone());
    let event = body(1, T0);
    assert_eq!(receive(&receiver, &event).await, Outcome::Handled);
    clock.set(UNIX_EPOCH + Duration::from_secs(T0 + 30 * 86_400));
    assert_eq!(receive(&receiver, &event).await, Outcome::Duplicate);
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(receive(&receiver, &event).await, Outcome::Handled);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "forgotten after the window");
}

/// A store that fails its first `failures` completions, as Redis would while it is
/// away; everything else goes to a real `MemoryStore`.
struct FailingCompletions {
    inner: MemoryStore,
    failures: AtomicUsize,
    lease: Duration,
}

impl IdempotencyStore for FailingCompletions {
    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn claim(&self, event_id: &str) -> Result<Claim, StoreError> {
        self.inner.claim(event_id).await
    }

    async fn renew(&self, event_id: &str, token: &ClaimToken) -> Result<Settled, StoreError> {
        self.inner.renew(event_id, token).await
    }

    async fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> Result<Settled, StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::new("connection reset"));
        }
        self.inner.complete(event_id, token, window).await
    }

    async fn release(&self, event_id: &str, token: &ClaimToken) -> Result<(), StoreError> {
        self.inner.release(event_id, token).await
    }
}

/// A completion that fails after the handler succeeded is tried again until it is
/// recorded, so a later duplicate does not run the handler again; the failures are
/// counted.
#[tokio::test]
async fn a_failed_completion_is_retried_and_counted() {
    let recorder = Arc::new(notmeta_test_support::recorder::Counters::default());
    let _guard = metrics::set_default_local_recorder(&*recorder);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let receiver = Receiver::new(verifier(), move |_: Event<'static>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    })
    .with_store(FailingCompletions {
        inner: MemoryStore::new(),
        failures: AtomicUsize::new(4),
        lease: Duration::from_secs(5),
    });
    let event = body(1, T0);
    assert_eq!(receive(&receiver, &event).await, Outcome::Handled);
    assert_eq!(receive(&receiver, &event).await, Outcome::Duplicate);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        recorder.get("notmeta_webhooks_store_errors_total{operation=complete}"),
        4
    );
    assert_eq!(
        recorder.get("notmeta_webhooks_deliveries_total{outcome=handled}"),
        1
    );
    assert_eq!(
        recorder.get("notmeta_webhooks_deliveries_total{outcome=duplicate}"),
        1
    );

    // A store that never recovers within the claim's lease: given up, and counted.
    let receiver = Receiver::new(verifier(), |_: Event<'static>| async {
        Ok::<(), HandlerError>(())
    })
    .with_store(FailingCompletions {
        inner: MemoryStore::new(),
        failures: AtomicUsize::new(usize::MAX),
        lease: Duration::from_millis(100),
    });
    assert_eq!(receive(&receiver, &event).await, Outcome::Handled);
    assert_eq!(
        recorder.get("notmeta_webhooks_settle_failures_total{operation=complete}"),
        1
    );
}

/// Plays NotMeta against `replicas` for `events` events: each is delivered (to a
/// replica in turn, with a concurrent duplicate to the next one for every third)
/// and re-delivered until answered 2xx, pausing between rounds; returns the statuses
/// seen.
async fn play(replicas: &[SocketAddr], first: u64, events: u64, rounds: usize) -> Vec<u16> {
    let mut done: HashMap<u64, bool> = (first..first + events).map(|i| (i, false)).collect();
    let mut statuses = Vec::new();
    for round in 0..rounds {
        let mut deliveries = Vec::new();
        for (&i, _) in done.iter().filter(|(_, d)| !**d) {
            let to = replicas[(i as usize + round) % replicas.len()];
            let event = body(i, T0);
            deliveries.push((i, tokio::spawn(async move { deliver(to, &event).await.0 })));
            if i % 3 == 0 {
                let other = replicas[(i as usize + round + 1) % replicas.len()];
                let event = body(i, T0);
                deliveries.push((
                    i,
                    tokio::spawn(async move { deliver(other, &event).await.0 }),
                ));
            }
        }
        for (i, delivery) in deliveries {
            let status = delivery.await.unwrap();
            statuses.push(status);
            assert!([200, 503].contains(&status), "evt_{i}: {status}");
            if status == 200 {
                done.insert(i, true);
            }
        }
        if done.values().all(|d| *d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let lost: Vec<_> = done.iter().filter(|(_, d)| !**d).map(|(i, _)| *i).collect();
    assert!(lost.is_empty(), "never answered 2xx: {lost:?}");
    statuses
}

/// Two replicas share one durable Redis (`appendfsync always`). Redis is frozen
/// (SIGSTOP) while events are being handled, then killed (SIGKILL) and started again
/// on the same data: answers are 503 while it is away, and once it is back every
/// event is handled exactly once and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_frozen_then_killed_and_restarted() {
    let dir = std::env::temp_dir().join(format!(
        "notmeta-redis-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = RedisServer::start_durable(&dir);
    let runs: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let replica = |runs: &Arc<Mutex<HashMap<usize, usize>>>, store: RedisStore| {
        let runs = Arc::clone(runs);
        Receiver::new(verifier(), move |event: Event<'static>| {
            let runs = Arc::clone(&runs);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                *runs.lock().unwrap().entry(index(&event)).or_default() += 1;
                Ok::<(), HandlerError>(())
            }
        })
        .with_store(store)
        .with_store_timeout(Duration::from_millis(300))
    };
    let store = || async {
        RedisStore::connect(&redis.url())
            .await
            .unwrap()
            .with_lease(Duration::from_secs(5))
    };
    let a = serve_axum(replica(&runs, store().await)).await;
    let b = http_server::hyper(WebhookService::new(replica(&runs, store().await))).await;

    // Warm up, then freeze Redis in the middle of a batch.
    play(&[a, b], 0, 100, 5).await;
    let during = tokio::spawn(async move { play(&[a, b], 100, 300, 40).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.pause();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let frozen = deliver(a, &body(10_000, T0)).await;
    assert_eq!(frozen.0, 503, "answered while Redis is frozen: {frozen:?}");
    redis.resume();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    let statuses = during.await.unwrap();
    assert!(statuses.contains(&503), "no delivery saw Redis away");
    // After the restart, every event finished before it is still remembered.
    play(&[a, b], 0, 400, 5).await;
    let runs = runs.lock().unwrap();
    for i in 0..400 {
        assert_eq!(runs.get(&i), Some(&1), "evt_{i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The environment variable that makes this test binary a receiver replica (see
/// [`replica_process`]).
const REPLICA: &str = "NOTMETA_TEST_REPLICA_REDIS_URL";

/// Not a test of its own: run as a child process with [`REPLICA`] set, it serves an
/// axum receiver sharing the given Redis, prints its address, and handles events by
/// counting them in Redis (`handled:<id>`) after a 2 s pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_process() {
    let Ok(url) = std::env::var(REPLICA) else {
        return;
    };
    let conn = redis::Client::open(url.as_str()).unwrap();
    let conn = redis::aio::ConnectionManager::new(conn).await.unwrap();
    let receiver = Receiver::new(verifier(), move |event: Event<'static>| {
        let mut conn = conn.clone();
        async move {
            let id = event.id.as_str().to_owned();
            redis::cmd("INCR")
                .arg(format!("started:{id}"))
                .query_async::<i64>(&mut conn)
                .await
                .map_err(HandlerError::temporary)?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis::cmd("INCR")
                .arg(format!("handled:{id}"))
                .query_async::<i64>(&mut conn)
                .await
                .map_err(HandlerError::temporary)?;
            Ok(())
        }
    })
    .with_store(
        RedisStore::connect(&url)
            .await
            .unwrap()
            .with_lease(Duration::from_secs(1)),
    );
    let addr = serve_axum(receiver).await;
    println!("LISTENING {addr}");
    std::future::pending::<()>().await;
}

fn spawn_replica(url: &str) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "replica_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REPLICA, url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("the replica exited").unwrap();
        // The harness may print the test's name on the same line first.
        if let Some((_, addr)) = line.split_once("LISTENING ") {
            break addr.trim().parse().unwrap();
        }
    };
    (child, addr)
}

async fn redis_count(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<i64>>(conn)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// A replica is killed (SIGKILL) while its handler runs. NotMeta's retry reaches
/// another replica: told to wait (503) while the dead replica's lease lasts, then
/// handled there once the lease has lapsed. The event is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_handler_leaves_the_event_to_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (mut doomed, first) = spawn_replica(&url);
    let (mut survivor, second) = spawn_replica(&url);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let event = body(42, T0);
    let delivery = tokio::spawn({
        let event = event.clone();
        async move {
            let mut socket = send_raw(first, &event).await;
            let mut answer = Vec::new();
            let _ = socket.read_to_end(&mut answer).await;
            answer
        }
    });
    while redis_count(&mut conn, "started:evt_42").await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert!(
        delivery.await.unwrap().is_empty(),
        "the killed replica answered"
    );

    // Within the lease, the other replica is told to wait.
    assert_eq!(deliver(second, &event).await.0, 503);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(deliver(second, &event).await.0, 200);
    assert_eq!(
        deliver(second, &event).await,
        (200, "OK (duplicate)".to_owned())
    );
    assert_eq!(redis_count(&mut conn, "handled:evt_42").await, 1);
    assert_eq!(redis_count(&mut conn, "started:evt_42").await, 2);
    survivor.kill().unwrap();
    survivor.wait().unwrap();
}
