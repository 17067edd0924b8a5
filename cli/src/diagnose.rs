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

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufWriter, Write};

use hmac::{Hmac, KeyInit, Mac};
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, ErrorKind, Event, Verifier};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use sha2::Sha256;

use crate::table::Table;

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
        match verifier.verify(body, &header.value) {
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
        if let Err(e) = serde_json::to_writer(io::sink(), &parsed.lazy()) {
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

/// The secrets as given, then their variants: the `whsec_` prefix added or removed,
/// the white space around them trimmed.
#[derive(Debug)]
struct Keys {
    keys: Vec<Key>,
    /// How many of `keys` are the secrets as given (the first ones).
    given: usize,
}

#[derive(Debug)]
struct Key {
    /// The HMAC keyed with the secret, ready to be cloned for each body.
    keyed: HmacSha256,
    /// What was done to the secret given ("" for the secret as given).
    how: String,
    /// Which secret given it comes from, and how many there are.
    of: (usize, usize),
}

impl Keys {
    fn new(secrets: &[String]) -> Self {
        let mut texts: Vec<(String, String, usize)> = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), String::new(), i))
            .collect();
        for (i, secret) in secrets.iter().enumerate() {
            let trimmed = secret.trim();
            let mut variants = vec![toggle_prefix(secret, "")];
            if trimmed != secret {
                let how = "without the white space around it";
                variants.push((trimmed.to_owned(), how.to_owned()));
                variants.push(toggle_prefix(trimmed, &format!("{how} and ")));
            }
            for (text, how) in variants {
                if !text.is_empty() && texts.iter().all(|(t, ..)| *t != text) {
                    texts.push((text, how, i));
                }
            }
        }
        let keys = texts
            .into_iter()
            .map(|(text, how, i)| Key {
                keyed: keyed(text.as_bytes()),
                how,
                of: (i + 1, secrets.len()),
            })
            .collect();
        Self {
            keys,
            given: secrets.len(),
        }
    }

    /// ", and the secret …" for a key that is a variant, ", with secret 2 of 2"
    /// during a rotation.
    fn and_secret(&self, key: usize) -> String {
        let key = &self.keys[key];
        let mut text = String::new();
        if !key.how.is_empty() {
            text.push_str(&format!(", and the secret {}", key.how));
        }
        if key.of.1 > 1 {
            text.push_str(&format!(" (secret {} of {})", key.of.0, key.of.1));
        }
        text
    }
}

fn toggle_prefix(secret: &str, before: &str) -> (String, String) {
    match secret.strip_prefix(PREFIX) {
        Some(bare) => (
            bare.to_owned(),
            format!("{before}without its whsec_ prefix"),
        ),
        None => (
            format!("{PREFIX}{secret}"),
            format!("{before}with the whsec_ prefix added"),
        ),
    }
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Candidate bodies signed with every key, against the MAC that was sent.
#[derive(Debug)]
struct Search<'k> {
    keys: &'k Keys,
    mac: [u8; 32],
    /// The candidate bodies tried so far (each ending counts).
    bodies: usize,
}

impl<'k> Search<'k> {
    fn new(keys: &'k Keys, mac: [u8; 32]) -> Self {
        Self {
            keys,
            mac,
            bodies: 0,
        }
    }

    /// Whether `body` signed with key `k` gives the MAC.
    fn matches(&self, k: usize, body: &[u8]) -> bool {
        let mut mac = self.keys.keys[k].keyed.clone();
        mac.update(body);
        mac.finalize().into_bytes()[..] == self.mac
    }

