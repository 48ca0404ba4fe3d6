//! Error groups, counts and route rates shared by every replica through Redis (feature
//! `redis`), so that each replica's [`summary`](super::ErrorTracking::summary) shows the fleet.
//!
//! The request path never touches Redis: errors and requests are counted in memory as without
//! sharing. A background thread (its own, with a no-op `tracing` dispatcher, so its traffic
//! never becomes telemetry) wakes every [`sync_interval`](RedisSharing::sync_interval)
//! (default 1 s) and
//!
//! 1. pushes what this replica counted since its last successful push, in one `MULTI`/`EXEC`
//!    transaction that is applied exactly once (it `WATCH`es and sets a per-replica
//!    `applied:{replica}` marker, so a transaction whose reply timed out is either found
//!    applied or can never apply): per group the count (`ZINCRBY`), type, message, severity,
//!    operations and status codes (hash fields), first and last seen (`ZADD LT`/`GT`) and the
//!    new sample trace and correlation ids (`RPUSH` + `LTRIM` to 5); per operation the request
//!    and error counts of the current 10 s, 1 min and 5 min buckets (`HINCRBY`, buckets on
//!    the wall clock so that replicas agree); the total; every key with a TTL;
//! 2. pulls the fleet view: the total, the top [`fleet_groups`](RedisSharing::fleet_groups)
//!    groups by count, and the rate buckets of the last hour;
//! 3. merges: [`summary`](super::ErrorTracking::summary) and
//!    [`groups`](super::ErrorTracking::groups) show the fleet's figures plus what this replica
//!    counted since.
//!
//! # When Redis is down or slow
//!
//! Every command has a timeout ([`timeout`](RedisSharing::timeout), default 500 ms), and only
//! the sync thread waits on it. While Redis is unreachable the health is
//! [`Degraded`](super::ErrorStorageHealth::Degraded), the summary shows the last fleet view
//! plus this replica's counts since, and connecting is retried with a backoff (from the sync
//! interval, doubling, at most 5 s). Nothing is queued per error: the counts not yet pushed
//! are the difference between the in-memory groups and what was last pushed, so they are
//! bounded by the group cap (a group evicted before it was pushed loses its unpushed count).
//!
//! Redis restarted empty (or its keys expired) is noticed through an epoch key: a replica that
//! finds a different epoch pushes its whole counts again, so the fleet counts converge on the
//! sum of every replica's counts. Counts pushed after an outage land in the rate buckets of
//! the moment they are pushed.
//!
//! # Keys
//!
//! Under the [prefix](RedisSharing::prefix) (default `service-tracing:errors`;
//! [`ServiceTracing`](crate::ServiceTracing) uses `service-tracing:{service}:errors`):
//! `epoch`, `applied:{replica}`, `total`, `groups` (a sorted set capped at 1,000 members),
//! `group:{fp}`, `seen:{fp}`, `traces:{fp}`, `correlations:{fp}` (for the 16-hex-digit
//! fingerprint) and `rates:{width}:{bucket}`.
//!
//! ```no_run
//! # fn main() -> Result<(), service_tracing::SetupError> {
//! use std::time::Duration;
//! use service_tracing::errors::{ErrorStorageHealth, ErrorTracking, RedisSharing};
//!
//! let errors = ErrorTracking::new().with_sharing(
//!     RedisSharing::new("redis://127.0.0.1:6379")?
//!         .prefix("shop:checkout:errors")
//!         .sync_interval(Duration::from_secs(2)),
//! );
//! // ... record errors, serve requests ...
//! if errors.sync_now() == ErrorStorageHealth::Shared {
//!     println!("fleet total: {}", errors.summary().total());
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::TraceId;
use redis::{Client, Connection, Pipeline, RedisResult, Value};

use super::health::ErrorStorageHealth;
use super::rates::RouteRate;
use crate::window::Window;
use super::store::{sort_groups, summarize, unix_ms, ErrorGroup, ErrorSummary, GroupParts};
use super::tracking::Shared;
use super::{Category, Severity, DEFAULT_MAX_GROUPS};
use crate::error::SetupError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "service-tracing:errors";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_FLEET_GROUPS: usize = 100;
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3_600);
/// The TTL is never shorter than the longest rate window.
const MIN_TTL: Duration = Duration::from_secs(3_600);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Operations read back from the rate buckets at most (each replica writes at most 513).
const MAX_FLEET_OPERATIONS: usize = 1_024;
/// Transactions of unknown outcome at most, before pushing waits for one to be known.
const MAX_UNCERTAIN: usize = 4;
/// Pending `sync_now` requests at most.
const MAX_REQUESTS: usize = 16;
/// The rate rings as `rates.rs` keeps them, in [`Window::ALL`] order: (bucket width in
/// seconds, buckets per window).
const RINGS: [(u64, u64); 3] = [(10, 6), (60, 5), (300, 12)];

