//! `verify_and_parse` with a fixed secret.
//!
//! Input: a header value, `\n`, then the body; the last byte also picks a body limit
//! and a read time limit for a verifier built from them. Seeds carry valid
//! signatures, so the fuzzer starts past the MAC. The model (`expected_verdict`)
//! compares the right MAC with the input's digits using an ordinary `==`, and
//! libFuzzer watches such comparisons: it copies the right MAC into its inputs, so
//! mutated bodies with valid signatures keep reaching the parser (about half the
//! corpus verifies). The crate's own comparison is constant-time and gives the fuzzer
//! no such hint.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use notmeta_webhooks::{ErrorKind, Event, Verifier, verify_and_parse};
use notmeta_webhooks_fuzz::{
    OTHER_SECRET, SECRET, check_parse_outcome, expected_verdict, verifier,
};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(verifier);

const SMALL_LIMIT: usize = 512;

static SMALL: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::builder()
        .secret(OTHER_SECRET)
        .secret(SECRET)
        .max_body_size(SMALL_LIMIT)
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header);

    let got = VERIFIER
        .verify(body, [header.as_bytes()])
        .and_then(|payload| payload.parse());
    match expected_verdict(body, &[header.as_bytes()]) {
        Ok(_) => {
            // Verified: exactly what parsing the bytes gives.
            let unverified = Event::parse_unverified(body);
            assert_eq!(
                got.as_ref().map_err(|e| e.kind()),
                unverified.as_ref().map_err(|e| e.kind())
            );
            check_parse_outcome(body, &got);
        }
        Err(kind) => assert_eq!(got.map_err(|e| e.kind()).unwrap_err(), kind),
    }

    // A verifier with a small body limit refuses longer bodies before anything else
    // (the header is present exactly once here), and agrees otherwise.
    let limited = SMALL
        .verify(body, [header.as_bytes()])
        .map(|p| p.secret_index());
    if body.len() > SMALL_LIMIT {
        assert_eq!(limited.unwrap_err().kind(), ErrorKind::BodyTooLarge);
    } else {
        assert_eq!(
            limited.map_err(|e| e.kind()),
            expected_verdict(body, &[header.as_bytes()])
        );
    }

    // Builder settings taken from the input's last byte: a body limit from 0 to
    // `usize::MAX` (around the body's own length). The verifier prints, and refuses
    // exactly the bodies over its limit.
    let knob = data.last().copied().unwrap_or(0);
    let limit = match knob % 6 {
        0 => 0,
        1 => body.len().saturating_sub(1),
        2 => body.len(),
        3 => usize::MAX,
        4 => usize::MAX - 1,
        _ => usize::from(knob) * 64,
    };
    let configured = Verifier::builder()
        .secret(SECRET)
        .max_body_size(limit)
        .build()
        .unwrap();
    let _ = format!("{configured:?}");
    let got = configured
        .verify(body, [header.as_bytes()])
        .and_then(|payload| payload.parse())
        .map(|_| ())
        .map_err(|e| e.kind());
    if body.len() > limit {
        assert_eq!(got, Err(ErrorKind::BodyTooLarge));
    } else {
        let one_call = verify_and_parse(body, &header, SECRET);
        assert_eq!(got, one_call.map(|_| ()).map_err(|e| e.kind()));
    }

    // The one-call function with a single secret agrees with the model too.
    let single = verify_and_parse(body, &header, SECRET).map_err(|e| e.kind());
    match expected_verdict(body, &[header.as_bytes()]) {
        Ok(1) => assert!(single.is_ok() || single == Err(ErrorKind::InvalidEvent)),
        Ok(_) => assert_eq!(single.unwrap_err(), ErrorKind::SignatureMismatch),
        Err(kind) => assert_eq!(single.unwrap_err(), kind),
    }
});
