//! The checks, each cause, and JSON written again as serde_json writes it.

use super::json::{Json, Lazy, NotRead};
use super::style::Style;
use serde::Serialize as _;

use super::*;
use notmeta_webhooks::sign;

const SECRET: &str = "whsec_abc123";
const PRETTY: &str = "{\n  \"id\": \"evt_1\",\n  \"type\": \"user.online\",\n  \"created_at\": \"2024-01-01T12:00:00Z\",\n  \"data\": {\n    \"user\": {\n      \"name\": \"Juan Pérez\",\n      \"tags\": [\n        1,\n        2\n      ],\n      \"empty\": {}\n    }\n  }\n}";

fn compact() -> Vec<u8> {
    serde_json::to_vec(&pretty()).unwrap()
}

fn pretty() -> Lazy<'static> {
    // Parsed once, for every test.
    static PARSED: std::sync::LazyLock<Json<'static>> =
        std::sync::LazyLock::new(|| Json::parse(PRETTY.as_bytes()).unwrap());
    PARSED.lazy()
}

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

fn check(signed: &[u8], captured: &[u8], secret: &str) -> Diagnosis {
    diagnose(captured, &sign(signed, SECRET), &[secret.to_owned()])
}

/// The one line of the verdict that says what matched.
fn matched(d: &Diagnosis) -> String {
    d.verdict
        .iter()
        .find(|line| line.contains("it matches"))
        .unwrap_or_else(|| panic!("nothing matched: {d}"))
        .clone()
}

#[test]
fn pretty_printing_with_two_spaces_round_trips() {
    let mut out = Vec::new();
    let style = Style {
        indent: Some(2),
        ..Style::COMPACT
    };
    pretty()
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            style.formatter(),
        ))
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), PRETTY);
}

#[test]
fn sorted_keys_are_serde_json_values() {
    let ours = serde_json::to_string(&pretty().sorted(true)).unwrap();
    assert!(ours.starts_with("{\"created_at\""), "{ours}");
    let value: serde_json::Value = serde_json::from_str(PRETTY).unwrap();
    assert_eq!(ours, value.to_string());
}

#[test]
fn json_is_written_again_as_serde_json_writes_it() {
    let text = " {\"b\" : [ 1.50, -0, 1e2, [], {}, [[ ]], \"\\u00e9\\n\\/\" ] ,\"a\":{\"z\":null,\"y\":true}, \"\\u0061\": false}\n";
    let json = Json::parse(text.as_bytes()).unwrap();
    let lazy = json.lazy();
    assert!(!lazy.is_sorted() && !lazy.is_ascii());
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        serde_json::to_string(&lazy.sorted(true)).unwrap(),
        value.to_string()
    );
    assert_eq!(
        serde_json::to_string(&lazy).unwrap(),
        "{\"b\":[1.5,-0.0,100.0,[],{},[[]],\"é\\n/\"],\"a\":{\"z\":null,\"y\":true},\"a\":false}"
    );
    // Integers and plain strings, written without building a value, as serde_json
    // writes them.
    let text = r#"[0,7,-7,-0,18446744073709551615,-9223372036854775808,12345678901234567890123,-9223372036854775809,"","é 🙂","a\"b"]"#;
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let json = Json::parse(text.as_bytes()).unwrap();
    assert_eq!(
        serde_json::to_string(&json.lazy()).unwrap(),
        value.to_string()
    );
    let sorted = Json::parse(br#"{"a":[{"b":1,"c":2}],"b":"x"}"#).unwrap();
    assert!(sorted.lazy().is_sorted() && sorted.lazy().is_ascii());
    assert_eq!(Json::parse(b"{\"a\":").err(), Some(NotRead::NotJson));
    // Non-ASCII escaped as Python's json.dumps does, a surrogate pair beyond U+FFFF.
    let mut out = Vec::new();
    let ascii = Style {
        ascii: true,
        ..Style::COMPACT
    };
    let text = Json::parse("[\"a🙂é\\\"b\"]".as_bytes()).unwrap();
    text.lazy()
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            ascii.formatter(),
        ))
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[\"a\\ud83d\\ude42\\u00e9\\\"b\"]"
    );
}

#[test]
fn a_valid_request_is_valid() {
    let d = check(PRETTY.as_bytes(), PRETTY.as_bytes(), SECRET);
    assert!(d.valid(), "{d}");
}

