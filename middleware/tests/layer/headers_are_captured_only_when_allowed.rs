//! Opt-in header capture: allow-listed request and response headers become string-array
//! attributes with lowercase names; credential headers never do, even when listed; nothing is
//! captured by default or for an unsampled request; baggage members are not copied onto spans.

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::{Sampler, SpanData};

use crate::support::{get, send, Harness};

fn header_attributes(span: &SpanData) -> Vec<(String, Value)> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str().contains(".header."))
        .map(|kv| (kv.key.as_str().to_owned(), kv.value.clone()))
        .collect()
}

fn app(h: &Harness, layer: service_tracing_middleware::TracingLayer) -> Router {
    let _ = h;
    Router::new()
        .route(
            "/",
            get_route(|| async {
                (
                    [
                        ("x-cache", "HIT"),
                        ("set-cookie", "session=s3cr3t"),
                        ("x-upstream-token", "t0k3n"),
                    ],
                    "ok",
                )
            }),
        )
        .layer(layer)
}

fn request_with_secrets() -> http::Request<Body> {
    get("http://example.com/")
        .header("X-Tenant", "acme")
        .header("x-tenant", "beta")
        .header("authorization", "Bearer planted-bearer-secret")
        .header("proxy-authorization", "Basic cGxhbnRlZDpzZWNyZXQ=")
        .header("cookie", "sid=planted-cookie-secret")
        .header("x-api-key", "planted-api-key")
        .header("baggage", "password=planted-baggage-secret,tenant=acme")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn allow_listed_headers_are_string_arrays_and_credentials_never_appear() {
    let h = Harness::new();
    let layer = h
        .layer()
        .capture_request_headers([
            "X-Tenant",
            "Authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "x-missing",
        ])
        .capture_response_headers(["x-cache", "set-cookie", "x-upstream-token"]);
    send(app(&h, layer), request_with_secrets()).await;

    let span = h.only_span();
    let captured = header_attributes(&span);
    assert_eq!(
        captured,
        vec![
            (
                "http.request.header.x-tenant".to_owned(),
                Value::Array(Array::String(vec!["acme".into(), "beta".into()]))
            ),
            (
                "http.response.header.x-cache".to_owned(),
                Value::Array(Array::String(vec!["HIT".into()]))
            ),
        ]
    );
    let everything = format!("{span:?}");
    for secret in [
        "planted-bearer-secret",
        "cGxhbnRlZDpzZWNyZXQ=",
        "planted-cookie-secret",
        "planted-api-key",
        "planted-baggage-secret",
        "s3cr3t",
        "t0k3n",
    ] {
        assert!(!everything.contains(secret), "{secret} on the span");
    }
}

#[tokio::test]
async fn nothing_is_captured_by_default_or_for_unsampled_requests() {
    let h = Harness::new();
    send(app(&h, h.layer()), request_with_secrets()).await;
    assert!(header_attributes(&h.only_span()).is_empty());

    let unsampled = Harness::with_sampler(Sampler::AlwaysOff);
    let layer = unsampled
        .layer()
        .capture_request_headers(["x-tenant"])
        .capture_response_headers(["x-cache"]);
    let (response, _) = send(app(&unsampled, layer), request_with_secrets()).await;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(unsampled.spans().is_empty());
}
