//! What error tracking costs the thread that ends a span: `ErrorTracking::on_end` for a span
//! that is not an error (the check every span pays), for a failed server span (a panic with a
//! message holding an id), and for a failed client span (a transport error). The span is built
//! once and cloned outside the measured part; classification, fingerprinting and grouping run
//! on error tracking's background thread, measured apart as `store_one_error`. Run with `cargo bench --bench errors`;
//! BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanProcessor};
use service_tracing::errors::ErrorTracking;

fn spans() -> (SpanData, SpanData, SpanData) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("bench");
    let server = |status: i64| {
        tracer
            .span_builder("GET /orders/{id}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/orders/{id}"),
                KeyValue::new("url.path", "/orders/1234"),
                KeyValue::new("http.response.status_code", status),
                KeyValue::new("correlation.id", "0192f8a4-7c1e-7d2b-9a4e-3f1c2b7d9e01"),
            ])
            .start(&tracer)
    };
    server(200).end();
    let mut failed = server(500);
    failed.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", "panic"),
            KeyValue::new(
                "exception.message",
                "order 1234 not found for user 0192f8a4-7c1e-7d2b-9a4e-3f1c2b7d9e01",
            ),
        ],
    );
    failed.set_attribute(KeyValue::new("error.type", "panic"));
    failed.set_status(Status::error("panic"));
    failed.end();
    let mut client = tracer
        .span_builder("POST")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", "payments.internal"),
            KeyValue::new("error.type", "timeout"),
        ])
        .start(&tracer);
    client.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", "reqwest::Error"),
            KeyValue::new(
                "exception.message",
                "error sending request for url (http://payments.internal/charge/77): operation timed out",
            ),
        ],
    );
    client.set_status(Status::error("timeout"));
    client.end();
    let mut finished = exporter.get_finished_spans().expect("spans").into_iter();
    let mut next = || finished.next().expect("three spans");
    (next(), next(), next())
}

fn bench(c: &mut Criterion) {
    let (ok, failed, client) = spans();
    let errors = ErrorTracking::new();
    // Steady state: the groups exist already.
    errors.on_end(failed.clone());
    errors.on_end(client.clone());

    let mut group = c.benchmark_group("error_tracking_on_end");
    for (name, span) in [
        ("ok_server_span", &ok),
        ("failed_server_span", &failed),
        ("failed_client_span", &client),
    ] {
        group.bench_function(name, |b| {
            // Batches smaller than the error queue, drained between batches (unmeasured), as
            // the background thread does: the request path's share, not a flood's.
            b.iter_batched(
                || {
                    let _ = errors.force_flush();
                    span.clone()
                },
                |span| errors.on_end(span),
                BatchSize::NumIterations(1_000),
            )
        });
    }
    group.finish();

    // The background part, per error: what the drain does.
    let mut group = c.benchmark_group("error_tracking_background");
    group.bench_function("store_one_error", |b| {
        b.iter_batched(
            || {
                for _ in 0..1_000 {
                    errors.on_end(failed.clone());
                }
            },
            |()| errors.force_flush(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    assert!(
        errors.summary().total() > 2,
        "the failed spans were counted"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
