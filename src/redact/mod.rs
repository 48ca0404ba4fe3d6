//! [`Redactor`]: the one redaction policy applied wherever data leaves the process.
//!
//! # Where it runs
//!
//! Once per exit, never on the request path:
//!
//! - **Spans** (OTLP and the console exporter): the export worker runs
//!   [`Redactor::redact_span`] on its own thread, on each span of a batch just before the
//!   exporter sees it: the name, every attribute, every event (so `exception.message` and
//!   `exception.stacktrace`), every link's attributes and the status description.
//! - **Error groups** and what is made from them (the summary, alert callbacks, webhook bodies,
//!   OTLP log records): error tracking runs [`Redactor::redact`] on each error's type, message
//!   and operation before it is fingerprinted and stored, so nothing downstream ever held the
//!   secret. Log records and webhook bodies carry only those redacted texts plus fixed
//!   vocabulary (rule names, severities, counts, ids).
//! - **Metric labels** never see free text: they are the normalised method, the route
//!   template (never the raw path), the status code, an error class from a fixed list and, on
//!   the client, the server's host name.
//! - **Headers**: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and
//!   `X-Api-Key`-style headers are never captured (see the middleware's
//!   `semconv::is_sensitive_header`); others only when allow-listed.
//!
//! # What it replaces
//!
//! - An attribute whose **key** holds a denied term at a word boundary (`password`, `passwd`,
//!   `pwd`, `secret`, `token`, `api_key`, `apikey`, `api-key`, `authorization`, `private_key`,
//!   `credential`, `cookie`, and any added with [`Redactor::with_denied_key`]) has its value
//!   replaced with `[REDACTED]` whatever it is (booleans excepted). `db.password`,
//!   `access_token`, `x-api-key` and `accessToken` are denied; `input_tokens` and `tokenizer`
//!   are not.
//! - In free text (string values, event and span names, the status description), by the
//!   default value patterns, in this order: `Bearer <token>` and `Basic <credentials>` (the
//!   scheme kept; prose such as "basic auth is disabled" or "the bearer of" is left alone),
//!   `key=value` / `key: value` pairs whose key is denied (the value, unless it is already a
//!   marker: `[REDACTED]…`, or exactly the `REDACTED` the tracing layer writes for every query
//!   value, as in `url.query` = `api_key=REDACTED`), JWTs, cloud keys (AWS
//!   `AKIA…`/`ASIA…`, Google `AIza…`, GitHub `ghp_…`/`github_pat_…`, GitLab `glpat-…`,
//!   Slack `xox?-…`, Stripe `sk_live_…`), e-mail addresses, and card numbers (12 to 19
//!   digits, optionally grouped by single spaces or dashes, that pass the Luhn check).
//!
//! # Cost
//!
//! Every string first goes through one branch-free byte scan (a class table, one load and one
//! `or` per byte) that looks for what any default pattern needs: an `@`, 12 digits, an `=` or
//! `:` next to a denied term, or the first two letters of a literal (`eyJ`, `AKIA`, `ghp_`,
//! `xox`, `sk_live_`, `AIza`, `Bearer`, `Basic` and the like, through a 64 Ki-bit table of
//! byte pairs). Most strings stop there; the closer looks (digits, dashes of a UUID, `b`s, `=`
//! and `:`) read eight bytes at a time. A string that cannot hold any of them is not handed to
//! a regular expression, and nothing is allocated. Extra patterns and rules run on every
//! string. See BENCHMARKS.md ("Redaction's cost").

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::Status;
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use regex::Captures;
use service_tracing_middleware::tracer::RequestValue;

use crate::server_span::ServerRecord;
/// The pattern type [`Redactor::with_pattern`] takes (the `regex` crate's).
pub use regex::Regex;

/// What a redacted part is replaced with.
///
/// ```
/// use service_tracing::redact::{Redactor, REDACTED};
/// assert_eq!(Redactor::new().redact("a@b.io"), REDACTED);
/// ```
pub const REDACTED: &str = "[REDACTED]";

/// What the tracing layer writes for each query value (`url.query`, `url.full`): a value that
/// is exactly this holds nothing left to hide, whatever its key.
const QUERY_VALUE_REDACTED: &str = service_tracing_middleware::semconv::REDACTED;

/// The default bound on text redacted with [`Redactor::redact`], in bytes.
pub(crate) const DEFAULT_MAX_LEN: usize = 512;

/// The attribute-key terms denied by default.
pub const DEFAULT_DENIED_KEYS: [&str; 12] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "private_key",
    "credential",
    "cookie",
];

/// Literals whose first two bytes mark a string for the full check: (literal, any case).
const LITERALS: [(&str, bool); 19] = [
    ("bearer", true),
    ("basic", true),
    ("eyJ", false),
    ("AKIA", false),
    ("ASIA", false),
    ("AIza", false),
    ("ghp_", false),
    ("gho_", false),
    ("ghu_", false),
    ("ghs_", false),
    ("ghr_", false),
    ("github_pat_", false),
    ("glpat-", false),
    ("xox", false),
    ("sk_live_", false),
    ("sk_test_", false),
    ("rk_live_", false),
    ("rk_test_", false),
    ("pk_live_", false),
];

const C_DIGIT: u16 = 1;
const C_SPACE: u16 = 2;
const C_AT: u16 = 4;
const C_PAIR: u16 = 8; // `=` or `:`
const C_UNDERSCORE: u16 = 16;
const C_DASH: u16 = 32;
const C_X_OR_G: u16 = 64;
const C_J: u16 = 128;
const C_I: u16 = 256;
const C_B: u16 = 512;
const C_NOT_IN_UUID: u16 = 1024; // neither a hex digit nor `-`

