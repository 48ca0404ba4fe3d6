//! [`Webhook`]: where alerts are posted as JSON, with a timeout on every attempt and retries
//! with capped exponential backoff. Posting happens on the delivery thread
//! ([`super::delivery`]), never on a request's.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::notify::Counters;
use crate::error::SetupError;

/// The HTTP client the delivery thread posts with.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A webhook alerts are posted to: `POST` with a JSON body ([`Alert::to_json`]: the rule, the
/// figures, the group and its sample trace ids), `content-type: application/json`.
///
/// Every attempt (connect, send, read the answer) is bounded by [`timeout`](Self::timeout)
/// (default 5 s). A transport error, a timeout, a 5xx, a 408 or a 429 is retried up to
/// [`max_attempts`](Self::max_attempts) in all (default 4), waiting `initial`, `2 × initial`,
/// `4 × initial`... between attempts, each wait at most `max` ([`backoff`](Self::backoff),
/// default 500 ms and 30 s); another 4xx fails at once. At most
/// [`queue_size`](Self::queue_size) alerts (default 256) wait for delivery; more are dropped.
/// Delivered, failed, retried and dropped posts are counted in
/// [`AlertStats`](crate::errors::AlertStats).
///
/// Plain `http` only: for an `https` endpoint, post through a local relay.
///
/// [`Alert::to_json`]: crate::errors::Alert::to_json
///
/// ```
/// use std::time::Duration;
/// use service_tracing::errors::{AlertRule, ErrorTracking, Webhook, Window};
///
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let webhook = Webhook::new("http://alerts.internal:8080/hooks/errors")?
///     .header("authorization", "Bearer s3cret")?
///     .timeout(Duration::from_secs(2))
///     .max_attempts(5)
///     .backoff(Duration::from_millis(200), Duration::from_secs(10));
/// let errors = ErrorTracking::new()
///     .with_alert_rule(AlertRule::count(10, Window::OneMinute))
///     .with_webhook(webhook);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use]
pub struct Webhook {
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    queue_size: usize,
}

impl Webhook {
    /// A webhook posting to `url` (`http://host[:port]/path`). Fails, naming the setting, on a
    /// URL that does not parse, has no host, or is not `http`.
    ///
    /// ```
    /// use service_tracing::errors::Webhook;
    /// assert!(Webhook::new("http://127.0.0.1:9000/alerts").is_ok());
    /// assert!(Webhook::new("not a url").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self, SetupError> {
        let bad = |why: &str| SetupError::invalid("alert_webhook", url, why);
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad("an http:// URL").with_source(e))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "an http:// URL (https is not supported: post through a local relay)",
                ))
            }
            _ => return Err(bad("an http:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("an http:// URL with a host"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("service-tracing/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Self {
            uri,
            headers,
            timeout: Duration::from_secs(5),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            queue_size: 256,
        })
    }

    /// Adds a header to every post (such as an authorization). Fails on a name or value not
    /// valid in HTTP.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = service_tracing::errors::Webhook::new("http://127.0.0.1:9000/")?
    ///     .header("x-api-key", "k")?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, SetupError> {
        let invalid = || SetupError::invalid("alert_webhook header", name, "a valid HTTP header");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// The bound on each attempt (default 5 s, at least 1 ms).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = service_tracing::errors::Webhook::new("http://127.0.0.1:9000/")?
    ///     .timeout(std::time::Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Attempts per alert, the first included (default 4, at least 1).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = service_tracing::errors::Webhook::new("http://127.0.0.1:9000/")?.max_attempts(2);
    /// # Ok(()) }
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry, doubled for each next one, each at most `max`
    /// (default 500 ms and 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = service_tracing::errors::Webhook::new("http://127.0.0.1:9000/")?
    ///     .backoff(Duration::from_millis(100), Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Alerts waiting for delivery, at most (default 256, at least 1); more are dropped and
    /// counted.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = service_tracing::errors::Webhook::new("http://127.0.0.1:9000/")?.queue_size(32);
    /// # Ok(()) }
    /// ```
    pub fn queue_size(mut self, size: usize) -> Self {
        self.queue_size = size.max(1);
        self
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue_size
    }

    /// The waits between attempts: one fewer than the attempts.
    pub(crate) fn backoff_delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (0..self.max_attempts.saturating_sub(1)).map(|retry| {
            let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
            self.initial_backoff
                .checked_mul(factor)
                .unwrap_or(self.max_backoff)
                .min(self.max_backoff)
        })
    }

    /// The client posts go through; build inside the delivery runtime.
    pub(crate) fn client(&self) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.timeout));
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector)
    }

    /// Posts `body` until it is accepted, refused for good, or out of attempts; counts the
    /// outcome and the retries.
    pub(crate) async fn deliver(&self, client: &HttpClient, body: Bytes, counters: &Counters) {
        let mut delays = self.backoff_delays();
        loop {
            let retry =
                match tokio::time::timeout(self.timeout, self.post(client, body.clone())).await {
                    Ok(Ok(status)) if status.is_success() => {
                        Counters::add(&counters.delivered, 1);
                        return;
                    }
                    Ok(Ok(status)) => {
                        status.is_server_error()
                            || status == StatusCode::REQUEST_TIMEOUT
                            || status == StatusCode::TOO_MANY_REQUESTS
                    }
                    Ok(Err(())) | Err(_) => true,
                };
            match delays.next() {
                Some(delay) if retry => {
                    Counters::add(&counters.retries, 1);
                    tokio::time::sleep(delay).await;
                }
                _ => break,
            }
        }
        Counters::add(&counters.failed, 1);
    }

    async fn post(&self, client: &HttpClient, body: Bytes) -> Result<StatusCode, ()> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let response = client.request(request).await.map_err(|_| ())?;
        let status = response.status();
        // Read the answer to its end so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_name_the_setting() {
        for bad in [
            "",
            "no url",
            "ftp://x/",
            "https://hooks.example.com/x",
            "http:///x",
        ] {
            let err = Webhook::new(bad).expect_err(bad);
            assert!(err.to_string().contains("alert_webhook"), "{err}");
        }
        assert!(Webhook::new("http://127.0.0.1:1/x").is_ok());
        let bad_header =
            Webhook::new("http://127.0.0.1:1/x").and_then(|w| w.header("bad name", "v"));
        assert!(bad_header.is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_for_a_bounded_number_of_attempts() -> Result<(), SetupError> {
        let w = Webhook::new("http://127.0.0.1:1/")?
            .max_attempts(6)
            .backoff(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u64> = w.backoff_delays().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(w.clone().max_attempts(1).backoff_delays().count(), 0);
        assert_eq!(w.clone().max_attempts(0).backoff_delays().count(), 0);
        let huge = w
            .max_attempts(100)
            .backoff(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(huge.backoff_delays().count(), 99);
        assert!(huge.backoff_delays().all(|d| d <= Duration::from_secs(60)));
        Ok(())
    }
}
