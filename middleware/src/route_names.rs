//! Span names and `http.route` values, interned per (method, route template).
//!
//! Route templates are few and live as long as the router, so each distinct `{METHOD} {route}`
//! name is made once and kept as a `&'static str`: no allocation per request for the span name
//! or the route attribute. The table is capped; past the cap, names are built per request.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// Most distinct route templates interned per process.
const MAX_ROUTES: usize = 1024;

/// Interned names for one route template: the route itself and one span name per method.
struct Names {
    route: &'static str,
    by_method: [Option<&'static str>; METHODS.len()],
}

use crate::semconv::KNOWN_METHODS as METHODS;

fn table() -> &'static RwLock<HashMap<Box<str>, Names>> {
    static TABLE: OnceLock<RwLock<HashMap<Box<str>, Names>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// The interned route and `{METHOD} {route}` span name, or `None` past the cap (or for a
/// method outside the known nine).
pub(crate) fn lookup(method: &'static str, route: &str) -> Option<(&'static str, &'static str)> {
    let index = METHODS.iter().position(|m| *m == method)?;
    if let Ok(t) = table().read() {
        if let Some(names) = t.get(route) {
            if let Some(name) = names.by_method[index] {
                return Some((names.route, name));
            }
        }
    }
    let mut t = table().write().ok()?;
    if !t.contains_key(route) && t.len() >= MAX_ROUTES {
        return None;
    }
    let names = t.entry(Box::from(route)).or_insert_with(|| Names {
        route: Box::leak(Box::from(route)),
        by_method: [None; METHODS.len()],
    });
    let name = *names.by_method[index]
        .get_or_insert_with(|| Box::leak(format!("{method} {route}").into_boxed_str()));
    Some((names.route, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once() {
        let (route, name) = lookup("GET", "/interned/{id}").expect("interned");
        assert_eq!((route, name), ("/interned/{id}", "GET /interned/{id}"));
        let (route2, name2) = lookup("GET", "/interned/{id}").expect("interned");
        assert!(std::ptr::eq(name, name2) && std::ptr::eq(route, route2));
        assert_eq!(
            lookup("POST", "/interned/{id}").map(|n| n.1),
            Some("POST /interned/{id}")
        );
        assert_eq!(lookup("_OTHER", "/interned/{id}"), None);
    }
}
