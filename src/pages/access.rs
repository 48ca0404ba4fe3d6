//! Who may read the pages: client networks (loopback by default) and bearer tokens, given as
//! a header or as the cookie the login form sets.
//!
//! A refused request learns nothing: `403` with an empty body when no token could open the
//! pages, else `401` with `WWW-Authenticate: Bearer` and, for a browser, the login form; never
//! the route list or the version. The login form's answer to a wrong token does not depend on
//! the token given: the comparison runs in constant time over the expected token's length.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_tracing_middleware::TrustIncoming;
// `subtle` (the dalek cryptography crates' constant-time primitives, already used by the
// health route) rather than a hand-written loop the optimiser may cut short: its `ct_eq` and
// `Choice` are built so the compiler cannot turn the comparison into an early exit.
use subtle::{Choice, ConstantTimeEq as _};

use super::html;

/// The cookie the login form sets: the token, hex-encoded.
pub(crate) const COOKIE: &str = "service_tracing_pages";

/// Who may read the built-in pages
/// ([`ServiceTracing::pages_access`](crate::ServiceTracing::pages_access)).
///
/// By default only loopback peers ([`PagesAccess::loopback`]). The peer's address comes from
/// axum's `ConnectInfo` (serve with `into_make_service_with_connect_info::<SocketAddr>()`); a
/// request whose peer is unknown is let in only with a token. A token opens the pages from
/// anywhere, given as `Authorization: Bearer <token>` or through the login form at
/// `{pages}/login`, which sets an `HttpOnly`, `SameSite=Strict` cookie.
///
/// ```
/// use service_tracing::pages::PagesAccess;
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let office = PagesAccess::networks(["10.0.0.0/8"])?.with_bearer_token("s3cret");
/// let anywhere_with_token = PagesAccess::bearer_token("s3cret");
/// # drop((office, anywhere_with_token));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PagesAccess {
    networks: Option<TrustIncoming>,
    token: Option<Arc<[u8]>>,
}

impl fmt::Debug for PagesAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagesAccess")
            .field("networks", &self.networks)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Default for PagesAccess {
    fn default() -> Self {
        Self::loopback()
    }
}

impl PagesAccess {
    /// Loopback peers only (`127.0.0.0/8`, `::1`): the default.
    ///
    /// ```
    /// let access = service_tracing::pages::PagesAccess::loopback();
    /// # drop(access);
    /// ```
    pub fn loopback() -> Self {
        Self {
            networks: TrustIncoming::from_networks(["127.0.0.0/8", "::1/128"]).ok(),
            token: None,
        }
    }

    /// Peers in these networks (CIDR, or single addresses), instead of loopback.
    ///
    /// ```
    /// use service_tracing::pages::PagesAccess;
    /// assert!(PagesAccess::networks(["192.168.0.0/16"]).is_ok());
    /// assert!(PagesAccess::networks(["not a network"]).is_err());
    /// ```
    pub fn networks<I, S>(networks: I) -> Result<Self, crate::SetupError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        TrustIncoming::from_networks(networks)
            .map(|trust| Self {
                networks: Some(trust),
                token: None,
            })
            .map_err(|e| crate::SetupError::invalid("pages_access", &e.0, "a network (CIDR)"))
    }

    /// The token alone, from any network (loopback included, only with the token). An empty
    /// token lets no one in.
    ///
    /// ```
    /// let access = service_tracing::pages::PagesAccess::bearer_token("s3cret");
    /// # drop(access);
    /// ```
    pub fn bearer_token(token: impl Into<String>) -> Self {
        Self {
            networks: None,
            token: Some(token.into().into_bytes().into()),
        }
    }

    /// These networks, and the token from anywhere else.
    ///
    /// ```
    /// let access = service_tracing::pages::PagesAccess::loopback().with_bearer_token("s3cret");
    /// # drop(access);
    /// ```
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().into_bytes().into());
        self
    }

    /// Whether a token could open the pages (then the login form is served).
    pub(crate) fn takes_tokens(&self) -> bool {
        self.token.as_ref().is_some_and(|t| !t.is_empty())
    }

    /// `None` when `req` may read the pages, else the refusal.
    pub(crate) fn refuses(&self, req: &Request, base: &str) -> Option<Response> {
        if self.token_given(req.headers()) {
            return None;
        }
        if let Some(networks) = &self.networks {
            // `TrustIncoming` reads the same `ConnectInfo`; no peer, no entry.
            let known = req.extensions().get::<ConnectInfo<SocketAddr>>().is_some()
                || req.extensions().get::<SocketAddr>().is_some();
            if known && networks.is_trusted(req) {
                return None;
            }
        }
        Some(self.refusal(req.headers(), base))
    }

    /// `403` when no token could help, else `401` (with the login form for a browser).
    pub(crate) fn refusal(&self, headers: &HeaderMap, base: &str) -> Response {
        if !self.takes_tokens() {
            return StatusCode::FORBIDDEN.into_response();
        }
        let mut response = if wants_html(headers) {
            html::login(base, false).into_response()
        } else {
            ().into_response()
        };
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }

    /// Whether `headers` carry the token, as a bearer token or as the login cookie.
    fn token_given(&self, headers: &HeaderMap) -> bool {
        let Some(token) = self.token.as_ref().filter(|t| !t.is_empty()) else {
            return false;
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .any(|given| same_secret(given, token));
        bearer
            || headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
                .filter_map(from_hex)
                .any(|given| same_secret(&given, token))
    }

    /// Whether a token typed into the login form is the token.
    pub(crate) fn is_token(&self, given: &[u8]) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| !t.is_empty() && same_secret(given, t))
    }
}

/// `given == expected`, in a time that depends on `expected`'s length only: every byte of
/// `expected` is compared (with 0 past the end of `given`), and the lengths are compared too.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut equal: Choice = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        equal &= g.ct_eq(e);
    }
    bool::from(equal)
}

/// The cookie's value for `token`.
pub(crate) fn cookie_value(token: &[u8]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 8192 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether the client asks for HTML (a browser) rather than JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(
            !same_secret(b"s3cret\0", b"s3cret"),
            "a zero past the end is no match"
        );
    }

    #[test]
    fn cookie_values_read_back() {
        let value = cookie_value(b"a;b c");
        assert_eq!(from_hex(&value).as_deref(), Some(&b"a;b c"[..]));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
