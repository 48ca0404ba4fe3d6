use std::process::Command;

/// `cargo run --example quickstart` exits 0 and prints trees holding both services' spans.
#[test]
fn quickstart_exits_zero_with_trees_of_both_services() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", "quickstart"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0");
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
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