#[test]
fn each_cause_is_named() {
    let body = compact();
    let cases: [(&[u8], &str, &str); 6] = [
        (&body, "abc123", "whsec_ prefix added"),
        (PRETTY.as_bytes(), SECRET, "re-serialised in compact form"),
        (&body, SECRET, "pretty-printed, 2 spaces"),
        (
            &[&body[..], b"\n"].concat(),
            SECRET,
            "trailing newline removed",
        ),
        (&[BOM, &body[..]].concat(), SECRET, "byte-order mark"),
        (&body, "whsec_other", "no variant matches"),
    ];
    let pretty_capture: &[u8] = PRETTY.as_bytes();
    for (i, (captured, secret, expected)) in cases.into_iter().enumerate() {
        // Case 2 is signed pretty and captured compact; case 3 the other way.
        let (signed, captured): (&[u8], &[u8]) = match i {
            1 => (&body, pretty_capture),
            2 => (pretty_capture, &body),
            _ => (&body, captured),
        };
        let d = check(signed, captured, secret);
        assert!(!d.valid());
        assert!(d.to_string().contains(expected), "case {i}: {d}");
    }
}

#[test]
fn latin1_is_recognised() {
    let latin1: Vec<u8> = PRETTY.chars().map(|c| c as u8).collect();
    let d = check(PRETTY.as_bytes(), &latin1, SECRET);
    assert!(d.to_string().contains("read as Latin-1"), "{d}");
}

#[test]
fn changes_to_the_bytes_are_found_combined() {
    let latin1 = |text: &str| -> Vec<u8> { text.chars().map(|c| c as u8).collect() };
    let signed = PRETTY.as_bytes();
    let cases: [(Vec<u8>, &str); 4] = [
        (
            format!("{}\r\n", crlf(PRETTY)).into_bytes(),
            "with CRLF line ends as LF, with its trailing newline removed",
        ),
        (
            format!("{PRETTY} \n\t\n").into_bytes(),
            "with its trailing white space removed",
        ),
        (
            [BOM, crlf(PRETTY).as_bytes(), b"\r\n"].concat(),
            "without its byte-order mark (BOM), with CRLF line ends as LF, with its trailing newline removed",
        ),
        (
            latin1(&format!("{}\r\n", crlf(PRETTY))),
            "with CRLF line ends as LF, read as Latin-1 and encoded as UTF-8, with its trailing newline removed",
        ),
    ];
    for (captured, expected) in cases {
        let d = check(signed, &captured, SECRET);
        assert!(!d.valid());
        assert_eq!(
            matched(&d),
            format!(
                "the body was changed: it matches {expected}. {}",
                match expected.contains("Latin-1") || expected.contains("BOM") {
                    true =>
                        "NotMeta signs UTF-8 bytes: read the body as bytes, with no text decoding.",
                    false =>
                        "Verify the body exactly as received, before anything changes its line ends or adds or strips a newline.",
                }
            ),
            "{d}"
        );
    }
    // Signed with CRLF line ends, captured with LF and no final newline.
    let d = check(format!("{}\r\n", crlf(PRETTY)).as_bytes(), signed, SECRET);
    assert!(
        matched(&d).contains("with LF line ends as CRLF, with a trailing CRLF added"),
        "{d}"
    );
}

#[test]
fn json_written_again_is_found_combined() {
    let write = |style: Style, sorted: bool, end: &str| {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, style.formatter());
        pretty().sorted(sorted).serialize(&mut ser).unwrap();
        out.extend_from_slice(end.as_bytes());
        out
    };
    let pretty = |n, crlf| Style {
        indent: Some(n),
        crlf,
        ..Style::COMPACT
    };
    let python = Style {
        spaced: true,
        ascii: true,
        ..Style::COMPACT
    };
    let cases = [
        (
            write(pretty(2, true), false, "\r\n"),
            "re-serialised pretty-printed, 2 spaces, with CRLF line ends, with a trailing CRLF",
        ),
        (
            write(pretty(2, false), true, "\n"),
            "re-serialised pretty-printed, 2 spaces, keys sorted, with a trailing newline",
        ),
        (
            write(pretty(4, true), true, ""),
            "re-serialised pretty-printed, 4 spaces, with CRLF line ends, keys sorted",
        ),
        (
            write(python, true, ""),
            "re-serialised with \", \" and \": \" separators (Python's json.dumps), non-ASCII as \\u escapes, keys sorted",
        ),
    ];
    // The capture is compact, keys in their order: what a framework that
    // parsed the body into a struct writes again.
    let captured = compact();
    for (signed, expected) in cases {
        let d = check(&signed, &captured, SECRET);
        assert!(!d.valid());
        assert!(
            matched(&d).contains(&format!("it matches {expected}. Verify the raw bytes")),
            "{expected}: {d}"
        );
    }
    // The Python body, as written by hand: the styles are the real ones.
    let by_hand = "{\"created_at\": \"2024-01-01T12:00:00Z\", \"data\": {\"user\": {\"empty\": {}, \"name\": \"Juan P\\u00e9rez\", \"tags\": [1, 2]}}, \"id\": \"evt_1\", \"type\": \"user.online\"}";
    assert_eq!(write(python, true, ""), by_hand.as_bytes());
}

