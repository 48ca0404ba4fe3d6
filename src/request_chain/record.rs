//! The request-thread side: the hook in front of the span processors that turns an ended span
//! into one fixed-size record in its thread's batch, and the handle readers use.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arrayvec::ArrayString;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use service_tracing_middleware::correlation::MAX_LEN;

use super::entry::{ChainKind, ChainSource, ChainStatus, RequestChain};
use super::sync::{Msg, Worker};
use super::RequestChains;
use crate::chain::SpanHook;
use crate::per_thread::PerThread;
use crate::server_span::ServerRecord;

/// Records a thread's batch holds at most; past that they are dropped and counted.
pub(super) const THREAD_BATCH: usize = 1_024;
/// At this many records a thread wakes the background thread, so a busy thread's batch is
/// taken before it fills.
const WAKE_AT: usize = 256;
/// Messages waiting for the background thread at most (wake-ups, reads, flushes).
const MAX_MESSAGES: usize = 64;
/// A read or flush waits at most this long for the background thread.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

/// One ended span, as the request thread leaves it for the background thread.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) id: ArrayString<MAX_LEN>,
    /// Index of the service in [`Shared::services`].
    pub(super) service: u16,
    pub(super) kind: ChainKind,
    pub(super) status: ChainStatus,
    pub(super) http_status: Option<u16>,
    pub(super) operation: Cow<'static, str>,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    /// `SpanId::INVALID` for a root.
    pub(super) parent_id: SpanId,
}

/// What the figures of request chains count so far.
///
/// ```
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let (app, guard) = service_tracing::ServiceTracing::builder("svc")
///     .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
///     .request_chains(service_tracing::request_chain::RequestChains::new())
///     .init(axum::Router::<()>::new())?;
/// let stats = guard.request_chain_stats().expect("chains are on");
/// assert_eq!(stats.dropped, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainStats {
    /// Entries taken from the request threads.
    pub recorded: u64,
    /// Entries a request thread dropped because its batch was full.
    pub dropped: u64,
    /// Entries Redis accepted (a batch resent after a lost reply counts again).
    pub sent: u64,
    /// Entries the local store let go (bound or TTL) before Redis had them.
    pub evicted_unsent: u64,
    /// Redis commands sent, `MULTI` and `EXEC` included.
    pub redis_commands: u64,
    /// Whether the last exchange with Redis succeeded (`false` without a Redis).
    pub shared: bool,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) recorded: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) evicted_unsent: AtomicU64,
    pub(super) redis_commands: AtomicU64,
    pub(super) shared: AtomicBool,
}

/// What the hooks, the handle and the background thread share.
pub(super) struct Shared {
    pub(super) config: RequestChains,
    /// (`service.name`, `service.instance.id`) of each service with a hook.
    pub(super) services: Mutex<Vec<(Arc<str>, Arc<str>)>>,
    pub(super) pending: PerThread<Vec<Pending>>,
    pub(super) counters: Counters,
    /// Set by the thread that sends a wake-up, cleared when the batches are taken: at most
    /// one wake-up waits, so reads and flushes always find room.
    pub(super) woken: AtomicBool,
    wake: SyncSender<Msg>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn push(&self, record: Pending) {
        let len = self.pending.with_mine(|batch| {
            if batch.len() >= THREAD_BATCH {
                return None;
            }
            batch.push(record);
            Some(batch.len())
        });
        match len {
            None => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(WAKE_AT) if !self.woken.swap(true, Ordering::Relaxed) => {
                let _ = self.wake.try_send(Msg::Wake);
            }
            Some(_) => {}
        }
    }
}

/// The handle set-up and the guard keep: hooks for each service's processor chain, reads,
/// flushes and figures.
#[derive(Clone)]
pub(crate) struct Chains {
    shared: Arc<Shared>,
}

