//! Builds a Go oracle with its script under `scripts/` (cached in `.cache/`) and returns the
//! binary's path. Fails, never skips, when it cannot be built.

use std::path::PathBuf;
use std::process::Command;

pub fn build(script: &str, what: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("bash cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{what} could not be built (Go >= 1.24 and the Go module proxy are needed):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Feeds `documents` to the oracle as JSON lines and returns its output lines. Fails with the
/// oracle's stderr when it exits non-zero.
#[allow(dead_code)]
pub fn run_lines(oracle: &std::path::Path, documents: &[serde_json::Value]) -> Vec<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut input = Vec::new();
    for doc in documents {
        serde_json::to_writer(&mut input, doc).unwrap();
        input.push(b'\n');
    }
    let mut child = Command::new(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the oracle runs");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    assert!(
        out.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    written.unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
