//! End-to-end test harness: runs a real OpenTelemetry collector (`rotel-agent`
//! from the PyPI package `rotel`) on two free loopback ports and reads back
//! everything it received from its debug output.
//!
//! The agent is started with `--exporter blackhole --debug-log traces
//! --debug-log logs --debug-log-verbosity detailed --disable-batching`, which
//! makes it print every received span and log record to stdout in the
//! OpenTelemetry Collector debug-exporter layout. A reader thread collects
//! stdout; [`parse`] turns that text back into [`CollectedSpan`]s and
//! [`CollectedLog`]s.
//!
//! Layout printed by rotel 0.0.1a15 (agent 0.0.1-alpha10) for one span:
//!
//! ```text
//! ResourceSpans #0
//! Resource SchemaURL:
//! Resource attributes:
//!      -> service.name: Str(svc-alpha)
//! ScopeSpans #0
//! ScopeSpans SchemaURL:
//! InstrumentationScope scope.one 1.2.3
//! Span #0
//!     Trace ID       : 1b872f27c733c034ceac26fb61afac48
//!     Parent ID      : 854bf21486793557
//!     ID             : dcd4a2fa3952699e
//!     Name           : db query
//!     Kind           : SPAN_KIND_CLIENT
//! Start time: 1795425543740740681
//! End time: 1795425543740844746
//!     Status code    : STATUS_CODE_UNSET
//!     Status message :
//! Attributes:
//!      -> db.system: Str(postgresql)
//! Events:
//! SpanEvent #0
//!      -> Name: cache miss
//!      -> Timestamp: 1795425543740803359
//!      -> DroppedAttributesCount: 0
//!      -> Attributes::
//!           -> cache.key: Str(user:42)
//! Links:
//! SpanLink #0
//!      -> Trace ID: 1b872f27c733c034ceac26fb61afac48
//!      -> ID: 854bf21486793557
//!      -> TraceState:
//!      -> DroppedAttributesCount: 0
//! ```
//!
//! String values are printed unescaped, so a value containing newlines (an
//! exception stack trace, a multi-line log body) continues on the following
//! lines; the parser handles that. The Go collector's variant of the layout
//! (`Kind : Server`, `Status code : Ok`, formatted start/end times) is accepted
//! as well.
#![allow(dead_code)]
#![allow(unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Version of the `rotel` PyPI package the harness was written against
/// (`scripts/provision-collector` installs exactly this one).
pub const ROTEL_VERSION: &str = "0.0.1a15";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const READY_POLL: Duration = Duration::from_millis(20);
const WAIT_POLL: Duration = Duration::from_millis(25);
const MAX_OUTPUT_IN_PANIC: usize = 20 * 1024;
const START_ATTEMPTS: usize = 5;

static INSTANCE_COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// Collected data
// ---------------------------------------------------------------------------

/// One span as printed by the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedSpan {
    /// `service.name` resource attribute ("" if absent).
    pub service_name: String,
    /// All resource attributes, values unwrapped (`Str(x)` -> `x`, `Int(3)` -> `3`).
    pub resource: BTreeMap<String, String>,
    /// Instrumentation scope name and version ("" if not set).
    pub scope_name: String,
    pub scope_version: String,
    /// Lowercase hex, 32 chars.
    pub trace_id: String,
    /// Lowercase hex, 16 chars, or "" for a root span.
    pub parent_id: String,
    /// Lowercase hex, 16 chars.
    pub span_id: String,
    pub name: String,
    /// "Server", "Client", "Internal", "Producer", "Consumer" or "Unspecified".
    pub kind: String,
    /// Nanoseconds since the Unix epoch; 0 if the collector printed something else.
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// "Unset", "Ok" or "Error".
    pub status_code: String,
    pub status_message: String,
    /// Span attributes, values unwrapped like `resource`. Arrays keep their
    /// inner text: `Slice(Str(a), Str(b))` -> `Str(a), Str(b)`.
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<CollectedEvent>,
    pub links: Vec<CollectedLink>,
}

/// A span event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedEvent {
    pub name: String,
    pub timestamp_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
}

/// A span link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedLink {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: String,
    pub attributes: BTreeMap<String, String>,
}

/// One log record as printed by the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedLog {
    pub service_name: String,
    pub resource: BTreeMap<String, String>,
    pub scope_name: String,
    pub scope_version: String,
    /// Body with the value wrapper removed (`Str(hello)` -> `hello`).
    pub body: String,
    pub severity_text: String,
    /// The numeric severity (`SEVERITY_NUMBER_WARN(13)` -> 13); 0 if unset.
    pub severity_number: i32,
    pub event_name: String,
    pub timestamp_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
    /// "" when the record carries no trace context.
    pub trace_id: String,
    pub span_id: String,
}

impl CollectedSpan {
    /// A span attribute's (unwrapped) value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// A resource attribute's (unwrapped) value.
    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        self.resource.get(key).map(String::as_str)
    }

    /// The first event with this name.
    pub fn event(&self, name: &str) -> Option<&CollectedEvent> {
        self.events.iter().find(|e| e.name == name)
    }

    pub fn is_root(&self) -> bool {
        self.parent_id.is_empty()
    }

    /// End minus start, if both timestamps were parsed.
    pub fn duration(&self) -> Option<Duration> {
        if self.start_time_unix_nano == 0 || self.end_time_unix_nano == 0 {
            return None;
        }
        self.end_time_unix_nano
            .checked_sub(self.start_time_unix_nano)
            .map(Duration::from_nanos)
    }
}

impl CollectedEvent {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

impl CollectedLink {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

impl CollectedLog {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The only span named `name`; panics (listing what was collected) if there
/// is none or more than one.
pub fn span_named<'a>(spans: &'a [CollectedSpan], name: &str) -> &'a CollectedSpan {
    let mut matching = spans.iter().filter(|s| s.name == name);
    let first = matching.next();
    let extra = matching.count();
    match first {
        Some(span) if extra == 0 => span,
        Some(_) => panic!(
            "expected exactly one span named {name:?}, found {}; spans: {:#?}",
            extra + 1,
            spans.iter().filter(|s| s.name == name).collect::<Vec<_>>()
        ),
        None => panic!(
            "no span named {name:?}; collected span names: {:?}",
            spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        ),
    }
}

/// All spans whose parent is `parent`.
pub fn children_of<'a>(
    spans: &'a [CollectedSpan],
    parent: &CollectedSpan,
) -> Vec<&'a CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == parent.trace_id && s.parent_id == parent.span_id)
        .collect()
}

// ---------------------------------------------------------------------------
// The collector process
// ---------------------------------------------------------------------------

/// A running `rotel-agent`. Dropping it kills and reaps the process.
pub struct Collector {
    child: Mutex<Child>,
    grpc_port: u16,
    http_port: u16,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    pid_file: PathBuf,
    log_file: PathBuf,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("grpc_port", &self.grpc_port)
            .field("http_port", &self.http_port)
            .finish_non_exhaustive()
    }
}

enum StartError {
    /// The agent could not bind a port (someone grabbed it between our probe
    /// and its bind): worth retrying with other ports.
    PortTaken(String),
    Fatal(String),
}

impl Collector {
    /// Locates `rotel-agent` (see [`Collector::agent_path`]), starts it on two
    /// free loopback ports and waits (up to 20 s) until the agent itself
    /// listens on both (checked via /proc where available) and both accept
    /// TCP connections. Retries with other ports if one was taken meanwhile;
    /// panics with the agent's stderr/stdout if it exits or never gets ready.
    pub fn start() -> Collector {
        Self::start_with_args(&[])
    }

    /// Like [`Collector::start`], with extra command-line arguments appended
    /// to `rotel-agent start ...`.
    pub fn start_with_args(extra_args: &[&str]) -> Collector {
        let agent = Self::agent_path();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&agent, extra_args) {
                Ok(collector) => return collector,
                Err(StartError::PortTaken(msg)) => last_error = msg,
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!("rotel-agent could not bind its ports after {START_ATTEMPTS} attempts; last error:\n{last_error}")
    }

