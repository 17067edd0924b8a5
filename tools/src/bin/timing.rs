//! Timing-safety evidence: a dudect-style test (Reparaz, Balasch, Verbauwhede, "Dude,
//! is my code constant time?", 2017) of signature verification.
//!
//! Run with `cargo run --release -p notmeta-tools --bin timing` (optionally
//! `-- SAMPLES`, default 1,000,000 per test). On a quiet machine it takes well under a
//! minute.
//!
//! Method: two classes of input that differ only where a leaky comparison would
//! leak — the same body, the same secret, a header whose MAC is wrong in its **first**
//! byte (class A) or in its **last** byte (class B). Classes are interleaved in a
//! random order (so drift in the machine's speed hits both alike), each call is timed
//! with `std::time::Instant`, and Welch's t-statistic compares the two timing
//! distributions. As dudect does, the test is repeated on the measurements cropped
//! above a series of percentiles (which removes interrupts and other one-sided
//! outliers) and the largest |t| is reported. |t| < 4.5 means no evidence of a timing
//! difference at that sample size; |t| ≥ 4.5 means the two classes are told apart.
//!
//! Three controls run with it:
//!
//! - **leak control**: the same measurement against a deliberately leaky verifier
//!   that compares hex strings with `==` (which stops at the first differing byte);
//!   its large |t| shows that the harness can see a leak of that kind, so a small |t|
//!   for the crate is evidence, not a harness that sees nothing;
//! - **null control**: one input against a copy of itself; its |t| is the machine's
//!   noise, and a run where it reaches 4.5 proves nothing either way;
//! - **input control**: a MAC wrong in the same byte by a digit or by a letter; hex
//!   decoding does different work for the two, so |t| is large. That time depends on
//!   the received header only, which its sender knows, never on the expected MAC;
//!   it is why the two real classes keep the true MAC's pattern of digits and
//!   letters.

use std::hint::black_box;
use std::time::Instant;

use notmeta_webhooks::{Verifier, sign};

const SECRET: &str = "whsec_timing_test_secret";
const BODY: &[u8] = br#"{"id":"evt_123456789","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_123456789","conversation_id":"conv_123456789","from":"1234567890","to":"0987654321","type":"text","text":"Hola, necesito ayuda","timestamp":"2024-01-01T12:00:00Z"},"conversation":{"id":"conv_123456789","status":"open","assigned_to":null,"created_at":"2024-01-01T11:55:00Z"}}}"#;

/// |t| at or above this is evidence of a timing difference (the dudect paper's value).
const THRESHOLD: f64 = 4.5;

/// Number of cropping percentiles, as in dudect.
const PERCENTILES: usize = 100;

use notmeta_test_support::Rng;

/// Welford's running mean and variance.
#[derive(Default, Clone, Copy)]
struct Stats {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Stats {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let delta = x - self.mean;
        self.mean += delta / self.n;
        self.m2 += delta * (x - self.mean);
    }

    fn variance(&self) -> f64 {
        if self.n < 2.0 {
            0.0
        } else {
            self.m2 / (self.n - 1.0)
        }
    }
}

/// Welch's t-statistic of two samples.
fn welch_t(a: &Stats, b: &Stats) -> f64 {
    let se = (a.variance() / a.n + b.variance() / b.n).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (a.mean - b.mean) / se
    }
}

struct Outcome {
    mean_a: f64,
    mean_b: f64,
    n_a: usize,
    n_b: usize,
    /// Largest |t| over the uncropped test and every cropped one, signed.
    max_t: f64,
    /// Which test gave it: `None` for the uncropped data, else the cropping
    /// percentile.
    at: Option<f64>,
    /// |t| of the uncropped data alone.
    raw_t: f64,
}

/// Times `f` on the two inputs, interleaved at random, and applies the dudect tests.
fn measure(samples: usize, seed: u64, inputs: [&str; 2], f: &dyn Fn(&str) -> bool) -> Outcome {
    let mut rng = Rng(seed);
    let classes: Vec<usize> = (0..samples).map(|_| (rng.next() >> 63) as usize).collect();
    // Warm up caches, branch predictors and the CPU's clock.
    for &c in classes.iter().take(samples / 10) {
        black_box(f(black_box(inputs[c])));
    }
    let mut times = Vec::with_capacity(samples);
    for &c in &classes {
        let input = black_box(inputs[c]);
        let start = Instant::now();
        let verdict = f(input);
        let elapsed = start.elapsed();
        black_box(verdict);
        times.push(elapsed.as_nanos() as f64);
    }

    // dudect's cropping thresholds: percentiles 1 - 0.5^(10 (k+1) / 100) of all
    // measurements, from about the 6.7th up to nearly the 100th.
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let thresholds: Vec<f64> = (0..PERCENTILES)
        .map(|k| {
            let p = 1.0 - 0.5f64.powf(10.0 * (k as f64 + 1.0) / PERCENTILES as f64);
            sorted[((p * samples as f64) as usize).min(samples - 1)]
        })
        .collect();

    let mut raw = [Stats::default(); 2];
    let mut cropped = vec![[Stats::default(); 2]; PERCENTILES];
    for (&c, &t) in classes.iter().zip(&times) {
        raw[c].push(t);
        for (stats, &limit) in cropped.iter_mut().zip(&thresholds) {
            if t < limit {
                stats[c].push(t);
            }
        }
    }
    let raw_t = welch_t(&raw[0], &raw[1]);
    let (mut max_t, mut at) = (raw_t, None);
    for (k, stats) in cropped.iter().enumerate() {
        // A test needs enough data in both classes to mean anything.
        if stats[0].n < 1000.0 || stats[1].n < 1000.0 {
            continue;
        }
        let t = welch_t(&stats[0], &stats[1]);
        if t.abs() > max_t.abs() {
            max_t = t;
            at = Some(100.0 * (1.0 - 0.5f64.powf(10.0 * (k as f64 + 1.0) / PERCENTILES as f64)));
        }
    }
    Outcome {
        mean_a: raw[0].mean,
        mean_b: raw[1].mean,
        n_a: raw[0].n as usize,
        n_b: raw[1].n as usize,
        max_t,
        at,
        raw_t,
    }
}

