//! The test kit as a user's tests use it: samples, signed requests, handler tests
//! without JSON, the simulator over a tower service and over real HTTP, and events
//! stored as JSON and read back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use http::StatusCode;
use notmeta_webhooks::clock::{Clock, ManualClock};
use notmeta_webhooks::receiver::{HandlerError, Receiver, ResultExt, handler_fn};
use notmeta_webhooks::testing::{
    Answer, Fate, Kind, MAX_REPLY_BODY, Simulator, Target, sample, samples,
};
use notmeta_webhooks::tower::WebhookService;
use notmeta_webhooks::{Event, EventKind, EventType, Verifier};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
    // The waits, and the (short) time each answer took.
    let at: Vec<u64> = report
        .attempts()
        .iter()
        .map(|a| a.at.as_secs() / 60)
        .collect();
    assert_eq!(at, [0, 1, 6, 21, 81]);
    let advanced = clock.now().duration_since(start).unwrap();
    assert!(
        advanced >= Duration::from_secs(81 * 60) && advanced < Duration::from_secs(82 * 60),
        "{advanced:?}"
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

#[tokio::test]
async fn an_unreachable_receiver_is_retried_and_its_error_reported() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target::url(&format!("http://127.0.0.1:{port}/webhooks")).unwrap();
    let report = Simulator::new(SECRET)
        .deliver(&target, sample(EventType::UserOnline).body())
        .await;
    assert_eq!(report.attempts().len(), 5, "{report}");
    assert_eq!(report.fates()[0].1, Fate::GaveUp);
    for attempt in report.attempts() {
        let Answer::Failed(error) = &attempt.answer else {
            panic!("{report}");
        };
        assert!(!error.is_url());
        let text = error.to_string();
        assert!(text.starts_with("cannot connect to 127.0.0.1:"), "{text}");
        assert_eq!(attempt.answer.to_string(), format!("failed: {text}"));
    }
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
        .with_timeout(Duration::from_secs(600)) // 1 s to answer, for a loaded machine
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

/// A receiver at `/webhooks` that answers 503 to its first `failures` requests,
/// then 200, after sleeping `slow` on its first request.
fn flaky(failures: u32, slow: Duration) -> (Target, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new().route(
        "/webhooks",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(slow).await;
                }
                if n < failures {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (StatusCode::OK, "OK")
                }
            }
        }),
    );
    (Target::service(app), calls)
}

/// `(kind, number, status)` of each attempt.
fn kinds(report: &notmeta_webhooks::testing::Report) -> Vec<(Kind, u32, Option<u16>)> {
    report
        .attempts()
        .iter()
        .map(|a| (a.kind, a.number, a.answer.status().map(|s| s.as_u16())))
        .collect()
}

#[tokio::test]
async fn every_delivery_follows_its_own_schedule() {
    // The first delivery goes to the first target, its concurrent copy to the second.
    let body = sample(EventType::UserOnline).body();
    let (ok, _) = flaky(0, Duration::ZERO);

    // The copy is answered 503: NotMeta retries it (on the next target).
    let (busy, _) = flaky(1, Duration::ZERO);
    let report = Simulator::new(SECRET)
        .with_concurrent_duplicates(1)
        .deliver_all(&[ok.clone(), busy], [body.clone()])
        .await;
    assert_eq!(
        kinds(&report),
        [
            (Kind::Attempt, 1, Some(200)),
            (Kind::Concurrent, 1, Some(503)),
            (Kind::Concurrent, 2, Some(200)),
        ],
        "{report}"
    );
    assert!(
        report.attempts()[2].at >= Duration::from_secs(60),
        "{report}"
    );
    assert_eq!(report.fates()[0].1, Fate::Delivered { attempts: 1 });

    // The first delivery is answered 503 while its copy is answered 200: the first
    // delivery is retried all the same, and its attempts are in the report.
    let (busy, _) = flaky(1, Duration::ZERO);
    let report = Simulator::new(SECRET)
        .with_concurrent_duplicates(1)
        .deliver_all(&[busy, ok], [body])
        .await;
    assert_eq!(
        kinds(&report),
        [
            (Kind::Attempt, 1, Some(503)),
            (Kind::Concurrent, 1, Some(200)),
            (Kind::Attempt, 2, Some(200)),
        ],
        "{report}"
    );
    let id = &report.fates()[0].0;
    assert_eq!(report.statuses(id), [Some(503), Some(200)]);
    assert_eq!(report.fates()[0].1, Fate::Delivered { attempts: 1 });
}

