//! OTLP/HTTP receiver: `POST /v1/traces`.
//!
//! Accepts `application/x-protobuf` and `application/json` (the OTLP JSON
//! mapping: hex IDs, enums as numbers, 64-bit integers as strings or numbers),
//! plain or `Content-Encoding: gzip`, with or without `Content-Length`
//! (OTel-JS sends chunked bodies). Errors carry a `google.rpc.Status` body in
//! the request's encoding, as the OTLP specification asks.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tower_http::decompression::RequestDecompressionLayer;

use super::grpc::export_response;
use super::{TENANT_HEADER, tenant_from_header};
use crate::error::Error;
use crate::{Ingester, PushOutcome, metrics};

/// The OTLP/HTTP traces route.
pub const TRACES_PATH: &str = "/v1/traces";

/// Body encodings OTLP/HTTP allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = content_type.split(';').next()?.trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        })
    }
}

/// A router serving `POST /v1/traces` into `ingester`.
pub fn router(ingester: Arc<Ingester>) -> Router {
    let limit = ingester.config().max_request_bytes;
    Router::new()
        .route(TRACES_PATH, post(export))
        // The limit applies to the decompressed body: the decompression
        // layer sits outside the extractor that enforces it.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .with_state(ingester)
}

async fn export(
    State(ingester): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let encoding = Encoding::from_headers(&headers);
    let result = handle(ingester, &headers, encoding, body).await;
    metrics::request("http", if result.is_ok() { "ok" } else { "error" });
    let encoding = encoding.unwrap_or(Encoding::Json);
    match result {
        Ok(outcome) => {
            let response = export_response(&outcome);
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
            };
            ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(HttpError { status, error }) => error_response(status, &error, encoding),
    }
}

struct HttpError {
    status: StatusCode,
    error: Error,
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        Self {
            status: error.http_status(),
            error,
        }
    }
}

async fn handle(
    ingester: Arc<Ingester>,
    headers: &HeaderMap,
    encoding: Option<Encoding>,
    body: Result<Bytes, BytesRejection>,
) -> Result<PushOutcome, HttpError> {
    let Some(encoding) = encoding else {
        return Err(HttpError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error: Error::InvalidRequest(
                "Content-Type must be application/x-protobuf or application/json".to_owned(),
            ),
        });
    };
    let tenant = tenant_from_header(headers.get(TENANT_HEADER).map(HeaderValue::as_bytes))?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge {
                limit: ingester.config().max_request_bytes,
            }
        } else {
            Error::InvalidRequest(format!("reading request body: {}", rejection.body_text()))
        }
    })?;
    let (request, encoded) = match encoding {
        Encoding::Protobuf => (
            ExportTraceServiceRequest::decode(body.clone())
                .map_err(|e| Error::InvalidRequest(format!("malformed OTLP protobuf: {e}")))?,
            Some(body),
        ),
        Encoding::Json => (
            serde_json::from_slice::<ExportTraceServiceRequest>(&body)
                .map_err(|e| Error::InvalidRequest(format!("malformed OTLP JSON: {e}")))?,
            None,
        ),
    };
    Ok(ingester.push(&tenant, request, encoded).await?)
}

pub(crate) fn error_response(status: StatusCode, error: &Error, encoding: Encoding) -> Response {
    let grpc = error.grpc_status();
    let body = match encoding {
        Encoding::Protobuf => tonic_types::Status {
            code: grpc.code() as i32,
            message: grpc.message().to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({
            "code": grpc.code() as i32,
            "message": grpc.message(),
        })
        .to_string()
        .into_bytes(),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response();
    if let Some(retry_after) = error.retry_after() {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
