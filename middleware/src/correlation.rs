//! Correlation ids: what a valid one is, where it is read from, and how one is made.
//!
//! A correlation id names one business request across every service it touches. The server
//! layer reads it from the first configured header that holds a valid one (by default
//! `x-correlation-id`, then `x-request-id`), else from the W3C baggage key `correlation.id` (or
//! `correlation-id`, what Jaeger's `uberctx-correlation-id` becomes: see [`from_baggage`]), else
//! generates a UUIDv7. An invalid incoming value is never echoed or logged: it is replaced.
//!
//! # What a valid id is
//!
//! 1 to 128 bytes, each from a conservative charset: ASCII letters, digits and `-`, `_`, `.`,
//! `:` by default ([`CorrelationIdCharset::DEFAULT`]). An id travels into response headers,
//! log lines, span attributes and outbound W3C baggage, whose receivers percent-decode values:
//! a value such as `abc%0D%0Aforged` would turn into a CR/LF (and a forged header or log line)
//! at any hop that decodes it, so `%` and everything outside the charset is refused. Fleets
//! whose ids use other characters widen it with [`CorrelationIdCharset::with_extra`]
//! ([`TracingLayer::with_correlation_charset`](crate::TracingLayer::with_correlation_charset)),
//! which never allows CR, LF, NUL or any other control byte, space, `%`, `,`, `;`, `=` or
//! non-ASCII bytes.
//!
//! An id read from baggage is percent-decoded first (as W3C Baggage says), then checked like
//! one read from a header: a decoded CR, LF, NUL or `%` means a fresh id. Written into baggage,
//! an id has `%` and every byte outside the W3C baggage value's safe set percent-encoded.
//!
//! This module knows nothing of tower or axum, so the client and the server share it.

use std::fmt;
use std::sync::Arc;

use arrayvec::ArrayString;
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

/// A validated correlation id: 1 to 128 bytes from [`CorrelationIdCharset::DEFAULT`] (ASCII
/// letters, digits, `-`, `_`, `.`, `:`), or from the charset the layer was given.
///
/// Cloning is cheap: an id of up to 40 bytes (every generated one) is kept inline, a longer
/// one is shared. It is stored in request extensions and in the OpenTelemetry
/// [`Context`](opentelemetry::Context) of a traced request.
///
/// ```
/// use service_tracing_middleware::CorrelationId;
///
/// let id = CorrelationId::parse("order-42").unwrap();
/// assert_eq!(id.as_str(), "order-42");
/// assert!(CorrelationId::parse("has space").is_none());
/// assert!(CorrelationId::parse("abc%0D%0Aforged").is_none()); // `%`: not in the charset
/// assert!(CorrelationId::parse(&"x".repeat(129)).is_none());
/// assert_eq!(CorrelationId::generate().as_str().len(), 36);
/// ```
#[derive(Clone)]
pub struct CorrelationId(Repr);

/// Inline up to [`INLINE`] bytes: no allocation to make one, and a clone is a copy rather than
/// a shared count that every thread holding the id touches.
#[derive(Clone)]
enum Repr {
    Inline(ArrayString<INLINE>),
    Shared(Arc<str>),
}

/// The longest id kept inline: a generated id (36 bytes) and most incoming ones fit.
const INLINE: usize = 40;

impl PartialEq for CorrelationId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CorrelationId {}

impl std::hash::Hash for CorrelationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl CorrelationId {
    /// Accepts `value` if it is a valid correlation id under [`CorrelationIdCharset::DEFAULT`].
    pub fn parse(value: &str) -> Option<Self> {
        CorrelationIdCharset::DEFAULT.parse(value)
    }

