//! Interop: signatures computed by implementations nobody here wrote — Python's
//! `hmac`, `openssl dgst`, Node's `crypto` — for random bodies (non-UTF-8, empty,
//! SHA-256 block edges, 256 KiB) and random secrets (ASCII, non-ASCII UTF-8, longer
//! than the 64-byte HMAC block). The crate must verify every one of theirs, and its
//! own `sign` must equal theirs.
//!
//! Bodies reach the tools through files and stdin, byte for byte; secrets through a
//! JSON manifest (Python, Node: the secret string, encoded as UTF-8 by the tool, as a
//! user's own code would) or as an argument (`openssl -hmac` for ASCII secrets,
//! `-macopt hexkey:` for the rest). The cases come from a fixed-seed PRNG, so a
//! failure reproduces; set `NOTMETA_INTEROP_SEED` to explore other seeds.
//!
//! A tool that is absent is reported on stderr as `SKIPPED: <tool> not found` and
//! checks nothing; when the `CI` environment variable is set, absence fails instead.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use notmeta_webhooks::{Verifier, sign};

const DEFAULT_SEED: u64 = 0x6e6f_746d_6574_6121; // "notmeta!"
const RANDOM_CASES: usize = 48;

use notmeta_test_support::Rng;

fn seed() -> u64 {
    std::env::var("NOTMETA_INTEROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Characters secrets are drawn from: printable ASCII (shell and JSON
/// metacharacters included), Latin-1, three-byte and four-byte UTF-8.
const SECRET_CHARS: &[char] = &[
    'a', 'z', 'A', 'Z', '0', '9', '_', '-', ' ', '"', '\'', '\\', '$', '`', '!', '%', '=', '/',
    'é', 'ñ', 'ü', 'ß', '€', '✓', '日', '本', '𝄞', '🔐',
];

fn random_secret(rng: &mut Rng) -> String {
    let len = 1 + rng.below(90); // up to 90 chars: many keys exceed the 64-byte block
    let mut secret = String::from(if rng.below(2) == 0 { "whsec_" } else { "" });
    while secret.chars().count() < len {
        // Mostly ASCII letters and digits, sometimes anything in SECRET_CHARS.
        let c = if rng.below(3) == 0 {
            SECRET_CHARS[rng.below(SECRET_CHARS.len())]
        } else {
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.below(36)])
        };
        secret.push(c);
    }
    secret
}

fn random_body(rng: &mut Rng, i: usize) -> Vec<u8> {
    match i % 6 {
        // Arbitrary bytes: almost never UTF-8.
        0 | 1 => {
            let len = rng.below(2048);
            rng.bytes(len)
        }
        // JSON-like UTF-8 text with non-ASCII characters.
        2 | 3 => {
            let n = rng.below(40);
            let text: String = (0..n)
                .map(|_| SECRET_CHARS[rng.below(SECRET_CHARS.len())])
                .collect();
            format!(r#"{{"id":"evt_{i}","type":"message.received","data":{{"text":"{text}"}}}}"#)
                .into_bytes()
        }
        // Lengths around SHA-256's 64-byte block and its padding boundary (55/56).
        4 => {
            let len = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129][rng.below(12)];
            rng.bytes(len)
        }
        // Large: 256 KiB, give or take a few bytes.
        _ => {
            let len = 256 * 1024 - 3 + rng.below(7);
            rng.bytes(len)
        }
    }
}

struct Case {
    body: Vec<u8>,
    secret: String,
    body_path: PathBuf,
}

