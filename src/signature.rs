//! Signature verification and signing.
//!
//! NotMeta signs every request with
//! `X-NotMeta-Signature: sha256=<hex(HMAC-SHA256(secret, raw_body))>`. This module
//! checks that header over the body **exactly as received** and compares MACs in
//! constant time.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderName;
use sha2::Sha256;

use crate::error::{Error, ErrorKind};
use crate::event::Event;

type HmacSha256 = Hmac<Sha256>;

/// The name of the header that carries the signature, `x-notmeta-signature`.
///
/// Header names are case-insensitive; `http::HeaderMap` lookups with this constant
/// match any spelling.
///
/// ```
/// use notmeta_webhooks::SIGNATURE_HEADER;
/// assert_eq!(SIGNATURE_HEADER.as_str(), "x-notmeta-signature");
/// ```
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-notmeta-signature");

/// The label every signature starts with.
const LABEL: &[u8] = b"sha256=";

/// Length in bytes of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;

/// The default body limit, 1 MiB (see [`VerifierBuilder::max_body_size`]).
pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// A webhook secret, pre-keyed for HMAC-SHA256.
///
/// The key is the secret's UTF-8 bytes exactly as NotMeta reports it, prefix
/// included (`whsec_abc123` is the 12-byte key `whsec_abc123`). Keying happens once,
/// here; each verification clones the keyed state. `Debug` never prints the secret.
///
/// The keyed state stands in for the secret (anyone holding it can forge MACs): it is
/// HMAC-SHA256's inner and outer SHA-256 states, which overwrite themselves with zeros
/// when dropped (`sha2`'s `zeroize` feature; `hmac`'s wipes the partial message block
/// too). That covers the `Secret`, its clones, the copy each verification or
/// signature works on, and a [`Verifier`]'s secrets once its last clone is dropped.
/// It does not cover the secret you passed in (your `String`, environment variable or
/// file contents: wipe those yourself, for example with the `zeroize` crate), the
/// padded key block HMAC builds on the stack while keying, stale bytes a move leaves
/// behind (a `Secret` moved into a builder and then into the verifier's shared list),
/// nor memory written to swap or a core dump.
///
/// ```
/// use notmeta_webhooks::Secret;
///
/// let secret = Secret::new("whsec_abc123")?;
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// assert!(Secret::new("").is_err());
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    keyed: HmacSha256,
}

impl Secret {
    /// Keys a secret.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for an empty secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(Error::with_static(
                ErrorKind::Config,
                "the webhook secret is empty",
            ));
        }
        Ok(Self {
            keyed: keyed(secret),
        })
    }

    /// The MAC of `body` under this secret.
    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// The keyed state is two SHA-256 cores; they must wipe themselves when dropped.
const _: () = {
    fn wiped_on_drop<T: hmac::digest::zeroize::ZeroizeOnDrop>() {}
    let _ = wiped_on_drop::<<Sha256 as hmac::digest::block_api::CoreProxy>::Core>;
};

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

fn format_header(mac: &[u8]) -> String {
    let mut out = String::with_capacity(LABEL.len() + 2 * MAC_LEN);
    out.push_str("sha256=");
    out.push_str(&hex::encode(mac));
    out
}

/// Computes the `X-NotMeta-Signature` header value for `body` signed with `secret`,
/// in the lower-case form NotMeta sends.
///
/// Use it in tests, or to simulate NotMeta. It signs with any key, even an empty one,
/// although a [`Verifier`] refuses empty secrets.
///
/// ```
/// use notmeta_webhooks::{sign, Verifier};
///
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let header = sign(body, "whsec_abc123");
/// assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
/// assert!(Verifier::new("whsec_abc123")?.verify(body, [&header]).is_ok());
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[must_use]
pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = keyed(secret.as_bytes());
    mac.update(body);
    format_header(&mac.finalize().into_bytes())
}

/// Parses a header value into the 32-byte MAC it carries: optional spaces or tabs
/// around it, the lower-case `sha256=` label, then exactly 64 hex digits.
fn parse_header(value: &[u8]) -> Result<[u8; MAC_LEN], Error> {
    let value = trim_ows(value);
    if value.is_empty() {
        return Err(Error::with_static(
            ErrorKind::MalformedSignature,
            "the header value is empty",
        ));
    }
    let Some(hex_digits) = value.strip_prefix(LABEL) else {
        return Err(Error::with_static(
            ErrorKind::MalformedSignature,
            "expected the `sha256=` label",
        ));
    };
    hex_digits
        .try_into()
        .ok()
        .and_then(decode_hex)
        .ok_or_else(|| {
            Error::with_static(
                ErrorKind::MalformedSignature,
                "expected exactly 64 hex digits after `sha256=`",
            )
        })
}

