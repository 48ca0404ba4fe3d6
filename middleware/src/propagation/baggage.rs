//! W3C Baggage (`baggage`).

use std::sync::{Arc, OnceLock};

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
const KEY_END: u8 = 16; // `,`, `=` or `;`: where a key ends.
const VALUE_END: u8 = 32; // `,` or `;`: where a value ends.
const OWS: u8 = 64; // Space or tab.

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
        if c == b',' || c == b'=' || c == b';' {
            class |= KEY_END;
        }
        if c == b',' || c == b';' {
            class |= VALUE_END;
        }
        if c == b' ' || c == b'\t' {
            class |= OWS;
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
/// On injection the context's correlation id is written as the last member, `correlation.id`,
/// and always has room: when the limits are reached, other members are left out for it (the
/// right-most received members, when the received text goes on as it came).
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

/// Percent-decodes a value; a `%` not followed by two hex digits stays as it is. `None` when
/// the result is not UTF-8.
fn decode_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut escapes = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' && is_escape(bytes, i) {
            escapes += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
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

/// What one pass over a member found; positions index the header.
struct Scanned {
    /// Where the member ends: its `,`, or the end of the scanned text.
    end: usize,
    /// The first `=`, when it comes before any `;`.
    eq: Option<usize>,
    /// The first `;`.
    semi: Option<usize>,
    /// The key (blanks around it aside) is a non-empty token.
    key_ok: bool,
    /// The value (blanks around it aside) holds no `"`, `\`, space or control byte.
    value_ok: bool,
    /// The value holds a `%`.
    percent: bool,
    /// No byte of the value (blanks around it aside) is one [`W3cBaggage::header_value`]
    /// percent-encodes: written back, it reads as received.
    plain: bool,
}

/// Scans the member starting at `from` once: its boundaries, and whether its key and value
/// are well-formed.
///
/// Most keys are all token bytes up to their `=`, and most values all `baggage-octet` up to
/// their `,`: a tight loop runs over those first, and the general one takes over at the
/// first other byte (a blank, an escape, a separator), in the state that loop leaves.
fn scan_member(scan: &[u8], from: usize) -> Scanned {
    let mut i = from;
    while scan.get(i).is_some_and(|&b| class(b) & TOKEN != 0) {
        i += 1;
    }
    let (mut key_ok, mut seen, mut gap) = (true, i > from, false);
    while let Some(&b) = scan.get(i) {
        let c = class(b);
        if c & KEY_END != 0 {
            break;
        }
        if c & OWS != 0 {
            gap = seen;
        } else {
            key_ok &= c & TOKEN != 0 && !gap;
            seen = true;
        }
        i += 1;
    }
    let mut found = Scanned {
        end: i,
        eq: None,
        semi: None,
        key_ok: key_ok && seen,
        value_ok: true,
        percent: false,
        plain: true,
    };
    if scan.get(i) == Some(&b'=') {
        found.eq = Some(i);
        i += 1;
        // `ENCODE` is clear only on `baggage-octet` bytes other than `%`: no separator, blank
        // or rejected byte among them.
        let value_start = i;
        while scan.get(i).is_some_and(|&b| class(b) & ENCODE == 0) {
            i += 1;
        }
        let (mut value_ok, mut seen, mut gap) = (true, i > value_start, false);
        let (mut percent, mut plain) = (false, true);
        while let Some(&b) = scan.get(i) {
            let c = class(b);
            if c & VALUE_END != 0 {
                break;
            }
            if c & OWS != 0 {
                gap = seen;
            } else {
                value_ok &= c & VALUE_REJECT == 0 && !gap;
                percent |= b == b'%';
                plain &= c & ENCODE == 0;
                seen = true;
            }
            i += 1;
        }
        found.value_ok = value_ok;
        found.percent = percent;
        found.plain = plain;
    }
    if scan.get(i) == Some(&b';') {
        found.semi = Some(i);
        i += 1;
        while let Some(&b) = scan.get(i) {
            if b == b',' {
                break;
            }
            i += 1;
        }
    }
    found.end = i;
    found
}

/// The state of one [`W3cBaggage::parse`] call.
struct Parser {
    baggage: Baggage,
    /// Bytes of accepted members, with their separators (the 8192-byte cap).
    total: usize,
    /// Bytes of header text already scanned (the 64 KiB cap).
    scanned: usize,
    /// Whether every member so far was kept exactly as written: no blanks, no malformed,
    /// refused or repeated member, escapes as [`W3cBaggage::header_value`] writes them.
    canonical: bool,
}

impl Parser {
    /// Parses one header value; `false` once parsing must stop.
    fn header(&mut self, header: &str) -> bool {
        let bytes = header.as_bytes();
        let budget = BAGGAGE_MAX_SCAN_BYTES.saturating_sub(self.scanned);
        let limit = bytes.len().min(budget);
        let scan = bytes.get(..limit).unwrap_or(bytes);
        let mut start = 0;
        loop {
            if self.baggage.len() >= BAGGAGE_MAX_MEMBERS {
                self.canonical = false;
                return false;
            }
            let found = scan_member(scan, start);
            let end = found.end;
            if end >= limit && limit < bytes.len() && bytes.get(end) != Some(&b',') {
                // The member runs past the scan budget: it is dropped and parsing stops.
                self.canonical = false;
                return false;
            }
            let exact = self.member(header, start, &found);
            self.canonical &= exact;
            if end >= bytes.len() {
                self.scanned += bytes.len();
                return true;
            }
            start = end + 1;
            if start > limit {
                // The next member starts past the scan budget.
                self.canonical = false;
                return false;
            }
        }
    }

    /// Adds the member scanned from `start` (untrimmed) if it is well-formed and fits; `true`
    /// when it was added exactly as written (what [`W3cBaggage::header_value`] writes of it).
    fn member(&mut self, header: &str, raw_start: usize, found: &Scanned) -> bool {
        let bytes = header.as_bytes();
        let (start, end) = trim_ows(bytes, raw_start, found.end);
        let len = end - start;
        if len == 0 || len > BAGGAGE_MAX_MEMBER_BYTES {
            return false;
        }
        let separator = usize::from(self.total > 0);
        if self.total + len + separator > BAGGAGE_MAX_BYTES {
            return false;
        }
        // `=` and `;` are not blanks, so they lie inside the trimmed member.
        let Some(eq) = found.eq else {
            return false;
        };
        if !found.key_ok || !found.value_ok {
            return false;
        }
        let (key_start, key_end) = trim_ows(bytes, start, eq);
        let value_bounds = (eq + 1, found.semi.unwrap_or(end));
        let (value_start, value_end) = trim_ows(bytes, value_bounds.0, value_bounds.1);
        let (Some(key), Some(value)) = (
            header.get(key_start..key_end),
            header.get(value_start..value_end),
        ) else {
            return false;
        };
        let mut exact = (start, end) == (raw_start, found.end)
            && (key_start, key_end) == (start, eq)
            && (value_start, value_end) == value_bounds;
        let decoded = if found.percent {
            match decode_value(value) {
                Some(decoded) => {
                    exact &= encodes_as(&decoded, value);
                    decoded
                }
                None => return false,
            }
        } else {
            exact &= found.plain;
            value.to_owned()
        };
        let metadata = match found.semi.and_then(|semi| header.get(semi + 1..end)) {
            Some(properties) => {
                // Kept trimmed, and written only when there is any.
                exact &= !properties.is_empty() && properties.trim() == properties;
                BaggageMetadata::from(properties)
            }
            None => BaggageMetadata::default(),
        };
        let owned_key = if key == BAGGAGE_KEY {
            Key::from_static_str(BAGGAGE_KEY)
        } else {
            Key::from(key.to_owned())
        };
        let before = self.baggage.len();
        let replaced = self
            .baggage
            .insert_with_metadata(owned_key, StringValue::from(decoded), metadata)
            .is_some();
        if !replaced && self.baggage.len() == before && self.baggage.get(key).is_none() {
            // Refused (a cap of the baggage itself) rather than inserted or replaced.
            return false;
        }
        self.total += len + separator;
        // A repeated key replaced the member before it, which the text still holds.
        exact && !replaced
    }
}

/// Whether `decoded`, percent-encoded as [`W3cBaggage::header_value`] does, is `raw`
/// (compared as it goes, nothing written).
fn encodes_as(decoded: &str, raw: &str) -> bool {
    let raw = raw.as_bytes();
    let mut at = 0;
    for &b in decoded.as_bytes() {
        if class(b) & ENCODE != 0 {
            let escape = [
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0x0F)],
            ];
            if raw.get(at..at + 3) != Some(&escape[..]) {
                return false;
            }
            at += 3;
        } else {
            if raw.get(at) != Some(&b) {
                return false;
            }
            at += 1;
        }
    }
    at == raw.len()
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
    /// Room kept for the correlation id, written last: one member of this many bytes
    /// (with its comma), or 0.
    kept: usize,
}

