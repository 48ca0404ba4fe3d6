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
//!
//! # `tracestate` members OpenTelemetry cannot hold
//!
//! `tracestate` keys follow the current W3C grammar, `( lcalpha / DIGIT ) 0*255 ( keychar )`
//! with `@` among the key characters ([`W3cTraceState`]). The OpenTelemetry `TraceState` that
//! a span context carries (opentelemetry 0.33) still checks the older `tenant@system` rule: it
//! refuses a key with two `@`, or whose `@` is followed by 14 characters or more, or by a
//! character other than a letter or digit. So that such members are not lost at the first
//! hop, [`W3cTraceContext`] (alone, in the default propagator, or in a
//! [`FirstMatchPropagator`]) keeps them out of the `TraceState` but in the extracted
//! [`Context`], with every received member in order, for that trace only. When it injects a
//! context of the same trace (the server span's, a client span's), it writes the span's
//! `TraceState` with those members back in their received places:
//!
//! - entries added or updated since extraction ([`W3cTraceState::with_entry`], a sampler) come
//!   first, as W3C §3.5 asks; then the received members in their order, less those the
//!   `TraceState` no longer holds unchanged;
//! - the members the `TraceState` could not hold cannot be changed or deleted through it, so
//!   they are always written; they count towards the 32-member limit (right-most members go
//!   first) and the 512-character truncation like the others;
//! - a context that continues another trace, or an untrusted request's new trace, does not
//!   carry them.
//!
//! When there is no `tracestate`, or the `TraceState` holds every member, this allocates
//! nothing more (injection does one more context lookup).
//! Exported spans carry the `TraceState` only, so their `trace_state` lacks those members.
//!
//! ```
//! use service_tracing_middleware::propagation::{default_propagator, extract, inject};
//!
//! let key256 = format!("{}@{}", "t".repeat(120), "s".repeat(135)); // an `@` mid-key
//! let mut incoming = http::HeaderMap::new();
//! incoming.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
//! incoming.insert("tracestate", format!("rojo=1,foo@=2,{key256}=3").parse().unwrap());
//! let cx = extract(&*default_propagator(), &incoming);
//! let mut outgoing = http::HeaderMap::new();
//! inject(&*default_propagator(), &cx, &mut outgoing);
//! assert_eq!(outgoing["tracestate"], format!("rojo=1,foo@=2,{key256}=3"));
//! ```

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;

mod b3;
mod baggage;
mod configured;
mod jaeger;
mod select;
mod tracestate;
mod w3c;

pub use b3::{B3Encoding, B3Propagator, DebugTrace};
pub use baggage::W3cBaggage;
pub use configured::{inject_configured, set_configured};
pub use jaeger::{JaegerBaggage, JaegerPropagator};
pub use select::{
    propagator_from_names, FirstMatchPropagator, UnknownPropagator, PROPAGATOR_NAMES,
};
pub use tracestate::W3cTraceState;
pub use w3c::RandomTraceId;
pub use w3c::W3cTraceContext;

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
    default_ref().clone()
}

/// The default propagator, borrowed: the request path injects through it without touching the
/// shared reference count.
fn default_ref() -> &'static SharedPropagator {
    static DEFAULT: OnceLock<SharedPropagator> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        Arc::new(TextMapCompositePropagator::new(vec![
            Box::new(W3cTraceContext::new()),
            Box::new(W3cBaggage::new()),
        ]))
    })
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

/// Where a layer or client gets its propagator: the default formats, a fixed one, the one the
/// process's set-up configured ([`set_configured`]), or OpenTelemetry's global one looked up at
/// each request (which reads and writes nothing until one is installed).
///
/// ```
/// use service_tracing_middleware::propagation::PropagatorSource;
/// let cx = PropagatorSource::default().extract(&http::HeaderMap::new());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum PropagatorSource {
    /// W3C Trace Context and Baggage, read straight from the header map (the default).
    W3c,
    /// This propagator.
    Fixed(SharedPropagator),
    /// The global propagator at the time of each request.
    Global,
    /// The propagator recorded with [`set_configured`] at the time of each request (one atomic
    /// load), or W3C Trace Context and Baggage while none is: what the client follows by
    /// default, so that it speaks the formats `service-tracing`'s set-up chose.
    Configured,
}

