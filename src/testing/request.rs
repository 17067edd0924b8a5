//! Signed requests, as NotMeta sends them.

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;

use crate::signature::{SIGNATURE_HEADER, sign};

/// A body and its `X-NotMeta-Signature` value: what NotMeta sends.
///
/// ```
/// use notmeta_webhooks::Verifier;
/// use notmeta_webhooks::testing::SignedRequest;
///
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let signed = SignedRequest::new(body.to_vec(), "whsec_abc123");
/// assert!(signed.signature.starts_with("sha256="));
/// let event = Verifier::new("whsec_abc123")?.verify(&signed.body, [&signed.signature])?.parse()?;
/// assert_eq!(event.id, "evt_1");
///
/// // For curl: -H "$(signed.header_line())" --data-binary @body.json
/// assert!(signed.header_line().starts_with("X-NotMeta-Signature: sha256="));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedRequest {
    /// The body, exactly as signed.
    pub body: Bytes,
    /// The value of `X-NotMeta-Signature`: `sha256=` and 64 hex digits.
    pub signature: String,
}

impl SignedRequest {
    /// Signs `body` with `secret` (its UTF-8 bytes, `whsec_` prefix included).
    #[must_use]
    pub fn new(body: impl Into<Bytes>, secret: &str) -> Self {
        let body = body.into();
        let signature = sign(&body, secret);
        Self { body, signature }
    }

    /// The header as one line, `X-NotMeta-Signature: sha256=…`.
    #[must_use]
    pub fn header_line(&self) -> String {
        format!("X-NotMeta-Signature: {}", self.signature)
    }

    /// A `POST /webhooks` request with the body, the signature, `Content-Type:
    /// application/json` and `Content-Length`.
    #[must_use]
    pub fn request(&self) -> Request<Full<Bytes>> {
        self.request_to("/webhooks")
    }

    /// A `POST` request to `uri` (a path such as `/hooks/notmeta`, or a full URL).
    ///
    /// # Panics
    ///
    /// If `uri` is not a valid URI.
    #[must_use]
    pub fn request_to(&self, uri: &str) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri
            .parse()
            .unwrap_or_else(|e| panic!("{uri:?} is not a URI: {e}"));
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        if let Ok(value) = HeaderValue::from_str(&self.signature) {
            headers.insert(SIGNATURE_HEADER, value);
        }
        request
    }
}
