//! HTTP metrics after the OpenTelemetry semantic conventions, pushed over OTLP and served as
//! Prometheus text.
//!
//! With metrics on, every request through the layer is measured, whatever the trace sampler
//! decided (the measurements come from a [`RequestObserver`](service_tracing_middleware::RequestObserver), not from
//! spans):
//!
//! | instrument | kind, unit | attributes |
//! |---|---|---|
//! | `http.server.request.duration` | histogram, `s` | `http.request.method`, `http.route`, `http.response.status_code`, `error.type` |
//! | `http.server.active_requests` | up-down counter, `{request}` | `http.request.method`, `http.route` |
//! | `http.client.request.duration` | histogram, `s` | `http.request.method`, `server.address`, `server.port`, `http.response.status_code`, `error.type` |
//! | `service_tracing.spans.{ended,exported,dropped,rejected,failed}` | counters, `{span}` | |
//! | `service_tracing.spans.queued` | gauge, `{span}` | |
//! | `service_tracing.export.errors` | counter, `{error}` | |
//! | `service_tracing.export.retries` | counter, `{request}` | |
//! | `service_tracing.exporter.up` | gauge, 1 or 0 | |
//! | `process.cpu.utilization` | gauge, `1` | |
//! | `process.memory.usage`, `process.memory.virtual` | up-down counters, `By` | |
//! | `process.thread.count` | up-down counter, `{thread}` | |
//! | `process.unix.file_descriptor.count` | up-down counter, `{file_descriptor}` | |
//! | `gen_ai.client.token.usage` | histogram, `{token}` | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `server.address`, `server.port`, `gen_ai.token.type` |
//! | `gen_ai.client.operation.duration` | histogram, `s` | the same but `gen_ai.token.type`, and `error.type` |
//!
//! The `gen_ai.*` figures come from the LLM helper ([`crate::work::llm`]), one point per
//! call whatever the sampler decided, with the conventions' advisory buckets
//! ([`GEN_AI_TOKEN_USAGE_BOUNDARIES`], [`GEN_AI_DURATION_BOUNDARIES`]).
//!
//! The `process.*` figures are the latest sample of the
//! [resource sampler](crate::process::ProcessSampler) (on with profiling; every 10 s by
//! default).
//!
//! Durations use the conventions' advisory buckets ([`DURATION_BOUNDARIES`]). The client
//! histogram is recorded by [`TracingMiddleware`](crate::TracingMiddleware) (and so by
//! [`traced_client`](crate::traced_client)) through the global meter provider, which set-up
//! installs when metrics are on.
//!
//! # Cardinality
//!
//! `http.route` is the route template (`/users/{id}`), never the raw path; a request no route
//! matched has no `http.route` at all. Each instrument keeps at most
//! [`MAX_ATTRIBUTE_SETS`] attribute sets; measurements beyond go to one overflow series marked
//! `otel.metric.overflow="true"`, so they are still counted.
//!
//! # Where they go
//!
//! - **OTLP**: pushed every `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s) to the collector, to
//!   `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else the traces' base endpoint (`/v1/metrics` for
//!   HTTP). On by default whenever traces go over OTLP; `OTEL_METRICS_EXPORTER=none` (or
//!   [`MetricsExporter::None`]) turns it off. [`TracingGuard::force_flush`](crate::TracingGuard::force_flush)
//!   and shutdown export at once.
//! - **Prometheus**: [`ServiceTracing::prometheus_route`](crate::ServiceTracing::prometheus_route)
//!   serves the text format on a route of the returned router, or render it yourself with
//!   [`Metrics::prometheus_text`]. Names follow the Prometheus translation of the OpenTelemetry
//!   ones: `http_server_request_duration_seconds_bucket{le="0.005",...}` (cumulative),
//!   `_sum`, `_count`.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use service_tracing::ServiceTracing;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new().route("/users/{id}", get(|| async { "user" }));
//! let (app, guard) = ServiceTracing::builder("users")
//!     .otlp_endpoint("http://collector:4318")
//!     .prometheus_route("/metrics")
//!     .init(app)?;
//! // GET /metrics now answers with the Prometheus text; OTLP pushes every minute.
//! if let Some(metrics) = guard.metrics() {
//!     print!("{}", metrics.prometheus_text());
//! }
//! # Ok(()) }
//! ```

mod duration;
mod gen_ai;
mod health;
mod otlp;
mod process;
mod prometheus;
mod push;
mod server;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::Resource;

