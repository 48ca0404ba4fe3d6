//! A real `redis-server` for the tests of error sharing: started on a free loopback port with
//! no persistence, ready when it answers `PING`, killed and restarted on the same port to play
//! an outage, its writes paused to play a stall.
//!
//! The binary is `$REDIS_SERVER`, else `redis-server` on the `PATH` (`scripts/test` installs
//! it and exports the variable).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first `PING`.
const READY: Duration = Duration::from_secs(10);

/// A `redis-server` child process; killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut server = Self { port, child: None };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit; the
    /// port no longer answers.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            !answers_ping(self.address()),
            "redis on port {} still answers after kill",
            self.port
        );
    }

    /// Makes the server stall every client's writes for `pause` (`CLIENT PAUSE .. WRITE`):
    /// reads are answered, writes (a transaction's `EXEC`) wait, and run when it ends.
    pub fn pause_writes(&self, pause: Duration) {
        let mut stream = TcpStream::connect(self.address()).expect("connect to redis");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream
            .write_all(format!("CLIENT PAUSE {} WRITE\r\n", pause.as_millis()).as_bytes())
            .expect("send CLIENT PAUSE");
        let mut reply = [0u8; 5];
        stream
            .read_exact(&mut reply)
            .expect("a reply to CLIENT PAUSE");
        assert_eq!(&reply, b"+OK\r\n");
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let dir = std::env::temp_dir();
        let mut child = Command::new(&binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install redis-server or set REDIS_SERVER): {e}")
            });
        let deadline = Instant::now() + READY;
        while !answers_ping(self.address()) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{binary} on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "{binary} on port {} did not answer PING within {READY:?}",
                self.port
            );
            // Polling a readiness probe, with a deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a server at `address` answers `PING` with `+PONG`.
fn answers_ping(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    let mut read = 0;
    while read < reply.len() {
        match stream.read(&mut reply[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    reply.starts_with(b"+PONG")
}
