//! The denied key terms and the default literals, precomputed into the tables the byte scan
//! ([`Keys::scan`]) and the key check ([`Keys::denies`]) read.

use regex::Regex;
use service_tracing_middleware::semconv::HTTP_RESPONSE_STATUS_CODE;
use service_tracing_middleware::tracer::ServerRequest;

use super::patterns::starts_with_kept_value;
use super::scan::*;

/// Literals whose first two bytes mark a string for the full check: (literal, any case).
pub(super) const LITERALS: [(&str, bool); 19] = [
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

/// Which checks a string needs, from the byte scan.
#[derive(Clone, Copy, Default)]
pub(super) struct Needs {
    pub(super) literal: bool,
    pub(super) pair: bool,
    pub(super) email: bool,
    pub(super) card: bool,
}

impl Needs {
    pub(super) fn any(self) -> bool {
        self.literal || self.pair || self.email || self.card
    }
}

/// The denied key terms and what is precomputed from them.
pub(super) struct Keys {
    /// Lowercase ASCII terms of at least two bytes, ordered by their first byte.
    pub(super) terms: Vec<Box<[u8]>>,
    /// For each byte (either case), the range of `terms` that start with it (most bytes start
    /// none), so a key is compared only with the few terms that can start where it stands.
    pub(super) starting: Box<[(usize, usize); 256]>,
    /// Byte pairs that start a literal, one bit each.
    pub(super) pairs: Box<[u64; 1024]>,
    /// `key=value` and `key: value` pairs whose key may hold a term.
    pub(super) kv: Option<Regex>,
    /// Whether the default literals are looked for.
    pub(super) literals: bool,
    /// The shortest text any pattern can match: `pwd=x` and `a@b.io` with the defaults, two
    /// bytes more than the shortest term otherwise. Shorter strings (`GET`, `1.1`, `200`)
    /// are not scanned.
    pub(super) shortest: usize,
    /// The classes at least one of which any check needs; a string with none of them is clear
    /// after the class scan.
    pub(super) wanted: u16,
    /// Whether any key of a server span's request attributes (or its status code) is denied:
    /// with the defaults none is, and a server record's keys need no look at all.
    pub(super) denies_a_request_key: bool,
}

impl Keys {
    pub(super) fn new(terms: &[String], literals: bool) -> Self {
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
            denies_a_request_key: true,
        }
        .with_request_keys_checked()
    }

    /// Sets [`denies_a_request_key`](Self::denies_a_request_key) by asking the terms.
    fn with_request_keys_checked(mut self) -> Self {
        self.denies_a_request_key = ServerRequest::KEYS
            .iter()
            .chain([&HTTP_RESPONSE_STATUS_CODE])
            .any(|key| self.denies(key.as_bytes()));
        self
    }

    /// One pass over the bytes, then a closer look only where a class every pattern needs is
    /// present: what the full check must look at.
    #[inline]
    pub(super) fn scan(&self, text: &str) -> Needs {
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
    pub(super) fn look_closer(&self, b: &[u8], flags: u16) -> Needs {
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
    pub(super) fn confirm(&self, b: &[u8]) -> bool {
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
    pub(super) fn denied_pair(&self, b: &[u8]) -> bool {
        // Each `=` and `:`, eight bytes at a time.
        any_word(b, |at, w| {
            let flagged = bytes_equal(w, b'=') | bytes_equal(w, b':');
            flagged != 0 && self.denied_pair_flagged(b, at, flagged)
        })
    }

    /// Out of line, so the loop over words stays small: most words hold no `=` or `:`.
    #[inline(never)]
    pub(super) fn denied_pair_flagged(&self, b: &[u8], at: usize, flagged: u64) -> bool {
        any_flagged(at, flagged, |i| self.denied_pair_at(b, i))
    }

    /// Whether `b[at]` is a `=` or `:` after a denied key, before a value not kept.
    pub(super) fn denied_pair_at(&self, b: &[u8], at: usize) -> bool {
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
    pub(super) fn denies(&self, b: &[u8]) -> bool {
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
    pub(super) fn term_at(&self, b: &[u8], i: usize, from: usize, to: usize) -> bool {
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
pub(super) fn boundary(prev: u8, next: u8) -> bool {
    matches!(prev, b'.' | b'_' | b'-' | b'/' | b' ')
        || matches!(next, b'.' | b'_' | b'-' | b'/' | b' ')
        || (prev.is_ascii_lowercase() && next.is_ascii_uppercase())
}
