//! Which of the headers the layer reads a request carries, found in one pass.
//!
//! Looking a header up in a `HeaderMap` hashes its name; the layer reads up to five
//! (`traceparent`, `tracestate`, `baggage` and the correlation-id headers), and most requests
//! carry none or one of them. One walk over the request's header names, comparing lengths
//! first, tells which are there (callgrind: about 550 instructions less for a request with a
//! `traceparent` and nothing else, 700 for one with none); only those are then looked up. The
//! walk keeps the value of a lone `traceparent`, the header most requests that carry one carry,
//! so that one is not looked up at all.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::propagation::{Traceparent, W3cHeaders};

/// The headers present, of those the layer reads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Present<'h> {
    /// `traceparent` (with its value when there is one only), `tracestate`, `baggage`.
    pub(crate) w3c: W3cHeaders<'h>,
    /// One of the configured correlation-id headers.
    pub(crate) correlation: bool,
    /// The first `user-agent` value, for the span's `user_agent.original` (found here, it is
    /// not looked up again).
    pub(crate) user_agent: Option<&'h HeaderValue>,
}

impl<'h> Present<'h> {
    /// Walks `headers`' names once (each value of a repeated header comes with its name).
    pub(crate) fn scan(headers: &'h HeaderMap, correlation: &[HeaderName]) -> Self {
        let mut present = Self::default();
        for (name, value) in headers {
            let name = name.as_str();
            match name {
                "traceparent" => {
                    // A second `traceparent` makes both invalid: leave it to the lookup.
                    present.w3c.traceparent = match present.w3c.traceparent {
                        Traceparent::Absent => Traceparent::One(value),
                        _ => Traceparent::LookUp,
                    };
                }
                "tracestate" => present.w3c.tracestate = true,
                "baggage" => present.w3c.baggage = true,
                _ => {
                    if name == "user-agent" && present.user_agent.is_none() {
                        present.user_agent = Some(value);
                    }
                    if !present.correlation {
                        present.correlation = correlation.iter().any(|c| c.as_str() == name);
                    }
                }
            }
        }
        present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_headers_there() {
        let correlation = [
            HeaderName::from_static("x-correlation-id"),
            HeaderName::from_static("x-request-id"),
        ];
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "test".parse().expect("valid"));
        headers.insert("traceparentx", "x".parse().expect("valid"));
        let present = Present::scan(&headers, &correlation);
        assert!(matches!(present.w3c.traceparent, Traceparent::Absent));
        assert!(!present.w3c.tracestate);
        assert!(!present.w3c.baggage && !present.correlation);

        headers.append("traceparent", "a".parse().expect("valid"));
        let present = Present::scan(&headers, &correlation);
        assert!(
            matches!(present.w3c.traceparent, Traceparent::One(v) if v.as_bytes() == b"a"),
            "a lone traceparent comes with its value"
        );
        headers.append("traceparent", "b".parse().expect("valid"));
        headers.insert("tracestate", "k=v".parse().expect("valid"));
        headers.insert("baggage", "k=v".parse().expect("valid"));
        headers.insert("x-request-id", "42".parse().expect("valid"));
        let present = Present::scan(&headers, &correlation);
        assert!(present.w3c.tracestate);
        assert!(present.w3c.baggage && present.correlation);
        assert!(
            matches!(present.w3c.traceparent, Traceparent::LookUp),
            "two traceparent headers: looked up, and refused there"
        );

        let present = Present::scan(&headers, &[]);
        assert!(!present.correlation, "no correlation header configured");
    }

    #[test]
    fn the_first_user_agent_value_is_kept() {
        let mut headers = HeaderMap::new();
        assert!(Present::scan(&headers, &[]).user_agent.is_none());
        headers.insert("user-agent", "first/1".parse().expect("valid"));
        headers.append("user-agent", "second/2".parse().expect("valid"));
        headers.insert("x-user-agent", "not/it".parse().expect("valid"));
        let present = Present::scan(&headers, &[HeaderName::from_static("user-agent")]);
        assert_eq!(
            present.user_agent.map(HeaderValue::as_bytes),
            Some(&b"first/1"[..]),
            "what `HeaderMap::get` gives"
        );
        assert!(present.correlation, "still matched as a correlation header");
    }
}
