//! `SamplingRules::keep_errors` and `keep_slower_than`: with every new trace dropped by the
//! rules, the requests that fail or are slow still reach the real collector (their server span,
//! alone: head sampling told the callees "not sampled"), the others do not, a caller's "not
//! sampled" is followed, and error tracking counts each failing request once.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::health::HealthAccess;
use service_tracing::sampling::{SampleAction, SamplingRules};
use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_requests_of_dropped_traces_are_kept() {
    let collector = Collector::start();
    let routes = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/slow",
            get(|| async {
                // The work that makes it slow, not a synchronisation.
                tokio::time::sleep(Duration::from_millis(300)).await;
                "late"
            }),
        )
        .route(
            "/last",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x") }),
        );
    let rules = SamplingRules::new()
        .otherwise(SampleAction::Never)
        .keep_errors()
        .keep_slower_than(Duration::from_millis(200));
    let (routes, guard) = options("keeper")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .sampling_rules(rules)
        .health_route("/_tracing/health")
        .health_access(HealthAccess::bearer_token("t"))
        .prometheus_route("/metrics")
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;
    let client = reqwest::Client::new();
    let get = |path: &str, traceparent: Option<&str>| {
        let mut request = client.get(format!("{app}{path}"));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        async move { request.send().await.expect("answered").status() }
    };
    for _ in 0..3 {
        assert_eq!(get("/ok", None).await, 200);
    }
    assert_eq!(get("/fail", None).await, 503);
    assert_eq!(get("/slow", None).await, 200);
    // The caller said "not sampled": its decision, not this service's.
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert_eq!(get("/fail", Some(caller)).await, 503);
    assert_eq!(get("/last", None).await, 500);
    guard.force_flush().expect("flush");

    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /last"));
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("GET /ok"), 0, "{names:?}");
    assert_eq!(
        count("GET /fail"),
        1,
        "the caller's unsampled one is not kept: {names:?}"
    );
    assert_eq!(count("GET /slow"), 1, "{names:?}");
    assert_eq!(spans.len(), 3, "{names:?}");
    let failed = spans.iter().find(|s| s.name == "GET /fail").expect("kept");
    assert_eq!(failed.status_code, "Error");
    assert_eq!(failed.attr("http.response.status_code"), Some("503"));
    assert_eq!(failed.attr("http.route"), Some("/fail"));
    assert!(failed.is_root());
    assert_ne!(failed.trace_id, "0af7651916cd43dd8448eb211c80319c");
    let slow = spans.iter().find(|s| s.name == "GET /slow").expect("kept");
    assert!(
        slow.end_time_unix_nano - slow.start_time_unix_nano >= 200_000_000,
        "{slow:?}"
    );

    let stats = guard.sampling().expect("rules").stats();
    assert_eq!((stats.kept_errors, stats.kept_slow), (2, 1));
    assert_eq!(
        stats.otherwise.dropped, 6,
        "three fine, two failing, one slow"
    );

    // And in the health report.
    let report: serde_json::Value = get_json(&client, &format!("{app}/_tracing/health")).await;
    assert_eq!(report["sampling"]["kept_errors"], 2, "{report}");
    assert_eq!(report["sampling"]["kept_slow"], 1, "{report}");

    // And in the metrics.
    let text = client
        .get(format!("{app}/metrics"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    for (reason, n) in [("error", 2), ("slow", 1)] {
        let line = format!(
            "service_tracing_sampling_kept_total{{service_tracing_sampling_kept_reason=\"{reason}\"}} {n}"
        );
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }

    // Each failing request is one error, kept span or not.
    let errors = guard.errors().expect("error tracking");
    let failing: u64 = errors
        .groups()
        .iter()
        .filter(|g| g.operations().iter().any(|o| o == "GET /fail"))
        .map(|g| g.count())
        .sum();
    assert_eq!(failing, 2, "{:#?}", errors.groups());
    drop(guard);
}

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth("t")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}
