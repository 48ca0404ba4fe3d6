//! The cost of recording a request into the HTTP metrics: one request through the tracing
//! layer (no-op tracer, nothing exported) without and with the [`HttpServerMetrics`]
//! observer; the difference is the observer's cost per request.
#![allow(missing_docs)]

use std::convert::Infallible;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use service_tracing::metrics::HttpServerMetrics;
use service_tracing::TracingLayer;
use tower::{Layer, ServiceExt};

fn request() -> http::Request<String> {
    http::Request::get("/users/42")
        .body(String::new())
        .expect("request")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let inner = tower::service_fn(|_req: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let provider = SdkMeterProvider::builder().build();
    let metrics = HttpServerMetrics::new(&provider.meter("bench"));
    let mut group = c.benchmark_group("metrics");
    let plain = TracingLayer::new().layer(inner);
    group.bench_function("layer_without_metrics", |b| {
        b.to_async(&runtime).iter(|| {
            let svc = plain.clone();
            async move {
                let response = svc.oneshot(request()).await.expect("infallible");
                drop(response);
            }
        })
    });
    let measured = TracingLayer::new().with_observer(metrics).layer(inner);
    group.bench_function("layer_with_metrics", |b| {
        b.to_async(&runtime).iter(|| {
            let svc = measured.clone();
            async move {
                let response = svc.oneshot(request()).await.expect("infallible");
                drop(response);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
