//! The trace context, baggage and correlation id carried by any string map: message headers
//! (AMQP, Kafka, NATS), job payloads, or anything else that is not an HTTP request.
//!
//! [`CarrierPropagation`] writes the current context into a carrier (any OpenTelemetry
//! [`Injector`], such as a `HashMap<String, String>`) and reads one back into a [`Context`]
//! and a [`CorrelationId`] ([`Extracted`]). It uses the same propagators, parsers and caps as
//! the server layer and the client:
//!
//! - the propagator the process's set-up configured ([`set_configured`], which
//!   `service-tracing`'s set-up calls with what `OTEL_PROPAGATORS` or the builder chose), W3C
//!   Trace Context and Baggage while none is, or one given explicitly
//!   ([`CarrierPropagation::with_propagator`]);
//! - the correlation id in `x-correlation-id` (written, and read first), then `x-request-id`,
//!   then the W3C baggage key `correlation.id`, checked against the same charset as HTTP, else
//!   a new one ([`resolve`](crate::correlation::resolve)'s rules);
//! - hostile input is as hostile as from HTTP: the strict `traceparent`, `tracestate` and
//!   `baggage` parsers and their caps apply, and on top of them a carrier value longer than
//!   [`MAX_VALUE_LEN`] bytes reads as absent (an HTTP server refuses such a header before any
//!   parser sees it; a message broker does not). A malformed or oversized `traceparent` starts
//!   a new trace; nothing here panics or allocates in proportion to the carrier beyond
//!   [`MAX_KEYS`] keys.
//!
//! Keys are written in lowercase, as the HTTP propagators name them; a carrier whose lookups
//! are case-sensitive (AMQP field tables, Kafka headers) finds them as written.
//!
//! ```
//! use std::collections::HashMap;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use service_tracing_middleware::carrier::CarrierPropagation;
//! use service_tracing_middleware::CorrelationId;
//!
//! // The publisher: its current span and correlation id go into the message's headers.
//! let sc = SpanContext::new(TraceId::from(7), SpanId::from(9), TraceFlags::SAMPLED, false, TraceState::NONE);
//! let cx = opentelemetry::Context::new()
//!     .with_remote_span_context(sc)
//!     .with_value(CorrelationId::parse("order-42").unwrap());
//! let mut headers = HashMap::new();
//! CarrierPropagation::new().inject(&cx, &mut headers);
//! assert_eq!(headers["traceparent"], "00-00000000000000000000000000000007-0000000000000009-01");
//! assert_eq!(headers["x-correlation-id"], "order-42");
//!
//! // The consumer: the same trace and id come back out.
//! let extracted = CarrierPropagation::new().extract(&headers);
//! assert_eq!(extracted.context().span().span_context().trace_id(), TraceId::from(7));
//! assert_eq!(extracted.correlation_id().as_str(), "order-42");
//! assert_eq!(CorrelationId::from_context(extracted.context()).unwrap().as_str(), "order-42");
//! ```
//!
//! [`set_configured`]: crate::propagation::set_configured

use std::borrow::Cow;
use std::fmt;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::Context;

use crate::correlation::{from_baggage_with, CorrelationIdCharset, CorrelationSource};
use crate::propagation::{PropagatorSource, SharedPropagator};
use crate::CorrelationId;

/// The longest carrier value read, in bytes; a longer one reads as absent.
///
/// 8 KiB: the per-header limit most HTTP servers and proxies apply (nginx, Apache, Node), so a
/// message is refused no more and no less than the same header would be over HTTP. The
/// parsers' own caps still apply below it (`tracestate` keeps 32 members and 512 bytes,
/// `baggage` 64 members and 8 KiB).
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// The most keys a propagator may list from a carrier ([`Extractor::keys`], which only
/// prefix-based formats such as Jaeger's `uberctx-*` baggage read); keys past it are not
/// seen. An HTTP server stops at about 100 headers.
pub const MAX_KEYS: usize = 128;

/// `x-correlation-id` ([`CORRELATION_ID_HEADER`](crate::correlation::CORRELATION_ID_HEADER)).
const CORRELATION_ID: &str = "x-correlation-id";
/// `x-request-id` ([`REQUEST_ID_HEADER`](crate::correlation::REQUEST_ID_HEADER)).
const REQUEST_ID: &str = "x-request-id";

