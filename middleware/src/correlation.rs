//! Correlation ids: what a valid one is, where it is read from, and how one is made.
//!
//! A correlation id names one business request across every service it touches. The server
//! layer reads it from the first configured header that holds a valid one (by default
//! `x-correlation-id`, then `x-request-id`), else from the W3C baggage key `correlation.id` (or
//! `correlation-id`, what Jaeger's `uberctx-correlation-id` becomes: see [`from_baggage`]), else
//! generates a UUIDv7. An invalid incoming value is never echoed or logged: it is replaced.
//!
//! This module knows nothing of tower or axum, so the client and the server share it.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;

/// The header the server echoes and the client sends: `x-correlation-id`.
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
/// The second header read by default: `x-request-id`.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C baggage key that carries the correlation id across OpenTelemetry services.
pub const BAGGAGE_KEY: &str = "correlation.id";
/// The baggage key Jaeger's `uberctx-correlation-id` header becomes, read after
/// [`BAGGAGE_KEY`].
pub const JAEGER_BAGGAGE_KEY: &str = "correlation-id";
/// The longest accepted correlation id, in bytes.
pub const MAX_LEN: usize = 128;

/// A validated correlation id: 1 to 128 visible ASCII characters (`!` to `~`).
///
/// Cloning is cheap. It is stored in request extensions and in the OpenTelemetry
/// [`Context`](opentelemetry::Context) of a traced request.
///
/// ```
/// use service_tracing_middleware::CorrelationId;
///
/// let id = CorrelationId::parse("order-42").unwrap();
/// assert_eq!(id.as_str(), "order-42");
/// assert!(CorrelationId::parse("has space").is_none());
/// assert!(CorrelationId::parse(&"x".repeat(129)).is_none());
/// assert_eq!(CorrelationId::generate().as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(Arc<str>);

impl CorrelationId {
    /// Accepts `value` if it is a valid correlation id.
    pub fn parse(value: &str) -> Option<Self> {
        Self::is_valid(value.as_bytes()).then(|| Self(Arc::from(value)))
    }

