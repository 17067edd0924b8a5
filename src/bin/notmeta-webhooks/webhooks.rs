//! `notmeta-webhooks webhooks …`: NotMeta's management API (create, list, logs,
//! stats) through `notmeta_webhooks::client`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use notmeta_webhooks::EventType;
use notmeta_webhooks::client::{
    Client, CreateWebhook, DEFAULT_BASE_URL, Error, ErrorKind, Webhook,
};
use serde_json::Value;

use crate::table::Table;
use crate::term::{note, out};

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
        default_value = DEFAULT_BASE_URL,
        global = true
    )]
    base_url: String,
    #[command(subcommand)]
    command: WebhooksCommand,
}

// By hand, so that no `{:?}` of the arguments ever shows the token.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Create a webhook (`POST /webhooks`) and print it.
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
        /// The secret to ask NotMeta to sign with (default: 32 random bytes, as
        /// `whsec_` and hex). NotMeta answers with the secret it signs with.
        #[arg(long)]
        secret: Option<String>,
        /// Print the secret NotMeta answers with. It is shown only at creation: keep
        /// it in your receiver's configuration.
        #[arg(long)]
        show_secret: bool,
    },
    /// List the webhooks (`GET /webhooks`).
    List,
    /// Print a webhook's delivery logs (`GET /webhooks/{id}/logs`).
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
/// client's retries, or could not be reached); a usage error is `Err` (exit 2).
pub(crate) async fn run(args: Args) -> Result<ExitCode, String> {
    let token = args
        .token
        .filter(|t| !t.trim().is_empty())
        .ok_or("no API token: pass --token or set NOTMETA_API_TOKEN")?;
    let client = Client::builder(token)
        .base_url(&args.base_url)
        .build()
        .map_err(|e| e.to_string())?;
    match args.command {
        WebhooksCommand::Create {
            url,
            events,
            secret,
            show_secret,
        } => {
            let events = events
                .iter()
                .map(|e| {
                    e.trim().parse::<EventType>().map_err(|err| {
                        format!("{err} (`notmeta-webhooks list` prints the event types)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let secret = match secret {
                Some(secret) => secret,
                None => random_secret()?,
            };
            let request = CreateWebhook::new(url, events, secret);
            let webhook = match client.create_webhook(&request).await {
                Ok(webhook) => webhook,
                Err(e) => return refused(&e),
            };
            out(created(&webhook, show_secret))
                .map_err(|e| format!("the webhook was created, but it cannot be shown: {e}"))?;
            if !show_secret {
                note(
                    "note: the secret is not shown; NotMeta shows it only now. Run with --show-secret to print it.",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::List => {
            let list = match client.list_webhooks().await {
                Ok(list) => list,
                Err(e) => return refused(&e),
            };
            let mut table = Table::new(["id", "status", "url", "events", "created"]);
            for w in &list.webhooks {
                table.row([
                    or_dash(w.id.as_deref()),
                    or_dash(w.status.as_deref()),
                    or_dash(w.url.as_deref()),
                    events_cell(w.events.as_deref()),
                    or_dash(w.created_at.map(|t| t.to_string()).as_deref()),
                ]);
            }
            if list.webhooks.is_empty() {
                out("no webhooks\n")?;
            } else {
                out(&table)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::Logs { id } => {
            let logs = match client.webhook_logs(&id).await {
                Ok(logs) => logs,
                Err(e) => return refused(&e),
            };
            let mut table = Table::new(["time", "event type", "event", "status", "code", "other"]);
            for entry in &logs.entries {
                table.row([
                    or_dash(entry.created_at.map(|t| t.to_string()).as_deref()),
                    or_dash(entry.event_type.as_deref()),
                    or_dash(entry.event_id.as_deref()),
                    or_dash(entry.status.as_deref()),
                    or_dash(entry.status_code.map(|c| c.to_string()).as_deref()),
                    fields(&entry.extra),
                ]);
            }
            if logs.entries.is_empty() {
                out(format_args!("no deliveries logged for {id}\n"))?;
            } else {
                out(&table)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::Stats { id } => {
            let stats = match client.webhook_stats(&id).await {
                Ok(stats) => stats,
                Err(e) => return refused(&e),
            };
            let mut table = Table::new(["stat", "value"]);
            for (name, value) in &stats.fields {
                table.row([name.clone(), value_text(value)]);
            }
            out(&table)?;
            Ok(ExitCode::SUCCESS)
        }
    }
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

/// The created webhook as a two-column table.
fn created(webhook: &Webhook, show_secret: bool) -> Table<2> {
    let mut table = Table::new(["field", "value"]);
    table.row(["id".into(), webhook.id.clone()]);
    table.row(["url".into(), webhook.url.clone()]);
    table.row(["events".into(), events_cell(Some(&webhook.events))]);
    table.row(["status".into(), or_dash(webhook.status.as_deref())]);
    table.row([
        "created".into(),
        or_dash(webhook.created_at.map(|t| t.to_string()).as_deref()),
    ]);
    for (name, value) in &webhook.extra {
        table.row([name.clone(), value_text(value)]);
    }
    let secret = if show_secret {
        webhook.expose_secret().to_owned()
    } else {
        "(hidden: pass --show-secret)".to_owned()
    };
    table.row(["secret".into(), secret]);
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
