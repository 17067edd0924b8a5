//! Next-page links and URLs: the `Link` header, resolving a reference, one path
//! segment.

use http::Uri;

use crate::{Client, Error};

impl Client {
    /// A next-page URL, resolved against the page that gave it (`page`, RFC 3986),
    /// if it is on the base URL's origin.
    pub(crate) fn same_origin(&self, page: &str, next: &str) -> Result<String, String> {
        let base: Uri = self
            .inner
            .base_url
            .parse()
            .map_err(|_| "invalid base URL")?;
        let scheme = base.scheme_str().unwrap_or("https");
        let origin = format!("{scheme}://{}", base.authority().map_or("", |a| a.as_str()));
        let absolute = resolve(page, next);
        let uri: Uri = absolute
            .parse()
            .map_err(|_| "the next page's URL is not a valid URL".to_owned())?;
        let same = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && uri
                .authority()
                .zip(base.authority())
                .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
        if !same {
            return Err(format!(
                "the next page is on another origin ({}://{}); the token is sent only to {origin}",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.host()),
            ));
        }
        Ok(absolute)
    }
}

/// The `rel="next"` target of the `Link` headers (RFC 8288): several headers,
/// several links in one, `rel` quoted or bare, holding several relation types.
pub(crate) fn next_link(headers: &http::HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(mut rest) = value.to_str() else {
            continue;
        };
        while let Some(open) = rest.find('<') {
            let close = open + rest[open..].find('>')?;
            let target = &rest[open + 1..close];
            rest = &rest[close + 1..];
            // The parameters run to the next link: a `<` outside quotes.
            let mut end = rest.len();
            let mut quoted = false;
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    '<' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let params = &rest[..end];
            rest = &rest[end..];
            let mut split = Vec::new();
            let (mut from, mut quoted) = (0, false);
            for (i, c) in params.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ';' if !quoted => {
                        split.push(&params[from..i]);
                        from = i + 1;
                    }
                    _ => {}
                }
            }
            split.push(&params[from..]);
            let is_next = split.iter().any(|param| {
                let Some((name, value)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.trim().to_owned());
            }
        }
    }
    None
}

/// `reference` resolved against the absolute URL `base` (RFC 3986, section 5.2):
/// absolute only when it starts with a scheme; a network-path (`//host…`), an
/// absolute path, a query alone, or a path relative to the base's directory
/// otherwise. The fragment is dropped.
fn resolve(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or_default();
    let has_scheme = reference.find(':').is_some_and(|colon| {
        let scheme = &reference[..colon];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        return reference.to_owned();
    }
    let (scheme, after_scheme) = base.split_once("://").unwrap_or(("https", base));
    if let Some(rest) = reference.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, path_and_query) = after_scheme.split_at(authority_end);
    let base_path = path_and_query.split('?').next().unwrap_or_default();
    let origin = format!("{scheme}://{authority}");
    if reference.is_empty() {
        return base.split('#').next().unwrap_or_default().to_owned();
    }
    if reference.starts_with('?') {
        return format!("{origin}{base_path}{reference}");
    }
    let (path, query) = match reference.find('?') {
        Some(q) => reference.split_at(q),
        None => (reference, ""),
    };
    let merged = if path.starts_with('/') {
        path.to_owned()
    } else {
        let directory = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        format!("{directory}{path}")
    };
    format!("{origin}{}{query}", remove_dot_segments(&merged))
}

/// A path without its `.` and `..` segments (RFC 3986, section 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// Percent-encoded except for unreserved characters.
pub(crate) fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A webhook id as one path segment: percent-encoded except for unreserved
/// characters; empty, `.` and `..` refused.
pub(crate) fn path_segment(id: &str) -> Result<String, Error> {
    if matches!(id, "" | "." | "..") {
        return Err(Error::config(format!("invalid webhook id {id:?}")));
    }
    Ok(percent(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(path_segment("wh_123456789").unwrap(), "wh_123456789");
        assert_eq!(path_segment("a/b?c").unwrap(), "a%2Fb%3Fc");
        assert!(path_segment("..").is_err() && path_segment("").is_err());
    }

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        let base = "https://api.example/v1/webhooks?cursor=1";
        for (reference, resolved) in [
            (
                "webhooks?c=2&r=https://x.example/",
                "https://api.example/v1/webhooks?c=2&r=https://x.example/",
            ),
            ("?c=3", "https://api.example/v1/webhooks?c=3"),
            ("/v2/w?c=4#f", "https://api.example/v2/w?c=4"),
            ("../v0/./w", "https://api.example/v0/w"),
            ("//other.example/w", "https://other.example/w"),
            ("HTTP+x://h/w", "HTTP+x://h/w"),
            ("a:b", "a:b"),
            ("./a:b", "https://api.example/v1/a:b"),
            ("", "https://api.example/v1/webhooks?cursor=1"),
        ] {
            assert_eq!(resolve(base, reference), resolved, "{reference}");
        }
    }

    #[test]
    fn link_headers_give_the_next_target() {
        let headers = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(http::header::LINK, v.parse().unwrap());
            }
            map
        };
        for (values, next) in [
            (&["</p2>; rel=\"next\""][..], Some("/p2")),
            (&["</p2>; rel=next"], Some("/p2")),
            (
                &["</p1>; rel=prev, </p2>; rel=\"prefetch NEXT\""],
                Some("/p2"),
            ),
            (
                &[
                    "</p0>; rel=first",
                    "</p3>; title=\"a, <b>; rel=next\"; rel=last",
                    "</p4>;rel=next",
                ],
                Some("/p4"),
            ),
            (&["</p1>; rel=prev"], None),
            (&[], None),
        ] {
            assert_eq!(next_link(&headers(values)).as_deref(), next, "{values:?}");
        }
    }
}
