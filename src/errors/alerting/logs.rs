//! New error groups and alerts as OpenTelemetry log records, exported over OTLP (HTTP/protobuf
//! or gRPC, as the traces are) by the delivery thread.
//!
//! The `ExportLogsServiceRequest` is encoded here by hand and posted with the fast exporter's
//! transport ([`crate::export::otlp_fast`]): a few records a minute do not need the SDK's
//! logs pipeline, and enabling it would rebuild the OpenTelemetry crates with another feature.
//! So records get what spans get: TLS and mTLS for `https`, gzip, and the same retries
//! (`Transport::deliver`), with the logs' own variables (`OTEL_EXPORTER_OTLP_LOGS_*`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::Resource;

use super::notify::Counters;
use super::rules::{Alert, Signal};
use crate::config::env::LogsEnv;
use crate::config::{Compression, Protocol, Resolved};
use crate::error::SetupError;
use crate::errors::classify::Severity;
use crate::errors::store::ErrorGroup;
use crate::wire::body::Framer;
use crate::wire::transport::{Outcomes, Refusals, Transport};

/// The OTLP logs export method, appended to a gRPC endpoint.
const GRPC_LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The instrumentation scope the records are emitted under.
const SCOPE: &str = "service-tracing.errors";

/// Where log records go: the logs' protocol, endpoint, headers, timeout, compression and TLS.
#[derive(Clone, Debug)]
pub(crate) struct LogExport {
    protocol: Protocol,
    endpoint: String,
    headers: Vec<(String, String)>,
    timeout: std::time::Duration,
    compression: Compression,
    tls: crate::wire::tls::TlsConfig,
    resource: Resource,
}

impl LogExport {
    /// The log export of `config` (the logs' settings, as set-up resolved them: protocol,
    /// endpoint, headers, timeout, compression and TLS), or `None` when traces do not go over
    /// OTLP or `OTEL_LOGS_EXPORTER` is set to anything but `otlp` (such as `none`).
    pub(crate) fn from_config(
        config: &Resolved,
        resource: Resource,
        env: &LogsEnv,
    ) -> Option<Self> {
        if env.off || config.exporter != crate::config::TracesExporter::Otlp {
            return None;
        }
        Some(Self {
            protocol: config.protocol,
            endpoint: config.endpoint.clone(),
            headers: config.headers.clone(),
            timeout: config.timeout,
            compression: config.compression,
            tls: config.tls.clone(),
            resource,
        })
    }
}

/// The traces' endpoint turned into the logs' one (the same protocol's): `/v1/logs` in place
/// of `/v1/traces` for HTTP, the same for gRPC.
pub(crate) fn logs_endpoint(traces: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::HttpProtobuf => match traces.strip_suffix("/v1/traces") {
            Some(base) => format!("{base}/v1/logs"),
            None => traces.to_owned(),
        },
        _ => traces.to_owned(),
    }
}

/// An attribute value of a record.
#[derive(Clone, Debug, PartialEq)]
enum LogValue {
    Str(String),
    Int(i64),
    Double(f64),
}

/// One log record: a new group or an alert.
#[derive(Clone, Debug)]
pub(crate) struct LogRecord {
    time: SystemTime,
    severity: Severity,
    event_name: &'static str,
    body: String,
    attributes: Vec<(&'static str, LogValue)>,
    trace_id: TraceId,
    span_id: SpanId,
}

fn group_attributes(group: &ErrorGroup) -> Vec<(&'static str, LogValue)> {
    let s = |v: &str| LogValue::Str(v.to_owned());
    let mut attributes = vec![
        ("exception.type", s(group.error_type())),
        ("exception.message", s(group.message())),
        (
            "error.fingerprint",
            LogValue::Str(format!("{:016x}", group.fingerprint())),
        ),
        ("error.severity", s(group.severity().as_str())),
        ("error.category", s(group.category().as_str())),
        (
            "error.count",
            LogValue::Int(i64::try_from(group.count()).unwrap_or(i64::MAX)),
        ),
    ];
    if let Some(op) = group.operations().first() {
        attributes.push(("operation", s(op)));
    }
    attributes
}

impl LogRecord {
    /// "new error group: {type}: {message}".
    pub(crate) fn new_group(group: &ErrorGroup, signal: &Signal) -> Self {
        Self {
            time: group.first_seen(),
            severity: group.severity(),
            event_name: "error.group.new",
            body: format!(
                "new error group: {}: {}",
                group.error_type(),
                group.message()
            ),
            attributes: group_attributes(group),
            trace_id: signal.trace_id,
            span_id: signal.span_id,
        }
    }