    /// Signs the body that `write` writes with every key, once for each of its
    /// `endings`: the first ending and key that give the MAC.
    fn try_body(
        &mut self,
        endings: Endings,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Option<(Option<&'static str>, usize)> {
        let mut macs = Macs {
            states: self.keys.keys.iter().map(|k| k.keyed.clone()).collect(),
            tail: Vec::new(),
        };
        let mut out = BufWriter::with_capacity(64 * 1024, &mut macs);
        write(&mut out).and_then(|()| out.flush()).ok()?;
        drop(out);
        let endings = endings.of(&macs.tail);
        self.bodies += endings.len();
        for (how, ending) in endings {
            for (key, state) in macs.states.iter().enumerate() {
                let mut mac = state.clone();
                mac.update(&ending);
                if mac.finalize().into_bytes()[..] == self.mac {
                    return Some((how, key));
                }
            }
        }
        None
    }
}

/// The MACs of one candidate body under every key, fed as the body is written, up
/// to its trailing white space: that is held back, for [`Endings`] to vary.
struct Macs {
    states: Vec<HmacSha256>,
    tail: Vec<u8>,
}

impl Write for Macs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match buf.iter().rposition(|b| !b.is_ascii_whitespace()) {
            None => self.tail.extend_from_slice(buf),
            Some(last) => {
                for state in &mut self.states {
                    state.update(&self.tail);
                    state.update(&buf[..=last]);
                }
                self.tail.clear();
                self.tail.extend_from_slice(&buf[last + 1..]);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ways a candidate body may end, given the trailing white space it has.
#[derive(Debug, Clone, Copy)]
enum Endings {
    /// The captured bytes (changed or not): their trailing newline or white space
    /// removed, a newline or CRLF added. The ending as it is, unless nothing else
    /// was changed.
    Bytes { unchanged: bool },
    /// JSON written again: no newline, `\n` or `\r\n`.
    Json,
}

impl Endings {
    fn of(self, tail: &[u8]) -> Vec<(Option<&'static str>, Cow<'_, [u8]>)> {
        let with = |end: &[u8]| Cow::Owned([tail, end].concat());
        let mut all: Vec<(Option<&'static str>, Cow<'_, [u8]>)> = match self {
            Endings::Bytes { unchanged } => {
                let mut v = Vec::new();
                if !unchanged {
                    v.push((None, Cow::Borrowed(tail)));
                }
                if let Some(cut) = tail.strip_suffix(b"\r\n") {
                    v.push((Some("with its trailing CRLF removed"), Cow::Borrowed(cut)));
                } else if let Some(cut) = tail.strip_suffix(b"\n") {
                    v.push((
                        Some("with its trailing newline removed"),
                        Cow::Borrowed(cut),
                    ));
                }
                v.push((
                    Some("with its trailing white space removed"),
                    Cow::Borrowed(&[][..]),
                ));
                v.push((Some("with a trailing newline added"), with(b"\n")));
                v.push((Some("with a trailing CRLF added"), with(b"\r\n")));
                if unchanged {
                    v.retain(|(_, end)| **end != *tail);
                }
                v
            }
            Endings::Json => vec![
                (None, Cow::Borrowed(tail)),
                (Some("with a trailing newline"), with(b"\n")),
                (Some("with a trailing CRLF"), with(b"\r\n")),
            ],
        };
        // The first description of each ending.
        let mut seen: Vec<Cow<'_, [u8]>> = Vec::new();
        all.retain(|(_, end)| {
            let new = !seen.contains(end);
            seen.push(end.clone());
            new
        });
        all
    }
}

/// The captured bytes changed back: without a byte-order mark, with other line
/// ends, in another encoding; each with every [`Endings::Bytes`].
fn byte_variants(body: &[u8], search: &mut Search) -> Option<Found> {
    let boms: &[bool] = if body.starts_with(BOM) {
        &[false, true]
    } else {
        &[false]
    };
    for &bom in boms {
        let unmarked = if bom { &body[BOM.len()..] } else { body };
        for lines in LineEnds::ALL.into_iter().filter(|l| l.applies(unmarked)) {
            let lined = lines.apply(unmarked);
            for encoding in Encoding::ALL.into_iter().filter(|e| e.applies(&lined)) {
                let candidate = encoding.apply(&lined);
                let unchanged = !bom && lines == LineEnds::Kept && encoding == Encoding::Kept;
                let hit =
                    search.try_body(Endings::Bytes { unchanged }, |w| w.write_all(&candidate));
                let Some((ending, key)) = hit else { continue };
                let bom = bom.then_some("without its byte-order mark (BOM)");
                let how: Vec<&str> = [bom, lines.how(), encoding.how(), ending]
                    .into_iter()
                    .flatten()
                    .collect();
                let why = if bom.is_some() || encoding != Encoding::Kept {
                    "NotMeta signs UTF-8 bytes: read the body as bytes, with no text decoding."
                } else {
                    "Verify the body exactly as received, before anything changes its line ends or adds or strips a newline."
                };
                return Some(Found {
                    how: how.join(", "),
                    key,
                    cause: Cause::Body(why),
                });
            }
        }
    }
    None
}

/// Line ends as they are, CRLF made LF, or LF made CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnds {
    Kept,
    CrlfToLf,
    LfToCrlf,
}

impl LineEnds {
    const ALL: [Self; 3] = [Self::Kept, Self::CrlfToLf, Self::LfToCrlf];

