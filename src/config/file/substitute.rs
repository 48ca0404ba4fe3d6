//! `${VAR}`, `${VAR:-default}` and `$$` in a configuration file's text, before it is parsed,
//! keeping where each substitution came from so that a parser's error points at the file as
//! written.

use super::FileError;

/// The longest text a file may grow to by substitution: a variable cannot make set-up read an
/// unbounded configuration.
const MAX_SUBSTITUTED_LEN: usize = 1 << 20;

/// The file's text with its variables substituted, and the map back to the original text.
#[derive(Debug)]
pub(super) struct Substituted {
    pub(super) text: String,
    /// Each substitution: its range in `text` and in the original.
    spans: Vec<Span>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    new_start: usize,
    new_end: usize,
    old_start: usize,
    old_end: usize,
}

impl Substituted {
    /// The offset in the original text that `offset` in [`Self::text`] came from: inside a
    /// substituted value, where the `${...}` began.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for span in &self.spans {
            if offset < span.new_start {
                break;
            }
            if offset < span.new_end {
                return span.old_start;
            }
            shift = span.old_end as isize - span.new_end as isize;
        }
        offset.saturating_add_signed(shift)
    }
}

/// Substitutes the variables `lookup` gives. Full-line comments (`#` as the first non-blank
/// character, in TOML and YAML alike) are kept as written, so a comment may mention
/// `${VAR}`. A variable that is unset or empty without a default, a `${` never closed, a
/// name that is not `[A-Za-z_][A-Za-z0-9_]*`, or a value with a line break is an error at the
/// place it was written.
pub(super) fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, FileError> {
    let mut out = String::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut line_start = true;
    let mut in_comment = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line_start = true;
            in_comment = false;
            out.push('\n');
            i += 1;
            continue;
        }
        if line_start {
            line_start = false;
            in_comment = text[i..].trim_start_matches([' ', '\t']).starts_with('#');
        }
        if b != b'$' || in_comment {
            // Copy up to the next byte of interest in one go (keeps UTF-8 intact).
            let end = text[i..]
                .find(['$', '\n'])
                .map_or(text.len(), |n| i + n.max(1));
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                spans.push(Span {
                    new_start: out.len(),
                    new_end: out.len() + 1,
                    old_start: i,
                    old_end: i + 2,
                });
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let (value, close) = expand(text, i, lookup)?;
                spans.push(Span {
                    new_start: out.len(),
                    new_end: out.len() + value.len(),
                    old_start: i,
                    old_end: close + 1,
                });
                out.push_str(&value);
                i = close + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
        if out.len() > MAX_SUBSTITUTED_LEN {
            return Err(FileError::at(
                i,
                format!("the file grows past {MAX_SUBSTITUTED_LEN} bytes with its variables"),
            ));
        }
    }
    Ok(Substituted { text: out, spans })
}

/// The value of the `${...}` that starts at `i` (its `$`), and where its `}` is.
fn expand(
    text: &str,
    i: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, usize), FileError> {
    let bytes = text.as_bytes();
    let close = text[i..]
        .find(['}', '\n'])
        .map(|n| i + n)
        .filter(|&n| bytes[n] == b'}')
        .ok_or_else(|| FileError::at(i, "`${` without its closing `}`".to_owned()))?;
    let inner = &text[i + 2..close];
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !valid_name(name) {
        return Err(FileError::at(
            i,
            format!(
                "`${{{inner}}}`: a variable name is letters, digits and `_`, not \
                 starting with a digit (write `$$` for a literal `$`)"
            ),
        ));
    }
    let value = lookup(name)
        .filter(|v| !v.is_empty())
        .or_else(|| default.map(str::to_owned))
        .ok_or_else(|| {
            FileError::at(
                i,
                format!(
                    "`${{{name}}}`: the variable is not set (give a default with \
                     `${{{name}:-default}}`)"
                ),
            )
        })?;
    if value.contains(['\n', '\r']) {
        return Err(FileError::at(
            i,
            format!("`${{{name}}}`: the value holds a line break"),
        ));
    }
    Ok((value, close))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("collector".to_owned()),
            "EMPTY" => Some(String::new()),
            "LONG" => Some("x".repeat(10)),
            "NL" => Some("a\nb".to_owned()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, String> {
        substitute(text, &vars)
            .map(|s| s.text)
            .map_err(|e| format!("{}: {}", e.offset, e.message))
    }

    #[test]
    fn substitutes_variables_defaults_and_escapes() {
        assert_eq!(
            sub("endpoint = \"http://${HOST}:4317\"").expect("valid"),
            "endpoint = \"http://collector:4317\""
        );
        assert_eq!(sub("a = ${UNSET:-7}").expect("valid"), "a = 7");
        assert_eq!(sub("a = ${UNSET:-}").expect("valid"), "a = ");
        assert_eq!(sub("a = ${EMPTY:-d}").expect("valid"), "a = d");
        assert_eq!(
            sub("a = \"$${HOST} $$ $5\"").expect("valid"),
            "a = \"${HOST} $ $5\""
        );
        assert_eq!(
            sub("a = \"é ${HOST} ü\"").expect("valid"),
            "a = \"é collector ü\""
        );
    }

    #[test]
    fn comments_on_their_own_line_are_left_alone() {
        assert_eq!(
            sub("  # set ${UNSET} here\na = ${HOST}").expect("valid"),
            "  # set ${UNSET} here\na = collector"
        );
    }

    #[test]
    fn errors_point_at_the_dollar() {
        assert_eq!(
            sub("a = ${UNSET}").expect_err("refused").split(':').next(),
            Some("4")
        );
        assert!(sub("a = ${UNSET}")
            .expect_err("refused")
            .contains("not set"));
        assert!(sub("a = ${EMPTY}")
            .expect_err("refused")
            .contains("not set"));
        assert!(sub("a = ${HOST\nb = 1")
            .expect_err("refused")
            .contains("closing"));
        assert!(sub("a = ${1X}")
            .expect_err("refused")
            .contains("variable name"));
        assert!(sub("a = ${}")
            .expect_err("refused")
            .contains("variable name"));
        assert!(sub("a = ${NL}")
            .expect_err("refused")
            .contains("line break"));
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let s = substitute("a = ${LONG} b $$ c", &vars).expect("valid");
        assert_eq!(s.text, "a = xxxxxxxxxx b $ c");
        // Before, inside and after the substituted value, and after the escape.
        assert_eq!(s.original_offset(2), 2);
        assert_eq!(s.original_offset(7), 4);
        assert_eq!(s.original_offset(15), 12);
        assert_eq!(s.original_offset(19), 17);
    }
}
