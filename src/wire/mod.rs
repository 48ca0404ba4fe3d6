//! How the library talks to backends, whatever it sends: the TLS set-up (`tls`: roots, extra
//! CAs, client certificates, the connector), the HTTP/1.1 and h2c/h2 transport with its
//! outcomes and refusal reports (`transport`), the OTLP retry and throttling rules (`retry`),
//! and the request bodies' framing and gzip (`body`). Span export (`export::otlp_fast`), the
//! metrics push (`metrics::otlp`), error log records and webhooks (`errors::alerting`) all use
//! it: it belongs to none of them.

pub(crate) mod body;
pub(crate) mod retry;
pub(crate) mod tls;
pub(crate) mod transport;
