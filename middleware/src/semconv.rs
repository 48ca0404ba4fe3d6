//! The attribute keys and values this library sets, in one place.
//!
//! Keys follow the stable OpenTelemetry HTTP semantic conventions
//! (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/>). Server and client share
//! them, so they live here, free of any framework.

/// HTTP request method, normalised to a known method or `_OTHER`.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The original method when [`HTTP_REQUEST_METHOD`] is `_OTHER`.
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
/// The matched route template, such as `/users/{id}`.
pub const HTTP_ROUTE: &str = "http.route";
/// The response status code.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// How many times this request was sent again (retries and redirects).
pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";
/// Path part of the request target.
pub const URL_PATH: &str = "url.path";
/// Query part of the request target, values redacted.
pub const URL_QUERY: &str = "url.query";
/// Scheme of the request URL.
pub const URL_SCHEME: &str = "url.scheme";
/// The whole outbound URL, user info removed and query values redacted.
pub const URL_FULL: &str = "url.full";
/// Host the request was addressed to.
pub const SERVER_ADDRESS: &str = "server.address";
/// Port the request was addressed to.
pub const SERVER_PORT: &str = "server.port";
/// Address of the client that sent the request.
pub const CLIENT_ADDRESS: &str = "client.address";
/// HTTP version, such as `1.1` or `2`.
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
/// The `User-Agent` header.
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// Low-cardinality description of the error: a status code, `panic`, or an error kind.
pub const ERROR_TYPE: &str = "error.type";
/// The request's correlation id.
pub const CORRELATION_ID: &str = "correlation.id";

/// Name of the event that records an exception.
pub const EXCEPTION_EVENT: &str = "exception";
/// The exception's type.
pub const EXCEPTION_TYPE: &str = "exception.type";
/// The exception's message.
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// A backtrace, when one was captured.
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

/// What replaces a redacted value in `url.query` and `url.full`.
pub const REDACTED: &str = "REDACTED";

/// The longest value of a client-supplied string kept on a span; longer values are cut at a
/// character boundary.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;

/// The methods `http.request.method` keeps as they are ([`known_method`]); any other is
/// `_OTHER`.
///
/// ```
/// assert!(service_tracing_middleware::semconv::KNOWN_METHODS.contains(&"PATCH"));
/// ```
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Normalises a method for `http.request.method`: the known methods as they are, anything else
/// as `_OTHER` (keeping span names and labels low-cardinality).
///
/// ```
/// use service_tracing_middleware::semconv::known_method;
/// assert_eq!(known_method(&http::Method::GET), Some("GET"));
/// assert_eq!(known_method(&http::Method::from_bytes(b"BREW").unwrap()), None);
/// ```
pub fn known_method(method: &http::Method) -> Option<&'static str> {
    Some(match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// Redacts every value of a query string, keeping the keys: `a=1&b` becomes `a=REDACTED&b`.
/// The result is cut to [`MAX_ATTRIBUTE_LEN`].
///
/// ```
/// use service_tracing_middleware::semconv::redact_query;
/// assert_eq!(redact_query("token=abc&page=2&flag"), "token=REDACTED&page=REDACTED&flag");
/// ```
pub fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len().min(MAX_ATTRIBUTE_LEN));
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            None => out.push_str(pair),
        }
        if out.len() > MAX_ATTRIBUTE_LEN {
            break;
        }
    }
    truncate(out, MAX_ATTRIBUTE_LEN)
}

/// Cuts a string to at most `max` bytes at a character boundary.
///
/// ```
/// use service_tracing_middleware::semconv::truncate;
/// assert_eq!(truncate("héllo".to_owned(), 2), "h");
/// ```
pub fn truncate(mut value: String, max: usize) -> String {
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

/// The `network.protocol.version` value for an HTTP version.
///
/// ```
/// use service_tracing_middleware::semconv::protocol_version;
/// assert_eq!(protocol_version(http::Version::HTTP_11), "1.1");
/// ```
pub fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_keys_and_drops_values() {
        assert_eq!(redact_query("a=1&b=2"), "a=REDACTED&b=REDACTED");
        assert_eq!(redact_query(""), "");
        assert_eq!(redact_query("a==x&=y"), "a=REDACTED&=REDACTED");
    }

    #[test]
    fn redaction_output_is_bounded() {
        let huge = "k=v&".repeat(10_000);
        assert!(redact_query(&huge).len() <= MAX_ATTRIBUTE_LEN);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé".to_owned(), 3), "é");
        assert_eq!(truncate("abc".to_owned(), 10), "abc");
    }
}
