//! B3 (Zipkin): the single `b3` header and the multi `X-B3-*` headers.
//!
//! Why not `opentelemetry-zipkin`'s `Propagator` (0.33.0, built for the same `opentelemetry`
//! 0.33)? It is an exporter crate (it would bring `opentelemetry_sdk`, `serde_json`,
//! `typed-builder` and `opentelemetry-http` into a crate that depends on the API only), and its
//! propagator is wrong in ways that matter here:
//!
//! - `b3: {trace}-{span}-d` is read as trace flags `0x04` without the sampled bit, so a
//!   parent-based sampler drops the very trace the caller asked to debug (the OpenTelemetry B3
//!   specification: debug MUST set sampled); and `d` is only accepted at all when the
//!   propagator *injects* the single header, so the default (multi) one ignores it;
//! - `X-B3-Sampled: true` is refused when the propagator injects the single header;
//! - a malformed `X-B3-ParentSpanId` or `X-B3-Flags` is silently accepted;
//! - `b3: 0` (deny) is dropped, and injecting an empty context writes `b3: 0` /
//!   `X-B3-Sampled: 0`, telling the next hop not to sample a trace that does not exist;
//! - "deferred" and "debug" are kept as private trace-flag bits `0x02` and `0x04`; `0x02` is
//!   W3C Trace Context Level 2's `random` flag.
//!
//! The test `the_zipkin_crates_mistakes_are_not_repeated` pins each of these.

use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

const B3: &str = "b3";
const TRACE_ID: &str = "x-b3-traceid";
const SPAN_ID: &str = "x-b3-spanid";
const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const SAMPLED: &str = "x-b3-sampled";
const FLAGS: &str = "x-b3-flags";

/// The longest valid `b3` value: `{32}-{16}-{1}-{16}`.
const MAX_SINGLE_LEN: usize = 32 + 1 + 16 + 1 + 1 + 1 + 16;

/// Which B3 headers [`B3Propagator`] writes. Reading always accepts both forms, the single
/// header first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum B3Encoding {
    /// `b3: {trace-id}-{span-id}-{sampling-state}` (`OTEL_PROPAGATORS=b3`).
    Single,
    /// `X-B3-TraceId`, `X-B3-SpanId` and `X-B3-Sampled` or `X-B3-Flags`
    /// (`OTEL_PROPAGATORS=b3multi`).
    Multi,
    /// Both.
    SingleAndMulti,
}

impl B3Encoding {
    fn single(self) -> bool {
        matches!(self, Self::Single | Self::SingleAndMulti)
    }

    fn multi(self) -> bool {
        matches!(self, Self::Multi | Self::SingleAndMulti)
    }
}

/// Marks a trace its caller asked to debug (B3 `d` or `X-B3-Flags: 1`, Jaeger flag `2`).
///
/// The B3 and Jaeger propagators put it in the extracted context, next to the remote span
/// context (which they mark sampled), and write the debug flag again on injection while the
/// context's span belongs to the marked trace. Trace flags have no debug bit, so the mark
/// lives in the context, where it survives the server span being made current.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
/// use service_tracing_middleware::propagation::{inject, B3Propagator, DebugTrace};
///
/// let sc = SpanContext::new(TraceId::from(1), SpanId::from(2), TraceFlags::SAMPLED, true, TraceState::NONE);
/// let cx = opentelemetry::Context::new()
///     .with_remote_span_context(sc)
///     .with_value(DebugTrace::new(TraceId::from(1)));
/// assert!(DebugTrace::is_set(&cx));
/// let mut headers = http::HeaderMap::new();
/// inject(&B3Propagator::single(), &cx, &mut headers);
/// assert_eq!(headers["b3"], "00000000000000000000000000000001-0000000000000002-d");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugTrace(TraceId);

impl DebugTrace {
    /// Marks the trace `trace_id`.
    pub fn new(trace_id: TraceId) -> Self {
        Self(trace_id)
    }

    /// The marked trace.
    pub fn trace_id(&self) -> TraceId {
        self.0
    }

    /// Whether `cx` marks the trace its span belongs to.
    pub fn is_set(cx: &Context) -> bool {
        cx.get::<Self>()
            .is_some_and(|mark| mark.0 == cx.span().span_context().trace_id())
    }
}

/// The value of one lowercase hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// 1 to `max_digits` (at most 32) lowercase hex digits, left-padded with zeros.
pub(super) fn lower_hex(digits: &str, max_digits: usize) -> Option<u128> {
    if digits.is_empty() || digits.len() > max_digits.min(32) {
        return None;
    }
    digits
        .bytes()
        .try_fold(0u128, |acc, b| Some(acc << 4 | u128::from(hex_digit(b)?)))
}

