//! W3C `tracestate`, parsed and written to the letter of the current Trace Context text.
//!
//! Section numbers below are those of W3C Trace Context Level 2, whose `tracestate` section
//! keeps Level 1's numbering. The key grammar is the current one:
//! `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, with `@` among the key characters; the older
//! `tenant@system` split (tenant up to 241 characters, system up to 14, one `@`) is gone.
//!
//! # Members `TraceState` cannot hold
//!
//! The state travels inside the OpenTelemetry [`SpanContext`](opentelemetry::trace::SpanContext)
//! as a [`TraceState`], and opentelemetry 0.33's `TraceState` still checks keys against the old
//! grammar: it refuses a key with two `@`, or with an `@` followed by 14 characters or more, or
//! by a character other than a letter or digit. Dropping those members would break the state
//! of the vendors that wrote them at the first hop. So, when extraction meets such a member,
//! the propagator also puts a [`WireTraceState`] in the extracted context: every member as
//! received, in order, each marked as held by the `TraceState` or not, together with the trace
//! id it belongs to. The `TraceState` holds what it can, and goes on to the server span, its
//! children and the exported spans as usual.
//!
//! On injection, when the context carries a `WireTraceState` for the trace being injected, the
//! written `tracestate` is the span's `TraceState` with the members it could not hold put back
//! where they were received: entries added or updated since extraction (as §3.5 asks, at the
//! front) first, then the received members in their order, less those the `TraceState` no
//! longer holds unchanged (deleted or updated). The members the `TraceState` could not hold
//! cannot be changed or deleted through it, so they are always re-emitted; they count towards
//! the 32-member limit (the right-most members go first) and the 512-character truncation like
//! the others.
//!
//! Cost: with no `tracestate`, or with only members `TraceState` holds, nothing more is
//! allocated than before and injection adds one context lookup (callgrind, extract + inject:
//! 6,062 -> 6,107 instructions without `tracestate`, 12,220 -> 12,181 with two members); the
//! `WireTraceState` (two allocations) exists only for a header holding a member `TraceState`
//! refuses (about 34k instructions with one such member, where the member used to be lost).
//!
//! Limitation: exported spans carry the `TraceState`, so the members it cannot hold are
//! propagated to the next hop but do not appear in the `trace_state` of exported spans.

use std::sync::Arc;

use opentelemetry::trace::{TraceId, TraceState};

/// §3.3.1.3 list: "There can be a maximum of 32 list-members in a list."
const MAX_MEMBERS: usize = 32;
/// §3.3.1.5 tracestate Limits: "Vendors SHOULD propagate at least 512 characters of a combined
/// header" (commas included, OWS not).
const MAX_HEADER_LEN: usize = 512;
/// §3.3.1.5 tracestate Limits: "Entries larger than 128 characters long SHOULD be removed first."
const LARGE_MEMBER_LEN: usize = 128;
/// §3.3.1.3.1 Key: `( lcalpha / DIGIT ) 0*255 ( keychar )`, at most 256 characters.
const MAX_KEY_LEN: usize = 256;
/// §3.3.1.3.2 value: `0*255(chr) nblk-chr`.
const MAX_VALUE_LEN: usize = 256;

/// The W3C `tracestate` header: parsing, validation and serialisation (Trace Context §3.3),
/// onto [`opentelemetry::trace::TraceState`].
///
/// - list-members are separated by `,` with optional spaces and tabs around them; empty
///   list-members are allowed and skipped; several `tracestate` headers are combined in order;
/// - keys and values follow the current grammar exactly: keys of 1–256 characters,
///   `( lcalpha / DIGIT ) 0*255 ( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`; values of
///   1–256 printable ASCII characters without `,` or `=` that do not end in a space;
/// - a key repeated later in the list is ignored and its first entry kept (the text lets a
///   vendor discard duplicates it did not write; it does not make the header invalid);
/// - an invalid list-member or more than 32 list-members (repeats counted) make the whole
///   header invalid, and it is discarded (§4.3 allows this, and the W3C test suite expects it);
/// - on the way out, entries stay in order and the value is cut to 512 characters by removing
///   whole entries: those over 128 characters first, from the end, then others from the end;
///   an empty `tracestate` is never written.
///
/// `TraceState` in opentelemetry 0.33 still applies the old `tenant@system` rule to keys, so a
/// valid member such as `vendor@a-system-id-of-20c=1` cannot be held by it: [`parse`](Self::parse)
/// and [`with_entry`](Self::with_entry), which return a `TraceState`, leave such members out.
/// The propagator ([`W3cTraceContext`](super::W3cTraceContext)) does not lose them: see
/// [the propagation docs](super#tracestate-members-opentelemetry-cannot-hold) for how it
/// carries them to the next hop.
///
/// ```
/// use service_tracing_middleware::propagation::W3cTraceState;
///
/// let state = W3cTraceState::parse(["rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE", "fw529a3039@dt=1"])
///     .expect("valid");
/// assert_eq!(state.header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,fw529a3039@dt=1");
/// assert_eq!(W3cTraceState::parse(["rojo=1,rojo=2"]).unwrap().header(), "rojo=1"); // first kept
/// assert!(W3cTraceState::parse(["Rojo=1"]).is_none()); // uppercase key: invalid
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceState {
    _private: (),
}

