//! One request through bare axum, and through `TracingLayer` sampled (exporting over OTLP gRPC
//! to a real collector through the export worker) and unsampled, with tower's `oneshot`: no
//! network, so the figures are the stack's own cost. Run with `cargo bench --bench request`;
//! `scripts/bench` starts the collector for it. BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use http_body_util::BodyExt;
use service_tracing::{Protocol, ServiceTracing};
use tower::ServiceExt;

const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

fn app() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

fn request(traceparent: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("http://bench.local/users/42").header("user-agent", "bench");
    if let Some(tp) = traceparent {
        builder = builder.header("traceparent", tp);
    }
    builder.body(Body::empty()).expect("request")
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rotel-agent` (blackhole exporter, no per-span logging) on a free port.
fn start_collector() -> (Agent, String) {
    let agent = std::env::var("ROTEL_AGENT").expect("set ROTEL_AGENT (scripts/bench does)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(agent)
        .args(["start", "--exporter", "blackhole", "--otlp-grpc-endpoint"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--otlp-http-endpoint")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--pid-file")
        .arg(format!("/tmp/service-tracing-bench-{port}.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rotel-agent starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "collector not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Agent(child), format!("http://127.0.0.1:{port}"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_agent, endpoint) = start_collector();
    let (traced, guard) = {
        let _entered = rt.enter();
        ServiceTracing::builder("bench")
            .env_lookup(|_| None)
            .otlp_endpoint(endpoint)
            .otlp_protocol(Protocol::Grpc)
            .log_filter("off")
            .init(app())
            .expect("setup")
    };
    let bare = app();
    // The peer stack: tower-http's TraceLayer, its INFO spans bridged by tracing-opentelemetry
    // into the same provider and export worker.
    let peer = app().layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO)),
    );

    let mut group = c.benchmark_group("request");
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt).iter(|| async {
            let response = bare
                .clone()
                .oneshot(request(None))
                .await
                .expect("infallible");
            response.into_body().collect().await.expect("body")
        })
    });
    group.bench_function("tracing_layer_unsampled", |b| {
        b.to_async(&rt).iter(|| async {
            let response = traced
                .clone()
                .oneshot(request(Some(UNSAMPLED)))
                .await
                .expect("infallible");
            response.into_body().collect().await.expect("body")
        })
    });
    group.bench_function(
        "peer_tower_http_trace_layer_with_tracing_opentelemetry",
        |b| {
            b.to_async(&rt).iter(|| async {
                let response = peer
                    .clone()
                    .oneshot(request(None))
                    .await
                    .expect("infallible");
                response.into_body().collect().await.expect("body")
            })
        },
    );
    group.bench_function("tracing_layer_sampled_exported", |b| {
        b.to_async(&rt).iter(|| async {
            let response = traced
                .clone()
                .oneshot(request(None))
                .await
                .expect("infallible");
            response.into_body().collect().await.expect("body")
        })
    });
    group.finish();
    guard.force_flush().expect("flush");
    let stats = guard.export_stats();
    eprintln!("export stats after the benchmark: {stats:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
