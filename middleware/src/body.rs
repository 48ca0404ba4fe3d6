//! [`ResponseBody`]: keeps the request's context current while the body streams, and ends the
//! server span when the body ends (or is dropped).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Instant, SystemTime};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use pin_project_lite::pin_project;

use crate::correlation::CorrelationId;
use crate::future::Echo;
use crate::observe::Observation;
use crate::semconv;

/// Ends the span of its context when dropped, after reporting the request to the observers.
/// What a traced request carries from the call to the end of its body, in one allocation:
/// the response future and the body move only a pointer (moving the state itself cost more
/// copying than the allocation).
pub(crate) struct State {
    pub(crate) cx: Context,
    pub(crate) id: CorrelationId,
    pub(crate) echo: Echo,
    pub(crate) observation: Option<Observation>,
    /// The span's start time, when it records (its end is that plus the observed duration).
    pub(crate) started: Option<SystemTime>,
}

impl State {
    /// Marks the request as failed with `error_type` (what the observers are told).
    pub(crate) fn fail(&mut self, error_type: &'static str) {
        if let Some(observation) = self.observation.as_mut() {
            observation.error_type = Some(error_type.into());
        }
    }

    /// Ends the request: the observers are told, then the span ends, both at one reading of
    /// the clock.
    pub(crate) fn end(&mut self) {
        let observation = self.observation.take();
        let recording = self.echo.recording;
        // A span that does not record ends on its own when dropped: ending it here would
        // read the clock for a timestamp it throws away.
        if observation.is_none() && !recording {
            return;
        }
        let ended_at = Instant::now();
        let duration = observation.map(|observation| {
            observation.finish(&self.echo.config.observers, ended_at, &self.cx, &self.id)
        });
        if recording {
            // The start's wall time plus the observed duration: no second conversion.
            let end = match (self.started, duration) {
                (Some(started), Some(duration)) => started.checked_add(duration),
                _ => None,
            };
            let end = end.unwrap_or_else(|| crate::clock::wall(ended_at));
            self.cx.span().end_with_timestamp(end);
        }
    }
}

impl Drop for State {
    /// A request whose observation was not finished ended without a response.
    fn drop(&mut self) {
        if let Some(observation) = self.observation.take() {
            observation.abandon(&self.echo.config.observers);
        }
    }
}

/// Ends the request when dropped: tells the observers, then ends the server span.
pub(crate) struct SpanGuard(Box<State>);

impl SpanGuard {
    pub(crate) fn new(state: Box<State>) -> Self {
        Self(state)
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        let state = &mut *self.0;
        state.end();
    }
}

pin_project! {
    /// Response body of [`Tracing`](crate::Tracing): your body, with the span ended at its end.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        guard: Option<SpanGuard>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn traced(inner: B, guard: SpanGuard) -> Self {
        Self {
            inner: Some(inner),
            guard: Some(guard),
        }
    }

    pub(crate) fn untraced(inner: B) -> Self {
        Self {
            inner: Some(inner),
            guard: None,
        }
    }

    /// An empty body (the `500` that replaces a panic).
    pub(crate) fn empty(guard: SpanGuard) -> Self {
        Self {
            inner: None,
            guard: Some(guard),
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        task: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            this.guard.take();
            return Poll::Ready(None);
        };
        let polled = match this.guard.as_ref() {
            // A body that says it has ended runs no code of the application when polled (it
            // answers `None`): no context to attach for that.
            Some(guard) if !inner.is_end_stream() => {
                let _attached = guard.0.cx.clone().attach();
                inner.poll_frame(task)
            }
            _ => inner.poll_frame(task),
        };
        match &polled {
            Poll::Ready(None) => {
                this.guard.take();
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut guard) = this.guard.take() {
                    guard.0.fail("response_body");
                    let span = guard.0.cx.span();
                    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "response_body"));
                    span.set_status(Status::error("response body failed"));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}