    /// Accepts raw header bytes if they form a valid correlation id under
    /// [`CorrelationIdCharset::DEFAULT`] (non-UTF-8 is invalid).
    ///
    /// ```
    /// use service_tracing_middleware::CorrelationId;
    /// assert!(CorrelationId::from_bytes(b"abc").is_some());
    /// assert!(CorrelationId::from_bytes(b"\xff\xfe").is_none());
    /// ```
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        CorrelationIdCharset::DEFAULT.from_bytes(value)
    }

    /// Makes a new id: a UUIDv7, so ids sort by creation time (to the millisecond).
    pub fn generate() -> Self {
        Self::generate_at(std::time::SystemTime::now())
    }

    /// [`generate`](Self::generate) for `time` rather than now.
    pub(crate) fn generate_at(time: std::time::SystemTime) -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        let s = crate::ids::uuid_v7_at(time)
            .hyphenated()
            .encode_lower(&mut buf);
        Self::from_valid(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(text) => text,
            Repr::Shared(text) => text,
        }
    }

    /// An id of text already checked against a charset.
    fn from_valid(text: &str) -> Self {
        match ArrayString::from(text) {
            Ok(inline) => Self(Repr::Inline(inline)),
            Err(_) => Self(Repr::Shared(Arc::from(text))),
        }
    }

    /// The id as an `Arc<str>`, for attribute and baggage values (a long id is shared without
    /// copying; a short one is copied).
    pub fn as_arc(&self) -> Arc<str> {
        match &self.0 {
            Repr::Inline(text) => Arc::from(text.as_str()),
            Repr::Shared(text) => text.clone(),
        }
    }

    /// Whether `value` is a valid correlation id under [`CorrelationIdCharset::DEFAULT`].
    ///
    /// ```
    /// use service_tracing_middleware::CorrelationId;
    /// assert!(CorrelationId::is_valid(b"order-42:a_b.c"));
    /// assert!(!CorrelationId::is_valid(b"50%"));
    /// ```
    pub fn is_valid(value: &[u8]) -> bool {
        CorrelationIdCharset::DEFAULT.is_valid(value)
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CorrelationId")
            .field(&self.as_str())
            .finish()
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The bytes a correlation id may hold; its length is always 1 to [`MAX_LEN`] bytes.
///
/// [`DEFAULT`](Self::DEFAULT) (also [`Default`]) allows ASCII letters, digits, `-`, `_`, `.`
/// and `:`: what UUIDs, ULIDs, request ids of load balancers and most generated ids use.
/// [`with_extra`](Self::with_extra) allows more ASCII bytes, for fleets whose ids hold others,
/// but never CR, LF, NUL or any other control byte, DEL, space, `%`, `,`, `;`, `=` or non-ASCII
/// bytes: those break header values, log lines or W3C baggage (whose receivers percent-decode
/// values), whatever is configured. Checking an id is one table lookup per byte, without
/// allocating.
///
/// ```
/// use service_tracing_middleware::correlation::CorrelationIdCharset;
///
/// let charset = CorrelationIdCharset::DEFAULT;
/// assert!(charset.is_valid(b"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
/// assert!(!charset.is_valid(b"tenant/42"));
///
/// let wider = CorrelationIdCharset::DEFAULT.with_extra(b"/+").unwrap();
/// assert!(wider.is_valid(b"tenant/42+retry"));
/// assert!(CorrelationIdCharset::DEFAULT.with_extra(b"%").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorrelationIdCharset {
    allowed: [bool; 256],
}

/// Bytes no charset may allow: controls, space, DEL, non-ASCII, and the separators and escape
/// of header lists and W3C baggage.
const fn is_forbidden(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || matches!(b, b'%' | b',' | b';' | b'=')
}

const fn default_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':');
        b += 1;
    }
    table
}

impl CorrelationIdCharset {
    /// ASCII letters, digits, `-`, `_`, `.` and `:`.
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// assert!(CorrelationIdCharset::DEFAULT.allows(b':'));
    /// assert!(!CorrelationIdCharset::DEFAULT.allows(b'/'));
    /// ```
    pub const DEFAULT: Self = Self {
        allowed: default_table(),
    };

    /// This charset with the bytes of `extra` allowed too.
    ///
    /// # Errors
    ///
    /// [`InvalidCorrelationIdCharset`] naming the first byte of `extra` that no charset may
    /// allow (a control byte, space, DEL, `%`, `,`, `;`, `=` or a non-ASCII byte).
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/@").unwrap();
    /// assert!(charset.is_valid(b"team@svc/7"));
    /// let err = CorrelationIdCharset::DEFAULT.with_extra(b"/\n").unwrap_err();
    /// assert_eq!(err.byte(), b'\n');
    /// ```
    pub fn with_extra(mut self, extra: &[u8]) -> Result<Self, InvalidCorrelationIdCharset> {
        for &byte in extra {
            if is_forbidden(byte) {
                return Err(InvalidCorrelationIdCharset { byte });
            }
            self.allowed[usize::from(byte)] = true;
        }
        Ok(self)
    }

    /// Whether an id may hold `byte`.
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// assert!(CorrelationIdCharset::DEFAULT.allows(b'a'));
    /// assert!(!CorrelationIdCharset::DEFAULT.allows(b'%'));
    /// ```
    pub fn allows(&self, byte: u8) -> bool {
        self.allowed[usize::from(byte)]
    }