/// A B3 trace id: exactly 16 or 32 lowercase hex digits, not all zero.
fn trace_id(digits: &str) -> Option<TraceId> {
    if digits.len() != 16 && digits.len() != 32 {
        return None;
    }
    Some(TraceId::from(lower_hex(digits, 32)?)).filter(|id| *id != TraceId::INVALID)
}

/// A B3 span id: exactly 16 lowercase hex digits, not all zero.
fn span_id(digits: &str) -> Option<SpanId> {
    if digits.len() != 16 {
        return None;
    }
    let value = u64::try_from(lower_hex(digits, 16)?).ok()?;
    Some(SpanId::from(value)).filter(|id| *id != SpanId::INVALID)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sampling {
    Deferred,
    Deny,
    Accept,
    Debug,
}

#[derive(Debug, Clone, PartialEq)]
enum Extracted {
    /// Ids and a sampling state.
    Span(TraceId, SpanId, Sampling),
    /// `b3: 0` or a lone `X-B3-Sampled: 0`: no ids, do not sample.
    DenyOnly,
}

/// The one value of `key`, `Ok(None)` when absent, `Err` when repeated.
fn one<'a>(extractor: &'a dyn Extractor, key: &str) -> Result<Option<&'a str>, ()> {
    match extractor.get_all(key) {
        None => Ok(None),
        Some(values) => match values.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(()),
        },
    }
}

fn parse_single(value: &str) -> Option<Extracted> {
    if value.len() > MAX_SINGLE_LEN {
        return None;
    }
    if value == "0" {
        return Some(Extracted::DenyOnly);
    }
    let mut parts = value.split('-');
    let trace = trace_id(parts.next()?)?;
    let span = span_id(parts.next()?)?;
    let sampling = match parts.next() {
        None => Sampling::Deferred,
        Some("0") => Sampling::Deny,
        Some("1") => Sampling::Accept,
        Some("d") => Sampling::Debug,
        Some(_) => return None,
    };
    if let Some(parent) = parts.next() {
        span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Extracted::Span(trace, span, sampling))
}

fn parse_multi(extractor: &dyn Extractor) -> Option<Extracted> {
    let trace = one(extractor, TRACE_ID).ok()?;
    let span = one(extractor, SPAN_ID).ok()?;
    let parent = one(extractor, PARENT_SPAN_ID).ok()?;
    let debug = match one(extractor, FLAGS).ok()? {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return None,
    };
    let sampling = match one(extractor, SAMPLED).ok()? {
        _ if debug => Sampling::Debug,
        None => Sampling::Deferred,
        Some("0" | "false") => Sampling::Deny,
        Some("1" | "true") => Sampling::Accept,
        Some(_) => return None,
    };
    match (trace, span) {
        (None, None) if parent.is_none() && sampling == Sampling::Deny => Some(Extracted::DenyOnly),
        (Some(trace), Some(span)) => {
            let (trace, span) = (trace_id(trace)?, span_id(span)?);
            if let Some(parent) = parent {
                span_id(parent)?;
            }
            Some(Extracted::Span(trace, span, sampling))
        }
        _ => None,
    }
}

/// The B3 propagator (<https://github.com/openzipkin/b3-propagation>).
///
/// Reading tries the single `b3` header, then the multi `X-B3-*` headers; whichever is valid
/// first is used, and anything invalid reads as nothing:
///
/// - trace ids of exactly 16 or 32 lowercase hex digits (a 64-bit id is left-padded with zeros
///   to 128 bits), span ids of exactly 16, none all zeros; a parent span id, when sent, must be
///   valid too (it is not otherwise used);
/// - sampling state `1` (sampled), `0` (not sampled), `d` (debug: sampled, and a
///   [`DebugTrace`] mark so that it is written again), or none (deferred: not sampled);
///   `X-B3-Sampled` also accepts `true` and `false`, `X-B3-Flags: 1` means debug;
/// - `b3: 0` (or a lone `X-B3-Sampled: 0`) carries a deny decision without ids: the context
///   gets an invalid, unsampled remote span context, which a parent-based sampler honours;
/// - a header repeated is invalid.
///
/// Writing uses the [`B3Encoding`] chosen; the 128-bit trace id is always written in full, and
/// `X-B3-ParentSpanId` never is (as the OpenTelemetry specification asks).
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// use service_tracing_middleware::propagation::{extract, inject, B3Propagator};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-1".parse().unwrap());
/// let cx = extract(&B3Propagator::single(), &headers);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "0000000000000000a3ce929d0e0e4736");
///
/// let mut out = http::HeaderMap::new();
/// inject(&B3Propagator::multi(), &cx, &mut out);
/// assert_eq!(out["x-b3-traceid"], "0000000000000000a3ce929d0e0e4736");
/// assert_eq!(out["x-b3-spanid"], "00f067aa0ba902b7");
/// assert_eq!(out["x-b3-sampled"], "1");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct B3Propagator {
    encoding: B3Encoding,
}

