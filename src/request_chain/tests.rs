use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanId, SpanKind, Status, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::entry::{ChainEntry, ChainKind, ChainSource, ChainStatus, RequestChain};
use super::record::{plausible_id, Chains, THREAD_BATCH};
use super::store::Store;
use super::sync::{transaction, Worker};
use super::RequestChains;
use crate::chain::InFrontOf;
use crate::server_span::SharedChain;

fn entry(start_ms: u64, kind: ChainKind, span: u64) -> ChainEntry {
    ChainEntry {
        service: "svc".to_owned(),
        instance: "i-1".to_owned(),
        operation: "GET /a".to_owned(),
        kind,
        status: ChainStatus::Unset,
        http_status: Some(200),
        start: SystemTime::UNIX_EPOCH + Duration::from_millis(start_ms),
        duration: Duration::from_millis(2),
        trace_id: TraceId::from(7u128),
        span_id: SpanId::from(span),
        parent_span_id: None,
    }
}

/// A provider whose only processor is a chains hook (service `svc`), with its unstarted
/// background work.
fn recorded(config: RequestChains) -> (SdkTracerProvider, Chains, Worker) {
    let (chains, worker) = Chains::unstarted(config, None);
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("svc")
        .build();
    let chain = SharedChain::new(
        InFrontOf::new(chains.hook(&resource), SharedChain::empty()),
        &resource,
    );
    let provider = SdkTracerProvider::builder()
        .with_span_processor(chain)
        .build();
    (provider, chains, worker)
}

fn end(provider: &SdkTracerProvider, kind: SpanKind, name: &'static str, id: &str) {
    let tracer = provider.tracer("t");
    let mut span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes([KeyValue::new("correlation.id", id.to_owned())])
        .start(&tracer);
    span.end();
}

#[test]
fn the_store_keeps_the_newest_entries_of_an_id() {
    let mut store = Store::new(3, 100, Duration::from_secs(60));
    let now = Instant::now();
    for i in 0..5 {
        store.append("a", entry(i, ChainKind::Server, i + 1), now);
    }
    let kept: Vec<u64> = store
        .chain("a")
        .iter()
        .map(|e| u64::from_be_bytes(e.span_id.to_bytes()))
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert_eq!(store.len(), 3);
    // Redis lacks the three kept, not the two let go before any send.
    let unsent = store.unsent(10);
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].1.len(), 3);
}

#[test]
fn past_its_bound_the_store_lets_the_oldest_ids_go_and_counts_what_redis_lacked() {
    let mut store = Store::new(10, 4, Duration::from_secs(60));
    let now = Instant::now();
    let mut lost = 0;
    for (i, id) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        lost += store.append(id, entry(i as u64, ChainKind::Server, 1), now);
    }
    assert_eq!(store.len(), 4);
    assert!(store.chain("a").is_empty() && store.chain("b").is_empty());
    assert_eq!(store.chain("f").len(), 1);
    assert_eq!(lost, 2, "two unsent entries let go");
    // Sent entries let go later are not lost.
    let batch = store.unsent(100);
    assert_eq!(batch.len(), 4);
    store.sent(&batch);
    assert!(!store.has_unsent());
    assert_eq!(store.append("g", entry(9, ChainKind::Server, 1), now), 0);
}

#[test]
fn an_id_untouched_for_the_ttl_is_forgotten() {
    let mut store = Store::new(10, 100, Duration::from_secs(60));
    let then = Instant::now();
    store.append("old", entry(1, ChainKind::Server, 1), then);
    store.append(
        "new",
        entry(2, ChainKind::Server, 1),
        then + Duration::from_secs(50),
    );
    assert_eq!(store.expire(then + Duration::from_secs(61)), 1);
    assert!(store.chain("old").is_empty());
    assert_eq!(store.chain("new").len(), 1);
}

#[test]
fn entries_appended_while_a_batch_was_in_flight_stay_unsent() {
    let mut store = Store::new(10, 100, Duration::from_secs(60));
    let now = Instant::now();
    store.append("a", entry(1, ChainKind::Server, 1), now);
    let batch = store.unsent(10);
    store.append("a", entry(2, ChainKind::Client, 2), now);
    store.sent(&batch);
    let next = store.unsent(10);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1.len(), 1);
    assert_eq!(next[0].1[0].kind, ChainKind::Client);
}

