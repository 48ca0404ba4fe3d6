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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// Default for [`ConsoleExporter::with_max_pending_spans`].
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

/// Buffered spans and bookkeeping, guarded by one mutex.
#[derive(Default)]
struct State {
    /// Spans waiting for their trace's root, per trace.
    pending: HashMap<TraceId, PendingTrace>,
    /// Arrival order of pending traces (sequence number -> trace id).
    arrival: BTreeMap<u64, TraceId>,
    next_seq: u64,
    /// Total number of spans in `pending`.
    pending_spans: usize,
    /// Ids of spans already printed, per trace, to recognise late children.
    printed: HashMap<TraceId, HashSet<SpanId>>,
    /// Order in which traces entered `printed`, oldest first.
    printed_order: VecDeque<TraceId>,
    /// Total number of span ids in `printed`.
    printed_spans: usize,
    shut_down: bool,
}

struct PendingTrace {
    seq: u64,
    spans: Vec<SpanData>,
}

impl State {
    /// Buffers one finished span, appending to `out` whatever it completes.
    fn accept(&mut self, span: SpanData, out: &mut String, ctx: &RenderCtx<'_>, max: usize) {
        let trace_id = span.span_context.trace_id();
        let parent = span.parent_span_id;
        if parent == SpanId::INVALID {
            // The trace's root ended: print everything buffered for it.
            let mut spans = self.take_trace(trace_id);
            spans.push(span);
            self.remember(trace_id, &spans, max);
            render_trace(out, trace_id, spans, None, ctx);
        } else if self
            .printed
            .get(&trace_id)
            .is_some_and(|ids| ids.contains(&parent))
        {
            // The parent was already printed: print this span's subtree now.
            let spans = self.take_subtree(trace_id, span);
            self.remember(trace_id, &spans, max);
            render_trace(out, trace_id, spans, Some("(continued)"), ctx);
        } else {
            // Wait for the root (or for a local parent of a remote-parented span).
            let seq = self.next_seq;
            let entry = self
                .pending
                .entry(trace_id)
                .or_insert_with(|| PendingTrace {
                    seq,
                    spans: Vec::new(),
                });
            if entry.seq == seq {
                self.next_seq += 1;
                self.arrival.insert(seq, trace_id);
            }
            entry.spans.push(span);
            self.pending_spans += 1;
        }
    }

    /// Removes and returns all pending spans of a trace.
    fn take_trace(&mut self, trace_id: TraceId) -> Vec<SpanData> {
        match self.pending.remove(&trace_id) {
            Some(trace) => {
                self.arrival.remove(&trace.seq);
                self.pending_spans -= trace.spans.len();
                trace.spans
            }
            None => Vec::new(),
        }
    }

    /// Removes the pending descendants of `root` and returns them with it.
    fn take_subtree(&mut self, trace_id: TraceId, root: SpanData) -> Vec<SpanData> {
        let mut subtree = vec![root];
        let Some(trace) = self.pending.get_mut(&trace_id) else {
            return subtree;
        };
        let mut ids: HashSet<SpanId> = HashSet::from([subtree[0].span_context.span_id()]);
        let mut rest = std::mem::take(&mut trace.spans);
        loop {
            let (inside, outside): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|span| ids.contains(&span.parent_span_id));
            rest = outside;
            if inside.is_empty() {
                break;
            }
            ids.extend(inside.iter().map(|span| span.span_context.span_id()));
            subtree.extend(inside);
        }
        self.pending_spans -= subtree.len() - 1;
        if rest.is_empty() {
            let seq = trace.seq;
            self.pending.remove(&trace_id);
            self.arrival.remove(&seq);
        } else {
            trace.spans = rest;
        }
        subtree
    }

    /// Removes and returns the oldest pending trace.
    fn pop_oldest(&mut self) -> Option<(TraceId, Vec<SpanData>)> {
        let (_, trace_id) = self.arrival.pop_first()?;
        let trace = self.pending.remove(&trace_id)?;
        self.pending_spans -= trace.spans.len();
        Some((trace_id, trace.spans))
    }

    /// Records printed span ids, forgetting the oldest traces beyond `max`.
    fn remember(&mut self, trace_id: TraceId, spans: &[SpanData], max: usize) {
        let ids = self.printed.entry(trace_id).or_insert_with(|| {
            self.printed_order.push_back(trace_id);
            HashSet::new()
        });
        for span in spans {
            if ids.insert(span.span_context.span_id()) {
                self.printed_spans += 1;
            }
        }
        while self.printed_spans > max {
            let Some(oldest) = self.printed_order.pop_front() else {
                break;
            };
            if let Some(ids) = self.printed.remove(&oldest) {
                self.printed_spans -= ids.len();
            }
        }
    }
}

