//! [`Tracing`]: the service the layer makes. Reads the request (`request`: parent context,
//! correlation id, naming, the server span), calls the inner service inside that context, and
//! hands the rest to the response future.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::{ResponseBody, State};
use crate::config::Config;
use crate::correlation::{self, CorrelationId};
use crate::future::{Echo, ResponseFuture};
use crate::observe::Observation;
use crate::request::headers::Present;
use crate::request::naming::{self, Naming};
use crate::request::{parent, span};

/// The layer added twice: the inner one passes the request through.
mod nested {
    use std::sync::atomic::{AtomicBool, Ordering};

    use opentelemetry::Context;

    use crate::scope::RequestScope;

    /// Whether the warning was logged (read-only once it was).
    static WARNED: AtomicBool = AtomicBool::new(false);

    /// Whether an outer layer already serves this request: its context, with the layer's
    /// value, is current while it calls and polls the service inside it. A lookup in the
    /// current context; nothing allocated. The first time, one warning for the process.
    pub(super) fn is_nested() -> bool {
        if !Context::map_current(|cx| RequestScope::of(cx).is_some()) {
            return false;
        }
        if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "service_tracing::layer",
                "TracingLayer added twice around the same service: the inner layer passes \
                 requests through (one server span per request); remove one of them"
            );
        }
        true
    }
}

/// The service [`TracingLayer`](crate::TracingLayer) wraps around yours.
#[derive(Clone)]
pub struct Tracing<S> {
    inner: S,
    config: Arc<Config>,
    /// Whether `inner.call` runs none of the application's code, so that the request's
    /// context need not be current around it (see [`call_runs_no_code`]).
    call_runs_no_code: bool,
}

/// Whether calling an `S` runs none of the application's code: true of axum's `Route` and
/// `Router`, whose `call` routes the request and boxes a future that calls the route's
/// service (the handler, `route_layer` services) when first polled, and the layer makes the
/// request's context current around every poll. Attaching the context around the `call`
/// too cost 53 ns a request (`cargo bench --bench primitives`).
///
/// Told by type name (`type_name` needs no `S: 'static`, which `TypeId` would add to the
/// layer's bounds). A name is not a unique id in general, but the only other types named
/// like these are the same axum types of another version, whose `call` does the same.
fn call_runs_no_code<S>() -> bool {
    #[cfg(feature = "axum")]
    {
        use std::any::type_name;
        let name = type_name::<S>();
        name == type_name::<axum::routing::Route>() || name == type_name::<axum::Router>()
    }
    #[cfg(not(feature = "axum"))]
    false
}

impl<S: fmt::Debug> fmt::Debug for Tracing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Tracing<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self {
            inner,
            config,
            call_runs_no_code: call_runs_no_code::<S>(),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Tracing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let route = naming::route_of(&req);
        if config.is_untraced(route.unwrap_or_else(|| req.uri().path())) || nested::is_nested() {
            return ResponseFuture::untraced(self.inner.call(req));
        }
        // The request's one clock reading at its start: the span's start time and a generated
        // correlation id's milliseconds are worked out from it (see `clock`).
        let start = crate::clock::Start::now();
        let present = Present::scan(req.headers(), &config.correlation_headers);
        let parent = parent::parent(config, &req, &present);
        let (id, source) = correlation::resolve_or(
            req.headers(),
            if present.correlation {
                &config.correlation_headers
            } else {
                &[]
            },
            correlation::from_baggage_with(parent.baggage(), &config.correlation_charset),
            &config.correlation_charset,
            || CorrelationId::generate_at(start.wall()),
        );
        let naming = Naming::of(req.method(), route);
        // Started before the span and the handler run, ended at the end of the body.
        let observation = (!config.observers.is_empty()).then(|| {
            Observation::start(
                &config.observers,
                start.at(),
                naming.method,
                naming.route.clone(),
                naming.route_id,
            )
        });
        let (cx, recording) = span::start(config, &req, &present, parent, &naming, &id, &start);
        let echo = Echo::for_request(&self.config, req.headers(), source, &id, recording);
        let called = if self.call_runs_no_code {
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        } else {
            let _guard = cx.clone().attach();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        };
        let state = Box::new(State {
            cx,
            id,
            echo,
            observation,
            started: recording.then(|| start.wall()),
        });
        match called {
            Ok(future) => ResponseFuture::traced(future, state),
            Err(panic) => ResponseFuture::panicked(panic, state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "axum")]
    fn only_axum_s_route_and_router_are_called_without_the_context() {
        assert!(call_runs_no_code::<axum::routing::Route>());
        assert!(call_runs_no_code::<axum::Router>());
        assert!(!call_runs_no_code::<axum::routing::MethodRouter>());
        assert!(!call_runs_no_code::<Tracing<axum::routing::Route>>());
    }
}
