//! A service as it runs in production: its settings in a configuration file
//! (`examples/production.toml`, or the file `SERVICE_TRACING_CONFIG` names), the traced client
//! built once and shared through the state, every route added before set-up wraps them, and a
//! graceful shutdown that exports the last spans when the container is stopped.
//!
//! `GET /orders/{id}` asks this same service's `GET /stock/{id}` through the traced client, so
//! each request makes a trace of three spans (server, client, server).
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example production
//! curl localhost:3000/orders/7
//! kill -TERM <pid>   # or Ctrl-C: the server drains, then every span is exported
//! ```
//!
//! `PORT` chooses the port (default 3000; `0` for any free one). The first line printed is
//! `listening on http://<address>`. `GET /_tracing/health` (the file's `[health] route`)
//! answers loopback probes with the export figures (JSON; `503` once span export has failed
//! for a minute). The `OTEL_*` variables win over the file, and the builder's calls over both.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::{traced_client, ServiceTracing};

/// What every handler shares: one traced client (one connection pool), and where to reach
/// the stock route.
#[derive(Clone)]
struct App {
    client: ClientWithMiddleware,
    stock_url: String,
}

async fn order(State(app): State<App>, Path(id): Path<u32>) -> (StatusCode, String) {
    tracing::info!("looking order {id} up");
    match app
        .client
        .get(format!("{}/stock/{id}", app.stock_url))
        .send()
        .await
    {
        Ok(response) => {
            let stock = response.text().await.unwrap_or_default();
            (StatusCode::OK, format!("order {id}: {stock}"))
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

async fn stock(Path(id): Path<u32>) -> String {
    format!("{} in stock", id % 5)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let address = listener.local_addr()?;

    // Every route first: set-up wraps the routes the router has now.
    let routes = Router::new()
        .route("/orders/{id}", get(order))
        .route("/stock/{id}", get(stock));
    // The service's name, its collector, the health route and the shutdown timeout are in
    // the file; what the code knows best (its version) is a builder call.
    let config = std::env::var("SERVICE_TRACING_CONFIG").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/production.toml").to_owned()
    });
    let (routes, guard) = ServiceTracing::from_file(&config)?
        .service_version(env!("CARGO_PKG_VERSION"))
        .init(routes)?;
    // After set-up, so the client writes the propagators set-up chose; built once.
    let app = routes.with_state(App {
        client: traced_client(),
        stock_url: format!("http://{address}"),
    });

    println!("listening on http://{address}");
    // With the peer's address, which the health route checks.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(guard.shutdown_signal())
    .await?;
    // The server has drained: export what is left, within the shutdown timeout.
    guard.shutdown_async().await?;
    println!("stopped; every span exported");
    Ok(())
}
