//! `http.client.request.duration`: one histogram point per attempt, with the stable HTTP client
//! semantic-convention attributes.

use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter, MeterProvider};
use opentelemetry::{global, InstrumentationScope, KeyValue};
use reqwest::Response;
use service_tracing_middleware::semconv;

use crate::span::{error_class, server_address};

/// The OpenTelemetry semantic conventions' advisory bucket boundaries for HTTP durations, in
/// seconds.
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instrument the middleware records into; a no-op when built from the no-op provider.
#[derive(Clone, Debug)]
pub(crate) struct ClientMetrics {
    duration: Histogram<f64>,
}

impl ClientMetrics {
    /// From the global meter provider as it is now (a no-op until one is installed).
    pub(crate) fn from_global() -> Self {
        Self::from_meter(&global::meter_with_scope(scope()))
    }

    pub(crate) fn from_provider<P: MeterProvider + ?Sized>(provider: &P) -> Self {
        Self::from_meter(&provider.meter_with_scope(scope()))
    }

    fn from_meter(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP client requests.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
        }
    }

    /// The attributes known before the attempt is sent.
    pub(crate) fn request_attributes(req: &reqwest::Request) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(5);
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            semconv::known_method(req.method()).unwrap_or("_OTHER"),
        ));
        if let Some((host, port)) = server_address(req.url()) {
            attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host));
            if let Some(port) = port {
                attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
            }
        }
        attributes
    }

    /// Records one attempt, given [`request_attributes`](Self::request_attributes).
    pub(crate) fn record(
        &self,
        mut attributes: Vec<KeyValue>,
        result: &reqwest_middleware::Result<Response>,
        elapsed: Duration,
    ) {
        match result {
            Ok(response) => {
                let status = response.status();
                attributes.push(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ));
                if status.is_client_error() || status.is_server_error() {
                    attributes.push(KeyValue::new(
                        semconv::ERROR_TYPE,
                        status.as_str().to_owned(),
                    ));
                }
            }
            Err(error) => {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_class(error)));
            }
        }
        self.duration.record(elapsed.as_secs_f64(), &attributes);
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("service-tracing-client")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}
