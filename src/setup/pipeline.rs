//! Wiring: `init` and `init_layer` start error tracking, profiling, one [`Pipeline`] per service
//! (the tracer provider, its span processors and the export worker) and metrics, install the
//! global providers, propagator and subscriber, and build the server layer.

use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use opentelemetry::global;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use service_tracing_middleware::{SpanHook, TracingLayer};

use super::builder::LayerOptions;
use super::guard::{GuardInner, TracingGuard};
use super::resource::resource;
use super::subscriber::{already_set, global_subscriber_is_set, install_subscriber};
use super::ServiceTracing;
use crate::config::{Propagation, Resolved, TracesExporter};
use crate::error::SetupError;
use crate::errors::ErrorTracking;
use crate::export::batch::ExportWorker;
use crate::export::console::ConsoleExporter;
use crate::export::otlp;
use crate::metrics::Metrics;
use crate::profiling::Profiling;
use crate::redact::Redactor;
use crate::server_span::{ServerTracer, SharedChain};

impl ServiceTracing {
    /// Error tracking, with its alerts, the redaction policy and, for OTLP traces, new groups
    /// and alerts as log records; shared through Redis when a URL is set. One tracker is
    /// shared by every service's provider.
    fn start_errors(&self, config: &Resolved) -> Result<Option<ErrorTracking>, SetupError> {
        if !self.error_tracking || config.disabled {
            return Ok(None);
        }
        let errors = self.error_tracker.clone().unwrap_or_default();
        let errors = match &self.error_classifier {
            Some(classify) => errors.with_shared_classifier(classify.clone()),
            None => errors,
        };
        let logs_env = self.env.logs()?;
        let logs = match self.resolve_logs(config, &logs_env)? {
            Some(logs_config) => crate::errors::logs::LogExport::from_config(
                &logs_config,
                resource(config, &config.service_name),
                &logs_env,
            ),
            None => None,
        };
        // Error groups (and so webhook bodies and log records) use the same policy.
        let mut alerts = self.alerts.clone();
        alerts.redactor = Some(self.redactor.clone());
        let errors = alerts.apply(errors, logs)?;
        #[cfg(feature = "redis")]
        let errors = match self.resolve_errors_redis_url() {
            Some((setting, url)) => errors.with_sharing(
                crate::errors::RedisSharing::parse(setting, url.trim())?
                    .prefix(format!("service-tracing:{}:errors", config.service_name)),
            ),
            None => errors,
        };
        Ok(Some(errors))
    }

    /// Profiling with the slow thresholds and, when on, the process sampler.
    fn start_profiling(&self, config: &Resolved) -> Option<Profiling> {
        let profiling = (self.profiling && !config.disabled).then(|| {
            let profiling = self.profiler.clone().unwrap_or_default();
            self.slow_thresholds.iter().fold(profiling, |p, (op, t)| {
                p.with_slow_threshold(op.clone(), *t)
            })
        });
        profiling.map(|p| self.with_process_sampler(p))
    }

    /// Adds and starts the process sampler, when on. Called inside the application's
    /// runtime, the sampler reads that runtime's figures.
    fn with_process_sampler(&self, profiling: Profiling) -> Profiling {
        if !self.process.enabled || profiling.resources().is_some() {
            return profiling;
        }
        let sampler = crate::process::ProcessSampler::new().with_interval(self.process.interval);
        sampler.start();
        profiling.with_resources(sampler)
    }

    /// Sets everything up and wraps `app`. See [`setup_service_tracing`](crate::setup_service_tracing).
    ///
    /// Only the routes `app` has now are wrapped: a route added to the returned router is
    /// served untraced. To add routes later, use [`init_layer`](Self::init_layer) and add the
    /// layer last.
    pub fn init<S>(self, app: Router<S>) -> Result<(Router<S>, TracingGuard), SetupError>
    where
        S: Clone + Send + Sync + 'static,
    {
        let route = self.metrics.prometheus_route.clone();
        let health = self.health.clone();
        if let Some(path) = health.route.as_deref().filter(|p| !p.starts_with('/')) {
            return Err(SetupError::invalid(
                "health_route",
                path,
                "a path starting with /",
            ));
        }
        #[cfg(feature = "pages")]
        let pages = self.pages.clone();
        #[cfg(feature = "pages")]
        if let Some(path) = pages
            .route
            .as_deref()
            .filter(|p| !p.starts_with('/') || p.trim_end_matches('/').is_empty())
        {
            return Err(SetupError::invalid(
                "pages",
                path,
                "a path starting with / other than / itself",
            ));
        }
        let (layer, guard) = self.init_layer()?;
        let mut app = app.layer(layer);
        if let (Some(path), Some(metrics)) = (route, guard.metrics()) {
            app = add_route(app, "prometheus_route", &path, |app| {
                crate::metrics::with_prometheus_route(app, &path, metrics)
            })?;
        }
        if let Some(path) = &health.route {
            if let Some(state) = guard.health_state(health.access, health.unhealthy_after) {
                app = add_route(app, "health_route", path, |app| {
                    crate::health::with_health_route(app, path, state)
                })?;
            }
        }
        #[cfg(feature = "pages")]
        if let Some(path) = &pages.route {
            if let Some(state) = guard.pages_state(path, pages.access) {
                app = add_route(app, "pages", path, |app| {
                    crate::pages::with_pages(app, path, state)
                })?;
            }
        }
        Ok((app, guard))
    }

