//! Jaeger: `uber-trace-id` and `uberctx-{key}` baggage.
//!
//! Why not `opentelemetry-jaeger-propagator`? Its newest release (0.32.0) is built for
//! `opentelemetry` 0.32: its `TextMapPropagator` is another trait than ours (0.33), so it
//! cannot be given to the layer, the client or `global::set_text_map_propagator` without a
//! second OpenTelemetry in the build, whose contexts ours cannot read. Its parser also differs
//! from Jaeger's format where it matters:
//!
//! - flags are parsed as *decimal* (`u8::from_str`), where Jaeger writes hex: `11` (0x11,
//!   sampled) reads as 11 = 0b1011 (sampled and debug), and `f` is refused;
//! - `uberctx-*` headers go into the W3C `tracestate` (keys and raw values), not into baggage,
//!   and one value that is not a valid tracestate value (a space, a comma, `=`) discards the
//!   whole span context; values are not URL-decoded, and baggage is never written;
//! - the debug flag rides in a private trace-flag bit, and debug without sampled is unsampled.
//!
//! The test `the_jaeger_crates_mistakes_are_not_repeated` pins each of these.

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::b3::{lower_hex, DebugTrace};
use crate::correlation::{CorrelationId, JAEGER_BAGGAGE_KEY};

const UBER_TRACE_ID: &str = "uber-trace-id";
const UBERCTX: &str = "uberctx-";

/// Longer than any valid `uber-trace-id`, even with every `:` written `%3A`.
const MAX_TRACE_HEADER_LEN: usize = 128;
/// The W3C Baggage caps, applied to `uberctx-*` too.
const MAX_MEMBERS: usize = 64;
const MAX_VALUE_BYTES: usize = 4096;

/// What `uberctx-*` values keep unencoded: `URLEncoder`'s safe set.
const VALUE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*');

const DEBUG: u8 = 0x02;
const SAMPLED: u8 = 0x01;

/// Parses `{trace-id}:{span-id}:{parent-span-id}:{flags}`: lowercase hex of 1 to 32, 16, 16 and
/// 2 digits (shorter ids are left-padded with zeros), ids not zero, `:` also accepted as `%3A`.
fn parse(value: &str) -> Option<(TraceId, SpanId, u8)> {
    if value.len() > MAX_TRACE_HEADER_LEN {
        return None;
    }
    let value: Cow<'_, str> = if value.contains('%') {
        Cow::Owned(value.replace("%3A", ":").replace("%3a", ":"))
    } else {
        Cow::Borrowed(value)
    };
    let mut parts = value.split(':');
    let trace = TraceId::from(lower_hex(parts.next()?, 32)?);
    let span = SpanId::from(u64::try_from(lower_hex(parts.next()?, 16)?).ok()?);
    // The parent id is deprecated and unused; it must still be well-formed.
    lower_hex(parts.next()?, 16)?;
    let flags = u8::try_from(lower_hex(parts.next()?, 2)?).ok()?;
    if parts.next().is_some() || trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    Some((trace, span, flags))
}

/// `+` is a space, then percent-decoding (as Jaeger clients' URL decoding); `None` when the
/// result is not UTF-8.
fn decode_value(raw: &str) -> Option<String> {
    let spaced: Cow<'_, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// Adds to `target` each member of `from` whose key it does not hold yet (within the
/// baggage limits).
pub(super) fn merge_into(target: &mut Baggage, from: &Baggage) {
    for (key, (value, metadata)) in from {
        if target.get(key.as_str()).is_none() {
            let _ = target.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
        }
    }
}

fn trace_fields() -> &'static [String] {
    static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
    FIELDS.get_or_init(|| [UBER_TRACE_ID.to_owned()])
}

