use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use reqwest_middleware::ClientWithMiddleware;
use serde::Deserialize;
use service_tracing::{traced_client, CorrelationId, ServiceTracing, TracingGuard};

pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
pub struct Mode {
    mode: Option<String>,
}

#[tracing::instrument(skip_all, fields(order.id = %id))]
async fn order(
    Path(id): Path<u32>,
    Query(mode): Query<Mode>,
    cid: CorrelationId,
) -> Result<Json<serde_json::Value>, StatusCode> {
    tracing::info!("backend looks order {id} up");
    match mode.mode.as_deref() {
        Some("fail") => Err(StatusCode::INTERNAL_SERVER_ERROR),
        _ => Ok(Json(
            serde_json::json!({ "order": id, "correlation_id": cid.as_str() }),
        )),
    }
}

#[derive(Clone)]
struct Frontend {
    backend: String,
    client: ClientWithMiddleware,
}

async fn checkout(
    State(f): State<Frontend>,
    Path(id): Path<u32>,
    Query(mode): Query<Mode>,
) -> (StatusCode, String) {
    let mut url = format!("{}/orders/{id}", f.backend);
    if let Some(mode) = mode.mode {
        url.push_str(&format!("?mode={mode}"));
    }
    match f.client.get(url).send().await {
        Ok(r) => (
            StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            r.text().await.unwrap_or_default(),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

pub struct Services {
    pub frontend: String,
    pub backend: String,
    pub guard: TracingGuard,
}

/// A `frontend` (set up by `options`) calling a `backend` (its own service layer) through the
/// traced client.
pub async fn start(options: ServiceTracing) -> Services {
    let routes = Router::new().route("/checkout/{id}", get(checkout));
    let (routes, guard) = options.init(routes).expect("setup");
    let backend = Router::new()
        .route("/orders/{id}", get(order))
        .layer(guard.service_layer("backend").expect("backend layer"));
    let backend = serve(backend).await;
    let frontend = serve(routes.with_state(Frontend {
        backend: backend.clone(),
        client: traced_client(),
    }))
    .await;
    Services {
        frontend,
        backend,
        guard,
    }
}

/// Options that ignore the machine's environment, so a developer's `OTEL_*` never leaks in.
pub fn options(name: &str) -> ServiceTracing {
    ServiceTracing::builder(name).env_lookup(|_| None)
}

/// Sends `n` checkouts to `frontend`, tagged `{tag}-{i}` in their correlation ids, each
/// answered 200; returns each answer's time, sorted.
pub async fn checkouts(
    caller: &reqwest::Client,
    frontend: &str,
    tag: &str,
    n: u32,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let r = caller
            .get(format!("{frontend}/checkout/{i}"))
            .header("x-correlation-id", format!("{tag}-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// `cargo run {cargo_args} --example {name}` with every `OTEL_*` variable removed (the
/// examples choose their own exporter) and `env` applied (`None` removes a variable): asserts
/// it exits 0 and returns what it printed.
pub fn run_example(name: &str, cargo_args: &[&str], env: &[(&str, Option<&str>)]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["run", "--quiet"])
        .args(cargo_args)
        .args(["--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0");
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let output = command.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} exited {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Builds `examples/{name}.rs` with this test binary's features (so the library is not built
/// again with others) and returns its path, next to this binary's directory.
pub fn build_example(name: &str) -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let features: Vec<&str> = [
        ("tls", cfg!(feature = "tls")),
        ("otlp-grpc", cfg!(feature = "otlp-grpc")),
        ("otlp-http", cfg!(feature = "otlp-http")),
        ("redis", cfg!(feature = "redis")),
        ("cpu-profile", cfg!(feature = "cpu-profile")),
        ("testing", cfg!(feature = "testing")),
        ("config-file", cfg!(feature = "config-file")),
        ("macros", cfg!(feature = "macros")),
    ]
    .into_iter()
    .filter_map(|(feature, on)| on.then_some(feature))
    .collect();
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--no-default-features",
        ])
        .arg(format!("--features={}", features.join(",")))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the example {name} failed");
    // This binary is <target>/debug/deps/e2e-<hash>; examples are in <target>/debug/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}
