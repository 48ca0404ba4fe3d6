//! Each page as a JSON value: what the `.json` twin answers, and what the HTML is rendered
//! from, so both always show the same figures. The figures are read from the readers the guard
//! already has (the health report, error tracking, profiling) and from the recent-trace store.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use serde_json::{json, Map, Value};

use super::store::{SpanStatus, StoredSpan, StoredTrace};
use super::PagesState;
use crate::clock::unix_ms;
use crate::Window;

/// Traces listed at most on one page.
const MAX_LISTED: usize = 500;

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `text` as a query value.
pub(crate) fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The overview: the health report (service, uptime, export, error storage, sampling), the
/// store's state and the process's resources.
pub(crate) fn overview(state: &PagesState) -> Value {
    let (_, mut report) = state.health.report(SystemTime::now());
    report["service_version"] = json!(state.service_version);
    let stats = state.store.stats();
    report["store"] = json!({
        "traces": stats.traces, "pending": stats.pending,
        "bytes": stats.bytes, "max_bytes": stats.max_bytes, "max_traces": stats.max_traces,
        "placed": stats.placed, "evicted": stats.evicted, "abandoned": stats.abandoned,
    });
    report["resources"] = state
        .profiling
        .as_ref()
        .and_then(|p| p.resources())
        .map(|r| r.summary().to_json())
        .unwrap_or(Value::Null);
    report
}

/// What the routes can be sorted by (`?sort=`), each over the last minute, largest first;
/// anything else keeps the order operations were first seen in.
const ROUTE_SORTS: [&str; 4] = ["rate_per_second", "error_ratio", "p95_ms", "p99_ms"];

/// One row per operation: rate, error ratio, percentiles and the latency histogram (counts
/// per bucket, the bounds in `bucket_bounds_ms`, the last bucket above them) over each
/// window, links to its recent traces and its bottleneck; sorted by `?sort=` (see
/// [`ROUTE_SORTS`]).
pub(crate) fn routes(state: &PagesState, query: Option<&str>) -> Value {
    let Some(profiling) = &state.profiling else {
        return json!({ "routes": [], "profiling": false, "sort": null });
    };
    let sort = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("sort="))
        .and_then(|s| ROUTE_SORTS.iter().find(|k| **k == s).copied());
    let bottlenecks: HashMap<String, Value> = profiling
        .routes()
        .iter()
        .map(|r| (r.route.clone(), r.to_json()))
        .collect();
    let routes: Vec<Value> = profiling
        .operations()
        .iter()
        .map(|op| {
            let windows: Map<String, Value> = op
                .windows
                .iter()
                .map(|w| {
                    let mut figures = w.to_json();
                    let seconds = w.window.duration().as_secs_f64();
                    figures["rate_per_second"] = json!(w.count as f64 / seconds);
                    figures["error_ratio"] = json!(if w.count == 0 {
                        0.0
                    } else {
                        w.errors as f64 / w.count as f64
                    });
                    (w.window.as_str().to_owned(), figures)
                })
                .collect();
            json!({
                "operation": op.operation,
                "kind": op.kind.as_str(),
                "slow": op.slow,
                "windows": windows,
                "traces": format!("{}/traces?route={}", state.base, encode(&op.operation)),
                "bottleneck": bottlenecks.get(&op.operation),
            })
        })
        .collect();
    let mut routes = routes;
    if let Some(key) = sort {
        let figure = |r: &Value| r["windows"]["1m"][key].as_f64().unwrap_or(0.0);
        routes.sort_by(|a, b| figure(b).total_cmp(&figure(a)));
    }
    let bounds: Vec<f64> = crate::metrics::DURATION_BOUNDARIES
        .iter()
        .map(|s| s * 1_000.0)
        .collect();
    json!({ "routes": routes, "profiling": true, "sort": sort, "bucket_bounds_ms": bounds })
}

