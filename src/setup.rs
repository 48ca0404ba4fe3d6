//! [`setup_service_tracing`], the [`ServiceTracing`] builder and the [`TracingGuard`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, KeyValue};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;
use service_tracing_middleware::{CorrelationIdCharset, SpanHook, TracingLayer, TrustIncoming};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::env::{self, EnvConfig};
use crate::config::{
    BatchConfig, Compression, Propagation, Protocol, Resolved, Sampler, TracesExporter,
    DEFAULT_PROPAGATORS,
};
use crate::error::{SetupError, SetupErrorKind};
use crate::errors::{AlertOptions, AlertRule, ErrorTracking};
use crate::export::batch::ExportWorker;
use crate::export::console::ConsoleExporter;
use crate::export::otlp_fast::tls::ExtraRoots;
use crate::export::{otlp, ExportStats};
use crate::logging::{bridge_filter, TraceIdFormat};
use crate::metrics::{Metrics, MetricsExporter, MetricsSettings, MAX_ATTRIBUTE_SETS};
use crate::profiling::Profiling;
use crate::redact::{Redactor, Regex};

/// Sets up tracing for the service `name` with everything read from the standard `OTEL_*`
/// environment variables, and wraps `app` with [`TracingLayer`].
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
/// ```no_run
/// use axum::{routing::get, Router};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let app = Router::new().route("/", get(|| async { "hello" }));
///     let (app, guard) = service_tracing::setup_service_tracing(app, "hello-service")?;
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     axum::serve(listener, app).await?;
///     guard.shutdown()?;
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

/// Reads one setting by name.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Options for [`setup_service_tracing`], each overriding the environment.
///
/// ```no_run
/// use service_tracing::{Protocol, Sampler, ServiceTracing};
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let app: axum::Router = axum::Router::<()>::new();
/// let (app, guard) = ServiceTracing::builder("checkout")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .environment("production")
///     .otlp_endpoint("http://collector:4317")
///     .otlp_protocol(Protocol::Grpc)
///     .sampler(Sampler::ParentBasedTraceIdRatio(0.1))
///     .untraced_route("/health")
///     .init(app)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "call .init(app) to set tracing up"]
pub struct ServiceTracing {
    name: String,
    version: Option<String>,
    environment: Option<String>,
    resource_attributes: Vec<(String, String)>,
    exporter: Option<TracesExporter>,
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    compression: Option<Compression>,
    certificate: Option<PathBuf>,
    sampler: Option<Sampler>,
    batch: Option<BatchConfig>,
    propagators: Option<Vec<String>>,
    layer: LayerOptions,
    install_subscriber: bool,
    log_filter: Option<String>,
    env: Option<EnvLookup>,
    error_tracking: bool,
    error_classifier: Option<Arc<crate::errors::Classifier>>,
    error_backtraces: bool,
    alerts: AlertOptions,
    redactor: Redactor,
    #[cfg(feature = "redis")]
    error_redis_url: Option<String>,
    profiling: bool,
    slow_thresholds: Vec<(String, Duration)>,
    metrics: MetricsOptions,
    resources: ResourceOptions,
}

/// The resource sampler's builder options.
#[derive(Clone, Debug)]
struct ResourceOptions {
    enabled: bool,
    interval: Duration,
}

