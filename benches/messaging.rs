//! What carrying the trace through a message costs per message: writing the current span
//! context, a baggage member and the correlation id into the headers (W3C Trace Context and
//! Baggage, plus `x-correlation-id`), and reading them back into a context and a correlation
//! id, into a plain `HashMap<String, String>`, into lapin's AMQP `FieldTable` and into a Kafka
//! record's headers (rdkafka's `OwnedHeaders` written, read back as a consumed record's
//! `BorrowedHeaders`). Run with `cargo bench --features amqp,kafka --bench messaging`;
//! BENCHMARKS.md reports the results.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use lapin::types::FieldTable;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use rdkafka::message::OwnedHeaders;
use service_tracing::amqp::{AmqpHeaders, AmqpHeadersMut};
use service_tracing::kafka::{KafkaHeaders, KafkaHeadersMut};
use service_tracing::CorrelationId;
use service_tracing_middleware::carrier::CarrierPropagation;
use service_tracing_middleware::propagation::default_propagator;

fn publisher_context() -> Context {
    let sc = SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
        SpanId::from(0xb7ad_6b71_6920_3331),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    Context::new()
        .with_remote_span_context(sc)
        .with_baggage([KeyValue::new("tenant", "acme")])
        .with_value(CorrelationId::parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").expect("valid"))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("messaging");
    // The default propagators, fixed, so the figures do not depend on a process-wide setting.
    let propagation = CarrierPropagation::new().with_propagator(default_propagator());
    let cx = publisher_context();

    group.bench_function("inject_hashmap", |b| {
        b.iter(|| {
            let mut headers = HashMap::with_capacity(4);
            propagation.inject(black_box(&cx), &mut headers);
            headers
        })
    });
    let mut map = HashMap::new();
    propagation.inject(&cx, &mut map);
    group.bench_function("extract_hashmap", |b| {
        b.iter(|| propagation.extract(black_box(&map)))
    });

    group.bench_function("inject_amqp_field_table", |b| {
        b.iter(|| {
            let mut headers = FieldTable::default();
            propagation.inject(black_box(&cx), &mut AmqpHeadersMut(&mut headers));
            headers
        })
    });
    let mut table = FieldTable::default();
    propagation.inject(&cx, &mut AmqpHeadersMut(&mut table));
    group.bench_function("extract_amqp_field_table", |b| {
        b.iter(|| propagation.extract(&AmqpHeaders(black_box(&table))))
    });
    // A message with no trace headers: the consumer starts a trace and makes a correlation id.
    let empty = FieldTable::default();
    group.bench_function("extract_amqp_empty", |b| {
        b.iter(|| propagation.extract(&AmqpHeaders(black_box(&empty))))
    });

    // Kafka: the headers a record is sent with, and the same headers read back.
    group.bench_function("inject_kafka_headers", |b| {
        b.iter(|| {
            let mut headers = KafkaHeadersMut::new(None);
            propagation.inject(black_box(&cx), &mut headers);
            headers.into_headers()
        })
    });
    let mut written = KafkaHeadersMut::new(None);
    propagation.inject(&cx, &mut written);
    let record: OwnedHeaders = written.into_headers().expect("headers written");
    group.bench_function("extract_kafka_headers", |b| {
        b.iter(|| propagation.extract(&KafkaHeaders(black_box(record.as_borrowed()))))
    });
    let none = OwnedHeaders::new();
    group.bench_function("extract_kafka_empty", |b| {
        b.iter(|| propagation.extract(&KafkaHeaders(black_box(none.as_borrowed()))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
