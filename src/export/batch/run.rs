//! The export thread's loop. It lives inside its runtime (one `block_on` for the thread's
//! life), so the answers of exports in flight arrive while it waits for more spans: with an
//! exporter that allows it ([`QueueExporter::in_flight`]), the next batch is sent while the
//! backend still answers the last one. One export at a time capped delivery at one batch per
//! round trip, whatever the CPU left: at saturation a collector a few milliseconds away let
//! the queue fill and drop.
//!
//! Exports in flight adapt to the backend ([`start_at`]): a batch is sent at once only when no
//! export is waiting for its answer; each further one waits until the queue has grown well
//! past a batch, which happens only while the backend answers more slowly than the service
//! fills batches. A near collector thus gets one export at a time (one wake-up per batch,
//! which matters when the export thread shares the request thread's core: four kept in flight
//! cost about 350 ns of CPU per request there), a distant one up to four.
//!
//! The worker waits for whichever comes first: the request path's wake-up (the queue reached
//! what the worker waits for, or a flush, shutdown or resource came), the scheduled delay, or
//! an export's answer.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use opentelemetry_sdk::error::OTelSdkError;
use tokio::task::{JoinError, JoinSet};

use super::{Control, QueueExporter, Queued, Sent, Shared};
use crate::config::BatchConfig;
use crate::redact::Redactor;

/// How often the worker reports drops and export errors on standard error.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What the worker thread holds while it runs.
pub(super) struct Worker<'a> {
    pub(super) shared: &'a Shared,
    pub(super) runtime: &'a tokio::runtime::Runtime,
    pub(super) timeout: Duration,
    pub(super) max_batch: usize,
    pub(super) redactor: Option<&'a Redactor>,
}

/// The request path's wake-up of a worker waiting in its runtime: a flag and the waiting
/// task's waker, both lock-free. Waking twice before the worker looks costs one swap.
#[derive(Debug, Default)]
pub(super) struct Wakeup {
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl Wakeup {
    pub(super) fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once woken since the last time it was ready.
    fn poll_woken(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs the worker until a shutdown control.
pub(super) fn run<E: QueueExporter + 'static>(
    worker: &Worker<'_>,
    exporter: E,
    batch: BatchConfig,
) {
    worker.runtime.block_on(drive(worker, exporter, batch));
}

async fn drive<E: QueueExporter + 'static>(worker: &Worker<'_>, exporter: E, batch: BatchConfig) {
    let shared = worker.shared;
    let mut exporter = Arc::new(exporter);
    let mut sending = Sending::new(
        exporter.in_flight(),
        worker.max_batch,
        shared.queue.capacity(),
    );
    let mut next_export = Instant::now() + batch.scheduled_delay;
    let mut reporter = Reporter::default();
    let mut armed = worker.max_batch;
    loop {
        let controls: Vec<Control> = match shared.control.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => Vec::new(),
        };
        let now = Instant::now();
        // What the request path wakes the worker for, set before the worker looks at the
        // queue (see `ExportWorker::enqueue`); stored only when it changes, since every
        // push reads it.
        let start_at = sending.start_at();
        if start_at != armed {
            shared.wake_at.store(start_at, Ordering::SeqCst);
            armed = start_at;
        }
        let due = now >= next_export || shared.queue.len() >= start_at;
        if controls.is_empty() && !due {
            sending.wait(shared, next_export).await;
            continue;
        }
        let draining_all = !controls.is_empty() || now >= next_export;
        if now >= next_export && shared.queue.is_empty() && shared.tick.load(Ordering::Relaxed) {
            let _ = exporter.export(Vec::new()).await;
        }
        sending.send_queued(worker, &exporter, draining_all).await;
        next_export = Instant::now() + batch.scheduled_delay;
        reporter.maybe_report(shared);
        if controls.is_empty() {
            continue;
        }

        // A flush answers for every span handed over before it, a shutdown for all, and a
        // resource change needs the exporter to itself: each waits for the exports in flight.
        sending.settle_all(shared).await;
        let mut stop = None;
        for control in controls {
            match control {
                Control::Resource(r) => match Arc::get_mut(&mut exporter) {
                    Some(exporter) => exporter.set_resource(&r),
                    // Cannot happen: a settled export's task has dropped its handle.
                    None => eprintln!("service-tracing: the export resource could not be changed"),
                },
                Control::Flush(reply) => {
                    let _ = reply.send(exporter.force_flush());
                }
                Control::Shutdown(reply) => stop = Some(reply),
            }
        }
        if let Some(reply) = stop {
            shared.stopped.store(true, Ordering::Release);
            sending.send_queued(worker, &exporter, true).await;
            sending.settle_all(shared).await;
            reporter.maybe_report(shared);
            let result = exporter.shutdown_with_timeout(batch.export_timeout);
            let _ = reply.send(result);
            return;
        }
    }
}

