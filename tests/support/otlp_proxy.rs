//! A plain-TCP OTLP proxy for tests, the sibling of `tls_proxy.rs`: it stands in front of the real
//! collector, records every export request (its headers, its size, when it came), answers the
//! first ones from a script (429 with `Retry-After`, 503, 400...) and forwards the others to the
//! collector over the HTTP version the exporter spoke (HTTP/1.1 for OTLP/HTTP, h2c for gRPC).
//! gRPC calls can be answered with a gRPC status (HTTP 200, `grpc-status`, and for
//! `RESOURCE_EXHAUSTED` a `grpc-status-details-bin` holding a `RetryInfo`), encoded here with
//! prost messages of its own, independently of the exporter's.
//! With no collector behind it, what is not scripted is answered by the last scripted answer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the proxy answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This HTTP status, with these headers and an empty body.
    Status(u16, Vec<(&'static str, &'static str)>),
    /// A gRPC status without a message: HTTP 200, `content-type: application/grpc`,
    /// `grpc-status: code` and `grpc-message`, plus a `grpc-status-details-bin` holding a
    /// `google.rpc.RetryInfo` when `retry_delay` is given. With `trailers_only` the status is
    /// in the response headers (the trailers-only form servers such as tonic use for errors),
    /// else in trailers after an empty body.
    Grpc {
        code: u32,
        retry_delay: Option<Duration>,
        trailers_only: bool,
    },
    /// The collector's answer.
    Forward,
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`, as much of them as `grpc-status-details-bin` needs.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The `grpc-status-details-bin` value for status `code` holding a `RetryInfo` of `delay`
/// (base64 without padding, as gRPC sends binary headers).
fn retry_info_details(code: u32, delay: Duration) -> String {
    use base64::Engine as _;
    use prost::Message as _;
    let info = rpc::RetryInfo {
        retry_delay: Some(rpc::Duration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let status = rpc::Status {
        code: code as i32,
        message: "scripted by the test proxy".to_owned(),
        details: vec![rpc::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec())
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    /// The request's path (`/v1/metrics`, `/opentelemetry.proto...MetricsService/Export`).
    pub path: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    pub body: Bytes,
    /// The status it was answered with (the collector's when forwarded).
    pub status: u16,
    /// The gRPC status it was answered with, when scripted (`None` when forwarded).
    pub grpc_status: Option<u32>,
}

struct State {
    script: Vec<Answer>,
    then: Answer,
    upstream: Option<u16>,
    /// Requests numbered as they arrive (the script's index).
    arrived: AtomicUsize,
    /// Whether `Seen::body` keeps the request's bytes (see [`OtlpProxy::forget_bodies`]).
    keep_bodies: AtomicBool,
    /// Microseconds every answer waits before it is made (see [`OtlpProxy::answer_late`]).
    latency_us: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    count: watch::Sender<usize>,
    http1: Client<HttpConnector, Full<Bytes>>,
    h2: Client<HttpConnector, Full<Bytes>>,
}

/// A running proxy; stops when dropped.
pub struct OtlpProxy {
    port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl OtlpProxy {
    /// Starts a proxy on a free loopback port answering the n-th request with `script[n]`, and
    /// every later one with `then`; `Forward` goes to `127.0.0.1:upstream`. Must be called
    /// inside a tokio runtime.
    pub async fn start(upstream: Option<u16>, script: Vec<Answer>, then: Answer) -> OtlpProxy {
        assert!(
            upstream.is_some() || !matches!(then, Answer::Forward),
            "forwarding needs a collector"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut h2 = Client::builder(TokioExecutor::new());
        h2.http2_only(true);
        let state = Arc::new(State {
            script,
            then,
            upstream,
            arrived: AtomicUsize::new(0),
            keep_bodies: AtomicBool::new(true),
            latency_us: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            http1: Client::builder(TokioExecutor::new()).build_http(),
            h2: h2.build_http(),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        OtlpProxy { port, state, task }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, `Seen::body` is left empty (`body_len` is still the request's size): a
    /// test measuring its own process's memory must not count the bodies the proxy keeps
    /// (about 150 KB per export of 512 spans).
    pub fn forget_bodies(&self) {
        self.state.keep_bodies.store(false, Ordering::Relaxed);
    }

    /// From now on, every request is answered `latency` after its body arrived (a backend
    /// one slow round trip away), whatever the answer.
    pub fn answer_late(&self, latency: Duration) {
        self.state
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests have been answered (panics after `timeout`).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let mut count = self.state.count.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} request(s) never came: {:?}", self.seen()))
            .unwrap();
        self.seen()
    }
}

impl Drop for OtlpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The headers, each value copied. hyper's values are slices of the connection's read buffer,
/// which also held the request's body: a `Seen` keeping them would keep that buffer, about the
/// body's size per request, alive for the test's whole run.
fn copied(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .map(|(name, value)| {
            let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap();
            (name.clone(), value)
        })
        .collect()
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<ProxyBody> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let latency = state.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let n = state.arrived.fetch_add(1, Ordering::SeqCst);
    let answer = state.script.get(n).unwrap_or(&state.then).clone();
    let grpc_status = match answer {
        Answer::Grpc { code, .. } => Some(code),
        _ => None,
    };
    let response = match answer {
        Answer::Grpc {
            code,
            retry_delay,
            trailers_only,
        } => {
            let mut status = HeaderMap::new();
            status.insert("grpc-status", code.to_string().parse().unwrap());
            status.insert(
                "grpc-message",
                "scripted%20by%20the%20test%20proxy".parse().unwrap(),
            );
            if let Some(delay) = retry_delay {
                status.insert(
                    "grpc-status-details-bin",
                    retry_info_details(code, delay).parse().unwrap(),
                );
            }
            let mut response = Response::builder()
                .status(200)
                .header("content-type", "application/grpc");
            if trailers_only {
                for (name, value) in &status {
                    response = response.header(name, value);
                }
                response
                    .body(
                        http_body_util::Empty::new()
                            .map_err(|never| match never {})
                            .boxed(),
                    )
                    .unwrap()
            } else {
                let body = http_body_util::Empty::<Bytes>::new()
                    .with_trailers(async move { Some(Ok(status)) })
                    .map_err(|never: Infallible| match never {})
                    .boxed();
                response.body(body).unwrap()
            }
        }
        Answer::Status(status, headers) => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response
                .body(
                    Full::new(Bytes::from_static(b"scripted by the test proxy"))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap()
        }
        Answer::Forward => {
            let upstream = state.upstream.expect("a collector to forward to");
            let uri: Uri = format!("http://127.0.0.1:{upstream}{}", parts.uri.path())
                .parse()
                .unwrap();
            let mut forwarded = Request::new(Full::new(body.clone()));
            *forwarded.method_mut() = parts.method.clone();
            *forwarded.uri_mut() = uri;
            *forwarded.headers_mut() = parts.headers.clone();
            forwarded.headers_mut().remove(http::header::HOST);
            let client = if parts.version == Version::HTTP_2 {
                &state.h2
            } else {
                &state.http1
            };
            match client.request(forwarded).await {
                Ok(response) => response.map(BodyExt::boxed),
                Err(e) => Response::builder()
                    .status(502)
                    .body(
                        Full::new(Bytes::from(e.to_string()))
                            .map_err(|never| match never {})
                            .boxed(),
                    )
                    .unwrap(),
            }
        }
    };
    state.seen.lock().unwrap().push(Seen {
        at,
        path: parts.uri.path().to_owned(),
        headers: copied(&parts.headers),
        body_len: body.len(),
        body: if state.keep_bodies.load(Ordering::Relaxed) {
            body
        } else {
            Bytes::new()
        },
        status: response.status().as_u16(),
        grpc_status,
    });
    state.count.send_modify(|c| *c += 1);
    response
}