/// The bytes of `key=value` with a value of `value_len` bytes once percent-encoded, and
/// `;metadata` when there is some.
fn member_len(key: &str, value_len: usize, metadata: &str) -> usize {
    let mut len = key.len() + 1 + value_len;
    if !metadata.is_empty() {
        len += 1 + metadata.len();
    }
    len
}

/// The bytes of the correlation id's member, `correlation.id={id}`.
fn correlation_member_len(id: &CorrelationId) -> usize {
    member_len(BAGGAGE_KEY, encoded_len(id.as_str()), "")
}

impl Writer {
    /// A writer that keeps room for the correlation id's member, `id`, so that the members
    /// before it cannot push it past the 64-member or 8192-byte limit.
    fn keeping_room_for(out: String, id: Option<&CorrelationId>) -> Self {
        let kept = id.map_or(0, |id| correlation_member_len(id) + 1);
        Self {
            out,
            members: 0,
            kept,
        }
    }

    fn push(&mut self, key: &str, value: &str, metadata: &str) {
        let value_len = encoded_len(value);
        let len = member_len(key, value_len, metadata);
        let kept_members = usize::from(self.kept > 0);
        if len > BAGGAGE_MAX_MEMBER_BYTES
            || self.members + kept_members >= BAGGAGE_MAX_MEMBERS
            || self.out.len() + len + 1 + self.kept > BAGGAGE_MAX_BYTES
        {
            return;
        }
        if !self.out.is_empty() {
            self.out.push(',');
        }
        self.out.push_str(key);
        self.out.push('=');
        if value_len == value.len() {
            self.out.push_str(value);
        } else {
            push_encoded(&mut self.out, value);
        }
        if !metadata.is_empty() {
            self.out.push(';');
            self.out.push_str(metadata);
        }
        self.members += 1;
    }