    fn applies(self, body: &[u8]) -> bool {
        match self {
            Self::Kept => true,
            Self::CrlfToLf => body.windows(2).any(|w| w == b"\r\n"),
            Self::LfToCrlf => bare_lfs(body).next().is_some(),
        }
    }

    fn apply(self, body: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Self::Kept => Cow::Borrowed(body),
            Self::CrlfToLf => {
                let mut out = Vec::with_capacity(body.len());
                for (i, &b) in body.iter().enumerate() {
                    if !(b == b'\r' && body.get(i + 1) == Some(&b'\n')) {
                        out.push(b);
                    }
                }
                Cow::Owned(out)
            }
            Self::LfToCrlf => {
                let mut out = Vec::with_capacity(body.len() + body.len() / 16);
                let mut from = 0;
                for lf in bare_lfs(body) {
                    out.extend_from_slice(&body[from..lf]);
                    out.extend_from_slice(b"\r");
                    from = lf;
                }
                out.extend_from_slice(&body[from..]);
                Cow::Owned(out)
            }
        }
    }

    fn how(self) -> Option<&'static str> {
        match self {
            Self::Kept => None,
            Self::CrlfToLf => Some("with CRLF line ends as LF"),
            Self::LfToCrlf => Some("with LF line ends as CRLF"),
        }
    }
}

/// The positions of the line feeds with no carriage return before them.
fn bare_lfs(body: &[u8]) -> impl Iterator<Item = usize> + '_ {
    body.iter()
        .enumerate()
        .filter(move |&(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
        .map(|(i, _)| i)
}

/// The bytes as they are, Latin-1 read and written as UTF-8, or UTF-8 written as
/// Latin-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Kept,
    Latin1ToUtf8,
    Utf8ToLatin1,
}

impl Encoding {
    const ALL: [Self; 3] = [Self::Kept, Self::Latin1ToUtf8, Self::Utf8ToLatin1];

    fn applies(self, body: &[u8]) -> bool {
        match (self, std::str::from_utf8(body)) {
            (Self::Kept, _) => true,
            (Self::Latin1ToUtf8, text) => text.is_err(),
            (Self::Utf8ToLatin1, Ok(text)) => {
                !text.is_ascii() && text.chars().all(|c| u32::from(c) < 0x100)
            }
            (Self::Utf8ToLatin1, Err(_)) => false,
        }
    }

    fn apply(self, body: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Self::Kept => Cow::Borrowed(body),
            Self::Latin1ToUtf8 => {
                let text: String = body.iter().map(|&b| char::from(b)).collect();
                Cow::Owned(text.into_bytes())
            }
            Self::Utf8ToLatin1 => {
                let text = String::from_utf8_lossy(body);
                // Every character is below U+0100 (see `applies`).
                Cow::Owned(text.chars().map(|c| c as u8).collect())
            }
        }
    }

    fn how(self) -> Option<&'static str> {
        match self {
            Self::Kept => None,
            Self::Latin1ToUtf8 => Some("read as Latin-1 and encoded as UTF-8"),
            Self::Utf8ToLatin1 => Some("encoded as Latin-1 instead of UTF-8"),
        }
    }
}

