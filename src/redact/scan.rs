//! The first look at a string: one branch-free pass over its bytes that says which classes
//! of byte it holds, and word-at-a-time helpers for the closer looks. No allocation, no regex.

pub(super) const C_DIGIT: u16 = 1;
pub(super) const C_SPACE: u16 = 2;
pub(super) const C_AT: u16 = 4;
pub(super) const C_PAIR: u16 = 8; // `=` or `:`
pub(super) const C_UNDERSCORE: u16 = 16;
pub(super) const C_DASH: u16 = 32;
pub(super) const C_X_OR_G: u16 = 64;
pub(super) const C_J: u16 = 128;
pub(super) const C_I: u16 = 256;
pub(super) const C_B: u16 = 512;
pub(super) const C_NOT_IN_UUID: u16 = 1024; // neither a hex digit nor `-`

/// What each byte may take part in. Every default literal holds one of these classes: `eyJ` a
/// `J`; `AKIA`, `ASIA` and `AIza` an `I`; the GitHub and Stripe prefixes an `_`; `glpat-` and
/// `xox?-` a `-` and a `g` or `x`; `Bearer` and `Basic` a `b` and the space after them. A
/// string none of whose bytes is `C_NOT_IN_UUID` may be a UUID.
pub(super) const CLASS: [u16; 256] = {
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
pub(super) fn classify(b: &[u8]) -> u16 {
    b.iter()
        .fold(0, |flags, &byte| flags | CLASS[usize::from(byte)])
}

/// A byte's value repeated in every byte of a word.
pub(super) const fn each(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// Calls `f` with each little-endian 64-bit word of `b` and the index of its first byte, until
/// it returns `true`; the last word holds the bytes left over in its low bytes and zero bytes
/// above them.
#[inline(always)]
pub(super) fn any_word(b: &[u8], mut f: impl FnMut(usize, u64) -> bool) -> bool {
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
pub(super) fn card_digits(b: &[u8], flags: u16) -> bool {
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
pub(super) fn digits_in(w: u64) -> u64 {
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
pub(super) fn bytes_equal(w: u64, byte: u8) -> u64 {
    let x = w ^ each(byte);
    x.wrapping_sub(each(1)) & !x & each(0x80)
}

/// Whether `f` holds for the index of some byte flagged in `flagged`, the word at `b[at..]`.
#[inline(always)]
pub(super) fn any_flagged(at: usize, mut flagged: u64, mut f: impl FnMut(usize) -> bool) -> bool {
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
pub(super) fn has_scheme(b: &[u8]) -> bool {
    any_word(b, |at, w| {
        let flagged = bytes_equal(w | each(0x20), b'b');
        flagged != 0 && scheme_at_flagged(b, at, flagged)
    })
}

/// Out of line, so the loop over words stays small: most words hold no `b`.
#[inline(never)]
pub(super) fn scheme_at_flagged(b: &[u8], at: usize, flagged: u64) -> bool {
    any_flagged(at, flagged, |i| scheme_at(b, i))
}

/// Whether `Bearer` or `Basic` (any case) starts at `b[i]`.
#[inline]
pub(super) fn scheme_at(b: &[u8], i: usize) -> bool {
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
pub(super) fn is_uuid(b: &[u8], flags: u16) -> bool {
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
