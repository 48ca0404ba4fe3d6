//! [`Keep`]: exports, after all, the recorded spans of dropped traces that failed or were slow
//! ([`SamplingRules::keep_errors`](super::SamplingRules::keep_errors),
//! [`keep_slower_than`](super::SamplingRules::keep_slower_than)). It sits in the processor
//! chain after profiling (whose `performance.slow` event it reads) and right before the export
//! worker, which exports sampled spans only.

use std::sync::Arc;

use opentelemetry::trace::{SpanContext, Status};
use opentelemetry_sdk::trace::SpanData;

use super::State;
use crate::server_span::ServerRecord;

/// The event profiling adds to a span slower than its operation's threshold.
const SLOW_EVENT: &str = "performance.slow";

/// Marks failing or slow recorded-only spans sampled, so the export worker takes them.
#[derive(Debug)]
pub(crate) struct Keep {
    /// The rules' state; `None` under a sampler that never records without sampling.
    state: Option<Arc<State>>,
}

impl Keep {
    pub(super) fn new(state: Option<Arc<State>>) -> Self {
        Self { state }
    }

    fn consider(&self, span: &mut SpanData) {
        let Some(state) = &self.state else {
            return;
        };
        if span.span_context.is_sampled() {
            return;
        }
        self.keep(state, span);
    }

    fn keep(&self, state: &State, span: &mut SpanData) {
        let plan = state.plan.load();
        let rules = &plan.given;
        let failed = rules.keep_errors && matches!(span.status, Status::Error { .. });
        let slow = !failed
            && rules.keep_slower_than.is_some_and(|threshold| {
                span.end_time
                    .duration_since(span.start_time)
                    .is_ok_and(|took| took > threshold)
                    || span.events.iter().any(|e| e.name == SLOW_EVENT)
            });
        if !(failed || slow) {
            return;
        }
        if failed {
            state.kept_errors.add(1);
        } else {
            state.kept_slow.add(1);
        }
        let sc = &span.span_context;
        span.span_context = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().with_sampled(true),
            sc.is_remote(),
            sc.trace_state().clone(),
        );
    }
}

impl crate::chain::SpanHook for Keep {
    fn on_end(&self, span: &mut SpanData) {
        self.consider(span);
    }

    fn on_end_record(&self, record: &mut ServerRecord) {
        self.consider(&mut record.span);
    }

    fn flush(&self) {}
}
