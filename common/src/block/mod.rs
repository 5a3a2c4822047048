//! The block: one Parquet file of spans sorted by trace ID, a sharded
//! trace-ID bloom filter, a trace table, an attribute summary and a
//! `meta.json`, under `<tenant>/<block-id>/`.

mod reader;
mod stored;
mod stream_writer;
pub mod summary;
pub mod traces;
mod writer;

pub use reader::{
    BlockSpanStream, list_block_ids, list_tenants, read_block, read_meta, read_summary, read_trace,
    read_trace_table, stream_block,
};
pub use stored::{to_canonical, to_stored};
pub use stream_writer::StreamingBlockWriter;
pub use summary::{BlockSummary, SummaryBuilder, dedicated_for_merge};
pub use traces::{Derived, TraceEntry, TraceTable, derive, pick_parent};
pub use writer::{
    BlockWriteOptions, EncodedBlock, encode_block, sort_spans, upload_block, write_block,
};
