//! `notmeta-webhooks`: send signed sample events to a receiver, sign bodies for curl,
//! replay captured requests, play NotMeta's retry schedule, and find out why a
//! captured request does not verify; manage webhooks through NotMeta's API; operate
//! a queue of the library (figures, dead letters, pause and resume).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod diagnose;
mod queue;
mod table;
mod term;
mod webhooks;

mod data;
mod deliver;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use notmeta_webhooks::EventType;
use notmeta_webhooks::testing::{Reply, SignedRequest, Target};

use term::{SecretArg, fail, out, read, read_stdin};

/// Test a NotMeta webhook receiver: send signed events, sign bodies, replay captured
/// requests, simulate NotMeta's retries, and explain why a signature fails; manage
/// webhooks, and operate a webhook queue in Redis or PostgreSQL.
#[derive(Debug, Parser)]
#[command(
    name = "notmeta-webhooks",
    version,
    after_help = "Exit codes: 0 success; 1 a receiver, NotMeta, the queue's store or a check said no (no answer in time included); 2 an error of use.\n\
Secrets: the webhook secret (NOTMETA_WEBHOOK_SECRET), the API token (NOTMETA_API_TOKEN) and the queue URL's password (NOTMETA_QUEUE_URL) are best given in the environment, out of the process list; none is ever printed (a created webhook's secret only with --show-secret, or when the tool generated it and NotMeta's answer was lost). An empty secret is an error of use.\n\
Limits: every command that sends gives up after --timeout (30 s, like NotMeta; connecting included); of a receiver's answer the first 64 KiB are read (of NotMeta's, 16 MiB; of its errors, 4 KiB); files and standard input are read up to 16 MiB. What receivers and NotMeta send is shown with control characters escaped."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where events are sent, and the secret they are signed with.
#[derive(Debug, clap::Args)]
struct ReceiverArgs {
    /// The receiver's URL (plain HTTP), such as http://127.0.0.1:3000/webhooks.
    #[arg(long)]
    url: String,
    /// The webhook secret, `whsec_…` (or set NOTMETA_WEBHOOK_SECRET, which keeps it
    /// out of the process list).
    #[arg(long, env = "NOTMETA_WEBHOOK_SECRET", hide_env_values = true, value_parser = SecretArg::parse)]
    secret: SecretArg,
    /// How long to wait for each answer, connecting included (NotMeta waits 30 s).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

impl ReceiverArgs {
    fn target(&self) -> Result<Target, String> {
        Target::url(&self.url).map_err(|e| e.to_string())
    }

    /// Sends `signed` and reads the answer, giving up after `--timeout`.
    async fn send(&self, target: &Target, signed: &SignedRequest) -> Result<Reply, String> {
        let limit = Duration::from_secs(self.timeout);
        match tokio::time::timeout(limit, target.send(signed.request_to(&self.url))).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer in {} s", self.timeout)),
        }
    }
}

