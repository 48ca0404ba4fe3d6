//! `db.query.text` without its values: string and numeric literals become `?`, `IN (...)`
//! lists of them collapse to `IN (?)`, comments go, whitespace runs become one space, and the
//! result is capped.
//!
//! One pass over the bytes, by hand: the structure is ASCII (quotes, digits, comment marks),
//! every other byte is copied or dropped whole with the token it belongs to, and the output is
//! never longer than the cap, so odd input (unterminated strings and comments, lone quotes,
//! dollar signs, deep nesting) costs one pass and a bounded buffer. A SQL parser crate would
//! reject half of what drivers accept (dialects) and allocate a tree per query.

/// Longest sanitised `db.query.text`, in bytes.
pub(crate) const MAX_QUERY_TEXT: usize = 2048;

/// What replaces each literal.
const PLACEHOLDER: u8 = b'?';

/// `query` with its literals replaced and its comments removed, at most `max` bytes (cut on a
/// character boundary).
pub(crate) fn sanitize(query: &str, max: usize) -> String {
    let bytes = query.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(query.len().min(max) + 1);
    let mut i = 0;
    while i < bytes.len() && out.len() <= max {
        i = token(bytes, i, &mut out);
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    let out = collapse_in_lists(out);
    let text = match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let text = text.trim_start();
    service_tracing_middleware::semconv::truncate_str(text, max).to_owned()
}

/// Copies, replaces or drops the token starting at `bytes[i]` into `out`; returns where the
/// next one starts.
fn token(bytes: &[u8], mut i: usize, out: &mut Vec<u8>) -> usize {
    let b = bytes[i];
    match b {
        b'\'' => {
            drop_prefix(out);
            i = skip_quoted(bytes, i, b'\'');
            placeholder(out);
        }
        b'"' | b'`' => {
            // Quoted identifiers are kept (their quotes doubled inside).
            let end = skip_quoted(bytes, i, b);
            out.extend_from_slice(&bytes[i..end]);
            i = end;
        }
        b'[' if !prev_is_word(out) => {
            // A bracketed identifier (SQL Server), kept; an array subscript `a[1]` is not.
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b']')
                .map_or(bytes.len(), |p| i + p + 1);
            out.extend_from_slice(&bytes[i..end]);
            i = end;
        }
        b'-' if bytes.get(i + 1) == Some(&b'-') => {
            i = bytes[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| i + p);
            space(out);
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            i = skip_block_comment(bytes, i);
            space(out);
        }
        b'$' => match dollar_tag(bytes, i) {
            Some(tag_end) => {
                i = skip_dollar_quoted(bytes, i, tag_end);
                placeholder(out);
            }
            None => {
                // `$1` (a parameter) and `$` inside names are kept as they are.
                let end = i + 1 + bytes[i + 1..].iter().take_while(|c| is_word(**c)).count();
                out.extend_from_slice(&bytes[i..end]);
                i = end;
            }
        },
        b'?' | b':' | b'@' => {
            // Placeholders (`?`, `?1`, `:name`, `@p1`) are kept whole.
            let end = i + 1 + bytes[i + 1..].iter().take_while(|c| is_word(**c)).count();
            out.extend_from_slice(&bytes[i..end]);
            i = end;
        }
        b'0'..=b'9' if !prev_is_word(out) => {
            i = skip_number(bytes, i);
            placeholder(out);
        }
        b'.' if !prev_is_word(out) && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
            i = skip_number(bytes, i + 1);
            placeholder(out);
        }
        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
            space(out);
            i += 1;
        }
        _ => {
            out.push(b);
            i += 1;
        }
    }
    i
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn prev_is_word(out: &[u8]) -> bool {
    out.last().is_some_and(|b| is_word(*b))
}

/// One space, never two in a row nor at the start.
fn space(out: &mut Vec<u8>) {
    if out.last().is_some_and(|b| *b != b' ') {
        out.push(b' ');
    }
}

fn placeholder(out: &mut Vec<u8>) {
    out.push(PLACEHOLDER);
}

