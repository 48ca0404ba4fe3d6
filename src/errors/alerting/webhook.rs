//! [`Webhook`]: where alerts are posted as JSON, with a timeout on every attempt and retries
//! with capped exponential backoff. Posting happens on the delivery thread
//! ([`super::delivery`]), never on a request's.

use std::path::Path;
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
use crate::wire::tls::{PemFile, TlsConfig, TlsFiles};

/// The HTTP client the delivery thread posts with: plain for an `http` URL, TLS for `https`.
pub(crate) enum HttpClient {
    Plain(Client<HttpConnector, Full<Bytes>>),
    #[cfg(feature = "tls")]
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// Why a post got no answer.
enum PostError {
    /// Retrying cannot help: the server's certificate is not trusted, or TLS failed otherwise.
    Tls,
    /// A connection or protocol error: retried.
    Transport,
}

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
/// `https` URLs need the `tls` feature (on by default): rustls with the `ring` provider and the
/// same roots as the OTLP exporter (the system's trust store, else the Mozilla roots compiled
/// in), plus the CAs given with [`ca_certificate`](Self::ca_certificate).
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` is the exporter's and does not apply to webhooks. A
/// certificate that is not trusted fails the post at once (retrying cannot help), counted as
/// failed. Posts offer ALPN `h2` and `http/1.1`.
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
    extra_roots: TlsConfig,
}

impl Webhook {
    /// A webhook posting to `url` (`http://` or `https://host[:port]/path`). Fails, naming the
    /// setting, on a URL that does not parse, has no host, or is neither `http` nor `https`,
    /// and on an `https` URL without the `tls` feature.
    ///
    /// ```
    /// use service_tracing::errors::Webhook;
    /// assert!(Webhook::new("http://127.0.0.1:9000/alerts").is_ok());
    /// assert!(Webhook::new("https://hooks.example.com/alerts").is_ok()); // feature `tls`
    /// assert!(Webhook::new("not a url").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self, SetupError> {
        const EXPECTED: &str = "an http:// or https:// URL";
        let bad = |why: &str| SetupError::invalid("alert_webhook", url, why);
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(EXPECTED).with_source(e))?;
        match uri.scheme_str() {
            Some("http") => {}
            #[cfg(feature = "tls")]
            Some("https") => {}
            #[cfg(not(feature = "tls"))]
            Some("https") => {
                return Err(bad(
                    "an http:// URL (https needs the `tls` feature of service-tracing)",
                ))
            }
            _ => return Err(bad(EXPECTED)),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("a URL with a host"));
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
            extra_roots: TlsConfig::default(),
        })
    }

    /// Also trusts the CA certificates in this PEM file for an `https` webhook (a private CA,
    /// or a relay's self-signed certificate), beside the system's roots. The file is read now:
    /// an unreadable file, one without a certificate, or a certificate that is not a valid CA
    /// fails, naming `alert_webhook ca_certificate`. Each call replaces the previous file.
    /// Without the `tls` feature the file is not read (no `https` webhook can be made).
    ///
    /// ```
    /// use service_tracing::errors::Webhook;
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let webhook = Webhook::new("http://alerts.internal/hooks")?;
    /// # #[cfg(feature = "tls")]
    /// # {
    /// // With `.ca_certificate("/etc/ssl/alerts-ca.pem")?` on an https URL. A file that is not
    /// // there fails at once, naming the setting:
    /// let err = webhook.ca_certificate("/no/such/alerts-ca.pem").unwrap_err();
    /// assert!(err.to_string().contains("alert_webhook ca_certificate"));
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn ca_certificate(mut self, path: impl AsRef<Path>) -> Result<Self, SetupError> {
        self.extra_roots = TlsConfig::load(TlsFiles {
            ca: Some(PemFile::new("alert_webhook ca_certificate", path.as_ref())),
            ..TlsFiles::default()
        })?;
        Ok(self)
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
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        #[cfg(feature = "tls")]
        if self.uri.scheme_str() == Some("https") {
            // The TLS connector hands `https` URIs to the TCP connector.
            connector.enforce_http(false);
            let tls = crate::wire::tls::connector(false, &self.extra_roots, connector.clone());
            match tls {
                Ok(tls) => return HttpClient::Tls(builder.build(tls)),
                // Only a provider without a safe protocol version fails here; the plain client
                // then refuses the https URL, and every post counts as failed.
                Err(e) => eprintln!("service-tracing: the alert webhook cannot use TLS: {e}"),
            }
        }
        HttpClient::Plain(builder.build(connector))
    }

    /// Posts `body` until it is accepted, refused for good, or out of attempts; counts the
    /// outcome and the retries. `true` once answered with a 2xx.
    pub(crate) async fn deliver(
        &self,
        client: &HttpClient,
        body: Bytes,
        counters: &Counters,
    ) -> bool {
        let mut delays = self.backoff_delays();
        loop {
            let retry =
                match tokio::time::timeout(self.timeout, self.post(client, body.clone())).await {
                    Ok(Ok(status)) if status.is_success() => {
                        Counters::add(&counters.delivered, 1);
                        return true;
                    }
                    Ok(Ok(status)) => {
                        status.is_server_error()
                            || status == StatusCode::REQUEST_TIMEOUT
                            || status == StatusCode::TOO_MANY_REQUESTS
                    }
                    Ok(Err(PostError::Transport)) | Err(_) => true,
                    Ok(Err(PostError::Tls)) => false,
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
        false
    }

    async fn post(&self, client: &HttpClient, body: Bytes) -> Result<StatusCode, PostError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let sent = match client {
            HttpClient::Plain(client) => client.request(request).await,
            #[cfg(feature = "tls")]
            HttpClient::Tls(client) => client.request(request).await,
        };
        let response = sent.map_err(|e| {
            if crate::wire::transport::is_tls_error(&e) {
                PostError::Tls
            } else {
                PostError::Transport
            }
        })?;
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
            #[cfg(not(feature = "tls"))]
            "https://hooks.example.com/x",
            "http:///x",
            "https:///x",
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
    fn https_needs_the_tls_feature_and_a_bad_ca_file_names_the_setting() {
        let https = Webhook::new("https://hooks.example.com/x");
        assert_eq!(https.is_ok(), cfg!(feature = "tls"), "{https:?}");
        if let Err(err) = &https {
            assert!(err.to_string().contains("`tls` feature"), "{err}");
        }
        #[cfg(feature = "tls")]
        {
            let missing = std::env::temp_dir().join("service-tracing-no-such-ca.pem");
            let err = Webhook::new("https://hooks.example.com/x")
                .and_then(|w| w.ca_certificate(&missing))
                .expect_err("a missing CA file");
            let text = err.to_string();
            assert!(text.contains("alert_webhook ca_certificate"), "{text}");
            assert!(text.contains("no-such-ca.pem"), "{text}");
        }
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
