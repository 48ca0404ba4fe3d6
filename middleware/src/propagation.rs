//! Reading and writing trace context in HTTP headers, shared by the server layer and the client.
//!
//! The default propagator, [`default_propagator`], speaks W3C Trace Context
//! ([`W3cTraceContext`]) and W3C Baggage ([`W3cBaggage`]). Both parsers are strict: a
//! malformed `traceparent` starts a new trace and is never an error for the caller; a malformed
//! baggage member is dropped on its own.
//!
//! Neither the SDK's propagators nor the default global one are used by default: the global
//! propagator does nothing until one is installed, and the SDK's `traceparent` parser accepts
//! short ids and one-digit flags.

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `baggage` header.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// A shareable propagator, as the layer and the client hold it.
pub type SharedPropagator = Arc<dyn TextMapPropagator + Send + Sync>;

/// W3C Trace Context followed by W3C Baggage: what the layer and the client use unless told
/// otherwise.
///
/// ```
/// use service_tracing_middleware::propagation::{default_propagator, extract};
/// use opentelemetry::trace::TraceContextExt;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
/// let cx = extract(&*default_propagator(), &headers);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
/// ```
pub fn default_propagator() -> SharedPropagator {
    static DEFAULT: OnceLock<SharedPropagator> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            Arc::new(TextMapCompositePropagator::new(vec![
                Box::new(W3cTraceContext::new()),
                Box::new(W3cBaggage::new()),
            ]))
        })
        .clone()
}

/// Reads a context out of request headers, starting from an empty context.
///
/// ```
/// use service_tracing_middleware::propagation::{default_propagator, extract};
/// use opentelemetry::trace::TraceContextExt;
/// let cx = extract(&*default_propagator(), &http::HeaderMap::new());
/// assert!(!cx.span().span_context().is_valid());
/// ```
pub fn extract(propagator: &(dyn TextMapPropagator + Send + Sync), headers: &HeaderMap) -> Context {
    propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// Writes a context into request headers, leaving alone every header already present.
///
/// ```
/// use service_tracing_middleware::propagation::{default_propagator, inject};
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
/// let sc = SpanContext::new(TraceId::from(1), SpanId::from(2), TraceFlags::SAMPLED, false, TraceState::NONE);
/// let cx = opentelemetry::Context::new().with_remote_span_context(sc);
/// let mut headers = http::HeaderMap::new();
/// inject(&*default_propagator(), &cx, &mut headers);
/// assert_eq!(headers["traceparent"], "00-00000000000000000000000000000001-0000000000000002-01");
/// ```
pub fn inject(
    propagator: &(dyn TextMapPropagator + Send + Sync),
    cx: &Context,
    headers: &mut HeaderMap,
) {
    propagator.inject_context(cx, &mut HeaderInjector::preserving(headers));
}

/// Where a layer or client gets its propagator: a fixed one, or the global one looked up at
/// each request (which reads and writes nothing until one is installed).
///
/// ```
/// use service_tracing_middleware::propagation::PropagatorSource;
/// let cx = PropagatorSource::default().extract(&http::HeaderMap::new());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum PropagatorSource {
    /// This propagator.
    Fixed(SharedPropagator),
    /// The global propagator at the time of each request.
    Global,
}

impl Default for PropagatorSource {
    /// W3C Trace Context and Baggage.
    fn default() -> Self {
        Self::Fixed(default_propagator())
    }
}

impl std::fmt::Debug for PropagatorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fixed(_) => "Fixed",
            Self::Global => "Global",
        })
    }
}

impl PropagatorSource {
    /// Reads a context out of headers, starting from an empty context.
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        match self {
            Self::Fixed(p) => extract(&**p, headers),
            Self::Global => opentelemetry::global::get_text_map_propagator(|p| {
                p.extract_with_context(&Context::new(), &HeaderExtractor(headers))
            }),
        }
    }

    /// Writes a context with any injector.
    pub fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        match self {
            Self::Fixed(p) => p.inject_context(cx, injector),
            Self::Global => {
                opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, injector))
            }
        }
    }
}

/// An [`Extractor`] over an [`http::HeaderMap`]. Values that are not visible ASCII read as
/// absent.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// An [`Injector`] over an [`http::HeaderMap`]. With [`HeaderInjector::preserving`] it never
/// replaces a header that was present before injection began.
#[derive(Debug)]
pub struct HeaderInjector<'a> {
    headers: &'a mut HeaderMap,
    preserve: Option<Vec<HeaderName>>,
}

impl<'a> HeaderInjector<'a> {
    /// Overwrites any header it writes.
    pub fn overwriting(headers: &'a mut HeaderMap) -> Self {
        Self {
            headers,
            preserve: None,
        }
    }

    /// Leaves alone headers present when it was made (the caller set them on purpose).
    pub fn preserving(headers: &'a mut HeaderMap) -> Self {
        let preserve = headers.keys().cloned().collect();
        Self {
            headers,
            preserve: Some(preserve),
        }
    }
}

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        if self.preserve.as_ref().is_some_and(|p| p.contains(&name)) {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            self.headers.insert(name, value);
        }
    }
}

