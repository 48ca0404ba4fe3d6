//! With the sampler at ratio 0, no span is recorded, yet every request is in the per-route
//! latency figures: the server layer's observer feeds them, not the span processor.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::profiling::{OperationKind, Window};
use service_tracing::{Protocol, TracesSampler};

use crate::collector::Collector;
use crate::support::{options, serve};

const REQUESTS: u32 = 1_000;

async fn order(Path(id): Path<u32>) -> Result<String, StatusCode> {
    if id % 10 == 0 {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let span = tracing::info_span!("load order");
    let _entered = span.enter();
    Ok(format!("order {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiling_counts_every_request_although_nothing_is_sampled() {
    let collector = Collector::start();
    let routes = Router::new().route("/orders/{id}", get(order));
    let (routes, guard) = options("svc")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .sampler(TracesSampler::TraceIdRatio(0.0))
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;

    let caller = reqwest::Client::new();
    for i in 0..REQUESTS {
        // Every request a distinct raw path and query string.
        let response = caller
            .get(format!("{app}/orders/{i}?session=s{i}"))
            .send()
            .await
            .unwrap();
        let expected = if i % 10 == 0 { 503 } else { 200 };
        assert_eq!(response.status(), expected);
    }

    let profiling = guard.profiling().expect("profiling is on by default");
    // The observer runs when the response body ends, which can be just after the client has
    // read it: poll until the last requests are in.
    let deadline = std::time::Instant::now() + crate::support::WAIT;
    let minute = loop {
        let minute = profiling
            .operation("GET /orders/{id}")
            .and_then(|op| op.window(Window::OneMinute).cloned());
        if minute
            .as_ref()
            .is_some_and(|m| m.count >= u64::from(REQUESTS))
            || std::time::Instant::now() > deadline
        {
            break minute.expect("the route was recorded");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(minute.count, u64::from(REQUESTS));
    assert_eq!(minute.errors, u64::from(REQUESTS / 10));
    assert!(minute.p50 > std::time::Duration::ZERO && minute.p50 <= minute.p99);
    assert!(minute.p99 <= minute.max);

    // One operation, the route template: no raw path, id or query became a key, and no
    // span (so no internal operation) was recorded.
    let operations = profiling.operations();
    let keys: Vec<(&str, OperationKind)> = operations
        .iter()
        .map(|o| (o.operation.as_str(), o.kind))
        .collect();
    assert_eq!(keys, [("GET /orders/{id}", OperationKind::Server)]);
    assert_eq!(profiling.overflow(), 0);

    guard.force_flush().unwrap();
    assert_eq!(guard.export_stats().exported, 0, "nothing was sampled");
    assert_eq!(profiling.analysis_stats().traces, 0);
    assert!(collector.spans().is_empty());
    guard.shutdown().unwrap();
}