    /// "alert {rule}: {type}: {message}", with the figures.
    pub(crate) fn alert(alert: &Alert) -> Self {
        let group = alert.group();
        let mut attributes = group_attributes(group);
        attributes.push(("alert.rule", LogValue::Str(alert.rule().to_owned())));
        attributes.push((
            "alert.kind",
            LogValue::Str(alert.kind().as_str().to_owned()),
        ));
        attributes.push(("alert.observed", LogValue::Double(alert.observed())));
        attributes.push(("alert.threshold", LogValue::Double(alert.threshold())));
        if let Some(window) = alert.window() {
            attributes.push(("alert.window", LogValue::Str(window.as_str().to_owned())));
        }
        if !alert.operation().is_empty() {
            attributes.retain(|(k, _)| *k != "operation");
            attributes.push(("operation", LogValue::Str(alert.operation().to_owned())));
        }
        Self {
            time: alert.fired_at(),
            severity: group.severity(),
            event_name: "error.alert",
            body: format!(
                "alert {}: {}: {}",
                alert.rule(),
                group.error_type(),
                group.message()
            ),
            attributes,
            trace_id: alert.trace_id(),
            span_id: alert.span_id(),
        }
    }
}

/// The OTLP severity number and text of a group's severity.
fn severity_number(severity: Severity) -> u64 {
    match severity {
        Severity::Critical => 21, // FATAL
        Severity::High => 17,     // ERROR
        Severity::Medium => 13,   // WARN
        // `Severity` is shared with the middleware crate and open to new levels.
        _ => 9, // INFO (Low)
    }
}

/// Posts encoded batches; lives on the delivery thread.
pub(crate) struct LogSender {
    transport: Transport,
    /// Only the delivery thread exports: never contended.
    framer: Mutex<Framer>,
    resource: Vec<u8>,
    refusals: Refusals,
}

impl LogSender {
    /// Fails on an `https` endpoint without the `tls` feature, a bad URL or bad headers.
    pub(crate) fn new(export: LogExport) -> Result<Self, SetupError> {
        let (transport, framer) = Transport::for_signal(
            export.protocol,
            &export.endpoint,
            GRPC_LOGS_PATH,
            &export.headers,
            export.timeout,
            &export.tls,
            export.compression,
        )?;
        Ok(Self {
            framer: Mutex::new(framer),
            transport,
            resource: encode_resource(&export.resource),
            refusals: Refusals::new("log record"),
        })
    }

    /// Sends the records, retrying throttled and transient failures as spans are retried,
    /// within the export timeout, and counts what became of them in `counters`: exported,
    /// rejected by the backend (a final refusal, or a partial success's rejected records),
    /// failed (given up on), and the requests sent again. Refusals are also told on standard
    /// error, rate-limited.
    pub(crate) async fn export(&self, records: &[LogRecord], counters: &Counters) {
        let n = records.len() as u64;
        let outcomes = Tally {
            counters,
            refusals: &self.refusals,
            rejected: AtomicU64::new(0),
        };
        let result = match self.body(records) {
            Ok(body) => {
                self.transport
                    .deliver(&body, n, "log record", &outcomes)
                    .await
            }
            Err(e) => Err(e),
        };
        // What the backend rejected is neither exported nor failed.
        let rest = n.saturating_sub(outcomes.rejected.load(Ordering::Relaxed));
        match result {
            Ok(()) => Counters::add(&counters.logs_exported, rest),
            Err(_) => Counters::add(&counters.logs_failed, rest),
        }
    }

