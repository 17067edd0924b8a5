//! The envelope deserializer: from body bytes to an [`Event`] in one pass.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Event;
use super::id::EventId;
use super::kind::{EventKind, deserialize_kind};
use super::lenient;
use super::shared::Body;
use super::timestamp::Timestamp;
use crate::error::Error;

/// Parses a body into an event; the envelope is read in one pass, and `data` is
/// deserialised straight into the payload type when `type` comes before it (as
/// NotMeta sends it), or captured raw and parsed after the envelope otherwise.
///
/// JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks the strings it reads but
/// not those it skips, so the whole body is checked once, first: a body is never an
/// event because its invalid bytes sit in a field this crate ignores. The checked
/// body is then read as a `str`, so serde_json borrows each string without checking
/// its UTF-8 again.
pub(crate) fn parse(body: &[u8]) -> Result<Event<'_>, Error> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(utf8) => {
            // Cold path: where serde_json meets the bad bytes, it says where; bad
            // bytes only in a skipped field are refused all the same.
            return Err(
                match tracked(
                    serde_json::Deserializer::from_slice(body),
                    Body::Cow(Cow::Borrowed(body)),
                ) {
                    (Err(e), path) => Error::json(e, path),
                    (Ok(_), _) => Error::invalid_event(format!("the body is not UTF-8: {utf8}")),
                },
            );
        }
    };
    parse_from(serde_json::Deserializer::from_str(text), text).map_err(|e| {
        // Cold path: parse again, tracking where the error happened.
        let (_, path) = tracked(serde_json::Deserializer::from_str(text), Body::Str(text));
        Error::json(e, path)
    })
}

/// Parses while tracking the JSON path, for error reports.
fn tracked<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    body: Body<'de>,
) -> (Result<Event<'de>, serde_json::Error>, Option<String>) {
    let mut track = serde_path_to_error::Track::new();
    let parsed = serde_path_to_error::Deserializer::new(&mut de, &mut track)
        .deserialize_map(EnvelopeVisitor { body })
        .and_then(|event| de.end().map(|()| event));
    let path = track.path().to_string();
    (parsed, (path != ".").then_some(path))
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    body: &'de str,
) -> Result<Event<'de>, serde_json::Error> {
    let body = Body::Str(body);
    let event = de.deserialize_map(EnvelopeVisitor { body })?;
    de.end()?;
    Ok(event)
}

struct EnvelopeVisitor<'a> {
    body: Body<'a>,
}

enum Field {
    Id,
    Type,
    CreatedAt,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "id" => Field::Id,
                    "type" => Field::Type,
                    "created_at" => Field::CreatedAt,
                    "data" => Field::Data,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Deserialises `data` for an already known `type`.
struct KindSeed<'de>(Cow<'de, str>);

impl<'de> DeserializeSeed<'de> for KindSeed<'de> {
    type Value = EventKind<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize_kind(self.0, d)
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'de> {
    type Value = Event<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NotMeta event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
        let mut id = None;
        let mut event_type: Option<Cow<'de, str>> = None;
        let mut created_at = None;
        let mut kind = None;
        let mut raw_data: Option<&'de RawValue> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id => set_once(&mut id, map.next_value::<EventId<'de>>()?, "id")?,
                Field::Type => {
                    let t = map.next_value_seed(CowStrSeed)?;
                    set_once(&mut event_type, t, "type")?;
                }
                Field::CreatedAt => {
                    set_once(
                        &mut created_at,
                        map.next_value::<Timestamp>()?,
                        "created_at",
                    )?;
                }
                Field::Data => {
                    if kind.is_some() || raw_data.is_some() {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    match &event_type {
                        Some(t) => kind = Some(map.next_value_seed(KindSeed(t.clone()))?),
                        None => raw_data = Some(map.next_value()?),
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let event_type = event_type.ok_or_else(|| de::Error::missing_field("type"))?;
        let created_at = created_at.ok_or_else(|| de::Error::missing_field("created_at"))?;
        let kind = match (kind, raw_data) {
            (Some(kind), _) => kind,
            (None, Some(raw)) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                deserialize_kind(event_type, &mut de).map_err(de::Error::custom)?
            }
            (None, None) => return Err(de::Error::missing_field("data")),
        };
        Ok(Event {
            id,
            created_at,
            kind,
            raw: self.body,
        })
    }
}

struct CowStrSeed;

impl<'de> DeserializeSeed<'de> for CowStrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        lenient::cow_str(d)
    }
}