/// What each byte may take part in. Every default literal holds one of these classes: `eyJ` a
/// `J`; `AKIA`, `ASIA` and `AIza` an `I`; the GitHub and Stripe prefixes an `_`; `glpat-` and
/// `xox?-` a `-` and a `g` or `x`; `Bearer` and `Basic` a `b` and the space after them. A
/// string none of whose bytes is `C_NOT_IN_UUID` may be a UUID.
const CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        if !(b as u8).is_ascii_hexdigit() && b != b'-' as usize {
            t[b] = C_NOT_IN_UUID;
        }
        b += 1;
    }
    let mut b = b'0';
    while b <= b'9' {
        t[b as usize] |= C_DIGIT;
        b += 1;
    }
    t[b' ' as usize] |= C_SPACE;
    t[b'\t' as usize] |= C_SPACE;
    t[b'\n' as usize] |= C_SPACE;
    t[b'\r' as usize] |= C_SPACE;
    // The patterns' `\s` is Unicode whitespace: vertical tab, form feed, and the lead bytes of
    // every non-ASCII White_Space character in UTF-8 (U+0085 and U+00A0: C2; U+1680: E1;
    // U+2000-U+200A, U+2028, U+2029, U+202F, U+205F: E2; U+3000: E3).
    t[0x0b] |= C_SPACE;
    t[0x0c] |= C_SPACE;
    t[0xc2] |= C_SPACE;
    t[0xe1] |= C_SPACE;
    t[0xe2] |= C_SPACE;
    t[0xe3] |= C_SPACE;
    t[b'@' as usize] |= C_AT;
    t[b'=' as usize] |= C_PAIR;
    t[b':' as usize] |= C_PAIR;
    t[b'_' as usize] |= C_UNDERSCORE;
    t[b'-' as usize] |= C_DASH;
    t[b'x' as usize] |= C_X_OR_G;
    t[b'g' as usize] |= C_X_OR_G;
    t[b'J' as usize] |= C_J;
    t[b'I' as usize] |= C_I;
    t[b'b' as usize] |= C_B;
    t[b'B' as usize] |= C_B;
    t
};

/// The classes present in `b`: one table load and an `or` per byte, with no branch. Digits
/// are counted afterwards, only where a card number could be ([`card_digits`]).
#[inline]
fn classify(b: &[u8]) -> u16 {
    b.iter()
        .fold(0, |flags, &byte| flags | CLASS[usize::from(byte)])
}

/// A byte's value repeated in every byte of a word.
const fn each(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// Calls `f` with each little-endian 64-bit word of `b` and the index of its first byte, until
/// it returns `true`; the last word holds the bytes left over in its low bytes and zero bytes
/// above them.
#[inline(always)]
fn any_word(b: &[u8], mut f: impl FnMut(usize, u64) -> bool) -> bool {
    let read = |bytes: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let mut at = 0;
    while let Some(chunk) = b.get(at..at + 8) {
        if f(at, read(chunk)) {
            return true;
        }
        at += 8;
    }
    let left = b.len() - at;
    if left == 0 {
        return false;
    }
    let last = match b.len().checked_sub(8) {
        // The last eight bytes, shifted down past those a whole word already held.
        Some(from) => read(&b[from..]) >> (8 * (8 - left)),
        None => {
            let mut word = [0; 8];
            word[..left].copy_from_slice(&b[at..]);
            u64::from_le_bytes(word)
        }
    };
    f(at, last)
}

/// Whether `b`, whose classes are `flags`, holds 12 digits or more: what a card number needs.
#[inline]
fn card_digits(b: &[u8], flags: u16) -> bool {
    let mut digits = 0;
    flags & C_DIGIT != 0
        && b.len() >= 12
        && any_word(b, |_, w| {
            digits += digits_in(w);
            digits >= 12
        })
}

/// How many of a word's bytes are ASCII digits.
#[inline]
fn digits_in(w: u64) -> u64 {
    // Digits become 0 to 9; then a byte is one if neither its high bit is set nor adding 0x76
    // to its low seven bits (which cannot carry into the next byte) reaches 0x80.
    let x = w ^ each(b'0');
    let ten_or_more = (x & each(0x7f)) + each(0x76);
    let digit = !(ten_or_more | x) & each(0x80);
    // Sums the bytes' single bits into the top byte.
    (digit >> 7).wrapping_mul(each(1)) >> 56
}

/// The high bit of each byte of `w` equal to `byte`: the `xor` makes those zero, and the
/// zero-byte test (`(x - 0x01…) & !x & 0x80…`) flags every zero byte. A byte just above a
/// flagged one may be flagged too, so callers check each flagged byte against the text.
#[inline(always)]
fn bytes_equal(w: u64, byte: u8) -> u64 {
    let x = w ^ each(byte);
    x.wrapping_sub(each(1)) & !x & each(0x80)
}

/// Whether `f` holds for the index of some byte flagged in `flagged`, the word at `b[at..]`.
#[inline(always)]
fn any_flagged(at: usize, mut flagged: u64, mut f: impl FnMut(usize) -> bool) -> bool {
    while flagged != 0 {
        if f(at + (flagged.trailing_zeros() / 8) as usize) {
            return true;
        }
        flagged &= flagged - 1;
    }
    false
}

/// Whether `Bearer` or `Basic` (any case) appears: each `b` or `B` (`| 0x20` folds case),
/// eight bytes at a time, then the words there.
#[cold]
#[inline(never)]
fn has_scheme(b: &[u8]) -> bool {
    any_word(b, |at, w| {
        let flagged = bytes_equal(w | each(0x20), b'b');
        flagged != 0 && scheme_at_flagged(b, at, flagged)
    })
}

/// Out of line, so the loop over words stays small: most words hold no `b`.
#[inline(never)]
fn scheme_at_flagged(b: &[u8], at: usize, flagged: u64) -> bool {
    any_flagged(at, flagged, |i| scheme_at(b, i))
}

/// Whether `Bearer` or `Basic` (any case) starts at `b[i]`.
#[inline]
fn scheme_at(b: &[u8], i: usize) -> bool {
    let rest = b.get(i..).unwrap_or_default();
    match rest.get(1).map(|c| c | 0x20) {
        Some(b'e') => rest.len() >= 6 && rest[..6].eq_ignore_ascii_case(b"bearer"),
        Some(b'a') => rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"basic"),
        _ => false,
    }
}

