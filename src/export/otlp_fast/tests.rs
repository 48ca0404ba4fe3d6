//! Tests of the fast OTLP exporter: the encoder against the reference conversion of
//! `opentelemetry-proto` (decoded structs and exact bytes), and the transport against local
//! HTTP/1.1 and h2c servers.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;
use prost::Message;

use super::encode::Encoder;
use super::{build, FastOtlpExporter, GRPC_PREFIX};
use crate::config::{Compression, Protocol, Resolved};
use crate::export::batch::Tally;
use crate::wire::transport::{Transport, Wire};

// ---------------------------------------------------------------------------------------------
// Building spans

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn context(trace: u128, span: u64, flags: u8, remote: bool, state: TraceState) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags),
        remote,
        state,
    )
}

fn state(pairs: &[(&str, &str)]) -> TraceState {
    TraceState::from_key_value(pairs.iter().copied()).expect("valid trace state")
}

/// A plain server span of scope `test`.
fn span(trace: u128, id: u64, parent: u64, name: &'static str) -> SpanData {
    SpanData {
        span_context: context(trace, id, 1, false, TraceState::default()),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: at(1_700_000_000_000_000_000 + id % 1_000_000),
        end_time: at(1_700_000_000_000_500_000 + id % 1_000_000),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

/// One attribute of every value type, with edge values.
fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("bool.true", true),
        KeyValue::new("bool.false", false),
        KeyValue::new("int.zero", 0_i64),
        KeyValue::new("int.small", 7_i64),
        KeyValue::new("int.negative", -1_i64),
        KeyValue::new("int.min", i64::MIN),
        KeyValue::new("int.max", i64::MAX),
        KeyValue::new("double.zero", 0.0_f64),
        KeyValue::new("double.negative_zero", -0.0_f64),
        KeyValue::new("double", 3.25_f64),
        KeyValue::new("double.inf", f64::INFINITY),
        KeyValue::new("string", "GET /users/{id}"),
        KeyValue::new("string.empty", ""),
        KeyValue::new("string.unicode", "héllo ✓ 日本"),
        KeyValue::new("", "empty key"),
        KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new(
            "array.int",
            Value::Array(Array::I64(vec![0, 1, -1, 300, i64::MIN])),
        ),
        KeyValue::new("array.double", Value::Array(Array::F64(vec![0.0, -2.5]))),
        KeyValue::new(
            "array.string",
            Value::Array(Array::String(vec![
                StringValue::from("a"),
                StringValue::from(""),
                StringValue::from(String::from("owned")),
            ])),
        ),
        KeyValue::new("array.empty", Value::Array(Array::I64(Vec::new()))),
        KeyValue::new(
            "array.string.empty",
            Value::Array(Array::String(Vec::new())),
        ),
    ]
}

/// Spans exercising every field: values, events, links, statuses, flags, trace states.
fn varied_spans() -> Vec<SpanData> {
    let mut root = span(
        0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
        1,
        0,
        "GET /users",
    );
    root.attributes = every_value();
    root.dropped_attributes_count = 3;
    root.status = Status::error("upstream failed: 503");
    root.events.events.push(Event::new(
        "exception",
        at(1_700_000_000_000_100_000),
        vec![
            KeyValue::new("exception.type", "io::Error"),
            KeyValue::new("exception.message", "connection reset"),
            KeyValue::new("attempt", 2_i64),
        ],
        1,
    ));
    root.events
        .events
        .push(Event::new("", UNIX_EPOCH, Vec::new(), 0));
    root.events.dropped_count = 4;
    root.links.links.push(Link::new(
        context(7, 8, 1, true, state(&[("vendor", "v1"), ("other", "x-y")])),
        vec![KeyValue::new("link.kind", "follows_from")],
        2,
    ));
    root.links.links.push(Link::new(
        context(9, 10, 0, false, TraceState::default()),
        Vec::new(),
        0,
    ));
    root.links.dropped_count = 5;

    // A remote parent, a trace state, an OK status.
    let mut remote = span(
        0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
        2,
        0x99,
        "remote child",
    );
    remote.parent_span_is_remote = true;
    remote.span_context = context(
        0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
        2,
        1,
        true,
        state(&[("congo", "t61rcWkgMzE")]),
    );
    remote.status = Status::Ok;
    remote.span_kind = SpanKind::Client;

    // Unsampled with the W3C "random" flag; an empty name; an empty error description.
    let mut unsampled = span(3, 3, 2, "");
    unsampled.span_context = context(3, 3, 0x02, false, TraceState::default());
    unsampled.status = Status::Error {
        description: Cow::Borrowed(""),
    };
    unsampled.span_kind = SpanKind::Internal;

    // Every other kind; a start before the epoch (0, as the reference maps it); zero ids.
    let mut producer = span(4, 4, 3, "produce");
    producer.span_kind = SpanKind::Producer;
    producer.start_time = UNIX_EPOCH - Duration::from_secs(5);
    let mut consumer = span(0, 0, 0, "consume");
    consumer.span_kind = SpanKind::Consumer;
    consumer.end_time = UNIX_EPOCH;
    let mut all_flags = span(6, 6, 0, "flags");
    all_flags.span_context = context(6, 6, 0xff, true, TraceState::default());
    all_flags.parent_span_is_remote = true;

    vec![root, remote, unsampled, producer, consumer, all_flags]
}

fn scope(
    name: &'static str,
    version: Option<&'static str>,
    schema: Option<&'static str>,
) -> InstrumentationScope {
    let mut builder = InstrumentationScope::builder(name);
    if let Some(version) = version {
        builder = builder.with_version(version);
    }
    if let Some(schema) = schema {
        builder = builder.with_schema_url(schema);
    }
    builder.build()
}

fn resource_with_schema() -> Resource {
    Resource::builder_empty()
        .with_schema_url(
            [
                KeyValue::new("service.name", "checkout"),
                KeyValue::new("service.version", "1.2.3"),
                KeyValue::new("process.pid", 4242_i64),
                KeyValue::new(
                    "host.arch.list",
                    Value::Array(Array::String(vec!["x86_64".into()])),
                ),
            ],
            "https://opentelemetry.io/schemas/1.26.0",
        )
        .build()
}

