//! A span exporter that prints each finished trace as an indented tree.
//!
//! This is the default exporter when no collector endpoint is configured, so
//! that traces are visible with no collector at all:
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736
//! └─ GET /checkout  [frontend]  server  12.3 ms  200  Ok
//!    ├─ GET  [frontend]  client  8.1 ms  500  Error: 500 Internal Server Error
//!    │  └─ GET /orders/{id}  [backend]  server  7.2 ms  500  Error
//!    │     • exception: panicked: boom
//!    └─ render  [frontend]  internal  0.4 ms
//! ```
//!
//! Spans arrive child-first and a trace may be split across export batches,
//! so spans are buffered per trace id:
//!
//! * when a span with no parent ends, the whole buffered trace is printed
//!   (spans whose parent is remote are nested under that parent when it is
//!   in the buffer, which is the case for two services in one process);
//! * when a span ends whose parent has already been printed, its buffered
//!   subtree is printed as a continuation of that trace;
//! * a span whose remote parent is unknown waits: it may still be the child
//!   of a client span of another in-process service. Such traces are printed
//!   by [`SpanExporter::force_flush`], [`SpanExporter::shutdown`], or when the
//!   pending-span cap ([`ConsoleExporter::with_max_pending_spans`]) is
//!   exceeded;
//! * spans whose parent is not in the buffer (orphans) are printed at the
//!   top level of the tree.
//!
//! `mod.rs` holds the exporter; `buffer.rs` the spans waiting for their root, `tree.rs` the
//! layout of a trace and `format.rs` the text of each line.

mod buffer;
mod format;
mod tree;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::TraceId;
use opentelemetry::Key;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use buffer::{has_local_orphan, State};
use tree::{render_trace, RenderCtx};

const DEFAULT_MAX_PENDING_SPANS: usize = 10_000;

/// Default wait for an in-process parent of a remote-parented local root.
const DEFAULT_REMOTE_ROOT_GRACE: Duration = Duration::from_secs(2);

const SERVICE_NAME: &str = "service.name";
const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
const EXCEPTION_EVENT: &str = "exception";
const EXCEPTION_TYPE: &str = "exception.type";
const EXCEPTION_MESSAGE: &str = "exception.message";

/// Prints each finished trace as an indented tree.
///
/// Each trace is rendered into one `String` and written with a single
/// `write_all`, so concurrent output does not interleave inside a tree.
/// Write errors are ignored (and counted, see the `Debug` output); the
/// exporter never panics on them. No ANSI colour is emitted.
///
/// The service name shown in brackets comes from the span attribute
/// `service.name` when present, otherwise from the `service.name` of the
/// resource handed over by the tracer provider (via
/// [`SpanExporter::set_resource`]).
///
/// # Example
///
/// ```rust,no_run
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use opentelemetry_sdk::Resource;
/// use service_tracing::export::console::ConsoleExporter;
///
/// let provider = SdkTracerProvider::builder()
///     .with_resource(Resource::builder().with_service_name("checkout").build())
///     .with_batch_exporter(ConsoleExporter::stdout())
///     .build();
/// // ... record spans ...
/// provider.shutdown().expect("flush pending traces");
/// ```
#[must_use]
pub struct ConsoleExporter {
    writer: Mutex<Box<dyn Write + Send>>,
    state: Mutex<State>,
    /// `service.name` of the provider's resource, set by `set_resource`.
    resource_service: Option<String>,
    max_pending_spans: usize,
    remote_root_grace: Duration,
    write_errors: AtomicU64,
}

