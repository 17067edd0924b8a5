//! The ready-made endpoints against bare handlers of the same server, measured with
//! wrk, an HTTP client that owes nothing to this project.
//!
//! ```text
//! # wrk itself: apt-get install -y wrk (Debian, Ubuntu), brew install wrk (macOS).
//! # axum, actix-web and the tower service on hyper, each against a bare handler of the
//! # same server, at 16 and 64 connections: 5 rounds of 3 s per side, every round on
//! # fresh server processes, the two sides alternating:
//! cargo run --release -p notmeta-tools --bin load -- wrk-compare
//! cargo run --release -p notmeta-tools --bin load -- wrk-compare \
//!     --servers axum --connections 16 --rounds 9 --seconds 5
//!
//! # By hand: signed requests (distinct ids) for tools/wrk/signed.lua, and a server.
//! cargo run --release -p notmeta-tools --bin load -- wrk-requests /tmp/signed.req 120000
//! cargo run --release -p notmeta-tools --bin load -- serve axum   # prints its address
//! wrk -t2 -c16 -d3s --latency -s tools/wrk/signed.lua http://ADDR/webhooks -- /tmp/signed.req 2
//! ```
//!
//! Every request is a distinct, correctly signed ~1 KiB `message.received` event, so
//! the endpoint does the whole delivery each time (verify, parse, claim in its
//! in-memory store, run its no-op handler, complete); wrk's threads each cycle through
//! their own slice of the ids, which lasts longer than the served receiver's 0.5 s
//! dedup window (checked after every run). `wrk-compare` exits non-zero on any answer
//! wrk counts as an error (status 400 and above), any socket error, or ids repeated
//! within the dedup window; its server processes end with it on every path (they exit
//! when their stdin, a pipe from this process, closes).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use bytes::Bytes;

use super::{BoxError, DEDUP_WINDOW, Kind, request};

/// The wrk script; the same file as tools/wrk/signed.lua, written out at each run.
const SCRIPT: &str = include_str!("../../../wrk/signed.lua");
/// The first line of a requests file starts with this.
const MAGIC: &str = "notmeta-wrk-requests";
/// The ids of measured runs start here, and those of warm-ups at [`WARM_UP_FIRST`]:
/// two ranges that never meet, with every id of the same width, so every request
/// has the same length.
const MEASURED_FIRST: usize = 1_000_000_000;
const WARM_UP_FIRST: usize = 2_000_000_000;
/// In the server's environment: exit when stdin (a pipe from the parent) closes.
const EXIT_WITH_PARENT: &str = "NOTMETA_LOAD_EXIT_WITH_PARENT";