fn fields(encoding: B3Encoding) -> &'static [String] {
    static SINGLE: OnceLock<[String; 1]> = OnceLock::new();
    static MULTI: OnceLock<[String; 4]> = OnceLock::new();
    static BOTH: OnceLock<[String; 5]> = OnceLock::new();
    match encoding {
        B3Encoding::Single => SINGLE.get_or_init(|| [B3.to_owned()]),
        B3Encoding::Multi => {
            MULTI.get_or_init(|| [TRACE_ID, SPAN_ID, SAMPLED, FLAGS].map(ToOwned::to_owned))
        }
        B3Encoding::SingleAndMulti => {
            BOTH.get_or_init(|| [B3, TRACE_ID, SPAN_ID, SAMPLED, FLAGS].map(ToOwned::to_owned))
        }
    }
}

impl B3Propagator {
    /// A propagator that writes `encoding`.
    ///
    /// ```
    /// use service_tracing_middleware::propagation::{B3Encoding, B3Propagator};
    /// let b3 = B3Propagator::new(B3Encoding::SingleAndMulti);
    /// assert_eq!(b3.encoding(), B3Encoding::SingleAndMulti);
    /// ```
    pub fn new(encoding: B3Encoding) -> Self {
        Self { encoding }
    }

    /// Writes the single `b3` header.
    pub fn single() -> Self {
        Self::new(B3Encoding::Single)
    }

    /// Writes the multi `X-B3-*` headers.
    pub fn multi() -> Self {
        Self::new(B3Encoding::Multi)
    }

    /// What it writes.
    pub fn encoding(&self) -> B3Encoding {
        self.encoding
    }

    fn read(extractor: &dyn Extractor) -> Option<Extracted> {
        let single = match one(extractor, B3) {
            Ok(Some(value)) => parse_single(value),
            _ => None,
        };
        single.or_else(|| parse_multi(extractor))
    }
}

