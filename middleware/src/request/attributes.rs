//! [`ServerRequest`]: the server span's request attributes as plain fields, read once from the
//! request and turned into OpenTelemetry attributes only by whoever needs them that way.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use arrayvec::ArrayString;
use http::{HeaderValue, Request};
use opentelemetry::{KeyValue, Value};

use super::naming::Naming;
use crate::correlation::CorrelationId;
use crate::semconv::{self, truncate_str, HeaderCapture, MAX_ATTRIBUTE_LEN};

/// The request attributes of a server span (HTTP semantic conventions), as the layer read
/// them: fixed keys, static or shared texts, one allocation for the path and query.
///
/// A [`ContextTracer`](crate::tracer::ContextTracer) receives one through
/// [`start_server`](crate::tracer::ContextTracer::start_server) for a span that records, and
/// may keep it as it is rather than as `KeyValue`s (this library's own tracer encodes it
/// straight to OTLP on its export thread). [`for_each`](Self::for_each) visits the attributes
/// in the order [`push_key_values`](Self::push_key_values) adds them.
///
/// ```
/// use opentelemetry::trace::{SpanBuilder, TraceContextExt};
/// use service_tracing_middleware::tracer::{from_provider, ContextTracer};
///
/// // Any OpenTelemetry tracer gets the attributes as `KeyValue`s (the default).
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let tracer = from_provider(&provider, "1.0.0");
/// let req = http::Request::get("/users/42?page=2").body(()).unwrap();
/// let request = service_tracing_middleware::test_server_request(&req);
/// let mut keys = Vec::new();
/// request.for_each(|key, _| keys.push(key));
/// assert_eq!(keys[..3], ["http.request.method", "url.path", "url.scheme"]);
/// let cx = tracer.start_server(SpanBuilder::from_name("GET"), &opentelemetry::Context::new(), &mut || request.clone());
/// assert!(cx.span().is_recording());
/// ```
#[derive(Clone, Debug)]
pub struct ServerRequest {
    method: &'static str,
    scheme: &'static str,
    route: Option<Cow<'static, str>>,
    /// The path (cut to `MAX_ATTRIBUTE_LEN`) followed by the redacted query, if any.
    text: Text,
    path_len: usize,
    /// A copy of the correlation id's text: an `Arc` clone would be dropped last on the export
    /// thread.
    correlation_id: Text,
    method_original: Option<Box<str>>,
    server_address: Option<Arc<str>>,
    server_port: Option<u16>,
    client_address: Option<IpAddr>,
    protocol_version: &'static str,
    user_agent: Option<Arc<str>>,
    headers: Vec<KeyValue>,
}

