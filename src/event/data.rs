//! Reading event data into the caller's own types.

use std::fmt;

use serde::Deserialize;

/// The error of reading event data into a type of yours, from [`Event::data_as`] or
/// [`RawJson::deserialize`].
///
/// The signed body was a valid event: this error says that *your* type does not fit
/// the data, which is a fault on the receiving side, not in NotMeta's request. It
/// therefore has no HTTP status. Answer a 5xx if you cannot handle the event, so that
/// NotMeta tries again after you fix the type, rather than a 4xx that tells it never
/// to retry.
///
/// `Display` names the place in the JSON where reading stopped; the JSON parser's
/// own message is the [`source`](std::error::Error::source).
///
/// [`Event::data_as`]: super::Event::data_as
/// [`RawJson::deserialize`]: super::RawJson::deserialize
///
/// ```
/// use notmeta_webhooks::Event;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Mine { user: User }
/// #[derive(Debug, serde::Deserialize)]
/// struct User { name: String }
///
/// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"user.online",
///   "created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":"user_1"}}}"#)?;
/// let err = event.data_as::<Mine>().unwrap_err();
/// assert_eq!(err.json_path(), Some("data.user"));
/// assert_eq!(err.to_string(), "event data does not fit the requested type at `data.user`");
/// let cause = std::error::Error::source(&err).unwrap().to_string();
/// assert!(cause.starts_with("missing field `name`"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug)]
pub struct DataError {
    path: Option<String>,
    source: serde_json::Error,
}

impl DataError {
    /// Where in the JSON reading stopped (for example `data.message.url`), when the
    /// parser says.
    ///
    /// Paths from [`Event::data_as`](super::Event::data_as) start at the body, so
    /// they begin with `data`; paths from
    /// [`RawJson::deserialize`](super::RawJson::deserialize) start at the raw value.
    #[must_use]
    pub fn json_path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("event data does not fit the requested type")?;
        match &self.path {
            Some(path) => write!(f, " at `{path}`"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Deserialises `json` into `T`; on failure, reads it again tracking the path
/// (only on that cold path, so success costs one pass).
pub(super) fn from_json<'s, T: Deserialize<'s>>(json: &'s [u8]) -> Result<T, DataError> {
    serde_json::from_slice(json).map_err(|source| {
        let mut de = serde_json::Deserializer::from_slice(json);
        let path = serde_path_to_error::deserialize::<_, T>(&mut de)
            .err()
            .map(|e| e.path().to_string())
            .filter(|path| path != ".");
        DataError { path, source }
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use crate::Event;
    use crate::error::chain;
    use crate::event::Timestamp;

    #[test]
    fn causes_appear_once_in_the_chain() {
        let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":7}}}"#;
        let event = Event::parse_unverified(body).unwrap();
        #[derive(Debug, serde::Deserialize)]
        struct Data<'a> {
            #[allow(dead_code)]
            #[serde(borrow)]
            user: User<'a>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct User<'a> {
            #[allow(dead_code)]
            id: &'a str,
        }
        let err = event.data_as::<Data>().unwrap_err();
        assert_eq!(err.json_path(), Some("data.user.id"));
        let cause = err.source().unwrap().to_string();
        assert_eq!(chain(&err).matches(&cause).count(), 1);

        let err = "yesterday".parse::<Timestamp>().unwrap_err();
        let cause = err.source().unwrap().to_string();
        assert!(!err.to_string().contains(&cause));
        assert_eq!(chain(&err).matches(&cause).count(), 1);
    }
}
