//! Status, message type and role: enums that keep values NotMeta adds later.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer};

use super::lenient::{cow_str, own};

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
    /// use notmeta_webhooks::event::ConversationStatus;
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
    /// use notmeta_webhooks::event::MessageType;
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
    /// use notmeta_webhooks::event::UserRole;
    /// assert_eq!(UserRole::from("agent"), UserRole::Agent);
    /// assert_eq!(UserRole::from("supervisor").to_string(), "supervisor");
    /// ```
    UserRole {
        /// `agent`
        Agent => "agent",
    }
);
