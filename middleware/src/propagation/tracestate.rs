//! W3C `tracestate`, parsed and written to the letter of Trace Context Level 1 §3.3.
//!
//! Section numbers below are those of W3C Trace Context Level 1 (Recommendation, 2021);
//! Level 2 keeps the same `tracestate` grammar and limits.

use opentelemetry::trace::TraceState;

/// §3.3.1.3 list: "There can be a maximum of 32 list-members in a list."
const MAX_MEMBERS: usize = 32;
/// §3.3.1.5 tracestate Limits: "Vendors SHOULD propagate at least 512 characters of a combined
/// header" (commas included, OWS not).
const MAX_HEADER_LEN: usize = 512;
/// §3.3.1.5 tracestate Limits: "Entries larger than 128 characters long SHOULD be removed first."
const LARGE_MEMBER_LEN: usize = 128;
/// §3.3.1.3.1 Key: a simple key is at most 256 characters, and so is a multi-tenant key
/// (241 + `@` + 14).
const MAX_KEY_LEN: usize = 256;
/// §3.3.1.3.2 value: `0*255(chr) nblk-chr`.
const MAX_VALUE_LEN: usize = 256;
const MAX_TENANT_LEN: usize = 241;
const MAX_SYSTEM_LEN: usize = 14;

/// The W3C `tracestate` header: parsing, validation and serialisation (Trace Context Level 1
/// §3.3), onto [`opentelemetry::trace::TraceState`].
///
/// - list-members are separated by `,` with optional spaces and tabs around them; empty
///   list-members are allowed and skipped; several `tracestate` headers are combined in order;
/// - keys and values follow the §3.3.1.3 grammar exactly (simple keys, `tenant@system` keys,
///   values of 1–256 printable ASCII characters without `,` or `=` that do not end in a space);
/// - an invalid list-member, a duplicated key or more than 32 list-members make the whole
///   header invalid, and it is discarded (as the W3C test suite expects);
/// - on the way out, entries stay in order and the value is cut to 512 characters by removing
///   whole entries: those over 128 characters first, from the end, then others from the end;
///   an empty `tracestate` is never written.
///
/// `TraceState` in `opentelemetry` 0.33 rejects keys whose system id is exactly 14 characters
/// (the specification allows 1–14), so such a list-member, though valid, cannot be carried: it
/// alone is dropped and the rest of the header is kept.
///
/// ```
/// use service_tracing_middleware::propagation::W3cTraceState;
///
/// let state = W3cTraceState::parse(["rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE", "fw529a3039@dt=1"])
///     .expect("valid");
/// assert_eq!(state.header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,fw529a3039@dt=1");
/// assert!(W3cTraceState::parse(["rojo=1,rojo=2"]).is_none()); // duplicate key: invalid
/// assert!(W3cTraceState::parse(["Rojo=1"]).is_none()); // uppercase key: invalid
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceState {
    _private: (),
}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/"`: the characters after the first of any key part.
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// §3.3.1.3.1 key: `simple-key / multi-tenant-key`.
fn is_key(key: &[u8]) -> bool {
    if key.len() > MAX_KEY_LEN {
        return false;
    }
    match key.iter().position(|b| *b == b'@') {
        // simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        None => match key.split_first() {
            Some((first, rest)) => {
                first.is_ascii_lowercase() && rest.iter().all(|b| is_key_char(*b))
            }
            None => false,
        },
        // multi-tenant-key = tenant-id "@" system-id
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            // tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
            let tenant_ok = match tenant.split_first() {
                Some((first, rest)) => {
                    tenant.len() <= MAX_TENANT_LEN
                        && (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && rest.iter().all(|b| is_key_char(*b))
                }
                None => false,
            };
            // system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
            let system_ok = match system.split_first() {
                Some((first, rest)) => {
                    system.len() <= MAX_SYSTEM_LEN
                        && first.is_ascii_lowercase()
                        && rest.iter().all(|b| is_key_char(*b))
                }
                None => false,
            };
            tenant_ok && system_ok
        }
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

    fn into_trace_state(self) -> TraceState {
        let pairs = self.as_slice();
        if pairs.is_empty() {
            return TraceState::NONE;
        }
        TraceState::from_key_value(pairs.iter().copied()).unwrap_or_else(|_| {
            // Some valid member cannot be represented by `TraceState` (a 14-character system
            // id): keep every member that can.
            TraceState::from_key_value(
                pairs
                    .iter()
                    .copied()
                    .filter(|pair| TraceState::from_key_value([*pair]).is_ok()),
            )
            .unwrap_or_default()
        })
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
    for value in values {
        for member in value.split(|b| *b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let (key, value) = split_member(member)?;
            if members.contains_key(key) || !members.push(key, value) {
                return None;
            }
        }
    }
    Some(members)
}

/// The `TraceState` of the combined `tracestate` headers; [`TraceState::NONE`] when they are
/// absent, empty or invalid.
pub(crate) fn trace_state_from<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> TraceState {
    parse_members(values).map_or(TraceState::NONE, Members::into_trace_state)
}

/// The header value to send for `state`, or `None` when there is nothing to send.
pub(crate) fn header_value(state: &TraceState) -> Option<String> {
    let mut members = Members::new();
    for (key, value) in state {
        // Anything `TraceState` let in that the grammar does not allow is not sent, nor is a
        // second entry for a key (the first, most recent, wins).
        if !is_key(key.as_bytes()) || !is_value(value.as_bytes()) || members.contains_key(key) {
            continue;
        }
        if !members.push(key, value) {
            break;
        }
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
    /// Whether `key` is a valid list-member key (§3.3.1.3.1: a simple key or `tenant@system`).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// assert!(W3cTraceState::is_valid_key("congo"));
    /// assert!(W3cTraceState::is_valid_key("fw529a3039@dt"));
    /// assert!(!W3cTraceState::is_valid_key("1congo")); // a simple key starts with a letter
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
    /// is invalid and must be discarded whole.
    ///
    /// ```
    /// use service_tracing_middleware::propagation::W3cTraceState;
    /// let state = W3cTraceState::parse(["rojo=00f067aa0ba902b7", "", "congo=t61rcWkgMzE"]).unwrap();
    /// assert_eq!(state.header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /// assert_eq!(W3cTraceState::parse([" , "]).unwrap().header(), "");
    /// assert!(W3cTraceState::parse(["rojo"]).is_none());
    /// ```
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<TraceState> {
        parse_members(values.into_iter().map(str::as_bytes)).map(Members::into_trace_state)
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
        header_value(state)
    }

    /// `state` with `key=value` at the front (§3.5 "Mutating the tracestate Field": a new or
    /// updated entry moves to the left), any earlier entry for `key` removed, and the last entry
    /// dropped if the list would otherwise exceed 32 members.
    ///
    /// `None` when the key or value is invalid per §3.3.1.3, or cannot be held by `TraceState`
    /// (a key whose system id is 14 characters long).
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

    struct ParseCase {
        /// The section of W3C Trace Context Level 1 this case checks.
        spec: &'static str,
        name: &'static str,
        /// The `tracestate` header values, in order.
        headers: Vec<String>,
        /// The state parsed, as `TraceState::header` writes it, or `None` when invalid.
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
            case("§4.3 Processing Model (test suite: test_tracestate_duplicated_keys)", "same key, same value", &["foo=1,foo=1"], None),
            case("§4.3 Processing Model (test suite: test_tracestate_duplicated_keys)", "same key, other value", &["foo=1,foo=2"], None),
            case("§4.3 Processing Model (test suite: test_tracestate_duplicated_keys)", "same key in two headers", &["foo=1", "foo=1"], None),
            case("§3.3.1.3.1 Key (tenant@system differs from tenant)", "tenant and tenant@system", &["foo=1,foo@bar=2"], Some("foo=1,foo@bar=2")),
            // Keys.
            case("§3.3.1.3.1 Key (lcalpha / DIGIT / _ - * /)", "every key character", &["a0_-*/z=1"], Some("a0_-*/z=1")),
            owned("§3.3.1.3.1 Key (simple-key up to 256)", "256-character key", vec![format!("{key256}=1")], Some(format!("{key256}=1"))),
            owned("§3.3.1.3.1 Key (simple-key up to 256)", "257-character key: invalid", vec![format!("{key257}=1")], None),
            case("§3.3.1.3.1 Key (simple-key starts with lcalpha)", "digit-first simple key: invalid", &["1foo=1"], None),
            case("§3.3.1.3.1 Key (tenant-id may start with a digit)", "digit-first tenant id", &["1foo@bar=1"], Some("1foo@bar=1")),
            case("§3.3.1.3.1 Key (lowercase only)", "uppercase key: invalid", &["Foo=1"], None),
            case("§3.3.1.3.1 Key", "dot in key: invalid", &["foo.bar=1"], None),
            case("§3.3.1.3.1 Key", "empty key: invalid", &["=1"], None),
            case("§3.3.1.3.1 Key", "two @: invalid", &["a@b@c=1"], None),
            case("§3.3.1.3.1 Key", "empty tenant: invalid", &["@dt=1"], None),
            case("§3.3.1.3.1 Key", "empty system: invalid", &["fw529a3039@=1"], None),
            case("§3.3.1.3.1 Key (system-id starts with lcalpha)", "digit-first system id: invalid", &["t@1x=1"], None),
            case("§3.3.1.3.1 Key (system-id up to 14)", "13-character system id", &["t@abcdefghijklm=1"], Some("t@abcdefghijklm=1")),
            // Valid, but opentelemetry 0.33's TraceState cannot hold it: that member alone is lost.
            case("§3.3.1.3.1 Key (system-id up to 14; TraceState limit)", "14-character system id", &["rojo=1,t@abcdefghijklmn=1,congo=2"], Some("rojo=1,congo=2")),
            case("§3.3.1.3.1 Key (system-id up to 14)", "15-character system id: invalid", &["t@abcdefghijklmno=1"], None),
            owned("§3.3.1.3.1 Key (tenant-id up to 241)", "241-character tenant id", vec![format!("{tenant241}@v=1")], Some(format!("{tenant241}@v=1"))),
            owned("§3.3.1.3.1 Key (tenant-id up to 241)", "242-character tenant id: invalid", vec![format!("{tenant242}@v=1")], None),
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

    #[test]
    fn tracestate_values_parse_as_the_spec_says() {
        let cases = parse_cases();
        assert!(cases.len() >= 50, "{}", cases.len());
        for case in cases {
            let got = W3cTraceState::parse(case.headers.iter().map(String::as_str))
                .map(|state| state.header());
            assert_eq!(
                got, case.expect,
                "{} [{}]: {:?}",
                case.name, case.spec, case.headers
            );
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
                spec: "§3.3.1.3.2 Value (what TraceState lets in that the grammar does not)",
                name: "invalid entries are not sent",
                entries: vec![
                    ("rojo".to_owned(), "ends in a space ".to_owned()),
                    ("1digit".to_owned(), "1".to_owned()),
                    ("congo".to_owned(), "2".to_owned()),
                    ("caf".to_owned(), "é".to_owned()),
                ],
                expect: Some(vec!["congo"]),
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
                "§3.3.1.3.1 Key (TraceState cannot hold a 14-character system id)",
                "unrepresentable key",
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
            ("0", false),
            ("0@a", true),
            ("a@0", false),
            ("a@", false),
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