    /// `$ROTEL_AGENT` if set, else
    /// `<CARGO_MANIFEST_DIR>/.venv/lib/python3*/site-packages/rotel/rotel-agent`.
    pub fn agent_path() -> PathBuf {
        if let Some(path) = std::env::var_os("ROTEL_AGENT").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "ROTEL_AGENT is set to {} but no such file exists; unset it or run `scripts/test` \
                 (which provisions the collector via scripts/provision-collector)",
                path.display()
            );
            return path;
        }
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        find_agent_in_venv(&root.join(".venv")).unwrap_or_else(|| {
            panic!(
                "rotel-agent (the OpenTelemetry collector used by the end-to-end tests) was not \
                 found: ROTEL_AGENT is not set and there is no \
                 {}/.venv/lib/python3*/site-packages/rotel/rotel-agent. Run `scripts/test` \
                 (or `scripts/provision-collector`) to install it (pip package rotel=={ROTEL_VERSION}).",
                root.display()
            )
        })
    }

    fn try_start(agent: &Path, extra_args: &[&str]) -> Result<Collector, StartError> {
        let (grpc_port, http_port) = free_port_pair()
            .map_err(|e| StartError::Fatal(format!("could not reserve two loopback ports: {e}")))?;
        let instance = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("rotel-agent-{}-{instance}-{grpc_port}", std::process::id());
        let tmp = std::env::temp_dir();
        let pid_file = tmp.join(format!("{tag}.pid"));
        let log_file = tmp.join(format!("{tag}.log"));

        let grpc = format!("127.0.0.1:{grpc_port}");
        let http = format!("127.0.0.1:{http_port}");
        let mut command = Command::new(agent);
        command
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc])
            .args(["--otlp-http-endpoint", &http])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log", "logs"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--disable-batching")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--log-file")
            .arg(&log_file)
            .args(extra_args)
            // The agent's own log lines also go to stdout; keep them free of
            // ANSI colours (the parser skips them either way).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| StartError::Fatal(format!("failed to spawn {}: {e}", agent.display())))?;

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(spawn_reader(pipe, Arc::clone(&stdout), "rotel-stdout"));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(spawn_reader(pipe, Arc::clone(&stderr), "rotel-stderr"));
        }
        let collector = Collector {
            child: Mutex::new(child),
            grpc_port,
            http_port,
            stdout,
            stderr,
            readers,
            pid_file,
            log_file,
        };
        collector.wait_until_ready()?;
        Ok(collector)
    }

    fn wait_until_ready(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addrs = [
            SocketAddr::from(([127, 0, 0, 1], self.grpc_port)),
            SocketAddr::from(([127, 0, 0, 1], self.http_port)),
        ];
        let pid = lock(&self.child).id();
        loop {
            let exited = lock(&self.child)
                .try_wait()
                .map_err(|e| StartError::Fatal(format!("could not poll rotel-agent: {e}")))?;
            if let Some(status) = exited {
                // The process is gone, so its pipes are closed: let the readers
                // drain them before reporting.
                self.join_readers_briefly();
                let stderr = self.stderr_output();
                let msg = format!(
                    "rotel-agent exited during startup ({status}).\n--- stderr ---\n{stderr}\n--- stdout ---\n{}",
                    truncate_tail(&self.raw_output(), MAX_OUTPUT_IN_PANIC)
                );
                return Err(if stderr.contains("Address already in use") {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Fatal(msg)
                });
            }
            let ours = [self.grpc_port, self.http_port]
                .iter()
                .all(|port| process_listens_on(pid, *port) != Some(false));
            if ours
                && addrs
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "rotel-agent did not accept connections on {} and {} within {READY_TIMEOUT:?}.\n\
                     --- stderr ---\n{}\n--- stdout ---\n{}",
                    addrs[0],
                    addrs[1],
                    self.stderr_output(),
                    truncate_tail(&self.raw_output(), MAX_OUTPUT_IN_PANIC)
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    fn join_readers_briefly(&self) {
        // Readers finish as soon as the pipes hit EOF, which happens right
        // after the process exits; poll for that for at most a second.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !self.readers.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(READY_POLL);
        }
    }

    /// `http://127.0.0.1:PORT` of the OTLP/gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:PORT` of the OTLP/HTTP receiver (append `/v1/traces`
    /// or `/v1/logs` if the exporter wants the full URL).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Whether the agent process is still alive.
    pub fn is_running(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }

    /// Everything received so far, parsed. The last span may still be
    /// incomplete if the agent is printing a batch right now; prefer
    /// [`Collector::wait_for_spans`].
    pub fn spans(&self) -> Vec<CollectedSpan> {
        parse(&self.raw_output()).spans
    }

    /// Every log record received so far, parsed (see [`Collector::spans`]).
    pub fn logs(&self) -> Vec<CollectedLog> {
        parse(&self.raw_output()).logs
    }

    /// Polls every 25 ms until `pred(&spans)` holds and the agent's output
    /// did not grow during the last poll interval (so a batch that is being
    /// printed is not returned half-parsed), or until `timeout`. Panics on
    /// timeout with the raw collector output.
    pub fn wait_for_spans(
        &self,
        timeout: Duration,
        pred: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Vec<CollectedSpan> {
        self.wait_for(
            "spans",
            timeout,
            |p| p.spans,
            pred,
            |spans| {
                format!(
                    "{} span(s) parsed: {:?}",
                    spans.len(),
                    spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
                )
            },
        )
    }

    /// Like [`Collector::wait_for_spans`] for log records.
    pub fn wait_for_logs(
        &self,
        timeout: Duration,
        pred: impl Fn(&[CollectedLog]) -> bool,
    ) -> Vec<CollectedLog> {
        self.wait_for(
            "log records",
            timeout,
            |p| p.logs,
            pred,
            |logs| {
                format!(
                    "{} log record(s) parsed: {:?}",
                    logs.len(),
                    logs.iter().map(|l| l.body.as_str()).collect::<Vec<_>>()
                )
            },
        )
    }

    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        select: impl Fn(Parsed) -> Vec<T>,
        pred: impl Fn(&[T]) -> bool,
        describe: impl Fn(&[T]) -> String,
    ) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut previous_len = None;
        loop {
            let raw = self.raw_output();
            let items = select(parse(&raw));
            let satisfied = pred(&items);
            if satisfied && previous_len == Some(raw.len()) {
                return items;
            }
            if Instant::now() >= deadline {
                if satisfied {
                    return items;
                }
                let state = if self.is_running() {
                    "still running".to_owned()
                } else {
                    "NOT running any more".to_owned()
                };
                panic!(
                    "timed out after {timeout:?} waiting for {what} at the collector (rotel-agent {state}, \
                     http {}, grpc {}); {}\n--- collector stderr ---\n{}\n--- raw collector output ---\n{}",
                    self.http_endpoint(),
                    self.grpc_endpoint(),
                    describe(&items),
                    truncate_tail(&self.stderr_output(), 4096),
                    truncate_tail(&raw, MAX_OUTPUT_IN_PANIC)
                );
            }
            previous_len = Some(raw.len());
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// The agent's stdout so far (its debug output plus its own log lines).
    pub fn raw_output(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stdout)).into_owned()
    }

    /// The agent's stderr so far.
    pub fn stderr_output(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        {
            let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
            // Errors mean the process already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(&self.log_file);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock must not hide the output.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn find_agent_in_venv(venv: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| {
            e.path()
                .join("site-packages")
                .join("rotel")
                .join("rotel-agent")
        })
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// Ports already handed to a collector by this process: the OS may hand a
/// port that was just released to the next `bind(0)`, so without this two
/// collectors started in parallel could be given the same port.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Two distinct free loopback ports never handed out before in this process.
fn free_port_pair() -> std::io::Result<(u16, u16)> {
    let mut reserved = lock(&RESERVED_PORTS);
    // Hold every probe listener until the end so the OS cannot repeat a port.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        held.push(listener);
        if reserved.insert(port) {
            ports.push(port);
        }
        if let [a, b] = ports[..] {
            return Ok((a, b));
        }
    }
    Err(std::io::Error::other("no unused loopback port found"))
}

/// Whether process `pid` holds a listening TCP socket on `port` (IPv4), read
/// from /proc; `None` where /proc is unavailable. This tells our agent apart
/// from any other process that might have grabbed the same port.
fn process_listens_on(pid: u32, port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, local_port) = fields.get(1)?.split_once(':')?;
            let listening = *fields.get(3)? == "0A";
            let inode = fields.get(9)?;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| format!("socket:[{inode}]"))
        })
        .collect();
    if sockets.is_empty() {
        return Some(false);
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str())),
    )
}

fn spawn_reader(
    mut source: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
    name: &str,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // Read whole chunks (not lines) so that a batch the agent wrote in
            // one write() lands in the buffer in one piece.
            let mut chunk = vec![0_u8; 256 * 1024];
            loop {
                match source.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => lock(&sink).extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .expect("spawning a thread to read rotel-agent's output")
}

/// The last `max` bytes of `s` (on a char boundary), with a note if cut.
fn truncate_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[... first {start} bytes omitted ...]\n{}", &s[start..])
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Everything parsed out of the agent's output.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub spans: Vec<CollectedSpan>,
    pub logs: Vec<CollectedLog>,
}

