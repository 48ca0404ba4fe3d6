//! Drives N requests through one stack with tower's `oneshot`, on a current-thread runtime, then
//! flushes: the program `scripts/instructions` runs under callgrind to count the instructions
//! one request costs (all threads, export included).
//!
//! ```text
//! oneshot_loop bare 2000
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc oneshot_loop sampled 2000
//! oneshot_loop unsampled 2000    # incoming traceparent with flags 00
//! oneshot_loop bare_unsampled 2000    # bare axum given that same request
//! oneshot_loop sampled_chains 2000    # sampled, with request chains (feature `redis`; local)
//! oneshot_loop sampled_pages 2000    # sampled, with the pages' store fed (feature `pages`)
//! oneshot_loop sampled_inner 2000    # sampled, the handler making one span of its own
//! oneshot_loop unsampled_core 2000    # unsampled, no error tracking, profiling or metrics
//! oneshot_loop unsampled_errors 2000    # the same with error tracking
//! oneshot_loop unsampled_profiling 2000    # the same with error tracking and profiling
//! ```
//!
//! `_core`, `_errors` and `_profiling` also follow `sampled`: what each default feature adds
//! is the difference between two of them (`unsampled` and `sampled` have all three and the
//! HTTP metrics).

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use service_tracing::metrics::MetricsExporter;
use service_tracing::ServiceTracing;
use tower::ServiceExt;

const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".to_owned());
    let count: u32 = args.next().as_deref().unwrap_or("2000").parse()?;
    let (stack, features) = variant.split_once('_').unwrap_or((&variant, "all"));
    let traceparent = match (stack, features) {
        ("bare", "all")
        | ("sampled", "all" | "chains" | "pages" | "inner" | "core" | "errors" | "profiling") => {
            None
        }
        ("bare", "unsampled") | ("unsampled", "all" | "core" | "errors" | "profiling") => {
            Some(UNSAMPLED)
        }
        _ => {
            return Err(format!(
                "unknown variant {variant:?}: bare, bare_unsampled, sampled, sampled_chains, \
                 sampled_pages, sampled_inner, unsampled, and sampled_ or unsampled_ with \
                 core, errors or profiling"
            )
            .into())
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = if variant == "sampled_inner" {
        // A span through the OpenTelemetry API, as a handler's own work makes one: an SDK span
        // on the export queue beside the server record.
        Router::new().route(
            "/users/{id}",
            get(|| async {
                use opentelemetry::trace::Tracer;
                opentelemetry::global::tracer("handler").in_span("load user", |_| "ok")
            }),
        )
    } else {
        Router::new().route("/users/{id}", get(|| async { "ok" }))
    };
    let (app, guard) = if variant.starts_with("bare") {
        (app, None)
    } else {
        let _entered = runtime.enter();
        let options = ServiceTracing::builder("instructions").log_filter("off");
        let options = with_chains(options, variant == "sampled_chains")?;
        let options = with_pages(options, variant == "sampled_pages")?;
        let options = with_features(options, features);
        let (app, guard) = options.init(app)?;
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

/// The default features up to `features`, in the order they were added: `core` (the span,
/// propagation and the correlation id), then error tracking, profiling, and HTTP metrics
/// (any other value: all of them).
fn with_features(options: ServiceTracing, features: &str) -> ServiceTracing {
    let (errors, profiling) = match features {
        "core" => (false, false),
        "errors" => (true, false),
        "profiling" => (true, true),
        _ => return options,
    };
    options
        .error_tracking(errors)
        .profiling(profiling)
        .metrics_exporter(MetricsExporter::None)
}

/// Request chains, kept locally (no Redis URL), when asked; every request has a correlation
/// id of its own (generated by the layer), so each is a chain.
#[cfg(feature = "redis")]
fn with_chains(
    options: ServiceTracing,
    on: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    Ok(if on {
        options.request_chains(service_tracing::request_chain::RequestChains::new())
    } else {
        options
    })
}

/// Request chains need the `redis` feature.
#[cfg(not(feature = "redis"))]
fn with_chains(
    options: ServiceTracing,
    on: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    if on {
        return Err("sampled_chains needs the `redis` feature".into());
    }
    Ok(options)
}

/// The built-in pages, when asked: their store is fed from every exported span.
#[cfg(feature = "pages")]
fn with_pages(
    options: ServiceTracing,
    on: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    Ok(if on {
        options.pages("/_tracing")
    } else {
        options
    })
}

/// The pages need the `pages` feature.
#[cfg(not(feature = "pages"))]
fn with_pages(
    options: ServiceTracing,
    on: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    if on {
        return Err("sampled_pages needs the `pages` feature".into());
    }
    Ok(options)
}