    /// Whether `value` is a valid id: 1 to [`MAX_LEN`] bytes, each allowed.
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// assert!(CorrelationIdCharset::DEFAULT.is_valid(b"order-42"));
    /// assert!(!CorrelationIdCharset::DEFAULT.is_valid(b"abc%0D%0A"));
    /// assert!(!CorrelationIdCharset::DEFAULT.is_valid(b""));
    /// ```
    pub fn is_valid(&self, value: &[u8]) -> bool {
        !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(|b| self.allows(*b))
    }

    /// Accepts `value` if it is a valid id under this charset.
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/").unwrap();
    /// assert_eq!(charset.parse("tenant/42").unwrap().as_str(), "tenant/42");
    /// assert!(charset.parse("tenant 42").is_none());
    /// ```
    pub fn parse(&self, value: &str) -> Option<CorrelationId> {
        self.is_valid(value.as_bytes())
            .then(|| CorrelationId::from_valid(value))
    }

    /// Accepts raw header bytes if they form a valid id under this charset.
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// assert!(CorrelationIdCharset::DEFAULT.from_bytes(b"abc").is_some());
    /// assert!(CorrelationIdCharset::DEFAULT.from_bytes(b"caf\xc3\xa9").is_none());
    /// ```
    pub fn from_bytes(&self, value: &[u8]) -> Option<CorrelationId> {
        if !self.is_valid(value) {
            return None;
        }
        // Every allowed byte is ASCII, so valid UTF-8.
        std::str::from_utf8(value)
            .ok()
            .map(CorrelationId::from_valid)
    }
}

impl Default for CorrelationIdCharset {
    /// [`CorrelationIdCharset::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for CorrelationIdCharset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Letters and digits are always there: show the other bytes allowed.
        let others: String = (0u8..=0x7f)
            .filter(|b| self.allows(*b) && !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        f.debug_struct("CorrelationIdCharset")
            .field("alphanumeric", &true)
            .field("others", &others)
            .finish()
    }
}

/// A byte [`CorrelationIdCharset::with_extra`] refuses to allow.
///
/// ```
/// use service_tracing_middleware::correlation::CorrelationIdCharset;
/// let err = CorrelationIdCharset::DEFAULT.with_extra(b"=").unwrap_err();
/// assert_eq!(err.byte(), b'=');
/// assert!(err.to_string().contains("'='"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCorrelationIdCharset {
    byte: u8,
}

impl InvalidCorrelationIdCharset {
    /// The byte refused.
    pub fn byte(&self) -> u8 {
        self.byte
    }
}

impl fmt::Display for InvalidCorrelationIdCharset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "correlation id charset: byte {:#04x} ({:?}) cannot be allowed: control bytes, \
             space, DEL, '%', ',', ';', '=' and non-ASCII bytes break headers, log lines and \
             baggage; allowed extras are other visible ASCII characters",
            self.byte,
            char::from(self.byte)
        )
    }
}

impl std::error::Error for InvalidCorrelationIdCharset {}

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
    from_baggage_with(baggage, &CorrelationIdCharset::DEFAULT)
}

