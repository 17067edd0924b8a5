//! `notmeta-webhooks webhooks …`: NotMeta's management API (create, list, logs,
//! stats) through `notmeta_webhooks_client`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use notmeta_webhooks::EventType;
use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks_client::{
    Client, CreateWebhook, DEFAULT_BASE_URL, Ensured, Error, ErrorKind, Webhook, WebhookSummary,
    redact,
};
use serde_json::Value;

use crate::table::Table;
use crate::term::{SecretArg, note, out};

/// The API's settings, shared by every `webhooks` command.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The API token (or set NOTMETA_API_TOKEN, which keeps it out of the process
    /// list). Never printed.
    #[arg(long, env = "NOTMETA_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The management API's base URL (or set NOTMETA_API_URL).
    #[arg(
        long,
        env = "NOTMETA_API_URL",
        hide_env_values = true,
        default_value = DEFAULT_BASE_URL,
        global = true
    )]
    base_url: String,
    /// The most seconds a command may take, retries and every page included.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    timeout: u64,
    /// Accept a plain http:// base URL to another machine: the token then travels
    /// in clear text (plain HTTP to 127.0.0.1, ::1 or localhost needs no flag).
    #[arg(long, global = true)]
    allow_plain_http: bool,
    #[command(subcommand)]
    command: WebhooksCommand,
}

// By hand, so that no `{:?}` of the arguments ever shows the token.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Create a webhook (`POST /webhooks`) unless one with the URL exists (the list
    /// is read first), and print it.
    Create {
        /// Where NotMeta delivers, such as https://example.com/webhooks.
        #[arg(long)]
        url: String,
        /// An event type to subscribe to; repeat it, or separate types with commas
        /// (`notmeta-webhooks list` prints them).
        #[arg(
            long = "event",
            value_name = "TYPE",
            required = true,
            value_delimiter = ','
        )]
        events: Vec<String>,
        /// The secret to ask NotMeta to sign with (or set NOTMETA_WEBHOOK_SECRET;
        /// default: 32 random bytes, as `whsec_` and hex). NotMeta answers with the
        /// secret it signs with.
        #[arg(long, env = "NOTMETA_WEBHOOK_SECRET", hide_env_values = true, value_parser = SecretArg::parse)]
        secret: Option<SecretArg>,
        /// Print the secret NotMeta answers with. It is shown only at creation: keep
        /// it in your receiver's configuration.
        #[arg(long)]
        show_secret: bool,
    },
    /// List every webhook (`GET /webhooks`, every page).
    List,
    /// Print a webhook's delivery logs (`GET /webhooks/{id}/logs`, the first page).
    Logs {
        /// The webhook's id, such as wh_123456789.
        id: String,
    },
    /// Print a webhook's delivery statistics (`GET /webhooks/{id}/stats`).
    Stats {
        /// The webhook's id, such as wh_123456789.
        id: String,
    },
}

/// Exit 0 on success, 1 when the call failed (NotMeta answered 4xx or 5xx after the
/// client's retries, could not be reached within `--timeout`, or sent a list that
/// cannot be read whole) or `create` found the webhook with other events or lost
/// NotMeta's answer; a usage error is `Err` (exit 2).
pub(crate) async fn run(args: Args) -> Result<ExitCode, String> {
    let (client, mut scrub) = connect(&args)?;
    match args.command {
        WebhooksCommand::Create {
            url,
            events,
            secret,
            show_secret,
        } => {
            let events = event_types(&events)?;
            // A secret the tool generated is shown when it may be the only copy.
            let (secret, generated) = match secret {
                Some(secret) => (secret.expose().to_owned(), None),
                None => {
                    let secret = random_secret()?;
                    (secret.clone(), Some(secret))
                }
            };
            scrub.0.push(secret.clone());
            let request = CreateWebhook::new(url, events, secret);
            create(&client, &request, generated.as_deref(), show_secret, &scrub).await
        }
        WebhooksCommand::List => list(&client, &scrub).await,
        WebhooksCommand::Logs { id } => logs(&client, &id, &scrub).await,
        WebhooksCommand::Stats { id } => stats(&client, &id, &scrub).await,
    }
}

/// The client for `args`, and the scrubber that hides its token.
fn connect(args: &Args) -> Result<(Client, Scrub), String> {
    let token = args
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or("no API token: pass --token or set NOTMETA_API_TOKEN")?;
    let scrub = Scrub(vec![token.trim().to_owned()]);
    let client = Client::builder(token)
        .base_url(&args.base_url)
        .deadline(Duration::from_secs(args.timeout))
        .allow_plain_http(args.allow_plain_http)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((client, scrub))
}

/// The `--event` values as event types; an unknown one is an error of use.
fn event_types(names: &[String]) -> Result<Vec<EventType>, String> {
    names
        .iter()
        .map(|e| {
            e.trim()
                .parse::<EventType>()
                .map_err(|err| format!("{err} (`notmeta-webhooks list` prints the event types)"))
        })
        .collect()
}

