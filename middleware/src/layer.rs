//! [`TracingLayer`]: the server-side layer and its options.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Tracer, TracerProvider};
use tower_layer::Layer;

use crate::config::{Config, SamplerHint};
use crate::correlation::{CorrelationIdCharset, CORRELATION_ID_HEADER, REQUEST_ID_HEADER};
use crate::hook::SpanHook;
use crate::observe::RequestObserver;
use crate::propagation::PropagatorSource;
use crate::semconv::HeaderCapture;
use crate::service::Tracing;
use crate::tracer;
use crate::trust::TrustIncoming;

/// A [`Layer`] that traces every request through the service it wraps.
///
/// For each request it extracts the incoming context (W3C `traceparent`, `tracestate` and
/// `baggage` by default), resolves the correlation id, opens a `SpanKind::Server` span named
/// `{METHOD} {route}` with the HTTP semantic-convention attributes, keeps that context current
/// while the inner service runs, turns a panic into a `500` and an `exception` event, and ends
/// the span when the response body ends. See the [crate docs](crate) for each stage.
///
/// Added twice around the same service (say once on a nested router and once on the outer
/// one), the inner layer finds the outer one's context current, passes the request through
/// untouched, and logs one warning for the process (target `service_tracing::layer`): each
/// request keeps one server span. The same holds for a traced service called in-process
/// from inside a traced request's context.
///
/// The options are builder methods on the layer:
///
/// ```
/// use axum::{routing::get, Router};
/// use service_tracing_middleware::TracingLayer;
///
/// let layer = TracingLayer::new()
///     .untraced_route("/health")
///     .with_correlation_headers(["x-correlation-id", "x-amzn-trace-id"]);
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "ok" }))
///     .route("/health", get(|| async { "ok" }))
///     .layer(layer);
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until given to `Router::layer` or `ServiceBuilder::layer`"]
pub struct TracingLayer {
    pub(crate) config: Arc<Config>,
}

impl fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingLayer")
            .field("correlation_headers", &self.config.correlation_headers)
            .field("correlation_charset", &self.config.correlation_charset)
            .field("response_header", &self.config.response_header)
            .field("untraced", &self.config.untraced)
            .field("trust", &self.config.trust)
            .field("traceresponse", &self.config.traceresponse)
            .field("sampler_hint", &self.config.sampler_hint)
            .finish_non_exhaustive()
    }
}

impl Default for TracingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TracingLayer {
    /// A layer using the global tracer provider as it is now (install yours first, or call
    /// [`with_tracer_provider`](Self::with_tracer_provider)), W3C Trace Context and Baggage,
    /// and the correlation headers `x-correlation-id` then `x-request-id`.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new();
    /// ```
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                tracer: tracer::from_global(env!("CARGO_PKG_VERSION")),
                propagator: PropagatorSource::default(),
                correlation_headers: vec![CORRELATION_ID_HEADER, REQUEST_ID_HEADER],
                correlation_charset: CorrelationIdCharset::DEFAULT,
                response_header: Some(CORRELATION_ID_HEADER),
                untraced: Vec::new(),
                trust: TrustIncoming::always(),
                traceresponse: false,
                observers: Arc::new([]),
                error_causes: false,
                request_headers: HeaderCapture::default(),
                response_headers: HeaderCapture::default(),
                sampler_hint: SamplerHint::Unknown,
                span_hooks: Arc::new([]),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Tells the layer how the tracer provider's sampler decides ([`SamplerHint`]), so an
    /// unsampled request skips the work its span would not use.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    /// use service_tracing_middleware::{SamplerHint, TracingLayer};
    ///
    /// let provider = SdkTracerProvider::builder()
    ///     .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1))))
    ///     .build();
    /// let layer = TracingLayer::new()
    ///     .with_tracer_provider(&provider)
    ///     .sampler_hint(SamplerHint::ParentBased);
    /// ```
    pub fn sampler_hint(mut self, hint: SamplerHint) -> Self {
        self.config_mut().sampler_hint = hint;
        self
    }

