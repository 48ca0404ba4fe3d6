//! Extraction and injection per propagation format, per operation. `cargo bench -p
//! service-tracing-middleware --bench propagation`; BENCHMARKS.md reports the results.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::TraceContextExt;
use service_tracing_middleware::propagation::{default_propagator, inject, PropagatorSource};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const BAGGAGE_8: &str = "userId=alice,serverNode=DF%2028,isProduction=false,tenant=acme,\
                         region=eu-west-1,plan=gold,feature.flag=on,correlation.id=order-42";

fn w3c_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    headers.insert("tracestate", HeaderValue::from_static(TRACESTATE));
    headers.insert("baggage", HeaderValue::from_static(BAGGAGE_8));
    headers
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation");
    let headers = w3c_headers();
    let source = PropagatorSource::default();
    let propagator = default_propagator();

    group.bench_function("w3c_extract_traceparent_tracestate_baggage8", |b| {
        b.iter(|| black_box(source.extract(black_box(&headers))))
    });
    let cx = source.extract(&headers);
    assert!(cx.span().span_context().is_valid());
    group.bench_function("w3c_inject_traceparent_tracestate_baggage8", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            inject(&*propagator, black_box(&cx), &mut out);
            black_box(out)
        })
    });
    group.bench_function("w3c_extract_and_inject", |b| {
        b.iter(|| {
            let cx = source.extract(black_box(&headers));
            let mut out = HeaderMap::new();
            inject(&*propagator, &cx, &mut out);
            black_box(out)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
