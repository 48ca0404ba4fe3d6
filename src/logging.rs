//! The `tracing` side: a log line format that carries `trace_id`, `span_id` and
//! `correlation_id`, and the filter that keeps the exporter's own transport out of traces.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use service_tracing_middleware::CorrelationId;

use crate::redact::Redactor;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{self, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each log line as `tracing-subscriber`'s default format does, runs it through the
/// redaction policy ([`Redactor`], default [`Redactor::new`]: a field such as
/// `password="…"`, an e-mail address or a card number in the message is replaced), then
/// appends `trace_id=… span_id=… correlation_id=…` from the current OpenTelemetry context, so
/// a line logged anywhere inside a traced request can be joined with its trace.
///
/// The redaction runs on the logging thread, on the line already formatted: a byte scan,
/// and an allocation only for a line that holds something to redact.
///
/// ```
/// use service_tracing::TraceIdFormat;
/// let subscriber = tracing_subscriber::fmt().event_format(TraceIdFormat::new()).finish();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TraceIdFormat {
    inner: Format<Full>,
    redactor: Redactor,
}

impl Default for TraceIdFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceIdFormat {
    /// The default format, without colours, redacted by the default policy, followed by the
    /// ids.
    pub fn new() -> Self {
        Self {
            inner: format::format().with_ansi(false),
            redactor: Redactor::new(),
        }
    }

    /// Redacts lines with this policy instead of the default one.
    ///
    /// ```
    /// use service_tracing::{redact::Redactor, TraceIdFormat};
    /// let format = TraceIdFormat::new().with_redactor(Redactor::new().with_denied_key("ssn"));
    /// ```
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }
}

impl<S, N> FormatEvent<S, N> for TraceIdFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match self.redactor.scrub(line) {
            Some(redacted) => writer.write_str(&redacted)?,
            None => writer.write_str(line)?,
        }
        // With context activation, the innermost entered `tracing` span's context is current.
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            write!(
                writer,
                " trace_id={} span_id={}",
                sc.trace_id(),
                sc.span_id()
            )?;
        }
        if let Some(id) = CorrelationId::from_context(&cx) {
            write!(writer, " correlation_id={id}")?;
        }
        writeln!(writer)
    }
}

/// Crates whose spans and events must never become telemetry: the exporter's own transport.
/// (Their work also runs on the export thread, where the dispatcher is a no-op; this filter is
/// the second lock on the same door.) `Targets` matches by string prefix, so each entry ends at
/// a path boundary where a plain crate name would also catch other crates (`tower` would catch
/// `tower_http`, whose `TraceLayer` spans users do want).
pub(crate) const TRANSPORT_TARGETS: &[&str] = &[
    "h2::",
    "hyper::",
    "hyper_util::",
    "tonic::",
    "tower::",
    "reqwest::",
    "opentelemetry",
];

/// What the OpenTelemetry bridge sees: `INFO` and above from everyone but the transport.
/// Independent of `RUST_LOG`, which filters only what is printed.
pub(crate) fn bridge_filter() -> Targets {
    TRANSPORT_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::INFO),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn bridged(target: &str, level: Level) -> bool {
        bridge_filter().would_enable(target, &level)
    }

    #[test]
    fn transport_is_kept_out_and_everything_else_at_info_gets_in() {
        for target in [
            "h2::proto::connection",
            "hyper::client",
            "hyper_util::client::legacy",
            "tonic::transport",
            "tower::buffer::worker",
            "reqwest::connect",
            "opentelemetry_sdk::trace",
            "opentelemetry_otlp::exporter",
        ] {
            assert!(
                !bridged(target, Level::ERROR),
                "{target} must not be bridged"
            );
        }
        for target in [
            "tower_http::trace::make_span",
            "reqwest_middleware",
            "my_app::handlers",
            "hyperion::x",
        ] {
            assert!(bridged(target, Level::INFO), "{target} must be bridged");
        }
        assert!(
            !bridged("my_app", Level::DEBUG),
            "below INFO is not bridged"
        );
    }

    /// The console's log lines go through the policy: fields under denied keys, secrets in
    /// the message and in other fields are printed redacted; ordinary lines are unchanged.
    #[test]
    fn log_lines_are_printed_redacted() {
        let capture = crate::test_support::SharedBuffer::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(
                TraceIdFormat::new().with_redactor(Redactor::new().with_denied_key("ssn")),
            )
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                password = "planted-field-pw",
                user.email = "carol@example.com",
                ssn = 123456789,
                "login failed with token: planted-log-token, card 4111 1111 1111 1111"
            );
            tracing::info!(order = 42, "order shipped");
        });
        let out = capture.text();
        for secret in [
            "planted-field-pw",
            "carol@example.com",
            "123456789",
            "planted-log-token",
            "4111 1111 1111 1111",
        ] {
            assert!(!out.contains(secret), "{secret} printed: {out}");
        }
        assert!(out.contains("password=[REDACTED]"), "{out}");
        assert!(out.contains("order shipped order=42"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}
