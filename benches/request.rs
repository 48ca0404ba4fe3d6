//! One request through bare axum, through this library's layer, and through the peer stacks,
//! in one criterion run, with tower's `oneshot`: no network, so the figures are each stack's own
//! cost. Every exporting stack sends its spans over OTLP gRPC to a real collector (`rotel-agent`,
//! started here; `scripts/bench` provisions it). BENCHMARKS.md reports the results.
//!
//! Group `request` (one current-thread runtime, as a server pinned to one core runs):
//! - `bare_axum`, and `bare_axum/with_traceparent` (the request the unsampled cases get: what
//!   they add is measured against it);
//! - `ours/sampled` (default set-up, always-on sampling, exported through the export worker) and
//!   `ours/unsampled` (incoming `traceparent` with flags 00 under the parent-based sampler);
//! - `tower_http_trace_layer` (tower-http's `TraceLayer`, its spans in a plain `tracing`
//!   registry, no export);
//! - `tracing_opentelemetry_sdk_batch` (that `TraceLayer` bridged by tracing-opentelemetry into
//!   an SDK provider with the SDK's batch processor and opentelemetry-otlp's exporter); it reads
//!   no incoming context, so it has no unsampled case;
//! - `axum_tracing_opentelemetry/{sampled,unsampled}` (its `OtelAxumLayer` and
//!   `OtelInResponseLayer` into the same SDK provider);
//! - `fastrace_axum/{sampled,unsampled}` (fastrace-axum with fastrace-opentelemetry's reporter
//!   and opentelemetry-otlp's exporter).
//!
//! Group `threads`: the process's CPU time per request (all threads, export included:
//! `CLOCK_PROCESS_CPUTIME_ID`) with 1, 2 and 4 runtime threads driving requests
//! concurrently, bare and ours sampled: contention shows as a rise over one thread.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::borrow::Cow;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Request;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use service_tracing::{Protocol, ServiceTracing};
use tower::ServiceExt;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

fn app() -> Router {
    served(Router::new().route("/users/{id}", get(|| async { "ok" })))
}

/// The router as `axum::serve` runs it (`into_make_service` calls `with_state` first): each
/// handler made a route once, not per request, with the layers applied to it.
fn served(app: Router) -> Router {
    app.with_state(())
}

fn request(traceparent: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("http://bench.local/users/42").header("user-agent", "bench");
    if let Some(tp) = traceparent {
        builder = builder.header("traceparent", tp);
    }
    builder.body(Body::empty()).expect("request")
}

async fn one(app: &Router, traceparent: Option<&str>) {
    let response = app
        .clone()
        .oneshot(request(traceparent))
        .await
        .expect("infallible");
    response.into_body().collect().await.expect("body");
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `rotel-agent` (blackhole exporter, no per-span logging) on a free port.
fn start_collector() -> (Agent, String) {
    let agent = std::env::var("ROTEL_AGENT").expect("set ROTEL_AGENT (scripts/bench does)");
    let (port, http_port) = (free_port(), free_port());
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

/// opentelemetry-otlp's gRPC span exporter, built inside `export_rt` so that its channel's tasks
/// run there, off the measured thread (as the SDK's batch thread expects).
fn otlp_exporter(
    export_rt: &tokio::runtime::Runtime,
    endpoint: &str,
) -> opentelemetry_otlp::SpanExporter {
    let _entered = export_rt.enter();
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("otlp exporter")
}

fn resource(name: &'static str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build()
}

/// The peers' `tracing` side: a registry with tracing-opentelemetry's layer over an SDK provider
/// with the SDK's batch processor.
fn tracing_opentelemetry_dispatch(
    export_rt: &tokio::runtime::Runtime,
    endpoint: &str,
) -> (Dispatch, opentelemetry_sdk::trace::SdkTracerProvider) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(otlp_exporter(export_rt, endpoint))
        .with_resource(resource("peer"))
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("peer"));
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        provider,
    )
}

fn install_fastrace(export_rt: &tokio::runtime::Runtime, endpoint: &str) {
    let handle = export_rt.handle().clone();
    let reporter = fastrace_opentelemetry::OpenTelemetryReporter::new(
        otlp_exporter(export_rt, endpoint),
        Cow::Owned(resource("fastrace")),
        opentelemetry::InstrumentationScope::builder("bench").build(),
    )
    .with_block_on(move |future| handle.block_on(future));
    fastrace::set_reporter(reporter, fastrace::collector::Config::default());
}