/// A deterministic pseudo-random generator (xorshift64*), for generated batches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, max: u64) -> String {
        let len = self.below(max + 1) as usize;
        (0..len)
            .map(|i| {
                if self.below(17) == 0 {
                    'é'
                } else {
                    char::from(b'a' + ((self.next() as usize + i) % 26) as u8)
                }
            })
            .collect()
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 6 } else { 5 }) {
            0 => Value::Bool(self.below(2) == 1),
            1 => Value::I64(self.next() as i64 >> self.below(64)),
            2 => Value::F64(self.below(1000) as f64 / 7.0 - 50.0),
            3 | 4 => {
                let max = if self.below(10) == 0 { 400 } else { 20 };
                Value::String(self.text(max).into())
            }
            _ => {
                let n = self.below(5) as usize;
                Value::Array(match self.below(4) {
                    0 => Array::Bool((0..n).map(|_| self.below(2) == 1).collect()),
                    1 => Array::I64((0..n).map(|_| self.next() as i64 >> 20).collect()),
                    2 => Array::F64((0..n).map(|i| i as f64 * 1.5).collect()),
                    _ => Array::String((0..n).map(|_| self.text(10).into()).collect()),
                })
            }
        }
    }

    fn attributes(&mut self, max: u64) -> Vec<KeyValue> {
        (0..self.below(max + 1))
            .map(|_| KeyValue::new(self.text(12), self.value(0)))
            .collect()
    }
}

fn random_spans(seed: u64, count: usize) -> Vec<SpanData> {
    let mut rng = Rng(seed | 1);
    let scopes = [
        InstrumentationScope::builder("axum")
            .with_version("0.8")
            .build(),
        InstrumentationScope::builder("client")
            .with_attributes([KeyValue::new("lib", "reqwest")])
            .build(),
        scope("db", None, Some("https://example.invalid/schema")),
    ];
    (0..count)
        .map(|i| {
            let mut s = span(
                u128::from(rng.next()) << 64 | u128::from(rng.next()),
                rng.next(),
                if rng.below(3) == 0 { 0 } else { rng.next() },
                "span",
            );
            s.name = rng.text(30).into();
            s.span_context = context(
                u128::from(rng.next()),
                rng.next(),
                rng.below(256) as u8,
                rng.below(2) == 1,
                if rng.below(5) == 0 {
                    state(&[("k", "v"), ("vendor", "abc")])
                } else {
                    TraceState::default()
                },
            );
            s.parent_span_is_remote = rng.below(4) == 0;
            s.attributes = rng.attributes(20);
            s.dropped_attributes_count = rng.below(3) as u32;
            for _ in 0..rng.below(3) {
                let attributes = rng.attributes(3);
                s.events.events.push(Event::new(
                    rng.text(10),
                    at(rng.next() >> 2),
                    attributes,
                    rng.below(2) as u32,
                ));
            }
            if rng.below(4) == 0 {
                let attributes = rng.attributes(2);
                s.links.links.push(Link::new(
                    context(
                        u128::from(rng.next()),
                        rng.next(),
                        1,
                        rng.below(2) == 1,
                        TraceState::default(),
                    ),
                    attributes,
                    0,
                ));
            }
            s.status = match rng.below(3) {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error(rng.text(40)),
            };
            s.instrumentation_scope =
                scopes[(i * 7 + rng.below(2) as usize) % scopes.len()].clone();
            s
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Encoder equivalence

/// What `opentelemetry-otlp` sends for this batch and resource.
fn reference(spans: &[SpanData], resource: Option<&Resource>) -> ExportTraceServiceRequest {
    let attributes = resource
        .map(ResourceAttributesWithSchema::from)
        .unwrap_or_default();
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans.to_vec(), &attributes),
    }
}

/// Encodes with `encoder` and checks the bytes decode to, and equal the encoding of, the
/// reference conversion.
fn assert_matches_reference(
    encoder: &mut Encoder,
    spans: &[SpanData],
    resource: Option<&Resource>,
) {
    let mut out = vec![0xAA; 3]; // encode appends: what was there stays
    encoder.encode(spans, &mut out).expect("encodes");
    assert_eq!(out[..3], [0xAA; 3], "encode must append");
    let ours = &out[3..];
    let expected = reference(spans, resource);
    let decoded = ExportTraceServiceRequest::decode(ours).expect("our bytes decode as OTLP");
    assert_eq!(
        decoded, expected,
        "decoded request differs from the reference conversion"
    );
    assert!(
        ours == expected.encode_to_vec().as_slice(),
        "bytes differ from prost's encoding of the reference conversion"
    );
}

fn encoder_for(resource: Option<&Resource>) -> Encoder {
    let mut encoder = Encoder::default();
    if let Some(resource) = resource {
        encoder.set_resource(resource);
    }
    encoder
}

#[test]
fn every_field_and_value_type_matches_the_reference() {
    let resource = resource_with_schema();
    let mut encoder = encoder_for(Some(&resource));
    assert_matches_reference(&mut encoder, &varied_spans(), Some(&resource));
}

#[test]
fn spans_group_by_scope_in_order_of_first_appearance() {
    let scopes = [
        scope("axum", Some("0.8.9"), None),
        InstrumentationScope::builder("client")
            .with_version("1")
            .with_schema_url("https://example.invalid/1")
            .with_attributes([KeyValue::new("lib", "reqwest"), KeyValue::new("n", 2_i64)])
            .build(),
        scope("", None, None),
        // Same name as the first, different version: a scope of its own.
        scope("axum", Some("0.9.0"), None),
    ];
    let spans: Vec<SpanData> = (0..13)
        .map(|i| {
            let mut s = span(u128::from(i) + 1, i + 1, 0, "s");
            s.instrumentation_scope = scopes[(i as usize * 3 + 1) % scopes.len()].clone();
            s.attributes.push(KeyValue::new("i", i as i64));
            s
        })
        .collect();
    let resource = resource_with_schema();
    let mut encoder = encoder_for(Some(&resource));
    assert_matches_reference(&mut encoder, &spans, Some(&resource));
    let decoded = reference(&spans, Some(&resource));
    assert_eq!(
        decoded.resource_spans[0].scope_spans.len(),
        4,
        "four distinct scopes"
    );
}

#[test]
fn no_resource_and_an_empty_batch_match_the_reference() {
    let mut encoder = Encoder::default();
    assert_matches_reference(&mut encoder, &[], None);
    assert_matches_reference(&mut encoder, &varied_spans(), None);
    let empty = Resource::builder_empty().build();
    encoder.set_resource(&empty);
    assert_matches_reference(&mut encoder, &varied_spans(), Some(&empty));
}

#[test]
fn long_values_and_many_attributes_use_multi_byte_lengths() {
    let mut s = span(1, 2, 3, "big");
    s.attributes.push(KeyValue::new("medium", "m".repeat(200)));
    s.attributes
        .push(KeyValue::new("large", "l".repeat(20_000)));
    s.attributes
        .push(KeyValue::new("huge", "h".repeat(3_000_000)));
    s.attributes
        .extend((0..300).map(|i| KeyValue::new(format!("attr.{i}"), i64::from(i) * 1_000_003)));
    s.name = "n".repeat(130).into();
    let resource = resource_with_schema();
    let mut encoder = encoder_for(Some(&resource));
    assert_matches_reference(
        &mut encoder,
        &[s.clone(), span(1, 3, 2, "small"), s],
        Some(&resource),
    );
}

#[test]
fn generated_batches_match_the_reference_and_scratch_state_resets() {
    let resource = resource_with_schema();
    let mut encoder = encoder_for(Some(&resource));
    // One encoder across batches of different shapes, as the exporter reuses it.
    for (seed, count) in [(1, 300), (2, 1), (3, 0), (4, 50), (5, 512), (6, 7)] {
        assert_matches_reference(&mut encoder, &random_spans(seed, count), Some(&resource));
    }
    // A new resource replaces the old one.
    let other = Resource::builder_empty().with_service_name("other").build();
    encoder.set_resource(&other);
    assert_matches_reference(&mut encoder, &random_spans(7, 20), Some(&other));
}

#[test]
fn nan_doubles_are_encoded_bit_for_bit() {
    let mut s = span(1, 2, 0, "nan");
    s.attributes.push(KeyValue::new("nan", f64::NAN));
    s.attributes.push(KeyValue::new(
        "arr",
        Value::Array(Array::F64(vec![f64::NAN, 1.0])),
    ));
    let mut encoder = Encoder::default();
    let mut out = Vec::new();
    encoder
        .encode(std::slice::from_ref(&s), &mut out)
        .expect("encodes");
    // NaN != NaN, so compare bytes only.
    assert_eq!(out, reference(&[s], None).encode_to_vec());
}

// ---------------------------------------------------------------------------------------------
// Transport

/// What a test collector received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path: String,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

/// How a test collector answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// An HTTP status with an empty body.
    Http(u16),
    /// An HTTP status with headers and a body.
    HttpWith(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// HTTP 200, then `grpc-status` and `grpc-message` in trailers.
    GrpcTrailers(&'static str, &'static str),
    /// HTTP 200 with this (unframed) message, then `grpc-status: 0`.
    GrpcOk(Vec<u8>),
    /// A trailers-only gRPC response: `grpc-status` in the headers.
    GrpcHeadersOnly(&'static str),
    /// A trailers-only gRPC response with `grpc-status-details-bin`.
    GrpcDetails(&'static str, Vec<u8>),
    /// Never answers.
    Hang,
}

pub(crate) type Log = Arc<Mutex<Vec<Received>>>;

/// The replies of a test collector, in order; the last one repeats.
type Script = Arc<(Vec<Reply>, std::sync::atomic::AtomicUsize)>;

fn script(replies: Vec<Reply>) -> Script {
    Arc::new((replies, std::sync::atomic::AtomicUsize::new(0)))
}

/// Serves HTTP/1.1 and h2c (prior knowledge) on a free local port, recording every request.
async fn collector(reply: Reply) -> (SocketAddr, Log) {
    scripted(vec![reply]).await
}

/// Like [`collector`], answering the n-th request with `replies[n]` (the last one from then
/// on).
pub(crate) async fn scripted(replies: Vec<Reply>) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let log = Log::default();
    let server_log = log.clone();
    let replies = script(replies);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, replies.clone(), server_log.clone()));
        }
    });
    (addr, log)
}

