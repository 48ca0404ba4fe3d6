//! Trust boundary: whether a request may choose the trace it joins.
//!
//! A service on the public internet should not let strangers pick its trace ids (they could
//! join or pollute other traces) or plant baggage. An untrusted request's incoming context is
//! not continued: a new trace starts, with a span link to the incoming context so the two can
//! still be joined, and the incoming baggage is dropped. Its correlation id is still read from
//! the correlation headers (it is validated either way).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::{HeaderName, Request};
use ipnet::IpNet;

/// Which requests' incoming trace context (`traceparent`, `baggage`, ...) is trusted.
///
/// ```
/// use service_tracing_middleware::{TracingLayer, TrustIncoming};
///
/// // Public edge: never continue a stranger's trace.
/// let edge = TracingLayer::new().trust_incoming(TrustIncoming::never());
/// // Internal service: trust callers on the cluster network, or a header set by the gateway.
/// let internal = TracingLayer::new().trust_incoming(
///     TrustIncoming::from_networks(["10.0.0.0/8", "fd00::/8"]).unwrap()
///         .or_header("x-internal-caller"),
/// );
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct TrustIncoming {
    rule: Rule,
}

#[derive(Clone, Default)]
enum Rule {
    #[default]
    Always,
    Never,
    Any {
        networks: Vec<IpNet>,
        headers: Vec<HeaderName>,
    },
}

impl fmt::Debug for TrustIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Always => f.write_str("TrustIncoming::always()"),
            Rule::Never => f.write_str("TrustIncoming::never()"),
            Rule::Any { networks, headers } => f
                .debug_struct("TrustIncoming")
                .field("networks", networks)
                .field("headers", headers)
                .finish(),
        }
    }
}

/// A network in [`TrustIncoming::from_networks`] that does not parse as CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNetwork(pub String);

impl fmt::Display for InvalidNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid network {:?}: expected CIDR such as 10.0.0.0/8 or fd00::/8",
            self.0
        )
    }
}

impl std::error::Error for InvalidNetwork {}

impl TrustIncoming {
    /// Every request's context is continued (the default, for services behind a gateway).
    pub fn always() -> Self {
        Self { rule: Rule::Always }
    }

    /// No request's context is continued.
    pub fn never() -> Self {
        Self { rule: Rule::Never }
    }

    /// Requests whose peer address is in one of these networks (CIDR) are trusted. The peer is
    /// the connection's address (axum's `ConnectInfo<SocketAddr>`); without it, a request is
    /// not trusted by network.
    pub fn from_networks<I, S>(networks: I) -> Result<Self, InvalidNetwork>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .map(|n| {
                let n = n.as_ref();
                IpNet::from_str(n)
                    .or_else(|_| IpAddr::from_str(n).map(IpNet::from))
                    .map_err(|_| InvalidNetwork(n.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rule: Rule::Any {
                networks,
                headers: Vec::new(),
            },
        })
    }

    /// Requests carrying this header (for example one a gateway sets and strips from outside
    /// traffic) are trusted.
    pub fn when_header(name: impl AsRef<str>) -> Self {
        Self::never().or_header(name)
    }

    /// Also trusts requests carrying this header. An invalid header name is ignored.
    pub fn or_header(self, name: impl AsRef<str>) -> Self {
        let Ok(name) = HeaderName::from_bytes(name.as_ref().as_bytes()) else {
            return self;
        };
        match self.rule {
            Rule::Always => self,
            Rule::Never => Self {
                rule: Rule::Any {
                    networks: Vec::new(),
                    headers: vec![name],
                },
            },
            Rule::Any {
                networks,
                mut headers,
            } => {
                headers.push(name);
                Self {
                    rule: Rule::Any { networks, headers },
                }
            }
        }
    }

    /// Whether every request is trusted (nothing to check per request).
    pub(crate) fn is_always(&self) -> bool {
        matches!(self.rule, Rule::Always)
    }

    /// Whether this request's incoming context is trusted.
    pub fn is_trusted<B>(&self, req: &Request<B>) -> bool {
        match &self.rule {
            Rule::Always => true,
            Rule::Never => false,
            Rule::Any { networks, headers } => {
                headers.iter().any(|h| req.headers().contains_key(h))
                    || (!networks.is_empty()
                        && peer_ip(req).is_some_and(|ip| networks.iter().any(|n| n.contains(&ip))))
            }
        }
    }
}

#[cfg(feature = "axum")]
pub(crate) fn peer_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            req.extensions()
                .get::<std::net::SocketAddr>()
                .map(|a| a.ip())
        })
}

#[cfg(not(feature = "axum"))]
pub(crate) fn peer_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> Request<()> {
        let mut req = Request::new(());
        let addr: std::net::SocketAddr = format!("{ip}:1234").parse().expect("addr");
        req.extensions_mut().insert(addr);
        req
    }

    #[test]
    fn networks_and_headers() {
        let trust = TrustIncoming::from_networks(["10.0.0.0/8", "::1"])
            .expect("valid")
            .or_header("x-internal");
        assert!(trust.is_trusted(&from("10.1.2.3")));
        assert!(!trust.is_trusted(&from("11.1.2.3")));
        let v6: Request<()> = {
            let mut r = Request::new(());
            r.extensions_mut()
                .insert("[::1]:80".parse::<std::net::SocketAddr>().expect("addr"));
            r
        };
        assert!(trust.is_trusted(&v6));
        let mut with_header = from("11.1.2.3");
        with_header
            .headers_mut()
            .insert("x-internal", http::HeaderValue::from_static("1"));
        assert!(trust.is_trusted(&with_header));
        assert!(
            !trust.is_trusted(&Request::new(())),
            "no peer address, no header"
        );
    }

    #[test]
    fn always_never_and_bad_networks() {
        assert!(TrustIncoming::always().is_trusted(&Request::new(())));
        assert!(!TrustIncoming::never().is_trusted(&from("10.0.0.1")));
        assert_eq!(
            TrustIncoming::from_networks(["10.0.0.0/33"]).map(|_| ()),
            Err(InvalidNetwork("10.0.0.0/33".to_owned()))
        );
    }
}