/// The Jaeger propagator: `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`
/// and, unless [`trace_only`](Self::trace_only), `uberctx-{key}` baggage (see
/// [`JaegerBaggage`]).
///
/// - ids are lowercase hex, shorter than 32 (trace) or 16 (span) digits allowed and
///   left-padded with zeros; zero ids, uppercase, extra fields or over-long values read as
///   nothing; `%3A` is accepted for `:`;
/// - flags are one or two hex digits: `1` sampled, `2` debug (read as sampled, with a
///   [`DebugTrace`] mark so that `3` is written again); other bits are ignored;
/// - written: the 32-digit trace id, the span id, parent `0`, flags `0`, `1` or `3`.
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// use service_tracing_middleware::propagation::{extract, inject, JaegerPropagator};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("uber-trace-id", "4d0000000000000016%3A17c29%3A0%3A3".parse().unwrap());
/// let cx = extract(&JaegerPropagator::new(), &headers);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "000000000000004d0000000000000016");
///
/// let mut out = http::HeaderMap::new();
/// inject(&JaegerPropagator::new(), &cx, &mut out);
/// assert_eq!(out["uber-trace-id"], "000000000000004d0000000000000016:0000000000017c29:0:3");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct JaegerPropagator {
    baggage: bool,
}

impl Default for JaegerPropagator {
    fn default() -> Self {
        Self::new()
    }
}

impl JaegerPropagator {
    /// Reads and writes `uber-trace-id` and `uberctx-*`.
    pub fn new() -> Self {
        Self { baggage: true }
    }

    /// Reads and writes `uber-trace-id` only (pair it with [`JaegerBaggage`] elsewhere, as
    /// [`propagator_from_names`](super::propagator_from_names) does).
    ///
    /// ```
    /// let trace_only = service_tracing_middleware::propagation::JaegerPropagator::trace_only();
    /// ```
    pub fn trace_only() -> Self {
        Self { baggage: false }
    }
}

impl TextMapPropagator for JaegerPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let flags = if DebugTrace::is_set(cx) {
                DEBUG | SAMPLED
            } else if sc.is_sampled() {
                SAMPLED
            } else {
                0
            };
            injector.set(
                UBER_TRACE_ID,
                format!("{}:{}:0:{flags:x}", sc.trace_id(), sc.span_id()),
            );
        }
        if self.baggage {
            JaegerBaggage.inject_context(cx, injector);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let value = match extractor.get_all(UBER_TRACE_ID).as_deref() {
            Some([one]) => parse(one),
            _ => None,
        };
        let mut out = match value {
            Some((trace, span, flags)) => {
                let debug = flags & DEBUG != 0;
                let sampled = debug || flags & SAMPLED != 0;
                let sc = SpanContext::new(
                    trace,
                    span,
                    if sampled {
                        TraceFlags::SAMPLED
                    } else {
                        TraceFlags::NOT_SAMPLED
                    },
                    true,
                    TraceState::NONE,
                );
                let with_span = cx.with_remote_span_context(sc);
                if debug {
                    with_span.with_value(DebugTrace::new(trace))
                } else {
                    with_span
                }
            }
            None => cx.clone(),
        };
        if self.baggage {
            out = JaegerBaggage.extract_with_context(&out, extractor);
        }
        out
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(trace_fields())
    }
}

/// Jaeger baggage alone: each `uberctx-{key}: value` header is the baggage member `key`, its
/// value URL-decoded (`+` is a space). Read members join the context's baggage (a key already
/// there keeps its value); at most 64 are read and values over 4096 bytes are skipped.
///
/// Writing sends every baggage member as `uberctx-{key}` with its value URL-encoded, and the
/// request's [`CorrelationId`] as `uberctx-correlation-id`, so that a Jaeger-speaking service
/// reads it as baggage `correlation-id`.
///
/// ```
/// use opentelemetry::baggage::BaggageExt;
/// use service_tracing_middleware::propagation::{extract, JaegerBaggage};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("uberctx-tenant", "acme%20corp".parse().unwrap());
/// let cx = extract(&JaegerBaggage, &headers);
/// assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str()), Some("acme corp"));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct JaegerBaggage;