#[test]
fn an_id_let_go_and_seen_again_is_sent_once() {
    let mut store = Store::new(10, 1, Duration::from_secs(60));
    let now = Instant::now();
    store.append("a", entry(1, ChainKind::Server, 1), now);
    store.append("b", entry(2, ChainKind::Server, 2), now);
    store.append("a", entry(3, ChainKind::Server, 3), now);
    let batch = store.unsent(10);
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(&*batch[0].0, "a");
}

#[test]
fn chains_order_by_start_a_call_before_what_it_called_and_each_span_once() {
    let chain = RequestChain::new(
        "c",
        vec![
            entry(20, ChainKind::Server, 3),
            entry(10, ChainKind::Server, 1),
            entry(20, ChainKind::Client, 2),
            entry(10, ChainKind::Server, 1),
        ],
        ChainSource::Shared,
    );
    let order: Vec<(u64, ChainKind)> = chain
        .entries()
        .iter()
        .map(|e| (u64::from_be_bytes(e.span_id.to_bytes()), e.kind))
        .collect();
    assert_eq!(
        order,
        [
            (1, ChainKind::Server),
            (2, ChainKind::Client),
            (3, ChainKind::Server)
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&chain.to_json()).expect("json");
    assert_eq!(json["correlation_id"], "c");
    assert_eq!(json["source"], "shared");
    assert_eq!(json["entries"][1]["kind"], "client");
    assert_eq!(json["entries"][1]["duration_micros"], 2_000);
    assert_eq!(json["entries"][0]["span_id"], "0000000000000001");
}

#[test]
fn an_entry_survives_its_wire_form_and_foreign_data_is_skipped() {
    let mut e = entry(1_733_000_000_123, ChainKind::Consumer, 0xabc);
    e.status = ChainStatus::Error;
    e.operation = "process \"orders\"".to_owned();
    e.http_status = None;
    let wire = e.to_wire();
    assert!(wire.len() < 256, "{} bytes: {wire}", wire.len());
    assert!(!wire.contains("\"p\""), "a root has no parent key: {wire}");
    assert_eq!(ChainEntry::from_wire(wire.as_bytes()), Some(e.clone()));
    e.parent_span_id = Some(SpanId::from(0x00f0_67aa_0ba9_02b7));
    let wire = e.to_wire();
    assert!(wire.contains("\"p\":\"00f067aa0ba902b7\""), "{wire}");
    assert_eq!(ChainEntry::from_wire(wire.as_bytes()), Some(e.clone()));
    // An entry of an earlier version (no parent) and a parent that is not one still read.
    let earlier = wire.replace(",\"p\":\"00f067aa0ba902b7\"", "");
    let garbled = wire.replace("00f067aa0ba902b7", "zz");
    for text in [earlier, garbled] {
        let read = ChainEntry::from_wire(text.as_bytes()).expect(&text);
        assert_eq!(read.parent_span_id, None, "{text}");
        assert_eq!(read.span_id, e.span_id);
    }
    for foreign in [&b"not json"[..], b"{}", b"{\"s\":1}", &[0xff, 0xfe][..]] {
        assert_eq!(ChainEntry::from_wire(foreign), None);
    }
}

#[test]
fn server_client_consumer_and_producer_spans_are_recorded_and_internal_ones_are_not() {
    let (provider, chains, mut worker) = recorded(RequestChains::new());
    end(&provider, SpanKind::Server, "GET /a", "corr-1");
    end(&provider, SpanKind::Client, "GET", "corr-1");
    end(&provider, SpanKind::Consumer, "process orders", "corr-1");
    end(&provider, SpanKind::Producer, "publish orders", "corr-1");
    end(&provider, SpanKind::Internal, "work", "corr-1");
    // No correlation id: nothing to chain.
    let tracer = provider.tracer("t");
    tracer
        .span_builder("GET /b")
        .with_kind(SpanKind::Server)
        .start(&tracer)
        .end();
    let chain = worker.read(chains.shared(), "corr-1");
    assert_eq!(chain.source(), ChainSource::Local);
    let kinds: Vec<ChainKind> = chain.entries().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ChainKind::Server,
            ChainKind::Client,
            ChainKind::Consumer,
            ChainKind::Producer
        ]
    );
    assert!(chain.entries().iter().all(|e| e.service == "svc"));
    assert_eq!(chains.stats().recorded, 4);
}

