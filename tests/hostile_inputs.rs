//! Inputs an attacker chooses, each answered with the right error kind and status,
//! never a panic, a hang or an unbounded allocation. Rows already covered elsewhere
//! (signature_vectors.rs, parsing_rules.rs, properties.rs, the unit tests) are not
//! repeated here.

use notmeta_webhooks::{ErrorKind, Verifier, sign};

const SECRET: &str = "whsec_hostile";

fn verifier() -> Verifier {
    Verifier::new(SECRET).unwrap()
}

fn kind<T>(result: Result<T, notmeta_webhooks::Error>) -> Option<ErrorKind> {
    result.err().map(|e| e.kind())
}

/// Only spaces and tabs around the value are ignored, at both ends alike. A valid
/// MAC behind a form feed, CR, LF or vertical tab is malformed (found by the `header`
/// fuzz target: leading ASCII white space of any kind used to be trimmed, trailing
/// only spaces and tabs).
#[test]
fn only_spaces_and_tabs_are_trimmed_around_the_header_value() {
    let body =
        br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    let header = sign(body, SECRET);
    let v = verifier();
    for ws in [" ", "\t", " \t ", "\t\t"] {
        assert!(
            v.verify(body, &format!("{ws}{header}{ws}")).is_ok(),
            "{ws:?}"
        );
    }
    for ws in ["\x0c", "\r", "\n", "\r\n", "\x0b", "\0", " \x0c", "\u{a0}"] {
        for value in [format!("{ws}{header}"), format!("{header}{ws}")] {
            assert_eq!(
                kind(v.verify(body, &value)),
                Some(ErrorKind::MalformedSignature),
                "{value:?}"
            );
            assert_eq!(
                kind(v.verify_header_values(body, [value.as_bytes()])),
                Some(ErrorKind::MalformedSignature),
                "{value:?}"
            );
        }
    }
}

fn event(fields: &[u8]) -> Vec<u8> {
    [
        br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","#.as_slice(),
        fields,
        br#","data":{"user":{"id":"user_1"}}}"#.as_slice(),
    ]
    .concat()
}

/// A body that is not UTF-8 is not JSON (RFC 8259 §8.1), wherever the bad bytes
/// are: in a field the crate reads, in one it skips, or in the raw data it keeps.
/// (Invalid bytes inside a skipped unknown field used to be accepted.)
#[test]
fn invalid_utf8_anywhere_is_an_invalid_event() {
    let bodies: Vec<Vec<u8>> = vec![
        event(b"\"extra\":\"\xff\""),
        event(b"\"extra\":{\"deep\":[\"\xc3\x28\"]}"),
        event(b"\"\xfe\":1"),
        br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{"user":{"x":""#
            .iter()
            .chain(b"\xed\xa0\x80\"}}}") // an encoded surrogate
            .copied()
            .collect(),
        b"{\"id\":\"evt_\xff\",\"type\":\"user.online\",\"created_at\":\"2024-01-01T12:00:00Z\",\"data\":{}}"
            .to_vec(),
        b"{\"id\":\"evt_1\",\"type\":\"call.started\",\"created_at\":\"2024-01-01T12:00:00Z\",\"data\":{\"a\":\"\x80\"}}"
            .to_vec(),
    ];
    let v = verifier();
    for body in &bodies {
        let err = v.verify_and_parse(body, &sign(body, SECRET)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{body:?}");
        assert_eq!(err.status(), 400);
    }
    // The same bodies with the bytes made valid parse.
    assert!(
        v.verify_and_parse(
            &event(b"\"extra\":\"\xc3\xa9\""),
            &sign(&event(b"\"extra\":\"\xc3\xa9\""), SECRET)
        )
        .is_ok()
    );
}