/// Whether `b`, whose classes are `flags`, is a canonical UUID (`8-4-4-4-12` hex digits): an
/// id, never a card number, however many of its digits are decimal.
#[inline]
fn is_uuid(b: &[u8], flags: u16) -> bool {
    if b.len() != 36 || flags & C_NOT_IN_UUID != 0 {
        return false;
    }
    // Every byte is a hex digit or a `-` (the classes say so), and only `-` (0x2d) has neither
    // bit 4 (digits, 0x3_) nor bit 6 (letters, 0x4_ and 0x6_) set: one bit per byte marks the
    // dashes, which must be at 8, 13, 18 and 23 and nowhere else.
    let dashes = |from: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&b[from..from + 8]);
        let w = u64::from_le_bytes(word);
        !(w >> 4 | w >> 6) & each(1)
    };
    dashes(0) == 0
        && dashes(8) == 1 | 1 << 40
        && dashes(16) == 1 << 16 | 1 << 56
        && dashes(24) == 0
        && dashes(28) == 0
}

/// Which checks a string needs, from the byte scan.
#[derive(Clone, Copy, Default)]
struct Needs {
    literal: bool,
    pair: bool,
    email: bool,
    card: bool,
}

impl Needs {
    fn any(self) -> bool {
        self.literal || self.pair || self.email || self.card
    }
}

/// The default value patterns, compiled once.
struct Patterns {
    bearer: Regex,
    basic: Regex,
    jwt: Regex,
    cloud: Regex,
    email: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        bearer: compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9\-._~+/]+=*)"),
        basic: compile(r"(?i)\b(basic)(\s+)([A-Za-z0-9+/]+=*)"),
        jwt: compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
        cloud: compile(concat!(
            r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35}",
            r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
            r"|glpat-[A-Za-z0-9_\-]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}",
            r"|[spr]k_(?:live|test)_[A-Za-z0-9]{16,})\b"
        )),
        email: compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    })
}

/// Compiles a constant pattern (the unit tests compile every one).
fn compile(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)] // A constant pattern, compiled by every test run.
    Regex::new(pattern).expect("a valid constant pattern")
}

/// The denied key terms and what is precomputed from them.
struct Keys {
    /// Lowercase ASCII terms of at least two bytes, ordered by their first byte.
    terms: Vec<Box<[u8]>>,
    /// For each byte (either case), the range of `terms` that start with it (most bytes start
    /// none), so a key is compared only with the few terms that can start where it stands.
    starting: Box<[(usize, usize); 256]>,
    /// Byte pairs that start a literal, one bit each.
    pairs: Box<[u64; 1024]>,
    /// `key=value` and `key: value` pairs whose key may hold a term.
    kv: Option<Regex>,
    /// Whether the default literals are looked for.
    literals: bool,
    /// The shortest text any pattern can match: `pwd=x` and `a@b.io` with the defaults, two
    /// bytes more than the shortest term otherwise. Shorter strings (`GET`, `1.1`, `200`)
    /// are not scanned.
    shortest: usize,
    /// The classes at least one of which any check needs; a string with none of them is clear
    /// after the class scan.
    wanted: u16,
}

impl Keys {
    fn new(terms: &[String], literals: bool) -> Self {
        let mut terms: Vec<Box<[u8]>> = terms
            .iter()
            .map(|t| t.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .filter(|t| t.len() >= 2)
            .collect();
        let kv = (!terms.is_empty()).then(|| {
            let alternatives: Vec<String> = terms
                .iter()
                .map(|t| regex::escape(&String::from_utf8_lossy(t)))
                .collect();
            // Escaped terms always make a valid pattern; a list too large for the regex size
            // limit leaves only the attribute-key check.
            Regex::new(&format!(
                r#"(?i)([A-Za-z0-9_.\-]*(?:{})[A-Za-z0-9_.\-]*)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&,;"']+)"#,
                alternatives.join("|")
            ))
            .ok()
        }).flatten();
        terms.sort_by_key(|t| t[0]);
        let mut starting = Box::new([(0, 0); 256]);
        let mut from = 0;
        while let Some(t) = terms.get(from) {
            let byte = t[0];
            let to = from + terms[from..].iter().take_while(|t| t[0] == byte).count();
            starting[usize::from(byte)] = (from, to);
            starting[usize::from(byte.to_ascii_uppercase())] = (from, to);
            from = to;
        }
        let mut pairs = Box::new([0u64; 1024]);
        let mut mark = |a: u8, b: u8| {
            let i = (usize::from(a) << 8) | usize::from(b);
            pairs[i >> 6] |= 1 << (i & 63);
        };
        let mut mark_any_case = |a: u8, b: u8, any: bool| {
            if any {
                for x in [a.to_ascii_lowercase(), a.to_ascii_uppercase()] {
                    for y in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        mark(x, y);
                    }
                }
            } else {
                mark(a, b);
            }
        };
        if literals {
            for (literal, any) in LITERALS {
                let l = literal.as_bytes();
                mark_any_case(l[0], l[1], any);
            }
        }
        let shortest = terms
            .iter()
            .map(|t| t.len() + 2)
            .chain(literals.then_some(5))
            .min()
            .unwrap_or(usize::MAX);
        // A class each check in `look_closer` starts from.
        let mut wanted = 0;
        if literals {
            wanted |= C_B | C_J | C_I | C_UNDERSCORE | C_DASH | C_AT | C_DIGIT;
        }
        if !terms.is_empty() {
            wanted |= C_PAIR;
        }
        Self {
            terms,
            starting,
            pairs,
            literals,
            shortest,
            wanted,
            kv,
        }
    }

