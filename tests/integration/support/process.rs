//! A real `strata` process on loopback ports chosen by the OS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running server and where to reach it.
#[derive(Debug)]
pub struct Strata {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` of the query API.
    pub http: String,
    /// `http://127.0.0.1:<port>` of OTLP/gRPC (empty for query-only targets).
    pub otlp_grpc: String,
    /// `http://127.0.0.1:<port>/v1/traces` of OTLP/HTTP.
    pub otlp_http: String,
    /// `http://127.0.0.1:<port>/api/v2/spans` of the Zipkin receiver.
    pub zipkin: String,
    /// The process's log file (stderr).
    pub log: PathBuf,
    /// The first line Strata printed (version, target, storage).
    pub banner: String,
}

/// Options for [`Strata::start`].
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(&'a str, String)>,
    /// Working directory (default: the log directory).
    pub cwd: Option<&'a Path>,
    /// Use the default ports instead of OS-chosen loopback ports.
    pub default_ports: bool,
}

impl Strata {
    /// Starts `strata --storage <storage>` and waits until it is ready.
    pub fn start(storage: &str, log_dir: &Path, options: Options<'_>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        if !storage.is_empty() {
            command.args(["--storage", storage]);
        }
        if !options.default_ports {
            command.args([
                "--http-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--zipkin-addr",
                "127.0.0.1:0",
            ]);
        }
        command.args(&options.args);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let log = log_dir.join(format!("strata-{}.log", unique()));
        let log_file = std::fs::File::create(&log).unwrap();
        command
            .current_dir(options.cwd.unwrap_or(log_dir))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = command.spawn().expect("spawning strata");
        let stdout = child.stdout.take().unwrap();

        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut strata = Self {
            child: Some(child),
            http: String::new(),
            otlp_grpc: String::new(),
            otlp_http: String::new(),
            zipkin: String::new(),
            log,
            banner: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match lines_rx.recv_timeout(remaining) {
                Ok(line) => line,
                Err(_) => panic!(
                    "strata did not start; log:\n{}",
                    std::fs::read_to_string(&strata.log).unwrap_or_default()
                ),
            };
            let url = line.split_whitespace().find(|w| w.starts_with("http://"));
            if strata.banner.is_empty() {
                strata.banner = line.clone();
            }
            if line.contains("OTLP/gRPC") {
                strata.otlp_grpc = url.unwrap().to_owned();
            } else if line.contains("OTLP/HTTP") {
                strata.otlp_http = url.unwrap().to_owned();
            } else if line.contains("Zipkin") {
                strata.zipkin = url.unwrap().to_owned();
            } else if line.contains("operate") {
                let metrics = url.unwrap();
                strata.http = metrics.trim_end_matches("/metrics").to_owned();
                break;
            }
        }
        strata
    }

    /// The OS process ID.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = self.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "strata exited with {status}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        status
    }

    /// Waits for the process to exit on its own (after signals sent by the
    /// test) and returns its status.
    pub fn wait_for_exit(mut self, timeout: Duration) -> ExitStatus {
        self.wait(timeout)
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