    /// Writes the correlation id's member into the room kept for it.
    fn push_correlation(&mut self, id: &CorrelationId) {
        self.kept = 0;
        self.push(BAGGAGE_KEY, id.as_str(), "");
    }
}

impl W3cBaggage {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the values of every `baggage` header, in order.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Baggage {
        Self::parse_checked(headers).0
    }

    /// [`parse`](Self::parse), and whether the text is exactly what
    /// [`header_value`](Self::header_value) writes of the result, member order aside.
    fn parse_checked<'a>(headers: impl IntoIterator<Item = &'a str>) -> (Baggage, bool) {
        let mut parser = Parser {
            baggage: Baggage::new(),
            total: 0,
            scanned: 0,
            canonical: true,
        };
        let mut count = 0;
        for header in headers {
            count += 1;
            if !parser.header(header) {
                break;
            }
        }
        // Several headers are written as one.
        (parser.baggage, parser.canonical && count == 1)
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
        let out = String::with_capacity(estimate.min(BAGGAGE_MAX_BYTES));
        let mut writer = Writer::keeping_room_for(out, correlation);
        for (key, (value, metadata)) in baggage {
            if correlation.is_some() && key.as_str() == BAGGAGE_KEY {
                continue;
            }
            writer.push(key.as_str(), value.as_str(), metadata.as_str());
        }
        if let Some(id) = correlation {
            writer.push_correlation(id);
        }
        (!writer.out.is_empty()).then_some(writer.out)
    }
}

/// The `baggage` header as received, kept in the extracted context beside the `Baggage`
/// parsed from it when the text says exactly what that baggage holds (no blanks, no dropped
/// or repeated member, escapes as [`W3cBaggage::header_value`] writes them).
///
/// Injection writes this text back, in its received order, as long as the context's baggage
/// is that very `Baggage` (the same allocation: `parsed` keeps it alive, so no other baggage
/// can take its address while this value exists); a handler that replaces the baggage gets
/// it written member by member. Unlike a per-thread memory, this holds however many requests
/// a thread interleaves.
#[derive(Debug)]
pub(crate) struct ReceivedBaggage {
    /// The header's text, copied (a request's header value may share a buffer with the rest
    /// of its connection's reads).
    text: Arc<str>,
    /// A context holding only the parsed baggage.
    parsed: Context,
}

/// The last `baggage` header a thread read on the default formats' fast path, with the
/// context extraction made of it (see [`W3cBaggage::context_from_headers`]).
///
/// Building OpenTelemetry's `Baggage` is most of an extraction's cost, and none of it can be
/// skipped through its API: each member is one insert into a `HashMap` with SipHash that grows
/// from empty (no way to size it), and opentelemetry 0.33 checks every key byte against its
/// list of separators with a `memchr` each (callgrind, 8 members: 16.8k instructions built
/// and dropped, more than everything else an extraction and an injection do). A caller that
/// sends the same baggage again (a gateway's or a mesh's fixed members, a client's session)
/// gets the context already built: a comparison of the header's bytes and a reference count.
/// Anything else costs one comparison more.
mod recent {
    use std::cell::RefCell;
    use std::sync::Arc;

    use opentelemetry::Context;

    /// One thread's memory.
    struct Recent {
        /// The header's text, shared with the context's
        /// [`ReceivedBaggage`](super::ReceivedBaggage) when it has one.
        text: Arc<str>,
        /// The context extraction made of it: the parsed baggage, and the received text
        /// when that says exactly what the baggage holds.
        cx: Context,
    }

    thread_local! {
        static RECENT: RefCell<Option<Recent>> = const { RefCell::new(None) };
    }

    /// The context kept for a header of exactly `text`, if this thread read it last.
    pub(super) fn context_for(text: &[u8]) -> Option<Context> {
        RECENT
            .try_with(|recent| {
                let recent = recent.try_borrow().ok()?;
                let recent = recent.as_ref()?;
                (recent.text.as_bytes() == text).then(|| recent.cx.clone())
            })
            .ok()
            .flatten()
    }

