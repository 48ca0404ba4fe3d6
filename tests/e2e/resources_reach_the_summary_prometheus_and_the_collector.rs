//! Set-up inside a multi-thread runtime starts the resource sampler on that runtime: the
//! profiling summary carries a `resources` object with the process's and the runtime's
//! figures, `/metrics` on a real server serves them as the `process.*` instruments, and the
//! OTLP push delivers them to a real collector.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use service_tracing::Protocol;

use crate::collector::{parse_metrics, Collector};
use crate::support::{options, serve, WAIT};

/// Fetches `base + path` with a plain client.
async fn fetch(base: &str, path: &str) -> String {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the sample line starting with `name ` (no labels).
fn value_of(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_reach_the_summary_prometheus_and_the_collector() {
    let collector = Collector::start_with_metrics();
    let routes = Router::new().route("/work", get(|| async { "done" }));
    let (routes, guard) = options("svc")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .metric_export_interval(Duration::from_secs(3600))
        .prometheus_route("/metrics")
        .process_sample_interval(Duration::from_millis(100))
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;
    assert_eq!(fetch(&app, "/work").await, "done");

    let profiling = guard.profiling().expect("profiling is on by default");
    let sampler = profiling.resources().expect("resources are on by default");
    assert_eq!(sampler.interval(), Duration::from_millis(100));
    // The background thread samples every 100 ms: wait for a sample with rates.
    let deadline = Instant::now() + WAIT;
    let latest = loop {
        let latest = sampler.latest();
        if latest
            .as_ref()
            .is_some_and(|s| s.tokio_busy_ratio.is_some())
            || Instant::now() > deadline
        {
            break latest.expect("sampled in the background");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The runtime set-up ran in, found without being handed over.
    assert_eq!(latest.tokio_workers, Some(2));
    assert!(
        latest.tokio_alive_tasks.expect("alive tasks") >= 1,
        "the server task"
    );
    assert!(latest.memory_rss_bytes.expect("rss") > 0);
    assert!(latest.open_fds.expect("fds") >= 3);
    assert!((0.0..=1.0).contains(&latest.cpu_utilization.expect("cpu")));

    let json = profiling.summary().to_json();
    let resources = &json["resources"];
    assert_eq!(resources["interval_ms"], 100);
    assert_eq!(resources["latest"]["tokio_workers"], 2);
    assert!(
        resources["latest"]["memory_rss_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(resources["recent"].as_array().map_or(0, Vec::len) >= 2);

    // Prometheus, on the real server: the same figures under the semantic-convention names.
    let text = fetch(&app, "/metrics").await;
    assert!(
        text.contains("# TYPE process_memory_usage_bytes gauge"),
        "{text}"
    );
    assert!(
        value_of(&text, "process_memory_usage_bytes").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(value_of(&text, "process_unix_file_descriptor_count").unwrap_or(0.0) >= 3.0);
    assert!(value_of(&text, "process_thread_count").unwrap_or(0.0) >= 2.0);
    let cpu = value_of(&text, "process_cpu_utilization").expect("cpu utilization");
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");

    // OTLP: the push at flush reaches the collector.
    guard.force_flush().expect("flush");
    let deadline = Instant::now() + WAIT;
    let points = loop {
        let points = parse_metrics(&collector.raw_output());
        if points.iter().any(|p| p.name == "process.memory.usage") || Instant::now() > deadline {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let memory = points
        .iter()
        .find(|p| p.name == "process.memory.usage")
        .unwrap_or_else(|| panic!("no process metrics:\n{}", collector.raw_output()));
    assert_eq!(memory.service_name, "svc");
    assert_eq!(memory.unit, "By");
    let bytes: u64 = memory
        .value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(bytes > 0, "{memory:?}");
    for name in [
        "process.cpu.utilization",
        "process.memory.virtual",
        "process.thread.count",
        "process.unix.file_descriptor.count",
    ] {
        assert!(points.iter().any(|p| p.name == name), "{name} exported");
    }

    // Shutdown stops the sampler's thread; what it sampled stays readable.
    guard.shutdown().expect("shutdown");
    assert!(sampler.latest().is_some());
}

/// Turned off, there is no sampler, the summary's `resources` is `null` and no `process.*`
/// instrument is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sampling_can_be_turned_off() {
    let (routes, guard) = options("svc")
        .prometheus_route("/metrics")
        .process_sampling(false)
        .init(Router::new())
        .expect("setup");
    let app = serve(routes).await;
    let profiling = guard.profiling().expect("profiling is on by default");
    assert!(profiling.resources().is_none());
    assert!(profiling.summary().to_json()["resources"].is_null());
    let text = fetch(&app, "/metrics").await;
    assert!(text.contains("target_info"), "{text}");
    assert!(!text.contains("# TYPE process_"), "{text}");
    guard.shutdown().expect("shutdown");
}
