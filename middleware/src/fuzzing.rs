//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test
//! (`middleware/tests/layer/fuzz_corpus_replays_cleanly.rs`). Not a stable API.
//!
//! Each function feeds arbitrary bytes to one parser and checks the properties that must hold
//! for every input: no panic, bounded output, and output that parses back to itself.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::TraceContextExt;

use crate::correlation::{self, CorrelationId, CORRELATION_ID_HEADER, REQUEST_ID_HEADER};
use crate::propagation::{
    default_propagator, extract, inject, B3Propagator, JaegerPropagator, PropagatorSource,
    W3cBaggage, W3cTraceContext, W3cTraceState,
};
use opentelemetry::propagation::TextMapPropagator;

/// A fuzz target's checks over one input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("traceparent", traceparent),
    ("tracestate", tracestate),
    ("baggage", baggage),
    ("correlation_id", correlation_id),
    ("headers", headers),
    ("b3", b3),
    ("jaeger", jaeger),
];

/// One `traceparent` value: a valid one re-emits as itself at version 00 (first four fields).
pub fn traceparent(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((trace_id, span_id, flags)) = W3cTraceContext::parse_traceparent(text) {
        let again = format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8());
        assert_eq!(
            W3cTraceContext::parse_traceparent(&again),
            Some((trace_id, span_id, flags)),
            "re-emitted traceparent must parse to the same values"
        );
    }
}

/// A valid `traceparent` with arbitrary `tracestate` headers (split on newlines): what the
/// propagator sends on is within the limits, follows the grammar, and sends itself on unchanged.
pub fn tracestate(data: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(
        crate::propagation::TRACEPARENT,
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(crate::propagation::TRACESTATE, value);
        }
    }
    let sc = W3cTraceContext::extract_from_headers(&headers).expect("the traceparent is valid");
    assert!(
        sc.trace_state().header().len() <= 8192,
        "tracestate must stay bounded"
    );
    let sent = |headers: &HeaderMap| {
        let mut out = HeaderMap::new();
        inject(
            &*default_propagator(),
            &PropagatorSource::default().extract(headers),
            &mut out,
        );
        out.get(crate::propagation::TRACESTATE)
            .map(|v| v.to_str().expect("we write visible ASCII").to_owned())
    };
    let Some(out) = sent(&headers) else {
        return;
    };
    assert!(
        !out.is_empty() && out.len() <= 512,
        "at most 512 characters, never empty"
    );
    let mut keys = Vec::new();
    for member in out.split(',') {
        let (key, value) = member.split_once('=').expect("key=value");
        assert!(W3cTraceState::is_valid_key(key) && W3cTraceState::is_valid_value(value));
        assert!(!keys.contains(&key), "each key once");
        keys.push(key);
    }
    assert!(keys.len() <= 32);
    let mut again = headers.clone();
    again.insert(
        crate::propagation::TRACESTATE,
        HeaderValue::from_str(&out).expect("valid header value"),
    );
    assert_eq!(
        sent(&again).as_deref(),
        Some(out.as_str()),
        "sent on unchanged"
    );
}

/// Arbitrary `baggage` headers (split on newlines): limits hold and the output parses back.
pub fn baggage(data: &[u8]) {
    let values: Vec<&str> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect();
    let parsed = W3cBaggage::parse(values.iter().copied());
    assert!(parsed.len() <= 64);
    if let Some(header) = W3cBaggage::header_value(&parsed) {
        assert!(header.len() <= 8192);
        let again = W3cBaggage::parse([header.as_str()]);
        assert_eq!(
            again.len(),
            parsed.len(),
            "serialised baggage must parse back whole"
        );
    }
    // With a correlation id, written member by member and from the received text: the
    // limits hold and the id is always among the members.
    let id = CorrelationId::parse("fuzz-correlation-id").expect("a valid id");
    let with_id = |header: Option<String>| {
        let header = header.expect("the id at least");
        assert!(header.len() <= 8192);
        let again = W3cBaggage::parse([header.as_str()]);
        assert!(again.len() <= 64);
        assert_eq!(
            correlation::from_baggage(&again),
            Some(id.as_str()),
            "the correlation id always has room"
        );
    };
    with_id(W3cBaggage::header_value_with(&parsed, Some(&id)));
    if let [one] = values.as_slice() {
        let Ok(value) = HeaderValue::from_str(one) else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(crate::propagation::BAGGAGE, value);
        let cx = W3cBaggage::context_from_headers(&headers).unwrap_or_default();
        let mut out = HeaderMap::new();
        inject(&W3cBaggage::new(), &cx.with_value(id.clone()), &mut out);
        with_id(
            out.get(crate::propagation::BAGGAGE)
                .map(|v| v.to_str().expect("visible ASCII").to_owned()),
        );
    }
}

