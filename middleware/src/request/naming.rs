//! The request's method, route template (and its id) and the server span's name, interned per
//! route so the hot path allocates none of them (see `route_names`).

use std::borrow::Cow;

use http::Request;

use crate::route_names::{self, RouteId};
use crate::semconv;

/// The route template the router matched, if any.
#[cfg(feature = "axum")]
pub(crate) fn route_of<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str())
}

#[cfg(not(feature = "axum"))]
pub(crate) fn route_of<B>(_req: &Request<B>) -> Option<&str> {
    None
}

/// How one request is named.
pub(crate) struct Naming<'r> {
    /// `http.request.method`: a known method or `_OTHER`.
    pub(crate) method: &'static str,
    /// `http.request.method_original`, for a method outside the known ones.
    pub(crate) method_original: Option<&'r str>,
    /// `http.route`, when the router matched one.
    pub(crate) route: Option<Cow<'static, str>>,
    pub(crate) route_id: Option<RouteId>,
    /// `{METHOD} {route}`, the method alone without a route, `HTTP` for an unknown method.
    pub(crate) span_name: Cow<'static, str>,
}

impl<'r> Naming<'r> {
    /// Names the request of `method` to `route`.
    pub(crate) fn of(method: &'r http::Method, route: Option<&str>) -> Self {
        let (method, method_original) = match semconv::known_method(method) {
            Some(m) => (m, None),
            None => ("_OTHER", Some(method.as_str())),
        };
        let mut route_id = None;
        let (route, span_name) = match (route, method_original) {
            (Some(route), None) => match route_names::lookup(method, route) {
                Some((route, name, id)) => {
                    route_id = Some(id);
                    (Some(Cow::Borrowed(route)), Cow::Borrowed(name))
                }
                None => (
                    Some(Cow::Owned(route.to_owned())),
                    Cow::Owned(format!("{method} {route}")),
                ),
            },
            (Some(route), Some(_)) => match route_names::route_only(route) {
                Some((route, id)) => {
                    route_id = Some(id);
                    (Some(Cow::Borrowed(route)), Cow::Borrowed("HTTP"))
                }
                None => (Some(Cow::Owned(route.to_owned())), Cow::Borrowed("HTTP")),
            },
            (None, None) => (None, Cow::Borrowed(method)),
            (None, Some(_)) => (None, Cow::Borrowed("HTTP")),
        };
        Self {
            method,
            method_original,
            route,
            route_id,
            span_name,
        }
    }
}
