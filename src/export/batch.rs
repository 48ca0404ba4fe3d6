//! [`ExportWorker`]: the bounded queue between ended spans and the exporter.
//!
//! Why not the SDK's batch processor: its exporter either runs on the application's runtime,
//! where a busy service starves it and the queue drops most spans at saturation, or on a thread
//! of its own that cannot drive a tonic channel. Here the exporter runs on a dedicated thread
//! with its own single-threaded tokio runtime, so it keeps up however busy the service is, and
//! everything its transport does stays on that thread, where the `tracing` dispatcher is a
//! no-op: export traffic never produces spans or log events that would be exported in turn.
//!
//! The request path does O(1) work: one push into a lock-free bounded queue, and a wake-up of
//! the worker only once the queue holds what the worker waits for (a batch, or more while
//! exports are in flight). A full queue drops the span and counts it. The worker keeps several
//! exports in flight when its exporter allows it and the backend is slow to answer
//! (`batch/run.rs`).
//!
//! Redaction happens here, on the worker thread, just before the exporter sees a batch: every
//! exporter behind a worker (OTLP, console) gets redacted spans, and the request path pays
//! nothing for it. See [`crate::redact`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::chain::RecordProcessor;
use crate::config::BatchConfig;
use crate::error::{SetupError, SetupErrorKind};
use crate::redact::Redactor;
use crate::server_span::ServerRecord;

/// One ended span waiting for export: a span as the SDK ends it, or a server span of the
/// layer's own type with its request's attributes apart (encoded as they are by the fast
/// exporter, made into `KeyValue`s for the others).
///
/// Both kinds are boxed: the queue, the batch and the exporter move each span several times,
/// and a `SpanData` held inline made each move a copy of its 350-odd bytes (more instructions
/// than the one allocation an SDK span now costs; a server record was boxed already).
#[derive(Debug)]
pub(crate) enum Queued {
    Span(Box<SpanData>),
    Server(Box<ServerRecord>),
}

impl Queued {
    /// The span as the SDK would have ended it.
    pub(crate) fn into_span_data(self) -> SpanData {
        match self {
            Queued::Span(span) => *span,
            Queued::Server(record) => record.into_span_data(),
        }
    }

    /// The `SpanData` part (without a server span's request attributes).
    pub(crate) fn span(&self) -> &SpanData {
        match self {
            Queued::Span(span) => span,
            Queued::Server(record) => &record.span,
        }
    }
}

/// The exporter behind a worker. By default it is handed every span as `SpanData`; the fast
/// OTLP exporter takes server records as they are.
pub(crate) trait QueueExporter: SpanExporter {
    /// Exports one batch.
    fn export_queued(&self, batch: Vec<Queued>) -> impl std::future::Future<Output = Sent> + Send {
        let exported = self.export(batch.into_iter().map(Queued::into_span_data).collect());
        async move {
            Sent {
                result: exported.await,
                rejected: None,
            }
        }
    }

    /// How many export calls the worker may keep waiting for their answers at once. Above 1,
    /// [`export_queued`](Self::export_queued) must count each call's rejections itself
    /// ([`Sent::rejected`]): the shared tally cannot tell overlapping calls apart.
    fn in_flight(&self) -> usize {
        1
    }
}

/// What one export call came to.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) result: OTelSdkResult,
    /// The batch's spans the backend refused for good, when the exporter counted them for
    /// this call; `None`: whatever the worker's [`Tally`] counted during the call.
    pub(crate) rejected: Option<u64>,
}

/// Sees every batch on the worker thread, redacted, just before the exporter takes it: how the
/// built-in pages' recent-trace store (feature `pages`) is fed without touching the request
/// path. One call per batch; nothing when no tap is set.
pub(crate) trait BatchTap: Send + Sync + 'static {
    /// The batch about to be exported.
    fn seen(&self, batch: &[Queued]);
}

/// The console prints whole trees of `SpanData`.
impl QueueExporter for crate::export::console::ConsoleExporter {}