#[tokio::test]
async fn a_wait_counts_from_the_end_of_the_attempt_before_it() {
    // The first answer takes 300 ms: the retry comes a minute after it ends.
    let (target, _) = flaky(1, Duration::from_millis(300));
    let report = Simulator::new(SECRET)
        .deliver(&target, sample(EventType::UserOnline).body())
        .await;
    let [first, second] = report.attempts() else {
        panic!("{report}")
    };
    assert!(first.took >= Duration::from_millis(300), "{report}");
    assert!(
        second.at >= first.took + Duration::from_secs(60),
        "{:?} after an attempt of {:?}\n{report}",
        second.at,
        first.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_time_compresses_the_answer_limit_too() {
    // 60 times faster: NotMeta's 30 s to answer are 0.5 s; the first answer takes 3 s.
    let (target, calls) = flaky(0, Duration::from_secs(3));
    let report = Simulator::new(SECRET)
        .compressed(60)
        .deliver(&target, sample(EventType::UserOnline).body())
        .await;
    let [first, second] = report.attempts() else {
        panic!("{report}")
    };
    assert_eq!(first.answer, Answer::TimedOut, "{report}");
    assert!(first.took < Duration::from_secs(3), "{report}");
    assert_eq!(second.answer.status(), Some(StatusCode::OK), "{report}");
    // The attempt's half second counts as NotMeta's 30 s before the minute's wait.
    assert!(
        second.at >= Duration::from_secs(90) && second.at < Duration::from_secs(5 * 60),
        "{report}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(report.all_delivered());
    // The limit is given in NotMeta's time, as the command-line tool gives its own.
    let shown = report.to_string();
    assert!(shown.contains("no answer in 30 s"), "{shown}");
}

/// A receiver at `/webhooks` that answers `statuses` in turn, then 200.
fn answering(statuses: &'static [u16]) -> Target {
    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/webhooks",
        post(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let status = statuses.get(n).copied().unwrap_or(200);
            async move { StatusCode::from_u16(status).unwrap() }
        }),
    );
    Target::service(app)
}

#[tokio::test]
async fn a_duplicate_is_retried_on_notmeta_schedule_from_its_beginning() {
    // Delivered at once. Duplicate 1 starts a minute later, in the schedule's second
    // slot, and fails twice: its retries come 1 min, then 5 min after each failure,
    // as every delivery's do. Duplicate 2 is due 5 min after duplicate 1 starts.
    let target = answering(&[200, 503, 503]);
    let report = Simulator::new(SECRET)
        .with_duplicates(2)
        .deliver(&target, sample(EventType::UserOnline).body())
        .await;
    let duplicates: Vec<_> = report
        .attempts()
        .iter()
        .filter(|a| a.kind == Kind::Duplicate)
        .collect();
    let seen: Vec<_> = duplicates
        .iter()
        .map(|a| (a.number, a.answer.status().map(|s| s.as_u16())))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some(503)), // duplicate 1, at +1m
            (2, Some(503)), // duplicate 1, at +2m
            (1, Some(200)), // duplicate 2, at +6m
            (3, Some(200)), // duplicate 1, at +7m
        ],
        "{report}"
    );
    // The wait between two attempts, from the end of the first.
    let wait = |before: usize, after: usize| {
        duplicates[after].at - duplicates[before].at - duplicates[before].took
    };
    let near = |wait: Duration, minutes: u64| {
        wait >= Duration::from_secs(60 * minutes) && wait < Duration::from_secs(60 * minutes + 1)
    };
    assert!(near(duplicates[0].at, 1), "{report}");
    assert!(near(wait(0, 1), 1), "{report}");
    assert!(near(wait(1, 3), 5), "{report}");
    assert!(near(duplicates[2].at - duplicates[0].at, 5), "{report}");
    assert!(report.all_delivered());
}

