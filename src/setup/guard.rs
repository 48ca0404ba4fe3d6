//! [`TracingGuard`](crate::TracingGuard): what set-up started, kept alive, flushed and shut down.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use service_tracing_middleware::TracingLayer;

use super::builder::LayerOptions;
use super::pipeline::{layer_for, provider, Pipeline};
use super::resource::resource;
use super::subscriber::{bridge_layer, BridgeLayer};
use crate::config::{Propagation, Resolved, TracesExporter};
use crate::error::{SetupError, SetupErrorKind};
use crate::errors::ErrorTracking;
use crate::export::ExportStats;
use crate::metrics::Metrics;
use crate::profiling::Profiling;
use crate::redact::Redactor;

/// Keeps tracing running; flushes and shuts down on [`shutdown`](Self::shutdown) or drop.
///
/// ```no_run
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
/// // ... serve app until a shutdown signal ...
/// guard.shutdown()?; // every span ended so far is exported
/// # Ok(()) }
/// ```
pub struct TracingGuard {
    pub(super) inner: Mutex<Option<GuardInner>>,
}

pub(super) struct GuardInner {
    pub(super) main: Pipeline,
    pub(super) extra: Vec<Pipeline>,
    pub(super) config: Resolved,
    pub(super) propagation: Propagation,
    pub(super) layer: LayerOptions,
    /// The redaction policy, for the pipelines of extra services.
    pub(super) redactor: Redactor,
    pub(super) errors: Option<ErrorTracking>,
    pub(super) profiling: Option<Profiling>,
    pub(super) metrics: Option<Metrics>,
    /// Every service's export worker, each once: `export_stats` and the health metrics read them.
    pub(super) workers: crate::metrics::Workers,
}

impl fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingGuard")
            .field("stats", &self.export_stats())
            .finish_non_exhaustive()
    }
}

impl TracingGuard {
    fn with_inner<T>(&self, f: impl FnOnce(&mut GuardInner) -> T) -> Option<T> {
        let mut lock = match self.inner.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lock.as_mut().map(f)
    }

    /// What happened to ended spans so far, summed over every pipeline.
    pub fn export_stats(&self) -> ExportStats {
        // Every service's worker, each once (services sharing the console worker report it
        // once), as the health metrics read them.
        self.with_inner(|inner| inner.workers.stats())
            .unwrap_or_default()
    }

    /// Exports every span ended so far and waits for the exporter to accept them, then (up to
    /// 30 s) for the alerts and error log records of those spans to be delivered or given up.
    pub fn force_flush(&self) -> Result<(), SetupError> {
        self.with_inner(|inner| {
            for p in inner.extra.iter().chain(std::iter::once(&inner.main)) {
                if let Some(provider) = &p.provider {
                    provider.force_flush().map_err(|e| {
                        SetupError::new(SetupErrorKind::Shutdown, "flushing spans failed")
                            .with_source(e)
                    })?;
                }
            }
            // Then the alerts and log records of the errors those spans held.
            if let Some(errors) = &inner.errors {
                if !errors.flush_alerts(ALERT_FLUSH_TIMEOUT) {
                    return Err(SetupError::new(
                        SetupErrorKind::Shutdown,
                        "alerts and error log records did not settle in time",
                    ));
                }
            }
            // After the spans, so the health figures include them.
            match &inner.metrics {
                Some(metrics) => metrics.force_flush(),
                None => Ok(()),
            }
        })
        .unwrap_or(Ok(()))
    }

