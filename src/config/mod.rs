//! Configuration: defaults, then the standard `OTEL_*` environment variables, then builder calls
//! in code, each layer overriding the one before. `env.rs` reads every variable (through
//! [`env::Source`]), `metrics.rs` the metrics ones; [`layered`] is the precedence itself.

pub(crate) mod env;
#[cfg(feature = "config-file")]
pub(crate) mod file;
pub(crate) mod metrics;

use std::time::Duration;

/// The precedence of every setting but the service name: the builder's value, else the
/// environment's, else the default.
///
/// Where an error must name what set a value, `T` carries that name beside it, such as
/// `("log_filter", filter)` or `("RUST_LOG", filter)`; a setting with no default (a certificate
/// file, a Redis URL) is an `Option` whose default is `None`.
pub(crate) fn layered<T>(builder: Option<T>, env: Option<T>, default: impl FnOnce() -> T) -> T {
    builder.or(env).unwrap_or_else(default)
}

/// A signal's OTLP endpoint (`signal` is `traces` or `metrics`): the builder's base endpoint,
/// else the signal's own variable as it is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`...), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, else the protocol's default. A base endpoint gets
/// `/v1/{signal}` for HTTP, as the specification says.
pub(crate) fn signal_endpoint(
    signal: &str,
    builder: Option<&str>,
    signal_env: Option<&str>,
    base_env: Option<&str>,
    protocol: Protocol,
) -> String {
    let with_path = |base: &str| match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/{signal}", base.trim_end_matches('/')),
    };
    match (builder, signal_env, base_env) {
        (Some(base), _, _) => with_path(base),
        (None, Some(signal), _) => signal.to_owned(),
        (None, None, Some(base)) => with_path(base),
        (None, None, None) => with_path(match protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        }),
    }
}

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

/// Compression of OTLP export requests (`OTEL_EXPORTER_OTLP_COMPRESSION`): `gzip` or `none`,
/// for both protocols (`content-encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC).
///
/// ```
/// use service_tracing::{Compression, ServiceTracing};
///
/// let options = ServiceTracing::builder("checkout")
///     .otlp_endpoint("https://otlp.example.com")
///     .otlp_compression(Compression::Gzip);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Requests are sent as encoded (`none`). The specification's default.
    #[default]
    None,
    /// gzip (`gzip`): about a fifth of the bytes, for about 1 µs more of the export thread's
    /// CPU per span (measured in BENCHMARKS.md); nothing on the request path.
    Gzip,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TracesSampler {
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

impl TracesSampler {
    /// What the server layer may assume of this sampler: none reads attributes, and the
    /// parent-based ones drop a span whose remote parent is not sampled.
    pub(crate) fn hint(self) -> service_tracing_middleware::SamplerHint {
        use service_tracing_middleware::SamplerHint;
        match self {
            TracesSampler::ParentBasedAlwaysOn
            | TracesSampler::ParentBasedAlwaysOff
            | TracesSampler::ParentBasedTraceIdRatio(_) => SamplerHint::ParentBased,
            TracesSampler::AlwaysOn | TracesSampler::AlwaysOff | TracesSampler::TraceIdRatio(_) => {
                SamplerHint::IgnoresAttributes
            }
        }
    }

    /// What this sampler does with a new trace, and whether it follows a parent's decision.
    pub(crate) fn root_action(self) -> (crate::sampling::SampleAction, bool) {
        use crate::sampling::SampleAction as A;
        match self {
            TracesSampler::AlwaysOn => (A::Always, false),
            TracesSampler::AlwaysOff => (A::Never, false),
            TracesSampler::TraceIdRatio(r) => (A::Ratio(r), false),
            TracesSampler::ParentBasedAlwaysOn => (A::Always, true),
            TracesSampler::ParentBasedAlwaysOff => (A::Never, true),
            TracesSampler::ParentBasedTraceIdRatio(r) => (A::Ratio(r), true),
        }
    }

    pub(crate) fn to_sdk(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler as S;
        match self {
            TracesSampler::AlwaysOn => S::AlwaysOn,
            TracesSampler::AlwaysOff => S::AlwaysOff,
            TracesSampler::TraceIdRatio(r) => S::TraceIdRatioBased(r),
            TracesSampler::ParentBasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
            TracesSampler::ParentBasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
            TracesSampler::ParentBasedTraceIdRatio(r) => {
                S::ParentBased(Box::new(S::TraceIdRatioBased(r)))
            }
        }
    }
}

/// The batch export queue (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
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
    /// The whole export of one batch, retries included (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub(crate) timeout: Duration,
    pub(crate) compression: Compression,
    /// TLS for `https` endpoints: CA certificates trusted beside the system's
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`) and the client certificate and key
    /// (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `..._CLIENT_KEY`).
    pub(crate) tls: crate::wire::tls::TlsConfig,
    pub(crate) sampler: TracesSampler,
    /// The route rules' sampler, when rules were given: it replaces `sampler`'s, deciding new
    /// traces as `sampler` would where the rules do not say.
    pub(crate) sampling: Option<crate::sampling::RouteSampler>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_beats_the_environment_which_beats_the_default() {
        assert_eq!(layered(Some(1), Some(2), || 3), 1);
        assert_eq!(layered(None, Some(2), || 3), 2);
        assert_eq!(layered(None, None, || 3), 3);
        // A setting without a default stays unset.
        assert_eq!(layered::<Option<u8>>(None, None, || None), None);
    }
}
