//! What a sampling decision costs a new trace's server span: the SDK's parent-based sampler
//! (the default), the route rules' sampler with five rules (the last one matching, so every
//! rule is compared), a ratio for the unmatched, and a rate per second. Run with
//! `cargo bench --bench sampling`; BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::trace::{Sampler, ShouldSample};
use service_tracing::sampling::{RouteRule, RouteSampler, SampleAction, SamplingRules};

fn rules(otherwise: SampleAction) -> RouteSampler {
    RouteSampler::new(
        SamplingRules::new()
            .rule(RouteRule::new("/health", SampleAction::Never))
            .rule(RouteRule::new("/ready", SampleAction::Never))
            .rule(RouteRule::new("/metrics", SampleAction::Never))
            .rule(RouteRule::new("/checkout", SampleAction::Always).method("POST"))
            .rule(RouteRule::new("/users/{id}", SampleAction::Ratio(0.5)))
            .otherwise(otherwise),
    )
    .parent_based(true)
}

fn decide(sampler: &impl ShouldSample, cx: &Context, trace_id: u128, name: &str) -> bool {
    sampler
        .should_sample(
            Some(cx),
            TraceId::from(trace_id),
            name,
            &SpanKind::Server,
            &[],
            &[],
        )
        .decision
        == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampling");
    let cx = Context::new();
    let mut id = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128;
    let mut next = move || {
        id = id
            .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
            .wrapping_add(1);
        id
    };
    let sdk = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    group.bench_function("sdk_parent_based", |b| {
        b.iter(|| decide(&sdk, &cx, next(), black_box("GET /users/{id}")))
    });
    let ratio = rules(SampleAction::Ratio(0.1));
    group.bench_function("rules_last_matches", |b| {
        b.iter(|| decide(&ratio, &cx, next(), black_box("GET /users/{id}")))
    });
    group.bench_function("rules_none_match_ratio", |b| {
        b.iter(|| decide(&ratio, &cx, next(), black_box("GET /orders/{id}")))
    });
    let rate = rules(SampleAction::PerSecond(100.0));
    group.bench_function("rules_none_match_per_second", |b| {
        b.iter(|| decide(&rate, &cx, next(), black_box("GET /orders/{id}")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
