//! Small value types shared by the events: timestamps, identifiers and the open
//! enums that keep values NotMeta may add later.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::lenient::{cow_str, own};

/// An RFC 3339 timestamp such as `2024-01-01T12:00:00Z`.
///
/// Fractional seconds and offsets other than `Z` are accepted; the offset is kept.
///
/// ```
/// use notmeta_webhooks::Timestamp;
///
/// let t: Timestamp = "2024-01-01T13:30:00.250+01:30".parse()?;
/// assert_eq!(t.unix_timestamp(), 1_704_110_400);
/// assert_eq!(t.to_string(), "2024-01-01T13:30:00.25+01:30");
/// assert!("2024-01-01 12:00:00".parse::<Timestamp>().is_err());
/// # Ok::<(), notmeta_webhooks::Error>(())
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
    /// use notmeta_webhooks::Timestamp;
    /// let t: Timestamp = "1970-01-01T00:00:01Z".parse()?;
    /// assert_eq!(t.to_system_time(), std::time::UNIX_EPOCH + std::time::Duration::from_secs(1));
    /// # Ok::<(), notmeta_webhooks::Error>(())
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

impl FromStr for Timestamp {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .map_err(|e| crate::Error::invalid_event(format!("bad RFC 3339 timestamp: {e}")))
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
/// # Ok::<(), notmeta_webhooks::Error>(())
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
    pub fn deserialize<'s, T: Deserialize<'s>>(&'s self) -> Result<T, crate::Error> {
        serde_json::from_str(self.0.get()).map_err(|e| crate::Error::json(e, None))
    }

    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson<'_> {}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $example:literal) => {
        $(#[$doc])*
        ///
        /// Identifiers are opaque: the prefix is a convention, never validated.
        /// The value borrows from the request body until [`into_owned`](Self::into_owned).
        ///
        /// ```
        #[doc = concat!("use notmeta_webhooks::", stringify!($name), ";")]
        #[doc = concat!("let id = ", stringify!($name), "::from(\"", $example, "\");")]
        #[doc = concat!("assert_eq!(id.as_str(), \"", $example, "\");")]
        #[doc = concat!("assert_eq!(id, \"", $example, "\");")]
        #[doc = concat!("assert_eq!(id.to_string(), \"", $example, "\");")]
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<'a>(Cow<'a, str>);

        impl<'a> $name<'a> {
            /// The identifier as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A copy that owns its data, free of the body's lifetime.
            #[must_use]
            pub fn into_owned(self) -> $name<'static> {
                $name(own(self.0))
            }
        }

        impl<'a> From<Cow<'a, str>> for $name<'a> {
            fn from(s: Cow<'a, str>) -> Self {
                Self(s)
            }
        }

        impl<'a> From<&'a str> for $name<'a> {
            fn from(s: &'a str) -> Self {
                Self(Cow::Borrowed(s))
            }
        }

        impl From<String> for $name<'static> {
            fn from(s: String) -> Self {
                Self(Cow::Owned(s))
            }
        }

        impl AsRef<str> for $name<'_> {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name<'_> {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name<'_> {
            fn eq(&self, other: &str) -> bool {
                *self.0 == *other
            }
        }

        impl PartialEq<&str> for $name<'_> {
            fn eq(&self, other: &&str) -> bool {
                *self.0 == **other
            }
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                cow_str(d).map(Self)
            }
        }
    };
}

string_newtype!(
    /// The id of an event (`evt_…`): the key to de-duplicate deliveries on.
    EventId, "evt_123456789"
);
string_newtype!(
    /// The id of a message (`msg_…`).
    MessageId, "msg_123456789"
);
string_newtype!(
    /// The id of a conversation (`conv_…`).
    ConversationId, "conv_123456789"
);
string_newtype!(
    /// The id of a user, such as an agent (`user_…`).
    UserId, "user_123456789"
);
string_newtype!(
    /// The id of a webhook registration (`wh_…`).
    WebhookId, "wh_123456789"
);

macro_rules! open_enum {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $variant:ident => $wire:literal, )+ }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name<'a> {
            $( $(#[$vdoc])* $variant, )+
            /// A value this version does not know yet, kept as sent.
            Other(Cow<'a, str>),
        }

        impl<'a> $name<'a> {
            /// The value as it appears on the wire.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(s) => s,
                }
            }

            /// A copy that owns its data, free of the body's lifetime.
            #[must_use]
            pub fn into_owned(self) -> $name<'static> {
                match self {
                    $( Self::$variant => $name::$variant, )+
                    Self::Other(s) => $name::Other(own(s)),
                }
            }
        }

        impl<'a> From<Cow<'a, str>> for $name<'a> {
            fn from(s: Cow<'a, str>) -> Self {
                match &*s {
                    $( $wire => Self::$variant, )+
                    _ => Self::Other(s),
                }
            }
        }

        impl<'a> From<&'a str> for $name<'a> {
            fn from(s: &'a str) -> Self {
                Self::from(Cow::Borrowed(s))
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                cow_str(d).map(Self::from)
            }
        }
    };
}

open_enum!(
    /// The status of a conversation; values NotMeta adds later arrive as `Other`.
    ///
    /// ```
    /// use notmeta_webhooks::ConversationStatus;
    /// assert_eq!(ConversationStatus::from("assigned"), ConversationStatus::Assigned);
    /// assert_eq!(ConversationStatus::from("snoozed").as_str(), "snoozed");
    /// ```
    ConversationStatus {
        /// `open`
        Open => "open",
        /// `assigned`
        Assigned => "assigned",
        /// `closed`
        Closed => "closed",
    }
);

open_enum!(
    /// The type of a message's content; values NotMeta adds later arrive as `Other`.
    ///
    /// ```
    /// use notmeta_webhooks::MessageType;
    /// assert_eq!(MessageType::from("text"), MessageType::Text);
    /// assert!(matches!(MessageType::from("sticker"), MessageType::Other(s) if s == "sticker"));
    /// ```
    MessageType {
        /// `text`: the message has a `text`.
        Text => "text",
        /// `image`
        Image => "image",
        /// `audio`
        Audio => "audio",
        /// `video`
        Video => "video",
        /// `document`
        Document => "document",
        /// `location`
        Location => "location",
    }
);

open_enum!(
    /// The role of a user; values NotMeta adds later arrive as `Other`.
    ///
    /// ```
    /// use notmeta_webhooks::UserRole;
    /// assert_eq!(UserRole::from("agent"), UserRole::Agent);
    /// assert_eq!(UserRole::from("supervisor").to_string(), "supervisor");
    /// ```
    UserRole {
        /// `agent`
        Agent => "agent",
    }
);