/// The metrics builder options.
#[derive(Clone, Debug, Default)]
struct MetricsOptions {
    exporter: Option<MetricsExporter>,
    interval: Option<Duration>,
    prometheus_route: Option<String>,
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
    pub fn builder(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: None,
            environment: None,
            resource_attributes: Vec::new(),
            exporter: None,
            endpoint: None,
            protocol: None,
            headers: Vec::new(),
            timeout: None,
            compression: None,
            certificate: None,
            sampler: None,
            batch: None,
            propagators: None,
            layer: LayerOptions::default(),
            install_subscriber: true,
            log_filter: None,
            env: None,
            error_tracking: true,
            error_classifier: None,
            error_backtraces: false,
            alerts: AlertOptions::default(),
            redactor: Redactor::new(),
            #[cfg(feature = "redis")]
            error_redis_url: None,
            profiling: true,
            slow_thresholds: Vec::new(),
            metrics: MetricsOptions::default(),
            resources: ResourceOptions {
                enabled: true,
                interval: crate::profiling::DEFAULT_RESOURCE_INTERVAL,
            },
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

    /// OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub fn otlp_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
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

    /// The sampler (`OTEL_TRACES_SAMPLER`).
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
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

    /// Whether to group the errors found on ended spans (default yes); read them with
    /// [`TracingGuard::errors`]. See [`crate::errors`].
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").error_tracking(false);
    /// ```
    pub fn error_tracking(mut self, enabled: bool) -> Self {
        self.error_tracking = enabled;
        self
    }

    /// Classifies errors with `classify` instead of the default rules: it returns
    /// `Some((severity, category))` to decide, or `None` to fall back to the defaults (see
    /// [`ErrorTracking::with_classifier`], which this sets on the tracker set-up creates).
    /// Severities and categories stated where an error is recorded
    /// ([`record_error_as`](crate::errors::record_error_as)) still win.
    ///
    /// ```
    /// use service_tracing::errors::{Category, ErrorOrigin, Severity};
    /// let options = service_tracing::ServiceTracing::builder("svc").error_classifier(|event| {
    ///     (event.origin() == ErrorOrigin::Client && event.operation().contains("payments"))
    ///         .then_some((Severity::Critical, Category::Dependency))
    /// });
    /// ```
    pub fn error_classifier(
        mut self,
        classify: impl Fn(
                &crate::errors::ErrorEvent,
            ) -> Option<(crate::errors::Severity, crate::errors::Category)>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.error_classifier = Some(Arc::new(classify));
        self
    }

    /// Whether `record_error` adds a backtrace to the `exception` event (default no, even with
    /// `RUST_BACKTRACE=1`: symbolising it on the request's thread costs about 100 ms for the
    /// first error of a process and about 0.15 ms for each later one). See
    /// [`set_backtrace_capture`](crate::errors::set_backtrace_capture); the setting is
    /// process-wide.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").error_backtraces(true);
    /// ```
    pub fn error_backtraces(mut self, enabled: bool) -> Self {
        self.error_backtraces = enabled;
        self
    }

    /// Adds an alert rule to error tracking (see [`crate::errors::AlertRule`]).
    ///
    /// ```
    /// use service_tracing::errors::{AlertRule, Window};
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_rule(AlertRule::count(10, Window::OneMinute))
    ///     .alert_rule(AlertRule::new_group());
    /// ```
    pub fn alert_rule(mut self, rule: AlertRule) -> Self {
        self.alerts.rules.push(rule);
        self
    }

    /// Posts alerts to this `http://` URL as JSON, with the defaults of
    /// [`Webhook`](crate::errors::Webhook) (for other settings, build the
    /// [`ErrorTracking`] yourself). A bad URL fails [`init`](Self::init), naming
    /// `alert_webhook`.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_webhook("http://alerts.internal:8080/hooks/errors");
    /// ```
    pub fn alert_webhook(mut self, url: impl Into<String>) -> Self {
        self.alerts.webhook = Some(url.into());
        self
    }

    /// Calls `callback` with every alert, on the alerting thread (panics caught).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_callback(|alert| eprintln!("{}: {}", alert.rule(), alert.group().message()));
    /// ```
    pub fn alert_callback(
        mut self,
        callback: impl Fn(&crate::errors::Alert) + Send + Sync + 'static,
    ) -> Self {
        self.alerts.callbacks.push(Arc::new(callback));
        self
    }

    /// The redaction policy applied wherever data leaves the process: to every exported span
    /// (attributes, events, links, name, status; console output included), to error groups
    /// and so to webhook bodies and log records (default: [`Redactor::new`]). See
    /// [`crate::redact`]. [`redact_key`](Self::redact_key) and
    /// [`redact_pattern`](Self::redact_pattern) add to the policy set here, so call this first.
    ///
    /// ```
    /// use service_tracing::redact::Redactor;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .redactor(Redactor::new().with_rule(|t| Some(t.replace("acme", "[org]"))));
    /// ```
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Denies one more attribute-key term (any case, at word boundaries): values under such
    /// keys, and in `key=value` pairs of free text, are replaced. The defaults
    /// ([`DEFAULT_DENIED_KEYS`](crate::redact::DEFAULT_DENIED_KEYS)) stay.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").redact_key("ssn");
    /// ```
    pub fn redact_key(mut self, term: impl Into<String>) -> Self {
        self.redactor = self.redactor.with_denied_key(term);
        self
    }

    /// Replaces every match of `pattern` in exported free text with `[REDACTED]`, after the
    /// default patterns. Runs on every string, so keep such patterns few.
    ///
    /// ```
    /// use service_tracing::redact::Regex;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .redact_pattern(Regex::new(r"\bEMP-[0-9]{6}\b").expect("valid"));
    /// ```
    pub fn redact_pattern(mut self, pattern: Regex) -> Self {
        self.redactor = self.redactor.with_pattern(pattern);
        self
    }

    /// Records these request headers on server spans as `http.request.header.<name>` (string
    /// arrays, lowercase names, as the HTTP semantic conventions say). Off by default.
    /// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`-style
    /// headers and names the redaction policy denies are never captured, even if listed.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .capture_request_headers(["x-tenant", "accept-language"]);
    /// ```
    pub fn capture_request_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.layer
            .request_headers
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Records these response headers on server spans as `http.response.header.<name>`, as
    /// [`capture_request_headers`](Self::capture_request_headers) does for requests.
    ///
    /// ```
    /// let options =
    ///     service_tracing::ServiceTracing::builder("svc").capture_response_headers(["x-cache"]);
    /// ```
    pub fn capture_response_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.layer
            .response_headers
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Shares error groups, counts and rates between the service's replicas through the Redis
    /// at `url` (feature `redis`), under the prefix `service-tracing:{service}:errors`; see
    /// [`crate::errors::RedisSharing`]. Default: the `SERVICE_TRACING_ERRORS_REDIS_URL`
    /// environment variable, else no sharing. An invalid URL fails [`init`](Self::init) with
    /// an error naming the setting; an unreachable Redis does not (the tracking starts
    /// degraded, see [`TracingGuard::error_storage_health`]).
    ///
    /// ```no_run
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .error_redis_url("redis://127.0.0.1:6379");
    /// ```
    #[cfg(feature = "redis")]
    pub fn error_redis_url(mut self, url: impl Into<String>) -> Self {
        self.error_redis_url = Some(url.into());
        self
    }

    /// Error tracking shared through Redis when a URL is set (builder, else environment).
    #[cfg(feature = "redis")]
    fn share_errors(
        &self,
        errors: Option<ErrorTracking>,
        service: &str,
    ) -> Result<Option<ErrorTracking>, SetupError> {
        const ENV: &str = "SERVICE_TRACING_ERRORS_REDIS_URL";
        let Some(errors) = errors else {
            return Ok(None);
        };
        let from_env = || match &self.env {
            Some(lookup) => lookup(ENV),
            None => std::env::var(ENV).ok(),
        };
        let (setting, url) = match (&self.error_redis_url, from_env()) {
            (Some(url), _) => ("error_redis_url", url.clone()),
            (None, Some(url)) if !url.trim().is_empty() => (ENV, url),
            _ => return Ok(Some(errors)),
        };
        let sharing = crate::errors::RedisSharing::parse(setting, url.trim())?
            .prefix(format!("service-tracing:{service}:errors"));
        Ok(Some(errors.with_sharing(sharing)))
    }

    /// Whether to profile operations (default yes): latency percentiles per operation, slow
    /// operations and bottlenecks; read them with [`TracingGuard::profiling`]. See
    /// [`crate::profiling`].
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").profiling(false);
    /// ```
    pub fn profiling(mut self, enabled: bool) -> Self {
        self.profiling = enabled;
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

    /// Whether to sample the process's resources (default yes, with profiling): CPU, memory,
    /// open file descriptors, threads and the tokio runtime set-up runs in. Read them with
    /// [`Profiling::resources`]; see [`ResourceSampler`](crate::profiling::ResourceSampler).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").resource_sampling(false);
    /// ```
    pub fn resource_sampling(mut self, enabled: bool) -> Self {
        self.resources.enabled = enabled;
        self
    }

    /// The time between two resource samples (default 10 s, at least 100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options =
    ///     service_tracing::ServiceTracing::builder("svc").resource_interval(Duration::from_secs(30));
    /// ```
    pub fn resource_interval(mut self, interval: Duration) -> Self {
        self.resources.interval = interval;
        self
    }

    /// Adds and starts the resource sampler, when on. Called inside the application's
    /// runtime, the sampler reads that runtime's figures.
    fn with_resource_sampler(&self, profiling: Profiling) -> Profiling {
        if !self.resources.enabled {
            return profiling;
        }
        let sampler =
            crate::profiling::ResourceSampler::new().with_interval(self.resources.interval);
        sampler.start();
        profiling.with_resources(sampler)
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
    /// application installs its own, and add [`TracingGuard::tracing_layer`] to it.
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
        self.env = Some(Arc::new(lookup));
        self
    }

    fn read_env(&self) -> Result<EnvConfig, SetupError> {
        match &self.env {
            Some(lookup) => env::read(&|name| lookup(name)),
            None => env::read(&|name| std::env::var(name).ok()),
        }
    }

    fn resolve(&self) -> Result<(Resolved, Propagation), SetupError> {
        let env = self.read_env()?;
        if let Some(endpoint) = &self.endpoint {
            env::validate_endpoint("otlp_endpoint", endpoint)?;
        }
        let protocol = self
            .protocol
            .or(env.protocol)
            .unwrap_or(Protocol::HttpProtobuf);
        let base = self.endpoint.clone().or(
            if self.endpoint.is_none() && env.traces_endpoint.is_some() {
                None
            } else {
                env.endpoint.clone()
            },
        );
        let configured =
            self.endpoint.is_some() || env.traces_endpoint.is_some() || env.endpoint.is_some();
        let endpoint = match (&base, &env.traces_endpoint) {
            (Some(base), _) => signal_endpoint(base, protocol),
            (None, Some(traces)) => traces.clone(),
            (None, None) => match protocol {
                Protocol::Grpc => "http://localhost:4317".to_owned(),
                Protocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
            },
        };
        let exporter = self.exporter.or(env.exporter).unwrap_or(if configured {
            TracesExporter::Otlp
        } else {
            TracesExporter::Console
        });
        let mut resource_attributes = env.resource_attributes.clone();
        resource_attributes.extend(self.resource_attributes.iter().cloned());
        let mut headers = env.headers.clone();
        headers.extend(self.headers.iter().cloned());
        let batch = self.batch.unwrap_or(env.batch);
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(SetupError::invalid(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &batch.max_export_batch_size.to_string(),
                &format!("at most OTEL_BSP_MAX_QUEUE_SIZE ({})", batch.max_queue_size),
            ));
        }
        // Defaults < OTEL_PROPAGATORS < the builder.
        let names = match &self.propagators {
            Some(names) => env::propagator_names("propagators", &names.join(","), names)?,
            None => env
                .propagators
                .clone()
                .unwrap_or_else(|| DEFAULT_PROPAGATORS.map(str::to_owned).to_vec()),
        };
        let propagator = service_tracing_middleware::propagation::propagator_from_names(&names)
            .map_err(|e| {
                SetupError::invalid("propagators", &names.join(","), env::PROPAGATORS_ACCEPTED)
                    .with_source(e)
            })?;
        let propagation = Propagation { names, propagator };
        let resolved = Resolved {
            service_name: env
                .service_name
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            service_version: self.version.clone(),
            environment: self.environment.clone(),
            resource_attributes,
            exporter,
            protocol,
            endpoint,
            headers,
            timeout: self
                .timeout
                .or(env.timeout)
                .unwrap_or(Duration::from_secs(10)),
            compression: self.compression.or(env.compression).unwrap_or_default(),
            // The environment < the builder, as for the other settings.
            extra_roots: match (&self.certificate, &env.certificate) {
                (Some(path), _) => ExtraRoots::load("otlp_certificate", path)?,
                (None, Some((name, path))) => ExtraRoots::load(name, Path::new(path))?,
                (None, None) => ExtraRoots::default(),
            },
            sampler: self
                .sampler
                .or(env.sampler)
                .unwrap_or(Sampler::ParentBasedAlwaysOn),
            batch,
            disabled: env.disabled,
        };
        Ok((resolved, propagation))
    }

    /// The metrics settings, or `None` when metrics are off.
    fn resolve_metrics(&self, config: &Resolved) -> Result<Option<MetricsSettings>, SetupError> {
        let menv = match &self.env {
            Some(lookup) => crate::metrics::read_env(&|name| lookup(name)),
            None => crate::metrics::read_env(&|name| std::env::var(name).ok()),
        }?;
        let env = self.read_env()?;
        if let Some(path) = &self.metrics.prometheus_route {
            if !path.starts_with('/') {
                return Err(SetupError::invalid(
                    "prometheus_route",
                    path,
                    "a path starting with /",
                ));
            }
        }
        let configured = self.endpoint.is_some()
            || env.endpoint.is_some()
            || menv.endpoint.is_some()
            || config.exporter == TracesExporter::Otlp;
        let exporter = self
            .metrics
            .exporter
            .or(menv.exporter)
            .unwrap_or(if configured {
                MetricsExporter::Otlp
            } else {
                MetricsExporter::None
            });
        let wanted = exporter != MetricsExporter::None || self.metrics.prometheus_route.is_some();
        if config.disabled || !wanted {
            return Ok(None);
        }
        let push = (exporter == MetricsExporter::Otlp).then(|| {
            let mut push = config.clone();
            push.endpoint = crate::metrics::endpoint(
                self.endpoint.as_deref(),
                menv.endpoint.as_deref(),
                env.endpoint.as_deref(),
                config.protocol,
            );
            push.timeout = menv.timeout.unwrap_or(config.timeout);
            push
        });
        Ok(Some(MetricsSettings {
            push,
            interval: self
                .metrics
                .interval
                .or(menv.interval)
                .unwrap_or(crate::metrics::DEFAULT_INTERVAL),
            cardinality_limit: MAX_ATTRIBUTE_SETS,
        }))
    }

    /// Sets everything up and wraps `app`. See [`setup_service_tracing`].
    pub fn init<S>(self, app: Router<S>) -> Result<(Router<S>, TracingGuard), SetupError>
    where
        S: Clone + Send + Sync + 'static,
    {
        let route = self.metrics.prometheus_route.clone();
        let (layer, guard) = self.init_layer()?;
        let app = app.layer(layer);
        match (route, guard.metrics()) {
            (Some(path), Some(metrics)) => {
                // axum panics on a path it already routes; say so as a set-up error instead.
                let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::metrics::with_prometheus_route(app, &path, metrics)
                }));
                let app = routed.map_err(|_| {
                    SetupError::invalid(
                        "prometheus_route",
                        &path,
                        "a path the application does not route",
                    )
                })?;
                Ok((app, guard))
            }
            _ => Ok((app, guard)),
        }
    }

    /// Sets everything up and returns the layer, for any Tower service (not only axum).
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
        if self.install_subscriber && tracing::dispatcher::has_been_set() {
            return Err(already_set());
        }
        // One tracker shared by every service's provider.
        let errors = (self.error_tracking && !config.disabled).then(|| {
            crate::errors::set_backtrace_capture(self.error_backtraces);
            match &self.error_classifier {
                Some(classify) => ErrorTracking::new().with_shared_classifier(classify.clone()),
                None => ErrorTracking::new(),
            }
        });
        // Alerts, redaction, and new groups and alerts as OTLP log records.
        let errors = match errors {
            Some(errors) => {
                let lookup = |name: &str| match &self.env {
                    Some(lookup) => lookup(name),
                    None => std::env::var(name).ok(),
                };
                let logs = crate::errors::logs::LogExport::from_config(
                    &config,
                    resource(&config, &config.service_name),
                    &lookup,
                );
                // Error groups (and so webhook bodies and log records) use the same policy.
                let mut alerts = self.alerts.clone();
                alerts.redactor = Some(self.redactor.clone());
                Some(alerts.apply(errors, logs)?)
            }
            None => None,
        };
        #[cfg(feature = "redis")]
        let errors = self.share_errors(errors, &config.service_name)?;
        let profiling = (self.profiling && !config.disabled).then(|| {
            self.slow_thresholds
                .iter()
                .fold(Profiling::new(), |p, (op, t)| {
                    p.with_slow_threshold(op.clone(), *t)
                })
        });
        let profiling = profiling.map(|p| self.with_resource_sampler(p));
        let pipeline = Pipeline::start(
            &config,
            &config.service_name,
            errors.as_ref(),
            profiling.as_ref(),
            &self.redactor,
        )?;
        let metrics_settings = self.resolve_metrics(&config)?;
        let workers = crate::metrics::Workers::default();
        if let Some(worker) = &pipeline.worker {
            workers.add(worker);
        }
        let metrics = match &metrics_settings {
            Some(settings) => {
                let metrics =
                    Metrics::start(settings, resource(&config, &config.service_name), &workers)?;
                // `traced_client` and `TracingMiddleware` record through the global provider.
                global::set_meter_provider(metrics.meter_provider().clone());
                if let Some(sampler) = profiling.as_ref().and_then(Profiling::resources) {
                    metrics.observe_resources(&sampler);
                }
                Some(metrics)
            }
            None => None,
        };
        // The layer and `traced_client` share this choice (see `layer_for`).
        global::set_text_map_propagator(propagation.propagator.clone());
        if let Some(provider) = &pipeline.provider {
            global::set_tracer_provider(provider.clone());
        }
        if self.install_subscriber {
            install_subscriber(
                pipeline.provider.as_ref(),
                self.log_filter.as_deref(),
                &self.redactor,
            )?;
        }
        let layer = layer_for(
            &config,
            &propagation,
            pipeline.provider.as_ref(),
            &self.layer,
            &self.redactor,
            errors.as_ref(),
            profiling.as_ref(),
            metrics.as_ref(),
        );
        let guard = TracingGuard {
            inner: Mutex::new(Some(GuardInner {
                main: pipeline,
                extra: Vec::new(),
                config,
                propagation,
                layer: self.layer,
                redactor: self.redactor,
                errors,
                profiling,
                metrics,
                workers,
            })),
        };
        Ok((layer, guard))
    }
}

