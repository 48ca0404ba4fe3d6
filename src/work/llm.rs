//! LLM calls as the generative AI conventions' inference client spans, with their metrics:
//! [`chat`] (or [`request`] for another operation) around each call to a model.
//!
//! | attribute | from |
//! |---|---|
//! | `gen_ai.operation.name` | `chat`, or [`request`]'s `operation` (`text_completion`, `generate_content`, `embeddings`) |
//! | `gen_ai.provider.name` | `provider` (`openai`, `anthropic`, `aws.bedrock`, `gcp.vertex_ai`, ...) |
//! | `gen_ai.request.model` | `model` |
//! | `gen_ai.request.temperature`, `.max_tokens`, `.top_p`, `.top_k`, `.frequency_penalty`, `.presence_penalty`, `.seed` | the [`Request`] methods of those names |
//! | `gen_ai.conversation.id` | [`Request::conversation_id`] |
//! | `server.address`, `server.port` | [`Request::server`] |
//! | `gen_ai.response.model`, `gen_ai.response.id`, `gen_ai.response.finish_reasons` | [`LlmSpan::response`] |
//! | `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` | [`LlmSpan::usage`] |
//! | `gen_ai.input.messages`, `gen_ai.output.messages` | [`LlmSpan::record_input`], [`LlmSpan::record_output`], **only** with [`Request::capture_content`] on |
//!
//! The span is `Client`, named `{gen_ai.operation.name} {gen_ai.request.model}`. Prompts and
//! completions are off by default; captured, they are JSON text with the redaction policy
//! applied (values under denied keys replaced whole, every string redacted) and cut to 4 KiB.
//! Errors are classified High / `dependency`, timeouts Medium / `timeout`; a failure that is
//! not a Rust error (a status the provider answered) goes through
//! [`WorkSpan::record_failure`].
//!
//! **Metrics**: when the guard is dropped, `gen_ai.client.operation.duration` and, when
//! [`usage`](LlmSpan::usage) was given, `gen_ai.client.token.usage` (one point per token
//! type) are recorded through the global meter provider, for every call whatever the trace
//! sampler decided (see [`crate::metrics`]). So unlike the other helpers, an unsampled LLM
//! call also takes the clock and keeps its metric attributes (a few small copies, against a
//! call that takes hundreds of milliseconds).
//!
//! ```
//! use service_tracing::work::llm;
//!
//! struct Reply { id: String, model: String, text: String, input: u64, output: u64 }
//!
//! async fn ask(prompt: &str) -> Result<Reply, std::io::Error> {
//!     Ok(Reply { id: "chatcmpl-1".into(), model: "gpt-4o-2024-08-06".into(),
//!                text: format!("echo: {prompt}"), input: 12, output: 30 })
//! }
//!
//! # async fn run() -> Result<(), std::io::Error> {
//! let reply = llm::chat("openai", "gpt-4o")
//!     .temperature(0.2)
//!     .max_tokens(256)
//!     .in_scope_with(ask("hello"), |out, span| match out {
//!         Ok(reply) => {
//!             span.response(&reply.model, &reply.id, &["stop"]);
//!             span.usage(reply.input, reply.output);
//!             span.succeed();
//!         }
//!         Err(e) => span.record_error(e),
//!     })
//!     .await?;
//! // span "chat gpt-4o"; the token and duration histograms have one more point each
//! # assert_eq!(reply.text, "echo: hello");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use opentelemetry::trace::SpanKind;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use serde::Serialize;

use super::capture::{capture, default_redactor};
use super::{InScope, Outcome, WorkSpan};
use crate::errors::{Category, Severity};
use crate::metrics::{record_gen_ai, GenAiCall};
use crate::redact::Redactor;

/// An LLM call about to be made: [`start`](Request::start) it, or run a future in it with
/// [`in_scope`](Request::in_scope) / [`in_scope_with`](Request::in_scope_with).
///
/// ```
/// let mut span = service_tracing::work::llm::chat("anthropic", "claude-sonnet-4").max_tokens(1024).start();
/// span.usage(100, 42);
/// span.succeed();
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a request does nothing until started"]
#[non_exhaustive]
pub struct Request<'a> {
    operation: &'a str,
    provider: &'a str,
    model: &'a str,
    server: Option<(&'a str, u16)>,
    conversation: Option<&'a str>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<f64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    max_tokens: Option<i64>,
    seed: Option<i64>,
    capture: bool,
    redactor: Option<&'a Redactor>,
}

