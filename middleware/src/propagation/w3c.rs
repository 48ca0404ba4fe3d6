//! W3C Trace Context (`traceparent`, `tracestate`).

use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use http::HeaderMap;

use super::{TRACEPARENT, TRACESTATE};

/// The W3C Trace Context propagator (`traceparent`, `tracestate`), parsed to the letter.
///
/// - version `00`: exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase hex only;
/// - a higher version: its first four fields parsed the same way, re-emitted as `00`;
/// - version `ff`, all-zero ids, or more than one `traceparent` header: invalid;
/// - when `traceparent` is invalid, `tracestate` is ignored.
///
/// ```
/// use service_tracing_middleware::propagation::W3cTraceContext;
/// assert!(W3cTraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some());
/// assert!(W3cTraceContext::parse_traceparent("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_none());
/// assert!(W3cTraceContext::parse_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceContext {
    _private: (),
}

fn trace_context_fields() -> &'static [String; 2] {
    static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
    FIELDS.get_or_init(|| {
        [
            TRACEPARENT.as_str().to_owned(),
            TRACESTATE.as_str().to_owned(),
        ]
    })
}

/// The value of one lowercase hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes from `2N` lowercase hex digits.
fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

impl W3cTraceContext {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `traceparent` value: trace id, parent id and flags, or `None` when invalid.
    pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let [version] = decode_hex::<1>(&b[0..2])?;
        // Version 00 is exactly 55 characters; a future version may append fields after a dash.
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let trace_id = TraceId::from_bytes(decode_hex::<16>(&b[3..35])?);
        let span_id = SpanId::from_bytes(decode_hex::<8>(&b[36..52])?);
        let [flags] = decode_hex::<1>(&b[53..55])?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some((
            trace_id,
            span_id,
            TraceFlags::new(flags) & TraceFlags::SAMPLED,
        ))
    }

    /// Reads `traceparent` and `tracestate` straight from a header map: no string-keyed
    /// lookups, no allocation when there is no `tracestate`.
    pub fn extract_from_headers(headers: &HeaderMap) -> Option<SpanContext> {
        let mut all = headers.get_all(&TRACEPARENT).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        let (trace_id, span_id, flags) = Self::parse_traceparent(first.to_str().ok()?)?;
        let mut states = headers
            .get_all(&TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let state = match (states.next(), states.next()) {
            (None, _) => TraceState::NONE,
            (Some(one), None) => one.parse().unwrap_or_default(),
            (Some(one), Some(two)) => {
                let mut joined = format!("{one},{two}");
                for more in states {
                    joined.push(',');
                    joined.push_str(more);
                }
                joined.parse().unwrap_or_default()
            }
        };
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }

    fn span_context(extractor: &dyn Extractor) -> Option<SpanContext> {
        let values = extractor.get_all(TRACEPARENT.as_str())?;
        let [value] = values.as_slice() else {
            return None;
        };
        let (trace_id, span_id, flags) = Self::parse_traceparent(value)?;
        let state = extractor
            .get_all(TRACESTATE.as_str())
            .map(|all| all.join(","))
            .and_then(|joined| joined.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }
}

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(
            TRACEPARENT.as_str(),
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
            ),
        );
        let state = sc.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE.as_str(), state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::span_context(extractor) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(trace_context_fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{extract, inject};
    use http::HeaderMap;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn valid_traceparent_parses() {
        let (trace, span, flags) = W3cTraceContext::parse_traceparent(VALID).expect("valid");
        assert_eq!(trace.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.to_string(), "b7ad6b7169203331");
        assert!(flags.is_sampled());
        let (_, _, flags) = W3cTraceContext::parse_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )
        .expect("valid");
        assert!(!flags.is_sampled());
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        let cases = [
            (
                "short trace id",
                "00-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "long trace id",
                "00-00af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "short parent id",
                "00-0af7651916cd43dd8448eb211c80319c-7ad6b7169203331-01",
            ),
            (
                "one-digit flags",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            ),
            (
                "three-digit flags",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-001",
            ),
            (
                "version ff",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "uppercase version",
                "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "uppercase trace id",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            ),
            (
                "uppercase parent id",
                "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
            ),
            (
                "zero trace id",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            ),
            (
                "zero parent id",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            ),
            (
                "underscore separators",
                "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            ),
            (
                "trailing dash on 00",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            ),
            (
                "extra field on 00",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ab",
            ),
            (
                "non-hex",
                "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            ),
            ("empty", ""),
            (
                "leading space",
                " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "future version no dash",
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            ),
        ];
        for (why, value) in cases {
            assert!(
                W3cTraceContext::parse_traceparent(value).is_none(),
                "{why}: {value}"
            );
        }
    }

    #[test]
    fn future_versions_parse_their_first_four_fields() {
        let value = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future";
        assert!(W3cTraceContext::parse_traceparent(value).is_some());
    }

    #[test]
    fn two_traceparent_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACEPARENT, VALID.parse().expect("valid"));
        let cx = extract(&W3cTraceContext::new(), &headers);
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn tracestate_follows_a_valid_traceparent_only() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACESTATE, "a=1".parse().expect("valid"));
        headers.append(TRACESTATE, "b=2".parse().expect("valid"));
        let cx = extract(&W3cTraceContext::new(), &headers);
        assert_eq!(cx.span().span_context().trace_state().header(), "a=1,b=2");

        let mut out = HeaderMap::new();
        inject(&W3cTraceContext::new(), &cx, &mut out);
        assert_eq!(out[TRACEPARENT], VALID);
        assert_eq!(out[TRACESTATE], "a=1,b=2");
    }
}