impl fmt::Debug for Chains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chains")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Chains {
    /// Starts the background thread; with `redis`, chains are shared through it.
    pub(crate) fn start(config: RequestChains, redis: Option<crate::errors::RedisSharing>) -> Self {
        let (chains, worker) = Self::unstarted(config, redis);
        // Quiet: Redis traffic must never feed the tracing bridge.
        let weak = Arc::downgrade(&chains.shared);
        let started =
            crate::runtime::spawn_quiet("service-tracing-chains", move || worker.run(&weak));
        if let Err(e) = started {
            eprintln!("service-tracing: request chains are off: cannot start their thread: {e}");
        }
        chains
    }

    /// The handle and the background thread's work, not started: tests and the benchmark
    /// drive the work themselves.
    pub(super) fn unstarted(
        config: RequestChains,
        redis: Option<crate::errors::RedisSharing>,
    ) -> (Self, Worker) {
        let (wake, messages) = mpsc::sync_channel(MAX_MESSAGES);
        let shared = Arc::new(Shared {
            config,
            services: Mutex::new(Vec::new()),
            pending: PerThread::default(),
            counters: Counters::default(),
            woken: AtomicBool::new(false),
            wake,
        });
        let worker = Worker::new(&shared, messages, redis);
        (Self { shared }, worker)
    }

    /// What the hooks and the background thread share.
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The hook for the processor chain of the service `resource` describes.
    pub(crate) fn hook(&self, resource: &Resource) -> ChainHook {
        let text = |key: &'static str| -> Arc<str> {
            resource
                .get(&Key::from_static_str(key))
                .map(|v| v.as_str().into_owned())
                .unwrap_or_default()
                .into()
        };
        let mut services = lock(&self.shared.services);
        let entry = (text("service.name"), text("service.instance.id"));
        let index = match services.iter().position(|s| *s == entry) {
            Some(index) => index,
            None => {
                services.push(entry);
                services.len() - 1
            }
        };
        ChainHook {
            shared: self.shared.clone(),
            service: u16::try_from(index).unwrap_or(u16::MAX),
        }
    }

    /// What the counters say now.
    pub(crate) fn stats(&self) -> ChainStats {
        let c = &self.shared.counters;
        ChainStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            evicted_unsent: c.evicted_unsent.load(Ordering::Relaxed),
            redis_commands: c.redis_commands.load(Ordering::Relaxed),
            shared: c.shared.load(Ordering::Relaxed),
        }
    }

    /// The chain of `id`, waiting for the background thread (bounded).
    pub(crate) fn read(&self, id: &str) -> RequestChain {
        let (tx, rx) = mpsc::sync_channel(1);
        let reply = Box::new(move |chain: RequestChain| {
            let _ = tx.try_send(chain);
        });
        if self.send(Msg::Read(id.to_owned(), reply)) {
            if let Ok(chain) = rx.recv_timeout(ANSWER_BOUND) {
                return chain;
            }
        }
        RequestChain::new(id, Vec::new(), ChainSource::Local)
    }

    /// [`read`](Self::read) without blocking the caller's thread.
    pub(crate) fn read_async(
        &self,
        id: &str,
    ) -> impl Future<Output = RequestChain> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = Box::new(move |chain: RequestChain| {
            let _ = tx.send(chain);
        });
        let sent = self.send(Msg::Read(id.to_owned(), reply));
        let id = id.to_owned();
        async move {
            let empty = || RequestChain::new(&id, Vec::new(), ChainSource::Local);
            if !sent {
                return empty();
            }
            rx.await.unwrap_or_else(|_| empty())
        }
    }

    /// Stops the background thread once it has sent what Redis lacks (the guard's shutdown;
    /// the hooks may outlive it in a global provider, and nothing reads chains after).
    pub(crate) fn stop(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.send(Msg::Stop(tx)) {
            let _ = rx.recv_timeout(ANSWER_BOUND);
        }
    }

    /// Takes every thread's batch and sends what Redis lacks, waiting (bounded) until done.
    pub(crate) fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.send(Msg::Flush(tx)) {
            let _ = rx.recv_timeout(ANSWER_BOUND);
        }
    }

    fn send(&self, msg: Msg) -> bool {
        match self.shared.wake.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// In front of a service's span processors: turns every ended server, client and consumer
/// span that carries a correlation id into a record of its thread's batch.
pub(crate) struct ChainHook {
    shared: Arc<Shared>,
    service: u16,
}

impl fmt::Debug for ChainHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainHook")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

pub(crate) use crate::attributes::plausible_id;

fn status_of(status: &Status) -> ChainStatus {
    match status {
        Status::Unset => ChainStatus::Unset,
        Status::Ok => ChainStatus::Ok,
        Status::Error { .. } => ChainStatus::Error,
    }
}

/// What an entry reads among a span's attributes, found in one pass.
#[derive(Default)]
struct Found<'a> {
    id: Option<&'a str>,
    method: Option<&'a str>,
    address: Option<&'a str>,
    code: Option<u16>,
}