/// What the traces page is asked for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TraceFilter {
    pub(crate) route: Option<String>,
    pub(crate) errors_only: bool,
    pub(crate) min_ms: Option<f64>,
    /// A trace id or a correlation id.
    pub(crate) search: Option<String>,
}

impl TraceFilter {
    /// From a query string (`route`, `status=error`, `min_ms`, `q`); what does not parse is
    /// left out.
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut filter = Self::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.replace('+', " ");
            let value = percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .trim()
                .to_owned();
            if value.is_empty() || value.len() > 512 {
                continue;
            }
            match key {
                "route" => filter.route = Some(value),
                "status" => filter.errors_only = value == "error",
                "min_ms" => filter.min_ms = value.parse().ok().filter(|v: &f64| v.is_finite()),
                "q" => filter.search = Some(value),
                _ => {}
            }
        }
        filter
    }

    fn keeps(&self, trace: &StoredTrace) -> bool {
        self.route.as_deref().is_none_or(|r| trace.operation() == r)
            && (!self.errors_only || trace.is_error())
            && self.min_ms.is_none_or(|min| ms(trace.duration()) >= min)
            && self.search.as_deref().is_none_or(|q| {
                trace.trace_id.to_string() == q.to_ascii_lowercase()
                    || trace.correlation_id() == Some(q)
            })
    }

    fn to_json(&self) -> Value {
        json!({
            "route": self.route, "status": self.errors_only.then_some("error"),
            "min_ms": self.min_ms, "q": self.search,
        })
    }
}

/// The recent traces the filter keeps, newest first.
pub(crate) fn traces(state: &PagesState, filter: &TraceFilter) -> Value {
    let all = state.store.traces();
    let kept: Vec<Value> = all
        .iter()
        .filter(|t| filter.keeps(t))
        .take(MAX_LISTED)
        .map(|t| summary(state, t))
        .collect();
    json!({
        "filter": filter.to_json(),
        "routes": state.store.families(),
        "stored": all.len(),
        "traces": kept,
    })
}

fn summary(state: &PagesState, trace: &StoredTrace) -> Value {
    let root = trace.root();
    json!({
        "trace_id": trace.trace_id.to_string(),
        "operation": trace.operation(),
        "service": root.map(|r| &*r.service),
        "start_unix_ms": unix_ms(trace.start()),
        "duration_ms": ms(trace.duration()),
        "spans": trace.spans.len(),
        "error": trace.is_error(),
        "status_code": root.and_then(|r| r.attribute("http.response.status_code")),
        "correlation_id": trace.correlation_id(),
        "link": trace_link(&state.base, trace.trace_id),
    })
}

/// The trace's page under the pages' `base`.
pub(super) fn trace_link(base: &str, trace_id: TraceId) -> String {
    format!("{base}/traces/{trace_id}")
}

