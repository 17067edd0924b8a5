//! The management answers' fields, read by the lenient rules of `notmeta-webhooks`'
//! events (a number or boolean where a string is expected reads as its text; a
//! timestamp that is not RFC 3339 is unavailable), with one addition: what a rule
//! cannot read is not dropped but kept as sent, for the model's `extra` map.
//!
//! Each rule is a `deserialize_with` function for a `#[serde(default)]` field of type
//! [`Lenient`]; the model's `From` then takes the field with [`Lenient::or_keep`].

use notmeta_webhooks::__private::{opt_string, opt_timestamp};
use notmeta_webhooks::event::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A field as a rule read it: absent, read, or kept as sent.
#[derive(Debug, Default)]
pub(super) enum Lenient<T> {
    /// The answer has no such field.
    #[default]
    Absent,
    /// The rule read the field.
    Read(T),
    /// The rule could not read the field (`null` included): its value as sent.
    Kept(Value),
}

impl<T> Lenient<T> {
    /// The value read; a value the rule could not read goes into `extra` under
    /// `name`.
    pub(super) fn or_keep(self, name: &str, extra: &mut Map<String, Value>) -> Option<T> {
        match self {
            Self::Absent => None,
            Self::Read(value) => Some(value),
            Self::Kept(sent) => {
                extra.insert(name.to_owned(), sent);
                None
            }
        }
    }
}

/// Reads the field's value as sent, then with `rule`.
fn read_with<'de, D, T>(
    d: D,
    rule: impl FnOnce(&Value) -> Option<T>,
) -> Result<Lenient<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let sent = Value::deserialize(d)?;
    Ok(match rule(&sent) {
        Some(value) => Lenient::Read(value),
        None => Lenient::Kept(sent),
    })
}

/// A string; a number or a boolean in its text form.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Lenient<String>, D::Error> {
    read_with(d, |v| opt_string::<String, _>(v).ok().flatten())
}

/// An RFC 3339 timestamp.
pub(super) fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Lenient<Timestamp>, D::Error> {
    read_with(d, |v| opt_timestamp(v).ok().flatten())
}

/// An array of names: its string items (the others are dropped).
pub(super) fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Lenient<Vec<String>>, D::Error> {
    read_with(d, |v| {
        let items = v.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
        )
    })
}

/// An integer that fits an HTTP status.
pub(super) fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<Lenient<u16>, D::Error> {
    read_with(d, |v| u16::try_from(v.as_u64()?).ok())
}

/// An object's fields; any other value is kept under the key `""`.
pub(super) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([(String::new(), other)]),
    }
}
