//! Every case of the signature vectors maps to the right outcome.

use notmeta_test_support::signature_vectors;
use notmeta_webhooks::{ErrorKind, SIGNATURE_HEADER, Verifier, sign};

fn outcome(result: Result<(), ErrorKind>) -> &'static str {
    match result {
        Ok(()) => "valid",
        Err(ErrorKind::SignatureMismatch) => "mismatch",
        Err(ErrorKind::MalformedSignature) => "malformed",
        Err(ErrorKind::MissingSignature) => "missing",
        Err(other) => panic!("unexpected error kind {other:?}"),
    }
}

#[test]
fn every_vector_has_its_expected_outcome_through_every_entry_point() {
    let vectors = signature_vectors();
    let mut seen = std::collections::BTreeSet::new();
    for v in &vectors {
        seen.insert(v.expect.clone());
        let verifier = Verifier::builder()
            .secret(&v.secret)
            .max_body_size(1 << 20)
            .build()
            .unwrap();

        // HeaderMap entry point (the only one that can express "missing").
        let mut headers = http::HeaderMap::new();
        if let Some(h) = &v.signature_header {
            headers.insert(SIGNATURE_HEADER, h.parse().unwrap());
        }
        let got = outcome(
            verifier
                .verify(&v.body, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))
                .map(|_| ())
                .map_err(|e| e.kind()),
        );
        assert_eq!(got, v.expect, "{} (HeaderMap)", v.name);

        // Raw header bytes entry point.
        let values: Vec<&[u8]> = v.signature_header.iter().map(|h| h.as_bytes()).collect();
        let got = outcome(
            verifier
                .verify(&v.body, values)
                .map(|_| ())
                .map_err(|e| e.kind()),
        );
        assert_eq!(got, v.expect, "{} (header bytes)", v.name);

        // &str entry point and http::Request entry point.
        if let Some(h) = &v.signature_header {
            let got = outcome(
                verifier
                    .verify(&v.body, [h])
                    .map(|_| ())
                    .map_err(|e| e.kind()),
            );
            assert_eq!(got, v.expect, "{} (&str)", v.name);

            let request = http::Request::post("/")
                .header("X-NotMeta-Signature", h.as_str())
                .body(v.body.clone())
                .unwrap();
            let got = outcome(
                verifier
                    .verify_request(&request)
                    .map(|_| ())
                    .map_err(|e| e.kind()),
            );
            assert_eq!(got, v.expect, "{} (Request)", v.name);
        }
    }
    let expected: std::collections::BTreeSet<String> =
        ["valid", "mismatch", "malformed", "missing"]
            .map(String::from)
            .into();
    assert_eq!(seen, expected, "the vectors cover all four outcomes");
}

#[test]
fn sign_reproduces_every_valid_header_in_lower_case() {
    let mut count = 0;
    for v in signature_vectors().iter().filter(|v| v.expect == "valid") {
        let expected = v
            .signature_header
            .as_deref()
            .unwrap()
            .trim()
            .to_ascii_lowercase();
        assert_eq!(sign(&v.body, &v.secret), expected, "{}", v.name);
        count += 1;
    }
    assert!(
        count >= 8,
        "expected the valid cases of the vectors, found {count}"
    );
}

#[test]
fn a_valid_vector_verifies_under_any_position_of_a_rotated_secret() {
    let v = signature_vectors()
        .into_iter()
        .find(|v| v.expect == "valid")
        .unwrap();
    let header = v.signature_header.clone().unwrap();
    for position in 0..3 {
        let mut builder = Verifier::builder();
        for i in 0..3 {
            builder = if i == position {
                builder.secret(&v.secret)
            } else {
                builder.secret(format!("other-{i}"))
            };
        }
        let payload = builder.build().unwrap().verify(&v.body, [&header]).unwrap();
        assert_eq!(payload.secret_index(), position);
        assert_eq!(payload.body(), v.body.as_slice());
    }
}

#[test]
fn header_name_is_case_insensitive_and_repeats_are_malformed() {
    let v = signature_vectors()
        .into_iter()
        .find(|v| v.expect == "valid")
        .unwrap();
    let header = v.signature_header.unwrap();
    let verifier = Verifier::new(&v.secret).unwrap();
    for name in [
        "x-notmeta-signature",
        "X-NOTMETA-SIGNATURE",
        "X-NotMeta-Signature",
    ] {
        let request = http::Request::post("/")
            .header(name, header.as_str())
            .body(v.body.clone())
            .unwrap();
        assert!(verifier.verify_request(&request).is_ok(), "{name}");
    }
    let request = http::Request::post("/")
        .header("x-notmeta-signature", header.as_str())
        .header("X-NotMeta-Signature", header.as_str())
        .body(v.body.clone())
        .unwrap();
    assert_eq!(
        verifier.verify_request(&request).unwrap_err().kind(),
        ErrorKind::MalformedSignature
    );
}