/// A `chat` call to `model` of `provider`. See the [module docs](self).
///
/// ```
/// let request = service_tracing::work::llm::chat("openai", "gpt-4o");
/// # let _ = request;
/// ```
pub fn chat<'a>(provider: &'a str, model: &'a str) -> Request<'a> {
    request("chat", provider, model)
}

/// A call doing `operation` (`gen_ai.operation.name`: `chat`, `text_completion`,
/// `generate_content`, `embeddings`, ...) on `model` of `provider`.
///
/// ```
/// let request = service_tracing::work::llm::request("embeddings", "openai", "text-embedding-3-small");
/// # let _ = request;
/// ```
pub fn request<'a>(operation: &'a str, provider: &'a str, model: &'a str) -> Request<'a> {
    Request {
        operation,
        provider,
        model,
        server: None,
        conversation: None,
        temperature: None,
        top_p: None,
        top_k: None,
        frequency_penalty: None,
        presence_penalty: None,
        max_tokens: None,
        seed: None,
        capture: false,
        redactor: None,
    }
}

macro_rules! parameters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = Some(value);
                self
            }
        )*
    };
}

impl<'a> Request<'a> {
    parameters! {
        /// `gen_ai.request.temperature`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").temperature(0.2);
        /// # let _ = r;
        /// ```
        temperature: f64,
        /// `gen_ai.request.top_p`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").top_p(0.9);
        /// # let _ = r;
        /// ```
        top_p: f64,
        /// `gen_ai.request.top_k`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("gcp.gemini", "gemini-2.5-pro").top_k(40.0);
        /// # let _ = r;
        /// ```
        top_k: f64,
        /// `gen_ai.request.frequency_penalty`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").frequency_penalty(0.1);
        /// # let _ = r;
        /// ```
        frequency_penalty: f64,
        /// `gen_ai.request.presence_penalty`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").presence_penalty(0.1);
        /// # let _ = r;
        /// ```
        presence_penalty: f64,
        /// `gen_ai.request.max_tokens`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").max_tokens(512);
        /// # let _ = r;
        /// ```
        max_tokens: i64,
        /// `gen_ai.request.seed`.
        ///
        /// ```
        /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").seed(100);
        /// # let _ = r;
        /// ```
        seed: i64,
    }

    /// `server.address` and `server.port` of the model's endpoint.
    ///
    /// ```
    /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").server("api.openai.com", 443);
    /// # let _ = r;
    /// ```
    pub fn server(mut self, address: &'a str, port: u16) -> Self {
        self.server = Some((address, port));
        self
    }

    /// `gen_ai.conversation.id`: the conversation (session, thread) the call belongs to.
    ///
    /// ```
    /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").conversation_id("conv_5j66");
    /// # let _ = r;
    /// ```
    pub fn conversation_id(mut self, id: &'a str) -> Self {
        self.conversation = Some(id);
        self
    }

    /// Whether prompts and completions are recorded (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`): off by default, as the conventions ask.
    ///
    /// ```
    /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").capture_content(true);
    /// # let _ = r;
    /// ```
    pub fn capture_content(mut self, capture: bool) -> Self {
        self.capture = capture;
        self
    }

