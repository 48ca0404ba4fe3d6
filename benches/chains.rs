//! The cost, on the request thread, of appending a span to its request chain
//! (`ServiceTracing::request_chains`): what the chains' hook does when a server span or a
//! client span ends (find the correlation id, copy one fixed-size record into the thread's
//! batch). The background thread's work (taking the batches into the local store, Redis) runs
//! between measured runs, untimed, so the batch never fills and nothing is dropped. Run with
//! `cargo bench --bench chains --features redis`; no collector or Redis is needed.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use service_tracing::request_chain::__bench::Recorder;

/// Pushes measured between two drains (the hook wakes the thread at 256).
const RUN: u64 = 200;

fn measure(recorder: &mut Recorder, iters: u64, push: fn(&mut Recorder)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(RUN);
        let started = Instant::now();
        for _ in 0..n {
            push(recorder);
        }
        total += started.elapsed();
        recorder.drain();
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_chain");
    let mut server = Recorder::new();
    group.bench_function("push_server_span", |b| {
        b.iter_custom(|iters| measure(&mut server, iters, Recorder::end_server))
    });
    let mut client = Recorder::new();
    group.bench_function("push_client_span", |b| {
        b.iter_custom(|iters| measure(&mut client, iters, Recorder::end_client))
    });
    group.finish();
    for (name, recorder) in [("server", &server), ("client", &client)] {
        let (recorded, dropped) = recorder.counts();
        eprintln!("{name}: {recorded} entries recorded, {dropped} dropped");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
