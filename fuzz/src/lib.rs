//! Oracles shared by the fuzz targets.
//!
//! A fuzz target that only waits for a panic finds crashes; these checks also find
//! wrong answers. [`expected_verdict`] is an independent model of the SPEC §2 header
//! rules, written from the specification and not from the crate's code, and
//! [`check_event`] asserts the invariants every parsed event must satisfy.

use notmeta_webhooks::{ErrorKind, Event, EventKind, EventType, Verifier, sign};
use serde::de::IgnoredAny;

/// The secret every fuzz target verifies with (the one of the signature vectors in
/// `data/`, so the vectors' headers are meaningful seeds).
pub const SECRET: &str = "tu_secret_webhook";

/// A second, unrelated secret, tried first, so that rotation is exercised.
pub const OTHER_SECRET: &str = "whsec_rotated_out";

/// The verifier every target uses: the rotated-out secret first, [`SECRET`] second.
pub fn verifier() -> Verifier {
    Verifier::builder()
        .secret(OTHER_SECRET)
        .secret(SECRET)
        .build()
        .expect("two non-empty secrets")
}

/// What SPEC §2 says the verdict for these header values over `body` must be.
///
/// - no value: missing; more than one: malformed;
/// - spaces and tabs around the value are ignored, nothing else is;
/// - then exactly `sha256=` and 64 hex digits of either case, else malformed;
/// - those digits equal to the MAC under [`SECRET`]: valid (secret index 1, since
///   [`OTHER_SECRET`] comes first); under [`OTHER_SECRET`]: valid, index 0;
///   otherwise a mismatch.
pub fn expected_verdict(body: &[u8], values: &[&[u8]]) -> Result<usize, ErrorKind> {
    let value = match values {
        [] => return Err(ErrorKind::MissingSignature),
        [value] => *value,
        _ => return Err(ErrorKind::MalformedSignature),
    };
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let value = &value[start..end.max(start)];
    let Some(digits) = value.strip_prefix(b"sha256=") else {
        return Err(ErrorKind::MalformedSignature);
    };
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(ErrorKind::MalformedSignature);
    }
    let digits = digits.to_ascii_lowercase();
    for (index, secret) in [OTHER_SECRET, SECRET].into_iter().enumerate() {
        if sign(body, secret).as_bytes()[7..] == digits[..] {
            return Ok(index);
        }
    }
    Err(ErrorKind::SignatureMismatch)
}

/// Checks everything that must hold for the outcome of parsing `body`.
///
/// Panics (which the fuzzer reports as a crash) on any violation.
pub fn check_parse_outcome(body: &[u8], outcome: &Result<Event<'_>, notmeta_webhooks::Error>) {
    match outcome {
        Ok(event) => check_event(body, event),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{err}");
            assert_eq!(err.status(), 400);
            // Formatting and inspecting an error never panics.
            let _ = (err.to_string(), format!("{err:?}"), err.json_path());
        }
    }
}

/// The invariants of a successfully parsed event.
pub fn check_event(body: &[u8], event: &Event<'_>) {
    // The event keeps the exact bytes it was parsed from.
    assert_eq!(event.raw_body(), body);
    // A parsed body is UTF-8 and valid JSON (checked without a recursion limit).
    assert!(
        std::str::from_utf8(body).is_ok(),
        "an event from non-UTF-8 bytes"
    );
    serde_json::from_slice::<IgnoredAny>(body).expect("a parsed event is valid JSON");
    // When the tree fits serde_json's recursion limit, the envelope is really there.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        assert_eq!(
            map.get("id").and_then(|v| v.as_str()),
            Some(event.id.as_str())
        );
        assert_eq!(
            map.get("type").and_then(|v| v.as_str()),
            Some(event.type_str())
        );
        assert!(map.get("created_at").is_some_and(|v| v.is_string()));
        assert!(map.contains_key("data"));
        // A known type's data is an object; an unknown type's may be any value.
        if event.event_type().is_some() {
            assert!(map.get("data").is_some_and(|v| v.is_object()));
        }
    }
    // The type is consistent between its three views.
    match event.event_type() {
        Some(t) => {
            assert_eq!(t.as_str(), event.type_str());
            assert!(!matches!(event.kind, EventKind::Unknown { .. }));
        }
        None => {
            assert!(event.type_str().parse::<EventType>().is_err());
            let EventKind::Unknown { event_type, data } = &event.kind else {
                panic!("a type with no EventType must be Unknown");
            };
            assert_eq!(event_type, event.type_str());
            serde_json::from_str::<IgnoredAny>(data.get()).expect("raw data is JSON");
        }
    }
    // The timestamp survives printing and reading back; conversions never panic.
    let printed = event.created_at.to_string();
    let reread: notmeta_webhooks::event::Timestamp = printed.parse().expect("own output parses");
    assert_eq!(reread.unix_timestamp(), event.created_at.unix_timestamp());
    let _ = event.created_at.to_system_time();
    // The challenge answer exists exactly for webhook.verified and carries the string.
    match (&event.kind, event.challenge_response()) {
        (EventKind::WebhookVerified(v), Some(response)) => {
            assert_eq!(response.status(), 200);
            assert_eq!(response.body(), &*v.challenge);
            assert_eq!(event.challenge(), Some(&*v.challenge));
        }
        (EventKind::WebhookVerified(_), None) => panic!("no answer to a challenge"),
        (_, Some(_)) => panic!("a challenge answer for a non-challenge event"),
        (_, None) => assert_eq!(event.challenge(), None),
    }
    // `data` is reachable for user types; an owned copy is equal; Debug never panics.
    event
        .data_as::<IgnoredAny>()
        .expect("data of a parsed event is JSON");
    let owned = event.clone().into_owned();
    assert_eq!(&owned, event);
    let _ = format!("{event:?}");
}
