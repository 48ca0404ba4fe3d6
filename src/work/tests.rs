//! The guard's own tests; each helper's are in its file. nextest runs each test in its own
//! process, so each may install the global tracer provider the work spans read.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{global, Context, KeyValue, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

use super::*;
use crate::errors::ErrorTracking;

/// A global provider exporting to memory, error tracking in front of it.
pub(super) fn install(sampler: Sampler) -> (InMemorySpanExporter, ErrorTracking) {
    let errors = ErrorTracking::new();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(errors.in_front_of(SimpleSpanProcessor::new(exporter.clone())))
        .build();
    global::set_tracer_provider(provider);
    (exporter, errors)
}

pub(super) fn spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().unwrap_or_default()
}

pub(super) fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

pub(super) fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_else(|| panic!("no {key} on {span:#?}"))
}

pub(super) fn one(exporter: &InMemorySpanExporter, name: &str) -> SpanData {
    let all = spans(exporter);
    let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} in {all:#?}");
    found[0].clone()
}

/// The `exception` event's attributes, as text.
pub(super) fn exception(span: &SpanData) -> Vec<(String, String)> {
    span.events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event on {span:#?}"))
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

pub(super) fn has(attributes: &[(String, String)], key: &str, value: &str) -> bool {
    attributes.iter().any(|(k, v)| k == key && v == value)
}

#[test]
fn a_work_span_is_a_child_of_the_current_span_and_ends_cleanly_with_success() {
    let (exporter, _) = install(Sampler::AlwaysOn);
    let tracer = global::tracer("test");
    tracer.in_span("GET /orders/{id}", |_cx| {
        let mut span = WorkSpan::start(
            SpanKind::Client,
            "GetStock",
            vec![KeyValue::new("rpc.system", "grpc")],
        );
        assert!(span.is_recording());
        span.succeed();
    });
    let parent = one(&exporter, "GET /orders/{id}");
    let work = one(&exporter, "GetStock");
    assert_eq!(work.parent_span_id, parent.span_context.span_id());
    assert_eq!(work.span_context.trace_id(), parent.span_context.trace_id());
    assert_eq!(work.span_kind, SpanKind::Client);
    assert_eq!(text(&work, "rpc.system"), "grpc");
    assert_eq!(work.status, Status::Unset);
    assert!(attribute(&work, "error.type").is_none());
}

#[test]
fn an_unsampled_request_costs_no_span_and_builds_no_attributes() {
    let (exporter, _) = install(Sampler::AlwaysOff);
    let built = AtomicBool::new(false);
    // An unsampled parent (a request the sampler dropped).
    global::tracer("test").in_span("GET /", |_cx| {
        assert!(!WorkSpan::wanted());
        let span = WorkSpan::start_with(SpanKind::Internal, || {
            built.store(true, Ordering::Relaxed);
            ("never".into(), Vec::new())
        });
        assert!(span.context().is_none(), "no span was made");
    });
    assert!(!built.load(Ordering::Relaxed), "the closure never ran");
    assert!(spans(&exporter).is_empty());
}

#[test]
fn with_no_current_span_the_work_span_is_a_root_left_to_the_sampler() {
    let (exporter, _) = install(Sampler::AlwaysOn);
    assert!(WorkSpan::wanted());
    let mut span = WorkSpan::start(SpanKind::Internal, "nightly job", Vec::new());
    span.succeed();
    drop(span);
    let root = one(&exporter, "nightly job");
    assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}

#[test]
fn a_guard_dropped_without_an_outcome_or_in_a_panic_records_error_type() {
    let (exporter, _) = install(Sampler::AlwaysOn);
    drop(WorkSpan::start(SpanKind::Internal, "forgotten", Vec::new()));
    let forgotten = one(&exporter, "forgotten");
    assert_eq!(text(&forgotten, "error.type"), "_OTHER");
    assert!(matches!(forgotten.status, Status::Error { .. }));

    let panicked = std::panic::catch_unwind(|| {
        let mut span = WorkSpan::start(SpanKind::Internal, "exploding", Vec::new());
        let _current = span.enter();
        if WorkSpan::wanted() {
            panic!("boom");
        }
        span.succeed();
    });
    assert!(panicked.is_err());
    let exploded = one(&exporter, "exploding");
    assert_eq!(text(&exploded, "error.type"), "panic");
    assert_eq!(exploded.status, Status::error("panicked"));
}

#[test]
fn a_stated_category_reaches_the_exception_event_and_timeouts_become_timeout() {
    let (exporter, errors) = install(Sampler::AlwaysOn);
    let mut span = WorkSpan::start(SpanKind::Client, "GetStock", Vec::new())
        .errors_as(Severity::High, Category::Dependency);
    span.record_error(&std::io::Error::other("stock service unavailable"));
    drop(span);
    let failed = one(&exporter, "GetStock");
    let event = exception(&failed);
    assert!(has(&event, "error.category", "dependency"), "{event:?}");
    assert!(has(&event, "error.severity", "high"), "{event:?}");
    assert!(
        has(&event, "exception.message", "stock service unavailable"),
        "{event:?}"
    );
    assert_eq!(text(&failed, "error.type"), "std::io::error::Error");
    assert_eq!(failed.status, Status::error("stock service unavailable"));

    let mut slow = WorkSpan::start(SpanKind::Client, "GetPrice", Vec::new())
        .errors_as(Severity::High, Category::Dependency);
    slow.record_error(&std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "price service slow",
    ));
    drop(slow);
    let timed_out = one(&exporter, "GetPrice");
    assert_eq!(text(&timed_out, "error.type"), "timeout");
    assert!(has(&exception(&timed_out), "error.category", "timeout"));

    // Outside a request, each span's error is its own group, under the span's operation.
    let groups = errors.groups();
    let category = |operation: &str| {
        groups
            .iter()
            .find(|g| g.operations() == [operation])
            .map(|g| g.category())
            .unwrap_or_else(|| panic!("no group on {operation}: {groups:#?}"))
    };
    assert_eq!(category("GetStock"), Category::Dependency);
    assert_eq!(category("GetPrice"), Category::Timeout);
}

#[tokio::test]
async fn in_scope_makes_the_span_current_and_takes_the_outcome_from_the_result() {
    let (exporter, _) = install(Sampler::AlwaysOn);
    let span = WorkSpan::start(SpanKind::Internal, "load", Vec::new());
    let loaded: Result<u8, std::io::Error> = span
        .in_scope(async {
            tokio::task::yield_now().await;
            // Spans started inside are its children.
            let mut inner = WorkSpan::start(SpanKind::Internal, "inner", Vec::new());
            inner.succeed();
            Ok(7)
        })
        .await;
    assert_eq!(loaded.expect("loaded"), 7);
    let load = one(&exporter, "load");
    assert_eq!(load.status, Status::Unset, "an Ok is a success");
    assert_eq!(
        one(&exporter, "inner").parent_span_id,
        load.span_context.span_id()
    );
    assert!(
        !Context::current().has_active_span(),
        "nothing stays current"
    );

    let failed: Result<u8, std::io::Error> =
        WorkSpan::start(SpanKind::Internal, "fail", Vec::new())
            .in_scope(async { Err(std::io::Error::other("disk full")) })
            .await;
    assert!(failed.is_err());
    assert_eq!(one(&exporter, "fail").status, Status::error("disk full"));

    // A future dropped before it completes ends its span as one without an outcome.
    let pending = WorkSpan::start(SpanKind::Internal, "cancelled", Vec::new())
        .in_scope(std::future::pending::<Result<(), std::io::Error>>());
    drop(pending);
    assert_eq!(text(&one(&exporter, "cancelled"), "error.type"), "_OTHER");
}

/// The error of a work span inside a request is the request's root cause: one error, on the
/// request's route, with the span's category and operation as its target, sampled or not.
#[tokio::test]
async fn inside_a_request_the_error_is_the_root_cause_with_its_category() {
    use axum::routing::get;

    for (sampler, targets) in [
        (Sampler::AlwaysOn, &["GetStock"][..]),
        // Unsampled, there is no span to name where it failed.
        (Sampler::AlwaysOff, &[][..]),
    ] {
        let (_, errors) = install(sampler);
        let app = axum::Router::new()
            .route(
                "/stock/{id}",
                get(|| async {
                    let mut span = WorkSpan::start(SpanKind::Client, "GetStock", Vec::new())
                        .errors_as(Severity::High, Category::Dependency);
                    span.record_error(&std::io::Error::other("unavailable"));
                    axum::http::StatusCode::BAD_GATEWAY
                }),
            )
            .layer(
                service_tracing_middleware::TracingLayer::new()
                    .with_observer(errors.rates_observer()),
            );
        crate::test_support::get(&app, "/stock/1").await;
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0].count(), 1, "one error per request");
        assert_eq!(groups[0].category(), Category::Dependency);
        assert_eq!(groups[0].operations(), ["GET /stock/{id}"]);
        assert_eq!(groups[0].targets(), targets);
    }
}

