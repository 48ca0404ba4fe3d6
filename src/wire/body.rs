//! Request bodies for the wire, shared by every signal: the gRPC message prefix, and gzip
//! (RFC 1952) with a deflate state reused from one request to the next.

use bytes::Bytes;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::transport::Wire;
use crate::config::Compression;

/// Bytes of the gRPC message prefix: a compressed flag and a big-endian length.
pub(crate) const GRPC_PREFIX: usize = 5;

/// The deflate level: 1, the fastest. Measured on span batches (BENCHMARKS.md): 85 bytes per
/// span against 78 at level 6 (432 uncompressed), for about a fifth of level 6's CPU.
pub(crate) const GZIP_LEVEL: flate2::Compression = flate2::Compression::fast();

/// Turns encoded export requests (metrics, log records) into request bodies: compressed when
/// configured, framed for gRPC. Keeps its deflate state for the next request.
pub(crate) struct Framer {
    wire: Wire,
    deflate: Option<flate2::Compress>,
}

impl Framer {
    /// A framer for `wire`, compressing with `compression`.
    pub(crate) fn new(wire: Wire, compression: Compression) -> Self {
        Self {
            wire,
            deflate: match compression {
                Compression::Gzip => Some(flate2::Compress::new(GZIP_LEVEL, false)),
                Compression::None => None,
            },
        }
    }

    /// The body carrying `message`.
    pub(crate) fn frame(&mut self, message: &[u8]) -> Result<Bytes, OTelSdkError> {
        let grpc = self.wire == Wire::Grpc;
        let start = if grpc { GRPC_PREFIX } else { 0 };
        let mut out = Vec::with_capacity(start + message.len());
        out.resize(start, 0);
        match &mut self.deflate {
            Some(deflate) => gzip(deflate, message, &mut out)?,
            None => out.extend_from_slice(message),
        }
        if grpc {
            set_grpc_prefix(&mut out, self.deflate.is_some())?;
        }
        Ok(Bytes::from(out))
    }
}

/// Writes the gRPC prefix into the first [`GRPC_PREFIX`] bytes of `out`, which hold nothing
/// yet: the compressed flag and the length of the message after them.
pub(crate) fn set_grpc_prefix(out: &mut [u8], compressed: bool) -> OTelSdkResult {
    let len = u32::try_from(out.len() - GRPC_PREFIX).map_err(|_| {
        OTelSdkError::InternalFailure(format!(
            "an export request of {} bytes is too large for gRPC",
            out.len()
        ))
    })?;
    out[0] = u8::from(compressed);
    out[1..GRPC_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends `input` to `out` as one gzip member (RFC 1952), deflated by `deflate`, which is reset
/// first. flate2's `GzEncoder` writes the same bytes, but it owns a new deflate state per stream.
pub(crate) fn gzip(
    deflate: &mut flate2::Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> OTelSdkResult {
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("gzip");
        out
    }

    #[test]
    fn grpc_bodies_carry_the_prefix_and_gzip_bodies_unzip_to_the_message() {
        let message = b"an encoded export request, an encoded export request".repeat(20);
        let plain = Framer::new(Wire::Http, Compression::None)
            .frame(&message)
            .expect("framed");
        assert_eq!(&plain[..], &message[..]);

        let mut framer = Framer::new(Wire::Grpc, Compression::Gzip);
        for _ in 0..2 {
            // The reused deflate state gives a whole member each time.
            let body = framer.frame(&message).expect("framed");
            assert_eq!(body[0], 1, "the compressed flag");
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            assert_eq!(len, body.len() - GRPC_PREFIX);
            assert!(len < message.len() / 4, "{len} bytes");
            assert_eq!(gunzip(&body[GRPC_PREFIX..]), message);
        }

        let body = Framer::new(Wire::Grpc, Compression::None)
            .frame(&message)
            .expect("framed");
        assert_eq!(body[0], 0);
        assert_eq!(&body[GRPC_PREFIX..], &message[..]);
        let body = Framer::new(Wire::Http, Compression::Gzip)
            .frame(&message)
            .expect("framed");
        assert_eq!(gunzip(&body), message);
    }
}
