//! Why a captured request does not verify: NotMeta's signature-errors checklist
//! (the header's format, the body size, the secret's prefix, a changed body: line
//! ends, a trailing newline, the encoding, JSON written again), each tried and
//! reported.
//!
//! A changed body is looked for among combinations of changes (a byte-order mark ×
//! line ends × encoding, or a JSON layout × escapes × key order × line ends), each
//! with its ending varied (trailing newline, CRLF or white space removed or added).
//! One combination at a time is built, signed with every secret and dropped, so the
//! memory used stays a small multiple of the body's size. The endings cost no pass
//! of their own: a body's MACs are computed up to its trailing white space, then
//! copied and finished once per ending.

use std::fmt;

use hmac::Hmac;
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, ErrorKind, Event, Verifier};
use sha2::Sha256;

use crate::table::Table;

mod bytes;
mod json;
mod search;
mod style;

use bytes::byte_variants;
use json::{Json, MAX_DEPTH, NotRead, json_variants};
use search::{Keys, Search};

type HmacSha256 = Hmac<Sha256>;

/// The checks made and what they found.
#[derive(Debug)]
pub(crate) struct Diagnosis {
    table: Table<2>,
    verdict: Vec<String>,
    valid: bool,
}

impl Diagnosis {
    /// Whether the request verifies, holds a valid event, and is within the body
    /// limit a receiver has by default.
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        for line in &self.verdict {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

const PREFIX: &str = "whsec_";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Checks `body` against the signature `header` with each of `secrets`.
pub(crate) fn diagnose(body: &[u8], header: &str, secrets: &[String]) -> Diagnosis {
    let mut d = Diagnosis {
        table: Table::new(["check", "result"]),
        verdict: Vec::new(),
        valid: false,
    };
    let header = d.header_format(header);
    let direct = d.direct(body, &header, secrets);
    let over = d.size(body);
    match direct {
        Direct::Unusable => return d,
        Direct::Valid => {
            d.event(body, over);
            return d;
        }
        Direct::Mismatch => {}
    }
    let Some(mac) = header.mac else {
        d.verdict.push(
            "the header holds no MAC to compare with: NotMeta sends `sha256=` and 64 hex digits."
                .into(),
        );
        d.size_note(body, over);
        return d;
    };
    let keys = Keys::new(secrets);
    let mut search = Search::new(&keys, mac);
    let found = d
        .header_fixed(body, &header, &search)
        .or_else(|| d.secret_variants(body, &search))
        .or_else(|| d.body_variants(body, &mut search));
    d.conclude(found, &search, body, over);
    d
}

/// The header's value, the MAC it carries, and what is wrong with its format.
#[derive(Debug)]
struct Header {
    value: String,
    mac: Option<[u8; 32]>,
    note: Option<String>,
}

/// What the secrets as given say of the body as captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    Valid,
    Mismatch,
    Unusable,
}

/// The change that makes the MAC match, and what it says is wrong.
#[derive(Debug)]
struct Found {
    /// The body's change ("" for the body as captured).
    how: String,
    /// The key it matches with, an index into [`Keys`].
    key: usize,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    /// The MAC is right; the header's format is not.
    Header(String),
    /// The body is as captured; the secret is not.
    Secret,
    /// The body was changed (and the secret too, if the key is a variant); what to
    /// do about it.
    Body(&'static str),
}

impl Diagnosis {
    fn row(&mut self, check: &str, result: String) {
        self.table.row([check.to_owned(), result]);
    }

    /// The header: its name pasted along, a label in capitals, a bare MAC.
    fn header_format(&mut self, header: &str) -> Header {
        let mut value = header.trim();
        if value
            .get(..20)
            .is_some_and(|name| name.eq_ignore_ascii_case("x-notmeta-signature:"))
        {
            value = value[20..].trim();
            self.verdict.push(
                "note: --header took the header's name too; only its value (sha256=…) is checked."
                    .to_owned(),
            );
        }
        let (mac, note) = normalise(value);
        self.row(
            "header format",
            note.clone()
                .unwrap_or_else(|| "ok: sha256= and 64 hex digits".into()),
        );
        Header {
            value: value.to_owned(),
            mac,
            note,
        }
    }

