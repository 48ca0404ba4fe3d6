//! The cost, on the request path, of recording one request into the profiling figures: what
//! the server layer's observer does at the end of every response (`Profiling::record_request`:
//! the clock, one lock, the route lookup, three histogram increments, the slow check). Run with
//! `cargo bench --bench profiling`; no collector is needed.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use service_tracing::profiling::Profiling;

/// Latencies that land in different histogram buckets, as real requests do.
const LATENCIES_MICROS: [u64; 8] = [180, 950, 1_200, 3_400, 7_800, 12_000, 45_000, 230_000];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("profiling");

    let one_route =
        Profiling::new().with_slow_threshold("GET /users/{id}", Duration::from_secs(10));
    let mut i = 0usize;
    group.bench_function("record_request_one_route", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let latency = Duration::from_micros(LATENCIES_MICROS[i % LATENCIES_MICROS.len()]);
            one_route.record_request(
                black_box("GET"),
                black_box(Some("/users/{id}")),
                latency,
                false,
            );
        })
    });

    // 50 routes known: the lookup is in a fuller map, and the histograms of one request are
    // colder in the cache.
    let routes: Vec<String> = (0..50)
        .map(|r| format!("/api/v1/resource{r}/{{id}}"))
        .collect();
    let many = Profiling::new();
    for route in &routes {
        many.record_request("GET", Some(route), Duration::from_millis(1), false);
    }
    let mut j = 0usize;
    group.bench_function("record_request_fifty_routes", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let latency = Duration::from_micros(LATENCIES_MICROS[j % LATENCIES_MICROS.len()]);
            many.record_request(
                black_box("GET"),
                black_box(Some(routes[j % routes.len()].as_str())),
                latency,
                j % 20 == 0,
            );
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
