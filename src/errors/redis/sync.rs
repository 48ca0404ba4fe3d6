//! The sync thread's work: push what changed in one transaction applied exactly once, pull
//! the fleet view back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::TraceId;
use redis::{Connection, Pipeline, RedisResult, Value};

use super::super::health::ErrorStorageHealth;
use super::super::store::{unix_ms, ErrorGroup, GroupParts};
use super::super::tracking::Tracker;
use super::super::{Category, Severity, DEFAULT_MAX_GROUPS};
use super::sharing::State;
use super::view::{FleetRates, FleetView};
use super::{lock, RedisSharing};
#[cfg(doc)]
use crate::window::Window;

use super::MAX_BACKOFF;
/// Operations read back from the rate buckets at most (each replica writes at most 513).
const MAX_FLEET_OPERATIONS: usize = 1_024;
/// Transactions of unknown outcome at most, before pushing waits for one to be known.
const MAX_UNCERTAIN: usize = 4;
/// The rate rings as `rates.rs` keeps them, in [`Window::ALL`] order: (bucket width in
/// seconds, buckets per window).
const RINGS: [(u64, u64); 3] = [(10, 6), (60, 5), (300, 12)];

/// What this replica last pushed of a group.
#[derive(Clone, Debug, Default)]
pub(super) struct Pushed {
    pub(super) count: u64,
    pub(super) last_trace: Option<TraceId>,
    pub(super) last_correlation: Option<String>,
}

/// One group's changes since its last push.
#[derive(Debug)]
pub(super) struct GroupDelta {
    pub(super) fingerprint: u64,
    pub(super) added: u64,
    pub(super) pushed: Pushed,
    pub(super) error_type: String,
    pub(super) message: String,
    pub(super) severity: Severity,
    pub(super) category: Category,
    pub(super) operations: Vec<String>,
    pub(super) status_codes: Vec<u16>,
    pub(super) first_seen_ms: u64,
    pub(super) last_seen_ms: u64,
    pub(super) trace_ids: Vec<TraceId>,
    pub(super) correlation_ids: Vec<String>,
}

/// Everything to push in one transaction, and what will have been pushed once it commits.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) groups: Vec<GroupDelta>,
    pub(super) total: (u64, u64),
    /// (operation, requests added, errors added, requests in all, errors in all).
    pub(super) rates: Vec<(String, u64, u64, u64, u64)>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.total.0 == 0 && self.rates.is_empty()
    }
}

/// The entries of `samples` after `last` (all of them when `last` is not among them).
pub(super) fn after<T: PartialEq + Clone>(samples: &[T], last: Option<&T>) -> Vec<T> {
    let start = last
        .and_then(|last| samples.iter().rposition(|s| s == last))
        .map_or(0, |i| i + 1);
    samples[start..].to_vec()
}

/// The key names under a prefix.
#[derive(Debug)]
pub(super) struct Keys(String);

impl Keys {
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.0)
    }

    pub(super) fn of_group(&self, kind: &str, fingerprint: u64) -> String {
        format!("{}:{kind}:{fingerprint:016x}", self.0)
    }

    pub(super) fn rates(&self, width: u64, bucket: u64) -> String {
        format!("{}:rates:{width}:{bucket}", self.0)
    }
}

/// The sync thread's own state: the connection and what was pushed.
pub(super) struct Syncer {
    pub(super) config: RedisSharing,
    pub(super) keys: Keys,
    pub(super) state: Arc<State>,
    pub(super) connection: Option<Connection>,
    /// The epoch of the Redis data this replica's pushes went into.
    pub(super) epoch: Option<String>,
    pub(super) pushed: HashMap<u64, Pushed>,
    pub(super) pushed_total: u64,
    pub(super) pushed_rates: HashMap<String, (u64, u64)>,
    /// Set when Redis lost its data: the next push takes the rates counted so far as pushed.
    pub(super) skip_rate_history: bool,
    /// This replica's name in the `applied:{replica}` marker of its transactions.
    pub(super) replica: String,
    /// The number of the last transaction sent.
    pub(super) seq: u64,
    /// Transactions sent whose outcome is unknown (their reply was lost); at most one of
    /// them is applied.
    pub(super) uncertain: Vec<(u64, Batch)>,
    pub(super) backoff: Duration,
    pub(super) next_attempt: Instant,
}

