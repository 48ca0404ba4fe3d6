//! [`Tracing`]: the service the layer makes. Extracts context, starts the span, calls the inner
//! service inside that context.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanKind, TraceContextExt, TraceFlags, Tracer,
};
use opentelemetry::{Context, KeyValue, Value};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::cause::RequestErrors;
use crate::correlation;
use crate::future::{Echo, ResponseFuture};
use crate::layer::Config;
use crate::observe::Observation;
use crate::route_names;
use crate::scope::RequestScope;
use crate::semconv::{self, truncate, MAX_ATTRIBUTE_LEN};

/// The service [`TracingLayer`](crate::TracingLayer) wraps around yours.
#[derive(Clone)]
pub struct Tracing<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Tracing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Tracing<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The route template the router matched, if any.
#[cfg(feature = "axum")]
fn route_of<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str())
}

#[cfg(not(feature = "axum"))]
fn route_of<B>(_req: &Request<B>) -> Option<&str> {
    None
}

#[cfg(feature = "axum")]
fn client_address<B>(req: &Request<B>) -> Option<String> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

#[cfg(not(feature = "axum"))]
fn client_address<B>(req: &Request<B>) -> Option<String> {
    req.extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
}

/// Host and port the request was addressed to: the URI authority (HTTP/2), else `Host`.
fn server_address<B>(req: &Request<B>) -> Option<(String, Option<u16>)> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.as_str().as_bytes(),
        None => req.headers().get(http::header::HOST)?.as_bytes(),
    };
    let (host, port) = split_authority(authority)?;
    Some((truncate(host.to_owned(), 255), port))
}

