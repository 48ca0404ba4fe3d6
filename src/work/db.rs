//! Database client spans, for any driver: [`query`] (or the [`Query`] builder) around each
//! call.
//!
//! | attribute | from |
//! |---|---|
//! | `db.system.name` | `system` (`postgresql`, `mysql`, `sqlite`, `redis`, ... as the conventions list them) |
//! | `db.operation.name` | `operation` (`SELECT`, `findAndModify`, `HGET`) |
//! | `db.collection.name` | `collection` (the table) |
//! | `db.namespace` | [`Query::namespace`] |
//! | `server.address`, `server.port` | [`Query::server`] |
//! | `db.query.text` | `query_text`, **sanitised**: string and numeric literals become `?`, `IN (...)` lists of them `IN (?)`, comments go, at most 2 KiB |
//!
//! The span is `Client`, named `{operation} {collection}` as the conventions say, falling
//! back to `{operation} {namespace}`, `{operation} {server.address}:{port}`, `{operation}`,
//! the target alone, then `{system}`. Empty arguments count as absent. Errors are classified
//! High / `database`, timeouts Medium / `timeout`.
//!
//! ```
//! use service_tracing::work::db;
//!
//! #[derive(Debug)]
//! struct DbError;
//! impl std::fmt::Display for DbError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("relation does not exist")
//!     }
//! }
//! impl std::error::Error for DbError {}
//!
//! async fn load_order(id: i64) -> Result<String, DbError> {
//!     Ok(format!("order {id}"))
//! }
//!
//! # async fn run() -> Result<(), DbError> {
//! let id = 42;
//! let sql = "SELECT * FROM orders WHERE id = 42";
//! let order = db::query("postgresql", "SELECT", "orders", sql)
//!     .namespace("shop")
//!     .server("db.internal", 5432)
//!     .in_scope(load_order(id))
//!     .await?;
//! // span "SELECT orders", db.query.text = "SELECT * FROM orders WHERE id = ?"
//! # assert_eq!(order, "order 42");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

use std::borrow::Cow;

use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

use super::sql::{sanitize, MAX_QUERY_TEXT};
use super::{InScope, Outcome, WorkSpan};
use crate::errors::{Category, Severity};

/// A database call about to be made: [`start`](Query::start) it, or run a future in it with
/// [`in_scope`](Query::in_scope). Holds only borrowed text, so when the request is not
/// sampled nothing is copied or sanitised.
///
/// ```
/// use service_tracing::work::db::Query;
/// let mut span = Query::new("sqlite")
///     .operation("INSERT")
///     .collection("events")
///     .text("INSERT INTO events (kind) VALUES ('login')")
///     .start();
/// span.succeed();
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a query does nothing until started"]
#[non_exhaustive]
pub struct Query<'a> {
    system: &'a str,
    operation: Option<&'a str>,
    collection: Option<&'a str>,
    text: Option<&'a str>,
    namespace: Option<&'a str>,
    server: Option<(&'a str, Option<u16>)>,
}

/// A call to the database `system` running `operation` on `collection` with `query_text`
/// (sanitised before it is recorded); an empty argument counts as absent. See the
/// [module docs](self).
///
/// ```
/// let mut span = service_tracing::work::db::query("redis", "HGET", "", "HGET user:42 name").start();
/// span.succeed(); // span "HGET"
/// ```
pub fn query<'a>(
    system: &'a str,
    operation: &'a str,
    collection: &'a str,
    query_text: &'a str,
) -> Query<'a> {
    Query::new(system)
        .operation(operation)
        .collection(collection)
        .text(query_text)
}

