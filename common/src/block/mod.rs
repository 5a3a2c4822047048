//! The block: one Parquet file of spans sorted by trace ID, a sharded
//! trace-ID bloom filter and a `meta.json`, under `<tenant>/<block-id>/`.

mod reader;
mod stream_writer;
mod writer;

pub use reader::{
    BlockSpanStream, list_block_ids, list_tenants, read_block, read_meta, read_trace, stream_block,
};
pub use stream_writer::StreamingBlockWriter;
pub use writer::{BlockWriteOptions, EncodedBlock, encode_block, upload_block, write_block};
