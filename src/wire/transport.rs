//! The thin transport of the fast exporter: one pooled hyper client posting encoded requests,
//! as OTLP/HTTP (`application/x-protobuf`, success = 2xx) or as unary gRPC over h2c with prior
//! knowledge (success = HTTP 200 and `grpc-status: 0`). `https` endpoints go through rustls
//! (feature `tls`, see [`super::tls`]): gRPC over h2 with ALPN `h2`, OTLP/HTTP over h2 or
//! HTTP/1.1 as ALPN decides. Plain `http` endpoints keep a client without TLS in the way.
//!
//! [`Transport::attempt`] sends once and says what the answer means ([`Attempt`], after
//! [`super::retry`]); the exporter decides whether to try again. Bodies may be gzip-compressed
//! ([`Transport::with_compression`]). Response bodies are read up to 64 KiB: a backend's answer
//! never grows memory without bound.

use std::error::Error as StdError;
use std::fmt;
use std::io::Read as _;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, TE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::retry::{self, Backoff, Verdict};
use super::tls::TlsConfig;
use crate::config::{Compression, Protocol};
use crate::error::{SetupError, SetupErrorKind};

/// The path of the OTLP trace export method, appended to a gRPC endpoint.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Most bytes of an error response body quoted in an error message.
const QUOTED_BODY_BYTES: usize = 256;

/// Most bytes of a response body read (and of a gzip response decompressed): an OTLP answer is
/// a few bytes, a partial success a message; anything beyond is not kept.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What one export request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The backend took the request. `rejected` items of it were refused (a partial success),
    /// `message` is what it said (a rejection's reason, or a warning with none rejected).
    Accepted {
        rejected: u64,
        message: Option<String>,
    },
    /// A transient failure (throttling, an unavailable backend, no connection): worth sending
    /// again, not before `after` when the backend said so.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Refused for good (HTTP 400, gRPC `INVALID_ARGUMENT`...): the data must not be resent.
    Rejected { error: String },
    /// Not sent, and sending again would not help: the server's certificate is not trusted
    /// (a TLS error is a configuration problem, not a passing one).
    Failed { error: String },
    /// The deadline passed before an answer.
    TimedOut,
}

/// Where [`Transport::deliver`] counts what became of a request's items.
pub(crate) trait Outcomes: Send + Sync {
    /// `items` were refused for good (or in part, by a partial success); `reason` says why.
    fn rejected(&self, items: u64, reason: String);
    /// The request is about to be sent again.
    fn retried(&self);
}

/// Counts nothing.
impl Outcomes for () {
    fn rejected(&self, _items: u64, _reason: String) {}
    fn retried(&self) {}
}

/// How often refusals are told on standard error, at most (as the span worker's losses are).
const REFUSALS_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Refusals of one signal's exports (a partial success's rejected items and message, or a
/// final refusal), told on standard error at most once per 10 s: the items refused since the
/// last report and the backend's last message. Spans have the export worker's report; this is
/// the metrics push's and the error log records'.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// "data point", "log record".
    noun: &'static str,
    state: std::sync::Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    last_report: Option<std::time::Instant>,
    unreported: u64,
}

impl Refusals {
    pub(crate) fn new(noun: &'static str) -> Self {
        Self {
            noun,
            state: std::sync::Mutex::default(),
        }
    }

    /// Notes `items` refused for `reason` at `now`; the line to report, when one is due.
    pub(crate) fn note(&self, items: u64, reason: &str, now: std::time::Instant) -> Option<String> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.unreported += items;
        if state
            .last_report
            .is_some_and(|at| now.saturating_duration_since(at) < REFUSALS_REPORT_EVERY)
        {
            return None;
        }
        state.last_report = Some(now);
        let n = std::mem::take(&mut state.unreported);
        Some(format!(
            "service-tracing: {n} {}(s) refused by the backend since the last report; the backend said: {reason}",
            self.noun
        ))
    }
}

impl Outcomes for Refusals {
    fn rejected(&self, items: u64, reason: String) {
        if let Some(line) = self.note(items, &reason, std::time::Instant::now()) {
            eprintln!("{line}");
        }
    }
    fn retried(&self) {}
}

/// How requests are framed and responses judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC over h2c; bodies carry the 5-byte gRPC message prefix.
    Grpc,
}

