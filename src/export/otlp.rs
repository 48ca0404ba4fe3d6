//! The OTLP exporter, over gRPC or HTTP/protobuf, configured from resolved settings only (the
//! exporter's own environment reading is overridden, so the layering stays ours).

// `opentelemetry-otlp` has an exporter only with one of its transports, which the `otlp-grpc`
// and `otlp-http` features turn on: without both, the reference exporter is left out.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use std::collections::HashMap;

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use opentelemetry_otlp::{SpanExporter, WithExportConfig};

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use crate::config::Protocol;
use crate::config::Resolved;
use crate::error::SetupError;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use crate::error::SetupErrorKind;

/// Builds the exporter. Must run inside a tokio runtime (tonic needs a reactor).
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
#[allow(
    dead_code,
    reason = "set-up builds the fast exporter for every endpoint (issue 11)"
)]
pub(crate) fn build(config: &Resolved) -> Result<SpanExporter, SetupError> {
    let failed = |e: opentelemetry_otlp::ExporterBuildError| {
        SetupError::new(
            SetupErrorKind::Exporter,
            format!("cannot build the OTLP exporter for {}", config.endpoint),
        )
        .with_source(e)
    };
    match config.protocol {
        Protocol::Grpc => grpc(config).map_err(failed)?,
        Protocol::HttpProtobuf => http(config).map_err(failed)?,
    }
}

#[cfg(feature = "otlp-grpc")]
fn grpc(
    config: &Resolved,
) -> Result<Result<SpanExporter, SetupError>, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithTonicConfig;
    let metadata = match grpc_metadata(config) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .with_metadata(metadata)
        .build()
        .map(Ok)
}

/// The export headers as gRPC metadata.
#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_metadata(
    config: &Resolved,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, SetupError> {
    let mut headers = http::HeaderMap::new();
    for (k, v) in &config.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes());
        let value = http::HeaderValue::from_str(v);
        match (name, value) {
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => {
                return Err(SetupError::invalid(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    k,
                    "header names and values valid in HTTP",
                ))
            }
        }
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers))
}

#[cfg(all(feature = "otlp-http", not(feature = "otlp-grpc")))]
fn grpc(
    _config: &Resolved,
) -> Result<Result<SpanExporter, SetupError>, opentelemetry_otlp::ExporterBuildError> {
    Ok(Err(SetupError::new(
        SetupErrorKind::InvalidConfig,
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the `otlp-grpc` feature of service-tracing",
    )))
}

#[cfg(feature = "otlp-http")]
fn http(
    config: &Resolved,
) -> Result<Result<SpanExporter, SetupError>, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithHttpConfig;
    let headers: HashMap<String, String> = config.headers.iter().cloned().collect();
    SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .with_headers(headers)
        .build()
        .map(Ok)
}

#[cfg(all(feature = "otlp-grpc", not(feature = "otlp-http")))]
fn http(
    _config: &Resolved,
) -> Result<Result<SpanExporter, SetupError>, opentelemetry_otlp::ExporterBuildError> {
    let _ = HashMap::<String, String>::new();
    Ok(Err(SetupError::new(
        SetupErrorKind::InvalidConfig,
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf needs the `otlp-http` feature of service-tracing",
    )))
}

/// The OTLP exporter set-up picks: the fast one ([`crate::export::otlp_fast`], `http` and, with
/// the `tls` feature, `https` endpoints), or `opentelemetry-otlp`'s (kept for the tests that
/// compare the two).
#[derive(Debug)]
pub(crate) enum OtlpExporter {
    /// Direct protobuf encoding over a thin hyper client.
    Fast(Box<crate::export::otlp_fast::FastOtlpExporter>),
    /// `opentelemetry-otlp` (tonic or reqwest). No longer chosen by set-up: kept while issue 11
    /// decides what the SDK exporter still offers (compression, retries) that the fast one lacks.
    #[allow(
        dead_code,
        reason = "the fast exporter now serves https too (issue 11)"
    )]
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    Reference(Box<SpanExporter>),
}

/// Builds the fast exporter, for `http` and `https` alike: `opentelemetry-otlp` is built
/// without a TLS stack here, so falling back to it for `https` would export nothing. Without
/// the `tls` feature an `https` endpoint fails set-up, saying so.
/// Rejected spans and retries are counted into `tally`, the export worker's.
pub(crate) fn build_preferred(
    config: &Resolved,
    tally: std::sync::Arc<crate::export::batch::Tally>,
) -> Result<OtlpExporter, SetupError> {
    crate::export::otlp_fast::build(config)
        .map(|e| OtlpExporter::Fast(Box::new(e.with_tally(tally))))
}

impl crate::export::batch::QueueExporter for OtlpExporter {
    async fn export_queued(
        &self,
        batch: Vec<crate::export::batch::Queued>,
    ) -> crate::export::batch::Sent {
        match self {
            Self::Fast(e) => e.export_queued(batch).await,
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(e) => {
                use opentelemetry_sdk::trace::SpanExporter as _;
                let result = e
                    .export(
                        batch
                            .into_iter()
                            .map(crate::export::batch::Queued::into_span_data)
                            .collect(),
                    )
                    .await;
                crate::export::batch::Sent {
                    result,
                    rejected: None,
                }
            }
        }
    }

    /// The fast exporter's calls overlap; the reference exporter's go one at a time.
    fn in_flight(&self) -> usize {
        match self {
            Self::Fast(e) => e.in_flight(),
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(_) => 1,
        }
    }
}

impl opentelemetry_sdk::trace::SpanExporter for OtlpExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            Self::Fast(e) => e.export(batch).await,
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(e) => e.export(batch).await,
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            Self::Fast(e) => e.shutdown_with_timeout(timeout),
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            Self::Fast(e) => e.force_flush(),
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(e) => e.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        match self {
            Self::Fast(e) => e.set_resource(resource),
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            Self::Reference(e) => e.set_resource(resource),
        }
    }
}