pub use crate::config::metrics::MetricsExporter;
pub(crate) use duration::BUCKETS as DURATION_BUCKETS;
pub(crate) use gen_ai::{record as record_gen_ai, GenAiCall};
pub use gen_ai::{GEN_AI_DURATION_BOUNDARIES, GEN_AI_TOKEN_USAGE_BOUNDARIES};
pub use prometheus::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;
pub use server::{HttpServerMetrics, DURATION_BOUNDARIES};

use crate::export::Workers;

use crate::config::Resolved;
use crate::error::{SetupError, SetupErrorKind};

/// The most attribute sets one instrument keeps; beyond, measurements go to the overflow
/// series (`otel.metric.overflow="true"`).
pub const MAX_ATTRIBUTE_SETS: usize = 1000;

/// What set-up resolved for metrics.
#[derive(Clone, Debug)]
pub(crate) struct MetricsSettings {
    /// OTLP push settings (their `endpoint` is the metrics one), or `None`.
    pub(crate) push: Option<Resolved>,
    pub(crate) interval: Duration,
    pub(crate) cardinality_limit: usize,
}

/// The metrics pipeline: the meter provider, the reader the Prometheus text and the OTLP push
/// both collect from, and the push thread. Cheap to clone.
///
/// ```no_run
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
///     .prometheus_route("/metrics")
///     .init(axum::Router::<()>::new())?;
/// let metrics = guard.metrics().expect("metrics are on");
/// assert!(metrics.prometheus_text().contains("target_info"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    push: Option<push::Push>,
    /// One for every layer, so `http.server.active_requests` has one callback.
    http_server: HttpServerMetrics,
    /// `http.server.request.duration`, counted per thread and added to what `reader` collects.
    durations: Arc<duration::Durations>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("push", &self.inner.push)
            .finish_non_exhaustive()
    }
}

/// Lets the provider own a reader that [`Metrics`] reads too.
#[derive(Debug)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The name of the instrumentation scope of the library's own instruments.
const SCOPE_NAME: &str = "service-tracing";

