use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use service_tracing::metrics::MetricsExporter;
use service_tracing::{BatchConfig, Protocol};
use tower::ServiceExt;

use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::options;

const WARM_UP: u64 = 10_000;
const REQUESTS: u64 = 100_000;
const QUEUE: usize = 2048;

/// The process's resident set, in KiB (`VmRSS` of `/proc/self/status`). Each test has its
/// own process under nextest, so it is this test's.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes allocated and not yet freed by the whole process (the binary's counting allocator).
fn live_heap_bytes() -> i64 {
    let s = stats_alloc::INSTRUMENTED_SYSTEM.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

async fn requests(app: &Router, from: u64, n: u64) {
    for i in from..from + n {
        let response = app
            .clone()
            .oneshot(
                Request::get(format!("/users/{i}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
}

/// Most the process's live heap may grow over the 100,000 measured requests: 2 MB, 20 bytes a
/// request, where a leak of 100 bytes a request would add 10 MB. What grows legitimately is the
/// proxy's record of each export request (a few hundred, headers copied: about 300 KB).
const MAX_HEAP_GROWTH: i64 = 2_000_000;

/// Most the resident set may grow over them: 4 MiB, 42 bytes a request. The allocator keeps
/// freed memory in its arenas, so the resident set is a looser check than the heap count; it
/// still catches what the heap count cannot see (a leak outside Rust's allocator).
const MAX_RSS_GROWTH_KIB: u64 = 4 * 1024;

/// A backend that answers every export HTTP 400: each batch is sent once (never retried),
/// its spans are counted as rejected (or dropped when the queue was full), none as exported
/// or failed, the spans waiting for export never exceed the queue's bound, and memory stays
/// flat from the 10,000th request to the 110,000th: the live heap (counted by the binary's
/// allocator, see `main.rs`) and the resident set.
///
/// The test proxy runs in this process, so it must not hold memory per request either: it
/// keeps no request bodies (`forget_bodies`) and copies the headers it records (hyper's header
/// values are slices of the read buffer that held the body: keeping them kept about 240 KB per
/// export, the 320 bytes a request this test once saw in debug builds; docs/design.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_is_rejected_or_dropped_and_memory_stays_flat() {
    let proxy = OtlpProxy::start(None, Vec::new(), Answer::Status(400, Vec::new())).await;
    proxy.forget_bodies();
    let routes = Router::new().route("/users/{id}", get(|| async { "ok" }));
    let (app, guard) = options("svc")
        .otlp_endpoint(proxy.endpoint())
        .otlp_protocol(Protocol::HttpProtobuf)
        .metrics_exporter(MetricsExporter::None)
        .log_filter("off")
        .batch(
            BatchConfig::new()
                .with_max_queue_size(QUEUE)
                .with_scheduled_delay(Duration::from_millis(100)),
        )
        .init(routes)
        .expect("setup");

    requests(&app, 0, WARM_UP).await;
    guard.force_flush().unwrap();
    let (before, heap_before) = (rss_kib(), live_heap_bytes());
    let mut most_queued = 0;
    for round in 0..10 {
        requests(&app, WARM_UP + round * REQUESTS / 10, REQUESTS / 10).await;
        most_queued = most_queued.max(guard.export_stats().queued);
    }
    guard.force_flush().unwrap();
    let (after, heap_after) = (rss_kib(), live_heap_bytes());
    let stats = guard.export_stats();
    eprintln!(
        "live heap {heap_before} -> {heap_after} bytes, resident set {before} KiB -> {after} KiB over {REQUESTS} requests; {stats:?}; {} export requests",
        proxy.seen().len()
    );

    // One server span per request, every one refused or dropped.
    assert_eq!(
        stats.rejected + stats.dropped,
        WARM_UP + REQUESTS,
        "{stats:?}"
    );
    assert!(stats.rejected > 0, "{stats:?}");
    assert_eq!(
        (stats.exported, stats.failed, stats.queued),
        (0, 0, 0),
        "{stats:?}"
    );
    // A final status is never retried: one request per failed export.
    assert_eq!(stats.retried, 0, "{stats:?}");
    let seen = proxy.seen();
    assert_eq!(seen.len() as u64, stats.export_errors, "{stats:?}");
    assert!(seen.iter().all(|r| r.status == 400));
    assert!(most_queued <= QUEUE as u64, "{most_queued}");
    assert!(
        heap_after - heap_before < MAX_HEAP_GROWTH,
        "live heap {heap_before} -> {heap_after} bytes over {REQUESTS} requests"
    );
    assert!(
        after.saturating_sub(before) < MAX_RSS_GROWTH_KIB,
        "resident set {before} -> {after} KiB over {REQUESTS} requests"
    );
    guard.shutdown().unwrap();
}
