//! JSON kept unparsed.

use std::borrow::Cow;

use serde::de::Deserialize;
use serde_json::value::RawValue;

use super::data::{DataError, from_json};

/// A JSON value kept unparsed, exactly as sent: the `data` of an event type this
/// version does not know.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"call.started","created_at":"2024-01-01T12:00:00Z",
///                                        "data":{"call":{"id":"call_1"}}}"#)?;
/// let EventKind::Unknown { event_type, data } = &event.kind else { unreachable!() };
/// assert_eq!(event_type, "call.started");
/// assert_eq!(data.get(), r#"{"call":{"id":"call_1"}}"#);
/// let value: serde_json::Value = data.deserialize()?;
/// assert_eq!(value["call"]["id"], "call_1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawJson<'a>(pub(crate) Cow<'a, RawValue>);

impl RawJson<'_> {
    /// The JSON text.
    #[must_use]
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Deserialises the value into a type of yours.
    ///
    /// # Errors
    ///
    /// [`DataError`] when the value does not fit `T`; its
    /// [`json_path`](DataError::json_path) starts at this value.
    ///
    /// ```
    /// use notmeta_webhooks::{Event, EventKind};
    ///
    /// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"call.started",
    ///   "created_at":"2024-01-01T12:00:00Z","data":{"call":{"id":7}}}"#)?;
    /// let EventKind::Unknown { data, .. } = &event.kind else { unreachable!() };
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Call<'a> { id: &'a str }
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Data<'a> { #[serde(borrow)] call: Call<'a> }
    /// let err = data.deserialize::<Data>().unwrap_err();
    /// assert_eq!(err.json_path(), Some("call.id"));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn deserialize<'s, T: Deserialize<'s>>(&'s self) -> Result<T, DataError> {
        from_json(self.0.get().as_bytes())
    }

    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

/// Writes the JSON text unchanged.
impl serde::Serialize for RawJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson<'_> {}
