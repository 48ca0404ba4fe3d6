use std::time::SystemTime;

use opentelemetry::trace::{Event, Link, SpanContext, SpanId, SpanKind, Status};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::*;

#[test]
fn every_default_pattern_and_the_key_pattern_compile() {
    let p = patterns();
    for re in [&p.bearer, &p.basic, &p.jwt, &p.cloud, &p.email] {
        assert!(!re.as_str().is_empty());
    }
    assert!(Redactor::new().keys.kv.is_some());
}

#[test]
fn only_a_policy_denying_a_request_key_looks_at_a_server_records_keys() {
    // The defaults deny none of a server span's request keys: a record's keys are not looked at.
    assert!(!Redactor::new().keys.denies_a_request_key);
    assert!(!Redactor::without_defaults().keys.denies_a_request_key);
    for term in ["client.address", "agent", "query", "status_code"] {
        assert!(
            Redactor::new()
                .with_denied_key(term)
                .keys
                .denies_a_request_key,
            "{term}"
        );
    }
    assert!(
        !Redactor::new()
            .with_denied_key("ssn")
            .keys
            .denies_a_request_key
    );
}

#[test]
fn the_default_patterns_redact_what_the_docs_say() {
    let r = Redactor::new();
    for (input, expected) in [
        (
            "mail bob.smith+x@mail.example.co.uk now",
            "mail [REDACTED] now",
        ),
        (
            "header Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-_x",
            "header Authorization: Bearer [REDACTED]",
        ),
        (
            "Bearer 0123456789abcdef0123 rejected",
            "Bearer [REDACTED] rejected",
        ),
        ("basic dXNlcjpwYXNz== rejected", "basic [REDACTED] rejected"),
        (
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: Basic [REDACTED]",
        ),
        (
            "GET /login?user=a&password=hunter2&next=/",
            "GET /login?user=a&password=[REDACTED]&next=/",
        ),
        ("token: abc123, retry", "token: [REDACTED], retry"),
        (r#"secret="two words" bad"#, "secret=[REDACTED] bad"),
        ("API_KEY=k-123;x", "API_KEY=[REDACTED];x"),
        ("x-api-key: 0123abcd", "x-api-key: [REDACTED]"),
        ("client_secret='s'", "client_secret=[REDACTED]"),
        ("db.password=p4ss", "db.password=[REDACTED]"),
        ("accessToken=abc", "accessToken=[REDACTED]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dGVzdA in cookie",
            "jwt [REDACTED] in cookie",
        ),
        (
            "card 4111 1111 1111 1111 declined",
            "card [REDACTED] declined",
        ),
        ("card 4111-1111-1111-1111", "card [REDACTED]"),
        ("amex 378282246310005.", "amex [REDACTED]."),
        ("aws AKIAIOSFODNN7EXAMPLE used", "aws [REDACTED] used"),
        ("aws ASIAY34FZKBOKMUTVV7A", "aws [REDACTED]"),
        (
            "gh ghp_0123456789abcdefghijABCDEFGHIJ012345 leaked",
            "gh [REDACTED] leaked",
        ),
        (
            "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "pat [REDACTED]",
        ),
        ("slack xoxb-1234567890-abcdefghij", "slack [REDACTED]"),
        (
            "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "stripe [REDACTED]",
        ),
        (
            "google AIzaSyA-0123456789abcdefghijklmnopqrstu",
            "google [REDACTED]",
        ),
        ("gitlab glpat-0123456789abcdefghij", "gitlab [REDACTED]"),
    ] {
        assert_eq!(r.redact(input), expected, "{input}");
    }
}

#[test]
fn prose_and_ordinary_messages_are_left_alone() {
    let r = Redactor::new();
    for input in [
        "basic auth is disabled",
        "Basic authentication failed",
        "the token bucket refilled",
        "token expired",
        "the bearer of bad news",
        "bearer tokens.",
        "order 42 not found",
        "connection refused (os error 111)",
        "timeout after 30000 ms",
        "user 12345678901 missing", // 11 digits
        "http2 error: stream reset",
        // Fails the Luhn check: not a card number.
        "card 4111 1111 1111 1112",
        "id 123456789012",
        "at 2026-12-05 10:00:00",
        "request 0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        "the key is missing",
        "password: ",
    ] {
        assert_eq!(r.redact(input), input, "{input}");
    }
}

#[test]
fn the_luhn_check_accepts_valid_numbers_only() {
    assert!(luhn("4111111111111111"));
    assert!(luhn("4111 1111 1111 1111"));
    assert!(luhn("378282246310005"));
    assert!(luhn("5555-5555-5555-4444"));
    assert!(!luhn("4111111111111112"));
    assert!(!luhn("1234567890123"));
    // Too short or too long for a card, whatever the sum.
    assert!(!luhn("00000000000"));
    assert!(!luhn("00000000000000000000"));
}

#[test]
fn basic_credentials_are_told_from_words() {
    assert!(is_basic_credential("dXNlcjpwYXNz"));
    assert!(is_basic_credential("dXNlcjpwYXNz=="));
    assert!(!is_basic_credential("auth"));
    assert!(!is_basic_credential("authentication"));
    assert!(!is_basic_credential("+/+/"));
}

#[test]
fn denied_keys_match_at_word_boundaries() {
    let r = Redactor::new();
    for key in [
        "password",
        "db.password",
        "user_password",
        "access_token",
        "accessToken",
        "x-api-key",
        "http.request.header.authorization",
        "http.request.header.cookie",
        "API_KEY",
        "apiKey",
        "client.secret.value",
        "passwordHash",
    ] {
        assert!(r.denies_key(key), "{key}");
    }
    for key in [
        "http.request.method",
        "url.path",
        "gen_ai.usage.input_tokens",
        "tokenizer",
        "passwords_changed_count_x", // `passwords`, not `password`
        "keyboard",
        "correlation.id",
        "user_agent.original",
    ] {
        assert!(!r.denies_key(key), "{key}");
    }
    let custom = Redactor::new().with_denied_key("SSN");
    assert!(custom.denies_key("customer.ssn"));
    assert_eq!(custom.redact("ssn=1"), "ssn=[REDACTED]");
    assert!(!Redactor::without_defaults().denies_key("password"));
}

#[test]
fn attributes_under_denied_keys_are_replaced_whole_and_values_scrubbed() {
    let mut attributes = vec![
        KeyValue::new("db.password", "hunter2"),
        KeyValue::new("retry.token", 7),
        KeyValue::new("auth.token.present", true),
        KeyValue::new(
            "http.request.header.x-forwarded-for",
            Value::Array(Array::String(vec![
                "bob@example.com".into(),
                "10.0.0.1".into(),
            ])),
        ),
        KeyValue::new("url.path", "/orders/42"),
    ];
    Redactor::new().redact_attributes(&mut attributes);
    assert_eq!(attributes[0].value.as_str(), REDACTED);
    assert_eq!(attributes[1].value.as_str(), REDACTED);
    assert_eq!(attributes[2].value, Value::Bool(true));
    assert_eq!(
        attributes[3].value,
        Value::Array(Array::String(vec![REDACTED.into(), "10.0.0.1".into()]))
    );
    assert_eq!(attributes[4].value.as_str(), "/orders/42");
}

fn span_with_secrets() -> SpanData {
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "exception",
        SystemTime::now(),
        vec![
            KeyValue::new("exception.message", "panicked: password=hunter2"),
            KeyValue::new(
                "exception.stacktrace",
                "at checkout (card 4111111111111111)\nat main",
            ),
        ],
        0,
    ));
    let mut links = SpanLinks::default();
    links.links.push(Link::new(
        SpanContext::empty_context(),
        vec![KeyValue::new("session.token", "abc")],
        0,
    ));
    SpanData {
        span_context: SpanContext::empty_context(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "notify bob@example.com".into(),
        start_time: SystemTime::now(),
        end_time: SystemTime::now(),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("note", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),
        ],
        dropped_attributes_count: 0,
        events,
        links,
        status: Status::error("AKIAIOSFODNN7EXAMPLE denied"),
        instrumentation_scope: Default::default(),
    }
}