/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
}

/// §3.3.1.3.1 key: `( lcalpha / DIGIT ) 0*255 ( keychar )`.
fn is_key(key: &[u8]) -> bool {
    match key.split_first() {
        Some((first, rest)) => {
            key.len() <= MAX_KEY_LEN
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|b| is_key_char(*b))
        }
        None => false,
    }
}

/// §3.3.1.3.2 value: `0*255(chr) nblk-chr`, `chr = %x20 / nblk-chr`,
/// `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`.
fn is_value(value: &[u8]) -> bool {
    let is_nblk = |b: u8| matches!(b, 0x21..=0x2B | 0x2D..=0x3C | 0x3E..=0x7E);
    match value.split_last() {
        Some((last, rest)) => {
            value.len() <= MAX_VALUE_LEN
                && is_nblk(*last)
                && rest.iter().all(|b| *b == 0x20 || is_nblk(*b))
        }
        None => false,
    }
}

/// OWS = *( SP / HTAB ), trimmed from both ends of a list-member.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The `tracestate` members of an extracted context as they were received, kept beside the
/// span context's [`TraceState`] when that cannot hold all of them (see this module's docs).
/// Only the propagator makes and reads it.
///
/// One pointer wide, so that extraction, which returns it beside the span context, moves no
/// more bytes when there is none.
#[derive(Debug, Clone)]
pub(crate) struct WireTraceState(Arc<Wire>);

#[derive(Debug)]
struct Wire {
    /// The trace the members belong to: a context that switches to another trace ignores them.
    trace_id: TraceId,
    members: Box<[WireMember]>,
}

#[derive(Debug)]
struct WireMember {
    key: Box<str>,
    value: Box<str>,
    /// Whether the extracted `TraceState` holds this member.
    held: bool,
}

impl WireTraceState {
    /// Whether these are the members of `trace_id`'s state.
    pub(crate) fn is_for(&self, trace_id: TraceId) -> bool {
        self.0.trace_id == trace_id
    }
}

/// Up to 32 borrowed, validated list-members, kept on the stack.
struct Members<'a> {
    pairs: [(&'a str, &'a str); MAX_MEMBERS],
    len: usize,
}

impl<'a> Members<'a> {
    fn new() -> Self {
        Self {
            pairs: [("", ""); MAX_MEMBERS],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.pairs[..self.len]
    }

    fn contains_key(&self, key: &str) -> bool {
        self.as_slice().iter().any(|(k, _)| *k == key)
    }

    /// Adds a member; `false` when all 32 places are taken.
    fn push(&mut self, key: &'a str, value: &'a str) -> bool {
        match self.pairs.get_mut(self.len) {
            Some(slot) => {
                *slot = (key, value);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, index: usize) {
        if index < self.len {
            self.pairs[index..self.len].rotate_left(1);
            self.len -= 1;
        }
    }

    /// The `TraceState` of these members and, when it cannot hold them all, every member as
    /// received for `trace_id`.
    fn into_trace_state(self, trace_id: TraceId) -> (TraceState, Option<WireTraceState>) {
        let pairs = self.as_slice();
        if pairs.is_empty() {
            return (TraceState::NONE, None);
        }
        if let Ok(state) = TraceState::from_key_value(pairs.iter().copied()) {
            return (state, None);
        }
        // Some valid member is refused by `TraceState` (its key follows the current grammar,
        // not the old `tenant@system` one it checks): it holds the others, and the whole list
        // is kept beside it. Asking `TraceState` itself, member by member, keeps this right
        // whatever its rules become; this path only runs for such headers.
        let members: Box<[WireMember]> = pairs
            .iter()
            .map(|&(key, value)| WireMember {
                key: key.into(),
                value: value.into(),
                held: TraceState::from_key_value([(key, value)]).is_ok(),
            })
            .collect();
        let state = TraceState::from_key_value(
            members
                .iter()
                .filter(|m| m.held)
                .map(|m| (&*m.key, &*m.value)),
        )
        .unwrap_or_default();
        (
            state,
            Some(WireTraceState(Arc::new(Wire { trace_id, members }))),
        )
    }
}

/// One list-member (OWS already trimmed, not empty) as a validated key and value.
fn split_member(member: &[u8]) -> Option<(&str, &str)> {
    // Only the first 257 bytes can hold the `=` of a valid member: bounded work on huge input.
    let eq = member
        .iter()
        .take(MAX_KEY_LEN + 1)
        .position(|b| *b == b'=')?;
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    if !is_key(key) || !is_value(value) {
        return None;
    }
    // Both are ASCII by now.
    Some((
        std::str::from_utf8(key).ok()?,
        std::str::from_utf8(value).ok()?,
    ))
}

/// Parses the combined value of every `tracestate` header, in order: `None` when invalid.
///
/// Work is bounded: parsing stops at the first invalid member or at the 33rd member, and only
/// empty list-members and OWS are scanned past without being looked at twice.
fn parse_members<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Members<'a>> {
    let mut members = Members::new();
    let mut seen = 0usize;
    for value in values {
        for member in value.split(|b| *b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            // A repeated key still counts as a list-member.
            seen += 1;
            if seen > MAX_MEMBERS {
                return None;
            }
            let (key, value) = split_member(member)?;
            // A repeated key: the first entry is kept, later ones are ignored.
            if !members.contains_key(key) {
                members.push(key, value);
            }
        }
    }
    Some(members)
}

/// The `TraceState` of the combined `tracestate` headers of `trace_id` ([`TraceState::NONE`]
/// when they are absent, empty or invalid), and every member as received when the
/// `TraceState` cannot hold them all.
pub(crate) fn trace_state_from<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    trace_id: TraceId,
) -> (TraceState, Option<WireTraceState>) {
    parse_members(values).map_or((TraceState::NONE, None), |members| {
        members.into_trace_state(trace_id)
    })
}

/// Adds the members of `state` the grammar allows to the empty `members`, each key once (the
/// first, most recent, wins). Filled in place: returning the 1 KiB list would copy it.
fn fill_from<'a>(members: &mut Members<'a>, state: &'a TraceState) {
    for (key, value) in state {
        // Anything `TraceState` let in that the grammar does not allow is not sent.
        if !is_key(key.as_bytes()) || !is_value(value.as_bytes()) || members.contains_key(key) {
            continue;
        }
        if !members.push(key, value) {
            break;
        }
    }
}