/// Parses the agent's stdout. Only complete lines are considered (a trailing
/// partial line is ignored); the agent's own log lines are skipped. Metrics
/// sections are skipped.
pub fn parse(output: &str) -> Parsed {
    let complete = match output.rfind('\n') {
        Some(i) => &output[..=i],
        None => "",
    };
    let mut parser = Parser::default();
    for line in complete.lines() {
        parser.line(line.strip_suffix('\r').unwrap_or(line));
    }
    parser.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Section {
    #[default]
    None,
    Spans,
    Logs,
    Other,
}

/// Which `-> key: value` lines come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Ctx {
    #[default]
    None,
    ResourceAttrs,
    ScopeAttrs,
    SpanAttrs,
    Events,
    EventHeader,
    EventAttrs,
    Links,
    LinkHeader,
    LinkAttrs,
    LogAttrs,
}

/// Where the value of the most recent line went, so continuation lines of a
/// multi-line value can be appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Scratch,
    ResourceAttr(String),
    SpanName,
    SpanStatusMessage,
    SpanAttr(String),
    EventName,
    EventAttr(String),
    LinkAttr(String),
    LogBody,
    LogAttr(String),
}

#[derive(Default)]
struct Parser {
    section: Section,
    ctx: Ctx,
    /// Raw (still wrapped) resource attribute values of the current resource.
    resource: BTreeMap<String, String>,
    scope_name: String,
    scope_version: String,
    /// Current span / log record; attribute values are raw until finished.
    span: Option<CollectedSpan>,
    log: Option<CollectedLog>,
    last: Option<Slot>,
    scratch: String,
    /// Whether `scratch` holds an attribute value (`Str(...)` etc.).
    scratch_wrapped: bool,
    out: Parsed,
}

const SPAN_FIELDS: &[&str] = &[
    "Trace ID",
    "Parent ID",
    "ID",
    "Name",
    "Kind",
    "Start time",
    "End time",
    "Status code",
    "Status message",
    "Flags",
    "TraceState",
    "Trace state",
    "Link ID",
    "DroppedAttributesCount",
];
const LOG_TOP_FIELDS: &[&str] = &[
    "ObservedTimestamp",
    "Timestamp",
    "SeverityText",
    "SeverityNumber",
    "EventName",
    "Body",
    "Flags",
    "DroppedAttributesCount",
];
const VALUE_TYPES: &[&str] = &["Str", "Int", "Bool", "Double", "Slice", "Map", "Bytes"];

impl Parser {
    fn line(&mut self, line: &str) {
        // A wrapped value (`Str(...`) that has not been closed yet must
        // continue on this line: the agent always ends it with ')'.
        if self.last_value_is_open() {
            self.append_continuation(line);
            return;
        }
        if is_agent_log_line(line) {
            return;
        }
        if self.structural(line) {
            return;
        }
        // Anything else continues the previous value (e.g. a multi-line
        // status message, or a string that contained ")\n").
        self.append_continuation(line);
    }

    fn last_value_is_open(&mut self) -> bool {
        let Some(slot) = self.last.clone() else {
            return false;
        };
        let holds_wrapped_value = match slot {
            Slot::SpanName | Slot::SpanStatusMessage | Slot::EventName => false,
            Slot::Scratch => self.scratch_wrapped,
            _ => true,
        };
        if !holds_wrapped_value {
            return false;
        }
        match self.slot_mut(&slot) {
            Some(v) => is_wrapped_start(v) && !v.ends_with(')'),
            None => false,
        }
    }

    fn append_continuation(&mut self, line: &str) {
        if let Some(slot) = self.last.clone() {
            if let Some(v) = self.slot_mut(&slot) {
                v.push('\n');
                v.push_str(line);
            }
        }
    }

    fn slot_mut(&mut self, slot: &Slot) -> Option<&mut String> {
        match slot {
            Slot::Scratch => Some(&mut self.scratch),
            Slot::ResourceAttr(k) => self.resource.get_mut(k),
            Slot::SpanName => self.span.as_mut().map(|s| &mut s.name),
            Slot::SpanStatusMessage => self.span.as_mut().map(|s| &mut s.status_message),
            Slot::SpanAttr(k) => self.span.as_mut()?.attributes.get_mut(k),
            Slot::EventName => self.span.as_mut()?.events.last_mut().map(|e| &mut e.name),
            Slot::EventAttr(k) => self.span.as_mut()?.events.last_mut()?.attributes.get_mut(k),
            Slot::LinkAttr(k) => self.span.as_mut()?.links.last_mut()?.attributes.get_mut(k),
            Slot::LogBody => self.log.as_mut().map(|l| &mut l.body),
            Slot::LogAttr(k) => self.log.as_mut()?.attributes.get_mut(k),
        }
    }

    /// Records a value nobody asked for (so that its continuation lines, if
    /// any, are swallowed too).
    fn scratch(&mut self, value: &str) {
        value.clone_into(&mut self.scratch);
        self.scratch_wrapped = false;
        self.last = Some(Slot::Scratch);
    }

    /// Handles a structural line; returns false if `line` is not one.
    fn structural(&mut self, line: &str) -> bool {
        // Resource / scope headers (any signal).
        if let Some(section) = resource_header(line) {
            self.flush();
            self.section = section;
            self.resource.clear();
            self.scope_name.clear();
            self.scope_version.clear();
            self.ctx = Ctx::None;
            self.last = None;
            return true;
        }
        if line.starts_with("Resource SchemaURL:") {
            self.ctx = Ctx::None;
            self.scratch("");
            return true;
        }
        if line == "Resource attributes:" {
            self.ctx = Ctx::ResourceAttrs;
            self.last = None;
            return true;
        }
        if is_scope_header(line) {
            self.flush();
            self.scope_name.clear();
            self.scope_version.clear();
            self.ctx = Ctx::None;
            self.last = None;
            return true;
        }
        if line.starts_with("Scope") && line.contains("SchemaURL:") {
            self.scratch("");
            return true;
        }
        if line == "InstrumentationScope attributes:" {
            self.ctx = Ctx::ScopeAttrs;
            self.last = None;
            return true;
        }
        if let Some(rest) = line.strip_prefix("InstrumentationScope ") {
            let (name, version) = rest.rsplit_once(' ').unwrap_or((rest, ""));
            name.clone_into(&mut self.scope_name);
            version.clone_into(&mut self.scope_version);
            self.ctx = Ctx::None;
            self.last = None;
            return true;
        }
        if let Some((indent, rest)) = arrow_line(line) {
            self.arrow(indent, rest);
            return true;
        }
        match self.section {
            Section::Spans => self.span_line(line),
            Section::Logs => self.log_line(line),
            // Metrics and anything unknown: swallow indented/keyed lines so
            // they never attach to a span.
            Section::Other | Section::None => {
                self.scratch("");
                true
            }
        }
    }

    fn span_line(&mut self, line: &str) -> bool {
        if is_numbered(line, "Span") {
            self.flush();
            self.span = Some(CollectedSpan {
                status_code: "Unset".to_owned(),
                ..CollectedSpan::default()
            });
            self.ctx = Ctx::None;
            self.last = None;
            return true;
        }
        if self.span.is_none() {
            return false;
        }
        match line {
            "Attributes:" => {
                self.ctx = Ctx::SpanAttrs;
                self.last = None;
                return true;
            }
            "Events:" => {
                self.ctx = Ctx::Events;
                self.last = None;
                return true;
            }
            "Links:" => {
                self.ctx = Ctx::Links;
                self.last = None;
                return true;
            }
            _ => {}
        }
        if is_numbered(line, "SpanEvent") {
            if let Some(span) = self.span.as_mut() {
                span.events.push(CollectedEvent::default());
            }
            self.ctx = Ctx::EventHeader;
            self.last = None;
            return true;
        }
        if is_numbered(line, "SpanLink") {
            if let Some(span) = self.span.as_mut() {
                span.links.push(CollectedLink::default());
            }
            self.ctx = Ctx::LinkHeader;
            self.last = None;
            return true;
        }
        let Some((key, value)) = field_line(line, SPAN_FIELDS) else {
            return false;
        };
        self.ctx = Ctx::None;
        let Some(span) = self.span.as_mut() else {
            return false;
        };
        let mut slot = Slot::Scratch;
        match key {
            "Trace ID" => span.trace_id = normalise_id(value),
            "Parent ID" => span.parent_id = normalise_id(value),
            "ID" => span.span_id = normalise_id(value),
            "Name" => {
                value.clone_into(&mut span.name);
                slot = Slot::SpanName;
            }
            "Kind" => span.kind = normalise_enum(value, "SPAN_KIND_"),
            "Start time" => span.start_time_unix_nano = value.trim().parse().unwrap_or(0),
            "End time" => span.end_time_unix_nano = value.trim().parse().unwrap_or(0),
            "Status code" => span.status_code = normalise_enum(value, "STATUS_CODE_"),
            "Status message" => {
                value.clone_into(&mut span.status_message);
                slot = Slot::SpanStatusMessage;
            }
            _ => {}
        }
        if slot == Slot::Scratch {
            self.scratch(value);
        } else {
            self.last = Some(slot);
        }
        true
    }

