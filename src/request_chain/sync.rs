//! The background thread: takes the request threads' batches, keeps the local store, appends
//! to Redis in one transaction per round, and answers reads.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use opentelemetry::trace::SpanId;
use redis::{Connection, Pipeline, RedisResult};

use super::entry::{ChainEntry, ChainSource, RequestChain};
use super::record::{lock, plausible_id, Pending, Shared};
use super::store::{Store, Unsent};
use crate::errors::RedisSharing;

/// Correlation ids per transaction.
const IDS_PER_TRANSACTION: usize = 256;
/// Transactions per round at most: the rest waits for the next round.
const TRANSACTIONS_PER_ROUND: usize = 16;
/// Entries read back from Redis per chain at most (the newest).
const MAX_READ: isize = 1_024;

/// What the background thread is asked.
pub(super) enum Msg {
    /// A request thread's batch is filling up.
    Wake,
    /// The chain of an id, handed to the reply.
    Read(String, Box<dyn FnOnce(RequestChain) + Send>),
    /// Take every batch and send what Redis lacks, then answer.
    Flush(SyncSender<()>),
    /// [`Flush`](Msg::Flush), then end the thread.
    Stop(SyncSender<()>),
}

/// The connection to Redis and its backoff: error sharing's rules
/// ([`RedisSharing::connect`]; retries from the flush interval, doubling, at most 5 s).
struct Link {
    config: RedisSharing,
    connection: Option<Connection>,
    interval: Duration,
    backoff: Duration,
    next_attempt: Instant,
}

impl Link {
    /// The connection, made now if none is open and the backoff allows (`forced`: now).
    fn connection(&mut self, forced: bool) -> Option<Connection> {
        if let Some(connection) = self.connection.take() {
            return Some(connection);
        }
        if !forced && Instant::now() < self.next_attempt {
            return None;
        }
        match self.config.connect() {
            Ok(connection) => Some(connection),
            Err(_) => {
                self.failed();
                None
            }
        }
    }

    fn failed(&mut self) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(crate::errors::MAX_REDIS_BACKOFF);
    }

    fn succeeded(&mut self, connection: Connection) {
        self.connection = Some(connection);
        self.backoff = self.interval;
    }
}

/// The background thread's state.
pub(super) struct Worker {
    messages: Receiver<Msg>,
    store: Store,
    /// Emptied batches, swapped in for full ones (so their capacity is reused).
    spares: Vec<Vec<Pending>>,
    interval: Duration,
    prefix: String,
    max_entries: usize,
    ttl: Duration,
    link: Option<Link>,
}

impl Worker {
    pub(super) fn new(
        shared: &Arc<Shared>,
        messages: Receiver<Msg>,
        redis: Option<RedisSharing>,
    ) -> Self {
        let config = &shared.config;
        Self {
            messages,
            store: Store::new(config.max_entries, config.local_bound(), config.ttl),
            spares: Vec::new(),
            interval: config.flush_interval,
            prefix: config.prefix.clone(),
            max_entries: config.max_entries,
            ttl: config.ttl,
            link: redis.map(|config| Link {
                config,
                connection: None,
                interval: shared.config.flush_interval,
                backoff: shared.config.flush_interval,
                next_attempt: Instant::now(),
            }),
        }
    }

    /// Runs until the hooks and the handle are gone.
    pub(super) fn run(mut self, shared: &Weak<Shared>) {
        loop {
            let msg = match self.messages.recv_timeout(self.interval) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            self.take_batches(&shared);
            match msg {
                Some(Msg::Flush(reply)) => {
                    self.push(&shared, true);
                    let _ = reply.try_send(());
                }
                Some(Msg::Stop(reply)) => {
                    self.push(&shared, true);
                    let _ = reply.try_send(());
                    return;
                }
                Some(Msg::Read(id, reply)) => {
                    self.push(&shared, true);
                    reply(self.read(&shared, &id));
                }
                Some(Msg::Wake) | None => self.push(&shared, false),
            }
        }
    }

    /// Entries in the local store, in all.
    #[cfg(test)]
    pub(super) fn stored(&self) -> usize {
        self.store.len()
    }