/// One attribute value of a [`ServerRequest`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RequestValue<'a> {
    /// A text from a fixed vocabulary or interned for the process (method, scheme, route,
    /// protocol version).
    Static(&'static str),
    /// A text of this request (path, query, original method).
    Text(&'a str),
    /// A text shared between requests or with the request's context (correlation id, server
    /// address, user agent).
    Shared(&'a Arc<str>),
    /// A number (server port).
    Int(i64),
    /// An IP address (client address), written as text.
    Ip(IpAddr),
}

impl RequestValue<'_> {
    /// The value as an OpenTelemetry attribute value.
    ///
    /// ```
    /// use service_tracing_middleware::tracer::RequestValue;
    /// assert_eq!(RequestValue::Int(8080).to_value(), opentelemetry::Value::I64(8080));
    /// ```
    pub fn to_value(&self) -> Value {
        match *self {
            RequestValue::Static(s) => Value::from(s),
            RequestValue::Text(s) => Value::from(s.to_owned()),
            RequestValue::Shared(s) => Value::String(s.clone().into()),
            RequestValue::Int(i) => Value::I64(i),
            RequestValue::Ip(ip) => Value::from(ip.to_string()),
        }
    }
}

impl ServerRequest {
    /// Every key [`for_each`](Self::for_each) may visit, in its order: a redaction policy can
    /// be checked against these once, instead of on each span.
    ///
    /// ```
    /// use service_tracing_middleware::tracer::ServerRequest;
    /// let req = http::Request::get("/a?b=c").header("user-agent", "x").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// request.for_each(|key, _| assert!(ServerRequest::KEYS.contains(&key)));
    /// ```
    pub const KEYS: [&'static str; 12] = [
        semconv::HTTP_REQUEST_METHOD,
        semconv::URL_PATH,
        semconv::URL_SCHEME,
        semconv::HTTP_ROUTE,
        semconv::CORRELATION_ID,
        semconv::HTTP_REQUEST_METHOD_ORIGINAL,
        semconv::URL_QUERY,
        semconv::SERVER_ADDRESS,
        semconv::SERVER_PORT,
        semconv::CLIENT_ADDRESS,
        semconv::NETWORK_PROTOCOL_VERSION,
        semconv::USER_AGENT_ORIGINAL,
    ];

    /// Reads `req`'s attributes (with the headers `request_headers` captures); `naming` and
    /// `id` are the layer's for it.
    pub(crate) fn of<B>(
        request_headers: &HeaderCapture,
        req: &Request<B>,
        naming: &Naming<'_>,
        id: &CorrelationId,
        user_agent: Option<&HeaderValue>,
    ) -> Self {
        let mut request = Self::early_of(req, naming);
        request.read_rest(request_headers, req, naming, id, user_agent);
        request
    }

    /// Reads only what a sampler may look at (method, path, scheme, route; the query comes
    /// with the path): the rest waits for [`read_rest`](Self::read_rest), once the span is
    /// known to record.
    pub(crate) fn early_of<B>(req: &Request<B>, naming: &Naming<'_>) -> Self {
        let scheme = match req.uri().scheme_str() {
            Some("https") => "https",
            _ => "http",
        };
        let path = truncate_str(req.uri().path(), MAX_ATTRIBUTE_LEN);
        let text = match req.uri().query() {
            Some(query) => Text::new(&[path, &semconv::redact_query(query)]),
            None => Text::new(&[path]),
        };
        Self {
            method: naming.method,
            scheme,
            route: naming.route.clone(),
            path_len: path.len(),
            text,
            correlation_id: Text::Inline(ArrayString::new()),
            method_original: None,
            server_address: None,
            server_port: None,
            client_address: None,
            protocol_version: semconv::protocol_version(req.version()),
            user_agent: None,
            headers: Vec::new(),
        }
    }

    /// Reads the attributes [`early_of`](Self::early_of) left out; `user_agent` is the
    /// request's first `user-agent` value, found with the other headers the layer reads.
    pub(crate) fn read_rest<B>(
        &mut self,
        request_headers: &HeaderCapture,
        req: &Request<B>,
        naming: &Naming<'_>,
        id: &CorrelationId,
        user_agent: Option<&HeaderValue>,
    ) {
        (self.server_address, self.server_port) = match server_address(req) {
            Some((host, port)) => (Some(host), port),
            None => (None, None),
        };
        self.user_agent = user_agent
            .and_then(|v| v.to_str().ok())
            .map(|agent| shared_text(truncate_str(agent, 512)));
        request_headers.record(req.headers(), &mut self.headers);
        self.correlation_id = Text::new(&[id.as_str()]);
        self.method_original = naming.method_original.map(|m| truncate_str(m, 64).into());
        self.client_address = crate::trust::peer_ip(req);
    }

    /// Visits each attribute but the captured headers ([`headers`](Self::headers)), in a fixed
    /// order: `http.request.method`, `url.path`, `url.scheme`, `http.route`, then
    /// `correlation.id`, `http.request.method_original`, `url.query` (its values already
    /// redacted), `server.address`, `server.port`, `client.address`,
    /// `network.protocol.version`, `user_agent.original`; absent ones are skipped. The first
    /// four are the ones a sampler may read.
    ///
    /// ```
    /// let req = http::Request::get("/a?token=x").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// let mut query = None;
    /// request.for_each(|key, value| {
    ///     if key == "url.query" {
    ///         query = Some(format!("{value:?}"));
    ///     }
    /// });
    /// assert_eq!(query.as_deref(), Some(r#"Text("token=REDACTED")"#));
    /// ```
    pub fn for_each<'a>(&'a self, mut f: impl FnMut(&'static str, RequestValue<'a>)) {
        self.early(&mut f);
        self.rest(&mut f);
    }

    /// Adds the four attributes a sampler may read (method, path, scheme, route) to `out`.
    pub(crate) fn push_early(&self, out: &mut Vec<KeyValue>) {
        self.early(&mut |key: &'static str, value: RequestValue<'_>| {
            out.push(KeyValue::new(key, value.to_value()));
        });
    }

    fn early<'a>(&'a self, f: &mut impl FnMut(&'static str, RequestValue<'a>)) {
        f(
            semconv::HTTP_REQUEST_METHOD,
            RequestValue::Static(self.method),
        );
        f(semconv::URL_PATH, RequestValue::Text(self.path()));
        f(semconv::URL_SCHEME, RequestValue::Static(self.scheme));
        match &self.route {
            Some(Cow::Borrowed(route)) => f(semconv::HTTP_ROUTE, RequestValue::Static(route)),
            Some(Cow::Owned(route)) => f(semconv::HTTP_ROUTE, RequestValue::Text(route)),
            None => {}
        }
    }

    fn rest<'a>(&'a self, f: &mut impl FnMut(&'static str, RequestValue<'a>)) {
        f(
            semconv::CORRELATION_ID,
            RequestValue::Text(self.correlation_id.as_str()),
        );
        if let Some(original) = &self.method_original {
            f(
                semconv::HTTP_REQUEST_METHOD_ORIGINAL,
                RequestValue::Text(original),
            );
        }
        if let Some(query) = self
            .text
            .as_str()
            .get(self.path_len..)
            .filter(|q| !q.is_empty())
        {
            f(semconv::URL_QUERY, RequestValue::Text(query));
        }
        if let Some(host) = &self.server_address {
            f(semconv::SERVER_ADDRESS, RequestValue::Shared(host));
            if let Some(port) = self.server_port {
                f(semconv::SERVER_PORT, RequestValue::Int(i64::from(port)));
            }
        }
        if let Some(client) = self.client_address {
            f(semconv::CLIENT_ADDRESS, RequestValue::Ip(client));
        }
        f(
            semconv::NETWORK_PROTOCOL_VERSION,
            RequestValue::Static(self.protocol_version),
        );
        if let Some(agent) = &self.user_agent {
            f(semconv::USER_AGENT_ORIGINAL, RequestValue::Shared(agent));
        }
    }

    /// The request headers captured as attributes (`http.request.header.*`, string arrays),
    /// after the attributes [`for_each`](Self::for_each) visits.
    ///
    /// ```
    /// let req = http::Request::get("/").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// assert!(request.headers().is_empty());
    /// ```
    pub fn headers(&self) -> &[KeyValue] {
        &self.headers
    }

    /// Moves the captured headers out, for a tracer that keeps them with the span's other
    /// attributes; [`headers`](Self::headers) and
    /// [`push_key_values`](Self::push_key_values) then have none.
    ///
    /// ```
    /// let req = http::Request::get("/").body(()).unwrap();
    /// let mut request = service_tracing_middleware::test_server_request(&req);
    /// assert!(request.take_headers().is_empty());
    /// ```
    pub fn take_headers(&mut self) -> Vec<KeyValue> {
        std::mem::take(&mut self.headers)
    }

    /// `http.request.method`: a known method or `_OTHER`.
    ///
    /// ```
    /// let req = http::Request::patch("/").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// assert_eq!(request.method(), "PATCH");
    /// ```
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// `http.route`, when the router matched one.
    ///
    /// ```
    /// let req = http::Request::get("/").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// assert_eq!(request.route(), None);
    /// ```
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// `url.path`, cut to [`MAX_ATTRIBUTE_LEN`].
    ///
    /// ```
    /// let req = http::Request::get("/a?b=c").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// assert_eq!(request.path(), "/a");
    /// ```
    pub fn path(&self) -> &str {
        self.text.as_str().get(..self.path_len).unwrap_or_default()
    }

    /// The request's correlation id (`correlation.id`).
    ///
    /// ```
    /// let req = http::Request::get("/").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// assert!(!request.correlation_id().is_empty());
    /// ```
    pub fn correlation_id(&self) -> &str {
        self.correlation_id.as_str()
    }

    /// Adds every attribute as a `KeyValue` to `out`, in [`for_each`](Self::for_each)'s
    /// order, then the captured headers. With `early: false`, the four a sampler may read
    /// (method, path, scheme, route) are left out (they were given at the span's start).
    ///
    /// ```
    /// let req = http::Request::get("/a").body(()).unwrap();
    /// let request = service_tracing_middleware::test_server_request(&req);
    /// let mut attributes = Vec::new();
    /// request.push_key_values(true, &mut attributes);
    /// assert_eq!(attributes[1].value.as_str(), "/a");
    /// ```
    pub fn push_key_values(&self, early: bool, out: &mut Vec<KeyValue>) {
        let mut push = |key: &'static str, value: RequestValue<'_>| {
            out.push(KeyValue::new(key, value.to_value()));
        };
        if early {
            self.early(&mut push);
        }
        self.rest(&mut push);
        out.extend(self.headers.iter().cloned());
    }
}

