use std::time::Duration;

use service_tracing::{BatchConfig, Protocol};

use crate::support::{options, start};

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// 1,000 requests with nobody listening on the OTLP port: every response is what the handler
/// said, the queue never holds more than its cap, and what was lost is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_requests_succeed_with_bounded_queue_and_counted_losses() {
    const CAP: usize = 256;
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let services = start(
        options("frontend")
            .otlp_endpoint(endpoint)
            .otlp_protocol(Protocol::Grpc)
            .otlp_timeout(Duration::from_millis(200))
            .batch(
                BatchConfig::new()
                    .with_max_queue_size(CAP)
                    .with_max_export_batch_size(64),
            ),
    )
    .await;
    let caller = reqwest::Client::new();
    let mut max_queued = 0;
    for i in 0..1000u32 {
        let (path, expected) = if i % 4 == 0 {
            (format!("/orders/{i}?mode=fail"), 500)
        } else {
            (format!("/orders/{i}"), 200)
        };
        let r = caller
            .get(format!("{}{path}", services.backend))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "request {i}");
        max_queued = max_queued.max(services.guard.export_stats().queued);
    }
    let stats = services.guard.export_stats();
    assert!(max_queued <= CAP as u64, "queue grew to {max_queued}");
    // 2 spans per request (server + the handler's #[instrument] span).
    let accounted = stats.exported + stats.dropped + stats.failed + stats.queued;
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.dropped + stats.failed > 0, "{stats:?}");
    assert!(accounted <= 2000, "{stats:?}");
    assert!(stats.export_errors > 0, "{stats:?}");
    // Shutting down with the collector still down returns, with an error or not, promptly.
    let _ = services.guard.shutdown();
}
