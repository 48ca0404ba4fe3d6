//! An agent's tool calls (function calls, MCP tools) as the generative AI conventions'
//! `execute_tool` spans: [`execute`] around each.
//!
//! | attribute | from |
//! |---|---|
//! | `gen_ai.operation.name` | `execute_tool` |
//! | `gen_ai.tool.name` | `tool` |
//! | `gen_ai.tool.call.id` | [`Tool::call_id`] (the id the model gave the call) |
//! | `gen_ai.tool.type` | [`Tool::tool_type`] (`function`, `extension`, `datastore`) |
//! | `gen_ai.tool.description` | [`Tool::description`] |
//! | `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result` | [`ToolSpan::record_arguments`], [`ToolSpan::record_result`], **only** with [`Tool::capture`] on |
//!
//! The span is `Internal`, named `execute_tool {tool}`. Captured arguments and results are
//! JSON text (the conventions' form on spans) with the redaction policy applied (a value under
//! a denied key such as `password` or `api_key` replaced whole, every string redacted as span
//! attributes are) and cut to 4 KiB; the export applies the set-up's policy again. Errors are
//! classified by the default rules (`application`, timeouts `timeout`).
//!
//! ```
//! use service_tracing::work::tool;
//!
//! # async fn run() -> Result<(), std::io::Error> {
//! let args = serde_json::json!({"city": "Paris", "api_key": "sk-live-123"});
//! let span = tool::execute("get_weather")
//!     .call_id("call_7")
//!     .tool_type("function")
//!     .capture(true)
//!     .start();
//! span.record_arguments(&args); // {"city":"Paris","api_key":"[REDACTED]"}
//! let weather = span
//!     .in_scope_with(async { Ok::<_, std::io::Error>(serde_json::json!({"sky": "rain"})) }, |out, span| {
//!         if let Ok(weather) = out {
//!             span.record_result(weather);
//!         }
//!     })
//!     .await?;
//! # assert_eq!(weather["sky"], "rain");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use serde::Serialize;

use super::capture::{capture, default_redactor};
use super::{InScope, Outcome, WorkSpan};
use crate::redact::Redactor;

/// A tool call about to run: [`start`](Tool::start) it. Holds only borrowed text.
///
/// ```
/// let mut span = service_tracing::work::tool::execute("search_docs").call_id("call_1").start();
/// span.succeed();
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a tool call does nothing until started"]
#[non_exhaustive]
pub struct Tool<'a> {
    name: &'a str,
    call_id: Option<&'a str>,
    tool_type: Option<&'a str>,
    description: Option<&'a str>,
    capture: bool,
    redactor: Option<&'a Redactor>,
}

/// A call of the tool named `tool` (`gen_ai.tool.name`). See the [module docs](self).
///
/// ```
/// let tool = service_tracing::work::tool::execute("get_weather");
/// # let _ = tool;
/// ```
pub fn execute(tool: &str) -> Tool<'_> {
    Tool {
        name: tool,
        call_id: None,
        tool_type: None,
        description: None,
        capture: false,
        redactor: None,
    }
}

impl<'a> Tool<'a> {
    /// `gen_ai.tool.call.id`: the id the model gave this call.
    ///
    /// ```
    /// let tool = service_tracing::work::tool::execute("get_weather").call_id("call_mszuSIzqtI65");
    /// # let _ = tool;
    /// ```
    pub fn call_id(mut self, id: &'a str) -> Self {
        self.call_id = Some(id);
        self
    }

    /// `gen_ai.tool.type`: `function`, `extension` or `datastore`.
    ///
    /// ```
    /// let tool = service_tracing::work::tool::execute("get_weather").tool_type("function");
    /// # let _ = tool;
    /// ```
    pub fn tool_type(mut self, tool_type: &'a str) -> Self {
        self.tool_type = Some(tool_type);
        self
    }

    /// `gen_ai.tool.description`.
    ///
    /// ```
    /// let tool = service_tracing::work::tool::execute("multiply").description("Multiply two numbers");
    /// # let _ = tool;
    /// ```
    pub fn description(mut self, description: &'a str) -> Self {
        self.description = Some(description);
        self
    }

    /// Whether the call's arguments and result are recorded (off by default: they may hold
    /// personal data).
    ///
    /// ```
    /// let tool = service_tracing::work::tool::execute("get_weather").capture(true);
    /// # let _ = tool;
    /// ```
    pub fn capture(mut self, capture: bool) -> Self {
        self.capture = capture;
        self
    }

    /// The redaction policy captured content goes through (default: [`Redactor::new`]); give
    /// the one set up with [`ServiceTracing::redactor`](crate::ServiceTracing::redactor) to
    /// apply its rules here too.
    ///
    /// ```
    /// use service_tracing::redact::Redactor;
    /// let policy = Redactor::new().with_denied_key("ssn");
    /// let tool = service_tracing::work::tool::execute("lookup_customer").capture(true).redactor(&policy);
    /// # let _ = tool;
    /// ```
    pub fn redactor(mut self, redactor: &'a Redactor) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// Starts the span (when the request is sampled).
    ///
    /// ```
    /// let mut span = service_tracing::work::tool::execute("get_time").start();
    /// span.succeed();
    /// ```
    pub fn start(self) -> ToolSpan {
        let span = WorkSpan::start_with(SpanKind::Internal, || {
            let mut attributes = Vec::with_capacity(5);
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            attributes.push(KeyValue::new("gen_ai.tool.name", self.name.to_owned()));
            let optional = [
                ("gen_ai.tool.call.id", self.call_id),
                ("gen_ai.tool.type", self.tool_type),
                ("gen_ai.tool.description", self.description),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    attributes.push(KeyValue::new(key, value.to_owned()));
                }
            }
            (
                Cow::Owned(format!("execute_tool {}", self.name)),
                attributes,
            )
        });
        let redactor = (self.capture && span.is_recording())
            .then(|| self.redactor.unwrap_or_else(|| default_redactor()).clone());
        ToolSpan { span, redactor }
    }
}