/// In `load serve`: with [`EXIT_WITH_PARENT`] set, ends this process once its stdin
/// closes, which happens when the parent exits, however it exits.
pub(super) fn exit_with_parent() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = [0; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// One request as the file holds it: the headers after `Host`, and the body.
fn record(n: usize) -> Vec<u8> {
    let (body, signature) = request(n, Kind::Valid, &Bytes::new());
    let mut record = format!(
        "Content-Type: application/json\r\nX-NotMeta-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    record.extend_from_slice(&body);
    record
}

/// Writes `count` requests, ids `first..first + count`, to `path` for
/// tools/wrk/signed.lua.
pub(super) fn write_requests(path: &Path, first: usize, count: usize) -> Result<(), BoxError> {
    let length = record(first).len();
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut out = BufWriter::new(std::fs::File::create(&partial)?);
    writeln!(out, "{MAGIC} {length} {count}")?;
    for n in first..first + count {
        let record = record(n);
        if record.len() != length {
            return Err(format!("request {n} is {} bytes, not {length}", record.len()).into());
        }
        out.write_all(&record)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// A requests file under the temporary directory, written once and reused while it
/// holds what [`write_requests`] would write.
fn requests_file(first: usize, count: usize) -> Result<PathBuf, BoxError> {
    let path = std::env::temp_dir().join(format!("notmeta-wrk-{first}-{count}.req"));
    let expected = record(first);
    let header = format!("{MAGIC} {} {count}\n", expected.len());
    let holds_it = || -> std::io::Result<bool> {
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        let mut start = vec![0; header.len() + expected.len()];
        file.read_exact(&mut start)?;
        Ok(start[..header.len()] == *header.as_bytes()
            && start[header.len()..] == expected[..]
            && size == (header.len() + expected.len() * count) as u64)
    };
    if !holds_it().unwrap_or(false) {
        write_requests(&path, first, count)?;
    }
    Ok(path)
}

/// A server process (`load serve <kind>`), killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(program: &Path, kind: &str) -> Result<Self, BoxError> {
        let child = Command::new(program)
            .args(["serve", kind])
            .env(EXIT_WITH_PARENT, "1")
            // As `load compare` serves (see `Server::start_with_env`).
            .env("MALLOC_ARENA_MAX", "2")
            .env("MALLOC_MMAP_THRESHOLD_", "65536")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        // Owned from here, so that an error below still ends the process.
        let mut served = Self {
            child,
            addr: String::new(),
        };
        let mut line = String::new();
        let stdout = served.child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        served.addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("`serve {kind}` said {line:?}, not its address"))?
            .to_owned();
        Ok(served)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one wrk run reports (the `WRK` line of the script's `done`).
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    requests: u64,
    seconds: f64,
    /// Answers with status 400 and above.
    status_errors: u64,
    socket_errors: u64,
    p99_us: u64,
    /// The server's CPU time (user and system, all its threads) over the run.
    server_cpu_seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The server's CPU time per request, in µs.
    fn cpu_us(&self) -> f64 {
        self.server_cpu_seconds * 1e6 / self.requests as f64
    }
}

/// The CPU time a process has used (user and system, all its threads, those ended
/// included), from `/proc/<pid>/stat`, in seconds; 0 where there is no `/proc`.
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // utime and stime, in clock ticks (USER_HZ, 100 on Linux), are the 12th and 13th
    // fields after the command name, which may hold spaces.
    let after_name = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// How wrk is run.
#[derive(Debug, Clone)]
struct Wrk {
    script: PathBuf,
    threads: usize,
}

impl Wrk {
    fn run(
        &self,
        server: &Served,
        requests: &Path,
        connections: usize,
        seconds: u64,
    ) -> Result<Run, BoxError> {
        let cpu_before = process_cpu_seconds(server.child.id());
        let output = Command::new("wrk")
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg("-s")
            .arg(&self.script)
            .arg(format!("http://{}/webhooks", server.addr))
            .arg("--")
            .arg(requests)
            .arg(self.threads.to_string())
            .stdin(Stdio::null())
            .output()?;
        let server_cpu_seconds = process_cpu_seconds(server.child.id()) - cpu_before;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find_map(|l| l.strip_prefix("WRK "));
        let (true, Some(line)) = (output.status.success(), line) else {
            return Err(format!(
                "wrk failed ({}):\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        };
        let field = |name: &str| -> Result<u64, BoxError> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("no {name} in wrk's {line:?}"))?
                .parse()
                .map_err(Into::into)
        };
        Ok(Run {
            requests: field("requests")?,
            seconds: field("duration_us")? as f64 / 1e6,
            status_errors: field("status")?,
            socket_errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
            p99_us: field("p99_us")?,
            server_cpu_seconds,
        })
    }
}

/// `wrk-compare`'s options.
#[derive(Debug)]
struct Options {
    servers: Vec<String>,
    connections: Vec<usize>,
    rounds: usize,
    seconds: u64,
    warm_up: u64,
    threads: usize,
    requests: usize,
    serve_with: PathBuf,
    /// What the endpoint is compared with: `bare` (the framework's handler that reads
    /// the body and answers 200) or `verify` (that handler, verifying and parsing the
    /// event too: what any verifying endpoint pays at the least).
    baseline: String,
    /// The other side: the ready-made endpoint (empty, the default), or another server
    /// of the same framework (`verify`; `nodedup`, axum only: the endpoint without
    /// de-duplication), to split the endpoint's cost into its parts.
    endpoint: String,
}

impl Options {
    /// The name of the side compared with the baseline.
    fn other(&self) -> &str {
        if self.endpoint.is_empty() {
            "endpoint"
        } else {
            &self.endpoint
        }
    }

    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let mut options = Self {
            servers: vec!["axum".into(), "actix".into(), "tower".into()],
            connections: vec![16, 64],
            rounds: 5,
            seconds: 3,
            warm_up: 1,
            threads: 2,
            requests: 120_000,
            serve_with: std::env::current_exe()?,
            baseline: "bare".into(),
            endpoint: String::new(),
        };
        let mut args = args.iter();
        while let Some(name) = args.next() {
            let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            let list = || value.split(',').map(str::to_owned);
            match name.as_str() {
                "--servers" => options.servers = list().collect(),
                "--connections" => {
                    options.connections = list().map(|c| c.parse()).collect::<Result<_, _>>()?;
                }
                "--rounds" => options.rounds = value.parse()?,
                "--seconds" => options.seconds = value.parse()?,
                "--warm-up" => options.warm_up = value.parse()?,
                "--threads" => options.threads = value.parse()?,
                "--requests" => options.requests = value.parse()?,
                "--serve-with" => options.serve_with = value.into(),
                "--baseline" if ["bare", "verify"].contains(&value.as_str()) => {
                    options.baseline = value.clone();
                }
                "--baseline" => return Err("--baseline is bare or verify".into()),
                "--endpoint" if ["verify", "nodedup"].contains(&value.as_str()) => {
                    options.endpoint = value.clone();
                }
                "--endpoint" => return Err("--endpoint is verify or nodedup".into()),
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        if options.rounds == 0 || options.seconds == 0 || options.threads == 0 {
            return Err("--rounds, --seconds and --threads must be at least 1".into());
        }
        if options.requests < options.threads {
            return Err("--requests must be at least --threads".into());
        }
        Ok(options)
    }
}

/// Whether each wrk thread's slice of ids lasted longer than the dedup window, so
/// that no id came back while the receiver still remembered it.
fn ids_outlast_window(run: &Run, slice: usize, threads: usize) -> bool {
    let per_thread = run.rate() / threads as f64;
    per_thread * DEFAULT_WINDOW_MARGIN * DEDUP_WINDOW.as_secs_f64() < slice as f64
}

/// A slice must last this many dedup windows.
const DEFAULT_WINDOW_MARGIN: f64 = 1.5;

fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

/// `load wrk-compare [--servers axum,actix,tower] [--connections 16,64] [--rounds 5]
/// [--seconds 3] [--warm-up 1] [--threads 2] [--requests 120000] [--serve-with PATH]
/// [--baseline bare|verify] [--endpoint verify|nodedup]`.
pub(super) fn compare(args: &[String]) -> Result<ExitCode, BoxError> {
    let options = Options::parse(args)?;
    if let Err(error) = Command::new("wrk").arg("-v").output() {
        eprintln!(
            "wrk-compare needs wrk on the PATH ({error}): install it with \
             `apt-get install -y wrk` (Debian, Ubuntu) or `brew install wrk` (macOS), or \
             build it from https://github.com/wg/wrk"
        );
        return Ok(ExitCode::from(2));
    }
    let script = std::env::temp_dir().join(format!("notmeta-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, SCRIPT)?;
    let wrk = Wrk {
        script: script.clone(),
        threads: options.threads,
    };
    let measured = requests_file(MEASURED_FIRST, options.requests)?;
    let warm_up = requests_file(WARM_UP_FIRST, options.requests)?;
    let result = compare_all(&options, &wrk, &measured, &warm_up);
    let _ = std::fs::remove_file(&script);
    result
}

fn compare_all(
    options: &Options,
    wrk: &Wrk,
    measured: &Path,
    warm_up: &Path,
) -> Result<ExitCode, BoxError> {
    let slice = options.requests / options.threads;
    println!(
        "wrk -t{} -d{}s --latency, {} rounds per side after a {} s warm-up, fresh server \
         processes each round ({}); ~1 KiB signed message.received events, {} distinct ids \
         per run; the {} side against the {} one",
        options.threads,
        options.seconds,
        options.rounds,
        options.warm_up,
        options.serve_with.display(),
        options.requests,
        options.other(),
        options.baseline,
    );
    let mut rows = Vec::new();
    let mut ok = true;
    for server in &options.servers {
        for &connections in &options.connections {
            let endpoint = match options.endpoint.as_str() {
                "" => server.clone(),
                other => format!("{server}-{other}"),
            };
            let sides = [format!("{server}-{}", options.baseline), endpoint];
            let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
            for round in 0..options.rounds {
                // The side that goes first alternates from round to round.
                for i in [round % 2, 1 - round % 2] {
                    let served = Served::start(&options.serve_with, &sides[i])?;
                    let mut last = Run::default();
                    for (what, file, seconds) in [
                        ("warm-up", warm_up, options.warm_up),
                        ("run", measured, options.seconds),
                    ] {
                        if seconds > 0 {
                            last = wrk.run(&served, file, connections, seconds)?;
                            ok &= judge(&sides[i], what, &last, slice, options.threads);
                        }
                    }
                    drop(served);
                    runs[i].push(last);
                }
                let (bare, endpoint) = (runs[0][round], runs[1][round]);
                println!(
                    "  {server} {connections} round {n}: {base} {:.0}/s, {other} {:.0}/s, {:.3}; \
                     server CPU per request {base} {:.1} µs, {other} {:.1} µs",
                    bare.rate(),
                    endpoint.rate(),
                    endpoint.rate() / bare.rate(),
                    bare.cpu_us(),
                    endpoint.cpu_us(),
                    n = round + 1,
                    base = options.baseline,
                    other = options.other(),
                );
            }
            rows.push((server.clone(), connections, runs));
        }
    }
    println!();
    println!(
        "{:<7} {:>5}  {:>27}  {:>29}  {:>21}  {:>17}  {:>21}  {:>15}  {:>7}",
        "server",
        "conns",
        format!("{} req/s median [range]", options.baseline),
        format!("{} req/s median [range]", options.other()),
        format!("{}÷{} [range]", options.other(), options.baseline),
        "CPU µs/req b/e",
        format!("CPU {}÷end [range]", options.baseline),
        "p99 µs b/e",
        "non-2xx"
    );
    for (server, connections, [bare, endpoint]) in rows {
        let of = |runs: &[Run], f: fn(&Run) -> f64| {
            median_and_range(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let paired = |f: fn(&Run, &Run) -> f64| {
            median_and_range(
                &bare
                    .iter()
                    .zip(&endpoint)
                    .map(|(b, e)| f(b, e))
                    .collect::<Vec<_>>(),
            )
        };
        let range = |(m, lo, hi): (f64, f64, f64), digits: usize| {
            format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]")
        };
        let non_2xx: u64 = bare.iter().chain(&endpoint).map(|r| r.status_errors).sum();
        println!(
            "{server:<7} {connections:>5}  {:>27}  {:>29}  {:>21}  {:>17}  {:>21}  {:>15}  {non_2xx:>7}",
            range(of(&bare, Run::rate), 0),
            range(of(&endpoint, Run::rate), 0),
            range(paired(|b, e| e.rate() / b.rate()), 3),
            format!(
                "{:.1}/{:.1}",
                of(&bare, Run::cpu_us).0,
                of(&endpoint, Run::cpu_us).0
            ),
            range(paired(|b, e| b.cpu_us() / e.cpu_us()), 3),
            format!(
                "{:.0}/{:.0}",
                of(&bare, |r| r.p99_us as f64).0,
                of(&endpoint, |r| r.p99_us as f64).0
            ),
        );
    }
    if !ok {
        eprintln!("FAILED: see the runs reported above");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reports what is wrong with a run, if anything; true if nothing is.
fn judge(kind: &str, what: &str, run: &Run, slice: usize, threads: usize) -> bool {
    let mut ok = true;
    if run.requests == 0 {
        eprintln!("{kind} {what}: no request completed");
        ok = false;
    }
    if run.status_errors + run.socket_errors > 0 {
        eprintln!(
            "{kind} {what}: {} answers with status 400 or above, {} socket errors",
            run.status_errors, run.socket_errors
        );
        ok = false;
    }
    if !ids_outlast_window(run, slice, threads) {
        eprintln!(
            "{kind} {what}: {:.0} requests/s came back to ids the receiver still remembered \
             (raise --requests above {slice} per thread)",
            run.rate()
        );
        ok = false;
    }
    ok
}
