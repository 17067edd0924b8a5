//! Sign the input with the fixed secret, then `verify_and_parse` it: the parser
//! behind verification, reached with every input.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use notmeta_webhooks::{Event, Verifier, sign};
use notmeta_webhooks_fuzz::{SECRET, check_parse_outcome, verifier};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(verifier);

fuzz_target!(|body: &[u8]| {
    let header = sign(body, SECRET);
    let payload = VERIFIER
        .verify(body, [&header])
        .expect("a body signed with a configured secret verifies");
    assert_eq!(payload.secret_index(), 1);
    assert_eq!(payload.body(), body);

    let event = VERIFIER
        .verify(body, [&header])
        .and_then(|payload| payload.parse());
    check_parse_outcome(body, &event);
    // Verification changes nothing about the parse.
    let unverified = Event::parse_unverified(body);
    assert_eq!(
        event.as_ref().map_err(|e| e.kind()),
        unverified.as_ref().map_err(|e| e.kind())
    );
});