/// Fixed edge cases first, then `RANDOM_CASES` random ones.
fn cases(dir: &Path) -> Vec<Case> {
    let mut rng = Rng(seed() | 1);
    let mut raw: Vec<(Vec<u8>, String)> = vec![
        (Vec::new(), "tu_secret_webhook".into()),
        (Vec::new(), "sécret-ñ-✓".into()),
        (vec![0u8; 1], "k".into()),
        (
            vec![0xff, 0xfe, 0x00, 0x80, b'\n', b'\r'],
            "whsec_abc123".into(),
        ),
        (b"{}".to_vec(), "x".repeat(64)),  // key exactly one block
        (b"{}".to_vec(), "x".repeat(65)),  // key hashed first
        (b"{}".to_vec(), "🔐".repeat(40)), // 160-byte non-ASCII key
        (b"{}".to_vec(), "-hmac".into()),  // looks like an option
        (b"{}".to_vec(), " leading and trailing spaces ".into()),
        (b"{}".to_vec(), r#"quote" back\slash $HOME `id`"#.into()),
        (vec![b'a'; 256 * 1024], "whsec_large".into()),
        (
            notmeta_test_support::fixtures::example_event("evt_6.message.received.json"),
            "tu_secret_webhook".into(),
        ),
    ];
    for i in 0..RANDOM_CASES {
        let body = random_body(&mut rng, i);
        let secret = random_secret(&mut rng);
        raw.push((body, secret));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, (body, secret))| {
            let body_path = dir.join(format!("body-{i}.bin"));
            fs::write(&body_path, &body).unwrap();
            Case {
                body,
                secret,
                body_path,
            }
        })
        .collect()
}

/// A scratch directory unique to this test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("notmeta-interop-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether `program` runs; if not, skips loudly (or fails under CI).
fn tool_present(program: &str, version_arg: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} not found, and CI is set: the interop tests need it"
        );
        // Written to the process's stderr directly, so the test harness's output
        // capture does not hide it.
        let _ = writeln!(
            std::io::stderr(),
            "\n==================================================\n\
             SKIPPED: {program} not found; its interop cases were NOT checked\n\
             =================================================="
        );
    }
    found
}

/// Writes the manifest `[{"body": path, "secret": string}, …]` the scripts read.
fn manifest(dir: &Path, cases: &[Case]) -> PathBuf {
    let entries: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| serde_json::json!({ "body": c.body_path, "secret": c.secret }))
        .collect();
    let path = dir.join("manifest.json");
    fs::write(&path, serde_json::to_vec(&entries).unwrap()).unwrap();
    path
}

/// Checks one foreign header against the crate, for case `i`.
fn check(tool: &str, i: usize, case: &Case, theirs: &str) {
    let context = format!(
        "{tool}, case {i} (seed {}), body {} bytes, secret {:?}",
        seed(),
        case.body.len(),
        case.secret
    );
    assert!(
        theirs.len() == 7 + 64 && theirs.starts_with("sha256="),
        "{context}: unexpected output {theirs:?}"
    );
    assert_eq!(sign(&case.body, &case.secret), theirs, "{context}: sign");
    let verifier = Verifier::new(&case.secret).unwrap();
    let payload = verifier
        .verify(&case.body, [theirs])
        .unwrap_or_else(|e| panic!("{context}: verify: {e}"));
    assert_eq!(payload.body(), case.body.as_slice());
    // Their digits in upper case are the same MAC.
    let upper = format!("sha256={}", theirs[7..].to_ascii_uppercase());
    assert!(verifier.verify(&case.body, [&upper]).is_ok(), "{context}");
}

