//! A typed async client for NotMeta's management API: create webhooks,
//! list them, read their delivery logs and statistics.
//!
//! ```no_run
//! use notmeta_webhooks_client::{Client, CreateWebhook};
//! use notmeta_webhooks::EventType;
//!
//! # fn store_where_the_receiver_reads_it(_secret: &str) {}
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(std::env::var("NOTMETA_API_TOKEN")?)?;
//! let ensured = client
//!     .ensure_webhook(&CreateWebhook::new(
//!         "https://example.com/webhook",
//!         [EventType::MessageReceived],
//!         std::env::var("NOTMETA_WEBHOOK_SECRET")?,
//!     ))
//!     .await?;
//! println!("{ensured}");
//! // Configure your receiver with the secret NotMeta answered, not the one sent.
//! if let Some(secret) = ensured.expose_secret() {
//!     store_where_the_receiver_reads_it(secret);
//! }
//! for webhook in client.list_webhooks().await?.webhooks {
//!     println!("{webhook}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Two secrets: the one you send, the one NotMeta signs with
//!
//! [`CreateWebhook`] carries a secret you *ask* NotMeta to sign with. NotMeta answers
//! with the secret it *will* sign with (`whsec_…`), and that may differ from the one
//! you sent. Configure your receiver with the answered one:
//! [`Webhook::expose_secret`] (or [`Ensured::expose_secret`]), or build its verifier
//! straight from the answer with [`Webhook::verifier`]. NotMeta documents no call to
//! read a secret again later, so store it when the webhook is created.
//!
//! The API token is read from `NOTMETA_API_TOKEN` in these examples, as the
//! `notmeta-webhooks` command-line tool does.
//!
//! # Transport
//!
//! HTTP/1.1 over rustls (the `ring` provider, Mozilla's roots from `webpki-roots`: no
//! system OpenSSL, no platform certificate store). Calls must run inside a Tokio
//! runtime. A plain `http://` base URL is accepted only for this machine
//! (127.0.0.0/8, `::1`, `localhost`), for local testing, unless
//! [`allow_plain_http`](ClientBuilder::allow_plain_http) is set: the token then
//! travels in clear text. A base URL with a user name or password is refused.
//!
//! # On every deploy
//!
//! Creates the webhook only when no webhook has its URL, then reads what NotMeta
//! keeps about it:
//!
//! ```no_run
//! use notmeta_webhooks::EventType;
//! use notmeta_webhooks_client::{Client, CreateWebhook, Ensured};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::new(std::env::var("NOTMETA_API_TOKEN")?)?;
//!     let request = CreateWebhook::new(
//!         "https://example.com/webhooks",
//!         [EventType::MessageReceived, EventType::ConversationAssigned],
//!         std::env::var("NOTMETA_WEBHOOK_SECRET")?, // the secret you choose (see "Two secrets")
//!     );
//!     // Safe on every deploy: creates the webhook only when no webhook has its URL.
//!     let ensured = client.ensure_webhook(&request).await?;
//!     if ensured.was_created() {
//!         // Created by this call, its answer received or lost: the secret to keep.
//!         // NotMeta documents no call to read it again.
//!         let _secret = ensured.expose_secret();
//!     }
//!     match &ensured {
//!         Ensured::Created(webhook) => println!("created {webhook}; store its secret now"),
//!         Ensured::CreatedAnswerLost { cause, .. } => {
//!             eprintln!("{ensured}: {cause}; check the first delivery verifies")
//!         }
//!         existing => println!("{existing}"), // tells when its events differ
//!     }
//!     print!("{}", client.list_webhooks().await?); // one line per webhook
//!     let logs = client.webhook_logs("wh_123456789").await?; // the first page
//!     for entry in &logs.entries {
//!         println!("{entry}");
//!     }
//!     if logs.more_pages() {
//!         println!("(more entries exist)");
//!     }
//!     println!("{}", client.webhook_stats("wh_123456789").await?);
//!     Ok(())
//! }
//! ```
//!
//! # Timeouts and retries
//!
//! | setting | default |
//! |---|---|
//! | [`deadline`](ClientBuilder::deadline) (one call: every attempt, every page, every wait) | 60 s |
//! | [`connect_timeout`](ClientBuilder::connect_timeout) (DNS, TCP and TLS) | 10 s |
//! | [`timeout`](ClientBuilder::timeout) (one attempt, until the whole answer is read; cut to what is left of the deadline) | 30 s |
//! | [`max_retries`](ClientBuilder::max_retries) | 3 |
//! | [`initial_backoff`](ClientBuilder::initial_backoff), doubled after each retry (each wait a random point between half and all of it) | 500 ms |
//! | [`max_backoff`](ClientBuilder::max_backoff): the longest wait; a longer `Retry-After` is not waited, the call fails at once | 30 s |
//!
//! | outcome | `GET` calls | `POST /webhooks` |
//! |---|---|---|
//! | 429 | retried after `Retry-After` (seconds or HTTP date), else the backoff | same |
//! | 5xx | retried (after `Retry-After` if sent) | **not retried** |
//! | no connection, TLS handshake included (request not sent; for a creation, whatever the attempt's time: it connects first, within the connect timeout and the attempt's time, then sends) | retried | retried |
//! | timeout, connection lost after sending | retried | **not retried** |
//! | other 4xx | not retried | not retried |
//!
//! A wait that would end past the deadline is not waited: the call fails at once
//! with the last error. A `Retry-After` the call does not wait is in
//! [`Error::retry_after`].
//!
//! Of an answer other than 2xx only the first 4 KiB (and a little more) are read,
//! then the connection is dropped; a 2xx answer is read up to 16 MiB.
//!
//! A `POST` that failed with a 5xx, a 3xx, a 2xx answer that cannot be read, a
//! timeout or a lost connection may have created the webhook
//! ([`Error::may_have_created`]): retrying it blindly could create a duplicate, so
//! [`Client::create_webhook`] leaves that decision to you.
//! [`Client::ensure_webhook`] is the safe path: it lists first, creates only when no
//! webhook has the URL, and after such a failure never creates again in the same
//! call: it reads the list again (a few times) to find the webhook.
//!
//! A deadline or a wait too long for the clock to represent (`Duration::MAX`)
//! means no deadline, or a wait not waited: the call never panics on it.
//!
//! # Lists
//!
//! [`Client::list_webhooks`] reads every page. A next page is found, in this order,
//! in the body's own fields and in those of each object among them (`pagination`,
//! `meta`, `paging`, `links`…): a next-page URL (`next`, `next_url`,
//! `next_page_url`, or an object's `href` under them) is followed, a cursor
//! (`next_cursor`, `next_page_token`) is asked for as `?cursor=…`; else a `Link:
//! <…>; rel="next"` header (RFC 8288) is followed. A URL is resolved against the
//! page that gave it (RFC 3986) and followed only on the base URL's origin, never
//! elsewhere. Any other sign of more pages (`has_more: true`, `next_page`,
//! `cursors.after` alone, a `total` / `total_count` above the items read so far, a
//! `total_pages` / `page_count` above the current `page`), or an answer whose list
//! cannot be found, is an [`ErrorKind::Decode`] error: a partial list is never
//! taken for the whole.
//!
//! The list is a bare array or an object's `data`, `webhooks`, `items` or
//! `results` (when several of those hold an array, the only non-empty one; two
//! non-empty ones are an error), or else its only array field. Each item must be a
//! JSON object, and at most 10,000 webhooks are read in all (at most 10,000 log
//! entries on a page): a longer list is an [`ErrorKind::Decode`] error, nothing is
//! decided from it. Items are read one by one from the answer (no tree of the
//! whole page is built first), so a hostile list costs a small multiple of its
//! size in memory.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod error;
mod model;
mod retry;
mod transport;
mod url;
mod webhooks;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;

