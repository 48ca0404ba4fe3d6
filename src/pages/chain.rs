//! The request chain of a correlation id (`{pages}/chains/{id}`), and the spans other services
//! recorded in a trace (added to its waterfall): both read from request chains
//! ([`crate::request_chain`], feature `redis`) through the chains' async reader, waiting a
//! bounded time, so a stalled Redis never holds a page.
//!
//! An id in the path (or in `?id=`, the look-up form's) is checked before anything reads it:
//! once percent-decoded, 1 to 128 bytes of visible ASCII but `%`, `,`, `;` and `=` (what any
//! correlation charset may allow, what request chains check again before building a key), and
//! no empty, `.` or `..` segment between `/`. Anything else is a 400 that does not repeat it.
//! Without request chains (off, or a build without `redis`), the page says so with a 200.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::Response;
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::{json, Value};
use service_tracing_middleware::correlation::MAX_LEN;

use crate::attributes::plausible_id;

use super::html::{self, Html};
use super::store::{RecentTraces, StoredTrace};
use super::views::{self, ms};
use super::PagesState;
use crate::clock::unix_ms;

/// How long a trace's page waits for the chain of its correlation id: the other services'
/// spans are extra, and a Redis that does not answer takes 500 ms per command to say so.
pub(super) const TRACE_WAIT: Duration = Duration::from_millis(150);
/// How long the chain page waits for its chain (a read is bounded by Redis's timeouts).
const CHAIN_WAIT: Duration = Duration::from_secs(2);

/// What the pages say when request chains are off.
#[cfg(feature = "redis")]
const OFF: &str = "Request chains are off in this service: turn them on with \
    ServiceTracing::request_chains (or SERVICE_TRACING_REQUEST_CHAINS=true).";
/// What the pages say when request chains are not built in.
#[cfg(not(feature = "redis"))]
const OFF: &str = "Request chains are not in this build: they need the `redis` feature.";
/// A chain read from this process alone.
const LOCAL: &str = "From this process only: no Redis is configured for request chains, or it \
    did not answer. Other services' steps may be missing.";

/// What a correlation id keeps as it is in a path segment: the unreserved bytes and `:`
/// (every byte of the default charset); anything else, `/` included, is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// The chain page of `id`.
fn chain_link(base: &str, id: &str) -> String {
    let id = percent_encoding::utf8_percent_encode(id, SEGMENT);
    format!("{base}/chains/{id}")
}

/// One step of a chain, as the pages show it.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "read from request chains, which need `redis`")
)]
struct Step {
    service: String,
    instance: String,
    operation: String,
    kind: &'static str,
    status: &'static str,
    http_status: Option<u16>,
    start: SystemTime,
    duration: Duration,
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
}

impl Step {
    fn end(&self) -> SystemTime {
        self.start + self.duration
    }
}

/// What reading a chain gave.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "without `redis`, chains are always off")
)]
enum Read {
    /// Request chains are off, or not built.
    Off,
    /// The chains' thread did not answer within the wait.
    Late(Duration),
    /// The steps in order; `shared`: read from Redis (else from this process alone).
    Chain { steps: Vec<Step>, shared: bool },
}

/// Whether request chains are on.
#[cfg(feature = "redis")]
fn on(state: &PagesState) -> bool {
    state.chains.is_some()
}

/// Request chains are not built.
#[cfg(not(feature = "redis"))]
fn on(_: &PagesState) -> bool {
    false
}

/// The chain of `id` (checked), waiting at most `wait`.
#[cfg(feature = "redis")]
async fn read(state: &PagesState, id: &str, wait: Duration) -> Read {
    let Some(chains) = &state.chains else {
        return Read::Off;
    };
    let Ok(chain) = tokio::time::timeout(wait, chains.read_async(id)).await else {
        return Read::Late(wait);
    };
    let steps = chain
        .entries()
        .iter()
        .map(|e| Step {
            service: e.service.clone(),
            instance: e.instance.clone(),
            // A step's name comes from a span before the exporter redacted it (its own
            // service's, or another's): scrubbed as the exporter scrubs span names.
            operation: state
                .redactor
                .scrub(&e.operation)
                .unwrap_or_else(|| e.operation.clone()),
            kind: e.kind.as_str(),
            status: e.status.as_str(),
            http_status: e.http_status,
            start: e.start,
            duration: e.duration,
            trace_id: e.trace_id,
            span_id: e.span_id,
            parent_id: e.parent_span_id,
        })
        .collect();
    Read::Chain {
        steps,
        shared: chain.source() == crate::request_chain::ChainSource::Shared,
    }
}

