//! `OTEL_EXPORTER_OTLP_ENDPOINT=host:port` (no scheme) with OTLP/gRPC: with
//! `OTEL_EXPORTER_OTLP_INSECURE=true` the spans reach the real (plaintext) collector; without
//! it the exporter speaks TLS, which that collector does not, so the export fails and is
//! counted while requests are served as ever.

use axum::routing::get;
use axum::Router;
use service_tracing::ServiceTracing;

use crate::collector::Collector;
use crate::support::{serve, WAIT};

async fn serve_with(
    collector: &Collector,
    insecure: bool,
) -> (String, service_tracing::TracingGuard) {
    let endpoint = format!("127.0.0.1:{}", collector.grpc_port());
    let (routes, guard) = ServiceTracing::builder("bare")
        .env_lookup(move |name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
            "OTEL_EXPORTER_OTLP_INSECURE" if insecure => Some("true".to_owned()),
            "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("2000".to_owned()),
            "OTEL_METRICS_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
        .install_subscriber(false)
        .init(Router::new().route("/bare", get(|| async { "ok" })))
        .expect("setup");
    (serve(routes).await, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_insecure_the_spans_reach_a_plaintext_collector() {
    let collector = Collector::start();
    let (app, guard) = serve_with(&collector, true).await;
    let r = reqwest::get(format!("{app}/bare")).await.unwrap();
    assert_eq!(r.status(), 200);
    guard.force_flush().expect("flush");
    collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /bare"));
    assert_eq!(guard.export_stats().exported, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_it_the_exporter_speaks_tls_and_the_plaintext_collector_gets_nothing() {
    let collector = Collector::start();
    let (app, guard) = serve_with(&collector, false).await;
    let r = reqwest::get(format!("{app}/bare")).await.unwrap();
    assert_eq!(r.status(), 200);
    // The flush waits for the export, which fails: a TLS handshake with a plaintext server.
    let _ = guard.force_flush();
    let stats = guard.export_stats();
    assert_eq!((stats.exported, stats.failed), (0, 1), "{stats:?}");
    assert!(stats.export_errors >= 1, "{stats:?}");
    assert!(collector.spans().is_empty());
}
