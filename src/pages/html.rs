//! The pages as HTML, rendered on the server from each page's JSON value (so the HTML and its
//! twin show the same figures), with the stylesheet embedded; the one script, for live
//! refresh only, is a file of its own (`pages.js`), so the CSP allows no inline script.
//!
//! Why hand-written rather than `maud` or `askama`: six small pages do not repay a template
//! engine's proc-macro build, and escaping stays safe by construction all the same: [`Html`]
//! takes markup only as `&'static str` (text written in this file), and every other text goes
//! through [`Html::text`], which escapes it; numbers go through [`Html::num`].

use std::fmt::Write as _;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::views::encode;

/// The stylesheet, embedded in the binary.
const STYLE: &str = include_str!("pages.css");

/// Markup being written: static markup, escaped text and numbers only.
#[derive(Default)]
pub(crate) struct Html(String);

impl Html {
    /// Markup written in this crate.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Any text, escaped for element content and quoted attribute values alike.
    pub(crate) fn text(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    /// A number, with at most `decimals` decimals.
    pub(crate) fn num(&mut self, n: f64, decimals: usize) -> &mut Self {
        let _ = write!(self.0, "{n:.decimals$}");
        self
    }

    /// A JSON value as text (`-` for null).
    pub(super) fn value(&mut self, v: &Value) -> &mut Self {
        match v {
            Value::Null => self.raw("-"),
            Value::String(s) => self.text(s),
            Value::Number(n) => match n.as_u64() {
                Some(u) => self.num(u as f64, 0),
                None => self.num(n.as_f64().unwrap_or(0.0), 1),
            },
            other => self.text(&other.to_string()),
        }
    }

    /// `<a href="{href}">{label}</a>`.
    pub(super) fn link(&mut self, href: &str, label: &str) -> &mut Self {
        self.raw("<a href=\"")
            .text(href)
            .raw("\">")
            .text(label)
            .raw("</a>")
    }

    /// `<tr><th>{label}</th><td>{value}</td></tr>`.
    fn row(&mut self, label: &'static str, v: &Value) -> &mut Self {
        self.raw("<tr><th>")
            .raw(label)
            .raw("</th><td>")
            .value(v)
            .raw("</td></tr>")
    }
}

/// The navigation's pages: (path under the base, label).
const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/routes", "Routes"),
    ("/traces", "Traces"),
    ("/errors", "Errors"),
    ("/bottlenecks", "Bottlenecks"),
];

/// A whole page around `body`.
pub(super) fn page(base: &str, title: &str, body: Html) -> Response {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw("</title><style>")
        .raw(STYLE)
        .raw("</style><script src=\"")
        .text(&format!("{base}/pages.js"))
        .raw("\" defer></script></head><body><nav>");
    for (path, label) in NAV {
        h.link(&format!("{base}{path}"), label);
    }
    // Shown by the script only: without it, there is nothing to turn on.
    h.raw("<label id=\"live\" hidden><input type=\"checkbox\" id=\"live-refresh\"> Live</label>");
    h.raw("</nav><main><h1>").text(title).raw("</h1>");
    h.0.push_str(&body.0);
    h.raw("</main></body></html>");
    html_response(h)
}

