//! A count rule fires once per cooldown: one POST reaches a real webhook server on loopback
//! (with the group, the figures and the sample trace ids of the requests that made it fire),
//! and one call reaches the callback, however many errors follow.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use service_tracing::errors::{AlertKind, AlertRule, Window};
use service_tracing::TracesExporter;

use crate::support::{options, serve};

const REQUESTS: u32 = 10;
const THRESHOLD: u64 = 3;

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn hook(State(received): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>) {
    received.lock().unwrap().push(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_real_webhook_once_per_cooldown() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let webhook = serve(
        Router::new()
            .route("/hook", post(hook))
            .with_state(received.clone()),
    )
    .await;
    let called: Arc<Mutex<Vec<(AlertKind, u64, f64)>>> = Arc::default();
    let sink = called.clone();
    let (routes, guard) = options("svc")
        .exporter(TracesExporter::None)
        .traceresponse(true)
        .alert_rule(
            AlertRule::count(THRESHOLD, Window::OneMinute).cooldown(Duration::from_secs(3600)),
        )
        .alert_webhook(format!("{webhook}/hook"))
        .alert_callback(move |alert| {
            sink.lock().unwrap().push((
                alert.kind(),
                alert.group().fingerprint(),
                alert.observed(),
            ));
        })
        .init(Router::new().route("/fail/{id}", get(fail)))
        .expect("setup");
    let app = serve(routes).await;

    // The trace of each request, from its `traceresponse` header.
    let caller = reqwest::Client::new();
    let mut traces = Vec::new();
    for n in 0..REQUESTS {
        let response = caller.get(format!("{app}/fail/{n}")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        let header = response.headers()["traceresponse"].to_str().unwrap();
        traces.push(header.split('-').nth(1).unwrap().to_owned());
    }
    guard.force_flush().unwrap();

    let errors = guard.errors().unwrap();
    let group = errors.groups().remove(0);
    let fingerprint = format!("{:016x}", group.fingerprint());

    // Rules are evaluated on the alerting thread, a moment after the error: it may already
    // see a later error or two, so "at least the threshold".
    let calls = called.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call within the cooldown: {calls:?}");
    assert_eq!(
        (calls[0].0, calls[0].1),
        (AlertKind::Count, group.fingerprint())
    );
    assert!(calls[0].2 >= THRESHOLD as f64, "{calls:?}");

    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "one POST within the cooldown: {bodies:#?}");
    let body = &bodies[0];
    assert_eq!(body["rule"]["kind"], "count");
    assert_eq!(body["rule"]["name"], "count >= 3 in 1m");
    let fired_at = body["group"]["count"].as_u64().unwrap();
    assert!(
        (THRESHOLD..=u64::from(REQUESTS)).contains(&fired_at),
        "{body:#}"
    );
    assert_eq!(body["figures"]["errors"], fired_at);
    assert_eq!(body["figures"]["threshold"], THRESHOLD as f64);
    assert_eq!(body["figures"]["window"], "1m");
    assert_eq!(body["figures"]["operation"], "GET /fail/{id}");
    assert_eq!(body["group"]["fingerprint"], fingerprint);
    assert_eq!(body["group"]["error_type"], "500");
    // The sample trace ids are those of the requests up to then (the group as it was when the
    // rule fired), one of them as `trace_id`.
    let sampled: BTreeSet<&str> = body["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Errors are grouped in batches, so the rule may see several at once: the samples are
    // the last five of the requests up to then.
    let first: BTreeSet<&str> = traces[fired_at.saturating_sub(5) as usize..fired_at as usize]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(sampled, first);
    // `trace_id` is the error whose signal fired the rule: one of the requests up to then.
    assert!(
        traces[..fired_at as usize]
            .iter()
            .any(|t| t == body["trace_id"].as_str().unwrap()),
        "{body:#}"
    );

    let stats = errors.alert_stats();
    assert_eq!(
        (stats.fired, stats.delivered, stats.failed, stats.dropped),
        (1, 1, 0, 0)
    );
    assert_eq!(group.count(), u64::from(REQUESTS));
    guard.shutdown().unwrap();
}