    /// One pass over the bytes, then a closer look only where a class every pattern needs is
    /// present: what the full check must look at.
    #[inline]
    fn scan(&self, text: &str) -> Needs {
        let b = text.as_bytes();
        if b.len() < self.shortest {
            return Needs::default();
        }
        let flags = classify(b);
        if flags & self.wanted == 0 {
            return Needs::default();
        }
        self.look_closer(b, flags)
    }

    /// What [`scan`](Self::scan) found worth a look: the checks each class present calls for.
    #[inline(never)]
    fn look_closer(&self, b: &[u8], flags: u16) -> Needs {
        let has = |class: u16| flags & class != 0;
        let scheme = self.literals && has(C_SPACE) && has(C_B) && has_scheme(b);
        let other =
            self.literals && (has(C_J | C_I | C_UNDERSCORE) || (has(C_DASH) && has(C_X_OR_G)));
        let pair = has(C_PAIR) && !self.terms.is_empty() && self.denied_pair(b);
        let literal = other && self.confirm(b);
        Needs {
            literal: scheme || literal,
            pair,
            email: self.literals && has(C_AT),
            card: self.literals && !is_uuid(b, flags) && card_digits(b, flags),
        }
    }

    /// After the class check: whether a whole default literal starts somewhere. The pair
    /// table skips most positions; common pairs (`gh`, `sk`) start ordinary words too, hence
    /// the comparison.
    #[cold]
    #[inline(never)]
    fn confirm(&self, b: &[u8]) -> bool {
        (0..b.len().saturating_sub(1)).any(|i| {
            let pair = (usize::from(b[i]) << 8) | usize::from(b[i + 1]);
            if self.pairs[pair >> 6] >> (pair & 63) & 1 == 0 {
                return false;
            }
            let rest = &b[i..];
            LITERALS.iter().any(|(l, any_case)| {
                let l = l.as_bytes();
                rest.len() >= l.len()
                    && if *any_case {
                        rest[..l.len()].eq_ignore_ascii_case(l)
                    } else {
                        &rest[..l.len()] == l
                    }
            })
        })
    }

    /// Whether some `=` or `:` follows (spaces allowed) a key this list denies, with a value
    /// the `key=value` pattern would replace (not a marker: see [`kept_value`]).
    #[cold]
    #[inline(never)]
    fn denied_pair(&self, b: &[u8]) -> bool {
        // Each `=` and `:`, eight bytes at a time.
        any_word(b, |at, w| {
            let flagged = bytes_equal(w, b'=') | bytes_equal(w, b':');
            flagged != 0 && self.denied_pair_flagged(b, at, flagged)
        })
    }

    /// Out of line, so the loop over words stays small: most words hold no `=` or `:`.
    #[inline(never)]
    fn denied_pair_flagged(&self, b: &[u8], at: usize, flagged: u64) -> bool {
        any_flagged(at, flagged, |i| self.denied_pair_at(b, i))
    }

    /// Whether `b[at]` is a `=` or `:` after a denied key, before a value not kept.
    fn denied_pair_at(&self, b: &[u8], at: usize) -> bool {
        if !matches!(b.get(at), Some(b'=' | b':')) || starts_with_kept_value(&b[at + 1..]) {
            return false;
        }
        // `b[at]` is ASCII, so `b[..at]` ends on a character boundary; trim what `\s` takes.
        let before = std::str::from_utf8(&b[..at]).map_or(&b[..at], |s| s.trim_end().as_bytes());
        let start = before
            .iter()
            .rposition(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')))
            .map_or(0, |p| p + 1);
        let key = &before[start..];
        !key.is_empty() && self.denies(key)
    }

    /// Whether `key` holds a denied term that starts and ends at word boundaries (`.`, `_`,
    /// `-`, `/`, a space, a lower-to-upper case change, or either end).
    fn denies(&self, b: &[u8]) -> bool {
        let mut prev = b'.';
        for (i, &c) in b.iter().enumerate() {
            let (from, to) = self.starting[usize::from(c)];
            if from != to && boundary(prev, c) && self.term_at(b, i, from, to) {
                return true;
            }
            prev = c;
        }
        false
    }

    /// Whether one of `terms[from..to]` (those starting with `b[i]`) ends at a boundary there.
    fn term_at(&self, b: &[u8], i: usize, from: usize, to: usize) -> bool {
        // Every term has two bytes or more.
        let Some(next) = b.get(i + 1).map(u8::to_ascii_lowercase) else {
            return false;
        };
        self.terms
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .any(|t| {
                let end = i + t.len();
                t[1] == next
                    && end <= b.len()
                    && b[i..end].eq_ignore_ascii_case(t)
                    && (end == b.len() || boundary(b[end - 1], b[end]))
            })
    }
}

#[inline]
fn boundary(prev: u8, next: u8) -> bool {
    matches!(prev, b'.' | b'_' | b'-' | b'/' | b' ')
        || matches!(next, b'.' | b'_' | b'-' | b'/' | b' ')
        || (prev.is_ascii_lowercase() && next.is_ascii_uppercase())
}

thread_local! {
    /// Verdicts on attribute keys seen on this thread (the export worker's, error tracking's).
    static KEY_VERDICTS: RefCell<KeyVerdicts> = RefCell::new(KeyVerdicts::default());
}

/// How many keys are remembered per thread (a direct-mapped table: a key whose slot is taken
/// replaces the one there).
const KEY_SLOTS: usize = 1024;

/// How many clean shared texts are remembered per thread (direct-mapped, like the keys).
const CLEAN_SLOTS: usize = 64;

/// Whether a key is denied, remembered by the key's address and length.
///
/// Sound because a slot keeps its key alive: only keys whose clone shares their bytes are
/// remembered (`&'static str` keys, which every semantic-convention and `tracing` field key
/// is, and `Arc<str>` keys), so while the slot holds one no other string can sit at that
/// address. Keys made from a `String` are checked every time. The key list the verdicts were
/// made with is kept too, and a redactor with another list starts the memory over.
#[derive(Default)]
struct KeyVerdicts {
    keys: Option<Arc<Keys>>,
    slots: Vec<Option<(usize, usize, Key, bool)>>,
    /// Shared texts the default policy found clean, by address (each kept alive here, so an
    /// address is never reused for another text while remembered).
    clean: Vec<Option<Arc<str>>>,
}

impl KeyVerdicts {
    /// The memory for `keys`, started over if it was made with another list.
    #[inline]
    fn of(&mut self, keys: &Arc<Keys>) -> &mut Self {
        if !self.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            self.keys = Some(keys.clone());
            self.slots.clear();
            self.slots.resize_with(KEY_SLOTS, || None);
            self.clean.clear();
            self.clean.resize_with(CLEAN_SLOTS, || None);
        }
        self
    }