/// `webhooks list`: every webhook, one row each.
async fn list(client: &Client, scrub: &Scrub) -> Result<ExitCode, String> {
    let list = match client.list_webhooks().await {
        Ok(list) => list,
        Err(e) => return refused(&e),
    };
    let mut table = Table::new(["id", "status", "url", "events", "created"]);
    for w in &list.webhooks {
        table.row(scrub.cells([
            or_dash(w.id.as_deref()),
            or_dash(w.status.as_deref()),
            or_dash(w.url.as_deref()),
            events_cell(w.events.as_deref()),
            or_dash(w.created_at.map(|t| t.to_string()).as_deref()),
        ]));
    }
    if list.webhooks.is_empty() {
        out("no webhooks\n")?;
    } else {
        out(&table)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `webhooks logs`: the first page of a webhook's delivery logs, one row each.
async fn logs(client: &Client, id: &str, scrub: &Scrub) -> Result<ExitCode, String> {
    let logs = match client.webhook_logs(id).await {
        Ok(logs) => logs,
        Err(e) => return refused(&e),
    };
    let mut table = Table::new(["time", "event type", "event", "status", "code", "other"]);
    for entry in &logs.entries {
        table.row(scrub.cells([
            or_dash(entry.created_at.map(|t| t.to_string()).as_deref()),
            or_dash(entry.event_type.as_deref()),
            or_dash(entry.event_id.as_deref()),
            or_dash(entry.status.as_deref()),
            or_dash(entry.status_code.map(|c| c.to_string()).as_deref()),
            fields(&entry.extra),
        ]));
    }
    if logs.entries.is_empty() {
        out(format_args!(
            "no deliveries logged for {}\n",
            scrub.text(id)
        ))?;
    } else {
        out(&table)?;
    }
    if logs.more_pages() {
        note("note: NotMeta has more log entries than shown (only the first page is read)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `webhooks stats`: a webhook's statistics, one row each.
async fn stats(client: &Client, id: &str, scrub: &Scrub) -> Result<ExitCode, String> {
    let stats = match client.webhook_stats(id).await {
        Ok(stats) => stats,
        Err(e) => return refused(&e),
    };
    let mut table = Table::new(["stat", "value"]);
    for (name, value) in &stats.fields {
        table.row(scrub.cells([name.clone(), value_text(value)]));
    }
    out(&table)?;
    Ok(ExitCode::SUCCESS)
}

/// `webhooks create`: lists first and creates only when no webhook has the URL.
/// Exit 0 when it was created, or exists with the same events; 1 when it exists with
/// other events, when the creation's answer was lost, or when the call failed.
async fn create(
    client: &Client,
    request: &CreateWebhook,
    generated: Option<&str>,
    show_secret: bool,
    scrub: &Scrub,
) -> Result<ExitCode, String> {
    let ensured = match client.ensure_webhook(request).await {
        Ok(ensured) => ensured,
        Err(e) if e.may_have_created() => return may_have_created(&e, generated),
        Err(e) => return refused(&e),
    };
    match &ensured {
        Ensured::Created(webhook) => show_created(webhook, show_secret, scrub),
        Ensured::CreatedAnswerLost { webhook, cause } => {
            // The secret sent is the only copy when this tool generated it.
            let shown = (generated.is_some() || show_secret).then(|| webhook.expose_secret());
            show_answer_lost(webhook, shown, cause, scrub)
        }
        Ensured::Existing {
            webhook,
            missing_events,
            extra_events,
        } => {
            out(listed(webhook, scrub))?;
            if ensured.events_match() {
                note("a webhook with this URL exists with these events: nothing created");
                return Ok(ExitCode::SUCCESS);
            }
            note(other_events(missing_events, extra_events));
            Ok(ExitCode::FAILURE)
        }
        other => {
            out(format_args!("{}\n", scrub.text(&other.to_string())))?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A creation that failed in a way that may have acted, and is not listed after.
fn may_have_created(e: &Error, generated: Option<&str>) -> Result<ExitCode, String> {
    let code = refused(e)?;
    note(
        "note: the creation may have succeeded without NotMeta's answer arriving, and the list read again after it does not show it (the creation was not sent again). Check `webhooks list`, then run the same command again: it lists first, so it does not create a duplicate.",
    );
    if let Some(generated) = generated {
        out(format_args!("secret sent  {generated}\n"))?;
        note(
            "note: the secret above was generated by this tool and sent; if the webhook turns out to exist, NotMeta signs with it unless it chose its own. This is the only copy.",
        );
    }
    Ok(code)
}

/// A webhook created, with its secret when `show_secret`.
fn show_created(webhook: &Webhook, show_secret: bool, scrub: &Scrub) -> Result<ExitCode, String> {
    out(created(
        webhook,
        show_secret.then(|| webhook.expose_secret()),
        scrub,
    ))
    .map_err(|e| format!("the webhook was created, but it cannot be shown: {e}"))?;
    if !show_secret {
        note(
            "note: the secret is not shown; NotMeta shows it only now. Run with --show-secret to print it.",
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A webhook created whose creation's answer was lost (found in the list after).
fn show_answer_lost(
    webhook: &Webhook,
    shown: Option<&str>,
    cause: &str,
    scrub: &Scrub,
) -> Result<ExitCode, String> {
    out(created(webhook, shown, scrub))
        .map_err(|e| format!("the webhook was created, but it cannot be shown: {e}"))?;
    note(format_args!(
        "error: the webhook was created, but NotMeta's answer was lost ({})",
        scrub.text(cause)
    ));
    note(
        "note: the secret shown is the one sent (or the one NotMeta listed): NotMeta signs with it unless it chose its own, and documents no call to read a secret again. Check it against the first delivery or the webhook.verified challenge with `notmeta-webhooks verify`.",
    );
    if shown.is_none() {
        note("note: pass --show-secret to print it.");
    }
    Ok(ExitCode::FAILURE)
}

/// The error for a webhook that exists with other events than requested.
fn other_events(missing_events: &[EventType], extra_events: &[String]) -> String {
    let missing: Vec<_> = missing_events.iter().map(|e| e.as_str()).collect();
    let or_dash = |names: String| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names
        }
    };
    format!(
        "error: a webhook with this URL exists with other events (missing: {}; not requested: {}): nothing created or changed, NotMeta documents no call to update a webhook",
        or_dash(missing.join(",")),
        or_dash(extra_events.join(",")),
    )
}

/// A failed call: a configuration error is a usage error (exit 2); anything else
/// is reported with NotMeta's status and answer, exit 1.
fn refused(e: &Error) -> Result<ExitCode, String> {
    if e.kind() == ErrorKind::Config {
        return Err(e.to_string());
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(message, ": {s}");
        source = s.source();
    }
    note(format_args!("error: {message}"));
    Ok(ExitCode::FAILURE)
}

/// The API token and the secret sent: no line or cell showing NotMeta's data shows
/// them, in any form it echoes them (only the explicit `secret` row shows a secret).
struct Scrub(Vec<String>);

impl Scrub {
    fn text(&self, text: &str) -> String {
        let sensitive: Vec<&str> = self.0.iter().map(String::as_str).collect();
        redact(text, &sensitive).into_owned()
    }

    /// Cells, scrubbed. A table shows at most `table::MAX_CELL` characters of a cell, so
    /// only the first 64 KiB of each are scrubbed and kept (far more than is shown,
    /// so nothing cut there can be seen).
    fn cells<const N: usize>(&self, cells: [String; N]) -> [String; N] {
        cells.map(|c| {
            let mut end = c.len().min(64 * 1024);
            while !c.is_char_boundary(end) {
                end -= 1;
            }
            self.text(&c[..end])
        })
    }
}

/// A listed webhook as a two-column table.
fn listed(webhook: &WebhookSummary, scrub: &Scrub) -> Table<2> {
    webhook_table(
        webhook.id.as_deref(),
        webhook.url.as_deref(),
        webhook.events.as_deref(),
        webhook.status.as_deref(),
        webhook.created_at,
        &webhook.extra,
        scrub,
    )
}

/// The created webhook as a two-column table, with `secret` if given (as it is:
/// the one row that shows a secret).
fn created(webhook: &Webhook, secret: Option<&str>, scrub: &Scrub) -> Table<2> {
    let mut table = webhook_table(
        Some(&webhook.id),
        Some(&webhook.url),
        Some(&webhook.events),
        webhook.status.as_deref(),
        webhook.created_at,
        &webhook.extra,
        scrub,
    );
    let secret = secret.unwrap_or("(hidden: pass --show-secret)");
    table.row(["secret".into(), secret.to_owned()]);
    table
}

/// A webhook's fields, one per row, `-` for what NotMeta did not say.
fn webhook_table(
    id: Option<&str>,
    url: Option<&str>,
    events: Option<&[String]>,
    status: Option<&str>,
    created_at: Option<Timestamp>,
    extra: &serde_json::Map<String, Value>,
    scrub: &Scrub,
) -> Table<2> {
    let mut table = Table::new(["field", "value"]);
    table.row(scrub.cells(["id".into(), or_dash(id)]));
    table.row(scrub.cells(["url".into(), or_dash(url)]));
    table.row(scrub.cells(["events".into(), events_cell(events)]));
    table.row(scrub.cells(["status".into(), or_dash(status)]));
    table.row([
        "created".into(),
        or_dash(created_at.map(|t| t.to_string()).as_deref()),
    ]);
    for (name, value) in extra {
        table.row(scrub.cells([name.clone(), value_text(value)]));
    }
    table
}

/// 32 random bytes from the operating system, as `whsec_` and 64 hex digits.
fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "no random numbers for a secret: pass --secret".to_owned())?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_owned()
}

fn events_cell(events: Option<&[String]>) -> String {
    match events {
        Some(e) if !e.is_empty() => e.join(","),
        _ => "-".to_owned(),
    }
}

/// A JSON value as a cell: strings without their quotes, the rest as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fields NotMeta sent that have no column, as `name=value` pairs.
fn fields(extra: &serde_json::Map<String, Value>) -> String {
    if extra.is_empty() {
        return "-".to_owned();
    }
    extra
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}
