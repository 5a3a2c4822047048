//! The command line: documented settings, config files, clear errors.

use std::process::Command;

use tempfile::TempDir;

use crate::support::Strata;
use crate::support::process::Options;

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_documents_every_setting_with_its_variable() {
    let output = strata(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--config", "STRATA_CONFIG"),
        ("--target", "STRATA_TARGET"),
        ("--storage", "STRATA_STORAGE"),
        ("--http-addr", "STRATA_HTTP_ADDR"),
        ("--otlp-grpc-addr", "STRATA_OTLP_GRPC_ADDR"),
        ("--otlp-http-addr", "STRATA_OTLP_HTTP_ADDR"),
        ("--block-max-bytes", "STRATA_BLOCK_MAX_BYTES"),
        ("--block-max-age", "STRATA_BLOCK_MAX_AGE"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    assert!(
        help.contains("YAML"),
        "--help should say how the config file maps to flags"
    );
}

#[test]
fn a_config_file_with_an_unknown_key_is_rejected_naming_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("strata.yaml");
    std::fs::write(&path, "storage: memory://\nblock_max_bites: 1MiB\n").unwrap();
    let output = strata(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("block_max_bites"), "{stderr}");
}

#[test]
fn a_bad_flag_value_is_rejected() {
    let output = strata(&["--storage", "gs://bucket"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("unsupported storage URL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_the_file_and_flags_and_environment_override_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("strata.yaml");
    std::fs::write(&path, "storage: memory://\ntarget: ingester\n").unwrap();
    // The environment overrides the file's target; the file's storage stays.
    let strata = Strata::start(
        "",
        dir.path(),
        Options {
            args: vec!["--config".into(), path.to_str().unwrap().into()],
            env: vec![("STRATA_TARGET", "all".into())],
            ..Options::default()
        },
    );
    assert!(strata.banner.contains("target All"), "{}", strata.banner);
    assert!(
        strata.banner.contains("storage memory://"),
        "{}",
        strata.banner
    );
    strata.terminate();
}
