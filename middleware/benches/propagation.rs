//! Extraction and injection per propagation format, per operation. `cargo bench -p
//! service-tracing-middleware --bench propagation`; BENCHMARKS.md reports the results.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use service_tracing_middleware::correlation::{self, CORRELATION_ID_HEADER, REQUEST_ID_HEADER};
use service_tracing_middleware::propagation::{
    default_propagator, extract, inject, propagator_from_names, set_configured, B3Propagator,
    HeaderInjector, JaegerPropagator, PropagatorSource,
};
use service_tracing_middleware::CorrelationId;

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
    // A thread remembers the last `baggage` header it read: the case above, one baggage sent
    // again and again, hits that memory. Here every request brings a baggage not seen just
    // before (64 of them in turn), as a service whose callers each send their own does.
    let distinct: Vec<HeaderMap> = (0..64)
        .map(|i| {
            let mut h = w3c_headers();
            let baggage = BAGGAGE_8.replace("alice", &format!("user{i}"));
            h.insert(
                "baggage",
                HeaderValue::from_str(&baggage).expect("a valid baggage"),
            );
            h
        })
        .collect();
    let mut next = distinct.iter().cycle();
    group.bench_function("w3c_extract_and_inject_new_baggage", |b| {
        b.iter(|| {
            let cx = source.extract(black_box(next.next().expect("a cycle never ends")));
            let mut out = HeaderMap::new();
            inject(&*propagator, &cx, &mut out);
            black_box(out)
        })
    });

    let formats: [(&str, Box<dyn TextMapPropagator + Send + Sync>, HeaderMap); 3] = [
        (
            "b3_single",
            Box::new(B3Propagator::single()),
            headers_of(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]),
        ),
        (
            "b3_multi",
            Box::new(B3Propagator::multi()),
            headers_of(&[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ]),
        ),
        (
            "jaeger",
            Box::new(JaegerPropagator::new()),
            headers_of(&[(
                "uber-trace-id",
                "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
            )]),
        ),
    ];
    for (name, propagator, headers) in &formats {
        assert!(
            extract(&**propagator, headers)
                .span()
                .span_context()
                .is_valid(),
            "{name}"
        );
        group.bench_function(format!("{name}_extract_and_inject"), |b| {
            b.iter(|| {
                let cx = extract(&**propagator, black_box(headers));
                let mut out = HeaderMap::new();
                inject(&**propagator, &cx, &mut out);
                black_box(out)
            })
        });
    }
    group.finish();
    correlation_ids(c);
    client_sources(c);
}

/// What the client pays per request to find its propagator: the default formats read straight
/// (`W3c`) against the configured slot while nothing is configured (`Configured`), and a fixed
/// B3 propagator against the same one through the slot and through OpenTelemetry's global
/// (a read lock).
fn client_sources(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_source");
    let cx = PropagatorSource::W3c.extract(&headers_of(&[("traceparent", TRACEPARENT)]));
    let mut run = |name: &str, source: &PropagatorSource| {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = HeaderMap::new();
                black_box(source)
                    .inject_context(black_box(&cx), &mut HeaderInjector::overwriting(&mut out));
                black_box(out)
            })
        });
    };
    // Each twice, in both orders, so the order does not decide the comparison.
    run("configured_unset_w3c", &PropagatorSource::Configured);
    run("w3c", &PropagatorSource::W3c);
    run("configured_unset_w3c_again", &PropagatorSource::Configured);
    run("w3c_again", &PropagatorSource::W3c);
    let b3 = propagator_from_names(["b3"]).expect("b3").into_shared();
    run("fixed_b3", &PropagatorSource::Fixed(b3.clone()));
    set_configured(Some(b3.clone()));
    run("configured_b3", &PropagatorSource::Configured);
    opentelemetry::global::set_text_map_propagator(propagator_from_names(["b3"]).expect("b3"));
    run("global_b3", &PropagatorSource::Global);
    group.finish();
}

/// Reading and validating an incoming correlation id, as the layer does for every request.
fn correlation_ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlation");
    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    group.bench_function("is_valid_36", |b| {
        b.iter(|| black_box(CorrelationId::is_valid(black_box(ID.as_bytes()))))
    });
    group.bench_function("is_valid_128", |b| {
        let long = "a1-b2_c3.d4:".repeat(11);
        let long = &long[..128];
        b.iter(|| black_box(CorrelationId::is_valid(black_box(long.as_bytes()))))
    });
    let names = [CORRELATION_ID_HEADER, REQUEST_ID_HEADER];
    let headers = headers_of(&[("x-correlation-id", ID)]);
    group.bench_function("resolve_from_header", |b| {
        b.iter(|| black_box(correlation::resolve(black_box(&headers), &names, None)))
    });
    group.finish();
}

fn headers_of(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    headers
}

criterion_group!(benches, bench);
criterion_main!(benches);