/// Host and port of an authority (`host`, `host:port`, `[v6]:port`, with any `userinfo@`
/// dropped), as `http::uri::Authority` gives them, or `None` when it is not one. Parsing
/// into an `Authority` first cost an allocation and three passes over the text.
fn split_authority(authority: &[u8]) -> Option<(&str, Option<u16>)> {
    let text = std::str::from_utf8(authority).ok()?;
    let text = text.rsplit_once('@').map_or(text, |(_, host)| host);
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        let inner = &host[1..end];
        let v6 = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        match (v6, rest) {
            (false, _) => return None,
            (true, "") => (host, None),
            (true, rest) => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
    if !host.starts_with('[') && (host.is_empty() || !host.bytes().all(reg_name)) {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Tracing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let route = route_of(&req);
        let untraced = !config.untraced.is_empty() && {
            let key = route.unwrap_or_else(|| req.uri().path());
            config.untraced.iter().any(|r| r == key)
        };
        if untraced {
            return ResponseFuture::untraced(self.inner.call(req));
        }

        let extracted = config.propagator.extract(req.headers());
        // Untrusted: a new trace linked to the incoming one, and none of its baggage.
        let (parent, links) = if config.trust.is_always() || config.trust.is_trusted(&req) {
            (extracted, Vec::new())
        } else {
            let incoming = extracted.span().span_context().clone();
            let links = if incoming.is_valid() {
                vec![Link::with_context(incoming)]
            } else {
                Vec::new()
            };
            (Context::new(), links)
        };
        let (id, source) = correlation::resolve_with(
            req.headers(),
            &config.correlation_headers,
            correlation::from_baggage_with(parent.baggage(), &config.correlation_charset),
            &config.correlation_charset,
        );

        let (method, method_original) = match semconv::known_method(req.method()) {
            Some(m) => (m, None),
            None => ("_OTHER", Some(req.method().as_str())),
        };
        // Interned: no allocation for the name or the route on the hot path.
        let mut route_id = None;
        let (route_cow, name): (Option<Cow<'static, str>>, Cow<'static, str>) =
            match (route, method_original) {
                (Some(route), None) => match route_names::lookup(method, route) {
                    Some((route, name, id)) => {
                        route_id = Some(id);
                        (Some(Cow::Borrowed(route)), Cow::Borrowed(name))
                    }
                    None => (
                        Some(Cow::Owned(route.to_owned())),
                        Cow::Owned(format!("{method} {route}")),
                    ),
                },
                (Some(route), Some(_)) => match route_names::route_only(route) {
                    Some((route, id)) => {
                        route_id = Some(id);
                        (Some(Cow::Borrowed(route)), Cow::Borrowed("HTTP"))
                    }
                    None => (Some(Cow::Owned(route.to_owned())), Cow::Borrowed("HTTP")),
                },
                (None, None) => (None, Cow::Borrowed(method)),
                (None, Some(_)) => (None, Cow::Borrowed("HTTP")),
            };
        // Started before the span and the handler run, ended at the end of the body.
        let observation = (!config.observers.is_empty()).then(|| {
            Box::new(Observation::start(
                config.observers.clone(),
                method,
                route_cow.clone(),
                route_id,
            ))
        });
        let route_value: Option<Value> = route_cow.map(|r| match r {
            Cow::Borrowed(r) => Value::from(r),
            Cow::Owned(r) => Value::from(r),
        });
        let scheme = match req.uri().scheme_str() {
            Some("https") => "https",
            _ => "http",
        };
        let first = |attributes: &mut Vec<KeyValue>, route: Option<Value>| {
            attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
            attributes.push(KeyValue::new(
                semconv::URL_PATH,
                truncate(req.uri().path().to_owned(), MAX_ATTRIBUTE_LEN),
            ));
            attributes.push(KeyValue::new(semconv::URL_SCHEME, scheme));
            if let Some(route) = route {
                attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route));
            }
        };
        let parent_span = parent.span();
        let parent_sc = parent_span.span_context();
        let mut pending_first = None;
        let with_span = if config.sampler_hint.drops_unsampled_parents()
            && parent_sc.is_valid()
            && !parent_sc.is_sampled()
        {
            // What the parent-based sampler would decide, without the tracer: a span that
            // does not record, with its own id under the parent's trace (local: not remote).
            parent.with_remote_span_context(SpanContext::new(
                parent_sc.trace_id(),
                crate::ids::span_id(),
                TraceFlags::default(),
                false,
                parent_sc.trace_state().clone(),
            ))
        } else {
            // The SDK moves this Vec into the span: room for every attribute added later (the
            // request's and the response's) saves reallocations on the hot path.
            let mut attributes = Vec::with_capacity(16);
            // A sampler that reads no attributes gets none: they are set below, on a span
            // that records, and never built for one that does not.
            if config.sampler_hint.ignores_attributes() {
                pending_first = Some(route_value);
            } else {
                first(&mut attributes, route_value);
            }
            parent.with_span(
                config.tracer.build_with_context(
                    SpanBuilder::from_name(name)
                        .with_kind(SpanKind::Server)
                        .with_attributes(attributes)
                        .with_links(links),
                    &parent,
                ),
            )
        };
        // W3C Level 2: a new root's trace id is random; say so to the next hop.
        let random_trace_id = crate::propagation::RandomTraceId::vouch(
            &parent,
            with_span.span().span_context().trace_id(),
        )
        .map(|m| m.trace_id());
        // One value for the correlation id, the root-cause place and the random flag: one
        // copy of the context's map instead of three. The correlation id joins outbound
        // baggage when it is injected (see `W3cBaggage`), so nothing is copied here.
        let cx = with_span.with_value(RequestScope {
            id: Some(id.clone()),
            errors: config.error_causes.then(RequestErrors::default),
            random_trace_id,
        });
        let span = cx.span();
        if span.is_recording() {
            let mut more = Vec::with_capacity(12);
            if let Some(route) = pending_first {
                first(&mut more, route);
            }
            more.push(KeyValue::new(
                semconv::CORRELATION_ID,
                Value::String(id.as_arc().into()),
            ));
            if let Some(original) = method_original {
                more.push(KeyValue::new(
                    semconv::HTTP_REQUEST_METHOD_ORIGINAL,
                    truncate(original.to_owned(), 64),
                ));
            }
            if let Some(query) = req.uri().query() {
                more.push(KeyValue::new(
                    semconv::URL_QUERY,
                    semconv::redact_query(query),
                ));
            }
            if let Some((host, port)) = server_address(&req) {
                more.push(KeyValue::new(semconv::SERVER_ADDRESS, host));
                if let Some(port) = port {
                    more.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
                }
            }
            if let Some(client) = client_address(&req) {
                more.push(KeyValue::new(semconv::CLIENT_ADDRESS, client));
            }
            more.push(KeyValue::new(
                semconv::NETWORK_PROTOCOL_VERSION,
                semconv::protocol_version(req.version()),
            ));
            if let Some(agent) = req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
            {
                more.push(KeyValue::new(
                    semconv::USER_AGENT_ORIGINAL,
                    truncate(agent.to_owned(), 512),
                ));
            }
            config.request_headers.record(req.headers(), &mut more);
            span.set_attributes(more);
        }
        // Read at the response only for a recorded span and a configured list.
        let response_headers = (!config.response_headers.is_empty() && span.is_recording())
            .then(|| config.response_headers.clone());
        req.extensions_mut().insert(id.clone());

        // The header value the id came in, if it did: its bytes are exactly the id's.
        let incoming = match source {
            correlation::CorrelationSource::Header => config
                .correlation_headers
                .iter()
                .filter_map(|name| req.headers().get(name))
                .find(|value| value.as_bytes() == id.as_str().as_bytes())
                .cloned(),
            _ => None,
        };
        let echo = Echo {
            correlation: config.response_header.clone(),
            traceresponse: config.traceresponse,
            incoming,
            response_headers,
        };
        let called = {
            let _guard = cx.clone().attach();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        };
        match called {
            Ok(future) => ResponseFuture::traced(future, cx, id, echo, observation),
            Err(panic) => ResponseFuture::panicked(panic, cx, id, echo, observation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_authority;

    #[test]
    fn authorities_split_as_http_splits_them() {
        let same = [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:443",
            "127.0.0.1:80",
            "[::1]:8080",
            "[::1]",
            "[2001:db8::7]:65535",
            "user:pass@example.com:81",
            "a@b@example.com",
            "host:",
            "sub-domain.example_1.com",
            "example.com:65535",
        ];
        for text in same {
            let http: http::uri::Authority = text.parse().expect(text);
            assert_eq!(
                split_authority(text.as_bytes()),
                Some((http.host(), http.port_u16())),
                "{text}"
            );
        }
        // Refused by both; or, for the last ones, accepted by `http` but no host to report.
        for text in [
            "",
            "example.com:99999",
            "example.com:8o",
            "exa mple.com",
            "exa\"mple",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "\u{e9}t\u{e9}.example",
            ":8080",
            "@",
        ] {
            assert_eq!(split_authority(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(split_authority(b"\xff\xfe"), None);
    }
}