/// [`from_baggage`] with ids checked against `charset`. Baggage values are already
/// percent-decoded (the baggage propagators decode them), so this checks the decoded value.
///
/// ```
/// use opentelemetry::baggage::Baggage;
/// use service_tracing_middleware::correlation::{from_baggage_with, CorrelationIdCharset};
///
/// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/").unwrap();
/// let mut baggage = Baggage::new();
/// baggage.insert("correlation.id", "tenant/42");
/// assert_eq!(from_baggage_with(&baggage, &charset), Some("tenant/42"));
/// ```
pub fn from_baggage_with<'a>(
    baggage: &'a opentelemetry::baggage::Baggage,
    charset: &CorrelationIdCharset,
) -> Option<&'a str> {
    let mut first = None;
    for key in [BAGGAGE_KEY, JAEGER_BAGGAGE_KEY] {
        if let Some(value) = baggage.get(key).map(|v| v.as_str()) {
            if charset.is_valid(value.as_bytes()) {
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
    resolve_with(
        headers,
        headers_to_read,
        baggage_value,
        &CorrelationIdCharset::DEFAULT,
    )
}

/// [`resolve`] with ids checked against `charset`. `baggage_value` is the decoded baggage
/// value ([`from_baggage_with`] gives it).
///
/// ```
/// use service_tracing_middleware::correlation::{
///     resolve_with, CorrelationIdCharset, CorrelationSource, CORRELATION_ID_HEADER,
/// };
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-correlation-id", "tenant/42".parse().unwrap());
/// let names = [CORRELATION_ID_HEADER];
/// let (_, source) = resolve_with(&headers, &names, None, &CorrelationIdCharset::DEFAULT);
/// assert_eq!(source, CorrelationSource::Replaced);
/// let wider = CorrelationIdCharset::DEFAULT.with_extra(b"/").unwrap();
/// let (id, source) = resolve_with(&headers, &names, None, &wider);
/// assert_eq!((id.as_str(), source), ("tenant/42", CorrelationSource::Header));
/// ```
pub fn resolve_with(
    headers: &http::HeaderMap,
    headers_to_read: &[HeaderName],
    baggage_value: Option<&str>,
    charset: &CorrelationIdCharset,
) -> (CorrelationId, CorrelationSource) {
    resolve_or(
        headers,
        headers_to_read,
        baggage_value,
        charset,
        CorrelationId::generate,
    )
}

/// [`resolve_with`], with `generate` making the id when none is found (the layer makes it for
/// its request's start, without reading the clock again).
pub(crate) fn resolve_or(
    headers: &http::HeaderMap,
    headers_to_read: &[HeaderName],
    baggage_value: Option<&str>,
    charset: &CorrelationIdCharset,
    generate: impl FnOnce() -> CorrelationId,
) -> (CorrelationId, CorrelationSource) {
    let mut saw_invalid = false;
    for name in headers_to_read {
        if let Some(value) = headers.get(name) {
            match charset.from_bytes(value.as_bytes()) {
                Some(id) => return (id, CorrelationSource::Header),
                None => saw_invalid = true,
            }
        }
    }
    if let Some(value) = baggage_value {
        match charset.parse(value) {
            Some(id) => return (id, CorrelationSource::Baggage),
            None => saw_invalid = true,
        }
    }
    let source = if saw_invalid {
        CorrelationSource::Replaced
    } else {
        CorrelationSource::Generated
    };
    (generate(), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_the_default_charset_only() {
        assert!(CorrelationId::is_valid(b"a"));
        assert!(CorrelationId::is_valid(b"AZaz09-_.:"));
        assert!(CorrelationId::is_valid("x".repeat(128).as_bytes()));
        assert!(!CorrelationId::is_valid("x".repeat(129).as_bytes()));
        assert!(!CorrelationId::is_valid(b""));
        assert!(!CorrelationId::is_valid(b"!~"));
        assert!(!CorrelationId::is_valid(b"a b"));
        assert!(!CorrelationId::is_valid(b"a\tb"));
        assert!(!CorrelationId::is_valid(b"a\x7f"));
        assert!(!CorrelationId::is_valid("é".as_bytes()));
        // Percent-encoded CR/LF, NUL, a lone `%`, mixed-case escapes: `%` is never allowed.
        for value in [
            "abc%0D%0AX-Forged:%201",
            "abc%0d%0Aforged",
            "abc%00",
            "%",
            "50%",
            "a%2Fb",
        ] {
            assert!(!CorrelationId::is_valid(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn every_byte_is_allowed_or_refused_as_documented() {
        let wide = CorrelationIdCharset::DEFAULT
            .with_extra(b"!\"#$&'()*+/<>?@[\\]^`{|}~")
            .expect("visible ASCII other than % , ; =");
        for b in 0u8..=255 {
            let default = b.is_ascii_alphanumeric() || b"-_.:".contains(&b);
            assert_eq!(CorrelationIdCharset::DEFAULT.allows(b), default, "{b:#04x}");
            let forbidden = b <= b' ' || b >= 0x7f || b"%,;=".contains(&b);
            let extra = CorrelationIdCharset::DEFAULT.with_extra(&[b]);
            assert_eq!(extra.is_err(), forbidden, "{b:#04x}");
            if let Err(err) = extra {
                assert_eq!(err.byte(), b);
                assert!(err.to_string().contains(&format!("{b:#04x}")), "{err}");
            }
            assert_eq!(wide.allows(b), !forbidden, "{b:#04x}");
        }
        // Nothing is allowed by half: a refused list changes nothing.
        assert!(CorrelationIdCharset::DEFAULT.with_extra(b"/\r").is_err());
        assert_eq!(
            CorrelationIdCharset::default(),
            CorrelationIdCharset::DEFAULT
        );
        assert_eq!(
            format!("{:?}", CorrelationIdCharset::DEFAULT),
            "CorrelationIdCharset { alphanumeric: true, others: \"-.:_\" }"
        );
    }

    #[test]
    fn baggage_ids_are_checked_after_decoding() {
        use crate::propagation::W3cBaggage;
        // (baggage header, the id taken from it or `None` for a fresh one)
        let cases = [
            ("correlation.id=abc%0D%0AX-Forged:%201", None), // decoded CR/LF
            ("correlation.id=abc%0d%0aforged", None),        // lowercase escapes
            ("correlation.id=abc%00", None),                 // decoded NUL
            ("correlation.id=%25", None),                    // decoded `%`
            ("correlation.id=abc%250D%250A", None),          // decodes to `abc%0D%0A`
            ("correlation.id=order%2d42%3A7", Some("order-42:7")), // mixed-case escapes
            ("correlation.id=order-42", Some("order-42")),
        ];
        for (header, expect) in cases {
            let baggage = W3cBaggage::parse([header]);
            let (id, source) = resolve(&http::HeaderMap::new(), &[], from_baggage(&baggage));
            match expect {
                Some(want) => assert_eq!(
                    (id.as_str(), source),
                    (want, CorrelationSource::Baggage),
                    "{header}"
                ),
                None => {
                    assert_eq!(source, CorrelationSource::Replaced, "{header}");
                    assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{header}");
                }
            }
        }
    }

    #[test]
    fn ids_written_into_baggage_are_percent_encoded_and_decode_back() {
        use crate::propagation::W3cBaggage;
        use opentelemetry::baggage::Baggage;
        // `"` and `\` may be allowed, and are outside the baggage value's safe set.
        let charset = CorrelationIdCharset::DEFAULT
            .with_extra(b"\"\\/")
            .expect("allowed");
        let id = charset
            .parse("a\"b\\c/d")
            .expect("valid under the wider charset");
        let header = W3cBaggage::header_value_with(&Baggage::new(), Some(&id)).expect("a header");
        assert_eq!(header, "correlation.id=a%22b%5Cc/d");
        let back = W3cBaggage::parse([header.as_str()]);
        let (again, source) = resolve_with(
            &http::HeaderMap::new(),
            &[],
            from_baggage_with(&back, &charset),
            &charset,
        );
        assert_eq!((again, source), (id, CorrelationSource::Baggage));
    }

    #[test]
    fn a_configured_charset_decides_for_headers_and_baggage() {
        let charset = CorrelationIdCharset::DEFAULT
            .with_extra(b"/")
            .expect("allowed");
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, "tenant/42".parse().expect("valid"));
        let names = [CORRELATION_ID_HEADER, REQUEST_ID_HEADER];
        let (_, source) = resolve(&headers, &names, None);
        assert_eq!(source, CorrelationSource::Replaced);
        let (id, source) = resolve_with(&headers, &names, None, &charset);
        assert_eq!(
            (id.as_str(), source),
            ("tenant/42", CorrelationSource::Header)
        );
        let mut baggage = opentelemetry::baggage::Baggage::new();
        baggage.insert(BAGGAGE_KEY, "tenant/7");
        assert_eq!(from_baggage_with(&baggage, &charset), Some("tenant/7"));
        let (_, source) = resolve(&http::HeaderMap::new(), &[], from_baggage(&baggage));
        assert_eq!(source, CorrelationSource::Replaced);
    }

    #[test]
    fn ids_inline_or_shared_read_compare_and_hash_by_their_text() {
        use std::collections::HashSet;
        for len in [1, INLINE - 1, INLINE, INLINE + 1, MAX_LEN] {
            let text = "a".repeat(len);
            let id = CorrelationId::parse(&text).expect("valid");
            assert_eq!(
                matches!(id.0, Repr::Inline(_)),
                len <= INLINE,
                "{len} bytes"
            );
            let from_bytes = CorrelationIdCharset::DEFAULT
                .from_bytes(text.as_bytes())
                .expect("valid");
            assert_eq!(id.as_str(), text);
            assert_eq!(&*id.as_arc(), text);
            assert_eq!(id.clone(), from_bytes);
            assert_eq!(format!("{id:?}"), format!("CorrelationId({text:?})"));
            let set: HashSet<CorrelationId> = [id, from_bytes].into_iter().collect();
            assert_eq!(set.len(), 1);
        }
        assert_ne!(
            CorrelationId::parse("a").expect("valid"),
            CorrelationId::parse("b").expect("valid")
        );
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
