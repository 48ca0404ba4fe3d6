//! Hand-written protobuf encoding of an OTLP `ExportTraceServiceRequest`, straight from
//! [`SpanData`]: no intermediate proto structs, no allocation per span or attribute.
//!
//! A long file (about 800 lines outside tests) on purpose: each message's sizing and writing
//! sit side by side, so that a change to one is made to the other in the same place.
//!
//! Every message is written with its exact length prefix: a sizing pass computes each span's
//! encoded size (stored in a reused scratch vector), the enclosing `ScopeSpans` and
//! `ResourceSpans` sizes are sums of those, and the write pass then emits fields in field-number
//! order, as prost does, so the bytes equal `prost::Message::encode` of the reference
//! conversion (`opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope`).
//! Proto3 defaults are omitted exactly as prost omits them; message fields the reference always
//! sets (`Span.status`, `KeyValue.value`, `ScopeSpans.scope`, `ResourceSpans.resource`) are
//! always written, and oneof members of `AnyValue` are written even when zero.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use service_tracing_middleware::tracer::RequestValue;

use crate::export::batch::Queued;
use crate::server_span::ServerRecord;

/// What the encoder reads of one span: its `SpanData` and, for a server span of the layer's
/// own type, the request's attributes kept apart ([`ServerRecord`]), written before the
/// span's other attributes as the SDK's span would have held them.
pub(crate) trait Encodable {
    fn span(&self) -> &SpanData;
    fn record(&self) -> Option<&ServerRecord> {
        None
    }
}

impl Encodable for SpanData {
    fn span(&self) -> &SpanData {
        self
    }
}

impl Encodable for Queued {
    fn span(&self) -> &SpanData {
        Queued::span(self)
    }

    fn record(&self) -> Option<&ServerRecord> {
        match self {
            Queued::Span(_) => None,
            Queued::Server(record) => Some(record),
        }
    }
}

/// Wire type of varints (int64, uint32, bool, enum).
const VARINT: u8 = 0;
/// Wire type of fixed64 and double.
const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (bytes, string, messages, packed).
const LEN: u8 = 2;
/// Wire type of fixed32.
const FIXED32: u8 = 5;

/// The one-byte key of a field numbered below 16.
const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// The two-byte key of `Span.flags` (field 16, fixed32).
const SPAN_FLAGS_KEY: [u8; 2] = [0x85, 0x01];

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const IS_REMOTE: u32 = 0x200;

/// Bytes a varint of `v` takes.
#[inline]
fn varint_len(v: u64) -> usize {
    // 1 for 0..=127, then one more per 7 bits.
    ((((v | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

/// Bytes a length-delimited field (one-byte key) with a body of `n` bytes takes.
#[inline]
fn len_field(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// Bytes a string or bytes field takes, zero when proto3 omits it (empty).
#[inline]
fn opt_len_field(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        len_field(n)
    }
}

/// Bytes a uint32 varint field takes, zero when omitted (0).
#[inline]
fn opt_u32_field(v: u32) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(u64::from(v))
    }
}

/// Bytes a fixed64 field takes, zero when omitted (0).
#[inline]
fn opt_fixed64_field(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        9
    }
}

/// Writes into a slice sized by the sizing pass. Writes past its end are dropped (and detected
/// afterwards by comparing `pos` with the size), so a sizing mistake cannot panic.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    #[inline]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
            return;
        }
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// A length-delimited field's key and length; the caller writes the `n` body bytes.
    #[inline]
    fn len_key(&mut self, field: u8, n: usize) {
        self.byte(key(field, LEN));
        self.varint(n as u64);
    }

    /// A string or bytes field, unless empty.
    #[inline]
    fn opt_bytes(&mut self, field: u8, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.len_key(field, bytes.len());
            self.bytes(bytes);
        }
    }

    /// A uint32 field, unless 0.
    #[inline]
    fn opt_u32(&mut self, field: u8, v: u32) {
        if v != 0 {
            self.byte(key(field, VARINT));
            self.varint(u64::from(v));
        }
    }

    /// A fixed64 field, unless 0.
    #[inline]
    fn opt_fixed64(&mut self, field: u8, v: u64) {
        if v != 0 {
            self.byte(key(field, FIXED64));
            self.bytes(&v.to_le_bytes());
        }
    }
}

