//! Choosing propagators by their `OTEL_PROPAGATORS` names, and [`FirstMatchPropagator`].

use std::fmt;
use std::sync::Arc;

use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;

use super::jaeger::merge_into;
use super::{
    B3Propagator, JaegerBaggage, JaegerPropagator, SharedPropagator, W3cBaggage, W3cTraceContext,
};

/// The `OTEL_PROPAGATORS` values [`propagator_from_names`] knows.
pub const PROPAGATOR_NAMES: [&str; 6] =
    ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "none"];

/// Several propagators as one: on extraction the trace-context formats are tried in order and
/// the **first valid one wins** (where `TextMapCompositePropagator` lets later ones overwrite
/// earlier ones), while the baggage formats are all read and merged (on a key sent twice, the
/// earlier format's value is kept). On injection every format is written, trace contexts first.
///
/// A trace-context format that reads only a sampling decision without ids (B3's `b3: 0`) is
/// used when no format gives a valid span context. With no formats at all, it reads and
/// writes nothing (`OTEL_PROPAGATORS=none`).
///
/// Cloning is cheap and shares the propagators.
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// use service_tracing_middleware::propagation::{
///     extract, B3Propagator, FirstMatchPropagator, W3cBaggage, W3cTraceContext,
/// };
///
/// let propagator = FirstMatchPropagator::new()
///     .with_trace_context(W3cTraceContext::new())
///     .with_trace_context(B3Propagator::single())
///     .with_baggage(W3cBaggage::new());
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
/// headers.insert("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1".parse().unwrap());
/// let cx = extract(&propagator, &headers);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct FirstMatchPropagator {
    trace: Vec<SharedPropagator>,
    baggage: Vec<SharedPropagator>,
    names: Vec<&'static str>,
    fields: Arc<[String]>,
}

impl fmt::Debug for FirstMatchPropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstMatchPropagator")
            .field("formats", &self.names)
            .field("fields", &self.fields)
            .finish()
    }
}

impl FirstMatchPropagator {
    /// A propagator with no formats: it reads and writes nothing until some are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trace-context format, tried after those added before.
    pub fn with_trace_context<P>(self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.push(true, "custom", Arc::new(propagator))
    }

    /// Adds a baggage format, merged with the others.
    pub fn with_baggage<P>(self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.push(false, "custom", Arc::new(propagator))
    }

    fn push(mut self, trace: bool, name: &'static str, propagator: SharedPropagator) -> Self {
        let mut fields: Vec<String> = self.fields.to_vec();
        for field in propagator.fields() {
            if !fields.iter().any(|f| f == field) {
                fields.push(field.to_owned());
            }
        }
        self.fields = fields.into();
        if !self.names.contains(&name) || name == "custom" {
            self.names.push(name);
        }
        if trace {
            self.trace.push(propagator);
        } else {
            self.baggage.push(propagator);
        }
        self
    }

    /// The `OTEL_PROPAGATORS` names it was made from, in order (`custom` for a propagator added
    /// with [`with_trace_context`](Self::with_trace_context) or
    /// [`with_baggage`](Self::with_baggage)).
    ///
    /// ```
    /// use service_tracing_middleware::propagation::propagator_from_names;
    /// let p = propagator_from_names(["tracecontext", "B3", "tracecontext"]).unwrap();
    /// assert_eq!(p.names(), ["tracecontext", "b3"]);
    /// ```
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The same propagator, shared, as [`PropagatorSource::Fixed`](super::PropagatorSource)
    /// holds one.
    pub fn into_shared(self) -> SharedPropagator {
        Arc::new(self)
    }
}

impl TextMapPropagator for FirstMatchPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        for p in self.trace.iter().chain(&self.baggage) {
            p.inject_context(cx, injector);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let mut decision_only = None;
        let mut chosen = None;
        for p in &self.trace {
            let got = p.extract_with_context(cx, extractor);
            let (valid, remote) = {
                let span = got.span();
                let sc = span.span_context();
                (sc.is_valid(), sc.is_remote())
            };
            if valid {
                chosen = Some(got);
                break;
            }
            if decision_only.is_none() && remote {
                decision_only = Some(got);
            }
        }
        let out = chosen.or(decision_only).unwrap_or_else(|| cx.clone());

