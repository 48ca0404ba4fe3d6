//! What a chain is made of, as readers see it, and the compact JSON of one entry in Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use serde::{Deserialize, Serialize};

/// The kind of span an entry was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChainKind {
    /// An outbound call (`CLIENT` span).
    Client,
    /// A request served (`SERVER` span).
    Server,
    /// A message processed (`CONSUMER` span).
    Consumer,
    /// A message sent (`PRODUCER` span): a publish, a send.
    Producer,
}

impl ChainKind {
    /// `client`, `server`, `consumer` or `producer`.
    ///
    /// ```
    /// use service_tracing::request_chain::ChainKind;
    /// assert_eq!(ChainKind::Consumer.as_str(), "consumer");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::Client => "client",
            ChainKind::Server => "server",
            ChainKind::Consumer => "consumer",
            ChainKind::Producer => "producer",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "client" => ChainKind::Client,
            "server" => ChainKind::Server,
            "consumer" => ChainKind::Consumer,
            "producer" => ChainKind::Producer,
            _ => return None,
        })
    }

    /// Among entries starting at the same time, a call or a message sent comes before what
    /// it called or what processed it.
    fn order(self) -> u8 {
        match self {
            ChainKind::Client | ChainKind::Producer => 0,
            ChainKind::Server | ChainKind::Consumer => 1,
        }
    }
}

/// The span status of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChainStatus {
    /// Not set: the span ended without an error.
    Unset,
    /// Set to ok.
    Ok,
    /// An error (a 5xx answer, a failed call or message, an error stated by the handler).
    Error,
}

impl ChainStatus {
    /// `unset`, `ok` or `error`.
    ///
    /// ```
    /// use service_tracing::request_chain::ChainStatus;
    /// assert_eq!(ChainStatus::Error.as_str(), "error");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChainStatus::Unset => "unset",
            ChainStatus::Ok => "ok",
            ChainStatus::Error => "error",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "unset" => ChainStatus::Unset,
            "ok" => ChainStatus::Ok,
            "error" => ChainStatus::Error,
            _ => return None,
        })
    }
}

/// One step of a request chain: a server span, consumer span or outbound call that carried
/// the correlation id.
///
/// ```
/// use service_tracing::request_chain::{ChainKind, RequestChain};
/// # fn show(chain: &RequestChain) {
/// for entry in chain.entries() {
///     if entry.kind == ChainKind::Server {
///         println!("{} {} took {:?}", entry.service, entry.operation, entry.duration);
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ChainEntry {
    /// `service.name` of the service that recorded it.
    pub service: String,
    /// Its `service.instance.id`.
    pub instance: String,
    /// The operation: `{METHOD} {route}` for a server span, `{METHOD} {server.address}` for a
    /// client span, else the span name.
    pub operation: String,
    /// The kind of span.
    pub kind: ChainKind,
    /// The span status.
    pub status: ChainStatus,
    /// `http.response.status_code`, for HTTP spans that had an answer.
    pub http_status: Option<u16>,
    /// When the span started.
    pub start: SystemTime,
    /// How long it lasted.
    pub duration: Duration,
    /// Its trace id.
    pub trace_id: TraceId,
    /// Its span id.
    pub span_id: SpanId,
    /// Its parent's span id, local or remote, when it had one: a server span's parent is the
    /// caller's client span, so readers can nest each service's step under the call that made
    /// it. `None` for a root, and for entries written before parents were kept.
    pub parent_span_id: Option<SpanId>,
}

/// Where a chain was read from.
///
/// ```
/// use service_tracing::request_chain::{ChainSource, RequestChain};
/// # fn show(chain: &RequestChain) {
/// if chain.source() == ChainSource::Local {
///     eprintln!("Redis is unreachable: this process's part of the chain only");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainSource {
    /// Redis, with this process's entries not yet sent: every service sharing it.
    Shared,
    /// This process's store only: no Redis configured, or Redis unreachable.
    Local,
}

/// The ordered chain of one correlation id: every entry found, ordered by start time (a call
/// before the request it called when both start at once), each span once.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use service_tracing::request_chain::{ChainKind, ChainSource, RequestChains};
/// use tower::ServiceExt as _;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let (app, guard) = service_tracing::ServiceTracing::builder("shop")
///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
///     .request_chains(RequestChains::new())
///     .init(Router::new().route("/orders/{id}", get(|| async { "ok" })))?;
/// let request = http::Request::get("/orders/7")
///     .header("x-correlation-id", "order-7")
///     .body(axum::body::Body::empty())?;
/// runtime.block_on(async {
///     let response = app.oneshot(request).await?;
///     // The server span ends with the body.
///     http_body_util::BodyExt::collect(response.into_body()).await?;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
///
/// let chain = guard.request_chain("order-7").expect("chains are on");
/// assert_eq!(chain.source(), ChainSource::Local); // no Redis configured
/// assert_eq!(chain.len(), 1);
/// assert_eq!(chain.entries()[0].kind, ChainKind::Server);
/// assert_eq!(chain.entries()[0].operation, "GET /orders/{id}");
/// assert!(chain.to_json().contains("\"correlation_id\":\"order-7\""));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RequestChain {
    id: String,
    entries: Vec<ChainEntry>,
    source: ChainSource,
}