/// Serves one connection (HTTP/1.1 or h2, by what the client speaks), recording each request.
async fn serve<S>(stream: S, replies: Script, log: Log)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let log = log.clone();
        let n = replies.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = replies.0[n.min(replies.0.len() - 1)].clone();
        async move { respond(request, reply, &log).await }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn respond(
    request: Request<Incoming>,
    reply: Reply,
    log: &Log,
) -> Result<Response<BoxBody<Bytes, Infallible>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    log.lock().expect("log lock").push(Received {
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts.headers,
        body,
    });
    let empty = || Full::new(Bytes::new());
    let grpc_ok = |message: Bytes| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Response::builder()
            .header("content-type", "application/grpc")
            .body(
                Full::new(message)
                    .with_trailers(async move { Some(Ok(trailers)) })
                    .boxed(),
            )
            .expect("response")
    };
    let response = match reply {
        Reply::Http(code) => Response::builder()
            .status(code)
            .body(empty().boxed())
            .expect("response"),
        Reply::HttpWith(code, headers, body) => {
            let mut response = Response::builder().status(code);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response
                .body(Full::new(Bytes::from(body)).boxed())
                .expect("response")
        }
        Reply::GrpcTrailers(code, message) => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static(code));
            trailers.insert("grpc-message", HeaderValue::from_static(message));
            Response::builder()
                .header("content-type", "application/grpc")
                .body(
                    Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                        .with_trailers(async move { Some(Ok(trailers)) })
                        .boxed(),
                )
                .expect("response")
        }
        Reply::GrpcOk(message) => {
            let mut framed = vec![0];
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(&message);
            grpc_ok(Bytes::from(framed))
        }
        Reply::GrpcHeadersOnly(code) => Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", code)
            .header("grpc-message", "no%20collector%20here")
            .body(empty().boxed())
            .expect("response"),
        Reply::GrpcDetails(code, details) => Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", code)
            .header("grpc-message", "slow%20down")
            .header(
                "grpc-status-details-bin",
                HeaderValue::from_bytes(&details).expect("base64 is a valid value"),
            )
            .body(empty().boxed())
            .expect("response"),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(empty().boxed())
        }
    };
    Ok(response)
}

