//! What the load generator and the benches need from a workload.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

/// Every span of a request, in order.
pub fn request_spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
}

/// A deterministic source of OTLP export requests.
pub trait Workload: Send {
    /// The next request, holding exactly `spans` spans.
    fn request(&mut self, spans: usize) -> ExportTraceServiceRequest;

    /// At the end of a run: up to `max_spans` of the spans generated but not
    /// sent yet (held-back late spans), or `None` when nothing is left.
    fn drain(&mut self, max_spans: usize) -> Option<ExportTraceServiceRequest>;
}

/// Which workload to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// TS-1 (`shared/reference/workload.md`).
    #[default]
    Ts1,
    /// Jaeger's tracegen shape: 10 spans per trace, 10 services, 11
    /// attributes from 97 keys × 1,000 values.
    Tracegen,
}

impl WorkloadKind {
    /// A generator of this kind.
    pub fn generator(self, seed: u64, start_unix_nano: u64) -> Box<dyn Workload> {
        match self {
            Self::Ts1 => Box::new(crate::Ts1::new(&crate::Ts1Config {
                seed,
                start_unix_nano,
                ..crate::Ts1Config::default()
            })),
            Self::Tracegen => Box::new(crate::Tracegen::new(seed, start_unix_nano)),
        }
    }
}
