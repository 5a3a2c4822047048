//! OTLP → Arrow: flattens `ResourceSpans` into span rows.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder,
    Int32Builder, Int64Builder, ListArray, RecordBatch, StringBuilder, StructArray,
    TimestampNanosecondBuilder, UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::Field;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, span};
use prost::Message;

use crate::error::{Error, Result};
use crate::schema::{
    AttributeType, attribute_item_field, attribute_struct_fields, event_struct_fields,
    link_struct_fields, span_schema,
};

/// The resource attribute whose string value fills the `service_name` column.
pub const SERVICE_NAME_KEY: &str = "service.name";

/// Checks what the span schema requires of a request before any row is built:
/// 16-byte trace IDs, 8-byte span IDs, and parent and link IDs that are either
/// empty or the right length. Errors name the offending span so a client can
/// find it.
pub fn validate_request(request: &ExportTraceServiceRequest) -> Result<()> {
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            for (i, span) in scope_spans.spans.iter().enumerate() {
                validate_span(span).map_err(|why| {
                    Error::invalid_input(format!(
                        "resourceSpans[{r}].scopeSpans[{s}].spans[{i}]: {why}"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

fn validate_span(span: &Span) -> std::result::Result<(), String> {
    let check = |what: &str, bytes: &[u8], len: usize, may_be_empty: bool| {
        if bytes.len() == len || (may_be_empty && bytes.is_empty()) {
            Ok(())
        } else {
            Err(format!("{what} must be {len} bytes, got {}", bytes.len()))
        }
    };
    check("traceId", &span.trace_id, 16, false)?;
    if span.trace_id.iter().all(|b| *b == 0) {
        return Err("traceId must not be all zeros".to_owned());
    }
    check("spanId", &span.span_id, 8, false)?;
    check("parentSpanId", &span.parent_span_id, 8, true)?;
    for link in &span.links {
        check("links.traceId", &link.trace_id, 16, true)?;
        check("links.spanId", &link.span_id, 8, true)?;
    }
    Ok(())
}

/// Builds span-schema [`RecordBatch`]es from OTLP requests.
///
/// Append any number of requests, then [`finish`](Self::finish). Call
/// [`validate_request`] first: the builder assumes valid IDs.
#[derive(Debug)]
pub struct SpanBatchBuilder {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: Int32Builder,
    start_time: TimestampNanosecondBuilder,
    duration_nanos: Int64Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    attributes: AttributeListBuilder,
    dropped_attributes_count: UInt32Builder,
    events: EventListBuilder,
    dropped_events_count: UInt32Builder,
    links: LinkListBuilder,
    dropped_links_count: UInt32Builder,
    service_name: StringBuilder,
    resource_attributes: AttributeListBuilder,
    resource_dropped_attributes_count: UInt32Builder,
    resource_schema_url: StringBuilder,
    resource_entity_refs: BinaryBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: AttributeListBuilder,
    scope_dropped_attributes_count: UInt32Builder,
    scope_schema_url: StringBuilder,
    rows: usize,
}

impl Default for SpanBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// How many rows and list items a request will produce, so builders can be
/// sized exactly: a batch holds its builders' allocations for as long as it
/// sits in the live buffer, and Arrow's default capacities (1,024 rows per
/// column) would make a one-span request cost hundreds of KiB.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Span rows.
    pub spans: usize,
    /// Span attributes over all spans.
    pub span_attributes: usize,
    /// Resource attributes, repeated for every span of the resource.
    pub resource_attributes: usize,
    /// Scope attributes, repeated for every span of the scope.
    pub scope_attributes: usize,
    /// Events over all spans.
    pub events: usize,
    /// Event attributes over all events.
    pub event_attributes: usize,
    /// Links over all spans.
    pub links: usize,
    /// Link attributes over all links.
    pub link_attributes: usize,
}

impl Capacity {
    /// Counts what `request` will append.
    pub fn of(request: &ExportTraceServiceRequest) -> Self {
        let mut c = Self::default();
        for rs in &request.resource_spans {
            let resource = rs.resource.as_ref().map_or(0, |r| r.attributes.len());
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().map_or(0, |s| s.attributes.len());
                let n = ss.spans.len();
                c.spans += n;
                c.resource_attributes += resource * n;
                c.scope_attributes += scope * n;
                for span in &ss.spans {
                    c.span_attributes += span.attributes.len();
                    c.events += span.events.len();
                    c.event_attributes += span
                        .events
                        .iter()
                        .map(|e| e.attributes.len())
                        .sum::<usize>();
                    c.links += span.links.len();
                    c.link_attributes +=
                        span.links.iter().map(|l| l.attributes.len()).sum::<usize>();
                }
            }
        }
        c
    }
}

/// Bytes reserved per string value before a builder has to grow.
const STRING_BYTES_HINT: usize = 16;

fn strings(items: usize) -> StringBuilder {
    StringBuilder::with_capacity(items, items * STRING_BYTES_HINT)
}

impl SpanBatchBuilder {
    /// An empty builder with Arrow's default capacities, for appending an
    /// unknown number of spans.
    pub fn new() -> Self {
        Self::with_capacity(Capacity {
            spans: 1024,
            ..Capacity::default()
        })
    }

    /// An empty builder sized for `capacity`.
    pub fn with_capacity(capacity: Capacity) -> Self {
        let n = capacity.spans;
        Self {
            trace_id: FixedSizeBinaryBuilder::with_capacity(n, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            parent_span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            trace_state: strings(n),
            flags: UInt32Builder::with_capacity(n),
            name: strings(n),
            kind: Int32Builder::with_capacity(n),
            start_time: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            duration_nanos: Int64Builder::with_capacity(n),
            status_code: Int32Builder::with_capacity(n),
            status_message: strings(n),
            attributes: AttributeListBuilder::with_capacity(n, capacity.span_attributes),
            dropped_attributes_count: UInt32Builder::with_capacity(n),
            events: EventListBuilder::with_capacity(n, capacity.events, capacity.event_attributes),
            dropped_events_count: UInt32Builder::with_capacity(n),
            links: LinkListBuilder::with_capacity(n, capacity.links, capacity.link_attributes),
            dropped_links_count: UInt32Builder::with_capacity(n),
            service_name: strings(n),
            resource_attributes: AttributeListBuilder::with_capacity(
                n,
                capacity.resource_attributes,
            ),
            resource_dropped_attributes_count: UInt32Builder::with_capacity(n),
            resource_schema_url: strings(n),
            resource_entity_refs: BinaryBuilder::with_capacity(n, 0),
            scope_name: strings(n),
            scope_version: strings(n),
            scope_attributes: AttributeListBuilder::with_capacity(n, capacity.scope_attributes),
            scope_dropped_attributes_count: UInt32Builder::with_capacity(n),
            scope_schema_url: strings(n),
            rows: 0,
        }
    }

    /// Number of span rows appended so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no span has been appended.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends every span of a request.
    pub fn append_request(&mut self, request: &ExportTraceServiceRequest) {
        for resource_spans in &request.resource_spans {
            self.append_resource_spans(resource_spans);
        }
    }

    /// Appends every span of one `ResourceSpans`.
    pub fn append_resource_spans(&mut self, resource_spans: &ResourceSpans) {
        let default_resource = Resource::default();
        let resource = resource_spans
            .resource
            .as_ref()
            .unwrap_or(&default_resource);
        let service_name = resource
            .attributes
            .iter()
            .find(|kv| kv.key == SERVICE_NAME_KEY)
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(name)) => Some(name.as_str()),
                    _ => None,
                },
            );
        let entity_refs = (!resource.entity_refs.is_empty()).then(|| {
            Resource {
                entity_refs: resource.entity_refs.clone(),
                ..Resource::default()
            }
            .encode_to_vec()
        });

        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.clone().unwrap_or_default();
            for span in &scope_spans.spans {
                self.append_span(span);
                self.service_name.append_option(service_name);
                self.resource_attributes.append_row(&resource.attributes);
                self.resource_dropped_attributes_count
                    .append_value(resource.dropped_attributes_count);
                self.resource_schema_url
                    .append_value(&resource_spans.schema_url);
                self.resource_entity_refs
                    .append_option(entity_refs.as_deref());
                self.scope_name.append_value(&scope.name);
                self.scope_version.append_value(&scope.version);
                self.scope_attributes.append_row(&scope.attributes);
                self.scope_dropped_attributes_count
                    .append_value(scope.dropped_attributes_count);
                self.scope_schema_url.append_value(&scope_spans.schema_url);
                self.rows += 1;
            }
        }
    }

    fn append_span(&mut self, span: &Span) {
        // Lengths were checked by `validate_request`; appending a wrong length
        // would fail here rather than corrupt the batch.
        append_fixed(&mut self.trace_id, &span.trace_id);
        append_fixed(&mut self.span_id, &span.span_id);
        append_fixed_or_null(&mut self.parent_span_id, &span.parent_span_id);
        self.trace_state.append_value(&span.trace_state);
        self.flags.append_value(span.flags);
        self.name.append_value(&span.name);
        self.kind.append_value(span.kind);
        // Timestamps are stored bit-for-bit: OTLP's fixed64 reinterpreted as
        // Arrow's i64, and the duration as the wrapping difference, so even
        // nonsensical times (end before start, year 2300) round-trip exactly.
        self.start_time
            .append_value(span.start_time_unix_nano as i64);
        self.duration_nanos.append_value(
            span.end_time_unix_nano
                .wrapping_sub(span.start_time_unix_nano) as i64,
        );
        let status = span.status.clone().unwrap_or_default();
        self.status_code.append_value(status.code);
        self.status_message.append_value(&status.message);
        self.attributes.append_row(&span.attributes);
        self.dropped_attributes_count
            .append_value(span.dropped_attributes_count);
        self.events.append_row(&span.events);
        self.dropped_events_count
            .append_value(span.dropped_events_count);
        self.links.append_row(&span.links);
        self.dropped_links_count
            .append_value(span.dropped_links_count);
    }

    /// Finishes the rows appended so far into a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.duration_nanos.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.attributes.finish()?),
            Arc::new(self.dropped_attributes_count.finish()),
            Arc::new(self.events.finish()?),
            Arc::new(self.dropped_events_count.finish()),
            Arc::new(self.links.finish()?),
            Arc::new(self.dropped_links_count.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.resource_attributes.finish()?),
            Arc::new(self.resource_dropped_attributes_count.finish()),
            Arc::new(self.resource_schema_url.finish()),
            Arc::new(self.resource_entity_refs.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.scope_attributes.finish()?),
            Arc::new(self.scope_dropped_attributes_count.finish()),
            Arc::new(self.scope_schema_url.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(span_schema(), columns).map_err(Error::arrow("building span batch"))
    }
}

/// Converts one request into a span batch, validating it first.
pub fn request_to_batch(request: &ExportTraceServiceRequest) -> Result<RecordBatch> {
    validate_request(request)?;
    let mut builder = SpanBatchBuilder::with_capacity(Capacity::of(request));
    builder.append_request(request);
    builder.finish()
}

fn append_fixed(builder: &mut FixedSizeBinaryBuilder, bytes: &[u8]) {
    if builder.append_value(bytes).is_err() {
        // Unreachable after validation; keep the row count consistent anyway.
        builder.append_null();
    }
}

fn append_fixed_or_null(builder: &mut FixedSizeBinaryBuilder, bytes: &[u8]) {
    if bytes.is_empty() {
        builder.append_null();
    } else {
        append_fixed(builder, bytes);
    }
}

/// List offsets under construction.
///
/// A batch whose lists would exceed `i32::MAX` entries (far beyond any request
/// the receivers accept) is reported as an error at `finish` instead of
/// panicking in Arrow's offset checks.
#[derive(Debug)]
struct Offsets {
    values: Vec<i32>,
    overflowed: bool,
}

impl Default for Offsets {
    fn default() -> Self {
        Self {
            values: vec![0],
            overflowed: false,
        }
    }
}

impl Offsets {
    fn with_capacity(rows: usize) -> Self {
        let mut values = Vec::with_capacity(rows + 1);
        values.push(0);
        Self {
            values,
            overflowed: false,
        }
    }

    fn push_len(&mut self, len: usize) {
        let last = self.values.last().copied().unwrap_or(0);
        let next = i32::try_from(len)
            .ok()
            .and_then(|len| last.checked_add(len));
        match next {
            Some(next) => self.values.push(next),
            None => {
                self.overflowed = true;
                self.values.push(last);
            }
        }
    }

    fn finish(&mut self) -> Result<OffsetBuffer<i32>> {
        let taken = std::mem::take(self);
        if taken.overflowed {
            return Err(Error::invalid_input("too many list entries for one batch"));
        }
        Ok(OffsetBuffer::new(taken.values.into()))
    }
}

/// Builds `List<Struct<attribute>>` columns.
#[derive(Debug)]
struct AttributeListBuilder {
    offsets: Offsets,
    key: StringBuilder,
    value_type: UInt8Builder,
    str: StringBuilder,
    int: Int64Builder,
    double: Float64Builder,
    bool: BooleanBuilder,
    bytes: BinaryBuilder,
}

impl AttributeListBuilder {
    fn with_capacity(rows: usize, items: usize) -> Self {
        Self {
            offsets: Offsets::with_capacity(rows),
            key: strings(items),
            value_type: UInt8Builder::with_capacity(items),
            str: strings(items),
            int: Int64Builder::with_capacity(items),
            double: Float64Builder::with_capacity(items),
            bool: BooleanBuilder::with_capacity(items),
            bytes: BinaryBuilder::with_capacity(items, 0),
        }
    }

    fn append_row(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.append_attribute(kv);
        }
        self.offsets.push_len(attributes.len());
    }

    fn append_attribute(&mut self, kv: &KeyValue) {
        use any_value::Value;
        self.key.append_value(&kv.key);
        // Each value fills the one slot of its type; the others get a null
        // below, so every child array stays as long as `key`.
        let value_type = match kv.value.as_ref().map(|v| v.value.as_ref()) {
            None => AttributeType::Absent,
            Some(None) => AttributeType::Empty,
            Some(Some(Value::StringValue(s))) => {
                self.str.append_value(s);
                AttributeType::String
            }
            Some(Some(Value::BoolValue(b))) => {
                self.bool.append_value(*b);
                AttributeType::Bool
            }
            Some(Some(Value::IntValue(i))) => {
                self.int.append_value(*i);
                AttributeType::Int
            }
            Some(Some(Value::StringValueStrindex(i))) => {
                self.int.append_value(i64::from(*i));
                AttributeType::StringTableIndex
            }
            Some(Some(Value::DoubleValue(d))) => {
                self.double.append_value(*d);
                AttributeType::Double
            }
            Some(Some(Value::BytesValue(b))) => {
                self.bytes.append_value(b);
                AttributeType::Bytes
            }
            Some(Some(value @ Value::ArrayValue(_))) => {
                self.bytes.append_value(encode_any_value(value));
                AttributeType::Array
            }
            Some(Some(value @ Value::KvlistValue(_))) => {
                self.bytes.append_value(encode_any_value(value));
                AttributeType::KeyValueList
            }
        };
        self.value_type.append_value(value_type as u8);
        let len = self.key.len();
        if self.str.len() < len {
            self.str.append_null();
        }
        if self.int.len() < len {
            self.int.append_null();
        }
        if self.double.len() < len {
            self.double.append_null();
        }
        if self.bool.len() < len {
            self.bool.append_null();
        }
        if self.bytes.len() < len {
            self.bytes.append_null();
        }
    }

    fn finish(&mut self) -> Result<ListArray> {
        let values = StructArray::try_new(
            attribute_struct_fields(),
            vec![
                Arc::new(self.key.finish()),
                Arc::new(self.value_type.finish()),
                Arc::new(self.str.finish()),
                Arc::new(self.int.finish()),
                Arc::new(self.double.finish()),
                Arc::new(self.bool.finish()),
                Arc::new(self.bytes.finish()),
            ],
            None,
        )
        .map_err(Error::arrow("building attributes"))?;
        ListArray::try_new(
            Arc::new(attribute_item_field()),
            self.offsets.finish()?,
            Arc::new(values),
            None,
        )
        .map_err(Error::arrow("building attribute list"))
    }
}

