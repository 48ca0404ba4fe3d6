//! Span names and `http.route` values, interned per (method, route template).
//!
//! Route templates are few and live as long as the router, so each distinct `{METHOD} {route}`
//! name is made once and kept as a `&'static str`: no allocation per request for the span name
//! or the route attribute. The table is capped; past the cap, names are built per request.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// Most distinct route templates interned per process.
const MAX_ROUTES: usize = 1024;

/// A route template's place in the process's table of interned routes: the same template
/// has the same id in every layer of the process, and ids are dense from 0, below
/// [`RouteId::MAX`]. Observers index their per-route tables with it instead of hashing the
/// template on every request ([`RequestOutcome::route_id`](crate::RequestOutcome::route_id)).
///
/// ```
/// use service_tracing_middleware::RouteId;
/// assert_eq!(RouteId::MAX, 1024);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RouteId {
    index: u16,
    /// The interned template: [`template`](Self::template) reads no table.
    template: &'static str,
}

// One id per template: the index says it all.
impl PartialEq for RouteId {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl Eq for RouteId {}

impl std::hash::Hash for RouteId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}

impl PartialOrd for RouteId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RouteId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}

impl RouteId {
    /// No more route templates than this get an id (later ones have none).
    pub const MAX: usize = MAX_ROUTES;

    /// The id of the route template `route`, interning it as the layer does at its first
    /// request; `None` once [`MAX`](Self::MAX) templates have ids.
    ///
    /// ```
    /// use service_tracing_middleware::RouteId;
    /// let id = RouteId::of("/users/{id}").unwrap();
    /// assert_eq!(RouteId::of("/users/{id}"), Some(id));
    /// assert_ne!(RouteId::of("/orders/{id}"), Some(id));
    /// ```
    pub fn of(route: &str) -> Option<Self> {
        route_only(route).map(|(_, id)| id)
    }

    /// The id as an index, below [`MAX`](Self::MAX).
    ///
    /// ```
    /// # use service_tracing_middleware::RouteId;
    /// # fn show(id: RouteId) { assert!(id.index() < RouteId::MAX); }
    /// ```
    pub fn index(self) -> usize {
        usize::from(self.index)
    }

    /// The route template this id was given to (the id carries it: no table is read).
    ///
    /// ```
    /// use service_tracing_middleware::RouteId;
    /// let id = RouteId::of("/invoices/{id}").unwrap();
    /// assert_eq!(id.template(), Some("/invoices/{id}"));
    /// ```
    pub fn template(self) -> Option<&'static str> {
        Some(self.template)
    }
}

/// Interned names for one route template: the route itself and one span name per method.
struct Names {
    id: RouteId,
    route: &'static str,
    by_method: [Option<&'static str>; METHODS.len()],
}

use crate::semconv::KNOWN_METHODS as METHODS;

fn table() -> &'static RwLock<HashMap<Box<str>, Names>> {
    static TABLE: OnceLock<RwLock<HashMap<Box<str>, Names>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// One answer of [`lookup`], remembered by the thread that asked.
#[derive(Clone, Copy)]
struct Recent {
    /// Address of the route text asked about: axum hands every request of a route the same
    /// `Arc<str>`, so the address finds the entry and a comparison of the text confirms it.
    address: usize,
    method: usize,
    route: &'static str,
    name: &'static str,
    id: RouteId,
}

/// Entries of each thread's cache of recent answers.
const RECENT: usize = 32;

thread_local! {
    /// The shared table is behind a lock that every thread would touch on every request, and
    /// a lookup in it hashes the whole template: each thread keeps its recent answers here.
    static RECENT_ANSWERS: [std::cell::Cell<Option<Recent>>; RECENT] =
        const { [const { std::cell::Cell::new(None) }; RECENT] };
}

fn recent_slot(address: usize, method: usize) -> usize {
    let mixed = (address as u64 ^ method as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 59) as usize % RECENT
}

/// The interned route, `{METHOD} {route}` span name and route id, or `None` past the cap (or
/// for a method outside the known nine).
pub(crate) fn lookup(
    method: &'static str,
    route: &str,
) -> Option<(&'static str, &'static str, RouteId)> {
    let index = METHODS.iter().position(|m| *m == method)?;
    let address = route.as_ptr() as usize;
    let slot = recent_slot(address, index);
    let recent = RECENT_ANSWERS
        .try_with(|r| r[slot].get())
        .ok()
        .flatten()
        .filter(|r| r.address == address && r.method == index && r.route == route);
    if let Some(r) = recent {
        return Some((r.route, r.name, r.id));
    }
    let found = lookup_shared(method, index, route)?;
    let _ = RECENT_ANSWERS.try_with(|r| {
        r[slot].set(Some(Recent {
            address,
            method: index,
            route: found.0,
            name: found.1,
            id: found.2,
        }));
    });
    Some(found)
}

/// [`lookup`] in the shared table.
fn lookup_shared(
    method: &'static str,
    index: usize,
    route: &str,
) -> Option<(&'static str, &'static str, RouteId)> {
    if let Ok(t) = table().read() {
        if let Some(names) = t.get(route) {
            if let Some(name) = names.by_method[index] {
                return Some((names.route, name, names.id));
            }
        }
    }
    let mut t = table().write().ok()?;
    let names = entry(&mut t, route)?;
    let name = *names.by_method[index]
        .get_or_insert_with(|| Box::leak(format!("{method} {route}").into_boxed_str()));
    Some((names.route, name, names.id))
}

/// The names of `route` in the locked table, added when new; `None` past the cap.
fn entry<'t>(t: &'t mut HashMap<Box<str>, Names>, route: &str) -> Option<&'t mut Names> {
    if !t.contains_key(route) && t.len() >= MAX_ROUTES {
        return None;
    }
    let index = t.len() as u16;
    Some(t.entry(Box::from(route)).or_insert_with(|| {
        let template: &'static str = Box::leak(Box::from(route));
        Names {
            id: RouteId { index, template },
            route: template,
            by_method: [None; METHODS.len()],
        }
    }))
}

/// The interned route and its id, for a request whose method is none of the known nine (its
/// span is named `HTTP`): the same id as the route's known-method requests.
pub(crate) fn route_only(route: &str) -> Option<(&'static str, RouteId)> {
    if let Ok(t) = table().read() {
        if let Some(names) = t.get(route) {
            return Some((names.route, names.id));
        }
    }
    let mut t = table().write().ok()?;
    let names = entry(&mut t, route)?;
    Some((names.route, names.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once() {
        let (route, name, id) = lookup("GET", "/interned/{id}").expect("interned");
        assert_eq!((route, name), ("/interned/{id}", "GET /interned/{id}"));
        let (route2, name2, id2) = lookup("GET", "/interned/{id}").expect("interned");
        assert!(std::ptr::eq(name, name2) && std::ptr::eq(route, route2));
        assert_eq!(id, id2);
        let (_, _, post) = lookup("POST", "/interned/{id}").expect("interned");
        assert_eq!(post, id, "one id per route, whatever the method");
        let (_, _, other) = lookup("GET", "/interned/other").expect("interned");
        assert_ne!(other, id);
        assert!(other.index() < RouteId::MAX && id.index() < RouteId::MAX);
        assert_eq!(route_only("/interned/{id}").map(|r| r.1), Some(id));
        assert_eq!(
            lookup("POST", "/interned/{id}").map(|n| n.1),
            Some("POST /interned/{id}")
        );
        assert_eq!(lookup("_OTHER", "/interned/{id}"), None);
    }
}
