//! [`TracingMiddleware`]: the client span and header injection, and its options.

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{FutureExt as _, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::Context;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};
use service_tracing_middleware::correlation::CORRELATION_ID_HEADER;
use service_tracing_middleware::propagation::{
    HeaderInjector, PropagatorSource, TRACEPARENT, TRACESTATE,
};
use service_tracing_middleware::semconv::HeaderCapture;
use service_tracing_middleware::tracer::{self, SharedTracer};
use service_tracing_middleware::CorrelationId;

use crate::builder::{next_resend_count, DisablePropagation, SpanName};
use crate::metrics::ClientMetrics;
use crate::span;

/// A [`reqwest_middleware::Middleware`] that traces every request the client sends.
///
/// For each attempt it opens a `SpanKind::Client` span named `{METHOD}` (`HTTP` for an unknown
/// method, or the request's [`SpanName`]) as a child of [`Context::current()`], with the stable
/// HTTP client semantic-convention attributes (`http.request.method`, `server.address`,
/// `server.port`, `url.full` with user info removed and query values redacted,
/// `http.response.status_code`, `error.type`, `http.request.resend_count`) and
/// `correlation.id` when the current context carries one. Status is Error on 4xx, 5xx and
/// transport failures; a failure also gets an `exception` event. The span ends when the
/// response headers arrive (or the attempt fails). Inside a traced request, sampled or not, a
/// failed attempt is also stated as the request's root cause
/// ([`service_tracing_middleware::cause`]), so error tracking counts the failing request once,
/// as a dependency failure.
///
/// It writes `traceparent`, `tracestate` and `baggage` for the client span's context, and the
/// current [`CorrelationId`] as `x-correlation-id`, unless the request carries
/// [`DisablePropagation`]. A header you set on the request yourself is never replaced; if you
/// set `traceparent`, no `tracestate` is added either. While the rest of the chain runs, the
/// client span's context is current, so anything below it is its child.
///
/// # Retries
///
/// Add the retry middleware **before** this one, so that it is outside: each attempt is then
/// its own span, and attempts after the first carry `http.request.resend_count`. Added after,
/// all attempts share one span. Redirects that reqwest follows itself are not counted.
///
/// ```
/// use std::time::Duration;
/// use reqwest_middleware::ClientBuilder;
/// use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
/// use service_tracing_client::TracingMiddleware;
///
/// let policy = ExponentialBackoff::builder()
///     .retry_bounds(Duration::from_millis(100), Duration::from_secs(2))
///     .build_with_max_retries(3);
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(RetryTransientMiddleware::new_with_policy(policy)) // outer: first
///     .with(TracingMiddleware::new()) // inner: one span per attempt
///     .build();
/// ```
///
/// The attempt counter lives in the request's [`Extensions`]; if you call
/// [`ClientWithMiddleware::execute_with_extensions`](reqwest_middleware::ClientWithMiddleware::execute_with_extensions)
/// yourself, give each request fresh extensions.
#[derive(Clone)]
#[must_use = "a middleware does nothing until given to `ClientBuilder::with`"]
pub struct TracingMiddleware {
    tracer: SharedTracer,
    propagator: PropagatorSource,
    correlation_header: Option<HeaderName>,
    metrics: ClientMetrics,
    request_headers: HeaderCapture,
    response_headers: HeaderCapture,
}

impl fmt::Debug for TracingMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingMiddleware")
            .field("propagator", &self.propagator)
            .field("correlation_header", &self.correlation_header)
            .finish_non_exhaustive()
    }
}

impl Default for TracingMiddleware {
    fn default() -> Self {
        Self::new()
    }
}

impl TracingMiddleware {
    /// A middleware using the global tracer and meter providers as they are now (install yours
    /// first, or call [`with_tracer_provider`](Self::with_tracer_provider) and
    /// [`with_meter_provider`](Self::with_meter_provider)), the correlation header
    /// `x-correlation-id`, and the propagator this process's set-up configured, read at each
    /// request: the formats `service-tracing` was set up with (`OTEL_PROPAGATORS` or
    /// `ServiceTracing::propagators`; see
    /// [`set_configured`](service_tracing_middleware::propagation::set_configured)), or W3C
    /// Trace Context and Baggage when nothing was configured. `none` writes no trace context.
    ///
    /// ```
    /// let middleware = service_tracing_client::TracingMiddleware::new();
    /// ```
    pub fn new() -> Self {
        Self {
            tracer: tracer::from_global(env!("CARGO_PKG_VERSION")),
            propagator: PropagatorSource::Configured,
            correlation_header: Some(CORRELATION_ID_HEADER),
            metrics: ClientMetrics::from_global(),
            request_headers: HeaderCapture::default(),
            response_headers: HeaderCapture::default(),
        }
    }

