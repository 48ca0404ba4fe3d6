//! W3C Baggage (`baggage`).

use std::sync::OnceLock;

use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use opentelemetry::{Key, StringValue};

use super::BAGGAGE;
use crate::correlation::{CorrelationId, BAGGAGE_KEY};

/// Caps of the W3C Baggage specification.
const BAGGAGE_MAX_MEMBERS: usize = 64;
const BAGGAGE_MAX_BYTES: usize = 8192;
const BAGGAGE_MAX_MEMBER_BYTES: usize = 4096;

/// Characters a baggage value must percent-encode: everything outside `baggage-octet`.
const BAGGAGE_VALUE_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// The W3C Baggage propagator (`baggage` header).
///
/// Values are percent-decoded on the way in and encoded on the way out; properties are kept.
/// A malformed member is dropped alone; members over 4096 bytes, past 64 members or past 8192
/// bytes in all are dropped whole, never cut.
///
/// ```
/// use service_tracing_middleware::propagation::W3cBaggage;
/// let baggage = W3cBaggage::parse(["user=J%C3%B6rg;pii, bad member ,tier=gold"]);
/// assert_eq!(baggage.get("user").map(|v| v.as_str()), Some("Jörg"));
/// assert_eq!(baggage.get("tier").map(|v| v.as_str()), Some("gold"));
/// assert_eq!(baggage.len(), 2);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cBaggage {
    _private: (),
}

fn baggage_fields() -> &'static [String; 1] {
    static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
    FIELDS.get_or_init(|| [BAGGAGE.as_str().to_owned()])
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl W3cBaggage {
    /// Makes the propagator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the values of every `baggage` header, in order.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Baggage {
        let mut baggage = Baggage::new();
        let mut total = 0usize;
        for header in headers {
            for member in header.split(',') {
                if baggage.len() >= BAGGAGE_MAX_MEMBERS {
                    return baggage;
                }
                let member = member.trim_matches([' ', '\t']);
                if member.is_empty() || member.len() > BAGGAGE_MAX_MEMBER_BYTES {
                    continue;
                }
                if total + member.len() + usize::from(total > 0) > BAGGAGE_MAX_BYTES {
                    continue;
                }
                let (pair, properties) = match member.split_once(';') {
                    Some((pair, props)) => (pair, props.trim_matches([' ', '\t'])),
                    None => (member, ""),
                };
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let (key, value) = (
                    key.trim_matches([' ', '\t']),
                    value.trim_matches([' ', '\t']),
                );
                if !is_token(key) || value.bytes().any(|b| b == b'"' || b == b'\\' || b <= b' ') {
                    continue;
                }
                let Ok(decoded) = percent_decode_str(value).decode_utf8() else {
                    continue;
                };
                let metadata = BaggageMetadata::from(properties.to_owned());
                if baggage
                    .insert_with_metadata(key.to_owned(), decoded.into_owned(), metadata)
                    .is_none()
                    && baggage.get(key).is_none()
                {
                    continue;
                }
                total += member.len() + usize::from(total > 0);
            }
        }
        baggage
    }

    /// Writes baggage as a header value, or `None` when there is nothing to send.
    pub fn header_value(baggage: &Baggage) -> Option<String> {
        Self::header_value_with(baggage, None)
    }

    /// Like [`header_value`](Self::header_value), with the request's correlation id as the
    /// `correlation.id` member (replacing any other value of that key).
    pub fn header_value_with(
        baggage: &Baggage,
        correlation: Option<&CorrelationId>,
    ) -> Option<String> {
        let mut out = String::new();
        let mut members = 0;
        let ours = correlation.map(|id| {
            (
                Key::from_static_str(BAGGAGE_KEY),
                (StringValue::from(id.as_arc()), BaggageMetadata::default()),
            )
        });
        let theirs = baggage
            .iter()
            .filter(|(key, _)| correlation.is_none() || key.as_str() != BAGGAGE_KEY)
            .map(|(k, (v, m))| (k.clone(), (v.clone(), m.clone())));
        for (key, (value, metadata)) in theirs.chain(ours) {
            let mut member = format!(
                "{}={}",
                key.as_str(),
                utf8_percent_encode(value.as_str(), BAGGAGE_VALUE_ENCODE)
            );
            if !metadata.as_str().is_empty() {
                member.push(';');
                member.push_str(metadata.as_str());
            }
            if member.len() > BAGGAGE_MAX_MEMBER_BYTES
                || members == BAGGAGE_MAX_MEMBERS
                || out.len() + member.len() + 1 > BAGGAGE_MAX_BYTES
            {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&member);
            members += 1;
        }
        (!out.is_empty()).then_some(out)
    }
}

impl W3cBaggage {
    /// Reads `baggage` straight from a header map.
    pub fn extract_from_headers(headers: &http::HeaderMap) -> Option<Baggage> {
        let mut values = headers
            .get_all(&BAGGAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        values.peek()?;
        let baggage = Self::parse(values);
        (!baggage.is_empty()).then_some(baggage)
    }
}

impl TextMapPropagator for W3cBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        // The request's correlation id travels as the `correlation.id` member.
        let correlation = CorrelationId::from_context(cx);
        if let Some(value) = Self::header_value_with(cx.baggage(), correlation.as_ref()) {
            injector.set(BAGGAGE.as_str(), value);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get_all(BAGGAGE.as_str()) {
            Some(values) => {
                let baggage = Self::parse(values);
                if baggage.is_empty() {
                    cx.clone()
                } else {
                    cx.with_baggage(baggage)
                }
            }
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(baggage_fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_round_trips_with_encoding_and_properties() {
        let baggage = W3cBaggage::parse(["k1=a%20b%2Cc;p1=x, k2=plain"]);
        assert_eq!(baggage.get("k1").map(|v| v.as_str()), Some("a b,c"));
        let header = W3cBaggage::header_value(&baggage).expect("non-empty");
        let again = W3cBaggage::parse([header.as_str()]);
        assert_eq!(
            again.get_with_metadata("k1"),
            baggage.get_with_metadata("k1")
        );
        assert_eq!(again.get("k2").map(|v| v.as_str()), Some("plain"));
    }

    #[test]
    fn baggage_limits_drop_whole_members() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let joined = many.join(",");
        assert_eq!(
            W3cBaggage::parse([joined.as_str()]).len(),
            BAGGAGE_MAX_MEMBERS
        );

        let big = format!("big={},small=1", "x".repeat(5000));
        let baggage = W3cBaggage::parse([big.as_str()]);
        assert!(baggage.get("big").is_none());
        assert_eq!(baggage.get("small").map(|v| v.as_str()), Some("1"));

        let invalid_utf8 = W3cBaggage::parse(["a=%FF%FE,b=ok"]);
        assert!(invalid_utf8.get("a").is_none());
        assert_eq!(invalid_utf8.len(), 1);
    }
}