impl Default for B3Propagator {
    /// Writes the single header.
    fn default() -> Self {
        Self::single()
    }
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            // Only a deny decision read from B3 itself is passed on without ids.
            if cx.has_active_span() && sc.is_remote() && !sc.is_sampled() {
                if self.encoding.single() {
                    injector.set(B3, "0".to_owned());
                }
                if self.encoding.multi() {
                    injector.set(SAMPLED, "0".to_owned());
                }
            }
            return;
        }
        let debug = DebugTrace::is_set(cx);
        if self.encoding.single() {
            let state = if debug {
                'd'
            } else if sc.is_sampled() {
                '1'
            } else {
                '0'
            };
            injector.set(B3, format!("{}-{}-{state}", sc.trace_id(), sc.span_id()));
        }
        if self.encoding.multi() {
            injector.set(TRACE_ID, sc.trace_id().to_string());
            injector.set(SPAN_ID, sc.span_id().to_string());
            if debug {
                // Debug implies sampled; the specification says not to send both.
                injector.set(FLAGS, "1".to_owned());
            } else {
                injector.set(SAMPLED, if sc.is_sampled() { "1" } else { "0" }.to_owned());
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::read(extractor) {
            None => cx.clone(),
            Some(Extracted::DenyOnly) => cx.with_remote_span_context(SpanContext::new(
                TraceId::INVALID,
                SpanId::INVALID,
                TraceFlags::NOT_SAMPLED,
                true,
                TraceState::NONE,
            )),
            Some(Extracted::Span(trace, span, sampling)) => {
                let flags = match sampling {
                    Sampling::Accept | Sampling::Debug => TraceFlags::SAMPLED,
                    Sampling::Deny | Sampling::Deferred => TraceFlags::NOT_SAMPLED,
                };
                let cx = cx.with_remote_span_context(SpanContext::new(
                    trace,
                    span,
                    flags,
                    true,
                    TraceState::NONE,
                ));
                if sampling == Sampling::Debug {
                    cx.with_value(DebugTrace::new(trace))
                } else {
                    cx
                }
            }
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(fields(self.encoding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{extract, inject};
    use http::HeaderMap;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SHORT_TRACE: &str = "a3ce929d0e0e4736";
    const PADDED_TRACE: &str = "0000000000000000a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const PARENT: &str = "00000000000000cd";

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::propagation::test_headers(pairs)
    }

    fn read(pairs: &[(&str, &str)]) -> Context {
        extract(&B3Propagator::single(), &headers(pairs))
    }

    fn ids(cx: &Context) -> Option<(String, String, bool, bool)> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| {
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
                DebugTrace::is_set(cx),
            )
        })
    }

    fn write(encoding: B3Encoding, cx: &Context) -> HeaderMap {
        let mut out = HeaderMap::new();
        inject(&B3Propagator::new(encoding), cx, &mut out);
        out
    }

    #[test]
    fn single_header_states_parse() {
        let cases = [
            (format!("{TRACE}-{SPAN}"), false, false),
            (format!("{TRACE}-{SPAN}-0"), false, false),
            (format!("{TRACE}-{SPAN}-1"), true, false),
            (format!("{TRACE}-{SPAN}-d"), true, true),
            (format!("{TRACE}-{SPAN}-1-{PARENT}"), true, false),
        ];
        for (value, sampled, debug) in cases {
            let cx = read(&[("b3", &value)]);
            assert_eq!(
                ids(&cx),
                Some((TRACE.to_owned(), SPAN.to_owned(), sampled, debug)),
                "{value}"
            );
        }
        let cx = read(&[("b3", &format!("{SHORT_TRACE}-{SPAN}-1"))]);
        assert_eq!(
            ids(&cx).map(|i| i.0),
            Some(PADDED_TRACE.to_owned()),
            "64-bit ids are left-padded"
        );
    }

    #[test]
    fn multi_headers_parse_with_legacy_booleans_and_debug() {
        let base = [("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)];
        let cases: [(Pairs<'_>, bool, bool); 6] = [
            (&[], false, false),
            (&[("x-b3-sampled", "1")], true, false),
            (&[("x-b3-sampled", "true")], true, false),
            (&[("x-b3-sampled", "false")], false, false),
            (&[("x-b3-flags", "1")], true, true),
            (
                &[("x-b3-sampled", "0"), ("x-b3-parentspanid", PARENT)],
                false,
                false,
            ),
        ];
        for (extra, sampled, debug) in cases {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            let cx = read(&all);
            assert_eq!(
                ids(&cx),
                Some((TRACE.to_owned(), SPAN.to_owned(), sampled, debug)),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn invalid_b3_extracts_nothing() {
        let upper = TRACE.to_uppercase();
        let singles = [
            format!("{}-{SPAN}-1", &TRACE[1..]),
            format!("0{TRACE}-{SPAN}-1"),
            format!("{TRACE}-{}-1", &SPAN[1..]),
            format!("{upper}-{SPAN}-1"),
            format!("{TRACE}-{}-1", SPAN.to_uppercase()),
            format!("{TRACE}-{SPAN}-2"),
            format!("{TRACE}-{SPAN}-true"),
            format!("{TRACE}-{SPAN}-D"),
            format!("{TRACE}-{SPAN}-1-"),
            format!("{TRACE}-{SPAN}-"),
            format!("{TRACE}-{SPAN}-1-{PARENT}-x"),
            format!("{TRACE}-{SPAN}-1-00cd"),
            format!("{TRACE}-{SPAN}-1-0000000000000000"),
            format!("00000000000000000000000000000000-{SPAN}-1"),
            format!("{TRACE}-0000000000000000-1"),
            format!("{TRACE}_{SPAN}_1"),
            "1".to_owned(),
            "d".to_owned(),
            "-".to_owned(),
            String::new(),
            format!("{TRACE}-{SPAN}-1-{}", "a".repeat(10_000)),
        ];
        for value in singles {
            let cx = read(&[("b3", &value)]);
            assert!(!cx.has_active_span(), "{value}");
        }
        let multis: [Pairs<'_>; 8] = [
            &[("x-b3-traceid", TRACE)],
            &[("x-b3-spanid", SPAN)],
            &[("x-b3-traceid", &upper), ("x-b3-spanid", SPAN)],
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-sampled", "yes"),
            ],
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-sampled", "d"),
            ],
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-flags", "2"),
            ],
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-parentspanid", "cd"),
            ],
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
            ],
        ];
        for pairs in multis {
            let cx = read(pairs);
            assert!(!cx.has_active_span(), "{pairs:?}");
        }
    }

    #[test]
    fn single_wins_over_multi_and_invalid_single_falls_back() {
        let other = "1111111111111111";
        let cx = read(&[
            ("b3", &format!("{TRACE}-{SPAN}-1")),
            ("x-b3-traceid", other),
            ("x-b3-spanid", other),
        ]);
        assert_eq!(ids(&cx).map(|i| i.1), Some(SPAN.to_owned()));
        let cx = read(&[
            ("b3", "garbage"),
            ("x-b3-traceid", other),
            ("x-b3-spanid", other),
        ]);
        assert_eq!(ids(&cx).map(|i| i.1), Some(other.to_owned()));
    }

    #[test]
    fn round_trips_keep_ids_and_flags() {
        for (value, multi_state) in [
            (format!("{TRACE}-{SPAN}-1"), ("x-b3-sampled", "1")),
            (format!("{TRACE}-{SPAN}-0"), ("x-b3-sampled", "0")),
            (format!("{TRACE}-{SPAN}-d"), ("x-b3-flags", "1")),
        ] {
            let cx = read(&[("b3", &value)]);
            let out = write(B3Encoding::SingleAndMulti, &cx);
            assert_eq!(out["b3"], value.as_str());
            assert_eq!(out["x-b3-traceid"], TRACE);
            assert_eq!(out["x-b3-spanid"], SPAN);
            assert_eq!(out[multi_state.0], multi_state.1);
            assert_eq!(out.len(), 4, "{out:?}");
        }
        let cx = read(&[("b3", &format!("{SHORT_TRACE}-{SPAN}-d"))]);
        assert_eq!(
            write(B3Encoding::Single, &cx)["b3"],
            format!("{PADDED_TRACE}-{SPAN}-d").as_str()
        );
        let cx = read(&[
            ("x-b3-traceid", SHORT_TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ]);
        let out = write(B3Encoding::Multi, &cx);
        assert_eq!(out["x-b3-traceid"], PADDED_TRACE);
        assert_eq!(out["x-b3-flags"], "1");
        assert!(out.get("x-b3-sampled").is_none());
        assert!(out.get("b3").is_none());
    }

    #[test]
    fn deny_only_is_read_and_passed_on_but_empty_contexts_write_nothing() {
        for pairs in [&[("b3", "0")][..], &[("x-b3-sampled", "0")][..]] {
            let cx = read(pairs);
            let span = cx.span();
            let sc = span.span_context();
            assert!(cx.has_active_span() && !sc.is_valid() && !sc.is_sampled());
            let out = write(B3Encoding::SingleAndMulti, &cx);
            assert_eq!(out["b3"], "0");
            assert_eq!(out["x-b3-sampled"], "0");
        }
        assert!(write(B3Encoding::SingleAndMulti, &Context::new()).is_empty());
        // Accept-only has no ids to continue: nothing.
        assert!(!read(&[("x-b3-sampled", "1")]).has_active_span());
    }

    #[test]
    fn debug_mark_follows_its_trace_only() {
        let cx = read(&[("b3", &format!("{TRACE}-{SPAN}-d"))]);
        let other = SpanContext::new(
            TraceId::from(7),
            SpanId::from(8),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let new_trace = cx.with_remote_span_context(other);
        assert!(!DebugTrace::is_set(&new_trace));
        assert!(write(B3Encoding::Single, &new_trace)["b3"]
            .to_str()
            .expect("ascii")
            .ends_with("-1"));
    }

    /// Each case `opentelemetry-zipkin` 0.33.0's `Propagator` gets wrong (see the module docs).
    #[test]
    fn the_zipkin_crates_mistakes_are_not_repeated() {
        // Debug implies sampled (the crate: flags 0x04, `is_sampled()` false; with its default
        // multi encoding, `d` is refused outright).
        let cx = extract(
            &B3Propagator::multi(),
            &headers(&[("b3", &format!("{TRACE}-{SPAN}-d"))]),
        );
        assert_eq!(
            ids(&cx),
            Some((TRACE.to_owned(), SPAN.to_owned(), true, true))
        );
        // `true` is accepted whatever the propagator writes (the crate: refused by single).
        let cx = read(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "true"),
        ]);
        assert!(ids(&cx).is_some_and(|i| i.2));
        // A malformed parent or flags is invalid (the crate: ignored).
        let cx = read(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-parentspanid", "not-hex"),
        ]);
        assert!(!cx.has_active_span());
        // An empty context writes nothing (the crate: `b3: 0`).
        assert!(write(B3Encoding::Single, &Context::new()).is_empty());
        // No private trace-flag bits: deferred is plain "not sampled".
        let cx = read(&[("b3", &format!("{TRACE}-{SPAN}"))]);
        assert_eq!(
            cx.span().span_context().trace_flags(),
            TraceFlags::NOT_SAMPLED
        );
    }
}
