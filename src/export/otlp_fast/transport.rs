//! The thin transport of the fast exporter: one pooled hyper client posting encoded requests,
//! as OTLP/HTTP (`application/x-protobuf`, success = 2xx) or as unary gRPC over h2c with prior
//! knowledge (success = HTTP 200 and `grpc-status: 0`). `https` endpoints go through rustls
//! (feature `tls`, see [`super::tls`]): gRPC over h2 with ALPN `h2`, OTLP/HTTP over h2 or
//! HTTP/1.1 as ALPN decides. Plain `http` endpoints keep a client without TLS in the way.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_sdk::error::OTelSdkError;

use super::tls::ExtraRoots;
use crate::error::{SetupError, SetupErrorKind};

/// The path of the OTLP trace export method, appended to a gRPC endpoint.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Most bytes of an error response body quoted in an error message.
const QUOTED_BODY_BYTES: usize = 256;

/// How requests are framed and responses judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC over h2c; bodies carry the 5-byte gRPC message prefix.
    Grpc,
}

/// The pooled hyper client: plain for `http`, rustls for `https`.
enum Pool {
    Plain(Client<HttpConnector, Full<Bytes>>),
    #[cfg(feature = "tls")]
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl Pool {
    fn request(&self, request: Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Plain(client) => client.request(request),
            #[cfg(feature = "tls")]
            Self::Tls(client) => client.request(request),
        }
    }
}

/// A pooled client bound to one endpoint.
pub(crate) struct Transport {
    client: Pool,
    uri: Uri,
    headers: HeaderMap,
    wire: Wire,
    timeout: Duration,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("uri", &self.uri)
            .field("wire", &self.wire)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport posting to `endpoint` (for HTTP the full `/v1/traces` URL; for gRPC the base
    /// URL, to which the export method's path is appended). Fails on a URL that does not parse,
    /// on `https` without the `tls` feature, and on headers invalid in HTTP. `extra_roots` are
    /// trusted beside the system's roots for `https`.
    pub(crate) fn new(
        wire: Wire,
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
        extra_roots: &ExtraRoots,
    ) -> Result<Self, SetupError> {
        Self::for_method(
            wire,
            endpoint,
            GRPC_EXPORT_PATH,
            headers,
            timeout,
            extra_roots,
        )
    }

    /// Like [`new`](Self::new), for another OTLP export method (`grpc_path` is appended to a
    /// gRPC endpoint), such as the logs service's.
    pub(crate) fn for_method(
        wire: Wire,
        endpoint: &str,
        grpc_path: &str,
        headers: &[(String, String)],
        timeout: Duration,
        extra_roots: &ExtraRoots,
    ) -> Result<Self, SetupError> {
        let uri = request_uri(wire, endpoint, grpc_path)?;

        let mut map = HeaderMap::new();
        map.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("service-tracing/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(value)) => {
                    map.insert(name, value);
                }
                _ => {
                    return Err(SetupError::invalid(
                        "OTEL_EXPORTER_OTLP_HEADERS",
                        k,
                        "header names and values valid in HTTP",
                    ))
                }
            }
        }
        // Set last: the protocol's own headers are not the user's to change.
        match wire {
            Wire::Http => {
                map.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
            }
            Wire::Grpc => {
                map.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                map.insert(TE, HeaderValue::from_static("trailers"));
            }
        }

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(wire == Wire::Grpc);
        let client = if uri.scheme_str() == Some("https") {
            tls_pool(&builder, wire, extra_roots, connector)?
        } else {
            Pool::Plain(builder.build(connector))
        };
        Ok(Self {
            client,
            uri,
            headers: map,
            wire,
            timeout,
        })
    }

    /// How this transport frames requests.
    pub(crate) fn wire(&self) -> Wire {
        self.wire
    }

    /// Posts one encoded request; the whole exchange (connect, send, read the response to its
    /// end) is bounded by the configured timeout.
    pub(crate) async fn send(&self, body: Bytes) -> Result<(), OTelSdkError> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(OTelSdkError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, body: Bytes) -> Result<(), OTelSdkError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();

        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| failure(format!("cannot export to {}: {}", self.uri, chain(&e))))?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| {
            failure(format!(
                "cannot read the response of {}: {}",
                self.uri,
                chain(&e)
            ))
        })?;

        match self.wire {
            Wire::Http if parts.status.is_success() => Ok(()),
            Wire::Http => {
                let body = collected.to_bytes();
                Err(failure(format!(
                    "{} answered HTTP {}: {}",
                    self.uri,
                    parts.status,
                    quote(&body)
                )))
            }
            Wire::Grpc => {
                if parts.status != StatusCode::OK {
                    return Err(failure(format!(
                        "{} answered HTTP {} to a gRPC export",
                        self.uri, parts.status
                    )));
                }
                // Trailers normally; the response headers for a trailers-only response.
                let trailers = collected.trailers().cloned().unwrap_or_default();
                let field = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name));
                let status = field("grpc-status").map(|v| v.as_bytes());
                match status {
                    Some(b"0") => Ok(()),
                    Some(code) => {
                        let message = field("grpc-message")
                            .map(|m| {
                                percent_encoding::percent_decode(m.as_bytes())
                                    .decode_utf8_lossy()
                                    .into_owned()
                            })
                            .unwrap_or_default();
                        Err(failure(format!(
                            "{} answered grpc-status {}: {}",
                            self.uri,
                            String::from_utf8_lossy(code),
                            message
                        )))
                    }
                    None => Err(failure(format!(
                        "{} answered a gRPC export without grpc-status",
                        self.uri
                    ))),
                }
            }
        }
    }
}

