//! Random ids made on the request path without shared state: span ids for requests the
//! sampler drops (see [`SamplerHint::ParentBased`](crate::SamplerHint::ParentBased)) and the
//! random bits of generated correlation ids.
//!
//! Both come from `fastrand`'s per-thread generator (wyrand, seeded from the OS per thread):
//! no lock, no atomic shared between threads, a few instructions per id. Neither id is a
//! secret; W3C Trace Context asks ids to be random and unique, not unpredictable.

use opentelemetry::trace::SpanId;

/// A random, valid (non-zero) span id.
pub(crate) fn span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

/// A UUIDv7 for `time`: 48 bits of Unix milliseconds, then 74 random bits.
pub(crate) fn uuid_v7_at(time: std::time::SystemTime) -> uuid::Uuid {
    let millis = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random = fastrand::u128(..).to_le_bytes();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_are_valid_and_differ() {
        let a = span_id();
        let b = span_id();
        assert_ne!(a, SpanId::INVALID);
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_version_7_of_their_time_and_differ() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let a = uuid_v7_at(std::time::SystemTime::now());
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = a.get_timestamp().expect("v7 has a timestamp").to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(
            millis >= before && millis <= before + 5_000,
            "{millis} vs {before}"
        );
        assert_ne!(a, uuid_v7_at(std::time::SystemTime::now()));
    }
}