    /// Sets everything up and returns the layer, for any Tower service (not only axum), or
    /// for a router that adds the layer itself, **last**, so every route is traced (with
    /// [`init`](Self::init), routes added after set-up are not). The Prometheus route
    /// ([`prometheus_route`](Self::prometheus_route)) is added by `init` only; with the layer,
    /// serve [`Metrics::prometheus_text`](crate::metrics::Metrics::prometheus_text) yourself.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let (layer, guard) = service_tracing::ServiceTracing::builder("svc")
    ///         .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
    ///         .init_layer()?;
    ///     let app = Router::new()
    ///         .route("/orders", get(|| async { "orders" }))
    ///         .route("/late", get(|| async { "added after set-up, traced all the same" }))
    ///         .layer(layer); // last: wraps every route above
    ///     let request = http::Request::get("/late").body(axum::body::Body::empty())?;
    ///     let response = app.oneshot(request).await?;
    ///     assert!(response.headers().contains_key("x-correlation-id")); // the layer answered
    ///     guard.shutdown_async().await?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Any Tower service:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (layer, guard) = service_tracing::ServiceTracing::builder("svc").init_layer()?;
    /// let service = tower::ServiceBuilder::new().layer(layer).service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// });
    /// # Ok(()) }
    /// ```
    pub fn init_layer(self) -> Result<(TracingLayer, TracingGuard), SetupError> {
        let (config, propagation) = self.resolve()?;
        if self.install_subscriber && global_subscriber_is_set() {
            return Err(already_set());
        }
        let started = self.start(config, propagation)?;
        self.install_globals(&started)?;
        Ok(started.into_layer_and_guard(self))
    }

    /// Starts everything set-up runs (error tracking, profiling, the pipeline, metrics) and
    /// builds the layer, installing nothing process-wide: `init_layer` then installs the
    /// globals, [`build_scoped`](Self::build_scoped) does not.
    pub(super) fn start(
        &self,
        config: Resolved,
        propagation: Propagation,
    ) -> Result<Started, SetupError> {
        let errors = self.start_errors(&config)?;
        let profiling = self.start_profiling(&config);
        let chains = self.chains(config.disabled)?;
        let pages = self.pages_store()?;
        let pipeline = Pipeline::start(
            &config,
            &config.service_name,
            &self.redactor,
            SpanReaders {
                errors: errors.as_ref(),
                profiling: profiling.as_ref(),
                capture: self.capture(),
                chains: chains.as_ref(),
                pages: pages.as_ref(),
            },
        )?;
        let metrics_settings = self.resolve_metrics(&config)?;
        let workers = crate::export::Workers::default();
        if let Some(worker) = pipeline.exporting_worker() {
            workers.add(worker);
        }
        let metrics = match &metrics_settings {
            Some(settings) => Some(start_metrics(
                settings,
                resource(&config, &config.service_name),
                &workers,
                profiling.as_ref(),
            )?),
            None => None,
        };
        if let (Some(metrics), Some(sampling)) = (&metrics, &config.sampling) {
            metrics.observe_sampling(sampling.handle());
        }
        let layer = layer_for(
            &config,
            &propagation,
            pipeline.server_tracer.as_ref(),
            &self.layer,
            &self.redactor,
            errors.as_ref(),
            profiling.as_ref(),
            metrics.as_ref(),
        );
        Ok(Started {
            layer,
            pages,
            pipeline,
            config,
            propagation,
            errors,
            profiling,
            metrics,
            workers,
            chains,
        })
    }

