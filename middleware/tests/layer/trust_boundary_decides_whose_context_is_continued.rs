use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::trace::{SpanId, TraceId};
use service_tracing_middleware::TrustIncoming;

use crate::support::{get, send, Harness};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// The handler reports the baggage keys an outbound call would carry.
fn app(h: &Harness, trust: TrustIncoming) -> Router {
    Router::new()
        .route(
            "/",
            get_route(|| async {
                let outbound = crate::support::outbound_headers();
                let baggage = outbound
                    .get("baggage")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let mut keys: Vec<&str> = baggage
                    .split(',')
                    .filter_map(|m| m.split('=').next())
                    .collect();
                keys.sort();
                keys.join(",")
            }),
        )
        .layer(h.layer().trust_incoming(trust))
}

fn incoming(peer: &str) -> http::Request<Body> {
    let mut req = get("/")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("baggage", "tenant=acme,correlation.id=from-baggage")
        .body(Body::empty())
        .unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

#[tokio::test]
async fn never_starts_a_new_trace_linked_to_the_incoming_one_and_drops_baggage() {
    let h = Harness::new();
    let (response, baggage_keys) = send(
        app(&h, TrustIncoming::never()),
        incoming("203.0.113.9:4000"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let span = h.only_span();
    assert_ne!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    let link = span
        .links
        .iter()
        .next()
        .expect("a link to the incoming context");
    assert_eq!(
        link.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(
        link.span_context.span_id(),
        SpanId::from_hex(PARENT).unwrap()
    );
    // Only our own correlation id leaves in baggage; the caller's entries are gone.
    assert_eq!(baggage_keys, "correlation.id");
    assert_ne!(response.headers()["x-correlation-id"], "from-baggage");
}

#[tokio::test]
async fn trusted_networks_continue_and_others_do_not() {
    let trust = TrustIncoming::from_networks(["10.0.0.0/8"]).unwrap();
    let h = Harness::new();
    let (_, keys) = send(app(&h, trust.clone()), incoming("10.2.3.4:4000")).await;
    let span = h.only_span();
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert!(span.links.is_empty());
    assert_eq!(keys, "correlation.id,tenant");

    let h = Harness::new();
    let _ = send(app(&h, trust), incoming("192.0.2.1:4000")).await;
    assert_ne!(
        h.only_span().span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
}

#[tokio::test]
async fn a_configured_header_grants_trust() {
    let h = Harness::new();
    let mut req = incoming("192.0.2.1:4000");
    req.headers_mut()
        .insert("x-internal", http::HeaderValue::from_static("1"));
    let _ = send(app(&h, TrustIncoming::when_header("x-internal")), req).await;
    assert_eq!(
        h.only_span().span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
}

#[tokio::test]
async fn traceresponse_names_the_trace_and_server_span_when_enabled() {
    let h = Harness::new();
    let app = Router::new()
        .route("/", get_route(|| async { "ok" }))
        .layer(h.layer().with_traceresponse(true));
    let req = get("/")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(app, req).await;
    let span = h.only_span();
    assert_eq!(
        response.headers()["traceresponse"],
        format!("00-{TRACE}-{}-01", span.span_context.span_id()).as_str()
    );

    let h = Harness::new();
    let plain = Router::new()
        .route("/", get_route(|| async { "ok" }))
        .layer(h.layer());
    let (response, _) = send(plain, get("/").body(Body::empty()).unwrap()).await;
    assert!(
        response.headers().get("traceresponse").is_none(),
        "off by default"
    );
}
