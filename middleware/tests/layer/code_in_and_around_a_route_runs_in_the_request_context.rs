//! The layer makes the request's context current around its service's `call` only when that
//! call can run the application's code: not around axum's `Route` (which only boxes a future),
//! always around every poll. Code a route runs (a `route_layer` service's `call`, the handler)
//! and code in a service the layer wraps directly both see the request's trace.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::{Request, Response};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry::Context;
use tower::util::MapRequestLayer;
use tower::{Layer as _, ServiceExt as _};

use crate::support::{get, send, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn current_trace() -> TraceId {
    Context::current().span().span_context().trace_id()
}

fn traced_request() -> Request<Body> {
    get("/seen")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_route_layer_s_call_and_the_handler_see_the_request_trace() {
    let harness = Harness::new();
    let seen: Arc<Mutex<Vec<TraceId>>> = Arc::default();
    let in_call = seen.clone();
    let app = Router::new()
        .route("/seen", get_route(|| async { current_trace().to_string() }))
        // `MapRequest` runs its function in `call`, synchronously.
        .route_layer(MapRequestLayer::new(move |req: Request<Body>| {
            in_call.lock().unwrap().push(current_trace());
            req
        }))
        .layer(harness.layer());
    let (_, body) = send(app, traced_request()).await;
    assert_eq!(body, TRACE, "the handler");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [TraceId::from_hex(TRACE).unwrap()],
        "the route layer's call"
    );
}

#[tokio::test]
async fn a_service_the_layer_wraps_directly_sees_the_trace_in_its_call() {
    let harness = Harness::new();
    let seen: Arc<Mutex<Vec<TraceId>>> = Arc::default();
    let in_call = seen.clone();
    // Not a route: a plain service whose `call` reads the context before any poll.
    let service = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
    });
    let service = MapRequestLayer::new(move |req: Request<Body>| {
        in_call.lock().unwrap().push(current_trace());
        req
    })
    .layer(service);
    let traced = harness.layer().layer(service);
    let response = traced.oneshot(traced_request()).await.unwrap();
    drop(response);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [TraceId::from_hex(TRACE).unwrap()]
    );
}