impl Syncer {
    pub(super) fn new(config: RedisSharing, state: Arc<State>) -> Self {
        Self {
            keys: Keys(config.prefix.clone()),
            backoff: config.interval,
            config,
            state,
            connection: None,
            epoch: None,
            pushed: HashMap::new(),
            pushed_total: 0,
            pushed_rates: HashMap::new(),
            skip_rate_history: false,
            replica: replica_name(),
            seq: 0,
            uncertain: Vec::new(),
            next_attempt: Instant::now(),
        }
    }

    /// One sync: connect if need be (`forced` skips the backoff), push, pull.
    pub(super) fn sync(&mut self, tracker: &Tracker, forced: bool) -> ErrorStorageHealth {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None if !forced && Instant::now() < self.next_attempt => {
                return lock(&self.state.health).clone();
            }
            None => match self.connect() {
                Ok(connection) => connection,
                Err(e) => return self.failed(&e),
            },
        };
        let mut connection = connection;
        match self.exchange(&mut connection, tracker) {
            Ok(view) => {
                self.connection = Some(connection);
                self.backoff = self.config.interval;
                *lock(&self.state.view) = Some(view);
                let mut health = lock(&self.state.health);
                *health = ErrorStorageHealth::Shared;
                health.clone()
            }
            Err(e) => self.failed(&e),
        }
    }

    pub(super) fn connect(&self) -> RedisResult<Connection> {
        self.config.connect()
    }

    pub(super) fn failed(&mut self, error: &redis::RedisError) -> ErrorStorageHealth {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let mut health = lock(&self.state.health);
        let since = match &*health {
            ErrorStorageHealth::Degraded { since, .. } => *since,
            _ => SystemTime::now(),
        };
        *health = ErrorStorageHealth::Degraded {
            since,
            last_error: error.to_string(),
        };
        health.clone()
    }

    pub(super) fn exchange(
        &mut self,
        con: &mut Connection,
        tracker: &Tracker,
    ) -> RedisResult<FleetView> {
        self.check_epoch(con)?;
        self.push(con, tracker)?;
        self.pull(con)
    }

    /// Pushes what changed, exactly once. Every transaction `WATCH`es this replica's
    /// `applied:{replica}` marker and sets it to its number, so of the transactions sent
    /// while the marker holds a value, at most one is applied (the others abort), even one
    /// whose reply was lost to a timeout and that Redis runs later. The marker tells which.
    pub(super) fn push(&mut self, con: &mut Connection, tracker: &Tracker) -> RedisResult<()> {
        let marker = self.keys.key(&format!("applied:{}", self.replica));
        redis::cmd("WATCH").arg(&marker).exec(con)?;
        let applied: Option<u64> = redis::cmd("GET").arg(&marker).query(con)?;
        if let Some(i) = self
            .uncertain
            .iter()
            .position(|(seq, _)| Some(*seq) == applied)
        {
            // That one was applied; the others can no longer be.
            let (_, batch) = self.uncertain.swap_remove(i);
            self.uncertain.clear();
            self.commit(batch);
        }
        // With too many outcomes unknown, a transaction that only sets the marker settles
        // them (none of them was applied if it is); the counts follow at the next sync.
        let batch = (self.uncertain.len() < MAX_UNCERTAIN)
            .then(|| self.collect(tracker))
            .filter(|batch| !batch.is_empty());
        if batch.is_none() && self.uncertain.is_empty() {
            return redis::cmd("UNWATCH").exec(con);
        }
        self.seq += 1;
        let seq = self.seq;
        let empty = Batch::default();
        match self
            .transaction(batch.as_ref().unwrap_or(&empty), seq)
            .cmd("GET")
            .arg(&marker)
            .query::<Option<(u64,)>>(con)
        {
            Ok(Some(_)) => {
                // Applied: every transaction sent before it will abort.
                self.uncertain.clear();
                if let Some(batch) = batch {
                    self.commit(batch);
                }
                Ok(())
            }
            // Aborted: one sent earlier was applied meanwhile; the next sync sees which.
            Ok(None) => Ok(()),
            Err(e) => {
                self.uncertain.extend(batch.map(|batch| (seq, batch)));
                Err(e)
            }
        }
    }

    /// Finds the epoch of the data in Redis (setting one when there is none); a different
    /// epoch than last time means Redis lost what was pushed: push everything again.
    pub(super) fn check_epoch(&mut self, con: &mut Connection) -> RedisResult<()> {
        let key = self.keys.key("epoch");
        let current: Option<String> = redis::cmd("GET").arg(&key).query(con)?;
        let current = match current {
            Some(epoch) => epoch,
            None => {
                // Fresh each time: a second restart must be told from the first.
                let mine = replica_name();
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&mine)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.config.ttl.as_secs())
                    .query(con)?;
                match set {
                    Some(_) => mine,
                    None => redis::cmd("GET")
                        .arg(&key)
                        .query::<Option<String>>(con)?
                        .unwrap_or(mine),
                }
            }
        };
        self.adopt_epoch(current);
        Ok(())
    }

    /// Redis holds the data of `epoch`. When it is not the epoch of the last push, what was
    /// pushed is gone: the groups and the total are pushed whole again. Route rates are not:
    /// they are windows of at most an hour, and pushing a replica's whole history into the
    /// current buckets would distort them; they start again from what is counted next.
    pub(super) fn adopt_epoch(&mut self, epoch: String) {
        if self.epoch.as_deref() == Some(epoch.as_str()) {
            return;
        }
        self.pushed.clear();
        self.pushed_total = 0;
        // Redis lost them, or will apply them to data that is gone.
        self.uncertain.clear();
        // On first contact everything counted so far is pushed.
        self.skip_rate_history = self.epoch.is_some();
        self.epoch = Some(epoch);
    }

    /// What changed since the last push, read under the store's lock (no I/O under it).
    pub(super) fn collect(&mut self, tracker: &Tracker) -> Batch {
        let mut batch = Batch::default();
        {
            let store = lock(&tracker.store);
            // Evicted groups are forgotten (what they had not pushed is lost with them).
            self.pushed.retain(|fp, _| store.get(*fp).is_some());
            for group in store.iter() {
                let before = self
                    .pushed
                    .get(&group.fingerprint())
                    .cloned()
                    .unwrap_or_default();
                if group.count() <= before.count {
                    continue;
                }
                let trace_ids = after(group.trace_ids(), before.last_trace.as_ref());
                let correlation_ids =
                    after(group.correlation_ids(), before.last_correlation.as_ref());
                batch.groups.push(GroupDelta {
                    fingerprint: group.fingerprint(),
                    added: group.count() - before.count,
                    pushed: Pushed {
                        count: group.count(),
                        last_trace: group.trace_ids().last().copied().or(before.last_trace),
                        last_correlation: group
                            .correlation_ids()
                            .last()
                            .cloned()
                            .or(before.last_correlation),
                    },
                    error_type: group.error_type().to_owned(),
                    message: group.message().to_owned(),
                    severity: group.severity(),
                    category: group.category(),
                    operations: group.operations().to_vec(),
                    status_codes: group.status_codes().to_vec(),
                    first_seen_ms: unix_ms(group.first_seen()),
                    last_seen_ms: unix_ms(group.last_seen()),
                    trace_ids,
                    correlation_ids,
                });
            }
            let total = store.total();
            batch.total = (total.saturating_sub(self.pushed_total), total);
        }
        let skip_history = std::mem::take(&mut self.skip_rate_history);
        for (operation, requests, errors) in tracker.rates.totals() {
            if skip_history {
                self.pushed_rates.insert(operation, (requests, errors));
                continue;
            }
            let (r, e) = self.pushed_rates.get(&operation).copied().unwrap_or((0, 0));
            if requests > r || errors > e {
                batch.rates.push((
                    operation,
                    requests.saturating_sub(r),
                    errors.saturating_sub(e),
                    requests,
                    errors,
                ));
            }
        }
        batch
    }

    /// The batch as one `MULTI`/`EXEC` transaction.
    pub(super) fn transaction(&self, batch: &Batch, seq: u64) -> Pipeline {
        let keys = &self.keys;
        let ttl = self.config.ttl.as_secs();
        let groups = keys.key("groups");
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET")
            .arg(keys.key(&format!("applied:{}", self.replica)))
            .arg(seq)
            .arg("EX")
            .arg(ttl)
            .ignore();
        for delta in &batch.groups {
            self.push_group(&mut pipe, delta, &groups, ttl);
        }
        if !batch.groups.is_empty() {
            let cap = i64::try_from(DEFAULT_MAX_GROUPS).unwrap_or(i64::MAX);
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(&groups)
                .arg(0)
                .arg(-cap - 1)
                .ignore();
            pipe.cmd("EXPIRE").arg(&groups).arg(ttl).ignore();
        }
        let total = keys.key("total");
        pipe.cmd("INCRBY").arg(&total).arg(batch.total.0).ignore();
        pipe.cmd("EXPIRE").arg(&total).arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(keys.key("epoch")).arg(ttl).ignore();
        self.push_rates(&mut pipe, &batch.rates);
        pipe
    }

    /// One group's changes: its count in the sorted set of groups, its fields, first and last
    /// seen, and its new samples, each key with the TTL.
    fn push_group(&self, pipe: &mut Pipeline, d: &GroupDelta, groups: &str, ttl: u64) {
        let keys = &self.keys;
        let member = format!("{:016x}", d.fingerprint);
        pipe.cmd("ZINCRBY")
            .arg(groups)
            .arg(d.added)
            .arg(&member)
            .ignore();
        let group = keys.of_group("group", d.fingerprint);
        pipe.cmd("HSETNX")
            .arg(&group)
            .arg("error_type")
            .arg(&d.error_type)
            .ignore();
        pipe.cmd("HSETNX")
            .arg(&group)
            .arg("message")
            .arg(&d.message)
            .ignore();
        let mut fields = pipe.cmd("HSET");
        fields = fields
            .arg(&group)
            .arg(format!("severity:{}", d.severity.as_str()))
            .arg(d.category.as_str());
        for op in &d.operations {
            fields = fields.arg(format!("operation:{op}")).arg(1);
        }
        for code in &d.status_codes {
            fields = fields.arg(format!("status_code:{code}")).arg(1);
        }
        fields.ignore();
        pipe.cmd("EXPIRE").arg(&group).arg(ttl).ignore();
        let seen = keys.of_group("seen", d.fingerprint);
        pipe.cmd("ZADD")
            .arg(&seen)
            .arg("LT")
            .arg(d.first_seen_ms)
            .arg("first")
            .ignore();
        pipe.cmd("ZADD")
            .arg(&seen)
            .arg("GT")
            .arg(d.last_seen_ms)
            .arg("last")
            .ignore();
        pipe.cmd("EXPIRE").arg(&seen).arg(ttl).ignore();
        let traces: Vec<String> = d.trace_ids.iter().map(ToString::to_string).collect();
        for (kind, samples) in [("traces", &traces), ("correlations", &d.correlation_ids)] {
            if samples.is_empty() {
                continue;
            }
            let key = keys.of_group(kind, d.fingerprint);
            pipe.cmd("RPUSH").arg(&key).arg(samples).ignore();
            pipe.cmd("LTRIM").arg(&key).arg(-5).arg(-1).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
        }
    }

    /// The requests and errors counted since the last push, into the current bucket of each
    /// ring, each bucket expiring after its window.
    fn push_rates(&self, pipe: &mut Pipeline, rates: &[(String, u64, u64, u64, u64)]) {
        let now = unix_secs();
        for (width, buckets) in RINGS {
            if rates.is_empty() {
                break;
            }
            let key = self.keys.rates(width, now / width);
            for (operation, requests, errors, _, _) in rates {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(format!("requests:{operation}"))
                    .arg(*requests)
                    .ignore();
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(format!("errors:{operation}"))
                    .arg(*errors)
                    .ignore();
            }
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(width * (buckets + 1))
                .ignore();
        }
    }

    /// The transaction committed: remember what Redis now holds of ours.
    pub(super) fn commit(&mut self, batch: Batch) {
        for d in batch.groups {
            self.pushed.insert(d.fingerprint, d.pushed);
        }
        self.pushed_total = batch.total.1;
        for (operation, _, _, requests, errors) in batch.rates {
            self.pushed_rates.insert(operation, (requests, errors));
        }
    }

    /// Reads the fleet view back.
    pub(super) fn pull(&self, con: &mut Connection) -> RedisResult<FleetView> {
        let keys = &self.keys;
        let last = isize::try_from(self.config.fleet_groups).unwrap_or(isize::MAX) - 1;
        let (total, top): (Option<u64>, Vec<(String, f64)>) = redis::pipe()
            .cmd("GET")
            .arg(keys.key("total"))
            .cmd("ZREVRANGE")
            .arg(keys.key("groups"))
            .arg(0)
            .arg(last)
            .arg("WITHSCORES")
            .query(con)?;
        let mut pipe = redis::pipe();
        let fingerprints: Vec<(u64, u64)> = top
            .iter()
            .filter_map(|(member, score)| {
                let fingerprint = u64::from_str_radix(member, 16).ok()?;
                // Counts are whole numbers well below 2^53: exact as scores.
                Some((fingerprint, *score as u64))
            })
            .collect();
        for (fingerprint, _) in &fingerprints {
            pipe.cmd("HGETALL")
                .arg(keys.of_group("group", *fingerprint));
            pipe.cmd("ZRANGE")
                .arg(keys.of_group("seen", *fingerprint))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
            pipe.cmd("LRANGE")
                .arg(keys.of_group("traces", *fingerprint))
                .arg(0)
                .arg(-1);
            pipe.cmd("LRANGE")
                .arg(keys.of_group("correlations", *fingerprint))
                .arg(0)
                .arg(-1);
        }
        let now = unix_secs();
        for (width, buckets) in RINGS {
            let current = now / width;
            for bucket in current.saturating_sub(buckets - 1)..=current {
                pipe.cmd("HGETALL").arg(keys.rates(width, bucket));
            }
        }
        let mut values = pipe.query::<Vec<Value>>(con)?.into_iter();
        let mut groups = Vec::with_capacity(fingerprints.len());
        for (fingerprint, count) in fingerprints {
            let (Some(hash), Some(seen), Some(traces), Some(correlations)) =
                (values.next(), values.next(), values.next(), values.next())
            else {
                break;
            };
            let parts = read_group(fingerprint, count, hash, seen, traces, correlations);
            groups.extend(parts.map(ErrorGroup::from));
        }
        let rates = read_rates(values);
        Ok(FleetView {
            total: total.unwrap_or(0),
            groups,
            rates,
            pushed_counts: self.pushed.iter().map(|(fp, p)| (*fp, p.count)).collect(),
            pushed_total: self.pushed_total,
            pushed_rates: self.pushed_rates.clone(),
        })
    }
}

