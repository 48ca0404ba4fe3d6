//! Client spans for calls to other services that are not plain HTTP (HTTP calls have the
//! [traced client](crate::traced_client)): a gRPC stub, a cloud SDK, a message broker's
//! request-reply. [`call`] around each.
//!
//! | attribute | from |
//! |---|---|
//! | `service.peer.name` and `peer.service` | `service`, the logical name of the called service (`peer.service` is the deprecated name `service.peer.name` replaced; both are written, as most backends' service maps still read the old one) |
//! | `rpc.system`, `rpc.service`, `rpc.method` | [`Call::rpc`], when given |
//! | `server.address`, `server.port` | [`Call::server`], when given |
//!
//! The span is `Client`, named `{rpc.service}/{rpc.method}` for an RPC, else
//! `{service} {operation}`: both are templates, never ids. The RPC attributes are the
//! conventions' v1.37 ones: the RPC release candidate after it renamed them
//! (`rpc.system.name`, a fully-qualified `rpc.method`, no `rpc.service`) and asks existing
//! instrumentations to keep emitting v1.37 until the RPC conventions are stable.
//! Errors are classified High / `dependency`, timeouts Medium / `timeout`.
//!
//! ```
//! use service_tracing::work::external;
//!
//! async fn reserve(sku: &str) -> Result<u32, std::io::Error> {
//!     Ok(sku.len() as u32)
//! }
//!
//! # async fn run() -> Result<(), std::io::Error> {
//! let left = external::call("inventory", "Reserve")
//!     .rpc("grpc", "shop.Inventory", "Reserve")
//!     .server("inventory.internal", 50051)
//!     .in_scope(reserve("sku-1"))
//!     .await?;
//! // span "shop.Inventory/Reserve", peer.service = "inventory"
//! # assert_eq!(left, 5);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

use std::borrow::Cow;

use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

use super::{InScope, Outcome, WorkSpan};
use crate::errors::{Category, Severity};

