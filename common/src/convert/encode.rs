//! OTLP → Arrow: flattens `ResourceSpans` into span rows.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder,
    Int64Builder, ListArray, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder,
    UInt8Builder, UInt32Builder, UInt64Builder,
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

impl SpanBatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            parent_span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            name: StringBuilder::new(),
            kind: Int32Builder::new(),
            start_time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            duration_nanos: Int64Builder::new(),
            status_code: Int32Builder::new(),
            status_message: StringBuilder::new(),
            attributes: AttributeListBuilder::default(),
            dropped_attributes_count: UInt32Builder::new(),
            events: EventListBuilder::default(),
            dropped_events_count: UInt32Builder::new(),
            links: LinkListBuilder::default(),
            dropped_links_count: UInt32Builder::new(),
            service_name: StringBuilder::new(),
            resource_attributes: AttributeListBuilder::default(),
            resource_dropped_attributes_count: UInt32Builder::new(),
            resource_schema_url: StringBuilder::new(),
            resource_entity_refs: BinaryBuilder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            scope_attributes: AttributeListBuilder::default(),
            scope_dropped_attributes_count: UInt32Builder::new(),
            scope_schema_url: StringBuilder::new(),
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
    let mut builder = SpanBatchBuilder::new();
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

impl Default for AttributeListBuilder {
    fn default() -> Self {
        Self {
            offsets: Offsets::default(),
            key: StringBuilder::new(),
            value_type: UInt8Builder::new(),
            str: StringBuilder::new(),
            int: Int64Builder::new(),
            double: Float64Builder::new(),
            bool: BooleanBuilder::new(),
            bytes: BinaryBuilder::new(),
        }
    }
}

impl AttributeListBuilder {
    fn append_row(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.append_attribute(kv);
        }
        self.offsets.push_len(attributes.len());
    }

    fn append_attribute(&mut self, kv: &KeyValue) {
        self.key.append_value(&kv.key);
        let (value_type, str, int, double, bool, bytes): (
            AttributeType,
            Option<&str>,
            Option<i64>,
            Option<f64>,
            Option<bool>,
            Option<std::borrow::Cow<'_, [u8]>>,
        ) = match kv.value.as_ref().map(|v| v.value.as_ref()) {
            None => (AttributeType::Absent, None, None, None, None, None),
            Some(None) => (AttributeType::Empty, None, None, None, None, None),
            Some(Some(any_value::Value::StringValue(s))) => {
                (AttributeType::String, Some(s), None, None, None, None)
            }
            Some(Some(any_value::Value::BoolValue(b))) => {
                (AttributeType::Bool, None, None, None, Some(*b), None)
            }
            Some(Some(any_value::Value::IntValue(i))) => {
                (AttributeType::Int, None, Some(*i), None, None, None)
            }
            Some(Some(any_value::Value::StringValueStrindex(i))) => (
                AttributeType::StringTableIndex,
                None,
                Some(i64::from(*i)),
                None,
                None,
                None,
            ),
            Some(Some(any_value::Value::DoubleValue(d))) => {
                (AttributeType::Double, None, None, Some(*d), None, None)
            }
            Some(Some(any_value::Value::BytesValue(b))) => (
                AttributeType::Bytes,
                None,
                None,
                None,
                None,
                Some(std::borrow::Cow::Borrowed(b.as_slice())),
            ),
            Some(Some(value @ any_value::Value::ArrayValue(_))) => (
                AttributeType::Array,
                None,
                None,
                None,
                None,
                Some(std::borrow::Cow::Owned(encode_any_value(value))),
            ),
            Some(Some(value @ any_value::Value::KvlistValue(_))) => (
                AttributeType::KeyValueList,
                None,
                None,
                None,
                None,
                Some(std::borrow::Cow::Owned(encode_any_value(value))),
            ),
        };
        self.value_type.append_value(value_type as u8);
        self.str.append_option(str);
        self.int.append_option(int);
        self.double.append_option(double);
        self.bool.append_option(bool);
        self.bytes.append_option(bytes);
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

impl Default for EventListBuilder {
    fn default() -> Self {
        Self {
            offsets: Offsets::default(),
            time_unix_nano: UInt64Builder::new(),
            name: StringBuilder::new(),
            attributes: AttributeListBuilder::default(),
            dropped_attributes_count: UInt32Builder::new(),
        }
    }
}

impl EventListBuilder {
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

impl Default for LinkListBuilder {
    fn default() -> Self {
        Self {
            offsets: Offsets::default(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            attributes: AttributeListBuilder::default(),
            dropped_attributes_count: UInt32Builder::new(),
        }
    }
}

impl LinkListBuilder {
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
