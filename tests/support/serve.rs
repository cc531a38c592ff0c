//! `cpm-nms serve` as a child process, for the tests that run the real binary: it logs in
//! JSON, every log message reaches the test, and it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `cpm-nms serve`.
pub struct Served {
    child: Child,
    log: mpsc::Receiver<(String, Value)>,
    /// Where it listens.
    pub url: String,
    /// The fields of its "listening" log message.
    #[allow(dead_code)]
    pub listening: Value,
}

impl Served {
    /// Run `cpm-nms ARGS serve --listen 127.0.0.1:0` as `cmd` (the binary, its arguments
    /// before `serve`, its environment), and wait until it says where it listens.
    #[allow(dead_code)]
    pub fn start(cmd: Command) -> Self {
        Self::start_logging(cmd, "info")
    }

    /// [`Served::start`] with the log filter `filter` (`RUST_LOG`).
    pub fn start_logging(mut cmd: Command, filter: &str) -> Self {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("NMS_LOG_FORMAT", "json")
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Every log message goes to the test (the rest of the line is dropped), and the log
        // is drained, so the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel::<(String, Value)>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let message = v["fields"]["message"].as_str().unwrap_or_default().to_string();
                    if tx.send((message, v["fields"].clone())).is_err() {
                        break;
                    }
                }
            }
        });
        let mut served = Self { child, log, url: String::new(), listening: Value::Null };
        let listening = served.wait_log("cpm-nms listening", Duration::from_secs(60));
        served.url = listening["url"].as_str().unwrap().to_string();
        served.listening = listening;
        served
    }

    /// Wait (at most `patience`) for a log message starting with `message`; its fields.
    pub fn wait_log(&mut self, message: &str, patience: Duration) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok((m, fields)) if m.starts_with(message) => return fields,
                Ok(_) => {}
                Err(_) => panic!("the server at {} never logged {message:?}", self.url),
            }
        }
    }

    /// The log records received so far and not yet read: (message, fields).
    #[allow(dead_code)]
    pub fn take_log(&mut self) -> Vec<(String, Value)> {
        self.log.try_iter().collect()
    }

    /// Ask it to stop (SIGTERM), as an orchestrator does.
    #[allow(dead_code)]
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Wait until it exits by itself; its exit status.
    #[allow(dead_code)]
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Kill it (SIGKILL) and wait until it is gone.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}
