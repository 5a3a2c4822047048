//! Tempo's streaming query API, `tempopb.StreamingQuerier`, served on the
//! HTTP port: requests with `content-type: application/grpc` over HTTP/2
//! (cleartext prior knowledge, as Grafana dials it) reach these routes, the
//! rest reach the HTTP API.
//!
//! `Search` streams as sources complete: each message carries the traces
//! found or changed since the previous one and the cumulative figures;
//! the last repeats the whole answer, as Tempo's frontend does. Grafana
//! appends what arrives and keeps the first copy of each trace. Answers
//! are cut into messages of at most 1 MiB, each with the figures, because
//! gRPC clients (Grafana's included) refuse messages over 4 MiB by
//! default. The tag calls answer in one message. The tenant comes from
//! `x-scope-orgid` metadata. A search stops when its client goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::StatusCode;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use strata_common::TenantId;
use tokio::sync::mpsc::unbounded_channel;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::api::{log_failure, observe};
use crate::error::Error;
use crate::search_api::{
    MAX_TAG_VALUES, search_request, tag_names, tag_values, tags_v1_response, time_range,
    v1_tag_values, v2_tag,
};
use crate::tempopb::streaming_querier_server::{StreamingQuerier, StreamingQuerierServer};
use crate::tempopb::{
    SearchRequest, SearchResponse, SearchTagValuesRequest, SearchTagValuesResponse,
    SearchTagValuesV2Response, SearchTagsRequest, SearchTagsResponse, SearchTagsV2Response,
};
use crate::{Querier, TENANT_HEADER, wire};

/// The gRPC routes, to merge into the HTTP router.
pub(crate) fn router(querier: Arc<Querier>) -> Router {
    tonic::service::Routes::new(StreamingQuerierServer::new(GrpcQuerier { querier }))
        .into_axum_router()
}

#[derive(Debug)]
struct GrpcQuerier {
    querier: Arc<Querier>,
}

fn tenant(metadata: &MetadataMap) -> Result<TenantId, Error> {
    TenantId::from_header(metadata.get(TENANT_HEADER).map(|v| v.as_bytes()))
        .map_err(|e| Error::BadRequest(e.to_string()))
}

/// Answers a unary-style call, counted and timed as the HTTP routes are.
async fn answered<T>(
    endpoint: &'static str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<Response<Answer<T>>, Status>
where
    T: Send + 'static,
{
    let started = Instant::now();
    let result = work.await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => {
            log_failure(endpoint, error);
            error.http_status()
        }
    };
    observe(endpoint, status, started);
    result
        .map(|value| Response::new(stream::iter([Ok(value)]).boxed()))
        .map_err(|e| e.grpc_status())
}

type Answer<T> = BoxStream<'static, Result<T, Status>>;

/// Largest message sent: Tempo's `max_grpc_streaming_packet_size`.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Sends `response` as messages of at most [`MAX_MESSAGE_BYTES`] (a single
/// larger trace goes alone), each carrying the figures.
fn send_segmented(
    out: &tokio::sync::mpsc::UnboundedSender<Result<SearchResponse, Status>>,
    response: SearchResponse,
) {
    use prost::Message;
    let metrics = response.metrics;
    let mut batch: Vec<crate::tempopb::TraceSearchMetadata> = Vec::new();
    let mut size = 0;
    let mut sent_any = false;
    for trace in response.traces {
        let trace_size = trace.encoded_len() + 8;
        if !batch.is_empty() && size + trace_size > MAX_MESSAGE_BYTES {
            let _ = out.send(Ok(SearchResponse {
                traces: std::mem::take(&mut batch),
                metrics,
            }));
            sent_any = true;
            size = 0;
        }
        size += trace_size;
        batch.push(trace);
    }
    if !batch.is_empty() || !sent_any {
        let _ = out.send(Ok(SearchResponse {
            traces: batch,
            metrics,
        }));
    }
}

fn limit(n: u32) -> usize {
    if n == 0 { usize::MAX } else { n as usize }
}