/// True if some span's local (non-remote) parent is missing from `spans`.
fn has_local_orphan(spans: &[SpanData]) -> bool {
    let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    spans.iter().any(|span| {
        span.parent_span_id != SpanId::INVALID
            && !span.parent_span_is_remote
            && !ids.contains(&span.parent_span_id)
    })
}

struct RenderCtx<'a> {
    resource_service: Option<&'a str>,
}

/// Appends one trace tree to `out`.
fn render_trace(
    out: &mut String,
    trace_id: TraceId,
    spans: Vec<SpanData>,
    suffix: Option<&str>,
    ctx: &RenderCtx<'_>,
) {
    let _ = write!(out, "trace {trace_id}");
    if let Some(suffix) = suffix {
        out.push(' ');
        out.push_str(suffix);
    }
    out.push('\n');

    let index: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, span)| (span.span_context.span_id(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match index.get(&span.parent_span_id) {
            Some(&parent) if span.parent_span_id != SpanId::INVALID && parent != i => {
                children[parent].push(i);
            }
            _ => roots.push(i),
        }
    }
    let order = |a: &usize, b: &usize| sort_key(&spans[*a]).cmp(&sort_key(&spans[*b]));
    roots.sort_by(order);
    for list in &mut children {
        list.sort_by(order);
    }

    let mut visited = vec![false; spans.len()];
    render_forest(out, &spans, &children, &roots, &mut visited, ctx);
    // Spans caught in a parent cycle are unreachable from any root; show them
    // at the top level rather than dropping them.
    let mut unvisited: Vec<usize> = (0..spans.len()).filter(|&i| !visited[i]).collect();
    while let Some(&first) = unvisited.first() {
        render_forest(out, &spans, &children, &[first], &mut visited, ctx);
        unvisited.retain(|&i| !visited[i]);
    }
}

/// Renders the trees under `roots` at the top level, without recursion.
fn render_forest(
    out: &mut String,
    spans: &[SpanData],
    children: &[Vec<usize>],
    roots: &[usize],
    visited: &mut [bool],
    ctx: &RenderCtx<'_>,
) {
    // (span index, prefix of its line, is it the last sibling)
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    push_children(&mut stack, roots, "");
    while let Some((i, prefix, last)) = stack.pop() {
        if visited[i] {
            continue;
        }
        visited[i] = true;
        let span = &spans[i];
        let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
        out.push_str(&prefix);
        out.push_str(if last { "└─ " } else { "├─ " });
        write_label(out, span, ctx);
        out.push('\n');
        write_exceptions(out, span, &child_prefix);
        push_children(&mut stack, &children[i], &child_prefix);
    }
}

fn push_children(stack: &mut Vec<(usize, String, bool)>, kids: &[usize], prefix: &str) {
    for (n, &kid) in kids.iter().enumerate().rev() {
        stack.push((kid, prefix.to_owned(), n + 1 == kids.len()));
    }
}

/// Deterministic sibling order: start time, then end time, then span id.
fn sort_key(span: &SpanData) -> (std::time::SystemTime, std::time::SystemTime, [u8; 8]) {
    (
        span.start_time,
        span.end_time,
        span.span_context.span_id().to_bytes(),
    )
}

