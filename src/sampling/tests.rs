use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};
use opentelemetry_sdk::trace::Sampler;

use super::*;

fn decision(sampler: &impl ShouldSample, cx: Option<&Context>, name: &str, kind: SpanKind) -> bool {
    let trace_id = TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128);
    sampler
        .should_sample(cx, trace_id, name, &kind, &[], &[])
        .decision
        == SamplingDecision::RecordAndSample
}

fn remote_parent(sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(7),
        SpanId::from(9),
        flags,
        true,
        "vendor=value".parse().expect("a trace state"),
    ))
}

#[test]
fn the_first_rule_matching_route_and_method_decides_else_otherwise() {
    let sampler = RouteSampler::new(
        SamplingRules::new()
            .rule(RouteRule::new("/health", SampleAction::Never))
            .rule(RouteRule::new("/checkout", SampleAction::Always).method("post"))
            .rule(RouteRule::new("/checkout", SampleAction::Never))
            .otherwise(SampleAction::Never),
    );
    let server = |name| decision(&sampler, None, name, SpanKind::Server);
    assert!(!server("GET /health"));
    assert!(
        server("POST /checkout"),
        "the method is compared upper case"
    );
    assert!(!server("GET /checkout"), "the second checkout rule");
    assert!(!server("GET /other"));
    assert!(!server("HTTP"), "an unknown method: otherwise");

    let sampler = RouteSampler::new(
        SamplingRules::new().rule(RouteRule::new("/checkout", SampleAction::Never)),
    );
    assert!(!decision(&sampler, None, "GET /checkout", SpanKind::Server));
    assert!(
        decision(&sampler, None, "GET /checkout", SpanKind::Client),
        "rules are for server spans; otherwise keeps all by default"
    );
    assert!(
        decision(&sampler, None, "GET", SpanKind::Server),
        "no route"
    );
}

#[test]
fn a_parent_based_sampler_follows_the_parent_and_keeps_its_trace_state() {
    let rules = SamplingRules::new()
        .rule(RouteRule::new("/a", SampleAction::Always))
        .otherwise(SampleAction::Never);
    let sampler = RouteSampler::new(rules.clone()).parent_based(true);
    let unsampled = remote_parent(false);
    let sampled = remote_parent(true);
    assert!(!decision(
        &sampler,
        Some(&unsampled),
        "GET /a",
        SpanKind::Server
    ));
    assert!(decision(
        &sampler,
        Some(&sampled),
        "GET /b",
        SpanKind::Server
    ));
    let result = sampler.should_sample(
        Some(&sampled),
        TraceId::from(7),
        "GET /b",
        &SpanKind::Server,
        &[],
        &[],
    );
    assert_eq!(result.trace_state.header(), "vendor=value");
    assert!(decision(
        &sampler,
        Some(&Context::new()),
        "GET /a",
        SpanKind::Server
    ));
    assert_eq!(sampler.handle().stats().followed_parent, 3);

    // Not parent-based: the rules decide under a parent too.
    let sampler = RouteSampler::new(rules);
    assert!(decision(
        &sampler,
        Some(&unsampled),
        "GET /a",
        SpanKind::Server
    ));
    assert!(!decision(
        &sampler,
        Some(&sampled),
        "GET /b",
        SpanKind::Server
    ));
}

#[test]
fn ratios_keep_the_traces_the_sdks_traceidratio_keeps() {
    let ours = RouteSampler::new(SamplingRules::new().otherwise(SampleAction::Ratio(0.3)));
    let sdk = Sampler::TraceIdRatioBased(0.3);
    let mut kept = 0;
    let mut seed = 0x1234_5678_9abc_def0_u128;
    for _ in 0..10_000 {
        seed = seed
            .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
            .wrapping_add(1);
        let trace_id = TraceId::from(seed);
        let theirs = sdk
            .should_sample(None, trace_id, "x", &SpanKind::Server, &[], &[])
            .decision;
        let mine = ours
            .should_sample(None, trace_id, "x", &SpanKind::Server, &[], &[])
            .decision;
        assert_eq!(mine, theirs, "{trace_id}");
        kept += u32::from(mine == SamplingDecision::RecordAndSample);
    }
    assert!((2_700..3_300).contains(&kept), "{kept}");
    let stats = ours.handle().stats();
    assert_eq!(stats.otherwise.sampled + stats.otherwise.dropped, 10_000);
    assert_eq!(stats.otherwise.sampled, u64::from(kept));
}

