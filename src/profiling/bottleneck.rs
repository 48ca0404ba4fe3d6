//! Bottlenecks: where each route's time goes, from the critical path of its sampled traces.
//!
//! Ended spans are pushed, as small records, into a lock-free bounded queue (16,384 records;
//! a full queue drops and counts). A background thread (started on the first record) drains
//! it, buffers the records per trace (at most 1,024 traces in flight, the oldest evicted and
//! counted; at most 512 spans per trace, the rest dropped and counted), and analyses a trace
//! when its local root, a server span whose parent is remote or absent, has ended:
//!
//! - each span's **self time** is its duration less the union of its children's intervals;
//! - the **critical path** is walked from the root's end backwards: the child that ends last
//!   is on it, up to where it started, then the next child ending before that point, and so
//!   on; the time between them belongs to the parent. Each span's share of the critical path
//!   is summed per operation, so the shares of one trace add up to 100 %.
//!
//! Per route (the root's `{METHOD} {route}`, at most as many routes as operations, 32
//! operations per route) the critical-path time of every analysed trace is summed; the largest
//! share that is not the route's own code is its bottleneck. A trace whose top operation takes
//! at least half its time is kept among the 100 most recent bottlenecks.
//!
//! The request path only builds the record and pushes it: the analysis, its maps and the
//! trace buffers live on the background thread. Past about 1,000 new traces a second, a share
//! of the traces (chosen by trace id, set each second from the traffic) is analysed, so the
//! analysis costs a busy process a bounded amount of CPU; `AnalysisStats::skipped_traces`
//! counts the others.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use serde_json::{json, Value};

/// New traces analysed a second, about: past it, a share of the traces, chosen by trace id and
/// set each second from the last second's traffic. The figures per route are then those of
/// the analysed traces: shares and means hold, `traces` counts the analysed ones. At 70,000
/// requests a second, analysing every trace cost the process about 2,500 instructions each.
pub(crate) const ANALYSED_PER_SECOND: f64 = 1_000.0;
/// Records the queue between the span processor and the analysis holds.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;
/// Traces buffered while waiting for their root.
pub(crate) const MAX_TRACES_IN_FLIGHT: usize = 1_024;
/// Spans kept per trace.
pub(crate) const MAX_SPANS_PER_TRACE: usize = 512;
/// Operations kept apart per route; the rest are summed under `_OTHER`.
const MAX_OPERATIONS_PER_ROUTE: usize = 32;
/// Recent bottlenecks kept.
pub(crate) const MAX_RECENT: usize = 100;
/// Share of a trace's time an operation must take to be reported as its bottleneck.
const RECENT_MIN_SHARE: f64 = 0.5;

/// One ended span, as the analysis needs it.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: SpanId,
    /// A server span whose parent is remote or absent: the trace's root in this process.
    pub(crate) local_root: bool,
    /// Interned for the layer's server spans (no allocation), built for the others.
    pub(crate) operation: Cow<'static, str>,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
}

impl SpanRecord {
    pub(crate) fn is_local_root(kind: &SpanKind, parent: SpanId, parent_is_remote: bool) -> bool {
        matches!(kind, SpanKind::Server) && (parent == SpanId::INVALID || parent_is_remote)
    }

    fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}

/// How much of a route's time a bottleneck takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum BottleneckSeverity {
    /// At least 80 % of the time.
    High,
    /// At least 50 %.
    Medium,
    /// Less than half.
    Low,
}

