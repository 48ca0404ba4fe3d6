//! [`ResponseFuture`]: attaches the request's context on every poll, catches panics, and hands
//! the span to the response body, which ends it.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};

use http::{HeaderName, HeaderValue, Response, StatusCode};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use pin_project_lite::pin_project;

use crate::body::{ResponseBody, SpanGuard, State};
use crate::config::Config;
use crate::correlation::CorrelationId;
use crate::semconv::{self, truncate};

pin_project! {
    /// Response future of [`Tracing`](crate::Tracing).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Untraced { #[pin] future: F },
        Traced {
            #[pin] future: F,
            state: Option<Box<State>>,
        },
        Panicked { state: Option<Box<State>>, message: String },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    truncate(message, semconv::MAX_ATTRIBUTE_LEN)
}

impl<F> ResponseFuture<F> {
    pub(crate) fn untraced(future: F) -> Self {
        Self {
            kind: Kind::Untraced { future },
        }
    }

    pub(crate) fn traced(future: F, state: Box<State>) -> Self {
        Self {
            kind: Kind::Traced {
                future,
                state: Some(state),
            },
        }
    }

    pub(crate) fn panicked(panic: Box<dyn Any + Send>, state: Box<State>) -> Self {
        Self {
            kind: Kind::Panicked {
                message: panic_message(&*panic),
                state: Some(state),
            },
        }
    }
}

/// Records a panic on the span and makes the `500` response that replaces it.
fn panic_response<B>(mut state: Box<State>, message: &str) -> Response<ResponseBody<B>> {
    // The request's root cause, unless an error recorded before the panic is.
    crate::cause::record_cause(&state.cx, || {
        crate::cause::ErrorCause::new("panic", message.to_owned()).with_class("panic")
    });
    {
        let span = state.cx.span();
        span.add_event(
            semconv::EXCEPTION_EVENT,
            vec![
                KeyValue::new(semconv::EXCEPTION_TYPE, "panic"),
                KeyValue::new(semconv::EXCEPTION_MESSAGE, message.to_owned()),
            ],
        );
        span.set_attributes([
            KeyValue::new(semconv::ERROR_TYPE, "panic"),
            KeyValue::new(semconv::HTTP_RESPONSE_STATUS_CODE, 500_i64),
        ]);
        span.set_status(Status::error(format!("panic: {message}")));
    }
    let _attached = state.cx.clone().attach();
    tracing::error!(
        target: "service_tracing::panic",
        panic_message = %message,
        "request handler panicked; answered 500"
    );
    drop(_attached);
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    state.echo.write(&mut response, &state.cx, &state.id);
    if let Some(o) = state.observation.as_mut() {
        o.status = Some(500);
        o.error_type = Some("panic".into());
    }
    response.map(|()| ResponseBody::empty(SpanGuard::new(state)))
}

/// The response headers the layer adds, and what the response head reads: the layer's
/// settings are read there through its `Arc` (one count, where copying each setting into the
/// request's state cost more).
pub(crate) struct Echo {
    pub(crate) config: Arc<Config>,
    /// The incoming header value that carried the (valid) correlation id, echoed as it is:
    /// cloning it costs a reference count, building a new one an allocation.
    pub(crate) incoming: Option<HeaderValue>,
    /// Whether the span records: response headers and hooks are read only then.
    pub(crate) recording: bool,
}

impl Echo {
    /// What to add to the response of a request whose span records or not (`recording`), its
    /// correlation id `id` read from `source`.
    pub(crate) fn for_request(
        config: &Arc<Config>,
        headers: &http::HeaderMap,
        source: crate::correlation::CorrelationSource,
        id: &CorrelationId,
        recording: bool,
    ) -> Self {
        // The header value the id came in, if it did: its bytes are exactly the id's.
        let incoming = match source {
            crate::correlation::CorrelationSource::Header => config
                .correlation_headers
                .iter()
                .filter_map(|name| headers.get(name))
                .find(|value| value.as_bytes() == id.as_str().as_bytes())
                .cloned(),
            _ => None,
        };
        Self {
            config: config.clone(),
            incoming,
            recording,
        }
    }

