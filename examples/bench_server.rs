//! The server `scripts/load` drives: one route on one runtime thread, bare or traced.
//!
//! ```text
//! bench_server bare 8080
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc bench_server traced 8080
//! ```
//! On Ctrl-C (SIGINT) it stops, flushes, and prints `served=… exported=… dropped=… failed=…`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use service_tracing::ServiceTracing;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "traced".to_owned());
    let port: u16 = args.next().as_deref().unwrap_or("8080").parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let app = Router::new().route(
            "/users/{id}",
            get(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { "ok" }
            }),
        );
        let (app, guard) = match mode.as_str() {
            "bare" => (app, None),
            _ => {
                let (app, guard) = ServiceTracing::builder("load")
                    .log_filter("warn")
                    .init(app)?;
                (app, Some(guard))
            }
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        let stats = match guard {
            Some(guard) => {
                let _ = guard.force_flush();
                let stats = guard.export_stats();
                guard.shutdown()?;
                stats
            }
            None => service_tracing::ExportStats::default(),
        };
        println!(
            "served={} exported={} dropped={} failed={}",
            served.load(Ordering::Relaxed),
            stats.exported,
            stats.dropped,
            stats.failed
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
