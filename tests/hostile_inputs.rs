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
            v.verify(body, [&format!("{ws}{header}{ws}")]).is_ok(),
            "{ws:?}"
        );
    }
    for ws in ["\x0c", "\r", "\n", "\r\n", "\x0b", "\0", " \x0c", "\u{a0}"] {
        for value in [format!("{ws}{header}"), format!("{header}{ws}")] {
            assert_eq!(
                kind(v.verify(body, [&value])),
                Some(ErrorKind::MalformedSignature),
                "{value:?}"
            );
            assert_eq!(
                kind(v.verify(body, [value.as_bytes()])),
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
        let err = v
            .verify(body, [&sign(body, SECRET)])
            .and_then(|payload| payload.parse())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{body:?}");
        assert_eq!(err.status(), 400);
    }
    // The same bodies with the bytes made valid parse.
    assert!(
        v.verify(
            &event(b"\"extra\":\"\xc3\xa9\""),
            [&sign(&event(b"\"extra\":\"\xc3\xa9\""), SECRET)]
        )
        .and_then(|payload| payload.parse())
        .is_ok()
    );
}

// ---------------------------------------------------------------------------
// Signature header forms
// ---------------------------------------------------------------------------

const BODY: &[u8] =
    br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;

fn mac_hex(body: &[u8], secret: &str) -> String {
    sign(body, secret)["sha256=".len()..].to_owned()
}

#[test]
fn odd_header_forms_are_malformed() {
    let hex = mac_hex(BODY, SECRET);
    let fullwidth: String = hex
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xfee0).unwrap())
        .collect();
    let forms = [
        "sha256=".to_owned(),
        format!("Sha256={hex}"),
        format!("sha256:{hex}"),
        format!("sha256=sha256={hex}"),
        format!("sha256={hex};t=1704110400"),
        format!("t=1704110400,sha256={hex}"),
        format!("\"sha256={hex}\""),
        format!("sha256=0x{}", &hex[2..]),
        format!("sha256=+{}", &hex[1..]),
        format!("sha256={hex}{hex}"),
        format!("sha256={fullwidth}"),
        "sha256=jYXKsvTVfkbZFkMd4ikcaeqLEjku4U8rbjFgVjWxirk=".to_owned(), // base64
        format!("sha256={}", "a".repeat(1 << 20)),                        // 1 MiB value
        format!("{}sha256={hex}x", " ".repeat(1 << 20)), // 1 MiB of white space, then junk
    ];
    let v = verifier();
    for form in &forms {
        assert_eq!(
            kind(v.verify(BODY, [form])),
            Some(ErrorKind::MalformedSignature),
            "{}",
            &form[..form.len().min(90)]
        );
    }
    // White space around the value is ignored however long it is (trimming is
    // linear; the HTTP server's header size limit bounds it in practice).
    let padded = format!(
        "{}sha256={hex}{}",
        " ".repeat(1 << 20),
        "\t".repeat(1 << 20)
    );
    assert!(v.verify(BODY, [&padded]).is_ok());
}

#[test]
fn well_formed_macs_of_the_wrong_thing_are_mismatches() {
    use sha2::{Digest, Sha256};
    let v = verifier();
    let header = |hex: String| format!("sha256={hex}");
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(BODY).unwrap())
            .unwrap();
    let with_newline = [BODY, b"\n"].concat();
    let cases = [
        ("all-zero MAC", header("0".repeat(64))),
        ("all-f MAC", header("f".repeat(64))),
        (
            "plain SHA-256 of the body",
            header(hex::encode(Sha256::digest(BODY))),
        ),
        (
            "SHA-256 of secret || body",
            header(hex::encode(Sha256::digest(
                [SECRET.as_bytes(), BODY].concat(),
            ))),
        ),
        (
            "HMAC with the `whsec_` prefix dropped",
            header(mac_hex(BODY, "hostile")),
        ),
        ("HMAC with an empty key", header(mac_hex(BODY, ""))),
        (
            "HMAC of re-serialised JSON",
            header(mac_hex(&pretty, SECRET)),
        ),
        (
            "HMAC of the body plus a newline",
            header(mac_hex(&with_newline, SECRET)),
        ),
    ];
    for (name, h) in &cases {
        assert_eq!(
            kind(v.verify(BODY, [h])),
            Some(ErrorKind::SignatureMismatch),
            "{name}"
        );
    }
    // Mixed-case digits are still the right MAC.
    let mixed: String = mac_hex(BODY, SECRET)
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert!(v.verify(BODY, [&format!("sha256={mixed}")]).is_ok());
}

