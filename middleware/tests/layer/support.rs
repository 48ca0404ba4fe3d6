use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use http_body_util::BodyExt;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use service_tracing_middleware::TracingLayer;
use tower::ServiceExt;

pub struct Harness {
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
    }

    pub fn with_sampler(sampler: Sampler) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler)
            .build();
        Self { provider, exporter }
    }

    pub fn layer(&self) -> TracingLayer {
        TracingLayer::new().with_tracer_provider(&self.provider)
    }

    pub fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }

    pub fn only_span(&self) -> SpanData {
        let spans = self.spans();
        assert_eq!(spans.len(), 1, "expected exactly one span, got {spans:#?}");
        spans.into_iter().next().expect("one span")
    }
}

/// Sends one request through the app and reads the whole body (which ends the span).
pub async fn send(app: Router, request: Request<Body>) -> (Response<()>, String) {
    let response = app.oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub fn get(uri: &str) -> http::request::Builder {
    Request::builder().uri(uri)
}

pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// What an outbound call made now would carry: the current context injected with the default
/// propagator into a fresh header map.
pub fn outbound_headers() -> http::HeaderMap {
    let mut outbound = http::HeaderMap::new();
    service_tracing_middleware::propagation::inject(
        &*service_tracing_middleware::propagation::default_propagator(),
        &opentelemetry::Context::current(),
        &mut outbound,
    );
    outbound
}
