//! The OTLP metric exporter: the SDK's `ResourceMetrics` converted to the OTLP request by
//! `opentelemetry-proto` (the reference conversion, already compiled for `opentelemetry-otlp`),
//! encoded with prost, and posted through the fast exporter's transport
//! ([`crate::wire::transport`]). Metrics so get what spans get: TLS and mTLS for
//! `https` endpoints, gzip, the headers and timeout, and the same retries after the OTLP
//! specification (`Transport::deliver`), with the metrics' own variables
//! (`OTEL_EXPORTER_OTLP_METRICS_*`). A few requests a minute: the conversion's allocations do
//! not matter here as they do for spans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use prost::Message as _;

use super::duration::Durations;
use crate::config::Resolved;
use crate::error::SetupError;
use crate::wire::body::Framer;
use crate::wire::transport::{Outcomes, Refusals, Transport};

/// The OTLP metrics export method, appended to a gRPC endpoint.
const GRPC_METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Pushes metrics over OTLP (gRPC or HTTP/protobuf, `http` or `https`).
pub(crate) struct OtlpMetricExporter {
    transport: Transport,
    /// Only the push thread exports: never contended.
    framer: Mutex<Framer>,
    counts: Arc<Counts>,
    /// The request durations counted outside the SDK, added to each export.
    durations: Arc<Durations>,
}

/// What became of the data points sent.
#[derive(Debug)]
pub(crate) struct Counts {
    /// Data points the backend accepted.
    pub(crate) exported: AtomicU64,
    /// Data points given up on (retries ran out of the timeout, no connection, timed out).
    pub(crate) failed: AtomicU64,
    /// Requests sent again after a throttled or transient failure.
    pub(crate) retried: AtomicU64,
    /// Data points the backend refused (wholly or by a partial success).
    pub(crate) rejected: AtomicU64,
    /// The refusals told on standard error, rate-limited: a partial success is no failed
    /// export, so nothing else would tell its message.
    refusals: Refusals,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            refusals: Refusals::new("data point"),
        }
    }
}

impl Outcomes for Counts {
    fn rejected(&self, items: u64, reason: String) {
        self.rejected.fetch_add(items, Ordering::Relaxed);
        self.refusals.rejected(items, reason);
    }
    fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
}

impl OtlpMetricExporter {
    /// An exporter for `config` (its endpoint is the metrics one: the full `/v1/metrics` URL
    /// for HTTP, the base URL for gRPC). Fails on an `https` endpoint without the `tls`
    /// feature, an invalid URL or invalid headers.
    pub(crate) fn new(
        config: &Resolved,
        counts: Arc<Counts>,
        durations: Arc<Durations>,
    ) -> Result<Self, SetupError> {
        let (transport, framer) = Transport::for_signal(
            config.protocol,
            &config.endpoint,
            GRPC_METRICS_PATH,
            &config.headers,
            config.timeout,
            &config.tls,
            config.compression,
        )?;
        Ok(Self {
            framer: Mutex::new(framer),
            transport,
            counts,
            durations,
        })
    }
}

/// The data points of a request, for partial-success messages.
fn data_points(request: &ExportMetricsServiceRequest) -> u64 {
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    metrics
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// Counts one export's data points when it ends, however it ends: exported, or failed (an
/// error, or the push thread's timeout dropping the export), less those the backend rejected,
/// which are counted as rejected. Only the push thread exports, one export at a time, so the
/// rejected count's growth during the export is this export's.
struct Settle<'a> {
    points: u64,
    rejected_before: u64,
    counts: &'a Counts,
    exported: bool,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let rejected = self.counts.rejected.load(Ordering::Relaxed) - self.rejected_before;
        let rest = self.points.saturating_sub(rejected);
        let counter = if self.exported {
            &self.counts.exported
        } else {
            &self.counts.failed
        };
        counter.fetch_add(rest, Ordering::Relaxed);
    }
}

impl PushMetricExporter for OtlpMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut request = ExportMetricsServiceRequest::from(metrics);
        self.durations.append_to(&mut request, super::SCOPE_NAME);
        let mut settle = Settle {
            points: data_points(&request),
            rejected_before: self.counts.rejected.load(Ordering::Relaxed),
            counts: &self.counts,
            exported: false,
        };
        let body = self
            .framer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .frame(&request.encode_to_vec())?;
        let result = self
            .transport
            .deliver(&body, settle.points, "data point", &*self.counts)
            .await;
        settle.exported = result.is_ok();
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::metrics::reader::MetricReader as _;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

    use super::*;

    fn config(endpoint: String) -> Resolved {
        Resolved {
            service_name: "svc".to_owned(),
            service_version: None,
            environment: None,
            resource_attributes: Vec::new(),
            exporter: crate::config::TracesExporter::Otlp,
            protocol: crate::Protocol::HttpProtobuf,
            endpoint,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            compression: Default::default(),
            tls: Default::default(),
            sampler: crate::config::TracesSampler::AlwaysOn,
            sampling: None,
            batch: crate::config::BatchConfig::default(),
            disabled: false,
        }
    }

    /// The push thread gives an export its timeout and drops it when it runs out: its data
    /// points are counted as failed all the same, none as exported.
    #[tokio::test]
    async fn an_export_cut_off_by_the_timeout_counts_its_data_points_as_failed() {
        // A backend that takes connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(crate::metrics::SharedReader(reader.clone()))
            .build();
        let requests = provider.meter("app").u64_counter("requests").build();
        requests.add(1, &[KeyValue::new("route", "/a")]);
        requests.add(1, &[KeyValue::new("route", "/b")]);
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).expect("collect");

        let counts = Arc::new(Counts::default());
        let exporter = OtlpMetricExporter::new(
            &config(format!("http://{address}/v1/metrics")),
            counts.clone(),
            Arc::new(super::super::duration::Durations::new(10)),
        )
        .expect("exporter");
        let cut = tokio::time::timeout(Duration::from_millis(200), exporter.export(&rm)).await;
        assert!(cut.is_err(), "the backend never answers");
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (
                read(&counts.exported),
                read(&counts.failed),
                read(&counts.rejected)
            ),
            (0, 2, 0)
        );
    }
}