/// Runs a script that reads the manifest and prints one `sha256=<hex>` line per case.
fn run_batch(program: &str, args: &[&str], manifest: &Path) -> Vec<String> {
    let output = Command::new(program)
        .args(args)
        .env("NOTMETA_MANIFEST", manifest)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

const PYTHON: &str = r#"
import hashlib, hmac, json, os
for case in json.load(open(os.environ["NOTMETA_MANIFEST"], encoding="utf-8")):
    body = open(case["body"], "rb").read()
    mac = hmac.new(case["secret"].encode("utf-8"), body, hashlib.sha256)
    print("sha256=" + mac.hexdigest())
"#;

const NODE: &str = r#"
const crypto = require("crypto");
const fs = require("fs");
const cases = JSON.parse(fs.readFileSync(process.env.NOTMETA_MANIFEST, "utf8"));
for (const c of cases) {
  const body = fs.readFileSync(c.body);
  const mac = crypto.createHmac("sha256", Buffer.from(c.secret, "utf8")).update(body).digest("hex");
  console.log("sha256=" + mac);
}
"#;

#[test]
fn python_hmac_signatures_verify_and_match_sign() {
    if !tool_present("python3", "--version") {
        return;
    }
    let scratch = Scratch::new("python");
    let cases = cases(&scratch.0);
    let lines = run_batch("python3", &["-c", PYTHON], &manifest(&scratch.0, &cases));
    assert_eq!(lines.len(), cases.len(), "one line per case");
    for (i, (case, theirs)) in cases.iter().zip(&lines).enumerate() {
        check("python3 hmac", i, case, theirs);
    }
    eprintln!("python3 hmac: {} cases agree", cases.len());
}

#[test]
fn node_crypto_signatures_verify_and_match_sign() {
    if !tool_present("node", "--version") {
        return;
    }
    let scratch = Scratch::new("node");
    let cases = cases(&scratch.0);
    let lines = run_batch("node", &["-e", NODE], &manifest(&scratch.0, &cases));
    assert_eq!(lines.len(), cases.len(), "one line per case");
    for (i, (case, theirs)) in cases.iter().zip(&lines).enumerate() {
        check("node crypto", i, case, theirs);
    }
    eprintln!("node crypto: {} cases agree", cases.len());
}

/// The 64 hex digits in openssl's output, whatever its version's format.
fn openssl_digest(stdout: &str) -> String {
    let hex = stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .rfind(|t| t.len() == 64)
        .unwrap_or_else(|| panic!("no digest in openssl output {stdout:?}"));
    format!("sha256={}", hex.to_ascii_lowercase())
}

#[test]
fn openssl_signatures_verify_and_match_sign() {
    if !tool_present("openssl", "version") {
        return;
    }
    let scratch = Scratch::new("openssl");
    let cases = cases(&scratch.0);
    let (mut as_argument, mut as_hexkey) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", "-sha256"]);
        // `-hmac` takes the key as an argument string; keep it to printable ASCII and
        // give every other key (non-ASCII) in hex.
        if case.secret.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            cmd.args(["-hmac", &case.secret]);
            as_argument += 1;
        } else {
            cmd.args(["-mac", "HMAC", "-macopt"])
                .arg(format!("hexkey:{}", hex::encode(case.secret.as_bytes())));
            as_hexkey += 1;
        }
        let output = cmd
            .stdin(fs::File::open(&case.body_path).unwrap())
            .output()
            .expect("running openssl");
        assert!(
            output.status.success(),
            "openssl failed on case {i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let theirs = openssl_digest(&String::from_utf8_lossy(&output.stdout));
        check("openssl dgst", i, case, &theirs);
    }
    assert!(
        as_argument > 0 && as_hexkey > 0,
        "both key forms are exercised"
    );
    eprintln!(
        "openssl dgst: {} cases agree ({as_argument} with -hmac, {as_hexkey} with hexkey)",
        cases.len()
    );
}

#[test]
fn the_cases_cover_what_they_claim() {
    let scratch = Scratch::new("coverage");
    let cases = cases(&scratch.0);
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    assert!(count(&|c| c.body.is_empty()) >= 2, "empty bodies");
    assert!(
        count(&|c| std::str::from_utf8(&c.body).is_err()) >= 10,
        "non-UTF-8"
    );
    assert!(
        count(&|c| c.body.len() >= 256 * 1024 - 3) >= 5,
        "large bodies"
    );
    assert!(count(&|c| !c.secret.is_ascii()) >= 10, "non-ASCII secrets");
    assert!(
        count(&|c| c.secret.len() > 64) >= 5,
        "secrets over one block"
    );
}

#[test]
fn the_tools_are_present_under_ci() {
    // Under CI a missing tool fails here even if its own test is filtered out.
    for (program, arg) in [
        ("python3", "--version"),
        ("openssl", "version"),
        ("node", "--version"),
    ] {
        tool_present(program, arg);
    }
}
