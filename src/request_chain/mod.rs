//! Request chains (feature `redis`): for each correlation id, the ordered list of the server
//! spans, outbound calls, messages sent and messages processed that carried it, across every service that shares
//! one Redis.
//!
//! # What makes an entry
//!
//! Entries are read off the spans the service records, as they end: the layer's server spans,
//! and the `CLIENT`, `PRODUCER` and `CONSUMER` spans of the SDK's provider (the traced client,
//! the RabbitMQ and Kafka helpers' send and process spans, and any other helper whose spans
//! carry a `correlation.id` attribute). Each entry holds the
//! service, its `service.instance.id`, the operation (`{METHOD} {route}` for a server span,
//! `{METHOD} {server.address}` for a client span, else the span name: the operations of error
//! tracking and profiling), the kind, the span status and HTTP status code, start, duration,
//! trace id, span id and parent span id. So a request the sampler dropped adds nothing. A message sent is a step
//! of its own, so a publish the broker refused, or a message nobody processed, shows in the
//! chain as the last step there is; `INTERNAL` spans are not steps.
//!
//! # Cost on the request path
//!
//! Ending a span pushes one fixed-size record (the correlation id is copied inline, at most
//! 128 bytes) into its thread's batch: a per-thread lookup and an uncontended lock, no
//! allocation for a server span, no shared write, no I/O. A background thread (its own, with
//! a no-op `tracing` dispatcher) takes every thread's batch every
//! [`flush_interval`](RequestChains::flush_interval) (default 100 ms, or sooner when a batch
//! fills up), keeps a bounded local store that answers reads, and appends to Redis in one
//! `MULTI`/`EXEC` per round: per correlation id `RPUSH` of the new entries (compact JSON),
//! `LTRIM` to the newest [`max_entries`](RequestChains::max_entries) and `PEXPIRE` with the
//! [`ttl`](RequestChains::ttl). A batch of a thread holds at most 1,024 records; past that
//! they are dropped and counted ([`ChainStats`]).
//!
//! # When Redis is down
//!
//! Requests do not notice: only the background thread talks to Redis, with the timeouts and
//! backoff of error sharing (connect and each read or write 500 ms, retries from the flush
//! interval doubling up to 5 s). Entries stay in the local store, which answers
//! [`TracingGuard::request_chain`](crate::TracingGuard::request_chain) with this process's
//! entries ([`ChainSource::Local`]), and are sent once Redis answers again. The local store is
//! bounded ([`local_entries`](RequestChains::local_entries)): past it, the ids first seen
//! longest ago are dropped, and their entries Redis never got are counted.
//!
//! # Keys
//!
//! `{prefix}:{correlation id}` (default prefix `service-tracing:chains`), shared by every
//! service: a Redis list of JSON entries. Correlation ids are validated by the server layer
//! and the message helpers before they reach a span (1 to 128 bytes of the configured
//! charset, `service_tracing_middleware::correlation`); a `correlation.id` attribute of any
//! other span is checked here, so a key is at most 128 bytes past the prefix and holds no
//! control byte.
//!
//! ```
//! use std::time::Duration;
//! use service_tracing::request_chain::RequestChains;
//!
//! let chains = RequestChains::new()
//!     .max_entries(128)
//!     .ttl(Duration::from_secs(30 * 60))
//!     .local_entries(20_000)
//!     .prefix("shop:chains");
//! assert_eq!(chains.max_entries_value(), 128);
//! ```

mod entry;
mod record;
mod store;
mod sync;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use entry::{ChainEntry, ChainKind, ChainSource, ChainStatus, RequestChain};
pub use record::ChainStats;
pub(crate) use record::Chains;

/// The default key prefix.
///
/// ```
/// assert_eq!(service_tracing::request_chain::DEFAULT_PREFIX, "service-tracing:chains");
/// ```
pub const DEFAULT_PREFIX: &str = "service-tracing:chains";

const DEFAULT_MAX_ENTRIES: usize = 256;
const MAX_MAX_ENTRIES: usize = 10_000;
const DEFAULT_TTL: Duration = Duration::from_secs(3_600);
const DEFAULT_LOCAL_ENTRIES: usize = 50_000;
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The settings of request chains, for
/// [`ServiceTracing::request_chains`](crate::ServiceTracing::request_chains). The Redis they
/// are shared through is error sharing's
/// ([`error_redis_url`](crate::ServiceTracing::error_redis_url) or
/// `SERVICE_TRACING_ERRORS_REDIS_URL`); without one, chains are local to the process.
///
/// ```
/// use std::time::Duration;
/// let chains = service_tracing::request_chain::RequestChains::new()
///     .max_entries(64)
///     .ttl(Duration::from_secs(600))
///     .flush_interval(Duration::from_millis(250));
/// assert_eq!(chains.ttl_value(), Duration::from_secs(600));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use]
pub struct RequestChains {
    pub(crate) max_entries: usize,
    pub(crate) ttl: Duration,
    pub(crate) local_entries: usize,
    pub(crate) prefix: String,
    pub(crate) flush_interval: Duration,
}