/// `name  [service]  kind  duration  http-status  status`
fn write_label(out: &mut String, span: &SpanData, ctx: &RenderCtx<'_>) {
    if span.name.is_empty() {
        out.push_str("<unnamed>");
    } else {
        push_single_line(out, &span.name);
    }
    let service = attribute(span, SERVICE_NAME)
        .map(|value| value.as_str())
        .or_else(|| ctx.resource_service.map(Into::into));
    if let Some(service) = service {
        out.push_str("  [");
        push_single_line(out, &service);
        out.push(']');
    }
    out.push_str("  ");
    out.push_str(match span.span_kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    });
    out.push_str("  ");
    let elapsed = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    write_duration(out, elapsed);
    if let Some(code) = attribute(span, HTTP_RESPONSE_STATUS_CODE) {
        out.push_str("  ");
        push_single_line(out, &code.as_str());
    }
    match &span.status {
        Status::Unset => {}
        Status::Ok => out.push_str("  Ok"),
        Status::Error { description } if description.is_empty() => out.push_str("  Error"),
        Status::Error { description } => {
            out.push_str("  Error: ");
            push_single_line(out, description);
        }
    }
}

/// Milliseconds with one decimal, or whole microseconds below 0.1 ms.
fn write_duration(out: &mut String, elapsed: Duration) {
    if elapsed < Duration::from_micros(100) {
        let _ = write!(out, "{} µs", elapsed.as_micros());
    } else {
        let _ = write!(out, "{:.1} ms", elapsed.as_secs_f64() * 1_000.0);
    }
}

