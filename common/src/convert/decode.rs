//! Arrow → OTLP: regroups span rows into `ResourceSpans` / `ScopeSpans`.

use std::collections::HashMap;

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, StructArray, TimestampNanosecondArray,
    UInt8Array, UInt32Array, UInt64Array,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use crate::error::{Error, Result};
use crate::schema::{AttributeType, attribute_fields, columns};

/// Converts span rows back into OTLP, grouping spans that share a resource
/// and scope. Groups appear in order of their first span; spans keep row order.
pub fn batches_to_resource_spans(batches: &[RecordBatch]) -> Result<Vec<ResourceSpans>> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resource_index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut scope_index: HashMap<(usize, Vec<u8>), usize> = HashMap::new();

    for batch in batches {
        let cols = SpanColumns::new(batch)?;
        for row in 0..batch.num_rows() {
            let (resource, resource_schema_url) = cols.resource(row)?;
            let (scope, scope_schema_url) = cols.scope(row)?;
            let span = cols.span(row)?;

            let mut resource_key = resource.encode_to_vec();
            resource_key.extend_from_slice(resource_schema_url.as_bytes());
            let r = *resource_index.entry(resource_key).or_insert_with(|| {
                out.push(ResourceSpans {
                    resource: Some(resource),
                    scope_spans: Vec::new(),
                    schema_url: resource_schema_url.to_owned(),
                });
                out.len() - 1
            });

            let mut scope_key = scope.encode_to_vec();
            scope_key.extend_from_slice(scope_schema_url.as_bytes());
            let scopes = &mut out[r].scope_spans;
            let s = *scope_index.entry((r, scope_key)).or_insert_with(|| {
                scopes.push(ScopeSpans {
                    scope: Some(scope),
                    spans: Vec::new(),
                    schema_url: scope_schema_url.to_owned(),
                });
                scopes.len() - 1
            });
            scopes[s].spans.push(span);
        }
    }
    Ok(out)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::corrupt(format!("span batch has no column {name:?}")))
}

fn typed<'a, T: 'static>(array: &'a dyn Array, name: &str) -> Result<&'a T> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::corrupt(format!(
            "column {name:?} has unexpected type {}",
            array.data_type()
        ))
    })
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    typed(column(batch, name)?, name)
}

fn struct_child<'a, T: 'static>(s: &'a StructArray, name: &str) -> Result<&'a T> {
    let child = s
        .column_by_name(name)
        .ok_or_else(|| Error::corrupt(format!("struct has no field {name:?}")))?;
    typed(child.as_ref(), name)
}

fn list_values<'a>(list: &'a ListArray, name: &str) -> Result<&'a StructArray> {
    list.values()
        .as_struct_opt()
        .ok_or_else(|| Error::corrupt(format!("{name:?} items are not structs")))
}

fn fixed_or_empty(array: &FixedSizeBinaryArray, row: usize) -> Vec<u8> {
    if array.is_null(row) {
        Vec::new()
    } else {
        array.value(row).to_vec()
    }
}

fn list_range(list: &ListArray, row: usize) -> std::ops::Range<usize> {
    let offsets = list.value_offsets();
    // Offsets of a valid ListArray are non-negative and monotonic.
    let start = usize::try_from(offsets[row]).unwrap_or(0);
    let end = usize::try_from(offsets[row + 1]).unwrap_or(start);
    start..end
}

/// Typed views of one batch's columns.
struct SpanColumns<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent_span_id: &'a FixedSizeBinaryArray,
    trace_state: &'a StringArray,
    flags: &'a UInt32Array,
    name: &'a StringArray,
    kind: &'a Int32Array,
    start_time: &'a TimestampNanosecondArray,
    duration_nanos: &'a Int64Array,
    status_code: &'a Int32Array,
    status_message: &'a StringArray,
    attributes: AttributeReader<'a>,
    dropped_attributes_count: &'a UInt32Array,
    events: EventReader<'a>,
    dropped_events_count: &'a UInt32Array,
    links: LinkReader<'a>,
    dropped_links_count: &'a UInt32Array,
    resource_attributes: AttributeReader<'a>,
    resource_dropped_attributes_count: &'a UInt32Array,
    resource_schema_url: &'a StringArray,
    resource_entity_refs: &'a BinaryArray,
    scope_name: &'a StringArray,
    scope_version: &'a StringArray,
    scope_attributes: AttributeReader<'a>,
    scope_dropped_attributes_count: &'a UInt32Array,
    scope_schema_url: &'a StringArray,
}

