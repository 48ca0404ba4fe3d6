//! The layout of one trace: spans as an indented tree, siblings in a fixed order, every
//! span shown once (even in a parent cycle), without recursion.

use std::collections::HashMap;
use std::fmt::Write as _;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

use super::format::{write_exceptions, write_label};

/// What a line needs beyond its span.
pub(super) struct RenderCtx<'a> {
    pub(super) resource_service: Option<&'a str>,
}

/// Appends one trace tree to `out`.
pub(super) fn render_trace(
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
