//! `raygate serve` as a child process, for the tests that need the real binary.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

/// A started `raygate serve`, with the rest of its log (JSON lines on stdout) still to read.
pub struct Served {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    pub log: Lines<BufReader<ChildStdout>>,
}

/// Runs `raygate serve` on loopback ports with JSON logs, after `configure` adds its flags,
/// and returns once raygate has logged that it serves.
pub fn serve(configure: impl FnOnce(&mut Command)) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raygate"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped());
    configure(&mut command);
    let mut child = command.spawn().expect("raygate runs");
    let mut log = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let started = log
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("raygate is serving"))
        .expect("a start-up log line");
    let started: Value = serde_json::from_str(&started).expect("JSON logs");
    // `metrics` is logged as `Some(ADDR)`.
    let port = |field: &str| -> u16 {
        started[field]
            .as_str()
            .and_then(|addr| addr.trim_end_matches(')').rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {field} of {started}"))
    };
    Served {
        port: port("addr"),
        metrics_port: port("metrics"),
        child,
        log,
    }
}