fn kind(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// The indices of `n` spans in tree order (each parent before its children, siblings by
/// start, `earlier` comparing two spans' starts), with their depth. A span whose parent is not
/// among them (or is itself) is a root; spans in a cycle of parents, which no honest trace
/// has, come after the trees rather than being lost.
///
/// The trace page orders its own spans with it, and again once the request chain has added
/// other services' spans.
pub(super) fn tree_order<K: Eq + std::hash::Hash>(
    n: usize,
    id: impl Fn(usize) -> K,
    parent: impl Fn(usize) -> Option<K>,
    earlier: impl Fn(usize, usize) -> std::cmp::Ordering,
) -> Vec<(usize, usize)> {
    let index: HashMap<K, usize> = (0..n).map(|i| (id(i), i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for i in 0..n {
        match parent(i)
            .and_then(|p| index.get(&p).copied())
            .filter(|&p| p != i)
        {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let by_start = |v: &mut Vec<usize>| v.sort_by(|&a, &b| earlier(a, b).then(a.cmp(&b)));
    by_start(&mut roots);
    for v in children.values_mut() {
        by_start(v);
    }
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    // The roots first, then whatever they did not reach.
    for first in roots.into_iter().chain(0..n) {
        let mut stack = vec![(first, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push((i, depth));
            if let Some(kids) = children.get(&i) {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
        }
    }
    order
}

fn pairs(attributes: &[(Box<str>, Box<str>)]) -> Value {
    Value::Array(
        attributes
            .iter()
            .map(|(k, v)| json!([&**k, &**v]))
            .collect(),
    )
}

/// One trace: every span with its parent, kind, status, start offset, duration, service,
/// attributes, events (with exception stacks) and links.
pub(crate) fn trace(state: &PagesState, trace: &StoredTrace) -> Value {
    let start = trace
        .spans
        .iter()
        .map(|s| s.start)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = trace.spans.iter().map(|s| s.end).max().unwrap_or(start);
    let all = &trace.spans;
    let spans: Vec<Value> = tree_order(
        all.len(),
        |i| all[i].span_id,
        |i| Some(all[i].parent_id).filter(|p| *p != SpanId::INVALID),
        |a, b| all[a].start.cmp(&all[b].start),
    )
    .into_iter()
    .map(|(i, depth)| span(state, &all[i], depth, start))
    .collect();
    json!({
        "trace_id": trace.trace_id.to_string(),
        "operation": trace.operation(),
        "start_unix_ms": unix_ms(start),
        "duration_ms": ms(end.duration_since(start).unwrap_or_default()),
        "error": trace.is_error(),
        "dropped_spans": trace.dropped_spans,
        "bytes": trace.bytes(),
        "spans": spans,
    })
}

/// One span of a trace that started at `start`, `depth` levels under its root.
fn span(state: &PagesState, s: &StoredSpan, depth: usize, start: SystemTime) -> Value {
    let offset = |t: SystemTime| ms(t.duration_since(start).unwrap_or_default());
    let (status, description) = match &s.status {
        SpanStatus::Unset => ("unset", None),
        SpanStatus::Ok => ("ok", None),
        SpanStatus::Error(d) => ("error", Some(&**d)),
    };
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            json!({
                "name": &*e.name,
                "offset_ms": offset(e.at),
                "attributes": pairs(&e.attributes),
            })
        })
        .collect();
    let exception = s.events.iter().find(|e| &*e.name == "exception").map(|e| {
        let get = |key: &str| {
            e.attributes
                .iter()
                .find(|(k, _)| &**k == key)
                .map(|(_, v)| &**v)
        };
        json!({
            "type": get("exception.type"),
            "message": get("exception.message"),
            "stacktrace": get("exception.stacktrace"),
        })
    });
    let links: Vec<Value> = s
        .links
        .iter()
        .map(|(t, sp)| {
            json!({
                "trace_id": t.to_string(), "span_id": sp.to_string(),
                "link": state.store.trace(*t).map(|_| trace_link(&state.base, *t)),
            })
        })
        .collect();
    json!({
        "span_id": s.span_id.to_string(),
        "parent_span_id": (s.parent_id != SpanId::INVALID).then(|| s.parent_id.to_string()),
        "parent_is_remote": s.parent_is_remote,
        "depth": depth,
        "name": &*s.name,
        "kind": kind(&s.kind),
        "status": status,
        "status_description": description,
        "service": &*s.service,
        "start_offset_ms": offset(s.start),
        "duration_ms": ms(s.duration()),
        "attributes": pairs(&s.attributes),
        "events": events,
        "exception": exception,
        "links": links,
    })
}

/// The error groups: count, first and last seen, severity, category, routes, counts per
/// window, sample traces (linked when the store still has them), and the last alert a rule
/// raised for the group: `firing` within the rule's cooldown, `fired` after it, with its
/// webhook post's state (`pending`, `delivered`, `failed`, `dropped`, or `no_webhook`).
pub(crate) fn errors(state: &PagesState) -> Value {
    let Some(errors) = &state.errors else {
        return json!({ "groups": [], "error_tracking": false });
    };
    let summary = errors.summary();
    // What alerting recorded, not evaluated again here.
    let alerts = errors.group_alerts();
    let now = SystemTime::now();
    let groups: Vec<Value> = errors
        .groups()
        .iter()
        .map(|g| {
            let samples: Vec<Value> = g
                .trace_ids()
                .iter()
                .map(|t| {
                    json!({
                        "trace_id": t.to_string(),
                        "link": state.store.trace(*t).map(|_| trace_link(&state.base, *t)),
                    })
                })
                .collect();
            let windows: Map<String, Value> = Window::ALL
                .iter()
                .map(|w| (w.as_str().to_owned(), json!(g.errors_in(*w))))
                .collect();
            json!({
                "fingerprint": format!("{:016x}", g.fingerprint()),
                "type": g.error_type(),
                "message": g.message(),
                "count": g.count(),
                "first_seen_unix_ms": unix_ms(g.first_seen()),
                "last_seen_unix_ms": unix_ms(g.last_seen()),
                "severity": g.severity().as_str(),
                "category": g.category().as_str(),
                "routes": g.operations(),
                "status_codes": g.status_codes(),
                "errors_in": windows,
                "samples": samples,
                "correlation_ids": g.correlation_ids(),
                "alert": alerts.get(&g.fingerprint()).map(|a| json!({
                    "state": if a.is_firing(now) { "firing" } else { "fired" },
                    "rule": a.rule,
                    "kind": a.kind.as_str(),
                    "fired_at_unix_ms": unix_ms(a.fired_at),
                    "alerts": a.alerts,
                    "delivery": a.delivery.as_str(),
                })),
            })
        })
        .collect();
    json!({
        "error_tracking": true,
        "total": summary.total(),
        "evictions": summary.evictions(),
        "storage": errors.storage_health().to_json(),
        "alert_rules": errors.has_alert_rules(),
        "groups": groups,
    })
}

/// Per route, where the time goes on the critical path, and the recent traces where one
/// operation took most of it.
pub(crate) fn bottlenecks(state: &PagesState) -> Value {
    let Some(profiling) = &state.profiling else {
        return json!({ "routes": [], "recent": [], "profiling": false });
    };
    let recent: Vec<Value> = profiling
        .recent_bottlenecks()
        .iter()
        .rev()
        .map(|b| {
            let mut v = b.to_json();
            v["link"] = json!(state
                .store
                .trace(b.trace_id)
                .map(|_| trace_link(&state.base, b.trace_id)));
            v
        })
        .collect();
    json!({
        "profiling": true,
        "routes": profiling.routes().iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "recent": recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, parent, start): a root with two children out of start order, a grandchild, a span
    /// whose parent is not there, one that is its own parent, and two that are each other's.
    #[test]
    fn spans_come_in_tree_order_with_their_depth_and_none_is_lost() {
        let spans: [(u64, u64, u64); 8] = [
            (1, 0, 0),
            (2, 1, 5),
            (3, 1, 2),
            (4, 3, 3),
            (5, 99, 1),
            (6, 6, 7),
            (7, 8, 4),
            (8, 7, 6),
        ];
        let order = tree_order(
            spans.len(),
            |i| spans[i].0,
            |i| Some(spans[i].1).filter(|p| *p != 0),
            |a, b| spans[a].2.cmp(&spans[b].2),
        );
        let ids: Vec<(u64, usize)> = order.iter().map(|&(i, d)| (spans[i].0, d)).collect();
        assert_eq!(
            ids,
            [
                (1, 0),
                (3, 1),
                (4, 2),
                (2, 1),
                (5, 0),
                (6, 0),
                (7, 0),
                (8, 1)
            ],
            "roots by start (its own parent is a root); the cycle after them"
        );
    }
}