/// Counts of what happened to ended spans, for health checks and tests.
///
/// Every sampled span that ended is, at any moment, in exactly one of `exported`, `dropped`,
/// `rejected`, `failed` and `queued` (or in the batch being exported). `retried` and
/// `export_errors` count requests, not spans.
///
/// ```
/// # fn show(guard: &service_tracing::TracingGuard) {
/// let stats = guard.export_stats();
/// println!(
///     "{} exported, {} dropped, {} rejected, {} failed after {} retries",
///     stats.exported, stats.dropped, stats.rejected, stats.failed, stats.retried
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Spans the backend accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the backend was slow, throttling, or down, and
    /// the queue reached `OTEL_BSP_MAX_QUEUE_SIZE`).
    pub dropped: u64,
    /// Spans the backend refused for good, never sent again: requests answered with a
    /// non-retryable status (HTTP 400 and other 4xx, gRPC `INVALID_ARGUMENT`...) and the
    /// `rejected_spans` of partial-success answers.
    pub rejected: u64,
    /// Spans given up on: still failing (no connection, throttled, unavailable) when retries
    /// ran out of the export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`), or timed out.
    pub failed: u64,
    /// Export requests sent again after a retryable failure (each retry counts once).
    pub retried: u64,
    /// Export calls that ended in failure (rejected or failed).
    pub export_errors: u64,
    /// Spans waiting in the queue now.
    pub queued: u64,
}

impl ExportStats {
    /// Adds `other`'s figures to these.
    pub(crate) fn accumulate(&mut self, other: ExportStats) {
        self.exported += other.exported;
        self.dropped += other.dropped;
        self.rejected += other.rejected;
        self.failed += other.failed;
        self.retried += other.retried;
        self.export_errors += other.export_errors;
        self.queued += other.queued;
    }
}

/// When a worker's exports last succeeded, and since when they fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExportHealth {
    pub(crate) last_success: Option<SystemTime>,
    /// The first failure since the last success, while exports fail.
    pub(crate) failing_since: Option<SystemTime>,
    pub(crate) consecutive_failures: u64,
}

impl ExportHealth {
    /// Several workers as one: the latest success, the earliest failure still running, the
    /// longest run of failures.
    pub(crate) fn merge(self, other: ExportHealth) -> ExportHealth {
        let earliest = |a: Option<SystemTime>, b: Option<SystemTime>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ExportHealth {
            last_success: self.last_success.max(other.last_success),
            failing_since: earliest(self.failing_since, other.failing_since),
            consecutive_failures: self.consecutive_failures.max(other.consecutive_failures),
        }
    }
}

/// What an exporter tells the worker beyond success or failure: spans the backend refused for
/// good and requests it sent again. The worker reads it after each export call (they are
/// sequential), so of a batch, what is not rejected is exported (on success) or failed.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    rejected: AtomicU64,
    retried: AtomicU64,
    /// The backend's last word on a rejection or partial success, for the next loss report.
    last_rejection: Mutex<Option<String>>,
}

