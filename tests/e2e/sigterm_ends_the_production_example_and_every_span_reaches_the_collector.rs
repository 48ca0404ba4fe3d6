//! `examples/production.rs` reads its settings from `examples/production.toml` (service name,
//! health route, shutdown timeout, and `${DEPLOY_ENV:-production}` substituted), serves with `with_graceful_shutdown(guard.shutdown_signal())` and
//! then `guard.shutdown_async()`: sent SIGTERM as a container runtime does, it exits 0 and
//! every span of every request reaches a real collector, with the resource the SDK's detector
//! and the generated `service.instance.id` make.
//!
//! The export delay is an hour, so spans leave the process only when shutdown flushes them:
//! without the graceful shutdown, SIGTERM would end the process with all of them queued.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::collector::{children_of, Collector};
use crate::support::WAIT;

const REQUESTS: u32 = 5;

/// Waits for the child's exit, up to `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example did not exit within {timeout:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_production_example_and_every_span_reaches_the_collector() {
    serve_then_stop_with("-TERM").await;
}

/// Ctrl-C in a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_the_production_example_and_every_span_reaches_the_collector() {
    serve_then_stop_with("-INT").await;
}

async fn serve_then_stop_with(signal: &str) {
    let collector = Collector::start();
    let example = crate::support::build_example("production");
    let mut command = Command::new(&example);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .env("PORT", "0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "3600000")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("RUST_LOG", "warn")
        .env("DEPLOY_ENV", "e2e")
        .env_remove("SERVICE_TRACING_CONFIG")
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

    let caller = reqwest::Client::new();
    for id in 0..REQUESTS {
        let response = caller
            .get(format!("{base}/orders/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.unwrap(),
            format!("order {id}: {} in stock", id % 5)
        );
    }
    // Nothing exported yet: the spans wait for the (hour-long) export delay or a flush.
    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
    // The health route (loopback) says so: healthy, every span queued, none exported.
    let health: serde_json::Value = caller
        .get(format!("{base}/_tracing/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["traces"]["queued"], 3 * REQUESTS, "{health}");
    assert_eq!(health["traces"]["exported"], 0, "{health}");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    // The graceful shutdown ran: exit 0, not death by the signal.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(status.success(), "exit {status:?}; stdout: {rest}");
    assert!(rest.contains("stopped; every span exported"), "{rest}");

    let expected = 3 * REQUESTS as usize;
    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= expected);
    assert_eq!(spans.len(), expected, "{spans:#?}");
    let orders: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "GET /orders/{id}")
        .collect();
    assert_eq!(orders.len(), REQUESTS as usize);
    for order in orders {
        assert!(order.is_root());
        let clients = children_of(&spans, order);
        assert_eq!(clients.len(), 1, "{clients:#?}");
        assert_eq!(clients[0].kind, "Client");
        let stock = children_of(&spans, clients[0]);
        assert_eq!(stock.len(), 1, "{stock:#?}");
        assert_eq!(stock[0].name, "GET /stock/{id}");
    }

    // The resource: the SDK's detector, and one generated instance id for the process.
    let instance = spans[0]
        .resource_attr("service.instance.id")
        .expect("service.instance.id")
        .to_owned();
    assert_eq!(instance.len(), 36, "{instance}");
    assert_eq!(&instance[14..15], "4", "a UUID v4: {instance}");
    for span in &spans {
        // From the file, `${DEPLOY_ENV:-production}` substituted.
        assert_eq!(span.service_name, "production");
        assert_eq!(
            span.resource_attr("deployment.environment.name"),
            Some("e2e")
        );
        assert_eq!(
            span.resource_attr("service.instance.id"),
            Some(instance.as_str())
        );
        assert_eq!(
            span.resource_attr("telemetry.sdk.name"),
            Some("opentelemetry")
        );
        assert_eq!(span.resource_attr("telemetry.sdk.language"), Some("rust"));
        assert!(span.resource_attr("telemetry.sdk.version").is_some());
    }
}