impl From<Protocol> for Wire {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Grpc => Wire::Grpc,
            Protocol::HttpProtobuf => Wire::Http,
        }
    }
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
    compression: Compression,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("uri", &self.uri)
            .field("wire", &self.wire)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport posting to `endpoint` (for HTTP the full `/v1/traces` URL; for gRPC the base
    /// URL, to which the export method's path is appended). Fails on a URL that does not parse,
    /// on `https` without the `tls` feature, and on headers invalid in HTTP. `tls` is the shared
    /// TLS configuration (extra roots, client certificate) for `https`.
    pub(crate) fn new(
        wire: Wire,
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
        tls: &TlsConfig,
    ) -> Result<Self, SetupError> {
        Self::for_method(wire, endpoint, GRPC_EXPORT_PATH, headers, timeout, tls)
    }

    /// Like [`new`](Self::new), for another OTLP export method (`grpc_path` is appended to a
    /// gRPC endpoint), such as the logs service's.
    /// The transport of a signal sent as one message per request (metrics, log records) to
    /// `grpc_path` over gRPC, compressed with `compression`, and the framer of its bodies.
    pub(crate) fn for_signal(
        protocol: Protocol,
        endpoint: &str,
        grpc_path: &str,
        headers: &[(String, String)],
        timeout: Duration,
        tls: &TlsConfig,
        compression: Compression,
    ) -> Result<(Self, super::body::Framer), SetupError> {
        let wire = Wire::from(protocol);
        let transport = Self::for_method(wire, endpoint, grpc_path, headers, timeout, tls)?
            .with_compression(compression);
        Ok((transport, super::body::Framer::new(wire, compression)))
    }

    pub(crate) fn for_method(
        wire: Wire,
        endpoint: &str,
        grpc_path: &str,
        headers: &[(String, String)],
        timeout: Duration,
        tls: &TlsConfig,
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
            tls_pool(&builder, wire, tls, connector)?
        } else {
            Pool::Plain(builder.build(connector))
        };
        Ok(Self {
            client,
            uri,
            headers: map,
            wire,
            timeout,
            compression: Compression::None,
        })
    }

    /// Declares request bodies compressed with `compression` (`content-encoding` for
    /// OTLP/HTTP, `grpc-encoding` for gRPC); the caller compresses them.
    pub(crate) fn with_compression(mut self, compression: Compression) -> Self {
        let name = match self.wire {
            Wire::Http => CONTENT_ENCODING,
            Wire::Grpc => HeaderName::from_static("grpc-encoding"),
        };
        match compression {
            Compression::Gzip => {
                self.headers.insert(name, HeaderValue::from_static("gzip"));
            }
            Compression::None => {
                self.headers.remove(name);
            }
        }
        self.compression = compression;
        self
    }

    /// How this transport frames requests.
    pub(crate) fn wire(&self) -> Wire {
        self.wire
    }

    /// How request bodies are compressed.
    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// Sends one encoded request holding `items` items (`noun`: "span", "data point", "log
    /// record") until the backend takes it, refuses it for good, or the configured timeout
    /// (retries included) runs out: the one retry loop of every signal, after the OTLP
    /// specification ([`super::retry`]). Refused items and retries are counted in `outcomes`.
    pub(crate) async fn deliver(
        &self,
        body: &Bytes,
        items: u64,
        noun: &str,
        outcomes: &dyn Outcomes,
    ) -> OTelSdkResult {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new();
        let mut attempts = 1_u32;
        loop {
            match self.attempt(body.clone(), deadline).await {
                Attempt::Accepted { rejected, message } => {
                    if rejected > 0 || message.is_some() {
                        let rejected = rejected.min(items);
                        let said = message.unwrap_or_default();
                        outcomes.rejected(
                            rejected,
                            format!(
                                "{rejected} of {items} {noun}(s) rejected (partial success): {said}"
                            ),
                        );
                    }
                    return Ok(());
                }
                Attempt::Rejected { error } => {
                    outcomes.rejected(items, error.clone());
                    return Err(failure(error));
                }
                Attempt::Failed { error } => return Err(failure(error)),
                Attempt::TimedOut => return Err(OTelSdkError::Timeout(timeout)),
                Attempt::Retry { after, error } => {
                    let wait = backoff.next_wait(after);
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(failure(format!(
                            "{error} (gave up after {attempts} attempt(s): the next, in {wait:?}, would end past the export timeout of {timeout:?})"
                        )));
                    }
                    tokio::time::sleep(wait).await;
                    outcomes.retried();
                    attempts += 1;
                }
            }
        }
    }

    /// Posts one encoded request, finished by `deadline`, and judges the answer.
    pub(crate) async fn attempt(&self, body: Bytes, deadline: tokio::time::Instant) -> Attempt {
        tokio::time::timeout_at(deadline, self.exchange(body))
            .await
            .unwrap_or(Attempt::TimedOut)
    }

    /// One request and its answer, in three steps: send, read the answer (bounded), judge it
    /// by the wire's rules.
    async fn exchange(&self, body: Bytes) -> Attempt {
        let response = match self.send(body).await {
            Ok(response) => response,
            Err(attempt) => return attempt,
        };
        let (parts, body) = response.into_parts();
        let (data, trailers) = match read_bounded(body).await {
            Ok(read) => read,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    error: format!("cannot read the response of {}: {}", self.uri, chain(&e)),
                }
            }
        };
        match self.wire {
            Wire::Http => self.judge_http(&parts, &data),
            Wire::Grpc => self.judge_grpc(&parts, &data, trailers.unwrap_or_default()),
        }
    }

    /// Posts `body`; no answer at all is already a verdict.
    async fn send(&self, body: Bytes) -> Result<hyper::Response<hyper::body::Incoming>, Attempt> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();

        // No answer (refused, reset): the specification retries with backoff. A TLS failure
        // (an untrusted certificate) would fail the same way again.
        self.client.request(request).await.map_err(|e| {
            let error = format!("cannot export to {}: {}", self.uri, chain(&e));
            if is_tls_error(&e) {
                Attempt::Failed { error }
            } else {
                Attempt::Retry { after: None, error }
            }
        })
    }

    /// An OTLP/HTTP answer: a 2xx takes the request (maybe in part), another status is
    /// retried or refused as the specification says, honouring `Retry-After`.
    fn judge_http(&self, parts: &http::response::Parts, data: &[u8]) -> Attempt {
        if parts.status.is_success() {
            let gzip = parts
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            return accepted(data, gzip);
        }
        let error = format!(
            "{} answered HTTP {}: {}",
            self.uri,
            parts.status,
            quote(data)
        );
        let retry_after = parts.headers.get(RETRY_AFTER).map(HeaderValue::as_bytes);
        verdict(
            retry::http_status(parts.status.as_u16(), retry_after, SystemTime::now()),
            error,
        )
    }

    /// A gRPC answer: the HTTP status, then `grpc-status` in the trailers (or the headers of a
    /// trailers-only response), with a `RetryInfo` for throttling.
    fn judge_grpc(
        &self,
        parts: &http::response::Parts,
        data: &[u8],
        trailers: HeaderMap,
    ) -> Attempt {
        if parts.status != StatusCode::OK {
            let code = retry::grpc_code_of_http(parts.status.as_u16());
            // A proxy's throttling answer may still say when to come back.
            let retry_after = parts.headers.get(RETRY_AFTER).map(HeaderValue::as_bytes);
            let after = retry_after.and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
            return verdict(
                retry::grpc_status(code, after),
                format!(
                    "{} answered HTTP {} to a gRPC export",
                    self.uri, parts.status
                ),
            );
        }
        let field = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name));
        match field("grpc-status").map(HeaderValue::as_bytes) {
            Some(b"0") => {
                let gzip = field("grpc-encoding")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                accepted_grpc(data, gzip)
            }
            Some(code) => {
                let message = field("grpc-message")
                    .map(|m| {
                        percent_encoding::percent_decode(m.as_bytes())
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                let error = format!(
                    "{} answered grpc-status {}: {}",
                    self.uri,
                    String::from_utf8_lossy(code),
                    message
                );
                let number = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.trim().parse::<u32>().ok())
                    .unwrap_or(retry::code::UNKNOWN);
                let delay =
                    field("grpc-status-details-bin").and_then(|v| retry::retry_info(v.as_bytes()));
                verdict(retry::grpc_status(number, delay), error)
            }
            None => Attempt::Rejected {
                error: format!("{} answered a gRPC export without grpc-status", self.uri),
            },
        }
    }
}

