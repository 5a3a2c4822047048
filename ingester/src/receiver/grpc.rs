//! OTLP/gRPC receiver.
//!
//! Written against tonic's server primitives rather than the generated
//! `TraceServiceServer` for one reason: the generated codec answers a
//! malformed protobuf body with `INTERNAL`, while OTLP clients must be told
//! `INVALID_ARGUMENT` (a non-retryable error). Our codec hands the raw
//! message bytes to the handler, which decodes them and picks the status.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, EnabledCompressionEncodings, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::{TENANT_HEADER, tenant_from_header};
use crate::metrics;
use crate::{Ingester, PushOutcome};

/// Full gRPC path of the OTLP trace export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP `TraceService`, ready to add to a `tonic` server.
#[derive(Debug, Clone)]
pub struct OtlpGrpcService {
    ingester: Arc<Ingester>,
    max_message_bytes: usize,
}

impl OtlpGrpcService {
    /// A service feeding `ingester`, accepting gzip and messages up to the
    /// ingester's `max_request_bytes`.
    pub fn new(ingester: Arc<Ingester>) -> Self {
        let max_message_bytes = ingester.config().max_request_bytes;
        Self {
            ingester,
            max_message_bytes,
        }
    }
}

impl NamedService for OtlpGrpcService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for OtlpGrpcService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let method = ExportMethod(Arc::clone(&self.ingester));
        let mut accept = EnabledCompressionEncodings::default();
        accept.enable(CompressionEncoding::Gzip);
        let mut grpc = Grpc::new(ExportCodec)
            .apply_compression_config(accept, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.max_message_bytes), None);
        Box::pin(async move { Ok(grpc.unary(method, request).await) })
    }
}

struct ExportMethod(Arc<Ingester>);

impl UnaryService<Bytes> for ExportMethod {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingester = Arc::clone(&self.0);
        Box::pin(async move {
            let result = export(ingester, request).await;
            metrics::request("grpc", if result.is_ok() { "ok" } else { "error" });
            result
        })
    }
}

async fn export(
    ingester: Arc<Ingester>,
    request: Request<Bytes>,
) -> Result<Response<ExportTraceServiceResponse>, Status> {
    let tenant = tenant_from_header(request.metadata().get(TENANT_HEADER).map(|v| v.as_bytes()))
        .map_err(|e| e.grpc_status())?;
    let body = request.into_inner();
    let decoded = ExportTraceServiceRequest::decode(body.clone())
        .map_err(|e| Status::invalid_argument(format!("malformed OTLP protobuf: {e}")))?;
    let outcome = ingester
        .push(&tenant, decoded, Some(body))
        .await
        .map_err(|e| e.grpc_status())?;
    Ok(Response::new(export_response(&outcome)))
}

/// The OTLP response, with a partial success when spans were dropped.
pub(crate) fn export_response(outcome: &PushOutcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
            error_message: outcome.message.clone(),
        }),
    }
}

/// Decodes to raw bytes, encodes responses with prost.
#[derive(Debug, Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for ExportCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

impl Decoder for ExportCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
