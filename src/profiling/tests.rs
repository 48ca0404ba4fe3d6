use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SdkTracerProvider, SimpleSpanProcessor,
};
use service_tracing_middleware::TracingLayer;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// A clock the test moves by hand.
fn test_clock() -> (Arc<AtomicU64>, Clock) {
    let base = Instant::now();
    let millis = Arc::new(AtomicU64::new(0));
    let read = millis.clone();
    let clock: Clock = Arc::new(move || base + Duration::from_millis(read.load(Ordering::SeqCst)));
    (millis, clock)
}

/// Counts the slow-operation log lines and keeps their `suppressed` field.
#[derive(Clone, Default)]
struct SlowLines(Arc<Mutex<Vec<u64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SlowLines {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Suppressed(Option<u64>);
        impl tracing::field::Visit for Suppressed {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "suppressed" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let meta = event.metadata();
        if meta.target() == "service_tracing::profiling" && *meta.level() == tracing::Level::WARN {
            let mut visitor = Suppressed(None);
            event.record(&mut visitor);
            lock(&self.0).push(visitor.0.unwrap_or(u64::MAX));
        }
    }
}

fn provider(profiling: &Profiling, exporter: &InMemorySpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(profiling.in_front_of(SimpleSpanProcessor::new(exporter.clone())))
        .build()
}

/// An internal span of `duration`, ended now.
fn internal_span(provider: &SdkTracerProvider, name: &'static str, duration: Duration) {
    let tracer = provider.tracer("t");
    let end = SystemTime::now();
    let mut span = tracer
        .span_builder(name)
        .with_start_time(end - duration)
        .start(&tracer);
    span.end_with_timestamp(end);
}

#[test]
fn a_slow_span_gets_the_event_every_time_and_the_log_once_per_window() {
    let (millis, clock) = test_clock();
    let profiling = Profiling::new()
        .with_slow_threshold("SELECT orders", Duration::from_millis(20))
        .with_clock(clock);
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let lines = SlowLines::default();
    let subscriber = tracing_subscriber::registry().with(lines.clone());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..5 {
            internal_span(&provider, "SELECT orders", Duration::from_millis(30));
        }
        internal_span(&provider, "SELECT orders", Duration::from_millis(10));
        millis.store(30_000, Ordering::SeqCst);
        internal_span(&provider, "SELECT orders", Duration::from_millis(30));
        // A minute after the first line: the next is due, and says how many were held back.
        millis.store(60_000, Ordering::SeqCst);
        internal_span(&provider, "SELECT orders", Duration::from_millis(40));
    });
    assert_eq!(
        *lock(&lines.0),
        [0, 5],
        "one line per minute, then the held-back count"
    );

    let spans = exporter.get_finished_spans().unwrap_or_default();
    assert_eq!(spans.len(), 8);
    let slow: Vec<_> = spans
        .iter()
        .map(|s| s.events.iter().filter(|e| e.name == SLOW_EVENT).count())
        .collect();
    assert_eq!(
        slow,
        [1, 1, 1, 1, 1, 0, 1, 1],
        "every slow span carries the event"
    );
    let event = &spans[7].events.events[0];
    let attr = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(
        attr(THRESHOLD_ATTRIBUTE),
        Some(opentelemetry::Value::I64(20))
    );
    assert!(
        matches!(attr(DURATION_ATTRIBUTE), Some(opentelemetry::Value::F64(ms)) if (ms - 40.0).abs() < 0.01)
    );

    let op = profiling.operation("SELECT orders").expect("recorded");
    assert_eq!((op.slow, op.suppressed_logs), (7, 5));
    assert_eq!(op.kind, OperationKind::Internal);
    assert_eq!(op.threshold, Some(Duration::from_millis(20)));
    assert!(provider.shutdown().is_ok());
}

