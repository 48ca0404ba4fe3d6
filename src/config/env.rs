//! The environment variables set-up honours, read through a [`Source`] so tests never touch the
//! process environment. Nothing else in the crate reads a variable.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::metrics::MetricsEnv;
use super::{BatchConfig, Compression, Protocol, TracesExporter, TracesSampler};
use crate::SetupError;

/// Reads one variable by name.
pub(crate) type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where set-up reads its variables: the process environment, or the function given to
/// `ServiceTracing::env_lookup`.
#[derive(Clone, Default)]
pub(crate) struct Source {
    lookup: Option<Lookup>,
    /// The configuration file's values, read when the variable is unset or blank.
    file: Option<Arc<[(&'static str, String)]>>,
}

impl Source {
    /// Variables read through `lookup` instead of the process environment.
    pub(crate) fn set_lookup(&mut self, lookup: Lookup) {
        self.lookup = Some(lookup);
    }

    /// Values read when a variable is unset or blank: the configuration file's.
    #[cfg_attr(not(feature = "config-file"), allow(dead_code))]
    pub(crate) fn set_file(&mut self, values: Vec<(&'static str, String)>) {
        self.file = Some(values.into());
    }

    /// A variable as it is set (as the file gives it when it is unset or blank); `None` when
    /// unset.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        let set = match &self.lookup {
            Some(lookup) => lookup(name),
            None => process_var(name),
        };
        set.filter(|v| !v.trim().is_empty())
            .or_else(|| self.file_var(name))
    }

    /// The configuration file's value for a variable.
    pub(crate) fn file_var(&self, name: &str) -> Option<String> {
        let file = self.file.as_deref()?;
        file.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// The trace settings (`OTEL_*`).
    pub(crate) fn traces(&self) -> Result<EnvConfig, SetupError> {
        read(&|name| self.var(name))
    }

    /// The metrics settings (`OTEL_METRICS_*`, `OTEL_METRIC_EXPORT_*`).
    pub(crate) fn metrics(&self) -> Result<MetricsEnv, SetupError> {
        super::metrics::read(&|name| self.var(name))
    }

    /// The settings of error groups' and alerts' log records.
    pub(crate) fn logs(&self) -> Result<LogsEnv, SetupError> {
        read_logs(&|name| self.var(name))
    }

    /// `SERVICE_TRACING_ERRORS_REDIS_URL`, trimmed; `None` when unset or blank.
    #[cfg(feature = "redis")]
    pub(crate) fn errors_redis_url(&self) -> Option<String> {
        non_empty(&|name| self.var(name), ERRORS_REDIS_URL)
    }

    /// `SERVICE_TRACING_REQUEST_CHAINS`: only `true` (any case) is true, as the
    /// specification reads booleans.
    #[cfg(feature = "redis")]
    pub(crate) fn request_chains(&self) -> bool {
        non_empty(&|name| self.var(name), REQUEST_CHAINS)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

/// The Redis that error groups are shared through, when the builder names none.
#[cfg(feature = "redis")]
pub(crate) const ERRORS_REDIS_URL: &str = "SERVICE_TRACING_ERRORS_REDIS_URL";

/// Request chains with the default settings, when the builder gives none.
#[cfg(feature = "redis")]
pub(crate) const REQUEST_CHAINS: &str = "SERVICE_TRACING_REQUEST_CHAINS";

/// A variable of the process environment, whatever the [`Source`]: for `RUST_LOG` and the
/// host name, which are not `OTEL_*` settings and have always been read there.
pub(crate) fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `RUST_LOG`, trimmed; `None` when unset or blank.
pub(crate) fn rust_log() -> Option<String> {
    non_empty(&process_var, "RUST_LOG")
}

/// What the environment says about the log records of new error groups and alerts.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LogsEnv {
    /// `OTEL_LOGS_EXPORTER` names something other than `otlp` (such as `none`): no records.
    pub(crate) off: bool,
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, a full URL.
    pub(crate) endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_LOGS_*`, else the shared `OTEL_EXPORTER_OTLP_*`.
    pub(crate) otlp: OtlpEnv,
}

/// Reads `OTEL_LOGS_EXPORTER`, `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` and the logs' OTLP variables.
/// Only `otlp` (or nothing) exports; `none` and exporters we do not have turn the records off.
pub(crate) fn read_logs(lookup: &dyn Fn(&str) -> Option<String>) -> Result<LogsEnv, SetupError> {
    const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
    let endpoint = non_empty(lookup, ENDPOINT);
    if let Some(v) = &endpoint {
        validate_endpoint(ENDPOINT, v)?;
    }
    Ok(LogsEnv {
        off: non_empty(lookup, "OTEL_LOGS_EXPORTER")
            .is_some_and(|v| !v.eq_ignore_ascii_case("otlp")),
        endpoint,
        otlp: read_otlp(lookup, Signal::Logs)?,
    })
}

/// A signal whose OTLP exporter settings have variables of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
    Logs,
}

/// The names of one family of OTLP exporter variables.
struct OtlpNames {
    protocol: &'static str,
    headers: &'static str,
    timeout: &'static str,
    compression: &'static str,
    certificate: &'static str,
    client_certificate: &'static str,
    client_key: &'static str,
    insecure: &'static str,
}

/// The variables every signal shares.
const SHARED: OtlpNames = OtlpNames {
    protocol: "OTEL_EXPORTER_OTLP_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    insecure: "OTEL_EXPORTER_OTLP_INSECURE",
};

impl Signal {
    /// The signal's own variables, as the specification names them ("OTLP Exporter
    /// Configuration").
    fn names(self) -> OtlpNames {
        match self {
            Signal::Traces => OtlpNames {
                protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                certificate: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                client_certificate: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                insecure: "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
            },
            Signal::Metrics => OtlpNames {
                protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                certificate: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                client_certificate: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
                insecure: "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
            },
            Signal::Logs => OtlpNames {
                protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                compression: "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
                certificate: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                client_certificate: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                insecure: "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
            },
        }
    }
}

/// One signal's OTLP exporter variables: its own where set, else the shared ones. Files come
/// with the name of the variable that gave them, for errors about the file.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct OtlpEnv {
    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub(crate) protocol: Option<Protocol>,
    /// The shared headers, then the signal's own (which win on a shared key).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) compression: Option<Compression>,
    /// A PEM file of extra CA certificates.
    pub(crate) certificate: Option<(&'static str, String)>,
    /// A PEM file of the client's certificate chain (mTLS).
    pub(crate) client_certificate: Option<(&'static str, String)>,
    /// A PEM file of the client's private key (mTLS).
    pub(crate) client_key: Option<(&'static str, String)>,
    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_INSECURE`, else `OTEL_EXPORTER_OTLP_INSECURE`: an endpoint
    /// given as a bare `host:port` (OTLP/gRPC only) is reached without TLS.
    pub(crate) insecure: bool,
}

/// Reads one signal's OTLP exporter variables.
pub(crate) fn read_otlp(
    lookup: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<OtlpEnv, SetupError> {
    let own = signal.names();
    let mut env = OtlpEnv {
        protocol: protocol(lookup, own.protocol)?,
        ..OtlpEnv::default()
    };
    for name in [SHARED.headers, own.headers] {
        if let Some(v) = non_empty(lookup, name) {
            // Signal-specific headers come last, so they win on a shared key.
            env.headers.extend(key_values(name, &v)?);
        }
    }
    env.timeout = match millis(lookup, own.timeout)? {
        Some(t) => Some(t),
        None => millis(lookup, SHARED.timeout)?,
    };
    if let Some((name, v)) = own_else_shared(lookup, own.compression, SHARED.compression) {
        env.compression = Some(match v.to_ascii_lowercase().as_str() {
            "gzip" => Compression::Gzip,
            "none" => Compression::None,
            _ => return Err(SetupError::invalid(name, &v, "\"gzip\" or \"none\"")),
        });
    }
    env.certificate = own_else_shared(lookup, own.certificate, SHARED.certificate);
    env.client_certificate =
        own_else_shared(lookup, own.client_certificate, SHARED.client_certificate);
    env.client_key = own_else_shared(lookup, own.client_key, SHARED.client_key);
    // Booleans: only "true" (any case) is true, as the specification reads them.
    env.insecure = own_else_shared(lookup, own.insecure, SHARED.insecure)
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
    Ok(env)
}

/// What the environment says; `None` where a variable is unset or empty.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct EnvConfig {
    pub(crate) service_name: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) exporter: Option<TracesExporter>,
    pub(crate) endpoint: Option<String>,
    pub(crate) traces_endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    /// `OTEL_EXPORTER_OTLP_TRACES_*`, else the shared `OTEL_EXPORTER_OTLP_*`: headers, timeout,
    /// compression, and the TLS files with the variable that named each.
    pub(crate) otlp: OtlpEnv,
    pub(crate) sampler: Option<TracesSampler>,
    pub(crate) batch: BatchConfig,
    pub(crate) disabled: bool,
    /// `OTEL_PROPAGATORS`, normalised (see [`propagator_names`]).
    pub(crate) propagators: Option<Vec<String>>,
}

/// What `OTEL_PROPAGATORS` (and the `propagators` builder call) accepts.
pub(crate) const PROPAGATORS_ACCEPTED: &str =
    "a comma-separated list of tracecontext, baggage, b3, b3multi, jaeger, none";

/// Trims, lowercases, drops empty and repeated names, and checks the result with
/// `propagator_from_names`; an error names `setting` and `shown`.
pub(crate) fn propagator_names<I, S>(
    setting: &str,
    shown: &str,
    names: I,
) -> Result<Vec<String>, SetupError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.as_ref().trim().to_ascii_lowercase();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    // Built only to check the names; the propagator itself is made where it is used.
    let _checked = service_tracing_middleware::propagation::propagator_from_names(&out)
        .map_err(|e| SetupError::invalid(setting, shown, PROPAGATORS_ACCEPTED).with_source(e))?;
    Ok(out)
}

pub(crate) fn non_empty(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub(crate) fn millis(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<Duration>, SetupError> {
    match non_empty(lookup, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| SetupError::invalid(name, &v, "a whole number of milliseconds")),
    }
}

fn count(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>, SetupError> {
    match non_empty(lookup, name) {
        None => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(SetupError::invalid(
                name,
                &v,
                "a whole number greater than 0",
            )),
        },
    }
}

/// Parses `key=value,key2=value2` with percent-encoded values (the W3C Baggage form the
/// specification uses for `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`).
pub(crate) fn key_values(name: &str, value: &str) -> Result<Vec<(String, String)>, SetupError> {
    let mut out = Vec::new();
    for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some((k, v)) = member.split_once('=') else {
            return Err(SetupError::invalid(
                name,
                value,
                "a list of key=value pairs separated by commas",
            ));
        };
        let key = k.trim();
        if key.is_empty() {
            return Err(SetupError::invalid(
                name,
                value,
                "non-empty keys in key=value pairs",
            ));
        }
        let decoded = percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| SetupError::invalid(name, value, "percent-encoded UTF-8 values"))?;
        out.push((key.to_owned(), decoded.into_owned()));
    }
    Ok(out)
}