/// The W3C Trace Context propagator (`traceparent`, `tracestate`), parsed to the letter.
///
/// - version `00`: exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase hex only;
/// - a higher version: its first four fields parsed the same way, re-emitted as `00`;
/// - version `ff`, all-zero ids, or more than one `traceparent` header: invalid;
/// - when `traceparent` is invalid, `tracestate` is ignored.
///
/// ```
/// use service_tracing_middleware::propagation::W3cTraceContext;
/// assert!(W3cTraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some());
/// assert!(W3cTraceContext::parse_traceparent("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_none());
/// assert!(W3cTraceContext::parse_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceContext {
    _private: (),
}

fn trace_context_fields() -> &'static [String; 2] {
    static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
    FIELDS.get_or_init(|| {
        [
            TRACEPARENT.as_str().to_owned(),
            TRACESTATE.as_str().to_owned(),
        ]
    })
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl W3cTraceContext {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `traceparent` value: trace id, parent id and flags, or `None` when invalid.
    pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = value.get(0..2)?;
        if !lower_hex(version) || version == "ff" || bytes[2] != b'-' {
            return None;
        }
        if version == "00" && bytes.len() != 55 {
            return None;
        }
        // A future version may append fields, after a dash.
        if bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        let (trace, parent, flags) = (value.get(3..35)?, value.get(36..52)?, value.get(53..55)?);
        if bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        if !(lower_hex(trace) && lower_hex(parent) && lower_hex(flags)) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(parent).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some((
            trace_id,
            span_id,
            TraceFlags::new(flags) & TraceFlags::SAMPLED,
        ))
    }

    fn span_context(extractor: &dyn Extractor) -> Option<SpanContext> {
        let values = extractor.get_all(TRACEPARENT.as_str())?;
        let [value] = values.as_slice() else {
            return None;
        };
        let (trace_id, span_id, flags) = Self::parse_traceparent(value)?;
        let state = extractor
            .get_all(TRACESTATE.as_str())
            .map(|all| all.join(","))
            .and_then(|joined| joined.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }
}

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(
            TRACEPARENT.as_str(),
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
            ),
        );
        let state = sc.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE.as_str(), state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::span_context(extractor) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(trace_context_fields())
    }
}

/// Caps of the W3C Baggage specification.
const BAGGAGE_MAX_MEMBERS: usize = 64;
const BAGGAGE_MAX_BYTES: usize = 8192;
const BAGGAGE_MAX_MEMBER_BYTES: usize = 4096;

/// Characters a baggage value must percent-encode: everything outside `baggage-octet`.
const BAGGAGE_VALUE_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// The W3C Baggage propagator (`baggage` header).
///
/// Values are percent-decoded on the way in and encoded on the way out; properties are kept.
/// A malformed member is dropped alone; members over 4096 bytes, past 64 members or past 8192
/// bytes in all are dropped whole, never cut.
///
/// ```
/// use service_tracing_middleware::propagation::W3cBaggage;
/// let baggage = W3cBaggage::parse(["user=J%C3%B6rg;pii, bad member ,tier=gold"]);
/// assert_eq!(baggage.get("user").map(|v| v.as_str()), Some("Jörg"));
/// assert_eq!(baggage.get("tier").map(|v| v.as_str()), Some("gold"));
/// assert_eq!(baggage.len(), 2);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cBaggage {
    _private: (),
}

fn baggage_fields() -> &'static [String; 1] {
    static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
    FIELDS.get_or_init(|| [BAGGAGE.as_str().to_owned()])
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl W3cBaggage {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the values of every `baggage` header, in order.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Baggage {
        let mut baggage = Baggage::new();
        let mut total = 0usize;
        for header in headers {
            for member in header.split(',') {
                if baggage.len() >= BAGGAGE_MAX_MEMBERS {
                    return baggage;
                }
                let member = member.trim_matches([' ', '\t']);
                if member.is_empty() || member.len() > BAGGAGE_MAX_MEMBER_BYTES {
                    continue;
                }
                if total + member.len() + usize::from(total > 0) > BAGGAGE_MAX_BYTES {
                    continue;
                }
                let (pair, properties) = match member.split_once(';') {
                    Some((pair, props)) => (pair, props.trim_matches([' ', '\t'])),
                    None => (member, ""),
                };
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let (key, value) = (
                    key.trim_matches([' ', '\t']),
                    value.trim_matches([' ', '\t']),
                );
                if !is_token(key) || value.bytes().any(|b| b == b'"' || b == b'\\' || b <= b' ') {
                    continue;
                }
                let Ok(decoded) = percent_decode_str(value).decode_utf8() else {
                    continue;
                };
                let metadata = BaggageMetadata::from(properties.to_owned());
                if baggage
                    .insert_with_metadata(key.to_owned(), decoded.into_owned(), metadata)
                    .is_none()
                    && baggage.get(key).is_none()
                {
                    continue;
                }
                total += member.len() + usize::from(total > 0);
            }
        }
        baggage
    }

    /// Writes baggage as a header value, or `None` when there is nothing to send.
    pub fn header_value(baggage: &Baggage) -> Option<String> {
        let mut out = String::new();
        let mut members = 0;
        for (key, (value, metadata)) in baggage {
            let mut member = format!(
                "{}={}",
                key.as_str(),
                utf8_percent_encode(value.as_str(), BAGGAGE_VALUE_ENCODE)
            );
            if !metadata.as_str().is_empty() {
                member.push(';');
                member.push_str(metadata.as_str());
            }
            if member.len() > BAGGAGE_MAX_MEMBER_BYTES
                || members == BAGGAGE_MAX_MEMBERS
                || out.len() + member.len() + 1 > BAGGAGE_MAX_BYTES
            {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&member);
            members += 1;
        }
        (!out.is_empty()).then_some(out)
    }
}

