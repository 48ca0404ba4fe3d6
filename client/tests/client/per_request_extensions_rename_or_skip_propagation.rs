use opentelemetry::trace::FutureExt;
use opentelemetry::Context;
use service_tracing_client::{DisablePropagation, SpanName};
use service_tracing_middleware::CorrelationId;

use crate::support::{attr, header, Harness, Server};

#[tokio::test]
async fn span_name_extension_renames_the_span() {
    let h = Harness::new();
    let server = Server::start().await;
    h.client()
        .get(server.url("/orders/42"))
        .with_extension(SpanName("GET orders-api".into()))
        .send()
        .await
        .expect("a response");

    let span = h.only_client_span();
    assert_eq!(span.name, "GET orders-api");
    assert_eq!(attr(&span, "http.request.method").as_deref(), Some("GET"));
}

#[tokio::test]
async fn disable_propagation_sends_no_context_headers_but_still_records_the_span() {
    let h = Harness::new();
    let server = Server::start().await;
    let cx = Context::new().with_value(CorrelationId::parse("abc").expect("a valid id"));
    let response = h
        .client()
        .get(server.url("/third-party"))
        .with_extension(DisablePropagation)
        .send()
        .with_context(cx)
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);

    let received = server.last_received();
    for name in ["traceparent", "tracestate", "baggage", "x-correlation-id"] {
        assert_eq!(header(&received, name), None, "{name} was sent");
    }
    let span = h.only_client_span();
    assert_eq!(attr(&span, "correlation.id").as_deref(), Some("abc"));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("200")
    );
}
