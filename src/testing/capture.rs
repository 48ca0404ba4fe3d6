//! The in-memory exporter: every span an export worker hands it, kept for the test to read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanId};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Where one [`TestTracing`](super::TestTracing) keeps its spans. Clones share them.
///
/// The lock is taken on the export thread, once per batch, and by the test when it reads:
/// never on the request path, which only pushes into the export worker's lock-free queue.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    spans: Arc<Mutex<Vec<SpanData>>>,
    /// Spans started and not ended yet, by id (the SDK's spans: the layer's server spans do
    /// not report their start).
    open: Arc<Mutex<HashMap<SpanId, SpanData>>>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("spans", &self.lock().len())
            .finish()
    }
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, Vec<SpanData>> {
        // A test that panicked while reading leaves the spans as they were.
        self.spans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An exporter adding to these spans.
    pub(crate) fn exporter(&self) -> MemoryExporter {
        MemoryExporter {
            capture: self.clone(),
        }
    }

    /// A span processor recording which spans start and end.
    pub(crate) fn start_tracker(&self) -> StartTracker {
        StartTracker {
            open: self.open.clone(),
        }
    }

    /// The spans started and not ended yet, as they were when they started.
    pub(super) fn open(&self) -> Vec<SpanData> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut spans: Vec<SpanData> = open.values().cloned().collect();
        spans.sort_by_key(|s| s.start_time);
        spans
    }

    /// A copy of the spans kept so far, in the order they were exported.
    pub(super) fn snapshot(&self) -> Vec<SpanData> {
        self.lock().clone()
    }

    /// The spans kept so far, leaving none.
    pub(super) fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.lock())
    }
}

/// The exporter behind the testing kit's export worker.
#[derive(Debug)]
pub(crate) struct MemoryExporter {
    capture: Capture,
}

impl SpanExporter for MemoryExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.capture.lock().extend(batch);
        std::future::ready(Ok(()))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl crate::export::batch::QueueExporter for MemoryExporter {}

/// Records the spans that start, and forgets them when they end: what is left was never
/// ended.
#[derive(Debug)]
pub(crate) struct StartTracker {
    open: Arc<Mutex<HashMap<SpanId, SpanData>>>,
}

impl SpanProcessor for StartTracker {
    fn on_start(&self, span: &mut Span, _cx: &Context) {
        if let Some(data) = span.exported_data() {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(span.span_context().span_id(), data);
        }
    }

    fn on_end(&self, span: SpanData) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&span.span_context.span_id());
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