    /// Response headers to record on the span: only when configured and recording.
    fn response_headers(&self) -> Option<&crate::semconv::HeaderCapture> {
        let capture = &self.config.response_headers;
        (self.recording && !capture.is_empty()).then_some(capture)
    }

    /// Hooks to call at the response head: only when set and recording.
    fn span_hooks(&self) -> Option<&crate::hook::SpanHooks> {
        let hooks = &self.config.span_hooks;
        (self.recording && !hooks.is_empty()).then_some(hooks)
    }

    fn write<B>(&self, response: &mut Response<B>, cx: &Context, id: &CorrelationId) {
        if let Some(name) = &self.config.response_header {
            let value = match &self.incoming {
                Some(value) => Some(value.clone()),
                None => HeaderValue::from_str(id.as_str()).ok(),
            };
            if let Some(value) = value {
                response.headers_mut().insert(name.clone(), value);
            }
        }
        if self.config.traceresponse {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                let value = format!(
                    "00-{}-{}-{:02x}",
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags().to_u8()
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(TRACERESPONSE, value);
                }
            }
        }
    }
}

/// The W3C Trace Context Level 2 response header.
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Untraced { future } => {
                let response = ready!(future.poll(task))?;
                Poll::Ready(Ok(response.map(ResponseBody::untraced)))
            }
            KindProj::Panicked { state, message } => match state.take() {
                Some(state) => Poll::Ready(Ok(panic_response(state, message))),
                None => Poll::Pending,
            },
            KindProj::Traced { future, state } => {
                let Some(current) = state.as_ref() else {
                    return Poll::Pending;
                };
                let polled = {
                    let _guard = current.cx.clone().attach();
                    catch_unwind(AssertUnwindSafe(|| future.poll(task)))
                };
                let result = match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => result,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        return match state.take() {
                            Some(state) => Poll::Ready(Ok(panic_response(state, &message))),
                            None => Poll::Pending,
                        };
                    }
                };
                let Some(state) = state.take() else {
                    return Poll::Pending;
                };
                match result {
                    Ok(response) => Poll::Ready(Ok(traced_response(state, response))),
                    Err(error) => {
                        failed(state);
                        Poll::Ready(Err(error))
                    }
                }
            }
        }
    }
}

/// The inner service's response: status and `error.type` on the span, the response hooks,
/// the echoed headers; the state goes to the body, which ends the request.
fn traced_response<B>(
    mut state: Box<State>,
    mut response: Response<B>,
) -> Response<ResponseBody<B>> {
    let status = response.status();
    // A span that does not record keeps nothing: nothing is built for it (a 5xx's
    // `error.type` was a `String`).
    if state.echo.recording {
        let span = state.cx.span();
        span.set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_attribute(KeyValue::new(
                semconv::ERROR_TYPE,
                status.as_str().to_owned(),
            ));
            span.set_status(Status::error(""));
        }
        if let Some(capture) = state.echo.response_headers() {
            let mut captured = Vec::new();
            capture.record(response.headers(), &mut captured);
            span.set_attributes(captured);
        }
        if let Some(hooks) = state.echo.span_hooks() {
            let head = crate::hook::ResponseHead::of(&response);
            for hook in hooks.iter() {
                hook.on_response(&head, &span);
            }
        }
    }
    state.echo.write(&mut response, &state.cx, &state.id);
    if let Some(o) = state.observation.as_mut() {
        o.status = Some(status.as_u16());
        if status.is_server_error() {
            o.error_type = Some(Cow::Owned(status.as_str().to_owned()));
        }
    }
    let guard = SpanGuard::new(state);
    response.map(|body| ResponseBody::traced(body, guard))
}

/// The inner service failed (no response): `error.type` `_OTHER`, the observers told, the span
/// ended.
fn failed(mut state: Box<State>) {
    {
        let span = state.cx.span();
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "_OTHER"));
        span.set_status(Status::error("inner service failed"));
    }
    state.fail("_OTHER");
    state.end();
}