    /// The process-wide part of `init_layer`: the backtrace switch, the propagator, the tracer
    /// and meter providers (`traced_client` and `TracingMiddleware` use them) and, when asked,
    /// the `tracing` subscriber.
    fn install_globals(&self, started: &Started) -> Result<(), SetupError> {
        if started.errors.is_some() {
            crate::errors::set_backtrace_capture(self.error_backtraces);
        }
        // The layer and `traced_client` share this choice (see `layer_for`).
        global::set_text_map_propagator(started.propagation.propagator.clone());
        service_tracing_middleware::propagation::set_configured(
            (!started.propagation.is_default())
                .then(|| started.propagation.propagator.clone().into_shared()),
        );
        if let Some(provider) = &started.pipeline.provider {
            global::set_tracer_provider(provider.clone());
        }
        if let Some(metrics) = &started.metrics {
            global::set_meter_provider(metrics.meter_provider().clone());
        }
        if self.install_subscriber {
            install_subscriber(
                started.pipeline.provider.as_ref(),
                self.resolve_log_filter()?,
                &self.redactor,
            )?;
        }
        Ok(())
    }
}

/// What [`ServiceTracing::start`] started, before the guard takes it over.
pub(super) struct Started {
    pub(super) layer: TracingLayer,
    pages: Option<PagesStore>,
    pub(super) pipeline: Pipeline,
    config: Resolved,
    propagation: Propagation,
    errors: Option<ErrorTracking>,
    profiling: Option<Profiling>,
    metrics: Option<Metrics>,
    workers: crate::export::Workers,
    chains: Option<ChainsHandle>,
}

impl Started {
    /// The layer, and the guard that keeps what was started alive.
    pub(super) fn into_layer_and_guard(
        self,
        options: ServiceTracing,
    ) -> (TracingLayer, TracingGuard) {
        let guard = TracingGuard {
            inner: Mutex::new(Some(GuardInner {
                main: self.pipeline,
                extra: Vec::new(),
                config: self.config,
                propagation: self.propagation,
                layer: options.layer,
                redactor: options.redactor,
                errors: self.errors,
                profiling: self.profiling,
                metrics: self.metrics,
                workers: self.workers,
                chains: self.chains,
                pages: self.pages,
                shutdown_timeout: options.shutdown_timeout,
                #[cfg(any(test, feature = "testing"))]
                capture: options.capture,
            })),
        };
        (self.layer, guard)
    }
}

/// The metrics pipeline, observing the resource sampler when there is one.
fn start_metrics(
    settings: &crate::metrics::MetricsSettings,
    resource: Resource,
    workers: &crate::export::Workers,
    profiling: Option<&Profiling>,
) -> Result<Metrics, SetupError> {
    let metrics = Metrics::start(settings, resource, workers)?;
    if let Some(sampler) = profiling.and_then(Profiling::resources) {
        metrics.observe_resources(&sampler);
    }
    Ok(metrics)
}

/// One hook shared by every layer set-up makes.
struct SharedHook(std::sync::Arc<dyn SpanHook>);

impl SpanHook for SharedHook {
    fn on_request(
        &self,
        request: &service_tracing_middleware::RequestHead<'_>,
        span: &opentelemetry::trace::SpanRef<'_>,
    ) {
        self.0.on_request(request, span);
    }

    fn on_response(
        &self,
        response: &service_tracing_middleware::ResponseHead<'_>,
        span: &opentelemetry::trace::SpanRef<'_>,
    ) {
        self.0.on_response(response, span);
    }
}