#[async_trait::async_trait]
impl StreamingQuerier for GrpcQuerier {
    type SearchStream = Answer<SearchResponse>;
    type SearchTagsStream = Answer<SearchTagsResponse>;
    type SearchTagsV2Stream = Answer<SearchTagsV2Response>;
    type SearchTagValuesStream = Answer<SearchTagValuesResponse>;
    type SearchTagValuesV2Stream = Answer<SearchTagValuesV2Response>;

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<Self::SearchStream>, Status> {
        const ENDPOINT: &str = "grpc_search";
        let started = Instant::now();
        let checked = tenant(request.metadata())
            .and_then(|tenant| Ok((tenant, search_request(request.get_ref())?)));
        let (tenant, search) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                observe(ENDPOINT, error.http_status(), started);
                return Err(error.grpc_status());
            }
        };
        let (progress_tx, mut progress_rx) = unbounded_channel();
        let (out_tx, out_rx) = unbounded_channel::<Result<SearchResponse, Status>>();
        let querier = Arc::clone(&self.querier);
        tokio::spawn(async move {
            let searcher = Arc::clone(querier.searcher());
            // Dropping this future (below, when the client has gone) aborts
            // the search.
            let running = querier.run_query(async move {
                searcher.search(&tenant, search, Some(progress_tx)).await
            });
            tokio::pin!(running);
            let mut progress_open = true;
            let outcome = loop {
                tokio::select! {
                    progress = progress_rx.recv(), if progress_open => match progress {
                        Some(p) => send_segmented(&out_tx, wire::search_response(&p.traces, &p.metrics)),
                        None => progress_open = false,
                    },
                    outcome = &mut running => break outcome,
                    // Uncounted, as an HTTP request whose client went away.
                    () = out_tx.closed() => return,
                }
            };
            // Partial answers sent before the search ended, then the whole.
            while let Ok(p) = progress_rx.try_recv() {
                send_segmented(&out_tx, wire::search_response(&p.traces, &p.metrics));
            }
            let status = match outcome.and_then(|o| o) {
                Ok(outcome) => {
                    send_segmented(
                        &out_tx,
                        wire::search_response(&outcome.traces, &outcome.metrics),
                    );
                    StatusCode::OK
                }
                Err(error) => {
                    log_failure(ENDPOINT, &error);
                    let _ = out_tx.send(Err(error.grpc_status()));
                    error.http_status()
                }
            };
            observe(ENDPOINT, status, started);
        });
        let answers = stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
        );
        Ok(Response::new(answers.boxed()))
    }

    async fn search_tags(
        &self,
        request: Request<SearchTagsRequest>,
    ) -> Result<Response<Self::SearchTagsStream>, Status> {
        answered("grpc_search_tags", async {
            let tenant = tenant(request.metadata())?;
            let r = request.get_ref();
            let range = time_range(r.start, r.end)?;
            let v2 = tag_names(&self.querier, tenant, &r.scope, "", range, usize::MAX).await?;
            Ok(tags_v1_response(&v2, &r.scope, limit(r.max_tags_per_scope)))
        })
        .await
    }

    async fn search_tags_v2(
        &self,
        request: Request<SearchTagsRequest>,
    ) -> Result<Response<Self::SearchTagsV2Stream>, Status> {
        answered("grpc_search_tags_v2", async {
            let tenant = tenant(request.metadata())?;
            let r = request.get_ref();
            let range = time_range(r.start, r.end)?;
            tag_names(
                &self.querier,
                tenant,
                &r.scope,
                &r.query,
                range,
                limit(r.max_tags_per_scope),
            )
            .await
        })
        .await
    }

    async fn search_tag_values(
        &self,
        request: Request<SearchTagValuesRequest>,
    ) -> Result<Response<Self::SearchTagValuesStream>, Status> {
        answered("grpc_search_tag_values", async {
            let tenant = tenant(request.metadata())?;
            let r = request.get_ref();
            let range = time_range(r.start, r.end)?;
            let values = v1_tag_values(
                &self.querier,
                tenant,
                &r.tag_name,
                range,
                limit(r.max_tag_values).min(MAX_TAG_VALUES),
            )
            .await?;
            Ok(wire::tag_values_v1(&values))
        })
        .await
    }

    async fn search_tag_values_v2(
        &self,
        request: Request<SearchTagValuesRequest>,
    ) -> Result<Response<Self::SearchTagValuesV2Stream>, Status> {
        answered("grpc_search_tag_values_v2", async {
            let tenant = tenant(request.metadata())?;
            let r = request.get_ref();
            let tag = v2_tag(&r.tag_name)?;
            let range = time_range(r.start, r.end)?;
            let values = tag_values(
                &self.querier,
                tenant,
                tag,
                &r.query,
                range,
                limit(r.max_tag_values).min(MAX_TAG_VALUES),
            )
            .await?;
            Ok(wire::tag_values_v2(&values))
        })
        .await
    }
}