#[test]
fn header_floods_and_lookalike_names() {
    let v = verifier();
    let good = sign(BODY, SECRET);
    // 1,000 copies of the right value: repeated, so malformed.
    let flood = vec![good.as_bytes(); 1000];
    assert_eq!(
        kind(v.verify(BODY, flood)),
        Some(ErrorKind::MalformedSignature)
    );
    // The right value plus an empty one, in either order.
    for values in [[good.as_bytes(), b""], [b"".as_slice(), good.as_bytes()]] {
        assert_eq!(
            kind(v.verify(BODY, values)),
            Some(ErrorKind::MalformedSignature)
        );
    }
    // Through a HeaderMap: many other headers, look-alike names, no real one.
    let mut headers = http::HeaderMap::new();
    for i in 0..1000 {
        headers.append(
            http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("x"),
        );
    }
    for name in [
        "x-notmeta-signature-256",
        "x-notmeta-signatures",
        "notmeta-signature",
        "x-hub-signature-256",
        "x_notmeta_signature",
    ] {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            good.parse().unwrap(),
        );
    }
    assert_eq!(
        kind(v.verify(BODY, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))),
        Some(ErrorKind::MissingSignature)
    );
    headers.append(notmeta_webhooks::SIGNATURE_HEADER, good.parse().unwrap());
    assert!(
        v.verify(BODY, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))
            .is_ok()
    );
    headers.append("X-NOTMETA-SIGNATURE", good.parse().unwrap());
    assert_eq!(
        kind(v.verify(BODY, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))),
        Some(ErrorKind::MalformedSignature)
    );
}

// ---------------------------------------------------------------------------
// Body sizes
// ---------------------------------------------------------------------------

#[test]
fn the_default_limit_is_one_mebibyte_and_checked_before_the_header() {
    let v = verifier();
    let at_limit = vec![b' '; notmeta_webhooks::DEFAULT_MAX_BODY_SIZE];
    assert!(v.verify(&at_limit, [&sign(&at_limit, SECRET)]).is_ok());
    let over = vec![b' '; notmeta_webhooks::DEFAULT_MAX_BODY_SIZE + 1];
    let err = v.verify(&over, [&sign(&over, SECRET)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    assert_eq!(err.status(), 413);
    // 16 MiB, refused on its length alone: with any well-formed or malformed
    // header, and through verify_and_parse.
    let huge = vec![b'{'; 16 << 20];
    for header in [sign(&huge, SECRET), "garbage".to_owned(), String::new()] {
        assert_eq!(
            kind(v.verify(&huge, [&header])),
            Some(ErrorKind::BodyTooLarge)
        );
    }
    assert_eq!(
        kind(
            v.verify(&huge, ["garbage"])
                .and_then(|payload| payload.parse())
        ),
        Some(ErrorKind::BodyTooLarge)
    );
    // The header's presence and multiplicity are checked first.
    assert_eq!(
        kind(v.verify(&huge, [b""; 0])),
        Some(ErrorKind::MissingSignature)
    );
    assert_eq!(
        kind(v.verify(&huge, [b"a".as_slice(), b"b"])),
        Some(ErrorKind::MalformedSignature)
    );
}

#[test]
fn extreme_limits() {
    let zero = Verifier::builder()
        .secret(SECRET)
        .max_body_size(0)
        .build()
        .unwrap();
    assert!(zero.verify(b"", [&sign(b"", SECRET)]).is_ok());
    assert_eq!(
        kind(zero.verify(b"{", [&sign(b"{", SECRET)])),
        Some(ErrorKind::BodyTooLarge)
    );
    let unlimited = Verifier::builder()
        .secret(SECRET)
        .max_body_size(usize::MAX)
        .build()
        .unwrap();
    let big = vec![b'x'; 4 << 20];
    assert!(unlimited.verify(&big, [&sign(&big, SECRET)]).is_ok());
}

// ---------------------------------------------------------------------------
// Signed bodies that are not events (400) and odd ones that are (200)
// ---------------------------------------------------------------------------

fn signed(body: &[u8]) -> Result<notmeta_webhooks::Event<'_>, notmeta_webhooks::Error> {
    verifier()
        .verify(body, [&sign(body, SECRET)])
        .and_then(|payload| payload.parse())
}

fn envelope(event_type: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_1","type":"{event_type}","created_at":"2024-01-01T12:00:00Z","data":{data}}}"#
    )
    .into_bytes()
}

