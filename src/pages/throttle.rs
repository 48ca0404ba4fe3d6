//! Wrong tokens at the login form, counted per client: past [`MAX_FAILURES`] in a
//! [`WINDOW`], the client's next attempts get `429 Too Many Requests` with `Retry-After` until
//! its window ends, whatever token they carry, so guessing is slowed to a few tokens a minute.
//!
//! *Bounded.* At most [`CAPACITY`] clients are remembered; a new client past it takes the place
//! of the one seen longest ago, so a flood of peers costs a fixed table, never more memory.
//! (Such a flood can push a guesser's count out: it then needs as many addresses as the table
//! holds, for each few guesses.) IPv6 clients are counted per `/64`, the block one host
//! usually has; clients whose address is unknown share one count.
//!
//! *Off the service's path.* The table's lock is taken only by the login form's `POST`: no
//! other request of the pages, and none of the service's, ever waits on it.
//!
//! *Saying nothing.* Every wrong token counts the same, close or not, and the `429` does not
//! depend on the token given.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};

/// Wrong tokens a client may give per window.
pub(crate) const MAX_FAILURES: u32 = 5;
/// How long a client's count lasts from its first wrong token.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at most.
pub(crate) const CAPACITY: usize = 1_024;

/// Whom a count belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    V4([u8; 4]),
    /// The first 64 bits.
    V6([u8; 8]),
    Unknown,
}

impl Client {
    /// The peer of `req`, from axum's `ConnectInfo`.
    pub(crate) fn of(req: &Request) -> Self {
        let addr = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| req.extensions().get::<SocketAddr>().copied());
        match addr.map(|a| a.ip()) {
            Some(IpAddr::V4(ip)) => Self::V4(ip.octets()),
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&ip.octets()[..8]);
                    Self::V6(prefix)
                }
            },
            None => Self::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Count {
    /// When the window began (the first wrong token in it).
    since: Instant,
    failures: u32,
    last_seen: Instant,
}

/// The counts (see the module's notes).
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    clients: Mutex<HashMap<Client, Count>>,
}

impl LoginThrottle {
    /// `Some(wait)` when `client` has used up its attempts at `now`: answer 429 and retry
    /// after `wait`.
    pub(crate) fn refuses(&self, client: Client, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let count = clients.get(&client)?;
        let ends = count.since + WINDOW;
        (count.failures >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    /// Counts a wrong token from `client` at `now`.
    pub(crate) fn failed(&self, client: Client, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if !clients.contains_key(&client) && clients.len() >= CAPACITY {
            // Expired counts first, else the client seen longest ago.
            let gone = clients
                .iter()
                .min_by_key(|(_, c)| (now < c.since + WINDOW, c.last_seen))
                .map(|(k, _)| *k);
            if let Some(gone) = gone {
                clients.remove(&gone);
            }
        }
        let count = clients.entry(client).or_insert(Count {
            since: now,
            failures: 0,
            last_seen: now,
        });
        if now >= count.since + WINDOW {
            count.since = now;
            count.failures = 0;
        }
        count.failures = count.failures.saturating_add(1);
        count.last_seen = now;
    }

    /// Forgets `client`'s count: it gave the token.
    pub(crate) fn succeeded(&self, client: Client) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&client);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Client = Client::V4([203, 0, 113, 9]);
    const B: Client = Client::V4([203, 0, 113, 10]);

    #[test]
    fn a_client_is_refused_after_its_failures_until_its_window_ends() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(throttle.refuses(A, t0), None, "attempt {i}");
            throttle.failed(A, t0);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(throttle.refuses(A, later), Some(Duration::from_secs(40)));
        assert_eq!(throttle.refuses(B, later), None, "another client");
        assert_eq!(throttle.refuses(A, t0 + WINDOW), None, "a new window");
        throttle.failed(A, t0 + WINDOW);
        assert_eq!(throttle.refuses(A, t0 + WINDOW), None, "counted afresh");
    }

    #[test]
    fn the_right_token_clears_the_count() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(A, t0);
        }
        throttle.succeeded(A);
        throttle.failed(A, t0);
        assert_eq!(throttle.refuses(A, t0), None);
    }

    #[test]
    fn a_flood_of_clients_keeps_the_table_at_its_capacity() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.failed(A, t0);
        }
        for i in 0..(CAPACITY as u32 * 10) {
            let [_, b, c, d] = i.to_be_bytes();
            throttle.failed(Client::V4([10, b, c, d]), t0 + Duration::from_millis(1));
        }
        assert_eq!(throttle.len(), CAPACITY);
        assert_eq!(
            throttle.refuses(A, t0),
            None,
            "the client seen longest ago went first"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let request = |addr: &str| {
            let mut req = Request::new(axum::body::Body::empty());
            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{e}"));
            req.extensions_mut().insert(ConnectInfo(addr));
            Client::of(&req)
        };
        assert_eq!(
            request("[2001:db8:1:2::1]:1"),
            request("[2001:db8:1:2:ffff::9]:2")
        );
        assert_ne!(
            request("[2001:db8:1:2::1]:1"),
            request("[2001:db8:1:3::1]:1")
        );
        assert_eq!(request("[::ffff:203.0.113.9]:1"), A);
        assert_eq!(
            Client::of(&Request::new(axum::body::Body::empty())),
            Client::Unknown
        );
    }
}