pub use builder::ClientBuilder;
use builder::Settings;
pub use error::{Error, ErrorKind, redact};
pub use model::{
    CreateWebhook, Ensured, LogEntry, Webhook, WebhookList, WebhookLogs, WebhookStats,
    WebhookSummary,
};
use transport::ConnectWithin;

/// NotMeta's management API, `https://api.notmeta.com/v1`.
pub const DEFAULT_BASE_URL: &str = "https://api.notmeta.com/v1";

/// The largest 2xx answer read, 16 MiB.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The most pages [`Client::list_webhooks`] reads.
const MAX_PAGES: usize = 1000;

/// The most webhooks [`Client::list_webhooks`] reads in all (and log entries
/// [`Client::webhook_logs`] reads): a longer list is an error, never cut short.
const MAX_ITEMS: usize = 10_000;

/// Where the list of webhooks may be wrapped, and the logs.
const WEBHOOK_KEYS: &[&str] = &["data", "webhooks", "items", "results"];
const LOG_KEYS: &[&str] = &["data", "logs", "items", "results"];

/// A client for NotMeta's management API.
///
/// Cheap to clone (clones share one connection pool). `Debug` never prints the token.
///
/// ```
/// use notmeta_webhooks_client::Client;
///
/// let client = Client::new("tok_live_123")?;
/// assert_eq!(client.base_url(), "https://api.notmeta.com/v1");
/// assert!(!format!("{client:?}").contains("tok_live_123"));
/// # Ok::<(), notmeta_webhooks_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<ConnectWithin, Full<Bytes>>,
    /// For creations, which connect first on a connection of their own.
    connector: ConnectWithin,
    base_url: String,
    authorization: HeaderValue,
    token: String,
    settings: Settings,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("token", &"<redacted>")
            .field("settings", &self.inner.settings)
            .finish()
    }
}
