//! [`ScopedTracing`](crate::ScopedTracing): the set-up as values, with nothing installed
//! process-wide, for tests and for several independent set-ups in one process.

use std::fmt;

use opentelemetry_sdk::trace::SdkTracerProvider;
use service_tracing_middleware::TracingLayer;
use tracing::dispatcher::DefaultGuard;
use tracing::Dispatch;

use super::guard::TracingGuard;
use super::subscriber::dispatch;
use super::ServiceTracing;
use crate::error::SetupError;

impl ServiceTracing {
    /// Sets everything up as [`init_layer`](Self::init_layer) does, but installs nothing
    /// process-wide: no global tracer or meter provider, no global propagator, no global
    /// `tracing` subscriber, and [`error_backtraces`](Self::error_backtraces) is not applied
    /// (it is a process-wide switch). What `init` would install is handed back in a
    /// [`ScopedTracing`] instead: the layer, the tracer provider, and a `tracing` [`Dispatch`]
    /// to use with [`ScopedTracing::set_default`] (or [`tracing::dispatcher::with_default`],
    /// or `tracing::instrument::WithSubscriber` on a future).
    ///
    /// So tests can run several set-ups in one process, each exporting where its options say.
    /// Applications keep [`init`](Self::init), which makes the set-up the process's default.
    /// [`install_subscriber`](Self::install_subscriber) is ignored here: the dispatch is always
    /// built. Outbound calls are traced with a
    /// [`TracingMiddleware`](crate::TracingMiddleware) given
    /// [`tracer_provider`](ScopedTracing::tracer_provider)
    /// (`traced_client` follows the globals).
    ///
    /// ```
    /// use service_tracing::ServiceTracing;
    /// use tower::ServiceExt;
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let scoped = ServiceTracing::builder("checkout")
    ///         .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///         .build_scoped()?;
    ///     let app = axum::Router::new()
    ///         .route("/", axum::routing::get(|| async { tracing::info_span!("work").in_scope(|| "done") }))
    ///         .layer(scoped.layer());
    ///     // `tracing` spans on this thread now go to this set-up, until `default` is dropped.
    ///     let default = scoped.set_default();
    ///     let response = app.oneshot(http::Request::new(axum::body::Body::empty())).await?;
    ///     assert_eq!(response.status(), 200);
    ///     drop(default);
    ///     scoped.shutdown()?;
    ///     Ok(())
    /// }
    /// ```
    pub fn build_scoped(self) -> Result<ScopedTracing, SetupError> {
        let (config, propagation) = self.resolve()?;
        let filter = self.resolve_log_filter()?;
        let started = self.start(config, propagation)?;
        let provider = started.pipeline.provider.clone();
        let dispatch = dispatch(provider.as_ref(), filter, &self.redactor);
        let (layer, guard) = started.into_layer_and_guard(self);
        Ok(ScopedTracing {
            layer,
            provider,
            dispatch,
            guard,
        })
    }
}

/// One set-up that installed nothing process-wide ([`ServiceTracing::build_scoped`]): the
/// server layer, the tracer provider it exports through, the `tracing` dispatcher that bridges
/// `tracing` spans to it, and the [`TracingGuard`] that keeps it running.
///
/// ```
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let scoped = service_tracing::ServiceTracing::builder("svc")
///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
///     .build_scoped()?;
/// tracing::dispatcher::with_default(scoped.dispatch(), || {
///     tracing::info_span!("job").in_scope(|| { /* exported by this set-up only */ });
/// });
/// scoped.guard().force_flush()?;
/// # Ok(()) }
/// ```
#[must_use = "keep the set-up alive while it is used; dropping it shuts it down"]
pub struct ScopedTracing {
    layer: TracingLayer,
    provider: Option<SdkTracerProvider>,
    dispatch: Dispatch,
    guard: TracingGuard,
}

impl fmt::Debug for ScopedTracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTracing")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl ScopedTracing {
    /// The server layer, exporting through this set-up's tracer provider (a clone: add it to
    /// as many services as needed).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// let app: axum::Router = axum::Router::new().layer(scoped.layer());
    /// # Ok(()) }
    /// ```
    pub fn layer(&self) -> TracingLayer {
        self.layer.clone()
    }

    /// The tracer provider spans go through; `None` when tracing is disabled
    /// (`OTEL_SDK_DISABLED`).
    ///
    /// ```
    /// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// if let Some(provider) = scoped.tracer_provider() {
    ///     provider.tracer("jobs").in_span("nightly", |_cx| {});
    /// }
    /// # Ok(()) }
    /// ```
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// The `tracing` dispatcher: log lines with their ids, and `tracing` spans bridged to this
    /// set-up's tracer provider. Use it with [`tracing::dispatcher::with_default`] or
    /// `tracing::instrument::WithSubscriber::with_subscriber`.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// tracing::dispatcher::with_default(scoped.dispatch(), || tracing::info!("to this set-up"));
    /// # Ok(()) }
    /// ```
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Makes [`dispatch`](Self::dispatch) the current thread's default until the returned
    /// guard is dropped ([`tracing::dispatcher::set_default`]).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// let _default = scoped.set_default();
    /// tracing::info_span!("job").in_scope(|| tracing::info!("to this set-up"));
    /// # Ok(()) }
    /// ```
    pub fn set_default(&self) -> DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    /// The guard: flush, export figures, error groups, profiling, metrics and
    /// [`service_layer`](TracingGuard::service_layer), as with [`ServiceTracing::init`].
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// scoped.guard().force_flush()?;
    /// assert_eq!(scoped.guard().export_stats().dropped, 0);
    /// # Ok(()) }
    /// ```
    pub fn guard(&self) -> &TracingGuard {
        &self.guard
    }

    /// Flushes every pending span and stops this set-up ([`TracingGuard::shutdown`]); dropping
    /// the value does the same.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// scoped.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown(self) -> Result<(), SetupError> {
        self.guard.shutdown()
    }

    /// [`shutdown`](Self::shutdown) without blocking the runtime's thread
    /// ([`TracingGuard::shutdown_async`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// scoped.shutdown_async().await?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_async(
        self,
    ) -> impl std::future::Future<Output = Result<(), SetupError>> + Send + 'static {
        self.guard.shutdown_async()
    }
}
