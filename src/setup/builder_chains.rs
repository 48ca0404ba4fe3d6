//! The builder's request chains (feature `redis`): the one setting that turns them on, and
//! the handle set-up starts from it.

use crate::error::SetupError;
use crate::request_chain::{Chains, RequestChains};

use super::ServiceTracing;

impl ServiceTracing {
    /// Keeps the chain of each correlation id: every server span, consumer span and outbound
    /// call that carried it, shared through error sharing's Redis
    /// ([`error_redis_url`](Self::error_redis_url) or `SERVICE_TRACING_ERRORS_REDIS_URL`) with
    /// every service using it, or local to the process without one. Off by default;
    /// `SERVICE_TRACING_REQUEST_CHAINS=true` (file key `errors.request_chains`) turns them on
    /// with the default settings when this is not called. Read
    /// them with [`TracingGuard::request_chain`](crate::TracingGuard::request_chain); see
    /// [`crate::request_chain`].
    ///
    /// ```
    /// use service_tracing::request_chain::RequestChains;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .request_chains(RequestChains::new().max_entries(100));
    /// ```
    pub fn request_chains(mut self, chains: RequestChains) -> Self {
        self.request_chains = Some(chains);
        self
    }

    /// The chains' thread, when they are on and tracing is not disabled; a bad Redis URL fails
    /// naming the setting, as for error sharing.
    pub(super) fn start_chains(&self, disabled: bool) -> Result<Option<Chains>, SetupError> {
        let config = self
            .request_chains
            .clone()
            .or_else(|| self.env.request_chains().then(RequestChains::new));
        let Some(config) = config.filter(|_| !disabled) else {
            return Ok(None);
        };
        let redis = match self.resolve_errors_redis_url() {
            Some((setting, url)) => Some(crate::errors::RedisSharing::parse(setting, url.trim())?),
            None => None,
        };
        Ok(Some(Chains::start(config, redis)))
    }
}
