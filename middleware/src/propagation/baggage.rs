//! W3C Baggage (`baggage`).

use std::sync::OnceLock;

use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry::{Key, StringValue};

use super::BAGGAGE;
use crate::correlation::{CorrelationId, BAGGAGE_KEY};

/// Caps of the W3C Baggage specification.
const BAGGAGE_MAX_MEMBERS: usize = 64;
const BAGGAGE_MAX_BYTES: usize = 8192;
const BAGGAGE_MAX_MEMBER_BYTES: usize = 4096;

/// Parsing stops at the first member that does not end within this many bytes of header text
/// (all `baggage` headers together): the work done on a hostile request stays bounded.
const BAGGAGE_MAX_SCAN_BYTES: usize = 64 * 1024;

/// Byte classes, one lookup per byte.
const TOKEN: u8 = 1; // `tchar` (RFC 9110): allowed in a key.
const VALUE_REJECT: u8 = 2; // Rejected in a received value: `"`, `\`, space and below.
const ENCODE: u8 = 4; // Percent-encoded in a sent value: outside `baggage-octet`, and `%`.
const HEX: u8 = 8; // A hex digit.

static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut class = 0u8;
        if c.is_ascii_alphanumeric() {
            class |= TOKEN;
        }
        let mut i = 0;
        let extra = b"!#$%&'*+-.^_`|~";
        while i < extra.len() {
            if extra[i] == c {
                class |= TOKEN;
            }
            i += 1;
        }
        if c <= b' ' || c == b'"' || c == b'\\' {
            class |= VALUE_REJECT;
        }
        // `baggage-octet`: 0x21, 0x23-0x2B, 0x2D-0x3A, 0x3C-0x5B, 0x5D-0x7E; `%` is escaped too.
        let octet = c == 0x21
            || (c >= 0x23 && c <= 0x2B)
            || (c >= 0x2D && c <= 0x3A)
            || (c >= 0x3C && c <= 0x5B)
            || (c >= 0x5D && c <= 0x7E);
        if !octet || c == b'%' {
            class |= ENCODE;
        }
        if c.is_ascii_hexdigit() {
            class |= HEX;
        }
        table[b] = class;
        b += 1;
    }
    table
}

#[inline]
fn class(b: u8) -> u8 {
    CLASSES[usize::from(b)]
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The W3C Baggage propagator (`baggage` header).
///
/// Values are percent-decoded on the way in and encoded on the way out; properties are kept.
/// A malformed member is dropped alone; members over 4096 bytes, past 64 members or past 8192
/// bytes in all are dropped whole, never cut. Reading stops after 64 KiB of header text.
///
/// ```
/// use service_tracing_middleware::propagation::W3cBaggage;
/// let baggage = W3cBaggage::parse(["user=J%C3%B6rg;pii, bad member ,tier=gold"]);
/// assert_eq!(baggage.get("user").map(|v| v.as_str()), Some("Jörg"));
/// assert_eq!(baggage.get("tier").map(|v| v.as_str()), Some("gold"));
/// assert_eq!(baggage.len(), 2);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cBaggage {
    _private: (),
}

fn baggage_fields() -> &'static [String; 1] {
    static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
    FIELDS.get_or_init(|| [BAGGAGE.as_str().to_owned()])
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Narrows `start..end` of `bytes` past leading and trailing spaces and tabs.
fn trim_ows(bytes: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && bytes.get(start).copied().is_some_and(is_ows) {
        start += 1;
    }
    while end > start && bytes.get(end - 1).copied().is_some_and(is_ows) {
        end -= 1;
    }
    (start, end)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| class(b) & TOKEN != 0)
}

/// The value of a hex digit (the caller checked it is one).
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Whether `bytes[i..]` starts with `%` and two hex digits.
fn is_escape(bytes: &[u8], i: usize) -> bool {
    matches!(
        (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)),
        (Some(b'%'), Some(&h), Some(&l)) if class(h) & class(l) & HEX != 0
    )
}

