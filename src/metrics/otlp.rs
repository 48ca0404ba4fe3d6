//! The OTLP metric exporter: the SDK's `ResourceMetrics` converted to the OTLP request by
//! `opentelemetry-proto` (the reference conversion, already compiled for `opentelemetry-otlp`),
//! encoded with prost, and posted through the fast exporter's transport
//! ([`crate::export::otlp_fast::transport`]). Metrics so get what spans get: TLS and mTLS for
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
use crate::config::{Protocol, Resolved};
use crate::error::SetupError;
use crate::export::otlp_fast::body::Framer;
use crate::export::otlp_fast::transport::{Outcomes, Refusals, Transport, Wire};

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
        let wire = match config.protocol {
            Protocol::Grpc => Wire::Grpc,
            Protocol::HttpProtobuf => Wire::Http,
        };
        let transport = Transport::for_method(
            wire,
            &config.endpoint,
            GRPC_METRICS_PATH,
            &config.headers,
            config.timeout,
            &config.tls,
        )?
        .with_compression(config.compression);
        Ok(Self {
            framer: Mutex::new(Framer::new(wire, config.compression)),
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

impl PushMetricExporter for OtlpMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut request = ExportMetricsServiceRequest::from(metrics);
        self.durations.append_to(&mut request, super::SCOPE_NAME);
        let points = data_points(&request);
        let body = self
            .framer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .frame(&request.encode_to_vec())?;
        self.transport
            .deliver(&body, points, "data point", &*self.counts)
            .await
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
