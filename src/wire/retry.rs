//! What an export response means, after the OTLP specification's "Failures" and "Throttling"
//! sections (opentelemetry-proto `docs/specification.md`), and how long to wait before the next
//! attempt.
//!
//! - OTLP/HTTP: 2xx is success (its body may report a partial success); 429, 502, 503 and 504
//!   are retried, after `Retry-After` (seconds or an HTTP date) when the server sends one; every
//!   other status is final.
//! - OTLP/gRPC: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS` and
//!   `CANCELLED` are retried, `RESOURCE_EXHAUSTED` only when the status carries a
//!   `google.rpc.RetryInfo` (the server says it will recover), after its `retry_delay`; every
//!   other code is final. A gRPC call answered with an HTTP error (a proxy in front of the
//!   collector) is read through gRPC's HTTP-to-status mapping.
//! - No answer at all (connection refused or reset) is retried.
//!
//! The waits grow exponentially with jitter ([`Backoff`]) and all of them fit in the export
//! timeout: a wait that would end past it gives up at once.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

/// The first wait when the server names none.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait the backoff grows to (a server's own delay may be longer).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `google.rpc.RetryInfo`'s type URL inside `google.rpc.Status.details`.
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// What to do with a failed attempt's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it again, not before the delay the server asked for, if any.
    Retry(Option<Duration>),
    /// Never send it again: the server refused it for good.
    Drop,
}

/// gRPC status codes ([`grpc_status`] reads them).
pub(crate) mod code {
    pub(crate) const CANCELLED: u32 = 1;
    pub(crate) const UNKNOWN: u32 = 2;
    pub(crate) const DEADLINE_EXCEEDED: u32 = 4;
    pub(crate) const PERMISSION_DENIED: u32 = 7;
    pub(crate) const RESOURCE_EXHAUSTED: u32 = 8;
    pub(crate) const ABORTED: u32 = 10;
    pub(crate) const OUT_OF_RANGE: u32 = 11;
    pub(crate) const UNIMPLEMENTED: u32 = 12;
    pub(crate) const INTERNAL: u32 = 13;
    pub(crate) const UNAVAILABLE: u32 = 14;
    pub(crate) const DATA_LOSS: u32 = 15;
    pub(crate) const UNAUTHENTICATED: u32 = 16;
}

/// An OTLP/HTTP error status: retried only for 429, 502, 503 and 504, after `retry_after` (the
/// `Retry-After` header) when it parses.
pub(crate) fn http_status(status: u16, retry_after: Option<&[u8]>, now: SystemTime) -> Verdict {
    match status {
        429 | 502 | 503 | 504 => {
            Verdict::Retry(retry_after.and_then(|v| parse_retry_after(v, now)))
        }
        _ => Verdict::Drop,
    }
}

/// A gRPC status code other than `OK`, with the delay of the `RetryInfo` the status carried.
pub(crate) fn grpc_status(code: u32, retry_delay: Option<Duration>) -> Verdict {
    match code {
        code::CANCELLED
        | code::DEADLINE_EXCEEDED
        | code::ABORTED
        | code::OUT_OF_RANGE
        | code::UNAVAILABLE
        | code::DATA_LOSS => Verdict::Retry(retry_delay),
        // Retryable only when the server says recovery is possible.
        code::RESOURCE_EXHAUSTED if retry_delay.is_some() => Verdict::Retry(retry_delay),
        _ => Verdict::Drop,
    }
}

