use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};

use super::*;

fn span(
    trace: u128,
    id: u64,
    parent: u64,
    name: &str,
    ms: u64,
    error: bool,
) -> (TraceId, StoredSpan) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    (
        TraceId::from(trace),
        StoredSpan {
            span_id: SpanId::from(id),
            parent_id: SpanId::from(parent),
            parent_is_remote: false,
            name: name.into(),
            kind: if parent == 0 {
                SpanKind::Server
            } else {
                SpanKind::Internal
            },
            status: if error {
                SpanStatus::Error("boom".into())
            } else {
                SpanStatus::Unset
            },
            start,
            end: start + Duration::from_millis(ms),
            service: "shop".into(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        },
    )
}

fn small() -> StoreLimits {
    StoreLimits {
        per_bucket: 2,
        ..StoreLimits::default()
    }
}

#[test]
fn slow_and_failed_traces_outlive_fast_ones() {
    let store = RecentTraces::new(small());
    store.add([span(1, 1, 0, "GET /a", 2_000, false)]);
    store.add([span(2, 1, 0, "GET /a", 3, true)]);
    for t in 10..110 {
        store.add([span(t, 1, 0, "GET /a", 3, false)]);
    }
    let kept: Vec<u128> = store
        .traces()
        .iter()
        .map(|t| u128::from_be_bytes(t.trace_id.to_bytes()))
        .collect();
    assert!(kept.contains(&1), "the slow trace is kept: {kept:?}");
    assert!(kept.contains(&2), "the failed trace is kept: {kept:?}");
    assert_eq!(kept.len(), 4, "two fast ones beside them: {kept:?}");
    assert_eq!(
        &kept[..2],
        &[109, 108],
        "the newest fast ones, newest first"
    );
    let stats = store.stats();
    assert_eq!((stats.placed, stats.evicted), (102, 98));
}

#[test]
fn each_route_keeps_its_own_buckets() {
    let store = RecentTraces::new(small());
    store.add([span(1, 1, 0, "GET /quiet", 3, false)]);
    for t in 10..110 {
        store.add([span(t, 1, 0, "GET /busy", 3, false)]);
    }
    assert!(
        store.trace(TraceId::from(1u128)).is_some(),
        "a busy route does not push out a quiet one"
    );
    assert_eq!(store.families(), ["GET /quiet", "GET /busy"]);
}

#[test]
fn spans_wait_for_their_root_and_late_spans_join_it() {
    let store = RecentTraces::new(small());
    store.add([span(7, 2, 1, "db", 5, false)]);
    assert_eq!(store.stats().pending, 1);
    assert!(
        store.trace(TraceId::from(7u128)).is_none(),
        "not placed before its root"
    );
    store.add([span(7, 1, 0, "GET /a", 8, false)]);
    let trace = store
        .trace(TraceId::from(7u128))
        .expect("placed with its root");
    assert_eq!(trace.spans.len(), 2);
    assert_eq!(store.stats().pending, 0);
    // A failing span arriving late moves the trace to the error bucket.
    store.add([span(7, 3, 1, "cache", 1, true)]);
    let trace = store.trace(TraceId::from(7u128)).expect("still there");
    assert_eq!(trace.spans.len(), 3);
    assert!(trace.is_error());
    for t in 10..20 {
        store.add([span(t, 1, 0, "GET /a", 3, false)]);
    }
    assert!(
        store.trace(TraceId::from(7u128)).is_some(),
        "now kept as an error"
    );
}

#[test]
fn pending_traces_whose_root_never_comes_are_bounded() {
    let store = RecentTraces::new(StoreLimits {
        pending_traces: 10,
        ..StoreLimits::default()
    });
    for t in 0..1_000 {
        store.add([span(t + 1, 2, 1, "orphan", 1, false)]);
    }
    let stats = store.stats();
    assert_eq!(stats.pending, 10);
    assert_eq!(stats.abandoned, 990);
    assert!(store.lock().pending_order.len() <= 2 * 10 + 64 + 1);
}

#[test]
fn the_pending_order_stays_bounded_when_every_root_comes() {
    let store = RecentTraces::new(StoreLimits::default());
    for t in 0..10_000 {
        store.add([
            span(t + 1, 2, 1, "child", 1, false),
            span(t + 1, 1, 0, "GET /a", 2, false),
        ]);
    }
    assert!(store.lock().pending_order.len() <= 64 + 1);
}

#[test]
fn a_trace_stops_growing_at_its_span_bound() {
    let store = RecentTraces::new(StoreLimits {
        spans_per_trace: 5,
        ..StoreLimits::default()
    });
    for id in 2..20 {
        store.add([span(3, id, 1, "child", 1, false)]);
    }
    store.add([span(3, 1, 0, "GET /a", 2, false)]);
    let trace = store.trace(TraceId::from(3u128)).expect("placed");
    assert_eq!(trace.spans.len(), 6, "five, and the root past the bound");
    assert_eq!(trace.dropped_spans, 13);
    assert_eq!(trace.operation(), "GET /a");
}

/// 100,000 requests whose spans carry large attributes: the store's count of bytes never
/// passes its bound, nor its count of traces. (The end-to-end test
/// `the_pages_store_stays_within_its_byte_bound` checks the live heap of a real service.)
#[test]
fn a_hundred_thousand_traces_with_large_attributes_stay_within_the_byte_bound() {
    let limits = StoreLimits::default();
    let store = RecentTraces::new(limits);
    let large: Box<str> = "x".repeat(MAX_VALUE).into();
    let mut peak = 0;
    for t in 0..100_000u128 {
        let (id, mut child) = span(t + 1, 2, 1, "db", 1, false);
        child.attributes = (0..20)
            .map(|i| (format!("k{i}").into(), large.clone()))
            .collect();
        let (_, mut root) = span(
            t + 1,
            1,
            0,
            &format!("GET /r{}", t % 150),
            (t % 2_000) as u64,
            t % 97 == 0,
        );
        root.attributes = child.attributes.clone();
        store.add([(id, child), (id, root)]);
        let stats = store.stats();
        assert!(stats.bytes <= limits.max_bytes, "{stats:?}");
        assert!(stats.traces <= limits.max_traces, "{stats:?}");
        peak = peak.max(stats.bytes);
    }
    let stats = store.stats();
    assert!(
        peak > limits.max_bytes / 2,
        "the bound is what limits it: {stats:?}"
    );
    // The count of bytes is not a guess far below the truth: each trace holds 40 values of
    // 1 KiB, and the store counts at least that.
    let held: usize = store.traces().iter().map(|t| t.bytes()).sum();
    assert!(
        held >= stats.traces * 40 * MAX_VALUE,
        "{held} for {stats:?}"
    );
    assert!(
        store.families().contains(&OTHER_FAMILY.to_owned()),
        "routes past 100 share _OTHER"
    );
}
