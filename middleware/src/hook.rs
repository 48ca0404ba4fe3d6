//! [`SpanHook`]: your code, called with the server span while it records, to add what only
//! your service knows (a tenant, a plan, a cache outcome) or to rename the span, in the manner
//! of tower-http's `MakeSpan`/`OnResponse`.
//!
//! A hook runs only for a span that records (a sampled request), after the layer has set its
//! own attributes, so it may read them, add to them, or override them. It costs nothing when
//! no hook is set, and nothing for requests that are not sampled.

use http::{Extensions, HeaderMap, Method, StatusCode, Uri, Version};
use opentelemetry::trace::SpanRef;

/// Called with the server span of each sampled request. Closures taking
/// `(&RequestHead, &SpanRef)` implement it (as [`on_request`](Self::on_request)).
///
/// ```
/// use opentelemetry::trace::SpanRef;
/// use opentelemetry::KeyValue;
/// use service_tracing_middleware::{RequestHead, ResponseHead, SpanHook, TracingLayer};
///
/// struct Tenant;
///
/// impl SpanHook for Tenant {
///     fn on_request(&self, request: &RequestHead<'_>, span: &SpanRef<'_>) {
///         if let Some(tenant) = request.headers.get("x-tenant").and_then(|v| v.to_str().ok()) {
///             span.set_attribute(KeyValue::new("app.tenant", tenant.to_owned()));
///         }
///     }
///     fn on_response(&self, response: &ResponseHead<'_>, span: &SpanRef<'_>) {
///         let hit = response.headers.get("x-cache").is_some_and(|v| v == "hit");
///         span.set_attribute(KeyValue::new("app.cache_hit", hit));
///     }
/// }
///
/// let layer = TracingLayer::new().with_span_hook(Tenant);
/// ```
pub trait SpanHook: Send + Sync + 'static {
    /// The span was started and holds the layer's request attributes; the handler has not run
    /// yet. Add attributes or events, or rename it with `span.update_name`.
    fn on_request(&self, request: &RequestHead<'_>, span: &SpanRef<'_>) {
        let _ = (request, span);
    }

    /// The response head is known (its body is not): the layer has set the status and
    /// `error.type`. Not called when the inner service failed without a response or panicked.
    fn on_response(&self, response: &ResponseHead<'_>, span: &SpanRef<'_>) {
        let _ = (response, span);
    }
}

impl<F> SpanHook for F
where
    F: Fn(&RequestHead<'_>, &SpanRef<'_>) + Send + Sync + 'static,
{
    fn on_request(&self, request: &RequestHead<'_>, span: &SpanRef<'_>) {
        self(request, span)
    }
}

/// The parts of a request a [`SpanHook`] sees (the body is the handler's).
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (axum's `MatchedPath`, `ConnectInfo`, ...).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// The parts of a response a [`SpanHook`] sees.
#[derive(Debug)]
#[non_exhaustive]
pub struct ResponseHead<'a> {
    /// The response status.
    pub status: StatusCode,
    /// The response headers (the layer's own not yet added).
    pub headers: &'a HeaderMap,
    /// The response extensions.
    pub extensions: &'a Extensions,
}

impl<'a> ResponseHead<'a> {
    pub(crate) fn of<B>(response: &'a http::Response<B>) -> Self {
        Self {
            status: response.status(),
            headers: response.headers(),
            extensions: response.extensions(),
        }
    }
}

/// The hooks a layer calls.
pub(crate) type SpanHooks = std::sync::Arc<[std::sync::Arc<dyn SpanHook>]>;
