//! The calls of the API: create, list, logs, stats, ensure.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::de::DeserializeOwned;

use crate::model::{self, Next};
use crate::retry::{Retry, may_have_acted};
use crate::transport::Call;
use crate::url::{path_segment, percent};
use crate::{
    Client, CreateWebhook, Ensured, Error, ErrorKind, LOG_KEYS, MAX_ITEMS, MAX_PAGES, WEBHOOK_KEYS,
    Webhook, WebhookList, WebhookLogs, WebhookStats, WebhookSummary,
};

impl Client {
    /// `POST /webhooks`: creates a webhook, and answers it with the secret NotMeta
    /// signs its deliveries with.
    ///
    /// Retried only where NotMeta cannot have created it (429, no connection). After
    /// a 5xx, a 3xx, a 2xx answer that cannot be read, a timeout or a lost
    /// connection the webhook may exist
    /// ([`Error::may_have_created`]): list before trying again, or use
    /// [`Client::ensure_webhook`], which does. No error shows the secret sent.
    ///
    /// ```no_run
    /// use notmeta_webhooks_client::{Client, CreateWebhook};
    /// use notmeta_webhooks::EventType;
    ///
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let webhook = client
    ///     .create_webhook(&CreateWebhook::new(
    ///         "https://example.com/webhook",
    ///         [EventType::MessageReceived, EventType::ConversationAssigned],
    ///         "my_secret",
    ///     ))
    ///     .await?;
    /// let verifier = webhook.verifier()?; // keyed with NotMeta's `whsec_…` secret
    /// println!("created {webhook}");
    /// # Ok(()) }
    /// ```
    pub async fn create_webhook(&self, webhook: &CreateWebhook) -> Result<Webhook, Error> {
        let call = self.start(Some(webhook.secret()));
        call.end(self.create(webhook, &call).await)
    }

    async fn create(&self, webhook: &CreateWebhook, call: &Call) -> Result<Webhook, Error> {
        let body = serde_json::to_vec(webhook)
            .map_err(|e| Error::config("the webhook could not be serialised").with_source(e))?;
        let uri = format!("{}/webhooks", self.inner.base_url);
        self.json(
            Method::POST,
            &uri,
            "POST /webhooks",
            body.into(),
            Retry::NotSent,
            call,
        )
        .await
        .map_err(|e| {
            if may_have_acted(&e) {
                e.creation_may_have_acted()
            } else {
                e
            }
        })
    }

    /// `GET /webhooks`: every webhook and its state, every page of the list read
    /// (see [Lists](crate#lists)); within one [`deadline`](crate::ClientBuilder::deadline).
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// for webhook in client.list_webhooks().await?.webhooks {
    ///     println!("{webhook}"); // id, status, URL, events
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_webhooks(&self) -> Result<WebhookList, Error> {
        let call = self.start(None);
        call.end(self.list_all(&call).await)
    }

    async fn list_all(&self, call: &Call) -> Result<WebhookList, Error> {
        let base = &self.inner.base_url;
        let mut uri = format!("{base}/webhooks");
        let mut endpoint = "GET /webhooks".to_owned();
        let mut read = HashSet::from([uri.clone()]);
        let mut list = WebhookList::default();
        for n in 0..MAX_PAGES {
            let before = model::Progress {
                items: list.webhooks.len(),
                pages: n,
            };
            let limit = MAX_ITEMS - list.webhooks.len();
            let page = self
                .page(
                    &uri,
                    &endpoint,
                    WEBHOOK_KEYS,
                    "webhooks",
                    limit,
                    before,
                    call,
                )
                .await?;
            if n == 0 {
                list.extra = page.extra;
            }
            list.webhooks.extend(page.items);
            uri = match page.next {
                Next::None => return Ok(list),
                Next::Url(next) => self
                    .same_origin(&uri, &next)
                    .map_err(|m| decode(&endpoint, &m))?,
                Next::Cursor(cursor) => format!("{base}/webhooks?cursor={}", percent(&cursor)),
                Next::Unfollowable(signal) => {
                    let m = format!(
                        "the list is incomplete: the answer signals more webhooks ({signal}) but \
                         gives no next URL or cursor this client can follow; nothing was decided from it"
                    );
                    return Err(decode(&endpoint, &m));
                }
            };
            if !read.insert(uri.clone()) {
                let m = "the answer points again to a page already read: the list does not end";
                return Err(decode(&endpoint, m));
            }
            endpoint = format!("GET {}", uri.strip_prefix(base.as_str()).unwrap_or(&uri));
        }
        let m = format!("the list has more than {MAX_PAGES} pages; nothing was decided from it");
        Err(decode(&endpoint, &m))
    }

