//! The recent-trace store: the traces the pages show, kept in memory within a count and a byte
//! bound.
//!
//! *Where it is fed.* The export worker shows it every batch on its own thread, after
//! redaction and just before the exporter takes the batch ([`BatchTap`], one call per batch in
//! `export/batch.rs`): the request thread does nothing more than it does for export, and
//! everything stored has passed the redaction policy the exporter's spans pass. Only sampled
//! spans reach the worker, so only sampled traces are kept.
//!
//! *How traces are kept.* As Go's `x/net/trace` does: traces are grouped in families (the
//! local root's span name, which for a request is `{METHOD} {route}`), and in each family in
//! buckets by the root's latency (below 10 ms, 50 ms, 100 ms, 500 ms, 1 s, 10 s, and above)
//! plus one bucket for traces with an error. Each bucket keeps its [`per_bucket`] newest
//! traces, so a slow or failed trace is only pushed out by another slow or failed trace of the
//! same route, and lives far longer than a fast one. Over the whole store, the count and the
//! bytes are bounded: when either is passed, the oldest trace of the fastest bucket still
//! holding any goes first, errors last.
//!
//! *Spans arrive in any order.* A trace is placed when its local root (a span without a
//! parent, or whose parent is remote) arrives; spans before that wait in a bounded pending
//! table (the oldest trace there is dropped first), and spans after it (the same trace
//! crossing two services of one process) join the stored trace, which is placed again.
//!
//! [`per_bucket`]: StoreLimits::per_bucket

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::export::batch::{BatchTap, Queued};
use crate::server_span::ServerRecord;

pub(crate) use super::limits::StoreLimits;

/// Latency buckets' lower bounds, in milliseconds, as `x/net/trace` has them.
const BUCKETS_MS: [u64; 7] = [0, 10, 50, 100, 500, 1_000, 10_000];
/// The latency buckets, and the error bucket after them.
const LEVELS: usize = BUCKETS_MS.len() + 1;
const ERROR_LEVEL: usize = BUCKETS_MS.len();
/// The family traces of further routes share once [`StoreLimits::families`] are taken.
pub(crate) const OTHER_FAMILY: &str = "_OTHER";
/// Longest attribute or event text kept, in bytes.
const MAX_VALUE: usize = 1024;
/// Longest `exception.stacktrace` kept, in bytes.
const MAX_STACK: usize = 8 * 1024;
/// Attributes kept per span, and per event.
const MAX_ATTRIBUTES: usize = 64;
/// Events kept per span.
const MAX_EVENTS: usize = 32;
/// Links kept per span.
const MAX_LINKS: usize = 16;
/// Texts kept per span (name, attributes, events), in bytes: attributes and events past it
/// are left out.
const MAX_SPAN_BYTES: usize = 64 * 1024;

/// One stored span: what the trace detail shows, redacted and cut.
#[derive(Clone, Debug)]
pub(crate) struct StoredSpan {
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) name: Box<str>,
    pub(crate) kind: SpanKind,
    /// `None` unset, `Some("")` ok, `Some(description)` an error; see [`Self::is_error`].
    pub(crate) status: SpanStatus,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) service: Arc<str>,
    pub(crate) attributes: Vec<(Box<str>, Box<str>)>,
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) links: Vec<(TraceId, SpanId)>,
}

/// A span's status as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpanStatus {
    Unset,
    Ok,
    Error(Box<str>),
}

/// One span event.
#[derive(Clone, Debug)]
pub(crate) struct StoredEvent {
    pub(crate) name: Box<str>,
    pub(crate) at: SystemTime,
    pub(crate) attributes: Vec<(Box<str>, Box<str>)>,
}

impl StoredSpan {
    pub(crate) fn is_error(&self) -> bool {
        matches!(self.status, SpanStatus::Error(_))
    }

    pub(crate) fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// The value of attribute `key`, as stored.
    pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    fn is_local_root(&self) -> bool {
        self.parent_id == SpanId::INVALID || self.parent_is_remote
    }