    /// Keeps `text` and the context made of it as this thread's last.
    pub(super) fn keep(text: Arc<str>, cx: Context) {
        let kept = Recent { text, cx };
        // The one it replaces is dropped after the borrow ends.
        let _replaced = RECENT
            .try_with(|recent| {
                recent
                    .try_borrow_mut()
                    .ok()
                    .map(|mut recent| recent.replace(kept))
            })
            .ok()
            .flatten()
            .flatten();
    }
}

impl W3cBaggage {
    /// A context holding the baggage of `headers`' one `baggage` header (`None` when there is
    /// none, or it holds no valid member), with the received text beside it when that says
    /// exactly what the baggage holds ([`ReceivedBaggage`]), remembered per thread: see
    /// [`recent`]. Several `baggage` headers, or one over 8192 bytes, are parsed as before and
    /// neither kept as text nor remembered.
    pub(crate) fn context_from_headers(headers: &http::HeaderMap) -> Option<Context> {
        let mut values = headers.get_all(&BAGGAGE).iter();
        let first = values.next()?;
        let alone = values.next().is_none();
        if !alone || first.len() > BAGGAGE_MAX_BYTES {
            return Self::extract_from_headers(headers)
                .map(|baggage| Context::new().with_baggage(baggage));
        }
        if let Some(cx) = recent::context_for(first.as_bytes()) {
            return Some(cx);
        }
        let text = first.to_str().ok()?;
        let (baggage, canonical) = Self::parse_checked([text]);
        if baggage.is_empty() {
            return None;
        }
        let text: Arc<str> = Arc::from(text);
        let parsed = Context::new().with_baggage(baggage);
        let cx = if canonical {
            parsed.with_value(ReceivedBaggage {
                text: Arc::clone(&text),
                parsed: parsed.clone(),
            })
        } else {
            parsed
        };
        recent::keep(text, cx.clone());
        Some(cx)
    }

    /// The header value for `cx`'s `baggage` and `correlation` written from the received
    /// text, when `cx` holds a [`ReceivedBaggage`] and `baggage` is the one parsed from it;
    /// the correlation id is added as [`header_value_with`](Self::header_value_with) adds it.
    /// `None`: write it member by member.
    fn received_value(
        cx: &Context,
        baggage: &Baggage,
        correlation: Option<&CorrelationId>,
    ) -> Option<String> {
        let received = cx
            .get::<ReceivedBaggage>()
            .filter(|received| std::ptr::eq(received.parsed.baggage(), baggage))?;
        let text = &*received.text;
        let Some(id) = correlation else {
            return Some(String::from(text));
        };
        match baggage.get(BAGGAGE_KEY) {
            Some(value) if value.as_str() == id.as_str() => Some(String::from(text)),
            // Another value would have to be taken out of the text: member by member.
            Some(_) => None,
            None => {
                let member = correlation_member_len(id);
                if member > BAGGAGE_MAX_MEMBER_BYTES {
                    return Some(String::from(text));
                }
                // The correlation id goes in first: received members are left out from the
                // right until it fits the limits. The text is canonical, so every `,`
                // separates two members.
                let mut text = text;
                let mut members = baggage.len();
                while members + 1 > BAGGAGE_MAX_MEMBERS
                    || text.len() + 1 + member > BAGGAGE_MAX_BYTES
                {
                    let end = text.rfind(',').unwrap_or(0);
                    text = text.get(..end).unwrap_or("");
                    members = members.saturating_sub(1);
                }
                // Room was made above: nothing to keep back.
                let mut writer = Writer {
                    out: String::with_capacity(text.len() + 1 + member),
                    members,
                    kept: 0,
                };
                writer.out.push_str(text);
                writer.push(BAGGAGE_KEY, id.as_str(), "");
                Some(writer.out)
            }
        }
    }

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
        let baggage = cx.baggage();
        let value = Self::received_value(cx, baggage, correlation.as_ref())
            .or_else(|| Self::header_value_with(baggage, correlation.as_ref()));
        if let Some(value) = value {
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

    fn baggage_headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(BAGGAGE, value.parse().expect("valid"));
        headers
    }

