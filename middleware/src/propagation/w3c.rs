//! W3C Trace Context (`traceparent`, `tracestate`).

use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use http::{HeaderMap, HeaderValue};

use super::tracestate::{self, WireTraceState};
use super::{TRACEPARENT, TRACESTATE};

/// The W3C Trace Context propagator (`traceparent`, `tracestate`), parsed to the letter.
///
/// - version `00`: exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase hex only;
/// - a higher version: its first four fields parsed the same way, re-emitted as `00`;
/// - version `ff`, all-zero ids, or more than one `traceparent` header: invalid;
/// - trace flags: `sampled` (`0x01`) and the Level 2 `random` flag (`0x02`) are kept as
///   received; every other bit is set to zero (Level 1 §3.2.2.5.2 "Other Flags");
/// - `tracestate` as [`W3cTraceState`](super::W3cTraceState) reads and writes it, and only when
///   `traceparent` is valid; members the OpenTelemetry `TraceState` cannot hold are kept in the
///   extracted context and written back in their place on injection (see
///   [the module docs](super#tracestate-members-opentelemetry-cannot-hold));
/// - on the way out, the `random` flag is also set when the context holds a
///   [`RandomTraceId`] for the trace being injected.
///
/// ```
/// use service_tracing_middleware::propagation::W3cTraceContext;
/// assert!(W3cTraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some());
/// assert!(W3cTraceContext::parse_traceparent("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_none());
/// assert!(W3cTraceContext::parse_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
/// let (_, _, flags) = W3cTraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff").unwrap();
/// assert_eq!(flags.to_u8(), 0x03); // sampled and random kept, unknown bits zeroed
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceContext {
    _private: (),
}

/// Marks, in a [`Context`], a trace whose id is known to be random: the server layer started it
/// as a new root with the SDK's random id generator, or the incoming `traceparent` carried the
/// Level 2 `random` flag.
///
/// [`W3cTraceContext`] then sets the `random` flag (`0x02`) on every `traceparent` it writes for
/// that trace, even where the span's own flags lost it (the SDK gives a new root only the
/// `sampled` bit, and a span it drops no flags at all). The marker names the trace id it
/// vouches for, so a context that later switches to another trace does not inherit it.
///
/// [`RandomTraceId::mark`] is what the server layer calls on each request's context.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
/// use opentelemetry::Context;
/// use service_tracing_middleware::propagation::{inject, RandomTraceId, W3cTraceContext};
///
/// let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
/// let sc = SpanContext::new(trace_id, SpanId::from(1), TraceFlags::SAMPLED, false, TraceState::NONE);
/// let cx = Context::new().with_remote_span_context(sc);
/// let cx = RandomTraceId::mark(&Context::new(), cx); // no valid parent: a new, random root
/// let mut headers = http::HeaderMap::new();
/// inject(&W3cTraceContext::new(), &cx, &mut headers);
/// assert_eq!(headers["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-0000000000000001-03");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomTraceId {
    trace_id: TraceId,
}

impl RandomTraceId {
    /// Vouches that `trace_id` is random.
    ///
    /// ```
    /// use opentelemetry::trace::TraceId;
    /// use service_tracing_middleware::propagation::RandomTraceId;
    /// assert_eq!(RandomTraceId::new(TraceId::from(7)).trace_id(), TraceId::from(7));
    /// ```
    pub fn new(trace_id: TraceId) -> Self {
        Self { trace_id }
    }

    /// The trace id vouched for.
    ///
    /// ```
    /// use opentelemetry::trace::TraceId;
    /// use service_tracing_middleware::propagation::RandomTraceId;
    /// assert_eq!(RandomTraceId::new(TraceId::from(7)).trace_id(), TraceId::from(7));
    /// ```
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// `cx` (a request's context, its server span active) with a marker for its trace when that
    /// trace id is random: `parent` (the context the server span was started from) has no valid
    /// span, so the tracer generated a new trace id, or its span carries the `random` flag.
    ///
    /// Only correct when the tracer provider's id generator is random, as the SDK's default
    /// one is (Level 2 asks for at least the right-most 7 bytes to be random).
    ///
    /// ```
    /// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    /// use opentelemetry::Context;
    /// use service_tracing_middleware::propagation::RandomTraceId;
    ///
    /// let sc = SpanContext::new(TraceId::from(5), SpanId::from(1), TraceFlags::SAMPLED, false, TraceState::NONE);
    /// let cx = RandomTraceId::mark(&Context::new(), Context::new().with_remote_span_context(sc.clone()));
    /// assert_eq!(cx.get::<RandomTraceId>().map(|m| m.trace_id()), Some(TraceId::from(5)));
    ///
    /// let parent = Context::new().with_remote_span_context(sc.clone()); // not random
    /// let cx = RandomTraceId::mark(&parent, Context::new().with_remote_span_context(sc));
    /// assert!(cx.get::<RandomTraceId>().is_none());
    /// ```
    pub fn mark(parent: &Context, cx: Context) -> Context {
        let trace_id = cx.span().span_context().trace_id();
        match Self::vouch(parent, trace_id) {
            Some(marker) => cx.with_value(marker),
            None => cx,
        }
    }

