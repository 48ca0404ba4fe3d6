//! Two services in one process: `frontend` calls `backend` through the traced client.
//!
//! It sends three requests itself — one succeeds, one gets a 500 from the backend, one makes the
//! backend's handler panic — then prints each trace as a tree and exits.
//!
//! With `--pages` (feature `pages`), it keeps serving instead, with the built-in pages on, and
//! prints their address: open it in a browser on the same machine (loopback may read them),
//! send more requests to the frontend, and stop it with Ctrl-C.
//!
//! ```text
//! cargo run --example quickstart
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example quickstart   # to a collector
//! cargo run --example quickstart --features pages -- --pages
//! ```

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest_middleware::ClientWithMiddleware;
use serde::Deserialize;
use service_tracing::{traced_client, CorrelationId, ServiceTracing};

#[derive(Deserialize)]
struct Mode {
    mode: Option<String>,
}

/// Backend: looks an order up; `?mode=fail` answers 500, `?mode=panic` panics.
#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn order(Path(id): Path<u32>, Query(mode): Query<Mode>) -> Result<String, StatusCode> {
    tracing::info!("looking the order up");
    match mode.mode.as_deref() {
        Some("fail") => Err(StatusCode::INTERNAL_SERVER_ERROR),
        Some("panic") => panic!("order {id} is corrupt"),
        _ => Ok(format!("order {id}: 2 items")),
    }
}

#[derive(Clone)]
struct Frontend {
    backend: String,
    client: ClientWithMiddleware,
}

/// Frontend: asks the backend, through the traced client, and passes the answer on.
async fn checkout(
    State(frontend): State<Frontend>,
    Path(id): Path<u32>,
    Query(mode): Query<Mode>,
    correlation_id: CorrelationId,
) -> (StatusCode, String) {
    // Log lines carry trace_id, span_id and correlation_id on their own; the extractor gives
    // the id to code that needs it, e.g. to put it in a reply.
    tracing::info!(
        "checking out order {id} ({} chars of correlation id)",
        correlation_id.as_str().len()
    );
    let mut url = format!("{}/orders/{id}", frontend.backend);
    if let Some(mode) = mode.mode {
        url.push_str(&format!("?mode={mode}"));
    }
    match frontend.client.get(url).send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    // With the peer's address, which the pages' access reads.
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(address)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pages = std::env::args().any(|a| a == "--pages");
    let frontend_routes = Router::new().route("/checkout/{id}", get(checkout));
    let options = ServiceTracing::builder("frontend")
        .service_version(env!("CARGO_PKG_VERSION"))
        .environment("quickstart");
    let options = with_pages(options, pages)?;
    let (frontend_routes, guard) = options.init(frontend_routes)?;

    let backend = Router::new()
        .route("/orders/{id}", get(order))
        .layer(guard.service_layer("backend")?);
    let backend_url = serve(backend).await?;
    let frontend = frontend_routes.with_state(Frontend {
        backend: backend_url,
        client: traced_client(),
    });
    let frontend_url = serve(frontend).await?;

    // An outside caller, not traced, so each request starts a trace at the frontend.
    let caller = reqwest::Client::new();
    for path in [
        "/checkout/42",
        "/checkout/7?mode=fail",
        "/checkout/13?mode=panic",
    ] {
        let response = caller.get(format!("{frontend_url}{path}")).send().await?;
        let id = response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        println!(
            "GET {path} -> {} (x-correlation-id: {id})",
            response.status()
        );
    }

    if pages {
        // Hands the spans so far to the export worker, which shows them to the pages.
        guard.force_flush()?;
        println!("the pages: {frontend_url}/_tracing (Ctrl-C to stop)");
        println!("more traffic: curl {frontend_url}/checkout/42");
        guard.shutdown_signal().await;
    }

    // Flushes every span: the console exporter prints each trace as a tree. (A service that
    // serves until stopped awaits `guard.shutdown_signal()` first: see examples/production.rs.)
    guard.shutdown_async().await?;
    Ok(())
}

/// The built-in pages under `/_tracing`, when asked for.
#[cfg(feature = "pages")]
fn with_pages(
    options: ServiceTracing,
    pages: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    Ok(if pages {
        options.pages("/_tracing")
    } else {
        options
    })
}

#[cfg(not(feature = "pages"))]
fn with_pages(
    options: ServiceTracing,
    pages: bool,
) -> Result<ServiceTracing, Box<dyn std::error::Error>> {
    if pages {
        return Err("--pages needs the `pages` feature: cargo run --example quickstart --features pages -- --pages".into());
    }
    Ok(options)
}
