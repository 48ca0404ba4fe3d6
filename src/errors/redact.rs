//! [`Redactor`]: what is taken out of error messages and attributes before they are stored in
//! a group or sent anywhere (webhook, callback, OTLP log records).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use regex::Regex;

use super::fingerprint::truncate;

/// What a redacted part is replaced with.
///
/// ```
/// use service_tracing::errors::{Redactor, REDACTED};
/// assert_eq!(Redactor::new().redact("a@b.io"), REDACTED);
/// ```
pub const REDACTED: &str = "[REDACTED]";

/// The default bound on a redacted text, in bytes.
pub(crate) const DEFAULT_MAX_LEN: usize = 512;

/// The default rules, in the order they run: (pattern, replacement).
const DEFAULT_RULES: [(&str, &str); 5] = [
    // `Bearer abc.def`, `Basic dXNlcjpwYXNz` (the scheme is kept).
    (
        r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*",
        "${1} [REDACTED]",
    ),
    // `password=hunter2`, `token: abc`, `api_key="k"` (the key and separator are kept).
    (
        r#"(?i)\b(password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|id_token|api_key|apikey|api-key|private_key)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&,;"']+)"#,
        "${1}${2}[REDACTED]",
    ),
    // A JWT: three base64url parts, the first starting `eyJ` (`{"`).
    (
        r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        REDACTED,
    ),
    // An e-mail address.
    (
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        REDACTED,
    ),
    // 12 to 19 digits, optionally grouped by single spaces or dashes (card numbers, IBAN
    // digits, phone numbers).
    (r"\b[0-9](?:[ -]?[0-9]){11,18}\b", REDACTED),
];

fn default_rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        DEFAULT_RULES
            .iter()
            // The patterns are constants that a unit test compiles; none is ever skipped.
            .filter_map(|(pattern, replacement)| {
                Regex::new(pattern).ok().map(|r| (r, *replacement))
            })
            .collect()
    })
}

type Rule = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Takes secrets and personal data out of error messages and attributes.
///
/// [`ErrorTracking`](super::ErrorTracking) runs it on each error's type, message and operation
/// before fingerprinting and storing them, so nothing it stores, hands to an alert callback,
/// posts to a webhook or exports as a log record holds what it redacts.
///
/// # What the default rules redact
///
/// In this order, each match replaced with `[REDACTED]`:
///
/// 1. `Bearer <token>` and `Basic <credentials>` (any case): the token; the scheme stays.
/// 2. `key=value` or `key: value` where the key is `password`, `passwd`, `pwd`, `secret`,
///    `client_secret`, `token`, `access_token`, `refresh_token`, `id_token`, `api_key`,
///    `apikey`, `api-key` or `private_key` (any case): the value, up to a space, `&`, `,` or
///    `;`, or the whole quoted value; the key and separator stay.
/// 3. JWT-like strings: `eyJ…` followed by two more `.`-separated base64url parts.
/// 4. E-mail addresses.
/// 5. Runs of 12 to 19 digits, optionally grouped by single spaces or dashes (card numbers).
///
/// Then the [custom rules](Self::with_rule) run, in the order added, and the result is cut to
/// [`max_len`](Self::with_max_len) bytes (default 512) on a character boundary.
///
/// ```
/// use service_tracing::errors::Redactor;
///
/// let redactor = Redactor::new()
///     .with_rule(|text| text.contains("ssn").then(|| "[ssn withheld]".to_owned()));
/// assert_eq!(
///     redactor.redact("login failed for bob@example.com with password=hunter2"),
///     "login failed for [REDACTED] with password=[REDACTED]"
/// );
/// assert_eq!(redactor.redact("bad ssn 123"), "[ssn withheld]");
/// ```
#[derive(Clone)]
pub struct Redactor {
    defaults: bool,
    rules: Vec<Arc<Rule>>,
    max_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("defaults", &self.defaults)
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
    /// The default rules, output cut to 512 bytes.
    ///
    /// ```
    /// let redactor = service_tracing::errors::Redactor::new();
    /// assert_eq!(redactor.redact("pwd=x"), "pwd=[REDACTED]");
    /// ```
    pub fn new() -> Self {
        Self {
            defaults: true,
            rules: Vec::new(),
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// No default rules (only the custom ones added and the length bound).
    ///
    /// ```
    /// let redactor = service_tracing::errors::Redactor::without_defaults();
    /// assert_eq!(redactor.redact("bob@example.com"), "bob@example.com");
    /// ```
    pub fn without_defaults() -> Self {
        Self {
            defaults: false,
            ..Self::new()
        }
    }

    /// Adds a rule run after the default ones: it gets the text redacted so far and returns
    /// `Some(replacement)` to replace it, or `None` to keep it. A rule that panics replaces the
    /// whole text with `[REDACTED]`.
    ///
    /// ```
    /// let redactor = service_tracing::errors::Redactor::new()
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

    /// Cuts redacted text to at most `max` bytes (at least 16).
    ///
    /// ```
    /// let redactor = service_tracing::errors::Redactor::new().with_max_len(16);
    /// assert_eq!(redactor.redact("a rather long message indeed"), "a rather long me");
    /// ```
    pub fn with_max_len(mut self, max: usize) -> Self {
        self.max_len = max.max(16);
        self
    }

    /// The text with the rules applied and cut to the length bound.
    ///
    /// ```
    /// let redactor = service_tracing::errors::Redactor::new();
    /// assert_eq!(redactor.redact("Authorization: Bearer abc.def"), "Authorization: Bearer [REDACTED]");
    /// ```
    pub fn redact(&self, text: &str) -> String {
        let mut text: Cow<'_, str> = Cow::Borrowed(truncate(text, self.max_len.saturating_mul(4)));
        if self.defaults {
            for (pattern, replacement) in default_rules() {
                if let Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
                    text = Cow::Owned(replaced);
                }
            }
        }
        for rule in &self.rules {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rule(&text)));
            match outcome {
                Ok(Some(replaced)) => text = Cow::Owned(replaced),
                Ok(None) => {}
                Err(_) => text = Cow::Borrowed(REDACTED),
            }
        }
        truncate(&text, self.max_len).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_rule_compiles() {
        assert_eq!(default_rules().len(), DEFAULT_RULES.len());
    }