    /// The framed (and maybe compressed) request.
    fn body(&self, records: &[LogRecord]) -> Result<bytes::Bytes, OTelSdkError> {
        let message = encode_request(&self.resource, records);
        self.framer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .frame(&message)
    }
}

/// Where one export's refusals and retries are counted ([`AlertStats`]'s `logs_rejected` and
/// `logs_retried`), and the export's own rejected records, to tell them from the exported.
///
/// [`AlertStats`]: crate::errors::AlertStats
struct Tally<'a> {
    counters: &'a Counters,
    refusals: &'a Refusals,
    rejected: AtomicU64,
}

impl Outcomes for Tally<'_> {
    fn rejected(&self, items: u64, reason: String) {
        self.rejected.fetch_add(items, Ordering::Relaxed);
        Counters::add(&self.counters.logs_rejected, items);
        self.refusals.rejected(items, reason);
    }

    fn retried(&self) {
        Counters::add(&self.counters.logs_retried, 1);
    }
}

// Protobuf, written nested: each message is built in its own buffer and then length-prefixed.
// Fine for a few records per request.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn fixed64_field(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `AnyValue`.
fn any_value(value: &LogValue) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        LogValue::Str(s) => bytes_field(&mut out, 1, s.as_bytes()),
        LogValue::Int(i) => {
            key(&mut out, 3, 0);
            varint(&mut out, *i as u64);
        }
        LogValue::Double(d) => fixed64_field(&mut out, 4, d.to_bits()),
    }
    out
}

/// `KeyValue`.
fn key_value(k: &str, value: &LogValue) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, k.as_bytes());
    bytes_field(&mut out, 2, &any_value(value));
    out
}

/// `Resource` (its attributes; arrays as their string form).
fn encode_resource(resource: &Resource) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in resource.iter() {
        let value = match v {
            Value::I64(i) => LogValue::Int(*i),
            Value::F64(f) => LogValue::Double(*f),
            other => LogValue::Str(other.as_str().into_owned()),
        };
        bytes_field(&mut out, 1, &key_value(k.as_str(), &value));
    }
    out
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `LogRecord`.
fn encode_record(record: &LogRecord) -> Vec<u8> {
    let mut out = Vec::new();
    fixed64_field(&mut out, 1, nanos(record.time));
    key(&mut out, 2, 0);
    varint(&mut out, severity_number(record.severity));
    bytes_field(&mut out, 3, record.severity.as_str().as_bytes());
    bytes_field(&mut out, 5, &any_value(&LogValue::Str(record.body.clone())));
    for (k, v) in &record.attributes {
        bytes_field(&mut out, 6, &key_value(k, v));
    }
    if record.trace_id != TraceId::INVALID {
        bytes_field(&mut out, 9, &record.trace_id.to_bytes());
    }
    if record.span_id != SpanId::INVALID {
        bytes_field(&mut out, 10, &record.span_id.to_bytes());
    }
    fixed64_field(&mut out, 11, nanos(SystemTime::now()));
    bytes_field(&mut out, 12, record.event_name.as_bytes());
    out
}

