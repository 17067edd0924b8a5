//! The owned event's one copy of its body, which its identifiers point into.
//!
//! [`Event::into_owned`](super::Event::into_owned) copies the body once into an
//! `Arc<str>`; every identifier borrowed from the body becomes a range of that copy
//! instead of a string of its own. Cloning an owned event's identifier (the event
//! id a delivery keeps to settle its claim) then shares the copy too.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::lenient::own;

/// A string borrowed from the body, owned, or a range of an owned event's shared body.
#[derive(Clone)]
pub(crate) enum Text<'a> {
    /// Borrowed from the body, or a copy of its own.
    Cow(Cow<'a, str>),
    /// `body[start..end]`.
    Shared {
        body: Arc<str>,
        start: u32,
        end: u32,
    },
}

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Cow(s) => s,
            // The range was taken from a `&str` inside the same bytes: in bounds and
            // on character boundaries.
            Text::Shared { body, start, end } => &body[*start as usize..*end as usize],
        }
    }

    /// A copy free of the body's lifetime: borrowed text goes into `owner`'s shared
    /// body when it lies inside it, and is copied otherwise.
    pub(crate) fn owned_in(self, owner: &Owner) -> Text<'static> {
        match self {
            Text::Cow(s) => owner.text(s),
            Text::Shared { body, start, end } => Text::Shared { body, start, end },
        }
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text<'_> {}

impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// The body of an event: borrowed, owned, or the shared copy of an owned event.
#[derive(Clone)]
pub(crate) enum Body<'a> {
    /// Checked to be UTF-8 (every event parsed from a body).
    Str(&'a str),
    /// Not checked (only while parsing reports where a body that is not UTF-8
    /// stops being JSON).
    Cow(Cow<'a, [u8]>),
    Shared(Arc<str>),
}

impl Body<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Str(text) => text.as_bytes(),
            Body::Cow(bytes) => bytes,
            Body::Shared(text) => text.as_bytes(),
        }
    }

    /// The owned body, and the owner that identifiers borrowed from it are shared
    /// with.
    pub(crate) fn into_owned(self) -> (Body<'static>, Owner) {
        // The strings borrowed from the body are found at the same offsets in its
        // copy.
        let (base, len) = (self.as_bytes().as_ptr() as usize, self.as_bytes().len());
        let text = match self {
            Body::Shared(text) => text,
            Body::Str(text) => Arc::from(text),
            // Not reached (an event's body is checked to be UTF-8 when it is
            // parsed), but a body that were not would simply not be shared.
            Body::Cow(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => Arc::from(text),
                Err(_) => return (Body::Cow(Cow::Owned(bytes.into_owned())), Owner::NONE),
            },
        };
        let owner = Owner {
            base,
            len,
            body: Some(Arc::clone(&text)),
        };
        (Body::Shared(text), owner)
    }
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_bytes(), f)
    }
}

impl PartialEq for Body<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Body<'_> {}

/// Where the strings of an event being made owned go.
pub(crate) struct Owner {
    /// The address and length of the body the strings were borrowed from.
    base: usize,
    len: usize,
    /// The shared copy of that body; `None`: each string is copied.
    body: Option<Arc<str>>,
}

impl Owner {
    /// Copies every string.
    pub(crate) const NONE: Owner = Owner {
        base: 0,
        len: 0,
        body: None,
    };

    fn text(&self, s: Cow<'_, str>) -> Text<'static> {
        if let (Cow::Borrowed(borrowed), Some(body)) = (&s, &self.body) {
            let start = (borrowed.as_ptr() as usize).wrapping_sub(self.base);
            let end = start.wrapping_add(borrowed.len());
            if start <= end
                && end <= self.len
                && let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end))
            {
                return Text::Shared {
                    body: Arc::clone(body),
                    start,
                    end,
                };
            }
        }
        Text::Cow(own(s))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Event, EventKind};

    #[test]
    fn the_owned_event_shares_its_body_and_equals_the_borrowed_one() {
        let body = br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
          "data":{"message":{"id":"msg_\u00e9","conversation_id":"conv_1","text":"Hola"},
                  "conversation":{"id":"conv_1"}}}"#;
        let event = Event::parse_unverified(body).unwrap();
        let owned = event.clone().into_owned();
        assert_eq!(owned, event);
        assert_eq!(owned.raw_body(), body);
        assert!(owned.id.shares_body());
        let EventKind::MessageReceived(m) = &owned.kind else {
            unreachable!()
        };
        // An escaped id was copied when parsed: it stays a string of its own.
        assert_eq!(m.message.id.as_deref(), Some("msg_é"));
        assert!(!m.message.id.as_ref().unwrap().shares_body());
        assert!(m.message.conversation_id.as_ref().unwrap().shares_body());
        // Owning it again keeps the one copy.
        assert_eq!(owned.clone().into_owned(), event);
    }
}
