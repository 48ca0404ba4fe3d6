//! A handler whose `tracing` child span takes 200 ms of its 202: the bottleneck report names
//! that span with more than 90 % of the route's time, for traces the real collector received;
//! the child's threshold and the route's configured threshold put `performance.slow` events
//! on the exported spans.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use service_tracing::profiling::{BottleneckSeverity, Window, SLOW_EVENT};
use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};

const REQUESTS: usize = 5;

/// Takes the one-time costs (the bridge's first span, the first slow-operation log line) so
/// that the measured requests cost what the handler does.
async fn warm_up() -> &'static str {
    let span = tracing::info_span!("warm up", performance.threshold_ms = 0);
    let _entered = span.enter();
    std::thread::sleep(Duration::from_millis(1));
    "warm"
}

async fn order(Path(id): Path<u32>) -> String {
    {
        let span = tracing::info_span!(
            "SELECT orders",
            db.system = "postgresql",
            performance.threshold_ms = 20
        );
        let _entered = span.enter();
        // Long beside the rest, so that a busy machine's late wake-ups (several ms) leave the
        // child's share above 90 %.
        std::thread::sleep(Duration::from_millis(200));
    }
    // The rest of the handler: about 2 ms.
    std::thread::sleep(Duration::from_millis(2));
    format!("order {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bottleneck_report_names_the_slow_child_span() {
    let collector = Collector::start();
    let routes = Router::new()
        .route("/orders/{id}", get(order))
        .route("/warm", get(warm_up));
    let (routes, guard) = options("svc")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .slow_threshold("GET /orders/{id}", Duration::from_millis(30))
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;
    let caller = reqwest::Client::new();
    let warm = caller.get(format!("{app}/warm")).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    for i in 0..REQUESTS {
        let response = caller
            .get(format!("{app}/orders/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let profiling = guard.profiling().expect("profiling is on by default");
    let deadline = Instant::now() + WAIT;
    let route = loop {
        guard.force_flush().unwrap();
        let route = profiling
            .routes()
            .into_iter()
            .find(|r| r.route == "GET /orders/{id}");
        if route.as_ref().is_some_and(|r| r.traces >= REQUESTS as u64) || Instant::now() > deadline
        {
            break route.expect("the route was analysed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(route.traces, REQUESTS as u64);
    let bottleneck = route.bottleneck().expect("a bottleneck");
    assert_eq!(bottleneck.operation, "SELECT orders");
    assert!(bottleneck.share > 0.9, "{route:#?}");
    assert!(bottleneck.mean >= Duration::from_millis(200), "{route:#?}");
    assert_eq!(route.severity(), Some(BottleneckSeverity::High));
    let line = route.describe().expect("a description");
    assert!(
        line.ends_with("of `GET /orders/{id}` is in `SELECT orders`"),
        "{line}"
    );

    let recent: Vec<_> = profiling
        .recent_bottlenecks()
        .into_iter()
        .filter(|b| b.route == "GET /orders/{id}")
        .collect();
    assert_eq!(recent.len(), REQUESTS, "{recent:#?}");
    assert!(
        recent.iter().all(|b| b.operation == "SELECT orders"),
        "{recent:#?}"
    );
    let mut shares: Vec<f64> = recent.iter().map(|b| b.share).collect();
    shares.sort_by(f64::total_cmp);
    assert!(shares[REQUESTS / 2] > 0.9, "{recent:#?}");

    // Latency of the child span, from the processor.
    let select = profiling.operation("SELECT orders").expect("recorded");
    let minute = select.window(Window::OneMinute).expect("a window");
    assert_eq!(minute.count, REQUESTS as u64);
    assert!(minute.p50 >= Duration::from_millis(200), "{minute:?}");
    assert!(minute.p50 < Duration::from_millis(300), "{minute:?}");
    assert_eq!(select.slow, REQUESTS as u64);

    // The traces reported are those the collector received, and the slow spans carry the
    // event there.
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter().filter(|s| s.name == "SELECT orders").count() >= REQUESTS
            && s.iter().filter(|s| s.name == "GET /orders/{id}").count() >= REQUESTS
    });
    let exported: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.name == "GET /orders/{id}")
        .map(|s| s.trace_id.as_str())
        .collect();
    for b in &recent {
        assert!(exported.contains(b.trace_id.to_string().as_str()), "{b:?}");
    }
    for span in spans
        .iter()
        .filter(|s| s.name == "SELECT orders" || s.name == "GET /orders/{id}")
    {
        let event = span
            .event(SLOW_EVENT)
            .unwrap_or_else(|| panic!("no {SLOW_EVENT} on {span:#?}"));
        let threshold = if span.name == "SELECT orders" {
            "20"
        } else {
            "30"
        };
        assert_eq!(event.attr("performance.threshold_ms"), Some(threshold));
        let ms: f64 = event
            .attr("performance.duration_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no duration on {event:?}"));
        assert!(ms >= 200.0, "{ms}");
    }
    guard.shutdown().unwrap();
}