impl Default for RequestChains {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestChains {
    /// The defaults: 256 entries per correlation id, a TTL of 1 h, 50,000 entries kept
    /// locally, prefix `service-tracing:chains`, a flush every 100 ms.
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new();
    /// assert_eq!(chains.max_entries_value(), 256);
    /// ```
    pub fn new() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            ttl: DEFAULT_TTL,
            local_entries: DEFAULT_LOCAL_ENTRIES,
            prefix: DEFAULT_PREFIX.to_owned(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }

    /// How many entries one correlation id keeps, the newest (default 256, 1 to 10,000).
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new().max_entries(0);
    /// assert_eq!(chains.max_entries_value(), 1);
    /// ```
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.clamp(1, MAX_MAX_ENTRIES);
        self
    }

    /// How long a chain lives after its last entry (default 1 h, at least 1 s): the Redis
    /// key's TTL, and the local store's.
    ///
    /// ```
    /// use std::time::Duration;
    /// let chains = service_tracing::request_chain::RequestChains::new().ttl(Duration::ZERO);
    /// assert_eq!(chains.ttl_value(), Duration::from_secs(1));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How many entries the local store keeps in all (default 50,000, at least
    /// [`max_entries`](Self::max_entries)): what answers reads while Redis is down and waits
    /// to be sent. About 200 bytes each.
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new().local_entries(1_000);
    /// ```
    pub fn local_entries(mut self, entries: usize) -> Self {
        self.local_entries = entries;
        self
    }

    /// The prefix of every key (default `service-tracing:chains`); every service whose chains
    /// should be read together uses the same one.
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new().prefix("shop:chains");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often the background thread takes the request threads' batches and appends to
    /// Redis (default 100 ms, 10 ms to 10 s).
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new()
    ///     .flush_interval(std::time::Duration::from_secs(1));
    /// ```
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.clamp(Duration::from_millis(10), Duration::from_secs(10));
        self
    }

    /// The entries kept per correlation id.
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new().max_entries(5);
    /// assert_eq!(chains.max_entries_value(), 5);
    /// ```
    pub fn max_entries_value(&self) -> usize {
        self.max_entries
    }

    /// A chain's time to live.
    ///
    /// ```
    /// let chains = service_tracing::request_chain::RequestChains::new();
    /// assert_eq!(chains.ttl_value(), std::time::Duration::from_secs(3_600));
    /// ```
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// The local store's bound, never below the entries of one id.
    pub(crate) fn local_bound(&self) -> usize {
        self.local_entries.max(self.max_entries)
    }
}

/// What `benches/chains.rs` measures: the request thread's push of a server span and of a
/// client span, with the background thread's work run apart (untimed). Not part of the API.
#[doc(hidden)]
pub mod __bench {
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

    use super::record::{ChainHook, Chains};
    use super::sync::Worker;
    use super::RequestChains;
    use crate::chain::SpanHook as _;
    use crate::server_span::ServerRecord;

    /// A hook of its own, with a server record and a client span to end again and again.
    pub struct Recorder {
        chains: Chains,
        worker: Worker,
        hook: ChainHook,
        server: ServerRecord,
        client: SpanData,
    }

    impl std::fmt::Debug for Recorder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Recorder").finish_non_exhaustive()
        }
    }

    fn span(kind: SpanKind, name: &'static str, attributes: Vec<KeyValue>) -> SpanData {
        let start = std::time::SystemTime::now();
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.into(),
            start_time: start,
            end_time: start + std::time::Duration::from_millis(3),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("bench").build(),
        }
    }

    impl Recorder {
        /// A recorder with the default settings and no Redis.
        pub fn new() -> Self {
            let (chains, worker) = Chains::unstarted(RequestChains::new(), None);
            let resource = opentelemetry_sdk::Resource::builder_empty()
                .with_service_name("bench")
                .build();
            let hook = chains.hook(&resource);
            let req = http::Request::get("/orders/42")
                .header("x-correlation-id", "0190a5c4-6a5e-7cc2-9b1d-2f0c1e2d3a4b")
                .body(())
                .unwrap_or_default();
            let server = ServerRecord {
                span: span(SpanKind::Server, "GET /orders/{id}", Vec::new()),
                request: Some(service_tracing_middleware::test_server_request(&req)),
                redacted: Vec::new(),
                status_code: Some(200),
            };
            let client = span(
                SpanKind::Client,
                "GET",
                vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("server.address", "inventory"),
                    KeyValue::new("http.response.status_code", 200),
                    KeyValue::new("correlation.id", "0190a5c4-6a5e-7cc2-9b1d-2f0c1e2d3a4b"),
                ],
            );
            Self {
                chains,
                worker,
                hook,
                server,
                client,
            }
        }

        /// Ends the server span once more: one push.
        pub fn end_server(&mut self) {
            self.hook.on_end_record(&mut self.server);
        }

        /// Ends the client span once more: one push.
        pub fn end_client(&mut self) {
            self.hook.on_end(&mut self.client);
        }

        /// The background thread's work for what was pushed (take the batches into the store).
        pub fn drain(&mut self) {
            self.worker.take_batches(self.chains.shared());
        }

        /// Entries taken, entries dropped.
        pub fn counts(&self) -> (u64, u64) {
            let stats = self.chains.stats();
            (stats.recorded, stats.dropped)
        }
    }

    impl Default for Recorder {
        fn default() -> Self {
            Self::new()
        }
    }
}
