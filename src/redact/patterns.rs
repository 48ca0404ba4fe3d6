//! The default value patterns (bearer and basic credentials, JWTs, cloud keys, e-mail
//! addresses) and the hand-written checks beside them: kept markers, card numbers (Luhn).

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::{QUERY_VALUE_REDACTED, REDACTED};

/// The default value patterns, compiled once.
pub(super) struct Patterns {
    pub(super) bearer: Regex,
    pub(super) basic: Regex,
    pub(super) jwt: Regex,
    pub(super) cloud: Regex,
    pub(super) email: Regex,
}

pub(super) fn patterns() -> &'static Patterns {
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
pub(super) fn compile(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)] // A constant pattern, compiled by every test run.
    Regex::new(pattern).expect("a valid constant pattern")
}

/// Whether the value of a `key=value` pair is a marker, kept whatever the key: one that starts
/// with [`REDACTED`] (redacted already) or is exactly the tracing layer's query marker.
pub(super) fn kept_value(value: &str) -> bool {
    value.starts_with(REDACTED) || value == QUERY_VALUE_REDACTED
}

/// Whether what follows a `=` or `:` (after ASCII spaces) is a value [`kept_value`] keeps: the
/// byte scan's side of the same rule. The value ends where the pattern's does, at a space or
/// one of `&,;"'`; anything else that follows (a non-ASCII space included) makes it a value
/// to look at.
pub(super) fn starts_with_kept_value(after: &[u8]) -> bool {
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
pub(super) fn replace<'t>(
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
pub(super) fn looks_like_token(token: &str) -> bool {
    let token = token.trim_end_matches('.');
    let marked = token
        .bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='));
    (token.len() >= 8 && marked) || token.len() >= 20
}

/// Basic credentials: base64 of printable `user:password`. "basic auth" decodes to bytes that
/// are not, so prose is kept.
pub(super) fn is_basic_credential(token: &str) -> bool {
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
pub(super) fn redact_cards(text: &str) -> Option<String> {
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
pub(super) fn card_end(text: &str, start: usize, end: usize) -> Option<usize> {
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
pub(super) fn luhn(run: &str) -> bool {
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
