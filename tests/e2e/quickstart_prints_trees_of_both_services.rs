use std::process::Command;

/// `cargo run --example quickstart` exits 0 and prints trees holding both services' spans.
#[test]
fn quickstart_exits_zero_with_trees_of_both_services() {
    let stdout = crate::support::run_example("quickstart", &[], &[]);
    for expected in [
        "GET /checkout/42 -> 200",
        "GET /checkout/7?mode=fail -> 500",
        "GET /checkout/13?mode=panic -> 500",
        "└─ GET /checkout/{id}  [frontend]  server",
        "└─ GET /orders/{id}  [backend]  server",
        "• exception: panic: order 13 is corrupt",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("\ntrace ").count() + usize::from(stdout.starts_with("trace ")),
        3,
        "{stdout}"
    );
}

/// `quickstart --pages` (built with the `pages` feature) keeps serving, prints the pages'
/// address, serves the three traces there, and stops cleanly on SIGTERM.
#[cfg(feature = "pages")]
#[tokio::test]
async fn quickstart_with_pages_keeps_serving_them_until_stopped() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "quickstart",
            "--features",
            "pages",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(built.success());
    // The example beside this test binary's target directory.
    let example = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("debug/examples/quickstart");
    let mut command = tokio::process::Command::new(example);
    command
        .arg("--pages")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let mut child = command.spawn().expect("the example runs");
    let pid = child.id().expect("running");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .expect("readable")
            .expect("the example prints the pages' address before it ends");
        if let Some(url) = line.strip_prefix("the pages: ") {
            break url
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
    };
    let traces: serde_json::Value = reqwest::get(format!("{url}/traces.json"))
        .await
        .expect("served")
        .json()
        .await
        .expect("json");
    assert_eq!(traces["stored"], 3, "{traces}");
    assert_eq!(
        traces["traces"][0]["operation"], "GET /checkout/{id}",
        "{traces}"
    );
    // The rest of its output (the trees printed at shutdown) is read, so it never blocks.
    let rest = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stopped = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    let status = child.wait().await.expect("exits");
    assert!(status.success(), "stopped cleanly: {status:?}");
    rest.await.expect("read");
}