/// One correlation id, as a header value and as a baggage value: accepted values are valid
/// (no `%`, CR, LF or NUL even once decoded), everything else is replaced; an accepted id
/// written into baggage reads back as itself.
pub fn correlation_id(data: &[u8]) {
    let names = [CORRELATION_ID_HEADER, REQUEST_ID_HEADER];
    let check = |id: &CorrelationId| {
        assert!(CorrelationId::is_valid(id.as_str().as_bytes()));
        assert!(!id
            .as_str()
            .bytes()
            .any(|b| matches!(b, b'%' | b'\r' | b'\n' | 0)));
        let header = W3cBaggage::header_value_with(&Baggage::new(), Some(id)).expect("a member");
        let back = W3cBaggage::parse([header.as_str()]);
        assert_eq!(
            correlation::from_baggage(&back),
            Some(id.as_str()),
            "baggage round trip"
        );
    };
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(CORRELATION_ID_HEADER, value);
        let (id, _) = correlation::resolve(&headers, &names, None);
        check(&id);
        if CorrelationId::is_valid(data) {
            assert_eq!(id.as_str().as_bytes(), data);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let baggage = W3cBaggage::parse([format!("{}={text}", correlation::BAGGAGE_KEY).as_str()]);
        let (id, _) = correlation::resolve(
            &HeaderMap::new(),
            &names,
            correlation::from_baggage(&baggage),
        );
        check(&id);
    }
}

/// Arbitrary header lines (`name: value`, split on newlines, many repeats allowed) through the
/// layer's extraction and a client's injection.
pub fn headers(data: &[u8]) {
    let headers = header_lines(data);
    let cx = PropagatorSource::default().extract(&headers);
    let (id, _) = correlation::resolve(
        &headers,
        &[CORRELATION_ID_HEADER, REQUEST_ID_HEADER],
        cx.baggage()
            .get(correlation::BAGGAGE_KEY)
            .map(|v| v.as_str()),
    );
    let cx = cx.with_value(id);
    let mut out = HeaderMap::new();
    inject(&*default_propagator(), &cx, &mut out);
    if let Some(tp) = out.get(crate::propagation::TRACEPARENT) {
        let tp = tp.to_str().expect("we write visible ASCII");
        assert!(
            W3cTraceContext::parse_traceparent(tp).is_some(),
            "we only emit valid traceparents"
        );
        assert!(cx.span().span_context().is_valid());
    }
    if let Some(b) = out.get(crate::propagation::BAGGAGE) {
        assert!(b.len() <= 8192);
    }
}

/// Header lines (`name: value`) into a header map, at most 1000 of them.
fn header_lines(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(1000) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// Extracts with `propagator`; whatever it accepts must survive injection and extraction again
/// with the same trace id, span id and sampled flag.
fn round_trip(propagator: &(dyn TextMapPropagator + Send + Sync), data: &[u8]) {
    let cx = extract(propagator, &header_lines(data));
    let first = cx.span().span_context().clone();
    let mut out = HeaderMap::new();
    inject(propagator, &cx, &mut out);
    if first.is_valid() {
        let again = extract(propagator, &out);
        let sc = again.span().span_context().clone();
        assert_eq!(
            (sc.trace_id(), sc.span_id(), sc.is_sampled()),
            (first.trace_id(), first.span_id(), first.is_sampled()),
            "an accepted context must round-trip"
        );
    }
}

/// B3 single and multi headers (`name: value` lines).
pub fn b3(data: &[u8]) {
    round_trip(&B3Propagator::single(), data);
    round_trip(&B3Propagator::multi(), data);
}

/// Jaeger `uber-trace-id` and `uberctx-*` headers (`name: value` lines).
pub fn jaeger(data: &[u8]) {
    round_trip(&JaegerPropagator::new(), data);
}