/// The per-operation figures of each window, summed over the buckets `values` holds in
/// [`RINGS`] order (the hashes of `rates:{width}:{bucket}`); at most
/// [`MAX_FLEET_OPERATIONS`] operations.
pub(super) fn read_rates(mut values: impl Iterator<Item = Value>) -> FleetRates {
    let mut rates: FleetRates = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (window, (_, buckets)) in RINGS.into_iter().enumerate() {
        for _ in 0..buckets {
            let Some(value) = values.next() else { break };
            let fields: HashMap<String, u64> = redis::from_redis_value(value).unwrap_or_default();
            for (field, n) in fields {
                let Some((kind, operation)) = field.split_once(':') else {
                    continue;
                };
                let i = match index.get(operation) {
                    Some(&i) => i,
                    None if rates.len() < MAX_FLEET_OPERATIONS => {
                        index.insert(operation.to_owned(), rates.len());
                        rates.push((operation.to_owned(), [(0, 0); 3]));
                        rates.len() - 1
                    }
                    None => continue,
                };
                let figures = &mut rates[i].1[window];
                match kind {
                    "requests" => figures.0 = figures.0.saturating_add(n),
                    "errors" => figures.1 = figures.1.saturating_add(n),
                    _ => {}
                }
            }
        }
    }
    rates
}