/// The body parsed (keeping its key order) and written again the common ways: each
/// layout, with non-ASCII kept or escaped, keys in their order or sorted (as a
/// `serde_json::Value` or Python's `sort_keys` writes them), LF or CRLF line ends;
/// each with every [`Endings::Json`].
fn json_variants(json: Lazy<'_>, search: &mut Search) -> Option<Found> {
    let escapes: &[bool] = if json.is_ascii() {
        &[false]
    } else {
        &[false, true]
    };
    let orders: &[bool] = if json.is_sorted() {
        &[false]
    } else {
        &[false, true]
    };
    for (layout, spaced, indent) in LAYOUTS {
        let line_ends: &[bool] = if indent.is_some() {
            &[false, true]
        } else {
            &[false]
        };
        for &ascii in escapes {
            for &sorted in orders {
                for &crlf in line_ends {
                    let style = Style {
                        spaced,
                        ascii,
                        indent,
                        crlf,
                    };
                    let hit = search.try_body(Endings::Json, |w| {
                        let mut ser = serde_json::Serializer::with_formatter(w, style.formatter());
                        json.sorted(sorted)
                            .serialize(&mut ser)
                            .map_err(io::Error::other)
                    });
                    let Some((ending, key)) = hit else { continue };
                    let how: Vec<&str> = [
                        Some(layout),
                        ascii.then_some("non-ASCII as \\u escapes"),
                        crlf.then_some("with CRLF line ends"),
                        sorted.then_some("keys sorted"),
                        ending,
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    return Some(Found {
                        how: format!("re-serialised {}", how.join(", ")),
                        key,
                        cause: Cause::Body(
                            "Verify the raw bytes of the request, never JSON parsed and serialised again.",
                        ),
                    });
                }
            }
        }
    }
    None
}

/// JSON layouts: how each is described, `", "` and `": "` separators, indentation.
const LAYOUTS: [(&str, bool, Option<usize>); 4] = [
    ("in compact form", false, None),
    (
        "with \", \" and \": \" separators (Python's json.dumps)",
        true,
        None,
    ),
    ("pretty-printed, 2 spaces", false, Some(2)),
    ("pretty-printed, 4 spaces", false, Some(4)),
];

/// The deepest nesting of arrays and objects the JSON checks read (serde_json's
/// default recursion limit): deeper bodies are not written again.
const MAX_DEPTH: usize = 128;

/// Why a body is not read as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotRead {
    NotJson,
    TooDeep,
}

/// A body's JSON text (validated), with where each array and object ends, found in
/// one pass: reading a value's extent is then a look-up, not a scan.
#[derive(Debug)]
struct Json<'a> {
    text: &'a str,
    ends: Ends,
}

/// Where each array and object of a text ends: the offset of its closing bracket,
/// by the offset of its opening one.
#[derive(Debug)]
struct Ends {
    /// The address of the text's first byte (offsets count from it).
    base: usize,
    close: std::collections::HashMap<usize, usize>,
}

impl Ends {
    /// The length of the array or object `text` starts with (`text` is a part of
    /// the indexed text).
    fn len_of(&self, text: &str) -> Option<usize> {
        let start = (text.as_ptr() as usize).checked_sub(self.base)?;
        self.close.get(&start).map(|end| end - start + 1)
    }
}

impl<'a> Json<'a> {
    /// The body as JSON (a byte-order mark left out), if it is valid JSON nested at
    /// most [`MAX_DEPTH`] deep.
    fn parse(body: &'a [u8]) -> Result<Self, NotRead> {
        let text = std::str::from_utf8(body.strip_prefix(BOM).unwrap_or(body))
            .map_err(|_| NotRead::NotJson)?
            .trim_matches(JSON_SPACE);
        // The depth first: serde_json skips a value without a depth limit.
        let close = brackets(text)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|_| NotRead::NotJson)?;
        Ok(Self {
            text,
            ends: Ends {
                base: text.as_ptr() as usize,
                close,
            },
        })
    }

    fn lazy(&self) -> Lazy<'_> {
        Lazy {
            text: self.text,
            sorted: false,
            ends: &self.ends,
        }
    }
}

