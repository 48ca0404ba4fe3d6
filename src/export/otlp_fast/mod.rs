//! A fast OTLP span exporter: [`SpanData`] encoded straight to protobuf bytes ([`encode`]),
//! posted by a thin hyper client ([`transport`]). It replaces `opentelemetry-otlp`'s conversion
//! to proto structs, grouping and `prost` encoding, which cost more per span than the request
//! that made it.
//!
//! Same settings as [`super::otlp::build`]: protocol, endpoint, headers, timeout, plus the extra
//! CA certificates for `https` endpoints ([`tls`], feature `tls`).

mod encode;
pub(crate) mod tls;
pub(crate) mod transport;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::{Protocol, Resolved};
use crate::error::SetupError;

use encode::Encoder;
use transport::{Transport, Wire};

/// Bytes of the gRPC message prefix: a compressed flag and a big-endian length.
const GRPC_PREFIX: usize = 5;

/// The fast OTLP exporter. Export calls are expected one at a time (the export worker makes
/// them sequentially); a concurrent call still works, with a buffer of its own.
pub(crate) struct FastOtlpExporter {
    transport: Transport,
    state: Mutex<State>,
    shut_down: AtomicBool,
}

/// What is reused across batches.
#[derive(Default)]
struct State {
    encoder: Encoder,
    /// The output buffer, lent out while a request is in flight.
    buffer: Vec<u8>,
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
    )?;
    Ok(FastOtlpExporter::new(transport))
}

impl FastOtlpExporter {
    fn new(transport: Transport) -> Self {
        Self {
            transport,
            state: Mutex::new(State::default()),
            shut_down: AtomicBool::new(false),
        }
    }

    /// Encodes a batch into the reused buffer, framed for the wire, and hands it out as the
    /// request body.
    fn encode(&self, batch: &[SpanData]) -> Result<Bytes, OTelSdkError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { encoder, buffer } = &mut *state;
        // Not cleared: the request overwrites the last one in place.
        let mut out = std::mem::take(buffer);
        let grpc = self.transport.wire() == Wire::Grpc;
        let start = if grpc { GRPC_PREFIX } else { 0 };
        encoder
            .encode_at(batch, &mut out, start)
            .map_err(OTelSdkError::InternalFailure)?;
        if grpc {
            let len = u32::try_from(out.len() - GRPC_PREFIX).map_err(|_| {
                OTelSdkError::InternalFailure(format!(
                    "an export request of {} bytes is too large for gRPC",
                    out.len()
                ))
            })?;
            out[0] = 0; // not compressed
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
        drop(batch);
        async move {
            match body? {
                None => Ok(()),
                Some(body) => {
                    let result = self.transport.send(body.clone()).await;
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
