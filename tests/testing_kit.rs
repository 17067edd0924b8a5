//! The test kit as a user's tests use it: samples, signed requests, handler tests
//! without JSON, the simulator over a tower service and over real HTTP, and events
//! stored as JSON and read back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use notmeta_webhooks::clock::{Clock, ManualClock};
use notmeta_webhooks::receiver::{HandlerError, Receiver, ResultExt, handler_fn};
use notmeta_webhooks::testing::{Fate, Kind, Simulator, Target, sample, samples};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{Event, EventKind, EventType, Verifier};
use tower_service::Service as _;

const SECRET: &str = "whsec_kit";

/// A handler that fails with a temporary error while `down` is above zero.
fn downstream(
    down: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
) -> Receiver<impl notmeta_webhooks::receiver::Handler> {
    Receiver::new(
        Verifier::new(SECRET).unwrap(),
        handler_fn(move |_event| {
            let (down, calls) = (Arc::clone(&down), Arc::clone(&calls));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let still_down = down
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if still_down {
                    Err(std::io::Error::other("downstream down")).temporary()?;
                }
                Ok(())
            }
        }),
    )
}

#[tokio::test]
async fn samples_pass_a_receiver_with_a_maximum_age() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |event: Event<'static>| {
            record.lock().unwrap().push(event.type_str().to_owned());
            async { Ok::<(), HandlerError>(()) }
        },
    )
    .with_max_event_age(Duration::from_secs(90 * 60));
    let mut service = WebhookService::new(receiver);
    for sample in samples() {
        let response = service.call(sample.request(SECRET)).await.unwrap();
        assert_eq!(response.status(), 200, "{}", sample.event_type());
    }
    // Every type but the challenge, which the receiver answers itself.
    assert_eq!(seen.lock().unwrap().len(), EventType::ALL.len() - 1);
}

#[test]
fn every_event_round_trips_through_serde_json() {
    for sample in samples() {
        let event = sample.event();
        let json = serde_json::to_vec(&event).unwrap();
        assert_eq!(json, event.raw_body());
        assert_eq!(Event::parse_unverified(&json).unwrap(), event);
    }
    let unknown =
        notmeta_webhooks::testing::Sample::new("call.started", serde_json::json!({"a": [1]}));
    let event = unknown.event();
    assert_eq!(
        Event::parse_unverified(&serde_json::to_vec(&event).unwrap()).unwrap(),
        event
    );
}

#[tokio::test]
async fn handlers_are_tested_without_json() {
    async fn on_event(event: Event<'static>) -> Result<String, HandlerError> {
        match &event.kind {
            EventKind::ConversationAssigned(a) => {
                let name = a
                    .user
                    .name
                    .as_deref()
                    .ok_or("an assignee without a name")
                    .permanent()?;
                Ok(format!(
                    "{} -> {name}",
                    a.conversation.id.as_deref().unwrap_or("?")
                ))
            }
            _ => Ok(String::new()),
        }
    }
    let event = sample(EventType::ConversationAssigned)
        .conversation_id("conv_9")
        .user_name("Ana")
        .event();
    assert_eq!(on_event(event).await.unwrap(), "conv_9 -> Ana");
    let nameless = sample(EventType::ConversationAssigned)
        .remove("/user/name")
        .event();
    assert_eq!(on_event(nameless).await.unwrap_err().status(), 400);
}

#[tokio::test]
async fn the_simulator_follows_notmeta_on_a_manual_clock() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_704_110_400));
    let (down, calls) = (Arc::new(AtomicU32::new(4)), Arc::new(AtomicU32::new(0)));
    let receiver = downstream(Arc::clone(&down), Arc::clone(&calls))
        .with_clock(clock.clone())
        .with_max_event_age(Duration::from_secs(90 * 60));
    let start = clock.now();
    let event = sample(EventType::MessageReceived).created_at(clock.now());
    let report = Simulator::new(SECRET)
        .with_clock(clock.clone())
        .deliver(
            &Target::service(WebhookService::new(receiver)),
            event.body(),
        )
        .await;
    // Four failures, then NotMeta's fifth and last attempt 81 minutes later succeeds:
    // the receiver's maximum age of 90 minutes accepts it.
    let id = event.event_id();
    assert_eq!(
        report.statuses(id),
        [Some(503), Some(503), Some(503), Some(503), Some(200)]
    );
    let at: Vec<u64> = report
        .attempts()
        .iter()
        .map(|a| a.at.as_secs() / 60)
        .collect();
    assert_eq!(at, [0, 1, 6, 21, 81]);
    assert_eq!(
        clock.now().duration_since(start).unwrap(),
        Duration::from_secs(81 * 60)
    );
    assert_eq!(report.fate(id), Some(Fate::Delivered { attempts: 5 }));
    let table = report.to_string();
    assert!(
        table.lines().next().unwrap().starts_with("event"),
        "{table}"
    );
    assert!(
        table.contains("+1h21m") && table.contains("delivered after 5 attempts"),
        "{table}"
    );
}

#[tokio::test]
async fn the_simulator_gives_up_after_five_attempts_and_stops_at_a_4xx() {
    let (down, calls) = (Arc::new(AtomicU32::new(100)), Arc::new(AtomicU32::new(0)));
    let target = Target::service(WebhookService::new(downstream(down, Arc::clone(&calls))));
    let body = sample(EventType::UserOnline).body();
    let report = Simulator::new(SECRET).deliver(&target, body.clone()).await;
    assert_eq!(report.attempts().len(), 5);
    assert!(!report.all_delivered());
    assert_eq!(report.fates()[0].1, Fate::GaveUp);
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    let report = Simulator::new("whsec_not_it").deliver(&target, body).await;
    assert_eq!(report.attempts().len(), 1);
    assert_eq!(report.fates()[0].1, Fate::Refused { status: 400 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_sends_duplicates_over_http_in_compressed_time() {
    let (down, calls) = (Arc::new(AtomicU32::new(1)), Arc::new(AtomicU32::new(0)));
    let app = axum::Router::new().route(
        "/webhooks",
        notmeta_webhooks::axum::endpoint(downstream(down, Arc::clone(&calls))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|_| sample(EventType::MessageReceived).body())
        .collect();
    let started = std::time::Instant::now();
    let report = Simulator::new(SECRET)
        .compressed(600) // a minute lasts 100 ms
        .with_duplicates(2)
        .with_concurrent_duplicates(1)
        .deliver_all(&[Target::url(&url).unwrap()], bodies)
        .await;
    assert!(report.all_delivered(), "{report}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "two waits: 1 min and 5 min"
    );
    let duplicates = report
        .attempts()
        .iter()
        .filter(|a| a.kind == Kind::Duplicate);
    assert!(
        duplicates.clone().count() == 6
            && duplicates
                .clone()
                .all(|a| a.answer.status() == Some(http::StatusCode::OK))
    );
    // One event failed once, then each ran to success once, whatever the
    // duplicates (a concurrent copy may have been the one to retry the failure).
    assert!((4..=5).contains(&calls.load(Ordering::SeqCst)), "{report}");
}
