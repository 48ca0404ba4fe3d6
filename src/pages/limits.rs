//! The bounds of the recent-trace store a user can set, and the ranges set-up accepts.

/// The bounds of the pages' recent-trace store
/// ([`ServiceTracing::pages_store_limits`](crate::ServiceTracing::pages_store_limits)).
///
/// The defaults: 2,000 traces, 16 MiB, 256 spans and 1 MiB per trace, 100 routes (traces of
/// further routes share one `_OTHER` family). Within them, each route keeps its 10 newest
/// traces per latency bucket and its 10 newest failed ones, and 1,000 traces at most wait for
/// their root; those two are fixed. The bytes are the store's own count of what it holds
/// (texts, vectors, a fixed overhead per trace and per route), checked against the heap in the
/// tests. Set-up refuses a zero or absurd bound, naming it.
///
/// ```
/// use service_tracing::pages::StoreLimits;
/// let small = StoreLimits::new()
///     .max_traces(500)
///     .max_bytes(4 * 1024 * 1024)
///     .max_spans_per_trace(64)
///     .max_bytes_per_trace(256 * 1024)
///     .max_routes(20);
/// let builder = service_tracing::ServiceTracing::builder("shop")
///     .pages("/_tracing")
///     .pages_store_limits(small);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreLimits {
    pub(crate) max_traces: usize,
    pub(crate) max_bytes: usize,
    pub(crate) per_bucket: usize,
    pub(crate) families: usize,
    pub(crate) spans_per_trace: usize,
    pub(crate) bytes_per_trace: usize,
    pub(crate) pending_traces: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_traces: 2_000,
            max_bytes: 16 * 1024 * 1024,
            per_bucket: 10,
            families: 100,
            spans_per_trace: 256,
            bytes_per_trace: 1024 * 1024,
            pending_traces: 1_000,
        }
    }
}

/// The accepted ranges, checked by [`StoreLimits::check`].
const TRACES_RANGE: (usize, usize) = (1, 1_000_000);
const BYTES_RANGE: (u64, u64) = (64 * 1024, 64 * 1024 * 1024 * 1024);
const SPANS_RANGE: (usize, usize) = (1, 100_000);
const TRACE_BYTES_MIN: usize = 4 * 1024;
const ROUTES_RANGE: (usize, usize) = (1, 10_000);

impl StoreLimits {
    /// The defaults (see above).
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new();
    /// assert_eq!(limits, service_tracing::pages::StoreLimits::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Traces kept at most (default 2,000; 1 to 1,000,000).
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new().max_traces(200);
    /// # drop(limits);
    /// ```
    pub fn max_traces(mut self, n: usize) -> Self {
        self.max_traces = n;
        self
    }

    /// Bytes held at most, stored traces and traces waiting for their root together
    /// (default 16 MiB; 64 KiB to 64 GiB). Route names count too.
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new().max_bytes(2 * 1024 * 1024);
    /// # drop(limits);
    /// ```
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Spans kept per trace (default 256; 1 to 100,000): further spans are counted as
    /// dropped in the trace, its local root always kept.
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new().max_spans_per_trace(32);
    /// # drop(limits);
    /// ```
    pub fn max_spans_per_trace(mut self, n: usize) -> Self {
        self.spans_per_trace = n;
        self
    }

    /// Bytes kept per trace (default 1 MiB; 4 KiB to [`max_bytes`](Self::max_bytes)):
    /// further spans are counted as dropped, its local root always kept.
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new().max_bytes_per_trace(128 * 1024);
    /// # drop(limits);
    /// ```
    pub fn max_bytes_per_trace(mut self, bytes: usize) -> Self {
        self.bytes_per_trace = bytes;
        self
    }

    /// Routes (families of traces, by their local root's name) kept apart (default 100; 1 to
    /// 10,000): traces of further routes share the `_OTHER` family.
    ///
    /// ```
    /// let limits = service_tracing::pages::StoreLimits::new().max_routes(20);
    /// # drop(limits);
    /// ```
    pub fn max_routes(mut self, n: usize) -> Self {
        self.families = n;
        self
    }

    /// The first bound out of its range, as a set-up error naming it (`prefix` and the
    /// bound's name: `pages_store_limits max_bytes`, `pages.max_bytes`).
    pub(crate) fn check(&self, prefix: &str, sep: char) -> Result<(), crate::SetupError> {
        let name = |key: &str| format!("{prefix}{sep}{key}");
        let out = |key: &str, value: usize, accepted: &str| {
            Err(crate::SetupError::invalid(
                &name(key),
                &value.to_string(),
                accepted,
            ))
        };
        let within = |v: usize, (lo, hi): (usize, usize)| (lo..=hi).contains(&v);
        if !within(self.max_traces, TRACES_RANGE) {
            return out("max_traces", self.max_traces, "1 to 1000000 traces");
        }
        let bytes = u64::try_from(self.max_bytes).unwrap_or(u64::MAX);
        if !(BYTES_RANGE.0..=BYTES_RANGE.1).contains(&bytes) {
            return out("max_bytes", self.max_bytes, "64 KiB (65536) to 64 GiB");
        }
        if !within(self.spans_per_trace, SPANS_RANGE) {
            return out(
                "max_spans_per_trace",
                self.spans_per_trace,
                "1 to 100000 spans",
            );
        }
        if !within(self.bytes_per_trace, (TRACE_BYTES_MIN, self.max_bytes)) {
            return out(
                "max_bytes_per_trace",
                self.bytes_per_trace,
                "4 KiB (4096) up to max_bytes",
            );
        }
        if !within(self.families, ROUTES_RANGE) {
            return out("max_routes", self.families, "1 to 10000 routes");
        }
        Ok(())
    }
}
