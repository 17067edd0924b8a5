//! `message.received` bodies of chosen sizes, built from the example event in
//! `data/events/`.
//!
//! Used by the allocation test and by the benches, so that every measurement runs on
//! the same bytes.

/// The example event the bodies are built from.
const EXAMPLE: &str = "evt_6.message.received.json";

/// The text of the example message; a longer body repeats it.
const TEXT: &str = "Hola, necesito ayuda";

/// The body sizes the benches measure: the smallest real `message.received`
/// (the example, compacted: 380 bytes), 1 KiB, 16 KiB and 1 MiB.
pub const SIZES: [usize; 4] = [0, 1024, 16 * 1024, 1024 * 1024];

/// The example `message.received` event, pretty-printed as stored.
pub fn example_message_received() -> Vec<u8> {
    crate::fixtures::example_event(EXAMPLE)
}

/// `json` without the white space between tokens; key order and every string are
/// kept byte for byte (re-serialising a parsed value would sort the keys).
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b.is_ascii_whitespace() {
            continue;
        } else if b == b'"' {
            in_string = true;
        }
        out.push(b);
    }
    out
}

/// A compact `message.received` body of exactly `size` bytes, made by lengthening
/// the message's `text` with more plain words; `size` 0 (or anything at most the
/// example's length) gives the compacted example itself.
pub fn message_received(size: usize) -> Vec<u8> {
    let body = compact(&example_message_received());
    if size <= body.len() {
        return body;
    }
    let needle = format!("\"text\":\"{TEXT}");
    let at = body
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the example message has a text")
        + needle.len();
    let extra = size - body.len();
    let filler = format!(" {TEXT}.")
        .bytes()
        .cycle()
        .take(extra)
        .collect::<Vec<_>>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(&filler);
    out.extend_from_slice(&body[at..]);
    debug_assert_eq!(out.len(), size);
    out
}

/// A short name for a body size, for bench and report labels (`380B`, `1KiB`, …).
pub fn label(len: usize) -> String {
    match len {
        n if n >= 1024 * 1024 && n % (1024 * 1024) == 0 => format!("{}MiB", n / (1024 * 1024)),
        n if n >= 1024 && n % 1024 == 0 => format!("{}KiB", n / 1024),
        n => format!("{n}B"),
    }
}
