//! The whole story in one process: an axum receiver on an ephemeral 127.0.0.1 port,
//! and this program acting as NotMeta against it over real HTTP.
//!
//! ```text
//! cargo run --example demo --features axum
//! ```
//!
//! It sends the verification challenge, a signed event of every documented type, an
//! event of a type that does not exist yet, a forged request, an oversized body, an
//! event whose handler fails temporarily followed by NotMeta's retry, a duplicate
//! delivery (handled once), and a captured request replayed hours later (refused). It
//! prints what was sent and what came back, and exits 0 only if every answer was
//! right.
//!
//! Built with the `queue` feature too, and with `redis-server` on the PATH, it then
//! starts a redis-server on a free loopback port behind one endpoint that handles
//! presence events inline and queues the rest (`queue::Split`): a `user.online` is
//! handled before its answer, a slow event's 200 comes back at once, and a worker
//! handles it afterwards.
//!
//! ```text
//! cargo run --example demo --features axum,queue
//! ```
//!
//! Built with the `postgres` feature, and with PostgreSQL installed, it starts a
//! PostgreSQL server in a temporary directory and runs the `postgres_receiver`
//! example's app: a transactional handler whose row commits with the done mark. A
//! failed attempt leaves no row, NotMeta's retry writes it, and a duplicate delivery
//! writes nothing more.
//!
//! ```text
//! cargo run --example demo --features axum,postgres
//! ```

mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use notmeta_test_support::client;
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, Event, EventType, Verifier, sign};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const SECRET: &str = "whsec_demo";
const CHALLENGE: &str = "challenge_string_123";

/// Log lines the handler wrote, and how often the flaky event was attempted.
#[derive(Default)]
struct Handled {
    lines: Mutex<Vec<String>>,
    flaky_attempts: AtomicUsize,
}