/// `ExportLogsServiceRequest` with one `ResourceLogs` holding one `ScopeLogs`.
fn encode_request(resource: &[u8], records: &[LogRecord]) -> Vec<u8> {
    let mut scope = Vec::new();
    bytes_field(&mut scope, 1, SCOPE.as_bytes());
    bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let mut scope_logs = Vec::new();
    bytes_field(&mut scope_logs, 1, &scope);
    for record in records {
        bytes_field(&mut scope_logs, 2, &encode_record(record));
    }
    let mut resource_logs = Vec::new();
    bytes_field(&mut resource_logs, 1, resource);
    bytes_field(&mut resource_logs, 2, &scope_logs);
    let mut request = Vec::new();
    bytes_field(&mut request, 1, &resource_logs);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_endpoint_follows_the_traces_one() {
        assert_eq!(
            logs_endpoint("http://c:4318/v1/traces", Protocol::HttpProtobuf),
            "http://c:4318/v1/logs"
        );
        assert_eq!(
            logs_endpoint("http://c:4317", Protocol::Grpc),
            "http://c:4317"
        );
    }

    #[test]
    fn otel_logs_exporter_is_honoured() {
        let config = Resolved {
            service_name: "svc".to_owned(),
            service_version: None,
            environment: None,
            resource_attributes: Vec::new(),
            exporter: crate::config::TracesExporter::Otlp,
            protocol: Protocol::HttpProtobuf,
            endpoint: "http://c:4318/v1/logs".to_owned(),
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            compression: Default::default(),
            tls: Default::default(),
            sampler: crate::config::TracesSampler::ParentBasedAlwaysOn,
            sampling: None,
            batch: crate::config::BatchConfig::default(),
            disabled: false,
        };
        let from = |vars: &'static [(&'static str, &'static str)]| {
            let env = crate::config::env::read_logs(&|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
            .expect("valid");
            LogExport::from_config(&config, Resource::builder_empty().build(), &env)
                .map(|l| l.endpoint)
        };
        assert_eq!(from(&[]).as_deref(), Some("http://c:4318/v1/logs"));
        assert_eq!(
            from(&[("OTEL_LOGS_EXPORTER", "otlp")]).as_deref(),
            Some("http://c:4318/v1/logs")
        );
        assert_eq!(from(&[("OTEL_LOGS_EXPORTER", "none")]), None);
        assert_eq!(from(&[("OTEL_LOGS_EXPORTER", "console")]), None);
    }

    fn record(n: u64) -> LogRecord {
        LogRecord {
            time: SystemTime::now(),
            severity: Severity::High,
            event_name: "error.group.new",
            body: format!("new error group {n}"),
            attributes: Vec::new(),
            trace_id: TraceId::INVALID,
            span_id: SpanId::INVALID,
        }
    }

    /// What becomes of each record is counted once: a partial success's rejected records as
    /// rejected, the rest as exported; a throttled request's retry as a retry; a final refusal
    /// as rejected, not failed; a backend that stays unavailable past the timeout as failed.
    #[tokio::test]
    async fn each_record_is_counted_exported_rejected_or_failed_and_retries_apart() {
        use crate::export::otlp_fast::tests::{scripted, Reply};
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        use prost::Message as _;

        // `ExportLogsServiceResponse` has the traces' layout: its `rejected_log_records` is
        // field 1 of the partial success, as `rejected_spans` is.
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "one record too old".to_owned(),
            }),
        }
        .encode_to_vec();
        let (addr, _log) = scripted(vec![
            Reply::HttpWith(429, vec![("retry-after", "0".to_owned())], Vec::new()),
            Reply::HttpWith(200, Vec::new(), partial),
            Reply::Http(400),
            Reply::Http(503),
        ])
        .await;
        let sender = LogSender::new(LogExport {
            protocol: Protocol::HttpProtobuf,
            endpoint: format!("http://{addr}/v1/logs"),
            headers: Vec::new(),
            timeout: std::time::Duration::from_millis(1500),
            compression: Compression::None,
            tls: Default::default(),
            resource: Resource::builder_empty().build(),
        })
        .expect("sender");
        let counters = Counters::default();
        let batch: Vec<LogRecord> = (0..3).map(record).collect();
        let stats = |c: &Counters| {
            let s = c.stats();
            (
                s.logs_exported,
                s.logs_rejected,
                s.logs_failed,
                s.logs_retried,
            )
        };

        sender.export(&batch, &counters).await; // 429, then the partial success
        assert_eq!(stats(&counters), (2, 1, 0, 1));
        sender.export(&batch[..2], &counters).await; // 400
        assert_eq!(stats(&counters), (2, 3, 0, 1));
        sender.export(&batch[..1], &counters).await; // 503 until the timeout
        let (exported, rejected, failed, retried) = stats(&counters);
        assert_eq!((exported, rejected, failed), (2, 3, 1));
        assert!(retried >= 2, "the 503 was retried within 1.5 s: {retried}");
    }

    #[test]
    fn varints_and_fields_are_protobuf() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        let kv = key_value("k", &LogValue::Str("v".to_owned()));
        // KeyValue{key: "k", value: AnyValue{string_value: "v"}}
        assert_eq!(kv, [0x0A, 1, b'k', 0x12, 3, 0x0A, 1, b'v']);
        assert_eq!(any_value(&LogValue::Int(-1)).len(), 1 + 10);
    }
}