/// Checks a received value (no `"`, `\`, space or control byte) and returns how many `%XX`
/// escapes it holds, or `None` when it is rejected.
fn check_value(value: &[u8]) -> Option<usize> {
    let mut escapes = 0;
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if class(b) & VALUE_REJECT != 0 {
            return None;
        }
        if b == b'%' && is_escape(value, i) {
            escapes += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(escapes)
}

/// Percent-decodes a value holding `escapes` valid escapes; a `%` not followed by two hex
/// digits stays as it is. `None` when the result is not UTF-8.
fn decode_value(value: &str, escapes: usize) -> Option<String> {
    if escapes == 0 {
        return Some(value.to_owned());
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().saturating_sub(2 * escapes));
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' && is_escape(bytes, i) {
            let (h, l) = (
                bytes.get(i + 1).copied().unwrap_or(b'0'),
                bytes.get(i + 2).copied().unwrap_or(b'0'),
            );
            out.push(hex_value(h) << 4 | hex_value(l));
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The state of one [`W3cBaggage::parse`] call.
struct Parser {
    baggage: Baggage,
    /// Bytes of accepted members, with their separators (the 8192-byte cap).
    total: usize,
    /// Bytes of header text already scanned (the 64 KiB cap).
    scanned: usize,
}

impl Parser {
    /// Parses one header value; `false` once parsing must stop.
    fn header(&mut self, header: &str) -> bool {
        let bytes = header.as_bytes();
        let budget = BAGGAGE_MAX_SCAN_BYTES.saturating_sub(self.scanned);
        let limit = bytes.len().min(budget);
        let mut start = 0;
        loop {
            if self.baggage.len() >= BAGGAGE_MAX_MEMBERS {
                return false;
            }
            // One pass over the member: its end, its first `;`, and the first `=` before it.
            let mut end = start;
            let mut eq = None;
            let mut semi = None;
            while let Some(&b) = bytes.get(end) {
                if end >= limit {
                    break;
                }
                match b {
                    b',' => break,
                    b'=' if eq.is_none() && semi.is_none() => eq = Some(end),
                    b';' if semi.is_none() => semi = Some(end),
                    _ => {}
                }
                end += 1;
            }
            if end >= limit && limit < bytes.len() && bytes.get(end) != Some(&b',') {
                // The member runs past the scan budget: it is dropped and parsing stops.
                self.scanned = BAGGAGE_MAX_SCAN_BYTES;
                return false;
            }
            self.member(header, start, end, eq, semi);
            if end >= bytes.len() {
                self.scanned += bytes.len();
                return true;
            }
            start = end + 1;
        }
    }

    /// Adds the member at `start..end` of `header` (untrimmed) if it is well-formed and fits.
    fn member(
        &mut self,
        header: &str,
        start: usize,
        end: usize,
        eq: Option<usize>,
        semi: Option<usize>,
    ) {
        let bytes = header.as_bytes();
        let (start, end) = trim_ows(bytes, start, end);
        let len = end - start;
        if len == 0 || len > BAGGAGE_MAX_MEMBER_BYTES {
            return;
        }
        let separator = usize::from(self.total > 0);
        if self.total + len + separator > BAGGAGE_MAX_BYTES {
            return;
        }
        // `=` and `;` are not blanks, so they lie inside the trimmed member.
        let Some(eq) = eq else {
            return;
        };
        let pair_end = semi.unwrap_or(end);
        let (key_start, key_end) = trim_ows(bytes, start, eq);
        let (value_start, value_end) = trim_ows(bytes, eq + 1, pair_end);
        let (Some(key), Some(value)) = (
            header.get(key_start..key_end),
            header.get(value_start..value_end),
        ) else {
            return;
        };
        if !is_token(key.as_bytes()) {
            return;
        }
        let Some(escapes) = check_value(value.as_bytes()) else {
            return;
        };
        let Some(decoded) = decode_value(value, escapes) else {
            return;
        };
        let metadata = match semi.and_then(|semi| header.get(semi + 1..end)) {
            Some(properties) => BaggageMetadata::from(properties),
            None => BaggageMetadata::default(),
        };
        let owned_key = if key == BAGGAGE_KEY {
            Key::from_static_str(BAGGAGE_KEY)
        } else {
            Key::from(key.to_owned())
        };
        let before = self.baggage.len();
        if self
            .baggage
            .insert_with_metadata(owned_key, StringValue::from(decoded), metadata)
            .is_none()
            && self.baggage.len() == before
            && self.baggage.get(key).is_none()
        {
            // Refused (a cap of the baggage itself) rather than inserted or replaced.
            return;
        }
        self.total += len + separator;
    }
}

/// Bytes `value` takes once percent-encoded.
fn encoded_len(value: &str) -> usize {
    value
        .bytes()
        .map(|b| if class(b) & ENCODE != 0 { 3 } else { 1 })
        .sum()
}

/// Appends `value` percent-encoded (upper-case hex) to `out`.
fn push_encoded(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if class(b) & ENCODE != 0 {
            // Runs end before an encoded byte and start after one: always at a char boundary.
            out.push_str(value.get(run..i).unwrap_or(""));
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
            run = i + 1;
        }
    }
    out.push_str(value.get(run..).unwrap_or(""));
}

/// One serialised member, appended to the header under construction when it fits.
struct Writer {
    out: String,
    members: usize,
}

impl Writer {
    fn push(&mut self, key: &str, value: &str, metadata: &str) {
        let mut len = key.len() + 1 + encoded_len(value);
        if !metadata.is_empty() {
            len += 1 + metadata.len();
        }
        if len > BAGGAGE_MAX_MEMBER_BYTES
            || self.members == BAGGAGE_MAX_MEMBERS
            || self.out.len() + len + 1 > BAGGAGE_MAX_BYTES
        {
            return;
        }
        if !self.out.is_empty() {
            self.out.push(',');
        }
        self.out.push_str(key);
        self.out.push('=');
        push_encoded(&mut self.out, value);
        if !metadata.is_empty() {
            self.out.push(';');
            self.out.push_str(metadata);
        }
        self.members += 1;
    }
}

impl W3cBaggage {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the values of every `baggage` header, in order.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Baggage {
        let mut parser = Parser {
            baggage: Baggage::new(),
            total: 0,
            scanned: 0,
        };
        for header in headers {
            if !parser.header(header) {
                break;
            }
        }
        parser.baggage
    }

    /// Writes baggage as a header value, or `None` when there is nothing to send.
    pub fn header_value(baggage: &Baggage) -> Option<String> {
        Self::header_value_with(baggage, None)
    }

    /// Like [`header_value`](Self::header_value), with the request's correlation id as the
    /// `correlation.id` member (replacing any other value of that key).
    pub fn header_value_with(
        baggage: &Baggage,
        correlation: Option<&CorrelationId>,
    ) -> Option<String> {
        if baggage.is_empty() && correlation.is_none() {
            return None;
        }
        let estimate = (baggage.len() + 1) * 24;
        let mut writer = Writer {
            out: String::with_capacity(estimate.min(BAGGAGE_MAX_BYTES)),
            members: 0,
        };
        for (key, (value, metadata)) in baggage {
            if correlation.is_some() && key.as_str() == BAGGAGE_KEY {
                continue;
            }
            writer.push(key.as_str(), value.as_str(), metadata.as_str());
        }
        if let Some(id) = correlation {
            writer.push(BAGGAGE_KEY, id.as_str(), "");
        }
        (!writer.out.is_empty()).then_some(writer.out)
    }
}

impl W3cBaggage {
    /// Reads `baggage` straight from a header map.
    pub fn extract_from_headers(headers: &http::HeaderMap) -> Option<Baggage> {
        let mut values = headers
            .get_all(&BAGGAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        values.peek()?;
        let baggage = Self::parse(values);
        (!baggage.is_empty()).then_some(baggage)
    }
}

impl TextMapPropagator for W3cBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        // The request's correlation id travels as the `correlation.id` member.
        let correlation = CorrelationId::from_context(cx);
        if let Some(value) = Self::header_value_with(cx.baggage(), correlation.as_ref()) {
            injector.set(BAGGAGE.as_str(), value);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get_all(BAGGAGE.as_str()) {
            Some(values) => {
                let baggage = Self::parse(values);
                if baggage.is_empty() {
                    cx.clone()
                } else {
                    cx.with_baggage(baggage)
                }
            }
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(baggage_fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_round_trips_with_encoding_and_properties() {
        let baggage = W3cBaggage::parse(["k1=a%20b%2Cc;p1=x, k2=plain"]);
        assert_eq!(baggage.get("k1").map(|v| v.as_str()), Some("a b,c"));
        let header = W3cBaggage::header_value(&baggage).expect("non-empty");
        let again = W3cBaggage::parse([header.as_str()]);
        assert_eq!(
            again.get_with_metadata("k1"),
            baggage.get_with_metadata("k1")
        );
        assert_eq!(again.get("k2").map(|v| v.as_str()), Some("plain"));
    }

    #[test]
    fn baggage_limits_drop_whole_members() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let joined = many.join(",");
        assert_eq!(
            W3cBaggage::parse([joined.as_str()]).len(),
            BAGGAGE_MAX_MEMBERS
        );

        let big = format!("big={},small=1", "x".repeat(5000));
        let baggage = W3cBaggage::parse([big.as_str()]);
        assert!(baggage.get("big").is_none());
        assert_eq!(baggage.get("small").map(|v| v.as_str()), Some("1"));

        let invalid_utf8 = W3cBaggage::parse(["a=%FF%FE,b=ok"]);
        assert!(invalid_utf8.get("a").is_none());
        assert_eq!(invalid_utf8.len(), 1);
    }
}