/// A CA (as a PEM file's contents) and a TLS server config for `localhost` signed by it,
/// offering the ALPN protocols `alpn`.
#[cfg(feature = "tls")]
fn test_pki(alpn: &[&[u8]]) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    #[allow(deprecated, reason = "the exporter's provider (see Cargo.toml)")]
    let provider = rustls::crypto::ring::default_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (ca_cert.pem(), Arc::new(config))
}

/// Like [`collector`], behind TLS with `config`.
#[cfg(feature = "tls")]
async fn tls_collector(reply: Reply, config: Arc<rustls::ServerConfig>) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let log = Log::default();
    let server_log = log.clone();
    let replies = script(vec![reply]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = server_log.clone();
            let acceptor = acceptor.clone();
            let replies = replies.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    serve(stream, replies, log).await;
                }
            });
        }
    });
    (addr, log)
}

/// An exporter trusting the CA in `ca_pem` (none when `None`).
#[cfg(feature = "tls")]
fn tls_exporter(wire: Wire, endpoint: &str, ca_pem: Option<&str>) -> FastOtlpExporter {
    let roots = match ca_pem {
        Some(pem) => {
            let file = std::env::temp_dir().join(format!(
                "st-fast-ca-{}-{}.pem",
                std::process::id(),
                endpoint
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .replace('/', "_")
            ));
            std::fs::write(&file, pem).expect("write CA");
            let roots = crate::wire::tls::TlsConfig::load(crate::wire::tls::TlsFiles {
                ca: Some(crate::wire::tls::PemFile::new("test", &file)),
                ..Default::default()
            })
            .expect("CA file");
            std::fs::remove_file(&file).expect("remove CA");
            roots
        }
        None => crate::wire::tls::TlsConfig::default(),
    };
    let mut exporter = FastOtlpExporter::new(
        Transport::new(wire, endpoint, &[], Duration::from_secs(5), &roots).expect("transport"),
    );
    exporter.set_resource(&RESOURCE);
    exporter
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_a_tls_collector_on_both_wires_in_the_version_alpn_chose() {
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let http1: &[&[u8]] = &[b"http/1.1"];
    for (wire, alpn, reply, path, version) in [
        (
            Wire::Http,
            both,
            Reply::Http(200),
            "/v1/traces",
            Version::HTTP_2,
        ),
        (
            Wire::Http,
            http1,
            Reply::Http(200),
            "/v1/traces",
            Version::HTTP_11,
        ),
        (
            Wire::Grpc,
            both,
            Reply::GrpcTrailers("0", ""),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Version::HTTP_2,
        ),
    ] {
        let (ca, config) = test_pki(alpn);
        let (addr, log) = tls_collector(reply, config).await;
        let endpoint = match wire {
            Wire::Http => format!("https://localhost:{}/v1/traces", addr.port()),
            Wire::Grpc => format!("https://localhost:{}", addr.port()),
        };
        let exporter = tls_exporter(wire, &endpoint, Some(&ca));
        exporter
            .export(random_spans(41, 3))
            .await
            .unwrap_or_else(|e| panic!("{wire:?} over TLS: {e}"));
        let received = log.lock().expect("log lock").clone();
        assert_eq!(received.len(), 1, "{wire:?}");
        assert_eq!(received[0].path, path);
        assert_eq!(received[0].version, version, "{wire:?} with ALPN {alpn:?}");
    }
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_an_untrusted_collector_fails_naming_the_certificate() {
    let (_ca, config) = test_pki(&[b"h2", b"http/1.1"]);
    let (addr, log) = tls_collector(Reply::Http(200), config).await;
    let endpoint = format!("https://localhost:{}/v1/traces", addr.port());
    let tally = Arc::new(Tally::default());
    let exporter = tls_exporter(Wire::Http, &endpoint, None).with_tally(tally.clone());
    let started = Instant::now();
    let err = exporter
        .export(random_spans(42, 2))
        .await
        .expect_err("the test CA is not trusted");
    // Not retried: an untrusted certificate fails the same way every time.
    assert_eq!(tally.snapshot().1, 0, "retried");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(!message.contains("gave up"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(log.lock().expect("log lock").is_empty());
}

/// One resource for the transport tests: the encoding of a resource follows its map's iteration
/// order, which differs between equal resources.
static RESOURCE: std::sync::LazyLock<Resource> = std::sync::LazyLock::new(resource_with_schema);

fn fast_exporter(wire: Wire, endpoint: &str, timeout: Duration) -> FastOtlpExporter {
    let headers = [
        ("authorization".to_owned(), "Bearer t0ken".to_owned()),
        ("x-tenant".to_owned(), "blue".to_owned()),
    ];
    let mut exporter = FastOtlpExporter::new(
        Transport::new(wire, endpoint, &headers, timeout, &Default::default()).expect("transport"),
    );
    exporter.set_resource(&RESOURCE);
    exporter
}

/// The bytes our encoder makes for `spans`, unframed.
fn encoded(spans: &[SpanData]) -> Vec<u8> {
    let mut encoder = encoder_for(Some(&RESOURCE));
    let mut out = Vec::new();
    encoder.encode(spans, &mut out).expect("encodes");
    out
}

#[tokio::test]
async fn http_posts_the_encoded_request_with_headers() {
    let (addr, log) = collector(Reply::Http(200)).await;
    let exporter = fast_exporter(
        Wire::Http,
        &format!("http://{addr}/v1/traces"),
        Duration::from_secs(5),
    );
    // Two batches: the second reuses the buffer and the pooled connection.
    for seed in [11, 12] {
        let spans = random_spans(seed, 40);
        let expected = encoded(&spans);
        exporter.export(spans).await.expect("export succeeds");
        let received = log.lock().expect("log").pop().expect("one request");
        assert_eq!(received.path, "/v1/traces");
        assert_eq!(received.version, Version::HTTP_11);
        assert_eq!(received.headers["content-type"], "application/x-protobuf");
        assert_eq!(received.headers["authorization"], "Bearer t0ken");
        assert_eq!(received.headers["x-tenant"], "blue");
        assert!(
            received.body == expected,
            "the body is exactly the encoded request"
        );
    }
    // An empty batch sends nothing.
    exporter.export(Vec::new()).await.expect("empty batch");
    assert!(log.lock().expect("log").is_empty());
}

#[tokio::test]
async fn http_error_status_is_an_export_error() {
    let (addr, _log) = collector(Reply::Http(400)).await;
    let exporter = fast_exporter(
        Wire::Http,
        &format!("http://{addr}/v1/traces"),
        Duration::from_secs(5),
    );
    match exporter.export(varied_spans()).await {
        Err(OTelSdkError::InternalFailure(message)) => {
            assert!(message.contains("400"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn grpc_posts_a_framed_message_over_h2c() {
    let (addr, log) = collector(Reply::GrpcTrailers("0", "")).await;
    // A trailing slash on the base endpoint is tolerated.
    let exporter = fast_exporter(
        Wire::Grpc,
        &format!("http://{addr}/"),
        Duration::from_secs(5),
    );
    for seed in [21, 22] {
        let spans = random_spans(seed, 64);
        let expected = encoded(&spans);
        exporter.export(spans).await.expect("export succeeds");
        let received = log.lock().expect("log").pop().expect("one request");
        assert_eq!(
            received.path,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        assert_eq!(received.version, Version::HTTP_2);
        assert_eq!(received.headers["content-type"], "application/grpc");
        assert_eq!(received.headers["te"], "trailers");
        assert_eq!(received.headers["authorization"], "Bearer t0ken");
        let body = &received.body;
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(len, expected.len());
        assert!(
            body[GRPC_PREFIX..] == expected[..],
            "the message is the encoded request"
        );
    }
}

#[tokio::test]
async fn grpc_error_status_in_trailers_is_an_export_error() {
    let (addr, _log) = collector(Reply::GrpcTrailers("14", "collector unavailable")).await;
    // UNAVAILABLE is retried: a timeout shorter than the first backoff gives up at once.
    let exporter = fast_exporter(
        Wire::Grpc,
        &format!("http://{addr}"),
        Duration::from_millis(400),
    );
    match exporter.export(varied_spans()).await {
        Err(OTelSdkError::InternalFailure(message)) => {
            assert!(message.contains("grpc-status 14"), "{message}");
            assert!(message.contains("collector unavailable"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn grpc_trailers_only_responses_are_read_from_headers() {
    let (addr, _log) = collector(Reply::GrpcHeadersOnly("12")).await;
    let exporter = fast_exporter(
        Wire::Grpc,
        &format!("http://{addr}"),
        Duration::from_secs(5),
    );
    match exporter.export(varied_spans()).await {
        Err(OTelSdkError::InternalFailure(message)) => {
            assert!(message.contains("grpc-status 12"), "{message}");
            assert!(message.contains("no collector here"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let (addr, _log) = collector(Reply::GrpcHeadersOnly("0")).await;
    let exporter = fast_exporter(
        Wire::Grpc,
        &format!("http://{addr}"),
        Duration::from_secs(5),
    );
    exporter
        .export(varied_spans())
        .await
        .expect("grpc-status 0 in headers is success");
}

#[tokio::test]
async fn unreachable_endpoint_fails_within_the_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again: connections are refused
    for wire in [Wire::Http, Wire::Grpc] {
        let exporter = fast_exporter(
            wire,
            &format!("http://127.0.0.1:{port}/v1/traces"),
            Duration::from_secs(2),
        );
        let started = Instant::now();
        let result = exporter.export(varied_spans()).await;
        assert!(result.is_err(), "{wire:?}: {result:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{wire:?}");
    }
}

#[tokio::test]
async fn a_collector_that_never_answers_times_out() {
    let (addr, _log) = collector(Reply::Hang).await;
    for (wire, endpoint) in [
        (Wire::Http, format!("http://{addr}/v1/traces")),
        (Wire::Grpc, format!("http://{addr}")),
    ] {
        let timeout = Duration::from_millis(300);
        let exporter = fast_exporter(wire, &endpoint, timeout);
        let started = Instant::now();
        let result = exporter.export(varied_spans()).await;
        assert!(
            matches!(result, Err(OTelSdkError::Timeout(t)) if t == timeout),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{wire:?}");
    }
}

#[tokio::test]
async fn export_after_shutdown_fails() {
    let (addr, log) = collector(Reply::Http(200)).await;
    let exporter = fast_exporter(
        Wire::Http,
        &format!("http://{addr}/v1/traces"),
        Duration::from_secs(5),
    );
    exporter.shutdown().expect("first shutdown");
    assert!(matches!(
        exporter.export(varied_spans()).await,
        Err(OTelSdkError::AlreadyShutdown)
    ));
    assert!(log.lock().expect("log").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Retries, rejections, partial success, compression

/// An exporter counting into a tally of its own, with `compression`.
fn counted_exporter(
    wire: Wire,
    addr: SocketAddr,
    timeout: Duration,
    compression: Compression,
) -> (FastOtlpExporter, Arc<Tally>) {
    let endpoint = match wire {
        Wire::Http => format!("http://{addr}/v1/traces"),
        Wire::Grpc => format!("http://{addr}"),
    };
    let tally = Arc::new(Tally::default());
    let mut exporter = FastOtlpExporter::new(
        Transport::new(wire, &endpoint, &[], timeout, &Default::default())
            .expect("transport")
            .with_compression(compression),
    )
    .with_tally(tally.clone());
    exporter.set_resource(&RESOURCE);
    (exporter, tally)
}

fn bodies(log: &Log) -> Vec<Bytes> {
    log.lock()
        .expect("log")
        .iter()
        .map(|r| r.body.clone())
        .collect()
}

#[tokio::test]
async fn throttled_http_exports_wait_for_retry_after_and_are_sent_again_until_accepted() {
    let (addr, log) = scripted(vec![
        Reply::HttpWith(429, vec![("retry-after", "1".to_owned())], Vec::new()),
        Reply::Http(503),
        Reply::Http(200),
    ])
    .await;
    let (exporter, tally) =
        counted_exporter(Wire::Http, addr, Duration::from_secs(10), Compression::None);
    let spans = random_spans(61, 20);
    let started = Instant::now();
    exporter
        .export(spans)
        .await
        .expect("accepted on the third attempt");
    let elapsed = started.elapsed();
    let sent = bodies(&log);
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(|b| *b == sent[0]),
        "the same request each time"
    );
    assert_eq!(tally.snapshot().0, 0, "nothing rejected");
    assert_eq!(tally.snapshot().1, 2, "two retries");
    // Retry-After: 1, then at least half of the doubled 2 s window.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_final_http_status_is_rejected_at_once_and_never_sent_again() {
    for status in [400, 401, 413, 500] {
        let (addr, log) = collector(Reply::HttpWith(
            status,
            vec![("retry-after", "1".to_owned())],
            b"invalid span".to_vec(),
        ))
        .await;
        let (exporter, tally) =
            counted_exporter(Wire::Http, addr, Duration::from_secs(10), Compression::None);
        let started = Instant::now();
        let err = exporter
            .export(random_spans(62, 7))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("invalid span"), "{err}");
        assert_eq!(log.lock().expect("log").len(), 1, "{status} sent once");
        let (rejected, retried, reason) = tally.snapshot();
        assert_eq!((rejected, retried), (7, 0), "{status}");
        assert!(reason.is_some_and(|r| r.contains(&status.to_string())));
        assert!(started.elapsed() < Duration::from_millis(500), "{status}");
    }
}

#[tokio::test]
async fn retries_give_up_within_the_export_timeout() {
    let (addr, log) = collector(Reply::Http(503)).await;
    let timeout = Duration::from_millis(1500);
    let (exporter, tally) = counted_exporter(Wire::Http, addr, timeout, Compression::None);
    let started = Instant::now();
    let err = exporter
        .export(random_spans(63, 5))
        .await
        .expect_err("never accepted");
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    assert!(err.to_string().contains("gave up"), "{err}");
    let sent = log.lock().expect("log").len() as u64;
    let (rejected, retried, _) = tally.snapshot();
    assert!(sent >= 2, "retried at least once: {sent}");
    assert_eq!((rejected, retried), (0, sent - 1));
}

#[tokio::test]
async fn grpc_retries_follow_the_status_code_and_retry_info() {
    // RESOURCE_EXHAUSTED with RetryInfo, then UNAVAILABLE, then OK.
    let (addr, log) = scripted(vec![
        Reply::GrpcDetails(
            "8",
            crate::wire::retry::retry_info_bin(Duration::from_millis(1200)),
        ),
        Reply::GrpcHeadersOnly("14"),
        Reply::GrpcTrailers("0", ""),
    ])
    .await;
    let (exporter, tally) =
        counted_exporter(Wire::Grpc, addr, Duration::from_secs(10), Compression::None);
    let started = Instant::now();
    exporter
        .export(random_spans(64, 9))
        .await
        .expect("accepted on the third attempt");
    assert_eq!(log.lock().expect("log").len(), 3);
    assert_eq!(tally.snapshot().1, 2);
    // RetryInfo's 1.2 s is above the first window (0.5..1 s): it was the wait.
    assert!(started.elapsed() >= Duration::from_millis(1200 + 1000));

    // RESOURCE_EXHAUSTED without RetryInfo, and INVALID_ARGUMENT, are final.
    for code in ["8", "3"] {
        let (addr, log) = collector(Reply::GrpcHeadersOnly(code)).await;
        let (exporter, tally) =
            counted_exporter(Wire::Grpc, addr, Duration::from_secs(10), Compression::None);
        exporter
            .export(random_spans(65, 4))
            .await
            .expect_err("refused");
        assert_eq!(log.lock().expect("log").len(), 1, "code {code}");
        assert_eq!(tally.snapshot().0, 4, "code {code}");
    }
}

#[tokio::test]
async fn partial_success_counts_the_rejected_spans_and_keeps_the_message() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let response = |rejected: i64, message: &str| {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec()
    };
    for wire in [Wire::Http, Wire::Grpc] {
        let reply = |body: Vec<u8>| match wire {
            Wire::Http => Reply::HttpWith(
                200,
                vec![("content-type", "application/x-protobuf".to_owned())],
                body,
            ),
            Wire::Grpc => Reply::GrpcOk(body),
        };
        let (addr, log) = scripted(vec![
            reply(response(3, "spans older than 24 h")),
            reply(response(0, "")),
            reply(response(0, "attribute values truncated")),
        ])
        .await;
        let (exporter, tally) =
            counted_exporter(wire, addr, Duration::from_secs(5), Compression::None);
        exporter.export(random_spans(66, 10)).await.expect("taken");
        let (rejected, retried, reason) = tally.snapshot();
        assert_eq!((rejected, retried), (3, 0), "{wire:?}");
        let reason = reason.expect("a reason");
        assert!(reason.contains("spans older than 24 h"), "{reason}");
        assert!(reason.contains("3 of 10"), "{reason}");
        // An empty partial success is a plain success; a warning with nothing rejected is
        // kept for the report.
        exporter.export(random_spans(67, 10)).await.expect("taken");
        exporter.export(random_spans(68, 10)).await.expect("taken");
        let (rejected, _, reason) = tally.snapshot();
        assert_eq!(rejected, 3, "{wire:?}");
        assert!(reason.is_some_and(|r| r.contains("attribute values truncated")));
        assert_eq!(log.lock().expect("log").len(), 3, "never resent");
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip member");
    out
}

#[tokio::test]
async fn gzip_bodies_decompress_to_the_encoded_request_on_both_wires() {
    for (wire, reply) in [
        (Wire::Http, Reply::Http(200)),
        (Wire::Grpc, Reply::GrpcTrailers("0", "")),
    ] {
        let (addr, log) = collector(reply).await;
        let (exporter, _) = counted_exporter(wire, addr, Duration::from_secs(5), Compression::Gzip);
        // Batches of varied sizes: the reused buffers and deflate state reset each time. The
        // last repeats realistic spans (random text, as in the others, hardly compresses).
        let realistic = || (0..30).flat_map(|_| varied_spans()).collect::<Vec<_>>();
        for (seed, count) in [(71, 200), (72, 1), (73, 50), (0, 0)] {
            let spans = if seed == 0 {
                realistic()
            } else {
                random_spans(seed, count)
            };
            let expected = encoded(&spans);
            exporter.export(spans).await.expect("export succeeds");
            let received = log.lock().expect("log").pop().expect("one request");
            let body = &received.body;
            let unzipped = match wire {
                Wire::Http => {
                    assert_eq!(received.headers["content-encoding"], "gzip");
                    assert!(!received.headers.contains_key("grpc-encoding"));
                    gunzip(body)
                }
                Wire::Grpc => {
                    assert_eq!(received.headers["grpc-encoding"], "gzip");
                    assert!(!received.headers.contains_key("content-encoding"));
                    assert_eq!(body[0], 1, "the compressed flag");
                    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
                    assert_eq!(len, body.len() - GRPC_PREFIX);
                    gunzip(&body[GRPC_PREFIX..])
                }
            };
            assert!(unzipped == expected, "{wire:?} seed {seed}");
            if seed == 0 {
                assert!(
                    body.len() * 4 < expected.len(),
                    "{wire:?}: {} bytes gzipped to {}",
                    expected.len(),
                    body.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// build

fn config(protocol: Protocol, endpoint: &str, headers: &[(&str, &str)]) -> Resolved {
    Resolved {
        service_name: "svc".to_owned(),
        service_version: None,
        environment: None,
        resource_attributes: Vec::new(),
        exporter: crate::config::TracesExporter::Otlp,
        protocol,
        endpoint: endpoint.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timeout: Duration::from_secs(10),
        compression: Default::default(),
        tls: Default::default(),
        sampler: crate::config::TracesSampler::AlwaysOn,
        sampling: None,
        batch: crate::config::BatchConfig::default(),
        disabled: false,
    }
}

#[test]
fn build_accepts_plain_http_and_rejects_what_it_cannot_serve() {
    build(&config(
        Protocol::HttpProtobuf,
        "http://localhost:4318/v1/traces",
        &[("a", "b")],
    ))
    .expect("http/protobuf");
    build(&config(Protocol::Grpc, "http://localhost:4317", &[])).expect("grpc");

    for (protocol, endpoint) in [
        (Protocol::Grpc, "https://collector:4317"),
        (Protocol::HttpProtobuf, "https://collector/v1/traces"),
    ] {
        let built = build(&config(protocol, endpoint, &[]));
        #[cfg(feature = "tls")]
        built.expect("https with the tls feature");
        #[cfg(not(feature = "tls"))]
        {
            let e = built.expect_err("https needs the tls feature");
            assert!(e.to_string().contains("`tls` feature"), "{e}");
        }
    }

    for bad in ["not a url", "localhost:4318", "ftp://x/v1/traces", ""] {
        let e = build(&config(Protocol::HttpProtobuf, bad, &[])).expect_err(bad);
        assert!(e.to_string().contains("fast OTLP exporter"), "{e}");
    }
    let e = build(&config(
        Protocol::HttpProtobuf,
        "http://localhost:4318/v1/traces",
        &[("bad header", "x")],
    ))
    .expect_err("invalid header name");
    assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
}

#[test]
fn encode_at_overwrites_a_reused_buffer_in_place() {
    let resource = resource_with_schema();
    let mut encoder = encoder_for(Some(&resource));
    let mut buffer = Vec::new();
    for (seed, count, start) in [
        (31, 200, 5),
        (32, 3, 5),
        (33, 50, 0),
        (34, 0, 5),
        (35, 120, 5),
    ] {
        let spans = random_spans(seed, count);
        encoder
            .encode_at(&spans, &mut buffer, start)
            .expect("encodes");
        let expected = reference(&spans, Some(&resource)).encode_to_vec();
        assert_eq!(buffer.len(), start + expected.len(), "seed {seed}");
        assert!(buffer[start..] == expected[..], "seed {seed}");
    }
}

#[test]
fn scopes_are_equal_by_shared_text_or_by_value() {
    use opentelemetry::InstrumentationScope;
    let shared = InstrumentationScope::builder("service-tracing")
        .with_version("1.0")
        .build();
    let owned = InstrumentationScope::builder(String::from("service-tracing"))
        .with_version(String::from("1.0"))
        .build();
    let other = InstrumentationScope::builder("service-tracing")
        .with_version("2.0")
        .build();
    let with_attributes = InstrumentationScope::builder("service-tracing")
        .with_version("1.0")
        .with_attributes([opentelemetry::KeyValue::new("k", "v")])
        .build();
    assert!(super::encode::same_scope(&shared, &shared.clone()));
    assert!(super::encode::same_scope(&shared, &owned));
    assert!(!super::encode::same_scope(&shared, &other));
    assert!(!super::encode::same_scope(&shared, &with_attributes));
    assert!(super::encode::same_scope(
        &with_attributes,
        &with_attributes.clone()
    ));
}

/// The calling thread's CPU time (user + system), from `/proc/thread-self/stat`.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
    let after_name = &stat[stat.rfind(')').expect("stat layout") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of the line; the slice starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The runtimes of the export measurements: the in-process collectors on one thread of their
/// own (not counted), and the exporter's, current-thread as on the export thread.
fn measurement_runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    (servers, client)
}

/// The same cost with gzip beside TLS, and the bytes on the wire.
#[cfg(feature = "tls")]
mod wire_cost;

/// Measures the export thread's CPU per span over https and plain http, both wires, in
/// interleaved rounds against in-process collectors (served on other threads, so not counted).
/// Run in release: `cargo nextest run --release -p service-tracing --all-features
/// --run-ignored only -E 'test(export_cpu_per_span)' --no-capture`.
#[cfg(feature = "tls")]
#[test]
#[ignore = "a measurement, not a check; run in release (see the doc comment)"]
fn export_cpu_per_span_with_and_without_tls() {
    const BATCH: usize = 512;
    const BATCHES: usize = 200;
    const ROUNDS: usize = 5;
    let (servers, client) = measurement_runtimes();
    let (ca, config) = test_pki(&[b"h2", b"http/1.1"]);
    let mut variants = Vec::new();
    for wire in [Wire::Grpc, Wire::Http] {
        let reply = match wire {
            Wire::Grpc => Reply::GrpcTrailers("0", ""),
            Wire::Http => Reply::Http(200),
        };
        let path = if wire == Wire::Http { "/v1/traces" } else { "" };
        let (plain, plain_log) = servers.block_on(collector(reply.clone()));
        let (tls, tls_log) = servers.block_on(tls_collector(reply, config.clone()));
        let _enter = client.enter();
        variants.push((
            format!("{wire:?} plain"),
            tls_exporter(
                wire,
                &format!("http://127.0.0.1:{}{path}", plain.port()),
                None,
            ),
            plain_log,
        ));
        variants.push((
            format!("{wire:?} tls"),
            tls_exporter(
                wire,
                &format!("https://localhost:{}{path}", tls.port()),
                Some(&ca),
            ),
            tls_log,
        ));
    }
    let spans = random_spans(51, BATCH);
    let mut cpu = vec![Duration::ZERO; variants.len()];
    for round in 0..=ROUNDS {
        for (i, (_, exporter, log)) in variants.iter().enumerate() {
            let batches: Vec<Vec<SpanData>> = (0..BATCHES).map(|_| spans.clone()).collect();
            let start = thread_cpu();
            client.block_on(async {
                for batch in batches {
                    exporter.export(batch).await.expect("export");
                }
            });
            // Round 0 warms up (connections, handshakes, buffers).
            if round > 0 {
                cpu[i] += thread_cpu() - start;
            }
            log.lock().expect("log lock").clear();
        }
    }
    let per_span = |d: Duration| d.as_nanos() as f64 / (ROUNDS * BATCHES * BATCH) as f64;
    for ((name, _, _), d) in variants.iter().zip(&cpu) {
        println!(
            "{name}: {:.0} ns of export-thread CPU per span",
            per_span(*d)
        );
    }
}

/// Spans like the server layer's: a route name, the HTTP semantic-convention attributes with
/// per-request values (path, correlation id, peer port), random ids.
fn server_spans(seed: u64, count: usize) -> Vec<SpanData> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|i| {
            let id = rng.u64(..);
            let mut s = span(rng.u128(..), id, 0, "GET /users/{id}");
            s.instrumentation_scope = InstrumentationScope::builder("service-tracing")
                .with_version("0.1.0")
                .build();
            let user = rng.u32(..100_000);
            s.attributes = vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.path", format!("/users/{user}")),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("http.route", "/users/{id}"),
                KeyValue::new(
                    "http.response.status_code",
                    if i % 50 == 0 { 500 } else { 200 },
                ),
                KeyValue::new("server.address", "api.internal"),
                KeyValue::new("network.protocol.version", "1.1"),
                KeyValue::new("client.address", format!("10.0.{}.{}", user % 256, i % 256)),
                KeyValue::new("user_agent.original", "checkout-service/2.3 (reqwest)"),
                KeyValue::new("correlation.id", format!("{:032x}", rng.u128(..))),
            ];
            s
        })
        .collect()
}

/// Measures, for OTLP/HTTP and gRPC, the bytes on the wire and the export thread's CPU per
/// span without compression and with gzip at levels 1 (the one used) and 6 (zlib's default),
/// in interleaved rounds against an in-process collector (served on another thread, so not
/// counted). Batches of 512 spans shaped like the server layer's. Run in release:
/// `cargo nextest run --release -p service-tracing --all-features --run-ignored only
/// -E 'test(export_bytes_and_cpu_per_span_with_and_without_gzip)' --no-capture`.
#[test]
#[ignore = "a measurement, not a check; run in release (see the doc comment)"]
fn export_bytes_and_cpu_per_span_with_and_without_gzip() {
    const BATCH: usize = 512;
    const BATCHES: usize = 100;
    const ROUNDS: usize = 5;
    let (servers, client) = measurement_runtimes();
    let mut variants = Vec::new();
    for wire in [Wire::Http, Wire::Grpc] {
        for (name, compression, level) in [
            ("none", Compression::None, 0),
            ("gzip level 1", Compression::Gzip, 1),
            ("gzip level 6", Compression::Gzip, 6),
        ] {
            let reply = match wire {
                Wire::Grpc => Reply::GrpcTrailers("0", ""),
                Wire::Http => Reply::Http(200),
            };
            let (addr, log) = servers.block_on(collector(reply));
            let _enter = client.enter();
            let (mut exporter, _) =
                counted_exporter(wire, addr, Duration::from_secs(5), compression);
            if level > 0 {
                exporter = exporter.with_gzip_level(level);
            }
            variants.push((format!("{wire:?} {name}"), exporter, log));
        }
    }
    let batches: Vec<Vec<SpanData>> = (0..BATCHES as u64)
        .map(|seed| server_spans(seed, BATCH))
        .collect();
    let mut cpu = vec![Duration::ZERO; variants.len()];
    let mut bytes = vec![0_usize; variants.len()];
    for round in 0..=ROUNDS {
        for (i, (_, exporter, log)) in variants.iter().enumerate() {
            let work = batches.clone();
            let start = thread_cpu();
            client.block_on(async {
                for batch in work {
                    exporter.export(batch).await.expect("export");
                }
            });
            // Round 0 warms up (connections, buffers).
            let mut log = log.lock().expect("log lock");
            if round > 0 {
                cpu[i] += thread_cpu() - start;
                bytes[i] += log.iter().map(|r| r.body.len()).sum::<usize>();
            }
            log.clear();
        }
    }
    let spans = (ROUNDS * BATCHES * BATCH) as f64;
    for (((name, _, _), d), b) in variants.iter().zip(&cpu).zip(&bytes) {
        println!(
            "{name}: {:.0} bytes and {:.0} ns of export-thread CPU per span",
            *b as f64 / spans,
            d.as_nanos() as f64 / spans,
        );
    }
}
