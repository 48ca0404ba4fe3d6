//! Set-up: [`setup_service_tracing`](crate::setup_service_tracing), the [`ServiceTracing`](crate::ServiceTracing) builder and the [`TracingGuard`](crate::TracingGuard).
//!
//! One file per job, in the order `init` runs them:
//! - `builder.rs`: [`ServiceTracing`](crate::ServiceTracing) and its option methods (they only record values);
//! - `file.rs`: `ServiceTracing::from_file` and `SERVICE_TRACING_CONFIG`, a configuration
//!   file's settings as the builder's starting values and the variables' fallback;
//! - `resolve.rs`: the builder's values over the `OTEL_*` variables over the file over the
//!   defaults ([`crate::config`] reads the variables);
//! - `pipeline.rs`: `init` and `init_layer`, which start error tracking, profiling, the tracer
//!   provider with its span processors and export worker, and metrics, then build the layer;
//! - `resource.rs`: the OpenTelemetry resource (service, host, process, SDK);
//! - `subscriber.rs`: the `tracing` subscriber and the bridge to OpenTelemetry;
//! - `guard.rs`: [`TracingGuard`](crate::TracingGuard), which flushes and shuts everything down;
//! - `scoped.rs`: [`ServiceTracing::build_scoped`](crate::ServiceTracing::build_scoped) and
//!   [`ScopedTracing`](crate::ScopedTracing): the same set-up with no process globals.

mod builder;
#[cfg(feature = "redis")]
mod builder_chains;
mod builder_errors;
#[cfg(feature = "pages")]
mod builder_pages;
#[cfg(feature = "config-file")]
mod file;
mod guard;
mod pipeline;
mod resolve;
mod resource;
mod scoped;
mod subscriber;
#[cfg(test)]
mod tests;

use axum::Router;

pub use builder::ServiceTracing;
pub use guard::TracingGuard;
pub use scoped::ScopedTracing;
pub use subscriber::BridgeLayer;

use crate::error::SetupError;

/// Sets up tracing for the service `name` with everything read from the standard `OTEL_*`
/// environment variables, and wraps `app` with [`TracingLayer`](crate::TracingLayer).
///
/// It builds and installs the tracer provider (OTLP when an endpoint is configured, else a
/// console exporter that prints each trace as a tree), installs the propagators
/// `OTEL_PROPAGATORS` names (by default W3C Trace Context and Baggage), and installs a `tracing` subscriber that prints log lines with their
/// trace and correlation ids and bridges `tracing` spans to OpenTelemetry. Keep the guard alive
/// for as long as the service runs; its [`shutdown`](TracingGuard::shutdown) (or drop) flushes
/// every pending span.
///
/// `OTEL_SERVICE_NAME`, when set, takes precedence over `name`.
///
/// It wraps the routes `app` has when it is called: a route added to the returned router
/// afterwards is served **untraced** (axum's `Router::layer` wraps only existing routes). Add
/// every route first, or add the layer yourself, last, with
/// [`ServiceTracing::init_layer`].
///
/// Serve with [`TracingGuard::shutdown_signal`] so SIGTERM and Ctrl-C stop the server and let
/// the guard export the last spans:
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let app = Router::new().route("/", get(|| async { "hello" }));
///     let (app, guard) = service_tracing::setup_service_tracing(app, "hello-service")?;
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     axum::serve(listener, app)
///         .with_graceful_shutdown(guard.shutdown_signal())
///         .await?;
///     guard.shutdown_async().await?;
///     Ok(())
/// }
/// ```
pub fn setup_service_tracing<S>(
    app: Router<S>,
    name: &str,
) -> Result<(Router<S>, TracingGuard), SetupError>
where
    S: Clone + Send + Sync + 'static,
{
    ServiceTracing::builder(name).init(app)
}