impl<'a> SpanColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self> {
        use columns::*;
        let list = |name: &str| col::<ListArray>(batch, name);
        Ok(Self {
            trace_id: col(batch, TRACE_ID)?,
            span_id: col(batch, SPAN_ID)?,
            parent_span_id: col(batch, PARENT_SPAN_ID)?,
            trace_state: col(batch, TRACE_STATE)?,
            flags: col(batch, FLAGS)?,
            name: col(batch, NAME)?,
            kind: col(batch, KIND)?,
            start_time: col(batch, START_TIME)?,
            duration_nanos: col(batch, DURATION_NANOS)?,
            status_code: col(batch, STATUS_CODE)?,
            status_message: col(batch, STATUS_MESSAGE)?,
            attributes: AttributeReader::new(list(ATTRIBUTES)?)?,
            dropped_attributes_count: col(batch, DROPPED_ATTRIBUTES_COUNT)?,
            events: EventReader::new(list(EVENTS)?)?,
            dropped_events_count: col(batch, DROPPED_EVENTS_COUNT)?,
            links: LinkReader::new(list(LINKS)?)?,
            dropped_links_count: col(batch, DROPPED_LINKS_COUNT)?,
            resource_attributes: AttributeReader::new(list(RESOURCE_ATTRIBUTES)?)?,
            resource_dropped_attributes_count: col(batch, RESOURCE_DROPPED_ATTRIBUTES_COUNT)?,
            resource_schema_url: col(batch, RESOURCE_SCHEMA_URL)?,
            resource_entity_refs: col(batch, RESOURCE_ENTITY_REFS)?,
            scope_name: col(batch, SCOPE_NAME)?,
            scope_version: col(batch, SCOPE_VERSION)?,
            scope_attributes: AttributeReader::new(list(SCOPE_ATTRIBUTES)?)?,
            scope_dropped_attributes_count: col(batch, SCOPE_DROPPED_ATTRIBUTES_COUNT)?,
            scope_schema_url: col(batch, SCOPE_SCHEMA_URL)?,
        })
    }

    fn span(&self, row: usize) -> Result<Span> {
        let start = self.start_time.value(row) as u64;
        let end = start.wrapping_add(self.duration_nanos.value(row) as u64);
        let status_code = self.status_code.value(row);
        let status_message = self.status_message.value(row);
        Ok(Span {
            trace_id: self.trace_id.value(row).to_vec(),
            span_id: self.span_id.value(row).to_vec(),
            trace_state: self.trace_state.value(row).to_owned(),
            parent_span_id: fixed_or_empty(self.parent_span_id, row),
            flags: self.flags.value(row),
            name: self.name.value(row).to_owned(),
            kind: self.kind.value(row),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: self.attributes.row(row)?,
            dropped_attributes_count: self.dropped_attributes_count.value(row),
            events: self.events.row(row)?,
            dropped_events_count: self.dropped_events_count.value(row),
            links: self.links.row(row)?,
            dropped_links_count: self.dropped_links_count.value(row),
            status: Some(Status {
                message: status_message.to_owned(),
                code: status_code,
            }),
        })
    }

    fn resource(&self, row: usize) -> Result<(Resource, &'a str)> {
        let entity_refs = if self.resource_entity_refs.is_null(row) {
            Vec::new()
        } else {
            Resource::decode(self.resource_entity_refs.value(row))
                .map_err(|e| Error::corrupt(format!("resource entity refs: {e}")))?
                .entity_refs
        };
        Ok((
            Resource {
                attributes: self.resource_attributes.row(row)?,
                dropped_attributes_count: self.resource_dropped_attributes_count.value(row),
                entity_refs,
            },
            self.resource_schema_url.value(row),
        ))
    }

    fn scope(&self, row: usize) -> Result<(InstrumentationScope, &'a str)> {
        Ok((
            InstrumentationScope {
                name: self.scope_name.value(row).to_owned(),
                version: self.scope_version.value(row).to_owned(),
                attributes: self.scope_attributes.row(row)?,
                dropped_attributes_count: self.scope_dropped_attributes_count.value(row),
            },
            self.scope_schema_url.value(row),
        ))
    }
}

/// Reads `List<Struct<attribute>>` rows.
struct AttributeReader<'a> {
    list: &'a ListArray,
    key: &'a StringArray,
    value_type: &'a UInt8Array,
    str: &'a StringArray,
    int: &'a Int64Array,
    double: &'a Float64Array,
    bool: &'a BooleanArray,
    bytes: &'a BinaryArray,
}

impl<'a> AttributeReader<'a> {
    fn new(list: &'a ListArray) -> Result<Self> {
        let values = list_values(list, "attributes")?;
        use attribute_fields::*;
        Ok(Self {
            list,
            key: struct_child(values, KEY)?,
            value_type: struct_child(values, TYPE)?,
            str: struct_child(values, STR)?,
            int: struct_child(values, INT)?,
            double: struct_child(values, DOUBLE)?,
            bool: struct_child(values, BOOL)?,
            bytes: struct_child(values, BYTES)?,
        })
    }

    fn row(&self, row: usize) -> Result<Vec<KeyValue>> {
        list_range(self.list, row)
            .map(|i| self.attribute(i))
            .collect()
    }