/// Bytes of a request text kept inline: most paths, a path with a short query, every
/// generated correlation id (36).
const INLINE: usize = 64;

/// A text of the request, inline when short, else on the heap.
#[derive(Clone, Debug)]
enum Text {
    Inline(ArrayString<INLINE>),
    Heap(Box<str>),
}

impl Text {
    /// `parts` joined.
    fn new(parts: &[&str]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= INLINE {
            let mut inline = ArrayString::new();
            for part in parts {
                // Fits: the lengths were added up.
                let _ = inline.try_push_str(part);
            }
            Text::Inline(inline)
        } else {
            Text::Heap(parts.concat().into_boxed_str())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Text::Inline(s) => s.as_str(),
            Text::Heap(s) => s,
        }
    }
}

/// Host and port the request was addressed to: the URI authority (HTTP/2), else `Host`.
fn server_address<B>(req: &Request<B>) -> Option<(Arc<str>, Option<u16>)> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.as_str().as_bytes(),
        None => req.headers().get(http::header::HOST)?.as_bytes(),
    };
    // A service is called by the same name request after request: the last authority this
    // thread split, and what it split into, are kept.
    let cached = LAST_AUTHORITY.try_with(|last| {
        let last = last.try_borrow().ok()?;
        let (text, host, port) = last.as_ref()?;
        (&**text == authority).then(|| (host.clone(), *port))
    });
    if let Ok(Some(found)) = cached {
        return Some(found);
    }
    let split = super::span::split_authority(authority)
        .map(|(host, port)| (shared_text(truncate_str(host, 255)), port));
    let _ = LAST_AUTHORITY.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = split
                .as_ref()
                .map(|(host, port)| (authority.into(), host.clone(), *port));
        }
    });
    split
}

