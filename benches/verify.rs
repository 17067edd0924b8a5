//! Cost of one delivery through the core: verify the signature, parse the event.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use notmeta_webhooks::{Verifier, sign};
use std::hint::black_box;

const SECRET: &str = "whsec_bench";

fn message_received() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/events/evt_6.message.received.json"
    ))
    .expect("the shared example events beside the repository")
}

fn core(c: &mut Criterion) {
    let body = message_received();
    let header = sign(&body, SECRET);
    let verifier = Verifier::new(SECRET).unwrap();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&body), black_box(&header))
                .unwrap()
        })
    });
    group.bench_function("verify_and_parse", |b| {
        b.iter(|| {
            verifier
                .verify_and_parse(black_box(&body), black_box(&header))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