        let mut merged: Option<Baggage> = None;
        for p in &self.baggage {
            let got = p.extract_with_context(&Context::new(), extractor);
            let baggage = got.baggage();
            if baggage.is_empty() {
                continue;
            }
            merge_into(merged.get_or_insert_with(Baggage::new), baggage);
        }
        match merged {
            Some(baggage) => out.with_baggage(baggage),
            None => out,
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// A name [`propagator_from_names`] does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPropagator {
    name: String,
    reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Unknown,
    Unsupported,
    NoneWithOthers,
    Empty,
}

impl UnknownPropagator {
    /// The name at fault (empty when no name was given).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownPropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accepted = "tracecontext, baggage, b3, b3multi, jaeger, none";
        match self.reason {
            Reason::Unknown => write!(f, "unknown propagator {:?}: expected {accepted}", self.name),
            Reason::Unsupported => write!(
                f,
                "propagator {:?} is a standard OTEL_PROPAGATORS value but is not supported \
                 here: use {accepted}",
                self.name
            ),
            Reason::NoneWithOthers => {
                f.write_str("propagator \"none\" cannot be combined with other propagators")
            }
            Reason::Empty => write!(
                f,
                "no propagator named: use \"none\" to propagate nothing, or some of {accepted}"
            ),
        }
    }
}

impl std::error::Error for UnknownPropagator {}

