use std::collections::HashMap;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{global, Context};
use service_tracing::{Protocol, ScopedTracing};
use tower::ServiceExt;

use crate::collector::{span_named, CollectedSpan, Collector};
use crate::support::{options, WAIT};

#[tracing::instrument]
async fn work(Path(id): Path<u32>) -> String {
    tracing::info_span!("work step").in_scope(|| format!("work {id}"))
}

fn app(scoped: &ScopedTracing) -> Router {
    Router::new()
        .route("/work/{id}", get(work))
        .layer(scoped.layer())
}

/// Sends `GET /work/{id}` through `scoped`'s layer, with its dispatcher the thread's default.
async fn request(scoped: &ScopedTracing, id: u32) {
    let _default = scoped.set_default();
    let request = http::Request::get(format!("/work/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app(scoped).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The spans of request `id`: its server span and the handler's `tracing` spans below it.
fn trace_of(spans: &[CollectedSpan], id: u32) -> Vec<CollectedSpan> {
    let work = spans
        .iter()
        .find(|s| s.name == "work" && s.attr("id") == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no handler span for {id} in {spans:#?}"));
    spans
        .iter()
        .filter(|s| s.trace_id == work.trace_id)
        .cloned()
        .collect()
}

/// Each request's trace: a server span, the `#[instrument]`ed handler span as its child, and
/// the handler's own span below that, all under the set-up's service name.
fn assert_whole_trace(trace: &[CollectedSpan], service: &str) {
    let server = span_named(trace, "GET /work/{id}");
    let handler = span_named(trace, "work");
    let step = span_named(trace, "work step");
    assert_eq!(handler.parent_id, server.span_id, "{trace:#?}");
    assert_eq!(step.parent_id, handler.span_id, "{trace:#?}");
    for span in trace {
        assert_eq!(
            span.resource_attr("service.name"),
            Some(service),
            "{span:#?}"
        );
    }
}

/// Two scoped set-ups in one process, each with its own collector: every request's spans
/// (the server span and the `tracing` spans of its handler, under `set_default`) reach that
/// set-up's collector and only it, and nothing process-wide was installed: no global
/// `tracing` subscriber, and the global tracer provider and propagator are still the no-op
/// defaults.
#[tokio::test(flavor = "current_thread")]
async fn two_scoped_setups_export_to_their_own_collectors_without_globals() {
    let collector_a = Collector::start();
    let collector_b = Collector::start();
    let a = options("scoped-alpha")
        .otlp_endpoint(collector_a.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .build_scoped()
        .unwrap();
    let b = options("scoped-beta")
        .otlp_endpoint(collector_b.http_endpoint())
        .otlp_protocol(Protocol::HttpProtobuf)
        .build_scoped()
        .unwrap();

    // Interleaved, on one thread: only the default dispatcher decides where `tracing` spans go.
    request(&a, 1).await;
    request(&b, 2).await;
    request(&a, 3).await;
    a.guard().force_flush().unwrap();
    b.guard().force_flush().unwrap();

    let spans_a = collector_a.wait_for_spans(WAIT, |s| s.len() >= 6);
    let spans_b = collector_b.wait_for_spans(WAIT, |s| s.len() >= 3);
    assert_eq!(spans_a.len(), 6, "{spans_a:#?}");
    assert_eq!(spans_b.len(), 3, "{spans_b:#?}");
    assert_whole_trace(&trace_of(&spans_a, 1), "scoped-alpha");
    assert_whole_trace(&trace_of(&spans_a, 3), "scoped-alpha");
    assert_whole_trace(&trace_of(&spans_b, 2), "scoped-beta");

    // (`has_been_set` also counts thread defaults, so ask a fresh thread what it falls back to.)
    let global_subscriber = std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap();
    assert!(!global_subscriber, "no global subscriber");
    let probe = global::tracer("probe").start("probe");
    assert!(
        !probe.span_context().is_valid(),
        "the global tracer provider is still the no-op one"
    );
    let remote = SpanContext::new(
        TraceId::from_bytes([7; 16]),
        SpanId::from_bytes([7; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = Context::new().with_remote_span_context(remote);
    let mut injected = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut injected));
    assert!(
        injected.is_empty(),
        "the global propagator is still the no-op one: {injected:?}"
    );

    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

/// A scoped set-up made the thread's default does not count as a global subscriber: `init`
/// afterwards still installs its own (`tracing`'s `has_been_set` counts thread defaults too).
#[tokio::test(flavor = "current_thread")]
async fn a_scoped_default_leaves_init_free_to_install_the_globals() {
    let collector = Collector::start();
    let scoped = options("scoped-first")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .build_scoped()
        .unwrap();
    request(&scoped, 1).await;
    scoped.shutdown().unwrap();

    let (_layer, guard) = options("global-after")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .init_layer()
        .expect("no global subscriber was installed before");
    let installed = std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap();
    assert!(installed, "init installed the global subscriber");
    guard.shutdown().unwrap();
}
