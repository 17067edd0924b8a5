//! What a delivery costs, stage by stage, in-process (HTTP itself is measured by
//! `cargo run --release -p notmeta-tools --bin load -- compare`).
//!
//! Rows, for the 1 KiB `message.received` body, each with a fresh event id:
//!
//! - `verify`: the signature check alone (`Verifier::verify`);
//! - `parse`: the typed parse alone (`Event::parse_unverified`);
//! - `verify_and_parse`: the core, both in one call;
//! - `owned_copy`: `Event::into_owned`, the copy a handler gets (`Event<'static>`);
//! - `claim_complete`: the default in-memory store's claim and completion of one id;
//! - `handler_call`: calling the handler and polling its future to the end;
//! - `spawn`: spawning a task and awaiting it, as the receiver does for a handler that
//!   waits (on the bench's single-threaded runtime);
//! - `answer`: the HTTP response built from the outcome;
//! - `receive_without_dedup`: `Receiver::receive` with de-duplication off;
//! - `receive`: `Receiver::receive` with the default in-memory dedup store;
//! - `receive_waiting_handler`: the same, with a handler that waits once (so the
//!   delivery goes on in a spawned task);
//! - `tower_service`: `tower::WebhookService::call` on an in-memory request: the body
//!   read, `receive` and the response (feature `tower`).
//!
//! Run with `cargo bench --bench receiver --all-features` (or `--features receiver`
//! for the rows without the tower service).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use notmeta_webhooks::dedup::{Claim, IdempotencyStore, MemoryStore};
use notmeta_webhooks::receiver::{Answer, Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

use notmeta_test_support::cpu_time;

const SECRET: &str = "whsec_bench";

/// Bodies of about 1 KiB with distinct ids, signed.
fn deliveries(n: usize) -> Vec<(Vec<u8>, String)> {
    let text = "x".repeat(640);
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"id":"evt_bench_{i}","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{{"message":{{"id":"msg_{i}","conversation_id":"conv_1","from":"1234567890","to":"0987654321","type":"text","text":"{text}","timestamp":"2024-01-01T12:00:00Z"}},"conversation":{{"id":"conv_1","status":"open","assigned_to":null}}}}}}"#
            )
            .into_bytes();
            let header = sign(&body, SECRET);
            (body, header)
        })
        .collect()
}

/// Ids are remembered for 50 ms: at a few microseconds a delivery, ten to twenty
/// thousand are held, and each has expired before its id comes round again (after
/// 65,536 deliveries). The capacity leaves room for a faster delivery (a full store
/// would answer 503 and fail the bench).
fn store() -> MemoryStore {
    MemoryStore::with_capacity(60_000)
}
const WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

fn receiver(c: &mut Criterion<cpu_time::Clock>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let deliveries = deliveries(1 << 16);
    let verifier = Verifier::new(SECRET).unwrap();
    let handler = |event: Event<'static>| async move {
        black_box(event);
        Ok::<(), HandlerError>(())
    };
    let waiting = |event: Event<'static>| async move {
        tokio::task::yield_now().await;
        black_box(event);
        Ok::<(), HandlerError>(())
    };
    let without_dedup = Receiver::new(verifier.clone(), handler).without_dedup();
    let with_dedup = Receiver::new(verifier.clone(), handler)
        .with_store(store())
        .with_dedup_window(WINDOW);
    let with_waiting = Receiver::new(verifier.clone(), waiting)
        .with_store(store())
        .with_dedup_window(WINDOW);

    let mut group = c.benchmark_group("receiver/1KiB");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % deliveries.len();
        &deliveries[i]
    };
    group.bench_function("verify", |b| {
        b.iter(|| {
            let (body, header) = next();
            verifier.verify(black_box(body), [header]).unwrap();
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            let (body, _) = next();
            black_box(Event::parse_unverified(black_box(body)).unwrap());
        })
    });
    group.bench_function("verify_and_parse", |b| {
        b.iter(|| {
            let (body, header) = next();
            black_box(
                verifier
                    .verify(black_box(body), [header])
                    .and_then(|payload| payload.parse())
                    .unwrap(),
            );
        })
    });
    group.bench_function("owned_copy", |b| {
        b.iter_batched(
            || Event::parse_unverified(&next().0).unwrap(),
            |event| black_box(event.into_owned()),
            criterion::BatchSize::SmallInput,
        )
    });
    let dedup = store();
    let ids: Vec<String> = (0..deliveries.len()).map(|i| format!("evt_{i}")).collect();
    let mut j = 0;
    group.bench_function("claim_complete", |b| {
        b.iter(|| {
            j = (j + 1) % ids.len();
            let id = ids[j].as_str();
            let Some(Ok(Claim::Claimed(token))) = dedup.claim(id).now_or_never() else {
                panic!("{id} not claimed");
            };
            // Alone, a claim and completion take a fraction of a delivery: a 1 ms
            // window keeps about as many ids held as the rows below.
            let window = std::time::Duration::from_millis(1);
            black_box(dedup.complete(id, &token, window).now_or_never());
        })
    });
    group.bench_function("handler_call", |b| {
        b.iter_batched(
            || Event::parse_unverified(&next().0).unwrap().into_owned(),
            |event| {
                Handler::call(&handler, event)
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("spawn", |b| {
        b.iter(|| runtime.block_on(async { tokio::spawn(async { black_box(1) }).await }))
    });
    group.bench_function("answer", |b| {
        b.iter(|| black_box(Answer::from(black_box(Outcome::Handled)).into_response()))
    });
    // What the `receive` rows below pay for `block_on` itself: a boxed future that
    // is ready at its first poll, as a delivery with a handler that never waits is.
    group.bench_function("block_on_ready", |b| {
        b.iter(|| {
            let ready: futures_util::future::BoxFuture<'_, u8> =
                Box::pin(std::future::ready(black_box(1)));
            black_box(runtime.block_on(ready))
        })
    });
    group.bench_function("receive_without_dedup", |b| {
        b.iter(|| {
            let (body, header) = next();
            let answer =
                runtime.block_on(without_dedup.receive(black_box(body), [header.as_bytes()]));
            assert_eq!(answer.status(), 200);
        })
    });
    group.bench_function("receive", |b| {
        b.iter(|| {
            let (body, header) = next();
            let answer = runtime.block_on(with_dedup.receive(black_box(body), [header.as_bytes()]));
            assert_eq!(answer.outcome(), Outcome::Handled);
        })
    });
    group.bench_function("receive_waiting_handler", |b| {
        b.iter(|| {
            let (body, header) = next();
            let answer =
                runtime.block_on(with_waiting.receive(black_box(body), [header.as_bytes()]));
            assert_eq!(answer.outcome(), Outcome::Handled);
        })
    });
    #[cfg(feature = "tower")]
    {
        use tower_service::Service as _;
        let mut service = notmeta_webhooks::tower::WebhookService::new(
            Receiver::new(verifier.clone(), handler)
                .with_store(store())
                .with_dedup_window(WINDOW),
        );
        group.bench_function("tower_service", |b| {
            b.iter(|| {
                let (body, header) = next();
                let request = http::Request::post("/webhooks")
                    .header("content-length", body.len())
                    .header("x-notmeta-signature", header.as_str())
                    .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                        body,
                    )))
                    .unwrap();
                let response = runtime.block_on(service.call(request)).unwrap();
                assert_eq!(response.status(), 200);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time::criterion();
    targets = receiver
}
criterion_main!(benches);