fn encode_any_value(value: &any_value::Value) -> Vec<u8> {
    AnyValue {
        value: Some(value.clone()),
    }
    .encode_to_vec()
}

/// Builds the `events` column.
#[derive(Debug)]
struct EventListBuilder {
    offsets: Offsets,
    time_unix_nano: UInt64Builder,
    name: StringBuilder,
    attributes: AttributeListBuilder,
    dropped_attributes_count: UInt32Builder,
}

impl EventListBuilder {
    fn with_capacity(rows: usize, events: usize, attributes: usize) -> Self {
        Self {
            offsets: Offsets::with_capacity(rows),
            time_unix_nano: UInt64Builder::with_capacity(events),
            name: strings(events),
            attributes: AttributeListBuilder::with_capacity(events, attributes),
            dropped_attributes_count: UInt32Builder::with_capacity(events),
        }
    }

    fn append_row(&mut self, events: &[span::Event]) {
        for event in events {
            self.time_unix_nano.append_value(event.time_unix_nano);
            self.name.append_value(&event.name);
            self.attributes.append_row(&event.attributes);
            self.dropped_attributes_count
                .append_value(event.dropped_attributes_count);
        }
        self.offsets.push_len(events.len());
    }

    fn finish(&mut self) -> Result<ListArray> {
        let values = StructArray::try_new(
            event_struct_fields(),
            vec![
                Arc::new(self.time_unix_nano.finish()),
                Arc::new(self.name.finish()),
                Arc::new(self.attributes.finish()?),
                Arc::new(self.dropped_attributes_count.finish()),
            ],
            None,
        )
        .map_err(Error::arrow("building events"))?;
        list_of_structs(values, &mut self.offsets, "events")
    }
}