#[test]
fn a_span_is_redacted_everywhere_it_holds_text() {
    let mut span = span_with_secrets();
    Redactor::new().redact_span(&mut span);
    assert_eq!(span.name, "notify [REDACTED]");
    assert_eq!(span.attributes[0].value.as_str(), "GET");
    assert_eq!(span.attributes[1].value.as_str(), "Bearer [REDACTED]");
    let event = &span.events[0];
    assert_eq!(
        event.attributes[0].value.as_str(),
        "panicked: password=[REDACTED]"
    );
    assert_eq!(
        event.attributes[1].value.as_str(),
        "at checkout (card [REDACTED])\nat main"
    );
    assert_eq!(span.links[0].attributes[0].value.as_str(), REDACTED);
    assert_eq!(span.status, Status::error("[REDACTED] denied"));
}

#[test]
fn nothing_is_allocated_for_a_string_the_scan_clears() {
    let r = Redactor::new();
    for text in ["/orders/42", "GET", "curl/8.5.0", "localhost", "1.1"] {
        let needs = r.keys.scan(text);
        assert!(!needs.any(), "{text}");
        assert!(r.scrub(text).is_none());
    }
}

#[test]
fn custom_patterns_and_rules_run_after_the_defaults_and_a_panic_redacts_everything() {
    let r = Redactor::new().with_rule(|t| Some(format!("<{t}>")));
    assert_eq!(r.redact("a@b.io"), "<[REDACTED]>");
    let panicking = Redactor::new().with_rule(|_| panic!("rule bug"));
    assert_eq!(panicking.redact("anything"), REDACTED);
    let none = Redactor::without_defaults().with_rule(|_| None);
    assert_eq!(none.redact("a@b.io"), "a@b.io");
    let pattern =
        Redactor::without_defaults().with_pattern(Regex::new("acme-[0-9]+").expect("valid"));
    assert_eq!(pattern.redact("host acme-42 down"), "host [REDACTED] down");
}

