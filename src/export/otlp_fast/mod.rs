//! A fast OTLP span exporter: [`SpanData`] encoded straight to protobuf bytes ([`encode`]),
//! posted by a thin hyper client ([`transport`]). It replaces `opentelemetry-otlp`'s conversion
//! to proto structs, grouping and `prost` encoding, which cost more per span than the request
//! that made it.
//!
//! Same settings as [`super::otlp::build`]: protocol, endpoint, headers, timeout, plus the extra
//! CA certificates for `https` endpoints ([`tls`], feature `tls`), gzip compression, and
//! retries after the OTLP specification ([`retry`]): a throttled or failing request is sent
//! again with backoff until it succeeds, is refused for good, or the export timeout runs out.
//! Retries run here, on the export thread: meanwhile the request path keeps pushing into the
//! bounded queue, which drops (and counts) what does not fit.

pub(crate) mod encode;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::{Compression, Resolved};
use crate::error::SetupError;
use crate::export::batch::{Sent, Tally};

use crate::wire::body::{gzip, set_grpc_prefix, GRPC_PREFIX, GZIP_LEVEL};
use crate::wire::transport::{Outcomes, Transport, Wire};
use encode::Encoder;

/// The fast OTLP exporter. The export worker keeps up to [`IN_FLIGHT`] calls waiting for
/// their answers (more than one only for a slow backend); each encodes under the state's lock
/// (an uncontended one: the worker thread encodes one batch at a time) into a buffer of its
/// own.
pub(crate) struct FastOtlpExporter {
    transport: Transport,
    state: Mutex<State>,
    shut_down: AtomicBool,
    /// Where rejected spans and retries are counted (the export worker's).
    tally: Arc<Tally>,
}

/// What is reused across batches.
struct State {
    encoder: Encoder,
    /// Output buffers, each lent out while its request is in flight (the encoded request, or
    /// with gzip the compressed one): at most one per export in flight is kept.
    buffers: Vec<Vec<u8>>,
    /// With gzip: the encoded request before compression.
    plain: Vec<u8>,
    /// With gzip: the deflate state, reset per batch rather than allocated (about 300 KB for
    /// miniz_oxide) as a new `GzEncoder` would.
    deflate: Option<flate2::Compress>,
}

impl State {
    fn new(compression: Compression) -> Self {
        Self {
            encoder: Encoder::default(),
            buffers: Vec::new(),
            plain: Vec::new(),
            deflate: match compression {
                Compression::Gzip => Some(flate2::Compress::new(GZIP_LEVEL, false)),
                Compression::None => None,
            },
        }
    }
}

impl fmt::Debug for FastOtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastOtlpExporter")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Builds the exporter. Needs no runtime itself; exports must run inside a tokio runtime with
/// I/O and time enabled. Fails on an `https` endpoint without the `tls` feature, an invalid URL
/// or invalid headers.
pub(crate) fn build(config: &Resolved) -> Result<FastOtlpExporter, SetupError> {
    let wire = Wire::from(config.protocol);
    let transport = Transport::new(
        wire,
        &config.endpoint,
        &config.headers,
        config.timeout,
        &config.tls,
    )?
    .with_compression(config.compression);
    Ok(FastOtlpExporter::new(transport))
}

impl FastOtlpExporter {
    fn new(transport: Transport) -> Self {
        Self {
            state: Mutex::new(State::new(transport.compression())),
            transport,
            shut_down: AtomicBool::new(false),
            tally: Arc::default(),
        }
    }

    /// Compresses at `level` instead of [`GZIP_LEVEL`] (the measurement comparing levels).
    #[cfg(test)]
    pub(crate) fn with_gzip_level(self, level: u32) -> Self {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deflate = Some(flate2::Compress::new(
            flate2::Compression::new(level),
            false,
        ));
        self
    }

    /// Counts rejected spans and retries into `tally` (the export worker's).
    pub(crate) fn with_tally(mut self, tally: Arc<Tally>) -> Self {
        self.tally = tally;
        self
    }