    /// Whether the shared text `text` is clean under the default policy with these keys:
    /// remembered, or found so by `check` now. Only a text shared beyond the span (its
    /// reference count above one: the request thread's cache of repeated texts holds it) is
    /// remembered; a text of one span would only push out the others.
    #[inline]
    fn clean_shared(&mut self, text: &Arc<str>, check: impl FnOnce(&str) -> bool) -> bool {
        let address = text.as_ptr() as usize;
        let slot = (address >> 4) % CLEAN_SLOTS;
        if let Some(Some(kept)) = self.clean.get(slot) {
            if Arc::ptr_eq(kept, text) {
                return true;
            }
        }
        let clean = check(text);
        if clean && Arc::strong_count(text) > 1 {
            if let Some(entry) = self.clean.get_mut(slot) {
                *entry = Some(text.clone());
            }
        }
        clean
    }

    /// Whether `key` is denied by `keys`, the list [`of`](Self::of) was last called with.
    #[inline]
    fn denies(&mut self, keys: &Keys, key: &Key) -> bool {
        let text = key.as_str();
        let (address, len) = (text.as_ptr() as usize, text.len());
        // Two neighbouring slots per key, so two keys that hash alike do not evict each other.
        let hash =
            ((address as u64) ^ (len as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let first = ((hash >> 40) as usize % KEY_SLOTS) & !1;
        for slot in [first, first + 1] {
            if let Some(Some((a, l, _, denied))) = self.slots.get(slot) {
                if *a == address && *l == len {
                    return *denied;
                }
            }
        }
        self.remember(keys, key, first)
    }

    #[cold]
    fn remember(&mut self, keys: &Keys, key: &Key, first: usize) -> bool {
        let text = key.as_str();
        let denied = keys.denies(text.as_bytes());
        let kept = key.clone();
        if kept.as_str().as_ptr() == text.as_ptr() {
            let slot = match self.slots.get(first) {
                Some(Some(_)) => first + 1,
                _ => first,
            };
            if let Some(entry) = self.slots.get_mut(slot) {
                *entry = Some((text.as_ptr() as usize, text.len(), kept, denied));
            }
        }
        denied
    }
}

type Rule = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The redaction policy: takes secrets and personal data out of everything the process
/// exports. See the [module docs](self) for where it runs and what it replaces.
///
/// [`ServiceTracing::redactor`](crate::ServiceTracing::redactor) sets the one used for spans,
/// error groups, webhook bodies and log records (default: [`Redactor::new`]).
///
/// ```
/// use service_tracing::redact::Redactor;
///
/// let redactor = Redactor::new()
///     .with_denied_key("ssn")
///     .with_rule(|text| text.contains("acme-internal").then(|| "[host withheld]".to_owned()));
/// assert_eq!(
///     redactor.redact("login failed for bob@example.com with password=hunter2"),
///     "login failed for [REDACTED] with password=[REDACTED]"
/// );
/// assert_eq!(redactor.redact("customer ssn: 123-45-6789"), "customer ssn: [REDACTED]");
/// assert_eq!(redactor.redact("acme-internal down"), "[host withheld]");
/// // Prose is left alone.
/// assert_eq!(redactor.redact("basic auth is disabled"), "basic auth is disabled");
/// ```
#[derive(Clone)]
#[must_use]
pub struct Redactor {
    defaults: bool,
    denied: Vec<String>,
    keys: Arc<Keys>,
    patterns: Vec<Regex>,
    rules: Vec<Arc<Rule>>,
    max_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("defaults", &self.defaults)
            .field("denied_keys", &self.denied)
            .field("extra_patterns", &self.patterns.len())
            .field("custom_rules", &self.rules.len())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// The default value patterns and denied keys; [`redact`](Self::redact) cuts its output to
    /// 512 bytes.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert_eq!(redactor.redact("pwd=x"), "pwd=[REDACTED]");
    /// ```
    pub fn new() -> Self {
        let denied: Vec<String> = DEFAULT_DENIED_KEYS.map(str::to_owned).to_vec();
        Self {
            defaults: true,
            keys: Arc::new(Keys::new(&denied, true)),
            denied,
            patterns: Vec::new(),
            rules: Vec::new(),
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Neither the default value patterns nor the default denied keys: only what is added and
    /// the length bound.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::without_defaults();
    /// assert_eq!(redactor.redact("bob@example.com password=x"), "bob@example.com password=x");
    /// ```
    pub fn without_defaults() -> Self {
        Self {
            defaults: false,
            keys: Arc::new(Keys::new(&[], false)),
            denied: Vec::new(),
            ..Self::new()
        }
    }

    /// Denies one more attribute-key term (any case, at least two bytes; matched at word
    /// boundaries as the defaults are). Its values are replaced, in attributes and in
    /// `key=value` pairs of free text.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// let redactor = service_tracing::redact::Redactor::new().with_denied_key("ssn");
    /// assert_eq!(redactor.redact("ssn=123-45-6789"), "ssn=[REDACTED]");
    /// let mut attributes = vec![KeyValue::new("customer.ssn", "123-45-6789")];
    /// redactor.redact_attributes(&mut attributes);
    /// assert_eq!(attributes[0].value.as_str(), "[REDACTED]");
    /// ```
    pub fn with_denied_key(mut self, term: impl Into<String>) -> Self {
        self.denied.push(term.into());
        self.keys = Arc::new(Keys::new(&self.denied, self.defaults));
        self
    }

    /// Adds a pattern whose every match is replaced with `[REDACTED]`, after the default ones.
    /// Extra patterns run on every string (no byte scan skips them), so keep them few.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new()
    ///     .with_pattern(service_tracing::redact::Regex::new(r"\bEMP-[0-9]{6}\b").expect("valid"));
    /// assert_eq!(redactor.redact("employee EMP-123456 left"), "employee [REDACTED] left");
    /// ```
    pub fn with_pattern(mut self, pattern: Regex) -> Self {
        self.patterns.push(pattern);
        self
    }

    /// Adds a rule run after the patterns: it gets the text redacted so far and returns
    /// `Some(replacement)` to replace it, or `None` to keep it. A rule that panics replaces the
    /// whole text with `[REDACTED]`. Rules run on every string.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new()
    ///     .with_rule(|text| Some(text.replace("acme-internal", "[host]")));
    /// assert_eq!(redactor.redact("acme-internal down"), "[host] down");
    /// ```
    pub fn with_rule(
        mut self,
        rule: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Arc::new(rule));
        self
    }

    /// Cuts what [`redact`](Self::redact) returns to at most `max` bytes (at least 16). Spans
    /// are not cut.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new().with_max_len(16);
    /// assert_eq!(redactor.redact("a rather long message indeed"), "a rather long me");
    /// ```
    pub fn with_max_len(mut self, max: usize) -> Self {
        self.max_len = max.max(16);
        self
    }

    /// Whether values under this attribute key are replaced whole.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert!(redactor.denies_key("db.password"));
    /// assert!(redactor.denies_key("http.request.header.x-api-key"));
    /// assert!(!redactor.denies_key("gen_ai.usage.input_tokens"));
    /// ```
    pub fn denies_key(&self, key: &str) -> bool {
        self.keys.denies(key.as_bytes())
    }

    /// The text with the policy applied, cut to the length bound (what error tracking stores).
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert_eq!(
    ///     redactor.redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"),
    ///     "Authorization: Bearer [REDACTED]"
    /// );
    /// ```
    pub fn redact(&self, text: &str) -> String {
        let text = truncate(text, self.max_len.saturating_mul(4));
        match self.scrub(text) {
            Some(redacted) => truncate(&redacted, self.max_len).to_owned(),
            None => truncate(text, self.max_len).to_owned(),
        }
    }

    /// The policy applied to one span in place: its name, attributes, events (with
    /// `exception.message` and `exception.stacktrace`), links' attributes and status
    /// description. The export worker calls it on its own thread; call it yourself in an
    /// exporter of your own.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status};
    /// use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    /// use std::time::SystemTime;
    ///
    /// let mut events = SpanEvents::default();
    /// events.events.push(Event::new(
    ///     "exception",
    ///     SystemTime::now(),
    ///     vec![KeyValue::new("exception.message", "bad card 4111 1111 1111 1111")],
    ///     0,
    /// ));
    /// let mut span = SpanData {
    ///     span_context: SpanContext::empty_context(),
    ///     parent_span_id: SpanId::INVALID,
    ///     parent_span_is_remote: false,
    ///     span_kind: SpanKind::Server,
    ///     name: "POST /pay".into(),
    ///     start_time: SystemTime::now(),
    ///     end_time: SystemTime::now(),
    ///     attributes: vec![KeyValue::new("user.password", "hunter2")],
    ///     dropped_attributes_count: 0,
    ///     events,
    ///     links: SpanLinks::default(),
    ///     status: Status::error("login of bob@example.com failed"),
    ///     instrumentation_scope: Default::default(),
    /// };
    /// service_tracing::redact::Redactor::new().redact_span(&mut span);
    /// assert_eq!(span.attributes[0].value.as_str(), "[REDACTED]");
    /// assert_eq!(span.events[0].attributes[0].value.as_str(), "bad card [REDACTED]");
    /// assert_eq!(span.status, Status::error("login of [REDACTED] failed"));
    /// ```
    pub fn redact_span(&self, span: &mut SpanData) {
        if let Some(name) = self.scrub(&span.name) {
            span.name = Cow::Owned(name);
        }
        self.redact_attributes(&mut span.attributes);
        for event in span.events.events.iter_mut() {
            if let Some(name) = self.scrub(&event.name) {
                event.name = Cow::Owned(name);
            }
            self.redact_attributes(&mut event.attributes);
        }
        for link in span.links.links.iter_mut() {
            self.redact_attributes(&mut link.attributes);
        }
        if let Status::Error { description } = &mut span.status {
            if let Some(redacted) = self.scrub(description) {
                *description = Cow::Owned(redacted);
            }
        }
    }

    /// [`redact_span`](Self::redact_span) for a server span of the layer's own type: its span,
    /// then its request's attributes, which stay as the layer read them; what the policy
    /// replaces is noted beside them (`record.redacted`) and written instead.
    pub(crate) fn redact_record(&self, record: &mut ServerRecord) {
        self.redact_span(&mut record.span);
        if record.request.is_none() {
            return;
        }
        // Under the default policy, texts from the process's own code (the method and scheme
        // vocabulary, interned route templates) hold nothing to take out, and a text shared
        // between requests (a caller's user agent, the host it calls) needs one look per
        // thread, not one per span.
        let plain = self.patterns.is_empty() && self.rules.is_empty();
        let mut changed: Vec<(&'static str, String)> = Vec::new();
        KEY_VERDICTS.with(|cell| {
            let mut memory = cell.try_borrow_mut().ok();
            let mut memory = memory.as_deref_mut().map(|m| m.of(&self.keys));
            // The request's attributes and the status code kept beside them; nothing is
            // noted as redacted yet, so each comes as the layer read it.
            record.for_each_request_attribute(|key, value| {
                let denied = match memory.as_deref_mut() {
                    Some(m) => m.denies(&self.keys, &Key::from_static_str(key)),
                    None => self.keys.denies(key.as_bytes()),
                };
                if denied {
                    changed.push((key, REDACTED.to_owned()));
                    return;
                }
                let text = match value {
                    RequestValue::Static(_) if plain => return,
                    RequestValue::Static(s) | RequestValue::Text(s) => s,
                    RequestValue::Shared(s) => {
                        if plain {
                            if let Some(m) = memory.as_deref_mut() {
                                if m.clean_shared(s, |t| self.scrub(t).is_none()) {
                                    return;
                                }
                            }
                        }
                        &**s
                    }
                    // Numbers and addresses are no free text.
                    _ => return,
                };
                if let Some(redacted) = self.scrub(text) {
                    changed.push((key, redacted));
                }
            });
        });
        record.redacted = changed;
    }

    /// The policy applied to attributes in place: denied keys' values replaced whole (booleans
    /// kept), string and string-array values run through the value patterns.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// let mut attributes = vec![
    ///     KeyValue::new("db.password", "hunter2"),
    ///     KeyValue::new("note", "mail bob@example.com"),
    ///     KeyValue::new("input_tokens", 42),
    /// ];
    /// service_tracing::redact::Redactor::new().redact_attributes(&mut attributes);
    /// assert_eq!(attributes[0].value.as_str(), "[REDACTED]");
    /// assert_eq!(attributes[1].value.as_str(), "mail [REDACTED]");
    /// assert_eq!(attributes[2].value.as_str(), "42");
    /// ```
    pub fn redact_attributes(&self, attributes: &mut [KeyValue]) {
        // A custom rule that redacts attributes itself finds the memory borrowed and goes
        // without it.
        KEY_VERDICTS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut verdicts) => {
                let verdicts = verdicts.of(&self.keys);
                for kv in attributes.iter_mut() {
                    let denied = verdicts.denies(&self.keys, &kv.key);
                    self.redact_attribute(kv, denied);
                }
            }
            Err(_) => {
                for kv in attributes.iter_mut() {
                    let denied = self.keys.denies(kv.key.as_str().as_bytes());
                    self.redact_attribute(kv, denied);
                }
            }
        });
    }

    /// A string the scan clears is settled here, inline in the loop over attributes; anything
    /// else goes to [`redact_attribute_further`](Self::redact_attribute_further).
    #[inline(always)]
    fn redact_attribute(&self, kv: &mut KeyValue, denied: bool) {
        match &mut kv.value {
            Value::String(s) if !denied => {
                let needs = self.keys.scan(s.as_str());
                if needs.any() || !self.patterns.is_empty() || !self.rules.is_empty() {
                    if let Some(redacted) = self.scrub_further(s.as_str(), needs) {
                        *s = StringValue::from(redacted);
                    }
                }
            }
            Value::Bool(_) | Value::I64(_) | Value::F64(_) if !denied => {}
            _ => self.redact_attribute_further(kv, denied),
        }
    }

    #[cold]
    #[inline(never)]
    fn redact_attribute_further(&self, kv: &mut KeyValue, denied: bool) {
        if denied {
            if !matches!(kv.value, Value::Bool(_) | Value::Array(Array::Bool(_))) {
                kv.value = Value::String(StringValue::from(REDACTED));
            }
            return;
        }
        match &mut kv.value {
            Value::String(s) => {
                if let Some(redacted) = self.scrub(s.as_str()) {
                    *s = StringValue::from(redacted);
                }
            }
            Value::Array(Array::String(values)) => {
                for s in values.iter_mut() {
                    if let Some(redacted) = self.scrub(s.as_str()) {
                        *s = StringValue::from(redacted);
                    }
                }
            }
            _ => {}
        }
    }

    /// The text with the patterns and rules applied, or `None` when nothing changed. Not cut.
    #[inline(always)]
    pub(crate) fn scrub(&self, text: &str) -> Option<String> {
        let needs = self.keys.scan(text);
        if !needs.any() && self.patterns.is_empty() && self.rules.is_empty() {
            return None;
        }
        self.scrub_further(text, needs)
    }

    #[cold]
    #[inline(never)]
    fn scrub_further(&self, text: &str, needs: Needs) -> Option<String> {
        let mut out: Cow<'_, str> = Cow::Borrowed(text);
        if needs.any() {
            self.apply_defaults(&mut out, needs);
        }
        for pattern in &self.patterns {
            replace(&mut out, pattern, |_| Cow::Borrowed(REDACTED));
        }
        for rule in &self.rules {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rule(&out)));
            match outcome {
                Ok(Some(replaced)) => out = Cow::Owned(replaced),
                Ok(None) => {}
                Err(_) => out = Cow::Borrowed(REDACTED),
            }
        }
        (out != text).then(|| out.into_owned())
    }