    /// Heap bytes this span holds beyond its inline size, as the store counts them.
    fn bytes(&self) -> usize {
        let pairs = |a: &[(Box<str>, Box<str>)]| {
            a.iter()
                .map(|(k, v)| size_of::<(Box<str>, Box<str>)>() + k.len() + v.len())
                .sum::<usize>()
        };
        let status = match &self.status {
            SpanStatus::Error(d) => d.len(),
            _ => 0,
        };
        let slack = self.attributes.capacity() - self.attributes.len();
        self.name.len()
            + status
            + pairs(&self.attributes)
            + slack * size_of::<(Box<str>, Box<str>)>()
            + self
                .events
                .iter()
                .map(|e| size_of::<StoredEvent>() + e.name.len() + pairs(&e.attributes))
                .sum::<usize>()
            + self.links.len() * size_of::<(TraceId, SpanId)>()
    }
}

/// A trace as the pages read it: its spans in the order they ended, and what was cut.
#[derive(Clone, Debug)]
pub(crate) struct StoredTrace {
    pub(crate) trace_id: TraceId,
    pub(crate) spans: Vec<StoredSpan>,
    /// Spans not kept (over the per-trace bounds).
    pub(crate) dropped_spans: u64,
    bytes: usize,
}

impl StoredTrace {
    fn new(trace_id: TraceId) -> Self {
        Self {
            trace_id,
            spans: Vec::new(),
            dropped_spans: 0,
            // The trace, its map entry, its id as the key, the `Arc`'s counts and the map's slack.
            bytes: size_of::<StoredTrace>() + size_of::<Entry>() + size_of::<TraceId>() + 64,
        }
    }

    /// Adds `span` unless it would pass the per-trace bounds. The bytes count the spans'
    /// vector by its capacity (it grows by doubling).
    fn push(&mut self, span: StoredSpan, limits: &StoreLimits) {
        let bytes = span.bytes();
        let capacity = self.spans.capacity();
        let grown = if self.spans.len() == capacity {
            (capacity.max(2) * size_of::<StoredSpan>()).max(4 * size_of::<StoredSpan>())
        } else {
            0
        };
        // A local root is always kept (the trace is shown from it); a span is at most
        // `MAX_SPAN_BYTES` beyond its inline size, so that keeps the bound.
        let full = self.spans.len() >= limits.spans_per_trace
            || self.bytes + bytes + grown > limits.bytes_per_trace;
        if full && !span.is_local_root() {
            self.dropped_spans += 1;
            return;
        }
        self.spans.push(span);
        let now = self.spans.capacity();
        self.bytes = self.bytes + bytes + (now - capacity) * size_of::<StoredSpan>();
    }

    /// The root the trace is shown from: the local root that started first (of two services
    /// in one process, the caller's).
    pub(crate) fn root(&self) -> Option<&StoredSpan> {
        self.spans
            .iter()
            .filter(|s| s.is_local_root())
            .min_by_key(|s| s.start)
    }

    pub(crate) fn is_error(&self) -> bool {
        self.spans.iter().any(StoredSpan::is_error)
    }

    pub(crate) fn duration(&self) -> Duration {
        self.root().map(StoredSpan::duration).unwrap_or_default()
    }

    pub(crate) fn start(&self) -> SystemTime {
        self.root().map_or(SystemTime::UNIX_EPOCH, |r| r.start)
    }

    /// The family (route) and the correlation id, from the root.
    pub(crate) fn operation(&self) -> &str {
        self.root().map_or("", |r| &r.name)
    }

    pub(crate) fn correlation_id(&self) -> Option<&str> {
        self.spans
            .iter()
            .find_map(|s| s.attribute(service_tracing_middleware::semconv::CORRELATION_ID))
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn level(&self) -> usize {
        if self.is_error() {
            return ERROR_LEVEL;
        }
        let ms = self.duration().as_millis();
        BUCKETS_MS
            .iter()
            .rposition(|&lower| ms >= u128::from(lower))
            .unwrap_or(0)
    }
}

/// A stored trace and where it sits.
#[derive(Debug)]
struct Entry {
    trace: Arc<StoredTrace>,
    family: usize,
    level: usize,
    /// Order of (last) placement, older first.
    seq: u64,
}

/// One family's buckets: trace ids, oldest first.
#[derive(Debug)]
struct Family {
    name: Box<str>,
    buckets: [VecDeque<(u64, TraceId)>; LEVELS],
}

/// Spans of a trace whose local root has not arrived.
#[derive(Debug)]
struct Pending {
    trace: StoredTrace,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<TraceId, Entry>,
    families: Vec<Family>,
    family_index: HashMap<Box<str>, usize>,
    pending: HashMap<TraceId, Pending>,
    pending_order: VecDeque<(u64, TraceId)>,
    /// Bytes of every stored and pending trace.
    bytes: usize,
    seq: u64,
}

/// What the store has done, for the overview.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreStats {
    pub(crate) traces: usize,
    pub(crate) pending: usize,
    pub(crate) bytes: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_traces: usize,
    /// Traces placed since start.
    pub(crate) placed: u64,
    /// Traces pushed out by a bucket's or the store's bounds.
    pub(crate) evicted: u64,
    /// Pending traces given up on (their root never came while there was room).
    pub(crate) abandoned: u64,
}