    fn log_line(&mut self, line: &str) -> bool {
        if is_numbered(line, "LogRecord") {
            self.flush();
            self.log = Some(CollectedLog::default());
            self.ctx = Ctx::None;
            self.last = None;
            return true;
        }
        if self.log.is_none() {
            return false;
        }
        if line == "Attributes:" {
            self.ctx = Ctx::LogAttrs;
            self.last = None;
            return true;
        }
        let Some((key, value)) =
            field_line(line, LOG_TOP_FIELDS).or_else(|| field_line(line, &["Trace ID", "Span ID"]))
        else {
            return false;
        };
        self.ctx = Ctx::None;
        let Some(log) = self.log.as_mut() else {
            return false;
        };
        match key {
            "Body" => {
                value.clone_into(&mut log.body);
                self.last = Some(Slot::LogBody);
                return true;
            }
            "SeverityText" => value.clone_into(&mut log.severity_text),
            "SeverityNumber" => log.severity_number = parse_severity_number(value),
            "EventName" => value.clone_into(&mut log.event_name),
            "Timestamp" => log.timestamp_unix_nano = value.trim().parse().unwrap_or(0),
            "Trace ID" => log.trace_id = normalise_id(value),
            "Span ID" => log.span_id = normalise_id(value),
            _ => {}
        }
        self.scratch(value);
        true
    }

    /// `     -> key: value` (indent 5) or `          -> key: value` (indent 10).
    fn arrow(&mut self, indent: usize, rest: &str) {
        let (key, value) = split_key_value(rest);
        let key = key.to_owned();
        // "-> Attributes::" opens the attribute list of an event or link.
        if indent <= 5 && (rest == "Attributes::" || rest == "Attributes:") {
            self.ctx = match self.ctx {
                Ctx::EventHeader | Ctx::EventAttrs => Ctx::EventAttrs,
                Ctx::LinkHeader | Ctx::LinkAttrs => Ctx::LinkAttrs,
                other => other,
            };
            self.last = None;
            return;
        }
        let value = value.to_owned();
        let slot = if indent <= 5 {
            match self.ctx {
                Ctx::ResourceAttrs => {
                    self.resource.insert(key.clone(), value);
                    Some(Slot::ResourceAttr(key))
                }
                Ctx::SpanAttrs => self.span.as_mut().map(|s| {
                    s.attributes.insert(key.clone(), value);
                    Slot::SpanAttr(key)
                }),
                Ctx::LogAttrs => self.log.as_mut().map(|l| {
                    l.attributes.insert(key.clone(), value);
                    Slot::LogAttr(key)
                }),
                Ctx::EventHeader | Ctx::EventAttrs => {
                    let event = self.span.as_mut().and_then(|s| s.events.last_mut());
                    match (event, key.as_str()) {
                        (Some(e), "Name") => {
                            e.name = value;
                            Some(Slot::EventName)
                        }
                        (Some(e), "Timestamp") => {
                            e.timestamp_unix_nano = value.trim().parse().unwrap_or(0);
                            None
                        }
                        _ => None,
                    }
                }
                Ctx::LinkHeader | Ctx::LinkAttrs => {
                    if let Some(l) = self.span.as_mut().and_then(|s| s.links.last_mut()) {
                        match key.as_str() {
                            "Trace ID" => l.trace_id = normalise_id(&value),
                            "ID" | "Span ID" => l.span_id = normalise_id(&value),
                            "TraceState" => l.trace_state = value,
                            _ => {}
                        }
                    }
                    None
                }
                Ctx::None | Ctx::ScopeAttrs | Ctx::Events | Ctx::Links => None,
            }
        } else {
            match self.ctx {
                Ctx::EventAttrs => self
                    .span
                    .as_mut()
                    .and_then(|s| s.events.last_mut())
                    .map(|e| {
                        e.attributes.insert(key.clone(), value);
                        Slot::EventAttr(key)
                    }),
                Ctx::LinkAttrs => self
                    .span
                    .as_mut()
                    .and_then(|s| s.links.last_mut())
                    .map(|l| {
                        l.attributes.insert(key.clone(), value);
                        Slot::LinkAttr(key)
                    }),
                _ => None,
            }
        };
        match slot {
            Some(slot) => self.last = Some(slot),
            None => {
                // Keep the raw text so a multi-line value still gets swallowed.
                let (_, raw) = split_key_value(rest);
                self.scratch(raw);
                self.scratch_wrapped = true;
            }
        }
    }

    /// Finishes the current span or log record.
    fn flush(&mut self) {
        self.last = None;
        let resource: BTreeMap<String, String> = self
            .resource
            .iter()
            .map(|(k, v)| (k.clone(), unwrap_value(v)))
            .collect();
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        if let Some(mut span) = self.span.take() {
            span.service_name.clone_from(&service_name);
            span.resource.clone_from(&resource);
            span.scope_name.clone_from(&self.scope_name);
            span.scope_version.clone_from(&self.scope_version);
            unwrap_all(&mut span.attributes);
            for event in &mut span.events {
                unwrap_all(&mut event.attributes);
            }
            for link in &mut span.links {
                unwrap_all(&mut link.attributes);
            }
            self.out.spans.push(span);
        }
        if let Some(mut log) = self.log.take() {
            log.service_name = service_name;
            log.resource = resource;
            log.scope_name.clone_from(&self.scope_name);
            log.scope_version.clone_from(&self.scope_version);
            log.body = unwrap_value(&log.body);
            unwrap_all(&mut log.attributes);
            self.out.logs.push(log);
        }
    }

    fn finish(mut self) -> Parsed {
        self.flush();
        self.out
    }
}

/// `ResourceSpans #0` / `ResourceLog #0` / `ResourceMetrics #0`.
fn resource_header(line: &str) -> Option<Section> {
    if is_numbered(line, "ResourceSpans") || is_numbered(line, "ResourceSpan") {
        Some(Section::Spans)
    } else if is_numbered(line, "ResourceLog") || is_numbered(line, "ResourceLogs") {
        Some(Section::Logs)
    } else if is_numbered(line, "ResourceMetrics") || is_numbered(line, "ResourceMetric") {
        Some(Section::Other)
    } else {
        None
    }
}

fn is_scope_header(line: &str) -> bool {
    ["ScopeSpans", "ScopeLogs", "ScopeMetrics"]
        .iter()
        .any(|p| is_numbered(line, p))
}

