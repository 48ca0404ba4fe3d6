//! One request of a small agent (a real SQLite query, a gRPC-style call, a tool call, an LLM
//! call to a stub server over the traced client) is one trace at the real collector: the
//! server span and, under it, one span per helper with the conventions' exact attributes
//! (the query sanitised, the tool's secret argument redacted, the prompt not captured).
//! Failing requests of each kind are one error each in the summary, under the helper's
//! category (database, timeout, dependency, application) with the helper's span as target;
//! profiling keeps one operation per template, never per raw value.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::errors::Category;
use service_tracing::profiling::Window;
use service_tracing::work::{db, external, llm, tool};
use service_tracing::Protocol;

use crate::collector::{CollectedSpan, Collector};
use crate::support::{options, serve, WAIT};

const ORDER: u32 = 4242;
const QUERY: &str = "SELECT id, total FROM orders WHERE id = ?1 AND status IN ('paid', 'shipped') \
                     AND total > 10.5 -- placed by the agent";
const SANITISED: &str =
    "SELECT id, total FROM orders WHERE id = ?1 AND status IN (?) AND total > ?";

#[derive(Clone)]
struct Agent {
    llm: String,
    llm_port: u16,
    client: ClientWithMiddleware,
}

/// The stub model: answers like a chat completions API, or, for a model named `down`, with
/// an error in the body (as providers do once a response has started), so the failure is the
/// LLM call's and not the HTTP client's.
async fn completions(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    if body["model"] == "down" {
        return Json(serde_json::json!({
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }));
    }
    Json(serde_json::json!({
        "id": "chatcmpl-stub-1",
        "model": "stub-model-2026-01",
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "It rains."}}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 7},
    }))
}

#[derive(Debug)]
struct Unavailable(&'static str);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unavailable {}

fn orders_db() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL, status TEXT);
         INSERT INTO orders VALUES (4242, 99.5, 'paid');",
    )
    .unwrap();
    conn
}

/// The database step: a real query inside a `db` span.
fn load_total(query: &str, id: u32) -> Result<f64, rusqlite::Error> {
    let conn = orders_db();
    db::query("sqlite", "SELECT", "orders", query)
        .namespace("main")
        .run(|| conn.query_row(query, [id], |row| row.get(1)))
}