    fn injected(cx: &Context) -> Option<String> {
        let mut out = http::HeaderMap::new();
        crate::propagation::inject(&W3cBaggage::new(), cx, &mut out);
        out.get(BAGGAGE)
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    const EIGHT: &str = "h=8,g=7,f=6,e=5,d=4,c=3,b=2,a=1";

    #[test]
    fn a_header_read_again_on_a_thread_shares_the_baggage_built_before() {
        let first = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        let again = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        assert!(std::ptr::eq(first.baggage(), again.baggage()));
        assert_eq!(again.baggage().len(), 8);
        let other = W3cBaggage::context_from_headers(&baggage_headers("a=2")).expect("baggage");
        assert!(!std::ptr::eq(first.baggage(), other.baggage()));
        assert_eq!(other.baggage().get("a").map(|v| v.as_str()), Some("2"));
        // Only the last header is remembered; the first is read anew, and the same.
        let third = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        assert!(!std::ptr::eq(first.baggage(), third.baggage()));
        assert_eq!(members(third.baggage()), members(first.baggage()));
        // Nothing valid, several headers: as before, and not remembered.
        assert!(W3cBaggage::context_from_headers(&baggage_headers("bad")).is_none());
        let mut two = baggage_headers("a=1");
        two.append(BAGGAGE, "b=2".parse().expect("valid"));
        let cx = W3cBaggage::context_from_headers(&two).expect("baggage");
        assert_eq!(cx.baggage().len(), 2);
        let cx2 = W3cBaggage::context_from_headers(&two).expect("baggage");
        assert!(!std::ptr::eq(cx.baggage(), cx2.baggage()));
    }

    #[test]
    fn the_received_text_is_injected_when_the_baggage_is_the_one_received() {
        let cx = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        // In the order received: member by member, the order would be the hash map's.
        assert_eq!(injected(&cx).as_deref(), Some(EIGHT));
        let with_value = cx.with_value(42_u8);
        assert_eq!(
            injected(&with_value).as_deref(),
            Some(EIGHT),
            "the same baggage"
        );

        // The correlation id joins it, or it is already there.
        let id = CorrelationId::parse("order-42").expect("valid");
        let with_id = cx.with_value(id.clone());
        assert_eq!(
            injected(&with_id),
            Some(format!("{EIGHT},correlation.id=order-42"))
        );
        let carried = "x=1,correlation.id=order-42,y=2";
        let cx = W3cBaggage::context_from_headers(&baggage_headers(carried)).expect("baggage");
        assert_eq!(injected(&cx.with_value(id)).as_deref(), Some(carried));
        let other = CorrelationId::parse("other").expect("valid");
        let replaced = injected(&cx.with_value(other)).expect("members");
        assert_eq!(
            replaced
                .split(',')
                .collect::<std::collections::BTreeSet<_>>(),
            ["x=1", "y=2", "correlation.id=other"].into()
        );
    }

    #[test]
    fn a_context_read_before_other_headers_still_sends_its_received_text() {
        // Requests interleaved on one thread: each context keeps its own received text.
        let first = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        let second =
            W3cBaggage::context_from_headers(&baggage_headers("z=9,y=8,x=7")).expect("baggage");
        let _third = W3cBaggage::context_from_headers(&baggage_headers("w=1")).expect("b");
        // In the order received: member by member, the order would be the hash map's.
        assert_eq!(injected(&first).as_deref(), Some(EIGHT));
        assert_eq!(injected(&second).as_deref(), Some("z=9,y=8,x=7"));
        let id = CorrelationId::parse("order-42").expect("valid");
        assert_eq!(
            injected(&first.with_value(id)),
            Some(format!("{EIGHT},correlation.id=order-42"))
        );
        // A baggage put in its place, even once the first is gone, is its own.
        let replaced = {
            let mut other = Baggage::new();
            let _ = other.insert("only", "1");
            first.with_baggage(other)
        };
        drop(first);
        assert_eq!(injected(&replaced).as_deref(), Some("only=1"));
    }

    #[test]
    fn other_baggage_and_text_that_says_more_are_written_member_by_member() {
        let cx = W3cBaggage::context_from_headers(&baggage_headers(EIGHT)).expect("baggage");
        let mut changed = Baggage::new();
        let _ = changed.insert("only", "1");
        assert_eq!(
            injected(&cx.with_baggage(changed)).as_deref(),
            Some("only=1")
        );
        // Blanks, a malformed member, a lowercase escape: what was kept is written.
        let loose = " a=1 ,bad,b=x%2cy;p ";
        let cx = W3cBaggage::context_from_headers(&baggage_headers(loose)).expect("baggage");
        let written = injected(&cx).expect("members");
        assert_eq!(
            written
                .split(',')
                .collect::<std::collections::BTreeSet<_>>(),
            ["a=1", "b=x%2Cy;p"].into()
        );
        // A context still holding a baggage the thread no longer remembers.
        let first = W3cBaggage::context_from_headers(&baggage_headers("k=1,j=2")).expect("b");
        let _next = W3cBaggage::context_from_headers(&baggage_headers("z=9")).expect("b");
        let written = injected(&first).expect("members");
        assert_eq!(
            written
                .split(',')
                .collect::<std::collections::BTreeSet<_>>(),
            ["k=1", "j=2"].into()
        );
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

    use std::collections::BTreeMap;

    use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

    type Members = BTreeMap<String, (String, String)>;

    fn members(baggage: &Baggage) -> Members {
        baggage
            .iter()
            .map(|(k, (v, m))| {
                (
                    k.as_str().to_owned(),
                    (v.as_str().to_owned(), m.as_str().to_owned()),
                )
            })
            .collect()
    }

    fn one(header: &str) -> Members {
        members(&W3cBaggage::parse([header]))
    }

    fn member(key: &str, value: &str, metadata: &str) -> (String, (String, String)) {
        (key.to_owned(), (value.to_owned(), metadata.to_owned()))
    }

    /// The implementation this one replaced, kept as the reference for its behaviour.
    fn reference_parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Baggage {
        fn is_token(s: &str) -> bool {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        }
        let mut baggage = Baggage::new();
        let mut total = 0usize;
        for header in headers {
            for member in header.split(',') {
                if baggage.len() >= BAGGAGE_MAX_MEMBERS {
                    return baggage;
                }
                let member = member.trim_matches([' ', '\t']);
                if member.is_empty() || member.len() > BAGGAGE_MAX_MEMBER_BYTES {
                    continue;
                }
                if total + member.len() + usize::from(total > 0) > BAGGAGE_MAX_BYTES {
                    continue;
                }
                let (pair, properties) = match member.split_once(';') {
                    Some((pair, props)) => (pair, props.trim_matches([' ', '\t'])),
                    None => (member, ""),
                };
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let (key, value) = (
                    key.trim_matches([' ', '\t']),
                    value.trim_matches([' ', '\t']),
                );
                if !is_token(key) || value.bytes().any(|b| b == b'"' || b == b'\\' || b <= b' ') {
                    continue;
                }
                let Ok(decoded) = percent_decode_str(value).decode_utf8() else {
                    continue;
                };
                let metadata = BaggageMetadata::from(properties.to_owned());
                if baggage
                    .insert_with_metadata(key.to_owned(), decoded.into_owned(), metadata)
                    .is_none()
                    && baggage.get(key).is_none()
                {
                    continue;
                }
                total += member.len() + usize::from(total > 0);
            }
        }
        baggage
    }

    /// The replaced serialiser, member by member.
    fn reference_header_value(
        baggage: &Baggage,
        correlation: Option<&CorrelationId>,
    ) -> Option<String> {
        const ENCODE: &AsciiSet = &CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b',')
            .add(b';')
            .add(b'\\')
            .add(b'%');
        let mut out = String::new();
        let mut members = 0;
        let ours = correlation.map(|id| {
            (
                BAGGAGE_KEY.to_owned(),
                id.as_str().to_owned(),
                String::new(),
            )
        });
        let theirs = baggage
            .iter()
            .filter(|(key, _)| correlation.is_none() || key.as_str() != BAGGAGE_KEY)
            .map(|(k, (v, m))| {
                (
                    k.as_str().to_owned(),
                    v.as_str().to_owned(),
                    m.as_str().to_owned(),
                )
            });
        for (key, value, metadata) in theirs.chain(ours) {
            let mut member = format!("{}={}", key, utf8_percent_encode(&value, ENCODE));
            if !metadata.is_empty() {
                member.push(';');
                member.push_str(&metadata);
            }
            if member.len() > BAGGAGE_MAX_MEMBER_BYTES
                || members == BAGGAGE_MAX_MEMBERS
                || out.len() + member.len() + 1 > BAGGAGE_MAX_BYTES
            {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&member);
            members += 1;
        }
        (!out.is_empty()).then_some(out)
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "k",
        "Key",
        "correlation.id",
        "x-y_z",
        "=",
        "=",
        ";",
        ";",
        ",",
        ",",
        " ",
        "\t",
        "%",
        "%2",
        "%20",
        "%2C",
        "%zz",
        "%C3%B6",
        "%FF",
        "%e2%82%ac",
        "\"",
        "\\",
        "\u{7f}",
        "ö",
        "€",
        "\u{a0}",
        "\u{3000}",
        "p",
        "p=1",
        "v",
        "1",
        "(",
        "@",
        "é=1",
        "\u{1}",
        "~!#$&'*+-.^`|",
    ];

    fn random_header(rng: &mut Rng, pieces: usize) -> String {
        (0..pieces)
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect()
    }

    #[test]
    fn parse_matches_the_reference_on_generated_headers() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut exact = 0;
        for round in 0..20_000 {
            let count = 1 + rng.below(3);
            let headers: Vec<String> = (0..count)
                .map(|_| {
                    let pieces = rng.below(if round % 100 == 0 { 4000 } else { 40 });
                    random_header(&mut rng, pieces)
                })
                .collect();
            // The reference has no scan cap: stay below it.
            assert!(headers.iter().map(String::len).sum::<usize>() < BAGGAGE_MAX_SCAN_BYTES);
            let refs = || headers.iter().map(String::as_str);
            let ours = W3cBaggage::parse(refs());
            let expected = reference_parse(refs());
            assert_eq!(members(&ours), members(&expected), "headers: {headers:?}");
            assert_eq!(
                W3cBaggage::header_value(&ours),
                reference_header_value(&ours, None),
                "headers: {headers:?}"
            );
            let id = CorrelationId::generate();
            assert_eq!(
                W3cBaggage::header_value_with(&ours, Some(&id)),
                reference_header_value(&ours, Some(&id)),
                "headers: {headers:?}"
            );
            // Text said to be exact is what injection would write, member order aside.
            if W3cBaggage::parse_checked(refs()).1 {
                let written = W3cBaggage::header_value(&ours).unwrap_or_default();
                let sorted = |text: &str| {
                    let mut members: Vec<String> = text.split(',').map(str::to_owned).collect();
                    members.sort();
                    members
                };
                assert_eq!(
                    sorted(&headers[0]),
                    sorted(&written),
                    "headers: {headers:?}"
                );
                exact += 1;
            }
        }
        assert!(exact > 0, "the generator makes exact headers too");
    }

