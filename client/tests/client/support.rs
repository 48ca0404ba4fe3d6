use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Router;
use http::{HeaderMap, HeaderName, StatusCode, Uri};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use service_tracing_client::TracingMiddleware;

/// The headers the server echoes back, each as `echo-{name}`.
const ECHOED: [&str; 4] = ["traceparent", "tracestate", "baggage", "x-correlation-id"];

/// A local tracer provider whose spans end up in memory.
pub(crate) struct Harness {
    pub(crate) provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { provider, exporter }
    }

    /// The middleware, on this harness's provider.
    pub(crate) fn middleware(&self) -> TracingMiddleware {
        TracingMiddleware::new().with_tracer_provider(&self.provider)
    }

    /// A client with just the middleware.
    pub(crate) fn client(&self) -> ClientWithMiddleware {
        ClientBuilder::new(plain_client())
            .with(self.middleware())
            .build()
    }

    /// The client spans, in the order they started.
    pub(crate) fn client_spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        let mut spans: Vec<SpanData> = self
            .exporter
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .collect();
        spans.sort_by_key(|s| s.start_time);
        spans
    }

    pub(crate) fn only_client_span(&self) -> SpanData {
        let spans = self.client_spans();
        assert_eq!(
            spans.len(),
            1,
            "expected exactly one client span, got {spans:#?}"
        );
        spans.into_iter().next().expect("one span")
    }
}

/// A reqwest client that ignores proxy settings, for loopback calls.
pub(crate) fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

pub(crate) fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("visible ascii").to_owned())
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<HeaderMap>>,
    flaky_calls: AtomicUsize,
}

/// A loopback server: every path echoes the propagation headers it received as `echo-*`
/// response headers; `/fail` answers 500, `/missing` 404, `/flaky` 503 twice then 200, `/slow`
/// after two seconds.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    pub(crate) async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { addr, shared }
    }

    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The headers of every request received, in order.
    pub(crate) fn received(&self) -> Vec<HeaderMap> {
        self.shared.received.lock().expect("lock").clone()
    }

    pub(crate) fn last_received(&self) -> HeaderMap {
        self.received().pop().expect("a request was received")
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, HeaderMap) {
    shared.received.lock().expect("lock").push(headers.clone());
    let status = match uri.path() {
        "/fail" => StatusCode::INTERNAL_SERVER_ERROR,
        "/missing" => StatusCode::NOT_FOUND,
        "/flaky" if shared.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    };
    let mut echo = HeaderMap::new();
    for name in ECHOED {
        if let Some(value) = headers.get(name) {
            let echo_name = HeaderName::try_from(format!("echo-{name}")).expect("a header name");
            echo.insert(echo_name, value.clone());
        }
    }
    (status, echo)
}

/// A closed loopback port: connecting to it is refused.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    listener.local_addr().expect("local addr")
}
