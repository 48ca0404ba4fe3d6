//! The export worker's tests; `chatter` and `install_bridge_detector` serve the metrics
//! push's tests too.

use super::*;
use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use std::thread;
use std::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

/// A provider feeding `worker`, after it ended `n` spans (kept, so that dropping it does
/// not shut the worker down before the test reads it).
fn end_spans(worker: &ExportWorker, n: usize) -> SdkTracerProvider {
    let app = SdkTracerProvider::builder()
        .with_span_processor(worker.clone())
        .build();
    for _ in 0..n {
        app.tracer("app").in_span("request", |_| ());
    }
    app
}

/// An exporter whose transport is chatty: it opens `tracing` spans and logs on the export
/// thread, in a task on its runtime, and on a blocking-pool thread, as a gRPC or HTTP
/// client with tracing instrumentation would.
#[derive(Debug)]
struct ChattyExporter;

impl QueueExporter for ChattyExporter {}

impl SpanExporter for ChattyExporter {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        chatter("export");
        let task = tokio::spawn(async { chatter("task") });
        let blocking = tokio::task::spawn_blocking(|| chatter("blocking"));
        let _ = task.await;
        let _ = blocking.await;
        Ok(())
    }
}

/// Opens a `tracing` span and logs in it, as an instrumented transport would.
pub(crate) fn chatter(name: &'static str) {
    let span = tracing::info_span!("transport", step = name);
    let _entered = span.enter();
    tracing::info!("sending a batch");
}

/// Installs a global subscriber whose OpenTelemetry bridge exports into the returned
/// in-memory exporter, and checks that chatter on an ordinary thread reaches it. `None` when
/// a global subscriber is already set (plain `cargo test`): nothing can be proved then.
pub(crate) fn install_bridge_detector() -> Option<(SdkTracerProvider, InMemorySpanExporter)> {
    let leaked = InMemorySpanExporter::default();
    let bridge_provider = SdkTracerProvider::builder()
        .with_simple_exporter(leaked.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(bridge_provider.tracer("bridge")));
    tracing::subscriber::set_global_default(subscriber).ok()?;
    // The detector works: the same chatter on an ordinary thread becomes a span.
    chatter("control");
    bridge_provider.force_flush().expect("flush");
    assert_eq!(leaked.get_finished_spans().expect("spans").len(), 1);
    leaked.reset();
    Some((bridge_provider, leaked))
}

/// Each unit test runs in its own process under nextest, so a global subscriber is fine.
#[test]
fn export_traffic_never_reaches_the_tracing_bridge() {
    let Some((bridge_provider, leaked)) = install_bridge_detector() else {
        return;
    };

    let worker = ExportWorker::start(
        || Ok(ChattyExporter),
        BatchConfig::default(),
        Resource::builder_empty().build(),
        None,
    )
    .expect("worker starts");
    let _app = end_spans(&worker, 3);
    worker.force_flush().expect("flush");
    assert_eq!(worker.stats().exported, 3);
    bridge_provider.force_flush().expect("flush");
    let spans = leaked.get_finished_spans().expect("spans");
    assert!(spans.is_empty(), "export traffic became spans: {spans:?}");
}

#[derive(Debug)]
struct Stuck;

impl QueueExporter for Stuck {}

impl SpanExporter for Stuck {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        std::future::pending().await
    }
}

#[test]
fn a_stuck_exporter_never_blocks_or_grows_the_queue() {
    let batch = BatchConfig::default()
        .with_max_queue_size(16)
        .with_max_export_batch_size(4)
        .with_export_timeout(Duration::from_millis(50));
    let worker = ExportWorker::start(|| Ok(Stuck), batch, Resource::builder_empty().build(), None)
        .expect("starts");
    let app = SdkTracerProvider::builder()
        .with_span_processor(worker.clone())
        .build();
    let started = Instant::now();
    for _ in 0..1000 {
        app.tracer("app").in_span("request", |_| ());
    }
    // Pushing never waits on the exporter: 1,000 spans take far less than one export timeout each.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(worker.stats().queued <= 16);
    // Each remaining export times out; after the flush every span is accounted for.
    let _ = worker.force_flush();
    let stats = worker.stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(stats.exported, 0);
    assert_eq!(
        stats.dropped + stats.failed + stats.queued,
        1000,
        "{stats:?}"
    );
    assert!(stats.dropped > 0);
}

