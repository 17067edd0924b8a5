//! A circuit breaker's changes of state as the `tracing` and `metrics` features
//! show them: `warn` when it opens, `info` when it goes half-open and closes, a
//! state gauge and a transitions counter labelled with its name, and the refused
//! deliveries counted under their own outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use notmeta_test_support::TempDir;
use notmeta_test_support::recorder::Counters;
use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::clock::ManualClock;
use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver, metrics};
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_observed";

#[tokio::test(flavor = "current_thread")]
async fn each_change_of_state_is_logged_and_counted() {
    // The log goes to a file, read back at the end.
    let dir = TempDir::new("breaker-logs");
    let path = dir.path().join("log");
    let file = Arc::new(std::fs::File::create(&path).unwrap());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(file)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let recorder = Arc::new(Counters::default());
    let _metrics = ::metrics::set_default_local_recorder(&*recorder);

    let clock = ManualClock::new(UNIX_EPOCH);
    let breaker = CircuitBreaker::new(2, Duration::from_secs(30))
        .with_name("crm")
        .with_clock(clock.clone());
    let down = Arc::new(AtomicBool::new(true));
    let failing = Arc::clone(&down);
    let receiver = Receiver::new(Verifier::new(SECRET).unwrap(), move |_: Event<'static>| {
        let down = failing.load(Ordering::SeqCst);
        async move {
            if down {
                Err(HandlerError::temporary("the CRM is down"))
            } else {
                Ok(())
            }
        }
    })
    .with_circuit_breaker(breaker.clone());
    let send = async |id: &str| {
        let body = format!(
            r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
        );
        let signature = sign(body.as_bytes(), SECRET);
        receiver
            .receive(body.as_bytes(), [signature.as_bytes()])
            .await
            .outcome()
    };
    let state = |recorder: &Counters| {
        recorder.get(&format!(
            "{}{{breaker=crm}}",
            metrics::CIRCUIT_BREAKER_STATE
        ))
    };
    let moved = |recorder: &Counters, to: &str| {
        recorder.get(&format!(
            "{}{{breaker=crm,to={to}}}",
            metrics::CIRCUIT_BREAKER_TRANSITIONS_TOTAL
        ))
    };

    assert_eq!(send("evt_1").await, Outcome::TemporaryFailure);
    assert_eq!(moved(&recorder, "open"), 0);
    assert_eq!(send("evt_2").await, Outcome::TemporaryFailure);
    assert_eq!((moved(&recorder, "open"), state(&recorder)), (1, 1));
    assert_eq!(send("evt_3").await, Outcome::CircuitOpen);
    assert_eq!(
        recorder.get(&format!(
            "{}{{outcome=circuit_open}}",
            metrics::DELIVERIES_TOTAL
        )),
        1
    );
    clock.advance(Duration::from_secs(30));
    down.store(false, Ordering::SeqCst);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!((moved(&recorder, "half_open"), state(&recorder)), (1, 2));
    assert_eq!(send("evt_3").await, Outcome::Handled);
    assert_eq!((moved(&recorder, "closed"), state(&recorder)), (1, 0));

    let logs = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("circuit breaker"))
        .collect();
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("opened"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("breaker=\"crm\"") || lines[0].contains("breaker=crm"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("cool_down_ms=30000"), "{}", lines[0]);
    assert!(
        lines[1].contains("INFO") && lines[1].contains("half-open"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("INFO") && lines[2].contains("closed"),
        "{}",
        lines[2]
    );
}