    /// The redaction policy captured content goes through (default: [`Redactor::new`]).
    ///
    /// ```
    /// use service_tracing::redact::Redactor;
    /// let policy = Redactor::new().with_denied_key("ssn");
    /// let r = service_tracing::work::llm::chat("openai", "gpt-4o").capture_content(true).redactor(&policy);
    /// # let _ = r;
    /// ```
    pub fn redactor(mut self, redactor: &'a Redactor) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// The attributes the metrics and the span share.
    fn common_attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(16);
        attributes.push(KeyValue::new(
            "gen_ai.operation.name",
            self.operation.to_owned(),
        ));
        attributes.push(KeyValue::new(
            "gen_ai.provider.name",
            self.provider.to_owned(),
        ));
        attributes.push(KeyValue::new("gen_ai.request.model", self.model.to_owned()));
        if let Some((address, port)) = self.server {
            attributes.push(KeyValue::new("server.address", address.to_owned()));
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        attributes
    }

    fn span_attributes(&self) -> Vec<KeyValue> {
        let mut attributes = self.common_attributes();
        let floats = [
            ("gen_ai.request.temperature", self.temperature),
            ("gen_ai.request.top_p", self.top_p),
            ("gen_ai.request.top_k", self.top_k),
            ("gen_ai.request.frequency_penalty", self.frequency_penalty),
            ("gen_ai.request.presence_penalty", self.presence_penalty),
        ];
        for (key, value) in floats {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value));
            }
        }
        for (key, value) in [
            ("gen_ai.request.max_tokens", self.max_tokens),
            ("gen_ai.request.seed", self.seed),
        ] {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value));
            }
        }
        if let Some(id) = self.conversation {
            attributes.push(KeyValue::new("gen_ai.conversation.id", id.to_owned()));
        }
        attributes
    }

    /// Starts the span (when the request is sampled) and the clock of the metrics (always).
    ///
    /// ```
    /// let mut span = service_tracing::work::llm::chat("openai", "gpt-4o").start();
    /// span.record_failure("429", "rate limited");
    /// ```
    pub fn start(self) -> LlmSpan {
        let started = Instant::now();
        let span = WorkSpan::start_with(SpanKind::Client, || {
            (
                Cow::Owned(format!("{} {}", self.operation, self.model)),
                self.span_attributes(),
            )
        })
        .errors_as(Severity::High, Category::Dependency);
        let redactor = (self.capture && span.is_recording())
            .then(|| self.redactor.unwrap_or_else(|| default_redactor()).clone());
        LlmSpan {
            span,
            redactor,
            metrics: Box::new(Metrics {
                attributes: self.common_attributes(),
                started,
                response_model: None,
                input_tokens: None,
                output_tokens: None,
            }),
        }
    }

    /// Runs `future` inside the started span ([`WorkSpan::in_scope`]): an `Err` output is
    /// recorded as the call's error. To record the response and the usage from the output,
    /// [`in_scope_with`](Self::in_scope_with).
    ///
    /// ```
    /// # async fn run() {
    /// let out: Result<String, std::io::Error> =
    ///     service_tracing::work::llm::chat("openai", "gpt-4o").in_scope(async { Ok("hi".to_owned()) }).await;
    /// # assert!(out.is_ok());
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run());
    /// ```
    pub fn in_scope<F>(self, future: F) -> InScope<LlmSpan, F>
    where
        F: std::future::Future,
        F::Output: Outcome,
    {
        InScope::new(
            self.start(),
            future,
            |output: &F::Output, span: &mut LlmSpan| {
                output.record_on(&mut span.span);
            },
        )
    }

    /// Runs `future` inside the started span; `on_output` records the response, the usage
    /// and the outcome from the output (see the [module docs](self)).
    pub fn in_scope_with<F, C>(self, future: F, on_output: C) -> InScope<LlmSpan, F, C>
    where
        F: std::future::Future,
        C: FnOnce(&F::Output, &mut LlmSpan),
    {
        InScope::new(self.start(), future, on_output)
    }
}