/// Where each bracket of `text` closes, outside strings; too deep past
/// [`MAX_DEPTH`]. Brackets that do not pair are left out (serde_json then finds
/// the text is not JSON).
fn brackets(text: &str) -> Result<std::collections::HashMap<usize, usize>, NotRead> {
    let bytes = text.as_bytes();
    let mut open = Vec::new();
    let mut close = std::collections::HashMap::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i) - 1,
            b'[' | b'{' => {
                if open.len() == MAX_DEPTH {
                    return Err(NotRead::TooDeep);
                }
                open.push(i);
            }
            b']' | b'}' => {
                if let Some(start) = open.pop() {
                    close.insert(start, i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(close)
}

/// The offset just past the string starting at `start` (its closing quote
/// included), or the end of `bytes`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// One JSON value's text (validated), written again as it is read: no tree is
/// built, so the memory used is that of one path from the root (and, with keys
/// sorted, one object's keys at each level), and each value's extent is looked up
/// in the [`Ends`] found when it was parsed.
#[derive(Debug, Clone, Copy)]
struct Lazy<'a> {
    text: &'a str,
    sorted: bool,
    ends: &'a Ends,
}

impl<'a> Lazy<'a> {
    fn sorted(self, sorted: bool) -> Self {
        Self { sorted, ..self }
    }

    /// Whether a string or key may hold something other than ASCII (a `\u`
    /// escape may).
    fn is_ascii(self) -> bool {
        self.text.is_ascii() && !self.text.contains("\\u")
    }

    /// Whether every object's keys are in sorted order.
    fn is_sorted(self) -> bool {
        match self.text.as_bytes().first() {
            Some(b'{') => {
                let mut last: Option<String> = None;
                Members::of(self.text, self.ends).all(|(key, value)| {
                    let key = decode_key(key);
                    let in_order = last.as_ref().is_none_or(|last| *last <= key);
                    last = Some(key);
                    in_order
                        && Lazy {
                            text: value,
                            ..self
                        }
                        .is_sorted()
                })
            }
            Some(b'[') => Members::of(self.text, self.ends)
                .all(|(_, item)| Lazy { text: item, ..self }.is_sorted()),
            _ => true,
        }
    }
}

impl Serialize for Lazy<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let lazy = |text| Lazy { text, ..*self };
        match self.text.as_bytes().first() {
            Some(b'[') => {
                let mut seq = s.serialize_seq(None)?;
                for (_, item) in Members::of(self.text, self.ends) {
                    seq.serialize_element(&lazy(item))?;
                }
                seq.end()
            }
            Some(b'{') if self.sorted => {
                let mut members: Vec<(String, &str)> = Members::of(self.text, self.ends)
                    .map(|(key, value)| (decode_key(key), value))
                    .collect();
                // Sorted, and of a key given twice the last value: as a
                // `serde_json::Value` (or a Python dict) keeps them.
                members.sort_by(|a, b| a.0.cmp(&b.0));
                members.reverse();
                members.dedup_by(|a, b| a.0 == b.0);
                members.reverse();
                let mut map = s.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(&key, &lazy(value))?;
                }
                map.end()
            }
            Some(b'{') => {
                let mut map = s.serialize_map(None)?;
                for (key, value) in Members::of(self.text, self.ends) {
                    map.serialize_entry(&decode_key(key), &lazy(value))?;
                }
                map.end()
            }
            // A string without escapes, or an integer: as it is (what serde_json
            // would read and write again), with no value built.
            Some(b'"') if !self.text.contains('\\') => {
                s.serialize_str(&self.text[1..self.text.len() - 1])
            }
            Some(b'0'..=b'9') if let Ok(n) = self.text.parse::<u64>() => s.serialize_u64(n),
            Some(b'-')
                if !self.text.starts_with("-0")
                    && let Ok(n) = self.text.parse::<i64>() =>
            {
                s.serialize_i64(n)
            }
            // Any other string, number, true, false or null: as serde_json reads and
            // writes it (1.50 is written 1.5, "\u00e9" is written é, -0 is -0.0).
            _ => serde_json::from_str::<serde_json::Value>(self.text)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

/// JSON's white space.
const JSON_SPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// A key's text (a JSON string), decoded.
fn decode_key(text: &str) -> String {
    // The text was validated: it is a JSON string.
    serde_json::from_str(text).unwrap_or_default()
}

/// The items of an array's text, or the members of an object's text (a key's text
/// and a value's), read one at a time.
struct Members<'a> {
    rest: &'a str,
    object: bool,
    ends: &'a Ends,
}