/// How to share error tracking through Redis: the URL and options for
/// [`ErrorTracking::with_sharing`](super::ErrorTracking::with_sharing).
///
/// ```
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// use std::time::Duration;
/// let sharing = service_tracing::errors::RedisSharing::new("redis://127.0.0.1:6379/0")?
///     .prefix("shop:errors")
///     .sync_interval(Duration::from_millis(500))
///     .timeout(Duration::from_millis(200))
///     .fleet_groups(50)
///     .ttl(Duration::from_secs(6 * 3_600));
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisSharing {
    client: Client,
    prefix: String,
    interval: Duration,
    timeout: Duration,
    fleet_groups: usize,
    ttl: Duration,
}

impl fmt::Debug for RedisSharing {
    // The URL may hold a password: only the address is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSharing")
            .field(
                "addr",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("fleet_groups", &self.fleet_groups)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl RedisSharing {
    /// Sharing through the Redis at `url` (`redis://[user:password@]host[:port][/db]`). Only
    /// parses the URL: nothing connects until the tracking starts, and an unreachable Redis
    /// does not fail anything (the tracking starts degraded).
    ///
    /// ```
    /// let error = service_tracing::errors::RedisSharing::new("localhost:6379").unwrap_err();
    /// assert!(error.to_string().contains("redis"));
    /// ```
    pub fn new(url: &str) -> Result<Self, SetupError> {
        Self::parse("the Redis URL of error sharing", url)
    }

    /// Parses `url`; a bad one is an error naming `setting`.
    pub(crate) fn parse(setting: &str, url: &str) -> Result<Self, SetupError> {
        let client = Client::open(url).map_err(|e| {
            SetupError::invalid(
                setting,
                &without_password(url),
                "a redis:// URL such as redis://127.0.0.1:6379/0",
            )
            .with_source(e)
        })?;
        Ok(Self {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            fleet_groups: DEFAULT_FLEET_GROUPS,
            ttl: DEFAULT_TTL,
        })
    }

    /// The prefix of every key (default `service-tracing:errors`). Replicas of one service
    /// share a prefix; different services should not.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let sharing = service_tracing::errors::RedisSharing::new("redis://127.0.0.1")?
    ///     .prefix("service-tracing:checkout:errors");
    /// # Ok(()) }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often the counts are pushed and the fleet view pulled (default 1 s, at least
    /// 10 ms).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let sharing = service_tracing::errors::RedisSharing::new("redis://127.0.0.1")?
    ///     .sync_interval(std::time::Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The timeout of connecting and of each read and write (default 500 ms, at least 10 ms).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let sharing = service_tracing::errors::RedisSharing::new("redis://127.0.0.1")?
    ///     .timeout(std::time::Duration::from_millis(100));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How many of the fleet's groups (those with the most errors) are read back at each sync
    /// (default 100, at least 1, at most 1,000).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let sharing =
    ///     service_tracing::errors::RedisSharing::new("redis://127.0.0.1")?.fleet_groups(20);
    /// # Ok(()) }
    /// ```
    pub fn fleet_groups(mut self, groups: usize) -> Self {
        self.fleet_groups = groups.clamp(1, DEFAULT_MAX_GROUPS);
        self
    }

    /// How long a group's keys live after its last error was pushed (default 24 h, at least
    /// 1 h). Rate buckets live as long as their window.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let sharing = service_tracing::errors::RedisSharing::new("redis://127.0.0.1")?
    ///     .ttl(std::time::Duration::from_secs(7 * 24 * 3_600));
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(MIN_TTL);
        self
    }

    /// A sync waits at most this long for the thread (a connect and a handful of round trips).
    fn sync_bound(&self) -> Duration {
        self.timeout * 10
    }
}

/// `redis://user:secret@host` → `redis://***@host`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Per operation, (requests, errors) over each window in [`Window::ALL`] order.
type FleetRates = Vec<(String, [(u64, u64); 3])>;

/// What the fleet had at the last successful pull, and what this replica had pushed by then
/// (so the counts since are known).
#[derive(Debug, Default)]
struct FleetView {
    total: u64,
    groups: Vec<ErrorGroup>,
    rates: FleetRates,
    pushed_counts: HashMap<u64, u64>,
    pushed_total: u64,
    pushed_rates: HashMap<String, (u64, u64)>,
}

impl FleetView {
    /// The fleet's groups with this replica's folded in (see [`ErrorGroup::merge_local`]);
    /// local groups the view lacks are shown as they are. Most errors first.
    fn merge_groups<'a>(&self, local: impl Iterator<Item = &'a ErrorGroup>) -> Vec<ErrorGroup> {
        let mut merged = self.groups.clone();
        let index: HashMap<u64, usize> = merged
            .iter()
            .enumerate()
            .map(|(i, g)| (g.fingerprint(), i))
            .collect();
        for group in local {
            match index.get(&group.fingerprint()) {
                Some(&i) => {
                    let pushed = self
                        .pushed_counts
                        .get(&group.fingerprint())
                        .copied()
                        .unwrap_or(0);
                    merged[i].merge_local(group, group.count().saturating_sub(pushed));
                }
                None => merged.push(group.clone()),
            }
        }
        sort_groups(&mut merged);
        merged
    }

