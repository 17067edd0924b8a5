//! `Event::parse_unverified` on arbitrary bytes: the event parser alone, at full
//! speed (no HMAC per input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use notmeta_webhooks::Event;
use notmeta_webhooks_fuzz::check_parse_outcome;

fuzz_target!(|body: &[u8]| {
    let outcome = Event::parse_unverified(body);
    check_parse_outcome(body, &outcome);
});