/// The gRPC status a client reports for a non-200 HTTP answer to a gRPC call (gRPC's
/// `http-grpc-status-mapping.md`): 429, 502, 503, 504 are `UNAVAILABLE`, and so retried.
pub(crate) fn grpc_code_of_http(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `Retry-After`: a number of seconds, or an HTTP date (the wait is until then, zero if it has
/// passed). Anything else is `None`, and the default backoff applies.
pub(crate) fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only; beyond u64 it is absurd anyway: treat as malformed.
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `google.rpc.Status`, as gRPC sends it base64-encoded in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The `retry_delay` of the `RetryInfo` in a `grpc-status-details-bin` value, if it holds one.
/// Malformed base64 or protobuf, or a negative delay, is `None`.
pub(crate) fn retry_info(details_bin: &[u8]) -> Option<Duration> {
    use prost::Message as _;
    // gRPC writes binary metadata unpadded, but peers may pad it.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(details_bin.trim_ascii()).ok()?;
    let status = RpcStatus::decode(bytes.as_slice()).ok()?;
    let info = status
        .details
        .iter()
        .find(|any| any.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos))
}

/// Exponential backoff with jitter: each wait is drawn from the upper half of a window that
/// doubles from 1 s up to 5 s ("equal jitter": never much shorter than planned, and clients
/// throttled together spread out). A delay the server asked for is a floor.
#[derive(Debug)]
pub(crate) struct Backoff {
    window: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self::with_rng(fastrand::Rng::new())
    }

    /// A backoff drawing its jitter from `rng` (seeded in tests).
    pub(crate) fn with_rng(rng: fastrand::Rng) -> Self {
        Self {
            window: INITIAL_BACKOFF,
            rng,
        }
    }

    /// How long to wait before the next attempt; `server` is the delay the server asked for.
    pub(crate) fn next_wait(&mut self, server: Option<Duration>) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(MAX_BACKOFF);
        let half = window / 2;
        let jitter = self.rng.u64(0..=half.as_millis() as u64);
        let planned = half + Duration::from_millis(jitter);
        match server {
            Some(asked) => planned.max(asked),
            None => planned,
        }
    }
}