/// Every stack of the comparison, set up and measured in one function (about 90 lines, past
/// the usual 80): the cases share one runtime, one collector and the set-ups' lifetimes, and
/// reading them as one list is what makes the comparison checkable.
fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("export runtime");
    let (_agent, endpoint) = start_collector();
    let (ours, guard) = {
        let _entered = rt.enter();
        ServiceTracing::builder("bench")
            .env_lookup(|_| None)
            .otlp_endpoint(endpoint.clone())
            .otlp_protocol(Protocol::Grpc)
            .log_filter("off")
            .init(app())
            .expect("setup")
    };
    let ours = served(ours);
    let bare = app();
    let registry_only = Dispatch::new(tracing_subscriber::registry());
    let (peer_dispatch, peer_provider) = tracing_opentelemetry_dispatch(&export_rt, &endpoint);
    install_fastrace(&export_rt, &endpoint);
    let tower_http = served(app().layer(tower_http::trace::TraceLayer::new_for_http()));
    let axum_tracing_opentelemetry = served(
        app()
            .layer(axum_tracing_opentelemetry::middleware::OtelInResponseLayer)
            .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default()),
    );
    let fastrace_axum = served(app().layer(fastrace_axum::FastraceLayer::default()));

    let mut group = c.benchmark_group("request");
    let mut case =
        |name: &str, app: &Router, traceparent: Option<&str>, dispatch: Option<&Dispatch>| {
            let mut run = || {
                group.bench_function(name, |b| b.to_async(&rt).iter(|| one(app, traceparent)));
            };
            match dispatch {
                Some(dispatch) => tracing::dispatcher::with_default(dispatch, run),
                None => run(),
            }
        };
    case("bare_axum", &bare, None, None);
    // The request the unsampled cases get: what they add is measured against this one.
    case("bare_axum/with_traceparent", &bare, Some(UNSAMPLED), None);
    case("ours/sampled", &ours, None, None);
    case("ours/unsampled", &ours, Some(UNSAMPLED), None);
    case(
        "tower_http_trace_layer",
        &tower_http,
        None,
        Some(&registry_only),
    );
    case(
        "tracing_opentelemetry_sdk_batch",
        &tower_http,
        None,
        Some(&peer_dispatch),
    );
    case(
        "axum_tracing_opentelemetry/sampled",
        &axum_tracing_opentelemetry,
        None,
        Some(&peer_dispatch),
    );
    case(
        "axum_tracing_opentelemetry/unsampled",
        &axum_tracing_opentelemetry,
        Some(UNSAMPLED),
        Some(&peer_dispatch),
    );
    case("fastrace_axum/sampled", &fastrace_axum, None, None);
    case(
        "fastrace_axum/unsampled",
        &fastrace_axum,
        Some(UNSAMPLED),
        None,
    );
    group.finish();

    threads(c, &bare, &ours);

    guard.force_flush().expect("flush");
    eprintln!(
        "ours: export stats after the benchmark: {:?}",
        guard.export_stats()
    );
    let _ = peer_provider.shutdown();
    fastrace::flush();
}

/// CPU time of every thread of this process so far, those that have exited included (a sum
/// over `/proc/self/task` lost the time of a runtime's threads ending during a measurement,
/// and could go backwards).
fn process_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

fn threads(c: &mut Criterion, bare: &Router, ours: &Router) {
    let mut group = c.benchmark_group("threads");
    for workers in [1usize, 2, 4] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime");
        for (name, app) in [("bare_axum", bare), ("ours_sampled", ours)] {
            group.bench_with_input(BenchmarkId::new(name, workers), &workers, |b, &workers| {
                b.iter_custom(|iters| {
                    let per_task = iters.div_ceil(workers as u64);
                    let start = process_cpu();
                    rt.block_on(async {
                        let tasks: Vec<_> = (0..workers)
                            .map(|_| {
                                let app = app.clone();
                                tokio::spawn(async move {
                                    for _ in 0..per_task {
                                        one(&app, None).await;
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("task");
                        }
                    });
                    // CPU per request, scaled to `iters` requests for criterion.
                    let cpu = (process_cpu() - start).as_nanos();
                    let done = u128::from(per_task * workers as u64);
                    Duration::from_nanos((cpu * u128::from(iters) / done) as u64)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