/// Which of the W3C headers a request carries, when the caller already knows.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct W3cHeaders<'h> {
    pub(crate) traceparent: Traceparent<'h>,
    pub(crate) tracestate: bool,
    pub(crate) baggage: bool,
}

/// What a caller knows of a request's `traceparent` headers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Traceparent<'h> {
    /// There is none.
    #[default]
    Absent,
    /// There is exactly one, with this value.
    One(&'h HeaderValue),
    /// There may be some (the caller did not look), or there are several: look them up.
    LookUp,
}

impl W3cHeaders<'_> {
    /// All of them, for callers that did not look.
    pub(crate) const ALL: W3cHeaders<'static> = W3cHeaders {
        traceparent: Traceparent::LookUp,
        tracestate: true,
        baggage: true,
    };
}

impl Default for PropagatorSource {
    /// W3C Trace Context and Baggage.
    fn default() -> Self {
        Self::W3c
    }
}

impl std::fmt::Debug for PropagatorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::W3c => "W3c",
            Self::Fixed(_) => "Fixed",
            Self::Global => "Global",
            Self::Configured => "Configured",
        })
    }
}

impl PropagatorSource {
    /// Reads a context out of headers, starting from an empty context.
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        self.extract_present(headers, W3cHeaders::ALL)
    }

    /// Reads a context out of any carrier, starting from an empty context (the messaging
    /// helpers' path: [`carrier`](crate::carrier)).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::PropagatorSource;
    /// use opentelemetry::trace::TraceContextExt;
    /// let carrier = std::collections::HashMap::from([(
    ///     "traceparent".to_owned(),
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    /// )]);
    /// let cx = PropagatorSource::W3c.extract_from(&carrier);
    /// assert!(cx.span().span_context().is_remote());
    /// ```
    pub fn extract_from(&self, extractor: &dyn Extractor) -> Context {
        let empty = Context::new();
        match self {
            Self::W3c => default_ref().extract_with_context(&empty, extractor),
            Self::Fixed(p) => p.extract_with_context(&empty, extractor),
            Self::Global => opentelemetry::global::get_text_map_propagator(|p| {
                p.extract_with_context(&empty, extractor)
            }),
            Self::Configured => {
                configured::with_configured(|p| p.extract_with_context(&empty, extractor))
            }
        }
    }

    /// [`extract`](Self::extract), told which W3C headers the request carries (the W3C
    /// formats then look up only those).
    pub(crate) fn extract_present(&self, headers: &HeaderMap, present: W3cHeaders<'_>) -> Context {
        match self {
            Self::W3c => {
                let (remote, cx) = Self::extract_w3c(headers, present);
                match remote {
                    Some(sc) => cx.with_remote_span_context(sc),
                    None => cx,
                }
            }
            Self::Fixed(p) => extract(&**p, headers),
            Self::Global => opentelemetry::global::get_text_map_propagator(|p| {
                p.extract_with_context(&Context::new(), &HeaderExtractor(headers))
            }),
            Self::Configured => configured::with_configured(|p| extract(p, headers)),
        }
    }

    /// The default formats' extraction in two parts: the remote span context, and a context
    /// with everything else (baggage, `tracestate` members the span context cannot hold) but
    /// not that span, so a caller that puts a span of its own in builds one context, not two.
    fn extract_w3c(headers: &HeaderMap, present: W3cHeaders<'_>) -> (Option<SpanContext>, Context) {
        // The baggage's context first: it may be one this thread built before, shared as it is.
        let mut cx = present
            .baggage
            .then(|| W3cBaggage::context_from_headers(headers))
            .flatten()
            .unwrap_or_default();
        let mut remote = None;
        let found =
            W3cTraceContext::extract_parts(headers, present.traceparent, present.tracestate);
        if let Some((sc, wire)) = found {
            if let Some(wire) = wire {
                cx = cx.with_value(wire);
            }
            remote = Some(sc);
        }
        (remote, cx)
    }

    /// [`extract_present`](Self::extract_present) in two parts: the remote span context, when
    /// there is a valid one, and a context holding the rest, which also holds that span unless
    /// the `bool` says it does not.
    pub(crate) fn extract_split(
        &self,
        headers: &HeaderMap,
        present: W3cHeaders<'_>,
    ) -> (Option<SpanContext>, Context, bool) {
        match self {
            Self::W3c => {
                let (remote, cx) = Self::extract_w3c(headers, present);
                (remote, cx, false)
            }
            _ => {
                let cx = self.extract_present(headers, present);
                let sc = cx.span().span_context().clone();
                (sc.is_valid().then_some(sc), cx, true)
            }
        }
    }

    /// Writes a context with any injector.
    pub fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        match self {
            Self::W3c => default_ref().inject_context(cx, injector),
            Self::Fixed(p) => p.inject_context(cx, injector),
            Self::Global => {
                opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, injector))
            }
            Self::Configured => configured::with_configured(|p| p.inject_context(cx, injector)),
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
        let Some(name) = header_name(key) else {
            return;
        };
        if self.preserve.as_ref().is_some_and(|p| p.contains(&name)) {
            return;
        }
        if let Some(value) = header_value(value) {
            self.headers.insert(name, value);
        }
    }
}

