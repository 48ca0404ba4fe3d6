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

mod sharing;
mod sync;
#[cfg(test)]
mod tests;
mod view;

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::Client;

use crate::error::SetupError;

pub(super) use sharing::Sharing;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "service-tracing:errors";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_FLEET_GROUPS: usize = 100;
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3_600);
/// The TTL is never shorter than the longest rate window.
const MIN_TTL: Duration = Duration::from_secs(3_600);
/// Reconnecting waits at most this long between attempts (error sharing and request chains).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
#[must_use]
pub struct RedisSharing {
    pub(super) client: Client,
    pub(super) prefix: String,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) fleet_groups: usize,
    pub(super) ttl: Duration,
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
        self.fleet_groups = groups.clamp(1, super::DEFAULT_MAX_GROUPS);
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
    pub(super) fn sync_bound(&self) -> Duration {
        self.timeout * 10
    }

    /// A connection with the timeout on connecting and on each read and write: what error
    /// sharing's thread and request chains' thread each open to this Redis.
    pub(crate) fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
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

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