#[allow(clippy::too_many_arguments)] // Each is one independent part of the set-up.
pub(super) fn layer_for(
    config: &Resolved,
    propagation: &Propagation,
    tracer: Option<&ServerTracer>,
    options: &LayerOptions,
    redactor: &Redactor,
    errors: Option<&ErrorTracking>,
    profiling: Option<&Profiling>,
    metrics: Option<&Metrics>,
) -> TracingLayer {
    let mut layer = match tracer {
        // The layer is told how the installed sampler decides, so unsampled requests skip
        // the tracer's work (none of set-up's span processors reads attributes at start).
        Some(tracer) => TracingLayer::new()
            .with_tracer(tracer.clone())
            .sampler_hint(config.sampler.hint()),
        None => TracingLayer::new(),
    };
    for route in &options.untraced {
        layer = layer.untraced_route(route.clone());
    }
    for hook in &options.span_hooks {
        layer = layer.with_span_hook(SharedHook(hook.clone()));
    }
    layer = layer
        .trust_incoming(options.trust.clone())
        .with_traceresponse(options.traceresponse)
        .with_correlation_charset(options.correlation_charset);
    // Names checked by `resolve`.
    if let Some(names) = &options.correlation_headers {
        layer = layer.with_correlation_headers(names);
    }
    if let Some(name) = &options.correlation_response_header {
        layer = layer.with_response_header(
            name.as_deref()
                .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok()),
        );
    }
    // Header names the policy denies are not captured either (the layer itself never captures
    // credentials and cookies).
    let allowed = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| !redactor.denies_key(n))
            .cloned()
            .collect()
    };
    if !options.request_headers.is_empty() {
        layer = layer.capture_request_headers(allowed(&options.request_headers));
    }
    if !options.response_headers.is_empty() {
        layer = layer.capture_response_headers(allowed(&options.response_headers));
    }
    // The default keeps the layer on its W3C fast path, which reads the same headers.
    if !propagation.is_default() {
        layer = layer.with_propagator(propagation.propagator.clone());
    }
    // Per-route error rates, per-route latency figures and HTTP metrics count every request,
    // whatever the sampler: one record per request feeds the three (`request_record`).
    if errors.is_some() || profiling.is_some() || metrics.is_some() {
        layer = layer.with_observer(crate::request_record::RequestRecord::new(
            errors.cloned(),
            profiling.cloned(),
            metrics.map(|m| m.http_server()),
        ));
    }
    let _ = config;
    layer
}

/// One service's provider, the layer's tracer that ends spans into the same processor, and
/// what feeds its exporter.
pub(super) struct Pipeline {
    pub(super) provider: Option<SdkTracerProvider>,
    pub(super) server_tracer: Option<ServerTracer>,
    pub(super) worker: Option<ExportWorker>,
    /// The worker feeds the pages alone (no exporter): its figures are not export's.
    pub(super) pages_only: bool,
}

/// What reads a service's ended spans besides its exporter, each when on: error tracking,
/// profiling, the testing kit's capture, request chains and the pages' store.
#[derive(Clone, Copy)]
pub(super) struct SpanReaders<'a> {
    pub(super) errors: Option<&'a ErrorTracking>,
    pub(super) profiling: Option<&'a Profiling>,
    pub(super) capture: Option<&'a Capture>,
    pub(super) chains: Option<&'a ChainsHandle>,
    pub(super) pages: Option<&'a PagesStore>,
}

impl Pipeline {
    /// With `capture` (the testing kit), spans go there instead of the configured exporter.
    /// With `pages`, the worker also shows every batch to the pages' store, and a worker is
    /// started for the store alone when nothing is exported.
    pub(super) fn start(
        config: &Resolved,
        service: &str,
        redactor: &Redactor,
        readers: SpanReaders<'_>,
    ) -> Result<Self, SetupError> {
        let SpanReaders {
            errors,
            profiling,
            capture,
            chains,
            pages,
        } = readers;
        if config.disabled {
            return Ok(Self {
                provider: None,
                server_tracer: None,
                worker: None,
                pages_only: false,
            });
        }
        let resource = resource(config, service);
        let pages_only =
            capture.is_none() && config.exporter == TracesExporter::None && pages.is_some();
        let worker = match (capture, config.exporter) {
            (Some(capture), _) => Some(capture_worker(capture, config, &resource, redactor)?),
            (None, TracesExporter::None) if pages_only => {
                Some(pages_worker(config, &resource, redactor)?)
            }
            (None, TracesExporter::None) => None,
            (None, TracesExporter::Console) => {
                // A person is watching: print within a second.
                let batch = config
                    .batch
                    .with_scheduled_delay(config.batch.scheduled_delay.min(Duration::from_secs(1)));
                Some(
                    ExportWorker::start(
                        || Ok(ConsoleExporter::stdout()),
                        batch,
                        resource.clone(),
                        Some(redactor.clone()),
                    )?
                    .tagged(service)
                    .ticking(),
                )
            }
            (None, TracesExporter::Otlp) => {
                let otlp_config = config.clone();
                Some(ExportWorker::start_with_tally(
                    move |tally| otlp::build_preferred(&otlp_config, tally),
                    config.batch,
                    resource.clone(),
                    Some(redactor.clone()),
                )?)
            }
        };
        if let (Some(worker), Some(store)) = (&worker, pages) {
            tap(worker, store, service);
        }
        let (provider, server_tracer) = provider(
            config,
            resource,
            worker.clone(),
            errors,
            profiling,
            capture,
            chains,
        );
        Ok(Self {
            provider: Some(provider),
            server_tracer: Some(server_tracer),
            worker,
            pages_only,
        })
    }

