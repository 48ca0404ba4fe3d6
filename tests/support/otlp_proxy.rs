//! A plain-TCP OTLP proxy for tests, the sibling of `tls_proxy.rs`: it stands in front of the real
//! collector, records every export request (its headers, its size, when it came), answers the
//! first ones from a script (429 with `Retry-After`, 503, 400...) and forwards the others to the
//! collector over the HTTP version the exporter spoke (HTTP/1.1 for OTLP/HTTP, h2c for gRPC).
//! With no collector behind it, what is not scripted is answered by the last scripted answer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The collector's answer.
    Forward,
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body_len: usize,
    pub body: Bytes,
    /// The status it was answered with (the collector's when forwarded).
    pub status: u16,
}

struct State {
    script: Vec<Answer>,
    then: Answer,
    upstream: Option<u16>,
    /// Requests numbered as they arrive (the script's index).
    arrived: AtomicUsize,
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

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

async fn handle(state: &State, request: Request<Incoming>) -> Response<ProxyBody> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let n = state.arrived.fetch_add(1, Ordering::SeqCst);
    let answer = state.script.get(n).unwrap_or(&state.then).clone();
    let response = match answer {
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
        headers: parts.headers,
        body_len: body.len(),
        body,
        status: response.status().as_u16(),
    });
    state.count.send_modify(|c| *c += 1);
    response
}
