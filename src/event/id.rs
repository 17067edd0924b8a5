//! Identifier newtypes: opaque strings that borrow from the body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer};

use super::lenient::cow_str;
use super::shared::{Owner, Text};

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $example:literal) => {
        $(#[$doc])*
        ///
        /// Identifiers are opaque: the prefix is a convention, never validated.
        /// The value borrows from the request body until [`into_owned`](Self::into_owned).
        ///
        /// ```
        #[doc = concat!("use notmeta_webhooks::event::", stringify!($name), ";")]
        #[doc = concat!("let id = ", stringify!($name), "::from(\"", $example, "\");")]
        #[doc = concat!("assert_eq!(id.as_str(), \"", $example, "\");")]
        #[doc = concat!("assert_eq!(id, \"", $example, "\");")]
        #[doc = concat!("assert_eq!(id.to_string(), \"", $example, "\");")]
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<'a>(Text<'a>);

        impl<'a> $name<'a> {
            /// The identifier as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// A copy that owns its data, free of the body's lifetime.
            #[must_use]
            pub fn into_owned(self) -> $name<'static> {
                self.owned_in(&Owner::NONE)
            }

            /// Whether it points into an owned event's shared body.
            #[cfg(test)]
            #[allow(dead_code, reason = "the tests look at some of the identifier types only")]
            pub(crate) fn shares_body(&self) -> bool {
                matches!(self.0, Text::Shared { .. })
            }

            /// A copy that owns its data, in `owner`'s shared body if it lies there.
            pub(crate) fn owned_in(self, owner: &Owner) -> $name<'static> {
                $name(self.0.owned_in(owner))
            }
        }

        impl<'a> From<Cow<'a, str>> for $name<'a> {
            fn from(s: Cow<'a, str>) -> Self {
                Self(Text::Cow(s))
            }
        }

        impl<'a> From<&'a str> for $name<'a> {
            fn from(s: &'a str) -> Self {
                Self(Text::Cow(Cow::Borrowed(s)))
            }
        }

        impl From<String> for $name<'static> {
            fn from(s: String) -> Self {
                Self(Text::Cow(Cow::Owned(s)))
            }
        }

        impl AsRef<str> for $name<'_> {
            fn as_ref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl std::ops::Deref for $name<'_> {
            type Target = str;
            fn deref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl PartialEq<str> for $name<'_> {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }

        impl PartialEq<&str> for $name<'_> {
            fn eq(&self, other: &&str) -> bool {
                self.0.as_str() == *other
            }
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                cow_str(d).map(|s| Self(Text::Cow(s)))
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
