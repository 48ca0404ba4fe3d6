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
//! The crate root holds what the four steps of a service need, and every type a
//! [`ServiceTracing`] method takes:
//!
//! 1. **Set up**: [`setup_service_tracing`], or the [`ServiceTracing`] builder with `init`
//!    (process-wide, for applications) or [`build_scoped`](ServiceTracing::build_scoped)
//!    ([`ScopedTracing`], no globals, for tests); [`SetupError`] names the bad setting.
//! 2. **Serve**: [`TracingLayer`] makes the server span of each request (see
//!    `service-tracing-middleware`); [`CorrelationId`] is the request's correlation id, as an
//!    axum extractor.
//! 3. **Call out**: [`traced_client`] / [`TracingMiddleware`] make the client span of each
//!    outbound call and carry the context.
//! 4. **Record and read back**: [`record_error`] states an error handled in the request
//!    ([`errors::record_error_as`] states its category and severity too);
//!    [`TracingGuard`] gives the error groups, the latency figures and the metrics, and
//!    flushes at shutdown. [`TracingGuard::bridge_layer`] ([`BridgeLayer`]) and
//!    [`TraceIdFormat`] are for applications that install their own `tracing` subscriber.
//!
//! Everything else lives in a module named after its job:
//! - [`errors`]: error groups with a severity and a category, rates, alerts, Redis sharing;
//! - [`profiling`]: latency percentiles per operation, slow operations, bottlenecks;
//! - [`process`]: the process's own CPU, memory, descriptors and runtime figures, and CPU
//!   profiles on demand (`process::cpu_profile`, feature `cpu-profile`);
//! - [`metrics`]: HTTP server and client metrics after the semantic conventions, pushed over
//!   OTLP and served as Prometheus text ([`ServiceTracing::prometheus_route`]);
//! - [`redact`]: the one redaction policy ([`Redactor`]) applied to spans, error groups,
//!   webhook bodies and log records before they leave the process;
//! - [`export`]: the console exporter and the export figures ([`export::ExportStats`]);
//! - [`work`]: spans for the work inside a request (database queries, external calls, tool
//!   and LLM calls) on one guard, [`work::WorkSpan`].
//! - `amqp` (feature `amqp`): RabbitMQ publish and process spans through lapin, and `kafka`
//!   (feature `kafka`): Kafka send, poll and process spans through rdkafka, each with the
//!   trace and correlation id in the message headers; `messaging` holds what they share. Any
//!   other carrier (job payloads, other brokers) goes through
//!   [`service_tracing_middleware::carrier`].
//!
//! The `opentelemetry`, `opentelemetry_sdk` and `tracing_opentelemetry` this crate is built
//! against are re-exported, so an application never links two versions by accident.

#[cfg(feature = "amqp")]
pub mod amqp;
mod attributes;
mod chain;
mod clock;
mod config;
mod error;
pub mod errors;
pub mod export;
pub mod health;
#[cfg(feature = "kafka")]
pub mod kafka;
mod logging;
#[cfg(any(feature = "amqp", feature = "kafka"))]
pub mod messaging;
pub mod metrics;
mod operation;
#[cfg(feature = "pages")]
pub mod pages;
mod per_thread;
pub mod process;
pub mod profiling;
pub mod redact;
#[cfg(feature = "redis")]
pub mod request_chain;
mod request_record;
mod runtime;
pub mod sampling;
mod server_span;
mod setup;
#[cfg(test)]
mod test_support;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod trace_share;
mod traced;
mod window;
mod wire;
pub mod work;

// 1. Set up.
pub use error::{SetupError, SetupErrorKind};
pub use setup::{setup_service_tracing, ScopedTracing, ServiceTracing, TracingGuard};
// 4. Record and read back; an application's own subscriber.
pub use errors::record_error;
pub use logging::TraceIdFormat;
pub use setup::BridgeLayer;

// What `ServiceTracing`'s methods take.
pub use config::{BatchConfig, Compression, Protocol, TracesExporter, TracesSampler};
pub use errors::{Alert, AlertRule, ErrorEvent, ErrorTracking};
pub use metrics::MetricsExporter;
pub use profiling::Profiling;
pub use redact::Redactor;
// Other crates' types, shown here as re-exports rather than as second pages: each has its page
// in the module it belongs to.
#[doc(no_inline)]
pub use errors::{Category, Severity};
#[doc(no_inline)]
pub use redact::Regex;
#[doc(no_inline)]
pub use sampling::SamplingRules;
pub use service_tracing_middleware::{
    CorrelationIdCharset, RequestHead, ResponseHead, SpanHook, TrustIncoming,
};
pub use window::Window;

/// The former name of [`TracesSampler`], which clashed with `opentelemetry_sdk::trace::Sampler`.
#[deprecated(note = "renamed `TracesSampler`")]
#[doc(hidden)]
pub type Sampler = TracesSampler;
// Former root paths of items that live in their modules now; kept so existing code builds.
#[doc(hidden)]
pub use errors::{record_error_as, ErrorGroup, ErrorSummary};
#[doc(hidden)]
pub use export::ExportStats;
#[doc(hidden)]
pub use metrics::Metrics;
#[cfg(feature = "cpu-profile")]
#[doc(hidden)]
pub use process::cpu_profile;

// 3. Call out.
/// The traced client: one function, the client crate's. After set-up it follows the
/// propagators set-up chose ([`ServiceTracing::propagators`], `OTEL_PROPAGATORS`; W3C Trace
/// Context and Baggage by default), which set-up records for every [`TracingMiddleware`] made
/// with `TracingMiddleware::new()`.
pub use service_tracing_client::{traced_client, traced_client_with, TracingMiddleware};
// 2. Serve.
pub use service_tracing_middleware::{CorrelationId, TracingLayer};

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

#[cfg(feature = "macros")]
#[doc = include_str!("traced.md")]
pub use service_tracing_macros::traced;

/// What `#[traced]` expands to calls; not API.
#[doc(hidden)]
pub mod __private {
    pub use crate::traced::*;
}

// `#[traced]` names this crate `::service_tracing`, in its own tests too.
#[cfg(test)]
extern crate self as service_tracing;

/// The README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