/// An authority's bytes, and the host and port they split into.
type SplitAuthority = (Box<[u8]>, Arc<str>, Option<u16>);

thread_local! {
    /// The last authority this thread split.
    static LAST_AUTHORITY: std::cell::RefCell<Option<SplitAuthority>> =
        const { std::cell::RefCell::new(None) };
}

/// Entries of each thread's cache of recent attribute texts.
const SHARED_TEXTS: usize = 16;

thread_local! {
    /// Texts that repeat from request to request (the host a service is called by, its
    /// callers' user agents), kept as `Arc<str>`: a repeat costs a comparison and a reference
    /// count, not an allocation here and a free on the export thread.
    static RECENT_TEXTS: std::cell::RefCell<[Option<Arc<str>>; SHARED_TEXTS]> =
        const { std::cell::RefCell::new([const { None }; SHARED_TEXTS]) };
}

/// `text`, shared with the last request that had the same text.
pub(crate) fn shared_text(text: &str) -> Arc<str> {
    let b = text.as_bytes();
    let slot = match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            (usize::from(first) ^ usize::from(last).rotate_left(3) ^ b.len()) % SHARED_TEXTS
        }
        _ => 0,
    };
    let shared = RECENT_TEXTS.try_with(|recent| {
        let mut recent = recent.try_borrow_mut().ok()?;
        let entry = &mut recent[slot];
        match entry {
            Some(kept) if &**kept == text => Some(kept.clone()),
            _ => {
                let kept: Arc<str> = Arc::from(text);
                *entry = Some(kept.clone());
                Some(kept)
            }
        }
    });
    shared.ok().flatten().unwrap_or_else(|| Arc::from(text))
}