    /// The marker [`mark`](Self::mark) would add for a span of trace `trace_id` started from
    /// `parent`, without adding it.
    pub(crate) fn vouch(parent: &Context, trace_id: TraceId) -> Option<Self> {
        Self::vouch_after(parent.span().span_context(), trace_id)
    }

    /// [`vouch`](Self::vouch), given the parent's span context.
    pub(crate) fn vouch_after(psc: &SpanContext, trace_id: TraceId) -> Option<Self> {
        let random = !psc.is_valid() || psc.trace_flags().to_u8() & RANDOM_FLAG != 0;
        (random && trace_id != TraceId::INVALID).then(|| Self::new(trace_id))
    }
}

/// Level 1 `sampled` (bit 0).
const SAMPLED_FLAG: u8 = 0x01;
/// Level 2 `random` (bit 1).
const RANDOM_FLAG: u8 = 0x02;
/// The flags this library knows and propagates; every other bit is set to zero.
const KNOWN_FLAGS: u8 = SAMPLED_FLAG | RANDOM_FLAG;

fn trace_context_fields() -> &'static [String; 2] {
    static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
    FIELDS.get_or_init(|| {
        [
            TRACEPARENT.as_str().to_owned(),
            TRACESTATE.as_str().to_owned(),
        ]
    })
}

/// Each byte's value as a lowercase hex digit, or `0xff` (high bits set) when it is not one.
const HEX: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// `0x80` in each byte of `word` (every byte below `0x80`) that is at least `k`: the addition
/// carries into the byte's high bit and never into the next byte.
const fn at_least(word: u64, k: u8) -> u64 {
    word.wrapping_add(ONES * (0x80 - k as u64)) & HIGHS
}