/// Without the `redis` feature there is nothing to read.
#[cfg(not(feature = "redis"))]
#[allow(clippy::unused_async, reason = "the `redis` build's signature")]
async fn read(_: &PagesState, _: &str, _: Duration) -> Read {
    Read::Off
}

/// `raw` (a path segment or a query value, still percent-encoded) as a correlation id, or why
/// it is not one. Bounded before decoding: a huge id is refused without a copy.
fn correlation_id(raw: &str) -> Result<String, &'static str> {
    const NOT_AN_ID: &str = "Not a correlation id: 1 to 128 bytes of visible ASCII, without \
        `%`, `,`, `;` or `=`, once percent-decoded.";
    if raw.len() > 3 * MAX_LEN {
        return Err(NOT_AN_ID);
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let id = String::from_utf8(bytes).map_err(|_| NOT_AN_ID)?;
    check_id(&id, NOT_AN_ID)?;
    Ok(id)
}

/// Whether `id`, decoded, may be shown and linked as a correlation id: plausible under any
/// charset ([`plausible_id`]), and no empty, `.` or `..` path segment; else why not (`not_an_id`
/// for an implausible one).
fn check_id(id: &str, not_an_id: &'static str) -> Result<(), &'static str> {
    if !plausible_id(id) {
        return Err(not_an_id);
    }
    if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("Not a correlation id: it holds an empty, `.` or `..` path segment.");
    }
    Ok(())
}

/// The look-up form's `id`, still percent-encoded (a form's `+` is a space); `None` when
/// absent or empty.
fn form_id(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))
        .filter(|v| !v.is_empty())
        .map(|v| v.replace('+', "%20"))
}

/// The chain page's value and status when `rest` (the path under the pages, without
/// `.json`) is one: `/chains/{id}`, or `/chains` with the form's `?id=` (without it, the form
/// alone). [`render`] draws it.
pub(super) async fn page(
    state: &PagesState,
    rest: &str,
    query: Option<&str>,
) -> Option<(StatusCode, Value)> {
    let raw = match rest {
        "/chains" => form_id(query),
        _ => Some(rest.strip_prefix("/chains/")?.to_owned()),
    };
    Some(match raw.as_deref().map(correlation_id) {
        None => {
            let note = if on(state) {
                "Give a correlation id."
            } else {
                OFF
            };
            (StatusCode::OK, shown(None, on(state), note, None, &[]))
        }
        Some(Err(why)) => {
            let mut v = shown(None, on(state), why, None, &[]);
            v["error"] = json!(why);
            (StatusCode::BAD_REQUEST, v)
        }
        Some(Ok(id)) => {
            let read = read(state, &id, CHAIN_WAIT).await;
            view(&state.base, &state.store, &id, read)
        }
    })
}

/// The chain page's value: `correlation_id`, `request_chains` (on or not), `answered`,
/// `source` (`shared` or `local`), `note`, `services` in the order they come in, the chain's
/// start and duration, and its `steps`.
fn shown(id: Option<&str>, on: bool, note: &str, source: Option<&str>, steps: &[Value]) -> Value {
    json!({
        "correlation_id": id,
        "request_chains": on,
        "answered": source.is_some(),
        "source": source,
        "note": (!note.is_empty()).then_some(note),
        "services": [],
        "start_unix_ms": null,
        "duration_ms": null,
        "steps": steps,
    })
}