#[tokio::test]
async fn duplicates_are_started_one_at_a_time() {
    // A thousand duplicates: never more than a few deliveries in flight at once.
    let most = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&most);
    let app = Router::new().route(
        "/webhooks",
        post(move || {
            let alive = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks();
            seen.fetch_max(u32::try_from(alive).unwrap(), Ordering::SeqCst);
            async { StatusCode::OK }
        }),
    );
    let report = Simulator::new(SECRET)
        .with_duplicates(1000)
        .deliver(&Target::service(app), sample(EventType::UserOnline).body())
        .await;
    assert_eq!(report.attempts().len(), 1001);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} tasks at once");
}

#[test]
fn secrets_are_not_shown() {
    let simulator = format!("{:?}", Simulator::new("whsec_do_not_show"));
    assert!(!simulator.contains("whsec_do_not_show"), "{simulator}");

    for url in [
        "http://ana:s3cret@127.0.0.1:3000/webhooks",
        "http://ana:s3cret@127.0.0.1:3000",
        "https://ana:s3cret@example.com/",
        "http://ana:s3/cr?e#t@127.0.0.1:3000/webhooks",
        "ana:s3cret@127.0.0.1",
    ] {
        let error = Target::url(url).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("s3"), "{url}: {shown}");
        }
    }
    assert!(
        Target::url("http://ana:s3cret@127.0.0.1:3000/")
            .unwrap_err()
            .to_string()
            .contains("password")
    );
}

#[tokio::test]
async fn a_reply_shows_no_control_characters() {
    let app = Router::new().route(
        "/webhooks",
        post(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "no\x1b[2J\r\x07\u{202E}way",
            )
        }),
    );
    let report = Simulator::new(SECRET)
        .with_schedule([])
        .deliver(&Target::service(app), sample(EventType::UserOnline).body())
        .await;
    let table = report.to_string();
    assert!(table.contains(r"no\u{1b}[2J\r\u{7}\u{202e}way"), "{table}");
    for raw in ['\x1b', '\r', '\x07', '\u{202E}'] {
        assert!(!table.contains(raw), "{table:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_reply_is_cut_and_left_unread() {
    // An endless chunked answer: the reader keeps its start and closes the
    // connection, which the server sees.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = [b"10000\r\n".as_slice(), &[b'a'; 0x10000], b"\r\n"].concat();
        let mut sent = 0_u64;
        while socket.write_all(&chunk).await.is_ok() {
            sent += 0x10000;
        }
        sent
    });
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        Target::url(&url)
            .unwrap()
            .send(sample(EventType::UserOnline).request(SECRET)),
    )
    .await
    .expect("the answer is read to its end")
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.truncated);
    assert_eq!(reply.body.len(), MAX_REPLY_BODY);
    let sent = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the connection was closed")
        .unwrap();
    assert!(sent < 1 << 30, "{sent} bytes sent");
}

#[tokio::test]
async fn an_id_with_control_characters_stays_on_its_line_and_in_its_column() {
    let body = sample(EventType::UserOnline)
        .id("evt\n1: delivered at the first attempt")
        .body();
    let report = Simulator::new(SECRET).deliver(&answering(&[]), body).await;
    let shown = report.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(lines.iter().all(|line| !line.starts_with("1: ")), "{shown}");
    // The attempt number is under its heading.
    let column = lines[0].find("attempt").unwrap();
    assert_eq!(&lines[1][column..column + 3], "1  ", "{shown}");
}