#[test]
fn a_threshold_on_the_span_wins_over_the_configuration() {
    let profiling = Profiling::new().with_slow_threshold("render", Duration::from_secs(10));
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let tracer = provider.tracer("t");
    let end = SystemTime::now();
    let mut span = tracer
        .span_builder("render")
        .with_start_time(end - Duration::from_millis(8))
        .with_attributes([slow_threshold_attribute(Duration::from_millis(5))])
        .start(&tracer);
    span.end_with_timestamp(end);
    let spans = exporter.get_finished_spans().unwrap_or_default();
    assert_eq!(spans[0].events.events[0].name, SLOW_EVENT);
    assert!(provider.shutdown().is_ok());
}

#[test]
fn a_tracing_span_field_sets_the_threshold_through_the_bridge() {
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bridge")));
    tracing::subscriber::with_default(subscriber, || {
        let fielded = tracing::info_span!("fielded", performance.threshold_ms = 1);
        fielded.in_scope(|| std::thread::sleep(Duration::from_millis(3)));
        drop(fielded);
        let helped = tracing::info_span!("helped");
        set_slow_threshold(&helped, Duration::from_millis(1));
        helped.in_scope(|| std::thread::sleep(Duration::from_millis(3)));
        drop(helped);
        let fast = tracing::info_span!("fast", performance.threshold_ms = 10_000);
        drop(fast);
    });
    let spans = exporter.get_finished_spans().unwrap_or_default();
    let slow = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.events.iter().any(|e| e.name == SLOW_EVENT))
    };
    assert_eq!(slow("fielded"), Some(true));
    assert_eq!(slow("helped"), Some(true));
    assert_eq!(slow("fast"), Some(false));
    assert!(provider.shutdown().is_ok());
}

#[test]
fn the_automatic_threshold_follows_the_previous_minutes_p99() {
    let (millis, clock) = test_clock();
    let profiling = Profiling::new()
        .with_auto_slow_threshold(true)
        .with_clock(clock);
    // Minute 0: 1..=200 ms, so p99 is 198 ms.
    for i in 1..=200u64 {
        profiling.record_request("GET", Some("/a"), Duration::from_millis(i), false);
    }
    assert_eq!(
        profiling.operation("GET /a").and_then(|o| o.threshold),
        None
    );
    millis.store(61_000, Ordering::SeqCst);
    profiling.record_request("GET", Some("/a"), Duration::from_millis(150), false);
    profiling.record_request("GET", Some("/a"), Duration::from_millis(250), false);
    let op = profiling.operation("GET /a").expect("recorded");
    let threshold = op.threshold.expect("a baseline").as_secs_f64();
    assert!((threshold - 0.198).abs() < 0.001, "{threshold}");
    assert_eq!(op.slow, 1);

    let off = Profiling::new();
    for i in 1..=200u64 {
        off.record_request("GET", Some("/a"), Duration::from_secs(i), false);
    }
    assert_eq!(
        off.operation("GET /a").map(|o| (o.threshold, o.slow)),
        Some((None, 0))
    );
}

#[test]
fn client_and_internal_spans_get_their_own_keys_and_server_spans_are_left_to_the_observer() {
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let tracer = provider.tracer("t");
    for _ in 0..3 {
        let mut client = tracer
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("server.address", "payments.internal"),
                KeyValue::new("url.full", "http://payments.internal/pay/123?x=1"),
            ])
            .start(&tracer);
        client.set_status(opentelemetry::trace::Status::error("down"));
        client.end();
    }
    tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/orders/{id}"),
        ])
        .start(&tracer)
        .end();
    let names: Vec<(String, OperationKind, u64, u64)> = profiling
        .operations()
        .into_iter()
        .map(|o| {
            let w = o.window(Window::OneMinute).cloned();
            let (count, errors) = w.map(|w| (w.count, w.errors)).unwrap_or_default();
            (o.operation, o.kind, count, errors)
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "GET payments.internal".to_owned(),
                OperationKind::Client,
                3,
                3
            ),
            // The server span is left to the observer: no threshold can apply to it, so the
            // processor does not even look its operation up.
        ]
    );
    assert!(provider.shutdown().is_ok());
}