    fn attribute(&self, i: usize) -> Result<KeyValue> {
        let raw_type = self.value_type.value(i);
        let value_type = AttributeType::from_u8(raw_type)
            .ok_or_else(|| Error::corrupt(format!("unknown attribute type {raw_type}")))?;
        let missing = || Error::corrupt(format!("attribute {:?} has no value", self.key.value(i)));
        let value = match value_type {
            AttributeType::Absent => {
                return Ok(KeyValue {
                    key: self.key.value(i).to_owned(),
                    value: None,
                    ..KeyValue::default()
                });
            }
            AttributeType::Empty => None,
            AttributeType::Dedicated => {
                return Err(Error::corrupt(format!(
                    "attribute {:?} refers to a dedicated column: convert stored rows to the canonical form first",
                    self.key.value(i)
                )));
            }
            AttributeType::String => Some(any_value::Value::StringValue(
                self.str
                    .is_valid(i)
                    .then(|| self.str.value(i).to_owned())
                    .ok_or_else(missing)?,
            )),
            AttributeType::Bool => Some(any_value::Value::BoolValue(
                self.bool
                    .is_valid(i)
                    .then(|| self.bool.value(i))
                    .ok_or_else(missing)?,
            )),
            AttributeType::Int => Some(any_value::Value::IntValue(
                self.int
                    .is_valid(i)
                    .then(|| self.int.value(i))
                    .ok_or_else(missing)?,
            )),
            AttributeType::StringTableIndex => Some(any_value::Value::StringValueStrindex(
                self.int
                    .is_valid(i)
                    .then(|| i32::try_from(self.int.value(i)).ok())
                    .flatten()
                    .ok_or_else(missing)?,
            )),
            AttributeType::Double => Some(any_value::Value::DoubleValue(
                self.double
                    .is_valid(i)
                    .then(|| self.double.value(i))
                    .ok_or_else(missing)?,
            )),
            AttributeType::Bytes => Some(any_value::Value::BytesValue(
                self.bytes
                    .is_valid(i)
                    .then(|| self.bytes.value(i).to_vec())
                    .ok_or_else(missing)?,
            )),
            AttributeType::Array | AttributeType::KeyValueList => {
                let encoded = self
                    .bytes
                    .is_valid(i)
                    .then(|| self.bytes.value(i))
                    .ok_or_else(missing)?;
                AnyValue::decode(encoded)
                    .map_err(|e| Error::corrupt(format!("nested attribute value: {e}")))?
                    .value
            }
        };
        Ok(KeyValue {
            key: self.key.value(i).to_owned(),
            value: Some(AnyValue { value }),
            ..KeyValue::default()
        })
    }
}

/// Reads the `events` column.
struct EventReader<'a> {
    list: &'a ListArray,
    time_unix_nano: &'a UInt64Array,
    name: &'a StringArray,
    attributes: AttributeReader<'a>,
    dropped_attributes_count: &'a UInt32Array,
}

impl<'a> EventReader<'a> {
    fn new(list: &'a ListArray) -> Result<Self> {
        let values = list_values(list, "events")?;
        Ok(Self {
            list,
            time_unix_nano: struct_child(values, "time_unix_nano")?,
            name: struct_child(values, "name")?,
            attributes: AttributeReader::new(struct_child(values, "attributes")?)?,
            dropped_attributes_count: struct_child(values, "dropped_attributes_count")?,
        })
    }

    fn row(&self, row: usize) -> Result<Vec<span::Event>> {
        list_range(self.list, row)
            .map(|i| {
                Ok(span::Event {
                    time_unix_nano: self.time_unix_nano.value(i),
                    name: self.name.value(i).to_owned(),
                    attributes: self.attributes.row(i)?,
                    dropped_attributes_count: self.dropped_attributes_count.value(i),
                })
            })
            .collect()
    }
}

/// Reads the `links` column.
struct LinkReader<'a> {
    list: &'a ListArray,
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    trace_state: &'a StringArray,
    flags: &'a UInt32Array,
    attributes: AttributeReader<'a>,
    dropped_attributes_count: &'a UInt32Array,
}

impl<'a> LinkReader<'a> {
    fn new(list: &'a ListArray) -> Result<Self> {
        let values = list_values(list, "links")?;
        Ok(Self {
            list,
            trace_id: struct_child(values, "trace_id")?,
            span_id: struct_child(values, "span_id")?,
            trace_state: struct_child(values, "trace_state")?,
            flags: struct_child(values, "flags")?,
            attributes: AttributeReader::new(struct_child(values, "attributes")?)?,
            dropped_attributes_count: struct_child(values, "dropped_attributes_count")?,
        })
    }

    fn row(&self, row: usize) -> Result<Vec<span::Link>> {
        list_range(self.list, row)
            .map(|i| {
                Ok(span::Link {
                    trace_id: fixed_or_empty(self.trace_id, i),
                    span_id: fixed_or_empty(self.span_id, i),
                    trace_state: self.trace_state.value(i).to_owned(),
                    attributes: self.attributes.row(i)?,
                    dropped_attributes_count: self.dropped_attributes_count.value(i),
                    flags: self.flags.value(i),
                })
            })
            .collect()
    }
}