/// Four bytes from the eight lowercase hex digits of `word` (the first digit in its lowest
/// byte), and a mask that is not zero when any of them is not one (the four bytes are then
/// meaningless). No branch: a caller checks the masks of all its words at once.
fn hex_word(word: u64) -> (u32, u64) {
    let digit = at_least(word, b'0') & !at_least(word, b'9' + 1);
    let letter = at_least(word, b'a') & !at_least(word, b'f' + 1);
    // A byte at or above 0x80 upsets the carries above: it is refused whatever they gave.
    let bad = (word & HIGHS) | ((digit | letter) ^ HIGHS);
    // '0'..='9' are 0x30..=0x39 and 'a'..='f' 0x61..=0x66: the low nibble, plus 9 for letters.
    let values = (word & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Each pair of digits (high nibble first) into the low byte of its 16 bits, then the four
    // bytes side by side.
    const LANES: u64 = 0x00ff_00ff_00ff_00ff;
    let pairs = (values & LANES) << 4 | (values >> 8) & LANES;
    let pairs = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
    ((pairs | pairs >> 16) as u32, bad)
}

/// One byte from two lowercase hex digits, by table, and a mask with high bits set when either
/// is not one.
fn hex_pair(high: u8, low: u8) -> (u8, u8) {
    let (high, low) = (HEX[usize::from(high)], HEX[usize::from(low)]);
    (high << 4 | low, (high | low) & 0xf0)
}

/// The eight bytes of `b` from `at` as a word, the first in its lowest byte.
fn word_at(b: &[u8; 55], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The fixed part of a `traceparent`, `vv-<32 hex>-<16 hex>-ff`: version, trace id, parent id
/// and flags, every digit and dash checked and one branch at the end. The ids come out as
/// integers (arrays cost a clear and a copy each).
fn decode_fixed(b: &[u8; 55]) -> Option<(u8, u128, u64, u8)> {
    let (version, version_bad) = hex_pair(b[0], b[1]);
    let (flags, flags_bad) = hex_pair(b[53], b[54]);
    let dashes = (b[2] ^ b'-') | (b[35] ^ b'-') | (b[52] ^ b'-');
    let mut bad = u64::from(version_bad | flags_bad | dashes);
    // A word's first two digits are its value's lowest byte: swapped, its highest.
    let mut id = |at: usize| {
        let (value, word_bad) = hex_word(word_at(b, at));
        bad |= word_bad;
        value.swap_bytes()
    };
    let trace_id = u128::from(id(3)) << 96
        | u128::from(id(11)) << 64
        | u128::from(id(19)) << 32
        | u128::from(id(27));
    let span_id = u64::from(id(36)) << 32 | u64::from(id(44));
    (bad == 0).then_some((version, trace_id, span_id, flags))
}

/// `00-{trace id}-{span id}-{flags}` in lowercase hex: 55 bytes in a string of exactly that
/// capacity (an `http` header value takes it over without copying), written by table, where
/// `format!` through the ids' `Display` cost several hundred instructions more.
pub(crate) fn traceparent_value(trace_id: TraceId, span_id: SpanId, flags: u8) -> String {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    put_hex(&mut out[3..35], &trace_id.to_bytes());
    put_hex(&mut out[36..52], &span_id.to_bytes());
    put_hex(&mut out[53..55], &[flags]);
    let mut text = String::with_capacity(out.len());
    // Every byte written is an ASCII digit, letter or dash.
    text.push_str(std::str::from_utf8(&out).unwrap_or_default());
    text
}

/// Writes `bytes` into `out` as lowercase hex, two digits per byte.
fn put_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// A header field value's bytes without the OWS (spaces, tabs) around them.
fn trim_ows_bytes(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// A header field value without the OWS (spaces, tabs) around it, which RFC 7230 §3.2 says is
/// not part of the value.
fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

impl W3cTraceContext {
    /// The Level 2 `random` trace flag (`0x02`): at least the right-most 7 bytes of the trace
    /// id are random.
    pub const RANDOM: TraceFlags = TraceFlags::new(RANDOM_FLAG);

    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `traceparent` value: trace id, parent id and flags, or `None` when invalid.
    ///
    /// The flags keep `sampled` and `random` and zero every other bit.
    pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
        Self::parse_traceparent_bytes(value.as_bytes())
    }

    /// [`parse_traceparent`](Self::parse_traceparent) on a header's bytes: the 55 bytes of the
    /// fixed part are all checked as hex or dashes in one pass with one branch, so only a longer
    /// (future version) value is checked for visible ASCII.
    fn parse_traceparent_bytes(b: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
        let (fixed, rest) = b.split_first_chunk::<55>()?;
        if !rest.is_empty() {
            // A future version may append fields after a dash (version 00 is exactly 55 bytes).
            let visible = |c: &u8| *c == b'\t' || (0x20..0x7f).contains(c);
            if rest[0] != b'-' || !rest.iter().all(visible) {
                return None;
            }
        }
        let (version, trace_id, span_id, flags) = decode_fixed(fixed)?;
        if version == 0xff || (version == 0 && !rest.is_empty()) {
            return None;
        }
        let trace_id = TraceId::from(trace_id);
        let span_id = SpanId::from(span_id);
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some((trace_id, span_id, TraceFlags::new(flags & KNOWN_FLAGS)))
    }

    /// Reads `traceparent` and `tracestate` straight from a header map: no string-keyed
    /// lookups, no allocation when there is no `tracestate`.
    ///
    /// The span context's [`TraceState`] lacks any `tracestate` member it cannot hold (see
    /// [`W3cTraceState`](super::W3cTraceState)); extraction through the propagator or
    /// [`PropagatorSource`](super::PropagatorSource) keeps those in the context.
    pub fn extract_from_headers(headers: &HeaderMap) -> Option<SpanContext> {
        Self::extract_parts(headers, super::Traceparent::LookUp, true).map(|(sc, _)| sc)
    }

    /// [`extract_from_headers`](Self::extract_from_headers), with the received `tracestate`
    /// members when the span context's `TraceState` cannot hold them all.
    /// `traceparent` is what the caller knows of the request's `traceparent` headers (their one
    /// value, none, or to be looked up); `tracestate` is read only when `tracestate` says it
    /// may be there.
    pub(crate) fn extract_parts(
        headers: &HeaderMap,
        traceparent: super::Traceparent<'_>,
        tracestate: bool,
    ) -> Option<(SpanContext, Option<WireTraceState>)> {
        let first = match traceparent {
            super::Traceparent::Absent => return None,
            super::Traceparent::One(value) => value,
            super::Traceparent::LookUp => {
                let mut all = headers.get_all(&TRACEPARENT).iter();
                let first = all.next()?;
                if all.next().is_some() {
                    return None;
                }
                first
            }
        };
        let (trace_id, span_id, flags) =
            Self::parse_traceparent_bytes(trim_ows_bytes(first.as_bytes()))?;
        let (state, wire) = match tracestate.then(|| headers.get_all(&TRACESTATE)) {
            Some(values) if values.iter().next().is_some() => {
                tracestate::trace_state_from(values.iter().map(HeaderValue::as_bytes), trace_id)
            }
            _ => (TraceState::NONE, None),
        };
        Some((
            SpanContext::new(trace_id, span_id, flags, true, state),
            wire,
        ))
    }

    /// `cx` with `sc` as its remote span context, and `wire` beside it when there is one.
    pub(crate) fn with_parts(
        cx: &Context,
        (sc, wire): (SpanContext, Option<WireTraceState>),
    ) -> Context {
        let cx = cx.with_remote_span_context(sc);
        match wire {
            Some(wire) => cx.with_value(wire),
            None => cx,
        }
    }

    fn span_context(extractor: &dyn Extractor) -> Option<(SpanContext, Option<WireTraceState>)> {
        let values = extractor.get_all(TRACEPARENT.as_str())?;
        let [value] = values.as_slice() else {
            return None;
        };
        let (trace_id, span_id, flags) = Self::parse_traceparent(trim_ows(value))?;
        let (state, wire) = extractor
            .get_all(TRACESTATE.as_str())
            .map(|all| tracestate::trace_state_from(all.iter().map(|v| v.as_bytes()), trace_id))
            .unwrap_or_default();
        Some((
            SpanContext::new(trace_id, span_id, flags, true, state),
            wire,
        ))
    }
}

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let mut flags = sc.trace_flags().to_u8() & KNOWN_FLAGS;
        let random = match crate::scope::RequestScope::of(cx) {
            Some(scope) => scope.random_trace_id,
            None => None,
        }
        .or_else(|| cx.get::<RandomTraceId>().map(|m| m.trace_id));
        if random == Some(sc.trace_id()) {
            flags |= RANDOM_FLAG;
        }
        injector.set(
            TRACEPARENT.as_str(),
            traceparent_value(sc.trace_id(), sc.span_id(), flags),
        );
        // The received members `TraceState` could not hold go back where they were.
        let wire = cx
            .get::<WireTraceState>()
            .filter(|wire| wire.is_for(sc.trace_id()));
        if let Some(state) = tracestate::header_value(sc.trace_state(), wire) {
            injector.set(TRACESTATE.as_str(), state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::span_context(extractor) {
            Some(parts) => Self::with_parts(cx, parts),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(trace_context_fields())
    }
}

#[cfg(test)]
mod tests {

    /// `2N` digits (`N` a multiple of four) decoded eight at a time by `hex_word`, as
    /// `decode_fixed` does.
    fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
        if digits.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        let mut bad = 0;
        for (four, word) in out.chunks_exact_mut(4).zip(digits.chunks_exact(8)) {
            let (value, word_bad) = hex_word(u64::from_le_bytes(word.try_into().expect("8")));
            bad |= word_bad;
            four.copy_from_slice(&value.to_le_bytes());
        }
        (bad == 0).then_some(out)
    }

    /// Digit by digit with the table: what the word-at-a-time decoding must agree with.
    fn decode_hex_by_table<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
            if (high | low) & 0xf0 != 0 {
                return None;
            }
            *byte = high << 4 | low;
        }
        (digits.len() == 2 * N).then_some(out)
    }

    #[test]
    fn ids_decode_eight_digits_at_a_time_exactly_as_digit_by_digit() {
        let valid = b"0123456789abcdef0af7651916cd43dd";
        assert_eq!(
            decode_hex::<16>(valid),
            Some(0x0123456789abcdef0af7651916cd43dd_u128.to_be_bytes())
        );
        // Every byte value at every place of a trace id and a span id.
        for place in 0..valid.len() {
            for b in 0..=255u8 {
                let mut digits = *valid;
                digits[place] = b;
                assert_eq!(
                    decode_hex::<16>(&digits),
                    decode_hex_by_table::<16>(&digits),
                    "{b:#04x} at {place}"
                );
                assert_eq!(
                    decode_hex::<8>(&digits[..16]),
                    decode_hex_by_table::<8>(&digits[..16]),
                    "{b:#04x} at {place}"
                );
            }
        }
        // Pseudo-random mixes of digits, letters and their neighbours.
        let alphabet = b"0123456789abcdef/:`gAFG\x80\xff";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            let mut digits = [0u8; 32];
            for d in &mut digits {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly valid digits, so that one bad byte is what decides.
                *d = if seed % 8 == 0 {
                    alphabet[(seed >> 8) as usize % alphabet.len()]
                } else {
                    alphabet[(seed >> 8) as usize % 16]
                };
            }
            assert_eq!(
                decode_hex::<16>(&digits),
                decode_hex_by_table::<16>(&digits)
            );
        }
        assert_eq!(decode_hex::<16>(&valid[..31]), None);
        assert_eq!(hex_pair(b'0', b'f'), (0x0f, 0));
        assert_ne!(hex_pair(b'0', b'F').1, 0);
    }
    use super::*;

    #[test]
    fn every_byte_but_lowercase_hex_is_refused_in_every_id_position() {
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(W3cTraceContext::parse_traceparent(valid).is_some());
        // Every place of the 55, digits and dashes, with every byte value.
        for position in 0..valid.len() {
            for byte in 0..=255u8 {
                let mut bytes = valid.as_bytes().to_vec();
                bytes[position] = byte;
                let parsed = W3cTraceContext::parse_traceparent_bytes(&bytes);
                if [2, 35, 52].contains(&position) {
                    assert_eq!(parsed.is_some(), byte == b'-', "{position} {byte:#x}");
                    continue;
                }
                let hex = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
                // The version ff is invalid; a zero trace or parent id is too, not their digits.
                if hex && !(position < 2 && byte == b'f') {
                    let (trace_id, span_id, _) = parsed.expect("valid");
                    let text = format!("{trace_id}-{span_id}");
                    assert_eq!(text.as_bytes(), &bytes[3..52], "{position} {byte:#x}");
                } else if !hex {
                    assert!(parsed.is_none(), "{position} {byte:#x}");
                }
            }
        }
        assert!(
            W3cTraceContext::parse_traceparent_bytes(
                b" \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t "
            )
            .is_none(),
            "OWS is trimmed by the caller, not here"
        );
    }
    use crate::propagation::{extract, inject, HeaderExtractor, W3cTraceState};
    use http::HeaderMap;

    /// The ids of Level 1 §3.2.3 "Examples of HTTP traceparent Headers".
    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const P: &str = "00f067aa0ba902b7";
    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    struct TraceparentCase {
        /// The section of W3C Trace Context this case checks.
        spec: &'static str,
        name: &'static str,
        value: String,
        /// Trace id, parent id and flags as extracted, or `None` when invalid.
        expect: Option<(&'static str, &'static str, u8)>,
    }

    fn tp(
        spec: &'static str,
        name: &'static str,
        value: impl Into<String>,
        expect: Option<(&'static str, &'static str, u8)>,
    ) -> TraceparentCase {
        TraceparentCase {
            spec,
            name,
            value: value.into(),
            expect,
        }
    }

    fn traceparent_cases() -> Vec<TraceparentCase> {
        let up_t = T.to_uppercase();
        let up_p = P.to_uppercase();
        vec![
            // Valid.
            tp(
                "L1 §3.2.3 Examples of HTTP traceparent Headers",
                "sampled example",
                format!("00-{T}-{P}-01"),
                Some((T, P, 0x01)),
            ),
            tp(
                "L1 §3.2.3 Examples of HTTP traceparent Headers",
                "not-sampled example",
                format!("00-{T}-{P}-00"),
                Some((T, P, 0x00)),
            ),
            tp(
                "L2 §3.2.2.5.2 Random Trace ID Flag",
                "random flag kept",
                format!("00-{T}-{P}-02"),
                Some((T, P, 0x02)),
            ),
            tp(
                "L2 §3.2.2.5.2 Random Trace ID Flag",
                "sampled and random kept",
                format!("00-{T}-{P}-03"),
                Some((T, P, 0x03)),
            ),
            tp(
                "L1 §3.2.2.5.2 Other Flags (MUST set to zero)",
                "all bits: unknown zeroed",
                format!("00-{T}-{P}-ff"),
                Some((T, P, 0x03)),
            ),
            tp(
                "L1 §3.2.2.5.2 Other Flags (MUST set to zero)",
                "only an unknown bit",
                format!("00-{T}-{P}-04"),
                Some((T, P, 0x00)),
            ),
            tp(
                "L1 §3.2.2.5.2 Other Flags (MUST set to zero)",
                "unknown bit with sampled",
                format!("00-{T}-{P}-09"),
                Some((T, P, 0x01)),
            ),
            tp(
                "L1 §3.2.2.5.2 Other Flags (MUST set to zero)",
                "unknown bits with random",
                format!("00-{T}-{P}-fe"),
                Some((T, P, 0x02)),
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version cc with extra fields",
                format!("cc-{T}-{P}-01-what-the-future-will-be-like"),
                Some((T, P, 0x01)),
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version cc, exactly four fields",
                format!("cc-{T}-{P}-01"),
                Some((T, P, 0x01)),
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version 01 with an empty fifth field",
                format!("01-{T}-{P}-00-"),
                Some((T, P, 0x00)),
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version fe (highest valid)",
                format!("fe-{T}-{P}-01"),
                Some((T, P, 0x01)),
            ),
            // Invalid: version.
            tp(
                "L1 §3.2.2.1 version (ff is invalid)",
                "version ff",
                format!("ff-{T}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.1 version (2 HEXDIGLC)",
                "uppercase version",
                format!("0A-{T}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.1 version (2 HEXDIGLC)",
                "non-hex version",
                format!("0g-{T}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.1 version (2 HEXDIGLC)",
                "one-digit version",
                format!("0-{T}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.1 version (2 HEXDIGLC)",
                "three-digit version",
                format!("000-{T}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version cc, fifth field not after a dash",
                format!("cc-{T}-{P}-01.what-the-future-will-be-like"),
                None,
            ),
            tp(
                "L1 §3.2.4 Versioning of traceparent",
                "version cc, shorter than 55",
                format!("cc-{T}-{P}-1"),
                None,
            ),
            // Invalid: version-format of 00.
            tp(
                "L1 §3.2.2.2 version-format (00 is exactly four fields)",
                "00 with an extra field",
                format!("00-{T}-{P}-01-what-the-future-will-be-like"),
                None,
            ),
            tp(
                "L1 §3.2.2.2 version-format (00 is exactly four fields)",
                "00 with a trailing dash",
                format!("00-{T}-{P}-01-"),
                None,
            ),
            tp(
                "L1 §3.2.2.2 version-format",
                "underscore separators",
                format!("00_{T}_{P}_01"),
                None,
            ),
            tp(
                "L1 §3.2.2.2 version-format",
                "one bad separator",
                format!("00-{T}_{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.2 version-format",
                "space separators",
                format!("00 {T} {P} 01"),
                None,
            ),
            tp("L1 §3.2.2.2 version-format", "empty", "", None),
            tp("L1 §3.2.2.2 version-format", "garbage", "garbage", None),
            tp(
                "L1 §3.2.2.2 version-format (no OWS inside the value)",
                "leading space in the value",
                format!(" 00-{T}-{P}-01"),
                None,
            ),
            // Invalid: trace-id.
            tp(
                "L1 §3.2.2.3 trace-id (32 HEXDIGLC)",
                "31-digit trace id",
                format!("00-{}-{P}-01", &T[1..]),
                None,
            ),
            tp(
                "L1 §3.2.2.3 trace-id (32 HEXDIGLC)",
                "33-digit trace id",
                format!("00-{T}0-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.3 trace-id (32 HEXDIGLC)",
                "uppercase trace id",
                format!("00-{up_t}-{P}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.3 trace-id (32 HEXDIGLC)",
                "non-hex trace id",
                format!("00-{}g-{P}-01", &T[..31]),
                None,
            ),
            tp(
                "L1 §3.2.2.3 trace-id (all zeroes is invalid)",
                "all-zero trace id",
                format!("00-{}-{P}-01", "0".repeat(32)),
                None,
            ),
            // Invalid: parent-id.
            tp(
                "L1 §3.2.2.4 parent-id (16 HEXDIGLC)",
                "15-digit parent id",
                format!("00-{T}-{}-01", &P[1..]),
                None,
            ),
            tp(
                "L1 §3.2.2.4 parent-id (16 HEXDIGLC)",
                "17-digit parent id",
                format!("00-{T}-{P}0-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.4 parent-id (16 HEXDIGLC)",
                "uppercase parent id",
                format!("00-{T}-{up_p}-01"),
                None,
            ),
            tp(
                "L1 §3.2.2.4 parent-id (16 HEXDIGLC)",
                "non-hex parent id",
                format!("00-{T}-{}x-01", &P[..15]),
                None,
            ),
            tp(
                "L1 §3.2.2.4 parent-id (all zeroes is invalid)",
                "all-zero parent id",
                format!("00-{T}-{}-01", "0".repeat(16)),
                None,
            ),
            // Invalid: trace-flags.
            tp(
                "L1 §3.2.2.5 trace-flags (2 HEXDIGLC)",
                "one-digit flags",
                format!("00-{T}-{P}-1"),
                None,
            ),
            tp(
                "L1 §3.2.2.5 trace-flags (2 HEXDIGLC)",
                "three-digit flags",
                format!("00-{T}-{P}-001"),
                None,
            ),
            tp(
                "L1 §3.2.2.5 trace-flags (2 HEXDIGLC)",
                "uppercase flags",
                format!("00-{T}-{P}-0A"),
                None,
            ),
            tp(
                "L1 §3.2.2.5 trace-flags (2 HEXDIGLC)",
                "non-hex flags",
                format!("00-{T}-{P}-0g"),
                None,
            ),
        ]
    }

    #[test]
    fn traceparent_values_parse_as_the_spec_says() {
        let cases = traceparent_cases();
        assert!(cases.len() >= 40);
        for case in cases {
            let why = format!("{} [{}]: {:?}", case.name, case.spec, case.value);
            let got = W3cTraceContext::parse_traceparent(&case.value)
                .map(|(t, p, f)| (t.to_string(), p.to_string(), f.to_u8()));
            let want = case.expect.map(|(t, p, f)| (t.to_owned(), p.to_owned(), f));
            assert_eq!(got, want, "{why}");

            // The header-map fast path and the generic extractor agree with the parser.
            let mut headers = HeaderMap::new();
            if let Ok(value) = case.value.parse() {
                headers.insert(TRACEPARENT, value);
            }
            let fast = W3cTraceContext::extract_from_headers(&headers).map(|sc| {
                (
                    sc.trace_id().to_string(),
                    sc.span_id().to_string(),
                    sc.trace_flags().to_u8(),
                )
            });
            let slow = extract(&W3cTraceContext::new(), &headers);
            let slow_span = slow.span();
            let slow = slow_span.span_context();
            let slow = slow.is_valid().then(|| {
                (
                    slow.trace_id().to_string(),
                    slow.span_id().to_string(),
                    slow.trace_flags().to_u8(),
                )
            });
            if case.value.starts_with(' ') {
                // Around a header field value, OWS is not part of it (RFC 7230 §3.2).
                assert!(fast.is_some() && slow.is_some(), "{why}");
                continue;
            }
            assert_eq!(fast, want, "fast path: {why}");
            assert_eq!(slow, want, "extractor: {why}");

            // What is accepted is re-emitted as version 00 with only the known flags.
            if let Some((t, p, f)) = case.expect {
                let mut out = HeaderMap::new();
                inject(&W3cTraceContext::new(), &slow_context(&headers), &mut out);
                assert_eq!(out[TRACEPARENT], format!("00-{t}-{p}-{f:02x}"), "{why}");
            }
        }
    }

    fn slow_context(headers: &HeaderMap) -> Context {
        W3cTraceContext::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
    }

    struct HeadersCase {
        spec: &'static str,
        name: &'static str,
        traceparent: Vec<&'static str>,
        tracestate: Vec<&'static str>,
        /// `(trace flags, tracestate header)` extracted, or `None` when no context is.
        expect: Option<(u8, &'static str)>,
    }

    #[test]
    fn header_maps_are_read_as_the_spec_says() {
        let cases = [
            HeadersCase {
                spec: "L1 §3.2 Traceparent Header (test suite: test_traceparent_duplicated)",
                name: "two traceparent headers are invalid",
                traceparent: vec![VALID, VALID],
                tracestate: vec!["rojo=1"],
                expect: None,
            },
            HeadersCase {
                spec: "RFC 7230 §3.2 (test suite: test_traceparent_ows_handling)",
                name: "OWS around the traceparent field value",
                traceparent: vec![" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t"],
                tracestate: vec![],
                expect: Some((0x01, "")),
            },
            HeadersCase {
                spec: "L1 §3.3 Tracestate Header (MUST NOT parse tracestate if traceparent failed)",
                name: "tracestate ignored with an invalid traceparent",
                traceparent: vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"],
                tracestate: vec!["rojo=1"],
                expect: None,
            },
            HeadersCase {
                spec: "L1 §4.3 Processing Model (tracestate without traceparent is discarded)",
                name: "tracestate alone",
                traceparent: vec![],
                tracestate: vec!["rojo=1"],
                expect: None,
            },
            HeadersCase {
                spec: "L1 §3.3 Tracestate Header (tracestate failure MUST NOT affect traceparent)",
                name: "invalid tracestate, valid traceparent",
                traceparent: vec![VALID],
                tracestate: vec!["Rojo=1"],
                expect: Some((0x01, "")),
            },
            HeadersCase {
                spec: "L1 §3.3.1.4 Combined Header Value",
                name: "several tracestate headers combine in order",
                traceparent: vec![VALID],
                tracestate: vec![
                    "rojo=00f067aa0ba902b7",
                    "",
                    "congo=t61rcWkgMzE, ",
                    "fw529a3039@dt=x",
                ],
                expect: Some((
                    0x01,
                    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,fw529a3039@dt=x",
                )),
            },
            HeadersCase {
                spec: "L2 §3.3.1.4 Combined Header Value; §3.3.1.3 list (duplicates: the first is kept)",
                name: "one key in two headers",
                traceparent: vec![VALID],
                tracestate: vec!["rojo=1", "rojo=2"],
                expect: Some((0x01, "rojo=1")),
            },
        ];
        for case in cases {
            let why = format!("{} [{}]", case.name, case.spec);
            let mut headers = HeaderMap::new();
            for v in &case.traceparent {
                headers.append(TRACEPARENT, v.parse().expect("header value"));
            }
            for v in &case.tracestate {
                headers.append(TRACESTATE, v.parse().expect("header value"));
            }
            let fast = W3cTraceContext::extract_from_headers(&headers)
                .map(|sc| (sc.trace_flags().to_u8(), sc.trace_state().header()));
            let slow = slow_context(&headers);
            let slow_span = slow.span();
            let slow = slow_span.span_context();
            let slow = slow
                .is_valid()
                .then(|| (slow.trace_flags().to_u8(), slow.trace_state().header()));
            let want = case.expect.map(|(f, s)| (f, s.to_owned()));
            assert_eq!(fast, want, "fast path: {why}");
            assert_eq!(slow, want, "extractor: {why}");
        }
    }

    #[test]
    fn a_tracestate_header_that_is_not_visible_ascii_is_discarded_whole() {
        // L1 §3.3.1.3.2 Value: only %x20-7E.
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACESTATE, "rojo=1".parse().expect("valid"));
        headers.append(
            TRACESTATE,
            HeaderValue::from_bytes(b"congo=caf\xc3\xa9")
                .expect("obs-text is a valid header value"),
        );
        let sc = W3cTraceContext::extract_from_headers(&headers).expect("traceparent is valid");
        assert_eq!(sc.trace_state().header(), "");
    }

    #[test]
    fn traceparent_is_written_as_the_ids_display_writes_it() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for flags in [0_u8, 1, 2, 3, 0x0f, 0xa0, 0xff] {
            for _ in 0..200 {
                let trace_id = TraceId::from(u128::from(next()) << 64 | u128::from(next()));
                let span_id = SpanId::from(next());
                let value = traceparent_value(trace_id, span_id, flags);
                assert_eq!(value, format!("00-{trace_id}-{span_id}-{flags:02x}"));
                assert_eq!(value.len(), value.capacity(), "taken over as it is");
            }
        }
        let zero = traceparent_value(TraceId::INVALID, SpanId::INVALID, 0);
        assert_eq!(zero, format!("00-{}-{}-00", "0".repeat(32), "0".repeat(16)));
    }

    fn context(flags: u8, state: TraceState) -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex(T).expect("hex"),
            SpanId::from_hex(P).expect("hex"),
            TraceFlags::new(flags),
            false,
            state,
        );
        Context::new().with_remote_span_context(sc)
    }

    fn injected(cx: &Context) -> (String, Option<String>) {
        let mut out = HeaderMap::new();
        inject(&W3cTraceContext::new(), cx, &mut out);
        (
            out[TRACEPARENT].to_str().expect("ascii").to_owned(),
            out.get(TRACESTATE)
                .map(|v| v.to_str().expect("ascii").to_owned()),
        )
    }

    struct InjectCase {
        spec: &'static str,
        name: &'static str,
        flags: u8,
        /// The trace id a `RandomTraceId` marker vouches for, if any.
        marker: Option<TraceId>,
        expect_flags: &'static str,
    }

    #[test]
    fn injected_flags_keep_sampled_and_random_only() {
        let this = TraceId::from_hex(T).expect("hex");
        let cases = [
            InjectCase {
                spec: "L1 §3.2.2.5.1 Sampled flag",
                name: "sampled",
                flags: 0x01,
                marker: None,
                expect_flags: "01",
            },
            InjectCase {
                spec: "L1 §3.2.2.5.1 Sampled flag",
                name: "not sampled",
                flags: 0x00,
                marker: None,
                expect_flags: "00",
            },
            InjectCase {
                spec: "L2 §3.2.2.5.2 Random Trace ID Flag",
                name: "random kept",
                flags: 0x03,
                marker: None,
                expect_flags: "03",
            },
            InjectCase {
                spec: "L1 §3.2.2.5.2 Other Flags (MUST set to zero)",
                name: "unknown bits zeroed",
                flags: 0xfd,
                marker: None,
                expect_flags: "01",
            },
            InjectCase {
                spec: "L2 §3.2.2.5.2 Random Trace ID Flag",
                name: "marker sets random on a sampled root",
                flags: 0x01,
                marker: Some(this),
                expect_flags: "03",
            },
            InjectCase {
                spec: "L2 §3.2.2.5.2 Random Trace ID Flag",
                name: "marker sets random on an unsampled root",
                flags: 0x00,
                marker: Some(this),
                expect_flags: "02",
            },
            InjectCase {
                spec: "L2 §3.2.2.5.2 Random Trace ID Flag (only for a random trace id)",
                name: "marker for another trace is ignored",
                flags: 0x01,
                marker: Some(TraceId::from(9)),
                expect_flags: "01",
            },
        ];
        for case in cases {
            let mut cx = context(case.flags, TraceState::NONE);
            if let Some(trace_id) = case.marker {
                cx = cx.with_value(RandomTraceId::new(trace_id));
            }
            let (traceparent, _) = injected(&cx);
            assert_eq!(
                traceparent,
                format!("00-{T}-{P}-{}", case.expect_flags),
                "{} [{}]",
                case.name,
                case.spec
            );
        }
    }

    #[test]
    fn mark_vouches_for_new_roots_and_random_parents_only() {
        let child = context(0x01, TraceState::NONE);
        let cases = [
            (
                "L2 §3.2.2.5.2 Random Trace ID Flag",
                "no parent: new random root",
                Context::new(),
                true,
            ),
            (
                "L2 §3.2.2.5.2 Random Trace ID Flag",
                "parent with random",
                context(0x02, TraceState::NONE),
                true,
            ),
            (
                "L2 §3.2.2.5.2 Random Trace ID Flag",
                "parent without random",
                context(0x01, TraceState::NONE),
                false,
            ),
        ];
        for (spec, name, parent, marked) in cases {
            let cx = RandomTraceId::mark(&parent, child.clone());
            assert_eq!(
                cx.get::<RandomTraceId>().is_some(),
                marked,
                "{name} [{spec}]"
            );
            assert_eq!(injected(&cx).0.ends_with("-03"), marked, "{name} [{spec}]");
        }
    }

    #[test]
    fn injected_tracestate_is_valid_truncated_and_never_empty() {
        // L1 §3.3.1.5 tracestate Limits, §3.3.1.3 list ("SHOULD avoid sending" empty headers).
        let (_, state) = injected(&context(0x01, TraceState::NONE));
        assert_eq!(state, None);
        let long = TraceState::from_key_value([("a", "x".repeat(256)), ("b", "y".repeat(256))])
            .expect("valid");
        let (_, state) = injected(&context(0x01, long));
        assert_eq!(state, Some(format!("a={}", "x".repeat(256))));
        let forwarded =
            W3cTraceState::parse(["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).expect("valid");
        let (_, state) = injected(&context(0x01, forwarded));
        assert_eq!(
            state.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
    }

    #[test]
    fn refused_tracestate_members_are_written_back_for_their_trace_only() {
        // L2 §3.3.1.3.1 Key: valid, but the `TraceState` of opentelemetry 0.33 refuses it.
        let key = format!("{}@{}", "t".repeat(120), "s".repeat(135));
        let state = format!("rojo=1,{key}=2,congo=3");
        let headers =
            crate::propagation::test_headers(&[("traceparent", VALID), ("tracestate", &state)]);
        let first_match =
            crate::propagation::propagator_from_names(["tracecontext", "b3"]).expect("valid names");
        let contexts = [
            (
                "fast path",
                crate::propagation::PropagatorSource::W3c.extract(&headers),
            ),
            ("extractor", slow_context(&headers)),
            ("first match", extract(&first_match, &headers)),
        ];
        for (path, cx) in contexts {
            assert_eq!(injected(&cx).1.as_deref(), Some(state.as_str()), "{path}");
            let held = cx.span().span_context().trace_state().clone();
            assert_eq!(held.header(), "rojo=1,congo=3", "{path}");
            // A child in the same trace (what a server or client span is) writes them back.
            let trace_id = cx.span().span_context().trace_id();
            let child = SpanContext::new(
                trace_id,
                SpanId::from(5),
                TraceFlags::SAMPLED,
                false,
                held.clone(),
            );
            let child = cx.with_remote_span_context(child);
            assert_eq!(
                injected(&child).1.as_deref(),
                Some(state.as_str()),
                "{path}"
            );
            // Another trace in the same context does not.
            let other = SpanContext::new(
                TraceId::from(9),
                SpanId::from(5),
                TraceFlags::SAMPLED,
                false,
                held,
            );
            let other = cx.with_remote_span_context(other);
            assert_eq!(
                injected(&other).1.as_deref(),
                Some("rojo=1,congo=3"),
                "{path}"
            );
        }
    }

    #[test]
    fn huge_tracestate_is_bounded_and_harmless() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, VALID.parse().expect("valid"));
        headers.append(TRACESTATE, "a=b,".repeat(50_000).parse().expect("valid"));
        headers.append(TRACESTATE, ",".repeat(100_000).parse().expect("valid"));
        headers.append(TRACESTATE, "k".repeat(100_000).parse().expect("valid"));
        let sc = W3cTraceContext::extract_from_headers(&headers).expect("traceparent is valid");
        assert_eq!(sc.trace_state().header(), "");
    }
}
