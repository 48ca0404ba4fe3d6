//! A small fake agent behind an HTTP endpoint, with a span for each piece of its work
//! (`service_tracing::work`): `GET /ask?city=Paris` looks the city up in SQLite (a database
//! span with the query sanitised), calls a weather tool (an `execute_tool` span, its arguments
//! captured and redacted), asks a model (a `chat` span with token usage, and the
//! `gen_ai.client.*` metrics) and answers. The "model" is a stub chat-completions server the
//! example starts itself on another port, called through the traced client.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example agent
//! curl 'localhost:3000/ask?city=Paris'
//! kill -TERM <pid>   # or Ctrl-C: drains, exports every span, exits
//! ```
//!
//! `PORT` chooses the port (default 3000; `0` for any free one). The first line printed is
//! `listening on http://<address>`.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest_middleware::ClientWithMiddleware;
use serde::Deserialize;
use service_tracing::work::{db, llm, tool};
use service_tracing::{traced_client, ServiceTracing};

#[derive(Clone)]
struct Agent {
    /// One connection, shared; the handler holds the lock only while the query runs.
    cities: Arc<Mutex<rusqlite::Connection>>,
    client: ClientWithMiddleware,
    /// The stub model's base URL and port.
    model_url: String,
    model_port: u16,
}

#[derive(Deserialize)]
struct Ask {
    city: String,
}

#[derive(Debug)]
struct AgentError(String);

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentError {}

const FIND_CITY: &str = "SELECT country FROM cities WHERE name = ?1 AND population > 100000";

/// The database step: a real SQLite query in a `SELECT cities` span.
fn country_of(agent: &Agent, city: &str) -> Result<String, rusqlite::Error> {
    let conn = agent.cities.lock().unwrap_or_else(|e| e.into_inner());
    db::query("sqlite", "SELECT", "cities", FIND_CITY)
        .namespace("main")
        .run(|| conn.query_row(FIND_CITY, [city], |row| row.get(0)))
}

/// The tool: what a weather API would answer, in an `execute_tool get_weather` span.
async fn get_weather(city: &str) -> Result<serde_json::Value, AgentError> {
    let span = tool::execute("get_weather")
        .call_id("call_weather_1")
        .tool_type("function")
        .capture(true)
        .start();
    // The key is redacted before it is recorded.
    span.record_arguments(&serde_json::json!({"city": city, "api_key": "wk-demo-4242"}));
    span.in_scope_with(
        async {
            tokio::task::yield_now().await;
            Ok(serde_json::json!({"sky": "rain", "celsius": 14}))
        },
        |out, span| match out {
            Ok(weather) => {
                span.record_result(weather);
                span.succeed();
            }
            Err(e) => span.record_error(e),
        },
    )
    .await
}

/// The model: a chat completion from the stub, in a `chat stub-model` span.
async fn ask_model(agent: &Agent, prompt: String) -> Result<String, AgentError> {
    let body = serde_json::json!({
        "model": "stub-model",
        "messages": [{"role": "user", "content": prompt}],
    });
    let call = async {
        let response = agent
            .client
            .post(format!("{}/v1/chat/completions", agent.model_url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| AgentError(e.to_string()))?;
        response
            .json::<serde_json::Value>()
            .await
            .map_err(|e| AgentError(e.to_string()))
    };
    let reply = llm::chat("openai", "stub-model")
        .server("127.0.0.1", agent.model_port)
        .temperature(0.3)
        .max_tokens(128)
        .in_scope_with(call, |out, span| match out {
            Ok(reply) => {
                span.response(
                    reply["model"].as_str().unwrap_or_default(),
                    reply["id"].as_str().unwrap_or_default(),
                    &[reply["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap_or_default()],
                );
                span.usage(
                    reply["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    reply["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                );
                span.succeed();
            }
            Err(e) => span.record_error(e),
        })
        .await?;
    Ok(reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn ask(State(agent): State<Agent>, Query(q): Query<Ask>) -> (StatusCode, String) {
    let country = match country_of(&agent, &q.city) {
        Ok(country) => country,
        Err(rusqlite::Error::QueryReturnedNoRows) => {
            return (StatusCode::NOT_FOUND, format!("no city {}", q.city))
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let weather = match get_weather(&q.city).await {
        Ok(weather) => weather,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let prompt = format!("Describe {weather} in {}, {country}.", q.city);
    match ask_model(&agent, prompt).await {
        Ok(answer) => (StatusCode::OK, answer),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// The stub model: a chat-completions answer with usage, whatever the question.
async fn completions(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    let asked = body["messages"][0]["content"].as_str().unwrap_or_default();
    Json(serde_json::json!({
        "id": "chatcmpl-stub-1",
        "model": "stub-model-2026-01",
        "choices": [{
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": format!("Stub says: {asked}")},
        }],
        "usage": {"prompt_tokens": asked.len() / 4, "completion_tokens": 12},
    }))
}

fn cities() -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(
        "CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT, population INTEGER);
         INSERT INTO cities VALUES ('Paris', 'France', 2100000), ('Lyon', 'France', 520000);",
    )?;
    Ok(conn)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The stub model, untraced (it stands for a provider's API elsewhere).
    let model = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let model_port = model.local_addr()?.port();
    tokio::spawn(async move {
        axum::serve(
            model,
            Router::new().route("/v1/chat/completions", post(completions)),
        )
        .await
    });

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let address = listener.local_addr()?;
    let routes = Router::new().route("/ask", get(ask));
    let (routes, guard) = ServiceTracing::builder("agent").init(routes)?;
    let app = routes.with_state(Agent {
        cities: Arc::new(Mutex::new(cities()?)),
        client: traced_client(),
        model_url: format!("http://127.0.0.1:{model_port}"),
        model_port,
    });

    println!("listening on http://{address}");
    axum::serve(listener, app)
        .with_graceful_shutdown(guard.shutdown_signal())
        .await?;
    guard.shutdown_async().await?;
    println!("stopped; every span exported");
    Ok(())
}