#[test]
fn past_the_operation_bound_values_go_to_other_and_are_counted() {
    let profiling = Profiling::new().with_max_operations(10);
    for i in 0..25 {
        profiling.record_request(
            "GET",
            Some(&format!("/r{i}")),
            Duration::from_millis(1),
            false,
        );
    }
    profiling.record_request("GET", Some("/r0"), Duration::from_millis(1), false);
    let operations = profiling.operations();
    assert_eq!(operations.len(), 11);
    assert_eq!(profiling.overflow(), 15);
    let other = operations.last().expect("other");
    assert_eq!(
        (other.operation.as_str(), other.kind),
        (OTHER_OPERATION, OperationKind::Other)
    );
    assert_eq!(other.window(Window::OneHour).map(|w| w.count), Some(15));
    assert_eq!(
        profiling
            .operation("GET /r0")
            .and_then(|o| o.window(Window::OneHour).map(|w| w.count)),
        Some(2)
    );
}

async fn call(app: &Router, path: &str) {
    crate::test_support::get(app, path).await;
}

#[tokio::test]
async fn ten_thousand_raw_paths_of_one_route_are_one_operation_and_none_is_sampled() {
    let exporter = InMemorySpanExporter::default();
    let profiling = Profiling::new();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .with_span_processor(profiling.in_front_of(SimpleSpanProcessor::new(exporter.clone())))
        .build();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(
            TracingLayer::new()
                .with_tracer_provider(&provider)
                .with_observer(profiling.observer()),
        );
    for i in 0..10_000 {
        call(&app, &format!("/orders/{i}?session=s{i}")).await;
    }
    for i in 0..50 {
        call(&app, &format!("/missing/{i}")).await;
    }
    let operations = profiling.operations();
    let keys: Vec<&str> = operations.iter().map(|o| o.operation.as_str()).collect();
    assert_eq!(
        keys,
        ["GET /orders/{id}", "GET"],
        "unmatched paths share one key"
    );
    assert_eq!(
        operations[0].window(Window::OneMinute).map(|w| w.count),
        Some(10_000)
    );
    assert_eq!(
        operations[1].window(Window::OneMinute).map(|w| w.count),
        Some(50)
    );
    assert_eq!(profiling.overflow(), 0);
    assert_eq!(exporter.get_finished_spans().map(|s| s.len()).ok(), Some(0));
    assert!(provider.shutdown().is_ok());
}

#[test]
fn the_processor_finds_the_bottleneck_of_a_trace() {
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let tracer = provider.tracer("t");
    let t0 = SystemTime::now() - Duration::from_secs(1);
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut root = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_start_time(ms(0))
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/orders/{id}"),
        ])
        .start(&tracer);
    let cx =
        opentelemetry::Context::current().with_remote_span_context(root.span_context().clone());
    let mut child = tracer
        .span_builder("SELECT orders")
        .with_start_time(ms(1))
        .start_with_context(&tracer, &cx);
    child.end_with_timestamp(ms(51));
    root.end_with_timestamp(ms(52));
    // `with_remote_span_context` makes the parent look remote to the child; the child is
    // internal, so it is not a root, and the root has no parent.
    let routes = profiling.routes();
    assert_eq!(routes.len(), 1, "{routes:#?}");
    let bottleneck = routes[0].bottleneck().expect("a bottleneck");
    assert_eq!(bottleneck.operation, "SELECT orders");
    assert!(bottleneck.share > 0.9, "{bottleneck:?}");
    let recent = profiling.recent_bottlenecks();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].trace_id, root.span_context().trace_id());
    let json = profiling.summary().to_json();
    assert_eq!(
        json["routes"][0]["bottleneck"]["operation"],
        "SELECT orders"
    );
    assert_eq!(json["routes"][0]["severity"], "high");
    assert_eq!(json["analysis"]["traces"], 1);
    assert!(provider.shutdown().is_ok());
}