/// The test kit (a scoped set-up, no globals) sees the work spans and `#[traced]` functions of
/// the thread it is the default of, inside a request of its layer and outside any.
#[tokio::test(flavor = "current_thread")]
async fn the_test_kit_sees_the_work_spans_of_its_thread() {
    use axum::routing::get;
    use tower::ServiceExt as _;

    use crate::testing::{SpanMatch, TestTracing};

    let tracing = TestTracing::new("orders").expect("set-up");
    let app = axum::Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                db::query(
                    "sqlite",
                    "SELECT",
                    "orders",
                    "SELECT * FROM orders WHERE id = 7",
                )
                .run(|| Ok::<_, std::io::Error>("ada"))
                .unwrap_or_default()
            }),
        )
        .layer(tracing.layer());
    let _default = tracing.set_default();
    let request = http::Request::get("/orders/7")
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(
        app.oneshot(request).await.expect("infallible").status(),
        200
    );
    // Outside a request: a root span under the set-up's sampler.
    external::call("mailer", "Send")
        .run(|| Ok::<_, std::io::Error>(()))
        .expect("sent");

    let spans = tracing.spans();
    spans.assert_span(
        SpanMatch::named("SELECT orders")
            .attribute("db.system.name", "sqlite")
            .under("GET /orders/{id}"),
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "Send" || s.name.contains("mailer")),
        "{:?}",
        spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
    );
}
