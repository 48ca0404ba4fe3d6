//! 100,000 requests whose spans carry large attributes (24 KiB each), on 150 routes, some of
//! them failing: the pages' recent-trace store fills up and stays within its byte bound
//! (16 MiB by default), by its own count and by the live heap of the process (the binary's
//! counting allocator, see `main.rs`).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::KeyValue;
use service_tracing::TracesExporter;
use tower::ServiceExt;

use crate::support::options;

const REQUESTS: u32 = 100_000;
/// The store's default byte bound.
const MAX_BYTES: i64 = 16 * 1024 * 1024;
/// What the heap may hold beyond the store's count: the maps' and vectors' slack the count
/// approximates, the allocator's per-allocation rounding is not counted by `stats_alloc`.
const SLACK: i64 = 4 * 1024 * 1024;

fn live_heap_bytes() -> i64 {
    let s = stats_alloc::INSTRUMENTED_SYSTEM.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Twelve attributes of 2 KiB each (the store keeps 1 KiB of each: about 13 KiB a trace, so
/// the byte bound binds before the count of traces).
async fn large(Path(n): Path<u32>) -> StatusCode {
    let text = "x".repeat(2048);
    opentelemetry::Context::map_current(|cx| {
        for i in 0..12 {
            cx.span()
                .set_attribute(KeyValue::new(format!("app.large.{i}"), text.clone()));
        }
    });
    if n % 53 == 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn overview(app: &Router) -> serde_json::Value {
    let mut request = Request::get("/_tracing.json").body(Body::empty()).unwrap();
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_store_stays_within_its_byte_bound() {
    let mut app = Router::new();
    for r in 0..150 {
        app = app.route(&format!("/r{r}/{{n}}"), get(large));
    }
    let (app, guard) = options("store")
        .exporter(TracesExporter::None)
        .install_subscriber(false)
        // Profiling's latency histograms (per route) would grow the heap beside the store.
        .profiling(false)
        .pages("/_tracing")
        .init(app)
        .unwrap();
    let heap_before = live_heap_bytes();
    let mut peak = 0;
    for i in 0..REQUESTS {
        let request = Request::get(format!("/r{}/{i}", i % 150))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        if i % 1_000 == 999 {
            // Every span so far reaches the store (none dropped for a full queue).
            guard.force_flush().unwrap();
            let heap = live_heap_bytes() - heap_before;
            peak = peak.max(heap);
            assert!(
                heap <= MAX_BYTES + SLACK,
                "live heap grew {heap} bytes after {i} requests"
            );
        }
    }
    let store = overview(&app).await["store"].clone();
    let bytes = store["bytes"].as_i64().unwrap();
    assert!(bytes <= MAX_BYTES, "{store}");
    assert!(bytes > MAX_BYTES / 2, "the store filled up: {store}");
    assert!(store["evicted"].as_u64() > Some(90_000), "{store}");
    assert!(
        peak > MAX_BYTES / 2,
        "the heap count sees the store: peak {peak}"
    );
    println!("store {store}; live heap grew at most {peak} bytes");
    guard.shutdown().unwrap();
}
