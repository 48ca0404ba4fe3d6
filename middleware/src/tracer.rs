//! The tracer a layer or client holds, and the instrumentation scope of its spans. Shared by the
//! server layer and the client crate.

use std::sync::Arc;

use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry::InstrumentationScope;

/// Name of the instrumentation scope of the spans this library makes.
pub const SCOPE_NAME: &str = "service-tracing";

/// A tracer, cheap to clone.
pub type SharedTracer = Arc<BoxedTracer>;

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
    Arc::new(BoxedTracer::new(Box::new(
        provider.tracer_with_scope(scope(version)),
    )))
}
