//! Which failures are retried, and how long to wait before each retry.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use notmeta_webhooks::__private::{jitter, random_fraction};

use crate::error::seconds;
use crate::transport::{Answer, Call};
use crate::{Client, Error, ErrorKind};

/// Which failures a call may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads: 429, 5xx, connection failures and timeouts.
    Idempotent,
    /// Creation: only 429 and failures to connect, where NotMeta cannot have acted.
    NotSent,
}

impl Retry {
    /// Whether an answer with `status` (not 2xx) is retried.
    fn after_status(self, status: StatusCode) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error() && self == Retry::Idempotent)
    }

    /// Whether a failure of `kind` (no answer) is retried.
    fn after_error(self, kind: ErrorKind) -> bool {
        kind == ErrorKind::Connect
            || (self == Retry::Idempotent
                && matches!(kind, ErrorKind::Timeout | ErrorKind::Transport))
    }
}

/// Why a retry is not waited for.
#[derive(Debug)]
enum NoWait {
    /// `Retry-After` asked this long, and why it is not waited.
    Asked(Duration, String),
    /// The backoff would end past the call's deadline.
    PastDeadline,
}

impl NoWait {
    /// The call's error: the last `failure`, with the wait not waited if one was asked.
    fn of(self, failure: Error) -> Error {
        match self {
            Self::Asked(asked, why) => failure.with_retry_after(asked, &why),
            Self::PastDeadline => failure,
        }
    }
}

impl Client {
    /// One request with its retries: a 2xx answer's status, body and the attempts
    /// made, or the last failure.
    pub(crate) async fn exchange(
        &self,
        method: &Method,
        uri: &str,
        endpoint: &str,
        body: &Bytes,
        retry: Retry,
        call: &Call,
    ) -> Result<(Answer, u32), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(method, uri, body, endpoint, call).await;
            let retryable = match &outcome {
                Ok(a) if a.status.is_success() => {
                    let Ok(a) = outcome else { unreachable!() };
                    return Ok((a, attempt));
                }
                Ok(a) => retry.after_status(a.status),
                Err(e) => retry.after_error(e.kind()),
            };
            let retry_after = outcome.as_ref().ok().and_then(|a| a.retry_after);
            let failure = match outcome {
                Ok(a) => Error::status_answer(
                    endpoint,
                    a.status,
                    &a.body,
                    a.complete,
                    a.total,
                    &call.sensitive,
                ),
                Err(e) => e,
            }
            .with_attempts(attempt)
            .set_retry_after(retry_after);
            if !retryable || attempt > self.inner.settings.max_retries {
                return Err(failure);
            }
            let wait = self.wait_before_retry(attempt, retry_after, call);
            tokio::time::sleep(wait.map_err(|why| why.of(failure))?).await;
        }
    }

    /// How long to wait before the retry after attempt `attempt`: what `Retry-After`
    /// asked, else the jittered backoff; why not to wait, when the wait is longer
    /// than the longest allowed or would end past the call's deadline.
    fn wait_before_retry(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        call: &Call,
    ) -> Result<Duration, NoWait> {
        let max_backoff = self.inner.settings.max_backoff;
        let wait = match retry_after {
            Some(asked) if asked > max_backoff => {
                let why = format!("longer than the longest wait, {}", seconds(max_backoff));
                return Err(NoWait::Asked(asked, why));
            }
            Some(asked) => asked,
            None => self.jittered_backoff(attempt - 1),
        };
        if call.can_wait(wait) {
            return Ok(wait);
        }
        Err(match retry_after {
            Some(asked) => NoWait::Asked(asked, "past the call's deadline".to_owned()),
            None => NoWait::PastDeadline,
        })
    }

    /// The longest wait before retry `retry` (from 0): the initial backoff doubled
    /// `retry` times, at most the maximum.
    fn backoff(&self, retry: u32) -> Duration {
        let s = &self.inner.settings;
        s.initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(s.max_backoff)
    }

    /// The wait before retry `retry`: a random point between half the
    /// [`backoff`](Self::backoff) and all of it, so that clients that failed
    /// together do not all retry at the same instant.
    fn jittered_backoff(&self, retry: u32) -> Duration {
        jitter(self.backoff(retry), random_fraction())
    }
}

/// Whether a failed creation may nevertheless have created the webhook: a timeout
/// or a connection lost after sending; a 5xx; a 3xx (NotMeta acted and points
/// elsewhere); a 2xx that could not be read (NotMeta most likely created it).
pub(crate) fn may_have_acted(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Decode => true,
        ErrorKind::Status => e
            .status()
            .is_some_and(|s| s.is_server_error() || s.is_redirection()),
        _ => false,
    }
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date (a past date is no wait).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let client = Client::builder("t")
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(350))
            .build()
            .unwrap();
        let waits: Vec<_> = (0..4).map(|r| client.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        assert_eq!(client.backoff(u32::MAX).as_millis(), 350);
    }

    #[test]
    fn each_wait_is_between_half_and_all_of_the_backoff() {
        // The bounds of `jitter` itself are tested where it lives, in the library.
        let client = Client::builder("t")
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1))
            .build()
            .unwrap();
        // Drawn for real: always in range, and spread over it (all 500 draws in one
        // half of the range has a chance of 2^-499).
        let waits: Vec<Duration> = (0..500).map(|_| client.jittered_backoff(2)).collect();
        assert!(
            waits
                .iter()
                .all(|w| (Duration::from_millis(200)..=Duration::from_millis(400)).contains(w))
        );
        assert!(waits.iter().any(|w| *w < Duration::from_millis(300)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(300)));
    }
}