    #[test]
    fn the_default_rules_redact_what_the_docs_say() {
        let r = Redactor::new();
        for (input, expected) in [
            (
                "mail bob.smith+x@mail.example.co.uk now",
                "mail [REDACTED] now",
            ),
            (
                "header Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-_x",
                "header Authorization: Bearer [REDACTED]",
            ),
            ("basic dXNlcjpwYXNz== rejected", "basic [REDACTED] rejected"),
            (
                "GET /login?user=a&password=hunter2&next=/",
                "GET /login?user=a&password=[REDACTED]&next=/",
            ),
            ("token: abc123, retry", "token: [REDACTED], retry"),
            (r#"secret="two words" bad"#, "secret=[REDACTED] bad"),
            ("API_KEY=k-123;x", "API_KEY=[REDACTED];x"),
            ("x-api-key: 0123abcd", "x-api-key: [REDACTED]"),
            ("client_secret='s'", "client_secret=[REDACTED]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dGVzdA in cookie",
                "jwt [REDACTED] in cookie",
            ),
            (
                "card 4111 1111 1111 1111 declined",
                "card [REDACTED] declined",
            ),
            ("card 4111-1111-1111-1111", "card [REDACTED]"),
            ("iban digits 123456789012", "iban digits [REDACTED]"),
        ] {
            assert_eq!(r.redact(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_messages_are_left_alone() {
        let r = Redactor::new();
        for input in [
            "order 42 not found",
            "connection refused (os error 111)",
            "timeout after 30000 ms",
            "token expired",
            "user 12345678901 missing", // 11 digits
            "http2 error: stream reset",
        ] {
            assert_eq!(r.redact(input), input);
        }
    }

    #[test]
    fn custom_rules_run_after_the_defaults_and_a_panic_redacts_everything() {
        let r = Redactor::new().with_rule(|t| Some(format!("<{t}>")));
        assert_eq!(r.redact("a@b.io"), "<[REDACTED]>");
        let panicking = Redactor::new().with_rule(|_| panic!("rule bug"));
        assert_eq!(panicking.redact("anything"), REDACTED);
        let none = Redactor::without_defaults().with_rule(|_| None);
        assert_eq!(none.redact("a@b.io"), "a@b.io");
    }

    #[test]
    fn output_is_bounded_on_a_character_boundary() {
        let r = Redactor::new().with_max_len(20);
        let out = r.redact(&"é".repeat(10_000));
        assert!(out.len() <= 20 && out.chars().all(|c| c == 'é'), "{out}");
        assert_eq!(
            Redactor::new().redact(&"x".repeat(100_000)).len(),
            DEFAULT_MAX_LEN
        );
    }
}