#[test]
fn a_rate_keeps_at_most_its_target_each_second_and_follows_the_traffic() {
    let rate = Rate::new(50.0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u128;
    let mut per_second = Vec::new();
    // 1,000 new traces a second for 60 seconds, then 20 a second for 5.
    for second in 0..65u64 {
        let traffic = if second < 60 { 1_000 } else { 20 };
        let mut kept = 0;
        for _ in 0..traffic {
            seed = seed
                .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                .wrapping_add(1);
            kept += u32::from(rate.admit(second, TraceId::from(seed)));
        }
        per_second.push(kept);
    }
    assert!(per_second.iter().all(|k| *k <= 50), "{per_second:?}");
    let minute: u32 = per_second[..60].iter().sum();
    assert!(
        minute <= 3_000,
        "at most the target over the minute: {minute}"
    );
    assert!(
        minute >= 2_400,
        "close to it under steady traffic: {minute}"
    );
    assert!((rate.ratio() - 1.0).abs() < 1e-9, "light traffic keeps all");
    assert_eq!(per_second[64], 20);
}

#[test]
fn the_handle_replaces_the_rules_for_the_next_decisions_and_counts_afresh() {
    let sampler = RouteSampler::new(
        SamplingRules::new().rule(RouteRule::new("/health", SampleAction::Never)),
    );
    let handle = sampler.handle();
    assert!(!decision(&sampler, None, "GET /health", SpanKind::Server));
    assert_eq!(handle.stats().rules[0].dropped, 1);
    handle.replace(
        SamplingRules::new()
            .rule(RouteRule::new("/health", SampleAction::Always))
            .otherwise(SampleAction::Never),
    );
    assert!(decision(&sampler, None, "GET /health", SpanKind::Server));
    assert!(!decision(&sampler, None, "GET /other", SpanKind::Server));
    let stats = handle.stats();
    assert_eq!(stats.rules[0].rule, "/health");
    assert_eq!((stats.rules[0].sampled, stats.rules[0].dropped), (1, 0));
    assert_eq!((stats.otherwise.sampled, stats.otherwise.dropped), (0, 1));
    assert_eq!(stats.otherwise.effective_ratio, 0.0);
    assert_eq!(handle.rules().rules().len(), 1);
}

#[test]
fn odd_actions_are_clamped_not_trusted() {
    assert_eq!(SampleAction::Ratio(f64::NAN).ratio(), Some(0.0));
    assert_eq!(SampleAction::Ratio(7.0).ratio(), Some(1.0));
    assert_eq!(SampleAction::Ratio(-1.0).ratio(), Some(0.0));
    let rate = Rate::new(f64::NAN, 0);
    assert!(!rate.admit(0, TraceId::from(1)));
    let sampler = RouteSampler::new(SamplingRules::new().otherwise(SampleAction::PerSecond(-3.0)));
    assert!(!decision(&sampler, None, "GET /a", SpanKind::Server));
}

fn raw_decision(sampler: &impl ShouldSample, cx: Option<&Context>, name: &str) -> SamplingDecision {
    let trace_id = TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128);
    sampler
        .should_sample(cx, trace_id, name, &SpanKind::Server, &[], &[])
        .decision
}