    /// Accepts raw header bytes if they form a valid correlation id (non-UTF-8 is invalid).
    ///
    /// ```
    /// use service_tracing_middleware::CorrelationId;
    /// assert!(CorrelationId::from_bytes(b"abc").is_some());
    /// assert!(CorrelationId::from_bytes(b"\xff\xfe").is_none());
    /// ```
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        if !Self::is_valid(value) {
            return None;
        }
        // Visible ASCII is valid UTF-8.
        std::str::from_utf8(value).ok().map(|s| Self(Arc::from(s)))
    }

    /// Makes a new id: a UUIDv7, so ids sort by creation time.
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        let s = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        Self(Arc::from(&*s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an `Arc<str>`, for attribute and baggage values without copying.
    pub fn as_arc(&self) -> Arc<str> {
        self.0.clone()
    }

    /// Whether `value` is a valid correlation id.
    pub fn is_valid(value: &[u8]) -> bool {
        !value.is_empty()
            && value.len() <= MAX_LEN
            && value.iter().all(|b| (0x21..=0x7e).contains(b))
    }

    /// The id of the request being served, from the current OpenTelemetry context.
    ///
    /// ```
    /// use service_tracing_middleware::CorrelationId;
    /// assert!(CorrelationId::current().is_none());
    /// let id = CorrelationId::parse("abc").unwrap();
    /// let _guard = opentelemetry::Context::current_with_value(id.clone()).attach();
    /// assert_eq!(CorrelationId::current(), Some(id));
    /// ```
    pub fn current() -> Option<Self> {
        opentelemetry::Context::map_current(|cx| cx.get::<Self>().cloned())
    }

    /// The id carried by a given context.
    pub fn from_context(cx: &opentelemetry::Context) -> Option<Self> {
        cx.get::<Self>().cloned()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CorrelationId").field(&&*self.0).finish()
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Where a request's correlation id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorrelationSource {
    /// A valid value in one of the configured headers.
    Header,
    /// A valid value in the incoming baggage.
    Baggage,
    /// None was sent; one was generated.
    Generated,
    /// An invalid value was sent and replaced by a generated one.
    Replaced,
}

/// The correlation id carried in baggage, for [`resolve`]: the first valid value of
/// `correlation.id` ([`BAGGAGE_KEY`]) then `correlation-id` ([`JAEGER_BAGGAGE_KEY`], what
/// Jaeger's `uberctx-correlation-id` becomes); when neither is valid, the first present (so
/// that [`resolve`] reports it replaced).
///
/// ```
/// use opentelemetry::baggage::Baggage;
/// use service_tracing_middleware::correlation::from_baggage;
///
/// let mut baggage = Baggage::new();
/// baggage.insert("correlation-id", "from-jaeger");
/// assert_eq!(from_baggage(&baggage), Some("from-jaeger"));
/// baggage.insert("correlation.id", "from-w3c");
/// assert_eq!(from_baggage(&baggage), Some("from-w3c"));
/// baggage.insert("correlation.id", "not valid");
/// assert_eq!(from_baggage(&baggage), Some("from-jaeger"));
/// ```
pub fn from_baggage(baggage: &opentelemetry::baggage::Baggage) -> Option<&str> {
    let mut first = None;
    for key in [BAGGAGE_KEY, JAEGER_BAGGAGE_KEY] {
        if let Some(value) = baggage.get(key).map(|v| v.as_str()) {
            if CorrelationId::is_valid(value.as_bytes()) {
                return Some(value);
            }
            first = first.or(Some(value));
        }
    }
    first
}

/// Finds the request's correlation id: the first header in `headers_to_read` with a valid value,
/// else a valid baggage value, else a generated one. Only the first value of each header is
/// read.
///
/// ```
/// use service_tracing_middleware::correlation::{resolve, CorrelationSource, CORRELATION_ID_HEADER};
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-correlation-id", "abc".parse().unwrap());
/// let (id, source) = resolve(&headers, &[CORRELATION_ID_HEADER], None);
/// assert_eq!((id.as_str(), source), ("abc", CorrelationSource::Header));
/// ```
pub fn resolve(
    headers: &http::HeaderMap,
    headers_to_read: &[HeaderName],
    baggage_value: Option<&str>,
) -> (CorrelationId, CorrelationSource) {
    let mut saw_invalid = false;
    for name in headers_to_read {
        if let Some(value) = headers.get(name) {
            match CorrelationId::from_bytes(value.as_bytes()) {
                Some(id) => return (id, CorrelationSource::Header),
                None => saw_invalid = true,
            }
        }
    }
    if let Some(value) = baggage_value {
        match CorrelationId::parse(value) {
            Some(id) => return (id, CorrelationSource::Baggage),
            None => saw_invalid = true,
        }
    }
    let source = if saw_invalid {
        CorrelationSource::Replaced
    } else {
        CorrelationSource::Generated
    };
    (CorrelationId::generate(), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_visible_ascii_only() {
        assert!(CorrelationId::is_valid(b"a"));
        assert!(CorrelationId::is_valid(b"!~"));
        assert!(CorrelationId::is_valid("x".repeat(128).as_bytes()));
        assert!(!CorrelationId::is_valid("x".repeat(129).as_bytes()));
        assert!(!CorrelationId::is_valid(b""));
        assert!(!CorrelationId::is_valid(b"a b"));
        assert!(!CorrelationId::is_valid(b"a\tb"));
        assert!(!CorrelationId::is_valid(b"a\x7f"));
        assert!(!CorrelationId::is_valid("é".as_bytes()));
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = CorrelationId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(id, CorrelationId::generate());
    }

    #[test]
    fn resolve_prefers_headers_in_order_then_baggage() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, "second".parse().expect("valid"));
        let order = [CORRELATION_ID_HEADER, REQUEST_ID_HEADER];
        let (id, source) = resolve(&headers, &order, Some("from-baggage"));
        assert_eq!((id.as_str(), source), ("second", CorrelationSource::Header));

        headers.insert(CORRELATION_ID_HEADER, "first".parse().expect("valid"));
        assert_eq!(resolve(&headers, &order, None).0.as_str(), "first");

        let (id, source) = resolve(&http::HeaderMap::new(), &order, Some("from-baggage"));
        assert_eq!(
            (id.as_str(), source),
            ("from-baggage", CorrelationSource::Baggage)
        );
    }

    #[test]
    fn baggage_is_read_from_either_key() {
        use opentelemetry::baggage::Baggage;
        let mut baggage = Baggage::new();
        assert_eq!(from_baggage(&baggage), None);
        baggage.insert(JAEGER_BAGGAGE_KEY, "bad value");
        assert_eq!(from_baggage(&baggage), Some("bad value"));
        let (_, source) = resolve(&http::HeaderMap::new(), &[], from_baggage(&baggage));
        assert_eq!(source, CorrelationSource::Replaced);
        baggage.insert(JAEGER_BAGGAGE_KEY, "abc");
        let (id, source) = resolve(&http::HeaderMap::new(), &[], from_baggage(&baggage));
        assert_eq!((id.as_str(), source), ("abc", CorrelationSource::Baggage));
    }

    #[test]
    fn invalid_values_are_replaced_not_kept() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            CORRELATION_ID_HEADER,
            http::HeaderValue::from_bytes(b"bad\xffvalue").expect("header bytes"),
        );
        let (id, source) = resolve(&headers, &[CORRELATION_ID_HEADER], None);
        assert_eq!(source, CorrelationSource::Replaced);
        assert_eq!(id.as_str().len(), 36);
    }
}
