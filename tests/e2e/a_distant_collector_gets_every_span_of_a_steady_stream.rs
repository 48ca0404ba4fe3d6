use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use service_tracing::metrics::MetricsExporter;
use service_tracing::{BatchConfig, Protocol};
use tower::ServiceExt;

use crate::collector::Collector;
use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::{options, WAIT};

/// Requests per second of the stream, and for how long.
const PER_SECOND: u64 = 5_000;
const FOR: Duration = Duration::from_secs(2);

/// Delivery at saturation, end to end: the real collector behind a proxy that answers every
/// export 50 ms late, batches of 128 in the default queue of 2,048, and a steady stream of
/// requests. One export at a time carried at most 128 spans per round trip (2,560 a second:
/// of the 10,000 requests, at most 5,120 + 2,048 could be delivered); with exports in
/// flight at once, every span reaches the collector, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_50_ms_away_gets_every_span_of_5000_requests_a_second() {
    let collector = Collector::start();
    let proxy = OtlpProxy::start(Some(collector.grpc_port()), Vec::new(), Answer::Forward).await;
    proxy.answer_late(Duration::from_millis(50));
    proxy.forget_bodies();
    let app = Router::new().route("/items/{id}", get(|| async { "ok" }));
    let (app, guard) = options("steady")
        .otlp_endpoint(proxy.endpoint())
        .otlp_protocol(Protocol::Grpc)
        .metrics_exporter(MetricsExporter::None)
        .batch(BatchConfig::new().with_max_export_batch_size(128))
        .init(app)
        .expect("setup");
    let app: Router = app.with_state(());

    // On schedule: what falls behind is caught up at once; the pause is the stream's pace.
    let started = Instant::now();
    let mut sent = 0_u64;
    while started.elapsed() < FOR {
        let due = started.elapsed().as_micros() as u64 * PER_SECOND / 1_000_000;
        while sent < due {
            let request = http::Request::get(format!("http://steady.local/items/{sent}"))
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let guard = tokio::task::spawn_blocking(move || {
        guard.force_flush().expect("flush");
        guard
    })
    .await
    .unwrap();

    let stats = guard.export_stats();
    assert_eq!(
        (stats.dropped, stats.failed, stats.exported),
        (0, 0, sent),
        "{stats:?}"
    );
    let spans = collector.wait_for_spans(WAIT, |spans| {
        spans.iter().filter(|s| s.name == "GET /items/{id}").count() as u64 >= sent
    });
    let mut paths: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "GET /items/{id}")
        .filter_map(|s| s.attr("url.path"))
        .collect();
    assert_eq!(paths.len() as u64, sent, "no span twice");
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len() as u64, sent, "each request's span");
    guard.shutdown().unwrap();
}
