//! Why a captured request does not verify: NotMeta's signature-errors checklist
//! (wrong secret, the secret's prefix, a changed body, a trailing newline, the
//! encoding), each tried and reported.

use std::fmt;

use notmeta_webhooks::{ErrorKind, Event, Verifier, sign};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::table::Table;

/// The checks made and what they found.
#[derive(Debug)]
pub(crate) struct Diagnosis {
    table: Table<2>,
    verdict: Vec<String>,
    valid: bool,
}

impl Diagnosis {
    /// Whether the request verifies and holds a valid event.
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
    let mut table = Table::new(["check", "result"]);
    let mut verdict = Vec::new();

    // The header: its name pasted along, a label in capitals, a bare MAC.
    let mut value = header.trim();
    if value
        .get(..20)
        .is_some_and(|name| name.eq_ignore_ascii_case("x-notmeta-signature:"))
    {
        value = value[20..].trim();
        verdict.push(
            "note: --header took the header's name too; only its value (sha256=…) is checked."
                .to_owned(),
        );
    }
    let (mac, header_note) = normalise(value);
    table.row([
        "header format".into(),
        header_note
            .clone()
            .unwrap_or_else(|| "ok: sha256= and 64 hex digits".into()),
    ]);

    let verifier = secrets
        .iter()
        .fold(Verifier::builder(), |b, s| b.secret(s.as_str()))
        .build();
    let verifier = match verifier {
        Ok(verifier) => verifier,
        Err(e) => {
            table.row(["secret".into(), format!("unusable: {e}")]);
            return Diagnosis {
                table,
                verdict,
                valid: false,
            };
        }
    };