fn already_set() -> SetupError {
    SetupError::new(
        SetupErrorKind::SubscriberAlreadySet,
        "a global `tracing` subscriber is already installed, so service-tracing cannot install \
         its own. Either set tracing up first with \
         `ServiceTracing::builder(name).install_subscriber(false).init(app)` and add \
         `guard.tracing_layer()` to your subscriber (e.g. `registry().with(your_fmt_layer)\
         .with(guard.tracing_layer())`), or remove your subscriber and let service-tracing \
         install one",
    )
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` semantics: for HTTP the signal path is appended.
fn signal_endpoint(base: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

/// What the server layer is told, kept so extra in-process services get the same.
#[derive(Clone, Default)]
struct LayerOptions {
    untraced: Vec<String>,
    trust: TrustIncoming,
    traceresponse: bool,
    correlation_charset: CorrelationIdCharset,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    span_hooks: Vec<std::sync::Arc<dyn SpanHook>>,
}

impl std::fmt::Debug for LayerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerOptions")
            .field("untraced", &self.untraced)
            .field("trust", &self.trust)
            .field("traceresponse", &self.traceresponse)
            .field("correlation_charset", &self.correlation_charset)
            .field("request_headers", &self.request_headers)
            .field("response_headers", &self.response_headers)
            .field("span_hooks", &self.span_hooks.len())
            .finish()
    }
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
fn layer_for(
    config: &Resolved,
    propagation: &Propagation,
    provider: Option<&SdkTracerProvider>,
    options: &LayerOptions,
    redactor: &Redactor,
    errors: Option<&ErrorTracking>,
    profiling: Option<&Profiling>,
    metrics: Option<&Metrics>,
) -> TracingLayer {
    let mut layer = match provider {
        // The layer is told how the installed sampler decides, so unsampled requests skip
        // the tracer's work (none of set-up's span processors reads attributes at start).
        Some(p) => TracingLayer::new()
            .with_tracer_provider(p)
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
    // Per-route error rates count every request, whatever the sampler.
    if let Some(errors) = errors {
        layer = layer.with_observer(errors.rates_observer());
    }
    // So do the per-route latency figures.
    if let Some(profiling) = profiling {
        layer = layer.with_observer(profiling.observer());
    }
    // HTTP metrics count every request too.
    if let Some(metrics) = metrics {
        layer = layer.with_observer(metrics.http_server());
    }
    let _ = config;
    layer
}

fn install_subscriber(
    provider: Option<&SdkTracerProvider>,
    filter: Option<&str>,
    redactor: &Redactor,
) -> Result<(), SetupError> {
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).map_err(|e| {
            SetupError::invalid("log_filter", f, "a RUST_LOG-style filter").with_source(e)
        })?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).map_err(|e| {
                SetupError::invalid("RUST_LOG", &v, "a RUST_LOG-style filter").with_source(e)
            })?,
            _ => EnvFilter::new("info"),
        },
    };
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(TraceIdFormat::new().with_redactor(redactor.clone()))
        .with_filter(filter);
    let bridge = provider.map(|p| bridge_layer(p.tracer("service-tracing")));
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(bridge)
        .try_init()
        .map_err(|_| already_set())
}

/// The bridge layer's type, named so it can be handed out.
///
/// The OpenTelemetry layer of `tracing-opentelemetry`, followed by
/// [`ErrorEventLayer`](crate::errors::ErrorEventLayer) so `ERROR` events reach error tracking.
pub type BridgeLayer<S> = tracing_subscriber::filter::Filtered<
    tracing_subscriber::layer::Layered<
        crate::errors::ErrorEventLayer,
        tracing_opentelemetry::OpenTelemetryLayer<S, Tracer>,
        S,
    >,
    tracing_subscriber::filter::Targets,
    S,
>;

fn bridge_layer<S>(tracer: Tracer) -> BridgeLayer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .and_then(crate::errors::ErrorEventLayer::new())
        .with_filter(bridge_filter())
}

/// One service's provider and what feeds its exporter.
struct Pipeline {
    provider: Option<SdkTracerProvider>,
    worker: Option<ExportWorker>,
}

impl Pipeline {
    fn start(
        config: &Resolved,
        service: &str,
        errors: Option<&ErrorTracking>,
        profiling: Option<&Profiling>,
        redactor: &Redactor,
    ) -> Result<Self, SetupError> {
        if config.disabled {
            return Ok(Self {
                provider: None,
                worker: None,
            });
        }
        let resource = resource(config, service);
        let worker = match config.exporter {
            TracesExporter::None => None,
            TracesExporter::Console => {
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
            TracesExporter::Otlp => {
                let otlp_config = config.clone();
                Some(ExportWorker::start_with_tally(
                    move |tally| otlp::build_preferred(&otlp_config, tally),
                    config.batch,
                    resource.clone(),
                    Some(redactor.clone()),
                )?)
            }
        };
        Ok(Self {
            provider: Some(provider(
                config,
                resource,
                worker.clone(),
                errors,
                profiling,
            )),
            worker,
        })
    }
}

fn provider(
    config: &Resolved,
    resource: Resource,
    worker: Option<ExportWorker>,
    errors: Option<&ErrorTracking>,
    profiling: Option<&Profiling>,
) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(config.sampler.to_sdk());
    // Profiling then error tracking go in front of the worker as one processor: with several,
    // the SDK would clone every ended span. Profiling comes right before the worker, so the
    // `performance.slow` events it adds are exported.
    match (worker, profiling) {
        (Some(worker), Some(profiling)) => {
            with_errors(builder, errors, profiling.in_front_of(worker))
        }
        (Some(worker), None) => with_errors(builder, errors, worker),
        (None, Some(profiling)) => with_errors(builder, errors, profiling.clone()),
        (None, None) => match errors {
            Some(errors) => builder.with_span_processor(errors.clone()),
            None => builder,
        },
    }
    .build()
}

fn with_errors<P: opentelemetry_sdk::trace::SpanProcessor + 'static>(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    errors: Option<&ErrorTracking>,
    next: P,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    match errors {
        Some(errors) => builder.with_span_processor(errors.in_front_of(next)),
        None => builder.with_span_processor(next),
    }
}

fn resource(config: &Resolved, service: &str) -> Resource {
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", service.to_owned()));
    if let Some(v) = &config.service_version {
        attributes.push(KeyValue::new("service.version", v.clone()));
    }
    if let Some(e) = &config.environment {
        attributes.push(KeyValue::new("deployment.environment.name", e.clone()));
    }
    if let Some(host) = host_name() {
        attributes.push(KeyValue::new("host.name", host));
    }
    attributes.push(KeyValue::new("host.arch", host_arch()));
    attributes.push(KeyValue::new("os.type", std::env::consts::OS));
    attributes.push(KeyValue::new("process.pid", i64::from(std::process::id())));
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        attributes.push(KeyValue::new("process.executable.name", exe));
    }
    attributes.push(KeyValue::new("process.runtime.name", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    attributes.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.version", "0.33.1"));
    attributes.push(KeyValue::new("telemetry.distro.name", "service-tracing"));
    attributes.push(KeyValue::new(
        "telemetry.distro.version",
        env!("CARGO_PKG_VERSION"),
    ));
    // Later values win: OTEL_RESOURCE_ATTRIBUTES < builder attributes < the service name.
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

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
    inner: Mutex<Option<GuardInner>>,
}

struct GuardInner {
    main: Pipeline,
    extra: Vec<Pipeline>,
    config: Resolved,
    propagation: Propagation,
    layer: LayerOptions,
    /// The redaction policy, for the pipelines of extra services.
    redactor: Redactor,
    errors: Option<ErrorTracking>,
    profiling: Option<Profiling>,
    metrics: Option<Metrics>,
    /// Every service's export worker, each once: `export_stats` and the health metrics read them.
    workers: crate::metrics::Workers,
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
                    Pipeline {
                        provider: Some(provider(
                            &inner.config,
                            resource,
                            Some(worker.clone()),
                            inner.errors.as_ref(),
                            inner.profiling.as_ref(),
                        )),
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
                pipeline.provider.as_ref(),
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
    /// ([`ServiceTracing::error_tracking`]), tracing is disabled, or after shutdown.
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

    /// The latency figures, slow operations and bottlenecks of every service set up through
    /// this guard; `None` when profiling is off ([`ServiceTracing::profiling`]), tracing is
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

    /// The `tracing` → OpenTelemetry bridge layer, for applications that install their own
    /// subscriber (see [`ServiceTracing::install_subscriber`]). `None` when tracing is disabled.
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
    ///     .install_subscriber(false)
    ///     .init(axum::Router::<()>::new())?;
    /// tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .with(guard.tracing_layer())
    ///     .init();
    /// # Ok(()) }
    /// ```
    pub fn tracing_layer<S>(&self) -> Option<BridgeLayer<S>>
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
}