/// A `grpc-status-details-bin` value holding a `RetryInfo` of `delay`, as a server sends it.
#[cfg(test)]
pub(crate) fn retry_info_bin(delay: Duration) -> Vec<u8> {
    use prost::Message as _;
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let status = RpcStatus {
        code: 8,
        message: "slow down".to_owned(),
        details: vec![Any {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(status.encode_to_vec())
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // 2026-12-05T12:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_472_000)
    }

    #[test]
    fn http_statuses_the_specification_names_are_retried_and_others_dropped() {
        for status in [429, 502, 503, 504] {
            assert_eq!(
                http_status(status, None, now()),
                Verdict::Retry(None),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 405, 408, 413, 415, 500, 501, 505] {
            assert_eq!(http_status(status, None, now()), Verdict::Drop, "{status}");
        }
        // A Retry-After on a final status changes nothing.
        assert_eq!(http_status(400, Some(b"1"), now()), Verdict::Drop);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_honoured() {
        assert_eq!(
            http_status(429, Some(b"1"), now()),
            Verdict::Retry(Some(Duration::from_secs(1)))
        );
        assert_eq!(
            http_status(503, Some(b" 120 "), now()),
            Verdict::Retry(Some(Duration::from_secs(120)))
        );
        assert_eq!(
            parse_retry_after(b"Sat, 05 Dec 2026 12:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after(b"Sat, 05 Dec 2026 11:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_malformed_retry_after_falls_back_to_the_default_backoff() {
        for bad in [
            &b""[..],
            b"-1",
            b"1.5",
            b"soon",
            b"99999999999999999999999",
            b"\xff\xfe",
            b"Sat, 32 Dec 2026 12:00:30 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
            assert_eq!(
                http_status(429, Some(bad), now()),
                Verdict::Retry(None),
                "{bad:?}"
            );
        }
        let mut backoff = Backoff::with_rng(fastrand::Rng::with_seed(7));
        let wait = backoff.next_wait(parse_retry_after(b"soon", now()));
        assert!(
            (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&wait),
            "{wait:?}"
        );
    }

    #[test]
    fn grpc_codes_are_classified_as_the_specification_says() {
        for code in [
            code::CANCELLED,
            code::DEADLINE_EXCEEDED,
            code::ABORTED,
            code::OUT_OF_RANGE,
            code::UNAVAILABLE,
            code::DATA_LOSS,
        ] {
            assert_eq!(grpc_status(code, None), Verdict::Retry(None), "{code}");
        }
        for code in [
            code::UNKNOWN,
            3, // INVALID_ARGUMENT
            5, // NOT_FOUND
            6, // ALREADY_EXISTS
            code::PERMISSION_DENIED,
            9, // FAILED_PRECONDITION
            code::UNIMPLEMENTED,
            code::INTERNAL,
            code::UNAUTHENTICATED,
            code::RESOURCE_EXHAUSTED,
            99,
        ] {
            assert_eq!(grpc_status(code, None), Verdict::Drop, "{code}");
        }
        // RESOURCE_EXHAUSTED is retried only with RetryInfo, after its delay.
        let delay = Some(Duration::from_millis(1500));
        assert_eq!(
            grpc_status(code::RESOURCE_EXHAUSTED, delay),
            Verdict::Retry(delay)
        );
        assert_eq!(grpc_status(code::UNAVAILABLE, delay), Verdict::Retry(delay));
        assert_eq!(grpc_status(3, delay), Verdict::Drop);
    }

    #[test]
    fn http_answers_to_grpc_calls_map_to_grpc_codes() {
        for status in [429, 502, 503, 504] {
            assert_eq!(grpc_code_of_http(status), code::UNAVAILABLE);
        }
        assert_eq!(grpc_code_of_http(400), code::INTERNAL);
        assert_eq!(grpc_code_of_http(401), code::UNAUTHENTICATED);
        assert_eq!(grpc_code_of_http(404), code::UNIMPLEMENTED);
        assert_eq!(grpc_code_of_http(500), code::UNKNOWN);
    }

    /// `grpc-status-details-bin` for a status holding `details`.
    fn details_bin(code: i32, details: Vec<(String, Vec<u8>)>, pad: bool) -> Vec<u8> {
        use prost::Message as _;
        let status = RpcStatus {
            code,
            message: "slow down".to_owned(),
            details: details
                .into_iter()
                .map(|(type_url, value)| Any { type_url, value })
                .collect(),
        };
        let bytes = status.encode_to_vec();
        let text = if pad {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        };
        text.into_bytes()
    }

    fn retry_info_value(seconds: i64, nanos: i32) -> Vec<u8> {
        use prost::Message as _;
        RetryInfo {
            retry_delay: Some(ProtoDuration { seconds, nanos }),
        }
        .encode_to_vec()
    }

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        let other = (
            "type.googleapis.com/google.rpc.ErrorInfo".to_owned(),
            vec![1, 2, 3],
        );
        let info = (RETRY_INFO_TYPE.to_owned(), retry_info_value(2, 500_000_000));
        for pad in [false, true] {
            let bin = details_bin(8, vec![other.clone(), info.clone()], pad);
            assert_eq!(retry_info(&bin), Some(Duration::from_millis(2500)), "{pad}");
        }
        // No RetryInfo among the details.
        assert_eq!(retry_info(&details_bin(8, vec![other], false)), None);
        assert_eq!(
            retry_info(&retry_info_bin(Duration::from_millis(200))),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn malformed_status_details_are_ignored_never_a_panic() {
        let negative = (RETRY_INFO_TYPE.to_owned(), retry_info_value(-1, 0));
        let bad_nanos = (
            RETRY_INFO_TYPE.to_owned(),
            retry_info_value(1, 2_000_000_000),
        );
        let garbage = (RETRY_INFO_TYPE.to_owned(), vec![0xff; 7]);
        for bin in [
            details_bin(8, vec![negative], false),
            details_bin(8, vec![bad_nanos], false),
            details_bin(8, vec![garbage], false),
            b"not base64 !".to_vec(),
            b"////".to_vec(),
            Vec::new(),
        ] {
            assert_eq!(retry_info(&bin), None, "{bin:?}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_keeps_the_server_delay_as_a_floor() {
        let mut backoff = Backoff::with_rng(fastrand::Rng::with_seed(1));
        let ms = Duration::from_millis;
        let windows = [1000, 2000, 4000, 5000, 5000];
        for window in windows {
            let wait = backoff.next_wait(None);
            assert!(
                (ms(window / 2)..=ms(window)).contains(&wait),
                "{wait:?} outside the window of {window} ms"
            );
        }
        let mut backoff = Backoff::with_rng(fastrand::Rng::with_seed(2));
        assert_eq!(
            backoff.next_wait(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // The window kept growing under the server's delay.
        let wait = backoff.next_wait(Some(ms(10)));
        assert!((ms(1000)..=ms(2000)).contains(&wait), "{wait:?}");
        // Jitter: two clients throttled together do not wait the same.
        let waits: Vec<Duration> = (0..8)
            .map(|seed| Backoff::with_rng(fastrand::Rng::with_seed(seed)).next_wait(None))
            .collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }
}
