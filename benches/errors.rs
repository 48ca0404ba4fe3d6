//! What error tracking costs the thread that ends a span: `ErrorTracking::on_end` for a span
//! that is not an error (the check every span pays), for a failed server span (a panic with a
//! message holding an id), and for a failed client span (a transport error). The span is built
//! once and cloned outside the measured part; classification, fingerprinting and grouping run
//! on error tracking's background thread, measured apart as `store_one_error`.
//!
//! The error path in a handler: `record_error` on the request's recording span inside a
//! request (its root cause is stated too), with backtraces left off (the default, whatever
//! `RUST_BACKTRACE` says) and turned on. Run it with and without `RUST_BACKTRACE=1`; the first
//! error of the process is timed once, before criterion starts, and printed on stderr.
//!
//! Run with `cargo bench --bench errors`; BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanProcessor};
use service_tracing::errors::{record_error, set_backtrace_capture, ErrorTracking};

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

/// An error a handler records: a message with an id, one source.
#[derive(Debug)]
struct PaymentDeclined(std::io::Error);

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment for order 1234 declined")
    }
}

impl std::error::Error for PaymentDeclined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn declined() -> PaymentDeclined {
    PaymentDeclined(std::io::Error::other("card expired"))
}

/// A fresh request context: a recording server span and the request's place for its root
/// cause, as the layer makes them when error tracking observes it.
fn request_context(tracer: &opentelemetry_sdk::trace::SdkTracer) -> Context {
    let span = tracer
        .span_builder("POST /payments/{id}")
        .with_kind(SpanKind::Server)
        .start(tracer);
    service_tracing_middleware::test_request_context().with_span(span)
}

fn error_path(c: &mut Criterion) {
    let errors = ErrorTracking::new();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(errors.clone())
        .build();
    let tracer = provider.tracer("bench");
    // The first error of the process, once: with RUST_BACKTRACE=1 the code before this change
    // symbolised a backtrace here (about 100 ms).
    let cx = request_context(&tracer);
    let started = Instant::now();
    {
        let _attached = cx.clone().attach();
        record_error(&declined());
    }
    eprintln!(
        "first record_error of the process (RUST_BACKTRACE={:?}): {:?}",
        std::env::var("RUST_BACKTRACE").ok(),
        started.elapsed()
    );
    drop(cx);

    let mut group = c.benchmark_group("error_path");
    for (name, backtraces) in [
        ("record_error_in_request", false),
        ("record_error_in_request_backtraces_on", true),
    ] {
        set_backtrace_capture(backtraces);
        group.bench_function(name, |b| {
            b.iter_batched(
                || request_context(&tracer),
                |cx| {
                    let _attached = cx.clone().attach();
                    record_error(&declined());
                    cx
                },
                BatchSize::SmallInput,
            )
        });
    }
    set_backtrace_capture(false);
    group.finish();
}

fn bench(c: &mut Criterion) {
    error_path(c);
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