#[test]
fn the_secret_and_the_body_both_wrong() {
    let body = compact();
    let d = check(&body, &[&body[..], b"\r\n"].concat(), " abc123\n");
    let text = d.to_string();
    assert!(
        text.contains("it matches with its trailing CRLF removed")
            && text.contains(
                "the secret is wrong too: it matches without the white space around it and with the whsec_ prefix added"
            ),
        "{text}"
    );
}

#[test]
fn during_a_rotation_the_matching_secret_is_named() {
    let body = compact();
    let secrets = ["whsec_old".to_owned(), SECRET.to_owned()];
    let d = diagnose(&[&body[..], b"\n"].concat(), &sign(&body, SECRET), &secrets);
    assert!(
        d.to_string()
            .contains("MATCH with its trailing newline removed (secret 2 of 2)"),
        "{d}"
    );
}

#[test]
fn nothing_matching_blames_neither_the_secret_nor_the_body() {
    // A body with every change possible: a BOM, CRLF line ends, non-ASCII that
    // Latin-1 holds, keys out of order; two secrets with white space around.
    let captured = [BOM, crlf(PRETTY).as_bytes(), b"\r\n"].concat();
    let secrets = [" whsec_a ".to_owned(), "b\n".to_owned()];
    let d = diagnose(&captured, &sign(b"{}", "whsec_c"), &secrets);
    let text = d.to_string();
    assert!(!d.valid());
    assert!(
        text.contains("no variant matches: neither the secret nor the body can be confirmed")
            && text.contains("this webhook's own")
            && text.contains("--secret for each")
            && text.contains("byte for byte")
            && !text.contains("secret is wrong")
            && !text.contains("most likely"),
        "{text}"
    );
    // The search stays small: (bodies × secrets) HMACs.
    let tried = text
        .split("no variant matches")
        .nth(1)
        .and_then(|t| t.split('(').nth(1))
        .unwrap();
    let numbers: Vec<usize> = tried
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .take(2)
        .collect();
    assert_eq!(numbers[1], 8, "{text}");
    assert!(numbers[0] > 50 && numbers[0] * numbers[1] <= 1200, "{text}");
}

#[test]
fn a_body_over_the_limit_with_the_right_mac_is_named_as_such() {
    let text = "x".repeat(DEFAULT_MAX_BODY_SIZE);
    let body = PRETTY.replace("Juan Pérez", &text);
    let d = check(body.as_bytes(), body.as_bytes(), SECRET);
    let out = d.to_string();
    assert!(!d.valid());
    assert!(
        out.contains(&format!(
            "the signature is valid, but the body is {} bytes, over the 1 MiB a receiver accepts by default: it answers 413",
            body.len()
        )) && !out.contains("secret"),
        "{out}"
    );
}

#[test]
fn header_formats_are_explained() {
    let mac = sign(PRETTY.as_bytes(), SECRET);
    for (header, expected) in [
        (mac[7..].to_owned(), "lacks its `sha256=` label"),
        (mac.replace("sha256", "SHA256"), "must be lower case"),
        (format!("X-NotMeta-Signature: {mac}"), "valid"),
        ("sha256=abc".to_owned(), "3 characters"),
    ] {
        let d = diagnose(PRETTY.as_bytes(), &header, &[SECRET.to_owned()]);
        assert!(d.to_string().contains(expected), "{header}: {d}");
    }
}
