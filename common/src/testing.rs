//! Test support (feature `testing`): comparing traces up to regrouping.
//!
//! OTLP lets a sender group spans by resource and scope however it likes,
//! and Strata regroups them on read. Two traces are the same when the
//! multisets of (resource, scope, span) triples are equal; this module
//! flattens traces into such sorted lists.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// One span with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSpan {
    /// The span's resource (the empty resource when absent).
    pub resource: Resource,
    /// `ResourceSpans.schema_url`.
    pub resource_schema_url: String,
    /// The span's scope (the empty scope when absent).
    pub scope: InstrumentationScope,
    /// `ScopeSpans.schema_url`.
    pub scope_schema_url: String,
    /// The span (with an empty status when absent).
    pub span: Span,
}

impl FlatSpan {
    fn sort_key(&self) -> Vec<u8> {
        ResourceSpans {
            resource: Some(self.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(self.scope.clone()),
                spans: vec![self.span.clone()],
                schema_url: self.scope_schema_url.clone(),
            }],
            schema_url: self.resource_schema_url.clone(),
        }
        .encode_to_vec()
    }
}

/// Flattens and sorts, treating an absent resource, scope or status as the
/// empty one (OTLP gives them the same meaning).
pub fn flatten(resource_spans: &[ResourceSpans]) -> Vec<FlatSpan> {
    let mut out: Vec<FlatSpan> = resource_spans
        .iter()
        .flat_map(|rs| {
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans.iter().map(move |span| {
                    let mut span = span.clone();
                    span.status.get_or_insert_with(Status::default);
                    FlatSpan {
                        resource: rs.resource.clone().unwrap_or_default(),
                        resource_schema_url: rs.schema_url.clone(),
                        scope: ss.scope.clone().unwrap_or_default(),
                        scope_schema_url: ss.schema_url.clone(),
                        span,
                    }
                })
            })
        })
        .collect();
    out.sort_by_cached_key(FlatSpan::sort_key);
    out
}
