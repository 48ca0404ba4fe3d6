//! Severity and category of an error, with the defaults [`ErrorTracking`] uses.
//!
//! [`ErrorTracking`]: super::ErrorTracking

use std::fmt;

use super::{ErrorEvent, ErrorOrigin};

/// How urgent an error group is, most urgent first.
///
/// ```
/// use service_tracing::errors::Severity;
/// assert!(Severity::Critical < Severity::Low);
/// assert_eq!(Severity::High.as_str(), "high");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// The service itself broke (a panic).
    Critical,
    /// A request failed on the server's side (5xx) or a dependency is down.
    High,
    /// Degraded: a timeout, a security refusal, an error without an HTTP status.
    Medium,
    /// Expected now and then: a dependency's 4xx, a validation error.
    Low,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// The lowercase name (`critical`, `high`, `medium`, `low`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error comes from.
///
/// ```
/// use service_tracing::errors::Category;
/// assert_eq!(Category::Dependency.to_string(), "dependency");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// The service's own code (panics, its own 5xx).
    Application,
    /// A service this one calls failed or refused (transport errors, 4xx/5xx answers).
    Dependency,
    /// A database call (a span with `db.system` or `db.system.name`).
    Database,
    /// Something took too long (including a timeout talking to a dependency).
    Timeout,
    /// A request was refused as malformed (400, 422).
    Validation,
    /// A request was refused for its credentials (401, 403).
    Security,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 6] = [
        Category::Application,
        Category::Dependency,
        Category::Database,
        Category::Timeout,
        Category::Validation,
        Category::Security,
    ];

    /// The lowercase name (`application`, `dependency`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Application => "application",
            Category::Dependency => "dependency",
            Category::Database => "database",
            Category::Timeout => "timeout",
            Category::Validation => "validation",
            Category::Security => "security",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default classification, first rule that matches:
///
/// Rules read `error.type` ([`ErrorEvent::error_class`]), falling back to the error type.
///
/// 1. a panic → Critical / Application;
/// 2. status 401 or 403 → Medium / Security;
/// 3. status 400 or 422 → Low / Validation;
/// 4. a database span (`db.system`) → Medium / Database on a timeout, else High / Database;
/// 5. `error.type` `timeout` (any span) → Medium / Timeout. A timeout talking to a dependency
///    is a dependency timeout: its category is Timeout, and its origin
///    ([`ErrorOrigin::Client`]) and operation (`GET payments:443`) name the dependency;
/// 6. a client span: 4xx → Low / Dependency; anything else (5xx, `connect`, other transport
///    errors) → High / Dependency;
/// 7. a server span: 5xx → High / Application; anything else → Medium / Application;
/// 8. any other span with an `exception` event → Medium / Application.
pub(crate) fn default_classification(event: &ErrorEvent) -> (Severity, Category) {
    let status = event.status_code();
    let class = event.error_class().unwrap_or(event.error_type());
    if class == "panic" || event.error_type() == "panic" {
        return (Severity::Critical, Category::Application);
    }
    match status {
        Some(401 | 403) => return (Severity::Medium, Category::Security),
        Some(400 | 422) => return (Severity::Low, Category::Validation),
        _ => {}
    }
    let timeout = class.eq_ignore_ascii_case("timeout");
    if event.db_system().is_some() {
        return if timeout {
            (Severity::Medium, Category::Database)
        } else {
            (Severity::High, Category::Database)
        };
    }
    if timeout {
        return (Severity::Medium, Category::Timeout);
    }
    let client_error = status.is_some_and(|s| (400..500).contains(&s));
    match event.origin() {
        ErrorOrigin::Client if client_error => (Severity::Low, Category::Dependency),
        ErrorOrigin::Client => (Severity::High, Category::Dependency),
        ErrorOrigin::Server if status.is_some_and(|s| s >= 500) => {
            (Severity::High, Category::Application)
        }
        _ => (Severity::Medium, Category::Application),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorEvent;

    fn event(origin: ErrorOrigin, error_type: &str, status: Option<u16>) -> ErrorEvent {
        ErrorEvent::for_test(origin, error_type, status, None)
    }

    #[test]
    fn defaults_follow_the_documented_rules() {
        use Category::*;
        use ErrorOrigin::*;
        use Severity::*;
        let cases = [
            (event(Server, "panic", Some(500)), (Critical, Application)),
            (event(Server, "500", Some(500)), (High, Application)),
            (event(Server, "502", Some(502)), (High, Application)),
            (event(Client, "timeout", None), (Medium, Timeout)),
            (event(Client, "connect", None), (High, Dependency)),
            (event(Client, "503", Some(503)), (High, Dependency)),
            (event(Client, "404", Some(404)), (Low, Dependency)),
            (event(Client, "401", Some(401)), (Medium, Security)),
            (event(Server, "403", Some(403)), (Medium, Security)),
            (event(Client, "422", Some(422)), (Low, Validation)),
            (event(Server, "400", Some(400)), (Low, Validation)),
            (event(Internal, "io::Error", None), (Medium, Application)),
            (
                ErrorEvent::for_test(Client, "sqlx::Error", None, Some("postgresql")),
                (High, Database),
            ),
            (
                ErrorEvent::for_test(Client, "timeout", None, Some("postgresql")),
                (Medium, Database),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(default_classification(&event), expected, "{event:?}");
        }
    }

    #[test]
    fn names_are_lowercase_and_ordered() {
        assert_eq!(
            Severity::ALL.map(Severity::as_str).join(","),
            "critical,high,medium,low"
        );
        assert!(Severity::Critical < Severity::High);
        assert_eq!(Category::Timeout.to_string(), "timeout");
    }
}