async fn start_receiver(handled: Arc<Handled>) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let receiver = Receiver::new(Verifier::new(SECRET)?, move |event: Event<'static>| {
        let handled = Arc::clone(&handled);
        async move {
            if event.id == "evt_flaky" && handled.flaky_attempts.fetch_add(1, Ordering::SeqCst) == 0
            {
                return Err(HandlerError::temporary("the database is restarting"));
            }
            handled.lines.lock().unwrap().push(common::describe(&event));
            Ok(())
        }
    })
    // Refuse replays of requests captured more than 90 minutes ago (NotMeta's last
    // retry comes 81 minutes after the first attempt).
    .with_max_event_age(Duration::from_secs(90 * 60));
    let app = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A plausible body for each documented type (NotMeta's documented shapes, with
/// the inferred ones filled in the same style).
fn sample(event_type: EventType, id: &str) -> String {
    sample_at(event_type, id, OffsetDateTime::now_utc())
}

fn sample_at(event_type: EventType, id: &str, created_at: OffsetDateTime) -> String {
    let created_at = created_at.format(&Rfc3339).expect("a formattable time");
    let conversation = r#"{"id":"conv_123456789","status":"assigned","assigned_to":"user_123456789","created_at":"2024-01-01T11:55:00Z","assigned_at":"2024-01-01T12:05:00Z"}"#;
    let user =
        r#"{"id":"user_123456789","name":"Juan Pérez","email":"juan@empresa.com","role":"agent"}"#;
    let message = r#"{"id":"msg_123456789","conversation_id":"conv_123456789","from":"1234567890","to":"0987654321","type":"text","text":"Hola, necesito ayuda","timestamp":"2024-01-01T12:00:00Z"}"#;
    let error = r#"{"code":"470","message":"Message failed to send"}"#;
    let name = event_type.as_str();
    let data = match name.split('.').next() {
        Some("conversation") => format!(r#"{{"conversation":{conversation},"user":{user}}}"#),
        Some("message") => {
            format!(r#"{{"message":{message},"conversation":{conversation},"error":{error}}}"#)
        }
        Some("user") => format!(r#"{{"user":{user}}}"#),
        _ if event_type == EventType::WebhookVerified => {
            format!(r#"{{"webhook_id":"wh_123456789","challenge":"{CHALLENGE}"}}"#)
        }
        _ => format!(r#"{{"webhook_id":"wh_123456789","error":{error}}}"#),
    };
    format!(r#"{{"id":"{id}","type":"{name}","created_at":"{created_at}","data":{data}}}"#)
}

struct Step {
    what: String,
    body: Vec<u8>,
    signature: String,
    expect_status: u16,
    expect_body: Option<&'static str>,
}

impl Step {
    fn signed(what: impl Into<String>, body: impl Into<Vec<u8>>, expect_status: u16) -> Self {
        let body = body.into();
        Self {
            what: what.into(),
            signature: sign(&body, SECRET),
            body,
            expect_status,
            expect_body: None,
        }
    }
}

fn steps() -> Vec<Step> {
    let mut steps = Vec::new();
    let challenge = Step {
        expect_body: Some(CHALLENGE),
        ..Step::signed(
            "challenge (webhook.verified)",
            sample(EventType::WebhookVerified, "evt_verify_123"),
            200,
        )
    };
    steps.push(challenge);
    for (i, t) in EventType::ALL.iter().enumerate() {
        if *t != EventType::WebhookVerified {
            steps.push(Step::signed(
                t.as_str(),
                sample(*t, &format!("evt_{}", i + 1)),
                200,
            ));
        }
    }
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("a formattable time");
    steps.push(Step::signed(
        "new type call.started",
        format!(r#"{{"id":"evt_new","type":"call.started","created_at":"{now}","data":{{"call":{{"id":"call_1"}}}}}}"#),
        200,
    ));
    let forged = sample(EventType::MessageReceived, "evt_forged");
    steps.push(Step {
        signature: sign(forged.as_bytes(), "not_the_secret"),
        expect_body: Some("Invalid signature"),
        ..Step::signed("forged message.received", forged, 400)
    });
    let mut oversized = sample(EventType::MessageReceived, "evt_huge").into_bytes();
    oversized.resize(DEFAULT_MAX_BODY_SIZE + 1, b' ');
    steps.push(Step::signed("oversized body (1 MiB + 1)", oversized, 413));
    let flaky = sample(EventType::MessageSent, "evt_flaky");
    steps.push(Step::signed(
        "handler fails temporarily",
        flaky.clone(),
        503,
    ));
    steps.push(Step::signed("NotMeta retries it", flaky, 200));
    let delivered_twice = sample(EventType::MessageReceived, "evt_twice");
    steps.push(Step::signed(
        "message.received",
        delivered_twice.clone(),
        200,
    ));
    steps.push(Step {
        expect_body: Some("OK (duplicate)"),
        ..Step::signed("the same event again (duplicate)", delivered_twice, 200)
    });
    let three_hours_ago = OffsetDateTime::now_utc() - Duration::from_secs(3 * 60 * 60);
    steps.push(Step {
        expect_body: Some("Event too old"),
        ..Step::signed(
            "replay captured 3 h ago",
            sample_at(EventType::MessageReceived, "evt_captured", three_hours_ago),
            400,
        )
    });
    steps
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let handled = Arc::new(Handled::default());
    let addr = start_receiver(Arc::clone(&handled)).await?;
    println!("receiver listening on http://{addr}/webhooks\n");
    println!(
        "{:<32} {:>9} {:>6}  {:<4} answer",
        "sent", "expected", "got", "ok"
    );

    let mut failures = 0;
    let steps = steps();
    for step in &steps {
        let reply = client::post(
            addr,
            "/webhooks",
            &[("X-NotMeta-Signature", &step.signature)],
            &step.body,
        )
        .await;
        let ok = reply.status == step.expect_status
            && step.expect_body.is_none_or(|b| reply.body == b.as_bytes());
        failures += usize::from(!ok);
        let text: String = reply.text().chars().take(32).collect();
        println!(
            "{:<32} {:>9} {:>6}  {:<4} {:?}",
            step.what,
            step.expect_status,
            reply.status,
            if ok { "yes" } else { "NO" },
            text
        );
    }

    let lines = handled.lines.lock().unwrap().clone();
    println!("\nthe handler logged {} events:", lines.len());
    for line in &lines {
        println!("  {line}");
    }
    // 16 documented types besides the challenge, the new type, the retried event, and
    // the event delivered twice (once).
    let expected_handled = EventType::ALL.len() - 1 + 3;
    if lines.len() != expected_handled {
        println!("expected {expected_handled} handled events");
        failures += 1;
    }
    let mut checks = steps.len();
    println!();
    match queue_part::run().await? {
        queue_part::Outcome::Skipped(why) => println!("queue part skipped: {why}"),
        queue_part::Outcome::Ran { checks: n, failed } => {
            checks += n;
            failures += failed;
        }
    }
    println!();
    match postgres_part::run().await? {
        queue_part::Outcome::Skipped(why) => println!("PostgreSQL part skipped: {why}"),
        queue_part::Outcome::Ran { checks: n, failed } => {
            checks += n;
            failures += failed;
        }
    }
    if failures == 0 {
        println!("\nall {checks} answers were right");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{failures} wrong answers");
        Ok(ExitCode::FAILURE)
    }
}

/// Acknowledge fast, process later: a slow event through a queue endpoint.
mod queue_part {
    /// What the queue part (or the PostgreSQL part) did.
    #[cfg_attr(not(any(feature = "queue", feature = "postgres")), allow(dead_code))]
    pub(crate) enum Outcome {
        Skipped(&'static str),
        Ran { checks: usize, failed: usize },
    }

    #[cfg(not(feature = "queue"))]
    pub(crate) async fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
        Ok(Outcome::Skipped(
            "built without the `queue` feature (cargo run --example demo --features axum,queue)",
        ))
    }

    #[cfg(feature = "queue")]
    pub(crate) async fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};

        use notmeta_test_support::{RedisServer, client};
        use notmeta_webhooks::queue::{Enqueuer, Queue, Split, Worker};
        use notmeta_webhooks::receiver::{HandlerError, Receiver};
        use notmeta_webhooks::{Event, EventType, Verifier, sign};

        const SLOW: Duration = Duration::from_secs(2);

        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Ok(Outcome::Skipped(
                "no redis-server on the PATH (apt-get install -y redis-server)",
            ));
        }
        let redis = RedisServer::start();
        let queue = Queue::connect(&redis.url()).await?.with_namespace("demo");
        // One endpoint: presence events handled inline, everything else queued.
        let verifier = Verifier::new(super::SECRET)?;
        let inline_seen = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&inline_seen);
        let presence = Receiver::new(verifier.clone(), move |event: Event<'static>| {
            let seen = Arc::clone(&seen);
            async move {
                println!(
                    "  inline handler ran for {}",
                    super::common::describe(&event)
                );
                seen.store(true, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        });
        let enqueuer = Enqueuer::new(verifier, queue.clone());
        let split = Split::new(presence, enqueuer).inline([EventType::UserOnline]);
        let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(split));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        println!(
            "queue endpoint on http://{addr}/webhooks, Redis on port {}",
            redis.port
        );

        let mut failed = 0;
        let mut check = |what: &str, ok: bool, detail: String| {
            failed += usize::from(!ok);
            println!("{what:<48} {:<4} {detail}", if ok { "yes" } else { "NO" });
        };

        // A light event: handled inline, before the answer.
        let body = super::sample(EventType::UserOnline, "evt_presence");
        let reply = client::post(
            addr,
            "/webhooks",
            &[("X-NotMeta-Signature", &sign(body.as_bytes(), super::SECRET))],
            body.as_bytes(),
        )
        .await;
        check(
            "user.online handled inline, then answered 200",
            reply.status == 200 && inline_seen.load(Ordering::SeqCst),
            format!("{} {:?}", reply.status, reply.text()),
        );

        // A slow one: verified, enqueued and answered; the handler is not run yet.
        let body = super::sample(EventType::MessageReceived, "evt_slow");
        let sent = Instant::now();
        let reply = client::post(
            addr,
            "/webhooks",
            &[("X-NotMeta-Signature", &sign(body.as_bytes(), super::SECRET))],
            body.as_bytes(),
        )
        .await;
        let answered = sent.elapsed();
        check(
            "slow event (2 s handler) answered 200 OK",
            reply.status == 200 && reply.body == b"OK",
            format!("{} {:?}", reply.status, reply.text()),
        );
        check(
            "  ... at once, before the handler ran",
            answered < SLOW / 4,
            format!("in {} ms", answered.as_millis()),
        );

        // A worker (in a real deployment, another process) handles it afterwards.
        let done = Arc::new(AtomicBool::new(false));
        let handled = Arc::clone(&done);
        let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
            let handled = Arc::clone(&handled);
            async move {
                tokio::time::sleep(SLOW).await;
                println!("  worker handled {}", super::common::describe(&event));
                handled.store(true, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + SLOW * 5;
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = sent.elapsed();
        let _ = stop.send(());
        let stats = running.await??;
        check(
            "the worker then handled it, once",
            done.load(Ordering::SeqCst) && stats.handled == 1 && took >= SLOW,
            format!(
                "{:.1} s after it was sent; handled {}",
                took.as_secs_f64(),
                stats.handled
            ),
        );
        let counts = queue.counts().await?;
        check(
            "the queue is empty",
            counts.pending + counts.in_progress + counts.retrying + counts.dead_letters == 0,
            format!("{counts:?}"),
        );
        Ok(Outcome::Ran { checks: 5, failed })
    }
}

/// The `postgres_receiver` example's app, run against a PostgreSQL server started
/// for the demo.
#[cfg(feature = "postgres")]
#[path = "postgres_receiver.rs"]
#[allow(dead_code)]
mod postgres_receiver;

/// Exactly-once effects: a transactional handler on PostgreSQL.
mod postgres_part {
    use super::queue_part::Outcome;

    #[cfg(not(feature = "postgres"))]
    pub(crate) async fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
        Ok(Outcome::Skipped(
            "built without the `postgres` feature (cargo run --example demo --features axum,postgres)",
        ))
    }

    #[cfg(feature = "postgres")]
    pub(crate) async fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
        use notmeta_test_support::{PostgresServer, client};
        use notmeta_webhooks::{EventType, Verifier, sign};

        if !PostgresServer::installed() {
            return Ok(Outcome::Skipped(
                "PostgreSQL is not installed (apt-get install -y postgresql)",
            ));
        }
        let server = PostgresServer::start();
        let pool = sqlx::PgPool::connect(&server.url()).await?;
        let app = super::postgres_receiver::app(pool.clone(), Verifier::new(super::SECRET)?)
            .await
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        println!(
            "PostgreSQL endpoint on http://{addr}/webhooks, PostgreSQL on port {}",
            server.port()
        );

        let mut failed = 0;
        let mut check = |what: &str, ok: bool, detail: String| {
            failed += usize::from(!ok);
            println!("{what:<48} {:<4} {detail}", if ok { "yes" } else { "NO" });
        };
        let rows = |pool: sqlx::PgPool| async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages WHERE event_id = 'evt_pg'")
                .fetch_one(&pool)
                .await
        };
        let body = super::sample(EventType::MessageReceived, "evt_pg");
        let signature = sign(body.as_bytes(), super::SECRET);
        let post = async || {
            client::post(
                addr,
                "/webhooks",
                &[("X-NotMeta-Signature", &signature)],
                body.as_bytes(),
            )
            .await
        };

        // The database refuses the handler's write (a constraint stands in for an
        // outage): the transaction rolls back, nothing is recorded, and NotMeta is
        // told to retry.
        sqlx::query("ALTER TABLE messages ADD CONSTRAINT demo_outage CHECK (false) NOT VALID")
            .execute(&pool)
            .await?;
        let reply = post().await;
        check(
            "write refused: answered 503, nothing kept",
            reply.status == 503 && rows(pool.clone()).await? == 0,
            format!("{} {:?}", reply.status, reply.text()),
        );
        sqlx::query("ALTER TABLE messages DROP CONSTRAINT demo_outage")
            .execute(&pool)
            .await?;
        let reply = post().await;
        check(
            "NotMeta's retry: 200, the row committed",
            reply.status == 200 && rows(pool.clone()).await? == 1,
            format!("{} {:?}", reply.status, reply.text()),
        );
        let reply = post().await;
        check(
            "a duplicate delivery: 200, no second row",
            reply.status == 200 && rows(pool.clone()).await? == 1,
            format!("{} {:?}", reply.status, reply.text()),
        );
        Ok(Outcome::Ran { checks: 3, failed })
    }
}