/// A name no other replica, tracker in this process or earlier call has: time, process, count.
pub(super) fn replica_name() -> String {
    static TRACKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TRACKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{nanos:x}-{:x}-{n}",
        unix_ms(SystemTime::now()),
        std::process::id()
    )
}

pub(super) fn unix_secs() -> u64 {
    unix_ms(SystemTime::now()) / 1_000
}

/// A group from its keys; `None` when they are gone or unreadable (another version's data).
pub(super) fn read_group(
    fingerprint: u64,
    count: u64,
    hash: Value,
    seen: Value,
    traces: Value,
    correlations: Value,
) -> Option<GroupParts> {
    let hash: HashMap<String, String> = redis::from_redis_value(hash).ok()?;
    let seen: Vec<(String, f64)> = redis::from_redis_value(seen).ok()?;
    let traces: Vec<String> = redis::from_redis_value(traces).ok()?;
    let correlations: Vec<String> = redis::from_redis_value(correlations).ok()?;
    let mut classified: Option<(Severity, Category)> = None;
    let mut operations = Vec::new();
    let mut status_codes = Vec::new();
    for (field, value) in &hash {
        if let Some(severity) = field.strip_prefix("severity:") {
            let severity = Severity::ALL.into_iter().find(|s| s.as_str() == severity);
            let category = Category::ALL.into_iter().find(|c| c.as_str() == value);
            if let (Some(s), Some(c)) = (severity, category) {
                if classified.is_none_or(|(most, _)| s < most) {
                    classified = Some((s, c));
                }
            }
        } else if let Some(op) = field.strip_prefix("operation:") {
            operations.push(op.to_owned());
        } else if let Some(code) = field.strip_prefix("status_code:") {
            status_codes.extend(code.parse::<u16>().ok());
        }
    }
    operations.sort();
    status_codes.sort_unstable();
    let (severity, category) = classified?;
    let at = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, ms)| SystemTime::UNIX_EPOCH + Duration::from_millis(*ms as u64))
    };
    let last_seen = at("last").unwrap_or_else(SystemTime::now);
    Some(GroupParts {
        fingerprint,
        error_type: hash.get("error_type")?.clone(),
        message: hash.get("message").cloned().unwrap_or_default(),
        operations,
        status_codes,
        count,
        first_seen: at("first").unwrap_or(last_seen),
        last_seen,
        severity,
        category,
        trace_ids: traces
            .iter()
            .filter_map(|t| TraceId::from_hex(t).ok())
            .collect(),
        correlation_ids: correlations,
    })
}