fn assert_invalid(body: &[u8], why: &str) {
    let err = signed(body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{why}: {err}");
    assert_eq!(err.status(), 400, "{why}");
}

#[test]
fn non_object_and_non_json_bodies_are_invalid_events() {
    let with_bom = [b"\xef\xbb\xbf".as_slice(), &envelope("user.online", "{}")].concat();
    for (body, why) in [
        (b"null".as_slice(), "null"),
        (b"42", "a number"),
        (b"true", "a boolean"),
        (br#""evt_1""#, "a string"),
        (b"{", "truncated"),
        (b"\0\0\0\0", "NUL bytes"),
        (&with_bom, "a UTF-8 byte-order mark"),
        (
            b"{\"id\":\"evt\x01\",\"type\":\"user.online\",\"created_at\":\"2024-01-01T12:00:00Z\",\"data\":{}}",
            "a raw control character in a string",
        ),
    ] {
        assert_invalid(body, why);
    }
    // White space around the JSON is JSON.
    let mut spaced = b" \r\n\t".to_vec();
    spaced.extend(envelope("user.online", "{}"));
    spaced.extend(b"\n\n");
    assert!(signed(&spaced).is_ok());
}

#[test]
fn duplicate_keys() {
    let object = |fields: &[&str]| format!("{{{}}}", fields.join(",")).into_bytes();
    let (id, ty, at, data) = (
        r#""id":"evt_1""#,
        r#""type":"user.online""#,
        r#""created_at":"2024-01-01T12:00:00Z""#,
        r#""data":{}"#,
    );
    assert!(signed(&object(&[id, ty, at, data])).is_ok());
    // Envelope fields twice, in NotMeta's order and with data before type.
    for fields in [
        [id, id, ty, at, data],
        [id, ty, ty, at, data],
        [id, ty, at, at, data],
        [id, ty, at, data, data],
        [id, data, data, ty, at],
    ] {
        assert_invalid(&object(&fields), &fields.join(","));
    }
    // Inside payload objects, documented or inferred, duplicates are refused too.
    assert_invalid(
        &envelope(
            "message.received",
            r#"{"message":{"id":"m","id":"n"},"conversation":{"id":"c"}}"#,
        ),
        "message.id twice",
    );
    assert_invalid(
        &envelope("user.online", r#"{"user":{"id":"a","id":"b"}}"#),
        "user.id twice",
    );
    assert_invalid(
        &envelope("user.online", r#"{"user":{"id":"a"},"user":{"id":"b"}}"#),
        "data.user twice",
    );
    // Fields the crate does not model may repeat: they are ignored.
    assert!(signed(&object(&[id, r#""x":1"#, r#""x":2"#, ty, at, data])).is_ok());
    assert!(signed(&envelope("user.online", r#"{"user":{"x":1,"x":2}}"#)).is_ok());
}

#[test]
fn key_spellings() {
    // Keys are case-sensitive: "ID" is not "id".
    assert_invalid(
        br#"{"ID":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        "ID",
    );
    // Escapes in keys and values are decoded before matching.
    let event = signed(
        br#"{"\u0069d":"evt_1","type":"user\u002eonline","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
    )
    .unwrap();
    assert_eq!(event.id, "evt_1");
    assert_eq!(event.type_str(), "user.online");
    // Empty strings are opaque values like any other.
    let body = envelope("", "{}");
    let event = signed(&body).unwrap();
    assert_eq!(event.event_type(), None);
    assert_eq!(event.type_str(), "");
    let event =
        signed(br#"{"id":"","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#)
            .unwrap();
    assert_eq!(event.id, "");
    let event = signed(
        br#"{"id":"evt_\u0000","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
    )
    .unwrap();
    assert_eq!(event.id, "evt_\0");
}

#[test]
fn created_at_edges() {
    let at = |ts: &str| {
        format!(r#"{{"id":"evt_1","type":"user.online","created_at":"{ts}","data":{{}}}}"#)
            .into_bytes()
    };
    // Valid RFC 3339, including what it allows beyond NotMeta's own form.
    for ts in [
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "2016-12-31T23:59:60Z", // leap second
        "2024-01-01t12:00:00z", // lower case
        "2024-01-01 12:00:00Z", // space separator (RFC 3339 §5.6 note)
        "2024-01-01T12:00:00-00:00",
        "2024-01-01T12:00:00.123456789Z",
    ] {
        let body = at(ts);
        let event = signed(&body).unwrap_or_else(|e| panic!("{ts}: {e}"));
        let _ = event.created_at.to_system_time();
        let _ = event.created_at.to_string();
    }
    for ts in [
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T12:00:00+24:00",
        "+2024-01-01T12:00:00Z",
        "2024-01-01T12:00:00",
        "1704110400",
        "",
    ] {
        assert_invalid(&at(ts), ts);
    }
    assert_invalid(
        br#"{"id":"evt_1","type":"user.online","created_at":1704110400,"data":{}}"#,
        "a number",
    );
}

#[test]
fn numbers_out_of_range() {
    // Beyond f64 in a field the crate reads: serde_json refuses the number.
    assert_invalid(
        &envelope("message.failed", r#"{"error":{"code":1e999}}"#),
        "1e999 in error.code",
    );
    // In a field it skips, or in the raw data of an unknown type, it is kept.
    assert!(signed(&envelope("message.failed", r#"{"zz":1e999,"error":{}}"#)).is_ok());
    assert!(signed(&envelope("call.started", r#"{"zz":-1e999}"#)).is_ok());
    // An integer beyond u64 in a lenient text field is read as a float's text.
    let body = envelope(
        "message.failed",
        r#"{"error":{"code":18446744073709551616}}"#,
    );
    let event = signed(&body).unwrap();
    let notmeta_webhooks::EventKind::MessageFailed(p) = &event.kind else {
        panic!()
    };
    assert_eq!(
        p.error.as_ref().unwrap().code.as_deref(),
        Some("18446744073709552000")
    );
    // A 100,000-digit number in a skipped field is skipped.
    let long = format!(r#"{{"zz":{}}}"#, "9".repeat(100_000));
    assert!(signed(&envelope("user.online", &long)).is_ok());
}

#[test]
fn lone_surrogate_escapes() {
    // Valid JSON grammar (RFC 8259 §8.2), not a valid string: refused where the
    // crate decodes the string, kept where it skips or keeps it raw.
    assert_invalid(
        &envelope("message.sent", r#"{"message":{"text":"\ud800"}}"#),
        "in message.text",
    );
    assert_invalid(
        br#"{"id":"\udc00","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        "in id",
    );
    assert!(signed(&envelope("user.online", r#"{"zz":"\ud800"}"#)).is_ok());
    assert!(signed(&envelope("call.started", r#"{"zz":"\ud800"}"#)).is_ok());
    // A valid pair is decoded.
    let body = envelope("message.sent", r#"{"message":{"text":"\ud83d\udd10"}}"#);
    let event = signed(&body).unwrap();
    let notmeta_webhooks::EventKind::MessageSent(p) = &event.kind else {
        panic!()
    };
    assert_eq!(p.message.as_ref().unwrap().text.as_deref(), Some("🔐"));
}

/// 100,000 levels of nesting wherever the crate skips or keeps a value: no stack
/// overflow, the event parses. (parsing_rules.rs covers the whole body, an unknown
/// type's data, and an object field of the wrong type.)
#[test]
fn deep_nesting_where_values_are_skipped() {
    const DEPTH: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH));
    for deep in [&arrays, &objects] {
        let ok = [
            format!(
                r#"{{"id":"evt_1","zz":{deep},"type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
            ),
            String::from_utf8(envelope(
                "message.received",
                &format!(r#"{{"message":{{"id":"m","zz":{deep}}},"conversation":{{"id":"c"}}}}"#),
            ))
            .unwrap(),
            String::from_utf8(envelope(
                "message.sent",
                &format!(r#"{{"message":{{"id":"m","text":{deep}}}}}"#),
            ))
            .unwrap(),
            String::from_utf8(envelope(
                "message.sent",
                &format!(r#"{{"message":{{"id":"m","type":{deep}}}}}"#),
            ))
            .unwrap(),
            String::from_utf8(envelope(
                "message.failed",
                &format!(r#"{{"error":{{"code":{deep}}}}}"#),
            ))
            .unwrap(),
            format!(
                r#"{{"id":"evt_1","data":{{"user":{{"role":{deep}}}}},"type":"user.online","created_at":"2024-01-01T12:00:00Z"}}"#
            ),
        ];
        for body in &ok {
            signed(body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", &body[..80]));
        }
        // Where a string is required, nesting is the wrong type: refused at once.
        for body in [
            format!(
                r#"{{"id":{deep},"type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
            ),
            format!(r#"{{"id":"evt_1","type":"user.online","created_at":{deep},"data":{{}}}}"#),
            String::from_utf8(envelope(
                "webhook.verified",
                &format!(r#"{{"webhook_id":"wh_1","challenge":{deep}}}"#),
            ))
            .unwrap(),
        ] {
            assert_invalid(body.as_bytes(), &body[..40]);
        }
    }
}

#[test]
fn huge_strings_many_keys_long_arrays() {
    let limit = notmeta_webhooks::DEFAULT_MAX_BODY_SIZE;
    // A text just under the 1 MiB limit, borrowed from the body.
    let text = "a".repeat(limit - 200);
    let body = envelope(
        "message.sent",
        &format!(r#"{{"message":{{"text":"{text}"}}}}"#),
    );
    assert!(body.len() <= limit);
    let event = signed(&body).unwrap();
    let notmeta_webhooks::EventKind::MessageSent(p) = &event.kind else {
        panic!()
    };
    assert_eq!(
        p.message.as_ref().unwrap().text.as_deref().map(str::len),
        Some(text.len())
    );
    // A challenge of 512 KiB of escapes is decoded and answered exactly.
    let escaped = r"\u00e9".repeat(512 * 1024 / 6);
    let body = envelope(
        "webhook.verified",
        &format!(r#"{{"webhook_id":"wh_1","challenge":"{escaped}\r\n\u0000"}}"#),
    );
    let event = signed(&body).unwrap();
    let answer = event.challenge_response().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.body().chars().filter(|&c| c == 'é').count(),
        512 * 1024 / 6
    );
    assert!(answer.body().ends_with("\r\n\0"));
    // 50,000 unknown envelope keys and a 100,000-element array are skipped.
    let keys: String = (0..50_000).map(|i| format!(r#""k{i}":{i},"#)).collect();
    let body = format!(
        r#"{{{keys}"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{"list":[{}0]}}}}"#,
        "0,".repeat(100_000)
    );
    assert!(body.len() <= limit);
    assert!(signed(body.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

#[test]
fn odd_secrets_are_keys_like_any_other() {
    // The key is the secret's bytes exactly: white space, NUL, 10 KB are all keys.
    for secret in [
        " ".to_owned(),
        "\0".to_owned(),
        "k".repeat(10_000),
        " whsec_abc123 ".to_owned(),
    ] {
        let v = Verifier::new(&secret).unwrap();
        assert!(v.verify(BODY, [&sign(BODY, &secret)]).is_ok());
        // A trimmed copy of the secret is a different key.
        if secret.trim() != secret && !secret.trim().is_empty() {
            assert_eq!(
                kind(v.verify(BODY, [&sign(BODY, secret.trim())])),
                Some(ErrorKind::SignatureMismatch)
            );
        }
    }
}
