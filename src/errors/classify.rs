//! Severity and category of an error, with the defaults [`ErrorTracking`] uses.
//!
//! [`ErrorTracking`]: super::ErrorTracking

use super::{ErrorEvent, ErrorOrigin};

/// Shared with the middleware and client crates, which state a request's root cause with them.
pub use service_tracing_middleware::cause::{Category, Severity};

/// The default classification, first rule that matches:
///
/// Rules read `error.type` ([`ErrorEvent::error_class`]), falling back to the error type. An
/// error inside a request is classified as its root cause was seen (a failed call has origin
/// [`ErrorOrigin::Client`] and the dependency's status), then kept under the request's route.
///
/// 1. a panic → Critical / Application;
/// 2. status 401 or 403 → Medium / Security;
/// 3. status 400 or 422 → Low / Validation;
/// 4. a database span (`db.system`) → Medium / Database on a timeout, else High / Database;
/// 5. a timeout (any span) → Medium / Timeout: `error.type` `timeout` (which `record_error`
///    sets for a `std::io::ErrorKind::TimedOut` and `tokio::time::error::Elapsed`, also
///    among the error's sources), an error type named `Elapsed` or `Timeout`, or a type or
///    message that says `timeout`, `timed out` or `deadline has elapsed`. A timeout talking to
///    a dependency is a dependency timeout: its category is Timeout, and its origin
///    ([`ErrorOrigin::Client`]) and operation (`GET payments:443`) name the dependency;
/// 6. a client span: 4xx → Low / Dependency; anything else (5xx, `connect`, other transport
///    errors) → High / Dependency;
/// 7. a type or message that says `database` or `sql` (`sqlx::Error`, `SqlState`...) → High /
///    Database;
/// 8. a type or message that says `connection refused` → High / Dependency;
/// 9. a server span: 5xx → High / Application; anything else → Medium / Application;
/// 10. any other span with an `exception` event → Medium / Application.
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
    let says = |words: &[&str]| {
        contains_any(event.error_type(), words) || contains_any(event.message(), words)
    };
    let timeout = class.eq_ignore_ascii_case("timeout")
        || ends_with_ignore_case(event.error_type(), "elapsed")
        || says(&["timeout", "timed out", "deadline has elapsed"]);
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
        ErrorOrigin::Client if client_error => return (Severity::Low, Category::Dependency),
        ErrorOrigin::Client => return (Severity::High, Category::Dependency),
        _ => {}
    }
    if says(&["database", "sql"]) {
        return (Severity::High, Category::Database);
    }
    if says(&["connection refused"]) {
        return (Severity::High, Category::Dependency);
    }
    match event.origin() {
        ErrorOrigin::Server if status.is_some_and(|s| s >= 500) => {
            (Severity::High, Category::Application)
        }
        _ => (Severity::Medium, Category::Application),
    }
}

/// Whether `text` holds one of `words` (lowercase ASCII), ignoring ASCII case; no allocation.
fn contains_any(text: &str, words: &[&str]) -> bool {
    words.iter().any(|word| {
        text.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    })
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
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