/// The chain page's value for a checked id, with its status: 200 (also when chains are off),
/// 404 when no step carried the id, 503 when the chains' thread did not answer in time.
fn view(base: &str, store: &RecentTraces, id: &str, read: Read) -> (StatusCode, Value) {
    let (steps, shared) = match read {
        Read::Off => return (StatusCode::OK, shown(Some(id), false, OFF, None, &[])),
        Read::Late(wait) => {
            let note = format!(
                "The request chain store did not answer within {} ms: try again.",
                wait.as_millis()
            );
            let v = shown(Some(id), true, &note, None, &[]);
            return (StatusCode::SERVICE_UNAVAILABLE, v);
        }
        Read::Chain { steps, shared } => (steps, shared),
    };
    let source = if shared { "shared" } else { "local" };
    let note = match (steps.is_empty(), shared) {
        (true, true) => "No step carried this correlation id, or its chain expired.",
        (true, false) => {
            "No step carried this correlation id here, or its chain expired. \
            No Redis is configured for request chains, or it did not answer."
        }
        (false, true) => "",
        (false, false) => LOCAL,
    };
    let start = steps.iter().map(|s| s.start).min();
    let end = steps.iter().map(Step::end).max();
    let mut services: Vec<&str> = Vec::new();
    for s in &steps {
        if !services.contains(&s.service.as_str()) {
            services.push(&s.service);
        }
    }
    let shown_steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            let offset = start.map_or(0.0, |t| ms(s.start.duration_since(t).unwrap_or_default()));
            json!({
                "service": s.service,
                "instance": s.instance,
                "kind": s.kind,
                "operation": s.operation,
                "status": s.status,
                "http_status": s.http_status,
                "start_offset_ms": offset,
                "duration_ms": ms(s.duration),
                "trace_id": s.trace_id.to_string(),
                "span_id": s.span_id.to_string(),
                "parent_span_id": s.parent_id.map(|p| p.to_string()),
                // The trace's page, when this service's store still has it.
                "trace": store
                    .trace(s.trace_id)
                    .map(|_| views::trace_link(base, s.trace_id)),
            })
        })
        .collect();
    let mut v = shown(Some(id), true, note, Some(source), &shown_steps);
    v["services"] = json!(services);
    if let (Some(start), Some(end)) = (start, end) {
        v["start_unix_ms"] = json!(unix_ms(start));
        v["duration_ms"] = json!(ms(end.duration_since(start).unwrap_or_default()));
    }
    let status = if steps.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (status, v)
}

/// The chain page as HTML: the look-up form, the services in order, and one row per step
/// with its place on the chain's time axis.
pub(super) fn render(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    let id = v["correlation_id"].as_str();
    h.raw("<form method=\"get\" class=\"filter\" action=\"")
        .text(&format!("{base}/chains"))
        .raw("\"><label>Correlation id <input type=\"search\" name=\"id\" maxlength=\"128\" required value=\"")
        .text(id.unwrap_or(""))
        .raw("\"></label> <button type=\"submit\">Show its chain</button></form>");
    if let Some(note) = v["note"].as_str() {
        h.raw(if v["error"].is_string() {
            "<p class=\"note refused\">"
        } else {
            "<p class=\"note\">"
        })
        .text(note)
        .raw("</p>");
    }
    let steps = v["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !steps.is_empty() {
        let total = v["duration_ms"].as_f64().unwrap_or(0.0).max(1e-6);
        h.raw("<p class=\"meta\" id=\"services\">");
        for (i, s) in v["services"].as_array().into_iter().flatten().enumerate() {
            if i > 0 {
                h.raw(" &rarr; ");
            }
            h.raw("<b>").value(s).raw("</b>");
        }
        h.raw(": ")
            .num(steps.len() as f64, 0)
            .raw(" steps over ")
            .num(total, 2)
            .raw(" ms, ")
            .raw(if v["source"] == "shared" {
                "read from the shared store."
            } else {
                "read from this process."
            })
            .raw("</p>");
        h.raw("<div class=\"scroll\"><table class=\"list\" id=\"chain\"><thead><tr><th>#</th><th>Service</th><th>Kind</th><th>Operation</th><th>Status</th><th>Start ms</th><th>Duration ms</th><th>Time</th><th>Trace</th></tr></thead><tbody>");
        for (i, step) in steps.iter().enumerate() {
            step_row(&mut h, i, step, total);
        }
        h.raw("</tbody></table></div>");
    }
    let title = match id {
        Some(id) => format!("Request chain: {id}"),
        None => "Request chain".to_owned(),
    };
    html::page(base, &title, h)
}

