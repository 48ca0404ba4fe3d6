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

/// Prefix of a captured request header: `http.request.header.<lowercase name>`, a string array.
pub const HTTP_REQUEST_HEADER_PREFIX: &str = "http.request.header.";
/// Prefix of a captured response header: `http.response.header.<lowercase name>`.
pub const HTTP_RESPONSE_HEADER_PREFIX: &str = "http.response.header.";

/// At most this many values of one captured header are recorded.
pub const MAX_HEADER_VALUES: usize = 16;

/// Whether a header carries credentials or session state, and so is never captured, even when
/// an allowlist names it: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and
/// any name holding `auth`, `token`, `secret`, `password`, `passwd`, `api-key`, `apikey`,
/// `api_key`, `session`, `cookie`, `credential`, `csrf`, `xsrf` or `signature` (any case).
///
/// ```
/// use service_tracing_middleware::semconv::is_sensitive_header;
/// assert!(is_sensitive_header("Authorization"));
/// assert!(is_sensitive_header("x-api-key"));
/// assert!(is_sensitive_header("X-Auth-Token"));
/// assert!(!is_sensitive_header("accept-language"));
/// ```
pub fn is_sensitive_header(name: &str) -> bool {
    const WORDS: [&str; 14] = [
        "auth",
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "apikey",
        "api_key",
        "session",
        "cookie",
        "credential",
        "csrf",
        "xsrf",
        "signature",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w))
}

/// The headers recorded on a span, made once when the layer or client is built: each name with
/// its attribute key, sensitive names (see [`is_sensitive_header`]) and invalid names left out.
///
/// ```
/// use service_tracing_middleware::semconv::HeaderCapture;
///
/// let capture = HeaderCapture::request(["X-Tenant", "authorization"]);
/// let mut headers = http::HeaderMap::new();
/// headers.append("x-tenant", "acme".parse().unwrap());
/// headers.append("x-tenant", "beta".parse().unwrap());
/// headers.insert("authorization", "Bearer secret".parse().unwrap());
/// let mut attributes = Vec::new();
/// capture.record(&headers, &mut attributes);
/// assert_eq!(attributes.len(), 1);
/// assert_eq!(attributes[0].key.as_str(), "http.request.header.x-tenant");
/// assert_eq!(attributes[0].value.as_str(), r#"["acme","beta"]"#);
/// ```
#[derive(Clone, Debug, Default)]
pub struct HeaderCapture {
    names: std::sync::Arc<[(http::HeaderName, opentelemetry::Key)]>,
}

impl HeaderCapture {
    /// Request headers, recorded as `http.request.header.<name>`.
    pub fn request<I, N>(names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        Self::with_prefix(HTTP_REQUEST_HEADER_PREFIX, names)
    }

    /// Response headers, recorded as `http.response.header.<name>`.
    ///
    /// ```
    /// let capture = service_tracing_middleware::semconv::HeaderCapture::response(["set-cookie"]);
    /// assert!(capture.is_empty()); // never captured
    /// ```
    pub fn response<I, N>(names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        Self::with_prefix(HTTP_RESPONSE_HEADER_PREFIX, names)
    }

    fn with_prefix<I, N>(prefix: &str, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let mut kept: Vec<(http::HeaderName, opentelemetry::Key)> = Vec::new();
        for name in names {
            let Ok(name) = http::HeaderName::from_bytes(name.as_ref().trim().as_bytes()) else {
                continue;
            };
            if is_sensitive_header(name.as_str()) || kept.iter().any(|(n, _)| *n == name) {
                continue;
            }
            // `HeaderName` is lowercase already. An `Arc<str>` key: cloned per span for a
            // reference count, not a copy.
            let key: std::sync::Arc<str> = format!("{prefix}{}", name.as_str()).into();
            kept.push((name, opentelemetry::Key::from(key)));
        }
        Self { names: kept.into() }
    }

    /// Whether no header is captured.
    ///
    /// ```
    /// assert!(service_tracing_middleware::semconv::HeaderCapture::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Appends one string-array attribute per captured header present in `headers`: its
    /// values that are visible ASCII, at most [`MAX_HEADER_VALUES`], each cut to
    /// [`MAX_ATTRIBUTE_LEN`].
    ///
    /// ```
    /// let capture = service_tracing_middleware::semconv::HeaderCapture::response(["x-cache"]);
    /// let mut attributes = Vec::new();
    /// capture.record(&http::HeaderMap::new(), &mut attributes);
    /// assert!(attributes.is_empty());
    /// ```
    pub fn record(&self, headers: &http::HeaderMap, out: &mut Vec<opentelemetry::KeyValue>) {
        for (name, key) in self.names.iter() {
            let values: Vec<opentelemetry::StringValue> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .take(MAX_HEADER_VALUES)
                .map(|v| truncate(v.to_owned(), MAX_ATTRIBUTE_LEN).into())
                .collect();
            if !values.is_empty() {
                out.push(opentelemetry::KeyValue::new(
                    key.clone(),
                    opentelemetry::Value::Array(opentelemetry::Array::String(values)),
                ));
            }
        }
    }
}

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
    let end = truncate_str(&value, max).len();
    value.truncate(end);
    value
}

/// [`truncate`] on a borrowed string: its longest prefix of at most `max` bytes that ends at a
/// character boundary.
///
/// ```
/// use service_tracing_middleware::semconv::truncate_str;
/// assert_eq!(truncate_str("héllo", 2), "h");
/// assert_eq!(truncate_str("hello", 10), "hello");
/// ```
pub fn truncate_str(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
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