/// One bullet per `exception` event: `• exception: type: message`.
fn write_exceptions(out: &mut String, span: &SpanData, prefix: &str) {
    for event in span.events.iter().filter(|e| e.name == EXCEPTION_EVENT) {
        let find = |key: &str| {
            event
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str())
        };
        let text = match (find(EXCEPTION_TYPE), find(EXCEPTION_MESSAGE)) {
            (Some(ty), Some(msg)) => format!("{ty}: {msg}"),
            (Some(one), None) | (None, Some(one)) => one.into_owned(),
            (None, None) => String::new(),
        };
        out.push_str(prefix);
        out.push_str("• exception");
        // Multi-line messages (e.g. backtraces) stay aligned under the bullet.
        for (n, line) in text.lines().enumerate() {
            if n == 0 {
                out.push_str(": ");
            } else {
                out.push('\n');
                out.push_str(prefix);
                out.push_str("  ");
            }
            push_single_line(out, line.trim_end());
        }
        out.push('\n');
    }
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Appends `text` with control characters replaced so the tree stays intact.
fn push_single_line(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, SpanContext, TraceFlags, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A `Write` into a shared buffer, so tests can read what was printed.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        /// Returns and clears what has been written so far.
        fn take(&self) -> String {
            let bytes = std::mem::take(&mut *lock(&self.0));
            String::from_utf8(bytes).expect("console output is UTF-8")
        }
    }

    /// Always fails, to check that write errors are swallowed.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("broken pipe"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("broken pipe"))
        }
    }

    const T1: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
    const T2: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;

    fn at(micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(micros)
    }

    /// A finished span; `parent` 0 means no parent.
    fn span(
        trace: u128,
        id: u64,
        parent: u64,
        kind: SpanKind,
        name: &'static str,
        start_us: u64,
        dur_us: u64,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.into(),
            start_time: at(start_us),
            end_time: at(start_us + dur_us),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn with_attr(mut span: SpanData, kv: KeyValue) -> SpanData {
        span.attributes.push(kv);
        span
    }

    fn with_status(mut span: SpanData, status: Status) -> SpanData {
        span.status = status;
        span
    }

    fn remote_parent(mut span: SpanData) -> SpanData {
        span.parent_span_is_remote = true;
        span
    }

    fn with_exception(mut span: SpanData, ty: Option<&'static str>, msg: &'static str) -> SpanData {
        let mut attributes = vec![KeyValue::new(EXCEPTION_MESSAGE, msg)];
        if let Some(ty) = ty {
            attributes.insert(0, KeyValue::new(EXCEPTION_TYPE, ty));
        }
        span.events
            .events
            .push(Event::new(EXCEPTION_EVENT, span.end_time, attributes, 0));
        span.events
            .events
            .push(Event::new("not shown", span.end_time, Vec::new(), 0));
        span
    }

    fn exporter(service: Option<&'static str>) -> (ConsoleExporter, Buffer) {
        let buffer = Buffer::default();
        // These tests date spans near the epoch: a grace longer than that keeps remote-rooted
        // traces waiting for their in-process parent, as they would for two seconds in real use.
        let mut exporter = ConsoleExporter::with_writer(buffer.clone())
            .with_remote_root_grace(Duration::from_secs(100 * 365 * 24 * 3600));
        if let Some(service) = service {
            exporter.set_resource(&Resource::builder_empty().with_service_name(service).build());
        }
        (exporter, buffer)
    }

    fn export(exporter: &ConsoleExporter, batch: Vec<SpanData>) {
        let result = block_on(exporter.export(batch));
        result.expect("export succeeds");
    }

    /// The futures returned by `export` are always ready.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("export future should be ready immediately"),
        }
    }

    #[test]
    fn three_level_tree_in_one_trace() {
        let (exporter, out) = exporter(Some("shop"));
        let root = with_attr(
            with_status(
                span(T1, 1, 0, SpanKind::Server, "GET /checkout", 0, 12_340),
                Status::Ok,
            ),
            KeyValue::new(HTTP_RESPONSE_STATUS_CODE, 200_i64),
        );
        let load = span(T1, 2, 1, SpanKind::Internal, "load cart", 100, 5_000);
        let query = span(T1, 3, 2, SpanKind::Client, "SELECT carts", 200, 4_000);
        let cache = span(T1, 4, 2, SpanKind::Internal, "cache get", 150, 40);
        let render = span(T1, 5, 1, SpanKind::Internal, "render", 11_000, 400);

        // Child-first, siblings out of start order, split across batches.
        export(&exporter, vec![query]);
        export(&exporter, vec![render, cache]);
        assert_eq!(out.take(), "", "nothing is printed before the root ends");
        export(&exporter, vec![load, root]);
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /checkout  [shop]  server  12.3 ms  200  Ok
   ├─ load cart  [shop]  internal  5.0 ms
   │  ├─ cache get  [shop]  internal  40 µs
   │  └─ SELECT carts  [shop]  client  4.0 ms
   └─ render  [shop]  internal  0.4 ms
"
        );
        exporter.force_flush().expect("flush");
        assert_eq!(out.take(), "", "the printed trace is no longer pending");
    }

    /// Frontend and backend in one process: the backend server span has a
    /// remote parent (the frontend's client span) and ends first.
    fn two_service_trace(trace: u128) -> [SpanData; 4] {
        let service = |name: &'static str| KeyValue::new(SERVICE_NAME, name);
        let root = with_status(
            span(trace, 0x10, 0, SpanKind::Server, "GET /checkout", 0, 12_300),
            Status::Ok,
        );
        let client = with_attr(
            with_status(
                span(trace, 0x11, 0x10, SpanKind::Client, "GET", 1_000, 8_100),
                Status::error("500 Internal Server Error"),
            ),
            KeyValue::new(HTTP_RESPONSE_STATUS_CODE, 500_i64),
        );
        let backend = remote_parent(with_exception(
            with_attr(
                with_status(
                    span(
                        trace,
                        0x12,
                        0x11,
                        SpanKind::Server,
                        "GET /orders/{id}",
                        1_200,
                        7_200,
                    ),
                    Status::error(""),
                ),
                service("backend"),
            ),
            None,
            "panicked: boom",
        ));
        let render = with_attr(
            span(trace, 0x13, 0x10, SpanKind::Internal, "render", 11_000, 400),
            service("frontend"),
        );
        [root, client, backend, render]
    }

    const TWO_SERVICE_TREE: &str = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /checkout  [frontend]  server  12.3 ms  Ok
   ├─ GET  [frontend]  client  8.1 ms  500  Error: 500 Internal Server Error
   │  └─ GET /orders/{id}  [backend]  server  7.2 ms  Error
   │     • exception: panicked: boom
   └─ render  [frontend]  internal  0.4 ms