#[test]
fn a_slow_route_is_logged_by_the_observer_once_per_window_with_the_count_held_back() {
    let (millis, clock) = test_clock();
    let profiling = Profiling::new()
        .with_slow_threshold("GET /orders/{id}", Duration::from_millis(100))
        .with_slow_log_interval(Duration::from_secs(30))
        .with_clock(clock);
    let lines = SlowLines::default();
    let subscriber = tracing_subscriber::registry().with(lines.clone());
    tracing::subscriber::with_default(subscriber, || {
        // Every second for 75 s, a slow and a fast request.
        for s in 0..75u64 {
            millis.store(s * 1_000, Ordering::SeqCst);
            let slow = Duration::from_millis(150);
            profiling.record_request("GET", Some("/orders/{id}"), slow, false);
            let fast = Duration::from_millis(50);
            profiling.record_request("GET", Some("/orders/{id}"), fast, false);
        }
    });
    // Lines at 0, 30 and 60 s, each saying how many were held back since the last.
    assert_eq!(*lock(&lines.0), [0, 29, 29]);
    let op = profiling.operation("GET /orders/{id}").expect("recorded");
    assert_eq!((op.slow, op.suppressed_logs), (75, 72));
    let json = op.to_json();
    assert_eq!(json["slow"], 75);
    assert_eq!(json["threshold_ms"], 100.0);
}

#[test]
fn the_background_thread_analyses_a_trace_without_a_flush() {
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let tracer = provider.tracer("t");
    tracer
        .span_builder("GET /a")
        .with_kind(SpanKind::Server)
        .start(&tracer)
        .end();
    // Read the analysis state without draining the queue, as `routes()` would.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock(&profiling.shared.analyser).stats.traces == 0 {
        assert!(
            Instant::now() < deadline,
            "the thread never analysed the trace"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(profiling.shared.queue.is_empty());
    assert!(provider.shutdown().is_ok());
}

#[test]
fn requests_served_on_many_threads_are_all_counted() {
    let profiling = Profiling::new();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(TracingLayer::new().with_observer(profiling.observer()));
    std::thread::scope(|scope| {
        for _ in 0..3 {
            let app = app.clone();
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    // Not a multiple of the batch: some requests wait in each thread's batch.
                    for i in 0..(served::BATCH * 2 + 5) {
                        call(&app, &format!("/orders/{i}")).await;
                    }
                });
            });
        }
    });
    let op = profiling.operation("GET /orders/{id}").expect("recorded");
    let count = op.window(Window::OneMinute).map(|w| w.count);
    assert_eq!(count, Some(3 * (served::BATCH as u64 * 2 + 5)));
}

#[tokio::test]
async fn with_a_threshold_a_slow_request_is_logged_when_it_ends() {
    let profiling = Profiling::new().with_slow_threshold("GET /slow", Duration::from_millis(1));
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                "ok"
            }),
        )
        .layer(TracingLayer::new().with_observer(profiling.observer()));
    let lines = SlowLines::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
    call(&app, "/slow").await;
    assert_eq!(
        lock(&lines.0).len(),
        1,
        "logged before anything read the figures"
    );
}

#[test]
fn past_a_thousand_new_traces_a_second_a_share_is_analysed_and_the_rest_counted() {
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = provider(&profiling, &exporter);
    let tracer = provider.tracer("t");
    let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let roots = |at: SystemTime, n: usize| {
        for _ in 0..n {
            let mut root = tracer
                .span_builder("GET /busy")
                .with_kind(SpanKind::Server)
                .with_start_time(at)
                .start(&tracer);
            root.end_with_timestamp(at + Duration::from_millis(2));
        }
    };
    // 4,000 in one second: all analysed (the share is set from the second before), then the
    // next second keeps about a quarter.
    roots(second, 4_000);
    roots(second + Duration::from_secs(1), 4_000);
    let stats = profiling.analysis_stats();
    let analysed = stats.traces;
    assert_eq!(stats.dropped_spans, 0, "{stats:?}");
    assert_eq!(analysed + stats.skipped_traces, 8_000, "{stats:?}");
    assert!((4_700..5_300).contains(&analysed), "{stats:?}");
    let route = profiling
        .routes()
        .into_iter()
        .find(|r| r.route == "GET /busy")
        .expect("analysed");
    assert_eq!(route.traces, analysed);
    assert_eq!(route.mean, Duration::from_millis(2));
    assert_eq!(
        profiling.summary().to_json()["analysis"]["skipped_traces"],
        stats.skipped_traces
    );
}
