//! Metrics and error log records are counted as spans are: exported, rejected by the backend
//! for good, failed after retries, and the retries themselves, read from
//! `Metrics::export_stats` and `AlertStats`. Both signals go to a test endpoint that refuses
//! (400) or is unavailable (503) forever; spans go to the real collector.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, AlertStats, Window};
use service_tracing::TracingGuard;

use crate::collector::Collector;
use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::{serve, WAIT};

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

/// Three failing requests (one new error group, one alert: two log records), then a flush of
/// everything; metrics and log records go to `proxy`, with `timeout` (ms) for their exports.
async fn three_errors_exported_to(
    collector: &Collector,
    proxy: &OtlpProxy,
    timeout: &str,
) -> TracingGuard {
    let vars = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/v1/traces", collector.http_endpoint()),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{}/v1/metrics", proxy.endpoint()),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("{}/v1/logs", proxy.endpoint()),
        ),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", timeout.to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", timeout.to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
    ];
    let (routes, guard) = service_tracing::ServiceTracing::builder("svc")
        .env_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .alert_rule(AlertRule::count(2, Window::OneMinute))
        .init(Router::new().route("/orders/{id}", get(order)))
        .expect("setup");
    let app = serve(routes).await;
    for n in 1..=3 {
        let response = reqwest::get(format!("{app}/orders/{n}")).await.unwrap();
        assert_eq!(response.status(), 500);
    }
    let _ = guard.force_flush(); // the metrics' export fails
    guard
}

/// The log records' counts once both records are accounted for.
async fn settled_log_stats(guard: &TracingGuard) -> AlertStats {
    let errors = guard.errors().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let s = errors.alert_stats();
        if s.logs_exported + s.logs_rejected + s.logs_failed + s.logs_dropped >= 2 {
            return s;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_metrics_and_log_records_are_counted_as_rejected_not_failed() {
    let collector = Collector::start();
    let proxy = OtlpProxy::start(None, Vec::new(), Answer::Status(400, Vec::new())).await;
    let guard = three_errors_exported_to(&collector, &proxy, "10000").await;

    let logs = settled_log_stats(&guard).await;
    assert_eq!(
        (
            logs.logs_exported,
            logs.logs_rejected,
            logs.logs_failed,
            logs.logs_retried
        ),
        (0, 2, 0, 0),
        "{logs:?}"
    );
    let metrics = guard.metrics().unwrap().export_stats();
    assert!(metrics.rejected > 0, "{metrics:?}");
    assert_eq!(
        (
            metrics.exported,
            metrics.failed,
            metrics.retried,
            metrics.export_errors,
            metrics.dropped,
            metrics.queued
        ),
        (0, 0, 0, 1, 0, 0),
        "{metrics:?}"
    );
    // The health metrics tell the same, from the next collection on.
    let text = guard.metrics().unwrap().prometheus_text();
    let line = format!(
        "service_tracing_metrics_data_points_rejected_total {}",
        metrics.rejected
    );
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(
        text.contains("service_tracing_metrics_data_points_failed_total 0"),
        "{text}"
    );
    // Refused for good: each export was sent once (the two records in one or two exports).
    let seen = proxy.seen();
    assert_eq!(seen.iter().filter(|r| r.path == "/v1/metrics").count(), 1);
    let log_requests = seen.iter().filter(|r| r.path == "/v1/logs").count();
    assert!((1..=2).contains(&log_requests), "{seen:#?}");
    guard.shutdown().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_backends_cost_retries_then_count_metrics_and_log_records_as_failed() {
    let collector = Collector::start();
    let proxy = OtlpProxy::start(None, Vec::new(), Answer::Status(503, Vec::new())).await;
    let guard = three_errors_exported_to(&collector, &proxy, "2500").await;

    let logs = settled_log_stats(&guard).await;
    assert_eq!(
        (logs.logs_exported, logs.logs_rejected, logs.logs_failed),
        (0, 0, 2),
        "{logs:?}"
    );
    assert!(logs.logs_retried >= 1, "{logs:?}");
    let metrics = guard.metrics().unwrap().export_stats();
    assert_eq!((metrics.exported, metrics.rejected), (0, 0), "{metrics:?}");
    assert!(metrics.failed > 0 && metrics.retried >= 1, "{metrics:?}");
    assert_eq!(metrics.export_errors, 1, "{metrics:?}");
    // Every retry reached the endpoint (the two records went in one or two exports).
    let seen = proxy.seen();
    let sent = |path: &str| seen.iter().filter(|r| r.path == path).count() as u64;
    assert_eq!(sent("/v1/metrics"), metrics.retried + 1);
    let first_tries = sent("/v1/logs") - logs.logs_retried;
    assert!((1..=2).contains(&first_tries), "{seen:#?}");
    guard.shutdown().ok();
}
