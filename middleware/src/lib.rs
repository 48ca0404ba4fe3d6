#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod body;
pub mod carrier;
pub mod cause;
mod clock;
mod config;
pub mod correlation;
#[cfg(feature = "axum")]
mod extract;
mod future;
#[doc(hidden)]
pub mod fuzzing;
mod hook;
mod ids;
mod layer;
mod observe;
pub mod propagation;
mod request;
mod route_names;
mod scope;
pub mod semconv;
mod service;
pub mod tracer;
mod trust;

pub use body::ResponseBody;
pub use cause::ErrorCause;
pub use config::SamplerHint;
pub use correlation::{CorrelationId, CorrelationIdCharset};
#[cfg(feature = "axum")]
pub use extract::MissingCorrelationId;
pub use future::ResponseFuture;
pub use hook::{RequestHead, ResponseHead, SpanHook};
pub use layer::TracingLayer;
pub use observe::{RequestObserver, RequestOutcome, RequestStart};
#[doc(hidden)]
pub use request::attributes::test_server_request;
pub use route_names::RouteId;
pub use scope::test_request_context;
pub use service::Tracing;
pub use tracer::SCOPE_NAME;
pub use trust::{InvalidNetwork, TrustIncoming};

/// The OpenTelemetry API this crate is built against, so users never link a second version.
pub use opentelemetry;