fn verdict(verdict: Verdict, error: String) -> Attempt {
    match verdict {
        Verdict::Retry(after) => Attempt::Retry { after, error },
        Verdict::Drop => Attempt::Rejected { error },
    }
}

/// Reads a response body, keeping at most [`MAX_RESPONSE_BYTES`] of its data (the rest is read
/// and discarded, so the connection can be reused) and its trailers.
async fn read_bounded(
    mut body: hyper::body::Incoming,
) -> Result<(Bytes, Option<HeaderMap>), hyper::Error> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(chunk) => {
                let room = MAX_RESPONSE_BYTES.saturating_sub(data.len());
                data.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((data.freeze(), trailers))
}

/// A successful OTLP/HTTP answer: an `ExportTraceServiceResponse`, whose `partial_success`
/// says how many spans were refused. A body that does not decode is a plain success (the
/// specification lets servers answer with an empty body).
fn accepted(body: &[u8], gzip: bool) -> Attempt {
    let decoded;
    let message = if gzip {
        match gunzip(body) {
            Some(d) => {
                decoded = d;
                &decoded[..]
            }
            None => return full_success(),
        }
    } else {
        body
    };
    partial_success(message)
}

/// A successful gRPC answer: one length-prefixed message, maybe compressed.
fn accepted_grpc(body: &[u8], gzip: bool) -> Attempt {
    let Some((prefix, rest)) = body.split_first_chunk::<5>() else {
        return full_success();
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let Some(message) = rest.get(..len) else {
        return full_success();
    };
    match prefix[0] {
        0 => partial_success(message),
        1 if gzip => accepted(message, true),
        _ => full_success(),
    }
}

fn full_success() -> Attempt {
    Attempt::Accepted {
        rejected: 0,
        message: None,
    }
}

fn partial_success(message: &[u8]) -> Attempt {
    use prost::Message as _;
    let Ok(response) =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            message,
        )
    else {
        return full_success();
    };
    match response.partial_success {
        Some(p) => Attempt::Accepted {
            rejected: u64::try_from(p.rejected_spans).unwrap_or(0),
            message: (!p.error_message.is_empty()).then_some(p.error_message),
        },
        None => full_success(),
    }
}