impl Tally {
    /// `spans` were refused for good; `reason` is reported (rate-limited) on standard error.
    pub(crate) fn reject(&self, spans: u64, reason: String) {
        self.rejected.fetch_add(spans, Ordering::Relaxed);
        *self
            .last_rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// A request is about to be sent again.
    pub(crate) fn retry(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Rejected spans, retries, and the last rejection's text.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> (u64, u64, Option<String>) {
        (
            self.rejected(),
            self.retried.load(Ordering::Relaxed),
            self.last_rejection
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
    Resource(Resource),
}

struct Shared {
    /// Call the exporter on every scheduled tick even with nothing queued (the console
    /// exporter prints traces whose grace period ran out).
    tick: AtomicBool,
    queue: ArrayQueue<Queued>,
    /// How many queued spans wake the worker: set by the worker to what it waits for (see
    /// `run::start_at`), read by the request path after each push.
    wake_at: AtomicUsize,
    /// How the request path wakes the worker, which waits inside its runtime (exports in
    /// flight progress while it waits).
    wakeup: run::Wakeup,
    control: Mutex<Vec<Control>>,
    stopped: AtomicBool,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    export_errors: AtomicU64,
    /// Rejections and retries, counted by the exporter.
    tally: Arc<Tally>,
    /// The last failed export's error, quoted in the next loss report (an untrusted
    /// certificate or a refused connection is otherwise invisible).
    last_error: Mutex<Option<String>>,
    /// Unix milliseconds of the last export that succeeded, 0 before the first.
    last_success_ms: AtomicU64,
    /// Unix milliseconds of the first failure since the last success, 0 when not failing.
    failing_since_ms: AtomicU64,
    consecutive_failures: AtomicU64,
    /// What sees each batch before export (the pages' store), set once.
    tap: OnceLock<Arc<dyn BatchTap>>,
}

impl Shared {
    /// A queue of `capacity` spans (at least one), whose worker is woken once `wake_at` wait.
    fn new(capacity: usize, wake_at: usize) -> Self {
        Self {
            tick: AtomicBool::new(false),
            queue: ArrayQueue::new(capacity.max(1)),
            wake_at: AtomicUsize::new(wake_at),
            wakeup: run::Wakeup::default(),
            control: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            export_errors: AtomicU64::new(0),
            tally: Arc::default(),
            last_error: Mutex::new(None),
            last_success_ms: AtomicU64::new(0),
            failing_since_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            tap: OnceLock::new(),
        }
    }

    /// Notes an export's outcome for [`ExportHealth`].
    fn note_outcome(&self, succeeded: bool) {
        let now = crate::clock::unix_ms(SystemTime::now());
        if succeeded {
            self.last_success_ms.store(now, Ordering::Relaxed);
            self.failing_since_ms.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            let _ = self.failing_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn wake(&self) {
        self.wakeup.wake();
    }

    fn send_control(
        &self,
        make: impl FnOnce(SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        if self.stopped.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        match self.control.lock() {
            Ok(mut c) => c.push(make(tx)),
            Err(_) => {
                return Err(OTelSdkError::InternalFailure(
                    "control lock poisoned".to_owned(),
                ))
            }
        }
        self.wake();
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

/// A [`SpanProcessor`] handing sampled spans to the export thread. Cheap to clone; clones share
/// the queue and the thread. A handle made with [`for_service`](Self::for_service) tags spans
/// with `service.name` (the console exporter, shared by several in-process services, reads it)
/// and does not stop the worker on shutdown.
#[derive(Clone)]
pub(crate) struct ExportWorker {
    shared: Arc<Shared>,
    service_tag: Option<StringValue>,
    owner: bool,
    flush_timeout: Duration,
}

impl fmt::Debug for ExportWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportWorker")
            .field("stats", &self.stats())
            .field("service_tag", &self.service_tag)
            .finish_non_exhaustive()
    }
}

impl ExportWorker {
    /// Starts the export thread. `make_exporter` runs on that thread inside its runtime, so
    /// exporters that need a tokio reactor (tonic) can be built; its error is returned here.
    /// With a `redactor`, every span is redacted on that thread before the exporter sees it.
    pub(crate) fn start<E, F>(
        make_exporter: F,
        batch: BatchConfig,
        resource: Resource,
        redactor: Option<Redactor>,
    ) -> Result<Self, SetupError>
    where
        E: QueueExporter + 'static,
        F: FnOnce() -> Result<E, SetupError> + Send + 'static,
    {
        Self::start_with_tally(|_| make_exporter(), batch, resource, redactor)
    }

    /// Like [`start`](Self::start), for an exporter that counts rejections and retries into
    /// the worker's [`Tally`] (the OTLP exporter). Three steps: the shared state, the thread
    /// (which builds the exporter and runs the loop), and the wait for the exporter's build.
    pub(crate) fn start_with_tally<E, F>(
        make_exporter: F,
        batch: BatchConfig,
        resource: Resource,
        redactor: Option<Redactor>,
    ) -> Result<Self, SetupError>
    where
        E: QueueExporter + 'static,
        F: FnOnce(Arc<Tally>) -> Result<E, SetupError> + Send + 'static,
    {
        let max_batch = batch
            .max_export_batch_size
            .clamp(1, batch.max_queue_size.max(1));
        let shared = Arc::new(Shared::new(batch.max_queue_size, max_batch));
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), SetupError>>(1);
        let worker_shared = shared.clone();
        let _detached =
            crate::runtime::spawn_with_runtime("service-tracing-export", move |runtime| {
                let started = runtime
                    .map_err(|e| {
                        SetupError::new(SetupErrorKind::Worker, "cannot start the export runtime")
                            .with_source(e)
                    })
                    .and_then(|runtime| {
                        let exporter =
                            build_exporter(&runtime, make_exporter, &worker_shared, &resource)?;
                        Ok((runtime, exporter))
                    });
                let (runtime, exporter) = match started {
                    Ok(started) => started,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let worker = Worker {
                    shared: &worker_shared,
                    runtime: &runtime,
                    timeout: batch.export_timeout,
                    max_batch,
                    redactor: redactor.as_ref(),
                };
                run(&worker, exporter, batch);
            })
            .map_err(|e| {
                SetupError::new(SetupErrorKind::Worker, "cannot spawn the export thread")
                    .with_source(e)
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SetupError::new(
                    SetupErrorKind::Worker,
                    "the export thread stopped while starting",
                ))
            }
        }
        Ok(Self {
            shared,
            service_tag: None,
            owner: true,
            flush_timeout: batch.export_timeout + Duration::from_secs(1),
        })
    }

    /// Another handle on the same worker that tags spans with `service.name`.
    pub(crate) fn for_service(&self, name: &str) -> Self {
        Self {
            shared: self.shared.clone(),
            service_tag: Some(StringValue::from(name.to_owned())),
            owner: false,
            flush_timeout: self.flush_timeout,
        }
    }

    /// Calls the exporter on every scheduled tick, even with nothing queued.
    pub(crate) fn ticking(self) -> Self {
        self.shared.tick.store(true, Ordering::Relaxed);
        self
    }

    /// Tags spans from this handle with `service.name`.
    pub(crate) fn tagged(mut self, name: &str) -> Self {
        self.service_tag = Some(StringValue::from(name.to_owned()));
        self
    }

    /// Shows every batch to `tap` on the worker thread before export; `false` when the
    /// worker already has one.
    #[cfg(feature = "pages")]
    pub(crate) fn set_tap(&self, tap: Arc<dyn BatchTap>) -> bool {
        self.shared.tap.set(tap).is_ok()
    }

    /// When export last succeeded and how long it has been failing.
    pub(crate) fn health(&self) -> ExportHealth {
        let s = &self.shared;
        let time = |ms: u64| (ms != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        ExportHealth {
            last_success: time(s.last_success_ms.load(Ordering::Relaxed)),
            failing_since: time(s.failing_since_ms.load(Ordering::Relaxed)),
            consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn stats(&self) -> ExportStats {
        let s = &self.shared;
        ExportStats {
            exported: s.exported.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            rejected: s.tally.rejected(),
            failed: s.failed.load(Ordering::Relaxed),
            retried: s.tally.retried.load(Ordering::Relaxed),
            export_errors: s.export_errors.load(Ordering::Relaxed),
            queued: s.queue.len() as u64,
        }
    }
}

/// Builds the exporter on the worker thread, inside its runtime (so exporters that need a tokio
/// reactor, such as tonic's, can be built), with the worker's tally and the resource.
fn build_exporter<E, F>(
    runtime: &tokio::runtime::Runtime,
    make_exporter: F,
    shared: &Shared,
    resource: &Resource,
) -> Result<E, SetupError>
where
    E: QueueExporter,
    F: FnOnce(Arc<Tally>) -> Result<E, SetupError>,
{
    let _entered = runtime.enter();
    let mut exporter = make_exporter(shared.tally.clone())?;
    exporter.set_resource(resource);
    Ok(exporter)
}

mod run;
use run::{run, Worker};

impl SpanProcessor for ExportWorker {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() || self.shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        self.tag(&mut span);
        self.enqueue(Queued::Span(Box::new(span)));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.shared.send_control(Control::Flush, self.flush_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if !self.owner {
            return match self.force_flush() {
                Err(OTelSdkError::AlreadyShutdown) => Ok(()),
                other => other,
            };
        }
        match self
            .shared
            .send_control(Control::Shutdown, timeout.max(self.flush_timeout))
        {
            Err(OTelSdkError::AlreadyShutdown) => Ok(()),
            other => other,
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if self.owner && !self.shared.stopped.load(Ordering::Relaxed) {
            if let Ok(mut c) = self.shared.control.lock() {
                c.push(Control::Resource(resource.clone()));
            }
            self.shared.wake();
        }
    }
}

impl RecordProcessor for ExportWorker {
    fn on_end_record(&self, mut record: Box<ServerRecord>) {
        if !record.span.span_context.is_sampled() || self.shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        self.tag(&mut record.span);
        self.enqueue(Queued::Server(record));
    }
}

impl ExportWorker {
    /// With several services on one worker, says whose span it is.
    fn tag(&self, span: &mut SpanData) {
        if let Some(tag) = &self.service_tag {
            span.attributes
                .push(KeyValue::new("service.name", tag.clone()));
        }
    }

    /// One push into the bounded queue; a full queue drops and counts.
    fn enqueue(&self, queued: Queued) {
        match self.shared.queue.push(queued) {
            Ok(()) => {
                // Sequentially consistent with the worker's store of `wake_at` and its look at
                // the queue: one of the two sees the other, so a worker going to sleep is
                // never left asleep past its threshold. (A plain load on x86 and ARMv8.)
                if self.shared.queue.len() >= self.shared.wake_at.load(Ordering::SeqCst) {
                    self.shared.wake();
                }
            }
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether two handles drive the same worker thread.
    pub(crate) fn same_worker(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

#[cfg(test)]
pub(crate) mod tests;
