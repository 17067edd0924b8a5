//! `notmeta-webhooks verify`: the built tool run on captured bodies written to a
//! temporary directory, as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use notmeta_webhooks::testing::{documented, sample};
use notmeta_webhooks::{DEFAULT_MAX_BODY_SIZE, EventType, sign};
use serde_json::{Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_notmeta-webhooks");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A temporary directory for one test's files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("notmeta-cli-verify-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, body: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the tool with `args`, and NOTMETA_WEBHOOK_SECRET set to `env_secret` or
/// unset.
fn run_with_env(args: &[&str], env_secret: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("NOTMETA_WEBHOOK_SECRET")
        .stdin(Stdio::null());
    if let Some(secret) = env_secret {
        command.env("NOTMETA_WEBHOOK_SECRET", secret);
    }
    command.output().unwrap()
}

/// `verify FILE --header HEADER --secret SECRET`: its exit code and output.
fn verify(file: &str, header: &str, secret: &str) -> (Option<i32>, String) {
    let out = run_with_env(
        &["verify", file, "--header", header, "--secret", secret],
        None,
    );
    (out.status.code(), text(&out))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `verify` said no (exit 1), with each of `expected` in its output,
/// and did not put the failure on the secret.
fn assert_explained((code, out): (Option<i32>, String), expected: &[&str]) {
    assert_eq!(code, Some(1), "{out}");
    for expected in expected {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    secret_not_blamed(&out);
}

/// Asserts that the output does not put the failure on the secret.
fn secret_not_blamed(output: &str) {
    for blame in [
        "not this webhook's",
        "secret is wrong",
        "secret is most likely",
    ] {
        assert!(!output.contains(blame), "{blame:?} in:\n{output}");
    }
}

/// The documented message.received event: pretty-printed, 2 spaces, LF line ends,
/// no final newline.
fn pretty() -> &'static str {
    documented(EventType::MessageReceived).trim_end()
}

/// [`pretty`] with CRLF line ends.
fn pretty_crlf() -> String {
    pretty().replace('\n', "\r\n")
}

/// `value` with every object's keys sorted, whatever order `serde_json::Map` keeps.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[test]
fn a_valid_request_is_valid() {
    let dir = Dir::new("valid");
    let body = sample(EventType::MessageReceived).text("¿qué tal?").body();
    let file = dir.file("body.json", &body);
    let (code, out) = verify(&file, &sign(&body, SECRET), SECRET);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("valid: a receiver with this secret accepts the request"),
        "{out}"
    );
}

#[test]
fn a_body_over_the_limit_with_the_right_mac_is_the_size_not_the_secret() {
    let dir = Dir::new("over-limit");
    let body = sample(EventType::MessageReceived)
        .text(&"Hola, necesito ayuda. ".repeat(DEFAULT_MAX_BODY_SIZE / 20))
        .body();
    assert!(body.len() > DEFAULT_MAX_BODY_SIZE);
    let file = dir.file("big.json", &body);
    assert_explained(
        verify(&file, &sign(&body, SECRET), SECRET),
        &[&format!(
            "the signature is valid, but the body is {} bytes, over the 1 MiB a receiver accepts by default: it answers 413",
            body.len()
        )],
    );
}

#[test]
fn crlf_line_ends_and_a_final_crlf_are_found_together() {
    let dir = Dir::new("crlf");
    // NotMeta signed the pretty-printed event; the capture was saved with CRLF line
    // ends and a final CRLF.
    let signed = pretty();
    let file = dir.file("crlf.json", format!("{}\r\n", pretty_crlf()).as_bytes());
    assert_explained(
        verify(&file, &sign(signed.as_bytes(), SECRET), SECRET),
        &[
            "the body was changed: it matches with CRLF line ends as LF, with its trailing newline removed.",
        ],
    );
}

#[test]
fn pretty_printing_with_crlf_line_ends_is_found() {
    let dir = Dir::new("pretty-crlf");
    // Signed pretty-printed (2 spaces) with CRLF line ends and a final CRLF; the
    // capture was parsed and written again without the white space.
    let signed = format!("{}\r\n", pretty_crlf());
    let flattened: String = signed.lines().map(str::trim).collect();
    let file = dir.file("flat.json", flattened.as_bytes());
    assert_explained(
        verify(&file, &sign(signed.as_bytes(), SECRET), SECRET),
        &[
            "it matches re-serialised pretty-printed, 2 spaces, with CRLF line ends, with a trailing CRLF.",
        ],
    );
}

#[test]
fn keys_sorted_by_a_serialisation_are_found() {
    let dir = Dir::new("sorted");
    // Signed with its keys sorted (a `serde_json::Value` written again, pretty, with
    // a newline); captured with the keys in the event's documented order.
    let captured = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/events/evt_6.message.received.json"
    ))
    .unwrap();
    let value: Value = serde_json::from_slice(&captured).unwrap();
    let signed = format!(
        "{}\n",
        serde_json::to_string_pretty(&sorted(&value)).unwrap()
    );
    assert!(
        signed.starts_with("{\n  \"created_at\"") && !captured.starts_with(b"{\n  \"created_at\""),
        "{signed}"
    );
    let file = dir.file("evt_6.json", &captured);
    assert_explained(
        verify(&file, &sign(signed.as_bytes(), SECRET), SECRET),
        &[
            "it matches re-serialised pretty-printed, 2 spaces, keys sorted, with a trailing newline.",
        ],
    );
}

