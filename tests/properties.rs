//! Property tests: verification never panics and never accepts a wrong MAC.

use notmeta_webhooks::{ErrorKind, Event, Verifier, sign};
use proptest::prelude::*;

fn verifier(secret: &str) -> Verifier {
    Verifier::builder()
        .secret(secret)
        .max_body_size(usize::MAX)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_headers_never_panic_and_never_verify(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        header in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let v = verifier("whsec_prop");
        let right = sign(&body, "whsec_prop");
        // Anything that is not (a spelling of) the right MAC is refused.
        let trimmed = String::from_utf8_lossy(&header).trim_matches([' ', '\t']).to_ascii_lowercase();
        prop_assume!(trimmed != right);
        let result = v.verify(&body, [header.as_slice()]);
        prop_assert!(result.is_err());
        let _ = Event::parse_unverified(&body);
    }

    #[test]
    fn well_formed_but_wrong_macs_are_mismatches(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        mac in proptest::array::uniform32(any::<u8>()),
    ) {
        let header = format!("sha256={}", hex::encode(mac));
        prop_assume!(header != sign(&body, "whsec_prop"));
        let err = verifier("whsec_prop").verify(&body, [&header]).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    }

    #[test]
    fn sign_then_verify_always_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        secret in "\\PC{1,40}",
    ) {
        let header = sign(&body, &secret);
        let payload = verifier(&secret).verify(&body, [&header]).unwrap();
        prop_assert_eq!(payload.body(), body.as_slice());
        // Upper-case hex is the same MAC.
        let upper = format!("sha256={}", header[7..].to_ascii_uppercase());
        prop_assert!(verifier(&secret).verify(&body, [&upper]).is_ok());
    }

    #[test]
    fn changing_one_byte_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..4096),
        index in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let header = sign(&body, "whsec_prop");
        let mut tampered = body.clone();
        let i = index.index(tampered.len());
        tampered[i] ^= flip;
        let err = verifier("whsec_prop").verify(&tampered, [&header]).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    }

    #[test]
    fn parsing_arbitrary_json_like_bytes_never_panics(
        body in "[\\[\\]{}\":,a-z0-9 .\\\\-]{0,300}",
    ) {
        let _ = Event::parse_unverified(body.as_bytes());
        let wrapped = format!(r#"{{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{body}}}"#);
        let _ = Event::parse_unverified(wrapped.as_bytes());
    }
}