    /// Encodes a batch into the reused buffer, framed for the wire (and compressed when
    /// configured), and hands it out as the request body.
    fn encode<T: encode::Encodable>(&self, batch: &[T]) -> Result<Bytes, OTelSdkError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            encoder,
            buffers,
            plain,
            deflate,
        } = &mut *state;
        // Not cleared: the request overwrites an earlier one in place.
        let mut out = buffers.pop().unwrap_or_default();
        let grpc = self.transport.wire() == Wire::Grpc;
        let start = if grpc { GRPC_PREFIX } else { 0 };
        match deflate {
            None => encoder
                .encode_at(batch, &mut out, start)
                .map_err(OTelSdkError::InternalFailure)?,
            Some(deflate) => {
                encoder
                    .encode_at(batch, plain, 0)
                    .map_err(OTelSdkError::InternalFailure)?;
                out.clear();
                out.resize(start, 0);
                gzip(deflate, plain, &mut out)?;
            }
        }
        if grpc {
            set_grpc_prefix(&mut out, deflate.is_some())?;
        }
        Ok(Bytes::from(out))
    }

    /// Takes the buffer back once the transport has let go of it, for a later batch.
    fn reclaim(&self, body: Bytes) {
        if let Ok(bytes) = body.try_into_mut() {
            let buffer: Vec<u8> = bytes.into();
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.buffers.len() < IN_FLIGHT {
                state.buffers.push(buffer);
            }
        }
    }
}

/// Rejected spans and retries go to the export worker's tally.
impl Outcomes for Tally {
    fn rejected(&self, items: u64, reason: String) {
        self.reject(items, reason);
    }
    fn retried(&self) {
        self.retry();
    }
}

/// Exports in flight at most: over one HTTP/2 connection (gRPC) they are streams, over
/// HTTP/1.1 at most this many pooled connections. One batch per round trip capped delivery at
/// saturation (a collector 5 ms away took at most 512 spans per 5 ms); four keep a backend
/// within four round trips of the export thread, and their bodies (about 150 KB per 512
/// spans) bound the memory they hold. The worker starts more than one only while the queue
/// grows past a batch (`batch::run::start_at`): a near collector gets one at a time.
pub(crate) const IN_FLIGHT: usize = 4;

impl crate::export::batch::QueueExporter for FastOtlpExporter {
    /// Server records are encoded as they are: their request attributes never become
    /// `KeyValue`s.
    fn export_queued(
        &self,
        batch: Vec<crate::export::batch::Queued>,
    ) -> impl Future<Output = Sent> + Send {
        self.export_counted(batch)
    }

    fn in_flight(&self) -> usize {
        IN_FLIGHT
    }
}

/// One call's outcomes: rejections counted for the worker's accounting of this batch, and
/// passed on to the tally (the totals and the loss report).
struct CallOutcomes<'a> {
    tally: &'a Tally,
    rejected: AtomicU64,
}

impl Outcomes for CallOutcomes<'_> {
    fn rejected(&self, items: u64, reason: String) {
        self.rejected.fetch_add(items, Ordering::Relaxed);
        self.tally.reject(items, reason);
    }
    fn retried(&self) {
        self.tally.retry();
    }
}

impl FastOtlpExporter {
    /// Encodes `batch` now and sends it when polled; says how many of its spans the backend
    /// refused for good.
    fn export_counted<T: encode::Encodable>(
        &self,
        batch: Vec<T>,
    ) -> impl Future<Output = Sent> + Send + use<'_, T> {
        let body = if self.shut_down.load(Ordering::Acquire) {
            Err(OTelSdkError::AlreadyShutdown)
        } else if batch.is_empty() {
            Ok(None)
        } else {
            self.encode(&batch).map(Some)
        };
        let spans = batch.len() as u64;
        drop(batch);
        async move {
            let body = match body {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return Sent {
                        result: Ok(()),
                        rejected: Some(0),
                    }
                }
                Err(e) => {
                    return Sent {
                        result: Err(e),
                        rejected: Some(0),
                    }
                }
            };
            let outcomes = CallOutcomes {
                tally: &self.tally,
                rejected: AtomicU64::new(0),
            };
            let result = self
                .transport
                .deliver(&body, spans, "span", &outcomes)
                .await;
            self.reclaim(body);
            Sent {
                result,
                rejected: Some(outcomes.rejected.into_inner()),
            }
        }
    }

    /// Encodes `batch` now and sends it when polled.
    fn export_encodable<T: encode::Encodable>(
        &self,
        batch: Vec<T>,
    ) -> impl Future<Output = OTelSdkResult> + Send + use<'_, T> {
        let sent = self.export_counted(batch);
        async move { sent.await.result }
    }
}

impl SpanExporter for FastOtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.export_encodable(batch)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            Ok(())
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .encoder
            .set_resource(resource);
    }
}

#[cfg(test)]
pub(crate) mod tests;