/// Drops a string literal's one-letter prefix already copied (`E'..'`, `N'..'`, `X'..'`,
/// `B'..'`, `U&'..'`), so the literal becomes `?` whole.
fn drop_prefix(out: &mut Vec<u8>) {
    let n = out.len();
    let letter = |b: u8| matches!(b.to_ascii_uppercase(), b'E' | b'N' | b'X' | b'B' | b'U');
    if n >= 2 && out[n - 1] == b'&' && letter(out[n - 2]) && (n == 2 || !is_word(out[n - 3])) {
        out.truncate(n - 2);
    } else if n >= 1 && letter(out[n - 1]) && (n == 1 || !is_word(out[n - 2])) {
        out.truncate(n - 1);
    }
}

/// The end (one past the closing quote) of the quoted text starting at `start`: a doubled
/// quote or a backslash-escaped one stays inside; unterminated, the end of the input.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'\'' => i += 2,
            c if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of a `/* */` comment starting at `start` (nested ones count, as in PostgreSQL);
/// unterminated, the end of the input.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// For a `$` opening a dollar-quoted string (`$$` or `$tag$`, the tag a name that does not
/// start with a digit), the index one past the opening tag.
fn dollar_tag(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'$' {
            return Some(i + 1);
        }
        if !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80) {
            return None;
        }
        i += 1;
    }
    None
}

/// The end of the dollar-quoted string whose opening tag is `bytes[start..tag_end]`: one past
/// the same tag closing it; unterminated, the end of the input.
fn skip_dollar_quoted(bytes: &[u8], start: usize, tag_end: usize) -> usize {
    let tag = &bytes[start..tag_end];
    bytes[tag_end..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| tag_end + p + tag.len())
}