    /// The fleet's rates plus this replica's requests since the pull; operations the fleet
    /// lacks keep their local figures. `local` is `RouteRates::snapshot` (three windows per
    /// operation) and `totals` `RouteRates::totals`, in the same order.
    fn merge_rates(&self, local: &[RouteRate], totals: &[(String, u64, u64)]) -> Vec<RouteRate> {
        let fleet: HashMap<&str, &[(u64, u64); 3]> =
            self.rates.iter().map(|(op, w)| (op.as_str(), w)).collect();
        let mut merged = Vec::with_capacity(local.len() + self.rates.len() * 3);
        for ((operation, requests, errors), local) in
            totals.iter().zip(local.chunks(Window::ALL.len()))
        {
            let Some(windows) = fleet.get(operation.as_str()) else {
                merged.extend_from_slice(local);
                continue;
            };
            let (pushed_requests, pushed_errors) =
                self.pushed_rates.get(operation).copied().unwrap_or((0, 0));
            let pending = (
                requests.saturating_sub(pushed_requests),
                errors.saturating_sub(pushed_errors),
            );
            for (window, (r, e)) in Window::ALL.into_iter().zip(windows.iter()) {
                merged.push(RouteRate::new(
                    operation.clone(),
                    window,
                    r.saturating_add(pending.0),
                    e.saturating_add(pending.1),
                ));
            }
        }
        for (operation, windows) in &self.rates {
            if totals.iter().any(|(op, _, _)| op == operation) {
                continue;
            }
            for (window, (r, e)) in Window::ALL.into_iter().zip(windows.iter()) {
                merged.push(RouteRate::new(operation.clone(), window, *r, *e));
            }
        }
        merged
    }
}

#[derive(Debug)]
struct State {
    health: Mutex<ErrorStorageHealth>,
    view: Mutex<Option<FleetView>>,
}

/// The handle [`ErrorTracking`](super::ErrorTracking) keeps: the sync thread's state, and the
/// way to ask it for a sync.
pub(super) struct Sharing {
    config: RedisSharing,
    state: Arc<State>,
    requests: SyncSender<SyncSender<ErrorStorageHealth>>,
}

impl fmt::Debug for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharing")
            .field("config", &self.config)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

/// The sync thread, before it is started.
pub(super) struct Worker {
    syncer: Syncer,
    requests: Receiver<SyncSender<ErrorStorageHealth>>,
}