/// An export call's end, as its task returns it.
struct Settled {
    spans: u64,
    /// The tally's rejections when the call started (for exporters that count per call
    /// through the tally, one call at a time).
    rejected_before: u64,
    sent: Sent,
}

/// How many spans the queue must hold for the worker to start one more export while
/// `in_flight` exports (of at most `most`) wait for their answers, with batches of `batch`
/// spans in a queue of `capacity`: a batch when none is in flight; with some in flight, a
/// batch plus an equal share of the room left above it per export in flight (default queue
/// and batch: 512, then 896, 1,280 and 1,664); never with every slot taken.
///
/// So a second export starts only when the first has waited for its answer as long as the
/// service took to fill three quarters of another batch (with the default sizes), and the
/// backend is then slower than the service: one export at a time is the rule for a near
/// backend, and a slow or distant one gets more in flight the further the queue grows, while
/// a quarter of the room above a batch stays free before anything is dropped. A queue no
/// larger than a batch leaves no room to wait: every export starts at once, as before.
pub(super) fn start_at(in_flight: usize, most: usize, batch: usize, capacity: usize) -> usize {
    if in_flight == 0 {
        batch
    } else if in_flight >= most {
        usize::MAX
    } else {
        batch + in_flight * (capacity.saturating_sub(batch) / most)
    }
}

/// The exports in flight, at most `most` at once.
struct Sending {
    tasks: JoinSet<Settled>,
    /// Each task's spans, so that a panicking exporter's batch is still counted (as failed).
    spans: Vec<(tokio::task::Id, u64)>,
    most: usize,
    /// The worker's batch size and the queue's capacity, for [`start_at`].
    batch: usize,
    capacity: usize,
}

