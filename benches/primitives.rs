//! What the request path's building blocks cost on this machine: a clock reading, an atomic
//! read-modify-write, a reference count taken and given back, an uncontended lock, a small
//! allocation, and OpenTelemetry's context operations (a clone, an attach, a value added).
//!
//! Callgrind counts instructions, and several of these take far longer than their count says:
//! a clock reading is about 40 instructions of the vDSO but 35-45 ns here (a virtual machine),
//! and a locked instruction is one instruction but about 9 ns. BENCHMARKS.md uses these
//! figures to turn a request's list of such operations into time. Run with
//! `cargo bench --bench primitives`.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

/// A value the layer puts in a request's context (its size and shape do not matter here).
struct Scope(#[allow(dead_code)] u64);

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("primitives");
    group.bench_function("system_time_now", |b| b.iter(SystemTime::now));
    group.bench_function("instant_now", |b| b.iter(Instant::now));
    let counter = AtomicU64::new(0);
    group.bench_function("atomic_fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
    let shared = Arc::new(0u64);
    group.bench_function("arc_clone_and_drop", |b| {
        b.iter(|| drop(black_box(Arc::clone(black_box(&shared)))))
    });
    let lock = Mutex::new(0u64);
    group.bench_function("mutex_lock_and_unlock", |b| {
        b.iter(|| *black_box(&lock).lock().unwrap_or_else(|e| e.into_inner()) += 1)
    });
    group.bench_function("box_64_bytes_new_and_drop", |b| {
        b.iter(|| drop(black_box(Box::new([0u64; 8]))))
    });

    // The request's context as the layer builds it for an unsampled request: a remote span
    // context and one value.
    let sc = SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128),
        SpanId::from(0xb7ad_6b71_6920_3331_u64),
        TraceFlags::default(),
        false,
        TraceState::NONE,
    );
    group.bench_function("context_with_span_and_value", |b| {
        b.iter(|| {
            Context::new()
                .with_remote_span_context(black_box(sc.clone()))
                .with_value(Scope(7))
        })
    });
    let cx = Context::new()
        .with_remote_span_context(sc)
        .with_value(Scope(7));
    group.bench_function("context_clone_and_drop", |b| {
        b.iter(|| drop(black_box(cx.clone())))
    });
    group.bench_function("context_attach_and_detach", |b| {
        b.iter(|| drop(black_box(cx.clone().attach())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
