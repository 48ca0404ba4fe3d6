//! Complete distributed tracing for Tower and axum services in one call.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use service_tracing::{setup_service_tracing, traced_client, CorrelationId};
//!
//! async fn hello(id: CorrelationId) -> String {
//!     format!("hello from request {id}")
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new().route("/hello", get(hello));
//!     let (app, guard) = setup_service_tracing(app, "hello-service")?;
//!     let _client = traced_client(); // outbound calls carry the trace and correlation id
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     guard.shutdown()?;
//!     Ok(())
//! }
//! ```
//!
//! - [`setup_service_tracing`] / [`ServiceTracing`]: provider, exporter, propagators, `tracing`
//!   subscriber, all from the standard `OTEL_*` variables and builder calls.
//! - [`TracingLayer`]: the server span per request (see `service-tracing-middleware`).
//! - [`traced_client`] / [`TracingMiddleware`]: the client span per outbound call.
//! - [`CorrelationId`]: the axum extractor for the request's correlation id.
//! - [`ErrorTracking`] (module [`errors`]): errors on spans, in fingerprinted groups with a
//!   severity and a category, read from [`TracingGuard::errors`].
//! - [`Profiling`] (module [`profiling`]): latency percentiles per operation, slow operations
//!   and bottlenecks, read from [`TracingGuard::profiling`].
//! - [`redact`]: the one redaction policy ([`redact::Redactor`]) applied to spans, error
//!   groups, webhook bodies and log records before they leave the process.
//! - [`metrics`]: HTTP server and client metrics after the semantic conventions, pushed over
//!   OTLP and served as Prometheus text ([`ServiceTracing::prometheus_route`]).
//! - `cpu_profile` (feature `cpu-profile`): a CPU profile of the process on demand, as a flame
//!   graph SVG and pprof protobuf.
//!
//! The `opentelemetry`, `opentelemetry_sdk` and `tracing_opentelemetry` this crate is built
//! against are re-exported, so an application never links two versions by accident.

mod attributes;
mod chain;
mod clock;
mod config;
#[cfg(feature = "cpu-profile")]
pub mod cpu_profile;
mod error;
pub mod errors;
pub mod export;
mod logging;
pub mod metrics;
mod operation;
mod per_thread;
pub mod profiling;
pub mod redact;
mod runtime;
mod setup;
#[cfg(test)]
mod test_support;
mod window;

pub use config::{BatchConfig, Compression, Protocol, Sampler, TracesExporter};
pub use error::{SetupError, SetupErrorKind};
pub use errors::{
    record_error, record_error_as, Category, ErrorGroup, ErrorSummary, ErrorTracking, Severity,
};
pub use export::ExportStats;
pub use logging::TraceIdFormat;
pub use metrics::Metrics;
pub use profiling::Profiling;
pub use setup::{setup_service_tracing, BridgeLayer, ServiceTracing, TracingGuard};

/// The traced client: one function, the client crate's. After set-up it follows the
/// propagators set-up chose ([`ServiceTracing::propagators`], `OTEL_PROPAGATORS`; W3C Trace
/// Context and Baggage by default), which set-up records for every [`TracingMiddleware`] made
/// with `TracingMiddleware::new()`.
pub use service_tracing_client::{traced_client, traced_client_with, TracingMiddleware};
pub use service_tracing_middleware::{
    CorrelationId, CorrelationIdCharset, RequestHead, ResponseHead, SpanHook, TracingLayer,
    TrustIncoming,
};

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

/// The README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