/// `<word> #<digits>` exactly.
fn is_numbered(line: &str, word: &str) -> bool {
    line.strip_prefix(word)
        .and_then(|r| r.strip_prefix(" #"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Lines the agent logs about itself, e.g.
/// `2026-11-23T09:18:50.635940Z  INFO Starting Rotel. ...` (with or without
/// ANSI colours).
fn is_agent_log_line(line: &str) -> bool {
    if line.starts_with('\u{1b}') {
        return true;
    }
    let b = line.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
}

/// `     -> rest` / `          -> rest`: (indent, rest).
fn arrow_line(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    let indent = line.len() - trimmed.len();
    if !(indent == 5 || indent == 10) {
        return None;
    }
    let rest = trimmed.strip_prefix("->")?;
    Some((indent, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `key: value` -> (key, value); `key:` -> (key, ""). If the key itself
/// contains ": ", the split before a typed value (`Str(`, `Int(`, ...) wins.
fn split_key_value(rest: &str) -> (&str, &str) {
    let typed = rest.match_indices(": ").find(|(i, _)| {
        let value = &rest[i + 2..];
        is_wrapped_start(value) || value == "Empty"
    });
    match typed.map(|(i, _)| i).or_else(|| rest.find(": ")) {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest.strip_suffix(':').unwrap_or(rest), ""),
    }
}

/// `    Key           : value` (rotel/Go layout, padded key) or an unindented
/// `Key: value`, with `Key` one of `known`.
fn field_line<'a>(line: &'a str, known: &[&'static str]) -> Option<(&'static str, &'a str)> {
    let body = match line.strip_prefix("    ") {
        Some(b) if !b.starts_with(' ') => b,
        Some(_) => return None,
        None => line,
    };
    let (key, value) = body.split_once(':')?;
    let key = key.trim_end();
    let canonical = known.iter().find(|k| **k == key)?;
    Some((canonical, value.strip_prefix(' ').unwrap_or(value)))
}

fn is_wrapped_start(v: &str) -> bool {
    VALUE_TYPES
        .iter()
        .any(|t| v.strip_prefix(t).is_some_and(|r| r.starts_with('(')))
}

/// `Str(x)` -> `x`, `Int(3)` -> `3`, `Empty` -> ``; anything else unchanged.
pub fn unwrap_value(raw: &str) -> String {
    if raw == "Empty" {
        return String::new();
    }
    for ty in VALUE_TYPES {
        if let Some(inner) = raw
            .strip_prefix(ty)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
        {
            return inner.to_owned();
        }
    }
    raw.to_owned()
}

fn unwrap_all(map: &mut BTreeMap<String, String>) {
    for v in map.values_mut() {
        *v = unwrap_value(v);
    }
}

/// Lowercase hex; an empty or all-zero id becomes "".
fn normalise_id(raw: &str) -> String {
    let id = raw.trim().to_ascii_lowercase();
    if id.bytes().all(|b| b == b'0') {
        String::new()
    } else {
        id
    }
}

/// `SPAN_KIND_SERVER` / `Server` -> `Server`; `STATUS_CODE_OK` / `Ok` -> `Ok`.
fn normalise_enum(raw: &str, prefix: &str) -> String {
    let s = raw.trim();
    let s = s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase();
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `SEVERITY_NUMBER_WARN(13)` / `Warn(13)` / `13` -> 13; otherwise 0.
fn parse_severity_number(raw: &str) -> i32 {
    let raw = raw.trim();
    let inner = match (raw.rfind('('), raw.ends_with(')')) {
        (Some(open), true) => &raw[open + 1..raw.len() - 1],
        _ => raw,
    };
    inner.parse().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of rotel-agent 0.0.1-alpha10 (`rotel==0.0.1a15`): spans and
    /// logs sent by the Python OpenTelemetry SDK 1.45.2 over OTLP/HTTP and
    /// gRPC, plus a log record posted as OTLP/JSON.
    const SAMPLE: &str = r##"
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> telemetry.sdk.language: Str(python)
     -> telemetry.sdk.name: Str(opentelemetry)
     -> telemetry.sdk.version: Str(1.45.2)
     -> service.instance.id: Str(ba58b21c-cfcf-42d5-bdc2-629673195de7)
     -> service.name: Str(svc-alpha)
     -> deployment.environment: Str(test env: one)
     -> svc.count: Int(3)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope scope.one 1.2.3
Span #0
    Trace ID       : 1b872f27c733c034ceac26fb61afac48
    Parent ID      : 854bf21486793557
    ID             : dcd4a2fa3952699e
    Name           : db query
    Kind           : SPAN_KIND_CLIENT
Start time: 1795425543740740681
End time: 1795425543740844746
    Status code    : STATUS_CODE_UNSET
    Status message : 
Attributes:
     -> db.system: Str(postgresql)
     -> db.statement: Str(SELECT * FROM t WHERE a = 'x y: z')
Events:
SpanEvent #0
     -> Name: cache miss
     -> Timestamp: 1795425543740803359
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> cache.key: Str(user:42)
          -> attempt: Int(2)
SpanEvent #1
     -> Name: plain event
     -> Timestamp: 1795425543740824498
     -> DroppedAttributesCount: 0
Span #1
    Trace ID       : 1b872f27c733c034ceac26fb61afac48
    Parent ID      : 854bf21486793557
    ID             : 022a287e5f56b750
    Name           : failing
    Kind           : SPAN_KIND_INTERNAL
Start time: 1795425543740994507
End time: 1795425543742542281
    Status code    : STATUS_CODE_ERROR
    Status message : it broke: badly
Events:
SpanEvent #0
     -> Name: exception
     -> Timestamp: 1795425543742449827
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> exception.type: Str(ValueError)
          -> exception.message: Str(boom: bad value)
          -> exception.stacktrace: Str(Traceback (most recent call last):
  File "/tmp/otelsend/send.py", line 30, in <module>
    raise ValueError("boom: bad value")
ValueError: boom: bad value
)
          -> exception.escaped: Str(False)
Span #2
    Trace ID       : 1b872f27c733c034ceac26fb61afac48
    Parent ID      : 
    ID             : 854bf21486793557
    Name           : GET /users/{id}
    Kind           : SPAN_KIND_SERVER
Start time: 1795425543740564290
End time: 1795425543742607894
    Status code    : STATUS_CODE_UNSET
    Status message : 
Attributes:
     -> http.request.method: Str(GET)
     -> http.response.status_code: Int(200)
     -> url.path: Str(/users/42?x=a:b)
     -> flag: Bool(true)
     -> ratio: Double(0.5)
     -> tags: Slice(Str(a), Str(b))
ScopeSpans #1
ScopeSpans SchemaURL: 
InstrumentationScope scope.two 
Span #0
    Trace ID       : 87d0f2135b90e5dfffc8bebbd20f2f9f
    Parent ID      : 
    ID             : db1889308a9c221a
    Name           : producer span
    Kind           : SPAN_KIND_PRODUCER
Start time: 1795425543742954414
End time: 1795425543743021119
    Status code    : STATUS_CODE_OK
    Status message : 
Links:
SpanLink #0
     -> Trace ID: 1b872f27c733c034ceac26fb61afac48
     -> ID: 854bf21486793557
     -> TraceState: 
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> link.attr: Str(lv)
Span #1
    Trace ID       : 4eddf98fefe71ee39db5c19bc9db2bad
    Parent ID      : 
    ID             : b60ee240263f0edb
    Name           : consumer span
    Kind           : SPAN_KIND_CONSUMER
Start time: 1795425543743130194
End time: 1795425543743150632
    Status code    : STATUS_CODE_UNSET
    Status message : 
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> telemetry.sdk.language: Str(python)
     -> telemetry.sdk.name: Str(opentelemetry)
     -> telemetry.sdk.version: Str(1.45.2)
     -> service.instance.id: Str(ba58b21c-cfcf-42d5-bdc2-629673195de7)
     -> service.name: Str(svc-beta)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope scope.beta 
Span #0
    Trace ID       : 98aa63e09b9bb7aea15c9f604b727c1a
    Parent ID      : 
    ID             : 140481bbe3287b0f
    Name           : beta root
    Kind           : SPAN_KIND_INTERNAL
Start time: 1795425543753760716
End time: 1795425543753795471
    Status code    : STATUS_CODE_UNSET
    Status message : 
Attributes:
     -> empty: Str()
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> telemetry.sdk.language: Str(python)
     -> telemetry.sdk.name: Str(opentelemetry)
     -> telemetry.sdk.version: Str(1.45.2)
     -> service.instance.id: Str(37130870-e7ba-4db1-a626-c45d26d6e0cc)
     -> service.name: Str(svc-logs)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope t 
Span #0
    Trace ID       : ce3ee98f1aaede17cd60e99e3b8127eb
    Parent ID      : 
    ID             : 4bac6a6f740e7d1e
    Name           : logging span
    Kind           : SPAN_KIND_INTERNAL
Start time: 1795425567071380069
End time: 1795425567071822239
    Status code    : STATUS_CODE_UNSET
    Status message : 
ResourceLog #0
Resource SchemaURL: 
Resource attributes:
     -> telemetry.sdk.language: Str(python)
     -> telemetry.sdk.name: Str(opentelemetry)
     -> telemetry.sdk.version: Str(1.45.2)
     -> service.instance.id: Str(37130870-e7ba-4db1-a626-c45d26d6e0cc)
     -> service.name: Str(svc-logs)
ScopeLogs #0
ScopeLogs SchemaURL: 
InstrumentationScope mylogger 
LogRecord #0
ObservedTimestamp: 1795425567071611804
Timestamp: 1795425567071459840
SeverityText: WARN
SeverityNumber: SEVERITY_NUMBER_WARN(13)
Body: Str(hello world: with colon)
Attributes:
     -> user.id: Str(u-1)
     -> n: Int(5)
     -> code.file.path: Str(/tmp/otelsend/logs.py)
     -> code.function.name: Str(<module>)
     -> code.line.number: Int(21)
    Trace ID       : ce3ee98f1aaede17cd60e99e3b8127eb
    Span ID        : 4bac6a6f740e7d1e
Flags: 3
LogRecord #1
ObservedTimestamp: 1795425567071932646
Timestamp: 1795425567071888128
SeverityText: ERROR
SeverityNumber: SEVERITY_NUMBER_ERROR(17)
Body: Str(outside span
second line)
Attributes:
     -> code.file.path: Str(/tmp/otelsend/logs.py)
     -> code.function.name: Str(<module>)
     -> code.line.number: Int(22)
    Trace ID       : 
    Span ID        : 
Flags: 0
ResourceLog #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(json-svc)
ScopeLogs #0
ScopeLogs SchemaURL: 
InstrumentationScope selftest 
LogRecord #0
ObservedTimestamp: 0
Timestamp: 1700000000000000000
SeverityText: ERROR
SeverityNumber: SEVERITY_NUMBER_ERROR(17)
EventName: my.event
Body: Str(multi
line: body)
Attributes:
     -> a: Bool(true)
    Trace ID       : 0af7651916cd43dd8448eb211c80319c
    Span ID        : b7ad6b7169203331
Flags: 0
"##;

    fn sample() -> Parsed {
        // Prepend an agent log line exactly as it looks with colours on.
        let text = format!(
            "\u{1b}[2m2026-11-23T09:18:50.635940Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Starting Rotel. \
             \u{1b}[3mgrpc_endpoint\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"127.0.0.1:14317\"\n{SAMPLE}"
        );
        parse(&text)
    }

    #[test]
    fn parses_all_spans_with_resources_and_scopes() {
        let parsed = sample();
        let names: Vec<&str> = parsed.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db query",
                "failing",
                "GET /users/{id}",
                "producer span",
                "consumer span",
                "beta root",
                "logging span"
            ]
        );
        let root = span_named(&parsed.spans, "GET /users/{id}");
        assert_eq!(root.service_name, "svc-alpha");
        assert_eq!(
            root.resource_attr("deployment.environment"),
            Some("test env: one")
        );
        assert_eq!(root.resource_attr("svc.count"), Some("3"));
        assert_eq!(root.resource_attr("telemetry.sdk.language"), Some("python"));
        assert_eq!(root.scope_name, "scope.one");
        assert_eq!(root.scope_version, "1.2.3");
        assert_eq!(root.trace_id, "1b872f27c733c034ceac26fb61afac48");
        assert_eq!(root.span_id, "854bf21486793557");
        assert_eq!(root.parent_id, "");
        assert!(root.is_root());
        assert_eq!(root.kind, "Server");
        assert_eq!(root.status_code, "Unset");
        assert_eq!(root.status_message, "");
        assert_eq!(root.start_time_unix_nano, 1_795_425_543_740_564_290);
        assert_eq!(root.end_time_unix_nano, 1_795_425_543_742_607_894);
        assert_eq!(root.duration(), Some(Duration::from_nanos(2_043_604)));
        assert_eq!(root.attr("http.request.method"), Some("GET"));
        assert_eq!(root.attr("http.response.status_code"), Some("200"));
        assert_eq!(root.attr("url.path"), Some("/users/42?x=a:b"));
        assert_eq!(root.attr("flag"), Some("true"));
        assert_eq!(root.attr("ratio"), Some("0.5"));
        assert_eq!(root.attr("tags"), Some("Str(a), Str(b)"));
        assert!(root.events.is_empty());
        assert!(root.links.is_empty());

        let beta = span_named(&parsed.spans, "beta root");
        assert_eq!(beta.service_name, "svc-beta");
        assert_eq!(beta.resource_attr("deployment.environment"), None);
        assert_eq!(beta.scope_name, "scope.beta");
        assert_eq!(beta.scope_version, "");
        assert_eq!(beta.kind, "Internal");
        assert_eq!(beta.attr("empty"), Some(""));

        let logging = span_named(&parsed.spans, "logging span");
        assert_eq!(logging.service_name, "svc-logs");
        assert_eq!(logging.scope_name, "t");
        assert!(logging.attributes.is_empty());
    }

    #[test]
    fn parses_nesting_kinds_and_events() {
        let parsed = sample();
        let root = span_named(&parsed.spans, "GET /users/{id}");
        let db = span_named(&parsed.spans, "db query");
        assert_eq!(db.parent_id, root.span_id);
        assert_eq!(db.trace_id, root.trace_id);
        assert_eq!(db.kind, "Client");
        assert_eq!(
            db.attr("db.statement"),
            Some("SELECT * FROM t WHERE a = 'x y: z'")
        );
        assert_eq!(db.events.len(), 2);
        let miss = db.event("cache miss").expect("cache miss event");
        assert_eq!(miss.timestamp_unix_nano, 1_795_425_543_740_803_359);
        assert_eq!(miss.attr("cache.key"), Some("user:42"));
        assert_eq!(miss.attr("attempt"), Some("2"));
        let plain = db.event("plain event").expect("plain event");
        assert!(plain.attributes.is_empty());
        // Event attributes must not leak into the span's attributes.
        assert_eq!(db.attr("cache.key"), None);
        assert_eq!(db.attributes.len(), 2);

        let children: Vec<&str> = children_of(&parsed.spans, root)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(children, ["db query", "failing"]);

        assert_eq!(span_named(&parsed.spans, "producer span").kind, "Producer");
        assert_eq!(span_named(&parsed.spans, "consumer span").kind, "Consumer");
    }

    #[test]
    fn parses_error_status_and_multiline_exception() {
        let parsed = sample();
        let failing = span_named(&parsed.spans, "failing");
        assert_eq!(failing.kind, "Internal");
        assert_eq!(failing.status_code, "Error");
        assert_eq!(failing.status_message, "it broke: badly");
        let exc = failing.event("exception").expect("exception event");
        assert_eq!(exc.attr("exception.type"), Some("ValueError"));
        assert_eq!(exc.attr("exception.message"), Some("boom: bad value"));
        assert_eq!(exc.attr("exception.escaped"), Some("False"));
        let trace = exc.attr("exception.stacktrace").expect("stacktrace");
        assert!(
            trace.starts_with("Traceback (most recent call last):\n  File "),
            "{trace:?}"
        );
        assert!(
            trace.contains("\n    raise ValueError(\"boom: bad value\")\n"),
            "{trace:?}"
        );
        assert!(
            trace.ends_with("ValueError: boom: bad value\n"),
            "{trace:?}"
        );
        assert!(failing.attributes.is_empty());
    }

    #[test]
    fn parses_links_and_ok_status() {
        let parsed = sample();
        let producer = span_named(&parsed.spans, "producer span");
        assert_eq!(producer.status_code, "Ok");
        assert_eq!(producer.scope_name, "scope.two");
        assert_eq!(producer.links.len(), 1);
        let link = &producer.links[0];
        assert_eq!(link.trace_id, "1b872f27c733c034ceac26fb61afac48");
        assert_eq!(link.span_id, "854bf21486793557");
        assert_eq!(link.trace_state, "");
        assert_eq!(link.attr("link.attr"), Some("lv"));
        assert!(producer.attributes.is_empty());
    }

    #[test]
    fn parses_log_records() {
        let parsed = sample();
        assert_eq!(parsed.logs.len(), 3);
        let warn = &parsed.logs[0];
        assert_eq!(warn.service_name, "svc-logs");
        assert_eq!(warn.scope_name, "mylogger");
        assert_eq!(warn.body, "hello world: with colon");
        assert_eq!(warn.severity_text, "WARN");
        assert_eq!(warn.severity_number, 13);
        assert_eq!(warn.timestamp_unix_nano, 1_795_425_567_071_459_840);
        assert_eq!(warn.attr("user.id"), Some("u-1"));
        assert_eq!(warn.attr("n"), Some("5"));
        assert_eq!(warn.attr("code.function.name"), Some("<module>"));
        let span = span_named(&parsed.spans, "logging span");
        assert_eq!(warn.trace_id, span.trace_id);
        assert_eq!(warn.span_id, span.span_id);

        let err = &parsed.logs[1];
        assert_eq!(err.body, "outside span\nsecond line");
        assert_eq!(err.severity_text, "ERROR");
        assert_eq!(err.severity_number, 17);
        assert_eq!(err.trace_id, "");
        assert_eq!(err.span_id, "");
        assert_eq!(err.attr("code.line.number"), Some("22"));

        let json = &parsed.logs[2];
        assert_eq!(json.service_name, "json-svc");
        assert_eq!(json.event_name, "my.event");
        assert_eq!(json.body, "multi\nline: body");
        assert_eq!(json.attr("a"), Some("true"));
        assert_eq!(json.trace_id, "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn ignores_partial_trailing_line_and_zero_ids() {
        let text = "ResourceSpans #0\nResource attributes:\n     -> service.name: Str(s)\n\
                    ScopeSpans #0\nInstrumentationScope x \nSpan #0\n\
                    \x20   Trace ID       : 0AF7651916CD43DD8448EB211C80319C\n\
                    \x20   Parent ID      : 0000000000000000\n\
                    \x20   ID             : b7ad6b7169203331\n\
                    \x20   Name           : n\n\
                    Attributes:\n     -> a: Str(complete)\n     -> b: Str(incompl";
        let parsed = parse(text);
        assert_eq!(parsed.spans.len(), 1);
        let s = &parsed.spans[0];
        assert_eq!(s.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s.parent_id, "");
        assert_eq!(s.attr("a"), Some("complete"));
        assert_eq!(s.attr("b"), None);
    }

    #[test]
    fn accepts_go_collector_layout() {
        let text = "ResourceSpans #0\nResource SchemaURL:\nResource attributes:\n\
                    \x20    -> service.name: Str(go svc)\n\
                    ScopeSpans #0\nScopeSpans SchemaURL:\nInstrumentationScope cinema.library 1.0.0\n\
                    InstrumentationScope attributes:\n     -> scope.attr: Str(x)\n\
                    Span #0\n\
                    \x20   Trace ID       : 97fb4e5b13400b5689e3306da7cff077\n\
                    \x20   Parent ID      :\n\
                    \x20   ID             : 413358465e5b4f15\n\
                    \x20   Name           : /movie-validator\n\
                    \x20   Kind           : Server\n\
                    \x20   Start time     : 2025-03-06 11:49:00.431915 +0000 UTC\n\
                    \x20   End time       : 2025-03-06 11:49:01.431915 +0000 UTC\n\
                    \x20   Status code    : Ok\n\
                    \x20   Status message : Success\n\
                    Attributes:\n     -> user.name: Str(George Lucas)\n     -> payment.amount: Double(87.01)\n\
                    \x20       {\"otelcol.component.id\": \"debug\"}\n";
        let parsed = parse(text);
        assert_eq!(parsed.spans.len(), 1);
        let s = &parsed.spans[0];
        assert_eq!(s.service_name, "go svc");
        assert_eq!(s.kind, "Server");
        assert_eq!(s.status_code, "Ok");
        assert_eq!(s.status_message, "Success");
        assert_eq!(s.parent_id, "");
        assert_eq!(s.start_time_unix_nano, 0);
        assert_eq!(s.attr("user.name"), Some("George Lucas"));
        assert_eq!(s.attr("scope.attr"), None);
        assert_eq!(s.resource_attr("scope.attr"), None);
    }

    #[test]
    fn odd_keys_and_values() {
        let text = "ResourceSpans #0\nResource attributes:\n     -> service.name: Str(s)\n\
                    ScopeSpans #0\nInstrumentationScope x \nSpan #0\n\
                    \x20   Trace ID       : 0af7651916cd43dd8448eb211c80319c\n\
                    \x20   Parent ID      : \n\
                    \x20   ID             : b7ad6b7169203331\n\
                    \x20   Name           : Str(not a value\n\
                    \x20   Kind           : SPAN_KIND_SERVER\n\
                    \x20   Status code    : STATUS_CODE_ERROR\n\
                    \x20   Status message : first line\nsecond line\n\
                    Attributes:\n     -> weird: key: Str(v: w)\n     -> closes: Str(a)\nb)\n\
                    \x20    -> none: Empty\n     -> list: Slice(Str(a), Int(1))\n";
        let parsed = parse(text);
        assert_eq!(parsed.spans.len(), 1);
        let s = &parsed.spans[0];
        assert_eq!(s.name, "Str(not a value");
        assert_eq!(s.kind, "Server");
        assert_eq!(s.status_code, "Error");
        assert_eq!(s.status_message, "first line\nsecond line");
        assert_eq!(s.attr("weird: key"), Some("v: w"));
        assert_eq!(s.attr("closes"), Some("a)\nb"));
        assert_eq!(s.attr("none"), Some(""));
        assert_eq!(s.attr("list"), Some("Str(a), Int(1)"));
    }

    #[test]
    fn normalisers() {
        assert_eq!(normalise_enum("SPAN_KIND_SERVER", "SPAN_KIND_"), "Server");
        assert_eq!(
            normalise_enum("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_"),
            "Unspecified"
        );
        assert_eq!(normalise_enum("Client", "SPAN_KIND_"), "Client");
        assert_eq!(normalise_enum("STATUS_CODE_ERROR", "STATUS_CODE_"), "Error");
        assert_eq!(normalise_enum("Unset", "STATUS_CODE_"), "Unset");
        assert_eq!(unwrap_value("Str(a (b))"), "a (b)");
        assert_eq!(unwrap_value("Int(-4)"), "-4");
        assert_eq!(unwrap_value("Empty"), "");
        assert_eq!(unwrap_value("Map(k:Str(v))"), "k:Str(v)");
        assert_eq!(parse_severity_number("SEVERITY_NUMBER_WARN(13)"), 13);
        assert_eq!(parse_severity_number("SEVERITY_NUMBER_UNSPECIFIED(0)"), 0);
    }
}

/// Live tests: start a real rotel-agent and post OTLP/JSON to it with a
/// minimal std-only HTTP/1.1 client.
#[cfg(test)]
mod self_test {
    use super::*;
    use std::io::Write;

    const WAIT: Duration = Duration::from_secs(10);

    /// POSTs `body` as OTLP/JSON to `path` on the collector's HTTP port;
    /// returns the status line.
    fn post_json(collector: &Collector, path: &str, body: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], collector.http_port()));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("connecting to the collector's OTLP/HTTP port");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("sending the OTLP/JSON request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("reading the collector's response");
        response.lines().next().unwrap_or_default().to_owned()
    }

    fn str_attr(key: &str, value: &str) -> String {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!(r#"{{"key":"{key}","value":{{"stringValue":"{escaped}"}}}}"#)
    }

    fn int_attr(key: &str, value: i64) -> String {
        format!(r#"{{"key":"{key}","value":{{"intValue":"{value}"}}}}"#)
    }

    const TRACE_A: &str = "0af7651916cd43dd8448eb211c80319c";
    const TRACE_B: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn traces_body() -> String {
        let root = format!(
            r#"{{"traceId":"{TRACE_A}","spanId":"b7ad6b7169203331","name":"GET /items/{{id}}","kind":2,
            "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000",
            "attributes":[{},{}],"status":{{"code":2,"message":"upstream failed: 502"}}}}"#,
            str_attr("http.request.method", "GET"),
            int_attr("http.response.status_code", 502)
        );
        let child = format!(
            r#"{{"traceId":"{TRACE_A}","spanId":"00f067aa0ba902b7","parentSpanId":"b7ad6b7169203331",
            "name":"call upstream","kind":3,
            "startTimeUnixNano":"1700000000010000000","endTimeUnixNano":"1700000000200000000",
            "attributes":[{}],
            "events":[{{"timeUnixNano":"1700000000100000000","name":"exception","attributes":[{},{}]}}],
            "status":{{"code":2}}}}"#,
            str_attr("server.address", "upstream.internal"),
            str_attr("exception.type", "io::Error"),
            str_attr("exception.stacktrace", "line one\n  at two (x)\nthree)")
        );
        let other = format!(
            r#"{{"traceId":"{TRACE_B}","spanId":"1111111111111111","name":"consume","kind":5,
            "startTimeUnixNano":"1700000001000000000","endTimeUnixNano":"1700000001000001000",
            "links":[{{"traceId":"{TRACE_A}","spanId":"b7ad6b7169203331","attributes":[{}]}}],
            "status":{{"code":1}}}}"#,
            str_attr("link.kind", "follows")
        );
        format!(
            r#"{{"resourceSpans":[
              {{"resource":{{"attributes":[{},{}]}},
                "scopeSpans":[{{"scope":{{"name":"service-tracing","version":"0.1.0"}},"spans":[{child},{root}]}}]}},
              {{"resource":{{"attributes":[{}]}},
                "scopeSpans":[{{"scope":{{"name":"worker"}},"spans":[{other}]}}]}}
            ]}}"#,
            str_attr("service.name", "svc one"),
            str_attr("deployment.environment", "e2e: test"),
            str_attr("service.name", "svc-two")
        )
    }

    #[test]
    fn live_roundtrip_traces_and_logs() {
        let collector = Collector::start();
        assert!(collector.is_running());
        assert!(collector.grpc_endpoint().starts_with("http://127.0.0.1:"));
        assert_ne!(collector.grpc_endpoint(), collector.http_endpoint());

        let status = post_json(&collector, "/v1/traces", &traces_body());
        assert!(status.contains(" 200 "), "unexpected response: {status}");

        let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 3);
        assert_eq!(spans.len(), 3, "{spans:#?}");
        let root = span_named(&spans, "GET /items/{id}");
        assert_eq!(root.service_name, "svc one");
        assert_eq!(
            root.resource_attr("deployment.environment"),
            Some("e2e: test")
        );
        assert_eq!(root.scope_name, "service-tracing");
        assert_eq!(root.scope_version, "0.1.0");
        assert_eq!(root.trace_id, TRACE_A);
        assert_eq!(root.parent_id, "");
        assert_eq!(root.kind, "Server");
        assert_eq!(root.status_code, "Error");
        assert_eq!(root.status_message, "upstream failed: 502");
        assert_eq!(root.attr("http.request.method"), Some("GET"));
        assert_eq!(root.attr("http.response.status_code"), Some("502"));
        assert_eq!(root.duration(), Some(Duration::from_millis(250)));

        let child = span_named(&spans, "call upstream");
        assert_eq!(child.parent_id, root.span_id);
        assert_eq!(child.kind, "Client");
        assert_eq!(child.status_code, "Error");
        assert_eq!(child.status_message, "");
        let exc = child.event("exception").expect("exception event");
        assert_eq!(exc.attr("exception.type"), Some("io::Error"));
        assert_eq!(
            exc.attr("exception.stacktrace"),
            Some("line one\n  at two (x)\nthree)")
        );
        assert_eq!(children_of(&spans, root).len(), 1);

        let consume = span_named(&spans, "consume");
        assert_eq!(consume.service_name, "svc-two");
        assert_eq!(consume.kind, "Consumer");
        assert_eq!(consume.status_code, "Ok");
        assert_eq!(consume.links.len(), 1);
        assert_eq!(consume.links[0].trace_id, TRACE_A);
        assert_eq!(consume.links[0].span_id, root.span_id);
        assert_eq!(consume.links[0].attr("link.kind"), Some("follows"));

        let logs_body = format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{}]}},"scopeLogs":[{{"scope":{{"name":"app"}},
            "logRecords":[{{"timeUnixNano":"1700000000150000000","severityNumber":13,"severityText":"WARN",
            "body":{{"stringValue":"retrying: attempt 2\nof 3"}},"attributes":[{}],
            "traceId":"{TRACE_A}","spanId":"00f067aa0ba902b7"}}]}}]}}]}}"#,
            str_attr("service.name", "svc one"),
            int_attr("attempt", 2)
        );
        let status = post_json(&collector, "/v1/logs", &logs_body);
        assert!(status.contains(" 200 "), "unexpected response: {status}");
        let logs = collector.wait_for_logs(WAIT, |l| !l.is_empty());
        assert_eq!(logs.len(), 1, "{logs:#?}");
        let log = &logs[0];
        assert_eq!(log.service_name, "svc one");
        assert_eq!(log.body, "retrying: attempt 2\nof 3");
        assert_eq!(log.severity_text, "WARN");
        assert_eq!(log.severity_number, 13);
        assert_eq!(log.attr("attempt"), Some("2"));
        assert_eq!(log.trace_id, TRACE_A);
        assert_eq!(log.span_id, child.span_id);
        // Spans are unaffected by the log section that followed them.
        assert_eq!(collector.spans().len(), 3);
    }

    #[test]
    fn live_large_batch_is_parsed_completely() {
        let collector = Collector::start();
        let filler = "x".repeat(300);
        let spans: Vec<String> = (0..400)
            .map(|i| {
                format!(
                    r#"{{"traceId":"{TRACE_B}","spanId":"{:016x}","name":"span {i}","kind":1,
                    "startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{},{}]}}"#,
                    i + 1,
                    int_attr("index", i),
                    str_attr("filler", &filler)
                )
            })
            .collect();
        let body = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"scope":{{"name":"bulk"}},"spans":[{}]}}]}}]}}"#,
            str_attr("service.name", "bulk"),
            spans.join(",")
        );
        let status = post_json(&collector, "/v1/traces", &body);
        assert!(status.contains(" 200 "), "unexpected response: {status}");
        let got = collector.wait_for_spans(WAIT, |s| s.len() >= 400);
        assert_eq!(got.len(), 400);
        for (i, span) in got.iter().enumerate() {
            assert_eq!(span.name, format!("span {i}"));
            assert_eq!(span.attr("index"), Some(i.to_string().as_str()));
            assert_eq!(span.attr("filler"), Some(filler.as_str()));
            assert_eq!(span.kind, "Internal");
        }
    }

    #[test]
    fn wait_for_spans_times_out_with_output() {
        let collector = Collector::start();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            collector.wait_for_spans(Duration::from_millis(100), |s| !s.is_empty())
        }));
        let payload = result.expect_err("waiting for spans that never come must panic");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("timed out"), "{message}");
        assert!(message.contains("Starting Rotel"), "{message}");
    }

    #[test]
    fn drop_kills_the_agent() {
        let collector = Collector::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], collector.http_port()));
        drop(collector);
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "the agent still listens after drop"
        );
    }
}