/// Fills the empty `out` with `state` and the members of `wire` it could not hold, put back
/// where they were received (see this module's docs).
fn fill_merged<'a>(out: &mut Members<'a>, state: &'a TraceState, wire: &'a WireTraceState) {
    let mut current = Members::new();
    fill_from(&mut current, state);
    let current = current.as_slice();
    let received = &wire.0.members[..wire.0.members.len().min(MAX_MEMBERS)];
    // The longest tail of `current` found, unchanged and in order, among the received members
    // `TraceState` held: those are the members nobody touched. What comes before it was added
    // or updated since, and goes first (§3.5).
    let mut untouched = [false; MAX_MEMBERS];
    let mut split = current.len();
    let mut j = received.len();
    'tail: while split > 0 {
        let (key, value) = current[split - 1];
        while j > 0 {
            j -= 1;
            let m = &received[j];
            if m.held && &*m.key == key && &*m.value == value {
                untouched[j] = true;
                split -= 1;
                continue 'tail;
            }
        }
        break;
    }
    for &(key, value) in &current[..split] {
        out.push(key, value);
    }
    for (m, untouched) in received.iter().zip(untouched) {
        let keep = if m.held {
            untouched
        } else {
            !current[..split].iter().any(|(key, _)| *key == &*m.key)
        };
        // A full list drops the right-most members (§3.5).
        if keep && !out.push(&m.key, &m.value) {
            break;
        }
    }
}

/// The header value to send for `state` (with `wire`'s members it could not hold, when `wire`
/// is given), or `None` when there is nothing to send.
pub(crate) fn header_value(state: &TraceState, wire: Option<&WireTraceState>) -> Option<String> {
    let mut members = Members::new();
    match wire {
        Some(wire) => fill_merged(&mut members, state, wire),
        None => fill_from(&mut members, state),
    }
    let entry_len = |(key, value): &(&str, &str)| key.len() + 1 + value.len();
    let mut total =
        members.as_slice().iter().map(entry_len).sum::<usize>() + members.len.saturating_sub(1);
    // §3.3.1.5 tracestate Limits: "the vendor MUST truncate whole entries. Entries larger than
    // 128 characters long SHOULD be removed first. Then entries SHOULD be removed starting from
    // the end of tracestate."
    while total > MAX_HEADER_LEN && members.len > 0 {
        let pairs = members.as_slice();
        let index = pairs
            .iter()
            .rposition(|pair| entry_len(pair) > LARGE_MEMBER_LEN)
            .unwrap_or(pairs.len() - 1);
        total -= entry_len(&pairs[index]) + usize::from(pairs.len() > 1);
        members.remove(index);
    }
    if members.len == 0 {
        // "Vendors MUST accept empty tracestate headers but SHOULD avoid sending them."
        return None;
    }
    let mut out = String::with_capacity(total);
    for (i, (key, value)) in members.as_slice().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    Some(out)
}

impl W3cTraceState {
    /// Whether `key` is a valid list-member key (§3.3.1.3.1:
    /// `( lcalpha / DIGIT ) 0*255 ( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// assert!(W3cTraceState::is_valid_key("congo"));
    /// assert!(W3cTraceState::is_valid_key("fw529a3039@dt"));
    /// assert!(W3cTraceState::is_valid_key("1congo"));
    /// assert!(W3cTraceState::is_valid_key("foo@")); // `@` anywhere after the first character
    /// assert!(!W3cTraceState::is_valid_key("@foo"));
    /// assert!(!W3cTraceState::is_valid_key("Congo"));
    /// ```
    pub fn is_valid_key(key: &str) -> bool {
        is_key(key.as_bytes())
    }

    /// Whether `value` is a valid list-member value (§3.3.1.3.2).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// assert!(W3cTraceState::is_valid_value("t61rcWkgMzE"));
    /// assert!(!W3cTraceState::is_valid_value("a=b"));
    /// assert!(!W3cTraceState::is_valid_value("ends in a space "));
    /// ```
    pub fn is_valid_value(value: &str) -> bool {
        is_value(value.as_bytes())
    }

