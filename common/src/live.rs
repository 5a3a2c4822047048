//! The seam between the querier and data not yet in a block.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{TenantId, TraceId};

/// A row predicate over canonical span rows. A search hands one to live
/// sources so they copy out only traces that can match; it may keep more
/// rows than the query will (it is a pre-filter), never fewer.
pub trait SpanPredicate: Send + Sync + Debug {
    /// One boolean per row; null counts as false.
    fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray>;
}

/// What a search asks of a live source.
#[derive(Debug, Clone, Default)]
pub struct LiveScan {
    /// Traces with at least one row the predicate keeps; every trace when
    /// `None`.
    pub predicate: Option<Arc<dyn SpanPredicate>>,
    /// Enough traces: stop after this many.
    pub max_traces: Option<usize>,
}

/// Something that holds spans not yet committed to a block: an in-process
/// ingester, or (in distributed mode) a client for remote ingesters.
#[async_trait]
pub trait LiveTraceSource: Send + Sync + Debug {
    /// The live spans of one trace, in the span schema; empty when the
    /// source holds none.
    async fn find_trace(&self, tenant: &TenantId, trace_id: TraceId) -> Result<Vec<RecordBatch>>;

    /// Whole traces (every span the source holds of each) that `scan`
    /// selects, in the canonical span schema. The rows of a trace are
    /// adjacent in one batch; a trace may appear in several batches when
    /// the source holds it in several stages (fragments).
    async fn scan(&self, tenant: &TenantId, scan: &LiveScan) -> Result<Vec<RecordBatch>>;
}