    /// `GET /webhooks/{id}/logs`: the webhook's delivery logs, the first page only:
    /// [`WebhookLogs::more_pages`] tells whether NotMeta has more.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// let logs = client.webhook_logs("wh_123456789").await?;
    /// print!("{logs}");
    /// if logs.more_pages() {
    ///     println!("(more entries exist)");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn webhook_logs(&self, id: &str) -> Result<WebhookLogs, Error> {
        let call = self.start(None);
        call.end(self.logs(id, &call).await)
    }

    async fn logs(&self, id: &str, call: &Call) -> Result<WebhookLogs, Error> {
        let path = format!("/webhooks/{}/logs", path_segment(id)?);
        let endpoint = format!("GET {path}");
        let uri = format!("{}{path}", self.inner.base_url);
        let page = self
            .page(
                &uri,
                &endpoint,
                LOG_KEYS,
                "log entries",
                MAX_ITEMS,
                model::Progress::default(),
                call,
            )
            .await?;
        Ok(WebhookLogs::from_page(page))
    }

    /// `GET /webhooks/{id}/stats`: the webhook's delivery statistics.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// let stats = client.webhook_stats("wh_123456789").await?;
    /// println!("{:?}", stats.count("total_deliveries"));
    /// # Ok(()) }
    /// ```
    pub async fn webhook_stats(&self, id: &str) -> Result<WebhookStats, Error> {
        let call = self.start(None);
        let path = match path_segment(id) {
            Ok(segment) => format!("/webhooks/{segment}/stats"),
            Err(e) => return call.end(Err(e)),
        };
        let uri = format!("{}{path}", self.inner.base_url);
        let stats = self
            .json(
                Method::GET,
                &uri,
                &format!("GET {path}"),
                Bytes::new(),
                Retry::Idempotent,
                &call,
            )
            .await;
        call.end(stats)
    }

    /// Makes sure a webhook exists for the request's URL: the call for deploy scripts,
    /// safe to run again and again.
    ///
    /// Lists the webhooks (every page); if one has exactly this URL it is returned as
    /// [`Ensured::Existing`], unchanged, with how its events differ from the requested
    /// ones (NotMeta documents no update call, so nothing is changed behind your
    /// back: check [`Ensured::events_match`]). Otherwise the webhook is created
    /// ([`Ensured::Created`]). When the creation fails in a way that may have created
    /// it anyway (a 5xx, a 3xx, a 2xx that cannot be read, a timeout, a lost
    /// connection), it is **never sent again in the same call**: the list is read
    /// again, up to 4 times over about 4 s (within the deadline), in case it shows
    /// the webhook late. If the webhook is there, it is [`Ensured::CreatedAnswerLost`],
    /// with the secret sent; if not, the creation's error, with
    /// [`Error::may_have_created`] true: keep the secret sent, and run the call again
    /// later (it lists first). This relies on the list showing a created webhook by
    /// the time the call runs again. Only failures where NotMeta cannot have acted
    /// (no connection, 429) are retried by creating again. A list that cannot be read
    /// whole, or that lists a webhook without a URL, is an error: nothing is created
    /// from it. All within one [`deadline`](crate::ClientBuilder::deadline).
    ///
    /// Two runs at the same moment can still both create: run deploys one at a time.
    ///
    /// To store the secret of a webhook this call created, use
    /// [`Ensured::was_created`] and [`Ensured::expose_secret`], which cover a
    /// creation whose answer was lost too:
    ///
    /// ```no_run
    /// use notmeta_webhooks_client::{Client, CreateWebhook, Ensured};
    /// use notmeta_webhooks::EventType;
    ///
    /// # fn store(_: &str) {}
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let request = CreateWebhook::new("https://example.com/webhook", [EventType::MessageReceived], "my_secret");
    /// let ensured = client.ensure_webhook(&request).await?;
    /// if ensured.was_created() {
    ///     // Shown once: NotMeta documents no call to read it again.
    ///     store(ensured.expose_secret().expect("a created webhook has its secret"));
    /// }
    /// match &ensured {
    ///     Ensured::CreatedAnswerLost { cause, .. } => {
    ///         eprintln!("{ensured}: {cause}; check the first delivery verifies")
    ///     }
    ///     existing if !existing.events_match() => eprintln!("events differ: {existing}"),
    ///     other => println!("{other}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ensure_webhook(&self, request: &CreateWebhook) -> Result<Ensured, Error> {
        let call = self.start(Some(request.secret()));
        call.end(self.ensure(request, &call).await)
    }

    async fn ensure(&self, request: &CreateWebhook, call: &Call) -> Result<Ensured, Error> {
        let list = self.list_all(call).await?;
        if let Some(found) = find(&list, request.url()).map_err(|m| decode("GET /webhooks", &m))? {
            return Ok(Ensured::existing(found.clone(), request));
        }
        let lost = match self.create(request, call).await {
            Ok(created) => return Ok(Ensured::Created(created)),
            Err(e) if e.may_have_created() => e,
            Err(e) => return Err(e),
        };
        // The creation may have acted: never POST again in this call (a list that
        // shows a creation late would make duplicates). Read the list again, a few
        // times, in case it shows the webhook a little after its creation.
        let mut relisted = 0;
        for wait in RELIST_WAITS {
            if !call.can_wait(wait) {
                break;
            }
            tokio::time::sleep(wait).await;
            let list = match self.list_all(call).await {
                Ok(list) => list,
                Err(e) => {
                    return Err(e.creation_may_have_acted().with_note(&format!(
                        "the webhook may have been created by the `POST /webhooks` that failed \
                         before ({lost}); check `GET /webhooks` before creating again"
                    )));
                }
            };
            relisted += 1;
            match find(&list, request.url()) {
                Ok(Some(found)) => {
                    let cause = lost.redacted(&call.sensitive).to_string();
                    return Ok(Ensured::answer_lost(found.clone(), request, cause));
                }
                Ok(None) => {}
                Err(m) => return Err(decode("GET /webhooks", &m).creation_may_have_acted()),
            }
        }
        Err(lost.with_note(&format!(
            "the webhook may have been created nonetheless; the list read {relisted} time(s) \
             after it does not show it: check the list before creating again"
        )))
    }

    /// One page of a list with its retries: its items (at most `limit`), the
    /// wrapper's fields, and its next page, from the body or a `Link` header.
    #[allow(clippy::too_many_arguments)]
    async fn page<T: DeserializeOwned>(
        &self,
        uri: &str,
        endpoint: &str,
        keys: &[&str],
        what: &str,
        limit: usize,
        before: model::Progress,
        call: &Call,
    ) -> Result<model::Page<T>, Error> {
        let (answer, attempts) = self
            .exchange(
                &Method::GET,
                uri,
                endpoint,
                &Bytes::new(),
                Retry::Idempotent,
                call,
            )
            .await?;
        let mut page =
            model::Page::parse(&answer.body, keys, what, limit, before).map_err(|m| {
                decode(endpoint, &m)
                    .set_status(answer.status)
                    .with_attempts(attempts)
            })?;
        // The body's own next URL or cursor first; else the `Link` header's.
        if let Some(link) = answer.next_link
            && matches!(page.next, Next::None | Next::Unfollowable(_))
        {
            page.next = Next::Url(link);
        }
        Ok(page)
    }
}

/// The webhook listed with `url`, if any; an error when a listed webhook has no URL
/// (it might be this one).
fn find<'a>(list: &'a WebhookList, url: &str) -> Result<Option<&'a WebhookSummary>, String> {
    if let Some(found) = list.find_by_url(url) {
        return Ok(Some(found));
    }
    match list.webhooks.iter().find(|w| w.url.is_none()) {
        Some(w) => Err(format!(
            "a listed webhook ({}) has no `url`: cannot tell whether it is the one for {url}; \
             nothing was created",
            w.id.as_deref().unwrap_or("no id")
        )),
        None => Ok(None),
    }
}

fn decode(endpoint: &str, message: &str) -> Error {
    Error::new(ErrorKind::Decode, format!("{endpoint}: {message}"))
}

/// The waits before each reading of the list after a creation that may have acted
/// and whose webhook is not listed yet.
const RELIST_WAITS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