fn ratio(lookup: &dyn Fn(&str) -> Option<String>) -> Result<f64, SetupError> {
    const NAME: &str = "OTEL_TRACES_SAMPLER_ARG";
    match non_empty(lookup, NAME) {
        None => Ok(1.0),
        Some(v) => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(SetupError::invalid(NAME, &v, "a number from 0 to 1")),
        },
    }
}

/// Reads every variable this library honours.
pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<EnvConfig, SetupError> {
    let mut env = EnvConfig {
        service_name: non_empty(lookup, "OTEL_SERVICE_NAME"),
        ..EnvConfig::default()
    };
    if let Some(v) = non_empty(lookup, "OTEL_RESOURCE_ATTRIBUTES") {
        env.resource_attributes = key_values("OTEL_RESOURCE_ATTRIBUTES", &v)?;
    }
    // Booleans: only "true" (any case) is true; the specification reads anything else as false.
    env.disabled =
        non_empty(lookup, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));

    env.exporter = exporter(lookup)?;
    env.endpoint = non_empty(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT");
    env.traces_endpoint = non_empty(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        if let Some(v) = non_empty(lookup, name) {
            validate_endpoint(name, &v)?;
        }
    }
    env.otlp = read_otlp(lookup, Signal::Traces)?;
    env.protocol = env.otlp.protocol;

    env.sampler = sampler(lookup)?;
    if let Some(v) = non_empty(lookup, "OTEL_PROPAGATORS") {
        env.propagators = Some(propagator_names("OTEL_PROPAGATORS", &v, v.split(','))?);
    }
    env.batch = batch(lookup)?;
    Ok(env)
}

