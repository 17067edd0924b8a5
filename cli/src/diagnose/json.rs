//! The body as JSON, written again the common ways without building a tree: its
//! brackets indexed in one pass, then each value read and written as it is met.

use std::io;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::search::{Endings, Search};
use super::style::Style;
use super::{BOM, Cause, Found};

/// The body parsed (keeping its key order) and written again the common ways: each
/// layout, with non-ASCII kept or escaped, keys in their order or sorted (as a
/// `serde_json::Value` or Python's `sort_keys` writes them), LF or CRLF line ends;
/// each with every [`Endings::Json`].
pub(super) fn json_variants(json: Lazy<'_>, search: &mut Search) -> Option<Found> {
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
pub(super) const LAYOUTS: [(&str, bool, Option<usize>); 4] = [
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
pub(super) const MAX_DEPTH: usize = 128;

/// Why a body is not read as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotRead {
    NotJson,
    TooDeep,
}

/// A body's JSON text (validated), with where each array and object ends, found in
/// one pass: reading a value's extent is then a look-up, not a scan.
#[derive(Debug)]
pub(super) struct Json<'a> {
    pub(super) text: &'a str,
    pub(super) ends: Ends,
}

/// Where each array and object of a text ends: the offset of its closing bracket,
/// by the offset of its opening one.
#[derive(Debug)]
pub(super) struct Ends {
    /// The address of the text's first byte (offsets count from it).
    pub(super) base: usize,
    pub(super) close: std::collections::HashMap<usize, usize>,
}

impl Ends {
    /// The length of the array or object `text` starts with (`text` is a part of
    /// the indexed text).
    pub(super) fn len_of(&self, text: &str) -> Option<usize> {
        let start = (text.as_ptr() as usize).checked_sub(self.base)?;
        self.close.get(&start).map(|end| end - start + 1)
    }
}

impl<'a> Json<'a> {
    /// The body as JSON (a byte-order mark left out), if it is valid JSON nested at
    /// most [`MAX_DEPTH`] deep.
    pub(super) fn parse(body: &'a [u8]) -> Result<Self, NotRead> {
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

    pub(super) fn lazy(&self) -> Lazy<'_> {
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
pub(super) fn brackets(text: &str) -> Result<std::collections::HashMap<usize, usize>, NotRead> {
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
pub(super) fn string_end(bytes: &[u8], start: usize) -> usize {
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
pub(super) struct Lazy<'a> {
    pub(super) text: &'a str,
    pub(super) sorted: bool,
    pub(super) ends: &'a Ends,
}

impl<'a> Lazy<'a> {
    pub(super) fn sorted(self, sorted: bool) -> Self {
        Self { sorted, ..self }
    }

    /// Whether a string or key may hold something other than ASCII (a `\u`
    /// escape may).
    pub(super) fn is_ascii(self) -> bool {
        self.text.is_ascii() && !self.text.contains("\\u")
    }

    /// Whether every object's keys are in sorted order.
    pub(super) fn is_sorted(self) -> bool {
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
pub(super) const JSON_SPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// A key's text (a JSON string), decoded.
pub(super) fn decode_key(text: &str) -> String {
    // The text was validated: it is a JSON string.
    serde_json::from_str(text).unwrap_or_default()
}

/// The items of an array's text, or the members of an object's text (a key's text
/// and a value's), read one at a time.
pub(super) struct Members<'a> {
    pub(super) rest: &'a str,
    pub(super) object: bool,
    pub(super) ends: &'a Ends,
}

impl<'a> Members<'a> {
    /// `text` is an array or an object, validated, a part of the text `ends`
    /// indexes.
    pub(super) fn of(text: &'a str, ends: &'a Ends) -> Self {
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
pub(super) fn split_value<'t>(text: &'t str, ends: &Ends) -> Option<(&'t str, &'t str)> {
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
