//! The text of one span's line (`name  [service]  kind  duration  http-status  status`) and
//! of its exceptions, kept on one line each so the tree stays intact.

use std::fmt::Write as _;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;

use super::tree::RenderCtx;
use super::{
    EXCEPTION_EVENT, EXCEPTION_MESSAGE, EXCEPTION_TYPE, HTTP_RESPONSE_STATUS_CODE, SERVICE_NAME,
};

/// `name  [service]  kind  duration  http-status  status`
pub(super) fn write_label(out: &mut String, span: &SpanData, ctx: &RenderCtx<'_>) {
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
pub(super) fn write_exceptions(out: &mut String, span: &SpanData, prefix: &str) {
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
