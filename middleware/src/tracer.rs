//! The tracer a layer or client holds, and the instrumentation scope of its spans. Shared by the
//! server layer and the client crate.

use std::sync::Arc;

use opentelemetry::global;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, KeyValue};

pub use crate::request::attributes::{RequestValue, ServerRequest};

/// Name of the instrumentation scope of the spans this library makes.
pub const SCOPE_NAME: &str = "service-tracing";

/// A tracer, cheap to clone.
pub type SharedTracer = Arc<dyn ContextTracer>;

/// Starts spans straight into a context. Any OpenTelemetry [`Tracer`] is one.
///
/// The span keeps its own type up to the context, which boxes it once: a tracer made
/// type-erased first (`BoxedTracer`) hands out boxed spans that the context boxes again, so
/// every call on the span would go through two boxes (and one more allocation per span).
///
/// ```
/// use opentelemetry::trace::{SpanBuilder, TraceContextExt};
/// use service_tracing_middleware::tracer::{from_provider, ContextTracer};
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let tracer = from_provider(&provider, "1.0.0");
/// let cx = tracer.start_in(SpanBuilder::from_name("work"), &opentelemetry::Context::new());
/// assert!(cx.span().span_context().is_valid());
/// ```
pub trait ContextTracer: Send + Sync + 'static {
    /// Starts a span from `builder` under `parent` and returns `parent` with it as the
    /// current span.
    fn start_in(&self, builder: SpanBuilder, parent: &Context) -> Context;

    /// As [`start_in`](Self::start_in), and when the span records, `attributes` adds to it
    /// the attributes that were not worth building before the sampler decided.
    ///
    /// The default sets them on the started span in one call; a tracer with a span type of
    /// its own can let `attributes` write into the span directly.
    ///
    /// ```
    /// use opentelemetry::trace::{SpanBuilder, TraceContextExt};
    /// use opentelemetry::KeyValue;
    /// use service_tracing_middleware::tracer::{from_provider, ContextTracer};
    ///
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let tracer = from_provider(&provider, "1.0.0");
    /// let cx = tracer.start_recorded_in(
    ///     SpanBuilder::from_name("work"),
    ///     &opentelemetry::Context::new(),
    ///     &mut |attributes| attributes.push(KeyValue::new("work.kind", "batch")),
    /// );
    /// assert!(cx.span().is_recording());
    /// ```
    fn start_recorded_in(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        attributes: &mut dyn FnMut(&mut Vec<KeyValue>),
    ) -> Context {
        let cx = self.start_in(builder, parent);
        let span = cx.span();
        if span.is_recording() {
            let mut added = Vec::with_capacity(16);
            attributes(&mut added);
            span.set_attributes(added);
        }
        cx
    }

    /// Starts a server span; when it records, `request` gives the request's attributes
    /// ([`ServerRequest`]), read only then.
    ///
    /// The default adds them as `KeyValue`s through
    /// [`start_recorded_in`](Self::start_recorded_in); a tracer with a span type of its own
    /// can keep them as they are.
    ///
    /// ```
    /// use opentelemetry::trace::{SpanBuilder, TraceContextExt};
    /// use service_tracing_middleware::tracer::{from_provider, ContextTracer};
    ///
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let tracer = from_provider(&provider, "1.0.0");
    /// let req = http::Request::get("/users/42").body(()).unwrap();
    /// let cx = tracer.start_server(
    ///     SpanBuilder::from_name("GET /users/{id}"),
    ///     &opentelemetry::Context::new(),
    ///     &mut || service_tracing_middleware::test_server_request(&req),
    /// );
    /// assert!(cx.span().is_recording());
    /// ```
    fn start_server(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        request: &mut dyn FnMut() -> ServerRequest,
    ) -> Context {
        self.start_recorded_in(builder, parent, &mut |attributes| {
            request().push_key_values(true, attributes)
        })
    }
}

impl<T> ContextTracer for T
where
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    fn start_in(&self, builder: SpanBuilder, parent: &Context) -> Context {
        parent.with_span(self.build_with_context(builder, parent))
    }
}

/// The instrumentation scope, with the version of the crate making the spans.
///
/// ```
/// let scope = service_tracing_middleware::tracer::scope("1.0.0");
/// assert_eq!(scope.name(), "service-tracing");
/// ```
pub fn scope(version: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(version)
        .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
        .build()
}

/// The global provider's tracer, as the provider is now.
///
/// ```
/// let tracer = service_tracing_middleware::tracer::from_global("1.0.0");
/// ```
pub fn from_global(version: &'static str) -> SharedTracer {
    Arc::new(global::tracer_provider().tracer_with_scope(scope(version)))
}

/// A given provider's tracer.
///
/// ```
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let tracer = service_tracing_middleware::tracer::from_provider(&provider, "1.0.0");
/// ```
pub fn from_provider<P>(provider: &P, version: &'static str) -> SharedTracer
where
    P: TracerProvider,
    P::Tracer: Send + Sync + 'static,
    <P::Tracer as Tracer>::Span: Send + Sync + 'static,
{
    Arc::new(provider.tracer_with_scope(scope(version)))
}