fn given(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

impl<'a> Query<'a> {
    /// A call to the database `system` (`db.system.name`).
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("postgresql");
    /// # let _ = query;
    /// ```
    pub fn new(system: &'a str) -> Self {
        Self {
            system,
            operation: None,
            collection: None,
            text: None,
            namespace: None,
            server: None,
        }
    }

    /// `db.operation.name`: the command (`SELECT`, `findAndModify`, `HGET`).
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("mongodb").operation("find");
    /// # let _ = query;
    /// ```
    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = given(operation);
        self
    }

    /// `db.collection.name`: the table or collection.
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("mongodb").collection("orders");
    /// # let _ = query;
    /// ```
    pub fn collection(mut self, collection: &'a str) -> Self {
        self.collection = given(collection);
        self
    }

    /// The query text, recorded as `db.query.text` once sanitised (literals become `?`).
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("mysql").text("SELECT 1");
    /// # let _ = query;
    /// ```
    pub fn text(mut self, query_text: &'a str) -> Self {
        self.text = given(query_text);
        self
    }

    /// `db.namespace`: the database (or schema) the connection uses.
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("postgresql").namespace("shop");
    /// # let _ = query;
    /// ```
    pub fn namespace(mut self, namespace: &'a str) -> Self {
        self.namespace = given(namespace);
        self
    }

    /// `server.address` and `server.port`.
    ///
    /// ```
    /// let query = service_tracing::work::db::Query::new("postgresql").server("db.internal", 5432);
    /// # let _ = query;
    /// ```
    pub fn server(mut self, address: &'a str, port: u16) -> Self {
        self.server = given(address).map(|address| (address, Some(port)));
        self
    }

    /// The span name the conventions give this call.
    fn name(&self) -> String {
        let target = self
            .collection
            .or(self.namespace)
            .map(Cow::Borrowed)
            .or_else(|| {
                self.server.map(|(address, port)| match port {
                    Some(port) => Cow::Owned(format!("{address}:{port}")),
                    None => Cow::Borrowed(address),
                })
            });
        match (self.operation, target) {
            (Some(operation), Some(target)) => format!("{operation} {target}"),
            (Some(operation), None) => operation.to_owned(),
            (None, Some(target)) => target.into_owned(),
            (None, None) => self.system.to_owned(),
        }
    }

    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new("db.system.name", self.system.to_owned()));
        let optional = [
            ("db.operation.name", self.operation),
            ("db.collection.name", self.collection),
            ("db.namespace", self.namespace),
            ("server.address", self.server.map(|(address, _)| address)),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.to_owned()));
            }
        }
        if let Some((_, Some(port))) = self.server {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(text) = self.text {
            attributes.push(KeyValue::new(
                "db.query.text",
                sanitize(text, MAX_QUERY_TEXT),
            ));
        }
        attributes
    }

    /// Starts the span (when the request is sampled): a [`WorkSpan`] whose errors are
    /// `database` (timeouts `timeout`).
    ///
    /// ```
    /// let mut span = service_tracing::work::db::query("sqlite", "DELETE", "sessions", "").start();
    /// span.succeed();
    /// ```
    pub fn start(self) -> WorkSpan {
        WorkSpan::start_with(SpanKind::Client, || {
            (Cow::Owned(self.name()), self.attributes())
        })
        .errors_as(Severity::High, Category::Database)
        .database(self.system)
    }

    /// Runs `work` inside the started span ([`WorkSpan::run`], the sync form of
    /// [`in_scope`](Self::in_scope)).
    ///
    /// ```
    /// let rows: Result<usize, std::io::Error> =
    ///     service_tracing::work::db::query("sqlite", "DELETE", "sessions", "DELETE FROM sessions")
    ///         .run(|| Ok(3));
    /// # assert_eq!(rows.unwrap(), 3);
    /// ```
    pub fn run<R: Outcome>(self, work: impl FnOnce() -> R) -> R {
        self.start().run(work)
    }

    /// Runs `future` inside the started span ([`WorkSpan::in_scope`]): an `Err` output is
    /// recorded as the database's error.
    ///
    /// ```
    /// # async fn run() {
    /// let rows: Result<u64, std::io::Error> = service_tracing::work::db::query(
    ///     "sqlite", "UPDATE", "carts", "UPDATE carts SET n = n + 1 WHERE id = 7",
    /// )
    /// .in_scope(async { Ok(1) })
    /// .await;
    /// # assert_eq!(rows.unwrap(), 1);
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
    use opentelemetry::trace::{Status, Tracer as _};
    use opentelemetry::{global, Value};
    use opentelemetry_sdk::trace::Sampler;

    use super::*;
    use crate::work::tests::{exception, has, install, one, spans, text};

    #[test]
    fn span_name_follows_the_conventions_fallbacks() {
        let name = |q: Query<'_>| q.name();
        assert_eq!(
            name(query("postgresql", "SELECT", "orders", "")),
            "SELECT orders"
        );
        assert_eq!(
            name(
                Query::new("postgresql")
                    .operation("SELECT")
                    .namespace("shop")
            ),
            "SELECT shop"
        );
        assert_eq!(
            name(
                Query::new("postgresql")
                    .operation("SELECT")
                    .server("db", 5432)
            ),
            "SELECT db:5432"
        );
        assert_eq!(name(query("redis", "HGET", "", "")), "HGET");
        assert_eq!(name(query("mongodb", "", "orders", "")), "orders");
        assert_eq!(name(query("sqlite", "", "", "SELECT 1")), "sqlite");
    }

    #[test]
    fn a_query_records_the_conventions_attributes_with_sanitised_text() {
        let (exporter, _) = install(Sampler::AlwaysOn);
        global::tracer("test").in_span("GET /orders/{id}", |_cx| {
            let mut span = query(
                "postgresql",
                "SELECT",
                "orders",
                "SELECT * FROM orders WHERE id = 42 AND state IN ('new', 'paid') -- by api",
            )
            .namespace("shop")
            .server("db.internal", 5432)
            .start();
            span.succeed();
        });
        let span = one(&exporter, "SELECT orders");
        assert_eq!(span.span_kind, SpanKind::Client);
        for (key, value) in [
            ("db.system.name", "postgresql"),
            ("db.operation.name", "SELECT"),
            ("db.collection.name", "orders"),
            ("db.namespace", "shop"),
            ("server.address", "db.internal"),
            (
                "db.query.text",
                "SELECT * FROM orders WHERE id = ? AND state IN (?)",
            ),
        ] {
            assert_eq!(text(&span, key), value, "{key}");
        }
        assert_eq!(
            crate::work::tests::attribute(&span, "server.port"),
            Some(&Value::I64(5432))
        );
    }

    #[derive(Debug)]
    struct Locked;
    impl std::fmt::Display for Locked {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("row is locked")
        }
    }
    impl std::error::Error for Locked {}

    #[tokio::test]
    async fn errors_are_database_and_timeouts_timeout() {
        let (exporter, errors) = install(Sampler::AlwaysOn);
        let failed: Result<(), Locked> = query("sqlite", "UPDATE", "stock", "")
            .in_scope(async { Err(Locked) })
            .await;
        assert!(failed.is_err());
        let slow: Result<(), std::io::Error> = query("sqlite", "SELECT", "stock", "")
            .in_scope(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "busy for 5 s",
                ))
            })
            .await;
        assert!(slow.is_err());
        let update = one(&exporter, "UPDATE stock");
        assert!(has(&exception(&update), "error.category", "database"));
        assert_eq!(update.status, Status::error("row is locked"));
        let select = one(&exporter, "SELECT stock");
        assert_eq!(text(&select, "error.type"), "timeout");
        let groups = errors.groups();
        let category = |op: &str| {
            groups
                .iter()
                .find(|g| g.operations() == [op])
                .map(|g| (g.severity(), g.category()))
        };
        assert_eq!(
            category("UPDATE stock"),
            Some((Severity::High, Category::Database))
        );
        assert_eq!(
            category("SELECT stock"),
            Some((Severity::Medium, Category::Timeout))
        );
    }

    #[test]
    fn unsampled_queries_are_not_sanitised_or_recorded() {
        let (exporter, _) = install(Sampler::AlwaysOff);
        global::tracer("test").in_span("GET /", |_cx| {
            let span = query("sqlite", "SELECT", "t", "SELECT 'secret'").start();
            assert!(span.context().is_none());
        });
        assert!(spans(&exporter).is_empty());
    }
}
