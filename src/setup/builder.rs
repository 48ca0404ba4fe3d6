//! [`ServiceTracing`](crate::ServiceTracing): the options, each recorded as given; `resolve.rs` layers them over the
//! environment and `pipeline.rs` acts on them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use service_tracing_middleware::{CorrelationIdCharset, SpanHook, TrustIncoming};

use crate::config::env;
use crate::config::{BatchConfig, Compression, Protocol, TracesExporter, TracesSampler};
use crate::errors::{AlertOptions, ErrorTracking};
use crate::metrics::MetricsExporter;
use crate::profiling::Profiling;

use crate::redact::Redactor;

/// Options for [`setup_service_tracing`](crate::setup_service_tracing), each overriding the environment.
///
/// ```no_run
/// use service_tracing::{Protocol, TracesSampler, ServiceTracing};
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let app: axum::Router = axum::Router::<()>::new();
/// let (app, guard) = ServiceTracing::builder("checkout")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .environment("production")
///     .otlp_endpoint("http://collector:4317")
///     .otlp_protocol(Protocol::Grpc)
///     .sampler(TracesSampler::ParentBasedTraceIdRatio(0.1))
///     .untraced_route("/health")
///     .init(app)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "call .init(app) to set tracing up"]
pub struct ServiceTracing {
    pub(super) name: String,
    pub(super) version: Option<String>,
    pub(super) environment: Option<String>,
    pub(super) resource_attributes: Vec<(String, String)>,
    pub(super) exporter: Option<TracesExporter>,
    pub(super) endpoint: Option<String>,
    pub(super) protocol: Option<Protocol>,
    /// The log records' own protocol (`otlp_logs_protocol`).
    pub(super) logs_protocol: Option<Protocol>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) timeout: Option<Duration>,
    pub(super) compression: Option<Compression>,
    pub(super) certificate: Option<PathBuf>,
    /// The client certificate chain and private key for mTLS.
    pub(super) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(super) sampler: Option<TracesSampler>,
    pub(super) sampling_rules: Option<crate::sampling::SamplingRules>,
    pub(super) health: HealthOptions,
    #[cfg(feature = "pages")]
    pub(super) pages: super::builder_pages::PagesOptions,
    pub(super) batch: Option<BatchConfig>,
    pub(super) propagators: Option<Vec<String>>,
    pub(super) layer: LayerOptions,
    pub(super) install_subscriber: bool,
    pub(super) log_filter: Option<String>,
    /// Where the variables are read.
    pub(super) env: env::Source,
    pub(super) error_tracking: bool,
    pub(super) error_classifier: Option<Arc<crate::errors::Classifier>>,
    pub(super) error_backtraces: bool,
    pub(super) alerts: AlertOptions,
    pub(super) redactor: Redactor,
    #[cfg(feature = "redis")]
    pub(super) error_redis_url: Option<String>,
    /// Request chains' settings, when on.
    #[cfg(feature = "redis")]
    pub(super) request_chains: Option<crate::request_chain::RequestChains>,
    /// The tracker [`error_tracker`](Self::error_tracker) gave, else set-up makes one.
    pub(super) error_tracker: Option<ErrorTracking>,
    pub(super) profiling: bool,
    /// The profiling [`profiler`](Self::profiler) gave, else set-up makes one.
    pub(super) profiler: Option<Profiling>,
    pub(super) slow_thresholds: Vec<(String, Duration)>,
    pub(super) metrics: MetricsOptions,
    pub(super) process: ProcessOptions,
    /// The longest [`TracingGuard::shutdown`](crate::TracingGuard::shutdown) may take.
    pub(super) shutdown_timeout: Duration,
    /// Why `SERVICE_TRACING_CONFIG`'s file could not be read: returned by `init`.
    pub(super) file_error: Option<String>,
    /// Where `testing::TestTracing` keeps spans, instead of the configured exporter.
    #[cfg(any(test, feature = "testing"))]
    pub(super) capture: Option<crate::testing::Capture>,
}

/// The variable naming a configuration file that [`ServiceTracing::builder`] reads.
pub(super) const CONFIG_VAR: &str = "SERVICE_TRACING_CONFIG";