    #[cold]
    #[inline(never)]
    fn apply_defaults(&self, out: &mut Cow<'_, str>, needs: Needs) {
        let p = patterns();
        if needs.literal && self.defaults {
            replace(out, &p.bearer, |c| {
                if looks_like_token(&c[3]) {
                    Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                } else {
                    Cow::Owned(c[0].to_owned())
                }
            });
            replace(out, &p.basic, |c| {
                if is_basic_credential(&c[3]) {
                    Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                } else {
                    Cow::Owned(c[0].to_owned())
                }
            });
        }
        if needs.pair {
            if let Some(kv) = &self.keys.kv {
                replace(out, kv, |c| {
                    let value = &c[3];
                    let kept = value.eq_ignore_ascii_case("bearer")
                        || value.eq_ignore_ascii_case("basic")
                        || kept_value(value)
                        || !self.keys.denies(c[1].as_bytes());
                    if kept {
                        Cow::Owned(c[0].to_owned())
                    } else {
                        Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                    }
                });
            }
        }
        if !self.defaults {
            return;
        }
        if needs.literal {
            replace(out, &p.jwt, |_| Cow::Borrowed(REDACTED));
            replace(out, &p.cloud, |_| Cow::Borrowed(REDACTED));
        }
        if needs.email {
            replace(out, &p.email, |_| Cow::Borrowed(REDACTED));
        }
        if needs.card {
            if let Some(redacted) = redact_cards(out) {
                *out = Cow::Owned(redacted);
            }
        }
    }
}