    /// Moves every thread's batch into the store.
    pub(super) fn take_batches(&mut self, shared: &Shared) {
        shared.woken.store(false, Ordering::Relaxed);
        let mut taken = Vec::new();
        shared.pending.for_each(|batch| {
            if !batch.is_empty() {
                let spare = self.spares.pop().unwrap_or_default();
                taken.push(std::mem::replace(batch, spare));
            }
        });
        let now = Instant::now();
        let mut lost = self.store.expire(now);
        if !taken.is_empty() {
            let services = lock(&shared.services).clone();
            // Threads' batches come in no particular order: by start, so a chain's newest
            // entries are its last (what `LTRIM` keeps).
            let mut round: Vec<Pending> = taken.iter_mut().flat_map(|b| b.drain(..)).collect();
            round.sort_by_key(|p| p.start);
            self.spares.extend(taken);
            let mut recorded = 0;
            for pending in round {
                let (service, instance) = services
                    .get(usize::from(pending.service))
                    .map(|(s, i)| (String::from(&**s), String::from(&**i)))
                    .unwrap_or_default();
                let entry = ChainEntry {
                    service,
                    instance,
                    operation: pending.operation.into_owned(),
                    kind: pending.kind,
                    status: pending.status,
                    http_status: pending.http_status,
                    start: pending.start,
                    duration: pending
                        .end
                        .duration_since(pending.start)
                        .unwrap_or_default(),
                    trace_id: pending.trace_id,
                    span_id: pending.span_id,
                    parent_span_id: (pending.parent_id != SpanId::INVALID)
                        .then_some(pending.parent_id),
                };
                lost += self.store.append(&pending.id, entry, now);
                recorded += 1;
            }
            shared
                .counters
                .recorded
                .fetch_add(recorded, Ordering::Relaxed);
        }
        if lost > 0 {
            shared
                .counters
                .evicted_unsent
                .fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Appends what Redis lacks, a transaction of up to 256 ids at a time; `forced` tries to
    /// connect whatever the backoff says.
    pub(super) fn push(&mut self, shared: &Shared, forced: bool) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if !self.store.has_unsent() && !forced {
            return;
        }
        let Some(mut connection) = link.connection(forced) else {
            shared.counters.shared.store(false, Ordering::Relaxed);
            return;
        };
        for _ in 0..TRANSACTIONS_PER_ROUND {
            let batch = self.store.unsent(IDS_PER_TRANSACTION);
            if batch.is_empty() {
                break;
            }
            let (pipe, commands) = transaction(&self.prefix, self.max_entries, self.ttl, &batch);
            shared
                .counters
                .redis_commands
                .fetch_add(commands, Ordering::Relaxed);
            match pipe.exec(&mut connection) {
                Ok(()) => {
                    let entries: usize = batch.iter().map(|(_, e)| e.len()).sum();
                    shared
                        .counters
                        .sent
                        .fetch_add(entries as u64, Ordering::Relaxed);
                    self.store.sent(&batch);
                }
                Err(_) => {
                    // Kept unsent: sent again once Redis answers (a transaction whose reply
                    // was lost may have applied: readers drop the repeated spans).
                    link.failed();
                    shared.counters.shared.store(false, Ordering::Relaxed);
                    return;
                }
            }
        }
        link.succeeded(connection);
        shared.counters.shared.store(true, Ordering::Relaxed);
    }

    /// The chain of `id`: Redis's list merged with this process's entries, or these alone
    /// when Redis cannot be read.
    pub(super) fn read(&mut self, shared: &Shared, id: &str) -> RequestChain {
        self.take_batches(shared);
        if !plausible_id(id) {
            return RequestChain::new(id, Vec::new(), ChainSource::Local);
        }
        let mut entries = self.store.chain(id);
        let mut source = ChainSource::Local;
        if let Some(link) = self.link.as_mut() {
            if let Some(mut connection) = link.connection(false) {
                let key = key(&self.prefix, id);
                shared
                    .counters
                    .redis_commands
                    .fetch_add(1, Ordering::Relaxed);
                let read: RedisResult<Vec<Vec<u8>>> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(-MAX_READ)
                    .arg(-1)
                    .query(&mut connection);
                match read {
                    Ok(list) => {
                        entries.extend(list.iter().filter_map(|e| ChainEntry::from_wire(e)));
                        source = ChainSource::Shared;
                        link.succeeded(connection);
                    }
                    Err(_) => {
                        link.failed();
                        shared.counters.shared.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        RequestChain::new(id, entries, source)
    }
}

fn key(prefix: &str, id: &str) -> String {
    format!("{prefix}:{id}")
}

/// One `MULTI`/`EXEC` for `batch`: per id `RPUSH` of its new entries, `LTRIM` to the newest
/// `max_entries`, `PEXPIRE` with the TTL. With the number of commands.
pub(super) fn transaction(
    prefix: &str,
    max_entries: usize,
    ttl: Duration,
    batch: &Unsent,
) -> (Pipeline, u64) {
    let keep = i64::try_from(max_entries).unwrap_or(i64::MAX);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (id, entries) in batch {
        let key = key(prefix, id);
        let values: Vec<String> = entries.iter().map(ChainEntry::to_wire).collect();
        pipe.cmd("RPUSH").arg(&key).arg(values).ignore();
        pipe.cmd("LTRIM").arg(&key).arg(-keep).arg(-1).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
    }
    (pipe, 3 * batch.len() as u64 + 2)
}