impl fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("ConsoleExporter")
            .field("resource_service", &self.resource_service)
            .field("max_pending_spans", &self.max_pending_spans)
            .field("pending_traces", &state.pending.len())
            .field("pending_spans", &state.pending_spans)
            .field("shut_down", &state.shut_down)
            .field("write_errors", &self.write_errors.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ConsoleExporter {
    /// Writes to standard output.
    ///
    /// ```rust,no_run
    /// use service_tracing::export::console::ConsoleExporter;
    ///
    /// let exporter = ConsoleExporter::stdout();
    /// ```
    pub fn stdout() -> Self {
        Self::with_writer(std::io::stdout())
    }

    /// Writes to any writer (tests use a shared `Vec<u8>` buffer).
    ///
    /// ```rust
    /// use service_tracing::export::console::ConsoleExporter;
    ///
    /// let exporter = ConsoleExporter::with_writer(std::io::stderr());
    /// ```
    pub fn with_writer<W: Write + Send + 'static>(writer: W) -> Self {
        Self {
            writer: Mutex::new(Box::new(writer)),
            state: Mutex::new(State::default()),
            resource_service: None,
            max_pending_spans: DEFAULT_MAX_PENDING_SPANS,
            remote_root_grace: DEFAULT_REMOTE_ROOT_GRACE,
            write_errors: AtomicU64::new(0),
        }
    }

    /// Cap on spans held while waiting for their trace's local root to end
    /// (default 10_000).
    ///
    /// When a batch leaves more than `n` spans buffered, the oldest pending
    /// traces are printed as they are (marked `(incomplete)`) and removed
    /// until at most `n` spans remain. The same number bounds how many
    /// already-printed span ids are remembered to recognise late children.
    ///
    /// ```rust
    /// use service_tracing::export::console::ConsoleExporter;
    ///
    /// let exporter = ConsoleExporter::with_writer(std::io::sink()).with_max_pending_spans(1_000);
    /// ```
    pub fn with_max_pending_spans(mut self, n: usize) -> Self {
        self.max_pending_spans = n;
        self
    }

    /// How long a trace whose local root has a remote parent (a request that came from another
    /// process) waits, after that root ended, for an in-process parent to show up before it is
    /// printed anyway (default 2 s). Any export call, even an empty one, prints what is due.
    ///
    /// ```rust
    /// use std::time::Duration;
    /// use service_tracing::export::console::ConsoleExporter;
    ///
    /// let exporter = ConsoleExporter::with_writer(std::io::sink())
    ///     .with_remote_root_grace(Duration::from_millis(500));
    /// ```
    pub fn with_remote_root_grace(mut self, grace: Duration) -> Self {
        self.remote_root_grace = grace;
        self
    }

    /// Prints pending traces whose remote-parented local root ended more than the grace period
    /// ago and whose parent never showed up in this process.
    fn print_due_remote_roots(&self, state: &mut State, out: &mut String) {
        let Some(deadline) = SystemTime::now().checked_sub(self.remote_root_grace) else {
            return;
        };
        let due: Vec<TraceId> = state
            .pending
            .iter()
            .filter(|(_, trace)| {
                trace.spans.iter().any(|span| {
                    span.parent_span_is_remote
                        && span.end_time <= deadline
                        && !trace
                            .spans
                            .iter()
                            .any(|other| other.span_context.span_id() == span.parent_span_id)
                })
            })
            .map(|(trace_id, _)| *trace_id)
            .collect();
        let ctx = self.render_ctx();
        for trace_id in due {
            let spans = state.take_trace(trace_id);
            state.remember(trace_id, &spans, self.max_pending_spans);
            render_trace(out, trace_id, spans, None, &ctx);
        }
    }

    fn render_ctx(&self) -> RenderCtx<'_> {
        RenderCtx {
            resource_service: self.resource_service.as_deref(),
        }
    }

    /// Writes `out` with a single `write_all`, taking the writer lock before
    /// releasing the state lock so that output keeps the processing order.
    fn emit(&self, state: MutexGuard<'_, State>, out: String) {
        if out.is_empty() {
            return;
        }
        let mut writer = lock(&self.writer);
        drop(state);
        let result = writer
            .write_all(out.as_bytes())
            .and_then(|()| writer.flush());
        if result.is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prints every pending trace, oldest first.
    fn flush_pending(&self, state: &mut State, out: &mut String) {
        let ctx = self.render_ctx();
        while let Some((trace_id, spans)) = state.pop_oldest() {
            let suffix = if has_local_orphan(&spans) {
                Some("(incomplete)")
            } else {
                None
            };
            state.remember(trace_id, &spans, self.max_pending_spans);
            render_trace(out, trace_id, spans, suffix, &ctx);
        }
    }
}

impl SpanExporter for ConsoleExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let mut state = lock(&self.state);
        if state.shut_down {
            return std::future::ready(Err(OTelSdkError::AlreadyShutdown));
        }
        let ctx = self.render_ctx();
        let max = self.max_pending_spans;
        let mut out = String::new();
        for span in batch {
            state.accept(span, &mut out, &ctx, max);
        }
        self.print_due_remote_roots(&mut state, &mut out);
        while state.pending_spans > max {
            let Some((trace_id, spans)) = state.pop_oldest() else {
                break;
            };
            state.remember(trace_id, &spans, max);
            render_trace(&mut out, trace_id, spans, Some("(incomplete)"), &ctx);
        }
        self.emit(state, out);
        std::future::ready(Ok(()))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let mut state = lock(&self.state);
        if state.shut_down {
            return Ok(());
        }
        let mut out = String::new();
        self.flush_pending(&mut state, &mut out);
        state.shut_down = true;
        state.printed.clear();
        state.printed_order.clear();
        state.printed_spans = 0;
        self.emit(state, out);
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut state = lock(&self.state);
        let mut out = String::new();
        self.flush_pending(&mut state, &mut out);
        self.emit(state, out);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource_service = resource
            .get(&Key::from_static_str(SERVICE_NAME))
            .map(|value| value.as_str().into_owned());
    }
}

/// Locks a mutex, recovering the data if a previous holder panicked.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
