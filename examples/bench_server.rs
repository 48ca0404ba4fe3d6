//! The server `scripts/load` drives: one route on one runtime thread, bare, traced by this
//! library, or traced by one of the peer stacks it is compared with.
//!
//! ```text
//! bench_server bare 8080
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc bench_server traced 8080
//! ```
//! Modes: `bare`; `traced` (this library's default set-up); `tower_http` (tower-http's
//! `TraceLayer`, spans in a plain `tracing` registry, no export); `tracing_opentelemetry`
//! (that `TraceLayer` bridged by tracing-opentelemetry into an SDK provider with the batch
//! processor and opentelemetry-otlp's exporter); `axum_tracing_opentelemetry` (its layers into
//! the same kind of provider); `fastrace` (fastrace-axum with fastrace-opentelemetry's reporter).
//! The peers' exporters read the standard `OTEL_*` variables themselves.
//! On Ctrl-C (SIGINT; traced by this library, SIGTERM too) it stops, flushes, and prints `served=… exported=… dropped=… failed=…`
//! (the three export figures are this library's own; the peers report none and print 0).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use opentelemetry::trace::TracerProvider as _;
use service_tracing::ServiceTracing;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

type Error = Box<dyn std::error::Error>;

/// What the mode needs done at shutdown.
enum Finish {
    Nothing,
    Ours(Box<service_tracing::TracingGuard>),
    Sdk(opentelemetry_sdk::trace::SdkTracerProvider),
    Fastrace,
}

fn otlp_exporter() -> Result<opentelemetry_otlp::SpanExporter, Error> {
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?)
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("load")
        .build()
}

/// A global `tracing` subscriber with tracing-opentelemetry over an SDK batch provider. The
/// exporter's own transport (tonic, h2, hyper, tower) is filtered out, as its documentation
/// advises: otherwise every export makes more spans to export.
fn sdk_batch_subscriber() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, Error> {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(otlp_exporter()?)
        .with_resource(resource())
        .build();
    let transport = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("h2", tracing::level_filters::LevelFilter::OFF)
        .with_target("hyper", tracing::level_filters::LevelFilter::OFF)
        .with_target("hyper_util", tracing::level_filters::LevelFilter::OFF)
        .with_target("tonic", tracing::level_filters::LevelFilter::OFF)
        .with_target("tower::buffer", tracing::level_filters::LevelFilter::OFF)
        .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF);
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("load")))
        .with(transport)
        .try_init()?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(provider)
}

fn wrap(mode: &str, app: Router) -> Result<(Router, Finish), Error> {
    Ok(match mode {
        "bare" => (app, Finish::Nothing),
        "traced" => {
            let (app, guard) = ServiceTracing::builder("load")
                .log_filter("warn")
                .init(app)?;
            (app, Finish::Ours(Box::new(guard)))
        }
        "tower_http" => {
            tracing_subscriber::registry().try_init()?;
            let app = app.layer(tower_http::trace::TraceLayer::new_for_http());
            (app, Finish::Nothing)
        }
        "tracing_opentelemetry" => {
            let provider = sdk_batch_subscriber()?;
            let app = app.layer(tower_http::trace::TraceLayer::new_for_http());
            (app, Finish::Sdk(provider))
        }
        "axum_tracing_opentelemetry" => {
            let provider = sdk_batch_subscriber()?;
            let app = app
                .layer(axum_tracing_opentelemetry::middleware::OtelInResponseLayer)
                .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default());
            (app, Finish::Sdk(provider))
        }
        "fastrace" => {
            let reporter = fastrace_opentelemetry::OpenTelemetryReporter::new(
                otlp_exporter()?,
                Cow::Owned(resource()),
                opentelemetry::InstrumentationScope::builder("load").build(),
            );
            let handle = tokio::runtime::Handle::current();
            let reporter = reporter.with_block_on(move |future| handle.block_on(future));
            fastrace::set_reporter(reporter, fastrace::collector::Config::default());
            let app = app.layer(fastrace_axum::FastraceLayer::default());
            (app, Finish::Fastrace)
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    })
}

/// Runs `flush` on a thread of its own while this thread drives the runtime, on which the peers'
/// exporters (tonic channels) do their I/O.
fn drive_while(runtime: &tokio::runtime::Runtime, flush: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        let flushing = scope.spawn(flush);
        runtime.block_on(async {
            while !flushing.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
    });
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "traced".to_owned());
    let port: u16 = args.next().as_deref().unwrap_or("8080").parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let app = Router::new().route(
        "/users/{id}",
        get(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { "ok" }
        }),
    );
    let finish = runtime.block_on(async move {
        let (app, finish) = wrap(&mode, app)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        // Ours stops on the guard's signal (SIGTERM or Ctrl-C); the peers on Ctrl-C.
        let stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match &finish {
            Finish::Ours(guard) => Box::pin(guard.shutdown_signal()),
            _ => Box::pin(async {
                let _ = tokio::signal::ctrl_c().await;
            }),
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        Ok::<_, Error>(finish)
    })?;
    let stats = match finish {
        Finish::Ours(guard) => {
            let _ = guard.force_flush();
            let stats = guard.export_stats();
            guard.shutdown()?;
            stats
        }
        Finish::Sdk(provider) => {
            drive_while(&runtime, || {
                let _ = provider.shutdown();
            });
            service_tracing::ExportStats::default()
        }
        Finish::Fastrace => {
            drive_while(&runtime, fastrace::flush);
            service_tracing::ExportStats::default()
        }
        Finish::Nothing => service_tracing::ExportStats::default(),
    };
    println!(
        "served={} exported={} dropped={} failed={}",
        served.load(Ordering::Relaxed),
        stats.exported,
        stats.dropped,
        stats.failed
    );
    Ok(())
}
