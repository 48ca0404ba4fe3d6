//! One traced client: `service_tracing::traced_client()` and the client crate's
//! `TracingMiddleware::new()` both speak the propagators set-up chose, read through the slot
//! set-up records them in, against a real loopback server that reports what it received.

use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{
    FutureExt, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::{ServiceTracing, TracesExporter, TracingMiddleware};

use crate::support::serve;

/// Every header a propagator of ours can write.
const CONTEXT_HEADERS: [&str; 9] = [
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "uber-trace-id",
    "uberctx-tenant",
];

async fn echo(headers: HeaderMap) -> Json<serde_json::Value> {
    let received: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| CONTEXT_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").into()))
        .collect();
    Json(received.into())
}

/// A sampled remote parent with baggage, as a handler's context would hold.
fn parent() -> Context {
    let sc = SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
        SpanId::from(0xb7ad_6b71_6920_3331),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    Context::new()
        .with_remote_span_context(sc)
        .with_baggage([KeyValue::new("tenant", "acme")])
}

/// The context headers `client` sent to a fresh echo server, by name.
async fn sent_by(client: &ClientWithMiddleware) -> Vec<String> {
    let url = serve(Router::new().route("/", get(echo))).await;
    let received: serde_json::Map<String, serde_json::Value> = client
        .get(&url)
        .send()
        .with_context(parent())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = received.keys().cloned().collect();
    names.sort();
    names
}

/// Both clients: the facade's `traced_client()` and a chain built with `TracingMiddleware::new()`.
async fn both_send(options: ServiceTracing) -> (Vec<String>, Vec<String>) {
    let (_routes, _guard) = options
        .exporter(TracesExporter::None)
        .init(Router::<()>::new())
        .expect("setup");
    let facade = service_tracing::traced_client();
    let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new())
        .build();
    (sent_by(&facade).await, sent_by(&chain).await)
}

#[tokio::test]
async fn b3_from_the_builder_is_what_both_clients_send() {
    let (facade, chain) = both_send(
        ServiceTracing::builder("svc")
            .env_lookup(|_| None)
            .propagators(["b3"]),
    )
    .await;
    assert_eq!(facade, ["b3"], "service_tracing::traced_client()");
    assert_eq!(chain, ["b3"], "TracingMiddleware::new()");
}

#[tokio::test]
async fn otel_propagators_none_makes_both_clients_send_no_context() {
    let (facade, chain) = both_send(
        ServiceTracing::builder("svc")
            .env_lookup(|name| (name == "OTEL_PROPAGATORS").then(|| "none".to_owned())),
    )
    .await;
    assert!(
        facade.is_empty(),
        "service_tracing::traced_client() sent {facade:?}"
    );
    assert!(chain.is_empty(), "TracingMiddleware::new() sent {chain:?}");
}

#[tokio::test]
async fn the_default_is_w3c_trace_context_and_baggage_for_both_clients() {
    let (facade, chain) = both_send(ServiceTracing::builder("svc").env_lookup(|_| None)).await;
    assert_eq!(facade, ["baggage", "traceparent"]);
    assert_eq!(chain, ["baggage", "traceparent"]);
}

#[tokio::test]
async fn jaeger_and_b3multi_from_the_environment_reach_both_clients() {
    let (facade, chain) = both_send(
        ServiceTracing::builder("svc")
            .env_lookup(|name| (name == "OTEL_PROPAGATORS").then(|| "jaeger,b3multi".to_owned())),
    )
    .await;
    let expected = [
        "uber-trace-id",
        "uberctx-tenant",
        "x-b3-sampled",
        "x-b3-spanid",
        "x-b3-traceid",
    ];
    assert_eq!(facade, expected);
    assert_eq!(chain, expected);
}