async fn ask_model(agent: &Agent, model: &str) -> Result<serde_json::Value, Unavailable> {
    let request = llm::chat("openai", model)
        .server("127.0.0.1", agent.llm_port)
        .temperature(0.2)
        .max_tokens(64);
    let body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "weather?"}]});
    let call = async {
        let response = agent
            .client
            .post(format!("{}/v1/chat/completions", agent.llm))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|_| Unavailable("model unreachable"))?;
        let json: serde_json::Value = response
            .json()
            .await
            .map_err(|_| Unavailable("bad answer"))?;
        Ok::<_, Unavailable>(json)
    };
    let json = request
        .in_scope_with(call, |out, span| match out {
            Ok(json) if json.get("error").is_some() => span.record_failure(
                json["error"]["type"]
                    .as_str()
                    .unwrap_or("_OTHER")
                    .to_owned(),
                json["error"]["message"].as_str().unwrap_or_default(),
            ),
            Ok(json) => {
                span.record_input(&body); // not captured: content is off by default
                span.response(
                    json["model"].as_str().unwrap_or_default(),
                    json["id"].as_str().unwrap_or_default(),
                    &[json["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap_or_default()],
                );
                span.usage(
                    json["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    json["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                );
                span.succeed();
            }
            Err(e) => span.record_error(e),
        })
        .await?;
    if json.get("error").is_some() {
        Err(Unavailable("the model refused"))
    } else {
        Ok(json)
    }
}

// The line of `compose_reply`'s name, for `code.line.number`.
const COMPOSE_REPLY_LINE: u32 = line!() + 3;
/// The chain's last step: the agent's own code, traced with `#[traced]` (feature `macros`).
#[cfg_attr(feature = "macros", service_tracing::traced(args(total, %sky)))]
fn compose_reply(total: f64, sky: &str, answer_id: &str) -> String {
    format!("{total} {sky} {answer_id}")
}

async fn run_agent(State(agent): State<Agent>, Path(id): Path<u32>) -> (StatusCode, String) {
    let Ok(total) = load_total(QUERY, id) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "db".to_owned());
    };
    let reserved: Result<u32, Unavailable> = external::call("inventory", "Reserve")
        .rpc("grpc", "shop.Inventory", "Reserve")
        .in_scope(async {
            tokio::task::yield_now().await;
            Ok(1)
        })
        .await;
    if reserved.is_err() {
        return (StatusCode::BAD_GATEWAY, "inventory".to_owned());
    }
    let span = tool::execute("get_weather")
        .call_id("call_1")
        .tool_type("function")
        .capture(true)
        .start();
    span.record_arguments(&serde_json::json!({"city": "Paris", "api_key": "sk-live-abc123"}));
    let weather = span
        .in_scope_with(
            async { Ok::<_, Unavailable>(serde_json::json!({"sky": "rain"})) },
            |out, span| match out {
                Ok(weather) => {
                    span.record_result(weather);
                    span.succeed();
                }
                Err(e) => span.record_error(e),
            },
        )
        .await;
    let Ok(weather) = weather else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "tool".to_owned());
    };
    match ask_model(&agent, "stub-model").await {
        Ok(answer) => (
            StatusCode::OK,
            compose_reply(
                total,
                &weather["sky"].to_string(),
                &answer["id"].to_string(),
            ),
        ),
        Err(_) => (StatusCode::BAD_GATEWAY, "model".to_owned()),
    }
}

/// One failure of each kind, each in its own request.
async fn fail(State(agent): State<Agent>, Path(what): Path<String>) -> StatusCode {
    match what.as_str() {
        "db" => {
            let _ = load_total("SELECT id, total FROM missing WHERE id = ?1", 1);
        }
        "timeout" => {
            let _: Result<(), std::io::Error> = db::query("sqlite", "SELECT", "orders", QUERY)
                .in_scope(async {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "database is locked for 5 s",
                    ))
                })
                .await;
        }
        "external" => {
            let _: Result<(), Unavailable> = external::call("inventory", "Reserve")
                .rpc("grpc", "shop.Inventory", "Reserve")
                .in_scope(async { Err(Unavailable("UNAVAILABLE: no healthy upstream")) })
                .await;
        }
        "tool" => {
            let _: Result<(), Unavailable> = tool::execute("get_weather")
                .start()
                .in_scope(async { Err(Unavailable("weather station offline")) })
                .await;
        }
        "llm" => {
            let _ = ask_model(&agent, "down").await;
        }
        _ => return StatusCode::NOT_FOUND,
    }
    StatusCode::INTERNAL_SERVER_ERROR
}

fn child<'a>(spans: &'a [CollectedSpan], parent: &CollectedSpan, name: &str) -> &'a CollectedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.trace_id == parent.trace_id)
        .collect();
    assert_eq!(found.len(), 1, "one {name} in the trace: {spans:#?}");
    assert_eq!(
        found[0].parent_id, parent.span_id,
        "{name} is a child of {}",
        parent.name
    );
    found[0]
}

