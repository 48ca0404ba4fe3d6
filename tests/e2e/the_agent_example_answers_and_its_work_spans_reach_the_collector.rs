//! `examples/agent.rs`, run as its own process as a user would: `GET /ask?city=Paris` answers
//! from the stub model it starts, and once it is stopped (SIGTERM) its trace is at the real
//! collector: the server span with the database, tool and LLM spans under it, the LLM span
//! with the HTTP call to the model under it, the query sanitised and the tool's key redacted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::collector::{CollectedSpan, Collector};
use crate::support::{build_example, WAIT};

fn only<'a>(spans: &'a [CollectedSpan], name: &str) -> &'a CollectedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_example_answers_and_its_work_spans_reach_the_collector() {
    let collector = Collector::start();
    let example = build_example("agent");
    let mut command = Command::new(&example);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .env("PORT", "0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint())
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let response = reqwest::get(format!("{base}/ask?city=Paris"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.text().await.unwrap();
    assert!(answer.starts_with("Stub says: Describe"), "{answer}");
    assert!(answer.contains("Paris, France"), "{answer}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the example did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status:?}");

    // Server, database, tool, LLM, and the LLM's HTTP call.
    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 5);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let server = only(&spans, "GET /ask");
    assert!(server.is_root());
    let query = only(&spans, "SELECT cities");
    let weather = only(&spans, "execute_tool get_weather");
    let chat = only(&spans, "chat stub-model");
    for span in [query, weather, chat] {
        assert_eq!(span.parent_id, server.span_id, "{span:#?}");
        assert_eq!(span.trace_id, server.trace_id);
        assert_eq!(span.service_name, "agent");
    }
    assert_eq!(
        query.attr("db.query.text"),
        Some("SELECT country FROM cities WHERE name = ?1 AND population > ?")
    );
    assert_eq!(query.attr("db.system.name"), Some("sqlite"));
    let arguments = weather
        .attr("gen_ai.tool.call.arguments")
        .expect("captured");
    assert!(arguments.contains("[REDACTED]"), "{arguments}");
    assert!(!arguments.contains("wk-demo-4242"), "{arguments}");
    assert_eq!(chat.attr("gen_ai.response.id"), Some("chatcmpl-stub-1"));
    assert_eq!(chat.attr("gen_ai.usage.output_tokens"), Some("12"));
    let http = spans
        .iter()
        .find(|s| s.parent_id == chat.span_id)
        .expect("the call to the model under the LLM span");
    assert_eq!(http.kind, "Client");
}