    /// Parses the values of every `tracestate` header, in order, as one combined list.
    ///
    /// `Some` (possibly [`TraceState::NONE`]) when the combined value is valid, `None` when it
    /// is invalid and must be discarded whole. A valid member whose key `TraceState` refuses
    /// (see the [type docs](Self)) is left out of the result; the propagator keeps it.
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// let state = W3cTraceState::parse(["rojo=00f067aa0ba902b7", "", "congo=t61rcWkgMzE"]).unwrap();
    /// assert_eq!(state.header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /// assert_eq!(W3cTraceState::parse([" , "]).unwrap().header(), "");
    /// assert!(W3cTraceState::parse(["rojo"]).is_none());
    /// ```
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<TraceState> {
        parse_members(values.into_iter().map(str::as_bytes))
            .map(|members| members.into_trace_state(TraceId::INVALID).0)
    }

    /// The `tracestate` value to send for `state`: entries in order, anything invalid per the
    /// grammar or a repeated key left out, cut to 512 characters by whole entries (those over
    /// 128 characters first, from the end; then from the end). `None` when nothing is left.
    ///
    /// ```
    /// use opentelemetry::trace::TraceState;
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// let state = TraceState::from_key_value([("rojo", "1"), ("congo", "2")]).unwrap();
    /// assert_eq!(W3cTraceState::header_value(&state).as_deref(), Some("rojo=1,congo=2"));
    /// assert_eq!(W3cTraceState::header_value(&TraceState::NONE), None);
    /// ```
    pub fn header_value(state: &TraceState) -> Option<String> {
        header_value(state, None)
    }

    /// `state` with `key=value` at the front (§3.5 "Mutating the tracestate Field": a new or
    /// updated entry moves to the left), any earlier entry for `key` removed, and the last entry
    /// dropped if the list would otherwise exceed 32 members.
    ///
    /// `None` when the key or value is invalid per §3.3.1.3, or when `TraceState` cannot hold
    /// the key (see the [type docs](Self)).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// let state = W3cTraceState::parse(["rojo=1,congo=2"]).unwrap();
    /// let state = W3cTraceState::with_entry(&state, "congo", "3").unwrap();
    /// assert_eq!(state.header(), "congo=3,rojo=1");
    /// assert!(W3cTraceState::with_entry(&state, "Congo", "3").is_none());
    /// ```
    pub fn with_entry(state: &TraceState, key: &str, value: &str) -> Option<TraceState> {
        if !is_key(key.as_bytes()) || !is_value(value.as_bytes()) {
            return None;
        }
        state.insert(key, value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    struct ParseCase {
        /// The section of W3C Trace Context Level 1 this case checks.
        spec: &'static str,
        name: &'static str,
        /// The `tracestate` header values, in order.
        headers: Vec<String>,
        /// Every member kept, in order, or `None` when the header is invalid.
        expect: Option<String>,
    }

    fn case(
        spec: &'static str,
        name: &'static str,
        headers: &[&str],
        expect: Option<&str>,
    ) -> ParseCase {
        ParseCase {
            spec,
            name,
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            expect: expect.map(str::to_owned),
        }
    }

    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("bar{i:02}={i:02}")).collect()
    }