impl BottleneckSeverity {
    /// The severity of an operation taking `share` (0 to 1) of the time.
    ///
    /// ```
    /// use service_tracing::profiling::BottleneckSeverity;
    /// assert_eq!(BottleneckSeverity::from_share(0.82), BottleneckSeverity::High);
    /// ```
    pub fn from_share(share: f64) -> Self {
        if share >= 0.8 {
            Self::High
        } else if share >= 0.5 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// One operation's part of a route's critical path.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TimeShare {
    /// The operation (a span name, `{METHOD} {server.address}`, or the route itself for its
    /// own code).
    pub operation: String,
    /// Its share of the route's time, 0 to 1.
    pub share: f64,
    /// Its critical-path time per trace, on average.
    pub mean: Duration,
}

impl TimeShare {
    fn to_json(&self) -> Value {
        json!({
            "operation": self.operation,
            "share": self.share,
            "mean_ms": self.mean.as_secs_f64() * 1_000.0,
        })
    }
}

/// Where one route's time goes, over every trace of it analysed so far.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteProfile {
    /// `{METHOD} {route}` of the root span.
    pub route: String,
    /// Traces analysed.
    pub traces: u64,
    /// Mean duration of the root span.
    pub mean: Duration,
    /// Every operation on the critical path, largest share first.
    pub breakdown: Vec<TimeShare>,
}

impl RouteProfile {
    /// The operation other than the route's own code with the largest share.
    ///
    /// ```
    /// # fn demo(profiling: service_tracing::profiling::Profiling) {
    /// for route in profiling.routes() {
    ///     if let Some(b) = route.bottleneck() {
    ///         println!("{:.0}% of `{}` is in `{}`", b.share * 100.0, route.route, b.operation);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn bottleneck(&self) -> Option<&TimeShare> {
        self.breakdown.iter().find(|s| s.operation != self.route)
    }

    /// The severity of the [bottleneck](Self::bottleneck).
    pub fn severity(&self) -> Option<BottleneckSeverity> {
        self.bottleneck()
            .map(|b| BottleneckSeverity::from_share(b.share))
    }

    /// "82% of `GET /orders/{id}` is in `SELECT orders`".
    pub fn describe(&self) -> Option<String> {
        self.bottleneck().map(|b| describe(&self.route, b))
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "route": self.route,
            "traces": self.traces,
            "mean_ms": self.mean.as_secs_f64() * 1_000.0,
            "bottleneck": self.bottleneck().map(TimeShare::to_json),
            "severity": self.severity().map(BottleneckSeverity::as_str),
            "description": self.describe(),
            "breakdown": self.breakdown.iter().map(TimeShare::to_json).collect::<Vec<_>>(),
        })
    }
}

fn describe(route: &str, share: &TimeShare) -> String {
    format!(
        "{:.0}% of `{route}` is in `{}`",
        share.share * 100.0,
        share.operation
    )
}

/// One trace whose time went mostly to one operation.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Bottleneck {
    /// The trace.
    pub trace_id: TraceId,
    /// `{METHOD} {route}` of its root span.
    pub route: String,
    /// The operation that took most of the time.
    pub operation: String,
    /// Its share of the trace's time in this service, 0 to 1.
    pub share: f64,
    /// Its time on the critical path.
    pub critical: Duration,
    /// The root span's duration.
    pub duration: Duration,
    /// From the share.
    pub severity: BottleneckSeverity,
    /// When the root span ended.
    pub at: SystemTime,
}

impl Bottleneck {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "trace_id": self.trace_id.to_string(),
            "route": self.route,
            "operation": self.operation,
            "share": self.share,
            "critical_ms": self.critical.as_secs_f64() * 1_000.0,
            "duration_ms": self.duration.as_secs_f64() * 1_000.0,
            "severity": self.severity.as_str(),
            "description": describe(&self.route, &TimeShare {
                operation: self.operation.clone(),
                share: self.share,
                mean: self.critical,
            }),
        })
    }
}

/// Counters of what the analysis could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalysisStats {
    /// Traces analysed.
    pub traces: u64,
    /// Span records dropped because the queue was full.
    pub dropped_spans: u64,
    /// Spans dropped because their trace already held the per-trace maximum.
    pub truncated_spans: u64,
    /// Traces evicted unanalysed because too many were waiting for their root.
    pub evicted_traces: u64,
    /// Traces not counted per route because the route bound was reached.
    pub overflow_routes: u64,
    /// New traces left out because more than about 1,000 a second ended: a share of the
    /// traces is analysed then (see the [module](super) notes).
    pub skipped_traces: u64,
}