/// How long flushing waits for alerts to be delivered (retries included).
const ALERT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(value: Option<&'static str>) -> ServiceTracing {
        ServiceTracing::builder("svc").env_lookup(move |name| {
            value
                .filter(|_| name == "OTEL_PROPAGATORS")
                .map(str::to_owned)
        })
    }

    #[test]
    fn propagators_layer_defaults_then_env_then_builder() {
        let (_, p) = with_env(None).resolve().expect("valid");
        assert!(p.is_default());
        assert_eq!(p.propagator.names(), ["tracecontext", "baggage"]);

        let (_, p) = with_env(Some("b3,tracecontext")).resolve().expect("valid");
        assert!(!p.is_default());
        assert_eq!(p.names, ["b3", "tracecontext"]);

        let (_, p) = with_env(Some("b3"))
            .propagators(["Jaeger", "baggage"])
            .resolve()
            .expect("valid");
        assert_eq!(p.propagator.names(), ["jaeger", "baggage"]);

        let err = with_env(None)
            .propagators(["xray"])
            .resolve()
            .expect_err("unsupported");
        assert!(err.to_string().contains("propagators"), "{err}");
        assert!(with_env(Some("none,b3")).resolve().is_err());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_bad_certificate_file_fails_setup_naming_the_variable() {
        let dir = std::env::temp_dir();
        let empty = dir.join(format!("st-no-cert-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let missing = dir.join(format!("st-missing-{}.pem", std::process::id()));
        for (variable, path) in [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &empty),
        ] {
            let path = path.display().to_string();
            let err = ServiceTracing::builder("svc")
                .env_lookup(move |name| (name == variable).then(|| path.clone()))
                .resolve()
                .expect_err("bad file");
            assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
            assert!(err.to_string().contains(variable), "{err}");
        }
        let err = with_env(None)
            .otlp_certificate(&empty)
            .resolve()
            .expect_err("bad file");
        assert!(err.to_string().contains("otlp_certificate"), "{err}");
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        std::fs::remove_file(&empty).expect("remove");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn the_certificate_builder_call_beats_the_variable() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let good = std::env::temp_dir().join(format!("st-ca-{}.pem", std::process::id()));
        std::fs::write(&good, cert.pem()).expect("write");
        let (config, _) = ServiceTracing::builder("svc")
            .env_lookup(|name| {
                (name == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| "/nonexistent.pem".to_owned())
            })
            .otlp_certificate(&good)
            .resolve()
            .expect("the builder's file is read, not the variable's");
        assert_eq!(config.extra_roots.len(), 1);
        std::fs::remove_file(&good).expect("remove");
    }

    #[test]
    fn a_bad_alert_webhook_fails_setup_naming_the_setting() {
        let err = with_env(None)
            .install_subscriber(false)
            .exporter(TracesExporter::None)
            .alert_webhook("https://hooks.example.com/x")
            .init_layer()
            .expect_err("https is not supported");
        assert!(err.to_string().contains("alert_webhook"), "{err}");
    }

    fn metrics_with(vars: &'static [(&'static str, &'static str)]) -> ServiceTracing {
        ServiceTracing::builder("svc").env_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn compression_defaults_to_none_and_the_builder_beats_the_variable() {
        let compression = |options: ServiceTracing| options.resolve().expect("valid").0.compression;
        assert_eq!(compression(metrics_with(&[])), Compression::None);
        let gzip_env = &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")];
        assert_eq!(compression(metrics_with(gzip_env)), Compression::Gzip);
        assert_eq!(
            compression(metrics_with(gzip_env).otlp_compression(Compression::None)),
            Compression::None
        );
    }

    fn resolved_metrics(options: &ServiceTracing) -> Result<Option<MetricsSettings>, SetupError> {
        let (config, _) = options.resolve()?;
        options.resolve_metrics(&config)
    }

    #[test]
    fn metrics_follow_otlp_unless_told_otherwise() {
        // Console traces and no route: no metrics at all.
        assert!(resolved_metrics(&metrics_with(&[]))
            .expect("valid")
            .is_none());
        // An endpoint: pushed to its /v1/metrics, every OTEL_METRIC_EXPORT_INTERVAL.
        let on = resolved_metrics(&metrics_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]))
        .expect("valid")
        .expect("on");
        assert_eq!(on.interval, Duration::from_secs(5));
        assert_eq!(
            on.push.expect("pushed").endpoint,
            "http://c:4318/v1/metrics"
        );
        // `none` stops the push; a Prometheus route keeps the metrics.
        let none: &'static [(&str, &str)] = &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ];
        assert!(resolved_metrics(&metrics_with(none))
            .expect("valid")
            .is_none());
        let pulled = resolved_metrics(&metrics_with(none).prometheus_route("/metrics"))
            .expect("valid")
            .expect("on");
        assert!(pulled.push.is_none());
        // The builder beats the environment.
        let builder = resolved_metrics(
            &metrics_with(none)
                .metrics_exporter(MetricsExporter::Otlp)
                .metric_export_interval(Duration::from_secs(1)),
        )
        .expect("valid")
        .expect("on");
        assert!(builder.push.is_some());
        assert_eq!(builder.interval, Duration::from_secs(1));
        // Bad values name the setting.
        let err = resolved_metrics(&metrics_with(&[("OTEL_METRICS_EXPORTER", "statsd")]))
            .expect_err("invalid");
        assert!(err.to_string().contains("OTEL_METRICS_EXPORTER"), "{err}");
        let err =
            resolved_metrics(&metrics_with(&[]).prometheus_route("metrics")).expect_err("invalid");
        assert!(err.to_string().contains("prometheus_route"), "{err}");
    }
}