/// The most values read for one key ([`Extractor::get_all`]).
const MAX_VALUES: usize = 32;

/// Writes the current context into a carrier and reads one back, with the configured
/// propagators and the correlation id; see the [module docs](self).
///
/// Cheap to clone; build one and keep it.
///
/// ```
/// use std::collections::HashMap;
/// use service_tracing_middleware::carrier::CarrierPropagation;
/// use service_tracing_middleware::propagation::propagator_from_names;
///
/// let propagation = CarrierPropagation::new()
///     .with_propagator(propagator_from_names(["b3"]).unwrap().into_shared())
///     .with_correlation_headers(["x-correlation-id"])
///     .with_correlation_header(Some("x-correlation-id"));
/// let mut carrier = HashMap::new();
/// carrier.insert("b3".to_owned(), "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1".to_owned());
/// let extracted = propagation.extract(&carrier);
/// assert!(extracted.is_continued());
/// ```
#[derive(Clone)]
pub struct CarrierPropagation {
    source: PropagatorSource,
    /// Keys read for the correlation id, in order (lowercase).
    read: Vec<Cow<'static, str>>,
    /// The key the correlation id is written under, if any (lowercase).
    write: Option<Cow<'static, str>>,
    charset: CorrelationIdCharset,
}

impl fmt::Debug for CarrierPropagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarrierPropagation")
            .field("propagator", &self.source)
            .field("correlation_headers", &self.read)
            .field("correlation_header", &self.write)
            .field("charset", &self.charset)
            .finish()
    }
}

impl Default for CarrierPropagation {
    /// [`CarrierPropagation::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl CarrierPropagation {
    /// The configured propagator ([`PropagatorSource::Configured`]: what `service-tracing`'s
    /// set-up chose, or W3C Trace Context and Baggage), the correlation id read from
    /// `x-correlation-id`, `x-request-id`, then baggage, and written as `x-correlation-id`
    /// (and as `correlation.id` in baggage, by the W3C baggage propagator), with the default
    /// charset: the server layer's and the client's defaults.
    ///
    /// ```
    /// let propagation = service_tracing_middleware::carrier::CarrierPropagation::new();
    /// let extracted = propagation.extract(&std::collections::HashMap::<String, String>::new());
    /// assert!(!extracted.is_continued());
    /// ```
    pub fn new() -> Self {
        Self {
            source: PropagatorSource::Configured,
            read: vec![Cow::Borrowed(CORRELATION_ID), Cow::Borrowed(REQUEST_ID)],
            write: Some(Cow::Borrowed(CORRELATION_ID)),
            charset: CorrelationIdCharset::DEFAULT,
        }
    }

    /// Uses `propagator` rather than the configured one.
    ///
    /// ```
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::propagation::default_propagator;
    /// let propagation = CarrierPropagation::new().with_propagator(default_propagator());
    /// ```
    pub fn with_propagator(mut self, propagator: SharedPropagator) -> Self {
        self.source = PropagatorSource::Fixed(propagator);
        self
    }

    /// Where the propagator comes from: [`PropagatorSource::Global`] follows OpenTelemetry's
    /// global propagator, [`PropagatorSource::W3c`] always speaks W3C.
    ///
    /// ```
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::propagation::PropagatorSource;
    /// let propagation = CarrierPropagation::new().with_propagator_source(PropagatorSource::Global);
    /// ```
    pub fn with_propagator_source(mut self, source: PropagatorSource) -> Self {
        self.source = source;
        self
    }

    /// The keys the correlation id is read from, first valid one wins (before baggage).
    /// Names are matched in lowercase.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// let propagation = CarrierPropagation::new().with_correlation_headers(["x-trace-ref"]);
    /// let carrier = HashMap::from([("x-trace-ref".to_owned(), "ref-1".to_owned())]);
    /// assert_eq!(propagation.extract(&carrier).correlation_id().as_str(), "ref-1");
    /// ```
    pub fn with_correlation_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<Cow<'static, str>>,
    {
        self.read = names.into_iter().map(|n| lowercase(n.into())).collect();
        self
    }