#[test]
fn an_entry_keeps_the_parent_of_its_span() {
    use opentelemetry::trace::TraceContextExt as _;
    let (provider, chains, mut worker) = recorded(RequestChains::new());
    let tracer = provider.tracer("t");
    let caller = opentelemetry::trace::SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let remote = opentelemetry::Context::new().with_remote_span_context(caller);
    tracer
        .span_builder("GET /a")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("correlation.id", "p-1")])
        .start_with_context(&tracer, &remote)
        .end();
    end(&provider, SpanKind::Server, "GET /root", "p-1");
    let chain = worker.read(chains.shared(), "p-1");
    let parents: Vec<Option<SpanId>> = chain.entries().iter().map(|e| e.parent_span_id).collect();
    assert_eq!(
        parents,
        [Some(SpanId::from(0x00f0_67aa_0ba9_02b7)), None],
        "{chain:#?}"
    );
    let json: serde_json::Value = serde_json::from_str(&chain.to_json()).expect("json");
    assert_eq!(json["entries"][0]["parent_span_id"], "00f067aa0ba902b7");
    assert!(json["entries"][1]["parent_span_id"].is_null());
}

#[test]
fn hostile_correlation_ids_never_reach_the_store() {
    let (provider, chains, mut worker) = recorded(RequestChains::new());
    let huge = "a".repeat(100_000);
    let at_bound = "b".repeat(128);
    for id in [
        huge.as_str(),
        &at_bound[..],
        "with space",
        "cr\r\nlf",
        "50%25",
        "a=b",
        "ünïcode",
        "",
    ] {
        end(&provider, SpanKind::Server, "GET /a", id);
    }
    worker.take_batches(chains.shared());
    assert_eq!(chains.stats().recorded, 1, "only the 128-byte id");
    assert_eq!(worker.stored(), 1);
    assert_eq!(worker.read(chains.shared(), &at_bound).len(), 1);
    // Reading a hostile id asks nothing of anyone.
    assert!(worker.read(chains.shared(), &huge).is_empty());
    assert!(!plausible_id(&huge) && plausible_id("order-42:a_b.c"));
}

#[test]
fn a_full_thread_batch_drops_and_counts_instead_of_growing() {
    let (provider, chains, mut worker) = recorded(RequestChains::new());
    for i in 0..THREAD_BATCH + 10 {
        end(&provider, SpanKind::Server, "GET /a", &format!("id-{i}"));
    }
    assert_eq!(chains.stats().dropped, 10);
    worker.take_batches(chains.shared());
    assert_eq!(chains.stats().recorded, THREAD_BATCH as u64);
    // Taken: the thread's batch has room again.
    end(&provider, SpanKind::Server, "GET /a", "after");
    worker.take_batches(chains.shared());
    assert_eq!(worker.read(chains.shared(), "after").len(), 1);
}

#[test]
fn the_benchmark_records_a_server_record_and_a_client_span() {
    let mut recorder = super::__bench::Recorder::new();
    recorder.end_server();
    recorder.end_client();
    recorder.drain();
    assert_eq!(recorder.counts(), (2, 0));
}

#[test]
fn one_transaction_appends_trims_and_sets_the_ttl_of_each_id() {
    let batch = vec![
        ("a".into(), vec![entry(1, ChainKind::Server, 1)]),
        (
            "b".into(),
            vec![
                entry(2, ChainKind::Server, 2),
                entry(3, ChainKind::Client, 3),
            ],
        ),
    ];
    let (pipe, commands) = transaction("p", 256, Duration::from_secs(3_600), &batch);
    assert_eq!(commands, 8, "MULTI, 3 per id, EXEC");
    let text = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
    for expected in [
        "MULTI", "RPUSH", "p:a", "LTRIM", "-256", "PEXPIRE", "3600000", "EXEC",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert_eq!(text.matches("RPUSH").count(), 2);
}

#[test]
fn a_status_and_code_come_from_the_span() {
    let (provider, chains, mut worker) = recorded(RequestChains::new());
    let tracer = provider.tracer("t");
    let mut span = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("correlation.id", "s-1"),
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.address", "inventory"),
            KeyValue::new("http.response.status_code", 503),
        ])
        .start(&tracer);
    span.set_status(Status::error("503"));
    span.end();
    let chain = worker.read(chains.shared(), "s-1");
    let e = &chain.entries()[0];
    assert_eq!(
        (e.operation.as_str(), e.status, e.http_status),
        ("GET inventory", ChainStatus::Error, Some(503))
    );
}