/// The store. Cheap to clone; clones share it. Written by export threads only, read by the
/// pages: its lock is never taken on the request path.
#[derive(Clone, Debug)]
pub(crate) struct RecentTraces {
    inner: Arc<Mutex<Inner>>,
    limits: StoreLimits,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    placed: AtomicU64,
    evicted: AtomicU64,
    abandoned: AtomicU64,
}

impl RecentTraces {
    pub(crate) fn new(limits: StoreLimits) -> Self {
        Self {
            inner: Arc::default(),
            limits,
            counts: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A tap for an export worker whose spans belong to `service` (unless a span says
    /// otherwise with `service.name`, as on the console worker several services share).
    pub(crate) fn tap(&self, service: &str) -> Arc<dyn BatchTap> {
        Arc::new(Tap {
            store: self.clone(),
            service: Arc::from(service),
        })
    }

    /// Adds ended spans (redacted already).
    pub(crate) fn add(&self, spans: impl IntoIterator<Item = (TraceId, StoredSpan)>) {
        let mut inner = self.lock();
        for (trace_id, span) in spans {
            self.add_one(&mut inner, trace_id, span);
        }
        self.enforce(&mut inner);
    }

    fn add_one(&self, inner: &mut Inner, trace_id: TraceId, span: StoredSpan) {
        inner.seq += 1;
        let seq = inner.seq;
        if let Some(entry) = inner.entries.get_mut(&trace_id) {
            // A late span (another service of this process): the trace grows and may move.
            // A page reading the trace keeps its copy; the store's own is changed in place.
            let trace = Arc::make_mut(&mut entry.trace);
            let before = trace.bytes;
            trace.push(span, &self.limits);
            let after = trace.bytes;
            inner.bytes = inner.bytes + after - before;
            self.place(inner, trace_id, seq);
            return;
        }
        let is_root = span.is_local_root();
        let pending = match inner.pending.get_mut(&trace_id) {
            Some(p) => p,
            None => {
                let p = Pending {
                    trace: StoredTrace::new(trace_id),
                    seq,
                };
                inner.bytes += p.trace.bytes;
                inner.pending_order.push_back((seq, trace_id));
                inner.pending.entry(trace_id).or_insert(p)
            }
        };
        let before = pending.trace.bytes;
        pending.trace.push(span, &self.limits);
        let grown = pending.trace.bytes - before;
        inner.bytes += grown;
        if is_root {
            let Some(pending) = inner.pending.remove(&trace_id) else {
                return;
            };
            // Its place in `pending_order` is skipped when met (seq no longer matches).
            let entry = Entry {
                trace: Arc::new(pending.trace),
                family: usize::MAX,
                level: 0,
                seq,
            };
            inner.entries.insert(trace_id, entry);
            self.counts.placed.fetch_add(1, Ordering::Relaxed);
            self.place(inner, trace_id, seq);
        }
    }

    /// Puts a stored trace in its family's bucket for its latency and status (again, when it
    /// grew), pushing out that bucket's oldest when full.
    fn place(&self, inner: &mut Inner, trace_id: TraceId, seq: u64) {
        let (operation, level, old) = match inner.entries.get(&trace_id) {
            Some(e) => (
                e.trace.operation().to_owned(),
                e.trace.level(),
                (e.family, e.level, e.seq),
            ),
            None => return,
        };
        let family = self.family(inner, &operation);
        if old.0 != usize::MAX {
            let bucket = &mut inner.families[old.0].buckets[old.1];
            if let Some(i) = bucket.iter().position(|&(s, _)| s == old.2) {
                bucket.remove(i);
            }
        }
        if let Some(entry) = inner.entries.get_mut(&trace_id) {
            entry.family = family;
            entry.level = level;
            entry.seq = seq;
        }
        inner.families[family].buckets[level].push_back((seq, trace_id));
        while inner.families[family].buckets[level].len() > self.limits.per_bucket {
            if let Some((_, oldest)) = inner.families[family].buckets[level].pop_front() {
                self.forget(inner, oldest);
            }
        }
    }

    /// The index of the family `name`, made if there is room, else `_OTHER`'s.
    fn family(&self, inner: &mut Inner, name: &str) -> usize {
        if let Some(&i) = inner.family_index.get(name) {
            return i;
        }
        let name = if inner.families.len() < self.limits.families {
            name
        } else {
            OTHER_FAMILY
        };
        if let Some(&i) = inner.family_index.get(name) {
            return i;
        }
        let i = inner.families.len();
        inner.families.push(Family {
            name: name.into(),
            buckets: Default::default(),
        });
        inner.family_index.insert(name.into(), i);
        inner.bytes += size_of::<Family>() + 2 * name.len();
        i
    }

    /// Drops a stored trace (already out of its bucket).
    fn forget(&self, inner: &mut Inner, trace_id: TraceId) {
        if let Some(entry) = inner.entries.remove(&trace_id) {
            inner.bytes -= entry.trace.bytes;
            self.counts.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Brings the store back within its bounds: the oldest pending traces beyond their count
    /// first, then, while over the count or the bytes, the oldest trace of the fastest
    /// bucket, errors last; pending traces go when nothing stored is left.
    fn enforce(&self, inner: &mut Inner) {
        // Placed traces leave their place in the pending order behind, skipped when met;
        // dropped here once they outnumber the live ones, so the order stays bounded.
        if inner.pending_order.len() > 2 * inner.pending.len() + 64 {
            let pending = &inner.pending;
            inner
                .pending_order
                .retain(|(seq, id)| pending.get(id).is_some_and(|p| p.seq == *seq));
        }
        while inner.pending.len() > self.limits.pending_traces {
            if !self.abandon_oldest_pending(inner) {
                break;
            }
        }
        while inner.entries.len() > self.limits.max_traces || inner.bytes > self.limits.max_bytes {
            if !self.evict_one(inner) {
                if inner.bytes > self.limits.max_bytes && self.abandon_oldest_pending(inner) {
                    continue;
                }
                break;
            }
        }
    }

    fn abandon_oldest_pending(&self, inner: &mut Inner) -> bool {
        while let Some((seq, trace_id)) = inner.pending_order.pop_front() {
            if inner.pending.get(&trace_id).is_some_and(|p| p.seq == seq) {
                if let Some(p) = inner.pending.remove(&trace_id) {
                    inner.bytes -= p.trace.bytes;
                    self.counts.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
        }
        false
    }

    fn evict_one(&self, inner: &mut Inner) -> bool {
        for level in 0..LEVELS {
            let oldest = inner
                .families
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.buckets[level].front().map(|&(seq, _)| (seq, i)))
                .min();
            if let Some((_, family)) = oldest {
                if let Some((_, trace_id)) = inner.families[family].buckets[level].pop_front() {
                    self.forget(inner, trace_id);
                    return true;
                }
            }
        }
        false
    }

    /// Every stored trace, newest first.
    pub(crate) fn traces(&self) -> Vec<Arc<StoredTrace>> {
        let inner = self.lock();
        let mut traces: Vec<(u64, Arc<StoredTrace>)> = inner
            .entries
            .values()
            .map(|e| (e.seq, e.trace.clone()))
            .collect();
        drop(inner);
        traces.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        traces.into_iter().map(|(_, t)| t).collect()
    }

    /// One stored trace.
    pub(crate) fn trace(&self, trace_id: TraceId) -> Option<Arc<StoredTrace>> {
        self.lock().entries.get(&trace_id).map(|e| e.trace.clone())
    }

    /// The families, in the order they were first seen.
    pub(crate) fn families(&self) -> Vec<String> {
        self.lock()
            .families
            .iter()
            .map(|f| f.name.to_string())
            .collect()
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            traces: inner.entries.len(),
            pending: inner.pending.len(),
            bytes: inner.bytes,
            max_bytes: self.limits.max_bytes,
            max_traces: self.limits.max_traces,
            placed: self.counts.placed.load(Ordering::Relaxed),
            evicted: self.counts.evicted.load(Ordering::Relaxed),
            abandoned: self.counts.abandoned.load(Ordering::Relaxed),
        }
    }
}

/// The worker's view of the store: copies what the pages show of each span in a batch.
struct Tap {
    store: RecentTraces,
    service: Arc<str>,
}

impl BatchTap for Tap {
    fn seen(&self, batch: &[Queued]) {
        self.store.add(batch.iter().map(|queued| match queued {
            Queued::Span(span) => (span.span_context.trace_id(), self.stored(span, None)),
            Queued::Server(record) => (
                record.span.span_context.trace_id(),
                self.stored(&record.span, Some(record)),
            ),
        }));
    }
}

impl Tap {
    fn stored(&self, span: &SpanData, record: Option<&ServerRecord>) -> StoredSpan {
        let mut budget = Budget(MAX_SPAN_BYTES);
        let mut attributes = Vec::with_capacity(
            span.attributes.len().min(MAX_ATTRIBUTES) + if record.is_some() { 12 } else { 0 },
        );
        if let Some(record) = record {
            record.for_each_request_attribute(|key, value| {
                if attributes.len() < MAX_ATTRIBUTES {
                    budget.push(
                        &mut attributes,
                        (key.into(), text(&value.to_value(), MAX_VALUE)),
                    );
                }
            });
        }
        let mut service = None;
        for kv in &span.attributes {
            if kv.key.as_str() == "service.name" {
                service = Some(Arc::from(text(&kv.value, MAX_VALUE)));
            } else if attributes.len() < MAX_ATTRIBUTES {
                budget.push(&mut attributes, pair(kv, MAX_VALUE));
            }
        }
        let mut events = Vec::new();
        for e in span.events.events.iter().take(MAX_EVENTS) {
            let name = cut(&e.name, MAX_VALUE);
            if !budget.take(name.len()) {
                break;
            }
            let mut event_attributes = Vec::new();
            for kv in e.attributes.iter().take(MAX_ATTRIBUTES) {
                let max = if kv.key.as_str() == "exception.stacktrace" {
                    MAX_STACK
                } else {
                    MAX_VALUE
                };
                budget.push(&mut event_attributes, pair(kv, max));
            }
            event_attributes.shrink_to_fit();
            events.push(StoredEvent {
                name,
                at: e.timestamp,
                attributes: event_attributes,
            });
        }
        events.shrink_to_fit();
        StoredSpan {
            span_id: span.span_context.span_id(),
            parent_id: span.parent_span_id,
            parent_is_remote: span.parent_span_is_remote,
            name: cut(&span.name, MAX_VALUE),
            kind: span.span_kind.clone(),
            status: match &span.status {
                Status::Unset => SpanStatus::Unset,
                Status::Ok => SpanStatus::Ok,
                Status::Error { description } => SpanStatus::Error(cut(description, MAX_VALUE)),
            },
            start: span.start_time,
            end: span.end_time,
            service: service.unwrap_or_else(|| self.service.clone()),
            attributes,
            events,
            links: span
                .links
                .links
                .iter()
                .take(MAX_LINKS)
                .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
                .collect(),
        }
    }
}

/// What is left of a span's [`MAX_SPAN_BYTES`].
struct Budget(usize);

impl Budget {
    /// Takes `n` bytes if they are left.
    fn take(&mut self, n: usize) -> bool {
        let ok = n <= self.0;
        if ok {
            self.0 -= n;
        }
        ok
    }

    /// Pushes `pair` if its texts fit.
    fn push(&mut self, to: &mut Vec<(Box<str>, Box<str>)>, pair: (Box<str>, Box<str>)) {
        if self.take(pair.0.len() + pair.1.len()) {
            to.push(pair);
        }
    }
}

fn pair(kv: &KeyValue, max: usize) -> (Box<str>, Box<str>) {
    (cut(kv.key.as_str(), MAX_VALUE), text(&kv.value, max))
}

fn text(value: &Value, max: usize) -> Box<str> {
    match value {
        Value::String(s) => cut(s.as_str(), max),
        other => cut(&other.as_str(), max),
    }
}

fn cut(s: &str, max: usize) -> Box<str> {
    crate::redact::truncate(s, max).into()
}

#[cfg(test)]
mod tests;