/// What a protocol variable accepts. `http/json` is a protocol of the specification, but the
/// exporters here encode protobuf only: it is refused by name rather than sent as protobuf.
pub(crate) const PROTOCOLS_ACCEPTED: &str =
    "\"grpc\" or \"http/protobuf\" (http/json is not supported)";

/// A signal's protocol: its own variable (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`...), else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, as the specification orders them. An error names the
/// variable that was read.
fn protocol(
    lookup: &dyn Fn(&str) -> Option<String>,
    own: &'static str,
) -> Result<Option<Protocol>, SetupError> {
    let Some((name, v)) = own_else_shared(lookup, own, SHARED.protocol) else {
        return Ok(None);
    };
    match v.as_str() {
        "grpc" => Ok(Some(Protocol::Grpc)),
        "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
        _ => Err(SetupError::invalid(name, &v, PROTOCOLS_ACCEPTED)),
    }
}

/// The signal's own variable, else the one shared by every signal, with the name of the one
/// that was set (an error about the value names it).
fn own_else_shared(
    lookup: &dyn Fn(&str) -> Option<String>,
    own: &'static str,
    shared: &'static str,
) -> Option<(&'static str, String)> {
    [own, shared]
        .into_iter()
        .find_map(|name| non_empty(lookup, name).map(|v| (name, v)))
}

