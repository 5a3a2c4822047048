//! The seam between the querier and data not yet in a block.

use std::fmt::Debug;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{TenantId, TraceId};

/// Something that holds spans not yet committed to a block: an in-process
/// ingester, or (in distributed mode) a client for remote ingesters.
#[async_trait]
pub trait LiveTraceSource: Send + Sync + Debug {
    /// The live spans of one trace, in the span schema; empty when the
    /// source holds none.
    async fn find_trace(&self, tenant: &TenantId, trace_id: TraceId) -> Result<Vec<RecordBatch>>;
}