    /// The body as captured, with the secrets as given, and no limit on its size
    /// (that is the next check's).
    fn direct(&mut self, body: &[u8], header: &Header, secrets: &[String]) -> Direct {
        let verifier = secrets
            .iter()
            .fold(Verifier::builder(), |b, s| b.secret(s.as_str()))
            .max_body_size(usize::MAX)
            .build();
        let verifier = match verifier {
            Ok(verifier) => verifier,
            Err(e) => {
                self.row("secret", format!("unusable: {e}"));
                return Direct::Unusable;
            }
        };
        match verifier.verify(body, [&header.value]) {
            Ok(payload) => {
                let which = if secrets.len() > 1 {
                    format!(
                        " (secret {} of {})",
                        payload.secret_index() + 1,
                        secrets.len()
                    )
                } else {
                    String::new()
                };
                self.row("signature", format!("valid{which}"));
                Direct::Valid
            }
            Err(e) if e.kind() == ErrorKind::SignatureMismatch => {
                self.row("signature with the secret as given", "mismatch".into());
                Direct::Mismatch
            }
            Err(e) => {
                self.row("signature", e.to_string());
                if let Some(note) = &header.note {
                    self.verdict
                        .push(format!("the header is malformed: {note}."));
                }
                Direct::Mismatch
            }
        }
    }

    /// The body's size against the limit a receiver has by default; whether it is
    /// over.
    fn size(&mut self, body: &[u8]) -> bool {
        let over = body.len() > DEFAULT_MAX_BODY_SIZE;
        let within = if over {
            "over the 1 MiB a receiver accepts by default (413)"
        } else {
            "within the 1 MiB a receiver accepts by default"
        };
        self.row("body size", format!("{} bytes: {within}", body.len()));
        over
    }

    /// What follows from a size over the limit when the signature does not match.
    fn size_note(&mut self, body: &[u8], over: bool) {
        if over {
            self.verdict.push(format!(
                "the body is {} bytes, over the 1 MiB a receiver accepts by default: even signed right, it is answered 413.",
                body.len()
            ));
        }
    }

    /// The signature matches: the event, and the size.
    fn event(&mut self, body: &[u8], over: bool) {
        let event = Event::parse_unverified(body);
        match &event {
            Ok(event) => {
                let what = format!(
                    "{} {} created {}",
                    event.type_str(),
                    event.id,
                    event.created_at
                );
                self.row("event", what);
            }
            Err(e) => self.row("event", format!("invalid: {e}")),
        }
        if over {
            self.verdict.push(format!(
                "the signature is valid, but the body is {} bytes, over the 1 MiB a receiver accepts by default: it answers 413; raise its limit if NotMeta really sends such bodies.",
                body.len()
            ));
        }
        if event.is_err() {
            self.verdict.push(
                "the signature is right, but the body is not a NotMeta event: a receiver answers 400."
                    .into(),
            );
        }
        if event.is_ok() && !over {
            self.verdict
                .push("valid: a receiver with this secret accepts the request.".into());
            self.valid = true;
        }
    }

    /// A header the verifier refuses, whose MAC is nevertheless right.
    fn header_fixed(&mut self, body: &[u8], header: &Header, search: &Search) -> Option<Found> {
        let note = header.note.as_ref()?;
        let key = (0..search.keys.given).find(|&k| search.matches(k, body));
        let result = match key {
            Some(_) => "MATCH: the body and secret are right".to_owned(),
            None => "no match".to_owned(),
        };
        self.row("the MAC with the header's format fixed", result);
        Some(Found {
            how: String::new(),
            key: key?,
            cause: Cause::Header(note.clone()),
        })
    }

    /// The body as captured, with the secrets' variants.
    fn secret_variants(&mut self, body: &[u8], search: &Search) -> Option<Found> {
        let variants = search.keys.given..search.keys.keys.len();
        let tried = variants.len();
        let key = variants.into_iter().find(|&k| search.matches(k, body));
        let result = match key {
            Some(k) => format!("MATCH {}", search.keys.keys[k].how),
            None => format!("no match ({tried} tried)"),
        };
        self.row("secret with whsec_ added or removed, or trimmed", result);
        Some(Found {
            how: String::new(),
            key: key?,
            cause: Cause::Secret,
        })
    }

