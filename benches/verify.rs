//! Cost of one delivery through the core, against the limit and the naive approach.
//!
//! For each `message.received` body size (380 B, the smallest real one; 1 KiB;
//! 16 KiB; 1 MiB) the group `message_received/<size>` measures:
//!
//! - `hmac`: HMAC-SHA256 of the body with a pre-keyed state (clone, update,
//!   finalize): the unavoidable cryptographic work;
//! - `borrowed_parse`: `serde_json::from_slice` into bench-local structs that mirror
//!   the envelope, the message and the conversation with `Cow<'a, str>` borrowed
//!   fields: the unavoidable parsing work. `hmac` + `borrowed_parse` is the limit;
//! - `borrowed_parse_str`: the same structs read with `std::str::from_utf8` once and
//!   `serde_json::from_str`, which is how the crate reads a body: a stricter limit;
//! - `parse`: [`Event::parse_unverified`], the crate's typed parse alone (it also
//!   parses the three RFC 3339 timestamps, which the limit keeps as strings);
//! - `verify`: [`Verifier::verify`] (header parsing, HMAC, constant-time compare);
//! - `verify_and_parse`: [`Verifier::verify_and_parse`], the one call most receivers
//!   make. Target: at most 1.10 × the limit;
//! - `naive`: what the vendor's Node sample implies: parse to `serde_json::Value`,
//!   serialise it again, HMAC that with a freshly keyed secret, hex-encode, compare
//!   strings with `==`. It rejects genuine signatures (shown when the bench starts),
//!   so it is timed against a signature of the re-serialised bytes. Target:
//!   `verify_and_parse` at least 2.2 × faster at 1 KiB.
//!
//! Times are the bench thread's CPU time (see `test-support/src/cpu_time.rs`), so that other
//! work on the machine moves the ratios less. Run with `cargo bench --bench verify`;
//! `python3 benches/ratios.py` then prints the ratios as Markdown tables. The
//! comparison with the `svix` crate lives in the separate crate `benches/peer` (see
//! its README) so that this one builds quickly.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use notmeta_webhooks::{Event, EventKind, Verifier, sign};
use serde::Deserialize;
use sha2::Sha256;

use notmeta_test_support::{bodies, cpu_time};

const SECRET: &str = "whsec_bench";

/// The limit's parse target: the fields the crate models for `message.received`,
/// all borrowed from the body (a `Cow` copies only a string holding escapes).
/// Most fields are only written, by the deserialiser: that is the work measured.
#[allow(dead_code)]
mod borrowed {
    use super::{Cow, Deserialize};

    /// A string borrowed from the body when it has no escapes.
    #[derive(Deserialize)]
    pub(super) struct Str<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

    #[derive(Deserialize)]
    pub(super) struct Envelope<'a> {
        #[serde(borrow)]
        pub(super) id: Cow<'a, str>,
        #[serde(borrow, rename = "type")]
        pub(super) event_type: Cow<'a, str>,
        #[serde(borrow)]
        pub(super) created_at: Cow<'a, str>,
        #[serde(borrow)]
        pub(super) data: Data<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct Data<'a> {
        #[serde(borrow)]
        pub(super) message: Message<'a>,
        #[serde(borrow)]
        pub(super) conversation: Conversation<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct Message<'a> {
        #[serde(borrow)]
        pub(super) id: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) conversation_id: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) from: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) to: Option<Str<'a>>,
        #[serde(borrow, rename = "type")]
        pub(super) kind: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) text: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) timestamp: Option<Str<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct Conversation<'a> {
        #[serde(borrow)]
        pub(super) id: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) status: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) assigned_to: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) created_at: Option<Str<'a>>,
        #[serde(borrow)]
        pub(super) assigned_at: Option<Str<'a>>,
    }
}

/// The naive receiver: parse, serialise again, HMAC with a freshly keyed secret,
/// compare hex strings with `==`. Returns the parsed value when it "verifies".
fn naive(body: &[u8], header: &str) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reserialised = serde_json::to_vec(&value).ok()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).ok()?;
    mac.update(&reserialised);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (header == expected).then_some(value)
}

fn message_received(c: &mut Criterion<cpu_time::Clock>) {
    let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    let verifier = Verifier::builder()
        .secret(SECRET)
        .max_body_size(2 * 1024 * 1024)
        .build()
        .unwrap();

    for size in bodies::SIZES {
        let body = bodies::message_received(size);
        let label = bodies::label(body.len());
        let header = sign(&body, SECRET);

        // The bodies are valid events of the intended type, and the limit's structs
        // read the same fields.
        let event = verifier
            .verify(&body, [&header])
            .and_then(|payload| payload.parse())
            .unwrap();
        assert!(matches!(event.kind, EventKind::MessageReceived(_)));
        let limit: borrowed::Envelope = serde_json::from_slice(&body).unwrap();
        assert_eq!(limit.event_type, "message.received");
        assert!(matches!(
            limit.data.message.text,
            Some(borrowed::Str(Cow::Borrowed(_)))
        ));

        // The naive approach rejects the genuine signature: serde_json's `Value`
        // sorts object keys, so the re-serialised bytes differ from the body.
        let reserialised =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap())
                .unwrap();
        assert_ne!(reserialised, body);
        assert!(naive(&body, &header).is_none());
        println!(
            "naive ({label}): rejects the genuine signature (re-serialised {} bytes differ \
             from the {} received)",
            reserialised.len(),
            body.len()
        );
        let naive_header = sign(&reserialised, SECRET);
        assert!(naive(&body, &naive_header).is_some());

        let mut group = c.benchmark_group(format!("message_received/{label}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() >= 1024 * 1024 {
            // A millisecond per iteration: fewer samples keep the run short.
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(5));
        }
        group.bench_function(BenchmarkId::from_parameter("hmac"), |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(&body));
                mac.finalize().into_bytes()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("borrowed_parse"), |b| {
            b.iter(|| serde_json::from_slice::<borrowed::Envelope>(black_box(&body)).unwrap())
        });
        group.bench_function(BenchmarkId::from_parameter("borrowed_parse_str"), |b| {
            b.iter(|| {
                let text = std::str::from_utf8(black_box(&body)).unwrap();
                serde_json::from_str::<borrowed::Envelope>(text).unwrap()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("parse"), |b| {
            b.iter(|| Event::parse_unverified(black_box(&body)).unwrap())
        });
        group.bench_function(BenchmarkId::from_parameter("verify"), |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&body), [black_box(&header)])
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("verify_and_parse"), |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&body), [black_box(&header)])
                    .and_then(|payload| payload.parse())
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::from_parameter("naive"), |b| {
            b.iter(|| naive(black_box(&body), black_box(&naive_header)).unwrap())
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = cpu_time::criterion();
    targets = message_received
}
criterion_main!(benches);