/// One step of the chain page's table: its place, service, kind, operation, status, times, a
/// bar on the chain's time axis (`total` ms wide), and its trace, linked when kept here.
fn step_row(h: &mut Html, i: usize, s: &Value, total: f64) {
    let start = s["start_offset_ms"].as_f64().unwrap_or(0.0);
    let duration = s["duration_ms"].as_f64().unwrap_or(0.0);
    h.raw("<tr class=\"step kind-")
        .text(s["kind"].as_str().unwrap_or(""))
        .raw(" status-")
        .text(s["status"].as_str().unwrap_or(""))
        .raw(if s["status"] == "error" { " error" } else { "" })
        .raw("\" data-step data-service=\"")
        .text(s["service"].as_str().unwrap_or(""))
        .raw("\"><td>")
        .num((i + 1) as f64, 0)
        .raw("</td><td>")
        .value(&s["service"])
        .raw("</td><td>")
        .value(&s["kind"])
        .raw("</td><td>")
        .value(&s["operation"])
        .raw("</td><td>")
        .value(&s["status"])
        .raw(" ")
        .value(&s["http_status"])
        .raw("</td><td>")
        .num(start, 2)
        .raw("</td><td>")
        .num(duration, 2)
        .raw("</td><td class=\"time\"><span class=\"track\"><span class=\"bar\" style=\"margin-left:")
        .num((start / total * 100.0).clamp(0.0, 100.0), 2)
        .raw("%;width:")
        .num((duration / total * 100.0).clamp(0.3, 100.0), 2)
        .raw("%\"></span></span></td><td>");
    let trace = s["trace_id"].as_str().unwrap_or("");
    match s["trace"].as_str() {
        Some(href) => h.link(href, trace),
        None => h.text(trace),
    };
    h.raw("</td></tr>");
}

/// Adds to a trace's page (`value`, from `views::trace`) its `correlation_id`, a link to its
/// `chain`, and the spans of other services sharing the trace id, read from the chain of the
/// correlation id: the entries whose span this service's store lacks, marked `from_chain`,
/// with their `service`, on the same time axis (widened if they start earlier or end later),
/// under their parent when it is shown. `other_services` says what the read gave; a read
/// that takes longer than [`TRACE_WAIT`] leaves the trace as it is, with a note.
pub(super) async fn add_other_services(state: &PagesState, trace: &StoredTrace, value: &mut Value) {
    // An attribute anyone may set: linked and read only when it can be an id.
    let id = trace.correlation_id().filter(|id| check_id(id, "").is_ok());
    value["correlation_id"] = json!(id);
    value["chain"] = json!(id.map(|id| chain_link(&state.base, id)));
    if let Some(spans) = value["spans"].as_array_mut() {
        for s in spans {
            s["from_chain"] = json!(false);
        }
    }
    // Without an id, or with chains off, nothing is read.
    let read = match id {
        Some(id) => read(state, id, TRACE_WAIT).await,
        None => Read::Off,
    };
    let (note, source, added) = match read {
        Read::Off => (None, None, 0),
        Read::Late(wait) => (
            Some(format!(
                "The request chain store did not answer within {} ms: this service's spans only.",
                wait.as_millis()
            )),
            None,
            0,
        ),
        Read::Chain { steps, shared } => {
            let own: HashSet<SpanId> = trace.spans.iter().map(|s| s.span_id).collect();
            let others: Vec<Step> = steps
                .into_iter()
                .filter(|s| s.trace_id == trace.trace_id && !own.contains(&s.span_id))
                .collect();
            merge(value, trace, &others);
            let note = (!shared).then(|| LOCAL.to_owned());
            (
                note,
                Some(if shared { "shared" } else { "local" }),
                others.len(),
            )
        }
    };
    value["other_services"] = json!({
        "request_chains": on(state),
        "answered": source.is_some(),
        "source": source,
        "spans": added,
        "note": note,
    });
}