/// `req`'s attributes as the layer reads them, for tests and examples: the route from axum's
/// `MatchedPath` when present (feature `axum`), the peer from `ConnectInfo`, a fresh
/// correlation id, no captured headers.
///
/// ```
/// let req = http::Request::get("http://shop.local:8080/users/42?token=t")
///     .header("user-agent", "curl/8")
///     .body(())
///     .unwrap();
/// let request = service_tracing_middleware::test_server_request(&req);
/// assert_eq!(request.path(), "/users/42");
/// ```
pub fn test_server_request<B>(req: &Request<B>) -> ServerRequest {
    let naming = Naming::of(req.method(), super::naming::route_of(req));
    ServerRequest::of(
        &HeaderCapture::default(),
        req,
        &naming,
        &CorrelationId::generate(),
        req.headers().get(http::header::USER_AGENT),
    )
}

#[cfg(test)]
mod tests {
    use super::{server_address, shared_text, ServerRequest};

    #[test]
    fn every_attribute_visited_is_among_the_listed_keys_in_their_order() {
        // A request with every attribute present: an unusual method, a query, a host with a
        // port, a peer address, a user agent.
        let mut req = http::Request::builder()
            .method("PURGE")
            .uri("http://shop.example:8080/a/b?c=d")
            .header("user-agent", "probe/1")
            .body(())
            .expect("a valid request");
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([10, 0, 0, 1], 4000)));
        let request = crate::test_server_request(&req);
        let mut visited = Vec::new();
        request.for_each(|key, _| visited.push(key));
        // Only the route is absent (no router matched the request).
        let expected: Vec<&str> = ServerRequest::KEYS
            .into_iter()
            .filter(|k| *k != crate::semconv::HTTP_ROUTE)
            .collect();
        assert_eq!(visited, expected);
    }

    #[test]
    fn the_last_authority_is_split_once_and_others_each_time() {
        let req = |host: &str| {
            http::Request::get("/")
                .header("host", host)
                .body(())
                .expect("a request")
        };
        let first = server_address(&req("shop.local:8080")).expect("an authority");
        assert_eq!((&*first.0, first.1), ("shop.local", Some(8080)));
        let again = server_address(&req("shop.local:8080")).expect("an authority");
        assert!(std::sync::Arc::ptr_eq(&first.0, &again.0));
        assert_eq!(again.1, Some(8080));
        let other = server_address(&req("shop.local:9090")).expect("an authority");
        assert_eq!((&*other.0, other.1), ("shop.local", Some(9090)));
        // Not an authority: none, and not taken for the last one.
        assert!(server_address(&req("bad host")).is_none());
        assert!(server_address(&req("bad host")).is_none());
        let absolute = http::Request::get("http://[::1]:81/")
            .body(())
            .expect("a request");
        let v6 = server_address(&absolute).expect("an authority");
        assert_eq!((&*v6.0, v6.1), ("[::1]", Some(81)));
    }

    #[test]
    fn repeated_texts_share_one_allocation_and_others_keep_their_own() {
        let a = shared_text("checkout-web/2.3.1");
        let b = shared_text(&String::from("checkout-web/2.3.1"));
        assert_eq!(&*a, "checkout-web/2.3.1");
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        // Same first byte, last byte and length: the same slot, another text.
        let c = shared_text("checkout-web/2.9.1");
        assert_eq!(&*c, "checkout-web/2.9.1");
        assert_eq!(&*a, "checkout-web/2.3.1", "a value never changes");
        assert_eq!(&*shared_text(""), "");
    }
}

#[cfg(test)]
mod text_tests {
    use super::{Text, INLINE};

    #[test]
    fn short_texts_stay_inline_and_long_ones_go_whole_to_the_heap() {
        let short = Text::new(&["/users/42", "?page=2"]);
        assert!(matches!(short, Text::Inline(_)));
        assert_eq!(short.as_str(), "/users/42?page=2");
        let exact = "a".repeat(INLINE);
        assert!(matches!(Text::new(&[&exact]), Text::Inline(_)));
        let long = format!("/{}", "é".repeat(INLINE));
        let text = Text::new(&[&long, "?q"]);
        assert!(matches!(text, Text::Heap(_)));
        assert_eq!(text.as_str(), format!("{long}?q"));
    }
}