#[test]
fn output_is_bounded_on_a_character_boundary() {
    let r = Redactor::new().with_max_len(20);
    let out = r.redact(&"é".repeat(10_000));
    assert!(out.len() <= 20 && out.chars().all(|c| c == 'é'), "{out}");
    assert_eq!(
        Redactor::new().redact(&"x".repeat(100_000)).len(),
        DEFAULT_MAX_LEN
    );
}

#[test]
fn card_numbers_are_found_alone_and_not_inside_identifiers() {
    for (input, expected) in [
        ("4111111111111111", Some("[REDACTED]")),
        (
            "pay 4111 1111 1111 1111 123 now",
            Some("pay [REDACTED] 123 now"),
        ),
        (
            "a 4111-1111-1111-1111, b 5555555555554444",
            Some("a [REDACTED], b [REDACTED]"),
        ),
        // Inside a UUID (v7 ids often hold 13 digits joined by dashes) or a code: kept.
        ("01a24458-4394-7108-4111-111111111111", None),
        ("id 0192-4111-1111-1111-1111-ab", None),
        ("order_4111111111111111", None),
        ("x4111111111111111", None),
        ("4111111111111111abc", None),
        // A whole UUID whose digit groups happen to hold a valid card number: still an id.
        ("01a24458-4394-7108-4111-111111111111 x", None),
        // Twenty digits: no card, and no 19-digit prefix passes.
        ("12345678901234567890", None),
    ] {
        assert_eq!(redact_cards(input).as_deref(), expected, "{input}");
    }
}

#[test]
fn a_uuid_is_never_taken_for_a_card() {
    let r = Redactor::new();
    let id = "12345678-1234-5678-4111-111111111111";
    assert!(is_uuid(id.as_bytes(), classify(id.as_bytes())));
    assert!(!r.keys.scan(id).card);
    assert_eq!(r.redact(id), id);
    let card = b"4111-1111-1111-1111";
    assert!(!is_uuid(card, classify(card)));
    for not_quite in [
        "12345678-1234-5678-4111-11111111111g",
        "12345678-1234-5678-41111111111111111",
        "1234567801234-5678-4111-111111111111",
        "12345678-1234-5678-4111-1111-1111111",
    ] {
        let b = not_quite.as_bytes();
        assert!(!is_uuid(b, classify(b)), "{not_quite}");
    }
}

#[test]
fn the_shortest_matches_are_still_found() {
    let r = Redactor::new();
    assert_eq!(r.redact("pwd=x"), "pwd=[REDACTED]");
    assert_eq!(r.redact("a@b.io"), REDACTED);
    let short = Redactor::without_defaults().with_denied_key("pk");
    assert_eq!(short.redact("pk=1"), "pk=[REDACTED]");
    assert_eq!(short.redact("pk="), "pk=");
}

