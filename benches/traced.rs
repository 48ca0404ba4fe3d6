//! What `#[traced]` costs a call.
//!
//! - `traced/unsampled/{plain_fn,traced_fn}`: the same trivial function without and with
//!   `#[traced]`, called inside a request whose span is not sampled (its context current):
//!   the difference is the attribute's cost when unsampled (target: under 30 ns).
//! - `traced/sampled/{service_tracing,tracing_instrument,fastrace}`: one traced call inside a
//!   sampled request, for `#[traced]`, `tracing::instrument` bridged by
//!   tracing-opentelemetry, and fastrace's `#[trace]`. Each stack's request span is started
//!   and ended once per 100 calls, inside the timing (fastrace hands its spans over when the
//!   request's span ends, so that is where part of its cost is), and the spans end in a sink
//!   that drops them: an OpenTelemetry span processor doing nothing for the first two, a
//!   fastrace reporter doing nothing for the third. No arguments are captured by any of them.
//!
//! `cargo bench --bench traced` (BENCHMARKS.md, "`#[traced]`'s cost").

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{global, Context};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor};
use service_tracing::traced;
use tracing_subscriber::layer::SubscriberExt as _;

/// Calls per request span in the sampled benchmarks.
const CALLS_PER_REQUEST: u64 = 100;

/// Ends every span in nothing.
#[derive(Debug)]
struct Discard;

impl SpanProcessor for Discard {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        black_box(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Drops every fastrace span record.
struct DiscardReports;

impl fastrace::collector::Reporter for DiscardReports {
    fn report(&mut self, spans: Vec<fastrace::prelude::SpanRecord>) {
        black_box(spans);
    }
}

#[inline(never)]
fn plain_fn(x: u64) -> u64 {
    black_box(x) + 1
}

#[traced]
#[inline(never)]
fn traced_fn(x: u64) -> u64 {
    black_box(x) + 1
}

#[tracing::instrument(skip_all)]
#[inline(never)]
fn instrumented_fn(x: u64) -> u64 {
    black_box(x) + 1
}

#[fastrace::trace]
#[inline(never)]
fn fastrace_fn(x: u64) -> u64 {
    black_box(x) + 1
}

/// A request span's context as the server layer leaves it for an unsampled request.
fn unsampled_request() -> Context {
    let remote = SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128),
        SpanId::from(0xb7ad_6b71_6920_3331_u64),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(remote)
}

/// Runs `calls` calls of `call`, a new request span (made by `request`) every
/// [`CALLS_PER_REQUEST`] of them, and returns the time it all took.
fn requests<R>(calls: u64, mut request: impl FnMut() -> R, call: impl Fn(u64) -> u64) -> Duration {
    let started = Instant::now();
    let mut left = calls;
    while left > 0 {
        let n = left.min(CALLS_PER_REQUEST);
        let span = request();
        for i in 0..n {
            black_box(call(black_box(i)));
        }
        drop(span);
        left -= n;
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(Discard)
        .build();
    global::set_tracer_provider(provider.clone());
    fastrace::set_reporter(DiscardReports, fastrace::collector::Config::default());

    let mut unsampled = c.benchmark_group("traced/unsampled");
    let _request = unsampled_request().attach();
    unsampled.bench_function("plain_fn", |b| b.iter(|| plain_fn(black_box(1))));
    unsampled.bench_function("traced_fn", |b| b.iter(|| traced_fn(black_box(1))));
    drop(_request);
    unsampled.finish();

    let mut sampled = c.benchmark_group("traced/sampled");
    let tracer = provider.tracer("bench");
    sampled.bench_function("service_tracing", |b| {
        b.iter_custom(|calls| {
            requests(
                calls,
                || {
                    let span = tracer.start("GET /orders/{id}");
                    let cx = Context::current_with_span(span);
                    let attached = cx.clone().attach();
                    // Dropped in this order: the context detached, then the span ended.
                    (attached, EndOnDrop(cx))
                },
                traced_fn,
            )
        })
    });
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench-tracing")));
    tracing::subscriber::with_default(subscriber, || {
        sampled.bench_function("tracing_instrument", |b| {
            b.iter_custom(|calls| {
                requests(
                    calls,
                    || tracing::info_span!("GET /orders/{id}").entered(),
                    instrumented_fn,
                )
            })
        });
    });
    sampled.bench_function("fastrace", |b| {
        b.iter_custom(|calls| {
            requests(
                calls,
                || {
                    let root = fastrace::Span::root(
                        "GET /orders/{id}",
                        fastrace::prelude::SpanContext::random(),
                    );
                    let guard = root.set_local_parent();
                    (guard, root)
                },
                fastrace_fn,
            )
        })
    });
    sampled.finish();
    let _ = provider.shutdown();
}

/// Ends the span of a context when dropped.
struct EndOnDrop(Context);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
