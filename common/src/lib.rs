//! Strata's shared core: the span model and the block format.
//!
//! Everything that more than one component must agree on lives here, so
//! `ingester`, `compactor` and `querier` depend on this crate and never on
//! each other:
//!
//! - [`ids`]: `TraceId`, `SpanId`, `BlockId`, `TenantId`.
//! - [`schema`]: the Arrow schema of a span row, shared by the live buffer,
//!   blocks and queries; [`layout`]: how a block stores it (structure and
//!   dedicated attribute columns).
//! - [`convert`]: OTLP ⇄ Arrow, lossless.
//! - [`block`]: writing and reading blocks (`data.parquet`, `bloom-N`,
//!   `meta.json`), with [`bloom`], [`meta`] and [`paths`].
//! - [`catalog`]: which blocks are live or compacted, and the tenant index.
//! - [`storage`]: opening the object store from a URL.
//! - [`live`]: the trait through which queriers reach live (unflushed) spans.

pub mod block;
pub mod bloom;
pub mod catalog;
pub mod convert;
mod error;
pub mod ids;
pub mod layout;
pub mod live;
pub mod meta;
pub mod paths;
pub mod schema;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, ErrorKind, Result};
pub use ids::{BlockId, SpanId, TenantId, TraceId};
pub use live::{LiveScan, LiveTraceSource, SpanPredicate};
pub use meta::{ATTRIBUTE_SCOPES, BlockMeta};
pub use schema::{AttributeType, span_schema};
pub use storage::{S3Options, StorageLocation};
