//! What a client span says about one attempt: its name, its attributes, its outcome, and the
//! redacted URL it records.

use std::borrow::Cow;
use std::error::Error as _;
use std::fmt::Write as _;

use opentelemetry::trace::{SpanBuilder, SpanKind, SpanRef, Status};
use opentelemetry::{Context, KeyValue, Value};
use reqwest::{Request, Response, Url};
use service_tracing_middleware::cause::{self, ErrorCause};
use service_tracing_middleware::semconv::{self, redact_query, truncate, MAX_ATTRIBUTE_LEN};
use service_tracing_middleware::CorrelationId;

/// The longest `server.address` kept, in bytes (the longest DNS name is 253).
const MAX_HOST_LEN: usize = 255;
/// The longest `http.request.method_original` kept, in bytes.
const MAX_METHOD_LEN: usize = 64;

/// The URL as `url.full` records it: user info removed, every query value replaced by
/// [`REDACTED`](semconv::REDACTED) (keys kept), fragment dropped, cut to
/// [`MAX_ATTRIBUTE_LEN`] bytes.
///
/// This is framework-free and could live beside `redact_query` in the middleware crate.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut out = String::with_capacity(url.as_str().len().min(MAX_ATTRIBUTE_LEN));
    out.push_str(url.scheme());
    out.push(':');
    if url.has_authority() {
        out.push_str("//");
        out.push_str(url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            // Writing to a String cannot fail.
            let _ = write!(out, ":{port}");
        }
    }
    out.push_str(url.path());
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    truncate(out, MAX_ATTRIBUTE_LEN)
}

/// `server.address` (IPv6 without brackets) and `server.port` (explicit, else the scheme's
/// default), when the URL has a host.
pub(crate) fn server_address(url: &Url) -> Option<(String, Option<u16>)> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((
        truncate(host.to_owned(), MAX_HOST_LEN),
        url.port_or_known_default(),
    ))
}

/// The span for one attempt, with the attributes a sampler may look at: method, server
/// address and port, and `url.full`.
pub(crate) fn builder(req: &Request, name: Option<Cow<'static, str>>) -> SpanBuilder {
    let method = semconv::known_method(req.method());
    let name = name.unwrap_or(Cow::Borrowed(method.unwrap_or("HTTP")));
    let mut attributes = Vec::with_capacity(4);
    attributes.push(KeyValue::new(
        semconv::HTTP_REQUEST_METHOD,
        method.unwrap_or("_OTHER"),
    ));
    if let Some((host, port)) = server_address(req.url()) {
        attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host));
        if let Some(port) = port {
            attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
        }
    }
    attributes.push(KeyValue::new(semconv::URL_FULL, redact_url(req.url())));
    SpanBuilder::from_name(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
}

/// The attributes set once the span is known to record.
pub(crate) fn more_attributes(
    req: &Request,
    resend_count: Option<u32>,
    correlation: Option<&CorrelationId>,
) -> Vec<KeyValue> {
    let mut more = Vec::with_capacity(3);
    if semconv::known_method(req.method()).is_none() {
        more.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            truncate(req.method().as_str().to_owned(), MAX_METHOD_LEN),
        ));
    }
    if let Some(count) = resend_count {
        more.push(KeyValue::new(
            semconv::HTTP_REQUEST_RESEND_COUNT,
            i64::from(count),
        ));
    }
    if let Some(id) = correlation {
        more.push(KeyValue::new(
            semconv::CORRELATION_ID,
            Value::String(id.as_arc().into()),
        ));
    }
    more
}

/// Records a response (status code; Error on 4xx and 5xx) or a failure (error class,
/// `exception` event, Error) on the span, and a failure as the root cause of the request
/// `parent` belongs to, recorded or not ([`cause`]): one failing request is one error, and
/// its cause is this call. `method` is `http.request.method` (known or `_OTHER`).
pub(crate) fn record_outcome(
    span: &SpanRef<'_>,
    parent: &Context,
    method: &'static str,
    result: &reqwest_middleware::Result<Response>,
) {
    let recording = span.is_recording();
    match result {
        Ok(response) => {
            let status = response.status();
            let failed = status.is_client_error() || status.is_server_error();
            if failed {
                cause::record_cause(parent, || {
                    ErrorCause::call(
                        target(method, Some(response.url())),
                        status.as_str().to_owned(),
                        "",
                    )
                    .with_class(status.as_str().to_owned())
                    .with_status_code(status.as_u16())
                });
            }
            if !recording {
                return;
            }
            let mut attributes = vec![
                KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ),
                KeyValue::new(
                    semconv::NETWORK_PROTOCOL_VERSION,
                    semconv::protocol_version(response.version()),
                ),
            ];
            if failed {
                attributes.push(KeyValue::new(
                    semconv::ERROR_TYPE,
                    status.as_str().to_owned(),
                ));
                span.set_status(Status::error(""));
            }
            span.set_attributes(attributes);
        }
        Err(error) => {
            // Built once for the cause and the span; the error path only.
            let mut message = None;
            cause::record_cause(parent, || {
                let text = error_message(error);
                message = Some(text.clone());
                ErrorCause::call(target(method, error.url()), exception_type(error), text)
                    .with_class(error_class(error))
            });
            if !recording {
                return;
            }
            let message = message.unwrap_or_else(|| error_message(error));
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_class(error)));
            span.add_event(
                semconv::EXCEPTION_EVENT,
                vec![
                    KeyValue::new(semconv::EXCEPTION_TYPE, exception_type(error)),
                    KeyValue::new(semconv::EXCEPTION_MESSAGE, message.clone()),
                ],
            );
            span.set_status(Status::error(message));
        }
    }
}