/// Rejects two spans of each batch (a partial success) after one retry; fails every third
/// batch after rejecting one of its spans outright.
#[derive(Debug)]
struct Judging {
    tally: Arc<Tally>,
    calls: AtomicU64,
}

impl QueueExporter for Judging {}

impl SpanExporter for Judging {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        self.tally.retry();
        if self.calls.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
            self.tally.reject(1, "one bad span".to_owned());
            return Err(OTelSdkError::InternalFailure("gave up".to_owned()));
        }
        self.tally.reject(2, "two too old".to_owned());
        Ok(())
    }
}

#[test]
fn rejected_spans_are_neither_exported_nor_failed() {
    let batch = BatchConfig::default()
        .with_max_queue_size(64)
        .with_max_export_batch_size(5);
    let worker = ExportWorker::start_with_tally(
        |tally| {
            Ok(Judging {
                tally,
                calls: AtomicU64::new(0),
            })
        },
        batch,
        Resource::builder_empty().build(),
        None,
    )
    .expect("starts");
    let _app = end_spans(&worker, 15);
    worker.force_flush().expect("flush");
    let stats = worker.stats();
    // Three batches of 5: two partial successes (3 exported, 2 rejected each), one failure
    // (1 rejected, 4 failed).
    assert_eq!(
        (stats.exported, stats.rejected, stats.failed, stats.retried),
        (6, 5, 4, 3),
        "{stats:?}"
    );
    assert_eq!(stats.export_errors, 1);
    assert_eq!(
        stats.exported + stats.rejected + stats.failed + stats.dropped,
        15
    );
}

