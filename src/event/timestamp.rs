//! RFC 3339 timestamps.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An RFC 3339 timestamp such as `2024-01-01T12:00:00Z`.
///
/// Fractional seconds and offsets other than `Z` are accepted; the offset is kept.
///
/// ```
/// use notmeta_webhooks::event::Timestamp;
///
/// let t: Timestamp = "2024-01-01T13:30:00.250+01:30".parse()?;
/// assert_eq!(t.unix_timestamp(), 1_704_110_400);
/// assert_eq!(t.to_string(), "2024-01-01T13:30:00.25+01:30");
/// assert!("2024-01-01 12:00:00".parse::<Timestamp>().is_err());
/// # Ok::<(), notmeta_webhooks::event::ParseTimestampError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub(crate) fn parse(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(Self)
    }

    /// Whole seconds since the Unix epoch.
    #[must_use]
    pub fn unix_timestamp(&self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The instant as a [`std::time::SystemTime`].
    ///
    /// ```
    /// use notmeta_webhooks::event::Timestamp;
    /// let t: Timestamp = "1970-01-01T00:00:01Z".parse()?;
    /// assert_eq!(t.to_system_time(), std::time::UNIX_EPOCH + std::time::Duration::from_secs(1));
    /// # Ok::<(), notmeta_webhooks::event::ParseTimestampError>(())
    /// ```
    #[must_use]
    pub fn to_system_time(&self) -> std::time::SystemTime {
        self.0.into()
    }

    /// The instant as a `time::OffsetDateTime`, with the offset it was sent with.
    #[must_use]
    pub fn to_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

/// Parses an RFC 3339 timestamp.
///
/// # Errors
///
/// [`ParseTimestampError`] when the text is not an RFC 3339 date and time.
impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).map_err(ParseTimestampError)
    }
}

/// The error of parsing a [`Timestamp`] from a string that is not RFC 3339.
///
/// `Display` says only that; the date parser's explanation (which component is
/// wrong) is the [`source`](std::error::Error::source). It has no HTTP status:
/// a timestamp inside an event that fails to parse makes the event invalid, and that
/// is reported as an [`Error`](crate::Error) by the envelope parser.
///
/// ```
/// use notmeta_webhooks::event::Timestamp;
///
/// let err = "2024-01-01 12:00:00".parse::<Timestamp>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid RFC 3339 timestamp");
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseTimestampError(time::error::Parse);

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid RFC 3339 timestamp")
    }
}

impl std::error::Error for ParseTimestampError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // `time::error::Parse` prints its failing stage's message and returns that
        // stage as its own source: start the chain at the stage so it says it once.
        self.0.source().or(Some(&self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => fmt::Debug::fmt(&self.0, f),
        }
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl From<Timestamp> for std::time::SystemTime {
    fn from(t: Timestamp) -> Self {
        t.0.into()
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}
