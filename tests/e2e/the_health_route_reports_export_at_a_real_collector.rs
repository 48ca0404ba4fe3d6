//! The health route, served over TCP with the peer's address, answers a loopback probe with
//! the export figures of spans and metrics that reached the real collector.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_route_reports_export_at_a_real_collector() {
    let collector = Collector::start();
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let (routes, guard) = options("shop")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .health_route("/_tracing/health")
        .init(routes)
        .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let r = client.get(format!("{app}/orders")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    guard.force_flush().expect("flush");
    collector.wait_for_spans(WAIT, |s| {
        s.iter().filter(|s| s.name == "GET /orders").count() == 3
    });

    let response = client
        .get(format!("{app}/_tracing/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "a JSON report"
    );
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["traces"]["exported"], 3, "{report}");
    assert_eq!(report["traces"]["consecutive_failures"], 0, "{report}");
    assert!(
        report["traces"]["last_success_unix_ms"].as_u64() > Some(0),
        "{report}"
    );
    assert!(
        report["metrics"]["exported"].as_u64() > Some(0),
        "the flush pushed metrics: {report}"
    );
    // The probe itself is not traced.
    guard.force_flush().expect("flush");
    assert!(collector.spans().iter().all(|s| !s.name.contains("health")));
}