#[test]
fn nothing_matching_blames_neither_the_secret_nor_the_body() {
    let dir = Dir::new("nothing");
    let body = sample(EventType::MessageReceived).body();
    let file = dir.file("body.json", &body);
    assert_explained(
        verify(&file, &sign(&body, "whsec_another_webhook"), SECRET),
        &[
            "neither the secret nor the body can be confirmed",
            "this webhook's own, exactly as NotMeta showed it when the webhook was created",
            "--secret for each",
            "captured byte for byte as it arrived, before any framework parsed it",
        ],
    );
}

#[test]
fn the_secret_can_come_from_the_environment() {
    let dir = Dir::new("env");
    let body = sample(EventType::UserOnline).body();
    let file = dir.file("body.json", &body);
    let header = sign(&body, SECRET);
    let out = run_with_env(&["verify", &file, "--header", &header], Some(SECRET));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid"), "{}", text(&out));
    // The environment's secret is the one used: another one does not verify.
    let out = run_with_env(&["verify", &file, "--header", &header], Some("whsec_other"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn an_empty_secret_is_an_error_of_use() {
    let dir = Dir::new("empty-secret");
    let body = sample(EventType::UserOnline).body();
    let file = dir.file("body.json", &body);
    let header = sign(&body, SECRET);
    let out = run_with_env(
        &["verify", &file, "--header", &header, "--secret", ""],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("the secret is empty"), "{}", text(&out));
    let out = run_with_env(&["verify", &file, "--header", &header], Some(""));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_file_over_16_mib_is_refused_at_once() {
    let dir = Dir::new("huge");
    let file = dir.file("huge.json", &vec![b' '; 16 * 1024 * 1024 + 1]);
    let started = Instant::now();
    let out = run_with_env(
        &[
            "verify",
            &file,
            "--header",
            &sign(b"{}", SECRET),
            "--secret",
            SECRET,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("larger than 16 MiB"), "{}", text(&out));
    // Refused before any MAC is computed: a generous bound, far below a search.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// An event whose data holds `depth` arrays, each in the one before it, in compact
/// form or pretty-printed with 2 spaces (written here: serde_json reads no deeper
/// than 127 levels).
fn nested(depth: usize, pretty: bool) -> String {
    fn arrays(depth: usize, indent: usize) -> String {
        if depth == 1 {
            return "[]".to_owned();
        }
        let inner = " ".repeat(indent + 2);
        let outer = " ".repeat(indent);
        format!("[\n{inner}{}\n{outer}]", arrays(depth - 1, indent + 2))
    }
    if pretty {
        format!(
            "{{\n  \"id\": \"evt_1\",\n  \"type\": \"user.online\",\n  \"created_at\": \"2024-01-01T00:00:00Z\",\n  \"data\": {{\n    \"a\": {}\n  }}\n}}",
            arrays(depth, 4)
        )
    } else {
        format!(
            r#"{{"id":"evt_1","type":"user.online","created_at":"2024-01-01T00:00:00Z","data":{{"a":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }
}

#[test]
fn deep_nesting_is_read_to_128_levels_and_no_further() {
    let dir = Dir::new("deep");
    // 128 levels in all (the event, its data, 126 arrays): signed compact, captured
    // pretty-printed, written again, and found.
    let signed = nested(126, false);
    let captured = dir.file("126.json", nested(126, true).as_bytes());
    assert_explained(
        verify(&captured, &sign(signed.as_bytes(), SECRET), SECRET),
        &["MATCH re-serialised in compact form"],
    );
    // 129 levels: not written again, and said so.
    let captured = dir.file("127.json", nested(127, false).as_bytes());
    assert_explained(
        verify(&captured, &sign(b"other", SECRET), SECRET),
        &["not tried: nested deeper than 128"],
    );
    // 10,000 levels (20 KB): no stack overflow, no time spent on each level.
    let deep = nested(10_000, false);
    let captured = dir.file("10000.json", deep.as_bytes());
    let started = Instant::now();
    assert_explained(
        verify(&captured, &sign(b"other", SECRET), SECRET),
        &["not tried: nested deeper than 128"],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn json_that_cannot_be_written_again_is_not_claimed_tried() {
    let dir = Dir::new("unwritable");
    for (name, body) in [
        (
            "number.json",
            r#"{"id":"evt_1","type":"user.online","n":1e999999}"#,
        ),
        (
            "surrogate.json",
            r#"{"id":"evt_1","type":"user.online","s":"\ud800"}"#,
        ),
    ] {
        let captured = dir.file(name, body.as_bytes());
        let (code, out) = verify(&captured, &sign(b"other", SECRET), SECRET);
        assert_eq!(code, Some(1), "{out}");
        let row = out
            .lines()
            .find(|line| line.starts_with("body re-serialised as JSON"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(row.contains("not tried: serde_json cannot read"), "{row}");
        assert!(!out.contains("0 bodies"), "{out}");
    }
}
