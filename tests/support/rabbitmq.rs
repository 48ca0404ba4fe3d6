//! A real RabbitMQ broker for the messaging tests: a private node per test, on free loopback
//! ports, with everything it writes in a fresh directory, stopped (and the directory removed)
//! when dropped.
//!
//! Parallel test processes never share anything: each node has its own name
//! (`st-<pid>-<n>@localhost`), AMQP port, distribution port, and its own `epmd`, which this
//! module starts on a port of its own before the node (a node that finds no `epmd` starts a
//! shared daemon that outlives it). Ready when the AMQP port accepts a connection and answers
//! the protocol header with `connection.start`, polled with a deadline, never slept on.
//!
//! The start script is `$RABBITMQ_SERVER`, else `/usr/lib/rabbitmq/bin/rabbitmq-server`
//! (`scripts/provision-rabbitmq` installs the Debian package and prints it). That script runs
//! the node as the calling user; the `/usr/sbin` wrapper would switch to the `rabbitmq` user.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a node may take to accept AMQP connections (about 7 to 17 s on a busy machine).
const READY: Duration = Duration::from_secs(90);

static NODES: AtomicUsize = AtomicUsize::new(0);

/// A private RabbitMQ node; stopped when dropped.
pub struct RabbitMq {
    dir: PathBuf,
    port: u16,
    epmd: Child,
    server: Child,
}

impl RabbitMq {
    /// Starts a node and waits until it speaks AMQP.
    pub fn start() -> Self {
        let script = std::env::var("RABBITMQ_SERVER")
            .unwrap_or_else(|_| "/usr/lib/rabbitmq/bin/rabbitmq-server".to_owned());
        let [port, dist_port, epmd_port] = free_ports();
        let n = NODES.fetch_add(1, Ordering::Relaxed);
        let node = format!("st-{}-{n}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("st-rabbitmq-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node directory");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("loopback_users = none\nlisteners.tcp.default = {port}\n"),
        )
        .expect("config file");

        // Erlang's port mapper, from the `erlang-base` package rabbitmq-server depends on.
        let mut epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start epmd (install rabbitmq-server): {e}"));
        if let Err(e) = wait_until(&mut epmd, "epmd", || {
            TcpStream::connect_timeout(&local(epmd_port), Duration::from_millis(200)).is_ok()
        }) {
            let _ = epmd.kill();
            panic!("{e}");
        }

        let log = std::fs::File::create(dir.join("console.log")).expect("console log");
        let server = Command::new(&script)
            .env("HOME", &dir)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {script} (run scripts/provision-rabbitmq or set RABBITMQ_SERVER): {e}")
            });
        let mut broker = Self {
            dir,
            port,
            epmd,
            server,
        };
        let address = local(port);
        let dir = broker.dir.clone();
        wait_until(&mut broker.server, "rabbitmq-server", || {
            speaks_amqp(address)
        })
        .unwrap_or_else(|e| {
            let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
            panic!("{e}\n{console}")
        });
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // The Erlang VM is a child of the start script: stop it by the pid it wrote, then the
        // script and the epmd this module started. SIGKILL: nothing of the node is kept.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let pid = pid.trim();
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for child in [&mut self.server, &mut self.epmd] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Three distinct free loopback ports (held together while chosen, so they differ).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect();
    [ports[0], ports[1], ports[2]]
}

/// Polls `ready` until it holds, failing when `child` exits or the deadline passes.
fn wait_until(
    child: &mut Child,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + READY;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited before it was ready: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} was not ready within {READY:?}"));
        }
        // Polling a readiness probe, with a deadline.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a broker at `address` answers the AMQP 0-9-1 protocol header with a method frame
/// (`connection.start`): the listener is up and the node is serving.
fn speaks_amqp(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame = [0u8; 1];
    // Frame type 1: a method frame.
    matches!(stream.read(&mut frame), Ok(1) if frame[0] == 1)
}