/// What the metrics need when the call ends, kept whatever the sampling.
#[derive(Debug)]
struct Metrics {
    attributes: Vec<KeyValue>,
    started: Instant,
    response_model: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// A started LLM call: a [`WorkSpan`] (its methods through `Deref`) that records the response,
/// the usage and, when capture is on, the messages; its drop records the metrics.
///
/// ```
/// let mut span = service_tracing::work::llm::chat("openai", "gpt-4o").capture_content(true).start();
/// span.record_input(&serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]));
/// span.response("gpt-4o-2024-08-06", "chatcmpl-9", &["stop"]);
/// span.usage(5, 7);
/// span.succeed();
/// ```
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct LlmSpan {
    span: WorkSpan,
    redactor: Option<Redactor>,
    metrics: Box<Metrics>,
}

impl LlmSpan {
    /// `gen_ai.response.model`, `gen_ai.response.id` and `gen_ai.response.finish_reasons`
    /// (one per choice); the response model also labels the metrics.
    pub fn response(&mut self, model: &str, id: &str, finish_reasons: &[&str]) {
        self.metrics.response_model = Some(model.to_owned());
        if self.span.is_recording() {
            let reasons: Vec<StringValue> = finish_reasons
                .iter()
                .map(|r| StringValue::from((*r).to_owned()))
                .collect();
            self.span
                .set_attribute(KeyValue::new("gen_ai.response.model", model.to_owned()));
            self.span
                .set_attribute(KeyValue::new("gen_ai.response.id", id.to_owned()));
            self.span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(reasons)),
            ));
        }
    }

    /// `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`, and the
    /// `gen_ai.client.token.usage` points.
    pub fn usage(&mut self, input_tokens: u64, output_tokens: u64) {
        self.metrics.input_tokens = Some(input_tokens);
        self.metrics.output_tokens = Some(output_tokens);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.span.set_attribute(KeyValue::new(
            "gen_ai.usage.input_tokens",
            count(input_tokens),
        ));
        self.span.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            count(output_tokens),
        ));
    }

    /// `gen_ai.input.messages` (redacted, capped JSON), when content capture is on.
    pub fn record_input<T: Serialize + ?Sized>(&self, messages: &T) {
        if let Some(redactor) = &self.redactor {
            self.span.set_attribute(KeyValue::new(
                "gen_ai.input.messages",
                capture(messages, redactor),
            ));
        }
    }

    /// `gen_ai.output.messages` (redacted, capped JSON), when content capture is on.
    pub fn record_output<T: Serialize + ?Sized>(&self, messages: &T) {
        if let Some(redactor) = &self.redactor {
            self.span.set_attribute(KeyValue::new(
                "gen_ai.output.messages",
                capture(messages, redactor),
            ));
        }
    }
}

impl Drop for LlmSpan {
    fn drop(&mut self) {
        let mut attributes = std::mem::take(&mut self.metrics.attributes);
        if let Some(model) = self.metrics.response_model.take() {
            attributes.push(KeyValue::new("gen_ai.response.model", model));
        }
        record_gen_ai(GenAiCall {
            attributes,
            error_type: self.span.error_type(),
            elapsed: self.metrics.started.elapsed(),
            input_tokens: self.metrics.input_tokens,
            output_tokens: self.metrics.output_tokens,
        });
    }
}

impl Deref for LlmSpan {
    type Target = WorkSpan;
    fn deref(&self) -> &WorkSpan {
        &self.span
    }
}

impl DerefMut for LlmSpan {
    fn deref_mut(&mut self) -> &mut WorkSpan {
        &mut self.span
    }
}

impl AsRef<WorkSpan> for LlmSpan {
    fn as_ref(&self) -> &WorkSpan {
        &self.span
    }
}