    match verifier.verify(body, value) {
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
            table.row(["signature".into(), format!("valid{which}")]);
            return match Event::parse_unverified(body) {
                Ok(event) => {
                    table.row([
                        "event".into(),
                        format!(
                            "{} {} created {}",
                            event.type_str(),
                            event.id,
                            event.created_at
                        ),
                    ]);
                    verdict.push("valid: a receiver with this secret accepts the request.".into());
                    Diagnosis {
                        table,
                        verdict,
                        valid: true,
                    }
                }
                Err(e) => {
                    table.row(["event".into(), format!("invalid: {e}")]);
                    verdict.push(
                        "the signature is right, but the body is not a NotMeta event: a receiver answers 400."
                            .into(),
                    );
                    Diagnosis {
                        table,
                        verdict,
                        valid: false,
                    }
                }
            };
        }
        Err(e) if e.kind() == ErrorKind::SignatureMismatch => {
            table.row([
                "signature with the secret as given".into(),
                "mismatch".into(),
            ]);
        }
        Err(e) => {
            table.row(["signature".into(), e.to_string()]);
            if let Some(note) = &header_note {
                verdict.push(format!("the header is malformed: {note}."));
            }
        }
    }
    let Some(mac) = mac else {
        verdict.push(
            "the header holds no MAC to compare with: NotMeta sends `sha256=` and 64 hex digits."
                .into(),
        );
        return Diagnosis {
            table,
            verdict,
            valid: false,
        };
    };

    // Every secret and body variant, against the MAC that was sent.
    let matches = |body: &[u8], secret: &str| sign(body, secret)[7..] == mac;
    let mut found = Vec::new();

    if header_note.is_some() {
        let given = secrets.iter().any(|s| matches(body, s));
        table.row([
            "the MAC with the header's format fixed".into(),
            result(given, "the body and secret are right"),
        ]);
        if given {
            found.push(format!(
                "the MAC is right but the header is malformed ({}): send `sha256=` and the 64 hex digits.",
                header_note.clone().unwrap_or_default()
            ));
        }
    }

    let secret_variants: Vec<(String, &str)> = secrets
        .iter()
        .flat_map(|s| {
            let mut v = Vec::new();
            match s.strip_prefix(PREFIX) {
                Some(bare) => v.push((bare.to_owned(), "without its whsec_ prefix")),
                None => v.push((format!("{PREFIX}{s}"), "with the whsec_ prefix added")),
            }
            if s.trim() != s {
                v.push((s.trim().to_owned(), "without the white space around it"));
            }
            v
        })
        .collect();
    let mut row = Vec::new();
    for (secret, how) in &secret_variants {
        if matches(body, secret) {
            row.push(format!("MATCH {how}"));
            found.push(format!(
                "the secret is wrong: it matches {how}. The key is the secret exactly as NotMeta shows it, `whsec_` prefix included."
            ));
        }
    }
    table.row([
        "secret with whsec_ added or removed".into(),
        row.pop().unwrap_or_else(|| "no match".into()),
    ]);

    // The secrets as given, then their variants (with what was changed).
    let all_secrets: Vec<(&str, Option<&str>)> = secrets
        .iter()
        .map(|s| (s.as_str(), None))
        .chain(
            secret_variants
                .iter()
                .map(|(s, how)| (s.as_str(), Some(*how))),
        )
        .collect();
    let mut try_bodies = |check: &str, mut variants: Vec<(String, Vec<u8>)>, why: &str| {
        variants.retain(|(_, b)| b != body);
        if variants.is_empty() {
            table.row([check.into(), "not applicable".into()]);
            return;
        }
        let hit = variants.iter().find_map(|(how, b)| {
            let (_, secret_how) = all_secrets.iter().find(|(s, _)| matches(b, s))?;
            Some((how, *secret_how))
        });
        match hit {
            Some((how, secret_how)) => {
                let and_secret = secret_how
                    .map(|s| format!(", and the secret {s}"))
                    .unwrap_or_default();
                table.row([check.into(), format!("MATCH {how}{and_secret}")]);
                found.push(format!("the body was changed: it matches {how}. {why}"));
                if let Some(s) = secret_how {
                    found.push(format!(
                        "the secret is wrong too: it matches {s}. The key is the secret exactly as NotMeta shows it, `whsec_` prefix included."
                    ));
                }
            }
            None => table.row([check.into(), format!("no match ({} tried)", variants.len())]),
        }
    };

    try_bodies(
        "trailing newline",
        newline_variants(body),
        "Verify the body exactly as received, before anything adds or strips a newline.",
    );
    try_bodies(
        "body re-serialised as JSON",
        json_variants(body),
        "Verify the raw bytes of the request, never JSON parsed and serialised again.",
    );
    try_bodies(
        "encoding (UTF-8, BOM, line ends)",
        encoding_variants(body),
        "NotMeta signs UTF-8 bytes: read the body as bytes, with no text decoding.",
    );

    if found.is_empty() {
        verdict.push(
            "no variant matches: the secret is most likely not this webhook's (each webhook has its own; during a rotation pass both with --secret), or the body is not the one that was signed."
                .into(),
        );
        if std::str::from_utf8(body).is_err() {
            verdict.push("the body is not UTF-8 (NotMeta sends UTF-8 JSON).".into());
        }
    }
    verdict.extend(found);
    Diagnosis {
        table,
        verdict,
        valid: false,
    }
}

fn result(hit: bool, what: &str) -> String {
    if hit {
        format!("MATCH: {what}")
    } else {
        "no match".into()
    }
}

/// The MAC's hex digits (lower case), and what is wrong with the header's format.
fn normalise(value: &str) -> (Option<String>, Option<String>) {
    let is_mac = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(hex) = value.strip_prefix("sha256=") {
        if is_mac(hex) {
            return (Some(hex.to_ascii_lowercase()), None);
        }
        let note = format!(
            "after sha256= come {} characters, not 64 hex digits",
            hex.chars().count()
        );
        return (None, Some(note));
    }
    if let Some((label, hex)) = value.split_once('=')
        && label.eq_ignore_ascii_case("sha256")
        && is_mac(hex)
    {
        let note = format!("the label is {label:?}: it must be lower case `sha256=`");
        return (Some(hex.to_ascii_lowercase()), Some(note));
    }
    if is_mac(value) {
        let note = "the value lacks its `sha256=` label".to_owned();
        return (Some(value.to_ascii_lowercase()), Some(note));
    }
    if value.is_empty() {
        return (None, Some("the header is empty".to_owned()));
    }
    (None, Some("not `sha256=` and 64 hex digits".to_owned()))
}

fn newline_variants(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    if let Some(stripped) = body.strip_suffix(b"\r\n") {
        v.push(("with its trailing CRLF removed".into(), stripped.to_vec()));
    } else if let Some(stripped) = body.strip_suffix(b"\n") {
        v.push((
            "with its trailing newline removed".into(),
            stripped.to_vec(),
        ));
    }
    let trimmed = body.trim_ascii_end();
    if trimmed.len() + 1 < body.len() {
        v.push((
            "with its trailing white space removed".into(),
            trimmed.to_vec(),
        ));
    }
    let mut added = body.to_vec();
    added.push(b'\n');
    v.push(("with a trailing newline added".into(), added));
    v
}

