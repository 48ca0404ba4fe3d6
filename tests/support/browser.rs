//! A real headless Chromium for browser tests: `chromedriver` (Debian's `chromium-driver`,
//! installed by `scripts/provision-chromium`) started on a free loopback port, ready when its
//! `/status` says so, and a WebDriver session driven by `fantoccini`. Dropping the browser
//! kills the driver it started (and with it the browser).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use tokio::process::{Child, Command};

/// How long the driver may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

/// A directory removed on drop: the browser's profile, so runs never share one.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `CHROMEDRIVER`, else `chromedriver` on the `PATH`.
fn driver_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|p| p.is_file())
    })
}

/// The Chromium binary beside the driver's package (Debian installs it as `chromium`).
fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A headless browser, or `None` (said on standard error) when no driver or browser is
    /// installed: run `scripts/provision-chromium`.
    pub async fn start() -> Option<Self> {
        let (Some(driver), Some(chromium)) = (driver_path(), chromium_path()) else {
            eprintln!(
                "SKIPPED: no chromedriver or chromium found (set CHROMEDRIVER and CHROMIUM, or run scripts/provision-chromium)"
            );
            return None;
        };
        let port = free_port();
        let mut driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, &mut driver).await;
        let profile =
            std::env::temp_dir().join(format!("pages-browser-{port}-{}", std::process::id()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--hide-scrollbars", "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a WebDriver session");
        Some(Self {
            client,
            driver,
            _profile: TempDir(profile),
        })
    }

    /// Ends the session, then the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// Polls the driver's `/status` until it reports ready (its readiness probe).
async fn wait_ready(url: &str, driver: &mut Child) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start: {status}");
        }
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if let Ok(body) = r.json::<serde_json::Value>().await {
                if body["value"]["ready"] == true {
                    return;
                }
            }
        }
        assert!(
            started.elapsed() < READY_WITHIN,
            "chromedriver not ready in {READY_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
