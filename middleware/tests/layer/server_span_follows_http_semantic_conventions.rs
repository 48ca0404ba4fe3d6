use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::StatusCode;
use http_body_util::BodyExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use tower::ServiceExt;

use crate::support::{attr, get, send, Harness};

#[tokio::test]
async fn span_is_named_after_route_template_with_semconv_attributes() {
    let h = Harness::new();
    let app = Router::new()
        .route("/users/{id}", get_route(|| async { "hi" }))
        .layer(h.layer());
    let request = get("http://example.com:8080/users/42?token=secret&page=2")
        .header("user-agent", "curl/8")
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(app, request).await;
    assert_eq!(response.status(), StatusCode::OK);

    let span = h.only_span();
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    let expect = [
        ("http.request.method", "GET"),
        ("http.route", "/users/{id}"),
        ("url.path", "/users/42"),
        ("url.scheme", "http"),
        ("url.query", "token=REDACTED&page=REDACTED"),
        ("http.response.status_code", "200"),
        ("server.address", "example.com"),
        ("server.port", "8080"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "curl/8"),
    ];
    for (key, value) in expect {
        assert_eq!(attr(&span, key).as_deref(), Some(value), "attribute {key}");
    }
    assert!(attr(&span, "error.type").is_none());
    assert_eq!(
        attr(&span, "correlation.id").as_deref(),
        response.headers()["x-correlation-id"].to_str().ok()
    );
}

#[tokio::test]
async fn unmatched_route_is_named_by_method_only_and_unknown_methods_are_other() {
    let h = Harness::new();
    let app = Router::new()
        .route("/a", get_route(|| async { "a" }))
        .layer(h.layer());
    let (response, _) = send(app.clone(), get("/nope/123").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let span = h.only_span();
    assert_eq!(span.name, "GET");
    assert_eq!(span.status, Status::Unset, "4xx is not a server error");
    assert!(attr(&span, "http.route").is_none());

    h.exporter.reset();
    let request = get("/a").method("BREW").body(Body::empty()).unwrap();
    let _ = send(app, request).await;
    let span = h.only_span();
    assert_eq!(span.name, "HTTP");
    assert_eq!(
        attr(&span, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attr(&span, "http.request.method_original").as_deref(),
        Some("BREW")
    );
}

#[tokio::test]
async fn server_errors_set_error_status_and_type() {
    let h = Harness::new();
    let app = Router::new()
        .route(
            "/fail",
            get_route(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .layer(h.layer());
    let (response, _) = send(app, get("/fail").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let span = h.only_span();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr(&span, "error.type").as_deref(), Some("503"));
}

#[tokio::test]
async fn handler_spans_are_children_of_the_server_span() {
    let h = Harness::new();
    let tracer = h.provider.tracer("handler");
    let app = Router::new()
        .route(
            "/work",
            get_route(move || {
                let tracer = tracer.clone();
                async move {
                    tokio::task::yield_now().await;
                    // Opened after a suspension point: the context must be re-attached per poll.
                    tracer.in_span("db query", |_| ());
                    let current = opentelemetry::Context::current();
                    current.span().span_context().span_id().to_string()
                }
            }),
        )
        .layer(h.layer());
    let (_, seen_span_id) = send(app, get("/work").body(Body::empty()).unwrap()).await;
    let spans = h.spans();
    let server = spans
        .iter()
        .find(|s| s.name == "GET /work")
        .expect("server span");
    let child = spans
        .iter()
        .find(|s| s.name == "db query")
        .expect("child span");
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        server.span_context.trace_id()
    );
    assert_eq!(seen_span_id, server.span_context.span_id().to_string());
}

#[tokio::test]
async fn span_ends_when_the_body_ends_not_before() {
    let h = Harness::new();
    let app = Router::new()
        .route("/", get_route(|| async { "body" }))
        .layer(h.layer());
    let response = app
        .oneshot(get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(h.spans().is_empty(), "span ended before the body was sent");
    let _ = response.into_body().collect().await.unwrap();
    assert_eq!(h.spans().len(), 1);
}

#[tokio::test]
async fn untraced_routes_get_no_span_and_no_header() {
    let h = Harness::new();
    let app = Router::new()
        .route("/health", get_route(|| async { "ok" }))
        .route("/x", get_route(|| async { "ok" }))
        .layer(h.layer().untraced_route("/health"));
    let (response, _) = send(app.clone(), get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-correlation-id").is_none());
    assert!(h.spans().is_empty());
    let _ = send(app, get("/x").body(Body::empty()).unwrap()).await;
    assert_eq!(h.spans().len(), 1);
}