fn encoding_variants(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    if let Some(stripped) = body.strip_prefix(BOM) {
        v.push((
            "without its byte-order mark (BOM)".into(),
            stripped.to_vec(),
        ));
    }
    match std::str::from_utf8(body) {
        Err(_) => {
            // Bytes read as Latin-1 and written back as UTF-8.
            let text: String = body.iter().map(|&b| char::from(b)).collect();
            v.push((
                "read as Latin-1 and encoded as UTF-8".into(),
                text.into_bytes(),
            ));
        }
        Ok(text) => {
            if !text.is_ascii() && text.chars().all(|c| u32::from(c) < 0x100) {
                let latin1: Vec<u8> = text.chars().map(|c| c as u8).collect();
                v.push(("encoded as Latin-1 instead of UTF-8".into(), latin1));
            }
            if text.contains("\r\n") {
                v.push((
                    "with CRLF line ends as LF".into(),
                    text.replace("\r\n", "\n").into_bytes(),
                ));
            }
        }
    }
    v
}

/// The body parsed (keeping its key order) and written again the common ways.
fn json_variants(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let Ok(json) = serde_json::from_slice::<Json>(body) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for (how, style) in [
        ("in compact form", Style::COMPACT),
        (
            "in compact form with non-ASCII as \\u escapes",
            Style {
                ascii: true,
                ..Style::COMPACT
            },
        ),
        (
            "with \", \" and \": \" separators (Python's json.dumps)",
            Style {
                spaced: true,
                ascii: true,
                ..Style::COMPACT
            },
        ),
        (
            "with \", \" and \": \" separators, non-ASCII kept",
            Style {
                spaced: true,
                ..Style::COMPACT
            },
        ),
        (
            "pretty-printed, 2 spaces",
            Style {
                indent: Some(2),
                ..Style::COMPACT
            },
        ),
        (
            "pretty-printed, 4 spaces",
            Style {
                indent: Some(4),
                ..Style::COMPACT
            },
        ),
    ] {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, style.formatter());
        // A body that differs only by its trailing newline is the newline check's.
        if json.serialize(&mut ser).is_ok() && out != body.trim_ascii_end() {
            v.push((format!("re-serialised {how}"), out.clone()));
            out.push(b'\n');
            v.push((format!("re-serialised {how}, with a newline"), out));
        }
    }
    v
}

/// A JSON value that keeps its objects' key order.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(n)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("not a JSON number"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// How JSON is written: separators, indentation, escaping.
#[derive(Debug, Clone, Copy)]
struct Style {
    spaced: bool,
    ascii: bool,
    indent: Option<usize>,
}

impl Style {
    const COMPACT: Self = Self {
        spaced: false,
        ascii: false,
        indent: None,
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
        if let Some(indent) = self.style.indent {
            w.write_all(b"\n")?;
            w.write_all(&b" ".repeat(indent * self.depth))?;
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
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_abc123";
    const PRETTY: &str = "{\n  \"id\": \"evt_1\",\n  \"type\": \"user.online\",\n  \"created_at\": \"2024-01-01T12:00:00Z\",\n  \"data\": {\n    \"user\": {\n      \"name\": \"Juan Pérez\",\n      \"tags\": [\n        1,\n        2\n      ],\n      \"empty\": {}\n    }\n  }\n}";

    fn compact() -> Vec<u8> {
        let json: Json = serde_json::from_str(PRETTY).unwrap();
        serde_json::to_vec(&json).unwrap()
    }

    fn check(signed: &[u8], captured: &[u8], secret: &str) -> Diagnosis {
        diagnose(captured, &sign(signed, SECRET), &[secret.to_owned()])
    }

    #[test]
    fn pretty_printing_with_two_spaces_round_trips() {
        let json: Json = serde_json::from_str(PRETTY).unwrap();
        let mut out = Vec::new();
        let style = Style {
            indent: Some(2),
            ..Style::COMPACT
        };
        json.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            style.formatter(),
        ))
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), PRETTY);
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
                3 | 4 => (&body, captured),
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
