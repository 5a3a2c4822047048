//! The CI smoke run of the benchmark tools: `strata-loadgen` sends a tiny
//! TS-1 workload to a real `strata` and looks every kind of ID up. Timing is
//! not checked here; figures come from `strata-e2e` (docs/benchmarks.md).

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::support::Strata;
use crate::support::process::Options;

/// `cargo test --workspace` builds the bench crate's binaries next to ours.
fn loadgen() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_strata")).with_file_name("strata-loadgen");
    assert!(
        path.is_file(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), which build it",
        path.display()
    );
    path
}

#[test]
fn the_load_generator_runs_a_smoke_workload_against_strata() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        dir.path().join("blocks").to_str().unwrap(),
        dir.path(),
        Options::default(),
    );
    let ids = dir.path().join("ids.txt");
    for (protocol, endpoint) in [
        ("grpc", strata.otlp_grpc.clone()),
        (
            "http",
            strata.otlp_http.trim_end_matches("/v1/traces").to_owned(),
        ),
    ] {
        let output = Command::new(loadgen())
            .args(["send", "--protocol", protocol, "--endpoint", &endpoint])
            .args(["--spans", "2000", "--connections", "2"])
            .arg("--ids-out")
            .arg(&ids)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = Command::new(loadgen())
        .args([
            "query",
            "--endpoint",
            &strata.http,
            "--lookups",
            "20",
            "--absent",
            "2",
        ])
        .args(["--time-range", "--json", "--ids"])
        .arg(&ids)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["found"]["count"], 20, "{report}");
    assert_eq!(report["absent"]["count"], 2, "{report}");
}
