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
pub(crate) mod retry;
pub(crate) mod tls;
pub(crate) mod transport;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::{Compression, Protocol, Resolved};
use crate::error::SetupError;
use crate::export::batch::Tally;

use encode::Encoder;
use retry::Backoff;
use transport::{Attempt, Transport, Wire};

/// Bytes of the gRPC message prefix: a compressed flag and a big-endian length.
const GRPC_PREFIX: usize = 5;

/// The fast OTLP exporter. Export calls are expected one at a time (the export worker makes
/// them sequentially); a concurrent call still works, with a buffer of its own.
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
    /// The output buffer, lent out while a request is in flight (the encoded request, or with
    /// gzip the compressed one).
    buffer: Vec<u8>,
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
            buffer: Vec::new(),
            plain: Vec::new(),
            deflate: match compression {
                Compression::Gzip => Some(flate2::Compress::new(GZIP_LEVEL, false)),
                Compression::None => None,
            },
        }
    }
}

/// The deflate level: 1, the fastest. Measured on span batches (BENCHMARKS.md): 85 bytes per
/// span against 78 at level 6 (432 uncompressed), for about a fifth of level 6's CPU.
const GZIP_LEVEL: flate2::Compression = flate2::Compression::fast();

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
    let wire = match config.protocol {
        Protocol::Grpc => Wire::Grpc,
        Protocol::HttpProtobuf => Wire::Http,
    };
    let transport = Transport::new(
        wire,
        &config.endpoint,
        &config.headers,
        config.timeout,
        &config.extra_roots,
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
    fn encode(&self, batch: &[SpanData]) -> Result<Bytes, OTelSdkError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            encoder,
            buffer,
            plain,
            deflate,
        } = &mut *state;
        // Not cleared: the request overwrites the last one in place.
        let mut out = std::mem::take(buffer);
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
            let len = u32::try_from(out.len() - GRPC_PREFIX).map_err(|_| {
                OTelSdkError::InternalFailure(format!(
                    "an export request of {} bytes is too large for gRPC",
                    out.len()
                ))
            })?;
            out[0] = u8::from(deflate.is_some()); // the compressed flag
            out[1..GRPC_PREFIX].copy_from_slice(&len.to_be_bytes());
        }
        Ok(Bytes::from(out))
    }

    /// Takes the buffer back once the transport has let go of it, for the next batch.
    fn reclaim(&self, body: Bytes) {
        if let Ok(bytes) = body.try_into_mut() {
            let buffer: Vec<u8> = bytes.into();
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if buffer.capacity() > state.buffer.capacity() {
                state.buffer = buffer;
            }
        }
    }

    /// Sends one encoded batch of `spans` spans until the backend takes it, refuses it for
    /// good, or the export timeout (retries included) runs out.
    async fn deliver(&self, body: &Bytes, spans: u64) -> OTelSdkResult {
        let timeout = self.transport.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new();
        let mut attempts = 1_u32;
        loop {
            match self.transport.attempt(body.clone(), deadline).await {
                Attempt::Accepted { rejected, message } => {
                    if rejected > 0 || message.is_some() {
                        let rejected = rejected.min(spans);
                        let said = message.unwrap_or_default();
                        self.tally.reject(
                            rejected,
                            format!(
                                "{rejected} of {spans} span(s) rejected (partial success): {said}"
                            ),
                        );
                    }
                    return Ok(());
                }
                Attempt::Rejected { error } => {
                    self.tally.reject(spans, error.clone());
                    return Err(OTelSdkError::InternalFailure(error));
                }
                Attempt::Failed { error } => return Err(OTelSdkError::InternalFailure(error)),
                Attempt::TimedOut => return Err(OTelSdkError::Timeout(timeout)),
                Attempt::Retry { after, error } => {
                    let wait = backoff.next_wait(after);
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(OTelSdkError::InternalFailure(format!(
                            "{error} (gave up after {attempts} attempt(s): the next, in {wait:?}, would end past the export timeout of {timeout:?})"
                        )));
                    }
                    tokio::time::sleep(wait).await;
                    self.tally.retry();
                    attempts += 1;
                }
            }
        }
    }
}

/// Appends `input` to `out` as one gzip member (RFC 1952), deflated by `deflate`, which is reset
/// first. flate2's `GzEncoder` writes the same bytes, but it owns a new deflate state per stream.
fn gzip(deflate: &mut flate2::Compress, input: &[u8], out: &mut Vec<u8>) -> OTelSdkResult {
    // ID1 ID2, CM = deflate, no flags, no mtime, XFL = 4 (fastest), OS = 255 (unknown).
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
    let failed = |e: flate2::CompressError| {
        OTelSdkError::InternalFailure(format!("cannot gzip an export request: {e}"))
    };
    deflate.reset();
    out.extend_from_slice(&HEADER);
    // Deflate output is rarely larger than its input plus a little; grow if it is.
    out.reserve(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&input[consumed..], out, flate2::FlushCompress::Finish)
            .map_err(failed)?;
        consumed += (deflate.total_in() - before) as usize;
        if status == flate2::Status::StreamEnd {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    let mut crc = flate2::Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the input's length modulo 2^32.
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

impl SpanExporter for FastOtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
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
            match body? {
                None => Ok(()),
                Some(body) => {
                    let result = self.deliver(&body, spans).await;
                    self.reclaim(body);
                    result
                }
            }
        }
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
mod tests;