/// Strings built from the pieces every check looks for (and their near misses), in random
/// order, with a fixed seed.
fn fragment_soup(cases: usize, seed: u64) -> Vec<String> {
    const PIECES: [&str; 61] = [
        "bearer",
        "Bearer",
        "BASIC",
        "basic",
        "b",
        "be",
        " ",
        "  ",
        "\t",
        "\n",
        // Whitespace the patterns' `\s` takes and ASCII trimming does not.
        "\u{b}",
        "\u{c}",
        "\u{85}",
        "\u{a0}",
        "\u{2003}",
        "\u{3000}",
        "=",
        ":",
        "&",
        ",",
        ";",
        "\"",
        "'",
        ".",
        "_",
        "-",
        "/",
        "password",
        "Token",
        "api_key",
        "apiKey",
        "db.pwd",
        "page",
        "REDACTED",
        "[REDACTED]",
        "[REDACTED]x",
        "REDACTEDx",
        "dXNlcjpwYXNz",
        "0123456789abcdef0123",
        "eyJhbGciOi",
        "eyJ",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_",
        "0123456789abcdefghijABCDEFGHIJ012345",
        "xoxb-",
        "glpat-",
        "sk_live_",
        "a@b.io",
        "@",
        "4111",
        "1111",
        "12345678-1234-5678-4111-111111111111",
        "x",
        "é",
        "checkout-web/2.3.1 (reqwest)",
        "0190c2d5-7c3e-7d4f-8a1b-2c3d4e5f6a7b",
        // Near misses of a UUID, each of which may hide a card number.
        "12345678-1234-5678-4111-11111111111g",
        "12345678-1234-5678-4111-1111111111111",
        "1234567801234-5678-4111-111111111111",
        "12345678-1234-5678-41111111111111111",
        "4111111111111111-1234-5678-4111-1234",
    ];
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..cases)
        .map(|_| {
            let n = 1 + (next() % 10) as usize;
            (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect()
        })
        .collect()
}

#[test]
fn the_byte_scan_never_skips_what_the_full_check_would_replace() {
    let all = Needs {
        literal: true,
        pair: true,
        email: true,
        card: true,
    };
    for r in [
        Redactor::new(),
        Redactor::new().with_denied_key("ssn"),
        Redactor::without_defaults().with_denied_key("pk"),
    ] {
        for text in fragment_soup(20_000, 0x9E37_79B9_7F4A_7C15) {
            assert_eq!(r.scrub(&text), r.scrub_further(&text, all), "{text:?}");
        }
    }
}

#[test]
fn a_value_that_is_already_a_marker_is_kept_whatever_its_key() {
    let r = Redactor::new();
    // What the tracing layer makes of `?api_key=k&page=2`, and text redacted twice.
    for kept in [
        "api_key=REDACTED&page=REDACTED",
        "token: REDACTED, retry",
        "password=[REDACTED]",
        "token=[REDACTED]&api_key=REDACTED",
    ] {
        assert_eq!(r.redact(kept), kept);
    }
    // The server span's `url.query` needs no closer look.
    assert!(!r.keys.scan("page=REDACTED").any());
    assert!(!r.keys.scan("api_key=REDACTED").any());
    // Only the marker itself: anything more, or a look-alike, is a value to replace.
    for (input, expected) in [
        ("api_key=REDACTEDx", "api_key=[REDACTED]"),
        ("api_key=REDACTED:hunter2", "api_key=[REDACTED]"),
        ("password=redacted", "password=[REDACTED]"),
        (r#"password="REDACTED""#, "password=[REDACTED]"),
        (
            "api_key=REDACTED&token=abc",
            "api_key=REDACTED&token=[REDACTED]",
        ),
    ] {
        assert_eq!(r.redact(input), expected, "{input}");
    }
}

#[test]
fn unusual_whitespace_hides_no_credential() {
    let r = Redactor::new();
    for text in [
        "token\u{b}=secret1",
        "token\u{a0}=secret1",
        "token\u{3000}: secret1",
        "Bearer\u{a0}abcdef0123456789",
        "Bearer\u{c}abcdef0123456789",
        "Basic\u{2003}dXNlcjpwYXNzd29yZA==",
    ] {
        let out = r.scrub(text).unwrap_or_else(|| text.to_owned());
        assert!(
            !out.contains("secret1")
                && !out.contains("abcdef0123456789")
                && !out.contains("dXNlcjpw"),
            "{text:?} -> {out:?}"
        );
    }
}