    /// Makes spans with this provider's tracer instead of the global one.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// let provider = SdkTracerProvider::builder().build();
    /// let layer = service_tracing_middleware::TracingLayer::new().with_tracer_provider(&provider);
    /// ```
    pub fn with_tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        self.config_mut().tracer = tracer::from_provider(provider, env!("CARGO_PKG_VERSION"));
        self
    }

    /// Makes spans with `tracer`, any [`ContextTracer`](tracer::ContextTracer): an
    /// OpenTelemetry tracer, or a tracer of your own that starts server spans of its own type.
    ///
    /// ```
    /// use opentelemetry::trace::TracerProvider;
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let layer = service_tracing_middleware::TracingLayer::new()
    ///     .with_tracer(provider.tracer("my-service"));
    /// ```
    pub fn with_tracer<T: tracer::ContextTracer>(mut self, tracer: T) -> Self {
        self.config_mut().tracer = Arc::new(tracer);
        self
    }

    /// Reads incoming context with this propagator (for example a composite of W3C and B3).
    ///
    /// ```
    /// use service_tracing_middleware::{propagation::W3cTraceContext, TracingLayer};
    /// let layer = TracingLayer::new().with_propagator(W3cTraceContext::new());
    /// ```
    pub fn with_propagator<P>(mut self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.config_mut().propagator = PropagatorSource::Fixed(Arc::new(propagator));
        self
    }

    /// Reads incoming context with whatever global propagator is installed when each request
    /// arrives. Beware: until one is installed, the global propagator reads nothing.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new().with_global_propagator();
    /// ```
    pub fn with_global_propagator(mut self) -> Self {
        self.config_mut().propagator = PropagatorSource::Global;
        self
    }

    /// The headers read for an incoming correlation id, in order; the first valid one wins.
    /// Names that are not valid header names are skipped. After them the baggage key
    /// `correlation.id` is read.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new()
    ///     .with_correlation_headers(["x-correlation-id"]);
    /// ```
    pub fn with_correlation_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.config_mut().correlation_headers = names
            .into_iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_ref().as_bytes()).ok())
            .collect();
        self
    }

    /// The bytes an incoming correlation id may hold (ASCII letters, digits, `-`, `_`, `.` and
    /// `:` by default). An id holding anything else, in a header or (once percent-decoded) in
    /// baggage, is replaced by a fresh one. A charset never allows control bytes, space, `%`,
    /// `,`, `;`, `=` or non-ASCII bytes: see
    /// [`CorrelationIdCharset`](crate::correlation::CorrelationIdCharset).
    ///
    /// ```
    /// use service_tracing_middleware::correlation::CorrelationIdCharset;
    /// use service_tracing_middleware::TracingLayer;
    ///
    /// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/@").expect("visible ASCII");
    /// let layer = TracingLayer::new().with_correlation_charset(charset);
    /// ```
    pub fn with_correlation_charset(mut self, charset: CorrelationIdCharset) -> Self {
        self.config_mut().correlation_charset = charset;
        self
    }

    /// The response header that echoes the correlation id (`x-correlation-id` by default);
    /// `None` turns the echo off.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new().with_response_header(None);
    /// ```
    pub fn with_response_header(mut self, name: Option<HeaderName>) -> Self {
        self.config_mut().response_header = name;
        self
    }

    /// Leaves requests to this route template (or, where no route is known, this exact path)
    /// untraced: no span, no correlation id, nothing added. For health checks and metrics.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new()
    ///     .untraced_route("/health")
    ///     .untraced_route("/metrics");
    /// ```
    pub fn untraced_route(mut self, route: impl Into<String>) -> Self {
        self.config_mut().untraced.push(route.into());
        self
    }
}