#[derive(Debug, Default)]
struct RouteAggregate {
    traces: u64,
    total: Duration,
    by_operation: Vec<(String, Duration)>,
}

impl RouteAggregate {
    fn add_trace(&mut self, duration: Duration, shares: &[(Cow<'static, str>, Duration)]) {
        self.traces += 1;
        self.total += duration;
        for (operation, time) in shares {
            self.add(operation, *time);
        }
    }

    fn add(&mut self, operation: &str, time: Duration) {
        if let Some((_, t)) = self.by_operation.iter_mut().find(|(op, _)| op == operation) {
            *t += time;
            return;
        }
        let key = if self.by_operation.len() < MAX_OPERATIONS_PER_ROUTE {
            operation
        } else {
            super::OTHER_OPERATION
        };
        match self.by_operation.iter_mut().find(|(op, _)| op == key) {
            Some((_, t)) => *t += time,
            None => self.by_operation.push((key.to_owned(), time)),
        }
    }
}

/// The analysis state, owned by the background thread (and by a flush, under the same lock).
#[derive(Debug)]
pub(crate) struct Analyser {
    max_routes: usize,
    in_flight: HashMap<TraceId, Vec<SpanRecord>>,
    order: VecDeque<TraceId>,
    routes: HashMap<String, RouteAggregate>,
    route_order: Vec<String>,
    recent: VecDeque<Bottleneck>,
    pub(crate) stats: AnalysisStats,
}

impl Analyser {
    pub(crate) fn new(max_routes: usize) -> Self {
        Self {
            max_routes: max_routes.max(1),
            in_flight: HashMap::new(),
            order: VecDeque::new(),
            routes: HashMap::new(),
            route_order: Vec::new(),
            recent: VecDeque::new(),
            stats: AnalysisStats::default(),
        }
    }

    /// Buffers one span; analyses its trace when it is the local root.
    pub(crate) fn add(&mut self, record: SpanRecord) {
        let trace_id = record.trace_id;
        if record.local_root {
            // A trace of one span (no child ended before its root) is the common case: no
            // lookup, and its analysis allocates nothing once its route is known.
            let buffered = if self.in_flight.is_empty() {
                None
            } else {
                self.in_flight.remove(&trace_id)
            };
            match buffered {
                Some(mut spans) => {
                    spans.push(record);
                    self.analyse(&spans);
                }
                None => self.analyse(std::slice::from_ref(&record)),
            }
            return;
        }
        if !self.in_flight.contains_key(&trace_id) {
            while self.in_flight.len() >= MAX_TRACES_IN_FLIGHT {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if self.in_flight.remove(&oldest).is_some() {
                    self.stats.evicted_traces += 1;
                }
            }
            // `order` keeps the ids of traces analysed since (removing them one by one would
            // scan it per trace); it is compacted when it holds twice the bound.
            if self.order.len() >= 2 * MAX_TRACES_IN_FLIGHT {
                let in_flight = &self.in_flight;
                self.order.retain(|t| in_flight.contains_key(t));
            }
            self.order.push_back(trace_id);
        }
        let spans = self.in_flight.entry(trace_id).or_default();
        if spans.len() < MAX_SPANS_PER_TRACE {
            spans.push(record);
        } else {
            self.stats.truncated_spans += 1;
        }
    }

    /// Analyses one trace: `spans` holds its root last.
    fn analyse(&mut self, spans: &[SpanRecord]) {
        let Some(root) = spans.last() else {
            return;
        };
        let duration = root.duration();
        if duration.is_zero() {
            return;
        }
        let shares = critical_path(spans, spans.len() - 1);
        self.stats.traces += 1;
        let top = shares
            .iter()
            .filter(|(op, _)| *op != root.operation)
            .max_by_key(|(_, t)| *t);
        if let Some((operation, critical)) = top {
            let share = critical.as_secs_f64() / duration.as_secs_f64();
            if share >= RECENT_MIN_SHARE {
                if self.recent.len() >= MAX_RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(Bottleneck {
                    trace_id: root.trace_id,
                    route: root.operation.to_string(),
                    operation: operation.to_string(),
                    share,
                    critical: *critical,
                    duration,
                    severity: BottleneckSeverity::from_share(share),
                    at: root.end,
                });
            }
        }
        if let Some(aggregate) = self.routes.get_mut(root.operation.as_ref()) {
            aggregate.add_trace(duration, &shares);
        } else if self.routes.len() >= self.max_routes {
            self.stats.overflow_routes += 1;
        } else {
            self.route_order.push(root.operation.to_string());
            self.routes
                .entry(root.operation.to_string())
                .or_default()
                .add_trace(duration, &shares);
        }
    }

    /// Every route analysed, in the order first seen.
    pub(crate) fn routes(&self) -> Vec<RouteProfile> {
        self.route_order
            .iter()
            .filter_map(|route| {
                let a = self.routes.get(route)?;
                let total = a.total.as_secs_f64();
                let traces = u32::try_from(a.traces.max(1)).unwrap_or(u32::MAX);
                let mut breakdown: Vec<TimeShare> = a
                    .by_operation
                    .iter()
                    .map(|(operation, time)| TimeShare {
                        operation: operation.clone(),
                        share: if total > 0.0 {
                            time.as_secs_f64() / total
                        } else {
                            0.0
                        },
                        mean: *time / traces,
                    })
                    .collect();
                breakdown.sort_by(|a, b| b.share.total_cmp(&a.share));
                Some(RouteProfile {
                    route: route.clone(),
                    traces: a.traces,
                    mean: a.total / traces,
                    breakdown,
                })
            })
            .collect()
    }

    /// The recent bottlenecks, oldest first.
    pub(crate) fn recent(&self) -> Vec<Bottleneck> {
        self.recent.iter().cloned().collect()
    }
}

/// Each operation's time on the critical path of the tree under `root`, largest first.
fn critical_path(spans: &[SpanRecord], root: usize) -> Vec<(Cow<'static, str>, Duration)> {
    if spans.len() == 1 {
        // No child: the root's whole time is its own.
        let root = &spans[root];
        let time = root.duration();
        return if time.is_zero() {
            Vec::new()
        } else {
            vec![(root.operation.clone(), time)]
        };
    }
    let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        if i != root {
            children.entry(span.parent_span_id).or_default().push(i);
        }
    }
    for list in children.values_mut() {
        // Latest end first.
        list.sort_by_key(|i| std::cmp::Reverse(spans[*i].end));
    }
    let mut totals: Vec<(Cow<'static, str>, Duration)> = Vec::new();
    let mut add = |operation: &Cow<'static, str>, time: Duration| {
        if time.is_zero() {
            return;
        }
        match totals.iter_mut().find(|(op, _)| op == operation) {
            Some((_, t)) => *t += time,
            None => totals.push((operation.clone(), time)),
        }
    };
    // An explicit stack: (span, lower bound, upper bound, next child to look at, cursor).
    let root_span = &spans[root];
    let mut stack = vec![(root, root_span.start, root_span.end, 0usize, root_span.end)];
    let mut visited = 0usize;
    while let Some(frame) = stack.last_mut() {
        let (index, low, _high, next, cursor) = *frame;
        let span = &spans[index];
        let kids = children
            .get(&span.span_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // The next child that overlaps [low, cursor].
        let mut found = None;
        for (k, &child) in kids.iter().enumerate().skip(next) {
            let c = &spans[child];
            let end = c.end.min(cursor);
            let start = c.start.max(low);
            if end > start {
                found = Some((k, child, start, end));
                break;
            }
        }
        match found {
            // Guards against a cycle of ids (a malformed trace): each span is walked at most
            // as many times as there are spans.
            Some((k, child, start, end)) if visited < spans.len() * 2 => {
                visited += 1;
                add(
                    &span.operation,
                    cursor.duration_since(end).unwrap_or_default(),
                );
                frame.3 = k + 1;
                frame.4 = start;
                stack.push((child, start, end, 0, end));
            }
            _ => {
                add(
                    &span.operation,
                    cursor.duration_since(low).unwrap_or_default(),
                );
                stack.pop();
            }
        }
    }
    totals.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
    totals
}

/// A span's self time: its duration less the union of its children's intervals.
#[cfg(test)]
fn self_time(spans: &[SpanRecord], index: usize) -> Duration {
    let span = &spans[index];
    let mut intervals: Vec<(SystemTime, SystemTime)> = spans
        .iter()
        .filter(|c| c.parent_span_id == span.span_id && c.span_id != span.span_id)
        .map(|c| (c.start.max(span.start), c.end.min(span.end)))
        .filter(|(s, e)| e > s)
        .collect();
    intervals.sort();
    let mut covered = Duration::ZERO;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (s, e) in intervals {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                covered += ce.duration_since(cs).unwrap_or_default();
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        covered += ce.duration_since(cs).unwrap_or_default();
    }
    span.duration().saturating_sub(covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(T0 + ms)
    }

    fn span(id: u64, parent: u64, operation: &str, start: u64, end: u64) -> SpanRecord {
        SpanRecord {
            trace_id: TraceId::from(7u128),
            span_id: SpanId::from(id),
            parent_span_id: SpanId::from(parent),
            local_root: parent == 0,
            operation: operation.to_owned().into(),
            start: at(start),
            end: at(end),
        }
    }

    #[test]
    fn analysed_traces_leave_no_trace_behind() {
        let mut analyser = Analyser::new(4);
        for n in 0..(10 * MAX_TRACES_IN_FLIGHT as u128) {
            let mut child = span(2, 1, "SELECT", 1, 5);
            let mut root = span(1, 0, "GET /r", 0, 10);
            child.trace_id = TraceId::from(n + 1);
            root.trace_id = TraceId::from(n + 1);
            analyser.add(child);
            analyser.add(root);
        }
        assert!(analyser.in_flight.is_empty());
        assert!(
            analyser.order.len() <= 2 * MAX_TRACES_IN_FLIGHT,
            "{} ids kept for traces already analysed",
            analyser.order.len()
        );
        assert_eq!(analyser.stats.evicted_traces, 0);
        assert_eq!(analyser.stats.traces, 10 * MAX_TRACES_IN_FLIGHT as u64);
        let routes = analyser.routes();
        assert_eq!(routes.len(), 1);
        assert_eq!(share_of(&routes[0], "SELECT"), 40);
    }

    #[test]
    fn a_root_alone_is_all_its_own_time() {
        let mut analyser = Analyser::new(4);
        analyser.add(span(1, 0, "GET /r", 0, 10));
        analyser.add(span(1, 0, "GET /r", 0, 30));
        let routes = analyser.routes();
        assert_eq!(routes[0].traces, 2);
        assert_eq!(routes[0].mean, Duration::from_millis(20));
        assert_eq!(share_of(&routes[0], "GET /r"), 100);
    }

    fn share_of(route: &RouteProfile, operation: &str) -> u32 {
        let share = route.breakdown.iter().find(|s| s.operation == operation);
        share.map_or(0, |s| (s.share * 100.0).round() as u32)
    }

    fn share(shares: &[(Cow<'static, str>, Duration)], operation: &str) -> u128 {
        shares
            .iter()
            .find(|(op, _)| op == operation)
            .map(|(_, d)| d.as_millis())
            .unwrap_or(0)
    }

    #[test]
    fn the_critical_path_follows_the_last_child_to_end_and_sums_to_the_root() {
        // root 0..100: a 10..40 (with a1 15..35), b 20..90 concurrent with a, c 92..97.
        let spans = vec![
            span(2, 1, "a", 10, 40),
            span(3, 2, "a1", 15, 35),
            span(4, 1, "b", 20, 90),
            span(5, 1, "c", 92, 97),
            span(1, 0, "GET /r", 0, 100),
        ];
        let shares = critical_path(&spans, 4);
        // root: 0..10, 90..92, 97..100 (the part of a before b started: 10..20, is a's).
        assert_eq!(share(&shares, "GET /r"), 15);
        assert_eq!(share(&shares, "b"), 70);
        assert_eq!(share(&shares, "c"), 5);
        assert_eq!(share(&shares, "a"), 5, "10..15");
        assert_eq!(share(&shares, "a1"), 5, "15..20");
        let total: u128 = shares.iter().map(|(_, d)| d.as_millis()).sum();
        assert_eq!(total, 100);
        assert_eq!(
            self_time(&spans, 4).as_millis(),
            15,
            "0..10, 90..92, 97..100"
        );
        assert_eq!(self_time(&spans, 0).as_millis(), 10);
    }

    #[test]
    fn a_slow_child_is_the_route_bottleneck_and_a_recent_one() {
        let mut analyser = Analyser::new(8);
        analyser.add(span(2, 1, "SELECT orders", 1, 51));
        analyser.add(span(1, 0, "GET /orders/{id}", 0, 52));
        let routes = analyser.routes();
        let route = &routes[0];
        let bottleneck = route.bottleneck().expect("a bottleneck");
        assert_eq!(bottleneck.operation, "SELECT orders");
        assert!((bottleneck.share - 50.0 / 52.0).abs() < 1e-9);
        assert_eq!(route.severity(), Some(BottleneckSeverity::High));
        assert_eq!(
            route.describe().as_deref(),
            Some("96% of `GET /orders/{id}` is in `SELECT orders`")
        );
        let recent = analyser.recent();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].operation, "SELECT orders");
        assert_eq!(analyser.stats.traces, 1);
        assert!(analyser.in_flight.is_empty());
    }

    #[test]
    fn buffers_are_bounded_and_what_is_dropped_counted() {
        let mut analyser = Analyser::new(1);
        for t in 0..(MAX_TRACES_IN_FLIGHT as u128 + 10) {
            let mut s = span(2, 1, "child", 1, 2);
            s.trace_id = TraceId::from(t + 100);
            analyser.add(s);
        }
        assert_eq!(analyser.in_flight.len(), MAX_TRACES_IN_FLIGHT);
        assert_eq!(analyser.stats.evicted_traces, 10);
        for i in 0..(MAX_SPANS_PER_TRACE as u64 + 5) {
            analyser.add(span(i + 10, 1, "child", 1, 2));
        }
        assert_eq!(analyser.stats.truncated_spans, 5);
        // One route is kept; a second is counted as overflow.
        analyser.add(span(1, 0, "GET /a", 0, 3));
        let mut other = span(9, 0, "GET /b", 0, 3);
        other.trace_id = TraceId::from(99u128);
        analyser.add(other);
        assert_eq!(analyser.routes().len(), 1);
        assert_eq!(analyser.stats.overflow_routes, 1);
    }

    #[test]
    fn a_cycle_of_span_ids_ends() {
        let spans = vec![
            span(2, 3, "x", 1, 9),
            span(3, 2, "y", 2, 8),
            span(1, 0, "GET /r", 0, 10),
        ];
        let shares = critical_path(&spans, 2);
        assert_eq!(share(&shares, "GET /r"), 10, "the cycle is not reachable");
    }
}
