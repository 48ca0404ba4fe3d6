//! Drives N requests through one stack with tower's `oneshot`, on a current-thread runtime, then
//! flushes: the program `scripts/instructions` runs under callgrind to count the instructions
//! one request costs (all threads, export included).
//!
//! ```text
//! oneshot_loop bare 2000
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc oneshot_loop sampled 2000
//! oneshot_loop unsampled 2000    # incoming traceparent with flags 00
//! oneshot_loop bare_unsampled 2000    # bare axum given that same request
//! ```

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use service_tracing::ServiceTracing;
use tower::ServiceExt;

const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".to_owned());
    let count: u32 = args.next().as_deref().unwrap_or("2000").parse()?;
    let traceparent = match variant.as_str() {
        "bare" | "sampled" => None,
        "unsampled" | "bare_unsampled" => Some(UNSAMPLED),
        other => {
            return Err(format!(
                "unknown variant {other:?}: bare, bare_unsampled, sampled, unsampled"
            )
            .into())
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = Router::new().route("/users/{id}", get(|| async { "ok" }));
    let (app, guard) = if variant.starts_with("bare") {
        (app, None)
    } else {
        let _entered = runtime.enter();
        let (app, guard) = ServiceTracing::builder("instructions")
            .log_filter("off")
            .init(app)?;
        (app, Some(guard))
    };
    // What `axum::serve` does first (`into_make_service`): every handler becomes a route once,
    // instead of per request.
    let app: Router = app.with_state(());
    runtime.block_on(async {
        for _ in 0..count {
            let mut request =
                Request::get("http://bench.local/users/42").header("user-agent", "bench");
            if let Some(tp) = traceparent {
                request = request.header("traceparent", tp);
            }
            let response = app.clone().oneshot(request.body(Body::empty())?).await?;
            response.into_body().collect().await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    if let Some(guard) = guard {
        guard.force_flush()?;
        let stats = guard.export_stats();
        guard.shutdown()?;
        eprintln!("exported={} dropped={}", stats.exported, stats.dropped);
    }
    Ok(())
}