    /// The worker whose figures are export's (not one feeding the pages alone).
    pub(super) fn exporting_worker(&self) -> Option<&ExportWorker> {
        self.worker.as_ref().filter(|_| !self.pages_only)
    }
}

/// The pages' recent-trace store; nothing without the `pages` feature.
#[cfg(feature = "pages")]
pub(super) type PagesStore = crate::pages::store::RecentTraces;
/// The pages' recent-trace store; nothing without the `pages` feature.
#[cfg(not(feature = "pages"))]
pub(super) type PagesStore = std::convert::Infallible;

impl ServiceTracing {
    /// The store the pages read, when they are served; an error names a bound out of range.
    #[cfg(feature = "pages")]
    fn pages_store(&self) -> Result<Option<PagesStore>, SetupError> {
        if self.pages.route.is_none() {
            return Ok(None);
        }
        self.pages.limits.check("pages_store_limits", ' ')?;
        Ok(Some(crate::pages::store::RecentTraces::new(
            self.pages.limits,
        )))
    }

    #[cfg(not(feature = "pages"))]
    fn pages_store(&self) -> Result<Option<PagesStore>, SetupError> {
        Ok(None)
    }
}

/// Shows `worker`'s batches to the pages' store, as `service`'s spans.
#[cfg(feature = "pages")]
fn tap(worker: &ExportWorker, store: &PagesStore, service: &str) {
    // A worker shared by several services (the console's) keeps its first tap: its spans
    // carry `service.name`.
    let _ = worker.set_tap(store.tap(service));
}

#[cfg(not(feature = "pages"))]
fn tap(_: &ExportWorker, store: &PagesStore, _: &str) {
    match *store {}
}

/// A worker that exports nothing, for the pages when no exporter is set.
#[cfg(feature = "pages")]
fn pages_worker(
    config: &Resolved,
    resource: &Resource,
    redactor: &Redactor,
) -> Result<ExportWorker, SetupError> {
    ExportWorker::start(
        || Ok(crate::pages::Discard),
        config.batch,
        resource.clone(),
        Some(redactor.clone()),
    )
}

#[cfg(not(feature = "pages"))]
fn pages_worker(_: &Resolved, _: &Resource, _: &Redactor) -> Result<ExportWorker, SetupError> {
    Err(SetupError::new(
        crate::error::SetupErrorKind::Worker,
        "the pages need the `pages` feature",
    ))
}

/// Request chains' handle; nothing without the `redis` feature.
#[cfg(feature = "redis")]
pub(super) type ChainsHandle = crate::request_chain::Chains;
/// Request chains' handle; nothing without the `redis` feature.
#[cfg(not(feature = "redis"))]
pub(super) type ChainsHandle = std::convert::Infallible;

impl ServiceTracing {
    #[cfg(feature = "redis")]
    fn chains(&self, disabled: bool) -> Result<Option<ChainsHandle>, SetupError> {
        self.start_chains(disabled)
    }

    #[cfg(not(feature = "redis"))]
    #[allow(clippy::unnecessary_wraps, reason = "the `redis` build's signature")]
    fn chains(&self, _disabled: bool) -> Result<Option<ChainsHandle>, SetupError> {
        Ok(None)
    }
}

/// With request chains, their hook goes in front of every other processor, so it sees each
/// span as it ended.
#[cfg(feature = "redis")]
fn with_chains(
    chains: Option<&ChainsHandle>,
    chain: Option<SharedChain>,
    resource: &Resource,
) -> Option<SharedChain> {
    let Some(chains) = chains else {
        return chain;
    };
    let next = chain.unwrap_or_else(SharedChain::empty);
    Some(SharedChain::new(
        crate::chain::InFrontOf::new(chains.hook(resource), next),
        resource,
    ))
}

#[cfg(not(feature = "redis"))]
fn with_chains(
    chains: Option<&ChainsHandle>,
    chain: Option<SharedChain>,
    _: &Resource,
) -> Option<SharedChain> {
    match chains {
        Some(never) => match *never {},
        None => chain,
    }
}

/// Where the testing kit keeps spans; nothing without the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub(super) type Capture = crate::testing::Capture;
/// Where the testing kit keeps spans; nothing without the `testing` feature.
#[cfg(not(any(test, feature = "testing")))]
pub(super) type Capture = std::convert::Infallible;

