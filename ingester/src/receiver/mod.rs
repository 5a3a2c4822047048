//! Receivers: the network faces of the ingester.
//!
//! - [`grpc`]: OTLP/gRPC `TraceService/Export` (port 4317).
//! - [`http`]: OTLP/HTTP `POST /v1/traces`, protobuf and JSON (port 4318).
//! - [`zipkin`]: Zipkin v2 `POST /api/v2/spans`, JSON (port 9411).
//!
//! All read the tenant from `X-Scope-OrgID` and hand decoded requests to
//! [`Ingester::push`](crate::Ingester::push).

pub mod grpc;
pub mod http;
pub mod zipkin;

use strata_common::TenantId;

use crate::error::{Error, Result};

/// Header (and gRPC metadata key) naming the tenant, as in Tempo.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The tenant named by an `X-Scope-OrgID` value, or the default tenant
/// (absent or empty header), as a request error when invalid.
pub fn tenant_from_header(value: Option<&[u8]>) -> Result<TenantId> {
    TenantId::from_header(value).map_err(|e| Error::InvalidRequest(e.to_string()))
}