impl RequestChain {
    /// `entries` of `id` ordered, each span once.
    pub(crate) fn new(id: &str, mut entries: Vec<ChainEntry>, source: ChainSource) -> Self {
        entries.sort_by(|a, b| {
            (a.start, a.kind.order(), a.span_id.to_bytes()).cmp(&(
                b.start,
                b.kind.order(),
                b.span_id.to_bytes(),
            ))
        });
        entries.dedup_by(|a, b| a.trace_id == b.trace_id && a.span_id == b.span_id);
        Self {
            id: id.to_owned(),
            entries,
            source,
        }
    }

    /// The correlation id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing carried the id (or its chain expired).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where it was read from.
    pub fn source(&self) -> ChainSource {
        self.source
    }

    /// The chain as JSON: `correlation_id`, `source` (`shared` or `local`) and `entries`, each
    /// with `service`, `instance`, `operation`, `kind`, `status`, `http_status` (or null),
    /// `start_unix_nanos`, `duration_micros`, `trace_id`, `span_id` and `parent_span_id` (or
    /// null).
    ///
    /// ```
    /// # fn show(chain: &service_tracing::request_chain::RequestChain) {
    /// let json: serde_json::Value = serde_json::from_str(&chain.to_json()).unwrap();
    /// assert!(json["entries"].is_array());
    /// # }
    /// ```
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Chain<'a> {
            correlation_id: &'a str,
            source: &'static str,
            entries: Vec<Shown<'a>>,
        }
        #[derive(Serialize)]
        struct Shown<'a> {
            service: &'a str,
            instance: &'a str,
            operation: &'a str,
            kind: &'static str,
            status: &'static str,
            http_status: Option<u16>,
            start_unix_nanos: u64,
            duration_micros: u64,
            trace_id: String,
            span_id: String,
            parent_span_id: Option<String>,
        }
        let chain = Chain {
            correlation_id: &self.id,
            source: match self.source {
                ChainSource::Shared => "shared",
                ChainSource::Local => "local",
            },
            entries: self
                .entries
                .iter()
                .map(|e| Shown {
                    service: &e.service,
                    instance: &e.instance,
                    operation: &e.operation,
                    kind: e.kind.as_str(),
                    status: e.status.as_str(),
                    http_status: e.http_status,
                    start_unix_nanos: unix_nanos(e.start),
                    duration_micros: u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
                    trace_id: e.trace_id.to_string(),
                    span_id: e.span_id.to_string(),
                    parent_span_id: e.parent_span_id.map(|p| p.to_string()),
                })
                .collect(),
        };
        serde_json::to_string(&chain).unwrap_or_default()
    }
}

pub(crate) fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One entry as stored in Redis: short keys, times in nanoseconds, ids in hex.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    s: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    i: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    o: std::borrow::Cow<'a, str>,
    k: &'a str,
    st: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<u16>,
    t: u64,
    d: u64,
    tr: &'a str,
    sp: &'a str,
    /// The parent span id; absent for a root (and in entries of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<&'a str>,
}

impl ChainEntry {
    /// The compact JSON kept in Redis.
    pub(crate) fn to_wire(&self) -> String {
        let trace = self.trace_id.to_string();
        let span = self.span_id.to_string();
        let parent = self.parent_span_id.map(|p| p.to_string());
        let wire = Wire {
            s: self.service.as_str().into(),
            i: self.instance.as_str().into(),
            o: self.operation.as_str().into(),
            k: self.kind.as_str(),
            st: self.status.as_str(),
            c: self.http_status,
            t: unix_nanos(self.start),
            d: u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX),
            tr: &trace,
            sp: &span,
            p: parent.as_deref(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// An entry read back from Redis; `None` for anything that is not one (another writer's
    /// data, a newer format).
    pub(crate) fn from_wire(bytes: &[u8]) -> Option<Self> {
        let wire: Wire<'_> = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            service: wire.s.into_owned(),
            instance: wire.i.into_owned(),
            operation: wire.o.into_owned(),
            kind: ChainKind::parse(wire.k)?,
            status: ChainStatus::parse(wire.st)?,
            http_status: wire.c,
            start: UNIX_EPOCH + Duration::from_nanos(wire.t),
            duration: Duration::from_nanos(wire.d),
            trace_id: TraceId::from_hex(wire.tr).ok()?,
            span_id: SpanId::from_hex(wire.sp).ok()?,
            // A parent that does not parse is left out: the entry is still a step.
            parent_span_id: wire
                .p
                .and_then(|p| SpanId::from_hex(p).ok())
                .filter(|p| *p != SpanId::INVALID),
        })
    }
}