    /// The key the correlation id is written under (`x-correlation-id` by default); `None`
    /// writes it only in baggage.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::CorrelationId;
    /// let cx = opentelemetry::Context::new().with_value(CorrelationId::parse("c-1").unwrap());
    /// let mut carrier = HashMap::new();
    /// CarrierPropagation::new().with_correlation_header(None::<&str>).inject(&cx, &mut carrier);
    /// assert_eq!(carrier.get("x-correlation-id"), None);
    /// assert_eq!(carrier["baggage"], "correlation.id=c-1");
    /// ```
    pub fn with_correlation_header<N: Into<Cow<'static, str>>>(mut self, name: Option<N>) -> Self {
        self.write = name.map(|n| lowercase(n.into()));
        self
    }

    /// The bytes a correlation id may hold (the server layer's
    /// [`with_correlation_charset`](crate::TracingLayer::with_correlation_charset)).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/").unwrap();
    /// let carrier = HashMap::from([("x-correlation-id".to_owned(), "tenant/7".to_owned())]);
    /// let extracted = CarrierPropagation::new().with_correlation_charset(charset).extract(&carrier);
    /// assert_eq!(extracted.correlation_id().as_str(), "tenant/7");
    /// ```
    pub fn with_correlation_charset(mut self, charset: CorrelationIdCharset) -> Self {
        self.charset = charset;
        self
    }

    /// Writes `cx` into `carrier`: its span context and baggage through the propagator, and
    /// its correlation id ([`CorrelationId::from_context`]) under the correlation key and in
    /// baggage (W3C baggage propagator). Nothing is written for what `cx` lacks.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// let mut carrier = HashMap::new();
    /// CarrierPropagation::new().inject(&opentelemetry::Context::new(), &mut carrier);
    /// assert!(carrier.is_empty());
    /// ```
    pub fn inject(&self, cx: &Context, carrier: &mut dyn Injector) {
        self.source.inject_context(cx, carrier);
        if let Some(key) = &self.write {
            if let Some(id) = CorrelationId::from_context(cx) {
                carrier.set(key, id.as_str().to_owned());
            }
        }
    }

    /// [`inject`](Self::inject) with the current context.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::CorrelationId;
    /// let _guard = opentelemetry::Context::new()
    ///     .with_value(CorrelationId::parse("job-9").unwrap())
    ///     .attach();
    /// let mut carrier = HashMap::new();
    /// CarrierPropagation::new().inject_current(&mut carrier);
    /// assert_eq!(carrier["x-correlation-id"], "job-9");
    /// ```
    pub fn inject_current(&self, carrier: &mut dyn Injector) {
        Context::map_current(|cx| self.inject(cx, carrier));
    }

    /// Reads a carrier: the remote span context and baggage (through the propagator, from an
    /// empty context) and the correlation id, which the returned context also carries, so code
    /// run in it finds it with [`CorrelationId::current`].
    ///
    /// Never fails: a malformed, oversized or missing `traceparent` leaves the context
    /// without a remote span (the consumer starts a new trace), and a missing or invalid
    /// correlation id is replaced by a new one ([`Extracted::correlation_source`] says which).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// use service_tracing_middleware::correlation::CorrelationSource;
    /// let carrier = HashMap::from([
    ///     ("traceparent".to_owned(), "00-zzzz-not-a-trace".to_owned()),
    ///     ("x-correlation-id".to_owned(), "bad id\r\n".to_owned()),
    /// ]);
    /// let extracted = CarrierPropagation::new().extract(&carrier);
    /// assert!(!extracted.is_continued());
    /// assert_eq!(extracted.correlation_source(), CorrelationSource::Replaced);
    /// ```
    pub fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        let bounded = Bounded(carrier);
        let cx = self.source.extract_from(&bounded);
        let mut saw_invalid = false;
        let mut found = None;
        for key in &self.read {
            if let Some(value) = bounded.get(key) {
                match self.charset.parse(value) {
                    Some(id) => {
                        found = Some((id, CorrelationSource::Header));
                        break;
                    }
                    None => saw_invalid = true,
                }
            }
        }
        if found.is_none() {
            if let Some(value) = from_baggage_with(cx.baggage(), &self.charset) {
                match self.charset.parse(value) {
                    Some(id) => found = Some((id, CorrelationSource::Baggage)),
                    None => saw_invalid = true,
                }
            }
        }
        let (id, source) = found.unwrap_or_else(|| {
            let source = if saw_invalid {
                CorrelationSource::Replaced
            } else {
                CorrelationSource::Generated
            };
            (CorrelationId::generate(), source)
        });
        Extracted {
            context: cx.with_value(id.clone()),
            correlation_id: id,
            correlation_source: source,
        }
    }
}