/// Puts `others` among the trace's spans: the time axis widened to hold them, every span in
/// tree order again with its depth.
fn merge(value: &mut Value, trace: &StoredTrace, others: &[Step]) {
    if others.is_empty() {
        return;
    }
    let own_start = trace
        .spans
        .iter()
        .map(|s| s.start)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let own_end = trace.spans.iter().map(|s| s.end).max().unwrap_or(own_start);
    let start = others
        .iter()
        .map(|s| s.start)
        .fold(own_start, SystemTime::min);
    let end = others.iter().map(Step::end).fold(own_end, SystemTime::max);
    let shift = ms(own_start.duration_since(start).unwrap_or_default());
    let mut spans = match value["spans"].take() {
        Value::Array(spans) => spans,
        _ => Vec::new(),
    };
    for s in &mut spans {
        let at = s["start_offset_ms"].as_f64().unwrap_or(0.0);
        s["start_offset_ms"] = json!(at + shift);
        for e in s["events"].as_array_mut().into_iter().flatten() {
            let at = e["offset_ms"].as_f64().unwrap_or(0.0);
            e["offset_ms"] = json!(at + shift);
        }
    }
    spans.extend(others.iter().map(|o| {
        let attributes: Vec<Value> = o
            .http_status
            .map(|c| json!(["http.response.status_code", c.to_string()]))
            .into_iter()
            .collect();
        json!({
            "span_id": o.span_id.to_string(),
            "parent_span_id": o.parent_id.map(|p| p.to_string()),
            "parent_is_remote": null,
            "depth": 0,
            "name": o.operation,
            "kind": o.kind,
            "status": o.status,
            "status_description": null,
            "service": o.service,
            "instance": o.instance,
            "start_offset_ms": ms(o.start.duration_since(start).unwrap_or_default()),
            "duration_ms": ms(o.duration),
            "attributes": attributes,
            "events": [],
            "exception": null,
            "links": [],
            "from_chain": true,
        })
    }));
    let order = tree_order(&spans);
    let mut slots: Vec<Option<Value>> = spans.into_iter().map(Some).collect();
    let ordered: Vec<Value> = order
        .into_iter()
        .filter_map(|(i, depth)| {
            let mut s = slots.get_mut(i)?.take()?;
            s["depth"] = json!(depth);
            Some(s)
        })
        .collect();
    value["spans"] = Value::Array(ordered);
    value["start_unix_ms"] = json!(unix_ms(start));
    value["duration_ms"] = json!(ms(end.duration_since(start).unwrap_or_default()));
}

/// [`views::tree_order`] over the page's JSON spans.
fn tree_order(spans: &[Value]) -> Vec<(usize, usize)> {
    let start = |i: usize| spans[i]["start_offset_ms"].as_f64().unwrap_or(0.0);
    views::tree_order(
        spans.len(),
        |i| spans[i]["span_id"].as_str().unwrap_or(""),
        |i| spans[i]["parent_span_id"].as_str(),
        |a, b| start(a).total_cmp(&start(b)),
    )
}

/// What a trace's page shows above its waterfall: the correlation id, linked to its chain, and
/// what reading the other services' spans gave.
pub(super) fn trace_notes(h: &mut Html, v: &Value) {
    if let (Some(id), Some(href)) = (v["correlation_id"].as_str(), v["chain"].as_str()) {
        h.raw("<p class=\"meta\">Correlation id ")
            .link(href, id)
            .raw(" (its request chain)");
        let added = v["other_services"]["spans"].as_u64().unwrap_or(0);
        if added > 0 {
            h.raw("; ").num(added as f64, 0).raw(if added == 1 {
                " span of another service, from the request chain store"
            } else {
                " spans of other services, from the request chain store"
            });
        }
        h.raw(".</p>");
    }
    if let Some(note) = v["other_services"]["note"].as_str() {
        h.raw("<p class=\"note\">").text(note).raw("</p>");
    }
}

#[cfg(test)]
mod tests;