impl Sending {
    fn new(most: usize, batch: usize, capacity: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            spans: Vec::new(),
            most: most.max(1),
            batch,
            capacity,
        }
    }

    /// How many queued spans start the next export now ([`start_at`]).
    fn start_at(&self) -> usize {
        start_at(self.tasks.len(), self.most, self.batch, self.capacity)
    }

    /// Sends full batches while the queue holds enough to start another export now
    /// ([`start_at`]); with `all`, sends everything, the last partial batch too, waiting for
    /// an answer first whenever every slot is taken. Spans are redacted here, on the worker
    /// thread.
    async fn send_queued<E: QueueExporter + 'static>(
        &mut self,
        worker: &Worker<'_>,
        exporter: &Arc<E>,
        all: bool,
    ) {
        let shared = worker.shared;
        loop {
            let available = shared.queue.len();
            if available == 0 || (!all && available < self.start_at()) {
                return;
            }
            while self.tasks.len() >= self.most {
                self.settle_one(shared).await;
            }
            let batch = take_batch(worker, available.min(worker.max_batch));
            if let Some(tap) = shared.tap.get() {
                tap.seen(&batch);
            }
            let spans = batch.len() as u64;
            let rejected_before = shared.tally.rejected();
            let exporter = exporter.clone();
            let timeout = worker.timeout;
            let task = self.tasks.spawn(async move {
                let sent = match tokio::time::timeout(timeout, exporter.export_queued(batch)).await
                {
                    Ok(sent) => sent,
                    Err(_) => Sent {
                        result: Err(OTelSdkError::Timeout(timeout)),
                        rejected: None,
                    },
                };
                Settled {
                    spans,
                    rejected_before,
                    sent,
                }
            });
            self.spans.push((task.id(), spans));
        }
    }

    /// Waits for the next answer and counts it.
    async fn settle_one(&mut self, shared: &Shared) {
        if let Some(done) = self.tasks.join_next_with_id().await {
            self.settle(shared, done);
        }
    }

    /// Waits for every answer.
    async fn settle_all(&mut self, shared: &Shared) {
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.settle(shared, done);
        }
    }

    /// Waits until woken, `until`, or an answer (counted).
    async fn wait(&mut self, shared: &Shared, until: Instant) {
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(until.into()));
        let done = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(done)) = self.tasks.poll_join_next_with_id(cx) {
                return Poll::Ready(Some(done));
            }
            if shared.wakeup.poll_woken(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        if let Some(done) = done {
            self.settle(shared, done);
        }
    }

    /// Counts what became of one call's spans: what the backend refused for good is neither
    /// exported nor failed.
    fn settle(&mut self, shared: &Shared, done: Result<(tokio::task::Id, Settled), JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let in_task = match self.spans.iter().position(|(task, _)| *task == id) {
            Some(i) => self.spans.swap_remove(i).1,
            None => 0,
        };
        let (spans, result, rejected) = match done.map(|(_, settled)| settled) {
            Ok(Settled {
                spans,
                rejected_before,
                sent,
            }) => {
                let rejected = sent.rejected.unwrap_or_else(|| {
                    // Only exact one call at a time; overlapping calls must count their own.
                    if self.most == 1 {
                        shared.tally.rejected().saturating_sub(rejected_before)
                    } else {
                        0
                    }
                });
                (spans, sent.result, rejected)
            }
            // The exporter panicked: its batch is lost, as a failed export's.
            Err(e) => (
                in_task,
                Err(OTelSdkError::InternalFailure(format!(
                    "the exporter panicked: {e}"
                ))),
                0,
            ),
        };
        let rest = spans.saturating_sub(rejected);
        shared.note_outcome(result.is_ok());
        match result {
            Ok(()) => shared.exported.fetch_add(rest, Ordering::Relaxed),
            Err(e) => {
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                shared.export_errors.fetch_add(1, Ordering::Relaxed);
                shared.failed.fetch_add(rest, Ordering::Relaxed)
            }
        };
    }
}

/// Pops up to `take` spans, redacted.
fn take_batch(worker: &Worker<'_>, take: usize) -> Vec<Queued> {
    let mut batch = Vec::with_capacity(take);
    // Each span moved once from the queue into the batch, then redacted where it lies.
    while batch.len() < take {
        match worker.shared.queue.pop() {
            Some(queued) => batch.push(queued),
            None => break,
        }
    }
    if let Some(redactor) = worker.redactor {
        for queued in &mut batch {
            match queued {
                Queued::Span(span) => redactor.redact_span(span),
                Queued::Server(record) => redactor.redact_record(record),
            }
        }
    }
    batch
}

/// Rate-limited report of losses, written to standard error through a dispatcher of its own so
/// it can never become telemetry.
#[derive(Default)]
struct Reporter {
    last: Option<Instant>,
    reported_dropped: u64,
    reported_rejected: u64,
    reported_failed: u64,
}

impl Reporter {
    fn maybe_report(&mut self, shared: &Shared) {
        if self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        let dropped = shared.dropped.load(Ordering::Relaxed);
        let rejected = shared.tally.rejected();
        let failed = shared.failed.load(Ordering::Relaxed);
        let mut last_rejection = shared
            .tally
            .last_rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if dropped == self.reported_dropped
            && rejected == self.reported_rejected
            && failed == self.reported_failed
            && last_rejection.is_none()
        {
            return;
        }
        // A partial success may carry a warning with nothing rejected: reported all the same.
        let last_rejection = last_rejection
            .take()
            .map(|e| format!("; the backend said: {e}"))
            .unwrap_or_default();
        let last_error = shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        eprintln!(
            "service-tracing: {} span(s) dropped (export queue full), {} rejected by the backend and {} lost in failed exports since the last report; {} errors and {} retries in all{last_rejection}{last_error}",
            dropped - self.reported_dropped,
            rejected - self.reported_rejected,
            failed - self.reported_failed,
            shared.export_errors.load(Ordering::Relaxed),
            shared.tally.retried.load(Ordering::Relaxed),
        );
        self.reported_dropped = dropped;
        self.reported_rejected = rejected;
        self.reported_failed = failed;
        self.last = Some(Instant::now());
    }
}