/// A body from a file, sent as it is.
#[derive(Debug, clap::Args)]
struct DataArgs {
    /// A body to send instead of the sample, byte for byte as it is in FILE (its
    /// `type` must be the event type given).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// With --data: replace the file's `id` with a new one and its `created_at` with
    /// now, in place, every other byte unchanged.
    #[arg(long, requires = "data")]
    fresh: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a signed sample event with a new id and `created_at` now, or a body from
    /// a file as it is.
    Send {
        /// The event type, such as `message.received` (`list` prints them all).
        event_type: String,
        #[command(flatten)]
        to: ReceiverArgs,
        #[command(flatten)]
        data: DataArgs,
        /// The event id to send (default: a new one; with --data, the file's `id` is
        /// replaced in place).
        #[arg(long)]
        id: Option<String>,
        /// The message text (for `message.*` samples; not with --data).
        #[arg(long, conflicts_with = "data")]
        text: Option<String>,
    },
    /// Print the `X-NotMeta-Signature` header for a body read from FILE or stdin.
    Sign {
        /// The body (default: standard input), signed byte for byte.
        file: Option<PathBuf>,
        /// The webhook secret, `whsec_…` (or set NOTMETA_WEBHOOK_SECRET, which keeps it
        /// out of the process list).
        #[arg(long, env = "NOTMETA_WEBHOOK_SECRET", hide_env_values = true, value_parser = SecretArg::parse)]
        secret: SecretArg,
        /// Print only the value (`sha256=…`), not `X-NotMeta-Signature: `.
        #[arg(long)]
        value_only: bool,
    },
    /// Send captured bodies again, unchanged, signed with the secret.
    Replay {
        /// The bodies, one request each, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        to: ReceiverArgs,
    },
    /// Deliver one event through NotMeta's whole retry schedule (1 min, 5 min, 15 min,
    /// 1 h), time compressed, until it is answered 2xx or 4xx.
    Simulate {
        /// The event type, such as `message.received`.
        event_type: String,
        #[command(flatten)]
        to: ReceiverArgs,
        #[command(flatten)]
        data: DataArgs,
        /// How much faster than real time. The default, 60, makes a minute last a
        /// second (the whole schedule 81 s) and the answer time limit (--timeout, 30 s)
        /// half a second; 3600 would leave a receiver under 10 ms to answer.
        #[arg(long, default_value_t = 60)]
        speed: u32,
        /// Deliveries of the event after it is answered 2xx, as NotMeta may make (at
        /// most 100).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
        duplicates: u32,
        /// Copies of each delivery sent at the same moment, each retried on its own
        /// (at most 64).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
        concurrent: u32,
    },
    /// Check a captured request's signature, and say why it fails.
    ///
    /// Checks the header's format, the body's size against a receiver's default
    /// limit (1 MiB), then looks for what changed: the secret (its `whsec_` prefix,
    /// white space around it), the body (a byte-order mark, line ends, a trailing
    /// newline, the encoding, JSON parsed and written again), alone or combined.
    /// Exit 0 when a receiver with the default limit accepts the request, 1 when
    /// not, 2 on an error of use.
    Verify {
        /// The captured body, exactly as received (at most 16 MiB).
        file: PathBuf,
        /// The `X-NotMeta-Signature` value (`sha256=…`; the whole header line is
        /// taken too).
        #[arg(long)]
        header: String,
        /// The webhook secret; repeat it for each secret of a rotation (or set
        /// NOTMETA_WEBHOOK_SECRET to one secret, which keeps it out of the process list).
        #[arg(
            long = "secret",
            required = true,
            env = "NOTMETA_WEBHOOK_SECRET",
            hide_env_values = true,
            value_parser = SecretArg::parse
        )]
        secrets: Vec<SecretArg>,
    },
    /// List the event types there are samples of.
    List,
    /// Create, list and inspect webhooks through NotMeta's management API.
    Webhooks(webhooks::Args),
    /// Operate a queue in Redis or PostgreSQL: its figures, its dead letters (list,
    /// replay, purge), pausing and resuming its workers.
    Queue(queue::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(run(cli.command));
    // A name resolution given up on at the time limit is still blocking a thread:
    // end now rather than wait for it (dropping the runtime would).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(message) => fail(&message),
    }
}

/// Exit 0 when everything succeeded, 1 when a receiver or a check said no; errors
/// of use (a missing file, a bad URL) are exit 2.
async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Send {
            event_type,
            to,
            data,
            id,
            text,
        } => deliver::send(&event_type, &to, &data, id, text).await,
        Command::Sign {
            file,
            secret,
            value_only,
        } => sign(file.as_deref(), &secret, value_only),
        Command::Replay { files, to } => deliver::replay(&files, &to).await,
        Command::Simulate {
            event_type,
            to,
            data,
            speed,
            duplicates,
            concurrent,
        } => {
            let copies = deliver::Copies {
                duplicates,
                concurrent,
            };
            deliver::simulate(&event_type, &to, &data, speed, copies).await
        }
        Command::Verify {
            file,
            header,
            secrets,
        } => verify(&file, &header, &secrets),
        Command::List => list(),
        Command::Webhooks(args) => webhooks::run(args).await,
        Command::Queue(args) => queue::run(args).await,
    }
}

/// `sign`: prints the header (or its value) for the body in `file` or on stdin.
fn sign(file: Option<&Path>, secret: &SecretArg, value_only: bool) -> Result<ExitCode, String> {
    let body = match file {
        Some(path) => read(path)?,
        None => read_stdin()?,
    };
    let signed = SignedRequest::new(body, secret.expose());
    if value_only {
        out(format_args!("{}\n", signed.signature))?;
    } else {
        out(format_args!("{}\n", signed.header_line()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify`: explains whether and why the captured request's signature fails.
fn verify(file: &Path, header: &str, secrets: &[SecretArg]) -> Result<ExitCode, String> {
    let body = read(file)?;
    let secrets: Vec<String> = secrets.iter().map(|s| s.expose().to_owned()).collect();
    let diagnosis = diagnose::diagnose(&body, header, &secrets);
    out(&diagnosis)?;
    Ok(code(diagnosis.valid()))
}

/// `list`: one event type a line.
fn list() -> Result<ExitCode, String> {
    let mut list = String::new();
    for t in EventType::ALL {
        list.push_str(t.as_str());
        list.push('\n');
    }
    out(list)?;
    Ok(ExitCode::SUCCESS)
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    #[test]
    fn debug_never_shows_the_secret() {
        for args in [
            &["notmeta-webhooks", "sign", "--secret", "whsec_x"][..],
            &[
                "notmeta-webhooks",
                "send",
                "user.online",
                "--url",
                "http://127.0.0.1:1/",
                "--secret",
                "whsec_x",
            ],
        ] {
            let debug = format!("{:?}", Cli::parse_from(args));
            assert!(!debug.contains("whsec_x"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
