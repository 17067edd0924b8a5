//! The search for a change that makes the MAC match: the keys tried (the secrets
//! and their variants), candidate bodies signed with each, and the endings each
//! candidate is tried with.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};

use hmac::{KeyInit, Mac};

use super::{HmacSha256, PREFIX};

/// The secrets as given, then their variants: the `whsec_` prefix added or removed,
/// the white space around them trimmed.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) keys: Vec<Key>,
    /// How many of `keys` are the secrets as given (the first ones).
    pub(super) given: usize,
}

#[derive(Debug)]
pub(super) struct Key {
    /// The HMAC keyed with the secret, ready to be cloned for each body.
    pub(super) keyed: HmacSha256,
    /// What was done to the secret given ("" for the secret as given).
    pub(super) how: String,
    /// Which secret given it comes from, and how many there are.
    pub(super) of: (usize, usize),
}

impl Keys {
    pub(super) fn new(secrets: &[String]) -> Self {
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
    pub(super) fn and_secret(&self, key: usize) -> String {
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

pub(super) fn toggle_prefix(secret: &str, before: &str) -> (String, String) {
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

pub(super) fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Candidate bodies signed with every key, against the MAC that was sent.
#[derive(Debug)]
pub(super) struct Search<'k> {
    pub(super) keys: &'k Keys,
    pub(super) mac: [u8; 32],
    /// The candidate bodies tried so far (each ending counts).
    pub(super) bodies: usize,
}

impl<'k> Search<'k> {
    pub(super) fn new(keys: &'k Keys, mac: [u8; 32]) -> Self {
        Self {
            keys,
            mac,
            bodies: 0,
        }
    }

    /// Whether `body` signed with key `k` gives the MAC.
    pub(super) fn matches(&self, k: usize, body: &[u8]) -> bool {
        let mut mac = self.keys.keys[k].keyed.clone();
        mac.update(body);
        mac.finalize().into_bytes()[..] == self.mac
    }

    /// Signs the body that `write` writes with every key, once for each of its
    /// `endings`: the first ending and key that give the MAC.
    pub(super) fn try_body(
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
pub(super) struct Macs {
    pub(super) states: Vec<HmacSha256>,
    pub(super) tail: Vec<u8>,
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
pub(super) enum Endings {
    /// The captured bytes (changed or not): their trailing newline or white space
    /// removed, a newline or CRLF added. The ending as it is, unless nothing else
    /// was changed.
    Bytes { unchanged: bool },
    /// JSON written again: no newline, `\n` or `\r\n`.
    Json,
}

impl Endings {
    pub(super) fn of(self, tail: &[u8]) -> Vec<(Option<&'static str>, Cow<'_, [u8]>)> {
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
