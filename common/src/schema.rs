//! The span model: one Arrow row per span.
//!
//! The same schema is used by the ingester's live buffer, by every block's
//! Parquet file and (later) by DataFusion's span table, so one query path
//! serves live data and blocks alike. `docs/format.md` explains each column
//! and why it is shaped the way it is.
//!
//! Query-hot fields are plain typed columns (service name, span name, kind,
//! status, start time, duration) so Parquet statistics and DataFusion
//! predicates can prune on them. Everything else OTLP carries is kept with
//! its original types so a trace reads back exactly as it was sent.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Column names of the span schema.
pub mod columns {
    /// `FixedSizeBinary(16)`: the trace ID; blocks are sorted by it.
    pub const TRACE_ID: &str = "trace_id";
    /// `FixedSizeBinary(8)`: the span ID.
    pub const SPAN_ID: &str = "span_id";
    /// `FixedSizeBinary(8)`, null for root spans.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// `Utf8`: W3C trace state, empty when absent.
    pub const TRACE_STATE: &str = "trace_state";
    /// `UInt32`: OTLP span flags (W3C trace flags in the low byte).
    pub const FLAGS: &str = "flags";
    /// `Utf8`: the span name.
    pub const NAME: &str = "name";
    /// `Int32`: OTLP `SpanKind` number.
    pub const KIND: &str = "kind";
    /// `Timestamp(ns, UTC)`: span start.
    pub const START_TIME: &str = "start_time";
    /// `Int64`: end minus start in nanoseconds.
    pub const DURATION_NANOS: &str = "duration_nanos";
    /// `Int32`: OTLP `Status.code` number.
    pub const STATUS_CODE: &str = "status_code";
    /// `Utf8`: OTLP `Status.message`.
    pub const STATUS_MESSAGE: &str = "status_message";
    /// `List<Attribute>`: span attributes.
    pub const ATTRIBUTES: &str = "attributes";
    /// `UInt32`.
    pub const DROPPED_ATTRIBUTES_COUNT: &str = "dropped_attributes_count";
    /// `List<Event>`.
    pub const EVENTS: &str = "events";
    /// `UInt32`.
    pub const DROPPED_EVENTS_COUNT: &str = "dropped_events_count";
    /// `List<Link>`.
    pub const LINKS: &str = "links";
    /// `UInt32`.
    pub const DROPPED_LINKS_COUNT: &str = "dropped_links_count";
    /// `Utf8`: the resource's `service.name` when it is a string, else null.
    pub const SERVICE_NAME: &str = "service_name";
    /// `List<Attribute>`: all resource attributes, `service.name` included.
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    /// `UInt32`.
    pub const RESOURCE_DROPPED_ATTRIBUTES_COUNT: &str = "resource_dropped_attributes_count";
    /// `Utf8`: `ResourceSpans.schema_url`.
    pub const RESOURCE_SCHEMA_URL: &str = "resource_schema_url";
    /// `Binary`, null when empty: the resource's entity references as an
    /// encoded OTLP `Resource` holding only `entity_refs` (a development-status
    /// OTLP field kept for fidelity, not for querying).
    pub const RESOURCE_ENTITY_REFS: &str = "resource_entity_refs";
    /// `Utf8`: instrumentation scope name.
    pub const SCOPE_NAME: &str = "scope_name";
    /// `Utf8`: instrumentation scope version.
    pub const SCOPE_VERSION: &str = "scope_version";
    /// `List<Attribute>`: instrumentation scope attributes.
    pub const SCOPE_ATTRIBUTES: &str = "scope_attributes";
    /// `UInt32`.
    pub const SCOPE_DROPPED_ATTRIBUTES_COUNT: &str = "scope_dropped_attributes_count";
    /// `Utf8`: `ScopeSpans.schema_url`.
    pub const SCOPE_SCHEMA_URL: &str = "scope_schema_url";
}

/// Field names inside an attribute struct.
pub mod attribute_fields {
    /// `Utf8`, not null.
    pub const KEY: &str = "key";
    /// `UInt8`, not null: an [`AttributeType`](crate::AttributeType) number.
    pub const TYPE: &str = "type";
    /// `Utf8`: set for string values.
    pub const STR: &str = "str";
    /// `Int64`: set for int values.
    pub const INT: &str = "int";
    /// `Float64`: set for double values.
    pub const DOUBLE: &str = "double";
    /// `Boolean`: set for bool values.
    pub const BOOL: &str = "bool";
    /// `Binary`: set for bytes values, and for arrays and key-value lists as
    /// an encoded OTLP `AnyValue`.
    pub const BYTES: &str = "bytes";
}

