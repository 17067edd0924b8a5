//! RFC 3339 timestamps.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};
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

    /// The current time, in UTC (for events built in tests, or to compare an event's
    /// age with).
    ///
    /// ```
    /// use notmeta_webhooks::event::Timestamp;
    ///
    /// let before: Timestamp = std::time::SystemTime::now().into();
    /// let now = Timestamp::now();
    /// assert!(now >= before);
    /// assert!(now.to_string().ends_with('Z'));
    /// ```
    #[must_use]
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// The timestamp `seconds` after the Unix epoch (before it, if negative), in UTC;
    /// `None` outside the years -9999 to 9999.
    ///
    /// ```
    /// use notmeta_webhooks::event::Timestamp;
    ///
    /// let t = Timestamp::from_unix_timestamp(1_704_110_400).unwrap();
    /// assert_eq!(t.to_string(), "2024-01-01T12:00:00Z");
    /// assert!(Timestamp::from_unix_timestamp(i64::MAX).is_none());
    /// ```
    #[must_use]
    pub fn from_unix_timestamp(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    /// The same instant without its fraction of a second, as NotMeta writes its
    /// dates (`2024-01-01T12:00:00Z`).
    ///
    /// ```
    /// use notmeta_webhooks::event::Timestamp;
    ///
    /// let t: Timestamp = "2024-01-01T12:00:00.75Z".parse()?;
    /// assert_eq!(t.trunc_seconds().to_string(), "2024-01-01T12:00:00Z");
    /// # Ok::<(), notmeta_webhooks::event::ParseTimestampError>(())
    /// ```
    #[must_use]
    pub fn trunc_seconds(self) -> Self {
        Self(self.0.replace_nanosecond(0).unwrap_or(self.0))
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

/// The same instant and offset.
impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Self(t)
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

/// The instant of a `SystemTime`, in UTC (a time outside the years -9999 to 9999 is
/// clamped to the nearest of them).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use notmeta_webhooks::event::Timestamp;
///
/// let t = Timestamp::from(UNIX_EPOCH + Duration::from_secs(1_704_110_400));
/// assert_eq!(t.to_string(), "2024-01-01T12:00:00Z");
/// assert_eq!(t.to_system_time(), UNIX_EPOCH + Duration::from_secs(1_704_110_400));
/// ```
impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Self {
        let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX);
        let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
        let unix = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => time::Duration::try_from(after).ok(),
            Err(before) => time::Duration::try_from(before.duration()).ok().map(|d| -d),
        };
        let at = unix.and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d));
        Self(at.unwrap_or(if t >= std::time::UNIX_EPOCH { max } else { min }))
    }
}

/// Serialises as its RFC 3339 text (the form it parses from).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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
