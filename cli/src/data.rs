//! The body a command sends: a sample, or a file's bytes exactly as they are, with at
//! most its `id` and `created_at` replaced in place.

use std::collections::BTreeMap;
use std::path::Path;

use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks::testing::{Sample, fresh_id};
use serde_json::value::RawValue;

use crate::term::{note, printable, read};

/// A body to send, with the id and type shown in the table.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) body: Vec<u8>,
    pub(crate) id: String,
    pub(crate) event_type: String,
}

impl Outgoing {
    pub(crate) fn from_sample(sample: &Sample) -> Self {
        Self {
            body: sample.body(),
            id: sample.event_id().to_owned(),
            event_type: sample.event_type().to_owned(),
        }
    }

    /// The bytes of the file at `path`, whose `type` must be `event_type`. Its `id`
    /// is replaced by `id`, or by a new one when `fresh`; its `created_at` by now when
    /// `fresh`. Only those string values change, in place; a note on standard error
    /// says what changed.
    pub(crate) fn from_file(
        path: &Path,
        event_type: &str,
        fresh: bool,
        id: Option<&str>,
    ) -> Result<Self, String> {
        let what = printable(&path.display().to_string(), false);
        let body = read(path)?;
        let fields = Fields::parse(&body).map_err(|e| format!("{what}: {e}"))?;
        let file_type = fields
            .string("type")
            .map_err(|e| format!("{what}: {e}"))?
            .ok_or_else(|| format!("{what}: no `type`"))?;
        if file_type != event_type {
            return Err(format!(
                "{what} is a `{}` event, not `{}`: the event type given must be the file's `type`",
                printable(&file_type, false),
                printable(event_type, false),
            ));
        }
        let mut changes = Vec::new();
        if let Some(new) = id.map(str::to_owned).or_else(|| fresh.then(fresh_id)) {
            changes.push(("id", new));
        }
        if fresh {
            changes.push(("created_at", Timestamp::now().trunc_seconds().to_string()));
        }
        let (body, said) = fields
            .replace(&changes)
            .map_err(|e| format!("{what}: {e}"))?;
        if !said.is_empty() {
            note(format_args!(
                "note: {what} sent with {}; every other byte as in the file",
                said.join(" and ")
            ));
        }
        let id = Fields::parse(&body)
            .and_then(|fields| fields.string("id"))
            .ok()
            .flatten()
            .unwrap_or_else(|| "?".to_owned());
        Ok(Self {
            body,
            id,
            event_type: file_type,
        })
    }
}

/// A JSON object's top-level fields, borrowed from its bytes.
struct Fields<'a> {
    body: &'a [u8],
    fields: BTreeMap<String, &'a RawValue>,
}

/// An object's members, each key once: a key given twice is an error (a receiver
/// refuses such an event, and which of its values is meant is unclear).
struct Unique<'a>(BTreeMap<String, &'a RawValue>);

impl<'de> serde::Deserialize<'de> for Unique<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Unique<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    if fields.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "the key {key:?} is given twice"
                        )));
                    }
                    fields.insert(key, value);
                }
                Ok(Unique(fields))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl<'a> Fields<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, String> {
        let Unique(fields) = serde_json::from_slice(body)
            .map_err(|e| format!("not a JSON object with an event's fields: {e}"))?;
        Ok(Self { body, fields })
    }

    /// The string value of field `name`, if there is one.
    fn string(&self, name: &str) -> Result<Option<String>, String> {
        self.fields
            .get(name)
            .map(|raw| {
                serde_json::from_str(raw.get()).map_err(|_| format!("`{name}` is not a string"))
            })
            .transpose()
    }

    /// Where field `name`'s value is in the body, and its text (quotes included).
    fn span(&self, name: &str) -> Result<(usize, &'a str), String> {
        let raw = self
            .fields
            .get(name)
            .ok_or_else(|| format!("no `{name}` to replace"))?
            .get();
        // The value is a slice of the body: its offset is the distance between the two.
        let start = (raw.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        match self.body.get(start..start + raw.len()) {
            Some(bytes) if bytes == raw.as_bytes() => Ok((start, raw)),
            _ => Err(format!("cannot find where `{name}` is")),
        }
    }

    /// The body with each named string value replaced, every other byte unchanged;
    /// and what changed, in words.
    fn replace(&self, changes: &[(&str, String)]) -> Result<(Vec<u8>, Vec<String>), String> {
        let mut spans = Vec::new();
        let mut said = Vec::new();
        for (name, new) in changes {
            let old = self
                .string(name)?
                .ok_or_else(|| format!("no `{name}` to replace"))?;
            let (start, raw) = self.span(name)?;
            let new_json = serde_json::to_string(new).map_err(|e| e.to_string())?;
            said.push(format!("`{name}` {old:?} replaced by {new:?}"));
            spans.push((start, start + raw.len(), new_json));
        }
        spans.sort_by_key(|&(start, ..)| std::cmp::Reverse(start));
        let mut body = self.body.to_vec();
        for (start, end, new) in spans {
            body.splice(start..end, new.into_bytes());
        }
        Ok((body, said))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "{ \"type\":\"user.online\",\"n\":12345678901234567890123,\n  \"id\": \"evt_1\", \"created_at\":\"2024-01-01T12:00:00Z\",\"data\":{\"id\":\"x\"},\"extra\":[1] }\n";

    #[test]
    fn only_the_named_values_change() {
        let fields = Fields::parse(BODY.as_bytes()).unwrap();
        let (body, said) = fields
            .replace(&[
                ("id", "evt_2".to_owned()),
                ("created_at", "2026-12-04T00:00:00Z".to_owned()),
            ])
            .unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            BODY.replace("evt_1", "evt_2")
                .replace("2024-01-01T12:00:00Z", "2026-12-04T00:00:00Z")
        );
        assert_eq!(said.len(), 2);
        assert!(
            said[0].contains("\"evt_1\" replaced by \"evt_2\""),
            "{said:?}"
        );
    }

    #[test]
    fn a_value_that_is_not_a_string_is_not_replaced() {
        let fields = Fields::parse(br#"{"id":1,"type":"x"}"#).unwrap();
        assert!(fields.replace(&[("id", "evt_2".to_owned())]).is_err());
        assert!(
            Fields::parse(br#"{"type":"x"}"#)
                .unwrap()
                .replace(&[("id", "a".to_owned())])
                .is_err()
        );
        assert!(Fields::parse(b"[1]").is_err());
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        for body in [
            &br#"{"id":"evt_first","type":"user.online","id":"evt_second"}"#[..],
            br#"{"type":"user.online","type":"message.received","id":"evt_1"}"#,
        ] {
            let e = Fields::parse(body).err().unwrap();
            assert!(e.contains("is given twice"), "{e}");
        }
        assert!(Fields::parse(br#"{"id":"a","data":{"id":"b"}}"#).is_ok());
    }
}