impl<'a> Members<'a> {
    /// `text` is an array or an object, validated, a part of the text `ends`
    /// indexes.
    fn of(text: &'a str, ends: &'a Ends) -> Self {
        Self {
            rest: &text[1..text.len() - 1],
            object: text.starts_with('{'),
            ends,
        }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.trim_start_matches(JSON_SPACE);
        let rest = rest.strip_prefix(',').unwrap_or(rest);
        let mut key = "";
        let mut rest = rest;
        if self.object {
            (key, rest) = split_value(rest, self.ends)?;
            rest = rest.trim_start_matches(JSON_SPACE).strip_prefix(':')?;
        }
        let (value, rest) = split_value(rest, self.ends)?;
        self.rest = rest;
        Some((key, value))
    }
}

/// The JSON value at the start of `text` (after white space; validated, a part of
/// the text `ends` indexes), and what follows it: an array's or an object's end is
/// looked up, a string's or a scalar's found by reading only it.
fn split_value<'t>(text: &'t str, ends: &Ends) -> Option<(&'t str, &'t str)> {
    let text = text.trim_start_matches(JSON_SPACE);
    let end = match text.as_bytes().first()? {
        b'[' | b'{' => ends.len_of(text)?,
        b'"' => string_end(text.as_bytes(), 0),
        _ => text
            .find(|c| matches!(c, ',' | ']' | '}' | ':') || JSON_SPACE.contains(&c))
            .unwrap_or(text.len()),
    };
    Some(text.split_at(end))
}

/// How JSON is written: separators, indentation, escaping, line ends.
#[derive(Debug, Clone, Copy)]
struct Style {
    spaced: bool,
    ascii: bool,
    indent: Option<usize>,
    crlf: bool,
}

impl Style {
    #[cfg(test)]
    const COMPACT: Self = Self {
        spaced: false,
        ascii: false,
        indent: None,
        crlf: false,
    };

    fn formatter(self) -> Styled {
        Styled {
            style: self,
            depth: 0,
            has_value: false,
        }
    }
}

/// A serde_json formatter for a [`Style`].
struct Styled {
    style: Style,
    depth: usize,
    has_value: bool,
}

impl Styled {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        const SPACES: &[u8] = &[b' '; 64];
        if let Some(indent) = self.style.indent {
            w.write_all(if self.style.crlf { b"\r\n" } else { b"\n" })?;
            let mut left = indent * self.depth;
            while left > 0 {
                let n = left.min(SPACES.len());
                w.write_all(&SPACES[..n])?;
                left -= n;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, c: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(c)
    }

    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, c: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        self.has_value = true;
        w.write_all(c)
    }

    fn item<W: ?Sized + std::io::Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(if self.style.spaced && self.style.indent.is_none() {
                b", "
            } else {
                b","
            })?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for Styled {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.style.spaced || self.style.indent.is_some() {
            b": "
        } else {
            b":"
        })
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if !self.style.ascii || fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        // Runs of ASCII as they are; each other character as `\\u` escapes (two for
        // one beyond U+FFFF), in lower case as Python writes them.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut run = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            w.write_all(&fragment.as_bytes()[run..i])?;
            let mut units = [0u16; 2];
            for &mut unit in c.encode_utf16(&mut units) {
                let digit = |shift: u16| HEX[usize::from((unit >> shift) & 0xF)];
                w.write_all(&[b'\\', b'u', digit(12), digit(8), digit(4), digit(0)])?;
            }
            run = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[run..])
    }
}

#[cfg(test)]
mod tests {
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
}
