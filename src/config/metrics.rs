//! Metrics settings: the standard `OTEL_METRICS_*` variables, layered like the trace settings
//! (defaults < environment < builder).

use std::time::Duration;

use super::env::{millis, non_empty, read_otlp, validate_endpoint, OtlpEnv, Signal};
use crate::SetupError;

/// Where metrics go (`OTEL_METRICS_EXPORTER`).
///
/// ```
/// use service_tracing::{metrics::MetricsExporter, ServiceTracing};
/// let options = ServiceTracing::builder("svc").metrics_exporter(MetricsExporter::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsExporter {
    /// Pushed over OTLP to the collector every export interval (`otlp`). The default when an
    /// OTLP endpoint is configured or traces go over OTLP.
    Otlp,
    /// Only pulled: the Prometheus text from [`Metrics::prometheus_text`](crate::metrics::Metrics::prometheus_text)
    /// or the route set with [`ServiceTracing::prometheus_route`](crate::ServiceTracing::prometheus_route)
    /// (`prometheus`).
    Prometheus,
    /// Not pushed (`none`). A Prometheus route, when set, still serves them.
    None,
}

/// What the environment says about metrics; `None` where unset.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct MetricsEnv {
    pub(crate) exporter: Option<MetricsExporter>,
    pub(crate) endpoint: Option<String>,
    pub(crate) interval: Option<Duration>,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`.
    pub(crate) timeout: Option<Duration>,
    /// `OTEL_EXPORTER_OTLP_METRICS_*`, else the shared `OTEL_EXPORTER_OTLP_*`.
    pub(crate) otlp: OtlpEnv,
}

/// Default `OTEL_METRIC_EXPORT_INTERVAL`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Reads `OTEL_METRICS_EXPORTER`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`,
/// `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRIC_EXPORT_TIMEOUT` and the metrics' OTLP exporter
/// variables (`OTEL_EXPORTER_OTLP_METRICS_HEADERS`...).
pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<MetricsEnv, SetupError> {
    const EXPORTER: &str = "OTEL_METRICS_EXPORTER";
    const ACCEPTED: &str = "one of \"otlp\", \"prometheus\", \"none\"";
    let mut env = MetricsEnv::default();
    if let Some(v) = non_empty(lookup, EXPORTER) {
        // A list may name both: pushing wins, the Prometheus text is always available.
        let mut chosen = None;
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let parsed = match item {
                "otlp" => MetricsExporter::Otlp,
                "prometheus" => MetricsExporter::Prometheus,
                "none" => MetricsExporter::None,
                _ => return Err(SetupError::invalid(EXPORTER, &v, ACCEPTED)),
            };
            chosen = match (chosen, parsed) {
                (Some(MetricsExporter::Otlp), _) | (_, MetricsExporter::Otlp) => {
                    Some(MetricsExporter::Otlp)
                }
                (_, p) => Some(p),
            };
        }
        env.exporter = chosen;
    }
    const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
    if let Some(v) = non_empty(lookup, ENDPOINT) {
        validate_endpoint(ENDPOINT, &v)?;
        env.endpoint = Some(v);
    }
    const INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
    env.interval = millis(lookup, INTERVAL)?;
    if env.interval == Some(Duration::ZERO) {
        return Err(SetupError::invalid(
            INTERVAL,
            "0",
            "a whole number of milliseconds greater than 0",
        ));
    }
    env.timeout = millis(lookup, "OTEL_METRIC_EXPORT_TIMEOUT")?;
    env.otlp = read_otlp(lookup, Signal::Metrics)?;
    Ok(env)
}

/// The metrics endpoint, as for traces (see [`super::signal_endpoint`]): the builder's base
/// endpoint, else `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` as it is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; a base endpoint gets `/v1/metrics` for HTTP.
pub(crate) fn endpoint(
    builder: Option<&str>,
    signal: Option<&str>,
    env_base: Option<&str>,
    protocol: crate::Protocol,
) -> String {
    super::signal_endpoint("metrics", builder, signal, env_base, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn env(vars: &'static [(&'static str, &'static str)]) -> Result<MetricsEnv, SetupError> {
        read(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn every_variable_is_read() {
        let e = env(&[
            ("OTEL_METRICS_EXPORTER", "none"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://c:4318/v1/metrics",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "2000"),
        ])
        .expect("valid");
        assert_eq!(e.exporter, Some(MetricsExporter::None));
        assert_eq!(e.endpoint.as_deref(), Some("http://c:4318/v1/metrics"));
        assert_eq!(e.interval, Some(Duration::from_millis(1500)));
        assert_eq!(e.timeout, Some(Duration::from_secs(2)));
        let both = env(&[("OTEL_METRICS_EXPORTER", "prometheus,otlp")]).expect("valid");
        assert_eq!(both.exporter, Some(MetricsExporter::Otlp));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("OTEL_METRICS_EXPORTER", "statsd"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "ftp://collector:4317",
            ),
        ] {
            let vars: &'static [(&'static str, &'static str)] =
                Box::leak(vec![(name, value)].into_boxed_slice());
            let err = env(vars).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_endpoint_gets_the_metrics_path_only_from_the_base() {
        let http = Protocol::HttpProtobuf;
        assert_eq!(
            endpoint(Some("http://b:4318/"), Some("http://s/m"), None, http),
            "http://b:4318/v1/metrics"
        );
        assert_eq!(
            endpoint(None, Some("http://s:9/m"), Some("http://e:4318"), http),
            "http://s:9/m"
        );
        assert_eq!(
            endpoint(None, None, Some("http://e:4318"), http),
            "http://e:4318/v1/metrics"
        );
        assert_eq!(
            endpoint(None, None, Some("http://e:4317"), Protocol::Grpc),
            "http://e:4317"
        );
        assert_eq!(
            endpoint(None, None, None, http),
            "http://localhost:4318/v1/metrics"
        );
    }
}
