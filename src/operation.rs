//! Operations, the keys of error groups, error rates and profiling alike: a span's operation
//! ([`operation_name`]), and a server request's (`{METHOD} {route}`, [`server_operation`]),
//! looked up without allocating once known ([`ServerKeys`]).

use std::collections::HashMap;

use opentelemetry::trace::SpanKind;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use service_tracing_middleware::RouteId;

use crate::attributes::{attr, bounded, string_attr, MAX_FIELD};

/// The operation everything past a bound on operations is counted under, by error rates
/// ([`DEFAULT_MAX_KEYS`](crate::errors::DEFAULT_MAX_KEYS), or the bound given) and profiling
/// alike.
pub const OTHER_OPERATION: &str = "_OTHER";

/// [`operation_name`] without building it when the span's name already is it: a server span
/// the layer named `{method} {route}` (its name is interned, so cloning it costs nothing).
pub(crate) fn operation_name_of(span: &SpanData) -> std::borrow::Cow<'static, str> {
    if span.span_kind == SpanKind::Server {
        let attrs = span.attributes.as_slice();
        let text = |key| match attr(attrs, key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        if let (Some(method), Some(route)) = (text("http.request.method"), text("http.route")) {
            if named_so(&span.name, method, route) {
                return span.name.clone();
            }
        }
    }
    std::borrow::Cow::Owned(operation_name(span))
}

/// Whether `name` is `{method} {route}`, each within the bound.
fn named_so(name: &str, method: &str, route: &str) -> bool {
    name.len() == method.len() + 1 + route.len()
        && name.starts_with(method)
        && name.as_bytes()[method.len()] == b' '
        && name.ends_with(route)
        && method.len() <= MAX_FIELD
        && route.len() <= MAX_FIELD
}

/// [`operation_name_of`] for a server span of the layer's own type, whose request attributes
/// (`method`, `route`) are kept apart from its `SpanData`.
#[allow(
    clippy::ptr_arg,
    reason = "the name is cloned: an interned name stays a borrowed `Cow`, with no copy"
)]
pub(crate) fn server_operation_of(
    name: &std::borrow::Cow<'static, str>,
    method: &str,
    route: Option<&str>,
) -> std::borrow::Cow<'static, str> {
    match route {
        Some(route) if named_so(name, method, route) => name.clone(),
        Some(route) => std::borrow::Cow::Owned(format!("{} {}", bounded(method), bounded(route))),
        None => std::borrow::Cow::Owned(bounded(name)),
    }
}

/// `{METHOD} {http.route}` for a server span, `{METHOD} {server.address}` for a client span,
/// else the span name (each part cut to 512 bytes): the operation an error is kept under and
/// profiling keys its latency by.
pub(crate) fn operation_name(span: &SpanData) -> String {
    let attrs = span.attributes.as_slice();
    let method = string_attr(attrs, "http.request.method");
    match span.span_kind {
        SpanKind::Server => string_attr(attrs, "http.route").map(|route| {
            let method = method
                .unwrap_or_else(|| span.name.split(' ').next().map(bounded).unwrap_or_default());
            format!("{method} {route}")
        }),
        SpanKind::Client => string_attr(attrs, "server.address").map(|address| {
            let method = method.unwrap_or_else(|| bounded(&span.name));
            format!("{method} {address}")
        }),
        _ => None,
    }
    .unwrap_or_else(|| bounded(&span.name))
}

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
    use opentelemetry::trace::Status;
    use opentelemetry::KeyValue;

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

    #[test]
    fn the_interned_operation_name_is_the_built_one_and_only_used_when_it_is() {
        let span =
            |kind: SpanKind, name: &str, attrs: Vec<KeyValue>| opentelemetry_sdk::trace::SpanData {
                span_context: opentelemetry::trace::SpanContext::empty_context(),
                parent_span_id: opentelemetry::trace::SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: kind,
                name: std::borrow::Cow::Owned(name.to_owned()),
                start_time: std::time::SystemTime::UNIX_EPOCH,
                end_time: std::time::SystemTime::UNIX_EPOCH,
                attributes: attrs,
                dropped_attributes_count: 0,
                events: Default::default(),
                links: Default::default(),
                status: Status::Unset,
                instrumentation_scope: Default::default(),
            };
        let route = |r: &str| {
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", r.to_owned()),
                KeyValue::new("server.address", "db"),
            ]
        };
        let long = format!("/{}", "r".repeat(MAX_FIELD + 10));
        for data in [
            span(SpanKind::Server, "GET /orders/{id}", route("/orders/{id}")),
            span(SpanKind::Server, "renamed", route("/orders/{id}")),
            span(SpanKind::Server, "GET /orders/{idx}", route("/orders/{id}")),
            span(SpanKind::Server, &format!("GET {long}"), route(&long)),
            span(SpanKind::Server, "GET", vec![]),
            span(SpanKind::Client, "GET", route("/x")),
            span(SpanKind::Internal, "work", vec![]),
        ] {
            assert_eq!(
                operation_name_of(&data),
                operation_name(&data),
                "{}",
                data.name
            );
        }
    }
}