    #[test]
    fn parse_matches_the_reference_at_the_limits() {
        let long_value = "v".repeat(4090);
        let cases = [
            (0..100)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(","),
            (0..3)
                .map(|i| format!("k{i}={long_value}"))
                .collect::<Vec<_>>()
                .join(","),
            format!("a={},b=1", "x".repeat(4094)),
            format!("a={},b=1", "x".repeat(4095)),
            format!(" a={} ,b=1", "x".repeat(4094)),
            (0..70)
                .map(|i| format!("k{}=v", i % 5))
                .collect::<Vec<_>>()
                .join(","),
            (0..9)
                .map(|i| format!("k{}={}", i % 2, "y".repeat(1500 + i)))
                .collect::<Vec<_>>()
                .join(","),
        ];
        for case in &cases {
            assert_eq!(one(case), members(&reference_parse([case.as_str()])));
        }
    }

    #[test]
    fn blanks_around_members_keys_values_and_properties_are_trimmed() {
        let expected: Members = [member("k", "v", "p=1"), member("b", "2", "")].into();
        assert_eq!(one(" \t k \t = \t v \t ; \t p=1 \t ,\tb=2\t"), expected);
        assert_eq!(one("k=v;p=1,b = 2"), expected);
        // Blanks inside a key or a value make the member malformed; other members stay.
        assert_eq!(one("k k=v,b=2"), [member("b", "2", "")].into());
        assert_eq!(one("k=v v,b=2"), [member("b", "2", "")].into());
        // Only spaces and tabs are optional whitespace.
        assert_eq!(one("\u{a0}k=v,b=2"), [member("b", "2", "")].into());
    }

