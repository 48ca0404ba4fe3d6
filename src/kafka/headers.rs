//! Kafka record headers as OpenTelemetry carriers: bytes read as UTF-8 or not at all, the
//! last value of a repeated key, and never a header the application set replaced.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use service_tracing_middleware::carrier::MAX_KEYS;

/// Reads trace headers out of Kafka record headers ([`BorrowedHeaders`] of a consumed record,
/// or [`OwnedHeaders`]): a value that is UTF-8 is read, anything else (bytes that are not
/// UTF-8, a null value) reads as absent. Keys are matched exactly, as Kafka compares them; the
/// propagators name them in lowercase. When a key repeats, its last value is read.
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
/// use service_tracing::kafka::KafkaHeaders;
/// use service_tracing_middleware::carrier::extract;
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "x-correlation-id", value: Some("c-7") });
/// assert_eq!(extract(&KafkaHeaders(&headers)).correlation_id().as_str(), "c-7");
/// ```
pub struct KafkaHeaders<'a, H: ?Sized = BorrowedHeaders>(pub &'a H);

impl<H: ?Sized> Clone for KafkaHeaders<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for KafkaHeaders<'_, H> {}

impl<H: Headers + ?Sized> fmt::Debug for KafkaHeaders<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaHeaders")
            .field("count", &self.0.count())
            .finish()
    }
}

impl<H: Headers + ?Sized> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = last_value(self.0, key)?;
        std::str::from_utf8(value).ok()
    }

    fn keys(&self) -> Vec<&str> {
        (0..self.0.count())
            .filter_map(|index| header_at(self.0, index))
            .map(|header| header.key)
            .take(MAX_KEYS)
            .collect()
    }
}

/// Writes trace headers into Kafka record headers, leaving alone every key already present
/// (the application set it on purpose). rdkafka's [`OwnedHeaders`] grows by value, so this
/// holds the headers and gives them back with [`into_headers`](Self::into_headers).
///
/// ```
/// use opentelemetry::propagation::Extractor as _;
/// use service_tracing::kafka::{KafkaHeaders, KafkaHeadersMut};
/// use service_tracing_middleware::carrier::CarrierPropagation;
/// use service_tracing_middleware::CorrelationId;
///
/// let cx = opentelemetry::Context::new().with_value(CorrelationId::parse("c-8").unwrap());
/// let mut headers = KafkaHeadersMut::new(None);
/// CarrierPropagation::new().inject(&cx, &mut headers);
/// let headers = headers.into_headers().expect("written");
/// assert_eq!(KafkaHeaders(&headers).get("x-correlation-id"), Some("c-8"));
/// ```
#[derive(Debug, Default)]
pub struct KafkaHeadersMut {
    headers: Option<OwnedHeaders>,
}

impl KafkaHeadersMut {
    /// Writes after `headers` (a record's own, if any).
    ///
    /// ```
    /// let headers = service_tracing::kafka::KafkaHeadersMut::new(Some(rdkafka::message::OwnedHeaders::new()));
    /// ```
    pub fn new(headers: Option<OwnedHeaders>) -> Self {
        Self { headers }
    }

    /// The headers, `None` when none were given and nothing was written.
    ///
    /// ```
    /// assert!(service_tracing::kafka::KafkaHeadersMut::new(None).into_headers().is_none());
    /// ```
    pub fn into_headers(self) -> Option<OwnedHeaders> {
        self.headers
    }
}

impl Injector for KafkaHeadersMut {
    fn set(&mut self, key: &str, value: String) {
        let headers = match self.headers.take() {
            Some(headers) if last_value_or_null(&headers, key) => headers,
            Some(headers) => headers.insert(Header {
                key,
                value: Some(&value),
            }),
            None => OwnedHeaders::new_with_capacity(4).insert(Header {
                key,
                value: Some(&value),
            }),
        };
        self.headers = Some(headers);
    }
}

/// The header at `index`, or `None`, also when rdkafka cannot give it: its `try_get` panics
/// on a header key that is not UTF-8 (Kafka does not check keys, so a foreign producer can
/// send one), and a record from the wire must never stop the consumer. The panic is caught
/// here and the header read as absent (the process's panic hook still reports it).
fn header_at<H: Headers + ?Sized>(headers: &H, index: usize) -> Option<Header<'_, &[u8]>> {
    catch_unwind(AssertUnwindSafe(|| headers.try_get(index)))
        .ok()
        .flatten()
}

/// The last value of `key`, when present and not null.
fn last_value<'h, H: Headers + ?Sized>(headers: &'h H, key: &str) -> Option<&'h [u8]> {
    (0..headers.count())
        .rev()
        .filter_map(|index| header_at(headers, index))
        .find(|header| header.key == key)
        .and_then(|header| header.value)
}

/// Whether `key` is present at all (with a value or null).
fn last_value_or_null<H: Headers + ?Sized>(headers: &H, key: &str) -> bool {
    (0..headers.count())
        .filter_map(|index| header_at(headers, index))
        .any(|header| header.key == key)
}

/// A record without headers.
pub(super) struct NoHeaders;

impl Extractor for NoHeaders {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}
