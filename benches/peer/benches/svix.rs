//! This crate's verification against the `svix` crate's, on the same bodies.
//!
//! svix signs `{id}.{timestamp}.{body}` with its own headers (`svix-id`,
//! `svix-timestamp`, `svix-signature`) and a base64 secret (`whsec_…`); each body is
//! signed with svix's own `Webhook::sign`, so its `Webhook::verify` succeeds (within
//! its five-minute timestamp tolerance, which the run stays inside).
//!
//! For each `message.received` body size the group `svix/<size>` measures:
//!
//! - `svix_verify`: `svix::webhooks::Webhook::verify` with the headers in an
//!   `http::HeaderMap`;
//! - `verify`: `Verifier::verify`, this crate's check, also reading its header
//!   from an `http::HeaderMap`. Target: at least 5 × faster than svix at 1 KiB;
//! - `verify_and_parse`: the same, then the typed parse (svix only verifies).
//!   Target: at least 2.5 × faster than svix at 1 KiB.
//!
//! Times are the bench thread's CPU time, as in the main crate's benches. Run with
//! `cargo bench` in `benches/peer`; `python3 benches/ratios.py` (from the repository
//! root) prints the ratios.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use notmeta_webhooks::{EventKind, SIGNATURE_HEADER, Verifier, sign};
use svix::webhooks::Webhook;

use notmeta_test_support::{bodies, cpu_time};

const SECRET: &str = "whsec_bench";

/// Headers svix's `Webhook::verify` accepts for `body`, signed now.
fn svix_headers(svix: &Webhook, body: &[u8]) -> HeaderMap {
    let id = "msg_bench";
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let timestamp = i64::try_from(now.as_secs()).unwrap();
    let signature = svix.sign(id, timestamp, body).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("svix-id", HeaderValue::from_static(id));
    headers.insert("svix-timestamp", HeaderValue::from(timestamp));
    headers.insert("svix-signature", signature.parse().unwrap());
    headers
}

fn against_svix(c: &mut Criterion<cpu_time::Clock>) {
    // The same key bytes for both: svix takes them base64-encoded.
    let svix_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET)
    );
    let svix = Webhook::new(&svix_secret).unwrap();
    let verifier = Verifier::builder()
        .secret(SECRET)
        .max_body_size(2 * 1024 * 1024)
        .build()
        .unwrap();

    for size in bodies::SIZES {
        let body = bodies::message_received(size);
        let label = bodies::label(body.len());
        let svix_headers = svix_headers(&svix, &body);
        svix.verify(&body, &svix_headers)
            .expect("svix verifies its own signature");
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, sign(&body, SECRET).parse().unwrap());
        let event = verifier
            .verify(&body, headers.get_all(SIGNATURE_HEADER))
            .and_then(|payload| payload.parse())
            .unwrap();
        assert!(matches!(event.kind, EventKind::MessageReceived(_)));

        let mut group = c.benchmark_group(format!("svix/{label}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() >= 1024 * 1024 {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(5));
        }
        group.bench_function(BenchmarkId::from_parameter("svix_verify"), |b| {
            b.iter(|| {
                svix.verify(black_box(&body), black_box(&svix_headers))
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("verify"), |b| {
            b.iter(|| {
                verifier
                    .verify(
                        black_box(&body),
                        black_box(&headers).get_all(SIGNATURE_HEADER),
                    )
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("verify_and_parse"), |b| {
            b.iter(|| {
                verifier
                    .verify(
                        black_box(&body),
                        black_box(&headers).get_all(SIGNATURE_HEADER),
                    )
                    .and_then(|payload| payload.parse())
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = cpu_time::criterion();
    targets = against_svix
}
criterion_main!(benches);
