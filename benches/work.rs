//! What the work spans (`service_tracing::work`) cost inside a request the sampler dropped
//! (the claim: a context check, tens of nanoseconds), beside the check alone and the same
//! helpers in a sampled request (an SDK provider that records, with a no-op processor, so
//! the figure is the span's own cost and not an exporter's). Run with
//! `cargo bench --bench work`; BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{global, Context};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanProcessor};
use service_tracing::work::{db, external, tool, WorkSpan};

const QUERY: &str = "SELECT id, total FROM orders WHERE id = 42 AND status IN ('paid', 'new')";

/// Ends spans without exporting them.
#[derive(Debug)]
struct Discard;

impl SpanProcessor for Discard {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
    fn on_end(&self, _: opentelemetry_sdk::trace::SpanData) {}
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(
        &self,
        _: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// A request's context: its server span, sampled or not.
fn request(sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        flags,
        true,
        TraceState::default(),
    ))
}

fn helpers(c: &mut Criterion, sampled: bool) {
    let mut group = c.benchmark_group(if sampled {
        "work/sampled"
    } else {
        "work/unsampled"
    });
    let _request = request(sampled).attach();
    group.bench_function("context_check", |b| {
        b.iter(|| black_box(WorkSpan::wanted()))
    });
    group.bench_function("work_span", |b| {
        b.iter(|| {
            let mut span =
                WorkSpan::start(SpanKind::Internal, black_box("resize image"), Vec::new());
            span.succeed();
        })
    });
    group.bench_function("db_query", |b| {
        b.iter(|| {
            let mut span = db::query("postgresql", "SELECT", "orders", black_box(QUERY))
                .namespace("shop")
                .server("db.internal", 5432)
                .start();
            span.succeed();
        })
    });
    group.bench_function("external_call", |b| {
        b.iter(|| {
            let mut span = external::call("inventory", black_box("Reserve"))
                .rpc("grpc", "shop.Inventory", "Reserve")
                .start();
            span.succeed();
        })
    });
    group.bench_function("tool_call", |b| {
        b.iter(|| {
            let mut span = tool::execute(black_box("get_weather"))
                .call_id("call_1")
                .capture(true)
                .start();
            span.record_arguments(&("Paris", 3));
            span.succeed();
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Discard)
        .build();
    global::set_tracer_provider(provider);
    helpers(c, false);
    helpers(c, true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
