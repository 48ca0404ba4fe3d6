//! Content the helpers capture when asked (tool arguments and results, LLM messages): as
//! JSON text, with the redaction policy applied and a length cap.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::redact::{Redactor, REDACTED};

/// Longest captured content, in bytes (each string inside it is also cut by the redactor,
/// 512 bytes by default).
pub(crate) const MAX_CONTENT: usize = 4096;
/// Deepest nesting kept; deeper values become [`TOO_DEEP`].
const MAX_DEPTH: usize = 32;
const TOO_DEEP: &str = "[too deep]";

/// The redactor content goes through when the call names none: the default policy.
pub(crate) fn default_redactor() -> &'static Redactor {
    static DEFAULT: OnceLock<Redactor> = OnceLock::new();
    DEFAULT.get_or_init(Redactor::new)
}

/// `value` as JSON text, redacted: a value under a denied key (`password`, `api_key`, ...)
/// is replaced whole, every string goes through [`Redactor::redact`], and the text is cut to
/// [`MAX_CONTENT`] bytes. A value that does not serialise is recorded as its error.
pub(crate) fn capture<T: Serialize + ?Sized>(value: &T, redactor: &Redactor) -> String {
    let text = match serde_json::to_value(value) {
        Ok(value) => redact(value, redactor, 0).to_string(),
        Err(e) => format!("[not serialisable: {e}]"),
    };
    service_tracing_middleware::semconv::truncate(text, MAX_CONTENT)
}

fn redact(value: Value, redactor: &Redactor, depth: usize) -> Value {
    if depth >= MAX_DEPTH {
        return Value::String(TOO_DEEP.to_owned());
    }
    match value {
        Value::String(text) => Value::String(redactor.redact(&text)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| redact(item, redactor, depth + 1))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| {
                    let field = if redactor.denies_key(&key) && !field.is_boolean() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(field, redactor, depth + 1)
                    };
                    (key, field)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_keys_and_secrets_in_strings_are_redacted_and_the_text_is_capped() {
        let args = serde_json::json!({
            "city": "Paris",
            "api_key": "sk-12345",
            "nested": {"password": 1234, "note": "mail bob@example.com", "ok": true},
            "list": ["Bearer abcdefgh12345678"],
        });
        let text = capture(&args, default_redactor());
        let back: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["city"], "Paris");
        assert_eq!(back["api_key"], REDACTED);
        assert_eq!(back["nested"]["password"], REDACTED);
        assert_eq!(back["nested"]["note"], "mail [REDACTED]");
        assert_eq!(back["nested"]["ok"], true);
        assert_eq!(back["list"][0], "Bearer [REDACTED]");

        let huge: Vec<String> = (0..10_000).map(|i| format!("item {i}")).collect();
        assert!(capture(&huge, default_redactor()).len() <= MAX_CONTENT);

        let mut deep = Value::Null;
        for _ in 0..100 {
            deep = Value::Array(vec![deep]);
        }
        assert!(capture(&deep, default_redactor()).contains(TOO_DEEP));
    }
}
