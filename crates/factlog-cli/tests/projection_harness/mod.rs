//! What the projection tests of the binary share: `factlog` run unaffected by the caller's
//! environment, a running `factlog serve --config FILE` and the CLI against it, and polling
//! with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_factlog");
/// How long a test waits for anything the server should do promptly.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// `factlog` with `args`, unaffected by the caller's environment.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(EXE);
    command
        .args(args)
        .env_remove("FACTLOG_DATA_DIR")
        .env_remove("FACTLOG_CONFIG")
        .env_remove("FACTLOG_SERVER")
        .env_remove("FACTLOG_TOKEN")
        .env_remove("FACTLOG_TOKENS")
        .env_remove("FACTLOG_LISTEN")
        .env_remove("FACTLOG_PROJECTION_SQLITE_PATH")
        .env_remove("FACTLOG_PROJECTION_POSTGRES_URL")
        .env_remove("FACTLOG_PROJECTION_REDIS_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// A running `factlog serve --config FILE`; killed (by pid) if the test ends early.
pub struct Serve {
    child: Child,
    pub url: String,
}

impl Serve {
    pub fn start(config: &Path, data: &Path) -> Self {
        Self::start_with_env(config, data, &[])
    }

    /// Like [`Serve::start`], with these environment variables.
    pub fn start_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command(&[])
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("factlog serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("factlog serve prints its URL");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url }
    }

    /// `factlog --server URL ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        command(&["--server", &self.url])
            .args(args)
            .output()
            .expect("factlog runs")
    }

    /// Like [`Serve::run`], checking the exit code 0; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "factlog {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A projection's status, from `factlog projections status NAME --json`.
    pub fn status(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["--json", "projections", "status", name])).unwrap()
    }

    pub fn append(&self, stream: &str, event_type: &str, n: usize) {
        for i in 0..n {
            self.ok(&[
                "append",
                stream,
                "--type",
                event_type,
                "--data",
                &format!("{{\"n\": {i}}}"),
            ]);
        }
    }

    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                assert!(status.success(), "graceful shutdown exits 0, not {status}");
                return;
            }
            assert!(Instant::now() < deadline, "factlog serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
