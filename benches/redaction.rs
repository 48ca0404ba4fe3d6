//! What the redaction policy costs the export thread per span: `Redactor::redact_span` on the
//! server span the tracing layer really makes for `GET /orders/1234?page=2` (method, path,
//! scheme, route, correlation id, query, server address and port, protocol version, user
//! agent, status code), when nothing in it matches (the common case, which the byte scan
//! settles without a regular expression or an allocation), and on the same span carrying a
//! panic event with a card number and a bearer token. Run with
//! `cargo bench --bench redaction`; BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use opentelemetry::trace::Event;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use service_tracing::redact::Redactor;
use service_tracing::TracingLayer;
use tower::ServiceExt as _;

/// The server span of one request through the layer.
fn server_span() -> SpanData {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(TracingLayer::new().with_tracer_provider(&provider));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let request = Request::get("http://shop.internal:8080/orders/1234?page=2")
            .header("user-agent", "checkout-web/2.3.1 (reqwest)")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    });
    let _ = provider.force_flush();
    exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .next()
        .expect("one server span")
}

fn bench(c: &mut Criterion) {
    let redactor = Redactor::new();
    let mut clean = server_span();
    eprintln!(
        "server span: {} attributes: {:?}",
        clean.attributes.len(),
        clean
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>()
    );
    let mut failed = clean.clone();
    failed.events.events.push(Event::new(
        "exception",
        std::time::SystemTime::now(),
        vec![
            KeyValue::new("exception.type", "panic"),
            KeyValue::new(
                "exception.message",
                "charge failed for card 4111 1111 1111 1111 with Bearer 9f8e7d6c5b4a39281706",
            ),
        ],
        0,
    ));

    let mut group = c.benchmark_group("redaction");
    // Nothing matches, so the span is left as it is and can be redacted again in place.
    group.bench_function("server_span_nothing_matches", |b| {
        b.iter(|| redactor.redact_span(std::hint::black_box(&mut clean)))
    });
    group.bench_function("server_span_with_a_secret_in_a_panic_event", |b| {
        b.iter_batched(
            || failed.clone(),
            |mut span| {
                redactor.redact_span(&mut span);
                span
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
