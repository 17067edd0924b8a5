//! Changes to the captured bytes: a byte-order mark, line ends, the encoding.

use std::borrow::Cow;

use super::search::{Endings, Search};
use super::{BOM, Cause, Found};

/// The captured bytes changed back: without a byte-order mark, with other line
/// ends, in another encoding; each with every [`Endings::Bytes`].
pub(super) fn byte_variants(body: &[u8], search: &mut Search) -> Option<Found> {
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
pub(super) enum LineEnds {
    Kept,
    CrlfToLf,
    LfToCrlf,
}

impl LineEnds {
    pub(super) const ALL: [Self; 3] = [Self::Kept, Self::CrlfToLf, Self::LfToCrlf];

    pub(super) fn applies(self, body: &[u8]) -> bool {
        match self {
            Self::Kept => true,
            Self::CrlfToLf => body.windows(2).any(|w| w == b"\r\n"),
            Self::LfToCrlf => bare_lfs(body).next().is_some(),
        }
    }

    pub(super) fn apply(self, body: &[u8]) -> Cow<'_, [u8]> {
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

    pub(super) fn how(self) -> Option<&'static str> {
        match self {
            Self::Kept => None,
            Self::CrlfToLf => Some("with CRLF line ends as LF"),
            Self::LfToCrlf => Some("with LF line ends as CRLF"),
        }
    }
}

/// The positions of the line feeds with no carriage return before them.
pub(super) fn bare_lfs(body: &[u8]) -> impl Iterator<Item = usize> + '_ {
    body.iter()
        .enumerate()
        .filter(move |&(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
        .map(|(i, _)| i)
}

/// The bytes as they are, Latin-1 read and written as UTF-8, or UTF-8 written as
/// Latin-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Kept,
    Latin1ToUtf8,
    Utf8ToLatin1,
}

impl Encoding {
    pub(super) const ALL: [Self; 3] = [Self::Kept, Self::Latin1ToUtf8, Self::Utf8ToLatin1];

    pub(super) fn applies(self, body: &[u8]) -> bool {
        match (self, std::str::from_utf8(body)) {
            (Self::Kept, _) => true,
            (Self::Latin1ToUtf8, text) => text.is_err(),
            (Self::Utf8ToLatin1, Ok(text)) => {
                !text.is_ascii() && text.chars().all(|c| u32::from(c) < 0x100)
            }
            (Self::Utf8ToLatin1, Err(_)) => false,
        }
    }

    pub(super) fn apply(self, body: &[u8]) -> Cow<'_, [u8]> {
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

    pub(super) fn how(self) -> Option<&'static str> {
        match self {
            Self::Kept => None,
            Self::Latin1ToUtf8 => Some("read as Latin-1 and encoded as UTF-8"),
            Self::Utf8ToLatin1 => Some("encoded as Latin-1 instead of UTF-8"),
        }
    }
}