";

    #[test]
    fn remote_parented_child_nests_under_in_process_client_span() {
        // Resource says "frontend"; the backend span overrides it per span.
        let (exporter, out) = exporter(Some("frontend"));
        let [root, client, backend, render] = two_service_trace(T1);
        export(&exporter, vec![backend]);
        assert_eq!(
            out.take(),
            "",
            "a remote-parented span with unknown parent waits"
        );
        export(&exporter, vec![client]);
        assert_eq!(out.take(), "");
        export(&exporter, vec![render, root]);
        assert_eq!(out.take(), TWO_SERVICE_TREE);
    }

    #[test]
    fn a_remote_rooted_trace_prints_once_its_grace_has_passed() {
        let (exporter, buffer) = exporter(Some("backend"));
        let exporter = exporter.with_remote_root_grace(Duration::from_secs(1));
        let trace = 0xabc_u128;
        let ended_long_ago = SystemTime::now() - Duration::from_secs(5);
        let mut old_root = remote_parent(span(
            trace,
            1,
            99,
            SpanKind::Server,
            "GET /orders/{id}",
            0,
            900,
        ));
        old_root.end_time = ended_long_ago;
        old_root.start_time = ended_long_ago - Duration::from_millis(1);
        let fresh_root = remote_parent(span(
            trace + 1,
            2,
            98,
            SpanKind::Server,
            "GET /fresh",
            0,
            900,
        ));
        // `span` sets times near the epoch; make the fresh one end now.
        let mut fresh_root = fresh_root;
        fresh_root.end_time = SystemTime::now();
        fresh_root.start_time = fresh_root.end_time - Duration::from_millis(1);
        export(&exporter, vec![old_root, fresh_root]);
        let printed = buffer.take();
        assert!(printed.contains("GET /orders/{id}"), "{printed}");
        assert!(
            !printed.contains("GET /fresh"),
            "still within its grace: {printed}"
        );
        // An empty export (the worker's tick) prints nothing new while the grace runs.
        export(&exporter, Vec::new());
        assert_eq!(buffer.take(), "");
    }

    #[test]
    fn remote_parented_span_after_its_parent_waits_for_the_root() {
        let (exporter, out) = exporter(Some("frontend"));
        let [root, client, backend, render] = two_service_trace(T1);
        export(&exporter, vec![client]);
        export(&exporter, vec![backend, render]);
        assert_eq!(out.take(), "");
        export(&exporter, vec![root]);
        assert_eq!(out.take(), TWO_SERVICE_TREE);
    }

    #[test]
    fn two_interleaved_traces_print_separately() {
        let (exporter, out) = exporter(Some("svc"));
        let a_root = span(T1, 1, 0, SpanKind::Server, "GET /a", 0, 3_000);
        let a_child = span(T1, 2, 1, SpanKind::Internal, "a work", 500, 1_000);
        let b_root = span(T2, 1, 0, SpanKind::Server, "GET /b", 100, 2_000);
        let b_child = span(T2, 2, 1, SpanKind::Internal, "b work", 600, 1_000);
        let b_grandchild = span(T2, 3, 2, SpanKind::Client, "b call", 700, 500);

        // Same span ids in both traces: nesting must not cross traces.
        export(&exporter, vec![a_child, b_grandchild]);
        export(&exporter, vec![b_child, b_root]);
        assert_eq!(
            out.take(),
            "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /b  [svc]  server  2.0 ms
   └─ b work  [svc]  internal  1.0 ms
      └─ b call  [svc]  client  0.5 ms
"
        );
        export(&exporter, vec![a_root]);
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /a  [svc]  server  3.0 ms
   └─ a work  [svc]  internal  1.0 ms
"
        );
    }

    #[test]
    fn orphans_are_printed_at_the_top_level() {
        let (exporter, out) = exporter(None);
        let root = span(T1, 1, 0, SpanKind::Server, "GET /", 1_000, 2_000);
        let child = span(T1, 2, 1, SpanKind::Internal, "child", 1_500, 100);
        // Its parent 0x99 was never exported (e.g. dropped by a sampler).
        // Arrives before the root but starts after it: top-level spans are
        // ordered by start time, not arrival.
        let orphan = span(T1, 3, 0x99, SpanKind::Internal, "orphan", 2_500, 200);
        let orphan_kid = span(T1, 4, 3, SpanKind::Internal, "orphan kid", 2_600, 50);
        export(&exporter, vec![orphan_kid, orphan, child]);
        export(&exporter, vec![root]);
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
├─ GET /  server  2.0 ms
│  └─ child  internal  0.1 ms
└─ orphan  internal  0.2 ms
   └─ orphan kid  internal  50 µs
"
        );
    }

    #[test]
    fn cap_prints_the_oldest_pending_trace_as_incomplete() {
        let (exporter, out) = exporter(Some("svc"));
        let exporter = exporter.with_max_pending_spans(2);
        export(
            &exporter,
            vec![
                span(T1, 3, 2, SpanKind::Internal, "a leaf", 300, 100),
                span(T1, 2, 1, SpanKind::Internal, "a mid", 200, 500),
            ],
        );
        assert_eq!(out.take(), "", "two pending spans are within the cap");
        export(
            &exporter,
            vec![span(T2, 2, 1, SpanKind::Internal, "b mid", 100, 1_000)],
        );
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ a mid  [svc]  internal  0.5 ms
   └─ a leaf  [svc]  internal  0.1 ms
"
        );
        // The newer trace was kept and completes normally.
        export(
            &exporter,
            vec![span(T2, 1, 0, SpanKind::Server, "GET /b", 0, 2_000)],
        );
        assert_eq!(
            out.take(),
            "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /b  [svc]  server  2.0 ms
   └─ b mid  [svc]  internal  1.0 ms
"
        );
    }

    #[test]
    fn force_flush_prints_pending_traces_oldest_first() {
        let (exporter, out) = exporter(Some("backend"));
        // A backend-only trace: its local root has a remote parent that is
        // not in this process, so it waits for a flush.
        let server = remote_parent(span(
            T2,
            0x20,
            0x77,
            SpanKind::Server,
            "GET /orders",
            0,
            900,
        ));
        let db = span(T2, 0x21, 0x20, SpanKind::Client, "SELECT", 100, 500);
        // An unfinished trace: the local parent 0x30 has not ended yet.
        let work = span(T1, 0x31, 0x30, SpanKind::Internal, "work", 50, 10);
        export(&exporter, vec![db]);
        export(&exporter, vec![work, server]);
        assert_eq!(out.take(), "");
        exporter.force_flush().expect("flush");
        assert_eq!(
            out.take(),
            "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /orders  [backend]  server  0.9 ms
   └─ SELECT  [backend]  client  0.5 ms
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ work  [backend]  internal  10 µs
"
        );
        exporter.force_flush().expect("flush");
        assert_eq!(out.take(), "", "flushed traces are not printed twice");
    }

    #[test]
    fn late_span_whose_parent_was_printed_is_printed_as_a_continuation() {
        let (exporter, out) = exporter(Some("svc"));
        export(
            &exporter,
            vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 1_000)],
        );
        out.take();
        // A background task outlives the request; its child ends first.
        export(
            &exporter,
            vec![span(T1, 3, 2, SpanKind::Internal, "step", 600, 100)],
        );
        assert_eq!(out.take(), "");
        export(
            &exporter,
            vec![span(T1, 2, 1, SpanKind::Internal, "background", 500, 3_000)],
        );
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (continued)
└─ background  [svc]  internal  3.0 ms
   └─ step  [svc]  internal  0.1 ms