/// A started tool call: a [`WorkSpan`] (its methods through `Deref`) that can record the
/// call's arguments and result when capture is on.
///
/// ```
/// let mut span = service_tracing::work::tool::execute("get_time").capture(true).start();
/// span.record_arguments(&serde_json::json!({"zone": "UTC"}));
/// span.record_result(&"12:00");
/// span.succeed();
/// ```
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct ToolSpan {
    span: WorkSpan,
    /// The policy captured content goes through, when capturing (and recording).
    redactor: Option<Redactor>,
}

impl ToolSpan {
    /// Records `gen_ai.tool.call.arguments` (redacted, capped JSON), when capture is on.
    pub fn record_arguments<T: Serialize + ?Sized>(&self, arguments: &T) {
        if let Some(redactor) = &self.redactor {
            self.span.set_attribute(KeyValue::new(
                "gen_ai.tool.call.arguments",
                capture(arguments, redactor),
            ));
        }
    }

    /// Records `gen_ai.tool.call.result` (redacted, capped JSON), when capture is on.
    pub fn record_result<T: Serialize + ?Sized>(&self, result: &T) {
        if let Some(redactor) = &self.redactor {
            self.span.set_attribute(KeyValue::new(
                "gen_ai.tool.call.result",
                capture(result, redactor),
            ));
        }
    }

    /// Runs `future` inside the span ([`WorkSpan::in_scope`]).
    ///
    /// ```
    /// # async fn run() {
    /// let found: Result<u32, std::io::Error> =
    ///     service_tracing::work::tool::execute("count_files").start().in_scope(async { Ok(3) }).await;
    /// # assert_eq!(found.unwrap(), 3);
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run());
    /// ```
    pub fn in_scope<F>(self, future: F) -> InScope<Self, F>
    where
        F: std::future::Future,
        F::Output: Outcome,
    {
        InScope::new(self, future, |output: &F::Output, span: &mut Self| {
            output.record_on(&mut span.span);
        })
    }

    /// [`in_scope`](Self::in_scope) with `on_output` called on the future's output, to record
    /// the result and state the outcome ([`WorkSpan::succeed`], [`WorkSpan::record_error`]);
    /// left unstated, the span ends with `error.type` = `_OTHER`.
    pub fn in_scope_with<F, C>(self, future: F, on_output: C) -> InScope<Self, F, C>
    where
        F: std::future::Future,
        C: FnOnce(&F::Output, &mut Self),
    {
        InScope::new(self, future, on_output)
    }
}

impl Deref for ToolSpan {
    type Target = WorkSpan;
    fn deref(&self) -> &WorkSpan {
        &self.span
    }
}

impl DerefMut for ToolSpan {
    fn deref_mut(&mut self) -> &mut WorkSpan {
        &mut self.span
    }
}

impl AsRef<WorkSpan> for ToolSpan {
    fn as_ref(&self) -> &WorkSpan {
        &self.span
    }
}

impl AsMut<WorkSpan> for ToolSpan {
    fn as_mut(&mut self) -> &mut WorkSpan {
        &mut self.span
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::trace::Sampler;

    use super::*;
    use crate::work::tests::{attribute, install, one, text};

    #[tokio::test]
    async fn a_tool_call_records_the_conventions_attributes_and_captures_only_when_asked() {
        let (exporter, _) = install(Sampler::AlwaysOn);
        let args = serde_json::json!({"city": "Paris", "password": "hunter2"});
        let span = execute("get_weather")
            .call_id("call_1")
            .tool_type("function")
            .capture(true)
            .start();
        span.record_arguments(&args);
        let out: Result<serde_json::Value, std::io::Error> = span
            .in_scope_with(
                async { Ok(serde_json::json!({"sky": "rain", "by": "bob@example.com"})) },
                |out, span| {
                    if let Ok(result) = out {
                        span.record_result(result);
                    }
                    span.succeed();
                },
            )
            .await;
        assert!(out.is_ok());
        let span = one(&exporter, "execute_tool get_weather");
        assert_eq!(span.span_kind, SpanKind::Internal);
        for (key, value) in [
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "get_weather"),
            ("gen_ai.tool.call.id", "call_1"),
            ("gen_ai.tool.type", "function"),
        ] {
            assert_eq!(text(&span, key), value, "{key}");
        }
        let json = |key| -> serde_json::Value {
            serde_json::from_str(&text(&span, key)).expect("JSON text")
        };
        assert_eq!(
            json("gen_ai.tool.call.arguments"),
            serde_json::json!({"city": "Paris", "password": "[REDACTED]"})
        );
        assert_eq!(
            json("gen_ai.tool.call.result"),
            serde_json::json!({"sky": "rain", "by": "[REDACTED]"})
        );

        let quiet = execute("get_time").start();
        quiet.record_arguments(&serde_json::json!({"zone": "UTC"}));
        quiet.record_result(&"12:00");
        drop(quiet);
        let quiet = one(&exporter, "execute_tool get_time");
        assert!(attribute(&quiet, "gen_ai.tool.call.arguments").is_none());
        assert!(attribute(&quiet, "gen_ai.tool.call.result").is_none());
    }
}
