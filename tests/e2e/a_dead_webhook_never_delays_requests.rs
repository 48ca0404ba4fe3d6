//! With the webhook down (a closed port), requests are answered as fast as ever while
//! deliveries are retried in the background; once they settle, every alert is counted as
//! failed after its last attempt.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, Window};
use service_tracing::TracesExporter;

use crate::support::{options, serve};

const REQUESTS: u64 = 20;
/// Attempts per alert with the default webhook settings (waits of 0.5, 1 and 2 s between).
const ATTEMPTS: u64 = 4;

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_never_delays_requests() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    // Every error fires (no cooldown): one delivery per request.
    let (routes, guard) = options("svc")
        .exporter(TracesExporter::None)
        .alert_rule(AlertRule::count(1, Window::OneMinute).cooldown(Duration::ZERO))
        .alert_webhook(closed)
        .init(Router::new().route("/fail/{id}", get(fail)))
        .expect("setup");
    let app = serve(routes).await;

    let caller = reqwest::Client::new();
    let started = Instant::now();
    for n in 0..REQUESTS {
        let t = Instant::now();
        let response = caller.get(format!("{app}/fail/{n}")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    let all = started.elapsed();
    let errors = guard.errors().unwrap();
    let during = errors.alert_stats();
    // The requests are done while the first delivery is still between its retries.
    assert!(all < Duration::from_millis(3_500), "{all:?}");
    assert_eq!(during.failed, 0, "{during:?}");
    assert_eq!(during.delivered, 0);

    guard.force_flush().unwrap();
    let settled = errors.alert_stats();
    assert_eq!(settled.fired, REQUESTS, "{settled:?}");
    assert_eq!(
        (settled.delivered, settled.failed, settled.dropped),
        (0, REQUESTS, 0),
        "{settled:?}"
    );
    assert_eq!(settled.retries, REQUESTS * (ATTEMPTS - 1), "{settled:?}");
    assert_eq!(settled.signals_dropped, 0);
    guard.shutdown().unwrap();
}