/// `OTEL_TRACES_EXPORTER`: one exporter, possibly repeated.
fn exporter(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<TracesExporter>, SetupError> {
    let Some(v) = non_empty(lookup, "OTEL_TRACES_EXPORTER") else {
        return Ok(None);
    };
    let mut chosen = None;
    for item in v.split(',').map(str::trim) {
        let parsed = match item {
            "otlp" => TracesExporter::Otlp,
            "console" | "logging" => TracesExporter::Console,
            "none" => TracesExporter::None,
            _ => {
                return Err(SetupError::invalid(
                    "OTEL_TRACES_EXPORTER",
                    &v,
                    "one of \"otlp\", \"console\", \"none\"",
                ))
            }
        };
        if chosen.is_some_and(|c| c != parsed) {
            return Err(SetupError::invalid(
                "OTEL_TRACES_EXPORTER",
                &v,
                "a single exporter: \"otlp\", \"console\" or \"none\"",
            ));
        }
        chosen = Some(parsed);
    }
    Ok(chosen)
}

/// `OTEL_TRACES_SAMPLER`, with `OTEL_TRACES_SAMPLER_ARG` for the ratio samplers.
fn sampler(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<TracesSampler>, SetupError> {
    let Some(v) = non_empty(lookup, "OTEL_TRACES_SAMPLER") else {
        return Ok(None);
    };
    Ok(Some(match v.as_str() {
        "always_on" => TracesSampler::AlwaysOn,
        "always_off" => TracesSampler::AlwaysOff,
        "traceidratio" => TracesSampler::TraceIdRatio(ratio(lookup)?),
        "parentbased_always_on" => TracesSampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => TracesSampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => TracesSampler::ParentBasedTraceIdRatio(ratio(lookup)?),
        _ => {
            return Err(SetupError::invalid(
                "OTEL_TRACES_SAMPLER",
                &v,
                "one of always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off, parentbased_traceidratio",
            ))
        }
    }))
}

/// The export queue (`OTEL_BSP_*`), with the specification's defaults where unset.
fn batch(lookup: &dyn Fn(&str) -> Option<String>) -> Result<BatchConfig, SetupError> {
    let defaults = BatchConfig::default();
    Ok(BatchConfig {
        max_queue_size: count(lookup, "OTEL_BSP_MAX_QUEUE_SIZE")?
            .unwrap_or(defaults.max_queue_size),
        scheduled_delay: millis(lookup, "OTEL_BSP_SCHEDULE_DELAY")?
            .unwrap_or(defaults.scheduled_delay),
        max_export_batch_size: count(lookup, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?
            .unwrap_or(defaults.max_export_batch_size),
        export_timeout: millis(lookup, "OTEL_BSP_EXPORT_TIMEOUT")?
            .unwrap_or(defaults.export_timeout),
    })
}

/// An endpoint must be an absolute `http` or `https` URL, or, for OTLP/gRPC, a bare
/// `host:port` (whose scheme [`with_scheme`] gives once the protocol is known).
pub(crate) fn validate_endpoint(setting: &str, value: &str) -> Result<(), SetupError> {
    let url = value.parse::<http::Uri>().ok().is_some_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
    });
    let bare = !value.contains("://")
        && value
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.port().is_some() && !a.as_str().contains('@'));
    if url || bare {
        Ok(())
    } else {
        Err(SetupError::invalid(
            setting,
            value,
            "an absolute http:// or https:// URL (or host:port for OTLP/gRPC)",
        ))
    }
}