impl ServiceTracing {
    /// Keeps spans in `capture` instead of exporting them (`testing::TestTracing`).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn capturing(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    fn capture(&self) -> Option<&Capture> {
        #[cfg(any(test, feature = "testing"))]
        return self.capture.as_ref();
        #[cfg(not(any(test, feature = "testing")))]
        None
    }
}

/// An export worker whose exporter keeps every span in `capture`,
/// redacted as an exporter would receive it.
#[cfg(any(test, feature = "testing"))]
fn capture_worker(
    capture: &Capture,
    config: &Resolved,
    resource: &Resource,
    redactor: &Redactor,
) -> Result<ExportWorker, SetupError> {
    let exporter = capture.exporter();
    ExportWorker::start(
        move || Ok(exporter),
        config.batch,
        resource.clone(),
        Some(redactor.clone()),
    )
}

/// Adds the testing kit's record of started spans to the provider.
#[cfg(any(test, feature = "testing"))]
fn with_start_tracker(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    capture: &Capture,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    builder.with_span_processor(capture.start_tracker())
}

#[cfg(not(any(test, feature = "testing")))]
fn with_start_tracker(
    _: opentelemetry_sdk::trace::TracerProviderBuilder,
    capture: &Capture,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    match *capture {}
}

#[cfg(not(any(test, feature = "testing")))]
fn capture_worker(
    capture: &Capture,
    _: &Resolved,
    _: &Resource,
    _: &Redactor,
) -> Result<ExportWorker, SetupError> {
    match *capture {}
}

/// The provider, and the layer's [`ServerTracer`] with the same sampler and processor.
///
/// With `capture` (the testing kit), the provider also tells it which spans start, so spans
/// never ended can be reported.
#[allow(clippy::too_many_arguments)] // Each is one independent part of the set-up.
pub(super) fn provider(
    config: &Resolved,
    resource: Resource,
    worker: Option<ExportWorker>,
    errors: Option<&ErrorTracking>,
    profiling: Option<&Profiling>,
    capture: Option<&Capture>,
    chains: Option<&ChainsHandle>,
) -> (SdkTracerProvider, ServerTracer) {
    let sampler = crate::sampling::Installed::of(config);
    // Profiling then error tracking go in front of the worker as one processor: with several,
    // the SDK would clone every ended span. Profiling comes right before the worker, so the
    // `performance.slow` events it adds are exported; between them, what keeps the failing
    // and slow spans of dropped traces (`SamplingRules::keep_errors`) reads those events.
    let worker = worker.map(|worker| crate::chain::InFrontOf::new(sampler.keep(), worker));
    let chain = match (worker, profiling) {
        (Some(worker), Some(profiling)) => {
            with_errors(errors, profiling.in_front_of(worker), &resource)
        }
        (Some(worker), None) => with_errors(errors, worker, &resource),
        (None, Some(profiling)) => with_errors(errors, profiling.clone(), &resource),
        (None, None) => errors.map(|errors| SharedChain::new(errors.clone(), &resource)),
    };
    let chain = with_chains(chains, chain, &resource);
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler.clone());
    let (builder, chain) = match chain {
        Some(chain) => (builder.with_span_processor(chain.clone()), chain),
        // Nothing to end spans into: a chain of no processor, for the layer's tracer.
        None => (builder, SharedChain::empty()),
    };
    let builder = match capture {
        Some(capture) => with_start_tracker(builder, capture),
        None => builder,
    };
    let server = ServerTracer::new(
        sampler,
        chain,
        service_tracing_middleware::tracer::scope(env!("CARGO_PKG_VERSION")),
    );
    (builder.build(), server)
}

fn with_errors<P: crate::chain::RecordProcessor + 'static>(
    errors: Option<&ErrorTracking>,
    next: P,
    resource: &Resource,
) -> Option<SharedChain> {
    Some(match errors {
        Some(errors) => SharedChain::new(errors.in_front_of(next), resource),
        None => SharedChain::new(next, resource),
    })
}

/// `add` applied to `app`; axum panics on a path it already routes, which is told instead as
/// a set-up error naming `setting`.
fn add_route<S>(
    app: Router<S>,
    setting: &str,
    path: &str,
    add: impl FnOnce(Router<S>) -> Router<S>,
) -> Result<Router<S>, SetupError>
where
    S: Clone + Send + Sync + 'static,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| add(app)))
        .map_err(|_| SetupError::invalid(setting, path, "a path the application does not route"))
}