/// [`ServiceTracing::shutdown_timeout`]'s default.
pub(super) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The health route's builder options.
#[derive(Clone, Debug)]
pub(super) struct HealthOptions {
    pub(super) route: Option<String>,
    pub(super) access: crate::health::HealthAccess,
    pub(super) unhealthy_after: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            route: None,
            access: crate::health::HealthAccess::loopback(),
            unhealthy_after: crate::health::DEFAULT_UNHEALTHY_AFTER,
        }
    }
}

/// The process sampler's builder options.
#[derive(Clone, Debug)]
pub(super) struct ProcessOptions {
    pub(super) enabled: bool,
    pub(super) interval: Duration,
}

/// The metrics builder options.
#[derive(Clone, Debug, Default)]
pub(super) struct MetricsOptions {
    pub(super) exporter: Option<MetricsExporter>,
    pub(super) protocol: Option<Protocol>,
    pub(super) interval: Option<Duration>,
    pub(super) prometheus_route: Option<String>,
}

impl fmt::Debug for ServiceTracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTracing")
            .field("name", &self.name)
            .field("exporter", &self.exporter)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl ServiceTracing {
    /// Starts the options for the service `name`.
    ///
    /// When the variable `SERVICE_TRACING_CONFIG` names a configuration file (read from the
    /// process environment, like `RUST_LOG`), its settings are the starting point, as
    /// [`from_file`](Self::from_file) gives them; `name` beats the file's `service.name`. A file
    /// that cannot be read or holds a bad value fails [`init`](Self::init) with the file's
    /// line and column.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("checkout");
    /// # let _ = options;
    /// ```
    pub fn builder(name: impl Into<String>) -> Self {
        let options = Self::bare(name.into());
        let path = env::process_var(CONFIG_VAR);
        #[cfg(feature = "config-file")]
        return options.with_config_var(path);
        #[cfg(not(feature = "config-file"))]
        match path.filter(|p| !p.trim().is_empty()) {
            Some(_) => Self {
                file_error: Some(format!(
                    "{CONFIG_VAR} is set, but this build has no `config-file` feature"
                )),
                ..options
            },
            None => options,
        }
    }

    /// The options with nothing read from a file.
    pub(super) fn bare(name: String) -> Self {
        Self {
            name,
            version: None,
            environment: None,
            resource_attributes: Vec::new(),
            exporter: None,
            endpoint: None,
            protocol: None,
            logs_protocol: None,
            headers: Vec::new(),
            timeout: None,
            compression: None,
            certificate: None,
            client_certificate: None,
            sampler: None,
            sampling_rules: None,
            health: HealthOptions::default(),
            #[cfg(feature = "pages")]
            pages: super::builder_pages::PagesOptions::default(),
            batch: None,
            propagators: None,
            layer: LayerOptions::default(),
            install_subscriber: true,
            log_filter: None,
            env: env::Source::default(),
            error_tracking: true,
            error_classifier: None,
            error_backtraces: false,
            alerts: AlertOptions::default(),
            redactor: Redactor::new(),
            #[cfg(feature = "redis")]
            error_redis_url: None,
            #[cfg(feature = "redis")]
            request_chains: None,
            error_tracker: None,
            profiling: true,
            profiler: None,
            slow_thresholds: Vec::new(),
            metrics: MetricsOptions::default(),
            process: ProcessOptions {
                enabled: true,
                interval: crate::process::DEFAULT_SAMPLE_INTERVAL,
            },
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            file_error: None,
            #[cfg(any(test, feature = "testing"))]
            capture: None,
        }
    }

    /// `service.version`, usually `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// `deployment.environment.name`, such as `production`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Adds a resource attribute (overrides `OTEL_RESOURCE_ATTRIBUTES` on the same key).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// Where spans go (`OTEL_TRACES_EXPORTER`).
    pub fn exporter(mut self, exporter: TracesExporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// The collector's base endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it (for
    /// HTTP, `/v1/traces` is appended). Setting it selects the OTLP exporter.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// OTLP transport of every signal (`OTEL_EXPORTER_OTLP_PROTOCOL`); beats the signals' own
    /// variables (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`...), as the builder's calls do. With the
    /// base endpoint ([`otlp_endpoint`](Self::otlp_endpoint)), HTTP/protobuf sends each signal to
    /// its `/v1/traces`, `/v1/metrics` or `/v1/logs`, gRPC to the endpoint itself.
    ///
    /// ```
    /// use service_tracing::{Protocol, ServiceTracing};
    /// let options = ServiceTracing::builder("checkout")
    ///     .otlp_endpoint("http://collector:4317")
    ///     .otlp_protocol(Protocol::Grpc);
    /// # let _ = options;
    /// ```
    pub fn otlp_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// OTLP transport of metrics only (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`); beats
    /// [`otlp_protocol`](Self::otlp_protocol) for metrics. For a backend that takes each signal
    /// over another protocol.
    ///
    /// ```
    /// use service_tracing::{Protocol, ServiceTracing};
    /// let options = ServiceTracing::builder("checkout")
    ///     .otlp_protocol(Protocol::Grpc)
    ///     .otlp_metrics_protocol(Protocol::HttpProtobuf);
    /// # let _ = options;
    /// ```
    pub fn otlp_metrics_protocol(mut self, protocol: Protocol) -> Self {
        self.metrics.protocol = Some(protocol);
        self
    }

    /// OTLP transport of the error groups' and alerts' log records only
    /// (`OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`); beats [`otlp_protocol`](Self::otlp_protocol) for
    /// them.
    ///
    /// ```
    /// use service_tracing::{Protocol, ServiceTracing};
    /// let options = ServiceTracing::builder("checkout")
    ///     .otlp_protocol(Protocol::Grpc)
    ///     .otlp_logs_protocol(Protocol::HttpProtobuf);
    /// # let _ = options;
    /// ```
    pub fn otlp_logs_protocol(mut self, protocol: Protocol) -> Self {
        self.logs_protocol = Some(protocol);
        self
    }

    /// Adds a header to every export request (`OTEL_EXPORTER_OTLP_HEADERS`), such as an API key.
    pub fn otlp_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// How long the export of one batch may take, retries included
    /// (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s). Within it, throttling and transient
    /// failures are retried with exponential backoff, honouring `Retry-After` and `RetryInfo`.
    pub fn otlp_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Compresses export requests (`OTEL_EXPORTER_OTLP_COMPRESSION`, default none): gzip, over
    /// gRPC and OTLP/HTTP alike. Worth it to a hosted backend that bills or limits bytes.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("checkout")
    ///     .otlp_endpoint("https://otlp.example.com")
    ///     .otlp_compression(service_tracing::Compression::Gzip);
    /// # let _ = options;
    /// ```
    pub fn otlp_compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// A PEM file of CA certificates to trust, beside the system's roots, for an `https` endpoint
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`, or `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`): a private
    /// CA, or a collector's self-signed certificate. Read at set-up; an unreadable file or one
    /// without a certificate fails set-up. Needs the `tls` feature (on by default) to matter.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("checkout")
    ///     .otlp_endpoint("https://collector.internal:4318")
    ///     .otlp_certificate("/etc/ssl/private-ca.pem"); // read by `init`
    /// ```
    pub fn otlp_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.certificate = Some(path.into());
        self
    }

    /// The client certificate (a PEM certificate chain, leaf first) and its private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1) presented to an `https` collector that requires client
    /// authentication (mTLS), for spans, metrics and error log records alike
    /// (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY`, or their
    /// `_TRACES_`, `_METRICS_`, `_LOGS_` forms). Read at set-up: an unreadable file, one without a
    /// certificate or key, or a key that does not match the certificate fails set-up naming
    /// this call. Needs the `tls` feature (on by default) to matter.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("checkout")
    ///     .otlp_endpoint("https://collector.internal:4317")
    ///     .otlp_protocol(service_tracing::Protocol::Grpc)
    ///     .otlp_certificate("/etc/otel/ca.pem")
    ///     .otlp_client_certificate("/etc/otel/client.pem", "/etc/otel/client-key.pem"); // read by `init`
    /// # let _ = options;
    /// ```
    pub fn otlp_client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// The sampler (`OTEL_TRACES_SAMPLER`).
    pub fn sampler(mut self, sampler: TracesSampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Serves the health report ([`health`](crate::health)) at `path` on the router
    /// [`init`](Self::init) returns: JSON, `200` while export works, `503` once span export has
    /// failed for longer than [`health_unhealthy_after`](Self::health_unhealthy_after). Only
    /// loopback peers may read it unless [`health_access`](Self::health_access) says otherwise.
    ///
    /// ```
    /// let builder = service_tracing::ServiceTracing::builder("shop").health_route("/_tracing/health");
    /// ```
    pub fn health_route(mut self, path: impl Into<String>) -> Self {
        self.health.route = Some(path.into());
        self
    }

    /// Who may read the health route (default: loopback peers only).
    ///
    /// ```
    /// use service_tracing::health::HealthAccess;
    /// let builder = service_tracing::ServiceTracing::builder("shop")
    ///     .health_route("/_tracing/health")
    ///     .health_access(HealthAccess::bearer_token("s3cret"));
    /// ```
    pub fn health_access(mut self, access: crate::health::HealthAccess) -> Self {
        self.health.access = access;
        self
    }

    /// How long span export may fail before the health route answers `503` (default 60 s).
    ///
    /// ```
    /// let builder = service_tracing::ServiceTracing::builder("shop")
    ///     .health_unhealthy_after(std::time::Duration::from_secs(30));
    /// ```
    pub fn health_unhealthy_after(mut self, after: Duration) -> Self {
        self.health.unhealthy_after = after;
        self
    }

    /// Per-route sampling rules, changeable while serving through
    /// [`TracingGuard::sampling`](crate::TracingGuard::sampling). They decide new traces; a
    /// span with a parent follows it when the [`sampler`](Self::sampler) is parent-based (the
    /// default), and new traces no rule matches get the sampler's decision unless the rules
    /// say `otherwise` (see [`sampling`](crate::sampling)).
    ///
    /// ```
    /// use service_tracing::sampling::{RouteRule, SampleAction, SamplingRules};
    /// let builder = service_tracing::ServiceTracing::builder("shop").sampling_rules(
    ///     SamplingRules::new()
    ///         .rule(RouteRule::new("/health", SampleAction::Never))
    ///         .rule(RouteRule::new("/checkout", SampleAction::Always).method("POST")),
    /// );
    /// ```
    pub fn sampling_rules(mut self, rules: crate::sampling::SamplingRules) -> Self {
        self.sampling_rules = Some(rules);
        self
    }

    /// The export queue (`OTEL_BSP_*`).
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.batch = Some(batch);
        self
    }

    /// The context propagation formats (`OTEL_PROPAGATORS`), in order: `tracecontext`,
    /// `baggage`, `b3` (single header), `b3multi`, `jaeger`, or `none` alone. Default
    /// `tracecontext,baggage`. An incoming request is continued from the first listed trace
    /// format it carries validly; outbound context (the layer's and [`traced_client`]'s) is
    /// written in every listed format. An unknown name fails [`init`](Self::init).
    ///
    /// [`traced_client`]: crate::traced_client
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .propagators(["tracecontext", "baggage", "b3"]);
    /// ```
    pub fn propagators<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.propagators = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// A route template (or exact path) left untraced, such as `/health`.
    pub fn untraced_route(mut self, route: impl Into<String>) -> Self {
        self.layer.untraced.push(route.into());
        self
    }

    /// Which requests may continue the caller's trace (default: all). See
    /// [`TrustIncoming`](service_tracing_middleware::TrustIncoming).
    ///
    /// ```
    /// use service_tracing::{ServiceTracing, TrustIncoming};
    /// let options = ServiceTracing::builder("edge").trust_incoming(TrustIncoming::never());
    /// ```
    pub fn trust_incoming(mut self, trust: TrustIncoming) -> Self {
        self.layer.trust = trust;
        self
    }

    /// The bytes an incoming correlation id may hold (default: ASCII letters, digits, `-`, `_`,
    /// `.` and `:`); an id holding others is replaced by a fresh one. For fleets whose ids use
    /// other characters. See [`CorrelationIdCharset`](service_tracing_middleware::CorrelationIdCharset)
    /// for the bytes no charset may allow.
    ///
    /// ```
    /// use service_tracing::{CorrelationIdCharset, ServiceTracing};
    /// let charset = CorrelationIdCharset::DEFAULT.with_extra(b"/").expect("visible ASCII");
    /// let options = ServiceTracing::builder("svc").correlation_id_charset(charset);
    /// ```
    pub fn correlation_id_charset(mut self, charset: CorrelationIdCharset) -> Self {
        self.layer.correlation_charset = charset;
        self
    }

    /// The request headers an incoming correlation id is read from, in order (default
    /// `x-correlation-id`, then `x-request-id`; after them the baggage key `correlation.id`).
    /// For fleets whose gateways name it otherwise. A name that is not a valid header name
    /// fails [`init`](Self::init), naming `correlation_headers`.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .correlation_headers(["x-amzn-trace-id", "x-correlation-id"]);
    /// ```
    pub fn correlation_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.layer.correlation_headers = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The response header that echoes the request's correlation id (default
    /// `x-correlation-id`); `None` turns the echo off. A name that is not a valid header name
    /// fails [`init`](Self::init), naming `correlation_response_header`.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .correlation_response_header(Some("x-request-id"));
    /// let quiet = service_tracing::ServiceTracing::builder("svc").correlation_response_header(None);
    /// ```
    pub fn correlation_response_header(mut self, name: Option<&str>) -> Self {
        self.layer.correlation_response_header = Some(name.map(str::to_owned));
        self
    }

    /// Adds a hook called with the server span of each sampled request, at the request and at
    /// the response head, after the layer's own attributes ([`SpanHook`]).
    ///
    /// ```
    /// use opentelemetry::trace::SpanRef;
    /// use opentelemetry::KeyValue;
    /// use service_tracing::{RequestHead, ServiceTracing};
    ///
    /// let options = ServiceTracing::builder("svc").span_hook(|request: &RequestHead<'_>, span: &SpanRef<'_>| {
    ///     if let Some(tenant) = request.headers.get("x-tenant").and_then(|v| v.to_str().ok()) {
    ///         span.set_attribute(KeyValue::new("app.tenant", tenant.to_owned()));
    ///     }
    /// });
    /// ```
    pub fn span_hook(mut self, hook: impl SpanHook) -> Self {
        self.layer.span_hooks.push(std::sync::Arc::new(hook));
        self
    }

    /// Adds the W3C Level 2 `traceresponse` header to responses (default off).
    pub fn traceresponse(mut self, enabled: bool) -> Self {
        self.layer.traceresponse = enabled;
        self
    }

    /// Whether to profile operations (default yes): latency percentiles per operation, slow
    /// operations and bottlenecks; read them with [`TracingGuard::profiling`](crate::TracingGuard::profiling). See
    /// [`crate::profiling`].
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").profiling(false);
    /// ```
    pub fn profiling(mut self, enabled: bool) -> Self {
        self.profiling = enabled;
        self
    }

    /// Uses `profiling`, with every setting made on it (the bound on operations, slow
    /// thresholds, the log interval, automatic thresholds, a process sampler), as the profiling
    /// set-up wires in, and turns profiling on. The builder's
    /// [`slow_threshold`](Self::slow_threshold)s are added; its process sampler only when
    /// `profiling` has none. Read the figures from
    /// [`TracingGuard::profiling`](crate::TracingGuard::profiling): the profiling set-up runs
    /// is made from this one's settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use service_tracing::{Profiling, ServiceTracing};
    /// let options = ServiceTracing::builder("svc").profiler(
    ///     Profiling::new()
    ///         .with_max_operations(20)
    ///         .with_slow_log_interval(Duration::from_secs(300)),
    /// );
    /// ```
    pub fn profiler(mut self, profiling: Profiling) -> Self {
        self.profiling = true;
        self.profiler = Some(profiling);
        self
    }

    /// A slow threshold for one operation: `{METHOD} {route}` (`GET /orders/{id}`), a client
    /// target (`GET payments.internal`) or a span name. A slower operation gets a
    /// `performance.slow` span event and a rate-limited warning. See
    /// [`crate::profiling`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .slow_threshold("GET /orders/{id}", Duration::from_millis(200));
    /// ```
    pub fn slow_threshold(mut self, operation: impl Into<String>, threshold: Duration) -> Self {
        self.slow_thresholds.push((operation.into(), threshold));
        self
    }

    /// Whether to sample the process itself (default yes, with profiling): CPU, memory, open
    /// file descriptors, threads and the tokio runtime set-up runs in. Read the figures with
    /// [`Profiling::resources`](crate::Profiling::resources); see
    /// [`ProcessSampler`](crate::process::ProcessSampler).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").process_sampling(false);
    /// ```
    pub fn process_sampling(mut self, enabled: bool) -> Self {
        self.process.enabled = enabled;
        self
    }

    /// The time between two samples of the process (default 10 s, at least 100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .process_sample_interval(Duration::from_secs(30));
    /// ```
    pub fn process_sample_interval(mut self, interval: Duration) -> Self {
        self.process.interval = interval;
        self
    }

    /// The former name of [`process_sampling`](Self::process_sampling) ("resource" is the
    /// OpenTelemetry resource's word).
    #[deprecated(note = "renamed `process_sampling`")]
    #[doc(hidden)]
    pub fn resource_sampling(self, enabled: bool) -> Self {
        self.process_sampling(enabled)
    }

    /// The former name of [`process_sample_interval`](Self::process_sample_interval).
    #[deprecated(note = "renamed `process_sample_interval`")]
    #[doc(hidden)]
    pub fn resource_interval(self, interval: Duration) -> Self {
        self.process_sample_interval(interval)
    }

    /// Where metrics go (`OTEL_METRICS_EXPORTER`; default OTLP when traces go over OTLP or an
    /// endpoint is configured, else nowhere). See [`crate::metrics`].
    ///
    /// ```
    /// use service_tracing::{metrics::MetricsExporter, ServiceTracing};
    /// let options = ServiceTracing::builder("svc").metrics_exporter(MetricsExporter::Otlp);
    /// ```
    pub fn metrics_exporter(mut self, exporter: MetricsExporter) -> Self {
        self.metrics.exporter = Some(exporter);
        self
    }

    /// How often metrics are pushed over OTLP (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .metric_export_interval(std::time::Duration::from_secs(10));
    /// ```
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.metrics.interval = Some(interval);
        self
    }

    /// Serves the metrics in the Prometheus text format at `path` (such as `/metrics`) on the
    /// router [`init`](Self::init) returns, outside the tracing layer (scrapes are neither
    /// traced nor measured). Turns metrics on even when they are not pushed. The path must
    /// start with `/` and not be a route of the application.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").prometheus_route("/metrics");
    /// ```
    pub fn prometheus_route(mut self, path: impl Into<String>) -> Self {
        self.metrics.prometheus_route = Some(path.into());
        self
    }

    /// Whether to install the global `tracing` subscriber (default yes). Say no when the
    /// application installs its own, and add [`TracingGuard::bridge_layer`](crate::TracingGuard::bridge_layer) to it.
    pub fn install_subscriber(mut self, install: bool) -> Self {
        self.install_subscriber = install;
        self
    }

    /// Which log lines are printed, in `RUST_LOG` syntax (default: `RUST_LOG`, else `info`).
    /// Traces do not depend on it.
    pub fn log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = Some(filter.into());
        self
    }

    /// Reads `OTEL_*` settings through this function instead of the process environment (for
    /// tests, or settings kept elsewhere).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()));
    /// ```
    pub fn env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env.set_lookup(Arc::new(lookup));
        self
    }

    /// The longest [`TracingGuard::shutdown`](crate::TracingGuard::shutdown) (and
    /// [`shutdown_async`](crate::TracingGuard::shutdown_async), and dropping the guard) may
    /// take, default 5 s: past it, shutdown returns an error and spans still waiting are lost,
    /// so a collector that does not answer never holds a stopping container up.
    ///
    /// It is not read from `OTEL_BSP_EXPORT_TIMEOUT`, which the specification gives to each
    /// export, not to shutdown (the specification leaves shutdown's bound to the SDK).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = service_tracing::ServiceTracing::builder("checkout")
    ///     .shutdown_timeout(Duration::from_secs(2)); // within a 10 s grace period, say
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