/// The instrumentation scope of the library's own instruments.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl Metrics {
    /// Builds the provider (cumulative), the health instruments and the push thread.
    pub(crate) fn start(
        settings: &MetricsSettings,
        resource: Resource,
        workers: &Workers,
    ) -> Result<Self, SetupError> {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        );
        let limit = settings.cardinality_limit;
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(SharedReader(reader.clone()))
            .with_view(move |_: &Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            })
            .build();
        health::register(&provider.meter_with_scope(scope()), workers);
        let durations = Arc::new(duration::Durations::new(limit));
        let http_server =
            HttpServerMetrics::per_thread(&provider.meter_with_scope(scope()), durations.clone());
        let push = match &settings.push {
            Some(config) => {
                let counts = Arc::new(otlp::Counts::default());
                health::register_push(&provider.meter_with_scope(scope()), &counts);
                Some(push::Push::start(
                    reader.clone(),
                    config.clone(),
                    settings.interval,
                    counts,
                    durations.clone(),
                )?)
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                reader,
                push,
                http_server,
                durations,
            }),
        })
    }

    /// Observes the sampling rules' figures (`service_tracing.sampling.*`).
    pub(crate) fn observe_sampling(&self, sampling: crate::sampling::SamplingHandle) {
        health::register_sampling(&self.inner.provider.meter_with_scope(scope()), sampling);
    }

    /// The meter provider, for instruments of your own (they are exported and served too).
    ///
    /// ```no_run
    /// use opentelemetry::metrics::MeterProvider as _;
    /// # fn f(metrics: &service_tracing::metrics::Metrics) {
    /// let orders = metrics.meter_provider().meter("shop").u64_counter("shop.orders").build();
    /// orders.add(1, &[]);
    /// # }
    /// ```
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.inner.provider
    }

    /// A request observer recording the HTTP server metrics into this provider (set-up adds
    /// one to every layer it makes).
    ///
    /// ```no_run
    /// # fn f(metrics: &service_tracing::metrics::Metrics) {
    /// let layer = service_tracing::TracingLayer::new().with_observer(metrics.http_server());
    /// # }
    /// ```
    pub fn http_server(&self) -> HttpServerMetrics {
        self.inner.http_server.clone()
    }

    /// Every metric in the Prometheus text format (version 0.0.4, served with
    /// [`PROMETHEUS_CONTENT_TYPE`]).
    ///
    /// ```no_run
    /// # fn f(metrics: &service_tracing::metrics::Metrics) {
    /// let text = metrics.prometheus_text();
    /// assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    /// # }
    /// ```
    pub fn prometheus_text(&self) -> String {
        let mut rm = ResourceMetrics::default();
        // Fails only after shutdown, when there is nothing to show.
        let _ = self.inner.reader.collect(&mut rm);
        let mut text = prometheus::render(&rm);
        let series = self.inner.durations.collect();
        prometheus::histogram_of_points(
            &mut text,
            (duration::NAME, duration::UNIT, duration::DESCRIPTION),
            &DURATION_BOUNDARIES,
            series.into_iter().map(|(labels, series)| {
                let counts = series.buckets.to_vec();
                (labels.attributes(), counts, series.count, series.sum)
            }),
        );
        text
    }

    /// Failed OTLP metric exports so far (0 without OTLP push).
    ///
    /// ```no_run
    /// # fn f(metrics: &service_tracing::metrics::Metrics) {
    /// assert_eq!(metrics.export_errors(), 0);
    /// # }
    /// ```
    pub fn export_errors(&self) -> u64 {
        self.inner
            .push
            .as_ref()
            .map_or(0, push::Push::export_errors)
    }

    /// OTLP metric export requests sent again so far, after throttling or a transient failure
    /// (0 without OTLP push). Retries follow the OTLP specification, as for spans, within the
    /// export timeout.
    ///
    /// ```no_run
    /// # fn f(metrics: &service_tracing::metrics::Metrics) {
    /// println!("{} metric export retries", metrics.export_retries());
    /// # }
    /// ```
    pub fn export_retries(&self) -> u64 {
        self.inner
            .push
            .as_ref()
            .map_or(0, push::Push::export_retries)
    }

    /// What became of the data points pushed over OTLP so far, in the span figures' terms
    /// ([`ExportStats`](crate::ExportStats)), counted in data points: `exported`, `rejected`
    /// by the backend for good (a final refusal or a partial success's rejected points),
    /// `failed` (given up on after retries or the export timeout), `retried` and
    /// `export_errors` (requests). `dropped` and `queued` stay 0: a push sends the readings of
    /// its moment, nothing waits in a queue. All 0 without OTLP push.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// use std::time::Duration;
    /// use service_tracing::{metrics::MetricsExporter, ServiceTracing, TracesExporter};
    ///
    /// // Nothing listens on port 9: the push gives up when its 200 ms run out.
    /// let scoped = ServiceTracing::builder("svc")
    ///     .env_lookup(|_| None)
    ///     .exporter(TracesExporter::None)
    ///     .metrics_exporter(MetricsExporter::Otlp)
    ///     .otlp_endpoint("http://127.0.0.1:9")
    ///     .otlp_timeout(Duration::from_millis(200))
    ///     .build_scoped()?;
    /// let metrics = scoped.guard().metrics().expect("metrics are on");
    /// let _ = scoped.guard().force_flush(); // fails: no collector
    /// let stats = metrics.export_stats();
    /// assert_eq!((stats.exported, stats.export_errors), (0, 1));
    /// assert!(stats.failed > 0, "{stats:?}");
    /// # Ok(()) }
    /// ```
    pub fn export_stats(&self) -> crate::ExportStats {
        self.inner
            .push
            .as_ref()
            .map_or_else(crate::ExportStats::default, push::Push::export_stats)
    }

    /// Pushes every metric now, when pushing.
    pub(crate) fn force_flush(&self) -> Result<(), SetupError> {
        match &self.inner.push {
            Some(push) => push.force_flush().map_err(|e| {
                SetupError::new(SetupErrorKind::Shutdown, "flushing metrics failed").with_source(e)
            }),
            None => Ok(()),
        }
    }

    /// Pushes a last time, stops the push thread and the provider.
    pub(crate) fn shutdown(&self) -> Result<(), SetupError> {
        let pushed = self
            .inner
            .push
            .as_ref()
            .map_or(Ok(()), push::Push::shutdown);
        let stopped = self.inner.provider.shutdown();
        pushed.and(stopped).map_err(|e| {
            SetupError::new(SetupErrorKind::Shutdown, "shutting the metrics down failed")
                .with_source(e)
        })
    }
}

/// Serves [`Metrics::prometheus_text`] at `path` on `app` (outside the tracing layer: scrapes
/// are neither traced nor measured).
pub(crate) fn with_prometheus_route<S>(
    app: axum::Router<S>,
    path: &str,
    metrics: Metrics,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    app.route(
        path,
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
                    metrics.prometheus_text(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests;
