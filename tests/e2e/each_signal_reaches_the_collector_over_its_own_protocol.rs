//! `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` beats `OTEL_EXPORTER_OTLP_PROTOCOL`: spans go to the
//! collector's gRPC receiver and metrics to its OTLP/HTTP one, from one set-up. Were the
//! metrics sent over the traces' protocol, the HTTP receiver would refuse their gRPC frames.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

use crate::collector::{parse_metrics, Collector};
use crate::support::{serve, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_grpc_and_metrics_over_http_both_reach_the_collector() {
    let collector = Collector::start_with_metrics();
    let vars = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            collector.grpc_endpoint(),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "http/protobuf".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{}/v1/metrics", collector.http_endpoint()),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
        ("OTEL_LOGS_EXPORTER", "none".to_owned()),
    ];
    let (routes, guard) = service_tracing::ServiceTracing::builder("mixed")
        .env_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .init(Router::new().route("/ok", get(|| async { "ok" })))
        .expect("setup");
    let app = serve(routes).await;
    let response = reqwest::get(format!("{app}/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    guard.force_flush().expect("both exports are taken");

    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /ok"));
    assert_eq!(spans.iter().filter(|s| s.name == "GET /ok").count(), 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let points = parse_metrics(&collector.raw_output());
        if points.iter().any(|p| {
            p.name == "http.server.request.duration" && p.attr("http.route") == Some("/ok")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", collector.raw_output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = guard.export_stats();
    assert!(stats.exported >= 1 && stats.failed == 0, "{stats:?}");
    assert_eq!(guard.metrics().unwrap().export_errors(), 0);
    guard.shutdown().unwrap();
}