    fn parse_cases() -> Vec<ParseCase> {
        let key256 = format!("k{}", "a".repeat(255));
        let key257 = format!("k{}", "a".repeat(256));
        let key256_at = format!("{}@{}", "t".repeat(120), "s".repeat(135));
        let key257_at = format!("{}@{}", "t".repeat(120), "s".repeat(136));
        let tenant241 = format!("t{}", "0".repeat(240));
        let tenant242 = format!("t{}", "0".repeat(241));
        let value256 = "v".repeat(256);
        let value257 = "v".repeat(257);
        // Every character a value may hold: %x20-2B / %x2D-3C / %x3E-7E, not ending in %x20.
        let all_chars: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        let all_chars = format!("{}{}", &all_chars[..all_chars.len() / 2], "x");
        let all_chars_rest: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .skip(47)
            .collect();
        let m32 = members(32).join(",");
        let m33 = members(33).join(",");
        let m16a = members(32)[..16].join(",");
        let m16b = members(32)[16..].join(",");
        let m17b = members(33)[16..].join(",");
        let owned = |spec, name, headers: Vec<String>, expect: Option<String>| ParseCase {
            spec,
            name,
            headers,
            expect,
        };
        vec![
            // The specification's own examples.
            case("§3.3.1.6 Examples of tracestate HTTP Headers", "single vendor", &["rojo=00f067aa0ba902b7"], Some("rojo=00f067aa0ba902b7")),
            case("§3.3.1.6 Examples of tracestate HTTP Headers", "two vendors", &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"], Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")),
            case("§3.3.1.6 Examples of tracestate HTTP Headers", "congo alone", &["congo=t61rcWkgMzE"], Some("congo=t61rcWkgMzE")),
            case("§3.3.1.3.1 Key (multi-tenant-key)", "multi-tenant key", &["fw529a3039@dt=d8e8d4a2c7b1a3f5,rojo=1"], Some("fw529a3039@dt=d8e8d4a2c7b1a3f5,rojo=1")),
            // OWS and empty list-members.
            case("§3.3.1.3 list (OWS around list-members)", "spaces and tabs", &[" rojo=1 ,\tcongo=2\t, \t"], Some("rojo=1,congo=2")),
            case("§3.3.1.3 list (empty list-members allowed)", "empty members", &["rojo=1,,congo=2, ,"], Some("rojo=1,congo=2")),
            case("§3.3.1.3 list (empty list-members allowed)", "only commas", &[",,,"], Some("")),
            case("§3.3.1.3 list (MUST accept empty tracestate)", "empty header", &[""], Some("")),
            case("§3.3.1.4 Combined Header Value", "three headers combine in order", &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"], Some("foo=1,bar=2,rojo=1,congo=2,baz=3")),
            case("§3.3.1.4 Combined Header Value", "an empty header among others", &["foo=1", "", "bar=2"], Some("foo=1,bar=2")),
            // Member count.
            owned("§3.3.1.3 list (at most 32 list-members)", "32 members", vec![m32.clone()], Some(m32.clone())),
            owned("§3.3.1.3 list (at most 32 list-members)", "32 members over two headers", vec![m16a.clone(), m16b], Some(m32)),
            owned("§3.3.1.3 list (at most 32; test suite: test_tracestate_member_count_limit)", "33 members: invalid", vec![m33], None),
            owned("§3.3.1.3 list (at most 32; test suite: test_tracestate_member_count_limit)", "33 members over two headers: invalid", vec![m16a, m17b], None),
            case("§3.3.1.3 list (empty list-members are not list-members)", "32 members and empties", &[&format!(",,{},,", members(32).join(", ,"))], Some(&members(32).join(","))),
            // Duplicates.
            case("§3.3.1.3 list (a vendor MAY discard duplicates it did not write: the first is kept)", "same key, same value", &["foo=1,foo=1"], Some("foo=1")),
            case("§3.3.1.3 list (a vendor MAY discard duplicates it did not write: the first is kept)", "same key, other value", &["foo=1,foo=2"], Some("foo=1")),
            case("§3.3.1.3 list; §3.3.1.4 Combined Header Value (the first is kept)", "same key in two headers", &["foo=1", "foo=2,bar=3"], Some("foo=1,bar=3")),
            owned("§3.3.1.3 list (at most 32 list-members; a repeat is one)", "32 members and a repeat: invalid", vec![format!("{},bar01=again", members(32).join(","))], None),
            case("§3.3.1.3.1 Key (a key with @ differs from its prefix)", "foo and foo@bar", &["foo=1,foo@bar=2"], Some("foo=1,foo@bar=2")),
            // Keys: key = ( lcalpha / DIGIT ) 0*255 ( keychar ).
            case("§3.3.1.3.1 Key (keychar = lcalpha / DIGIT / _ - * / @)", "every key character", &["a0_-*/@z=1"], Some("a0_-*/@z=1")),
            owned("§3.3.1.3.1 Key (up to 256)", "256-character key", vec![format!("{key256}=1")], Some(format!("{key256}=1"))),
            owned("§3.3.1.3.1 Key (up to 256)", "257-character key: invalid", vec![format!("{key257}=1")], None),
            owned("§3.3.1.3.1 Key (@ anywhere after the first character)", "256-character key, @ in the middle", vec![format!("rojo=1,{key256_at}=2,congo=3")], Some(format!("rojo=1,{key256_at}=2,congo=3"))),
            owned("§3.3.1.3.1 Key (up to 256)", "257-character key with @: invalid", vec![format!("{key257_at}=1")], None),
            case("§3.3.1.3.1 Key (first character lcalpha / DIGIT)", "digit-first key", &["1foo=1"], Some("1foo=1")),
            case("§3.3.1.3.1 Key (first character lcalpha / DIGIT)", "digits only", &["123=1"], Some("123=1")),
            case("§3.3.1.3.1 Key (first character lcalpha / DIGIT)", "@ first: invalid", &["@dt=1"], None),
            case("§3.3.1.3.1 Key (first character lcalpha / DIGIT)", "_ first: invalid", &["_foo=1"], None),
            case("§3.3.1.3.1 Key (@ is a keychar)", "trailing @", &["foo@=1"], Some("foo@=1")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "two @", &["a@b@c=1"], Some("a@b@c=1")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "@@", &["a@@=1"], Some("a@@=1")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "digit after @", &["t@1x=1"], Some("t@1x=1")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "13 characters after @", &["t@abcdefghijklm=1"], Some("t@abcdefghijklm=1")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "14 characters after @", &["rojo=1,t@abcdefghijklmn=1,congo=2"], Some("rojo=1,t@abcdefghijklmn=1,congo=2")),
            case("§3.3.1.3.1 Key (@ is a keychar)", "15 characters after @", &["t@abcdefghijklmno=1"], Some("t@abcdefghijklmno=1")),
            owned("§3.3.1.3.1 Key (@ is a keychar)", "241 characters before @", vec![format!("{tenant241}@v=1")], Some(format!("{tenant241}@v=1"))),
            owned("§3.3.1.3.1 Key (@ is a keychar)", "242 characters before @", vec![format!("{tenant242}@v=1")], Some(format!("{tenant242}@v=1"))),
            case("§3.3.1.3.1 Key (lcalpha only)", "uppercase key: invalid", &["Foo=1"], None),
            case("§3.3.1.3.1 Key (lcalpha only)", "uppercase after @: invalid", &["foo@Bar=1"], None),
            case("§3.3.1.3.1 Key", "dot in key: invalid", &["foo.bar=1"], None),
            case("§3.3.1.3.1 Key", "empty key: invalid", &["=1"], None),
            // Values.
            owned("§3.3.1.3.2 Value (up to 256)", "256-character value", vec![format!("foo={value256}")], Some(format!("foo={value256}"))),
            owned("§3.3.1.3.2 Value (up to 256)", "257-character value: invalid", vec![format!("foo={value257}")], None),
            owned("§3.3.1.3.2 Value (chr, nblk-chr; test suite: test_tracestate_all_allowed_characters)", "every value character (1)", vec![format!("foo={all_chars}")], Some(format!("foo={all_chars}"))),
            owned("§3.3.1.3.2 Value (chr, nblk-chr; test suite: test_tracestate_all_allowed_characters)", "every value character (2)", vec![format!("foo={all_chars_rest}")], Some(format!("foo={all_chars_rest}"))),
            case("§3.3.1.3.2 Value (at least one nblk-chr)", "empty value: invalid", &["foo="], None),
            case("§3.3.1.3.2 Value (no =)", "= in value: invalid", &["foo=bar=baz"], None),
            case("§3.3.1.3.2 Value (chr includes %x20)", "inner space", &["foo=b r"], Some("foo=b r")),
            case("§3.3.1.3.2 Value (chr includes %x20)", "leading space", &["foo= bar"], Some("foo= bar")),
            case("§3.3.1.3 list (trailing OWS is not part of the value)", "trailing space", &["foo=bar  "], Some("foo=bar")),
            case("§3.3.1.3.2 Value (no HTAB)", "tab inside: invalid", &["foo=b\tr"], None),
            case("§3.3.1.3.2 Value (only %x20-7E)", "non-ASCII: invalid", &["foo=café"], None),
            case("§3.3.1.3.2 Value", "only a space: invalid", &["foo= "], None),
            // Members.
            case("§3.3.1.3 list (list-member = key \"=\" value)", "no =: invalid", &["foo"], None),
            case("§4.3 Processing Model (MAY discard the entire header; test suite)", "one bad member discards all", &["rojo=1,BAD=2,congo=3"], None),
            case("§4.3 Processing Model (MAY discard the entire header; test suite)", "bad member in a later header", &["rojo=1", "congo"], None),
        ]
    }

