//! What the layer makes of a request before the handler runs, in the order it does it:
//!
//! 0. [`headers`]: which of the headers it reads the request carries, in one pass;
//! 1. [`parent`]: the incoming context (propagators) and whether to continue it (the trust
//!    boundary), or a new trace linked to it;
//! 2. the correlation id ([`correlation::resolve_with`](crate::correlation::resolve_with),
//!    framework-free, shared with the client crate);
//! 3. [`naming`]: the method, the route template and its id, and the span's name, interned;
//! 4. [`span`]: the server span, started from the parent (or, for an unsampled parent under a
//!    parent-based sampler, made without the tracer), with its attributes ([`attributes`]:
//!    the request's attributes as plain fields) when it records.
//!
//! [`Tracing::call`](crate::Tracing) strings these together; the response side is in
//! `future` (status, panics, echoed headers) and `body` (the span's end).

pub(crate) mod attributes;
pub(crate) mod headers;
pub(crate) mod naming;
pub(crate) mod parent;
pub(crate) mod span;