/// The client for an `https` endpoint: ALPN chooses the HTTP version (gRPC offers only `h2`).
#[cfg(feature = "tls")]
fn tls_pool(
    builder: &hyper_util::client::legacy::Builder,
    wire: Wire,
    extra_roots: &ExtraRoots,
    mut connector: HttpConnector,
) -> Result<Pool, SetupError> {
    // The TLS connector hands `https` URIs to the TCP connector.
    connector.enforce_http(false);
    let https = super::tls::connector(wire == Wire::Grpc, extra_roots, connector)?;
    Ok(Pool::Tls(builder.build(https)))
}

#[cfg(not(feature = "tls"))]
fn tls_pool(
    _builder: &hyper_util::client::legacy::Builder,
    _wire: Wire,
    _extra_roots: &ExtraRoots,
    _connector: HttpConnector,
) -> Result<Pool, SetupError> {
    Err(SetupError::new(
        SetupErrorKind::Exporter,
        "an https:// OTLP endpoint needs the `tls` feature of service-tracing",
    ))
}

/// The URI requests go to.
fn request_uri(wire: Wire, endpoint: &str, grpc_path: &str) -> Result<Uri, SetupError> {
    let bad = |why: &str| {
        SetupError::new(
            SetupErrorKind::Exporter,
            format!("cannot build the fast OTLP exporter for {endpoint}: {why}"),
        )
    };
    let full = match wire {
        Wire::Http => endpoint.to_owned(),
        Wire::Grpc => format!("{}{grpc_path}", endpoint.trim_end_matches('/')),
    };
    let uri: Uri = full
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad("not a valid URL").with_source(e))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the URL needs an http:// or https:// scheme")),
    }
    if uri.authority().is_none() {
        return Err(bad("the URL has no host"));
    }
    Ok(uri)
}

fn failure(message: String) -> OTelSdkError {
    OTelSdkError::InternalFailure(message)
}

/// An error and its sources, joined by `: ` (hyper's own messages are terse).
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The start of a response body, as text.
fn quote(body: &[u8]) -> String {
    let end = body.len().min(QUOTED_BODY_BYTES);
    let mut text = String::from_utf8_lossy(&body[..end]).into_owned();
    if body.len() > end {
        text.push('…');
    }
    text
}