/// `endpoint` with its scheme: a bare `host:port` is for OTLP/gRPC only, reached with TLS
/// (`https`) unless `OTEL_EXPORTER_OTLP_INSECURE` (or the signal's form) says otherwise, as the
/// specification has it.
pub(crate) fn with_scheme(
    endpoint: String,
    protocol: Protocol,
    insecure: bool,
) -> Result<String, SetupError> {
    if endpoint.contains("://") {
        return Ok(endpoint);
    }
    match protocol {
        Protocol::Grpc if insecure => Ok(format!("http://{endpoint}")),
        Protocol::Grpc => Ok(format!("https://{endpoint}")),
        _ => Err(SetupError::invalid(
            "OTEL_EXPORTER_OTLP_ENDPOINT (or its per-signal form)",
            &endpoint,
            "an http:// or https:// URL: a bare host:port is for OTLP/gRPC only",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SetupErrorKind;

    fn env(vars: &[(&str, &str)]) -> Result<EnvConfig, SetupError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        read(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_lookup_replaces_the_process_environment() {
        let mut source = Source::default();
        source.set_lookup(Arc::new(|name: &str| {
            (name == "OTEL_SERVICE_NAME").then(|| "from-lookup".to_owned())
        }));
        assert_eq!(
            source.traces().expect("valid").service_name.as_deref(),
            Some("from-lookup")
        );
        // Set in every process that runs this test, yet not read through a lookup.
        assert!(process_var("PATH").is_some());
        assert_eq!(source.var("PATH"), None);
        assert_eq!(Source::default().var("PATH"), process_var("PATH"));
    }

    #[test]
    fn the_file_gives_what_the_environment_leaves_unset_or_blank() {
        let mut source = Source::default();
        source.set_lookup(Arc::new(|name: &str| match name {
            "OTEL_SERVICE_NAME" => Some("from-env".to_owned()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("  ".to_owned()),
            _ => None,
        }));
        source.set_file(vec![
            ("OTEL_SERVICE_NAME", "from-file".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://file:4318".to_owned()),
            ("OTEL_TRACES_SAMPLER", "always_off".to_owned()),
        ]);
        assert_eq!(source.var("OTEL_SERVICE_NAME").as_deref(), Some("from-env"));
        assert_eq!(
            source.var("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://file:4318")
        );
        assert_eq!(
            source.var("OTEL_TRACES_SAMPLER").as_deref(),
            Some("always_off")
        );
        assert_eq!(source.var("OTEL_PROPAGATORS"), None);
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let e = env(&[]).expect("valid");
        assert_eq!(e, EnvConfig::default());
    }

    #[test]
    fn the_traces_certificate_beats_the_shared_one_and_names_itself() {
        let shared = env(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem")]).expect("valid");
        assert_eq!(
            shared.otlp.certificate,
            Some(("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem".to_owned()))
        );
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/etc/traces-ca.pem",
            ),
        ])
        .expect("valid");
        assert_eq!(
            both.otlp.certificate,
            Some((
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/etc/traces-ca.pem".to_owned()
            ))
        );
    }

    #[test]
    fn every_variable_is_read() {
        let e = env(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod,team=a%20b",
            ),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret,x=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4096"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
        ])
        .expect("valid");
        assert_eq!(e.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            e.resource_attributes[1],
            ("team".to_owned(), "a b".to_owned())
        );
        assert_eq!(e.exporter, Some(TracesExporter::Otlp));
        assert_eq!(e.protocol, Some(Protocol::Grpc));
        assert_eq!(
            e.otlp.headers.last(),
            Some(&("x".to_owned(), "2".to_owned()))
        );
        assert_eq!(e.otlp.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(e.otlp.compression, Some(Compression::Gzip));
        assert_eq!(
            e.sampler,
            Some(TracesSampler::ParentBasedTraceIdRatio(0.25))
        );
        assert!(e.disabled);
        assert_eq!(e.batch.max_queue_size, 4096);
        assert_eq!(e.batch.scheduled_delay, Duration::from_millis(100));
        assert_eq!(e.batch.max_export_batch_size, 256);
        assert_eq!(e.batch.export_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_accepted_values() {
        let cases = [
            (
                "OTEL_TRACES_EXPORTER",
                "jaeger",
                "\"otlp\", \"console\", \"none\"",
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "\"grpc\" or \"http/protobuf\"",
            ),
            ("OTEL_TRACES_SAMPLER", "sometimes", "parentbased_always_on"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "greater than 0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s", "milliseconds"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "ftp://collector:4317",
                "http://",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "collector",
                "host:port",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue", "key=value"),
            (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "zstd",
                "\"gzip\" or \"none\"",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "deflate",
                "\"gzip\" or \"none\"",
            ),
        ];
        for (name, value, accepted) in cases {
            let err = env(&[(name, value)]).expect_err(name);
            assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
            let text = err.to_string();
            assert!(
                text.contains(name) && text.contains(value) && text.contains(accepted),
                "{text}"
            );
        }
        let err = env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .expect_err("ratio over 1");
        assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"));
    }

    #[test]
    fn propagators_are_read_normalised_and_checked() {
        assert_eq!(env(&[]).expect("valid").propagators, None);
        assert_eq!(
            env(&[("OTEL_PROPAGATORS", "  ")])
                .expect("valid")
                .propagators,
            None
        );
        let e =
            env(&[("OTEL_PROPAGATORS", "TraceContext, b3multi,,jaeger,b3multi")]).expect("valid");
        assert_eq!(
            e.propagators.as_deref(),
            Some(&["tracecontext", "b3multi", "jaeger"].map(str::to_owned)[..])
        );
        let e = env(&[("OTEL_PROPAGATORS", "none")]).expect("valid");
        assert_eq!(e.propagators.as_deref(), Some(&["none".to_owned()][..]));

        for bad in ["xray", "tracecontext,ottrace", "w3c", "none,b3", ","] {
            let err = env(&[("OTEL_PROPAGATORS", bad)]).expect_err(bad);
            assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
            let text = err.to_string();
            assert!(
                text.contains("OTEL_PROPAGATORS")
                    && text.contains(bad)
                    && text.contains(PROPAGATORS_ACCEPTED),
                "{text}"
            );
        }
    }

    #[test]
    fn each_signal_reads_its_own_otlp_variables_else_the_shared_ones() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_HEADERS", "k=shared"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/client-key.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "k=metrics"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics-ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "/logs.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/logs-key.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/traces-key.pem"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let traces = read_otlp(&lookup, Signal::Traces).expect("valid");
        let metrics = read_otlp(&lookup, Signal::Metrics).expect("valid");
        let logs = read_otlp(&lookup, Signal::Logs).expect("valid");
        let pair = |name: &'static str, v: &str| Some((name, v.to_owned()));

        assert_eq!(traces.headers, [("k".to_owned(), "shared".to_owned())]);
        assert_eq!(traces.timeout, Some(Duration::from_secs(1)));
        assert_eq!(traces.compression, Some(Compression::Gzip));
        assert_eq!(
            traces.certificate,
            pair("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem")
        );
        assert_eq!(
            traces.client_key,
            pair("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/traces-key.pem")
        );

        // Shared headers first, the signal's own last (they win on a shared key).
        assert_eq!(
            metrics.headers.last().map(|h| h.1.as_str()),
            Some("metrics")
        );
        assert_eq!(metrics.timeout, Some(Duration::from_secs(2)));
        assert_eq!(metrics.compression, Some(Compression::None));
        assert_eq!(
            metrics.certificate,
            pair("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics-ca.pem")
        );
        assert_eq!(
            metrics.client_certificate,
            pair("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem")
        );

        assert_eq!(logs.timeout, Some(Duration::from_secs(1)));
        assert_eq!(
            logs.client_certificate,
            pair("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "/logs.pem")
        );
        assert_eq!(
            logs.client_key,
            pair("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/logs-key.pem")
        );

        for name in [
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ] {
            let bad = |n: &str| (n == name).then(|| "=?".to_owned());
            let signal = if name.contains("LOGS") {
                Signal::Logs
            } else {
                Signal::Metrics
            };
            let err = read_otlp(&bad, signal).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = read_logs(&|n: &str| {
            (n == "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT").then(|| "ftp://collector:4318".to_owned())
        })
        .expect_err("not an http(s) URL");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
            "{err}"
        );
    }

    #[test]
    fn each_signal_reads_its_own_protocol_else_the_shared_one() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let protocols = |vars: &'static [(&'static str, &'static str)]| {
            let l = lookup(vars);
            [Signal::Traces, Signal::Metrics, Signal::Logs]
                .map(|signal| read_otlp(&l, signal).expect("valid").protocol)
        };
        let (grpc, http) = (Some(Protocol::Grpc), Some(Protocol::HttpProtobuf));
        assert_eq!(protocols(&[]), [None, None, None]);
        assert_eq!(
            protocols(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            [grpc, grpc, grpc]
        );
        assert_eq!(
            protocols(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ]),
            [grpc, http, grpc]
        );
        assert_eq!(
            protocols(&[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ]),
            [grpc, None, http]
        );
        // The traces' settings read the same variables.
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .expect("valid");
        assert_eq!(e.protocol, grpc);
        let logs =
            read_logs(&lookup(&[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")])).expect("valid");
        assert_eq!(logs.otlp.protocol, grpc);

        // http/json is refused by the variable that asked for it, as unsupported.
        for (name, signal) in [
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", Signal::Metrics),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", Signal::Logs),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Signal::Traces),
        ] {
            let bad = |n: &str| (n == name).then(|| "http/json".to_owned());
            let err = read_otlp(&bad, signal).expect_err(name);
            assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
            let text = err.to_string();
            assert!(
                text.contains(name) && text.contains("http/json") && text.contains("not supported"),
                "{text}"
            );
        }
        let err = read_otlp(
            &lookup(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            Signal::Metrics,
        )
        .expect_err("shared");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn the_traces_compression_beats_the_shared_one() {
        let shared = env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]).expect("valid");
        assert_eq!(shared.otlp.compression, Some(Compression::Gzip));
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ])
        .expect("valid");
        assert_eq!(both.otlp.compression, Some(Compression::None));
    }

    /// `OTEL_EXPORTER_OTLP_HEADERS` as the specification writes it: comma-separated
    /// `key=value` pairs, values percent-decoded, spaces around members ignored.
    #[test]
    fn export_headers_are_percent_decoded_pairs() {
        let e = env(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=abc%3D%3D , x-scope=team%20blue,authorization=Basic%20dXNlcjpwdw==",
        )])
        .expect("valid");
        assert_eq!(
            e.otlp.headers,
            vec![
                ("api-key".to_owned(), "abc==".to_owned()),
                ("x-scope".to_owned(), "team blue".to_owned()),
                ("authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned()),
            ]
        );
    }

    #[test]
    fn disabled_is_true_only_for_true() {
        assert!(
            !env(&[("OTEL_SDK_DISABLED", "yes")])
                .expect("valid")
                .disabled
        );
        assert!(
            env(&[("OTEL_SDK_DISABLED", "true")])
                .expect("valid")
                .disabled
        );
    }
}