/// Nanoseconds since the Unix epoch, 0 before it (as the reference conversion does).
#[inline]
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Length of `TraceState::header()` (`k=v` joined by `,`), computed without building it.
fn trace_state_len(state: &TraceState) -> usize {
    let mut n = 0;
    for (i, (k, v)) in state.into_iter().enumerate() {
        n += usize::from(i > 0) + k.len() + 1 + v.len();
    }
    n
}

/// Writes a trace state field (the W3C header form) unless empty.
fn put_trace_state(w: &mut Writer<'_>, field: u8, state: &TraceState, len: usize) {
    if len == 0 {
        return;
    }
    w.len_key(field, len);
    for (i, (k, v)) in state.into_iter().enumerate() {
        if i > 0 {
            w.byte(b',');
        }
        w.bytes(k.as_bytes());
        w.byte(b'=');
        w.bytes(v.as_bytes());
    }
}

/// `SpanKind` as the proto enum.
#[inline]
fn kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Span or link flags: the W3C trace flags byte plus the "has is_remote" and "is_remote" bits.
#[inline]
fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

// ---------------------------------------------------------------------------------------------
// AnyValue / KeyValue

/// Size of the `AnyValue` message body for a value.
#[inline(always)]
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => len_field(s.as_str().len()),
        Value::Array(array) => len_field(array_value_len(array)),
        // A variant added after 0.33: written as an empty AnyValue (never panic).
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

