//! One answer of a list call read as a page: the list found in it (bare, or under
//! one of its fields), the wrapper's other fields, and what it says of a next page.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One answer of a list call: its items, the wrapper's other fields, and what it
/// says of a next page. Each item is read as a `T` (a lenient model, so that no
/// item of an unexpected shape fails the page).
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) extra: Map<String, Value>,
    pub(crate) next: Next,
}

/// What a list page says of the next one.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Nothing: this is the last page.
    None,
    /// A next page's URL, as sent.
    Url(String),
    /// A cursor to ask for the next page with.
    Cursor(String),
    /// More pages, but nothing this client can follow: the sign seen.
    Unfollowable(String),
}

/// Fields saying whether more pages follow.
const MORE_FLAGS: &[&str] = &["has_more", "has_next", "has_next_page", "more"];
/// Fields holding the next page's URL.
const NEXT_URLS: &[&str] = &["next", "next_url", "next_page_url"];
/// Fields holding the next page's cursor.
const NEXT_CURSORS: &[&str] = &["next_cursor", "next_page_token"];
/// Fields holding how many items the whole list has.
const TOTALS: &[&str] = &["total", "total_count"];
/// Fields holding how many pages the whole list has.
const PAGE_COUNTS: &[&str] = &["total_pages", "page_count"];
/// Fields holding the current page's number.
const PAGE_NUMBERS: &[&str] = &["page", "current_page"];

/// Where the list reading is: items and pages read before this page.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    pub(crate) items: usize,
    pub(crate) pages: usize,
}

/// The wrapper's fields, each as sent.
type Fields<'a> = Vec<(String, &'a RawValue)>;

impl<T: DeserializeOwned> Page<T> {
    /// A list sent bare, or wrapped in an object under one of `keys` (when several
    /// hold an array, the only non-empty one), or else under the object's only
    /// array field when that is not empty. Each item must be an object, and there
    /// may be at most `limit` of them. Anything else is an error naming what was
    /// seen (`what`: the items' name). The items are read one by one from the bytes,
    /// never as one tree of the whole page.
    pub(crate) fn parse(
        bytes: &[u8],
        keys: &[&str],
        what: &str,
        limit: usize,
        before: Progress,
    ) -> Result<Self, String> {
        let raw: &RawValue = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let items_of = |raw: &RawValue| -> Result<Vec<T>, String> {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            Items::new(limit, what)
                .deserialize(&mut de)
                .map_err(|e| e.to_string())
        };
        let text = raw.get().trim_start();
        if text.starts_with('[') {
            return Ok(Self {
                items: items_of(raw)?,
                extra: Map::new(),
                next: Next::None,
            });
        }
        if !text.starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            return Err(format!(
                "the answer is {}, not a list of {what}",
                json_type(&value)
            ));
        }
        let fields: Fields<'_> = serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let key = list_key(&fields, keys, what)?;
        let mut items = None;
        let mut extra = Map::new();
        for (k, v) in &fields {
            if Some(k) == key.as_ref() {
                items = Some(items_of(v)?);
            } else {
                let value = serde_json::from_str(v.get()).map_err(|e| e.to_string())?;
                extra.insert(k.clone(), value);
            }
        }
        let Some(items) = items else {
            return Err(no_list(&extra, keys, what));
        };
        let progress = Progress {
            items: before.items + items.len(),
            pages: before.pages + 1,
        };
        let next = next_page(&extra, progress);
        Ok(Self { items, extra, next })
    }

    /// [`parse`](Self::parse) for a value already read (the models' `Deserialize`).
    pub(crate) fn from_value(value: &Value, keys: &[&str], what: &str) -> Result<Self, String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        Self::parse(&bytes, keys, what, usize::MAX, Progress::default())
    }
}

/// Whether a field holds an array.
fn is_array(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('[')
}

/// Whether a field holds an empty array.
fn is_empty(raw: &RawValue) -> bool {
    raw.get()
        .trim()
        .strip_prefix('[')
        .is_some_and(|r| r.trim_start().starts_with(']'))
}

/// `keys` as a list for a message: `` `data`, `items` ``.
fn quoted<S: AsRef<str>>(keys: &[S]) -> String {
    keys.iter()
        .map(|k| format!("`{}`", k.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The field holding the list: the one of `keys` holding an array (of several, the
/// only non-empty one, or the first when all are empty), else the only array field
/// when it is not empty. Several non-empty ones of `keys` are an error.
fn list_key(fields: &Fields<'_>, keys: &[&str], what: &str) -> Result<Option<String>, String> {
    let listed: Vec<&(String, &RawValue)> = fields
        .iter()
        .filter(|(k, v)| keys.contains(&k.as_str()) && is_array(v))
        .collect();
    match listed.as_slice() {
        [] => {
            let arrays: Vec<_> = fields.iter().filter(|(_, v)| is_array(v)).collect();
            Ok(match arrays.as_slice() {
                [(key, raw)] if !is_empty(raw) => Some(key.clone()),
                _ => None,
            })
        }
        [(key, _)] => Ok(Some(key.clone())),
        several => {
            let full: Vec<&String> = several
                .iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, _)| k)
                .collect();
            match full.as_slice() {
                [] => Ok(Some(several[0].0.clone())),
                [key] => Ok(Some((*key).clone())),
                keys => Err(format!(
                    "the answer holds several lists ({}): cannot tell which one is the list \
                     of {what}",
                    quoted(keys)
                )),
            }
        }
    }
}

/// The error for a wrapper with no list in it: its fields and their types.
fn no_list(extra: &Map<String, Value>, keys: &[&str], what: &str) -> String {
    let fields: Vec<String> = extra
        .iter()
        .map(|(k, v)| format!("`{k}` ({})", json_type(v)))
        .collect();
    format!(
        "no list of {what} found in the answer (its fields: {}); expected an array, or one \
         under {}",
        if fields.is_empty() {
            "none".to_owned()
        } else {
            fields.join(", ")
        },
        quoted(keys),
    )
}

/// The items of a list, each an object read as a `T`, at most `limit` of them, read
/// one at a time.
struct Items<'a, T> {
    limit: usize,
    what: &'a str,
    item: PhantomData<T>,
}

impl<'a, T> Items<'a, T> {
    fn new(limit: usize, what: &'a str) -> Self {
        Self {
            limit,
            what,
            item: PhantomData,
        }
    }
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Items<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Items<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of {}", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            let Value::Object(map) = item else {
                return Err(A::Error::custom(format!(
                    "item {} of the list of {} is {}, not an object",
                    items.len() + 1,
                    self.what,
                    json_type(&item)
                )));
            };
            if items.len() >= self.limit {
                return Err(A::Error::custom(format!(
                    "the list has more than {} {}; nothing was decided from it",
                    crate::MAX_ITEMS,
                    self.what
                )));
            }
            items.push(T::deserialize(Value::Object(map)).map_err(A::Error::custom)?);
        }
        Ok(items)
    }
}

