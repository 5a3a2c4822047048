//! Generates Tempo's API messages from `proto/tempopb/tempo.proto`, with the
//! OTLP types taken from the `opentelemetry-proto` crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // The client serves tests and tools; Grafana brings its own.
        .build_client(true)
        .build_server(true)
        .extern_path(".opentelemetry.proto", "::opentelemetry_proto::tonic")
        .compile_with_config(config, &["proto/tempopb/tempo.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
