//! A service as it runs in production: the traced client built once and shared through the
//! state, every route added before set-up wraps them, and a graceful shutdown that exports
//! the last spans when the container is stopped.
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
//! `listening on http://<address>`. `GET /_tracing/health` answers loopback probes with the
//! export figures (JSON; `503` once span export has failed for a minute).

use std::time::Duration;

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
    let (routes, guard) = ServiceTracing::builder("production")
        .service_version(env!("CARGO_PKG_VERSION"))
        // Within the usual 10 s between SIGTERM and SIGKILL, with room for draining.
        .shutdown_timeout(Duration::from_secs(5))
        // Loopback only by default (`health_access` opens it to a network or a token).
        .health_route("/_tracing/health")
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
