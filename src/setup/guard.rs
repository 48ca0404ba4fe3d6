//! [`TracingGuard`](crate::TracingGuard): what set-up started, kept alive, flushed and shut down.

use std::fmt;
use std::future::Future;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

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
#[must_use = "dropping the guard shuts tracing down; keep it until the server stops"]
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
    pub(super) workers: crate::export::Workers,
    /// Request chains, when on (feature `redis`).
    pub(super) chains: Option<super::pipeline::ChainsHandle>,
    /// The pages' recent-trace store, when they are served.
    pub(super) pages: Option<super::pipeline::PagesStore>,
    /// The longest shutdown may take.
    pub(super) shutdown_timeout: Duration,
    /// Where `testing::TestTracing` keeps every service's spans.
    #[cfg(any(test, feature = "testing"))]
    pub(super) capture: Option<crate::testing::Capture>,
}

impl GuardInner {
    fn capture(&self) -> Option<&super::pipeline::Capture> {
        #[cfg(any(test, feature = "testing"))]
        return self.capture.as_ref();
        #[cfg(not(any(test, feature = "testing")))]
        None
    }

    /// Shuts down on a thread of its own and waits for it until the deadline at most.
    fn shut_down_within_deadline(self) -> Result<(), SetupError> {
        let timeout = self.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        // The work holds what it shuts down, so past the deadline it can finish on its own;
        // the thread is not joined.
        let spawned = crate::runtime::spawn_quiet("service-tracing-shutdown", move || {
            let _ = tx.send(self.shut_down(deadline));
        });
        if let Err(e) = spawned {
            return Err(SetupError::new(
                SetupErrorKind::Shutdown,
                "cannot spawn the shutdown thread",
            )
            .with_source(e));
        }
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SetupError::new(
                SetupErrorKind::Shutdown,
                format!(
                    "shutdown did not finish within its {timeout:?} (`shutdown_timeout`); \
                     spans not exported by then are lost"
                ),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SetupError::new(
                SetupErrorKind::Shutdown,
                "the shutdown thread stopped without an answer",
            )),
        }
    }

    /// Flushes and stops everything, each step given what is left of the time.
    fn shut_down(self, deadline: Instant) -> Result<(), SetupError> {
        let left = || deadline.saturating_duration_since(Instant::now());
        if let Some(sampler) = self.profiling.as_ref().and_then(Profiling::resources) {
            sampler.stop();
        }
        let mut result = Ok(());
        for p in self.extra.iter().chain(std::iter::once(&self.main)) {
            if let Some(provider) = &p.provider {
                if let Err(e) = provider.shutdown_with_timeout(left()) {
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
        if let Some(errors) = &self.errors {
            let _ = errors.flush_alerts(left().min(ALERT_FLUSH_TIMEOUT));
        }
        // The last chain entries reach Redis (bounded by its timeouts), and their thread ends.
        #[cfg(feature = "redis")]
        if let Some(chains) = &self.chains {
            chains.stop();
        }
        // The last errors reach the fleet (bounded by the sharing's timeouts).
        #[cfg(feature = "redis")]
        if let Some(errors) = &self.errors {
            errors.sync_now();
        }
        if let Some(metrics) = &self.metrics {
            if let Err(e) = metrics.shutdown() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}

/// See [`TracingGuard::shutdown_signal`].
async fn shutdown_signal() {
    if tokio::runtime::Handle::try_current().is_err() {
        eprintln!(
            "service-tracing: shutdown_signal() was awaited outside a tokio runtime; it will \
             never resolve"
        );
        return std::future::pending().await;
    }
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("service-tracing: cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(e) => {
                eprintln!("service-tracing: cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let mut interrupt = std::pin::pin!(interrupt);
    let mut terminate = std::pin::pin!(terminate);
    std::future::poll_fn(|cx| {
        if interrupt.as_mut().poll(cx).is_ready() || terminate.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
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
            // Then the chain entries of those spans, into Redis when it answers.
            #[cfg(feature = "redis")]
            if let Some(chains) = &inner.chains {
                chains.flush();
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
    ///
    /// It never takes longer than
    /// [`ServiceTracing::shutdown_timeout`](crate::ServiceTracing::shutdown_timeout) (5 s by
    /// default): the work runs on a thread of its own, and when the deadline passes (a
    /// collector that does not answer, say) this returns an error of kind
    /// [`SetupErrorKind::Shutdown`] and leaves that thread to finish or die with the process.
    /// It blocks the calling thread: inside a tokio runtime, prefer
    /// [`shutdown_async`](Self::shutdown_async). Dropping the guard shuts down the same way.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
    /// // ... serve until `guard.shutdown_signal()` resolves ...
    /// guard.shutdown()?; // at most 5 s
    /// # Ok(()) }
    /// ```
    pub fn shutdown(self) -> Result<(), SetupError> {
        self.shutdown_inner()
    }

    /// [`shutdown`](Self::shutdown) for async code: the same work and deadline, waited for
    /// without blocking the runtime's thread (the work and the deadline run on threads of
    /// their own, so it needs no timer and works on a current-thread runtime). Nothing happens
    /// until the future is polled.
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let app = Router::new().route("/", get(|| async { "hello" }));
    ///     let (app, guard) = service_tracing::setup_service_tracing(app, "hello")?;
    ///     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
    ///     axum::serve(listener, app)
    ///         .with_graceful_shutdown(guard.shutdown_signal())
    ///         .await?;
    ///     guard.shutdown_async().await?;
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown_async(self) -> impl Future<Output = Result<(), SetupError>> + Send + 'static {
        let taken = self.take();
        async move {
            let Some(inner) = taken else {
                return Ok(());
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let waiter = crate::runtime::spawn_quiet("service-tracing-shutdown-wait", move || {
                let _ = tx.send(inner.shut_down_within_deadline());
            });
            if let Err(e) = waiter {
                return Err(SetupError::new(
                    SetupErrorKind::Shutdown,
                    "cannot spawn the shutdown thread",
                )
                .with_source(e));
            }
            rx.await.unwrap_or_else(|_| {
                Err(SetupError::new(
                    SetupErrorKind::Shutdown,
                    "the shutdown thread stopped without an answer",
                ))
            })
        }
    }

    /// A future that resolves when the process is asked to stop: SIGTERM (what container
    /// runtimes and systemd send) or Ctrl-C (SIGINT), for
    /// `axum::serve(..).with_graceful_shutdown(..)`. The server then stops accepting, finishes
    /// the requests in flight, and returns, so [`shutdown`](Self::shutdown) or
    /// [`shutdown_async`](Self::shutdown_async) can export the last spans. Without it, SIGTERM
    /// ends the process at once and whatever was still queued is lost.
    ///
    /// Await it inside a tokio runtime with I/O enabled (as `axum::serve` needs anyway). If a
    /// signal cannot be listened for, that is said once on standard error and the future waits
    /// for the other; it never resolves on its own.
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let app = Router::new().route("/", get(|| async { "hello" }));
    ///     let (app, guard) = service_tracing::setup_service_tracing(app, "hello")?;
    ///     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
    ///     axum::serve(listener, app)
    ///         .with_graceful_shutdown(guard.shutdown_signal())
    ///         .await?;
    ///     guard.shutdown_async().await?; // every span ended so far is exported
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        shutdown_signal()
    }

    fn take(&self) -> Option<GuardInner> {
        match self.inner.lock() {
            Ok(mut l) => l.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    fn shutdown_inner(&self) -> Result<(), SetupError> {
        match self.take() {
            Some(inner) => inner.shut_down_within_deadline(),
            None => Ok(()),
        }
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
                (TracesExporter::Console, Some(shared))
                    if !inner.config.disabled && inner.capture().is_none() =>
                {
                    let worker = shared.for_service(name);
                    let resource = resource(&inner.config, name);
                    let (provider, server_tracer) = provider(
                        &inner.config,
                        resource,
                        Some(worker.clone()),
                        inner.errors.as_ref(),
                        inner.profiling.as_ref(),
                        None,
                        inner.chains.as_ref(),
                    );
                    Pipeline {
                        provider: Some(provider),
                        server_tracer: Some(server_tracer),
                        worker: Some(worker),
                        pages_only: false,
                    }
                }
                _ => Pipeline::start(
                    &inner.config,
                    name,
                    &inner.redactor,
                    super::pipeline::SpanReaders {
                        errors: inner.errors.as_ref(),
                        profiling: inner.profiling.as_ref(),
                        capture: inner.capture(),
                        chains: inner.chains.as_ref(),
                        pages: inner.pages.as_ref(),
                    },
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
            if let Some(worker) = pipeline.exporting_worker() {
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

    /// The request chain of the correlation id `id` (feature `redis`): every server span,
    /// consumer span and outbound call that carried it, in every service sharing the Redis,
    /// ordered by start; from this process alone while Redis is unreachable
    /// ([`ChainSource::Local`](crate::request_chain::ChainSource::Local)). `None` when chains
    /// are off ([`ServiceTracing::request_chains`](crate::ServiceTracing::request_chains)),
    /// tracing is disabled, or after shutdown. It waits for the chains' thread (a round trip
    /// to Redis, bounded by its timeouts): inside async code, prefer
    /// [`request_chain_async`](Self::request_chain_async).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     // .error_redis_url("redis://127.0.0.1:6379") to share chains with other services
    ///     .request_chains(service_tracing::request_chain::RequestChains::new())
    ///     .init(axum::Router::<()>::new())?;
    /// let chain = guard.request_chain("order-42").expect("chains are on");
    /// assert!(chain.is_empty()); // nothing carried it yet
    /// println!("{}", chain.to_json());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn request_chain(&self, id: &str) -> Option<crate::request_chain::RequestChain> {
        let chains = self.with_inner(|inner| inner.chains.clone()).flatten()?;
        Some(chains.read(id))
    }

    /// [`request_chain`](Self::request_chain) for async code: the same answer, awaited
    /// without blocking the runtime's thread.
    ///
    /// ```
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let scoped = service_tracing::ServiceTracing::builder("svc")
    ///         .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///         .request_chains(service_tracing::request_chain::RequestChains::new())
    ///         .build_scoped()?;
    ///     let chain = scoped.guard().request_chain_async("order-42").await.expect("on");
    ///     for entry in chain.entries() {
    ///         println!("{} {} {:?}", entry.service, entry.operation, entry.status);
    ///     }
    ///     scoped.shutdown_async().await?;
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "redis")]
    pub fn request_chain_async(
        &self,
        id: &str,
    ) -> impl Future<Output = Option<crate::request_chain::RequestChain>> + Send + 'static {
        let read = self
            .with_inner(|inner| inner.chains.clone())
            .flatten()
            .map(|chains| chains.read_async(id));
        async move {
            match read {
                Some(read) => Some(read.await),
                None => None,
            }
        }
    }

    /// The figures of request chains (entries recorded, dropped, sent, Redis commands);
    /// `None` when [`request_chain`](Self::request_chain) is.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let scoped = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///     .build_scoped()?;
    /// assert!(scoped.guard().request_chain_stats().is_none()); // off unless asked for
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn request_chain_stats(&self) -> Option<crate::request_chain::ChainStats> {
        self.with_inner(|inner| inner.chains.as_ref().map(|c| c.stats()))
            .flatten()
    }

    /// What the health route reads, from this guard's state; `None` when disabled or shut down.
    pub(super) fn health_state(
        &self,
        access: crate::health::HealthAccess,
        unhealthy_after: std::time::Duration,
    ) -> Option<crate::health::HealthState> {
        self.with_inner(|inner| crate::health::HealthState {
            service: inner.config.service_name.clone(),
            started: std::time::Instant::now(),
            workers: inner.workers.clone(),
            metrics: inner.metrics.clone(),
            errors: inner.errors.clone(),
            sampling: inner.config.sampling.as_ref().map(|s| s.handle()),
            access,
            unhealthy_after,
        })
    }

    /// What the pages read, from this guard's state; `None` when disabled or shut down.
    #[cfg(feature = "pages")]
    pub(super) fn pages_state(
        &self,
        path: &str,
        access: crate::pages::PagesAccess,
    ) -> Option<crate::pages::PagesState> {
        let health = self.health_state(
            crate::health::HealthAccess::loopback(),
            crate::health::DEFAULT_UNHEALTHY_AFTER,
        )?;
        self.with_inner(|inner| {
            Some(crate::pages::PagesState {
                base: path.trim_end_matches('/').into(),
                access,
                service_version: inner.config.service_version.clone(),
                store: inner.pages.clone()?,
                health,
                errors: inner.errors.clone(),
                profiling: inner.profiling.clone(),
                #[cfg(feature = "redis")]
                chains: inner.chains.clone(),
                #[cfg(feature = "redis")]
                redactor: inner.redactor.clone(),
            })
        })
        .flatten()
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
