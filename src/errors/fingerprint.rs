//! Stable error fingerprints: a hand-written message normaliser and FNV-1a.
//!
//! The hash must stay the same across Rust releases and processes (fingerprints are shown to
//! people and may be compared between deployments), so it is FNV-1a 64 rather than
//! `std::hash::DefaultHasher`, whose algorithm is explicitly unspecified.

/// How much of a message is normalised and hashed; the rest does not change the group.
pub(crate) const MAX_FINGERPRINT_MESSAGE: usize = 512;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over `(error type, operation, normalised message)`, with `0xFF` (a byte that
/// never occurs in UTF-8) between the parts so `("ab", "c")` and `("a", "bc")` differ.
pub(crate) fn fingerprint(error_type: &str, operation: &str, message: &str) -> u64 {
    let normalised = normalise(truncate(message, MAX_FINGERPRINT_MESSAGE));
    let mut hash = FNV_OFFSET;
    for (i, part) in [error_type, operation, normalised.as_str()]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            hash ^= 0xFF;
            hash = hash.wrapping_mul(FNV_PRIME);
        }
        for &byte in part.as_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary: the one
/// the redaction policy cuts with.
pub(crate) use crate::redact::truncate;

/// Replaces the variable parts of an error message, in one left-to-right pass:
///
/// | what | becomes |
/// |---|---|
/// | a UUID (`8-4-4-4-12` hex digits) | `<uuid>` |
/// | an ISO-8601 date or timestamp (`2024-05-01`, `2024-05-01T10:00:00.123Z`, `…+02:00`) | `<ts>` |
/// | an e-mail address | `<email>` |
/// | a text in `'…'` or `"…"` | `<q>` |
/// | a word of 8+ hex digits with at least one digit and one letter, or `0x…` | `<hex>` |
/// | a number (`42`, `3.14`, the `42` of `42ms`) | `<n>` |
///
/// Patterns are only recognised at the start of a word (after a character that is not an
/// ASCII letter or digit), so `http2` or `utf8` stay as they are. A single quote after a letter
/// (`can't`) is an apostrophe, not a quote.
pub(crate) fn normalise(message: &str) -> String {
    let b = message.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at_word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if c == b'"' || (c == b'\'' && at_word_start) {
            if let Some(close) = b[i + 1..].iter().position(|&x| x == c) {
                out.extend_from_slice(b"<q>");
                i += close + 2;
                continue;
            }
        }
        if at_word_start && c.is_ascii_alphanumeric() {
            if let Some(len) = uuid_len(&b[i..]) {
                out.extend_from_slice(b"<uuid>");
                i += len;
                continue;
            }
            if let Some(len) = timestamp_len(&b[i..]) {
                out.extend_from_slice(b"<ts>");
                i += len;
                continue;
            }
        }
        if at_word_start && (c.is_ascii_alphanumeric() || b"._%+-".contains(&c)) {
            if let Some(len) = email_len(&b[i..]) {
                out.extend_from_slice(b"<email>");
                i += len;
                continue;
            }
        }
        if at_word_start && c.is_ascii_alphanumeric() {
            let word = b[i..]
                .iter()
                .position(|x| !x.is_ascii_alphanumeric())
                .unwrap_or(b.len() - i);
            let w = &b[i..i + word];
            if is_hex_id(w) {
                out.extend_from_slice(b"<hex>");
                i += word;
                continue;
            }
            if c.is_ascii_digit() {
                let mut end = i + digits(&b[i..]);
                // A decimal fraction belongs to the number.
                if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit() {
                    end += 1 + digits(&b[end + 1..]);
                }
                out.extend_from_slice(b"<n>");
                i = end;
                continue;
            }
            // Any other word is copied whole, so nothing inside it is taken for a number.
            out.extend_from_slice(w);
            i += word;
            continue;
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII ranges were replaced, so `out` is still UTF-8; never panic if not.
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|x| x.is_ascii_digit()).count()
}

fn ends_word(b: &[u8], at: usize) -> bool {
    b.get(at).is_none_or(|x| !x.is_ascii_alphanumeric())
}

fn uuid_len(b: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (n, len) in GROUPS.iter().enumerate() {
        if n > 0 {
            if b.get(at) != Some(&b'-') {
                return None;
            }
            at += 1;
        }
        let group = b.get(at..at + len)?;
        if !group.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        at += len;
    }
    ends_word(b, at).then_some(at)
}

/// `\d{n}` at `at`, returning the position after it.
fn fixed_digits(b: &[u8], at: usize, n: usize) -> Option<usize> {
    let part = b.get(at..at + n)?;
    part.iter().all(u8::is_ascii_digit).then_some(at + n)
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<usize> {
    (b.get(at) == Some(&c)).then_some(at + 1)
}

/// `YYYY-MM-DD`, optionally followed by `[T ]hh:mm[:ss[.frac]]` and `Z` or `±hh[:]mm`.
fn timestamp_len(b: &[u8]) -> Option<usize> {
    let mut at = fixed_digits(b, 0, 4)?;
    at = expect(b, at, b'-')?;
    at = fixed_digits(b, at, 2)?;
    at = expect(b, at, b'-')?;
    at = fixed_digits(b, at, 2)?;
    let date = at;
    let time = (|| {
        let mut at = match b.get(at) {
            Some(b'T' | b't' | b' ') => at + 1,
            _ => return None,
        };
        at = fixed_digits(b, at, 2)?;
        at = expect(b, at, b':')?;
        at = fixed_digits(b, at, 2)?;
        if let Some(after) = expect(b, at, b':').and_then(|a| fixed_digits(b, a, 2)) {
            at = after;
            if b.get(at) == Some(&b'.') && b.get(at + 1).is_some_and(u8::is_ascii_digit) {
                at += 1 + digits(&b[at + 1..]);
            }
        }
        match b.get(at) {
            Some(b'Z' | b'z') => at += 1,
            Some(b'+' | b'-') => {
                if let Some(after) = fixed_digits(b, at + 1, 2) {
                    let after = expect(b, after, b':').unwrap_or(after);
                    if let Some(after) = fixed_digits(b, after, 2) {
                        at = after;
                    }
                }
            }
            _ => {}
        }
        ends_word(b, at).then_some(at)
    })();
    match time {
        Some(end) => Some(end),
        None => ends_word(b, date).then_some(date),
    }
}

fn is_email_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

/// `local@domain.tld`; the local part is at most 64 bytes (RFC 5321), which keeps the scan
/// linear.
fn email_len(b: &[u8]) -> Option<usize> {
    let local = b
        .iter()
        .take(65)
        .take_while(|&&c| is_email_local(c))
        .count();
    if local == 0 || local > 64 || b.get(local) != Some(&b'@') {
        return None;
    }
    let start = local + 1;
    let mut end = start
        + b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.' || **c == b'-')
            .count();
    // A sentence's full stop is not part of the domain.
    while end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    let domain = &b[start..end];
    let dot = domain.iter().position(|&c| c == b'.')?;
    (dot > 0 && !domain.ends_with(b".")).then_some(end)
}

fn is_hex_id(w: &[u8]) -> bool {
    if let Some(rest) = w.strip_prefix(b"0x").or_else(|| w.strip_prefix(b"0X")) {
        return !rest.is_empty() && rest.iter().all(u8::is_ascii_hexdigit);
    }
    w.len() >= 8
        && w.iter().all(u8::is_ascii_hexdigit)
        && w.iter().any(u8::is_ascii_digit)
        && w.iter().any(u8::is_ascii_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_become_placeholders() {
        assert_eq!(
            normalise("no row 67e55044-10b1-426f-9247-bb680e5fe0c8 here"),
            "no row <uuid> here"
        );
        assert_eq!(
            normalise("id=67E55044-10B1-426F-9247-BB680E5FE0C8."),
            "id=<uuid>."
        );
    }

    #[test]
    fn hex_ids_become_placeholders() {
        assert_eq!(normalise("span 00f067aa0ba902b7 lost"), "span <hex> lost");
        assert_eq!(normalise("at 0x7ffd1234"), "at <hex>");
        // Too short, no digit, or all digits: not a hex id.
        assert_eq!(normalise("cafe1 deadbeef"), "cafe1 deadbeef");
        assert_eq!(normalise("12345678"), "<n>");
    }

    #[test]
    fn numbers_become_placeholders() {
        assert_eq!(normalise("order 42 not found"), "order <n> not found");
        assert_eq!(
            normalise("took 3.5s, limit 2000ms"),
            "took <n>s, limit <n>ms"
        );
        assert_eq!(normalise("http2 and utf8 stay"), "http2 and utf8 stay");
        assert_eq!(normalise("retry #3/5"), "retry #<n>/<n>");
    }

    #[test]
    fn quoted_values_become_placeholders() {
        assert_eq!(
            normalise(r#"column "email" of 'users' can't be null"#),
            "column <q> of <q> can't be null"
        );
        assert_eq!(normalise(r#"unclosed "quote"#), r#"unclosed "quote"#);
    }

    #[test]
    fn emails_become_placeholders() {
        assert_eq!(
            normalise("no account for jane.doe+x@example.co.uk."),
            "no account for <email>."
        );
        assert_eq!(normalise("a@b is not one"), "a@b is not one");
    }

    #[test]
    fn timestamps_become_placeholders() {
        assert_eq!(
            normalise("expired at 2024-05-01T10:20:30Z"),
            "expired at <ts>"
        );
        assert_eq!(
            normalise("at 2024-05-01T10:20:30.123456+02:00 then"),
            "at <ts> then"
        );
        assert_eq!(normalise("on 2024-05-01 10:20 ok"), "on <ts> ok");
        assert_eq!(normalise("on 2024-05-01."), "on <ts>.");
    }

    #[test]
    fn similar_messages_share_a_fingerprint_and_others_do_not() {
        let a = fingerprint("panic", "GET /orders/{id}", "order 42 not found");
        let b = fingerprint("panic", "GET /orders/{id}", "order 7 not found");
        let c = fingerprint("panic", "GET /orders/{id}", "user 42 not found");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            a,
            fingerprint("panic", "GET /users/{id}", "order 42 not found")
        );
        assert_ne!(
            fingerprint("ab", "c", ""),
            fingerprint("a", "bc", ""),
            "parts are separated"
        );
    }

    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        // Pinned: a change here regroups every stored error.
        assert_eq!(fingerprint("", "", ""), 0x0a99_c907_b6f6_4763);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "",
            "'",
            "\"",
            "@",
            "0x",
            "2024-",
            "2024-01-01T",
            "é'ü'",
            "a@",
            "@b.c",
            "1.",
            "ñ42",
            "67e55044-10b1-426f-9247-bb680e5fe0c",
        ] {
            let _ = normalise(s);
            let _ = fingerprint(s, s, s);
        }
        assert_eq!(truncate("héllo", 2), "h");
    }
}
