//! The metrics push and the error log records are retried as spans are (the one loop of
//! `Transport::deliver`, after the OTLP specification): a throttled or unavailable backend gets
//! the request again until it takes it; a refusal for good is not sent again.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, Window};
use service_tracing::metrics::MetricsExporter;
use service_tracing::{Protocol, TracesExporter};

use crate::collector::{parse_metrics, Collector};
use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::{options, serve, WAIT};

/// Server histogram points of `/ok` the collector printed so far.
fn ok_points(collector: &Collector) -> usize {
    parse_metrics(&collector.raw_output())
        .iter()
        .filter(|p| p.name == "http.server.request.duration" && p.attr("http.route") == Some("/ok"))
        .count()
}

/// Metrics only, through a proxy answering 429 (`Retry-After: 0`), 503, then 400, then
/// forwarding: the first flush is retried twice and then refused for good (one error, no
/// third retry); the second flush reaches the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_metric_exports_are_sent_again_and_a_refusal_is_not() {
    let collector = Collector::start_with_metrics();
    let proxy = OtlpProxy::start(
        Some(collector.http_port()),
        vec![
            Answer::Status(429, vec![("retry-after", "0")]),
            Answer::Status(503, Vec::new()),
            Answer::Status(400, Vec::new()),
        ],
        Answer::Forward,
    )
    .await;
    let (routes, guard) = options("svc")
        .exporter(TracesExporter::None)
        .metrics_exporter(MetricsExporter::Otlp)
        .otlp_endpoint(proxy.endpoint())
        .otlp_protocol(Protocol::HttpProtobuf)
        .metric_export_interval(Duration::from_secs(3600))
        .init(Router::new().route("/ok", get(|| async { "ok" })))
        .expect("setup");
    let app = serve(routes).await;
    let response = reqwest::get(format!("{app}/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = guard.metrics().unwrap();

    let _ = guard.force_flush(); // 429, 503, 400: fails
    let statuses: Vec<u16> = proxy.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 400]);
    assert!(proxy.seen().iter().all(|r| r.path == "/v1/metrics"));
    assert_eq!((metrics.export_retries(), metrics.export_errors()), (2, 1));
    assert_eq!(ok_points(&collector), 0);

    guard.force_flush().expect("the second flush is taken");
    let statuses: Vec<u16> = proxy.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 400, 200]);
    assert_eq!((metrics.export_retries(), metrics.export_errors()), (2, 1));
    let deadline = Instant::now() + WAIT;
    while ok_points(&collector) == 0 {
        assert!(Instant::now() < deadline, "{}", collector.raw_output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    guard.shutdown().unwrap();
}

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

/// Spans go straight to the collector; log records go to their own endpoint
/// (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`), a proxy answering 503 then 429 before forwarding:
/// both records arrive, once each, and none is counted as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_log_record_exports_are_sent_again_and_arrive_once() {
    let collector = Collector::start();
    let proxy = OtlpProxy::start(
        Some(collector.http_port()),
        vec![
            Answer::Status(503, Vec::new()),
            Answer::Status(429, vec![("retry-after", "0")]),
        ],
        Answer::Forward,
    )
    .await;
    let logs_endpoint = format!("{}/v1/logs", proxy.endpoint());
    let (routes, guard) = options("svc")
        .env_lookup(move |name| {
            (name == "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT").then(|| logs_endpoint.clone())
        })
        .otlp_endpoint(collector.http_endpoint())
        .otlp_protocol(Protocol::HttpProtobuf)
        .metrics_exporter(MetricsExporter::None)
        .alert_rule(AlertRule::count(2, Window::OneMinute))
        .init(Router::new().route("/orders/{id}", get(order)))
        .expect("setup");
    let app = serve(routes).await;
    for n in 1..=3 {
        let response = reqwest::get(format!("{app}/orders/{n}")).await.unwrap();
        assert_eq!(response.status(), 500);
    }
    guard.force_flush().expect("flush");
    let logs = collector.wait_for_logs(WAIT, |l| l.len() >= 2);
    let stats = guard.errors().unwrap().alert_stats();
    guard.shutdown().unwrap();

    let seen = proxy.seen();
    let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [503, 429, 200], "{seen:#?}");
    assert!(statuses[3..].iter().all(|s| *s == 200), "{seen:#?}");
    assert_eq!((stats.logs_exported, stats.logs_failed), (2, 0));
    assert_eq!(logs.len(), 2, "each record once: {logs:#?}");
}