/// What [`CarrierPropagation::extract`] read from a carrier.
///
/// ```
/// use std::collections::HashMap;
/// use service_tracing_middleware::carrier::extract;
/// let carrier = HashMap::from([("x-request-id".to_owned(), "req-5".to_owned())]);
/// let (context, id) = extract(&carrier).into_parts();
/// assert_eq!(id.as_str(), "req-5");
/// let _guard = context.attach();
/// assert_eq!(service_tracing_middleware::CorrelationId::current(), Some(id));
/// ```
#[derive(Debug, Clone)]
pub struct Extracted {
    context: Context,
    correlation_id: CorrelationId,
    correlation_source: CorrelationSource,
}

impl Extracted {
    /// The context read: the remote span context when the carrier held a valid one, the
    /// baggage, and the correlation id. Start the consumer's span under it.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The correlation id: read, or new when the carrier held none or an invalid one.
    pub fn correlation_id(&self) -> &CorrelationId {
        &self.correlation_id
    }

    /// Where the correlation id came from.
    pub fn correlation_source(&self) -> CorrelationSource {
        self.correlation_source
    }

    /// Whether the carrier held a valid span context, so a span started under
    /// [`context`](Self::context) continues its trace.
    pub fn is_continued(&self) -> bool {
        use opentelemetry::trace::TraceContextExt as _;
        self.context.span().span_context().is_valid()
    }

    /// The context and the correlation id, by value.
    pub fn into_parts(self) -> (Context, CorrelationId) {
        (self.context, self.correlation_id)
    }
}

/// Writes the current context into `carrier` with [`CarrierPropagation::new`]'s settings.
///
/// ```
/// let mut headers = std::collections::HashMap::new();
/// service_tracing_middleware::carrier::inject_current(&mut headers);
/// assert!(headers.is_empty()); // no span, baggage or correlation id here
/// ```
pub fn inject_current(carrier: &mut dyn Injector) {
    CarrierPropagation::new().inject_current(carrier);
}

/// Reads `carrier` with [`CarrierPropagation::new`]'s settings.
///
/// ```
/// let headers = std::collections::HashMap::<String, String>::new();
/// let extracted = service_tracing_middleware::carrier::extract(&headers);
/// assert!(!extracted.is_continued());
/// ```
pub fn extract(carrier: &dyn Extractor) -> Extracted {
    CarrierPropagation::new().extract(carrier)
}

fn lowercase(name: Cow<'static, str>) -> Cow<'static, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        name
    }
}

/// A carrier seen through the caps: values over [`MAX_VALUE_LEN`] read as absent, at most
/// [`MAX_KEYS`] keys and [`MAX_VALUES`] values per key.
struct Bounded<'a>(&'a dyn Extractor);