/// Size of the `ArrayValue` message body for an array.
fn array_value_len(array: &Array) -> usize {
    match array {
        // Each element is an AnyValue of 2 bytes: a length-delimited field of 4 bytes.
        Array::Bool(v) => v.len() * 4,
        Array::I64(v) => v.iter().map(|i| len_field(1 + varint_len(*i as u64))).sum(),
        Array::F64(v) => v.len() * 11,
        Array::String(v) => v
            .iter()
            .map(|s| len_field(len_field(s.as_str().len())))
            .sum(),
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

/// Writes the body of an `AnyValue` of `value`.
#[inline]
fn put_any_value(w: &mut Writer<'_>, value: &Value) {
    match value {
        Value::Bool(b) => {
            w.byte(key(2, VARINT));
            w.byte(u8::from(*b));
        }
        Value::I64(i) => {
            w.byte(key(3, VARINT));
            w.varint(*i as u64);
        }
        Value::F64(f) => {
            w.byte(key(4, FIXED64));
            w.bytes(&f.to_le_bytes());
        }
        Value::String(s) => {
            let s = s.as_str();
            w.len_key(1, s.len());
            w.bytes(s.as_bytes());
        }
        Value::Array(array) => {
            w.len_key(5, array_value_len(array));
            put_array_value(w, array);
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// Writes the body of an `ArrayValue`: its elements as `values` (field 1) `AnyValue`s.
fn put_array_value(w: &mut Writer<'_>, array: &Array) {
    match array {
        Array::Bool(v) => {
            for b in v {
                w.bytes(&[key(1, LEN), 2, key(2, VARINT), u8::from(*b)]);
            }
        }
        Array::I64(v) => {
            for i in v {
                let i = *i as u64;
                w.len_key(1, 1 + varint_len(i));
                w.byte(key(3, VARINT));
                w.varint(i);
            }
        }
        Array::F64(v) => {
            for f in v {
                w.bytes(&[key(1, LEN), 9, key(4, FIXED64)]);
                w.bytes(&f.to_le_bytes());
            }
        }
        Array::String(v) => {
            for s in v {
                let s = s.as_str();
                w.len_key(1, len_field(s.len()));
                w.len_key(1, s.len());
                w.bytes(s.as_bytes());
            }
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// Size of a `KeyValue` message body.
#[inline]
fn key_value_len(k: &str, value: &Value) -> usize {
    opt_len_field(k.len()) + len_field(any_value_len(value))
}

/// Key-value pairs of `KeyValue`s.
#[inline]
fn kv_pairs<'a>(
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) -> impl Iterator<Item = (&'a str, &'a Value)> {
    attributes
        .into_iter()
        .map(|kv| (kv.key.as_str(), &kv.value))
}

/// Size of a repeated `KeyValue` field (one-byte key) holding `attributes`.
#[inline]
fn attributes_len<'a>(attributes: impl IntoIterator<Item = (&'a str, &'a Value)>) -> usize {
    attributes
        .into_iter()
        .map(|(k, v)| len_field(key_value_len(k, v)))
        .sum()
}

/// Writes a repeated `KeyValue` field numbered `field`.
#[inline]
fn put_attributes<'a>(
    w: &mut Writer<'_>,
    field: u8,
    attributes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) {
    for (k, v) in attributes {
        put_key_value(w, field, k, v);
    }
}

/// Writes one `KeyValue` as field `field`.
#[inline(always)]
fn put_key_value(w: &mut Writer<'_>, field: u8, k: &str, value: &Value) {
    let value_len = any_value_len(value);
    let body = opt_len_field(k.len()) + len_field(value_len);
    if body < 0x80 && !k.is_empty() {
        // The common case: every length inside fits one byte.
        w.bytes(&[key(field, LEN), body as u8, key(1, LEN), k.len() as u8]);
        w.bytes(k.as_bytes());
        w.bytes(&[key(2, LEN), value_len as u8]);
    } else {
        w.len_key(field, body);
        w.opt_bytes(1, k.as_bytes());
        w.len_key(2, value_len);
    }
    put_any_value(w, value);
}

/// An IP address as text, written into `buf` (the longest IPv6 text is 45 bytes).
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let end = cursor.position() as usize;
    std::str::from_utf8(&buf[..end]).unwrap_or_default()
}

/// Writes a server record's request attributes, encoded as repeated `Span.attributes`
/// (field 9) `KeyValue`s, into `scratch` from `*at` on, and moves `*at` past them. Done once
/// per span, in the sizing pass: the write pass copies the bytes.
///
/// `scratch` keeps its length between batches (the bytes past `*at` are stale) and grows only
/// when an attribute would not fit, so each is written through a bounds-checked slice rather
/// than pushed byte by byte.
fn append_request_attributes(scratch: &mut Vec<u8>, at: &mut usize, record: &ServerRecord) {
    record.for_each_request_attribute(|k, value| match value {
        RequestValue::Static(t) | RequestValue::Text(t) => put_request_text(scratch, at, k, t),
        RequestValue::Shared(t) => put_request_text(scratch, at, k, t),
        RequestValue::Int(i) => put_request_int(scratch, at, k, i),
        RequestValue::Ip(addr) => {
            let mut ip = [0; 48];
            put_request_text(scratch, at, k, ip_text(addr, &mut ip));
        }
        _ => {}
    });
}

/// A writer over `n` bytes of `scratch` from `at` on, growing it if they are not there.
#[inline(always)]
fn room(scratch: &mut Vec<u8>, at: usize, n: usize) -> Writer<'_> {
    if scratch.len() < at + n {
        let grown = (at + n).max(2 * scratch.len());
        scratch.resize(grown, 0);
    }
    Writer {
        buf: scratch.get_mut(at..).unwrap_or_default(),
        pos: 0,
    }
}

/// One request attribute of text `t` (an `AnyValue.string_value`, field 1), at `*at`.
#[inline(always)]
fn put_request_text(scratch: &mut Vec<u8>, at: &mut usize, k: &str, t: &str) {
    let w = if !k.is_empty() && k.len() + t.len() < 0x80 - 6 {
        // The common case: every length fits one byte, and the `KeyValue` takes its key's and
        // text's bytes and 8 more.
        let mut w = room(scratch, *at, 8 + k.len() + t.len());
        w.bytes(&[
            key(9, LEN),
            (6 + k.len() + t.len()) as u8,
            key(1, LEN),
            k.len() as u8,
        ]);
        w.bytes(k.as_bytes());
        w.bytes(&[key(2, LEN), (2 + t.len()) as u8, key(1, LEN), t.len() as u8]);
        w.bytes(t.as_bytes());
        w
    } else {
        let value_len = len_field(t.len());
        let body = opt_len_field(k.len()) + len_field(value_len);
        let mut w = room(scratch, *at, len_field(body));
        w.len_key(9, body);
        w.opt_bytes(1, k.as_bytes());
        w.len_key(2, value_len);
        w.len_key(1, t.len());
        w.bytes(t.as_bytes());
        w
    };
    *at += w.pos;
}

/// One request attribute of number `i` (an `AnyValue.int_value`, field 3), at `*at`.
fn put_request_int(scratch: &mut Vec<u8>, at: &mut usize, k: &str, i: i64) {
    let value_len = 1 + varint_len(i as u64);
    let body = opt_len_field(k.len()) + len_field(value_len);
    let mut w = room(scratch, *at, len_field(body));
    w.len_key(9, body);
    w.opt_bytes(1, k.as_bytes());
    w.len_key(2, value_len);
    w.byte(key(3, VARINT));
    w.varint(i as u64);
    *at += w.pos;
}

// ---------------------------------------------------------------------------------------------
// Span

/// Size of the `Status` message body.
fn status_len(status: &Status) -> usize {
    match status {
        Status::Unset => 0,
        Status::Ok => 2,
        Status::Error { description } => opt_len_field(description.len()) + 2,
    }
}

/// Writes the `Status` field (15) of a span; always present, as in the reference conversion.
fn put_status(w: &mut Writer<'_>, status: &Status) {
    w.len_key(15, status_len(status));
    match status {
        Status::Unset => {}
        Status::Ok => w.bytes(&[key(3, VARINT), 1]),
        Status::Error { description } => {
            w.opt_bytes(2, description.as_bytes());
            w.bytes(&[key(3, VARINT), 2]);
        }
    }
}

/// Size of an `Event` message body.
fn event_len(event: &opentelemetry::trace::Event) -> usize {
    opt_fixed64_field(nanos(event.timestamp))
        + opt_len_field(event.name.len())
        + attributes_len(kv_pairs(&event.attributes))
        + opt_u32_field(event.dropped_attributes_count)
}

/// Size of a `Link` message body.
fn link_len(link: &opentelemetry::trace::Link) -> usize {
    18 + 10
        + opt_len_field(trace_state_len(link.span_context.trace_state()))
        + attributes_len(kv_pairs(&link.attributes))
        + opt_u32_field(link.dropped_attributes_count)
        + 5
}

/// Writes the trace id (field 1) and span id (field 2) of a span context.
#[inline]
fn put_ids(w: &mut Writer<'_>, context: &SpanContext) {
    w.bytes(&[key(1, LEN), 16]);
    w.bytes(&context.trace_id().to_bytes());
    w.bytes(&[key(2, LEN), 8]);
    w.bytes(&context.span_id().to_bytes());
}

/// What the sizing pass learns about a span, for the write pass.
#[derive(Debug, Clone, Copy)]
struct SpanSize {
    /// Size of the `Span` message body.
    len: usize,
    /// Where a server record's request attributes, encoded, are in the encoder's scratch.
    request: (usize, usize),
    /// `start_time_unix_nano`.
    start: u64,
    /// `end_time_unix_nano`.
    end: u64,
}

/// Sizes a `Span` message body; a server record's request attributes are encoded into
/// `scratch` from `*at` on the way.
fn span_size<T: Encodable>(item: &T, scratch: &mut Vec<u8>, at: &mut usize) -> SpanSize {
    let span = item.span();
    let start = nanos(span.start_time);
    let end = nanos(span.end_time);
    let mut n = 18 + 10; // trace_id, span_id
    n += opt_len_field(trace_state_len(span.span_context.trace_state()));
    if span.parent_span_id != SpanId::INVALID {
        n += 10;
    }
    n += opt_len_field(span.name.len());
    n += 2; // kind, never unspecified
    n += opt_fixed64_field(start);
    n += opt_fixed64_field(end);
    let from = *at;
    if let Some(record) = item.record() {
        append_request_attributes(scratch, at, record);
    }
    n += *at - from;
    n += attributes_len(kv_pairs(&span.attributes));
    n += opt_u32_field(span.dropped_attributes_count);
    for event in &span.events.events {
        n += len_field(event_len(event));
    }
    n += opt_u32_field(span.events.dropped_count);
    for link in &span.links.links {
        n += len_field(link_len(link));
    }
    n += opt_u32_field(span.links.dropped_count);
    n += len_field(status_len(&span.status));
    SpanSize {
        len: n + 6, // flags, never 0
        request: (from, *at),
        start,
        end,
    }
}

/// Writes a `Span` message body (`scratch`: the request attributes [`span_size`] encoded).
fn put_span<T: Encodable>(w: &mut Writer<'_>, item: &T, size: &SpanSize, scratch: &[u8]) {
    let span = item.span();
    let context = &span.span_context;
    put_ids(w, context);
    let state = context.trace_state();
    put_trace_state(w, 3, state, trace_state_len(state));
    if span.parent_span_id != SpanId::INVALID {
        w.bytes(&[key(4, LEN), 8]);
        w.bytes(&span.parent_span_id.to_bytes());
    }
    w.opt_bytes(5, span.name.as_bytes());
    w.bytes(&[key(6, VARINT), kind_number(&span.span_kind) as u8]);
    w.opt_fixed64(7, size.start);
    w.opt_fixed64(8, size.end);
    w.bytes(
        scratch
            .get(size.request.0..size.request.1)
            .unwrap_or_default(),
    );
    put_attributes(w, 9, kv_pairs(&span.attributes));
    w.opt_u32(10, span.dropped_attributes_count);
    for event in &span.events.events {
        w.len_key(11, event_len(event));
        w.opt_fixed64(1, nanos(event.timestamp));
        w.opt_bytes(2, event.name.as_bytes());
        put_attributes(w, 3, kv_pairs(&event.attributes));
        w.opt_u32(4, event.dropped_attributes_count);
    }
    w.opt_u32(12, span.events.dropped_count);
    for link in &span.links.links {
        w.len_key(13, link_len(link));
        let lc = &link.span_context;
        put_ids(w, lc);
        let state = lc.trace_state();
        put_trace_state(w, 3, state, trace_state_len(state));
        put_attributes(w, 4, kv_pairs(&link.attributes));
        w.opt_u32(5, link.dropped_attributes_count);
        w.byte(key(6, FIXED32));
        w.bytes(&flags(lc.trace_flags().to_u8(), lc.is_remote()).to_le_bytes());
    }
    w.opt_u32(14, span.links.dropped_count);
    put_status(w, &span.status);
    w.bytes(&SPAN_FLAGS_KEY);
    w.bytes(&flags(context.trace_flags().to_u8(), span.parent_span_is_remote).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Scope, resource, request

/// Size of an `InstrumentationScope` message body.
fn scope_len(scope: &InstrumentationScope) -> usize {
    opt_len_field(scope.name().len())
        + opt_len_field(scope.version().map_or(0, str::len))
        + attributes_len(kv_pairs(scope.attributes()))
}

/// Encodes batches of spans; keeps the encoded resource and scratch space between batches.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    /// The body of the `Resource` message (its attributes).
    resource: Vec<u8>,
    /// `ResourceSpans.schema_url`.
    resource_schema_url: String,
    /// For each span of the batch, the index of its scope in `scopes`.
    scope_of: Vec<u32>,
    /// For each distinct scope, in order of first appearance: the index of its first span and
    /// the encoded size of its `ScopeSpans` body.
    scopes: Vec<(usize, usize)>,
    /// For each span of the batch, its size and timestamps.
    sizes: Vec<SpanSize>,
    /// The batch's server records' request attributes, encoded in the sizing pass (from the
    /// start; its length is only its room, kept between batches).
    scratch: Vec<u8>,
}

impl Encoder {
    /// Stores the resource every request carries.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        let len = attributes_len(resource.iter().map(|(k, v)| (k.as_str(), v)));
        self.resource.clear();
        self.resource.resize(len, 0);
        let mut w = Writer {
            buf: &mut self.resource,
            pos: 0,
        };
        put_attributes(&mut w, 1, resource.iter().map(|(k, v)| (k.as_str(), v)));
        if w.pos != len {
            // Cannot happen (the sizes are computed by the same rules); send no attributes
            // rather than a corrupt message.
            self.resource.clear();
        }
        self.resource_schema_url.clear();
        self.resource_schema_url
            .push_str(resource.schema_url().unwrap_or_default());
    }

    /// Appends the `ExportTraceServiceRequest` for `spans` to `out`: one `ResourceSpans` with one
    /// `ScopeSpans` per distinct instrumentation scope, in order of first appearance, each
    /// holding its spans in batch order. On an internal size mismatch (a bug), `out` is cut back
    /// to its first `start` bytes and an error returned. (The exporter writes in place with
    /// `encode_at`; tests use this.)
    #[cfg(test)]
    pub(crate) fn encode<T: Encodable>(
        &mut self,
        spans: &[T],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        self.encode_at(spans, out, out.len())
    }

    /// Like [`encode`](Self::encode), but replaces whatever `out` holds from `start` on (and
    /// zero-fills anything below `start` that `out` lacks). Overwriting a reused buffer in place
    /// spares zero-filling it again.
    pub(crate) fn encode_at<T: Encodable>(
        &mut self,
        spans: &[T],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), String> {
        self.group(spans);
        let resource_spans_len = self.size(spans);
        let total = len_field(resource_spans_len);

        // Write pass.
        if out.len() < start + total {
            out.resize(start + total, 0);
        } else {
            out.truncate(start + total);
        }
        let mut w = Writer {
            buf: &mut out[start..],
            pos: 0,
        };
        w.len_key(1, resource_spans_len);
        w.len_key(1, self.resource.len());
        w.bytes(&self.resource);
        for (scope_index, (first, size)) in self.scopes.iter().enumerate() {
            let Some(span) = spans.get(*first) else {
                continue;
            };
            let scope = &span.span().instrumentation_scope;
            w.len_key(2, *size);
            w.len_key(1, scope_len(scope));
            w.opt_bytes(1, scope.name().as_bytes());
            w.opt_bytes(2, scope.version().unwrap_or_default().as_bytes());
            put_attributes(&mut w, 3, kv_pairs(scope.attributes()));
            let members = self.scope_of.iter().zip(&self.sizes).zip(spans);
            for ((s, span_size), span) in members {
                if *s as usize == scope_index {
                    w.len_key(2, span_size.len);
                    put_span(&mut w, span, span_size, &self.scratch);
                }
            }
            w.opt_bytes(3, scope.schema_url().unwrap_or_default().as_bytes());
        }
        w.opt_bytes(3, self.resource_schema_url.as_bytes());
        if w.pos == total {
            Ok(())
        } else {
            let written = w.pos;
            out.truncate(start);
            Err(format!(
                "OTLP encoding size mismatch: sized {total} bytes, wrote {written}"
            ))
        }
    }

    /// The sizing pass: each span's encoded size (in `sizes`, its request attributes
    /// pre-encoded in `scratch`), each scope's (in `scopes`), and the `ResourceSpans`
    /// message's, returned.
    fn size<T: Encodable>(&mut self, spans: &[T]) -> usize {
        self.sizes.clear();
        let scratch = &mut self.scratch;
        let mut at = 0;
        self.sizes
            .extend(spans.iter().map(|span| span_size(span, scratch, &mut at)));
        for (scope_index, (first, size)) in self.scopes.iter_mut().enumerate() {
            let Some(span) = spans.get(*first) else {
                continue;
            };
            let scope = &span.span().instrumentation_scope;
            let mut n = len_field(scope_len(scope));
            n += self
                .scope_of
                .iter()
                .zip(&self.sizes)
                .filter(|(s, _)| **s as usize == scope_index)
                .map(|(_, size)| len_field(size.len))
                .sum::<usize>();
            n += opt_len_field(scope.schema_url().map_or(0, str::len));
            *size = n;
        }
        len_field(self.resource.len())
            + self
                .scopes
                .iter()
                .map(|(_, n)| len_field(*n))
                .sum::<usize>()
            + opt_len_field(self.resource_schema_url.len())
    }

    /// Fills `scope_of` and `scopes` (sizes left 0) for `spans`.
    fn group<T: Encodable>(&mut self, spans: &[T]) {
        self.scope_of.clear();
        self.scopes.clear();
        let mut last: Option<(&InstrumentationScope, u32)> = None;
        for (i, span) in spans.iter().enumerate() {
            let scope = &span.span().instrumentation_scope;
            let index = match last {
                // Fast path: the same scope as the span before.
                Some((prev, index)) if same_scope(prev, scope) => index,
                _ => {
                    let found = self.scopes.iter().position(|(first, _)| {
                        spans
                            .get(*first)
                            .is_some_and(|s| s.span().instrumentation_scope == *scope)
                    });
                    let index = match found {
                        Some(index) => index,
                        None => {
                            self.scopes.push((i, 0));
                            self.scopes.len() - 1
                        }
                    };
                    index as u32
                }
            };
            last = Some((scope, index));
            self.scope_of.push(index);
        }
    }
}

/// Whether two scopes are equal, without comparing their texts when they share them: spans of
/// one tracer carry the same `&'static` name, version and schema URL.
pub(super) fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    let same_text = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        (None, None) => true,
        _ => false,
    };
    let shared = std::ptr::eq(a.name(), b.name())
        && same_text(a.version(), b.version())
        && same_text(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    shared || a == b
}