    /// Records these request headers (as the caller set them, before propagation headers are
    /// added) on the client span as `http.request.header.<name>`, string arrays with lowercase
    /// names. Off by default; each call replaces the list. `Authorization`,
    /// `Proxy-Authorization`, `Cookie`, `Set-Cookie` and `X-Api-Key`-style headers are never
    /// captured, even when listed.
    ///
    /// ```
    /// let middleware = service_tracing_client::TracingMiddleware::new()
    ///     .capture_request_headers(["x-tenant"]);
    /// ```
    pub fn capture_request_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.request_headers = HeaderCapture::request(names);
        self
    }

    /// Records these response headers on the client span as `http.response.header.<name>`,
    /// with the same rules as [`capture_request_headers`](Self::capture_request_headers).
    ///
    /// ```
    /// let middleware = service_tracing_client::TracingMiddleware::new()
    ///     .capture_response_headers(["x-cache"]);
    /// ```
    pub fn capture_response_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.response_headers = HeaderCapture::response(names);
        self
    }

    /// Records `http.client.request.duration` with this provider's meter instead of the global
    /// one.
    ///
    /// ```
    /// use opentelemetry::metrics::noop::NoopMeterProvider;
    /// let middleware =
    ///     service_tracing_client::TracingMiddleware::new().with_meter_provider(&NoopMeterProvider::new());
    /// ```
    pub fn with_meter_provider<P>(mut self, provider: &P) -> Self
    where
        P: opentelemetry::metrics::MeterProvider,
    {
        self.metrics = ClientMetrics::from_provider(provider);
        self
    }

    /// Makes spans with this provider's tracer instead of the global one.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// let provider = SdkTracerProvider::builder().build();
    /// let middleware =
    ///     service_tracing_client::TracingMiddleware::new().with_tracer_provider(&provider);
    /// ```
    pub fn with_tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        self.tracer = tracer::from_provider(provider, env!("CARGO_PKG_VERSION"));
        self
    }

    /// Writes outgoing context with this propagator (for example a composite of W3C and B3).
    ///
    /// ```
    /// use service_tracing_client::TracingMiddleware;
    /// use service_tracing_middleware::propagation::W3cTraceContext;
    /// let middleware = TracingMiddleware::new().with_propagator(W3cTraceContext::new());
    /// ```
    pub fn with_propagator<P>(mut self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.propagator = PropagatorSource::Fixed(Arc::new(propagator));
        self
    }

    /// Writes outgoing context with whatever OpenTelemetry global propagator is installed when
    /// each request is sent (a read lock per request). Beware: until one is installed, the
    /// global propagator writes nothing. Without this call the middleware already follows the
    /// propagator `service-tracing`'s set-up chose.
    ///
    /// ```
    /// let middleware = service_tracing_client::TracingMiddleware::new().with_global_propagator();
    /// ```
    pub fn with_global_propagator(mut self) -> Self {
        self.propagator = PropagatorSource::Global;
        self
    }

    /// The header that carries the current correlation id (`x-correlation-id` by default);
    /// `None` stops sending it. The id still travels in baggage as `correlation.id` when the
    /// context's baggage holds it.
    ///
    /// ```
    /// use http::HeaderName;
    /// use service_tracing_client::TracingMiddleware;
    /// let middleware =
    ///     TracingMiddleware::new().with_correlation_header(Some(HeaderName::from_static("x-request-id")));
    /// let silent = TracingMiddleware::new().with_correlation_header(None);
    /// ```
    pub fn with_correlation_header(mut self, name: Option<HeaderName>) -> Self {
        self.correlation_header = name;
        self
    }

    /// Writes the client span's context and the correlation id, leaving the caller's headers
    /// alone.
    fn inject(&self, cx: &Context, correlation: Option<&CorrelationId>, headers: &mut HeaderMap) {
        let correlation = self
            .correlation_header
            .as_ref()
            .filter(|name| !headers.contains_key(*name))
            .zip(correlation.and_then(|id| HeaderValue::from_str(id.as_str()).ok()));
        let mut injector = ClientInjector {
            skip_tracestate: headers.contains_key(TRACEPARENT),
            inner: HeaderInjector::preserving(headers),
        };
        self.propagator.inject_context(cx, &mut injector);
        if let Some((name, value)) = correlation {
            headers.insert(name.clone(), value);
        }
    }
}

/// Preserves the caller's headers, and adds no `tracestate` to a `traceparent` the caller set:
/// the state belongs to the caller's parent, not to ours.
struct ClientInjector<'a> {
    inner: HeaderInjector<'a>,
    skip_tracestate: bool,
}

impl Injector for ClientInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if self.skip_tracestate && key.eq_ignore_ascii_case(TRACESTATE.as_str()) {
            return;
        }
        self.inner.set(key, value);
    }
}

#[async_trait::async_trait]
impl Middleware for TracingMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let parent = Context::current();
        let resend_count = next_resend_count(extensions);
        let name = extensions.get::<SpanName>().map(|n| n.0.clone());
        let propagate = extensions.get::<DisablePropagation>().is_none();
        let correlation = CorrelationId::from_context(&parent);
        let started = std::time::Instant::now();
        let measured = ClientMetrics::request_attributes(&req);
        let method =
            service_tracing_middleware::semconv::known_method(req.method()).unwrap_or("_OTHER");

        let cx = self.tracer.start_in(span::builder(&req, name), &parent);
        {
            let span = cx.span();
            if span.is_recording() {
                let mut more = span::more_attributes(&req, resend_count, correlation.as_ref());
                self.request_headers.record(req.headers(), &mut more);
                span.set_attributes(more);
            }
        }
        if propagate {
            self.inject(&cx, correlation.as_ref(), req.headers_mut());
        }

        let result = next.run(req, extensions).with_context(cx.clone()).await;

        let span = cx.span();
        if let Ok(response) = &result {
            if !self.response_headers.is_empty() && span.is_recording() {
                let mut captured = Vec::new();
                self.response_headers
                    .record(response.headers(), &mut captured);
                span.set_attributes(captured);
            }
        }
        span::record_outcome(&span, &parent, method, &result);
        span.end();
        self.metrics.record(measured, &result, started.elapsed());
        result
    }
}