/// Decodes 64 hex digits (either case), or `None` if any byte is not one.
///
/// Every digit takes the same arithmetic, with no branch and no table lookup on its
/// value, so decoding takes the same time whatever the digits are (and the compiler
/// runs it on vectors). A per-digit branch on "digit or letter", as general-purpose
/// hex decoders take, mispredicts on random digits.
fn decode_hex(digits: &[u8; 2 * MAC_LEN]) -> Option<[u8; MAC_LEN]> {
    // Two passes (the digits' values, then the pairs) let the compiler use vectors.
    let mut values = [0u8; 2 * MAC_LEN];
    let mut invalid = 0u8;
    for (value, &digit) in values.iter_mut().zip(digits) {
        let (v, bad) = hex_value(digit);
        *value = v;
        invalid |= bad;
    }
    let mut mac = [0u8; MAC_LEN];
    for (byte, pair) in mac.iter_mut().zip(values.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    (invalid == 0).then_some(mac)
}

/// A hex digit's value and 0, or anything and `0xff` for a byte that is not a hex
/// digit; branch-free.
const fn hex_value(byte: u8) -> (u8, u8) {
    // 0..=9 for '0'..='9'; 0..=5 for 'a'..='f' and 'A'..='F' (setting 0x20 lowers a
    // letter's case, leaves a digit as it is, and no other byte lands on a..f).
    let digit = byte.wrapping_sub(b'0');
    let letter = (byte | 0x20).wrapping_sub(b'a');
    let is_digit = all_ones(digit < 10);
    let is_letter = all_ones(letter < 6);
    let value = (digit & is_digit) | (letter.wrapping_add(10) & is_letter);
    (value, !(is_digit | is_letter))
}

/// `0xff` for true, `0` for false.
const fn all_ones(condition: bool) -> u8 {
    (condition as u8).wrapping_neg()
}

/// Trims leading and trailing spaces and tabs (HTTP's optional white space) only:
/// any other control character, at either end, leaves the value malformed.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let Some(start) = value.iter().position(|b| !is_ows(b)) else {
        return &[];
    };
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Verifies NotMeta signatures with one or more secrets; build it once, share it.
///
/// Holding several secrets supports rotation: a signature that matches any of them
/// verifies, and [`VerifiedPayload::secret_index`] tells which one did, so you can
/// see when the old secret stops being used.
///
/// ```
/// use notmeta_webhooks::{sign, Verifier};
///
/// let verifier = Verifier::builder()
///     .secret("whsec_new")
///     .secret("whsec_old")
///     .build()?;
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let payload = verifier.verify(body, [&sign(body, "whsec_old")])?;
/// assert_eq!(payload.secret_index(), 1);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    // Shared: cloning a verifier (per request, in framework state) is a counter bump.
    secrets: Arc<[Secret]>,
    max_body_size: usize,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .field("max_body_size", &self.max_body_size)
            .finish()
    }
}

/// Builds a [`Verifier`]: secrets (at least one) and a body limit.
///
/// ```
/// use notmeta_webhooks::Verifier;
///
/// let verifier = Verifier::builder()
///     .secret("whsec_abc123")
///     .max_body_size(256 * 1024)
///     .build()?;
/// assert_eq!(verifier.max_body_size(), 256 * 1024);
/// assert!(Verifier::builder().build().is_err()); // no secret
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct VerifierBuilder {
    secrets: Vec<Result<Secret, Error>>,
    max_body_size: usize,
}