fn assert_attributes(span: &CollectedSpan, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            span.attr(key),
            Some(*value),
            "{key} on {}: {span:#?}",
            span.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_inside_a_request_reaches_the_collector_as_one_trace() {
    let collector = Collector::start();
    let stub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let llm_port = stub.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            stub,
            Router::new().route("/v1/chat/completions", post(completions)),
        )
        .await
    });
    let routes = Router::new()
        .route("/agent/{id}", get(run_agent))
        .route("/fail/{what}", get(fail));
    let (routes, guard) = options("agent")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .init(routes)
        .expect("setup");
    let app = serve(routes.with_state(Agent {
        llm: format!("http://127.0.0.1:{llm_port}"),
        llm_port,
        client: service_tracing::traced_client(),
    }))
    .await;

    let caller = reqwest::Client::new();
    let answer = caller
        .get(format!("{app}/agent/{ORDER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "99.5 \"rain\" \"chatcmpl-stub-1\""
    );
    for what in ["db", "timeout", "external", "tool", "llm"] {
        let response = caller
            .get(format!("{app}/fail/{what}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500, "{what}");
    }
    guard.force_flush().unwrap();

    // One trace: server -> db, external, tool, llm (-> the HTTP call to the model).
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter().any(|s| s.name == "GET /agent/{id}")
            && s.iter().filter(|s| s.name == "chat stub-model").count() >= 1
            && s.iter().filter(|s| s.name == "GET /fail/{what}").count() >= 5
    });
    let server = spans
        .iter()
        .find(|s| s.name == "GET /agent/{id}")
        .expect("the server span");
    assert!(server.is_root());

    let query = child(&spans, server, "SELECT orders");
    assert_eq!(query.kind, "Client");
    assert_attributes(
        query,
        &[
            ("db.system.name", "sqlite"),
            ("db.operation.name", "SELECT"),
            ("db.collection.name", "orders"),
            ("db.namespace", "main"),
            ("db.query.text", SANITISED),
        ],
    );
    assert_eq!(query.status_code, "Unset");

    let rpc = child(&spans, server, "shop.Inventory/Reserve");
    assert_eq!(rpc.kind, "Client");
    assert_attributes(
        rpc,
        &[
            ("service.peer.name", "inventory"),
            ("peer.service", "inventory"),
            ("rpc.system", "grpc"),
            ("rpc.service", "shop.Inventory"),
            ("rpc.method", "Reserve"),
        ],
    );

    let weather = child(&spans, server, "execute_tool get_weather");
    assert_eq!(weather.kind, "Internal");
    assert_attributes(
        weather,
        &[
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "get_weather"),
            ("gen_ai.tool.call.id", "call_1"),
            ("gen_ai.tool.type", "function"),
        ],
    );
    let arguments: serde_json::Value = serde_json::from_str(
        weather
            .attr("gen_ai.tool.call.arguments")
            .expect("captured"),
    )
    .expect("JSON");
    assert_eq!(
        arguments,
        serde_json::json!({"city": "Paris", "api_key": "[REDACTED]"}),
        "the secret argument is redacted"
    );
    assert!(!format!("{spans:?}").contains("sk-live-abc123"));
    let result: serde_json::Value =
        serde_json::from_str(weather.attr("gen_ai.tool.call.result").expect("captured"))
            .expect("JSON");
    assert_eq!(result, serde_json::json!({"sky": "rain"}));

    let chat = child(&spans, server, "chat stub-model");
    assert_eq!(chat.kind, "Client");
    let port = llm_port.to_string();
    assert_attributes(
        chat,
        &[
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "stub-model"),
            ("gen_ai.request.temperature", "0.2"),
            ("gen_ai.request.max_tokens", "64"),
            ("gen_ai.response.model", "stub-model-2026-01"),
            ("gen_ai.response.id", "chatcmpl-stub-1"),
            ("gen_ai.response.finish_reasons", "Str(stop)"),
            ("gen_ai.usage.input_tokens", "21"),
            ("gen_ai.usage.output_tokens", "7"),
            ("server.address", "127.0.0.1"),
            ("server.port", port.as_str()),
        ],
    );
    assert!(
        chat.attr("gen_ai.input.messages").is_none(),
        "prompts are off by default"
    );
    let http = spans
        .iter()
        .find(|s| s.kind == "Client" && s.parent_id == chat.span_id)
        .expect("the HTTP call to the model is the LLM span's child");
    assert_eq!(http.trace_id, server.trace_id);

    // The chain ends in the agent's own `#[traced]` function, with exactly its attributes.
    #[cfg(feature = "macros")]
    {
        let reply = child(&spans, server, "compose_reply");
        assert_eq!(reply.kind, "Internal");
        assert_eq!(reply.status_code, "Unset");
        let line = COMPOSE_REPLY_LINE.to_string();
        let expected: std::collections::BTreeMap<String, String> = [
            (
                "code.function.name",
                "e2e::work_inside_a_request_reaches_the_collector_as_one_trace::compose_reply",
            ),
            ("code.file.path", file!()),
            ("code.line.number", line.as_str()),
            ("code.function.args.total", "99.5"),
            ("code.function.args.sky", "\"rain\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(reply.attributes, expected, "{reply:#?}");
        assert!(reply.start_time_unix_nano >= chat.end_time_unix_nano);
    }

    // Errors: one per failing request, on its route, under the helper's category, with the
    // helper's span as the group's target.
    let errors = guard.errors().expect("error tracking is on by default");
    let groups = errors.groups();
    let categories = |target: &str| -> BTreeSet<&'static str> {
        groups
            .iter()
            .filter(|g| g.operations() == ["GET /fail/{what}"] && g.targets() == [target])
            .map(|g| g.category().as_str())
            .collect()
    };
    assert_eq!(
        categories("SELECT orders"),
        BTreeSet::from([Category::Database.as_str(), Category::Timeout.as_str()]),
        "{groups:#?}"
    );
    assert_eq!(
        categories("shop.Inventory/Reserve"),
        BTreeSet::from([Category::Dependency.as_str()])
    );
    assert_eq!(
        categories("execute_tool get_weather"),
        BTreeSet::from([Category::Application.as_str()])
    );
    assert_eq!(
        categories("chat down 127.0.0.1"),
        BTreeSet::from([Category::Dependency.as_str()]),
        "{groups:#?}"
    );
    let summary = errors.summary();
    assert_eq!(summary.total(), 5, "one error per failing request");

    // The LLM calls' metrics, with the conventions' names and attributes.
    let text = guard.metrics().expect("metrics are on").prometheus_text();
    let line = |prefix: &str, needles: &[&str]| {
        text.lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no {prefix} with {needles:?} in\n{text}"))
            .to_owned()
    };
    let input = line(
        "gen_ai_client_token_usage_sum",
        &[
            r#"gen_ai_token_type="input""#,
            r#"gen_ai_request_model="stub-model""#,
            r#"gen_ai_response_model="stub-model-2026-01""#,
            r#"gen_ai_provider_name="openai""#,
        ],
    );
    assert!(input.ends_with(" 21"), "{input}");
    let output = line(
        "gen_ai_client_token_usage_sum",
        &[r#"gen_ai_token_type="output""#],
    );
    assert!(output.ends_with(" 7"), "{output}");
    line(
        "gen_ai_client_operation_duration_seconds_count",
        &[
            r#"gen_ai_request_model="stub-model""#,
            r#"gen_ai_operation_name="chat""#,
        ],
    );
    line(
        "gen_ai_client_operation_duration_seconds_count",
        &[
            r#"gen_ai_request_model="down""#,
            r#"error_type="overloaded_error""#,
        ],
    );

    // Profiling: one operation per template.
    let profiling = guard.profiling().expect("profiling is on by default");
    for operation in [
        "SELECT orders",
        "shop.Inventory/Reserve",
        "execute_tool get_weather",
        "chat stub-model 127.0.0.1",
    ] {
        let profile = profiling
            .operation(operation)
            .unwrap_or_else(|| panic!("no {operation} in {:#?}", profiling.operations()));
        assert!(
            profile
                .window(Window::OneMinute)
                .is_some_and(|w| w.count >= 1),
            "{profile:?}"
        );
    }
    let keys: Vec<String> = profiling
        .summary()
        .operations
        .into_iter()
        .map(|o| o.operation)
        .collect();
    assert!(
        keys.iter()
            .all(|k| !k.contains(&ORDER.to_string()) && !k.contains("paid")),
        "no raw value in an operation key: {keys:?}"
    );
}
