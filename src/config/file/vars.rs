//! The file's settings that have a variable, written as that variable would be: set-up reads
//! them as the variables' fallback, under the environment.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::schema::{Dur, PairKey};
use super::FileSettings;

impl FileSettings {
    /// Each variable the file gives a value, with the value in the variable's syntax.
    pub(crate) fn vars(&self) -> Vec<(&'static str, String)> {
        let text = |v: Option<&str>| v.map(str::to_owned);
        let millis = |d: Option<Dur>| d.map(|d| d.0.as_millis().to_string());
        let others = [
            ("OTEL_SDK_DISABLED", self.disabled.map(|b| b.to_string())),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                pairs(&self.service.resource_attributes),
            ),
            (
                "OTEL_TRACES_SAMPLER",
                text(self.sampling.sampler.map(|x| x.as_str())),
            ),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                self.sampling.ratio.map(|r| r.0.to_string()),
            ),
            (
                "OTEL_PROPAGATORS",
                self.propagation
                    .propagators
                    .as_ref()
                    .map(|p| p.iter().map(|n| n.0.as_str()).collect::<Vec<_>>().join(",")),
            ),
            (
                "OTEL_METRICS_EXPORTER",
                text(self.metrics.exporter.map(|x| x.as_str())),
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", millis(self.metrics.interval)),
            ("OTEL_METRIC_EXPORT_TIMEOUT", millis(self.metrics.timeout)),
            (
                "SERVICE_TRACING_ERRORS_REDIS_URL",
                text(self.errors.redis_url.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "SERVICE_TRACING_REQUEST_CHAINS",
                self.errors.request_chains.map(|on| on.to_string()),
            ),
            (
                "RUST_LOG",
                text(self.logging.filter.as_ref().map(|x| x.0.as_str())),
            ),
        ];
        self.export_vars()
            .into_iter()
            .chain(others)
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect()
    }

    /// The `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*` and exporter variables, set or not.
    fn export_vars(&self) -> Vec<(&'static str, Option<String>)> {
        let e = &self.export;
        let text = |v: Option<&str>| v.map(str::to_owned);
        let millis = |d: Option<Dur>| d.map(|d| d.0.as_millis().to_string());
        vec![
            ("OTEL_TRACES_EXPORTER", text(e.exporter.map(|x| x.as_str()))),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                text(e.endpoint.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                text(e.traces_endpoint.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                text(e.metrics_endpoint.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                text(e.logs_endpoint.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                text(e.protocol.map(|x| x.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                text(e.metrics_protocol.map(|x| x.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                text(e.logs_protocol.map(|x| x.as_str())),
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", pairs(&e.headers)),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", millis(e.timeout)),
            (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                text(e.compression.map(|x| x.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_INSECURE",
                e.insecure.map(|b| b.to_string()),
            ),
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                text(e.certificate.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                text(e.client_certificate.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                text(e.client_key.as_ref().map(|x| x.0.as_str())),
            ),
            (
                "OTEL_LOGS_EXPORTER",
                text(e.logs_exporter.map(|x| x.as_str())),
            ),
            (
                "OTEL_BSP_MAX_QUEUE_SIZE",
                e.batch.max_queue_size.map(|n| n.0.to_string()),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", millis(e.batch.schedule_delay)),
            (
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                e.batch.max_export_batch_size.map(|n| n.0.to_string()),
            ),
            ("OTEL_BSP_EXPORT_TIMEOUT", millis(e.batch.export_timeout)),
        ]
    }
}

/// `key=value,...` with the values percent-encoded, as `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` take them; `None` when empty.
fn pairs(map: &BTreeMap<PairKey, String>) -> Option<String> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| format!("{}={}", k.0, utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect::<Vec<_>>()
            .join(",")
    })
}
