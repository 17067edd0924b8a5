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
