//! The signature header parser, through `Verifier::verify`.
//!
//! Input: the raw bytes of zero or more `X-NotMeta-Signature` values separated by
//! `\n` (the empty input is "no header"). Every verdict is checked against an
//! independent model of the SPEC §2 rules, not only for panics, and the `&str` and
//! `http::HeaderMap` entry points must agree with it.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use notmeta_webhooks::{SIGNATURE_HEADER, Verifier};
use notmeta_webhooks_fuzz::{expected_verdict, verifier};

/// The body of the signature vectors' "empty body" case, whose header is a valid seed.
const BODY: &[u8] = b"";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(verifier);

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == b'\n').collect()
    };
    let got = VERIFIER
        .verify(BODY, values.iter().copied())
        .map(|payload| payload.secret_index())
        .map_err(|err| err.kind());
    assert_eq!(got, expected_verdict(BODY, &values), "values {values:?}");
    // The &str entry point agrees for a single UTF-8 value.
    // The HeaderMap entry point agrees whenever the values are valid header values.
    let mut headers = http::HeaderMap::new();
    if values.iter().all(|v| {
        http::HeaderValue::from_bytes(v)
            .map(|v| headers.append(SIGNATURE_HEADER, v))
            .is_ok()
    }) {
        let via_map = VERIFIER
            .verify(BODY, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))
            .map(|payload| payload.secret_index())
            .map_err(|err| err.kind());
        assert_eq!(via_map, got);
    }
    if let [value] = values[..]
        && let Ok(text) = std::str::from_utf8(value)
    {
        let via_str = VERIFIER
            .verify(BODY, [text])
            .map(|payload| payload.secret_index())
            .map_err(|err| err.kind());
        assert_eq!(via_str, got);
    }
});