// ---------------------------------------------------------------------------
// Metrics

impl Collector {
    /// Like [`Collector::start`], also printing every received metric
    /// (`--debug-log metrics`); read them with [`parse_metrics`] over
    /// [`Collector::raw_output`].
    pub fn start_with_metrics() -> Collector {
        Self::start_with_args(&["--debug-log", "metrics"])
    }
}

/// One data point the collector printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectedMetricPoint {
    pub service_name: String,
    pub scope_name: String,
    /// The metric's name, description, unit and data type (`Histogram`, `Sum`, `Gauge`).
    pub name: String,
    pub description: String,
    pub unit: String,
    pub data_type: String,
    /// Values unwrapped (`Str(x)` and `Int(3)` become `x` and `3`).
    pub attributes: BTreeMap<String, String>,
    /// A histogram point's count.
    pub count: Option<u64>,
    /// A sum's or gauge's value, as printed.
    pub value: Option<String>,
}

impl CollectedMetricPoint {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Reads the data points out of the agent's `--debug-log metrics` output (the
/// debug-exporter layout: `ResourceMetrics #`, `InstrumentationScope`, `Metric #` with a
/// `Descriptor:` of `-> Name:`, `-> Unit:`, `-> DataType:`, then `NumberDataPoints #` or
/// `HistogramDataPoints #` with `Data point attributes:`, `Value:` or `Count:`).
pub fn parse_metrics(output: &str) -> Vec<CollectedMetricPoint> {
    #[derive(PartialEq)]
    enum In {
        Resource,
        Descriptor,
        Point,
        Other,
    }
    let mut points = Vec::new();
    let mut service = String::new();
    let mut scope = String::new();
    let mut metric = CollectedMetricPoint::default();
    let mut current: Option<CollectedMetricPoint> = None;
    let mut section = In::Other;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceMetrics #") {
            points.extend(current.take());
            service.clear();
            section = In::Other;
        } else if trimmed == "Resource attributes:" {
            section = In::Resource;
        } else if let Some(rest) = trimmed.strip_prefix("InstrumentationScope ") {
            points.extend(current.take());
            scope = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            section = In::Other;
        } else if trimmed.starts_with("Metric #") {
            points.extend(current.take());
            metric = CollectedMetricPoint {
                service_name: service.clone(),
                scope_name: scope.clone(),
                ..CollectedMetricPoint::default()
            };
        } else if trimmed == "Descriptor:" {
            section = In::Descriptor;
        } else if trimmed.starts_with("NumberDataPoints #")
            || trimmed.starts_with("HistogramDataPoints #")
        {
            points.extend(current.replace(metric.clone()));
            section = In::Point;
        } else if let Some((key, value)) = trimmed.strip_prefix("-> ").and_then(|kv| {
            kv.split_once(": ")
                .or_else(|| kv.strip_suffix(':').map(|k| (k, "")))
        }) {
            match section {
                In::Resource if key == "service.name" => service = unwrap_value(value),
                In::Descriptor => match key {
                    "Name" => metric.name = value.to_owned(),
                    "Description" => metric.description = value.to_owned(),
                    "Unit" => metric.unit = value.to_owned(),
                    "DataType" => metric.data_type = value.to_owned(),
                    _ => {}
                },
                In::Point => {
                    if let Some(point) = current.as_mut() {
                        point.attributes.insert(key.to_owned(), unwrap_value(value));
                    }
                }
                _ => {}
            }
        } else if let (In::Point, Some(point)) = (&section, current.as_mut()) {
            if let Some(count) = trimmed.strip_prefix("Count: ") {
                point.count = count.trim().parse().ok();
            } else if let Some(value) = trimmed.strip_prefix("Value: ") {
                point.value = Some(value.trim().to_owned());
            }
        }
    }
    points.extend(current);
    points
}

