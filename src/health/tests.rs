use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;
use crate::{Protocol, ServiceTracing, TracesExporter};

fn options() -> ServiceTracing {
    ServiceTracing::builder("health-svc")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .health_route("/_tracing/health")
}

async fn get_health(app: &Router, peer: Option<&str>, token: Option<&str>) -> (u16, String) {
    let mut request = http::Request::get("/_tracing/health");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request.body(Body::empty()).expect("request");
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn loopback_reads_the_report_and_other_peers_get_403_and_nothing_else() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, guard) = options()
        .exporter(TracesExporter::None)
        .init(app)
        .expect("setup");
    let (status, body) = get_health(&app, Some("127.0.0.1:5000"), None).await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["status"], "ok");
    assert_eq!(report["service"], "health-svc");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["error_storage"], "local");
    assert!(
        report["traces"]["consecutive_failures"].is_u64(),
        "{report}"
    );
    assert!(report["uptime_seconds"].is_u64());
    assert_eq!(get_health(&app, Some("[::1]:5000"), None).await.0, 200);

    for peer in [Some("10.1.2.3:5000"), None] {
        let (status, body) = get_health(&app, peer, None).await;
        assert_eq!((status, body.as_str()), (403, ""), "{peer:?}");
    }
    drop(guard);
}

#[tokio::test]
async fn a_bearer_token_opens_it_to_anyone_who_has_it() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, _guard) = options()
        .exporter(TracesExporter::None)
        .health_access(HealthAccess::bearer_token("s3cret"))
        .init(app)
        .expect("setup");
    assert_eq!(
        get_health(&app, Some("10.1.2.3:5000"), Some("s3cret"))
            .await
            .0,
        200
    );
    for token in [None, Some("s3cre"), Some("s3cret!"), Some("")] {
        let (status, body) = get_health(&app, Some("127.0.0.1:5000"), token).await;
        assert_eq!((status, body.as_str()), (401, ""), "{token:?}");
    }
    assert_eq!(
        get_health(&app, None, Some("s3cret")).await.0,
        200,
        "a token needs no known peer"
    );
    let closed = HealthAccess::bearer_token("");
    let req = http::Request::get("/")
        .header("authorization", "Bearer ")
        .body(Body::empty());
    assert_eq!(
        closed.refuses(&req.expect("request")),
        Some(StatusCode::UNAUTHORIZED),
        "an empty token lets no one in"
    );
}

#[tokio::test]
async fn networks_open_it_to_their_peers_only() {
    let access = HealthAccess::networks(["10.0.0.0/8"]).expect("valid");
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, _guard) = options()
        .exporter(TracesExporter::None)
        .health_access(access)
        .init(app)
        .expect("setup");
    assert_eq!(get_health(&app, Some("10.9.9.9:1"), None).await.0, 200);
    assert_eq!(get_health(&app, Some("127.0.0.1:1"), None).await.0, 403);
    let bad = HealthAccess::networks(["10.0.0.0/99"]).expect_err("invalid");
    assert!(bad.to_string().contains("health_access"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_export_failing_longer_than_allowed_answers_503() {
    // Nothing listens on the discard port: every export fails at once.
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, guard) = options()
        .otlp_endpoint("http://127.0.0.1:9")
        .otlp_protocol(Protocol::HttpProtobuf)
        .otlp_timeout(Duration::from_millis(300))
        .health_unhealthy_after(Duration::ZERO)
        .init(app)
        .expect("setup");
    let (status, _) = get_health(&app, Some("127.0.0.1:1"), None).await;
    assert_eq!(status, 200, "nothing exported yet, nothing failed");
    let response = app
        .clone()
        .oneshot(
            http::Request::get("/")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    drop(response);
    let flushed = tokio::task::spawn_blocking(move || {
        let result = guard.force_flush();
        (result, guard)
    })
    .await
    .expect("joined");
    assert!(flushed.0.is_err(), "the export failed");
    let (status, body) = get_health(&app, Some("127.0.0.1:1"), None).await;
    assert_eq!(status, 503, "{body}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["status"], "unhealthy");
    assert!(
        report["traces"]["consecutive_failures"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(
        report["traces"]["last_success_unix_ms"].is_null(),
        "{report}"
    );
    drop(flushed.1);
}

#[test]
fn a_health_route_that_is_no_path_fails_setup() {
    let app: Router = Router::new();
    let error = ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .health_route("health")
        .init(app)
        .expect_err("not a path");
    assert!(error.to_string().contains("health_route"), "{error}");
}

#[cfg(feature = "cpu-profile")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_profiles_are_served_one_at_a_time_behind_the_same_access() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, _guard) = options()
        .exporter(TracesExporter::None)
        .init(app)
        .expect("setup");
    let get_profile = |query: &'static str, peer: &'static str| {
        let app = app.clone();
        async move {
            let mut request = http::Request::get(format!("/_tracing/health/profile{query}"))
                .body(Body::empty())
                .expect("request");
            let addr: SocketAddr = peer.parse().expect("address");
            request.extensions_mut().insert(ConnectInfo(addr));
            let response = app.oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("").to_owned());
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, kind, body.len())
        }
    };
    assert_eq!(get_profile("?seconds=1", "10.0.0.1:1").await.0, 403);
    for bad in ["?seconds=0", "?seconds=61", "?seconds=x", "?format=png"] {
        assert_eq!(get_profile(bad, "127.0.0.1:1").await.0, 400, "{bad}");
    }
    // Two at once: one runs, the other is refused with 409 at once.
    let (first, second) = tokio::join!(
        get_profile("?seconds=1&format=pprof", "127.0.0.1:1"),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            get_profile("?seconds=1", "127.0.0.1:1").await
        }
    );
    assert_eq!(first.0, 200);
    assert_eq!(first.1.as_deref(), Some("application/octet-stream"));
    assert!(first.2 > 0, "a pprof body");
    assert_eq!(second.0, 409);
    let svg = get_profile("?seconds=1", "127.0.0.1:1").await;
    assert_eq!((svg.0, svg.1.as_deref()), (200, Some("image/svg+xml")));
}

#[tokio::test]
async fn the_report_carries_the_sampling_rules_figures() {
    use crate::sampling::{RouteRule, SampleAction, SamplingRules};
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let (app, _guard) = options()
        .exporter(TracesExporter::None)
        .sampling_rules(
            SamplingRules::new()
                .rule(RouteRule::new("/health", SampleAction::Never))
                .otherwise(SampleAction::PerSecond(5.0)),
        )
        .init(app)
        .expect("setup");
    for _ in 0..2 {
        let request = http::Request::get("/health")
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            app.clone().oneshot(request).await.expect("ok").status(),
            200
        );
    }
    let (status, body) = get_health(&app, Some("127.0.0.1:1"), None).await;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&body).expect("json");
    let sampling = &report["sampling"];
    assert_eq!(sampling["rules"][0]["rule"], "/health", "{report}");
    assert_eq!(sampling["rules"][0]["dropped"], 2, "{report}");
    assert_eq!(sampling["otherwise"]["target_per_second"], 5.0, "{report}");
    assert!(
        sampling["rules"][0]["target_per_second"].is_null(),
        "{report}"
    );
}
