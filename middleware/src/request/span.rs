//! The server span: started from the parent context, named and attributed after the HTTP
//! semantic conventions, and the one context value the layer adds ([`RequestScope`]).
//!
//! What the sampler is known to decide ([`SamplerHint`](crate::SamplerHint)) saves work: an
//! unsampled parent under a parent-based sampler gets its non-recording span without the
//! tracer, and attributes are built only for a span that records.

use http::Request;
use opentelemetry::trace::{SpanBuilder, SpanContext, SpanKind, TraceContextExt, TraceFlags};
use opentelemetry::Context;

use super::attributes::ServerRequest;
use super::headers::Present;
use super::naming::Naming;
use super::parent::Parent;
use crate::cause::RequestErrors;
use crate::config::Config;
use crate::correlation::CorrelationId;
use crate::scope::RequestScope;

/// The request's context: the server span, current under `parent`, with the layer's value;
/// and whether the span records (asked once: it locks the span). The span starts at `start`,
/// the request's start as the layer read it.
pub(crate) fn start<B>(
    config: &Config,
    req: &Request<B>,
    present: &Present<'_>,
    mut parent: Parent,
    naming: &Naming<'_>,
    id: &CorrelationId,
    start: &crate::clock::Start,
) -> (Context, bool) {
    let links = std::mem::take(&mut parent.links);
    let parent_sc = parent.span_context();
    let with_span = if config.sampler_hint.drops_unsampled_parents()
        && parent_sc.is_valid()
        && !parent_sc.is_sampled()
    {
        // What the parent-based sampler would decide, without the tracer: a span that does not
        // record, with its own id under the parent's trace (local: not remote).
        parent.with_span_context(SpanContext::new(
            parent_sc.trace_id(),
            crate::ids::span_id(),
            TraceFlags::default(),
            false,
            parent_sc.trace_state().clone(),
        ))
    } else {
        let builder = SpanBuilder::from_name(naming.span_name.clone())
            .with_kind(SpanKind::Server)
            .with_links(links)
            .with_start_time(start.wall());
        start_with_tracer(config, req, present, &parent, builder, naming, id)
    };
    // W3C Level 2: a new root's trace id is random; say so to the next hop.
    let random_trace_id = crate::propagation::RandomTraceId::vouch_after(
        parent_sc,
        with_span.span().span_context().trace_id(),
    )
    .map(|m| m.trace_id());
    // One value for the correlation id, the root-cause place and the random flag: one copy of
    // the context's map instead of three. The correlation id joins outbound baggage when it is
    // injected (see `W3cBaggage`), so nothing is copied here.
    let cx = with_span.with_value(RequestScope {
        id: Some(id.clone()),
        errors: config.error_causes.then(RequestErrors::default),
        random_trace_id,
    });
    let span = cx.span();
    let recording = span.is_recording();
    if recording && !config.span_hooks.is_empty() {
        let head = crate::hook::RequestHead::of(req);
        for hook in config.span_hooks.iter() {
            hook.on_request(&head, &span);
        }
    }
    (cx, recording)
}

/// The server span of `builder` (named, with its kind, links and start time) as the tracer
/// starts it, under `parent`.
fn start_with_tracer<B>(
    config: &Config,
    req: &Request<B>,
    present: &Present<'_>,
    parent: &Parent,
    builder: SpanBuilder,
    naming: &Naming<'_>,
    id: &CorrelationId,
) -> Context {
    // Read before the span only what the sampler may look at (nothing, for a sampler known to
    // read no attributes); the rest once it records.
    let mut read_early =
        (!config.sampler_hint.ignores_attributes()).then(|| ServerRequest::early_of(req, naming));
    // The tracer moves this Vec into the span. Given the request's attributes as `KeyValue`s,
    // room for every one (the request's and the response's) saves reallocations; given them
    // apart (`start_server`), a tracer may need none at all.
    let mut attributes = Vec::new();
    if let Some(request) = &read_early {
        attributes.reserve(16);
        request.push_early(&mut attributes);
    }
    let builder = builder.with_attributes(attributes);
    if read_early.is_none() {
        return config
            .tracer
            .start_server(builder, &parent.context(), &mut || {
                ServerRequest::of(&config.request_headers, req, naming, id, present.user_agent)
            });
    }
    config
        .tracer
        .start_recorded_in(builder, &parent.context(), &mut |more| {
            if let Some(mut request) = read_early.take() {
                request.read_rest(&config.request_headers, req, naming, id, present.user_agent);
                request.push_key_values(false, more);
            }
        })
}

/// Host and port of an authority (`host`, `host:port`, `[v6]:port`, with any `userinfo@`
/// dropped), as `http::uri::Authority` gives them, or `None` when it is not one. Parsing
/// into an `Authority` first cost an allocation and three passes over the text.
pub(super) fn split_authority(authority: &[u8]) -> Option<(&str, Option<u16>)> {
    // Whatever comes before the last `@` is userinfo.
    let start = authority
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(0, |at| at + 1);
    let text = &authority[start..];
    let (host, port) = if text.first() == Some(&b'[') {
        let end = text.iter().position(|&b| b == b']')?;
        let inner = &text[1..end];
        let v6 = !inner.is_empty()
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        match (v6, &text[end + 1..]) {
            (false, _) => return None,
            (true, []) => (&text[..=end], None),
            (true, [b':', port @ ..]) => (&text[..=end], Some(port)),
            (true, _) => return None,
        }
    } else {
        // One pass: every byte a reg-name byte (RFC 3986), the last `:` splitting off the port.
        let mut colon = None;
        for (i, &b) in text.iter().enumerate() {
            match REG_NAME[usize::from(b)] {
                true => {}
                false if b == b':' => colon = Some(i),
                false => return None,
            }
        }
        let (host, port) = match colon {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        // A `:` before the last one is no reg-name byte.
        if host.is_empty() || host.contains(&b':') {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None | Some([]) => None,
        Some(digits) if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => Some(
            u16::try_from(
                digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0')),
            )
            .ok()?,
        ),
        Some(_) => return None,
    };
    // Every byte kept is ASCII.
    Some((std::str::from_utf8(host).ok()?, port))
}

/// The bytes of an RFC 3986 reg-name: unreserved, percent and sub-delims.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::split_authority;

    #[test]
    fn authorities_split_as_http_splits_them() {
        let same = [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:443",
            "127.0.0.1:80",
            "[::1]:8080",
            "[::1]",
            "[2001:db8::7]:65535",
            "user:pass@example.com:81",
            "a@b@example.com",
            "host:",
            "sub-domain.example_1.com",
            "example.com:65535",
        ];
        for text in same {
            let http: http::uri::Authority = text.parse().expect(text);
            assert_eq!(
                split_authority(text.as_bytes()),
                Some((http.host(), http.port_u16())),
                "{text}"
            );
        }
        // Refused by both; or, for the last ones, accepted by `http` but no host to report.
        for text in [
            "",
            "example.com:99999",
            "example.com:8o",
            "exa mple.com",
            "exa\"mple",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "\u{e9}t\u{e9}.example",
            ":8080",
            "@",
        ] {
            assert_eq!(split_authority(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(split_authority(b"\xff\xfe"), None);
    }
}