fn html_response(h: Html) -> Response {
    let mut response = h.0.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Scripts only from the pages' own file (no inline script), fetches only back to the
    // service, styles only from the page itself, forms only back to the pages.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// The live-refresh script, embedded in the binary.
const SCRIPT: &str = include_str!("pages.js");

/// `{pages}/pages.js`: the script every page loads for live refresh.
pub(crate) fn script() -> Response {
    let mut response = SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The login form; `wrong` adds the one message every wrong token gets.
pub(crate) fn login(base: &str, wrong: bool) -> Response {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>Sign in</title><style>")
        .raw(STYLE)
        .raw("</style></head><body><main><h1>Sign in</h1>");
    if wrong {
        h.raw("<p class=\"refused\">Access refused.</p>");
    }
    h.raw("<form method=\"post\" action=\"")
        .text(&format!("{base}/login"))
        .raw("\"><label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> <button type=\"submit\">Sign in</button></form></main></body></html>");
    html_response(h)
}

fn bytes(n: f64) -> String {
    let mib = n / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

/// A sparkline: one bar per value, heights relative to the largest.
fn sparkline(h: &mut Html, values: &[f64], label: &str) {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    h.raw("<span class=\"spark\" role=\"img\" aria-label=\"")
        .text(label)
        .raw("\">");
    for v in values {
        let pct = if max > 0.0 { v / max * 100.0 } else { 0.0 };
        h.raw("<i style=\"height:")
            .num(pct.max(2.0), 0)
            .raw("%\"></i>");
    }
    h.raw("</span>");
}

/// A latency histogram as a sparkline: one bar per bucket, heights relative to the fullest,
/// each with its bound and count as a tooltip and as `data-count`.
fn histogram(h: &mut Html, counts: &Value, bounds_ms: &Value) {
    let counts: Vec<f64> = counts
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c.as_f64().unwrap_or(0.0))
        .collect();
    let bounds: Vec<f64> = bounds_ms
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let max = counts.iter().copied().fold(0.0_f64, f64::max);
    h.raw("<span class=\"spark hist\" role=\"img\" aria-label=\"latency histogram\">");
    for (i, count) in counts.iter().enumerate() {
        let pct = if max > 0.0 { count / max * 100.0 } else { 0.0 };
        h.raw("<i data-count=\"").num(*count, 0).raw("\" title=\"");
        match bounds.get(i) {
            Some(bound) => h.raw("up to ").num(*bound, 0).raw(" ms: "),
            None => h
                .raw("over ")
                .num(bounds.last().copied().unwrap_or(0.0), 0)
                .raw(" ms: "),
        };
        h.num(*count, 0).raw("\" style=\"height:");
        // An empty bucket stays a hairline, a full one at least a few pixels.
        if *count > 0.0 {
            h.num(pct.max(12.0), 0).raw("%\"></i>");
        } else {
            h.raw("0\" class=\"empty\"></i>");
        }
    }
    h.raw("</span>");
}

pub(crate) fn overview(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    h.raw("<table class=\"facts\">")
        .row("Service", &v["service"])
        .row("Service version", &v["service_version"])
        .row("service-tracing", &v["version"])
        .row("Uptime (s)", &v["uptime_seconds"])
        .row("Export status", &v["status"])
        .raw("</table><h2>Spans</h2><table class=\"facts\">");
    let t = &v["traces"];
    h.row("Exported", &t["exported"])
        .row("Dropped (queue full)", &t["dropped"])
        .row("Rejected", &t["rejected"])
        .row("Failed", &t["failed"])
        .row("Queued", &t["queued"])
        .row("Consecutive failures", &t["consecutive_failures"])
        .raw("</table><h2>Recent traces kept here</h2><table class=\"facts\">");
    let s = &v["store"];
    h.row("Traces", &s["traces"])
        .row("Waiting for their root", &s["pending"])
        .raw("<tr><th>Memory</th><td>")
        .text(&bytes(s["bytes"].as_f64().unwrap_or(0.0)))
        .raw(" of ")
        .text(&bytes(s["max_bytes"].as_f64().unwrap_or(0.0)))
        .raw("</td></tr>")
        .row("Pushed out", &s["evicted"])
        .raw("</table><h2>Error storage</h2><p>")
        .value(&v["error_storage"])
        .raw("</p>");
    if let Some(sampling) = v["sampling"].as_object() {
        h.raw("<h2>Sampling</h2><table class=\"facts\">")
            .row("Followed the parent", &sampling["followed_parent"])
            .row("Kept for an error", &sampling["kept_errors"])
            .row("Kept as slow", &sampling["kept_slow"])
            .raw("</table>");
    }
    if let Some(recent) = v["resources"]["recent"].as_array() {
        h.raw("<h2>Process</h2><table class=\"facts\">");
        let latest = &v["resources"]["latest"];
        let series = |key: &str| -> Vec<f64> {
            recent
                .iter()
                .map(|s| s[key].as_f64().unwrap_or(0.0))
                .collect()
        };
        for (key, label) in [
            ("cpu_cores_busy", "CPU cores busy"),
            ("memory_rss_bytes", "Resident memory (bytes)"),
            ("open_fds", "Open descriptors"),
            ("threads", "Threads"),
            ("tokio_alive_tasks", "Tokio tasks"),
        ] {
            h.raw("<tr><th>")
                .text(label)
                .raw("</th><td>")
                .value(&latest[key])
                .raw(" ");
            sparkline(&mut h, &series(key), label);
            h.raw("</td></tr>");
        }
        h.raw("</table>");
    }
    page(base, "Overview", h)
}

pub(crate) fn routes(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    // Sorting is a link per column (the server sorts, so it works without script).
    h.raw("<div class=\"scroll\"><table class=\"list\" id=\"routes\"><thead><tr><th>")
        .link(&format!("{base}/routes"), "Operation")
        .raw("</th><th>Kind</th><th>Window</th><th>")
        .link(&format!("{base}/routes?sort=rate_per_second"), "Rate /s")
        .raw("</th><th>")
        .link(&format!("{base}/routes?sort=error_ratio"), "Errors")
        .raw("</th><th>p50 ms</th><th>")
        .link(&format!("{base}/routes?sort=p95_ms"), "p95 ms")
        .raw("</th><th>")
        .link(&format!("{base}/routes?sort=p99_ms"), "p99 ms")
        .raw("</th><th>Latency histogram</th><th>Bottleneck</th></tr></thead><tbody>");
    for route in v["routes"].as_array().into_iter().flatten() {
        for (i, window) in ["1m", "5m", "1h"].iter().enumerate() {
            let w = &route["windows"][window];
            h.raw("<tr data-route=\"")
                .text(route["operation"].as_str().unwrap_or(""))
                .raw("\" data-window=\"")
                .text(window)
                .raw("\" data-count=\"")
                .value(&w["count"])
                .raw("\">");
            if i == 0 {
                h.raw("<td rowspan=\"3\">")
                    .link(
                        route["traces"].as_str().unwrap_or(""),
                        route["operation"].as_str().unwrap_or(""),
                    )
                    .raw("</td><td rowspan=\"3\">")
                    .value(&route["kind"])
                    .raw("</td>");
            }
            h.raw("<td>")
                .text(window)
                .raw("</td><td>")
                .num(w["rate_per_second"].as_f64().unwrap_or(0.0), 2)
                .raw("</td><td>")
                .num(w["error_ratio"].as_f64().unwrap_or(0.0) * 100.0, 1)
                .raw(" %</td><td>")
                .num(w["p50_ms"].as_f64().unwrap_or(0.0), 1)
                .raw("</td><td>")
                .num(w["p95_ms"].as_f64().unwrap_or(0.0), 1)
                .raw("</td><td>")
                .num(w["p99_ms"].as_f64().unwrap_or(0.0), 1)
                .raw("</td><td>");
            histogram(&mut h, &w["buckets"], &v["bucket_bounds_ms"]);
            h.raw("</td>");
            if i == 0 {
                h.raw("<td rowspan=\"3\" class=\"wrap\">");
                match route["bottleneck"]["description"].as_str() {
                    Some(d) => {
                        h.link(&format!("{base}/bottlenecks"), d);
                    }
                    None => {
                        h.raw("-");
                    }
                }
                h.raw("</td>");
            }
            h.raw("</tr>");
        }
    }
    h.raw("</tbody></table></div>");
    page(base, "Routes", h)
}

pub(crate) fn traces(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    let f = &v["filter"];
    h.raw("<form method=\"get\" class=\"filter\"><label>Route <select name=\"route\"><option value=\"\">any</option>");
    for route in v["routes"].as_array().into_iter().flatten() {
        let r = route.as_str().unwrap_or("");
        h.raw("<option value=\"").text(r).raw("\"");
        if f["route"].as_str() == Some(r) {
            h.raw(" selected");
        }
        h.raw(">").text(r).raw("</option>");
    }
    h.raw("</select></label> <label><input type=\"checkbox\" name=\"status\" value=\"error\"");
    if f["status"] == "error" {
        h.raw(" checked");
    }
    h.raw("> errors only</label> <label>Slower than <input type=\"number\" name=\"min_ms\" min=\"0\" step=\"any\" value=\"");
    if let Some(min) = f["min_ms"].as_f64() {
        h.num(min, 1);
    }
    h.raw(
        "\"> ms</label> <label>Trace or correlation id <input type=\"search\" name=\"q\" value=\"",
    )
    .text(f["q"].as_str().unwrap_or(""))
    .raw("\"></label> <button type=\"submit\">Filter</button></form>");
    h.raw("<div class=\"scroll\"><table class=\"list\" id=\"traces\"><thead><tr><th>Started</th><th>Operation</th><th>Duration ms</th><th>Spans</th><th>Status</th><th>Trace</th></tr></thead><tbody>");
    for t in v["traces"].as_array().into_iter().flatten() {
        let error = t["error"].as_bool().unwrap_or(false);
        h.raw(if error {
            "<tr class=\"trace error\">"
        } else {
            "<tr class=\"trace\">"
        })
        .raw("<td>")
        .value(&t["start_unix_ms"])
        .raw("</td><td>")
        .value(&t["operation"])
        .raw("</td><td>")
        .num(t["duration_ms"].as_f64().unwrap_or(0.0), 2)
        .raw("</td><td>")
        .value(&t["spans"])
        .raw("</td><td>")
        .raw(if error { "error" } else { "ok" })
        .raw(" ")
        .value(&t["status_code"])
        .raw("</td><td>")
        .link(
            t["link"].as_str().unwrap_or(""),
            t["trace_id"].as_str().unwrap_or(""),
        )
        .raw("</td></tr>");
    }
    h.raw("</tbody></table></div><p>")
        .value(&v["stored"])
        .raw(" traces kept.</p>");
    page(base, "Traces", h)
}

pub(crate) fn trace(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    let total = v["duration_ms"].as_f64().unwrap_or(0.0).max(1e-6);
    h.raw("<p class=\"meta\">Trace <code>")
        .text(v["trace_id"].as_str().unwrap_or(""))
        .raw("</code>, ")
        .num(total, 2)
        .raw(" ms, ")
        .text(&v["spans"].as_array().map_or(0, Vec::len).to_string())
        .raw(" spans")
        .raw(if v["error"] == true {
            ", with an error"
        } else {
            ""
        })
        .raw(".</p>");
    super::chain::trace_notes(&mut h, v);
    h.raw("<ol class=\"waterfall\" id=\"waterfall\">");
    for s in v["spans"].as_array().into_iter().flatten() {
        let start = s["start_offset_ms"].as_f64().unwrap_or(0.0);
        let duration = s["duration_ms"].as_f64().unwrap_or(0.0);
        let depth = s["depth"].as_f64().unwrap_or(0.0).min(20.0);
        h.raw("<li class=\"span kind-")
            .text(s["kind"].as_str().unwrap_or(""))
            .raw(" status-")
            .text(s["status"].as_str().unwrap_or(""))
            .raw(if s["from_chain"] == true { " from-chain" } else { "" })
            .raw("\"><a class=\"label\" href=\"#span-")
            .text(s["span_id"].as_str().unwrap_or(""))
            .raw("\" style=\"padding-left:")
            .num(depth, 0)
            .raw("em\">")
            .text(s["name"].as_str().unwrap_or(""))
            .raw(" <small>")
            .text(s["service"].as_str().unwrap_or(""))
            .raw("</small></a><span class=\"track\"><span class=\"bar\" data-waterfall-bar data-span-id=\"")
            .text(s["span_id"].as_str().unwrap_or(""))
            .raw("\" style=\"margin-left:")
            .num((start / total * 100.0).clamp(0.0, 100.0), 2)
            .raw("%;width:")
            .num((duration / total * 100.0).clamp(0.3, 100.0), 2)
            .raw("%\"></span></span><span class=\"dur\">")
            .num(duration, 2)
            .raw(" ms</span></li>");
    }
    h.raw("</ol><h2>Spans</h2>");
    for s in v["spans"].as_array().into_iter().flatten() {
        span_detail(&mut h, s);
    }
    let title = format!("Trace: {}", v["operation"].as_str().unwrap_or(""));
    page(base, &title, h)
}

/// One span's section: its facts, attributes, events (stacks in full) and links.
fn span_detail(h: &mut Html, s: &Value) {
    h.raw("<section class=\"detail\" id=\"span-")
        .text(s["span_id"].as_str().unwrap_or(""))
        .raw("\"><h3>")
        .text(s["name"].as_str().unwrap_or(""))
        .raw("</h3><table class=\"facts\">")
        .row("Service", &s["service"])
        .row("Kind", &s["kind"])
        .row("Status", &s["status"])
        .row("Status description", &s["status_description"])
        .row("Span id", &s["span_id"])
        .row("Parent", &s["parent_span_id"])
        .row("Start offset (ms)", &s["start_offset_ms"])
        .row("Duration (ms)", &s["duration_ms"]);
    for pair in s["attributes"].as_array().into_iter().flatten() {
        h.raw("<tr><th>")
            .value(&pair[0])
            .raw("</th><td>")
            .value(&pair[1])
            .raw("</td></tr>");
    }
    h.raw("</table>");
    for e in s["events"].as_array().into_iter().flatten() {
        h.raw("<details class=\"event\"><summary>")
            .value(&e["name"])
            .raw(" at ")
            .num(e["offset_ms"].as_f64().unwrap_or(0.0), 2)
            .raw(" ms</summary><table class=\"facts\">");
        for pair in e["attributes"].as_array().into_iter().flatten() {
            if pair[0] == "exception.stacktrace" {
                h.raw("<tr><th>exception.stacktrace</th><td><pre>")
                    .value(&pair[1])
                    .raw("</pre></td></tr>");
            } else {
                h.raw("<tr><th>")
                    .value(&pair[0])
                    .raw("</th><td>")
                    .value(&pair[1])
                    .raw("</td></tr>");
            }
        }
        h.raw("</table></details>");
    }
    for l in s["links"].as_array().into_iter().flatten() {
        h.raw("<p>Linked to trace ");
        match l["link"].as_str() {
            Some(href) => h.link(href, l["trace_id"].as_str().unwrap_or("")),
            None => h.text(l["trace_id"].as_str().unwrap_or("")),
        };
        h.raw("</p>");
    }
    h.raw("</section>");
}

pub(crate) fn errors(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    h.raw("<p>")
        .value(&v["total"])
        .raw(" errors since start.</p>");
    h.raw("<div class=\"scroll\"><table class=\"list\" id=\"errors\"><thead><tr><th>Error</th><th>Count</th><th>1m / 5m / 1h</th><th>Severity</th><th>Category</th><th>Routes</th><th>First seen</th><th>Last seen</th><th>Alert</th><th>Sample traces</th></tr></thead><tbody>");
    for g in v["groups"].as_array().into_iter().flatten() {
        h.raw("<tr class=\"group\" data-fingerprint=\"")
            .value(&g["fingerprint"])
            .raw("\"><td><b>")
            .value(&g["type"])
            .raw("</b> ")
            .value(&g["message"])
            .raw("</td><td class=\"count\">")
            .value(&g["count"])
            .raw("</td><td>");
        let counts: Vec<f64> = ["1m", "5m", "1h"]
            .iter()
            .map(|w| g["errors_in"][w].as_f64().unwrap_or(0.0))
            .collect();
        h.num(counts[0], 0)
            .raw(" / ")
            .num(counts[1], 0)
            .raw(" / ")
            .num(counts[2], 0)
            .raw(" ");
        sparkline(&mut h, &counts, "errors over 1 min, 5 min, 1 h");
        h.raw("</td><td>")
            .value(&g["severity"])
            .raw("</td><td>")
            .value(&g["category"])
            .raw("</td><td>");
        for r in g["routes"].as_array().into_iter().flatten() {
            h.link(
                &format!(
                    "{base}/traces?route={}&status=error",
                    encode(r.as_str().unwrap_or(""))
                ),
                r.as_str().unwrap_or(""),
            )
            .raw(" ");
        }
        h.raw("</td><td>")
            .value(&g["first_seen_unix_ms"])
            .raw("</td><td>")
            .value(&g["last_seen_unix_ms"])
            .raw("</td>");
        alert_cell(&mut h, &g["alert"]);
        h.raw("<td>");
        for s in g["samples"].as_array().into_iter().flatten() {
            let id = s["trace_id"].as_str().unwrap_or("");
            match s["link"].as_str() {
                Some(href) => h.link(href, id.get(..8).unwrap_or(id)),
                None => h.text(id.get(..8).unwrap_or(id)),
            };
            h.raw(" ");
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table></div>");
    page(base, "Errors", h)
}

/// A group's alert state: `firing` or `fired`, the rule, when, and the webhook post's fate.
fn alert_cell(h: &mut Html, alert: &Value) {
    let Some(state) = alert["state"].as_str() else {
        h.raw("<td class=\"alert\">-</td>");
        return;
    };
    h.raw(if state == "firing" {
        "<td class=\"alert firing\" data-alert=\"firing\">"
    } else {
        "<td class=\"alert\" data-alert=\"fired\">"
    })
    .text(state)
    .raw(": ")
    .value(&alert["rule"])
    .raw("<br><small>at ")
    .value(&alert["fired_at_unix_ms"])
    .raw(", ")
    .value(&alert["alerts"])
    .raw(" alerts, webhook <span class=\"delivery\">")
    .value(&alert["delivery"])
    .raw("</span></small></td>");
}

pub(crate) fn bottlenecks(base: &str, v: &Value) -> Response {
    let mut h = Html::default();
    for r in v["routes"].as_array().into_iter().flatten() {
        h.raw("<section class=\"route\"><h2>")
            .value(&r["route"])
            .raw("</h2><p>")
            .value(&r["traces"])
            .raw(" traces, mean ")
            .num(r["mean_ms"].as_f64().unwrap_or(0.0), 2)
            .raw(" ms. ")
            .value(&r["description"])
            .raw("</p><ol class=\"breakdown\">");
        for b in r["breakdown"].as_array().into_iter().flatten() {
            let share = b["share"].as_f64().unwrap_or(0.0) * 100.0;
            h.raw("<li><span class=\"track\"><span class=\"bar\" style=\"width:")
                .num(share.clamp(0.0, 100.0), 1)
                .raw("%\"></span></span> ")
                .value(&b["operation"])
                .raw(": ")
                .num(share, 1)
                .raw(" % of the critical path, mean ")
                .num(b["mean_ms"].as_f64().unwrap_or(0.0), 2)
                .raw(" ms</li>");
        }
        h.raw("</ol></section>");
    }
    h.raw("<h2>Recent</h2><ul>");
    for b in v["recent"].as_array().into_iter().flatten() {
        h.raw("<li>").value(&b["description"]).raw(" ");
        if let Some(href) = b["link"].as_str() {
            h.link(href, "trace");
        }
        h.raw("</li>");
    }
    h.raw("</ul>");
    page(base, "Bottlenecks", h)
}

/// A page that does not exist (asked by someone who may read the pages).
pub(crate) fn not_found(base: &str) -> Response {
    let mut h = Html::default();
    h.raw("<p>Nothing here.</p>");
    let mut response = page(base, "Not found", h);
    *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_numbers_are_plain() {
        let mut h = Html::default();
        h.raw("<p title=\"")
            .text("\"><script>alert('x')</script>&")
            .raw("\">")
            .num(2.0, 1);
        assert_eq!(
            h.0,
            "<p title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\">2.0"
        );
    }
}
