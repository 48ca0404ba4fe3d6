//! [`Config`]: what a [`TracingLayer`](crate::TracingLayer) was told, read by every stage of
//! the request's path (`service`, `request`, `future`); and [`SamplerHint`], the one option
//! that is a type of its own.

use http::HeaderName;

use crate::correlation::CorrelationIdCharset;
use crate::hook::SpanHooks;
use crate::observe::Observers;
use crate::propagation::PropagatorSource;
use crate::semconv::HeaderCapture;
use crate::tracer::SharedTracer;
use crate::trust::TrustIncoming;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) tracer: SharedTracer,
    pub(crate) propagator: PropagatorSource,
    pub(crate) correlation_headers: Vec<HeaderName>,
    pub(crate) correlation_charset: CorrelationIdCharset,
    pub(crate) response_header: Option<HeaderName>,
    pub(crate) untraced: Vec<String>,
    pub(crate) trust: TrustIncoming,
    pub(crate) traceresponse: bool,
    pub(crate) observers: Observers,
    /// An observer reads root causes: each request gets a place for one.
    pub(crate) error_causes: bool,
    pub(crate) request_headers: HeaderCapture,
    pub(crate) response_headers: HeaderCapture,
    pub(crate) sampler_hint: SamplerHint,
    /// Called with each recording server span.
    pub(crate) span_hooks: SpanHooks,
}

impl Config {
    /// Whether requests to `key` (the route template, else the path) get no span.
    pub(crate) fn is_untraced(&self, key: &str) -> bool {
        !self.untraced.is_empty() && self.untraced.iter().any(|r| r == key)
    }
}

/// What the layer may assume of the tracer provider's sampler, to skip work its decision
/// would make useless ([`TracingLayer::sampler_hint`](crate::TracingLayer::sampler_hint)).
///
/// The layer cannot ask an OpenTelemetry tracer how it samples; told, it saves most of an
/// unsampled request's cost. A wrong hint changes what is sampled, so give the one that
/// matches the provider's sampler. [`ServiceTracing`] sets it from the sampler it installs.
///
/// [`ServiceTracing`]: https://docs.rs/service-tracing
///
/// ```
/// use service_tracing_middleware::SamplerHint;
/// assert_eq!(SamplerHint::default(), SamplerHint::Unknown);
/// assert!(SamplerHint::ParentBased.ignores_attributes());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplerHint {
    /// Nothing is assumed (the default): each span is started with its name and attributes,
    /// and the tracer decides.
    #[default]
    Unknown,
    /// The sampler reads no attributes, as none of the samplers the OpenTelemetry SDK ships
    /// does (it may read the span's name, which is always given: `{method} {route}`): the
    /// attributes are set once the span records, and never built for a span that does not.
    IgnoresAttributes,
    /// As [`IgnoresAttributes`](Self::IgnoresAttributes), and an incoming parent that is valid
    /// and not sampled means the span is dropped, as the SDK's `ParentBased` samplers decide
    /// with their default rules for remote parents: such a request skips the tracer, and its
    /// span is a non-recording one with a fresh span id under the parent's trace and the
    /// parent's `tracestate`, exactly what the SDK would make.
    ParentBased,
}

impl SamplerHint {
    /// Whether attributes may wait until the span records.
    ///
    /// ```
    /// use service_tracing_middleware::SamplerHint;
    /// assert!(!SamplerHint::Unknown.ignores_attributes());
    /// ```
    pub fn ignores_attributes(self) -> bool {
        self != SamplerHint::Unknown
    }

    /// Whether a valid, unsampled incoming parent means a dropped span.
    ///
    /// ```
    /// use service_tracing_middleware::SamplerHint;
    /// assert!(SamplerHint::ParentBased.drops_unsampled_parents());
    /// assert!(!SamplerHint::IgnoresAttributes.drops_unsampled_parents());
    /// ```
    pub fn drops_unsampled_parents(self) -> bool {
        self == SamplerHint::ParentBased
    }
}