/// The header for `BODY` with hex digit `position` (0..64) of its MAC changed.
///
/// A digit is replaced by a digit and a letter by a letter, so both classes hold
/// the same pattern of digits and letters as the true MAC: hex decoding branches on
/// the kind of each character (a property of the attacker's own input, not of the
/// expected MAC), and this keeps that work identical, so that only the position of
/// the wrong byte differs. The last measurement shows why this matters.
fn wrong_at(position: usize) -> String {
    let mac = sign(BODY, SECRET);
    let replacement = match mac.as_bytes()["sha256=".len() + position] {
        b'0' => b'1',
        b'1'..=b'9' => b'0',
        b'a' => b'b',
        _ => b'a',
    };
    replace_at(position, replacement)
}

/// The header for `BODY` with hex digit `position` of its MAC replaced by `with`.
fn replace_at(position: usize, with: u8) -> String {
    let mut header = sign(BODY, SECRET).into_bytes();
    header["sha256=".len() + position] = with;
    String::from_utf8(header).unwrap()
}

fn report(name: &str, labels: [&str; 2], o: &Outcome) {
    let verdict = if o.max_t.abs() < THRESHOLD {
        "no evidence of a timing difference"
    } else {
        "TIMING DIFFERENCE DETECTED"
    };
    let at =
        o.at.map_or_else(|| "uncropped".to_owned(), |p| format!("cropped at p{p:.1}"));
    println!("{name}");
    println!(
        "  mean ns: {} {:.1} (n = {}), {} {:.1} (n = {})",
        labels[0], o.mean_a, o.n_a, labels[1], o.mean_b, o.n_b
    );
    println!(
        "  Welch t: uncropped {:+.2}; max |t| over {} tests {:+.2} ({at})",
        o.raw_t,
        PERCENTILES + 1,
        o.max_t
    );
    println!(
        "  => |t| {} {THRESHOLD}: {verdict}",
        if o.max_t.abs() < THRESHOLD { "<" } else { ">=" }
    );
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .map(|s| {
            s.replace('_', "")
                .parse()
                .expect("SAMPLES must be a number")
        })
        .unwrap_or(1_000_000);
    assert!(samples >= 10_000, "use at least 10,000 samples");

    let first = wrong_at(0);
    let last = wrong_at(63);
    let verifier = Verifier::new(SECRET).unwrap();
    assert!(verifier.verify(BODY, [&first]).is_err() && verifier.verify(BODY, [&last]).is_err());

    // The control: the same work (a verification: one HMAC from a pre-keyed secret),
    // then `==` on the hex strings, which returns at the first byte that differs.
    let right = sign(BODY, SECRET);
    let leaky = |header: &str| {
        let _ = verifier.verify(BODY, [header]);
        right == header
    };
    assert!(!leaky(&first) && !leaky(&last));

    println!(
        "dudect-style timing test: {samples} timed calls per test, classes interleaved at random;"
    );
    println!(
        "class A = MAC wrong in its first byte, class B = wrong in its last byte; same body ({} bytes), same secret.",
        BODY.len()
    );
    println!("threshold: |t| < {THRESHOLD} => no evidence of a timing leak\n");

    let verify = |h: &str| verifier.verify(BODY, [h]).is_ok();
    let real = measure(samples, 0x5eed_0001, [&first, &last], &verify);
    let positions = ["first byte", "last byte"];
    report(
        "Verifier::verify (constant-time comparison)",
        positions,
        &real,
    );
    println!();
    let control = measure(samples, 0x5eed_0002, [&first, &last], &leaky);
    report(
        "leak control: the same HMAC, then `==` on the hex strings (early exit)",
        positions,
        &control,
    );
    println!();
    // Two copies of one input: any |t| here is noise from the machine, and bounds how
    // far the other results can be trusted.
    let same = first.clone();
    let null = measure(samples, 0x5eed_0003, [&first, &same], &verify);
    report(
        "null control: Verifier::verify, first-byte input against a copy of itself",
        ["input", "copy"],
        &null,
    );
    println!();
    // Wrong in the same byte, by a digit or by a letter: the received header's own
    // characters change the work of hex decoding. Large |t| is expected: it shows the
    // harness resolves a single mispredicted branch, and why the two classes above
    // keep the true MAC's pattern of digits and letters. This depends only on what
    // the sender sent, so it tells an attacker nothing about the expected MAC.
    let original = sign(BODY, SECRET).as_bytes()["sha256=".len() + 31];
    let (digit, letter) = (
        if original == b'0' { b'1' } else { b'0' },
        if original == b'a' { b'b' } else { b'a' },
    );
    let by_digit = replace_at(31, digit);
    let by_letter = replace_at(31, letter);
    let input = measure(samples, 0x5eed_0004, [&by_digit, &by_letter], &verify);
    report(
        "input control: Verifier::verify, MAC wrong in one byte by a digit vs by a letter",
        ["digit", "letter"],
        &input,
    );
    if null.max_t.abs() >= THRESHOLD {
        println!(
            "\nWARNING: the null control exceeds the threshold: the machine is too noisy \
             for this run to mean anything; run again on a quiet machine."
        );
    }
}