    #[test]
    fn incomplete_or_invalid_escapes_stay_literal() {
        assert_eq!(one("a=abc%"), [member("a", "abc%", "")].into());
        assert_eq!(one("a=%4"), [member("a", "%4", "")].into());
        assert_eq!(
            one("a=%zz,b=%2z"),
            [member("a", "%zz", ""), member("b", "%2z", "")].into()
        );
        assert_eq!(one("a=%41%4a%4A%"), [member("a", "AJJ%", "")].into());
        // An escape that decodes to part of a character drops its member alone.
        assert_eq!(one("a=%C3,b=%C3%B6"), [member("b", "ö", "")].into());
    }

    #[test]
    fn properties_are_kept_verbatim_and_equals_signs_after_them_do_not_count() {
        assert_eq!(
            one("k=v;p=q=r;flag ; x=1,k2=a=b"),
            [
                member("k", "v", "p=q=r;flag ; x=1"),
                member("k2", "a=b", "")
            ]
            .into()
        );
        // The `=` must come before the first `;`.
        assert_eq!(one("k;p=v,b=2"), [member("b", "2", "")].into());
        // An empty property list is no metadata.
        assert_eq!(one("k=v;"), [member("k", "v", "")].into());
        assert_eq!(one("k=v; \t"), [member("k", "v", "")].into());
    }

    #[test]
    fn empty_and_blank_members_are_skipped() {
        assert_eq!(
            one(",,a=1,, ,\t,b=2,"),
            [member("a", "1", ""), member("b", "2", "")].into()
        );
        assert!(W3cBaggage::parse(["", " , ,"]).is_empty());
        assert_eq!(
            one("=v,k=,b=2"),
            [member("k", "", ""), member("b", "2", "")].into()
        );
    }

    #[test]
    fn scanning_stops_after_64_kib_of_header_text() {
        let filler = format!("{},", "junk ".repeat(1000));
        let mut header = String::new();
        while header.len() + filler.len() <= BAGGAGE_MAX_SCAN_BYTES - 4 {
            header.push_str(&filler);
        }
        let fits = format!("{header}a=1");
        assert!(fits.len() <= BAGGAGE_MAX_SCAN_BYTES);
        assert_eq!(one(&fits), [member("a", "1", "")].into());

        let past = format!("{header}{filler}a=1");
        assert!(W3cBaggage::parse([past.as_str()]).is_empty());

        // A member cut by the cap is dropped whole, never shortened.
        let padding = "x".repeat(BAGGAGE_MAX_SCAN_BYTES - 2);
        let cut = format!("{padding},a=12345");
        assert!(W3cBaggage::parse([cut.as_str()]).is_empty());
        // A member ending exactly at the cap still counts.
        let exact = format!("{},a=1", "x".repeat(BAGGAGE_MAX_SCAN_BYTES - 4));
        assert_eq!(exact.len(), BAGGAGE_MAX_SCAN_BYTES);
        assert_eq!(one(&exact), [member("a", "1", "")].into());
        let at_cap = format!("{exact},b=2");
        assert_eq!(one(&at_cap), [member("a", "1", "")].into());
        let before_cap = format!("{},a=1,b=2", "x".repeat(BAGGAGE_MAX_SCAN_BYTES - 5));
        assert_eq!(one(&before_cap), [member("a", "1", "")].into());

        // The cap covers all headers together.
        let baggage = W3cBaggage::parse([header.as_str(), filler.as_str(), "a=1"]);
        assert!(baggage.is_empty());
        let baggage = W3cBaggage::parse(["a=1", header.as_str(), filler.as_str(), "b=2"]);
        assert_eq!(members(&baggage), [member("a", "1", "")].into());
    }

