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
