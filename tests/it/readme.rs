//! The README works as written: every shell block marked
//! `<!-- readme-test -->` runs, as a new user would paste it, against the
//! built binary on `PATH` (fake CRMs on 127.0.0.1 only), in a fresh home.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The marked blocks of the README, in order.
fn marked_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(at) = rest.find("<!-- readme-test -->") {
        rest = &rest[at..];
        let Some(open) = rest.find("```sh\n") else {
            break;
        };
        let body = &rest[open + "```sh\n".len()..];
        let Some(close) = body.find("\n```") else {
            break;
        };
        blocks.push(body[..close].to_owned());
        rest = &body[close..];
    }
    blocks
}

#[test]
fn the_readme_shell_blocks_run_as_written() {
    let readme = super::read("README.md");
    let blocks = marked_blocks(&readme);
    assert!(blocks.len() >= 2, "the try-it blocks are marked");
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_leadscored"));
    let bin_dir = binary.parent().expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (index, block) in blocks.iter().enumerate() {
        let home = tempfile::tempdir().expect("temp home");
        // Background jobs end with the block, whatever happens.
        let script = format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT\n{block}\n"
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(super::root())
            .env("PATH", &path)
            .env("HOME", home.path())
            .env_remove("XDG_STATE_HOME")
            .env_remove("LEADSCORED_STATE_DIR")
            .env_remove("STATE_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash runs");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                panic!("README block {index} did not finish in 3 minutes:\n{block}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            status.success(),
            "README block {index} failed ({status}):\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        assert!(!stdout.trim().is_empty(), "block {index} printed nothing");
    }
}