impl AsMut<WorkSpan> for LlmSpan {
    fn as_mut(&mut self) -> &mut WorkSpan {
        &mut self.span
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::global;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::Sampler;

    use super::*;
    use crate::work::tests::{attribute, exception, has, install, one, text};

    #[tokio::test]
    async fn an_llm_call_records_the_conventions_attributes_and_keeps_content_off() {
        let (exporter, _) = install(Sampler::AlwaysOn);
        let out: Result<&str, std::io::Error> = chat("openai", "gpt-4o")
            .server("api.openai.com", 443)
            .temperature(0.5)
            .max_tokens(100)
            .top_p(0.9)
            .in_scope_with(async { Ok("hello") }, |out, span| {
                span.record_input(&"never recorded");
                if out.is_ok() {
                    span.response("gpt-4o-2024-08-06", "chatcmpl-1", &["stop"]);
                    span.usage(12, 30);
                    span.succeed();
                }
            })
            .await;
        assert!(out.is_ok());
        let span = one(&exporter, "chat gpt-4o");
        assert_eq!(span.span_kind, SpanKind::Client);
        for (key, value) in [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o"),
            ("gen_ai.response.model", "gpt-4o-2024-08-06"),
            ("gen_ai.response.id", "chatcmpl-1"),
            ("server.address", "api.openai.com"),
        ] {
            assert_eq!(text(&span, key), value, "{key}");
        }
        for (key, value) in [
            ("gen_ai.request.temperature", Value::F64(0.5)),
            ("gen_ai.request.top_p", Value::F64(0.9)),
            ("gen_ai.request.max_tokens", Value::I64(100)),
            ("gen_ai.usage.input_tokens", Value::I64(12)),
            ("gen_ai.usage.output_tokens", Value::I64(30)),
            ("server.port", Value::I64(443)),
            (
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec!["stop".into()])),
            ),
        ] {
            assert_eq!(attribute(&span, key), Some(&value), "{key}");
        }
        assert!(attribute(&span, "gen_ai.input.messages").is_none());
    }

    #[test]
    fn content_is_recorded_redacted_only_when_asked_and_failures_are_dependency() {
        let (exporter, _) = install(Sampler::AlwaysOn);
        let mut span = chat("anthropic", "claude-sonnet-4")
            .capture_content(true)
            .start();
        span.record_input(
            &serde_json::json!([{"role": "user", "content": "my mail is bob@example.com"}]),
        );
        span.record_output(&serde_json::json!([{"role": "assistant", "content": "noted"}]));
        span.record_failure("overloaded_error", "Overloaded");
        drop(span);
        let span = one(&exporter, "chat claude-sonnet-4");
        let input: serde_json::Value =
            serde_json::from_str(&text(&span, "gen_ai.input.messages")).expect("JSON");
        assert_eq!(input[0]["content"], "my mail is [REDACTED]");
        assert!(text(&span, "gen_ai.output.messages").contains("noted"));
        assert_eq!(text(&span, "error.type"), "overloaded_error");
        assert!(has(&exception(&span), "error.category", "dependency"));
    }

    /// The histograms get one point per call whatever the sampling, with the conventions'
    /// names, units, buckets and attributes.
    #[test]
    fn token_usage_and_duration_reach_the_metrics_even_unsampled() {
        let _ = install(Sampler::AlwaysOff);
        let metrics = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        global::set_meter_provider(provider.clone());
        // Inside an unsampled request.
        opentelemetry::trace::Tracer::in_span(&global::tracer("t"), "GET /", |_cx| {
            let mut span = chat("openai", "gpt-4o").start();
            assert!(span.context().is_none(), "not sampled");
            span.response("gpt-4o-2024-08-06", "chatcmpl-2", &["length"]);
            span.usage(12, 30);
            span.succeed();
            drop(span);
            let mut failed = chat("openai", "gpt-4o").start();
            failed.record_failure("429", "rate limited");
        });
        provider.force_flush().expect("flush");
        let exported = metrics.get_finished_metrics().expect("metrics");
        let all: Vec<_> = exported
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .collect();
        let find = |name: &str| {
            all.iter()
                .find(|m| m.name() == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let usage = find("gen_ai.client.token.usage");
        assert_eq!(usage.unit(), "{token}");
        let AggregatedMetrics::U64(MetricData::Histogram(usage)) = usage.data() else {
            panic!("a u64 histogram");
        };
        let mut points: Vec<(String, u64, Vec<f64>)> = usage
            .data_points()
            .map(|p| {
                let kind = p
                    .attributes()
                    .find(|kv| kv.key.as_str() == "gen_ai.token.type")
                    .map(|kv| kv.value.to_string())
                    .unwrap_or_default();
                assert!(p
                    .attributes()
                    .any(|kv| kv.key.as_str() == "gen_ai.response.model"
                        && kv.value.as_str() == "gpt-4o-2024-08-06"));
                (kind, p.sum(), p.bounds().collect())
            })
            .collect();
        points.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!((points[0].0.as_str(), points[0].1), ("input", 12));
        assert_eq!((points[1].0.as_str(), points[1].1), ("output", 30));
        assert_eq!(
            points[0].2,
            crate::metrics::GEN_AI_TOKEN_USAGE_BOUNDARIES.to_vec()
        );

        let duration = find("gen_ai.client.operation.duration");
        assert_eq!(duration.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(duration)) = duration.data() else {
            panic!("an f64 histogram");
        };
        let points: Vec<_> = duration.data_points().collect();
        assert_eq!(points.len(), 2, "a success and a 429");
        let errors: Vec<String> = points
            .iter()
            .filter_map(|p| {
                p.attributes()
                    .find(|kv| kv.key.as_str() == "error.type")
                    .map(|kv| kv.value.to_string())
            })
            .collect();
        assert_eq!(errors, ["429"]);
        assert_eq!(
            points[0].bounds().collect::<Vec<_>>(),
            crate::metrics::GEN_AI_DURATION_BOUNDARIES.to_vec()
        );
    }
}