/// The wrapper's fields a next page is looked for in: its own (prefix `""`), and
/// those of each object among them (`pagination`, `meta`, `paging`, `links`…,
/// prefix `"pagination."`).
type Scopes<'a> = Vec<(String, &'a Map<String, Value>)>;

/// Fields that name a next page's URL or cursor: their full name, and value.
type Named<'a> = Vec<(String, &'a Value)>;

/// What the wrapper says of a next page: its own fields, and those of each object
/// among them. `progress`: the items and pages read so far, this page included, for
/// a `total` or a `total_pages`.
fn next_page(map: &Map<String, Value>, progress: Progress) -> Next {
    let mut scopes: Scopes<'_> = vec![(String::new(), map)];
    scopes.extend(
        map.iter()
            .filter_map(|(k, v)| Some((format!("{k}."), v.as_object()?))),
    );
    // An explicit "no more" ends the list, whatever else is sent.
    if scopes.iter().any(|(_, m)| {
        MORE_FLAGS
            .iter()
            .any(|f| m.get(*f) == Some(&Value::Bool(false)))
    }) {
        return Next::None;
    }
    let (urls, cursors) = named_next(&scopes);
    if let Some(next) = followable(&urls, &cursors) {
        return next;
    }
    if let Some(sign) = scopes
        .iter()
        .find_map(|(prefix, m)| sign_of_more(prefix, m, progress))
    {
        return Next::Unfollowable(sign);
    }
    if let Some((name, _)) = urls.iter().chain(&cursors).find(|(_, v)| is_set(v)) {
        return Next::Unfollowable(format!("`{name}` is set"));
    }
    Next::None
}

/// Whether a field says something: not `null`, `false` or `""`.
fn is_set(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && v != ""
}

/// The fields naming a next page's URL (an object's `href` under them), then those
/// naming its cursor, in scope order.
fn named_next<'a>(scopes: &Scopes<'a>) -> (Named<'a>, Named<'a>) {
    let mut urls = Vec::new();
    let mut cursors = Vec::new();
    for (prefix, m) in scopes {
        for key in NEXT_URLS {
            if let Some(v) = m.get(*key) {
                let href = v.as_object().and_then(|o| o.get("href")).unwrap_or(v);
                urls.push((format!("{prefix}{key}"), href));
            }
        }
        for key in NEXT_CURSORS {
            if let Some(v) = m.get(*key) {
                cursors.push((format!("{prefix}{key}"), v));
            }
        }
    }
    (urls, cursors)
}

/// The first non-empty next URL, else the first cursor (a string or a number).
fn followable(urls: &Named<'_>, cursors: &Named<'_>) -> Option<Next> {
    if let Some(url) = urls
        .iter()
        .find_map(|(_, v)| v.as_str().filter(|s| !s.is_empty()))
    {
        return Some(Next::Url(url.to_owned()));
    }
    cursors.iter().find_map(|(_, v)| match v {
        Value::String(s) if !s.is_empty() => Some(Next::Cursor(s.clone())),
        Value::Number(n) => Some(Next::Cursor(n.to_string())),
        _ => None,
    })
}

/// A sign in `m` (fields named with `prefix`) of more pages this client cannot
/// follow: a flag set, `cursors.after`, a total above the items read, a page count
/// above the current page.
fn sign_of_more(prefix: &str, m: &Map<String, Value>, progress: Progress) -> Option<String> {
    for flag in MORE_FLAGS.iter().chain(&["next_page"]) {
        if m.get(*flag).is_some_and(is_set) {
            return Some(format!("`{prefix}{flag}` is {}", m[*flag]));
        }
    }
    if let Some(after) = m
        .get("cursors")
        .and_then(|c| c.get("after"))
        .filter(|v| is_set(v))
    {
        return Some(format!("`{prefix}cursors.after` is {after}"));
    }
    for key in TOTALS {
        if let Some(total) = m.get(*key).and_then(Value::as_u64)
            && total > progress.items as u64
        {
            return Some(format!(
                "`{prefix}{key}` is {total}, {} read",
                progress.items
            ));
        }
    }
    let page = PAGE_NUMBERS
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_u64))
        .unwrap_or(progress.pages as u64);
    PAGE_COUNTS.iter().find_map(|key| {
        let pages = m.get(*key).and_then(Value::as_u64)?;
        (pages > page).then(|| format!("`{prefix}{key}` is {pages}, on page {page}"))
    })
}

/// The kind of a JSON value, for messages: `a string`, `an object`…
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
