//! Server operation keys, shared by error rates and profiling: `{METHOD} {route}` per request,
//! looked up without allocating once known.

use std::collections::HashMap;

use service_tracing_middleware::RouteId;

/// A server request's operation: `{METHOD} {route}`, or the method alone when no route
/// matched (a raw path never becomes a key).
pub(crate) fn server_operation(method: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}

/// (method, route template) → the index of the operation in the caller's table.
#[derive(Debug, Default)]
pub(crate) struct ServerKeys {
    /// Route → (method, index); [`get`](Self::get) allocates nothing.
    by_route: HashMap<String, Vec<(String, usize)>>,
    /// Requests no route matched: (method, index).
    no_route: Vec<(String, usize)>,
    /// The same indexes by route id (the layer's interned route templates): no hashing.
    by_id: Vec<Vec<(&'static str, usize)>>,
}

impl ServerKeys {
    /// The index of (method, route), when known.
    pub(crate) fn get(&self, method: &str, route: Option<&str>) -> Option<usize> {
        let methods = match route {
            Some(route) => self.by_route.get(route)?,
            None => &self.no_route,
        };
        methods.iter().find(|(m, _)| m == method).map(|(_, i)| *i)
    }

    /// The index of (method, route id), when known: an array index and a short scan, for the
    /// requests of routes the layer interned.
    pub(crate) fn get_by_id(&self, method: &str, id: RouteId) -> Option<usize> {
        self.by_id
            .get(id.index())?
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, i)| *i)
    }

    /// Remembers that (method, route id) has `index` (as found by [`get`](Self::get) or
    /// given to [`insert`](Self::insert)). Methods outside the known ones are not kept.
    pub(crate) fn remember_id(&mut self, method: &str, id: RouteId, index: usize) {
        let Some(method) = service_tracing_middleware::semconv::KNOWN_METHODS
            .iter()
            .find(|m| **m == method)
        else {
            return;
        };
        if self.by_id.len() <= id.index() {
            self.by_id.resize_with(id.index() + 1, Vec::new);
        }
        if let Some(methods) = self.by_id.get_mut(id.index()) {
            if !methods.iter().any(|(m, _)| m == method) {
                methods.push((method, index));
            }
        }
    }

    /// Records the index of (method, route).
    pub(crate) fn insert(&mut self, method: &str, route: Option<&str>, index: usize) {
        let methods = match route {
            Some(route) => self.by_route.entry(route.to_owned()).or_default(),
            None => &mut self.no_route,
        };
        methods.push((method.to_owned(), index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_method_and_route_and_unmatched_requests_share_one_per_method() {
        let mut keys = ServerKeys::default();
        keys.insert("GET", Some("/orders/{id}"), 0);
        keys.insert("POST", Some("/orders/{id}"), 1);
        keys.insert("GET", None, 2);
        assert_eq!(keys.get("GET", Some("/orders/{id}")), Some(0));
        assert_eq!(keys.get("POST", Some("/orders/{id}")), Some(1));
        assert_eq!(keys.get("GET", None), Some(2));
        assert_eq!(keys.get("PUT", Some("/orders/{id}")), None);
        assert_eq!(keys.get("GET", Some("/orders/42")), None);
        assert_eq!(
            server_operation("GET", Some("/orders/{id}")),
            "GET /orders/{id}"
        );
        assert_eq!(server_operation("GET", None), "GET");
    }

    #[test]
    fn indexes_found_by_name_are_found_by_route_id_afterwards() {
        let id = RouteId::of("/operations/{id}").expect("an id");
        let mut keys = ServerKeys::default();
        keys.insert("GET", Some("/operations/{id}"), 3);
        assert_eq!(keys.get_by_id("GET", id), None, "not remembered yet");
        keys.remember_id("GET", id, 3);
        keys.remember_id("BREW", id, 9);
        assert_eq!(keys.get_by_id("GET", id), Some(3));
        assert_eq!(keys.get_by_id("POST", id), None);
        assert_eq!(
            keys.get_by_id("BREW", id),
            None,
            "unknown methods are not kept"
        );
    }
}