/// A call to another service about to be made: [`start`](Call::start) it, or run a future
/// in it with [`in_scope`](Call::in_scope). Holds only borrowed text.
///
/// ```
/// let mut span = service_tracing::work::external::call("payments", "Charge").start();
/// span.succeed(); // span "payments Charge"
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a call does nothing until started"]
#[non_exhaustive]
pub struct Call<'a> {
    service: &'a str,
    operation: &'a str,
    rpc: Option<(&'a str, &'a str, &'a str)>,
    server: Option<(&'a str, u16)>,
}

/// A call to `service` (`service.peer.name`, `peer.service`) doing `operation` (a template: `GetUser`, not
/// `GetUser 42`). See the [module docs](self).
///
/// ```
/// let call = service_tracing::work::external::call("s3", "PutObject");
/// # let _ = call;
/// ```
pub fn call<'a>(service: &'a str, operation: &'a str) -> Call<'a> {
    Call {
        service,
        operation,
        rpc: None,
        server: None,
    }
}

impl<'a> Call<'a> {
    /// `rpc.system` (`grpc`, `connect_rpc`, `apache_dubbo`, `dotnet_wcf`, `java_rmi`),
    /// `rpc.service` (the full service name, `shop.Inventory`) and `rpc.method`; the span is
    /// then named `{rpc.service}/{rpc.method}`.
    ///
    /// ```
    /// let call = service_tracing::work::external::call("users", "GetUser")
    ///     .rpc("grpc", "accounts.Users", "GetUser");
    /// # let _ = call;
    /// ```
    pub fn rpc(mut self, system: &'a str, service: &'a str, method: &'a str) -> Self {
        self.rpc = Some((system, service, method));
        self
    }

    /// `server.address` and `server.port` of the called service.
    ///
    /// ```
    /// let call = service_tracing::work::external::call("users", "GetUser")
    ///     .server("users.internal", 50051);
    /// # let _ = call;
    /// ```
    pub fn server(mut self, address: &'a str, port: u16) -> Self {
        self.server = Some((address, port));
        self
    }

    fn name(&self) -> String {
        match self.rpc {
            Some((_, service, method)) => format!("{service}/{method}"),
            None => format!("{} {}", self.service, self.operation),
        }
    }

    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new("service.peer.name", self.service.to_owned()));
        attributes.push(KeyValue::new("peer.service", self.service.to_owned()));
        if let Some((system, service, method)) = self.rpc {
            attributes.push(KeyValue::new("rpc.system", system.to_owned()));
            attributes.push(KeyValue::new("rpc.service", service.to_owned()));
            attributes.push(KeyValue::new("rpc.method", method.to_owned()));
        }
        if let Some((address, port)) = self.server {
            attributes.push(KeyValue::new("server.address", address.to_owned()));
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        attributes
    }

    /// Starts the span (when the request is sampled): a [`WorkSpan`] whose errors are
    /// `dependency` (timeouts `timeout`).
    ///
    /// ```
    /// let mut span = service_tracing::work::external::call("mailer", "Send").start();
    /// span.record_failure("unavailable", "mailer is down");
    /// ```
    pub fn start(self) -> WorkSpan {
        WorkSpan::start_with(SpanKind::Client, || {
            (Cow::Owned(self.name()), self.attributes())
        })
        .errors_as(Severity::High, Category::Dependency)
    }

    /// Runs `work` inside the started span ([`WorkSpan::run`], the sync form of
    /// [`in_scope`](Self::in_scope)).
    ///
    /// ```
    /// let sent: Result<(), std::io::Error> =
    ///     service_tracing::work::external::call("mailer", "Send").run(|| Ok(()));
    /// # assert!(sent.is_ok());
    /// ```
    pub fn run<R: Outcome>(self, work: impl FnOnce() -> R) -> R {
        self.start().run(work)
    }

    /// Runs `future` inside the started span ([`WorkSpan::in_scope`]).
    ///
    /// ```
    /// # async fn run() {
    /// let sent: Result<(), std::io::Error> = service_tracing::work::external::call("mailer", "Send")
    ///     .in_scope(async { Ok(()) })
    ///     .await;
    /// # assert!(sent.is_ok());
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run());
    /// ```
    pub fn in_scope<F>(self, future: F) -> InScope<WorkSpan, F>
    where
        F: std::future::Future,
        F::Output: Outcome,
    {
        self.start().in_scope(future)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Value;
    use opentelemetry_sdk::trace::Sampler;

    use super::*;
    use crate::work::tests::{attribute, exception, has, install, one, text};

    #[tokio::test]
    async fn an_rpc_call_records_peer_and_rpc_attributes_and_dependency_errors() {
        let (exporter, errors) = install(Sampler::AlwaysOn);
        let reserved: Result<(), std::io::Error> = call("inventory", "Reserve")
            .rpc("grpc", "shop.Inventory", "Reserve")
            .server("inventory.internal", 50051)
            .in_scope(async { Err(std::io::Error::other("UNAVAILABLE")) })
            .await;
        assert!(reserved.is_err());
        let span = one(&exporter, "shop.Inventory/Reserve");
        assert_eq!(span.span_kind, SpanKind::Client);
        for (key, value) in [
            ("service.peer.name", "inventory"),
            ("peer.service", "inventory"),
            ("rpc.system", "grpc"),
            ("rpc.service", "shop.Inventory"),
            ("rpc.method", "Reserve"),
            ("server.address", "inventory.internal"),
        ] {
            assert_eq!(text(&span, key), value, "{key}");
        }
        assert_eq!(attribute(&span, "server.port"), Some(&Value::I64(50051)));
        assert!(has(&exception(&span), "error.category", "dependency"));
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0].category(), Category::Dependency);
        assert_eq!(
            groups[0].operations(),
            ["shop.Inventory/Reserve inventory.internal"],
            "a client span with an address: {{name}} {{server.address}}"
        );
    }

    #[test]
    fn without_rpc_the_span_is_service_and_operation_with_peer_service_only() {
        let (exporter, _) = install(Sampler::AlwaysOn);
        let mut span = call("payments", "Charge").start();
        span.succeed();
        drop(span);
        let span = one(&exporter, "payments Charge");
        assert_eq!(text(&span, "peer.service"), "payments");
        assert_eq!(text(&span, "service.peer.name"), "payments");
        assert!(attribute(&span, "rpc.system").is_none());
    }
}