/// The end of a number starting at `start`: digits, a decimal point, an exponent with its sign,
/// hex digits and `_` separators.
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        let sign_of_exponent = (b == b'+' || b == b'-')
            && i > start
            && matches!(bytes[i - 1], b'e' | b'E')
            && !bytes[start..i].iter().any(|c| matches!(c, b'x' | b'X'));
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || sign_of_exponent {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// `IN (?, ?, ?)` → `IN (?)` (any case, any spacing left after [`sanitize`]'s pass).
fn collapse_in_lists(out: Vec<u8>) -> Vec<u8> {
    let mut result = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        let at_in = out[i..].len() >= 2
            && out[i..i + 2].eq_ignore_ascii_case(b"IN")
            && (i == 0 || !is_word(out[i - 1]))
            && out.get(i + 2).is_none_or(|b| !is_word(*b));
        if at_in {
            let mut j = i + 2;
            while out.get(j) == Some(&b' ') {
                j += 1;
            }
            if out.get(j) == Some(&b'(') {
                let close = out[j..].iter().position(|&b| b == b')').map(|p| j + p);
                if let Some(close) = close {
                    let inside = &out[j + 1..close];
                    let only_values = inside.contains(&PLACEHOLDER)
                        && inside.iter().all(|b| matches!(b, b'?' | b',' | b' '));
                    if only_values {
                        result.extend_from_slice(&out[i..i + 2]);
                        result.extend_from_slice(b" (?)");
                        i = close + 1;
                        continue;
                    }
                }
            }
        }
        result.push(out[i]);
        i += 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(query: &str) -> String {
        sanitize(query, MAX_QUERY_TEXT)
    }

    #[test]
    fn literals_become_placeholders_and_names_stay() {
        let cases = [
            (
                "SELECT * FROM users WHERE id = 42 AND name = 'bob'",
                "SELECT * FROM users WHERE id = ? AND name = ?",
            ),
            (
                "select t1.col2 from table1 t1 where t1.x > -3.5e+10 and y = .5",
                "select t1.col2 from table1 t1 where t1.x > -? and y = ?",
            ),
            (
                "UPDATE a SET b = 0x1F, c = 1_000",
                "UPDATE a SET b = ?, c = ?",
            ),
            (
                "INSERT INTO \"Orders\" (\"id\") VALUES ($1, $2)",
                "INSERT INTO \"Orders\" (\"id\") VALUES ($1, $2)",
            ),
            ("SELECT `a'b` FROM [t'x]", "SELECT `a'b` FROM [t'x]"),
            ("SELECT arr[3] FROM t", "SELECT arr[?] FROM t"),
            (
                "SELECT E'it\\'s', N'x', X'ff', U&'d' FROM t",
                "SELECT ?, ?, ?, ? FROM t",
            ),
            ("SELECT 'it''s' || 'a'", "SELECT ? || ?"),
            (
                "SELECT $$a 'b' $$, $fn$x$$y$fn$ FROM t",
                "SELECT ?, ? FROM t",
            ),
            (
                "SELECT price$ FROM t WHERE a=:name",
                "SELECT price$ FROM t WHERE a=:name",
            ),
            ("SELECT TRUE, NULL", "SELECT TRUE, NULL"),
            (
                "SELECT a FROM t WHERE x = ?1 AND y = :y2 AND z = @p3 AND w = ?",
                "SELECT a FROM t WHERE x = ?1 AND y = :y2 AND z = @p3 AND w = ?",
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(clean(query), expected, "{query}");
        }
    }

    #[test]
    fn comments_go_and_whitespace_collapses() {
        assert_eq!(
            clean("/* app=shop, user='x' */ SELECT a -- secret 123\n FROM   t\n\t/* a /* nested */ b */WHERE x = 1"),
            "SELECT a FROM t WHERE x = ?"
        );
    }

    #[test]
    fn in_lists_collapse() {
        assert_eq!(
            clean("SELECT * FROM t WHERE id IN (1, 2, 3) AND s in('a','b') AND k IN (SELECT k FROM u)"),
            "SELECT * FROM t WHERE id IN (?) AND s in (?) AND k IN (SELECT k FROM u)"
        );
        assert_eq!(
            clean("SELECT * FROM t WHERE id IN ($1, $2)"),
            "SELECT * FROM t WHERE id IN ($1, $2)"
        );
        assert_eq!(clean("SELECT main_id FROM t"), "SELECT main_id FROM t");
    }

    #[test]
    fn unterminated_and_odd_input_never_panics_and_stays_bounded() {
        let cases = [
            ("SELECT 'never closed", "SELECT ?"),
            ("SELECT \"never closed", "SELECT \"never closed"),
            ("SELECT $$ never closed", "SELECT ?"),
            ("SELECT 1 /* never closed", "SELECT ?"),
            ("SELECT 'a\\", "SELECT ?"),
            ("'", "?"),
            ("$", "$"),
            ("$a", "$a"),
            ("$1$", "$1$"),
            ("--", ""),
            ("/*", ""),
            ("/", "/"),
            ("IN", "IN"),
            ("IN (", "IN ("),
            ("x IN (?,", "x IN (?,"),
            ("E", "E"),
            ("", ""),
            ("é'é'é 1é", "é?é ?é"),
            ("[", "["),
            ("1e", "?"),
            ("1e+", "?"),
        ];
        for (query, expected) in cases {
            assert_eq!(clean(query), expected, "{query:?}");
        }
        // Every byte sequence, cut at every length: no panic, valid UTF-8, within the cap.
        let inputs = [
            "SELECT 'a''b', \"c\"\"d\", $t$e$t$, /* f */ 1.5e-3, 0xAB -- g\n FROM [h] WHERE i IN (1,2)",
            "é'ü\\'ß' $€$x$€$ 12€ IN (€)",
        ];
        for input in inputs {
            for end in 0..=input.len() {
                let Some(prefix) = input.get(..end) else {
                    continue;
                };
                for max in [0, 1, 3, 8, 64] {
                    let out = sanitize(prefix, max);
                    assert!(out.len() <= max, "{prefix:?} {max}: {out:?}");
                }
                let _ = clean(prefix);
            }
        }
        // Deterministic pseudo-random byte soup made of the structural characters.
        let alphabet = b"'\"`$[]-/*\\\n 0123456789.eExINin(),?_a\xc3\xa9";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2_000 {
            let mut bytes = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let text = String::from_utf8_lossy(&bytes);
            let out = sanitize(&text, 32);
            assert!(out.len() <= 32, "{text:?} -> {out:?}");
        }
    }

    #[test]
    fn long_queries_are_capped_on_a_character_boundary() {
        let query = format!("SELECT {} FROM t", "é".repeat(5_000));
        let out = clean(&query);
        assert!(out.len() <= MAX_QUERY_TEXT);
        assert!(out.starts_with("SELECT é"));
        let huge_literal = format!("SELECT '{}' FROM t", "x".repeat(1_000_000));
        assert_eq!(clean(&huge_literal), "SELECT ? FROM t");
    }
}
