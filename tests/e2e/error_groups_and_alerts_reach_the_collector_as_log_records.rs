//! Each new error group and each alert arrives at the real collector as an OpenTelemetry log
//! record, over gRPC and over HTTP, redacted, with the sample's trace and span ids; with
//! `OTEL_LOGS_EXPORTER=none`, none is sent.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, Window};
use service_tracing::Protocol;

use crate::collector::{CollectedLog, CollectedSpan, Collector};
use crate::support::{options, serve, WAIT};

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} for bob@example.com not found");
}

/// Three panics on one route; returns what the collector received.
async fn three_panics(
    collector: &Collector,
    protocol: Protocol,
    logs_exporter: Option<&'static str>,
) -> (Vec<CollectedSpan>, service_tracing::errors::ErrorTracking) {
    let endpoint = match protocol {
        Protocol::Grpc => collector.grpc_endpoint(),
        _ => collector.http_endpoint(),
    };
    let (routes, guard) = options("svc")
        .env_lookup(move |name| {
            logs_exporter
                .filter(|_| name == "OTEL_LOGS_EXPORTER")
                .map(str::to_owned)
        })
        .otlp_endpoint(endpoint)
        .otlp_protocol(protocol)
        .alert_rule(AlertRule::count(2, Window::OneMinute))
        .init(Router::new().route("/orders/{id}", get(order)))
        .expect("setup");
    let app = serve(routes).await;
    let caller = reqwest::Client::new();
    for n in 1..=3 {
        let response = caller
            .get(format!("{app}/orders/{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
    guard.force_flush().unwrap();
    let errors = guard.errors().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter().filter(|s| s.name == "GET /orders/{id}").count() == 3
    });
    guard.shutdown().unwrap();
    (spans, errors)
}

fn check(logs: &[CollectedLog], spans: &[CollectedSpan], errors: &service_tracing::ErrorTracking) {
    let group = errors.groups().remove(0);
    let fingerprint = format!("{:016x}", group.fingerprint());
    assert_eq!(group.message(), "order 1 for [REDACTED] not found");

    let new: Vec<&CollectedLog> = logs
        .iter()
        .filter(|l| l.body.starts_with("new error group"))
        .collect();
    assert_eq!(new.len(), 1, "{logs:#?}");
    let new = new[0];
    assert_eq!(
        new.body,
        "new error group: panic: order 1 for [REDACTED] not found"
    );
    assert_eq!(
        (new.severity_number, new.severity_text.as_str()),
        (21, "critical")
    );
    assert_eq!(new.event_name, "error.group.new");
    assert_eq!(new.attr("exception.type"), Some("panic"));
    assert_eq!(
        new.attr("exception.message"),
        Some("order 1 for [REDACTED] not found")
    );
    assert_eq!(new.attr("error.fingerprint"), Some(fingerprint.as_str()));
    assert_eq!(new.attr("error.severity"), Some("critical"));
    assert_eq!(new.attr("error.category"), Some("application"));
    assert_eq!(new.attr("operation"), Some("GET /orders/{id}"));
    assert_eq!(new.service_name, "svc");
    assert_eq!(new.scope_name, "service-tracing.errors");
    // The ids are those of the first request's server span, as the collector got it.
    let first = spans
        .iter()
        .filter(|s| s.name == "GET /orders/{id}")
        .find(|s| s.trace_id == new.trace_id)
        .unwrap_or_else(|| panic!("no span of trace {} in {spans:#?}", new.trace_id));
    assert_eq!(new.span_id, first.span_id);
    assert_eq!(group.trace_ids()[0].to_string(), new.trace_id);

    let alerts: Vec<&CollectedLog> = logs
        .iter()
        .filter(|l| l.body.starts_with("alert "))
        .collect();
    assert_eq!(alerts.len(), 1, "{logs:#?}");
    let alert = alerts[0];
    assert_eq!(
        alert.body,
        "alert count >= 2 in 1m: panic: order 1 for [REDACTED] not found"
    );
    assert_eq!(alert.event_name, "error.alert");
    assert_eq!(alert.attr("alert.kind"), Some("count"));
    assert_eq!(alert.attr("alert.rule"), Some("count >= 2 in 1m"));
    assert_eq!(alert.attr("alert.window"), Some("1m"));
    assert_eq!(alert.attr("error.fingerprint"), Some(fingerprint.as_str()));
    assert!(group
        .trace_ids()
        .iter()
        .any(|t| t.to_string() == alert.trace_id));

    for log in logs {
        assert!(!format!("{log:?}").contains("example.com"), "{log:#?}");
    }
    let stats = errors.alert_stats();
    assert_eq!(
        (stats.logs_exported, stats.logs_failed, stats.logs_dropped),
        (2, 0, 0)
    );
}

async fn records_arrive_over(protocol: Protocol) {
    let collector = Collector::start();
    let (spans, errors) = three_panics(&collector, protocol, None).await;
    let logs = collector.wait_for_logs(WAIT, |l| l.len() >= 2);
    check(&logs, &spans, &errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_groups_and_alerts_reach_the_collector_as_log_records() {
    records_arrive_over(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_log_records_reach_the_collector_over_http() {
    records_arrive_over(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_logs_exporter_none_sends_no_log_records() {
    let collector = Collector::start();
    let (_spans, errors) = three_panics(&collector, Protocol::Grpc, Some("none")).await;
    let stats = errors.alert_stats();
    assert_eq!(stats.fired, 1, "alerts still fire");
    assert_eq!(stats.logs_exported, 0);
    assert!(collector.logs().is_empty(), "{:#?}", collector.logs());
}