/// Builds the propagator the standard `OTEL_PROPAGATORS` names describe, in their order:
/// `tracecontext` (W3C Trace Context), `baggage` (W3C Baggage), `b3` (B3 single header),
/// `b3multi` (B3 multi headers), `jaeger` (`uber-trace-id` and `uberctx-*` baggage), `none`.
///
/// Names are trimmed and compared ignoring case; empty ones are skipped and repeated ones
/// ignored. `none` alone gives a propagator that does nothing; with other names it is an
/// error, as are unknown names, `xray` and `ottrace` (standard, but not supported) and an
/// empty list. See [`FirstMatchPropagator`] for how the formats combine.
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// use service_tracing_middleware::propagation::{extract, inject, propagator_from_names};
///
/// let propagator = propagator_from_names(["tracecontext", "baggage", "b3"]).unwrap();
/// let mut incoming = http::HeaderMap::new();
/// incoming.insert("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1".parse().unwrap());
/// let cx = extract(&propagator, &incoming);
/// let mut outgoing = http::HeaderMap::new();
/// inject(&propagator, &cx, &mut outgoing);
/// assert_eq!(outgoing["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(outgoing["b3"], "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
///
/// assert!(propagator_from_names(["xray"]).is_err());
/// assert!(propagator_from_names(["none", "b3"]).is_err());
/// ```
pub fn propagator_from_names<I, S>(names: I) -> Result<FirstMatchPropagator, UnknownPropagator>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut chosen: Vec<&'static str> = Vec::new();
    for name in names {
        let raw = name.as_ref().trim();
        if raw.is_empty() {
            continue;
        }
        let Some(known) = PROPAGATOR_NAMES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(raw))
        else {
            let reason = if ["xray", "ottrace"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(raw))
            {
                Reason::Unsupported
            } else {
                Reason::Unknown
            };
            return Err(UnknownPropagator {
                name: raw.chars().take(64).collect(),
                reason,
            });
        };
        if !chosen.contains(known) {
            chosen.push(known);
        }
    }
    if chosen.is_empty() {
        return Err(UnknownPropagator {
            name: String::new(),
            reason: Reason::Empty,
        });
    }
    if chosen.contains(&"none") {
        if chosen.len() > 1 {
            return Err(UnknownPropagator {
                name: "none".to_owned(),
                reason: Reason::NoneWithOthers,
            });
        }
        let mut nothing = FirstMatchPropagator::new();
        nothing.names.push("none");
        return Ok(nothing);
    }
    let mut propagator = FirstMatchPropagator::new();
    for name in chosen {
        propagator = match name {
            "tracecontext" => propagator.push(true, name, Arc::new(W3cTraceContext::new())),
            "baggage" => propagator.push(false, name, Arc::new(W3cBaggage::new())),
            "b3" => propagator.push(true, name, Arc::new(B3Propagator::single())),
            "b3multi" => propagator.push(true, name, Arc::new(B3Propagator::multi())),
            _ => propagator
                .push(true, name, Arc::new(JaegerPropagator::trace_only()))
                .push(false, name, Arc::new(JaegerBaggage)),
        };
    }
    Ok(propagator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{extract, inject};
    use http::HeaderMap;

    const W3C_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const B3_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const JAEGER_TRACE: &str = "11112222333344445555666677778888";

    fn all_formats() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            format!("00-{W3C_TRACE}-b7ad6b7169203331-01")
                .parse()
                .expect("value"),
        );
        h.insert(
            "b3",
            format!("{B3_TRACE}-00f067aa0ba902b7-1")
                .parse()
                .expect("value"),
        );
        h.insert(
            "uber-trace-id",
            format!("{JAEGER_TRACE}:00f067aa0ba902b7:0:1")
                .parse()
                .expect("value"),
        );
        h.insert("baggage", "a=w3c,b=w3c".parse().expect("value"));
        h.insert("uberctx-b", "jaeger".parse().expect("value"));
        h.insert("uberctx-c", "jaeger".parse().expect("value"));
        h
    }

    fn trace_of(names: &[&str], headers: &HeaderMap) -> String {
        let p = propagator_from_names(names).expect("valid");
        extract(&p, headers)
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    #[test]
    fn first_configured_valid_format_wins() {
        let h = all_formats();
        assert_eq!(trace_of(&["tracecontext", "b3", "jaeger"], &h), W3C_TRACE);
        assert_eq!(trace_of(&["b3", "tracecontext"], &h), B3_TRACE);
        assert_eq!(
            trace_of(&["b3multi", "jaeger", "tracecontext"], &h),
            B3_TRACE
        );
        assert_eq!(trace_of(&["jaeger", "b3"], &h), JAEGER_TRACE);

        let mut broken = all_formats();
        broken.insert("traceparent", "00-garbage".parse().expect("value"));
        assert_eq!(trace_of(&["tracecontext", "b3"], &broken), B3_TRACE);
        // The composite would let the later format overwrite: first-match does not.
        assert_ne!(trace_of(&["tracecontext", "b3"], &h), B3_TRACE);
    }

    #[test]
    fn baggage_formats_merge_with_the_earlier_winning() {
        let h = all_formats();
        let p = propagator_from_names(["baggage", "jaeger"]).expect("valid");
        let cx = extract(&p, &h);
        let get = |k: &str| cx.baggage().get(k).map(|v| v.as_str().to_owned());
        assert_eq!(get("a").as_deref(), Some("w3c"));
        assert_eq!(get("b").as_deref(), Some("w3c"));
        assert_eq!(get("c").as_deref(), Some("jaeger"));

        let p = propagator_from_names(["jaeger", "baggage"]).expect("valid");
        let cx = extract(&p, &h);
        assert_eq!(cx.baggage().get("b").map(|v| v.as_str()), Some("jaeger"));
    }

    #[test]
    fn injection_writes_every_format() {
        let p = propagator_from_names(["tracecontext", "baggage", "b3", "b3multi", "jaeger"])
            .expect("valid");
        let cx = extract(&p, &all_formats());
        let mut out = HeaderMap::new();
        inject(&p, &cx, &mut out);
        for name in [
            "traceparent",
            "baggage",
            "b3",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "uber-trace-id",
            "uberctx-c",
        ] {
            assert!(out.contains_key(name), "{name} missing from {out:?}");
        }
        assert!(out["b3"].to_str().expect("ascii").starts_with(W3C_TRACE));
        assert!(out["uber-trace-id"]
            .to_str()
            .expect("ascii")
            .starts_with(W3C_TRACE));
        let fields: Vec<&str> = p.fields().collect();
        assert!(fields.contains(&"traceparent") && fields.contains(&"uber-trace-id"));
    }

    #[test]
    fn names_are_normalised_and_checked() {
        let p = propagator_from_names([" TraceContext ", "", "baggage", "tracecontext"])
            .expect("valid");
        assert_eq!(p.names(), ["tracecontext", "baggage"]);

        let none = propagator_from_names(["none", "none"]).expect("valid");
        let cx = extract(&none, &all_formats());
        assert!(!cx.has_active_span() && cx.baggage().is_empty());
        let mut out = HeaderMap::new();
        inject(&none, &cx, &mut out);
        assert!(out.is_empty());

        let err = propagator_from_names(["tracecontext", "none"]).expect_err("none with others");
        assert!(
            err.to_string().contains("\"none\" cannot be combined"),
            "{err}"
        );
        for unsupported in ["xray", "ottrace"] {
            let err = propagator_from_names([unsupported]).expect_err(unsupported);
            assert_eq!(err.name(), unsupported);
            assert!(err.to_string().contains("not supported"), "{err}");
        }
        let err = propagator_from_names(["w3c"]).expect_err("unknown");
        assert!(
            err.to_string().contains("unknown propagator \"w3c\""),
            "{err}"
        );
        assert!(propagator_from_names(Vec::<String>::new()).is_err());
        assert!(propagator_from_names([" , "]).is_err());
    }

    #[test]
    fn deny_only_is_used_when_nothing_valid_is_found() {
        let mut h = HeaderMap::new();
        h.insert("b3", "0".parse().expect("value"));
        let p = propagator_from_names(["b3", "tracecontext"]).expect("valid");
        let cx = extract(&p, &h);
        assert!(cx.has_active_span() && !cx.span().span_context().is_sampled());
        h.insert(
            "traceparent",
            format!("00-{W3C_TRACE}-b7ad6b7169203331-01")
                .parse()
                .expect("value"),
        );
        assert_eq!(trace_of(&["b3", "tracecontext"], &h), W3C_TRACE);
    }
}