    /// Every member the parser keeps (those `TraceState` holds and those it refuses), in order.
    fn kept(headers: &[String]) -> Option<String> {
        parse_members(headers.iter().map(String::as_bytes)).map(|members| {
            members
                .as_slice()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    #[test]
    fn tracestate_values_parse_as_the_spec_says() {
        let cases = parse_cases();
        assert!(cases.len() >= 55, "{}", cases.len());
        for case in cases {
            let why = format!("{} [{}]: {:?}", case.name, case.spec, case.headers);
            assert_eq!(kept(&case.headers), case.expect, "{why}");
            // What the propagator sends on is what it kept (these cases are within the limits).
            let (state, wire) =
                trace_state_from(case.headers.iter().map(String::as_bytes), TraceId::from(1));
            let sent = header_value(&state, wire.as_ref());
            let want = case.expect.clone().filter(|kept| !kept.is_empty());
            assert_eq!(sent, want, "sent: {why}");
            // `TraceState` holds the members it can, in order; `parse` returns that.
            let parsed = W3cTraceState::parse(case.headers.iter().map(String::as_str))
                .map(|state| state.header());
            assert_eq!(parsed.is_some(), case.expect.is_some(), "{why}");
            if let Some(held) = parsed {
                let expect = case.expect.as_deref().unwrap_or_default();
                let holdable: Vec<&str> = expect
                    .split(',')
                    .filter(|m| !m.is_empty() && TraceState::from_str(m).is_ok())
                    .collect();
                assert_eq!(held, holdable.join(","), "held: {why}");
            }
        }
    }

    #[test]
    fn members_trace_state_refuses_are_kept_beside_it() {
        let key256_at = format!("{}@{}", "t".repeat(120), "s".repeat(135));
        let header = format!("rojo=1,foo@=2,{key256_at}=3,a@b@c=4,congo=5");
        let (state, wire) = trace_state_from([header.as_bytes()], TraceId::from(7));
        // `TraceState` (old grammar) takes `foo@` but not an `@` 135 characters from the end
        // nor two `@`.
        assert_eq!(state.header(), "rojo=1,foo@=2,congo=5");
        let wire = wire.expect("some members are refused");
        assert!(wire.is_for(TraceId::from(7)) && !wire.is_for(TraceId::from(8)));
        assert_eq!(header_value(&state, Some(&wire)), Some(header.clone()));
        // Nothing refused: nothing kept beside, nothing allocated for it.
        let (_, none) = trace_state_from([b"rojo=1,foo@=2".as_slice()], TraceId::from(7));
        assert!(none.is_none());
    }

    #[test]
    fn changes_to_the_state_keep_refused_members_in_place() {
        let key_at = |c: &str| format!("{c}@{}", "s".repeat(20)); // refused by `TraceState`
        let (x, y) = (key_at("x"), key_at("y"));
        let received = format!("a=1,{x}=2,b=3,c=4,{y}=5");
        let (state, wire) = trace_state_from([received.as_bytes()], TraceId::from(1));
        let wire = wire.expect("refused members");
        let big = "v".repeat(200);
        let full: Vec<String> = (1..=31).map(|i| format!("k{i:02}=1")).collect();
        let full = format!("{},{x}=2", full.join(","));
        let (full_state, full_wire) = trace_state_from([full.as_bytes()], TraceId::from(1));
        let full_wire = full_wire.expect("refused member");
        let with =
            |s: &TraceState, k: &str, v: &str| W3cTraceState::with_entry(s, k, v).expect("valid");
        let cases: Vec<(&str, &str, TraceState, &WireTraceState, Option<String>)> = vec![
            (
                "§3.5 (unchanged state)",
                "as received",
                state.clone(),
                &wire,
                Some(received.clone()),
            ),
            (
                "§3.5 Mutating the tracestate Field (add to the left)",
                "new entry",
                with(&state, "ours", "9"),
                &wire,
                Some(format!("ours=9,{received}")),
            ),
            (
                "§3.5 Mutating the tracestate Field (update moves left)",
                "updated entry",
                with(&state, "c", "8"),
                &wire,
                Some(format!("c=8,a=1,{x}=2,b=3,{y}=5")),
            ),
            (
                "§3.5 Mutating the tracestate Field (update moves left)",
                "same value moved left",
                with(&state, "b", "3"),
                &wire,
                Some(format!("b=3,a=1,{x}=2,c=4,{y}=5")),
            ),
            (
                "§3.5 Mutating the tracestate Field (delete)",
                "deleted entry",
                state.delete("a").expect("valid"),
                &wire,
                Some(format!("{x}=2,b=3,c=4,{y}=5")),
            ),
            (
                "§3.5 Mutating the tracestate Field (delete)",
                "every held entry deleted",
                TraceState::NONE,
                &wire,
                Some(format!("{x}=2,{y}=5")),
            ),
            (
                "§3.3.1.5 tracestate Limits (32: right-most removed)",
                "full list and a new entry",
                with(&full_state, "ours", "9"),
                &full_wire,
                Some(format!(
                    "ours=9,{}",
                    (1..=31)
                        .map(|i| format!("k{i:02}=1"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            ),
            (
                "§3.3.1.5 tracestate Limits (over 128 removed first)",
                "large entries go first",
                with(&with(&with(&state, "p", &big), "q", &big), "r", &big),
                &wire,
                Some(format!("r={big},q={big},{received}")),
            ),
        ];
        for (spec, name, state, wire, expect) in cases {
            let got = header_value(&state, Some(wire));
            if let Some(got) = &got {
                assert!(got.len() <= MAX_HEADER_LEN, "{name} [{spec}]");
            }
            assert_eq!(got, expect, "{name} [{spec}]");
        }
    }

    /// A list-member of exactly `len` characters.
    fn entry(key: &str, len: usize) -> (String, String) {
        (key.to_owned(), "x".repeat(len - key.len() - 1))
    }

    struct OutCase {
        spec: &'static str,
        name: &'static str,
        entries: Vec<(String, String)>,
        /// The keys sent, in order; `None` for no header at all.
        expect: Option<Vec<&'static str>>,
    }

    #[test]
    fn outgoing_tracestate_is_truncated_as_the_spec_says() {
        let sizes =
            |spec, name, sizes: &[(&str, usize)], expect: Option<Vec<&'static str>>| OutCase {
                spec,
                name,
                entries: sizes.iter().map(|(k, n)| entry(k, *n)).collect(),
                expect,
            };
        let key256 = format!("k{}", "a".repeat(255));
        let mut eleven: Vec<(&str, usize)> = vec![("big", 129)];
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        eleven.extend(keys.iter().map(|k| (*k, 60)));
        let cases = vec![
            sizes(
                "§3.3.1.5 tracestate Limits (512 characters, commas included)",
                "exactly 512 kept",
                &[("a", 128), ("b", 128), ("c", 128), ("d", 125)],
                Some(vec!["a", "b", "c", "d"]),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits (then from the end)",
                "513: last entry removed",
                &[("a", 128), ("b", 128), ("c", 128), ("d", 126)],
                Some(vec!["a", "b", "c"]),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits (over 128 removed first)",
                "the last large entry goes first",
                &[("a", 100), ("b", 200), ("c", 100), ("d", 130), ("e", 100)],
                Some(vec!["a", "b", "c", "e"]),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits (over 128 removed first)",
                "large entries from the end",
                &[("a", 200), ("b", 100), ("c", 200), ("d", 100)],
                Some(vec!["a", "b", "d"]),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits (128 is not larger than 128)",
                "128 is not large",
                &[("a", 128), ("b", 129), ("c", 128), ("d", 128)],
                Some(vec!["a", "c", "d"]),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits (large first, then from the end)",
                "large, then from the end",
                &eleven,
                Some(keys[..8].to_vec()),
            ),
            sizes(
                "§3.3.1.5 tracestate Limits; §3.3.1.3 list (SHOULD avoid sending empty)",
                "one 513-character entry: no header",
                &[(key256.as_str(), 513)],
                None,
            ),
            sizes(
                "§3.3.1.3 list (SHOULD avoid sending empty)",
                "nothing: no header",
                &[],
                None,
            ),
            OutCase {
                spec: "§3.3.1.3.2 Value (what TraceState lets in that the grammar does not); §3.3.1.3.1 Key (a digit may come first)",
                name: "invalid entries are not sent",
                entries: vec![
                    ("rojo".to_owned(), "ends in a space ".to_owned()),
                    ("1digit".to_owned(), "1".to_owned()),
                    ("congo".to_owned(), "2".to_owned()),
                    ("caf".to_owned(), "é".to_owned()),
                ],
                expect: Some(vec!["1digit", "congo"]),
            },
            OutCase {
                spec: "§3.5 Mutating the tracestate Field (keys are unique)",
                name: "a repeated key is sent once, leftmost",
                entries: vec![
                    ("rojo".to_owned(), "1".to_owned()),
                    ("rojo".to_owned(), "2".to_owned()),
                ],
                expect: Some(vec!["rojo"]),
            },
        ];
        for case in cases {
            let why = format!("{} [{}]", case.name, case.spec);
            let state = TraceState::from_key_value(case.entries.clone()).expect(&why);
            let got = W3cTraceState::header_value(&state);
            let want = case.expect.map(|keys| {
                keys.iter()
                    .map(|k| {
                        let (key, value) = case
                            .entries
                            .iter()
                            .find(|(key, _)| key == k)
                            .expect("expected key is an entry");
                        format!("{key}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            if let Some(header) = &got {
                assert!(header.len() <= 512, "{why}");
            }
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn with_entry_puts_the_entry_first() {
        let base = W3cTraceState::parse(["rojo=1,congo=2"]).expect("valid");
        let full = W3cTraceState::parse([members(32).join(",").as_str()]).expect("valid");
        type WithEntryCase<'a> = (
            &'a str,
            &'a str,
            &'a TraceState,
            &'a str,
            &'a str,
            Option<String>,
        );
        let cases: Vec<WithEntryCase<'_>> = vec![
            (
                "§3.5 Mutating the tracestate Field (add to the left)",
                "new key",
                &base,
                "ours",
                "x",
                Some("ours=x,rojo=1,congo=2".to_owned()),
            ),
            (
                "§3.5 Mutating the tracestate Field (update moves left)",
                "existing key",
                &base,
                "congo",
                "3",
                Some("congo=3,rojo=1".to_owned()),
            ),
            (
                "§3.5 Mutating the tracestate Field (update moves left)",
                "first key",
                &base,
                "rojo",
                "4",
                Some("rojo=4,congo=2".to_owned()),
            ),
            (
                "§3.5 Mutating the tracestate Field (add to the left)",
                "into an empty state",
                &TraceState::NONE,
                "ours",
                "x",
                Some("ours=x".to_owned()),
            ),
            (
                "§3.3.1.5 tracestate Limits (32: right-most removed)",
                "into a full state",
                &full,
                "ours",
                "x",
                Some(format!("ours=x,{}", members(31).join(","))),
            ),
            ("§3.3.1.3.1 Key", "invalid key", &base, "Ours", "x", None),
            (
                "§3.3.1.3.2 Value",
                "invalid value",
                &base,
                "ours",
                "x ",
                None,
            ),
            ("§3.3.1.3.2 Value", "empty value", &base, "ours", "", None),
            (
                "§3.3.1.3.1 Key (valid, but TraceState refuses 14 characters after @)",
                "key TraceState cannot hold",
                &base,
                "t@abcdefghijklmn",
                "x",
                None,
            ),
        ];
        for (spec, name, state, key, value, expect) in cases {
            let got = W3cTraceState::with_entry(state, key, value).map(|s| s.header());
            assert_eq!(got, expect, "{name} [{spec}]");
        }
    }

    #[test]
    fn key_and_value_checks_match_the_grammar() {
        for (key, ok) in [
            ("a", true),
            ("z*", true),
            ("0", true),
            ("0@a", true),
            ("a@0", true),
            ("a@", true),
            ("a@b@c", true),
            ("@a", false),
            ("-a", false),
            ("A", false),
            ("a.b", false),
            (&"a".repeat(256), true),
            (&"a".repeat(257), false),
            ("", false),
        ] {
            assert_eq!(
                W3cTraceState::is_valid_key(key),
                ok,
                "§3.3.1.3.1 Key: {key:?}"
            );
        }
        for (value, ok) in [
            ("!", true),
            ("~", true),
            (" x", true),
            ("x ", false),
            (",", false),
            ("", false),
        ] {
            assert_eq!(
                W3cTraceState::is_valid_value(value),
                ok,
                "§3.3.1.3.2 Value: {value:?}"
            );
        }
    }
}
