//! [`HttpServerMetrics`]: the request observer that records `http.server.request.duration`
//! and `http.server.active_requests`.

use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use opentelemetry::{KeyValue, StringValue};
use service_tracing_middleware::semconv;
use service_tracing_middleware::{RequestObserver, RequestOutcome, RequestStart};

/// The OpenTelemetry semantic conventions' advisory bucket boundaries for HTTP durations, in
/// seconds.
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A [`RequestObserver`] recording the stable HTTP server metrics of every request, sampled or
/// not:
///
/// - `http.server.request.duration` (histogram, `s`, the advisory buckets
///   [`DURATION_BOUNDARIES`]) with `http.request.method`, `http.route` (the route template;
///   absent when no route matched, never the raw path), `http.response.status_code` and
///   `error.type` when set;
/// - `http.server.active_requests` (up-down counter, `{request}`) with `http.request.method`
///   and `http.route`.
///
/// [`ServiceTracing`](crate::ServiceTracing) adds it to the layer when metrics are on; add it
/// yourself to a bare [`TracingLayer`](crate::TracingLayer):
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use service_tracing::metrics::HttpServerMetrics;
/// use service_tracing::TracingLayer;
///
/// let provider = SdkMeterProvider::builder().build();
/// let layer = TracingLayer::new()
///     .with_observer(HttpServerMetrics::new(&provider.meter("my-service")));
/// ```
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl HttpServerMetrics {
    /// The instruments, made with `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
        }
    }

    /// `http.request.method` and `http.route`, with room for the end's attributes.
    fn attributes(method: &str, route: Option<&str>) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            static_method(method),
        ));
        if let Some(route) = route {
            attributes.push(KeyValue::new(
                semconv::HTTP_ROUTE,
                StringValue::from(route.to_owned()),
            ));
        }
        attributes
    }
}

/// Known methods as `'static` strings (no allocation); anything else is already `_OTHER`.
fn static_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

impl RequestObserver for HttpServerMetrics {
    fn on_request_start(&self, request: &RequestStart<'_>) {
        self.active
            .add(1, &Self::attributes(request.method, request.route));
    }

    fn on_request_abandoned(&self, request: &RequestStart<'_>) {
        self.active
            .add(-1, &Self::attributes(request.method, request.route));
    }

    fn on_request_end(&self, outcome: &RequestOutcome<'_>) {
        let mut attributes = Self::attributes(outcome.method, outcome.route);
        self.active.add(-1, &attributes);
        if let Some(status) = outcome.status {
            attributes.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
        }
        if let Some(error_type) = outcome.error_type {
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()));
        }
        self.duration
            .record(outcome.duration.as_secs_f64(), &attributes);
    }
}