/// A lone backend's trace (its root has a remote parent) reaches the console without a
/// flush and without further traffic: the worker ticks the exporter, which prints it once
/// its grace period has passed.
#[test]
fn a_ticking_worker_prints_remote_rooted_traces_without_further_spans() {
    use crate::export::console::ConsoleExporter;
    use opentelemetry::trace::{
        Span as _, SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    let buffer = crate::test_support::SharedBuffer::default();
    let writer = buffer.clone();
    let batch = BatchConfig::default().with_scheduled_delay(Duration::from_millis(20));
    let worker = ExportWorker::start(
        move || {
            Ok(ConsoleExporter::with_writer(writer)
                .with_remote_root_grace(Duration::from_millis(100)))
        },
        batch,
        Resource::builder_empty()
            .with_service_name("backend")
            .build(),
        None,
    )
    .expect("starts")
    .ticking();
    let app = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_service_name("backend")
                .build(),
        )
        .with_span_processor(worker.clone())
        .build();
    let remote = SpanContext::new(
        TraceId::from(0x5eed_u128),
        opentelemetry::trace::SpanId::from(7_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let parent = Context::new().with_remote_span_context(remote);
    app.tracer("app")
        .build_with_context(
            opentelemetry::trace::SpanBuilder::from_name("GET /orders/{id}"),
            &parent,
        )
        .end();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = buffer.text();
        if text.contains("GET /orders/{id}") {
            assert!(text.contains("[backend]"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "never printed: {text:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// What the console prints went through the redaction policy: a panic message, a
/// `record_error` message and a status holding secrets are printed redacted.
#[test]
fn the_console_prints_redacted_spans() {
    use crate::export::console::ConsoleExporter;
    use opentelemetry::trace::{Span as _, Status, Tracer as _};

    let buffer = crate::test_support::SharedBuffer::default();
    let writer = buffer.clone();
    let worker = ExportWorker::start(
        move || Ok(ConsoleExporter::with_writer(writer)),
        BatchConfig::default(),
        Resource::builder_empty().with_service_name("shop").build(),
        Some(Redactor::new()),
    )
    .expect("starts");
    let app = SdkTracerProvider::builder()
        .with_span_processor(worker.clone())
        .build();
    let mut span = app.tracer("app").start("POST /pay");
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", "panic"),
            KeyValue::new(
                "exception.message",
                "charge failed: card 4111 1111 1111 1111, Bearer 9f8e7d6c5b4a39281706",
            ),
        ],
    );
    span.add_event(
        "exception",
        vec![KeyValue::new(
            "exception.message",
            "upstream said password=hunter2 for bob@example.com",
        )],
    );
    span.set_status(Status::error("token AKIAIOSFODNN7EXAMPLE rejected"));
    span.end();
    worker.force_flush().expect("flush");

    let text = buffer.text();
    assert!(text.contains("POST /pay"), "{text}");
    for secret in [
        "4111 1111 1111 1111",
        "9f8e7d6c5b4a39281706",
        "hunter2",
        "bob@example.com",
        "AKIAIOSFODNN7EXAMPLE",
    ] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
    assert!(text.contains("[REDACTED]"), "{text}");
}

/// A backend `latency` away: answers every export that late, refusing nothing. Lets
/// `in_flight` exports overlap.
#[derive(Debug)]
struct Distant {
    latency: Duration,
    in_flight: usize,
}

impl QueueExporter for Distant {
    fn export_queued(&self, batch: Vec<Queued>) -> impl std::future::Future<Output = Sent> + Send {
        let latency = self.latency;
        async move {
            drop(batch);
            tokio::time::sleep(latency).await;
            Sent {
                result: Ok(()),
                rejected: Some(0),
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl SpanExporter for Distant {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// Ends spans into `worker` at `per_second`, on schedule (what falls behind is caught up at
/// once), for `duration`; then flushes. Returns how many were ended.
fn steady_stream(worker: &ExportWorker, per_second: u64, duration: Duration) -> u64 {
    let app = SdkTracerProvider::builder()
        .with_span_processor(worker.clone())
        .build();
    let tracer = app.tracer("app");
    let started = Instant::now();
    let mut ended = 0;
    while started.elapsed() < duration {
        let due = started.elapsed().as_micros() as u64 * per_second / 1_000_000;
        while ended < due {
            tracer.in_span("request", |_| ());
            ended += 1;
        }
        // The stream's pace, not a wait for the worker.
        thread::sleep(Duration::from_millis(1));
    }
    worker.force_flush().expect("flush");
    ended
}

/// The stream the two tests below send: 20,000 spans a second for one second, batches of
/// 256 in the default queue of 2,048, to a backend 20 ms away. One export per round trip
/// would carry at most 256 spans per 20 ms, 12,800 a second.
fn distant_backend_stream(in_flight: usize) -> (u64, ExportStats) {
    let batch = BatchConfig::default().with_max_export_batch_size(256);
    let worker = ExportWorker::start(
        move || {
            Ok(Distant {
                latency: Duration::from_millis(20),
                in_flight,
            })
        },
        batch,
        Resource::builder_empty().build(),
        None,
    )
    .expect("starts");
    let ended = steady_stream(&worker, 20_000, Duration::from_secs(1));
    (ended, worker.stats())
}

/// Delivery at saturation: with the fast exporter's exports in flight at once, a backend a
/// round trip away takes every span of a stream that one export at a time could not carry.
#[test]
fn exports_in_flight_at_once_deliver_every_span_to_a_distant_backend() {
    let (ended, stats) = distant_backend_stream(crate::export::otlp_fast::IN_FLIGHT);
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.exported, ended, "{stats:?}");
}

/// The same stream, one export at a time (as the worker exported before): the queue fills
/// while each answer is awaited, and spans are dropped. This is what the test above guards.
#[test]
fn one_export_at_a_time_drops_spans_a_distant_backend_could_take() {
    let (ended, stats) = distant_backend_stream(1);
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.exported + stats.dropped, ended, "{stats:?}");
}

/// Where the worker starts one more export, by exports in flight: a batch with none, then a
/// share of the room above a batch per export in flight, never with every slot taken.
#[test]
fn a_further_export_waits_for_a_share_of_the_room_above_a_batch() {
    let at = |n| run::start_at(n, 4, 512, 2048);
    assert_eq!([at(0), at(1), at(2), at(3)], [512, 896, 1280, 1664]);
    assert_eq!(at(4), usize::MAX);
    // One export at a time: a batch, then nothing until the answer.
    assert_eq!(run::start_at(0, 1, 512, 2048), 512);
    assert_eq!(run::start_at(1, 1, 512, 2048), usize::MAX);
    // No room above a batch: every slot starts at once, as before.
    assert_eq!(run::start_at(2, 4, 512, 512), 512);
}

/// A backend that answers only when the test opens its gate, and notes how many spans the
/// test had ended when each export call started.
#[derive(Debug)]
struct Gated {
    ended: Arc<AtomicU64>,
    starts: Arc<(Mutex<Vec<u64>>, std::sync::Condvar)>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl QueueExporter for Gated {
    fn export_queued(&self, batch: Vec<Queued>) -> impl std::future::Future<Output = Sent> + Send {
        let (starts, started) = &*self.starts;
        starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.ended.load(Ordering::SeqCst));
        started.notify_all();
        let gate = self.gate.clone();
        async move {
            drop(batch);
            let _open = gate.acquire().await;
            Sent {
                result: Ok(()),
                rejected: Some(0),
            }
        }
    }

    fn in_flight(&self) -> usize {
        crate::export::otlp_fast::IN_FLIGHT
    }
}

impl SpanExporter for Gated {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// A backend slow to answer gets a second export only once the queue has grown well past a
/// batch (batches of 256 in the default queue of 2,048: at 256 + 448 = 704 queued, so after
/// 960 spans), not as soon as the next batch is ready (512 spans): a near backend, which
/// answers before that, is sent one export at a time. Kept four in flight at once, the worker
/// started the second export at about 512 spans.
#[test]
fn a_second_export_waits_until_the_queue_has_grown_past_a_batch() {
    let ended = Arc::new(AtomicU64::new(0));
    let starts = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let exporter = Gated {
        ended: ended.clone(),
        starts: starts.clone(),
        gate: gate.clone(),
    };
    let batch = BatchConfig::default().with_max_export_batch_size(256);
    let worker = ExportWorker::start(
        move || Ok(exporter),
        batch,
        Resource::builder_empty().build(),
        None,
    )
    .expect("starts");
    let app = SdkTracerProvider::builder()
        .with_span_processor(worker.clone())
        .build();
    // The provider hands the worker its resource, which drains the queue: seen to first.
    worker.force_flush().expect("flush");
    for _ in 0..1200 {
        app.tracer("app").in_span("request", |_| ());
        ended.fetch_add(1, Ordering::SeqCst);
    }
    let (lock, started) = &*starts;
    let (seen, waited) = started
        .wait_timeout_while(
            lock.lock().unwrap_or_else(PoisonError::into_inner),
            Duration::from_secs(10),
            |starts| starts.len() < 2,
        )
        .unwrap_or_else(PoisonError::into_inner);
    assert!(
        !waited.timed_out(),
        "a second export never started: {seen:?}"
    );
    // The span that made the queue reach 704 may not be counted yet.
    assert!(seen[0] >= 255, "{seen:?}");
    assert!(seen[1] >= 256 + 704 - 1, "{seen:?}");
    drop(seen);
    gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    worker.force_flush().expect("flush");
    assert_eq!(worker.stats().exported, 1200, "{:?}", worker.stats());
}
