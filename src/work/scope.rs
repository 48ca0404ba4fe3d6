//! [`InScope`]: a future run inside a work span, which ends the span when it completes.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use super::WorkSpan;

/// What a finished piece of work says about its outcome: an `Err` is recorded on the span
/// ([`WorkSpan::record_error`]), an `Ok` states success. Implemented for `Result<T, E>` with
/// `E: Error`, and `()`. A `Box<dyn Error>` is not an `Error` (nor can it be given one here
/// beside the general impl): record it with `in_scope_with` and `span.record_error(&*error)`.
///
/// ```
/// use service_tracing::work::{Outcome, WorkSpan};
/// let mut span = WorkSpan::none();
/// let done: Result<(), std::io::Error> = Ok(());
/// done.record_on(&mut span);
/// ```
pub trait Outcome {
    /// States this outcome on `span`.
    fn record_on(&self, span: &mut WorkSpan);
}

impl<T, E: Error> Outcome for Result<T, E> {
    fn record_on(&self, span: &mut WorkSpan) {
        match self {
            Ok(_) => span.succeed(),
            Err(error) => span.record_error(error),
        }
    }
}

impl Outcome for () {
    fn record_on(&self, span: &mut WorkSpan) {
        span.succeed();
    }
}

type OnOutput<G, O> = fn(&O, &mut G);

pin_project_lite::pin_project! {
    /// A future run inside the span of a guard `G` ([`WorkSpan`] or a helper's guard): the
    /// span is current in each poll, and when the future completes `on_output` states the
    /// outcome and the guard is dropped, ending the span. Dropped before it completes, the
    /// guard ends the span with `error.type` = `_OTHER`. See [`WorkSpan::in_scope`].
    #[must_use = "futures do nothing unless polled"]
    pub struct InScope<G, F, C = OnOutput<G, <F as Future>::Output>>
    where
        F: Future,
    {
        #[pin]
        future: F,
        guard: Option<G>,
        on_output: Option<C>,
    }
}

impl<G, F: Future, C> InScope<G, F, C> {
    /// `future` inside `guard`'s span, `on_output` called with its output.
    pub(crate) fn new(guard: G, future: F, on_output: C) -> Self {
        Self {
            future,
            guard: Some(guard),
            on_output: Some(on_output),
        }
    }
}

impl<G, F, C> Future for InScope<G, F, C>
where
    G: AsMut<WorkSpan> + AsRef<WorkSpan>,
    F: Future,
    C: FnOnce(&F::Output, &mut G),
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = {
            let _current = this.guard.as_ref().and_then(|guard| guard.as_ref().enter());
            ready!(this.future.poll(cx))
        };
        if let Some(mut guard) = this.guard.take() {
            if let Some(on_output) = this.on_output.take() {
                on_output(&output, &mut guard);
            }
            drop(guard);
        }
        Poll::Ready(output)
    }
}
