use http::HeaderName;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{
    FutureExt, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use reqwest_middleware::ClientBuilder;
use service_tracing_middleware::propagation::W3cTraceContext;
use service_tracing_middleware::CorrelationId;

use crate::support::{attr, header, plain_client, Harness, Server};

fn context_with_baggage_and_correlation_id() -> Context {
    Context::new()
        .with_baggage([KeyValue::new("tenant", "acme")])
        .with_value(CorrelationId::parse("abc").expect("a valid id"))
}

#[tokio::test]
async fn baggage_and_correlation_id_come_from_the_current_context() {
    let h = Harness::new();
    let server = Server::start().await;
    let response = h
        .client()
        .get(server.url("/"))
        .send()
        .with_context(context_with_baggage_and_correlation_id())
        .await
        .expect("a response");

    let echoed = response.headers();
    assert_eq!(
        header(echoed, "echo-baggage").as_deref(),
        Some("tenant=acme,correlation.id=abc"),
        "the correlation id travels in baggage too"
    );
    assert_eq!(
        header(echoed, "echo-x-correlation-id").as_deref(),
        Some("abc")
    );
    assert!(header(echoed, "echo-traceparent").is_some());
    let span = h.only_client_span();
    assert_eq!(attr(&span, "correlation.id").as_deref(), Some("abc"));
}

#[tokio::test]
async fn headers_set_by_the_caller_are_left_unchanged() {
    let h = Harness::new();
    let server = Server::start().await;
    let remote = SpanContext::new(
        TraceId::from(7),
        SpanId::from(8),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "1")]).expect("tracestate"),
    );
    let cx = context_with_baggage_and_correlation_id().with_remote_span_context(remote);
    let explicit = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = h
        .client()
        .get(server.url("/"))
        .header("traceparent", explicit)
        .header("x-correlation-id", "caller-set")
        .send()
        .with_context(cx)
        .await
        .expect("a response");

    let echoed = response.headers();
    assert_eq!(
        header(echoed, "echo-traceparent").as_deref(),
        Some(explicit)
    );
    assert_eq!(
        header(echoed, "echo-x-correlation-id").as_deref(),
        Some("caller-set")
    );
    assert_eq!(
        header(echoed, "echo-tracestate"),
        None,
        "our tracestate does not belong to the caller's traceparent"
    );
    assert_eq!(
        header(echoed, "echo-baggage").as_deref(),
        Some("tenant=acme,correlation.id=abc"),
        "the correlation id travels in baggage too"
    );
    let received = server.last_received();
    assert_eq!(received.get_all("traceparent").iter().count(), 1);
    assert_eq!(received.get_all("x-correlation-id").iter().count(), 1);
}

#[tokio::test]
async fn correlation_header_can_be_renamed_or_turned_off() {
    let h = Harness::new();
    let server = Server::start().await;
    let renamed = ClientBuilder::new(plain_client())
        .with(
            h.middleware()
                .with_correlation_header(Some(HeaderName::from_static("x-request-id"))),
        )
        .build();
    renamed
        .get(server.url("/"))
        .send()
        .with_context(context_with_baggage_and_correlation_id())
        .await
        .expect("a response");
    let received = server.last_received();
    assert_eq!(header(&received, "x-request-id").as_deref(), Some("abc"));
    assert_eq!(header(&received, "x-correlation-id"), None);

    let silent = ClientBuilder::new(plain_client())
        .with(h.middleware().with_correlation_header(None))
        .build();
    silent
        .get(server.url("/"))
        .send()
        .with_context(context_with_baggage_and_correlation_id())
        .await
        .expect("a response");
    let received = server.last_received();
    assert_eq!(header(&received, "x-correlation-id"), None);
    assert!(header(&received, "traceparent").is_some());
}

#[tokio::test]
async fn the_propagator_can_be_replaced() {
    let h = Harness::new();
    let server = Server::start().await;
    let client = ClientBuilder::new(plain_client())
        .with(h.middleware().with_propagator(W3cTraceContext::new()))
        .build();
    client
        .get(server.url("/"))
        .send()
        .with_context(context_with_baggage_and_correlation_id())
        .await
        .expect("a response");
    let received = server.last_received();
    assert!(header(&received, "traceparent").is_some());
    assert_eq!(header(&received, "baggage"), None, "trace context only");
    assert_eq!(
        header(&received, "x-correlation-id").as_deref(),
        Some("abc")
    );
}

#[tokio::test]
async fn the_global_propagator_writes_nothing_until_one_is_installed() {
    // No test in this binary installs a global propagator.
    let h = Harness::new();
    let server = Server::start().await;
    let client = ClientBuilder::new(plain_client())
        .with(h.middleware().with_global_propagator())
        .build();
    client
        .get(server.url("/"))
        .send()
        .with_context(context_with_baggage_and_correlation_id())
        .await
        .expect("a response");
    let received = server.last_received();
    assert_eq!(header(&received, "traceparent"), None);
    assert_eq!(header(&received, "baggage"), None);
    assert_eq!(
        header(&received, "x-correlation-id").as_deref(),
        Some("abc")
    );
    assert_eq!(h.client_spans().len(), 1);
}