impl TracingLayer {
    /// Which requests may continue the caller's trace (default: all). An untrusted request
    /// starts a new trace linked to the incoming one, and its baggage is dropped.
    ///
    /// ```
    /// use service_tracing_middleware::{TracingLayer, TrustIncoming};
    /// let layer = TracingLayer::new().trust_incoming(TrustIncoming::never());
    /// ```
    pub fn trust_incoming(mut self, trust: TrustIncoming) -> Self {
        self.config_mut().trust = trust;
        self
    }

    /// Adds the W3C Trace Context Level 2 `traceresponse` header to responses, naming the
    /// trace and the server span (off by default: it tells callers your trace ids).
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new().with_traceresponse(true);
    /// ```
    pub fn with_traceresponse(mut self, enabled: bool) -> Self {
        self.config_mut().traceresponse = enabled;
        self
    }

    /// Records these request headers on the server span as `http.request.header.<name>`
    /// (string arrays, lowercase names, after the HTTP semantic conventions). Off by default;
    /// each call replaces the list. `Authorization`, `Proxy-Authorization`, `Cookie`,
    /// `Set-Cookie` and `X-Api-Key`-style headers are never captured, even when listed (see
    /// [`semconv::is_sensitive_header`](crate::semconv::is_sensitive_header)). Unsampled
    /// requests and a layer without a list pay nothing.
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new()
    ///     .capture_request_headers(["x-tenant", "accept-language"]);
    /// ```
    pub fn capture_request_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.config_mut().request_headers = HeaderCapture::request(names);
        self
    }

    /// Records these response headers on the server span as `http.response.header.<name>`,
    /// with the same rules as [`capture_request_headers`](Self::capture_request_headers).
    ///
    /// ```
    /// let layer = service_tracing_middleware::TracingLayer::new()
    ///     .capture_response_headers(["x-cache", "content-type"]);
    /// ```
    pub fn capture_response_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.config_mut().response_headers = HeaderCapture::response(names);
        self
    }

    /// Adds a hook called with the server span of each sampled request, at the request and at
    /// the response head ([`SpanHook`]); hooks run in the order added.
    ///
    /// ```
    /// use opentelemetry::trace::SpanRef;
    /// use opentelemetry::KeyValue;
    /// use service_tracing_middleware::{RequestHead, TracingLayer};
    ///
    /// let layer = TracingLayer::new().with_span_hook(|request: &RequestHead<'_>, span: &SpanRef<'_>| {
    ///     if let Some(plan) = request.headers.get("x-plan").and_then(|v| v.to_str().ok()) {
    ///         span.set_attribute(KeyValue::new("app.plan", plan.to_owned()));
    ///     }
    /// });
    /// ```
    pub fn with_span_hook(mut self, hook: impl SpanHook) -> Self {
        let config = self.config_mut();
        let mut all: Vec<Arc<dyn SpanHook>> = config.span_hooks.iter().cloned().collect();
        all.push(Arc::new(hook));
        config.span_hooks = all.into();
        self
    }

    /// Adds an observer told about every request when its response ends, sampled or not (for
    /// request rates and latency figures that trace sampling must not bias). Without observers
    /// the layer measures nothing extra.
    ///
    /// ```
    /// use service_tracing_middleware::{RequestOutcome, TracingLayer};
    /// let layer = TracingLayer::new().with_observer(|o: &RequestOutcome<'_>| {
    ///     if o.status.is_some_and(|s| s >= 500) {
    ///         eprintln!("{} {:?} failed in {:?}", o.method, o.route, o.duration);
    ///     }
    /// });
    /// ```
    pub fn with_observer(mut self, observer: impl RequestObserver) -> Self {
        let config = self.config_mut();
        config.error_causes |= observer.wants_error_cause();
        let mut all: Vec<Arc<dyn RequestObserver>> = config.observers.iter().cloned().collect();
        all.push(Arc::new(observer));
        config.observers = all.into();
        self
    }
}

impl<S> Layer<S> for TracingLayer {
    type Service = Tracing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracing::new(inner, self.config.clone())
    }
}