/// What the server layer is told, kept so extra in-process services get the same.
#[derive(Clone, Default)]
pub(super) struct LayerOptions {
    pub(super) untraced: Vec<String>,
    pub(super) trust: TrustIncoming,
    pub(super) traceresponse: bool,
    pub(super) correlation_charset: CorrelationIdCharset,
    /// `None`: the layer's defaults.
    pub(super) correlation_headers: Option<Vec<String>>,
    /// `None`: the layer's default; `Some(None)`: no echo.
    pub(super) correlation_response_header: Option<Option<String>>,
    pub(super) request_headers: Vec<String>,
    pub(super) response_headers: Vec<String>,
    pub(super) span_hooks: Vec<std::sync::Arc<dyn SpanHook>>,
}

impl std::fmt::Debug for LayerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerOptions")
            .field("untraced", &self.untraced)
            .field("trust", &self.trust)
            .field("traceresponse", &self.traceresponse)
            .field("correlation_charset", &self.correlation_charset)
            .field("correlation_headers", &self.correlation_headers)
            .field(
                "correlation_response_header",
                &self.correlation_response_header,
            )
            .field("request_headers", &self.request_headers)
            .field("response_headers", &self.response_headers)
            .field("span_hooks", &self.span_hooks.len())
            .finish()
    }
}
