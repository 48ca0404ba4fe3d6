//! Where the error groups are kept, and whether that storage is working.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::store::unix_ms;

/// The state of the error groups' storage, from
/// [`ErrorTracking::storage_health`](super::ErrorTracking::storage_health) or
/// [`TracingGuard::error_storage_health`](crate::TracingGuard::error_storage_health).
///
/// Whatever the state, requests are served and errors are tracked in memory; only the fleet
/// view depends on the shared storage.
///
/// ```
/// use service_tracing::errors::{ErrorStorageHealth, ErrorTracking};
/// match ErrorTracking::new().storage_health() {
///     ErrorStorageHealth::Local => println!("this replica's errors only"),
///     ErrorStorageHealth::Shared => println!("the fleet's errors"),
///     ErrorStorageHealth::Degraded { last_error, .. } => println!("degraded: {last_error}"),
///     _ => {}
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorStorageHealth {
    /// In memory only (no shared storage configured).
    Local,
    /// Shared storage is reachable: the last sync pushed this replica's counts and pulled the
    /// fleet's.
    Shared,
    /// Shared storage is configured but unreachable or failing: errors are tracked in memory,
    /// the counts not yet shared are kept (bounded) and pushed once it is back, and it is
    /// retried by itself, with backoff.
    Degraded {
        /// When the storage stopped answering (the first failure of this outage).
        since: SystemTime,
        /// The last failure, as the client reported it.
        last_error: String,
    },
}

impl ErrorStorageHealth {
    /// `local`, `shared` or `degraded`.
    ///
    /// ```
    /// use service_tracing::errors::ErrorStorageHealth;
    /// assert_eq!(ErrorStorageHealth::Local.as_str(), "local");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shared => "shared",
            Self::Degraded { .. } => "degraded",
        }
    }

    /// Whether shared storage is configured and failing.
    ///
    /// ```
    /// use service_tracing::errors::ErrorStorageHealth;
    /// assert!(!ErrorStorageHealth::Shared.is_degraded());
    /// ```
    pub fn is_degraded(&self) -> bool {
        matches!(self, Self::Degraded { .. })
    }

    /// The state as JSON, for a health endpoint: `{"status": "degraded", "since_unix_ms": ..,
    /// "last_error": ".."}`.
    ///
    /// ```
    /// use service_tracing::errors::ErrorStorageHealth;
    /// assert_eq!(ErrorStorageHealth::Shared.to_json()["status"], "shared");
    /// ```
    pub fn to_json(&self) -> Value {
        match self {
            Self::Degraded { since, last_error } => json!({
                "status": self.as_str(),
                "since_unix_ms": unix_ms(*since),
                "last_error": last_error,
            }),
            _ => json!({ "status": self.as_str() }),
        }
    }
}