    #[test]
    fn values_are_encoded_outside_baggage_octet_and_percent() {
        let all: String = (1u8..0x80).map(char::from).chain(['ö', '€']).collect();
        let mut baggage = Baggage::new();
        let _ = baggage.insert_with_metadata("k", all.clone(), "p=1");
        let header = W3cBaggage::header_value(&baggage).expect("one member");
        assert_eq!(Some(header.clone()), reference_header_value(&baggage, None));
        assert!(header.starts_with("k=%01%02"));
        assert!(header.contains("%1F%20!%22#$%25&'()*+%2C-./0"));
        assert!(header.contains(":%3B<=>?@A"));
        assert!(header.contains("Z[%5C]^_`a"));
        assert!(header.contains("z{|}~%7F%C3%B6"));
        assert!(header.ends_with("%C3%B6%E2%82%AC;p=1"));
        assert_eq!(one(&header), [member("k", &all, "p=1")].into());
    }

    #[test]
    fn the_correlation_id_is_written_last_and_replaces_any_other() {
        let baggage = W3cBaggage::parse(["correlation.id=theirs,a=1"]);
        let id = CorrelationId::generate();
        let header = W3cBaggage::header_value_with(&baggage, Some(&id)).expect("members");
        assert_eq!(header, format!("a=1,correlation.id={}", id.as_str()));
        assert_eq!(
            W3cBaggage::header_value(&baggage).map(|h| h.len()),
            Some("correlation.id=theirs,a=1".len())
        );
        assert_eq!(
            W3cBaggage::header_value_with(&Baggage::new(), Some(&id)),
            Some(format!("correlation.id={}", id.as_str()))
        );
        assert_eq!(W3cBaggage::header_value(&Baggage::new()), None);
    }

    #[test]
    fn a_full_baggage_keeps_room_for_the_correlation_id() {
        let id = CorrelationId::parse("order-42").expect("valid");
        let ours = "correlation.id=order-42";
        let count = |header: &str| header.split(',').count();

        // 64 members received: the right-most one makes room, the others keep their order.
        let full: Vec<String> = (0..64).map(|i| format!("k{i}={i}")).collect();
        let text = full.join(",");
        let cx = W3cBaggage::context_from_headers(&baggage_headers(&text)).expect("baggage");
        assert_eq!(cx.baggage().len(), 64);
        let header = injected(&cx.with_value(id.clone())).expect("members");
        assert_eq!(header, format!("{},{ours}", full[..63].join(",")));

        // Member by member (a baggage the handler built): 64 members in all, ours among them.
        let mut built = Baggage::new();
        for i in 0..64 {
            let _ = built.insert(format!("k{i}"), i.to_string());
        }
        let header = W3cBaggage::header_value_with(&built, Some(&id)).expect("members");
        assert_eq!(count(&header), 64);
        assert!(header.ends_with(&format!(",{ours}")), "{header}");

        // Near 8192 bytes: a received member goes so that the id fits.
        let big = |c: char| format!("{c}={}", c.to_string().repeat(4080));
        let text = format!("{},{},small=1", big('a'), big('b'));
        assert!(text.len() + 1 + ours.len() > BAGGAGE_MAX_BYTES);
        let cx = W3cBaggage::context_from_headers(&baggage_headers(&text)).expect("baggage");
        let header = injected(&cx.with_value(id.clone())).expect("members");
        assert_eq!(header, format!("{},{},{ours}", big('a'), big('b')));
        assert!(header.len() <= BAGGAGE_MAX_BYTES);
        let mut built = Baggage::new();
        for c in ['a', 'b', 'c'] {
            let _ = built.insert(c.to_string(), c.to_string().repeat(2726));
        }
        assert_eq!(
            count(&W3cBaggage::header_value(&built).expect("members")),
            3
        );
        let header = W3cBaggage::header_value_with(&built, Some(&id)).expect("members");
        assert!(header.len() <= BAGGAGE_MAX_BYTES);
        assert_eq!(count(&header), 3, "two of the three, and the id");
        assert!(header.ends_with(&format!(",{ours}")), "{header}");
    }

    #[test]
    fn oversized_members_are_dropped_whole_when_writing() {
        let mut baggage = Baggage::new();
        let _ = baggage.insert("big", "%".repeat(2000));
        let _ = baggage.insert("small", "1");
        assert_eq!(
            W3cBaggage::header_value(&baggage).as_deref(),
            Some("small=1")
        );
    }
}