/// The header `key` names: the W3C ones are constants (no allocation; a name parsed from text
/// that is not one of `http`'s standard headers is copied).
fn header_name(key: &str) -> Option<HeaderName> {
    match key {
        "traceparent" => Some(TRACEPARENT),
        "tracestate" => Some(TRACESTATE),
        "baggage" => Some(BAGGAGE),
        _ => HeaderName::from_bytes(key.as_bytes()).ok(),
    }
}

/// `value` as a header value when it is visible ASCII or tabs (what `HeaderValue::from_str`
/// accepts: ASCII, checked a word at a time, that `from_maybe_shared` finds free of controls
/// and DEL), taking over its buffer: `from_str` copied it into a new allocation. A string
/// whose length is its capacity becomes the header's bytes as it is; another costs a small
/// allocation.
fn header_value(value: String) -> Option<HeaderValue> {
    if !value.is_ascii() {
        return None;
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

/// A header map from name/value pairs, for this module's tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_values_are_visible_ascii_and_kept_as_given() {
        let mut headers = HeaderMap::new();
        headers.insert("x-kept", HeaderValue::from_static("mine"));
        let mut injector = HeaderInjector::preserving(&mut headers);
        injector.set("traceparent", "00-a\tb".to_owned());
        injector.set("baggage", "k=v ~".to_owned());
        injector.set("x-Custom", "1".to_owned());
        injector.set("x-kept", "theirs".to_owned());
        // What `HeaderValue::from_str` refuses is not written.
        injector.set("tracestate", "k=caf\u{e9}".to_owned());
        injector.set("x-del", "a\u{7f}".to_owned());
        injector.set("x-newline", "a\nb".to_owned());
        injector.set("bad name", "1".to_owned());
        assert_eq!(headers["traceparent"], "00-a\tb");
        assert_eq!(headers["baggage"], "k=v ~");
        assert_eq!(headers["x-custom"], "1");
        assert_eq!(headers["x-kept"], "mine");
        for absent in ["tracestate", "x-del", "x-newline"] {
            assert!(headers.get(absent).is_none(), "{absent}");
        }
        assert_eq!(headers.len(), 4);
        // A string with spare capacity is taken too.
        let mut spare = String::with_capacity(64);
        spare.push_str("k=1");
        HeaderInjector::overwriting(&mut headers).set("baggage", spare);
        assert_eq!(headers["baggage"], "k=1");
    }
}