/// The one-pass naming of a client entry gives what error tracking and profiling call the
/// operation, cut on a character boundary, and falls back to their naming otherwise.
#[test]
fn a_client_entry_is_named_as_error_tracking_and_profiling_name_its_operation() {
    let long = format!("{}é{}", "a".repeat(510), "b".repeat(40));
    let cases: Vec<Vec<KeyValue>> = vec![
        vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", "inventory"),
        ],
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.address", long.clone()),
        ],
        vec![
            KeyValue::new("http.request.method", long),
            KeyValue::new("server.address", "x"),
        ],
        vec![KeyValue::new("server.address", "no-method")],
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.address", 7),
        ],
        vec![KeyValue::new("http.request.method", "GET")],
    ];
    for (i, attributes) in cases.into_iter().enumerate() {
        let (provider, chains, mut worker) = recorded(RequestChains::new());
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let reference = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let id = format!("name-{i}");
        for provider in [&provider, &reference] {
            let tracer = provider.tracer("t");
            let mut all = attributes.clone();
            all.push(KeyValue::new("correlation.id", id.clone()));
            tracer
                .span_builder("GET")
                .with_kind(SpanKind::Client)
                .with_attributes(all)
                .start(&tracer)
                .end();
        }
        let spans = exporter.get_finished_spans().expect("the reference span");
        let expected = crate::operation::operation_name(&spans[0]);
        let chain = worker.read(chains.shared(), &id);
        assert_eq!(chain.entries()[0].operation, expected, "case {i}");
    }
}

#[test]
fn the_variable_turns_chains_on_and_the_builder_beats_it() {
    let scoped = |chains: Option<&'static str>, builder: bool| {
        let mut options =
            crate::ServiceTracing::builder("svc").env_lookup(move |name| match name {
                "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
                "SERVICE_TRACING_REQUEST_CHAINS" => chains.map(str::to_owned),
                _ => None,
            });
        if builder {
            options = options.request_chains(RequestChains::new());
        }
        options.build_scoped().expect("set-up")
    };
    for (variable, builder, on) in [
        (None, false, false),
        (Some("TRUE"), false, true),
        (Some("false"), false, false),
        (Some("yes"), false, false),
        (Some("false"), true, true),
    ] {
        let scoped = scoped(variable, builder);
        assert_eq!(
            scoped.guard().request_chain_stats().is_some(),
            on,
            "{variable:?}, builder {builder}"
        );
        if on {
            let chain = scoped.guard().request_chain("nothing-yet").expect("on");
            assert!(chain.is_empty());
            assert_eq!(chain.source(), ChainSource::Local, "no Redis configured");
        }
        scoped.shutdown().expect("shutdown");
    }
}

#[test]
fn an_unreachable_redis_answers_locally_and_promptly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let redis = crate::errors::RedisSharing::new(&format!("redis://127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (chains, mut worker) = Chains::unstarted(RequestChains::new(), Some(redis));
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("svc")
        .build();
    let chain = SharedChain::new(
        InFrontOf::new(chains.hook(&resource), SharedChain::empty()),
        &resource,
    );
    let provider = SdkTracerProvider::builder()
        .with_span_processor(chain)
        .build();
    end(&provider, SpanKind::Server, "GET /a", "down-1");
    let asked = Instant::now();
    worker.push(chains.shared(), true);
    let chain = worker.read(chains.shared(), "down-1");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(chain.source(), ChainSource::Local);
    assert_eq!(chain.len(), 1);
    let stats = chains.stats();
    assert!(!stats.shared);
    assert_eq!(stats.sent, 0);
}
