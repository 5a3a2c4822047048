//! The Tempo-compatible HTTP query API.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/traces/<id>` | `{"batches": [...]}` or `tempopb.Trace`; 404 when absent |
//! | `GET /api/v2/traces/<id>` | `TraceByIDResponse` as JSON or protobuf; empty trace when absent |
//! | search and tags | see [`crate::search_api`] |
//! | gRPC `tempopb.StreamingQuerier` | see [`crate::grpc`]: same port, HTTP/2 |
//!
//! Both take optional `start` / `end` (Unix seconds) and answer protobuf when
//! the `Accept` header asks for `application/protobuf`, JSON otherwise.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prost::Message;
use serde::Deserialize;
use strata_common::{TenantId, TraceId};

use crate::error::Error;
use crate::tempopb::trace_by_id_response::PartialStatus;
use crate::tempopb::{Trace, TraceByIdMetrics, TraceByIdResponse};
use crate::trace_by_id::{FoundTrace, TimeRange};
use crate::{Querier, tempo_json};

/// Header naming the tenant, as in Tempo.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Routes of the query API.
pub(crate) fn router(querier: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .with_state(Arc::clone(&querier))
        .merge(crate::search_api::router(Arc::clone(&querier)))
        .merge(crate::grpc::router(querier))
}

#[derive(Debug, Deserialize)]
struct TraceParams {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Protobuf,
}

impl Format {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("application/protobuf") || accept.contains("application/x-protobuf") {
            Self::Protobuf
        } else {
            Self::Json
        }
    }
}

async fn trace_v1(
    State(querier): State<Arc<Querier>>,
    Path(trace_id): Path<String>,
    Query(params): Query<TraceParams>,
    headers: HeaderMap,
) -> Response {
    timed("trace_by_id_v1", async {
        let format = Format::from_headers(&headers);
        let found = lookup(&querier, &trace_id, &params, &headers).await?;
        if found.span_count == 0 && found.failed_blocks > 0 {
            // Absent, or in a block we could not read: not a confident 404.
            return Ok((StatusCode::SERVICE_UNAVAILABLE, partial_message(&found)).into_response());
        }
        if found.span_count == 0 {
            return Ok((StatusCode::NOT_FOUND, "trace not found").into_response());
        }
        Ok(match format {
            Format::Json => json_response(&tempo_json::trace_v1(&found.resource_spans)),
            Format::Protobuf => protobuf_response(
                Trace {
                    resource_spans: found.resource_spans,
                }
                .encode_to_vec(),
            ),
        })
    })
    .await
}

async fn trace_v2(
    State(querier): State<Arc<Querier>>,
    Path(trace_id): Path<String>,
    Query(params): Query<TraceParams>,
    headers: HeaderMap,
) -> Response {
    timed("trace_by_id_v2", async {
        let format = Format::from_headers(&headers);
        let found = lookup(&querier, &trace_id, &params, &headers).await?;
        let partial = (found.failed_blocks > 0).then(|| partial_message(&found));
        Ok(match format {
            Format::Json => json_response(&tempo_json::trace_by_id_v2(
                &found.resource_spans,
                found.inspected_bytes,
                partial.as_deref(),
            )),
            Format::Protobuf => protobuf_response(
                TraceByIdResponse {
                    status: if partial.is_some() {
                        PartialStatus::Partial as i32
                    } else {
                        PartialStatus::Complete as i32
                    },
                    message: partial.unwrap_or_default(),
                    trace: Some(Trace {
                        resource_spans: found.resource_spans,
                    }),
                    metrics: Some(TraceByIdMetrics {
                        inspected_bytes: found.inspected_bytes,
                    }),
                }
                .encode_to_vec(),
            ),
        })
    })
    .await
}

fn partial_message(found: &FoundTrace) -> String {
    format!(
        "{} block(s) could not be read; the trace may be incomplete",
        found.failed_blocks
    )
}

async fn lookup(
    querier: &Querier,
    trace_id: &str,
    params: &TraceParams,
    headers: &HeaderMap,
) -> Result<FoundTrace, Error> {
    let tenant = tenant(headers)?;
    let trace_id = TraceId::from_hex(trace_id).map_err(|e| Error::BadRequest(e.to_string()))?;
    let range = time_range(params)?;
    querier.finder().find(&tenant, trace_id, range).await
}

/// The tenant named by `X-Scope-OrgID`, or the default tenant.
pub(crate) fn tenant(headers: &HeaderMap) -> Result<TenantId, Error> {
    TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
        .map_err(|e| Error::BadRequest(e.to_string()))
}

fn time_range(params: &TraceParams) -> Result<Option<TimeRange>, Error> {
    let parse = |name: &str, value: &Option<String>| -> Result<Option<u64>, Error> {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::BadRequest(format!("{name} must be Unix seconds, got {v:?}"))
                })
            })
            .transpose()
    };
    let start = parse("start", &params.start)?;
    let end = parse("end", &params.end)?;
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    let start = start.unwrap_or(0);
    let end = end.unwrap_or(u64::MAX / 1_000_000_000);
    if end < start {
        return Err(Error::BadRequest(format!(
            "end ({end}) must not be before start ({start})"
        )));
    }
    Ok(Some(TimeRange {
        start_unix_nano: start.saturating_mul(1_000_000_000),
        // `end` is a whole second: include every nanosecond of it.
        end_unix_nano: end
            .saturating_mul(1_000_000_000)
            .saturating_add(999_999_999),
    }))
}

pub(crate) fn json_response(value: &serde_json::Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

pub(crate) fn protobuf_response(bytes: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/protobuf"),
        )],
        bytes,
    )
        .into_response()
}

/// Runs a handler, turning errors into plain-text answers and recording
/// request count and latency per endpoint.
pub(crate) async fn timed(
    endpoint: &'static str,
    handler: impl Future<Output = Result<Response, Error>>,
) -> Response {
    let started = Instant::now();
    let response = match handler.await {
        Ok(response) => response,
        Err(error) => {
            log_failure(endpoint, &error);
            (error.http_status(), error.to_string()).into_response()
        }
    };
    observe(endpoint, response.status(), started);
    response
}

/// Logs a failed request when the fault is ours (a 5xx), not the client's.
pub(crate) fn log_failure(endpoint: &'static str, error: &Error) {
    if error.http_status().is_server_error() {
        tracing::error!(endpoint, %error, "query failed");
    }
}

/// Counts and times one answered request, HTTP or gRPC: `status` is the
/// HTTP status (a gRPC error's [`Error::http_status`]).
pub(crate) fn observe(endpoint: &'static str, status: StatusCode, started: Instant) {
    metrics::counter!(
        "strata_query_requests_total",
        "endpoint" => endpoint,
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("strata_query_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(start: Option<&str>, end: Option<&str>) -> TraceParams {
        TraceParams {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        }
    }

    #[test]
    fn time_range_is_optional_and_validated() {
        assert_eq!(time_range(&params(None, None)).unwrap(), None);
        let range = time_range(&params(Some("10"), Some("20")))
            .unwrap()
            .unwrap();
        assert_eq!(range.start_unix_nano, 10_000_000_000);
        assert_eq!(range.end_unix_nano, 20_999_999_999);
        assert!(time_range(&params(Some("20"), Some("10"))).is_err());
        assert!(time_range(&params(Some("yesterday"), None)).is_err());
    }
}