"
        );
    }

    #[test]
    fn shutdown_flushes_then_rejects_exports() {
        let (exporter, out) = exporter(None);
        export(
            &exporter,
            vec![span(T1, 2, 1, SpanKind::Internal, "work", 0, 1_000)],
        );
        exporter.shutdown().expect("shutdown");
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ work  internal  1.0 ms
"
        );
        let result =
            block_on(exporter.export(vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 1)]));
        assert!(matches!(result, Err(OTelSdkError::AlreadyShutdown)));
        assert_eq!(out.take(), "");
    }

    #[test]
    fn exception_type_and_multiline_message_and_control_characters() {
        let (exporter, out) = exporter(None);
        let root = with_exception(
            span(T1, 1, 0, SpanKind::Server, "GET\n/x", 0, 100),
            Some("io::Error"),
            "first line\nsecond line",
        );
        let child = span(T1, 2, 1, SpanKind::Producer, "", 10, 0);
        export(&exporter, vec![child, root]);
        assert_eq!(
            out.take(),
            "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /x  server  0.1 ms
   • exception: io::Error: first line
     second line
   └─ <unnamed>  producer  0 µs
"
        );
    }

    #[test]
    fn write_errors_do_not_panic_or_fail_export() {
        let exporter = ConsoleExporter::with_writer(Broken);
        export(
            &exporter,
            vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 10)],
        );
        assert_eq!(exporter.write_errors.load(Ordering::Relaxed), 1);
        assert!(format!("{exporter:?}").contains("write_errors: 1"));
    }
}
