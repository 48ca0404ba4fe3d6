//! `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` and `..._LOGS_PROTOCOL` beat
//! `OTEL_EXPORTER_OTLP_PROTOCOL`: from one set-up, spans go to one of the collector's receivers
//! and metrics (and error log records) to the other. Were a signal sent over another's
//! protocol, its receiver would refuse the frames.

use std::time::{Duration, Instant};

use axum::extract::Path;
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

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

/// The reverse, from the base endpoint: `OTEL_EXPORTER_OTLP_ENDPOINT` is the gRPC receiver,
/// taken as it is (no `/v1/metrics`, no `/v1/logs`) by metrics and log records, which their
/// own variables send over gRPC while the shared one says HTTP/protobuf; spans go over
/// HTTP/protobuf to their own endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_http_and_metrics_and_log_records_over_grpc_from_the_base_endpoint() {
    let collector = Collector::start_with_metrics();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/v1/traces", collector.http_endpoint()),
        ),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
    ];
    let (routes, guard) = service_tracing::ServiceTracing::builder("mixed")
        .env_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .init(Router::new().route("/orders/{id}", get(order)))
        .expect("setup");
    let app = serve(routes).await;
    let response = reqwest::get(format!("{app}/orders/7")).await.unwrap();
    assert_eq!(response.status(), 500);
    guard.force_flush().expect("every export is taken");

    collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /orders/{id}"));
    let logs = collector.wait_for_logs(WAIT, |l| !l.is_empty());
    assert!(
        logs[0].body.starts_with("new error group: panic"),
        "{logs:#?}"
    );
    let deadline = Instant::now() + WAIT;
    while !parse_metrics(&collector.raw_output()).iter().any(|p| {
        p.name == "http.server.request.duration" && p.attr("http.route") == Some("/orders/{id}")
    }) {
        assert!(Instant::now() < deadline, "{}", collector.raw_output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = guard.errors().unwrap();
    while errors.alert_stats().logs_exported == 0 {
        assert!(Instant::now() < deadline, "{:?}", errors.alert_stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alerts = errors.alert_stats();
    assert_eq!(
        (alerts.logs_exported, alerts.logs_failed),
        (1, 0),
        "{alerts:?}"
    );
    let metrics = guard.metrics().unwrap().export_stats();
    assert!(metrics.exported > 0 && metrics.failed == 0, "{metrics:?}");
    assert_eq!(guard.export_stats().failed, 0);
    guard.shutdown().unwrap();
}
