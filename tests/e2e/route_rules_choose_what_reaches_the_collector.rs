//! Per-route sampling rules decide which new traces the real collector receives, a caller's
//! sampled parent is still followed, the rules change while the service serves, and every
//! request is counted in the metrics whatever the rules decide.

use axum::routing::{get, post};
use axum::Router;
use service_tracing::sampling::{RouteRule, SampleAction, SamplingRules};
use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_choose_what_reaches_the_collector() {
    let collector = Collector::start();
    let routes = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/checkout", post(|| async { "paid" }))
        .route("/other", get(|| async { "other" }))
        .route("/done", get(|| async { "done" }));
    let rules = SamplingRules::new()
        .rule(RouteRule::new("/health", SampleAction::Never))
        .rule(RouteRule::new("/checkout", SampleAction::Always).method("POST"))
        .rule(RouteRule::new("/done", SampleAction::Always))
        .otherwise(SampleAction::Never);
    let (routes, guard) = options("shop")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .prometheus_route("/metrics")
        .sampling_rules(rules)
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, traceparent: Option<String>| {
        let mut request = client.request(method, format!("{app}{path}"));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        async move {
            let response = request.send().await.expect("answered");
            assert_eq!(response.status(), 200);
        }
    };
    for _ in 0..3 {
        send(reqwest::Method::GET, "/health", None).await;
    }
    for _ in 0..2 {
        send(reqwest::Method::POST, "/checkout", None).await;
        send(reqwest::Method::GET, "/other", None).await;
    }
    // A caller that sampled its trace: followed, whatever `otherwise` says.
    send(
        reqwest::Method::GET,
        "/other",
        Some(format!("00-{TRACE}-b7ad6b7169203331-01")),
    )
    .await;
    send(reqwest::Method::GET, "/done", None).await;
    guard.force_flush().expect("flush");
    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /done"));
    let named = |name: &str| spans.iter().filter(|s| s.name == name).count();
    assert_eq!(named("POST /checkout"), 2, "always");
    assert_eq!(named("GET /health"), 0, "never");
    assert_eq!(
        named("GET /other"),
        1,
        "only the one whose caller sampled it"
    );
    let followed = spans
        .iter()
        .find(|s| s.name == "GET /other")
        .expect("the followed trace");
    assert_eq!(followed.trace_id, TRACE);

    let sampling = guard.sampling().expect("rules were given");
    let stats = sampling.stats();
    assert_eq!((stats.rules[0].sampled, stats.rules[0].dropped), (0, 3));
    assert_eq!((stats.rules[1].sampled, stats.rules[1].dropped), (2, 0));
    assert_eq!((stats.otherwise.sampled, stats.otherwise.dropped), (0, 2));
    assert_eq!(stats.followed_parent, 1);

    // Changed while serving: health checks are now kept.
    sampling.replace(
        SamplingRules::new()
            .rule(RouteRule::new("/health", SampleAction::Always))
            .otherwise(SampleAction::Never),
    );
    send(reqwest::Method::GET, "/health", None).await;
    guard.force_flush().expect("flush");
    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /health"));
    assert_eq!(spans.iter().filter(|s| s.name == "GET /health").count(), 1);
    assert_eq!(sampling.stats().rules[0].sampled, 1);

    // Every request counted in the metrics, kept or not.
    let text = reqwest::get(format!("{app}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let health = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("http_route=\"/health\"")
        })
        .unwrap_or_else(|| panic!("no /health series:\n{text}"));
    assert!(health.ends_with(" 4"), "{health}");
    // The rules' figures are metrics too.
    let decided = "service_tracing_sampling_decisions_total{service_tracing_sampling_decision=\"sampled\",service_tracing_sampling_rule=\"/health\"} 1";
    assert!(text.lines().any(|l| l == decided), "{text}");
    assert!(
        text.lines().any(|l| l
            == "service_tracing_sampling_ratio{service_tracing_sampling_rule=\"otherwise\"} 0"),
        "{text}"
    );
}
