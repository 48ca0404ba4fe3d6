//! Secrets planted where they usually leak (credential headers, the query, baggage, a panic
//! message, a `record_error` message, the fields and message of `tracing::error!`) never
//! reach the real collector: not in the spans it receives, not in the error groups' log
//! records, not anywhere in its output. Allow-listed headers do arrive, as string arrays.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::AlertRule;
use service_tracing::Protocol;

use crate::collector::{span_named, Collector};
use crate::support::{options, serve, WAIT};

/// Every planted secret; none may appear in the collector's output.
const SECRETS: [&str; 17] = [
    "planted-header-bearer-1",
    "planted-cookie",
    "planted-api-key",
    "planted-query-key",
    "dave@example.com",
    "planted-baggage",
    "4111 1111 1111 1111",
    "PLANTEDpanicTOKEN123",
    "planted-record-pw",
    "alice@example.com",
    "planted-field-pw",
    "carol@example.com",
    "planted-log-token",
    "AKIAIOSFODNN7EXAMPLE",
    "s3ssion-planted",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJl",
    "planted-hook-token",
];

async fn panics() -> &'static str {
    panic!("charge failed for card 4111 1111 1111 1111 with Bearer PLANTEDpanicTOKEN123");
}

#[derive(Debug)]
struct Rejected;

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream rejected password=planted-record-pw for alice@example.com")
    }
}

impl std::error::Error for Rejected {}

async fn records() -> StatusCode {
    service_tracing::record_error(&Rejected);
    StatusCode::BAD_GATEWAY
}

async fn logs() -> ([(&'static str, &'static str); 2], &'static str) {
    tracing::error!(
        password = "planted-field-pw",
        user.email = "carol@example.com",
        aws = "AKIAIOSFODNN7EXAMPLE",
        "login failed with token: planted-log-token"
    );
    (
        [("x-cache", "MISS"), ("set-cookie", "sid=s3ssion-planted")],
        "logged",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_reach_the_collector() {
    let collector = Collector::start();
    let (routes, guard) = options("vault")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .alert_rule(AlertRule::new_group())
        .capture_request_headers(["x-tenant", "authorization", "cookie", "x-api-key"])
        .capture_response_headers(["x-cache", "set-cookie"])
        // A span hook's attributes leave through the same redaction as the layer's.
        .span_hook(
            |request: &service_tracing::RequestHead<'_>,
             span: &opentelemetry::trace::SpanRef<'_>| {
                let tenant = request
                    .headers
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok());
                span.set_attribute(opentelemetry::KeyValue::new(
                    "app.tenant",
                    tenant.unwrap_or("none").to_owned(),
                ));
                span.set_attribute(opentelemetry::KeyValue::new(
                    "app.session_token",
                    "planted-hook-token",
                ));
            },
        )
        .init(
            Router::new()
                .route("/panics", get(panics))
                .route("/records", get(records))
                .route("/logs", get(logs)),
        )
        .expect("setup");
    let app = serve(routes).await;
    let caller = reqwest::Client::new();
    for (path, status) in [("/panics", 500), ("/records", 502), ("/logs", 200)] {
        let response = caller
            .get(format!(
                "{app}{path}?api_key=planted-query-key&email=dave@example.com"
            ))
            .header("x-tenant", "acme")
            .header("authorization", "Bearer planted-header-bearer-1")
            .header("cookie", "sid=planted-cookie")
            .header("x-api-key", "planted-api-key")
            .header(
                "x-jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJl",
            )
            .header("baggage", "password=planted-baggage,tenant=acme")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        ["GET /panics", "GET /records", "GET /logs"]
            .iter()
            .all(|name| s.iter().any(|span| span.name == *name))
    });
    let logs = collector.wait_for_logs(WAIT, |l| {
        l.iter()
            .filter(|r| r.body.starts_with("new error group"))
            .count()
            >= 3
    });
    guard.shutdown().unwrap();

    // What did arrive, redacted.
    let panicked = span_named(&spans, "GET /panics");
    let exception = panicked
        .events
        .iter()
        .find(|e| e.attr("exception.type") == Some("panic"))
        .expect("panic event");
    assert_eq!(
        exception.attr("exception.message"),
        Some("charge failed for card [REDACTED] with Bearer [REDACTED]"),
        "{panicked:#?}"
    );
    assert!(
        panicked
            .attr("http.request.header.x-tenant")
            .is_some_and(|v| v.contains("acme")),
        "{panicked:#?}"
    );
    assert_eq!(
        panicked.attr("app.tenant"),
        Some("acme"),
        "the builder's span hook ran"
    );
    let recorded = span_named(&spans, "GET /records");
    assert_eq!(
        recorded
            .event("exception")
            .and_then(|e| e.attr("exception.message")),
        Some("upstream rejected password=[REDACTED] for [REDACTED]"),
        "{recorded:#?}"
    );
    let logged = span_named(&spans, "GET /logs");
    assert!(
        logged
            .attributes
            .contains_key("http.response.header.x-cache"),
        "{logged:#?}"
    );
    for span in &spans {
        for key in span.attributes.keys() {
            assert!(
                !key.contains("authorization")
                    && !key.contains("cookie")
                    && !key.contains("api-key"),
                "{key} captured: {span:#?}"
            );
        }
    }
    assert!(
        logs.iter().any(|l| l.body.contains("[REDACTED]")),
        "{logs:#?}"
    );

    // And nothing planted anywhere in what the collector printed (spans, events, log records).
    let output = collector.raw_output();
    for secret in SECRETS {
        assert!(
            !output.contains(secret),
            "{secret} reached the collector:\n{output}"
        );
    }
}
