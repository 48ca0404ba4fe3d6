//! The spans waiting for their trace's root, and the ids already printed (to recognise late
//! children), both bounded.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

use super::tree::{render_trace, RenderCtx};

/// Buffered spans and bookkeeping, guarded by one mutex.
#[derive(Default)]
pub(super) struct State {
    /// Spans waiting for their trace's root, per trace.
    pub(super) pending: HashMap<TraceId, PendingTrace>,
    /// Arrival order of pending traces (sequence number -> trace id).
    arrival: BTreeMap<u64, TraceId>,
    next_seq: u64,
    /// Total number of spans in `pending`.
    pub(super) pending_spans: usize,
    /// Ids of spans already printed, per trace, to recognise late children.
    pub(super) printed: HashMap<TraceId, HashSet<SpanId>>,
    /// Order in which traces entered `printed`, oldest first.
    pub(super) printed_order: VecDeque<TraceId>,
    /// Total number of span ids in `printed`.
    pub(super) printed_spans: usize,
    pub(super) shut_down: bool,
}

pub(super) struct PendingTrace {
    seq: u64,
    pub(super) spans: Vec<SpanData>,
}

impl State {
    /// Buffers one finished span, appending to `out` whatever it completes.
    pub(super) fn accept(
        &mut self,
        span: SpanData,
        out: &mut String,
        ctx: &RenderCtx<'_>,
        max: usize,
    ) {
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
    pub(super) fn take_trace(&mut self, trace_id: TraceId) -> Vec<SpanData> {
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
    pub(super) fn take_subtree(&mut self, trace_id: TraceId, root: SpanData) -> Vec<SpanData> {
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
    pub(super) fn pop_oldest(&mut self) -> Option<(TraceId, Vec<SpanData>)> {
        let (_, trace_id) = self.arrival.pop_first()?;
        let trace = self.pending.remove(&trace_id)?;
        self.pending_spans -= trace.spans.len();
        Some((trace_id, trace.spans))
    }

    /// Records printed span ids, forgetting the oldest traces beyond `max`.
    pub(super) fn remember(&mut self, trace_id: TraceId, spans: &[SpanData], max: usize) {
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
pub(super) fn has_local_orphan(spans: &[SpanData]) -> bool {
    let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    spans.iter().any(|span| {
        span.parent_span_id != SpanId::INVALID
            && !span.parent_span_is_remote
            && !ids.contains(&span.parent_span_id)
    })
}