impl<'a> Found<'a> {
    fn in_span(span: &'a SpanData) -> Self {
        let mut found = Found::default();
        for kv in &span.attributes {
            let text = match &kv.value {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            };
            match kv.key.as_str() {
                // The first of a repeated key, as `attributes::attr` reads it.
                service_tracing_middleware::semconv::CORRELATION_ID if found.id.is_none() => {
                    found.id = text;
                }
                "http.request.method" if found.method.is_none() => found.method = text,
                "server.address" if found.address.is_none() => found.address = text,
                "http.response.status_code" if found.code.is_none() => {
                    found.code = http_status(Some(&kv.value));
                }
                _ => {}
            }
        }
        found
    }
}

fn http_status(value: Option<&Value>) -> Option<u16> {
    match value {
        Some(Value::I64(code)) => u16::try_from(*code).ok(),
        _ => None,
    }
}

impl ChainHook {
    fn record_with(
        &self,
        id: &str,
        span: &SpanData,
        kind: ChainKind,
        operation: Cow<'static, str>,
        code: Option<u16>,
    ) {
        // Longer than any valid id: left out (`ArrayString` holds at most `MAX_LEN` bytes).
        let Ok(id) = ArrayString::from(id) else {
            return;
        };
        let code = code.or_else(|| {
            http_status(
                span.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "http.response.status_code")
                    .map(|kv| &kv.value),
            )
        });
        self.shared.push(Pending {
            id,
            service: self.service,
            kind,
            status: status_of(&span.status),
            http_status: code,
            operation,
            start: span.start_time,
            end: span.end_time,
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
            parent_id: span.parent_span_id,
        });
    }
}

impl SpanHook for ChainHook {
    fn on_end(&self, span: &mut SpanData) {
        let kind = match span.span_kind {
            SpanKind::Server => ChainKind::Server,
            SpanKind::Client => ChainKind::Client,
            SpanKind::Consumer => ChainKind::Consumer,
            SpanKind::Producer => ChainKind::Producer,
            SpanKind::Internal => return,
        };
        // One pass over the attributes finds what an entry needs.
        let found = Found::in_span(span);
        let Some(id) = found.id else {
            return;
        };
        // An attribute anyone may set: checked.
        if !plausible_id(id) {
            return;
        }
        let operation = match (kind, found.method, found.address) {
            // `{METHOD} {server.address}`, as `operation::operation_name` names it, in one
            // allocation.
            (ChainKind::Client, Some(method), Some(address)) => {
                let method = crate::redact::truncate(method, crate::attributes::MAX_FIELD);
                let address = crate::redact::truncate(address, crate::attributes::MAX_FIELD);
                let mut name = String::with_capacity(method.len() + 1 + address.len());
                name.push_str(method);
                name.push(' ');
                name.push_str(address);
                Cow::Owned(name)
            }
            _ => crate::operation::operation_name_of(span),
        };
        self.record_with(id, span, kind, operation, found.code);
    }

    /// The layer validated the correlation id (`correlation::resolve_with`, against its
    /// charset; a refused one was replaced by a generated id): it is used as it is.
    fn on_end_record(&self, record: &mut ServerRecord) {
        let Some(request) = &record.request else {
            return;
        };
        let operation = crate::operation::server_operation_of(
            &record.span.name,
            request.method(),
            request.route(),
        );
        let code = record
            .status_code
            .and_then(|c| u16::try_from(c).ok())
            .or_else(|| {
                http_status(
                    record
                        .span
                        .attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == "http.response.status_code")
                        .map(|kv| &kv.value),
                )
            });
        self.record_with(
            request.correlation_id(),
            &record.span,
            ChainKind::Server,
            operation,
            code,
        );
    }

    fn flush(&self) {
        // The guard flushes chains itself, once for every service.
    }
}