/// Whether the value of a `key=value` pair is a marker, kept whatever the key: one that starts
/// with [`REDACTED`] (redacted already) or is exactly the tracing layer's query marker.
fn kept_value(value: &str) -> bool {
    value.starts_with(REDACTED) || value == QUERY_VALUE_REDACTED
}

/// Whether what follows a `=` or `:` (after ASCII spaces) is a value [`kept_value`] keeps: the
/// byte scan's side of the same rule. The value ends where the pattern's does, at a space or
/// one of `&,;"'`; anything else that follows (a non-ASCII space included) makes it a value
/// to look at.
fn starts_with_kept_value(after: &[u8]) -> bool {
    let value = after.trim_ascii_start();
    value.starts_with(REDACTED.as_bytes())
        || value
            .strip_prefix(QUERY_VALUE_REDACTED.as_bytes())
            .is_some_and(|rest| match rest.first() {
                None => true,
                Some(&c) => {
                    c.is_ascii_whitespace() || matches!(c, b'&' | b',' | b';' | b'"' | b'\'')
                }
            })
}

/// Replaces the matches of `pattern` in `text`, keeping it borrowed when nothing matched.
fn replace<'t>(
    text: &mut Cow<'t, str>,
    pattern: &Regex,
    with: impl Fn(&Captures<'_>) -> Cow<'static, str>,
) {
    if !pattern.is_match(text) {
        return;
    }
    let replaced = pattern
        .replace_all(text, |c: &Captures<'_>| with(c).into_owned())
        .into_owned();
    *text = Cow::Owned(replaced);
}

/// A bearer token, not a word of prose: at least 8 characters with a digit or a symbol, or at
/// least 20 (trailing dots, the end of a sentence, do not count).
fn looks_like_token(token: &str) -> bool {
    let token = token.trim_end_matches('.');
    let marked = token
        .bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='));
    (token.len() >= 8 && marked) || token.len() >= 20
}

/// Basic credentials: base64 of printable `user:password`. "basic auth" decodes to bytes that
/// are not, so prose is kept.
fn is_basic_credential(token: &str) -> bool {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine as _;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let token = token.trim_end_matches('=');
    if token.len() < 4 {
        return false;
    }
    match ENGINE.decode(token) {
        Ok(bytes) => {
            bytes.contains(&b':') && bytes.iter().all(|b| (0x20..0x7f).contains(b) || *b >= 0x80)
        }
        Err(_) => false,
    }
}

/// Card numbers replaced: runs of 12 to 19 digits, contiguous or grouped by single spaces or
/// dashes, standing alone as a word, that pass the Luhn check. A run joined to letters, an
/// `_` or a `-` and more (a UUID's `…-4394-7108-a4e7`, an order code) is not one; when a
/// whole run fails, its leading groups are tried (a card followed by a CVV). `None` when
/// nothing was replaced. A hand-written scan rather than a pattern: the word and dash rules
/// and the Luhn check would need a pattern and a second pass anyway.
#[cold]
#[inline(never)]
fn redact_cards(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let joined = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        // Skip to a digit that starts a word: most strings with 12 digits are ids (UUIDs)
        // whose digits all follow a letter, a digit or a dash.
        let mut prev = if i == 0 { b' ' } else { b[i - 1] };
        while i < b.len() && (!b[i].is_ascii_digit() || joined(prev) || prev == b'-') {
            prev = b[i];
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        let mut digits = 0;
        loop {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                digits += 1;
            }
            let grouped =
                i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit();
            if !grouped {
                break;
            }
            i += 1;
        }
        let alone = match b.get(i) {
            None => true,
            Some(&c) if joined(c) => false,
            Some(b'-') => !b.get(i + 1).is_some_and(|&c| joined(c)),
            Some(_) => true,
        };
        if digits < 12 || !alone {
            continue;
        }
        if let Some(end) = card_end(text, start, i) {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..start]);
            o.push_str(REDACTED);
            copied = end;
        }
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        o
    })
}

/// Where the card in the digit run `text[start..end]` ends: the whole run, else the longest
/// run of its leading groups, that has 12 to 19 digits and passes the Luhn check.
fn card_end(text: &str, start: usize, end: usize) -> Option<usize> {
    let mut end = end;
    loop {
        let run = &text[start..end];
        let digits = run.bytes().filter(u8::is_ascii_digit).count();
        if digits < 12 {
            return None;
        }
        if digits <= 19 && luhn(run) {
            return Some(end);
        }
        end = start + run.bytes().rposition(|c| c == b' ' || c == b'-')?;
    }
}

/// The Luhn check over the digits of a 12 to 19 digit run.
fn luhn(run: &str) -> bool {
    let digits: Vec<u32> = run.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// `s` cut to at most `max` bytes on a character boundary (error tracking cuts its texts with it
/// too): the server layer's own cut, so every text is cut one way.
pub(crate) use service_tracing_middleware::semconv::truncate_str as truncate;

#[cfg(test)]
mod tests;