#[test]
fn keeping_errors_records_the_dropped_traces_this_service_decides() {
    let rules = SamplingRules::new()
        .rule(RouteRule::new("/always", SampleAction::Always))
        .otherwise(SampleAction::Never);
    let plain = RouteSampler::new(rules.clone()).parent_based(true);
    assert_eq!(raw_decision(&plain, None, "GET /x"), SamplingDecision::Drop);
    for keeping in [
        rules.clone().keep_errors(),
        rules.clone().keep_slower_than(Duration::from_millis(5)),
    ] {
        let sampler = RouteSampler::new(keeping).parent_based(true);
        assert_eq!(
            raw_decision(&sampler, None, "GET /x"),
            SamplingDecision::RecordOnly
        );
        assert_eq!(
            raw_decision(&sampler, None, "GET /always"),
            SamplingDecision::RecordAndSample
        );
        // The caller decided: not this service's to change.
        assert_eq!(
            raw_decision(&sampler, Some(&remote_parent(false)), "GET /x"),
            SamplingDecision::Drop
        );
    }
    // Replaced while serving: the next decisions drop again.
    let sampler = RouteSampler::new(rules.clone().keep_errors());
    sampler.handle().replace(rules);
    assert_eq!(
        raw_decision(&sampler, None, "GET /x"),
        SamplingDecision::Drop
    );
}

/// A recorded-only span as it ends, `took` long, with `status` and an optional event.
fn ended(
    took: Duration,
    status: opentelemetry::trace::Status,
    event: Option<&'static str>,
) -> SpanData {
    let start = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let mut events = opentelemetry_sdk::trace::SpanEvents::default();
    if let Some(name) = event {
        events
            .events
            .push(opentelemetry::trace::Event::new(name, start, Vec::new(), 0));
    }
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::default(),
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "GET /x".into(),
        start_time: start,
        end_time: start + took,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events,
        links: opentelemetry_sdk::trace::SpanLinks::default(),
        status,
        instrumentation_scope: opentelemetry::InstrumentationScope::builder("test").build(),
    }
}

use opentelemetry_sdk::trace::SpanData;

#[test]
fn failing_and_slow_recorded_spans_are_marked_sampled_for_export() {
    use crate::chain::SpanHook;
    use opentelemetry::trace::Status;
    let sampler = RouteSampler::new(
        SamplingRules::new()
            .otherwise(SampleAction::Never)
            .keep_errors()
            .keep_slower_than(Duration::from_millis(100)),
    );
    let keep = Installed::Rules(sampler.clone()).keep();
    let ms = Duration::from_millis;
    let kept = |mut span: SpanData| {
        keep.on_end(&mut span);
        span.span_context.is_sampled()
    };
    assert!(kept(ended(ms(1), Status::error("boom"), None)), "an error");
    assert!(
        kept(ended(ms(101), Status::Unset, None)),
        "slower than the threshold"
    );
    assert!(
        kept(ended(ms(1), Status::Unset, Some("performance.slow"))),
        "slow by profiling's threshold"
    );
    assert!(!kept(ended(ms(99), Status::Unset, None)), "fast and fine");
    assert!(!kept(ended(ms(1), Status::Ok, Some("exception"))), "fine");
    let stats = sampler.handle().stats();
    assert_eq!((stats.kept_errors, stats.kept_slow), (1, 2));

    // Errors only: a slow span stays dropped.
    sampler.handle().replace(
        SamplingRules::new()
            .otherwise(SampleAction::Never)
            .keep_errors(),
    );
    assert!(!kept(ended(
        ms(500),
        Status::Unset,
        Some("performance.slow")
    )));
    assert!(kept(ended(ms(1), Status::error("boom"), None)));
    // The SDK's samplers never record without sampling: nothing to keep.
    let none = Installed::Sdk(Sampler::AlwaysOff).keep();
    let mut span = ended(ms(1), Status::error("boom"), None);
    none.on_end(&mut span);
    assert!(!span.span_context.is_sampled());
}
