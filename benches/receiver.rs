//! What the ready-made endpoint adds to a delivery beyond `verify_and_parse`: the
//! owned copy of the event for the handler, the dedup claim and completion, the
//! handler time limit and the panic guard. HTTP itself is measured by
//! `cargo run --release -p notmeta-tools --bin load -- compare`.
//!
//! Rows, for the 1 KiB `message.received` body, each with a fresh event id:
//!
//! - `verify_and_parse`: the core alone;
//! - `receive_without_dedup`: `Receiver::receive` with de-duplication off;
//! - `receive`: `Receiver::receive` with the default in-memory dedup store.
//!
//! Run with `cargo bench --bench receiver --features receiver`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use notmeta_webhooks::dedup::MemoryStore;
use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
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
    let without_dedup = Receiver::new(verifier.clone(), handler).without_dedup();
    // Ids are remembered for 50 ms: at a few microseconds a delivery, about ten
    // thousand are held, and each has expired before its id comes round again.
    let with_dedup = Receiver::new(verifier.clone(), handler)
        .with_store(MemoryStore::new().with_capacity(20_000))
        .with_dedup_window(std::time::Duration::from_millis(50));

    let mut group = c.benchmark_group("receiver/1KiB");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % deliveries.len();
        &deliveries[i]
    };
    group.bench_function("verify_and_parse", |b| {
        b.iter(|| {
            let (body, header) = next();
            verifier.verify_and_parse(black_box(body), header).unwrap();
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
    // Ids repeat after 65,536 deliveries, long after their 50 ms window.
    group.bench_function("receive", |b| {
        b.iter(|| {
            let (body, header) = next();
            let answer = runtime.block_on(with_dedup.receive(black_box(body), [header.as_bytes()]));
            assert_eq!(answer.outcome(), Outcome::Handled);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time::criterion();
    targets = receiver
}
criterion_main!(benches);
