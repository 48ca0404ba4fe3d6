use std::convert::Infallible;

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::{Request, Response, StatusCode};
use opentelemetry::trace::Status;
use service_tracing_middleware::TracingLayer;
use tower::{Layer, ServiceExt};

use crate::support::{attr, get, send, Harness};

async fn boom() -> &'static str {
    tokio::task::yield_now().await;
    panic!("boom: order 42 not found")
}

#[tokio::test]
async fn panic_in_handler_future_is_a_500_with_exception_and_service_keeps_serving() {
    let h = Harness::new();
    let app = Router::new()
        .route("/panic", get_route(boom))
        .route("/ok", get_route(|| async { "fine" }))
        .layer(h.layer());
    let (response, _) = send(app.clone(), get("/panic").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().contains_key("x-correlation-id"));

    let span = h.only_span();
    assert_eq!(span.name, "GET /panic");
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(attr(&span, "error.type").as_deref(), Some("panic"));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("500")
    );
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    let get_attr = |k: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(get_attr("exception.type").as_deref(), Some("panic"));
    assert_eq!(
        get_attr("exception.message").as_deref(),
        Some("boom: order 42 not found")
    );

    h.exporter.reset();
    let (response, body) = send(app, get("/ok").body(Body::empty()).unwrap()).await;
    assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "fine"));
}

#[tokio::test]
async fn panic_in_call_before_a_future_exists_is_caught_too() {
    let h = Harness::new();
    let svc = tower::service_fn(
        |_req: Request<Body>| -> std::future::Ready<Result<Response<Body>, Infallible>> {
            panic!("sync boom")
        },
    );
    let traced = TracingLayer::new()
        .with_tracer_provider(&h.provider)
        .layer(svc);
    let response = traced
        .oneshot(get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    drop(response);
    let span = h.only_span();
    assert_eq!(attr(&span, "error.type").as_deref(), Some("panic"));
    assert!(span.events.iter().any(|e| e.name == "exception"));
}