/// The type of an attribute value, stored in the attribute's `type` field.
///
/// The numbers are part of the block format: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AttributeType {
    /// An `AnyValue` with no value set.
    Empty = 0,
    /// `string_value`, in `str`.
    String = 1,
    /// `bool_value`, in `bool`.
    Bool = 2,
    /// `int_value`, in `int`.
    Int = 3,
    /// `double_value`, in `double`.
    Double = 4,
    /// `bytes_value`, in `bytes`.
    Bytes = 5,
    /// `array_value`, encoded `AnyValue` in `bytes`.
    Array = 6,
    /// `kvlist_value`, encoded `AnyValue` in `bytes`.
    KeyValueList = 7,
    /// `string_value_strindex` (an index into a profiles string table; never
    /// set by trace senders but kept for fidelity), in `int`.
    StringTableIndex = 8,
    /// The `KeyValue` has no `AnyValue` at all (as opposed to an empty one).
    Absent = 9,
    /// Stored blocks only (format version 2): the value is in the block's
    /// dedicated column for this key (see [`crate::layout`]); the entry
    /// keeps the key and its position.
    Dedicated = 10,
}

impl AttributeType {
    /// Decodes the stored number.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Empty,
            1 => Self::String,
            2 => Self::Bool,
            3 => Self::Int,
            4 => Self::Double,
            5 => Self::Bytes,
            6 => Self::Array,
            7 => Self::KeyValueList,
            8 => Self::StringTableIndex,
            9 => Self::Absent,
            10 => Self::Dedicated,
            _ => return None,
        })
    }
}

/// The struct fields of one attribute.
pub fn attribute_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new(attribute_fields::KEY, DataType::Utf8, false),
        Field::new(attribute_fields::TYPE, DataType::UInt8, false),
        Field::new(attribute_fields::STR, DataType::Utf8, true),
        Field::new(attribute_fields::INT, DataType::Int64, true),
        Field::new(attribute_fields::DOUBLE, DataType::Float64, true),
        Field::new(attribute_fields::BOOL, DataType::Boolean, true),
        Field::new(attribute_fields::BYTES, DataType::Binary, true),
    ])
}

/// `List<Struct<attribute>>`, the type of every attribute column.
pub fn attribute_list_type() -> DataType {
    DataType::List(Arc::new(attribute_item_field()))
}

/// The list item field of an attribute list.
pub fn attribute_item_field() -> Field {
    Field::new("item", DataType::Struct(attribute_struct_fields()), false)
}

/// The struct fields of one span event.
pub fn event_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("time_unix_nano", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", attribute_list_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

/// The struct fields of one span link.
pub fn link_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("flags", DataType::UInt32, false),
        Field::new("attributes", attribute_list_type(), false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        false,
    )))
}

static SPAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use columns::*;
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), false),
        Field::new(PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(TRACE_STATE, DataType::Utf8, false),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(NAME, DataType::Utf8, false),
        Field::new(KIND, DataType::Int32, false),
        Field::new(
            START_TIME,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(DURATION_NANOS, DataType::Int64, false),
        Field::new(STATUS_CODE, DataType::Int32, false),
        Field::new(STATUS_MESSAGE, DataType::Utf8, false),
        Field::new(ATTRIBUTES, attribute_list_type(), false),
        Field::new(DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(EVENTS, list_of(event_struct_fields()), false),
        Field::new(DROPPED_EVENTS_COUNT, DataType::UInt32, false),
        Field::new(LINKS, list_of(link_struct_fields()), false),
        Field::new(DROPPED_LINKS_COUNT, DataType::UInt32, false),
        Field::new(SERVICE_NAME, DataType::Utf8, true),
        Field::new(RESOURCE_ATTRIBUTES, attribute_list_type(), false),
        Field::new(RESOURCE_DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(RESOURCE_SCHEMA_URL, DataType::Utf8, false),
        Field::new(RESOURCE_ENTITY_REFS, DataType::Binary, true),
        Field::new(SCOPE_NAME, DataType::Utf8, false),
        Field::new(SCOPE_VERSION, DataType::Utf8, false),
        Field::new(SCOPE_ATTRIBUTES, attribute_list_type(), false),
        Field::new(SCOPE_DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(SCOPE_SCHEMA_URL, DataType::Utf8, false),
    ]))
});

/// The Arrow schema of a span row.
pub fn span_schema() -> SchemaRef {
    Arc::clone(&SPAN_SCHEMA)
}