/// The call's target as error tracking names client operations: `{METHOD} {server.address}`.
fn target(method: &'static str, url: Option<&Url>) -> String {
    match url.and_then(server_address) {
        Some((host, _)) => format!("{method} {host}"),
        None => method.to_owned(),
    }
}

/// A low-cardinality class for `error.type`.
pub(crate) fn error_class(error: &reqwest_middleware::Error) -> &'static str {
    let reqwest_middleware::Error::Reqwest(error) = error else {
        return "_OTHER";
    };
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_redirect() {
        "redirect"
    } else if error.is_body() {
        "body"
    } else if error.is_decode() {
        "decode"
    } else if error.is_request() {
        "request"
    } else {
        "_OTHER"
    }
}

fn exception_type(error: &reqwest_middleware::Error) -> &'static str {
    match error {
        reqwest_middleware::Error::Reqwest(_) => "reqwest::Error",
        reqwest_middleware::Error::Middleware(_) => "anyhow::Error",
    }
}

/// The error and its sources, joined by `: `, with the URL redacted as in `url.full`.
fn error_message(error: &reqwest_middleware::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if message.len() > MAX_ATTRIBUTE_LEN * 2 {
            break;
        }
        let cause_text = cause.to_string();
        // Some errors repeat their source's text; say it once.
        if !message.ends_with(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    if let Some(url) = error.url() {
        let redacted = redact_url(url);
        if redacted != url.as_str() {
            message = message.replace(url.as_str(), &redacted);
        }
    }
    truncate(message, MAX_ATTRIBUTE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(url: &str) -> String {
        redact_url(&Url::parse(url).expect("a valid url"))
    }

    #[test]
    fn user_info_is_removed() {
        assert_eq!(
            redacted("https://user:secret@example.com/a"),
            "https://example.com/a"
        );
        assert_eq!(
            redacted("http://user@example.com:8080/"),
            "http://example.com:8080/"
        );
    }

    #[test]
    fn query_values_are_redacted_and_keys_kept() {
        assert_eq!(
            redacted("http://example.com/search?token=abc&page=2&flag"),
            "http://example.com/search?token=REDACTED&page=REDACTED&flag"
        );
        assert_eq!(redacted("http://example.com/?"), "http://example.com/?");
    }

    #[test]
    fn fragment_is_dropped() {
        assert_eq!(
            redacted("http://example.com/page?q=1#secret"),
            "http://example.com/page?q=REDACTED"
        );
    }

    #[test]
    fn default_ports_are_omitted_explicit_ones_kept() {
        assert_eq!(redacted("https://example.com:443/"), "https://example.com/");
        assert_eq!(
            redacted("https://example.com:8443/x"),
            "https://example.com:8443/x"
        );
        assert_eq!(redacted("http://[::1]:3000/"), "http://[::1]:3000/");
    }

    #[test]
    fn odd_urls_do_not_panic() {
        assert_eq!(
            redacted("mailto:someone@example.com"),
            "mailto:someone@example.com"
        );
        assert_eq!(redacted("file:///etc/hosts"), "file:///etc/hosts");
        assert_eq!(
            redacted("data:text/plain,hi?x=1"),
            "data:text/plain,hi?x=REDACTED"
        );
    }

    #[test]
    fn long_urls_are_capped_at_a_char_boundary() {
        let url = format!("http://example.com/{}", "é".repeat(2000));
        let out = redacted(&url);
        assert!(out.len() <= MAX_ATTRIBUTE_LEN);
        assert!(out.starts_with("http://example.com/"));
    }

    #[test]
    fn server_address_strips_ipv6_brackets_and_defaults_the_port() {
        let url = |s: &str| Url::parse(s).expect("a valid url");
        assert_eq!(
            server_address(&url("http://[::1]:3000/")),
            Some(("::1".to_owned(), Some(3000)))
        );
        assert_eq!(
            server_address(&url("https://example.com/")),
            Some(("example.com".to_owned(), Some(443)))
        );
        assert_eq!(
            server_address(&url("http://example.com/")),
            Some(("example.com".to_owned(), Some(80)))
        );
        assert_eq!(server_address(&url("mailto:a@b.c")), None);
        assert_eq!(server_address(&url("file:///tmp")), None);
    }

    #[test]
    fn unknown_methods_are_named_http() {
        let method = reqwest::Method::from_bytes(b"BREW").expect("a valid method");
        let req = Request::new(method, Url::parse("http://example.com/").expect("valid"));
        let builder = builder(&req, None);
        assert_eq!(builder.name, "HTTP");
        let more = more_attributes(&req, None, None);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].key.as_str(), semconv::HTTP_REQUEST_METHOD_ORIGINAL);
        assert_eq!(more[0].value.as_str(), "BREW");
    }
}