impl TextMapPropagator for JaegerBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let correlation = CorrelationId::from_context(cx);
        for (key, (value, _)) in cx.baggage() {
            if correlation.is_some() && key.as_str() == JAEGER_BAGGAGE_KEY {
                continue;
            }
            injector.set(
                &format!("{UBERCTX}{}", key.as_str()),
                utf8_percent_encode(value.as_str(), VALUE_ENCODE).to_string(),
            );
        }
        if let Some(id) = correlation {
            // Visible ASCII; only the characters URL encoding reserves are escaped.
            injector.set(
                &format!("{UBERCTX}{JAEGER_BAGGAGE_KEY}"),
                utf8_percent_encode(id.as_str(), VALUE_ENCODE).to_string(),
            );
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let mut baggage: Option<Baggage> = None;
        let mut read = 0;
        for header in extractor.keys() {
            if read == MAX_MEMBERS {
                break;
            }
            let Some(key) = header
                .get(..UBERCTX.len())
                .filter(|prefix| prefix.eq_ignore_ascii_case(UBERCTX))
                .map(|_| &header[UBERCTX.len()..])
                .filter(|key| !key.is_empty())
            else {
                continue;
            };
            let Some(raw) = extractor.get(header).filter(|v| v.len() <= MAX_VALUE_BYTES) else {
                continue;
            };
            let Some(value) = decode_value(raw) else {
                continue;
            };
            read += 1;
            let merged = baggage.get_or_insert_with(|| {
                let mut copy = Baggage::new();
                merge_into(&mut copy, cx.baggage());
                copy
            });
            if merged.get(key).is_none() {
                let _ = merged.insert(key.to_ascii_lowercase(), value);
            }
        }
        match baggage {
            Some(baggage) => cx.with_baggage(baggage),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{extract, inject};
    use http::HeaderMap;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::propagation::test_headers(pairs)
    }

    fn read(value: &str) -> Context {
        extract(
            &JaegerPropagator::new(),
            &headers(&[("uber-trace-id", value)]),
        )
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

    fn write(cx: &Context) -> HeaderMap {
        let mut out = HeaderMap::new();
        inject(&JaegerPropagator::new(), cx, &mut out);
        out
    }

    #[test]
    fn trace_header_round_trips() {
        for (flags, sampled, debug, written) in [
            ("0", false, false, "0"),
            ("1", true, false, "1"),
            ("3", true, true, "3"),
            ("2", true, true, "3"),
            ("09", true, false, "1"),
            ("f", true, true, "3"),
        ] {
            let cx = read(&format!("{TRACE}:{SPAN}:0:{flags}"));
            assert_eq!(
                ids(&cx),
                Some((TRACE.to_owned(), SPAN.to_owned(), sampled, debug)),
                "{flags}"
            );
            assert_eq!(
                write(&cx)["uber-trace-id"],
                format!("{TRACE}:{SPAN}:0:{written}").as_str()
            );
        }
    }

    #[test]
    fn short_ids_are_padded_and_encoded_separators_accepted() {
        let cx = read("4d0000000000000016%3a17c29%3A1%3A1");
        assert_eq!(
            ids(&cx),
            Some((
                "000000000000004d0000000000000016".to_owned(),
                "0000000000017c29".to_owned(),
                true,
                false
            ))
        );
        let cx = read("a3ce929d0e0e4736:00f067aa0ba902b7:0:1");
        assert_eq!(
            write(&cx)["uber-trace-id"],
            "0000000000000000a3ce929d0e0e4736:00f067aa0ba902b7:0:1"
        );
    }

    #[test]
    fn invalid_trace_headers_extract_nothing() {
        let long = "a".repeat(200);
        let cases = [
            format!("{}:{SPAN}:0:1", TRACE.to_uppercase()),
            format!("0{TRACE}:{SPAN}:0:1"),
            format!("{TRACE}:0{SPAN}:0:1"),
            format!("{TRACE}:{SPAN}:0:100"),
            format!("{TRACE}:{SPAN}:0:"),
            format!("{TRACE}:{SPAN}:0"),
            format!("{TRACE}:{SPAN}:0:1:1"),
            format!("{TRACE}:{SPAN}::1"),
            format!("0:{SPAN}:0:1"),
            format!("{TRACE}:0:0:1"),
            format!("{TRACE}:{SPAN}:0:g"),
            format!("{TRACE}%3B{SPAN}%3B0%3B1"),
            format!("{TRACE}-{SPAN}-0-1"),
            format!("{long}:{SPAN}:0:1"),
            String::new(),
        ];
        for value in cases {
            assert!(!read(&value).has_active_span(), "{value}");
        }
        let twice = headers(&[
            ("uber-trace-id", &format!("{TRACE}:{SPAN}:0:1")),
            ("uber-trace-id", &format!("{TRACE}:{SPAN}:0:1")),
        ]);
        assert!(!extract(&JaegerPropagator::new(), &twice).has_active_span());
    }

    #[test]
    fn uberctx_becomes_decoded_baggage_and_is_written_back() {
        let cx = extract(
            &JaegerPropagator::new(),
            &headers(&[
                ("uberctx-tenant", "acme+corp%2C%20eu"),
                ("uberctx-correlation-id", "abc"),
                ("uberctx-bad", "%FF"),
                ("uberctx-", "empty-key"),
            ]),
        );
        let baggage = cx.baggage();
        assert_eq!(
            baggage.get("tenant").map(|v| v.as_str()),
            Some("acme corp, eu")
        );
        assert_eq!(
            baggage.get("correlation-id").map(|v| v.as_str()),
            Some("abc")
        );
        assert_eq!(baggage.len(), 2);

        let out = write(&cx);
        assert_eq!(out["uberctx-tenant"], "acme%20corp%2C%20eu");
        assert_eq!(out["uberctx-correlation-id"], "abc");

        let id = CorrelationId::parse("from-header").expect("valid");
        let out = write(&cx.with_value(id));
        assert_eq!(out["uberctx-correlation-id"], "from-header");
    }

    #[test]
    fn uberctx_is_bounded() {
        let mut map = HeaderMap::new();
        for i in 0..200 {
            map.insert(
                http::HeaderName::from_bytes(format!("uberctx-k{i}").as_bytes()).expect("name"),
                "v".parse().expect("value"),
            );
        }
        map.insert("uberctx-huge", "x".repeat(10_000).parse().expect("value"));
        let cx = extract(&JaegerBaggage, &map);
        assert!(cx.baggage().len() <= MAX_MEMBERS);
        assert!(cx.baggage().get("huge").is_none());
    }

    /// Each case `opentelemetry-jaeger-propagator` 0.32.0 gets wrong (see the module docs).
    #[test]
    fn the_jaeger_crates_mistakes_are_not_repeated() {
        // Flags are hex: `11` is 0x11, sampled and not debug (the crate: decimal 11, debug).
        let cx = read(&format!("{TRACE}:{SPAN}:0:11"));
        assert_eq!(
            ids(&cx),
            Some((TRACE.to_owned(), SPAN.to_owned(), true, false))
        );
        // `f` is valid hex (the crate: refused).
        assert!(ids(&read(&format!("{TRACE}:{SPAN}:0:f"))).is_some());
        // A baggage value with a space neither is lost nor loses the span context (the crate
        // puts it in tracestate, fails, and drops everything).
        let cx = extract(
            &JaegerPropagator::new(),
            &headers(&[
                ("uber-trace-id", &format!("{TRACE}:{SPAN}:0:1")),
                ("uberctx-note", "a b=c"),
            ]),
        );
        assert!(ids(&cx).is_some());
        assert_eq!(cx.baggage().get("note").map(|v| v.as_str()), Some("a b=c"));
        assert!(cx.span().span_context().trace_state().header().is_empty());
        // Debug alone still samples (the crate: unsampled).
        assert!(ids(&read(&format!("{TRACE}:{SPAN}:0:2"))).is_some_and(|i| i.2 && i.3));
    }
}
