//! Reading a request body with limits on its size and on the time it takes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};

use crate::error::{Error, ErrorKind};
use crate::receiver::delivery::within;

/// At most this much is reserved up front from a declared `Content-Length`: a
/// buffer is never sized from what a client claims, only from what arrives.
const PRESIZE_MAX: usize = 64 * 1024;

/// A refused body is read and discarded up to this many bytes (a body just over the
/// default 1 MiB limit is drained whole, so its client reads the 413)...
const DRAIN_MAX_BYTES: usize = 2 * 1024 * 1024;
/// ...and for at most this long, before the refusal is sent.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// What the request says about its body before any of it is read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Declared {
    /// The `Content-Length` value, if it parses.
    pub(crate) length: Option<u64>,
    /// Whether the client sent `Expect: 100-continue` (it waits to be asked for the
    /// body).
    pub(crate) expects_continue: bool,
}

impl Declared {
    pub(crate) fn new(content_length: Option<&[u8]>, expect: Option<&[u8]>) -> Self {
        Self {
            length: content_length
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok()),
            expects_continue: expect
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue")),
        }
    }

    /// What an `http` request's headers declare (the tower service and axum).
    #[cfg(feature = "tower")]
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Self {
        let value = |name| headers.get(name).map(http::HeaderValue::as_bytes);
        Self::new(
            value(http::header::CONTENT_LENGTH),
            value(http::header::EXPECT),
        )
    }

    /// Whether the declared length alone is over `limit`.
    pub(crate) fn too_large(self, limit: usize) -> bool {
        self.length
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    }
}

/// Reads a whole body from a stream of chunks, refusing it as soon as it exceeds
/// `limit` bytes (413): up front from `Content-Length`, or while reading (a chunked
/// body with no `Content-Length` is cut off too); and refusing a body that takes
/// longer than `time_limit` to arrive (503, so NotMeta retries; the connection is
/// not reused).
///
/// A body refused for its size is still read and discarded (up to 2 MiB, for up to
/// 2 s) before the 413 is sent: closing a socket with unread data makes the
/// kernel reset the connection, and the client would see a reset instead of the 413.
/// With `Expect: 100-continue` nothing is read: the client has not sent the body,
/// and reading would ask it to.
pub(crate) async fn read_limited<S, E>(
    mut stream: S,
    declared: Declared,
    limit: usize,
    time_limit: Duration,
) -> Result<Bytes, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    if declared.too_large(limit) {
        if !declared.expects_continue {
            drain(&mut stream).await;
        }
        return Err(Error::body_too_large(limit));
    }
    let gathered = within(
        time_limit,
        std::pin::pin!(gather(&mut stream, declared, limit)),
    )
    .await;
    match gathered {
        Some(Err(error)) if error.kind() == ErrorKind::BodyTooLarge => {
            drain(&mut stream).await;
            Err(error)
        }
        Some(result) => result,
        None => Err(Error::new(ErrorKind::BodyTimeout)),
    }
}

async fn gather<S, E>(stream: &mut S, declared: Declared, limit: usize) -> Result<Bytes, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    // A body that arrives in one chunk (the usual case) is kept as it is, without a
    // copy; a body in several chunks is gathered into one buffer.
    let mut first: Option<Bytes> = None;
    let mut gathered = BytesMut::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::new(ErrorKind::BodyRead))?;
        if chunk.len() > limit - len {
            return Err(Error::body_too_large(limit));
        }
        len += chunk.len();
        match first.take() {
            None if gathered.is_empty() => first = Some(chunk),
            earlier => {
                if gathered.is_empty() {
                    let hint = declared
                        .length
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(len)
                        .min(PRESIZE_MAX);
                    gathered.reserve(hint.max(len));
                }
                if let Some(earlier) = earlier {
                    gathered.extend_from_slice(&earlier);
                }
                gathered.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| gathered.freeze()))
}

/// Reads and discards what is left of a refused body, within [`DRAIN_MAX_BYTES`] and
/// [`DRAIN_MAX_TIME`].
async fn drain<S, E>(stream: &mut S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let discard = async {
        let mut budget = DRAIN_MAX_BYTES;
        while let Some(Ok(chunk)) = stream.next().await {
            let Some(left) = budget.checked_sub(chunk.len()) else {
                return;
            };
            budget = left;
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_huge_declared_length_within_the_limit_is_not_preallocated() {
        // With no limit, a client claiming a petabyte and sending three bytes gets
        // its three bytes back; nothing is sized from the claim.
        let declared = Declared::new(Some(b"1000000000000000"), None);
        let body = read_limited(chunks(&[b"a", b"b", b"c"]), declared, usize::MAX, T).await;
        assert_eq!(body.unwrap(), Bytes::from_static(b"abc"));
    }

    #[tokio::test]
    async fn limits_hold_with_and_without_a_declared_length() {
        let exact = read_limited(chunks(&[b"ab", b"cd"]), Declared::default(), 4, T).await;
        assert_eq!(exact.unwrap(), Bytes::from_static(b"abcd"));
        let over = read_limited(chunks(&[b"ab", b"cde"]), Declared::default(), 4, T).await;
        assert_eq!(over.unwrap_err().kind(), ErrorKind::BodyTooLarge);
        let declared = Declared::new(Some(b" 5 "), None);
        let over = read_limited(chunks(&[b"ab"]), declared, 4, T).await;
        assert_eq!(over.unwrap_err().kind(), ErrorKind::BodyTooLarge);
    }

    #[tokio::test]
    async fn expect_continue_over_the_limit_reads_nothing() {
        let declared = Declared::new(Some(b"10"), Some(b"100-Continue"));
        let polled = std::sync::atomic::AtomicBool::new(false);
        let stream = futures_util::stream::poll_fn(|_| {
            polled.store(true, std::sync::atomic::Ordering::Relaxed);
            std::task::Poll::Ready(None::<Result<Bytes, std::convert::Infallible>>)
        });
        let err = read_limited(stream, declared, 4, T).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
        assert!(!polled.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_times_out() {
        let stream = futures_util::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b"x")),
                n + 1,
            ))
        });
        let err = read_limited(Box::pin(stream), Declared::default(), usize::MAX, T)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTimeout);
    }
}
