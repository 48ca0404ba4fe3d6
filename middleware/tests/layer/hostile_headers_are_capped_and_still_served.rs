//! Whatever volume of propagation headers a client sends, the request is served and what the
//! service forwards stays within the specifications' limits.

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::StatusCode;

use crate::support::{get, send, Harness};

fn app(h: &Harness) -> Router {
    Router::new()
        .route(
            "/",
            get_route(|| async {
                let outbound = crate::support::outbound_headers();
                let header = |name: &str| {
                    outbound
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                };
                format!(
                    "{}\n{}\n{}",
                    header("traceparent"),
                    header("tracestate"),
                    header("baggage")
                )
            }),
        )
        .layer(h.layer())
}

#[tokio::test]
async fn many_repeated_and_huge_headers_are_served_within_limits() {
    let h = Harness::new();
    let mut builder = get("/")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-correlation-id", "x".repeat(100_000));
    for i in 0..500 {
        builder = builder.header("baggage", format!("k{i}=v{i}"));
    }
    for i in 0..200 {
        builder = builder.header("tracestate", format!("k{i}=v"));
    }
    builder = builder.header("baggage", format!("huge={}", "x".repeat(100_000)));
    let (response, body) = send(app(&h), builder.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut lines = body.lines();
    let (traceparent, tracestate, baggage) = (
        lines.next().unwrap(),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "continued: {traceparent}"
    );
    assert!(
        tracestate.is_empty(),
        "over 32 list-members: the tracestate is dropped, got {tracestate}"
    );
    let members = baggage.split(',').count();
    assert!(members <= 64, "{members} baggage members");
    assert!(baggage.len() <= 8192, "{} bytes of baggage", baggage.len());
    assert!(
        !baggage.contains("huge="),
        "an over-long member is dropped whole"
    );
    let id = response.headers()["x-correlation-id"].to_str().unwrap();
    assert_eq!(
        id.len(),
        36,
        "the 100 KB correlation id is replaced, not echoed"
    );
}

#[tokio::test]
async fn a_hundred_kilobyte_traceparent_starts_a_fresh_trace() {
    let h = Harness::new();
    let request = get("/")
        .header("traceparent", format!("00-{}", "a".repeat(100_000)))
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(app(&h), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let span = h.only_span();
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert!(body.starts_with(&format!("00-{}-", span.span_context.trace_id())));
}