    /// The body changed back as bytes, then as JSON written again.
    fn body_variants(&mut self, body: &[u8], search: &mut Search) -> Option<Found> {
        let bytes = "body bytes (BOM, line ends, encoding, end)";
        let json = "body re-serialised as JSON";
        let before = search.bodies;
        let found = byte_variants(body, search);
        self.search_row(bytes, found.as_ref(), search, search.bodies - before);
        if found.is_some() {
            self.row(json, "not tried: the bytes explain it".into());
            return found;
        }
        let parsed = match Json::parse(body) {
            Ok(parsed) => parsed,
            Err(NotRead::NotJson) => {
                self.row(json, "not applicable: the body is not JSON".into());
                return None;
            }
            Err(NotRead::TooDeep) => {
                self.row(json, format!("not tried: nested deeper than {MAX_DEPTH}"));
                return None;
            }
        };
        // A value serde_json reads but cannot give back (a number out of range, a
        // lone surrogate): no body can be written, so none is tried.
        if let Err(e) = serde_json::to_writer(std::io::sink(), &parsed.lazy()) {
            self.row(
                json,
                format!("not tried: serde_json cannot read a value of it ({e})"),
            );
            return None;
        }
        let before = search.bodies;
        let found = json_variants(parsed.lazy(), search);
        self.search_row(json, found.as_ref(), search, search.bodies - before);
        found
    }

    fn search_row(&mut self, check: &str, found: Option<&Found>, search: &Search, bodies: usize) {
        let result = match found {
            Some(found) => format!("MATCH {}{}", found.how, search.keys.and_secret(found.key)),
            None => format!(
                "no match ({bodies} bodies × {} secrets tried)",
                search.keys.keys.len()
            ),
        };
        self.row(check, result);
    }

    /// The verdict: what matched, or what could not be confirmed.
    fn conclude(&mut self, found: Option<Found>, search: &Search, body: &[u8], over: bool) {
        let keys = search.keys;
        match found {
            Some(Found {
                cause: Cause::Header(note),
                ..
            }) => self.verdict.push(format!(
                "the MAC is right but the header is malformed ({note}): send `sha256=` and the 64 hex digits."
            )),
            Some(Found {
                key,
                cause: Cause::Secret,
                ..
            }) => self.verdict.push(format!(
                "the secret is wrong: it matches {}. {WHOLE_SECRET}",
                keys.keys[key].how
            )),
            Some(Found {
                how,
                key,
                cause: Cause::Body(why),
            }) => {
                self.verdict
                    .push(format!("the body was changed: it matches {how}. {why}"));
                if key >= keys.given {
                    self.verdict.push(format!(
                        "the secret is wrong too: it matches {}. {WHOLE_SECRET}",
                        keys.keys[key].how
                    ));
                }
            }
            None => {
                self.verdict.push(format!(
                    "no variant matches: neither the secret nor the body can be confirmed ({} bodies × {} secrets tried). Check both:",
                    search.bodies + 1,
                    keys.keys.len()
                ));
                self.verdict.push(
                    "- the secret: this webhook's own, exactly as NotMeta showed it when the webhook was created (`whsec_` prefix included); during a rotation pass the old and the new one, --secret for each;"
                        .into(),
                );
                self.verdict.push(
                    "- the body: captured byte for byte as it arrived, before any framework parsed it, decoded it as text or wrote it again."
                        .into(),
                );
                if std::str::from_utf8(body).is_err() {
                    self.verdict
                        .push("the body is not UTF-8 (NotMeta sends UTF-8 JSON).".into());
                }
            }
        }
        self.size_note(body, over);
    }
}

const WHOLE_SECRET: &str =
    "The key is the secret exactly as NotMeta shows it, `whsec_` prefix included.";

/// The MAC's hex digits, and what is wrong with the header's format.
fn normalise(value: &str) -> (Option<[u8; 32]>, Option<String>) {
    let decode = |s: &str| {
        let mut mac = [0; 32];
        hex::decode_to_slice(s, &mut mac).ok().map(|()| mac)
    };
    if let Some(hex) = value.strip_prefix("sha256=") {
        if let Some(mac) = decode(hex) {
            return (Some(mac), None);
        }
        let note = format!(
            "after sha256= come {} characters, not 64 hex digits",
            hex.chars().count()
        );
        return (None, Some(note));
    }
    if let Some((label, hex)) = value.split_once('=')
        && label.eq_ignore_ascii_case("sha256")
        && let Some(mac) = decode(hex)
    {
        let note = format!("the label is {label:?}: it must be lower case `sha256=`");
        return (Some(mac), Some(note));
    }
    if let Some(mac) = decode(value) {
        let note = "the value lacks its `sha256=` label".to_owned();
        return (Some(mac), Some(note));
    }
    if value.is_empty() {
        return (None, Some("the header is empty".to_owned()));
    }
    (None, Some("not `sha256=` and 64 hex digits".to_owned()))
}

#[cfg(test)]
mod tests;