impl VerifierBuilder {
    /// Adds a secret. Secrets are tried in the order they were added; put the current
    /// one first during a rotation.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets.push(Secret::new(secret));
        self
    }

    /// Adds an already keyed [`Secret`].
    pub fn keyed_secret(mut self, secret: Secret) -> Self {
        self.secrets.push(Ok(secret));
        self
    }

    /// The largest body accepted, in bytes; larger ones fail with
    /// [`ErrorKind::BodyTooLarge`] (413). Default: [`DEFAULT_MAX_BODY_SIZE`] (1 MiB).
    /// The framework adapters enforce the same limit while reading the body.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if no secret was given or any secret is empty.
    pub fn build(self) -> Result<Verifier, Error> {
        let secrets = self.secrets.into_iter().collect::<Result<Arc<[_]>, _>>()?;
        if secrets.is_empty() {
            return Err(Error::with_static(
                ErrorKind::Config,
                "no webhook secret configured",
            ));
        }
        Ok(Verifier {
            secrets,
            max_body_size: self.max_body_size,
        })
    }
}

impl Verifier {
    /// A verifier with one secret and the default body limit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for an empty secret.
    ///
    /// ```
    /// use notmeta_webhooks::Verifier;
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        Self::builder().secret(secret).build()
    }

    /// Starts a [`VerifierBuilder`] (several secrets, a body limit).
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            secrets: Vec::new(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }

    /// The body limit in bytes.
    #[must_use]
    pub fn max_body_size(&self) -> usize {
        self.max_body_size
    }

    /// Verifies against every value of the signature header and parses, keeping
    /// which secret matched (for the entry points' reports).
    #[cfg(feature = "receiver")]
    pub(crate) fn verify_and_parse_indexed<'a, I>(
        &self,
        body: &'a [u8],
        signature_values: I,
    ) -> Result<(Event<'a>, usize), Error>
    where
        I: IntoIterator<Item: AsRef<[u8]>>,
    {
        let payload = self.verify(body, signature_values)?;
        let secret_index = payload.secret_index();
        payload.parse().map(|event| (event, secret_index))
    }

    /// Verifies `body` against every value the request carried for the
    /// `X-NotMeta-Signature` header: none is [`ErrorKind::MissingSignature`], more than
    /// one is [`ErrorKind::MalformedSignature`]. [`VerifiedPayload::parse`] then gives
    /// the typed event.
    ///
    /// The values are anything that is bytes: `[&header]` for the one string your
    /// framework hands you, `headers.get_all(SIGNATURE_HEADER)` for an
    /// `http::HeaderMap` (or the `http` 0.2 one of actix-web), raw `&[u8]` values. It
    /// needs no `http` types, so any server library can feed it. For a whole
    /// `http::Request`, see [`Verifier::verify_request`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::MissingSignature`] when the header is absent,
    /// [`ErrorKind::MalformedSignature`] when it is present more than once or is not
    /// `sha256=` and 64 hex digits, [`ErrorKind::BodyTooLarge`] for a body over the
    /// limit, [`ErrorKind::SignatureMismatch`] when no secret's MAC matches.
    ///
    /// ```
    /// use notmeta_webhooks::{sign, ErrorKind, Verifier, SIGNATURE_HEADER};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    /// let header = sign(body, "whsec_abc123");
    ///
    /// // One header value, as a string.
    /// let event = verifier.verify(body, [&header])?.parse()?;
    /// assert_eq!(event.type_str(), "user.online");
    ///
    /// // Every value of the header in an `http::HeaderMap`.
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(SIGNATURE_HEADER, header.parse().unwrap());
    /// assert!(verifier.verify(body, headers.get_all(SIGNATURE_HEADER)).is_ok());
    ///
    /// let none: [&[u8]; 0] = [];
    /// let err = verifier.verify(body, none).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MissingSignature);
    ///
    /// let err = verifier.verify(body, [&header, &header]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MalformedSignature);
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn verify<'a, I>(
        &self,
        body: &'a [u8],
        signature_values: I,
    ) -> Result<VerifiedPayload<'a>, Error>
    where
        I: IntoIterator<Item: AsRef<[u8]>>,
    {
        let mut values = signature_values.into_iter();
        let Some(value) = values.next() else {
            return Err(Error::new(ErrorKind::MissingSignature));
        };
        if values.next().is_some() {
            return Err(Error::with_static(
                ErrorKind::MalformedSignature,
                "the header is present more than once",
            ));
        }
        if body.len() > self.max_body_size {
            return Err(Error::body_too_large(self.max_body_size));
        }
        let expected = parse_header(value.as_ref())?;
        self.check(body, &expected)
    }

    /// Verifies a whole `http::Request` whose body is already in memory.
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify`].
    ///
    /// ```
    /// use notmeta_webhooks::{sign, Verifier};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#.to_vec();
    /// let request = http::Request::post("/webhooks")
    ///     .header("X-NotMeta-Signature", sign(&body, "whsec_abc123"))
    ///     .body(body)
    ///     .unwrap();
    /// let event = verifier.verify_request(&request)?.parse()?;
    /// assert_eq!(event.type_str(), "user.online");
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn verify_request<'a, B: AsRef<[u8]>>(
        &self,
        request: &'a http::Request<B>,
    ) -> Result<VerifiedPayload<'a>, Error> {
        let values = request.headers().get_all(SIGNATURE_HEADER);
        self.verify(request.body().as_ref(), values)
    }

    /// Constant-time check of `expected` against the MAC of `body` under each secret.
    fn check<'a>(
        &self,
        body: &'a [u8],
        expected: &[u8; MAC_LEN],
    ) -> Result<VerifiedPayload<'a>, Error> {
        for (secret_index, secret) in self.secrets.iter().enumerate() {
            // `verify_slice` compares in constant time.
            if secret.mac(body).verify_slice(expected).is_ok() {
                return Ok(VerifiedPayload { body, secret_index });
            }
        }
        Err(Error::new(ErrorKind::SignatureMismatch))
    }
}

