//! How JSON is written again: separators, indentation, escaping and line ends, as a
//! serde_json formatter.

/// How JSON is written: separators, indentation, escaping, line ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    pub(super) spaced: bool,
    pub(super) ascii: bool,
    pub(super) indent: Option<usize>,
    pub(super) crlf: bool,
}

impl Style {
    #[cfg(test)]
    pub(super) const COMPACT: Self = Self {
        spaced: false,
        ascii: false,
        indent: None,
        crlf: false,
    };

    pub(super) fn formatter(self) -> Styled {
        Styled {
            style: self,
            depth: 0,
            has_value: false,
        }
    }
}

/// A serde_json formatter for a [`Style`].
pub(super) struct Styled {
    pub(super) style: Style,
    pub(super) depth: usize,
    pub(super) has_value: bool,
}

impl Styled {
    pub(super) fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
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

    pub(super) fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        c: &[u8],
    ) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(c)
    }

    pub(super) fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        c: &[u8],
    ) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        self.has_value = true;
        w.write_all(c)
    }

    pub(super) fn item<W: ?Sized + std::io::Write>(
        &self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
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