impl TextMapPropagator for W3cBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(value) = Self::header_value(cx.baggage()) {
            injector.set(BAGGAGE.as_str(), value);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get_all(BAGGAGE.as_str()) {
            Some(values) => {
                let baggage = Self::parse(values);
                if baggage.is_empty() {
                    cx.clone()
                } else {
                    cx.with_baggage(baggage)
                }
            }
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(baggage_fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn valid_traceparent_parses() {
        let (trace, span, flags) = W3cTraceContext::parse_traceparent(VALID).expect("valid");
        assert_eq!(trace.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.to_string(), "b7ad6b7169203331");
        assert!(flags.is_sampled());
        let (_, _, flags) = W3cTraceContext::parse_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )
        .expect("valid");
        assert!(!flags.is_sampled());
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        let cases = [
            (
                "short trace id",
                "00-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "long trace id",
                "00-00af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "short parent id",
                "00-0af7651916cd43dd8448eb211c80319c-7ad6b7169203331-01",
            ),
            (
                "one-digit flags",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            ),
            (
                "three-digit flags",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-001",
            ),
            (
                "version ff",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "uppercase version",
                "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "uppercase trace id",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            ),
            (
                "uppercase parent id",
                "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
            ),
            (
                "zero trace id",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            ),
            (
                "zero parent id",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            ),
            (
                "underscore separators",
                "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            ),
            (
                "trailing dash on 00",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            ),
            (
                "extra field on 00",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ab",
            ),
            (
                "non-hex",
                "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            ),
            ("empty", ""),
            (
                "leading space",
                " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "future version no dash",
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            ),
        ];
        for (why, value) in cases {
            assert!(
                W3cTraceContext::parse_traceparent(value).is_none(),
                "{why}: {value}"
            );
        }
    }

    #[test]
    fn future_versions_parse_their_first_four_fields() {
        let value = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future";
        assert!(W3cTraceContext::parse_traceparent(value).is_some());
    }

    #[test]
    fn two_traceparent_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACEPARENT, VALID.parse().expect("valid"));
        let cx = extract(&W3cTraceContext::new(), &headers);
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn tracestate_follows_a_valid_traceparent_only() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACESTATE, "a=1".parse().expect("valid"));
        headers.append(TRACESTATE, "b=2".parse().expect("valid"));
        let cx = extract(&W3cTraceContext::new(), &headers);
        assert_eq!(cx.span().span_context().trace_state().header(), "a=1,b=2");

        let mut out = HeaderMap::new();
        inject(&W3cTraceContext::new(), &cx, &mut out);
        assert_eq!(out[TRACEPARENT], VALID);
        assert_eq!(out[TRACESTATE], "a=1,b=2");
    }

    #[test]
    fn baggage_round_trips_with_encoding_and_properties() {
        let baggage = W3cBaggage::parse(["k1=a%20b%2Cc;p1=x, k2=plain"]);
        assert_eq!(baggage.get("k1").map(|v| v.as_str()), Some("a b,c"));
        let header = W3cBaggage::header_value(&baggage).expect("non-empty");
        let again = W3cBaggage::parse([header.as_str()]);
        assert_eq!(
            again.get_with_metadata("k1"),
            baggage.get_with_metadata("k1")
        );
        assert_eq!(again.get("k2").map(|v| v.as_str()), Some("plain"));
    }

    #[test]
    fn baggage_limits_drop_whole_members() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let joined = many.join(",");
        assert_eq!(
            W3cBaggage::parse([joined.as_str()]).len(),
            BAGGAGE_MAX_MEMBERS
        );

        let big = format!("big={},small=1", "x".repeat(5000));
        let baggage = W3cBaggage::parse([big.as_str()]);
        assert!(baggage.get("big").is_none());
        assert_eq!(baggage.get("small").map(|v| v.as_str()), Some("1"));

        let invalid_utf8 = W3cBaggage::parse(["a=%FF%FE,b=ok"]);
        assert!(invalid_utf8.get("a").is_none());
        assert_eq!(invalid_utf8.len(), 1);
    }
}