/// A body whose signature has verified: the only way to a typed [`Event`] other
/// than [`Event::parse_unverified`].
///
/// Keep it when you queue raw payloads and parse later.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedPayload<'a> {
    body: &'a [u8],
    secret_index: usize,
}

impl<'a> VerifiedPayload<'a> {
    /// The verified bytes, exactly as received.
    #[must_use]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Which secret matched, as its position in the order the secrets were added
    /// (0 for the first).
    #[must_use]
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// Parses the verified bytes into a typed [`Event`] that borrows from them.
    ///
    /// Call [`Event::into_owned`] to keep the event past the body's lifetime.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidEvent`] for a body that is not a valid event (not JSON,
    /// a field missing or of the wrong type); [`Error::json_path`] says where.
    ///
    /// ```
    /// use notmeta_webhooks::{sign, ErrorKind, Verifier};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let body = br#"{"id":"evt_1","type":"user.online","data":{}}"#; // no created_at
    /// let payload = verifier.verify(body, [&sign(body, "whsec_abc123")])?;
    /// assert_eq!(payload.parse().unwrap_err().kind(), ErrorKind::InvalidEvent);
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn parse(self) -> Result<Event<'a>, Error> {
        crate::event::parse(self.body)
    }
}

/// Verifies `body` against the `X-NotMeta-Signature` header value with one secret,
/// then parses it into a typed [`Event`]: the one call most receivers make.
///
/// The body must be the request body **byte for byte as received**, never JSON
/// re-serialised from a parsed value. Build a [`Verifier`] once instead when you
/// handle many requests (it keys the secret once) or rotate secrets.
///
/// # Errors
///
/// [`ErrorKind::Config`] for an empty secret; [`ErrorKind::BodyTooLarge`] for a body
/// over [`DEFAULT_MAX_BODY_SIZE`]; [`ErrorKind::MalformedSignature`] or
/// [`ErrorKind::SignatureMismatch`] for a header that is not a valid signature of
/// `body`; after the signature verified, [`ErrorKind::InvalidEvent`] for a body that
/// is not a valid event.
///
/// ```
/// use notmeta_webhooks::{sign, verify_and_parse, EventKind};
///
/// let body = br#"{"id":"evt_verify_123","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z",
///                "data":{"webhook_id":"wh_123456789","challenge":"challenge_string_123"}}"#;
/// let header = sign(body, "whsec_abc123");
///
/// let event = verify_and_parse(body, &header, "whsec_abc123")?;
/// assert_eq!(event.id.as_str(), "evt_verify_123");
/// assert_eq!(event.challenge(), Some("challenge_string_123"));
///
/// let forged = br#"{"id":"evt_verify_123","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z",
///                  "data":{"webhook_id":"wh_123456789","challenge":"attacker"}}"#;
/// assert!(verify_and_parse(forged, &header, "whsec_abc123").is_err());
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
pub fn verify_and_parse<'a>(
    body: &'a [u8],
    signature_header: &str,
    secret: &str,
) -> Result<Event<'a>, Error> {
    Verifier::new(secret)?
        .verify(body, [signature_header])?
        .parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_HEX: &str = "8d85cab2f4d57e46d916431de2291c69ea8b12392ee14f2b6e31605635b18ab9";

    #[test]
    fn header_parsing_follows_spec_rules() {
        let ok = format!("sha256={MAC_HEX}");
        assert!(parse_header(ok.as_bytes()).is_ok());
        assert!(parse_header(format!(" \t{ok}\t ").as_bytes()).is_ok());
        assert!(parse_header(ok.to_uppercase().replace("SHA256=", "sha256=").as_bytes()).is_ok());
        let bad = [
            String::new(),
            "   ".to_owned(),
            MAC_HEX.to_owned(),
            format!("SHA256={MAC_HEX}"),
            format!("sha256 ={MAC_HEX}"),
            format!("sha256= {MAC_HEX}"),
            format!("sha256={}", &MAC_HEX[..63]),
            format!("sha256={MAC_HEX}0"),
            format!("sha256={MAC_HEX}00"),
            format!("sha256={} {}", &MAC_HEX[..32], &MAC_HEX[32..]),
            format!("sha256={}g", &MAC_HEX[..63]),
            format!("sha1={MAC_HEX}"),
            format!("sha256={MAC_HEX},sha256={MAC_HEX}"),
        ];
        for value in bad {
            let err = parse_header(value.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedSignature, "{value:?}");
        }
        // Non-UTF-8 bytes are malformed, never a panic.
        assert!(parse_header(b"sha256=\xff\xfe").is_err());
        // Only spaces and tabs are trimmed, and the same at both ends: other ASCII
        // white space (form feed, CR, LF, vertical tab) is malformed before the value
        // as after it.
        for ws in ["\x0c", "\r", "\n", "\r\n", "\x0b", " \x0c"] {
            for value in [format!("{ws}{ok}"), format!("{ok}{ws}")] {
                let err = parse_header(value.as_bytes()).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::MalformedSignature, "{value:?}");
            }
        }
    }

    #[test]
    fn parsed_mac_is_the_decoded_hex() {
        let mac = parse_header(format!("sha256={MAC_HEX}").as_bytes()).unwrap();
        assert_eq!(hex::encode(mac), MAC_HEX);
    }

    #[test]
    fn every_byte_at_every_digit_is_judged_by_the_hex_rule() {
        // The decoder works on blocks of digits: a bad byte is caught at every
        // position, and a good one decodes to its own value there.
        let base = format!("sha256={MAC_HEX}").into_bytes();
        for position in 0..64 {
            for byte in 0..=255u8 {
                let mut value = base.clone();
                value[7 + position] = byte;
                let parsed = parse_header(&value);
                match char::from(byte).to_digit(16) {
                    Some(digit) => {
                        let mac = parsed.unwrap();
                        let half = mac[position / 2] >> if position % 2 == 0 { 4 } else { 0 };
                        assert_eq!(u32::from(half & 0x0f), digit, "{byte} at {position}");
                    }
                    None => {
                        let err = parsed.unwrap_err();
                        assert_eq!(err.kind(), ErrorKind::MalformedSignature);
                    }
                }
            }
        }
    }

    #[test]
    fn errors_never_print_macs_or_secrets() {
        let verifier = Verifier::new("top-secret-value").unwrap();
        let body = b"hello";
        let wrong = sign(body, "other");
        let err = verifier.verify(body, [&wrong]).unwrap_err();
        let shown = format!("{err} {err:?} {verifier:?}");
        let right = sign(body, "top-secret-value");
        assert!(!shown.contains("top-secret-value"));
        assert!(!shown.contains(&right[7..]));
        assert!(!shown.contains(&wrong[7..]));
    }

    #[test]
    fn body_limit_is_enforced_before_hashing() {
        let verifier = Verifier::builder()
            .secret("s")
            .max_body_size(4)
            .build()
            .unwrap();
        assert!(verifier.verify(b"1234", [&sign(b"1234", "s")]).is_ok());
        let err = verifier
            .verify(b"12345", [&sign(b"12345", "s")])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    }

    #[test]
    fn empty_secret_is_refused_anywhere_in_the_list() {
        let err = Verifier::builder()
            .secret("a")
            .secret("")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(Verifier::new("").unwrap_err().kind(), ErrorKind::Config);
    }
}
