//! The builder's built-in pages (feature `pages`): where they are served, who may read them,
//! and the bounds of their recent-trace store.

use super::ServiceTracing;

/// The built-in pages' builder options.
#[derive(Clone, Debug, Default)]
pub(in crate::setup) struct PagesOptions {
    pub(in crate::setup) route: Option<String>,
    pub(in crate::setup) access: crate::pages::PagesAccess,
    pub(in crate::setup) limits: crate::pages::StoreLimits,
}

impl ServiceTracing {
    /// Serves the built-in pages ([`pages`](crate::pages): recent traces, routes, errors,
    /// bottlenecks, each also as JSON) under `path` on the router [`init`](Self::init)
    /// returns, outside the tracing layer. Only loopback peers may read them unless
    /// [`pages_access`](Self::pages_access) says otherwise. Feature `pages`.
    ///
    /// ```
    /// let builder = service_tracing::ServiceTracing::builder("shop").pages("/_tracing");
    /// # let _ = builder;
    /// ```
    pub fn pages(mut self, path: impl Into<String>) -> Self {
        self.pages.route = Some(path.into());
        self
    }

    /// Who may read the built-in pages (default: loopback peers only).
    ///
    /// ```
    /// use service_tracing::pages::PagesAccess;
    /// let builder = service_tracing::ServiceTracing::builder("shop")
    ///     .pages("/_tracing")
    ///     .pages_access(PagesAccess::loopback().with_bearer_token("s3cret"));
    /// # let _ = builder;
    /// ```
    pub fn pages_access(mut self, access: crate::pages::PagesAccess) -> Self {
        self.pages.access = access;
        self
    }

    /// The bounds of the pages' recent-trace store (default: 2,000 traces, 16 MiB, 256 spans
    /// and 1 MiB per trace, 100 routes; see [`StoreLimits`](crate::pages::StoreLimits)). A
    /// bound out of its range fails [`init`](Self::init), naming it.
    ///
    /// ```
    /// use service_tracing::pages::StoreLimits;
    /// let builder = service_tracing::ServiceTracing::builder("shop")
    ///     .pages("/_tracing")
    ///     .pages_store_limits(StoreLimits::new().max_traces(500).max_bytes(4 << 20));
    /// # drop(builder);
    /// ```
    pub fn pages_store_limits(mut self, limits: crate::pages::StoreLimits) -> Self {
        self.pages.limits = limits;
        self
    }
}