    /// Flushes every pending span and stops the export threads. With error sharing (feature
    /// `redis`), then pushes the last error counts to Redis (bounded by its timeouts).
    pub fn shutdown(self) -> Result<(), SetupError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&self) -> Result<(), SetupError> {
        let taken = match self.inner.lock() {
            Ok(mut l) => l.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(inner) = taken else {
            return Ok(());
        };
        if let Some(sampler) = inner.profiling.as_ref().and_then(Profiling::resources) {
            sampler.stop();
        }
        let mut result = Ok(());
        for p in inner.extra.iter().chain(std::iter::once(&inner.main)) {
            if let Some(provider) = &p.provider {
                if let Err(e) = provider.shutdown() {
                    if result.is_ok() {
                        result = Err(SetupError::new(
                            SetupErrorKind::Shutdown,
                            "shutting the tracer provider down failed",
                        )
                        .with_source(e));
                    }
                }
            }
        }
        if let Some(errors) = &inner.errors {
            let _ = errors.flush_alerts(ALERT_FLUSH_TIMEOUT);
        }
        // The last errors reach the fleet (bounded by the sharing's timeouts).
        #[cfg(feature = "redis")]
        if let Some(errors) = &inner.errors {
            errors.sync_now();
        }
        if let Some(metrics) = &inner.metrics {
            if let Err(e) = metrics.shutdown() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// A layer for another service living in the same process (a second router, as in the
    /// quickstart), with its own `service.name` and the same export settings.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (frontend, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "frontend")?;
    /// let backend = axum::Router::<()>::new().layer(guard.service_layer("backend")?);
    /// # Ok(()) }
    /// ```
    pub fn service_layer(&self, name: &str) -> Result<TracingLayer, SetupError> {
        self.with_inner(|inner| {
            let pipeline = match (&inner.config.exporter, inner.main.worker.as_ref()) {
                (TracesExporter::Console, Some(shared)) if !inner.config.disabled => {
                    let worker = shared.for_service(name);
                    let resource = resource(&inner.config, name);
                    let (provider, server_tracer) = provider(
                        &inner.config,
                        resource,
                        Some(worker.clone()),
                        inner.errors.as_ref(),
                        inner.profiling.as_ref(),
                    );
                    Pipeline {
                        provider: Some(provider),
                        server_tracer: Some(server_tracer),
                        worker: Some(worker),
                    }
                }
                _ => Pipeline::start(
                    &inner.config,
                    name,
                    inner.errors.as_ref(),
                    inner.profiling.as_ref(),
                    &inner.redactor,
                )?,
            };
            let layer = layer_for(
                &inner.config,
                &inner.propagation,
                pipeline.server_tracer.as_ref(),
                &inner.layer,
                &inner.redactor,
                inner.errors.as_ref(),
                inner.profiling.as_ref(),
                inner.metrics.as_ref(),
            );
            if let Some(worker) = &pipeline.worker {
                inner.workers.add(worker);
            }
            inner.extra.push(pipeline);
            Ok(layer)
        })
        .unwrap_or_else(|| {
            Err(SetupError::new(
                SetupErrorKind::Shutdown,
                "tracing was already shut down",
            ))
        })
    }

    /// The error groups of every service set up through this guard (the main one and each
    /// [`service_layer`](Self::service_layer)); `None` when error tracking is off
    /// ([`ServiceTracing::error_tracking`](crate::ServiceTracing::error_tracking)), tracing is disabled, or after shutdown.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
    /// if let Some(errors) = guard.errors() {
    ///     println!("{}", errors.summary().to_json());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn errors(&self) -> Option<ErrorTracking> {
        self.with_inner(|inner| inner.errors.clone()).flatten()
    }

    /// The health of the error groups' storage
    /// ([`ErrorTracking::storage_health`](crate::errors::ErrorTracking::storage_health)):
    /// degraded while the shared Redis is unreachable. `None` when [`errors`](Self::errors)
    /// is.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
    /// if let Some(health) = guard.error_storage_health() {
    ///     println!("{}", health.to_json());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn error_storage_health(&self) -> Option<crate::errors::ErrorStorageHealth> {
        self.errors().map(|errors| errors.storage_health())
    }

    /// The handle on the sampling rules given to
    /// [`ServiceTracing::sampling_rules`](crate::ServiceTracing::sampling_rules): change them
    /// while serving, read their figures; `None` without rules, when tracing is disabled, or
    /// after shutdown.
    ///
    /// ```
    /// use service_tracing::sampling::{RouteRule, SampleAction, SamplingRules};
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
    ///     .exporter(service_tracing::TracesExporter::None)
    ///     .sampling_rules(SamplingRules::new().rule(RouteRule::new("/health", SampleAction::Never)))
    ///     .init(axum::Router::<()>::new())?;
    /// let sampling = guard.sampling().expect("rules were given");
    /// sampling.replace(SamplingRules::new().otherwise(SampleAction::Ratio(0.5)));
    /// assert_eq!(sampling.stats().otherwise.effective_ratio, 0.5);
    /// # Ok(()) }
    /// ```
    pub fn sampling(&self) -> Option<crate::sampling::SamplingHandle> {
        self.with_inner(|inner| inner.config.sampling.as_ref().map(|s| s.handle()))
            .flatten()
    }

    /// The latency figures, slow operations and bottlenecks of every service set up through
    /// this guard; `None` when profiling is off ([`ServiceTracing::profiling`](crate::ServiceTracing::profiling)), tracing is
    /// disabled, or after shutdown.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
    /// if let Some(profiling) = guard.profiling() {
    ///     println!("{}", profiling.summary().to_json());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn profiling(&self) -> Option<Profiling> {
        self.with_inner(|inner| inner.profiling.clone()).flatten()
    }

    /// The metrics pipeline (Prometheus text, meter provider); `None` when metrics are off
    /// (see [`crate::metrics`]), tracing is disabled, or after shutdown.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
    ///     .prometheus_route("/metrics")
    ///     .init(axum::Router::<()>::new())?;
    /// if let Some(metrics) = guard.metrics() {
    ///     print!("{}", metrics.prometheus_text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> Option<Metrics> {
        self.with_inner(|inner| inner.metrics.clone()).flatten()
    }

    /// The `tracing` → OpenTelemetry bridge: a `tracing-subscriber` layer (not the server's
    /// [`TracingLayer`]) for applications that install their own subscriber (see
    /// [`ServiceTracing::install_subscriber`](crate::ServiceTracing::install_subscriber)).
    /// `None` when tracing is disabled.
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
    ///     .install_subscriber(false)
    ///     .init(axum::Router::<()>::new())?;
    /// tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .with(guard.bridge_layer())
    ///     .init();
    /// # Ok(()) }
    /// ```
    pub fn bridge_layer<S>(&self) -> Option<BridgeLayer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        self.with_inner(|inner| {
            inner
                .main
                .provider
                .as_ref()
                .map(|p| bridge_layer(p.tracer("service-tracing")))
        })
        .flatten()
    }

    /// The former name of [`bridge_layer`](Self::bridge_layer), easily taken for the server's
    /// [`TracingLayer`].
    #[deprecated(note = "renamed `bridge_layer`")]
    #[doc(hidden)]
    pub fn tracing_layer<S>(&self) -> Option<BridgeLayer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        self.bridge_layer()
    }
}

/// How long flushing waits for alerts to be delivered (retries included).
const ALERT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}
