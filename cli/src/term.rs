//! What the tool prints and reads: text from receivers and from NotMeta made safe
//! for a terminal, input files read with a size cap, secrets that no `{:?}` shows.

use std::fmt;
use std::io::{Read, Write as _};
use std::path::Path;
use std::process::ExitCode;

/// The largest body the tool reads from a file or standard input: 16 MiB. NotMeta's
/// events are a few KiB, and a receiver refuses more than 1 MiB by default.
pub(crate) const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// `text` with every character a terminal would act on shown as an escape instead:
/// control characters (escape sequences, carriage returns, bells, C1 controls) and the
/// bidirectional overrides that reorder what is shown. Line feeds and tabs are kept
/// when `lines` is true (whole messages), escaped otherwise (one table cell).
pub(crate) fn printable(text: &str, lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep = !acts_on_terminal(c) || (lines && matches!(c, '\n' | '\t'));
        if keep {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Control characters and Unicode's bidirectional formatting characters.
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` to standard output, made [`printable`]. A reader that has gone away
/// (`… | head -1`, `… | grep -q`) is not an error: the command still finishes its
/// work and exits with its own code, and what is left unread is dropped. Any other
/// write failure (a full disk) is an error of use, exit 2.
pub(crate) fn out(text: impl fmt::Display) -> Result<(), String> {
    let text = printable(&text.to_string(), true);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes one line to standard error, made [`printable`]. A closed standard error
/// cannot be reported anywhere; the exit code still is.
pub(crate) fn note(line: impl fmt::Display) {
    let line = printable(&line.to_string(), true);
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reports an error of use (`error: …` on standard error) and gives exit code 2.
pub(crate) fn fail(message: &str) -> ExitCode {
    note(format_args!("error: {message}"));
    ExitCode::from(2)
}

/// Reads the file at `path`, at most [`MAX_INPUT`] bytes.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, String> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    read_capped(file, &what)
}

/// Reads standard input, at most [`MAX_INPUT`] bytes.
pub(crate) fn read_stdin() -> Result<Vec<u8>, String> {
    read_capped(std::io::stdin().lock(), "standard input")
}

fn read_capped(reader: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    reader
        .take(MAX_INPUT + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if body.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{what} is larger than {} MiB, the most this tool reads (NotMeta's events are a few KiB; a receiver refuses more than 1 MiB by default)",
            MAX_INPUT / (1024 * 1024)
        ));
    }
    Ok(body)
}

/// A secret given on the command line or in the environment: never empty, never
/// shown by `{:?}`.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl SecretArg {
    /// The secret's text, to sign or verify with.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The clap value parser: an empty secret is an error of use (exit 2), never an
    /// empty HMAC key.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_acts_on_is_escaped() {
        assert_eq!(
            printable("ok\x1b[2J\r\u{7}\u{9b}x\u{202E}", true),
            "ok\\u{1b}[2J\\r\\u{7}\\u{9b}x\\u{202e}"
        );
        assert_eq!(printable("a\nb\tc", true), "a\nb\tc");
        assert_eq!(printable("a\nb\tc", false), "a\\nb\\tc");
        assert_eq!(printable("Juan Pérez 🙂", false), "Juan Pérez 🙂");
    }

    #[test]
    fn secrets_are_never_empty_nor_shown() {
        assert!(SecretArg::parse("").is_err());
        let secret = SecretArg::parse("whsec_x").unwrap();
        assert_eq!(secret.expose(), "whsec_x");
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn input_is_capped() {
        let big = std::io::repeat(b'x');
        let e = read_capped(big, "standard input").unwrap_err();
        assert!(e.contains("larger than 16 MiB"), "{e}");
        assert_eq!(read_capped(&b"{}"[..], "x").unwrap(), b"{}");
    }
}