#[cfg(test)]
mod metric_parse_tests {
    use super::*;

    #[test]
    fn metric_points_are_read_with_their_attributes() {
        let output = "ResourceMetrics #0\nResource attributes:\n     -> service.name: Str(svc)\n\
ScopeMetrics #0\nInstrumentationScope lib 1.0\nMetric #0\nDescriptor:\n     -> Name: h\n\
     -> Unit: s\n     -> DataType: Histogram\nHistogramDataPoints #0\nData point attributes:\n\
     -> http.route: Str(/a)\n     -> http.response.status_code: Int(200)\nCount: 3\n\
Buckets #0, Count: 3\nMetric #1\nDescriptor:\n     -> Name: c\n     -> Unit: \n\
     -> DataType: Sum\nNumberDataPoints #0\nValue: 5\n";
        let points = parse_metrics(output);
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!(points[0].service_name, "svc");
        assert_eq!(points[0].scope_name, "lib");
        assert_eq!(points[0].name, "h");
        assert_eq!(points[0].unit, "s");
        assert_eq!(points[0].count, Some(3));
        assert_eq!(points[0].attr("http.route"), Some("/a"));
        assert_eq!(points[0].attr("http.response.status_code"), Some("200"));
        assert_eq!(points[1].name, "c");
        assert_eq!(points[1].value.as_deref(), Some("5"));
    }
}
