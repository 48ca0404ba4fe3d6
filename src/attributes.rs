//! Reading a span's attributes: one value by key, and as text cut to [`MAX_FIELD`] bytes, for
//! error tracking and profiling alike.

use opentelemetry::{Key, KeyValue, Value};

/// Longest error type, message, operation or correlation id taken from a span, in bytes.
pub(crate) const MAX_FIELD: usize = 512;

/// Whether `id` can be a correlation id under any charset the layer accepts: 1 to 128 bytes
/// of visible ASCII but `%`, `,`, `;` and `=` (what `CorrelationIdCharset::with_extra` refuses
/// whatever is asked). Ids from the layer and the message helpers always are; a
/// `correlation.id` attribute set by hand may not be, and is then left out.
#[cfg(any(feature = "pages", feature = "redis"))]
pub(crate) fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= service_tracing_middleware::correlation::MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b',' | b';' | b'='))
}

/// The value of `key` among `attrs`, if any.
pub(crate) fn attr<'a>(attrs: &'a [KeyValue], key: &'static str) -> Option<&'a Value> {
    let key = Key::from_static_str(key);
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// The value of `key` among `attrs` as text, cut to [`MAX_FIELD`] bytes.
pub(crate) fn string_attr(attrs: &[KeyValue], key: &'static str) -> Option<String> {
    attr(attrs, key).map(|v| match v {
        Value::String(s) => bounded(s.as_str()),
        other => bounded(&other.as_str()),
    })
}

/// `s` cut to [`MAX_FIELD`] bytes (on a character boundary).
pub(crate) fn bounded(s: &str) -> String {
    crate::redact::truncate(s, MAX_FIELD).to_owned()
}
