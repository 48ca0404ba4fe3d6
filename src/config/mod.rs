//! Configuration: defaults, then the standard `OTEL_*` environment variables, then builder calls
//! in code, each layer overriding the one before.

pub(crate) mod env;
pub(crate) mod metrics;

use std::time::Duration;

/// Where finished spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TracesExporter {
    /// OTLP to a collector (`OTEL_TRACES_EXPORTER=otlp`).
    Otlp,
    /// Each finished trace printed as a tree on standard output (`console`). The default when no
    /// endpoint is configured.
    Console,
    /// Nothing is exported (`none`); spans are still made, so context still propagates.
    None,
}

/// OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// `grpc`, default port 4317.
    Grpc,
    /// `http/protobuf`, default port 4318. The specification's default.
    HttpProtobuf,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this share of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on`, the default: follow the caller, else record.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentBasedTraceIdRatio(f64),
}

impl Sampler {
    /// What the server layer may assume of this sampler: none reads attributes, and the
    /// parent-based ones drop a span whose remote parent is not sampled.
    pub(crate) fn hint(self) -> service_tracing_middleware::SamplerHint {
        use service_tracing_middleware::SamplerHint;
        match self {
            Sampler::ParentBasedAlwaysOn
            | Sampler::ParentBasedAlwaysOff
            | Sampler::ParentBasedTraceIdRatio(_) => SamplerHint::ParentBased,
            Sampler::AlwaysOn | Sampler::AlwaysOff | Sampler::TraceIdRatio(_) => {
                SamplerHint::IgnoresAttributes
            }
        }
    }

    pub(crate) fn to_sdk(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler as S;
        match self {
            Sampler::AlwaysOn => S::AlwaysOn,
            Sampler::AlwaysOff => S::AlwaysOff,
            Sampler::TraceIdRatio(r) => S::TraceIdRatioBased(r),
            Sampler::ParentBasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
            Sampler::ParentBasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
            Sampler::ParentBasedTraceIdRatio(r) => {
                S::ParentBased(Box::new(S::TraceIdRatioBased(r)))
            }
        }
    }
}

/// The batch export queue (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Most spans waiting for export; beyond it spans are dropped and counted
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048).
    pub max_queue_size: usize,
    /// Longest wait before a partial batch is sent (`OTEL_BSP_SCHEDULE_DELAY`, default 5 s).
    pub scheduled_delay: Duration,
    /// Most spans per export call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512).
    pub max_export_batch_size: usize,
    /// Longest one export call may take (`OTEL_BSP_EXPORT_TIMEOUT`, default 30 s).
    pub export_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            scheduled_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

impl BatchConfig {
    /// The specification's defaults.
    ///
    /// ```
    /// let batch = service_tracing::BatchConfig::new().with_max_queue_size(8192);
    /// assert_eq!(batch.max_queue_size, 8192);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue cap.
    pub fn with_max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = n;
        self
    }

    /// Sets the longest wait before a partial batch is sent.
    pub fn with_scheduled_delay(mut self, delay: Duration) -> Self {
        self.scheduled_delay = delay;
        self
    }

    /// Sets the batch size.
    pub fn with_max_export_batch_size(mut self, n: usize) -> Self {
        self.max_export_batch_size = n;
        self
    }

    /// Sets the export timeout.
    pub fn with_export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }
}

/// Everything set-up decides, after layering.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) exporter: TracesExporter,
    pub(crate) protocol: Protocol,
    /// Full traces endpoint URL (with `/v1/traces` for HTTP).
    pub(crate) endpoint: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    /// CA certificates trusted beside the system's for `https` endpoints
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub(crate) extra_roots: crate::export::otlp_fast::tls::ExtraRoots,
    pub(crate) sampler: Sampler,
    pub(crate) batch: BatchConfig,
    pub(crate) disabled: bool,
}

/// The specification's default `OTEL_PROPAGATORS`.
pub(crate) const DEFAULT_PROPAGATORS: [&str; 2] = ["tracecontext", "baggage"];

/// The propagators chosen (`OTEL_PROPAGATORS` or the builder), after layering.
#[derive(Debug, Clone)]
pub(crate) struct Propagation {
    /// The names, normalised (default `tracecontext,baggage`).
    pub(crate) names: Vec<String>,
    /// The propagator they make, installed globally and given to the layer.
    pub(crate) propagator: service_tracing_middleware::propagation::FirstMatchPropagator,
}

impl Propagation {
    /// Whether the names are exactly the default, which the layer reads on its own W3C fast
    /// path.
    pub(crate) fn is_default(&self) -> bool {
        self.names == DEFAULT_PROPAGATORS
    }
}