/// Decompresses a gzip body, at most [`MAX_RESPONSE_BYTES`] of it; `None` if it is not gzip.
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_RESPONSE_BYTES as u64)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The client for an `https` endpoint: ALPN chooses the HTTP version (gRPC offers only `h2`).
#[cfg(feature = "tls")]
fn tls_pool(
    builder: &hyper_util::client::legacy::Builder,
    wire: Wire,
    tls: &TlsConfig,
    mut connector: HttpConnector,
) -> Result<Pool, SetupError> {
    // The TLS connector hands `https` URIs to the TCP connector.
    connector.enforce_http(false);
    let https = super::tls::connector(wire == Wire::Grpc, tls, connector)?;
    Ok(Pool::Tls(builder.build(https)))
}

#[cfg(not(feature = "tls"))]
fn tls_pool(
    _builder: &hyper_util::client::legacy::Builder,
    _wire: Wire,
    _tls: &TlsConfig,
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

/// Whether `error` or one of its sources is a rustls error. The TLS stream wraps it in an
/// `io::Error`, which hyper-rustls wraps in another, and an `io::Error`'s `source` skips the
/// error it wraps: each is opened with `get_ref`.
#[cfg(feature = "tls")]
pub(crate) fn is_tls_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let mut wrapped: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(w) = wrapped {
            if w.is::<rustls::Error>() {
                return true;
            }
            wrapped = w
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|inner| inner as &(dyn StdError + 'static));
        }
        next = e.source();
    }
    false
}

#[cfg(not(feature = "tls"))]
pub(crate) fn is_tls_error(_error: &(dyn StdError + 'static)) -> bool {
    false
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

#[cfg(test)]
mod refusal_tests {
    #[test]
    fn refusals_are_told_at_most_every_ten_seconds_with_what_came_between() {
        let refusals = super::Refusals::new("data point");
        let t0 = std::time::Instant::now();
        let first = refusals.note(
            3,
            "3 of 10 data point(s) rejected (partial success): bad unit",
            t0,
        );
        assert_eq!(
            first.as_deref(),
            Some("service-tracing: 3 data point(s) refused by the backend since the last report; the backend said: 3 of 10 data point(s) rejected (partial success): bad unit")
        );
        let later = t0 + std::time::Duration::from_secs(5);
        assert_eq!(refusals.note(2, "again", later), None);
        assert_eq!(refusals.note(4, "again", later), None);
        let due = t0 + std::time::Duration::from_secs(10);
        let second = refusals.note(1, "once more", due).expect("due");
        assert!(
            second.starts_with("service-tracing: 7 data point(s) refused"),
            "{second}"
        );
        assert!(second.ends_with("the backend said: once more"), "{second}");
    }
}
