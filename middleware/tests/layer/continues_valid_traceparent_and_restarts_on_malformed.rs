use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::StatusCode;
use opentelemetry::trace::{SpanId, TraceId};

use crate::support::{get, send, Harness};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

fn app(h: &Harness) -> Router {
    Router::new()
        .route("/", get_route(|| async { "ok" }))
        .layer(h.layer())
}

#[tokio::test]
async fn valid_sampled_traceparent_is_continued() {
    let h = Harness::new();
    let request = get("/")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=abc")
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(app(&h), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let span = h.only_span();
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(span.parent_span_is_remote);
    assert!(span.span_context.is_sampled());
    assert_eq!(span.span_context.trace_state().header(), "vendor=abc");
}

#[tokio::test]
async fn unsampled_flag_is_honoured_by_a_parent_based_sampler() {
    let h = Harness::new();
    let request = get("/")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-00"))
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(app(&h), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-correlation-id"));
    assert!(
        h.spans().is_empty(),
        "an unsampled parent must not be recorded"
    );
}

#[tokio::test]
async fn malformed_traceparents_start_a_fresh_trace_and_succeed() {
    let cases = [
        format!("00-{}-{PARENT}-01", &TRACE[1..]),
        format!("00-{TRACE}0-{PARENT}-01"),
        format!("00-{TRACE}-{}-01", &PARENT[1..]),
        format!("00-{TRACE}-{PARENT}-1"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("00_{TRACE}_{PARENT}_01"),
        format!("00-{TRACE}-{PARENT}-01-"),
        "garbage".to_owned(),
    ];
    for value in cases {
        let h = Harness::new();
        let request = get("/")
            .header("traceparent", value.as_str())
            .body(Body::empty())
            .unwrap();
        let (response, _) = send(app(&h), request).await;
        assert_eq!(response.status(), StatusCode::OK, "{value}");
        let span = h.only_span();
        assert_ne!(
            span.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap(),
            "{value}"
        );
        assert_eq!(span.parent_span_id, SpanId::INVALID, "{value}");
    }
}

#[tokio::test]
async fn non_utf8_and_huge_headers_are_harmless() {
    let h = Harness::new();
    let request = get("/")
        .header(
            "traceparent",
            http::HeaderValue::from_bytes(b"00-\xff\xfe").unwrap(),
        )
        .header("baggage", "k=v,".repeat(5_000))
        .header("tracestate", "a=b,".repeat(5_000))
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(app(&h), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.only_span().parent_span_id, SpanId::INVALID);
}