/// Builds the `links` column.
#[derive(Debug)]
struct LinkListBuilder {
    offsets: Offsets,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    attributes: AttributeListBuilder,
    dropped_attributes_count: UInt32Builder,
}

impl LinkListBuilder {
    fn with_capacity(rows: usize, links: usize, attributes: usize) -> Self {
        Self {
            offsets: Offsets::with_capacity(rows),
            trace_id: FixedSizeBinaryBuilder::with_capacity(links, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(links, 8),
            trace_state: strings(links),
            flags: UInt32Builder::with_capacity(links),
            attributes: AttributeListBuilder::with_capacity(links, attributes),
            dropped_attributes_count: UInt32Builder::with_capacity(links),
        }
    }

    fn append_row(&mut self, links: &[span::Link]) {
        for link in links {
            append_fixed_or_null(&mut self.trace_id, &link.trace_id);
            append_fixed_or_null(&mut self.span_id, &link.span_id);
            self.trace_state.append_value(&link.trace_state);
            self.flags.append_value(link.flags);
            self.attributes.append_row(&link.attributes);
            self.dropped_attributes_count
                .append_value(link.dropped_attributes_count);
        }
        self.offsets.push_len(links.len());
    }

    fn finish(&mut self) -> Result<ListArray> {
        let values = StructArray::try_new(
            link_struct_fields(),
            vec![
                Arc::new(self.trace_id.finish()),
                Arc::new(self.span_id.finish()),
                Arc::new(self.trace_state.finish()),
                Arc::new(self.flags.finish()),
                Arc::new(self.attributes.finish()?),
                Arc::new(self.dropped_attributes_count.finish()),
            ],
            None,
        )
        .map_err(Error::arrow("building links"))?;
        list_of_structs(values, &mut self.offsets, "links")
    }
}

fn list_of_structs(
    values: StructArray,
    offsets: &mut Offsets,
    what: &'static str,
) -> Result<ListArray> {
    let item = Field::new(
        "item",
        arrow::array::Array::data_type(&values).clone(),
        false,
    );
    ListArray::try_new(Arc::new(item), offsets.finish()?, Arc::new(values), None)
        .map_err(Error::arrow(format!("building {what} list")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    #[test]
    fn a_small_request_makes_a_small_batch() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET /".into(),
                        attributes: vec![KeyValue {
                            key: "http.method".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("GET".into())),
                            }),
                            ..KeyValue::default()
                        }],
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let batch = request_to_batch(&request).unwrap();
        // Sized to its content, not to Arrow's default 1,024 rows a column
        // (which costs ~300 KiB); what remains is ~60 arrays' 64-byte-aligned
        // buffers.
        let mut default_sized = SpanBatchBuilder::new();
        default_sized.append_request(&request);
        assert!(default_sized.finish().unwrap().get_array_memory_size() > 100 * 1024);
        assert!(
            batch.get_array_memory_size() < 16 * 1024,
            "{} bytes for one span",
            batch.get_array_memory_size()
        );
    }
}