impl Sharing {
    /// The handle and its thread; start the thread with [`Worker::spawn`] once the tracking's
    /// state exists.
    pub(super) fn new(config: RedisSharing) -> (Self, Worker) {
        let state = Arc::new(State {
            health: Mutex::new(ErrorStorageHealth::Degraded {
                since: SystemTime::now(),
                last_error: "not connected yet".to_owned(),
            }),
            view: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(MAX_REQUESTS);
        let worker = Worker {
            syncer: Syncer::new(config.clone(), state.clone()),
            requests: rx,
        };
        (
            Self {
                config,
                state,
                requests: tx,
            },
            worker,
        )
    }

    pub(super) fn config(&self) -> &RedisSharing {
        &self.config
    }

    pub(super) fn health(&self) -> ErrorStorageHealth {
        lock(&self.state.health).clone()
    }

    /// Asks the thread for a sync now and waits for it (at most 10 timeouts).
    pub(super) fn sync_now(&self) -> ErrorStorageHealth {
        let (tx, rx) = mpsc::sync_channel(1);
        match self.requests.try_send(tx) {
            Ok(()) => {
                // A reply or not within the bound, the health is read afterwards.
                let _ = rx.recv_timeout(self.config.sync_bound());
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
        self.health()
    }

    /// The fleet's summary with this replica's counts since the last pull; `None` before the
    /// first successful pull.
    pub(super) fn summary(&self, shared: &Shared, at: Duration) -> Option<ErrorSummary> {
        let view = lock(&self.state.view);
        let view = view.as_ref()?;
        let mut summary = {
            let store = lock(&shared.store);
            let groups = view.merge_groups(store.iter());
            let total = view
                .total
                .saturating_add(store.total().saturating_sub(view.pushed_total));
            summarize(groups.iter(), total, store.evictions())
        };
        let rates = view.merge_rates(&shared.rates.snapshot(), &shared.rates.totals());
        summary.set_rates(at, rates);
        Some(summary)
    }

    /// The fleet's groups with this replica's folded in; `None` before the first pull.
    pub(super) fn groups(&self, shared: &Shared) -> Option<Vec<ErrorGroup>> {
        let view = lock(&self.state.view);
        let view = view.as_ref()?;
        let store = lock(&shared.store);
        Some(view.merge_groups(store.iter()))
    }
}

impl Worker {
    /// Starts the sync thread. It holds `shared` weakly and ends when the tracking is dropped.
    pub(super) fn spawn(self, shared: Weak<Shared>) {
        let state = self.syncer.state.clone();
        let started = thread::Builder::new()
            .name("service-tracing-errors-sync".to_owned())
            .spawn(move || {
                // Redis traffic must never feed the tracing bridge.
                let _quiet =
                    tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
                self.run(&shared);
            });
        if let Err(e) = started {
            *lock(&state.health) = ErrorStorageHealth::Degraded {
                since: SystemTime::now(),
                last_error: format!("cannot start the sync thread: {e}"),
            };
        }
    }

    fn run(mut self, shared: &Weak<Shared>) {
        loop {
            let reply = match self.requests.recv_timeout(self.syncer.config.interval) {
                Ok(reply) => Some(reply),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let Some(tracking) = shared.upgrade() else {
                return;
            };
            let health = self.syncer.sync(&tracking, reply.is_some());
            drop(tracking);
            if let Some(reply) = reply {
                let _ = reply.try_send(health);
            }
        }
    }
}

/// What this replica last pushed of a group.
#[derive(Clone, Debug, Default)]
struct Pushed {
    count: u64,
    last_trace: Option<TraceId>,
    last_correlation: Option<String>,
}

/// One group's changes since its last push.
#[derive(Debug)]
struct GroupDelta {
    fingerprint: u64,
    added: u64,
    pushed: Pushed,
    error_type: String,
    message: String,
    severity: Severity,
    category: Category,
    operations: Vec<String>,
    status_codes: Vec<u16>,
    first_seen_ms: u64,
    last_seen_ms: u64,
    trace_ids: Vec<TraceId>,
    correlation_ids: Vec<String>,
}

/// Everything to push in one transaction, and what will have been pushed once it commits.
#[derive(Debug, Default)]
struct Batch {
    groups: Vec<GroupDelta>,
    total: (u64, u64),
    /// (operation, requests added, errors added, requests in all, errors in all).
    rates: Vec<(String, u64, u64, u64, u64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.total.0 == 0 && self.rates.is_empty()
    }
}

/// The entries of `samples` after `last` (all of them when `last` is not among them).
fn after<T: PartialEq + Clone>(samples: &[T], last: Option<&T>) -> Vec<T> {
    let start = last
        .and_then(|last| samples.iter().rposition(|s| s == last))
        .map_or(0, |i| i + 1);
    samples[start..].to_vec()
}

/// The key names under a prefix.
#[derive(Debug)]
struct Keys(String);

impl Keys {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.0)
    }

    fn of_group(&self, kind: &str, fingerprint: u64) -> String {
        format!("{}:{kind}:{fingerprint:016x}", self.0)
    }

    fn rates(&self, width: u64, bucket: u64) -> String {
        format!("{}:rates:{width}:{bucket}", self.0)
    }
}

/// The sync thread's own state: the connection and what was pushed.
struct Syncer {
    config: RedisSharing,
    keys: Keys,
    state: Arc<State>,
    connection: Option<Connection>,
    /// The epoch of the Redis data this replica's pushes went into.
    epoch: Option<String>,
    pushed: HashMap<u64, Pushed>,
    pushed_total: u64,
    pushed_rates: HashMap<String, (u64, u64)>,
    /// Set when Redis lost its data: the next push takes the rates counted so far as pushed.
    skip_rate_history: bool,
    /// This replica's name in the `applied:{replica}` marker of its transactions.
    replica: String,
    /// The number of the last transaction sent.
    seq: u64,
    /// Transactions sent whose outcome is unknown (their reply was lost); at most one of
    /// them is applied.
    uncertain: Vec<(u64, Batch)>,
    backoff: Duration,
    next_attempt: Instant,
}

impl Syncer {
    fn new(config: RedisSharing, state: Arc<State>) -> Self {
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
    fn sync(&mut self, shared: &Shared, forced: bool) -> ErrorStorageHealth {
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
        match self.exchange(&mut connection, shared) {
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

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self
            .config
            .client
            .get_connection_with_timeout(self.config.timeout)?;
        connection.set_read_timeout(Some(self.config.timeout))?;
        connection.set_write_timeout(Some(self.config.timeout))?;
        Ok(connection)
    }

    fn failed(&mut self, error: &redis::RedisError) -> ErrorStorageHealth {
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

    fn exchange(&mut self, con: &mut Connection, shared: &Shared) -> RedisResult<FleetView> {
        self.check_epoch(con)?;
        self.push(con, shared)?;
        self.pull(con)
    }

    /// Pushes what changed, exactly once. Every transaction `WATCH`es this replica's
    /// `applied:{replica}` marker and sets it to its number, so of the transactions sent
    /// while the marker holds a value, at most one is applied (the others abort), even one
    /// whose reply was lost to a timeout and that Redis runs later. The marker tells which.
    fn push(&mut self, con: &mut Connection, shared: &Shared) -> RedisResult<()> {
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
            .then(|| self.collect(shared))
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
    fn check_epoch(&mut self, con: &mut Connection) -> RedisResult<()> {
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
    fn adopt_epoch(&mut self, epoch: String) {
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
    fn collect(&mut self, shared: &Shared) -> Batch {
        let mut batch = Batch::default();
        {
            let store = lock(&shared.store);
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
        for (operation, requests, errors) in shared.rates.totals() {
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
    fn transaction(&self, batch: &Batch, seq: u64) -> Pipeline {
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
        for d in &batch.groups {
            let member = format!("{:016x}", d.fingerprint);
            pipe.cmd("ZINCRBY")
                .arg(&groups)
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
        let now = unix_secs();
        for (width, buckets) in RINGS {
            if batch.rates.is_empty() {
                break;
            }
            let key = keys.rates(width, now / width);
            for (operation, requests, errors, _, _) in &batch.rates {
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
        pipe
    }

    /// The transaction committed: remember what Redis now holds of ours.
    fn commit(&mut self, batch: Batch) {
        for d in batch.groups {
            self.pushed.insert(d.fingerprint, d.pushed);
        }
        self.pushed_total = batch.total.1;
        for (operation, _, _, requests, errors) in batch.rates {
            self.pushed_rates.insert(operation, (requests, errors));
        }
    }

    /// Reads the fleet view back.
    fn pull(&self, con: &mut Connection) -> RedisResult<FleetView> {
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
        let mut rates: FleetRates = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (window, (_, buckets)) in RINGS.into_iter().enumerate() {
            for _ in 0..buckets {
                let Some(value) = values.next() else { break };
                let fields: HashMap<String, u64> =
                    redis::from_redis_value(value).unwrap_or_default();
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

/// A name no other replica, tracker in this process or earlier call has: time, process, count.
fn replica_name() -> String {
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

fn unix_secs() -> u64 {
    unix_ms(SystemTime::now()) / 1_000
}

/// A group from its keys; `None` when they are gone or unreadable (another version's data).
fn read_group(
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

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::errors::ErrorTracking;

    /// A URL nothing answers at (a port just freed).
    fn closed_url() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        format!("redis://127.0.0.1:{port}")
    }

    fn syncer() -> Syncer {
        let config = RedisSharing::new(&closed_url()).unwrap_or_else(|e| panic!("{e}"));
        Sharing::new(config).1.syncer
    }

    /// Ends a server span of `GET /fail/{id}` answered 500, with a correlation id.
    fn fail(provider: &SdkTracerProvider, correlation: &str) {
        let tracer = provider.tracer("t");
        let mut span = tracer
            .span_builder("GET /fail/{id}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/fail/{id}"),
                KeyValue::new("http.response.status_code", 500),
                KeyValue::new("error.type", "500"),
                KeyValue::new("correlation.id", correlation.to_owned()),
            ])
            .start(&tracer);
        span.set_status(Status::error(""));
        span.end();
    }

    /// What the next push would carry, once the errors waiting for grouping are grouped.
    fn collect(syncer: &mut Syncer, errors: &ErrorTracking) -> Batch {
        errors.drain();
        syncer.collect(&errors.shared)
    }

    fn tracked() -> (ErrorTracking, SdkTracerProvider) {
        let errors = ErrorTracking::new();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build();
        (errors, provider)
    }

    fn parts(fingerprint: u64, count: u64) -> GroupParts {
        GroupParts {
            fingerprint,
            error_type: "500".to_owned(),
            message: String::new(),
            operations: vec!["GET /fail/{id}".to_owned()],
            status_codes: vec![500],
            count,
            first_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            last_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
            severity: Severity::High,
            category: Category::Application,
            trace_ids: vec![TraceId::from(7u128)],
            correlation_ids: vec!["from-b".to_owned()],
        }
    }

    #[test]
    fn samples_after_the_last_pushed_are_the_new_ones() {
        assert_eq!(after(&[1, 2, 3, 4], Some(&2)), [3, 4]);
        assert_eq!(after(&[1, 2, 3], Some(&3)), Vec::<i32>::new());
        assert_eq!(after(&[1, 2, 3], Some(&9)), [1, 2, 3], "rolled out: all");
        assert_eq!(after(&[1, 2, 3], None), [1, 2, 3]);
        assert_eq!(
            after(&[1, 2, 1], Some(&1)),
            Vec::<i32>::new(),
            "the latest one"
        );
    }

    #[test]
    fn deltas_are_what_changed_since_the_last_push() {
        let (errors, provider) = tracked();
        let mut syncer = syncer();
        syncer.adopt_epoch("e1".to_owned());
        for n in 0..3 {
            fail(&provider, &format!("c-{n}"));
        }
        errors.rates().record("GET", Some("/fail/{id}"), true);

        let batch = collect(&mut syncer, &errors);
        assert_eq!(batch.groups.len(), 1);
        let delta = &batch.groups[0];
        assert_eq!((delta.added, delta.pushed.count), (3, 3));
        assert_eq!(delta.correlation_ids, ["c-0", "c-1", "c-2"]);
        assert_eq!(delta.trace_ids.len(), 3);
        assert_eq!(delta.operations, ["GET /fail/{id}"]);
        assert_eq!(delta.status_codes, [500]);
        assert_eq!(batch.total, (3, 3));
        assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 1, 1, 1)]);
        syncer.commit(batch);

        assert!(collect(&mut syncer, &errors).is_empty(), "nothing new");

        fail(&provider, "c-3");
        fail(&provider, "c-4");
        errors.rates().record("GET", Some("/fail/{id}"), false);
        let batch = collect(&mut syncer, &errors);
        let delta = &batch.groups[0];
        assert_eq!((delta.added, delta.pushed.count), (2, 5));
        assert_eq!(
            delta.correlation_ids,
            ["c-3", "c-4"],
            "only the new samples"
        );
        assert_eq!(delta.trace_ids.len(), 2);
        assert_eq!(batch.total, (2, 5));
        assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 0, 2, 1)]);
        // Not committed (the push failed): the same deltas come again.
        let again = collect(&mut syncer, &errors);
        assert_eq!((again.groups[0].added, again.total), (2, (2, 5)));
        syncer.commit(again);

        // Redis lost its data: the groups and total are pushed whole, the rates' history not.
        fail(&provider, "c-5");
        syncer.adopt_epoch("e2".to_owned());
        let batch = collect(&mut syncer, &errors);
        assert_eq!(batch.groups[0].added, 6);
        assert_eq!(
            batch.groups[0].correlation_ids.len(),
            crate::errors::store::MAX_SAMPLES
        );
        assert_eq!(batch.total, (6, 6));
        assert!(batch.rates.is_empty());
        syncer.commit(batch);
        errors.rates().record("GET", Some("/fail/{id}"), true);
        let batch = collect(&mut syncer, &errors);
        assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 1, 3, 2)]);
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn the_transaction_is_atomic_and_every_key_it_writes_expires() {
        let (errors, provider) = tracked();
        fail(&provider, "c-1");
        errors.rates().record("GET", Some("/fail/{id}"), true);
        let mut syncer = syncer();
        let batch = collect(&mut syncer, &errors);
        let pipe = syncer.transaction(&batch, 1);
        let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        assert!(
            packed.contains("MULTI") && packed.contains("EXEC"),
            "{packed}"
        );
        let mut written = std::collections::BTreeSet::new();
        let mut expiring = std::collections::BTreeSet::new();
        for cmd in pipe.cmd_iter() {
            let args: Vec<String> = cmd
                .args_iter()
                .filter_map(|a| match a {
                    redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                    _ => None,
                })
                .collect();
            assert!(args[1].starts_with("service-tracing:errors:"), "{args:?}");
            if args[0] == "EXPIRE" {
                assert!(args[2].parse::<u64>().unwrap_or(0) >= 60, "{args:?}");
                expiring.insert(args[1].clone());
            } else if args[0] == "SET" {
                assert_eq!(args[3], "EX", "{args:?}");
                expiring.insert(args[1].clone());
            } else {
                written.insert(args[1].clone());
            }
        }
        assert!(written.len() >= 8, "{written:?}");
        let missing: Vec<&String> = written.difference(&expiring).collect();
        assert!(missing.is_empty(), "keys without a TTL: {missing:?}");
        syncer.commit(batch);
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn the_fleet_view_and_the_local_counts_merge() {
        let (errors, provider) = tracked();
        for n in 0..5 {
            fail(&provider, &format!("c-{n}"));
        }
        let local = errors.groups();
        let fingerprint = local[0].fingerprint();
        // The fleet has 10 of this group, 3 of them pushed by this replica, and another
        // replica's group.
        let view = FleetView {
            total: 14,
            groups: vec![
                ErrorGroup::from(parts(fingerprint, 10)),
                ErrorGroup::from(GroupParts {
                    error_type: "timeout".to_owned(),
                    ..parts(42, 4)
                }),
            ],
            rates: vec![("GET /fail/{id}".to_owned(), [(20, 10), (30, 12), (40, 13)])],
            pushed_counts: HashMap::from([(fingerprint, 3)]),
            pushed_total: 3,
            pushed_rates: HashMap::from([("GET /fail/{id}".to_owned(), (1, 1))]),
        };
        let store = lock(&errors.shared.store);
        let merged = view.merge_groups(store.iter());
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].fingerprint(), fingerprint);
        assert_eq!(merged[0].count(), 10 + 5 - 3, "fleet + not yet pushed");
        assert_eq!(
            merged[0].correlation_ids(),
            ["from-b"],
            "the fleet's samples"
        );
        assert_eq!(
            merged[0].errors_in(Window::OneHour),
            5,
            "the sliding windows are this replica's"
        );
        assert_eq!((merged[1].error_type(), merged[1].count()), ("timeout", 4));
        drop(store);

        errors.rates().record("GET", Some("/fail/{id}"), true);
        errors.rates().record("GET", Some("/fail/{id}"), false);
        errors.rates().record("GET", Some("/local"), false);
        let rates = view.merge_rates(&errors.rates().snapshot(), &errors.rates().totals());
        let figures = |op: &str, w: Window| {
            rates
                .iter()
                .find(|r| r.operation == op && r.window == w)
                .map(|r| (r.requests, r.errors))
        };
        // 2 requests (1 error) counted locally, 1 (1 error) of them already pushed.
        assert_eq!(figures("GET /fail/{id}", Window::OneMinute), Some((21, 10)));
        assert_eq!(figures("GET /fail/{id}", Window::OneHour), Some((41, 13)));
        assert_eq!(figures("GET /local", Window::OneMinute), Some((1, 0)));
        assert_eq!(rates.len(), 6);
        assert!(provider.shutdown().is_ok());
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn array(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| bulk(s)).collect())
    }

    #[test]
    fn a_group_is_read_back_from_its_keys() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let hash = array(&[
            "error_type",
            "500",
            "message",
            "boom",
            "severity:high",
            "application",
            "severity:critical",
            "application",
            "operation:GET /b",
            "1",
            "operation:GET /a",
            "1",
            "status_code:503",
            "1",
            "status_code:500",
            "1",
        ]);
        let seen = array(&["first", "1000", "last", "1763899000123"]);
        let group = read_group(
            9,
            12,
            hash,
            seen,
            array(&[trace, "not hex"]),
            array(&["c-1"]),
        )
        .map(ErrorGroup::from)
        .unwrap_or_else(|| panic!("a group"));
        assert_eq!((group.fingerprint(), group.count()), (9, 12));
        assert_eq!((group.error_type(), group.message()), ("500", "boom"));
        assert_eq!(group.severity(), Severity::Critical, "the most urgent wins");
        assert_eq!(group.operations(), ["GET /a", "GET /b"]);
        assert_eq!(group.status_codes(), [500, 503]);
        assert_eq!(
            group.first_seen(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
        assert_eq!(
            group.last_seen(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_899_000_123)
        );
        assert_eq!(group.trace_ids().len(), 1);
        assert_eq!(group.trace_ids()[0].to_string(), trace);
        assert_eq!(group.correlation_ids(), ["c-1"]);

        // Another version's data, or keys expired in between: skipped, not a panic.
        let gone = read_group(
            9,
            1,
            Value::Array(vec![]),
            array(&[]),
            array(&[]),
            array(&[]),
        );
        assert!(gone.is_none());
        let bad = read_group(9, 1, bulk("x"), array(&[]), array(&[]), array(&[]));
        assert!(bad.is_none());
    }

    #[test]
    fn a_bad_url_is_an_error_naming_the_setting_without_the_password() {
        for url in ["localhost:6379", "http://user:secret@example.invalid", ""] {
            let error = RedisSharing::parse("error_redis_url", url)
                .err()
                .unwrap_or_else(|| panic!("{url:?} accepted"));
            let message = error.to_string();
            assert_eq!(error.kind(), crate::SetupErrorKind::InvalidConfig);
            assert!(message.contains("error_redis_url"), "{message}");
            assert!(message.contains("redis://"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        assert_eq!(
            without_password("redis://u:p@h:1/0"),
            "redis://***@h:1/0".to_owned()
        );
        let sharing = RedisSharing::new("redis://:hunter2@127.0.0.1:6379/0");
        let debug = format!("{sharing:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn an_unreachable_redis_starts_degraded_and_tracking_goes_on_locally() {
        let started = Instant::now();
        let errors = ErrorTracking::new().with_sharing(
            RedisSharing::new(&closed_url())
                .unwrap_or_else(|e| panic!("{e}"))
                .timeout(Duration::from_millis(100)),
        );
        let health = errors.storage_health();
        let ErrorStorageHealth::Degraded { last_error, since } = &health else {
            panic!("{health:?}");
        };
        assert!(!last_error.is_empty() && *since <= SystemTime::now());
        assert_eq!(health.to_json()["status"], "degraded");
        let provider = SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build();
        fail(&provider, "c-1");
        fail(&provider, "c-2");
        assert_eq!(errors.summary().total(), 2);
        assert_eq!(errors.groups()[0].count(), 2);
        assert!(errors.sync_now().is_degraded());
        // The builders keep the sharing (with a new store).
        let rebuilt = errors.clone().with_max_groups(10);
        assert!(rebuilt.storage_health().is_degraded());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn service_tracing_rejects_a_bad_redis_url_naming_the_setting() {
        let from_builder = crate::ServiceTracing::builder("svc")
            .env_lookup(|_| None)
            .install_subscriber(false)
            .error_redis_url("not a url")
            .init_layer()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(from_builder.contains("error_redis_url"), "{from_builder}");
        let from_env = crate::ServiceTracing::builder("svc")
            .env_lookup(|name| {
                (name == "SERVICE_TRACING_ERRORS_REDIS_URL").then(|| "tcp://x".to_owned())
            })
            .install_subscriber(false)
            .init_layer()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            from_env.contains("SERVICE_TRACING_ERRORS_REDIS_URL"),
            "{from_env}"
        );
    }
}