impl Extractor for Bounded<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).filter(|v| v.len() <= MAX_VALUE_LEN)
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = self.0.keys();
        keys.truncate(MAX_KEYS);
        keys
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = self.0.get_all(key)?;
        if values.len() > MAX_VALUES || values.iter().any(|v| v.len() > MAX_VALUE_LEN) {
            // A list with an oversized or surplus member is refused whole, as a header that
            // is too large is: keeping the rest would change what the list means.
            return None;
        }
        Some(values)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::KeyValue;

    use super::*;
    use crate::propagation::{default_propagator, propagator_from_names};

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn w3c() -> CarrierPropagation {
        CarrierPropagation::new().with_propagator(default_propagator())
    }

    fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sampled_context() -> Context {
        let sc = SpanContext::new(
            TraceId::from(0xabc),
            SpanId::from(0xdef),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        Context::new()
            .with_remote_span_context(sc)
            .with_baggage([KeyValue::new("tenant", "acme")])
            .with_value(CorrelationId::parse("corr-1").expect("valid"))
    }

    #[test]
    fn a_context_round_trips_through_a_string_map() {
        let mut map = HashMap::new();
        w3c().inject(&sampled_context(), &mut map);
        assert_eq!(
            map["traceparent"],
            "00-00000000000000000000000000000abc-0000000000000def-01"
        );
        assert_eq!(map["x-correlation-id"], "corr-1");
        assert_eq!(map["baggage"], "tenant=acme,correlation.id=corr-1");

        let extracted = w3c().extract(&map);
        let sc = extracted.context().span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            (sc.trace_id(), sc.span_id()),
            (TraceId::from(0xabc), SpanId::from(0xdef))
        );
        assert_eq!(
            extracted
                .context()
                .baggage()
                .get("tenant")
                .map(|v| v.as_str().to_owned()),
            Some("acme".to_owned())
        );
        assert_eq!(extracted.correlation_id().as_str(), "corr-1");
        assert_eq!(extracted.correlation_source(), CorrelationSource::Header);
        assert_eq!(
            CorrelationId::from_context(extracted.context()),
            Some(extracted.correlation_id().clone())
        );
    }

    #[test]
    fn the_correlation_id_falls_back_to_baggage_then_a_new_one() {
        let from_baggage = w3c().extract(&carrier(&[("baggage", "correlation.id=from-bag")]));
        assert_eq!(
            (
                from_baggage.correlation_id().as_str(),
                from_baggage.correlation_source()
            ),
            ("from-bag", CorrelationSource::Baggage)
        );
        // The header wins over baggage; the second header is read when the first is absent.
        let both = w3c().extract(&carrier(&[
            ("baggage", "correlation.id=from-bag"),
            ("x-request-id", "from-request-id"),
        ]));
        assert_eq!(both.correlation_id().as_str(), "from-request-id");

        let none = w3c().extract(&HashMap::<String, String>::new());
        assert_eq!(none.correlation_source(), CorrelationSource::Generated);
        assert!(uuid::Uuid::parse_str(none.correlation_id().as_str()).is_ok());
    }

    /// Every hostile value the HTTP path refuses is refused here too: the trace restarts, an
    /// invalid id is replaced, never echoed.
    #[test]
    fn hostile_values_start_a_new_trace_and_a_new_id() {
        let long_id = "x".repeat(129);
        let padded = format!("{TRACEPARENT}{}", " ".repeat(MAX_VALUE_LEN));
        let future_long = format!("01-{}", "a".repeat(MAX_VALUE_LEN + 1));
        let cases: Vec<(&str, &str)> = vec![
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            ),
            (
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            ),
            (
                "traceparent",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            ),
            (
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            ),
            ("traceparent", "\u{0}\u{1}\r\n"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c8031é-b7ad6b7169203331-01",
            ),
            ("traceparent", &padded),
            ("traceparent", &future_long),
            ("traceparent", ""),
        ];
        for (key, value) in cases {
            for id in [
                "abc%0D%0Aforged",
                "has space",
                "a\r\nb",
                long_id.as_str(),
                "",
            ] {
                let map = carrier(&[(key, value), ("x-correlation-id", id)]);
                let extracted = w3c().extract(&map);
                assert!(
                    !extracted.is_continued(),
                    "{value:?} must start a new trace"
                );
                assert_eq!(
                    extracted.correlation_source(),
                    CorrelationSource::Replaced,
                    "{id:?}"
                );
                assert_ne!(extracted.correlation_id().as_str(), id);
            }
        }
    }

    /// A value the HTTP parsers would accept but that is longer than a header may be is
    /// refused whole: a `tracestate` over 8 KiB, a baggage header over 8 KiB.
    #[test]
    fn oversized_values_read_as_absent() {
        let big_state = format!("a={}", "b".repeat(MAX_VALUE_LEN));
        let map = carrier(&[("traceparent", TRACEPARENT), ("tracestate", &big_state)]);
        let extracted = w3c().extract(&map);
        assert!(extracted.is_continued(), "the traceparent is fine");
        assert!(extracted
            .context()
            .span()
            .span_context()
            .trace_state()
            .header()
            .is_empty());

        let big_baggage = format!("correlation.id=from-bag,pad={}", "p".repeat(MAX_VALUE_LEN));
        let extracted = w3c().extract(&carrier(&[("baggage", &big_baggage)]));
        assert_eq!(extracted.context().baggage().len(), 0);
        assert_eq!(extracted.correlation_source(), CorrelationSource::Generated);

        // Just under the cap, the parsers' own caps decide (baggage keeps what fits).
        let fits = format!("correlation.id=from-bag,pad={}", "p".repeat(1000));
        let extracted = w3c().extract(&carrier(&[("baggage", &fits)]));
        assert_eq!(extracted.correlation_id().as_str(), "from-bag");
    }

    /// A carrier that lists many keys and many values per key: the caps hold, nothing panics.
    #[test]
    fn a_carrier_with_many_keys_and_values_is_read_within_the_caps() {
        struct Many;
        impl Extractor for Many {
            fn get(&self, key: &str) -> Option<&str> {
                (key == "traceparent").then_some(TRACEPARENT)
            }
            fn keys(&self) -> Vec<&str> {
                vec!["uberctx-k"; 10_000]
            }
            fn get_all(&self, key: &str) -> Option<Vec<&str>> {
                match key {
                    "traceparent" => Some(vec![TRACEPARENT]),
                    "tracestate" => Some(vec!["a=1"; MAX_VALUES + 1]),
                    _ => None,
                }
            }
        }
        assert_eq!(Bounded(&Many).keys().len(), MAX_KEYS);
        assert_eq!(Bounded(&Many).get_all("tracestate"), None);
        let jaeger = CarrierPropagation::new().with_propagator(
            propagator_from_names(["tracecontext", "jaeger"])
                .expect("known")
                .into_shared(),
        );
        let extracted = jaeger.extract(&Many);
        assert!(extracted.is_continued());
    }

    /// Random bytes in every key the propagators and the correlation id read: never a panic,
    /// and a continued trace only from a well-formed `traceparent`.
    #[test]
    fn random_carriers_never_panic() {
        let keys = [
            "traceparent",
            "tracestate",
            "baggage",
            "x-correlation-id",
            "x-request-id",
            "b3",
            "x-b3-traceid",
            "uber-trace-id",
            "uberctx-correlation-id",
        ];
        let all = CarrierPropagation::new().with_propagator(
            propagator_from_names(["tracecontext", "baggage", "b3", "b3multi", "jaeger"])
                .expect("known")
                .into_shared(),
        );
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..2_000 {
            let mut map = HashMap::new();
            for key in keys {
                if rng.bool() {
                    let len = rng.usize(0..200);
                    let value: String = (0..len).map(|_| char::from(rng.u8(0x20..0x7f))).collect();
                    map.insert(key.to_owned(), value);
                }
            }
            let extracted = all.extract(&map);
            assert!(CorrelationId::is_valid(
                extracted.correlation_id().as_str().as_bytes()
            ));
        }
    }

    #[test]
    fn an_explicit_propagator_is_used_both_ways() {
        let b3 = CarrierPropagation::new()
            .with_propagator(propagator_from_names(["b3"]).expect("b3").into_shared());
        let mut map = HashMap::new();
        b3.inject(&sampled_context(), &mut map);
        assert!(
            map.contains_key("b3") && !map.contains_key("traceparent"),
            "{map:?}"
        );
        assert_eq!(map["x-correlation-id"], "corr-1");
        let extracted = b3.extract(&map);
        assert_eq!(
            extracted.context().span().span_context().trace_id(),
            TraceId::from(0xabc)
        );
        // The W3C reader does not understand B3: a new trace.
        assert!(!w3c().extract(&map).is_continued());
    }

    #[test]
    fn correlation_keys_are_configurable_and_lowercased() {
        let propagation = w3c()
            .with_correlation_headers(["X-Ref"])
            .with_correlation_header(Some("X-Ref"));
        let mut map = HashMap::new();
        propagation.inject(&sampled_context(), &mut map);
        assert_eq!(map["x-ref"], "corr-1");
        assert!(!map.contains_key("x-correlation-id"));
        let extracted =
            propagation.extract(&carrier(&[("x-ref", "r-1"), ("x-correlation-id", "c")]));
        assert_eq!(extracted.correlation_id().as_str(), "r-1");
    }
}
