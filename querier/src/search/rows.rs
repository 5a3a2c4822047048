//! Reading TraceQL values out of stored span rows (Arrow), for the
//! evaluator.
//!
//! A batch holds rows of the stored form (see `strata_common::layout`),
//! projected to the columns a query needs; rows of one trace are adjacent.
//! [`Columns`] resolves the columns once per batch; [`TraceRows`] serves one
//! trace's rows to [`crate::traceql::eval::Evaluator`].

use std::borrow::Cow;
use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array,
    Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray, UInt8Array, UInt64Array,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use strata_common::block::{TraceEntry, pick_parent};
use strata_common::layout::{AttrScope, BlockLayout, structure};
use strata_common::schema::{AttributeType, attribute_fields, columns};

use super::plan::DirectKeys;
use crate::traceql::ast::{AttributeScope, Intrinsic};
use crate::traceql::eval::{Binding, NestedSet, SpanAccess, Value};

/// An attribute list column's parts.
struct AttributeList<'a> {
    list: &'a ListArray,
    keys: &'a StringArray,
    types: &'a UInt8Array,
    strs: &'a StringArray,
    ints: &'a Int64Array,
    doubles: &'a Float64Array,
    bools: &'a BooleanArray,
    bytes: &'a BinaryArray,
}

impl<'a> AttributeList<'a> {
    fn new(list: &'a ListArray) -> Option<Self> {
        let values: &StructArray = list.values().as_struct_opt()?;
        let child = |name: &str| values.column_by_name(name);
        Some(Self {
            list,
            keys: child(attribute_fields::KEY)?.as_string_opt()?,
            types: child(attribute_fields::TYPE)?.as_any().downcast_ref()?,
            strs: child(attribute_fields::STR)?.as_string_opt()?,
            ints: child(attribute_fields::INT)?.as_any().downcast_ref()?,
            doubles: child(attribute_fields::DOUBLE)?.as_any().downcast_ref()?,
            bools: child(attribute_fields::BOOL)?.as_any().downcast_ref()?,
            bytes: child(attribute_fields::BYTES)?.as_any().downcast_ref()?,
        })
    }

    /// The item index of `key` in list entry `row`: the first occurrence.
    fn find(&self, row: usize, key: &str) -> Option<usize> {
        if self.list.is_null(row) {
            return None;
        }
        let offsets = self.list.value_offsets();
        (offsets[row] as usize..offsets[row + 1] as usize).find(|&i| self.keys.value(i) == key)
    }

    /// The value of item `i`; `dedicated` reads a moved value.
    fn value(&self, i: usize, dedicated: impl FnOnce() -> Value<'a>) -> Value<'a> {
        let ty = AttributeType::from_u8(self.types.value(i));
        match ty {
            Some(AttributeType::String) if self.strs.is_valid(i) => {
                Value::Str(Cow::Borrowed(self.strs.value(i)))
            }
            Some(AttributeType::Int) if self.ints.is_valid(i) => Value::Int(self.ints.value(i)),
            Some(AttributeType::Double) if self.doubles.is_valid(i) => {
                Value::Float(self.doubles.value(i))
            }
            Some(AttributeType::Bool) if self.bools.is_valid(i) => Value::Bool(self.bools.value(i)),
            Some(AttributeType::Array) if self.bytes.is_valid(i) => {
                array_value(self.bytes.value(i))
            }
            Some(AttributeType::Dedicated) => dedicated(),
            _ => Value::Nil,
        }
    }
}

/// An OTLP array attribute as TraceQL sees it: a homogeneous array of
/// scalars; one element is that scalar; empty or mixed arrays are nil.
fn array_value(encoded: &[u8]) -> Value<'static> {
    let Ok(AnyValue {
        value: Some(any_value::Value::ArrayValue(array)),
    }) = AnyValue::decode(encoded)
    else {
        return Value::Nil;
    };
    let values: Vec<Value<'static>> = array
        .values
        .into_iter()
        .map(|v| match v.value {
            Some(any_value::Value::StringValue(s)) => Value::Str(Cow::Owned(s)),
            Some(any_value::Value::IntValue(i)) => Value::Int(i),
            Some(any_value::Value::DoubleValue(d)) => Value::Float(d),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
            _ => Value::Nil,
        })
        .collect();
    let same_type = values
        .windows(2)
        .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    match values.len() {
        0 => Value::Nil,
        _ if !same_type || values.iter().any(|v| matches!(v, Value::Nil)) => Value::Nil,
        1 => values.into_iter().next().unwrap_or(Value::Nil),
        _ => Value::Array(values),
    }
}

/// A nested list column (events or links) and its attribute lists.
struct NestedList<'a> {
    list: &'a ListArray,
    attributes: Option<AttributeList<'a>>,
    values: &'a StructArray,
}

impl<'a> NestedList<'a> {
    fn new(list: &'a ListArray) -> Option<Self> {
        let values = list.values().as_struct_opt()?;
        let attributes = values
            .column_by_name("attributes")
            .and_then(|c| c.as_list_opt::<i32>())
            .and_then(AttributeList::new);
        Some(Self {
            list,
            attributes,
            values,
        })
    }

    fn count(&self, row: usize) -> usize {
        if self.list.is_null(row) {
            0
        } else {
            self.list.value_length(row) as usize
        }
    }

    /// The item index of element `index` of entry `row`.
    fn item(&self, row: usize, index: usize) -> Option<usize> {
        (index < self.count(row)).then(|| self.list.value_offsets()[row] as usize + index)
    }
}

/// The columns of a batch the evaluator reads, resolved once.
pub(crate) struct Columns<'a> {
    trace_id: Option<&'a FixedSizeBinaryArray>,
    span_id: Option<&'a FixedSizeBinaryArray>,
    parent_span_id: Option<&'a FixedSizeBinaryArray>,
    name: Option<&'a StringArray>,
    kind: Option<&'a Int32Array>,
    status: Option<&'a Int32Array>,
    status_message: Option<&'a StringArray>,
    start: Option<&'a TimestampNanosecondArray>,
    duration: Option<&'a Int64Array>,
    scope_name: Option<&'a StringArray>,
    scope_version: Option<&'a StringArray>,
    span_attributes: Option<AttributeList<'a>>,
    resource_attributes: Option<AttributeList<'a>>,
    scope_attributes: Option<AttributeList<'a>>,
    events: Option<NestedList<'a>>,
    links: Option<NestedList<'a>>,
    left: Option<&'a Int32Array>,
    right: Option<&'a Int32Array>,
    parent: Option<&'a Int32Array>,
    child_count: Option<&'a Int32Array>,
    service_name: Option<&'a StringArray>,
    dedicated: HashMap<(AttrScope, &'a str), &'a ArrayRef>,
    /// Keys read from their column alone (see `SearchPlan::direct_keys`).
    direct: &'a DirectKeys,
}

impl<'a> Columns<'a> {
    /// Resolves what `batch` has.
    pub(crate) fn new(
        batch: &'a RecordBatch,
        layout: &'a BlockLayout,
        direct: &'a DirectKeys,
    ) -> Self {
        let get = |name: &str| batch.column_by_name(name);
        let prim = |name: &str| get(name).and_then(|c| c.as_any().downcast_ref::<Int32Array>());
        let string = |name: &str| get(name).and_then(|c| c.as_string_opt::<i32>());
        let fsb = |name: &str| get(name).and_then(|c| c.as_fixed_size_binary_opt());
        let list = |name: &str| get(name).and_then(|c| c.as_list_opt::<i32>());
        let mut dedicated = HashMap::new();
        for column in &layout.dedicated {
            if let Some(array) = get(&column.column_name()) {
                dedicated.insert((column.scope, column.key.as_str()), array);
            }
        }
        Self {
            trace_id: fsb(columns::TRACE_ID),
            span_id: fsb(columns::SPAN_ID),
            parent_span_id: fsb(columns::PARENT_SPAN_ID),
            name: string(columns::NAME),
            kind: prim(columns::KIND),
            status: prim(columns::STATUS_CODE),
            status_message: string(columns::STATUS_MESSAGE),
            start: get(columns::START_TIME).and_then(|c| c.as_any().downcast_ref()),
            duration: get(columns::DURATION_NANOS).and_then(|c| c.as_any().downcast_ref()),
            scope_name: string(columns::SCOPE_NAME),
            scope_version: string(columns::SCOPE_VERSION),
            span_attributes: list(columns::ATTRIBUTES).and_then(AttributeList::new),
            resource_attributes: list(columns::RESOURCE_ATTRIBUTES).and_then(AttributeList::new),
            scope_attributes: list(columns::SCOPE_ATTRIBUTES).and_then(AttributeList::new),
            events: list(columns::EVENTS).and_then(NestedList::new),
            links: list(columns::LINKS).and_then(NestedList::new),
            left: prim(structure::NESTED_SET_LEFT),
            right: prim(structure::NESTED_SET_RIGHT),
            parent: prim(structure::NESTED_SET_PARENT),
            child_count: prim(structure::CHILD_COUNT),
            service_name: string(columns::SERVICE_NAME),
            dedicated,
            direct,
        }
    }

    /// The trace ID of `row`.
    pub(crate) fn trace_id(&self, row: usize) -> Option<&'a [u8]> {
        self.trace_id.map(|c| c.value(row))
    }

    /// The span ID of `row`.
    pub(crate) fn span_id(&self, row: usize) -> Option<&'a [u8]> {
        self.span_id.map(|c| c.value(row))
    }

    /// The span name of `row`.
    pub(crate) fn name(&self, row: usize) -> Option<&'a str> {
        self.name.map(|c| c.value(row))
    }

    /// Start (Unix ns) of `row`.
    pub(crate) fn start(&self, row: usize) -> Option<i64> {
        self.start.map(|c| c.value(row))
    }

    /// Duration (ns) of `row`.
    pub(crate) fn duration(&self, row: usize) -> Option<i64> {
        self.duration.map(|c| c.value(row))
    }

    /// Every attribute key of `row`, by scope (`span`, `resource`,
    /// `instrumentation`, `event`, `link`).
    pub(crate) fn keys(&self, row: usize) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut list_keys = |scope: &'static str, list: Option<&AttributeList<'a>>, item: usize| {
            if let Some(list) = list
                && list.list.is_valid(item)
            {
                let offsets = list.list.value_offsets();
                for i in offsets[item] as usize..offsets[item + 1] as usize {
                    out.push((scope, list.keys.value(i).to_owned()));
                }
            }
        };
        list_keys("span", self.span_attributes.as_ref(), row);
        list_keys("resource", self.resource_attributes.as_ref(), row);
        list_keys("instrumentation", self.scope_attributes.as_ref(), row);
        for (scope, nested) in [
            ("event", self.events.as_ref()),
            ("link", self.links.as_ref()),
        ] {
            if let Some(nested) = nested {
                for index in 0..nested.count(row) {
                    if let Some(item) = nested.item(row, index) {
                        list_keys(scope, nested.attributes.as_ref(), item);
                    }
                }
            }
        }
        out
    }

    fn dedicated_value(&self, scope: AttrScope, key: &str, row: usize) -> Value<'a> {
        let Some(array) = self.dedicated.get(&(scope, key)) else {
            return Value::Nil;
        };
        if array.is_null(row) {
            return Value::Nil;
        }
        if let Some(s) = array.as_string_opt::<i32>() {
            return Value::Str(Cow::Borrowed(s.value(row)));
        }
        if let Some(i) = array.as_any().downcast_ref::<Int64Array>() {
            return Value::Int(i.value(row));
        }
        if let Some(d) = array.as_any().downcast_ref::<Float64Array>() {
            return Value::Float(d.value(row));
        }
        if let Some(b) = array.as_any().downcast_ref::<BooleanArray>() {
            return Value::Bool(b.value(row));
        }
        Value::Nil
    }

    fn list_attribute(
        &self,
        list: Option<&AttributeList<'a>>,
        scope: Option<AttrScope>,
        row: usize,
        name: &str,
    ) -> Value<'a> {
        if let Some(scope) = scope
            && self.direct.contains(&(scope, name.to_owned()))
        {
            if scope == AttrScope::Resource && name == strata_common::convert::SERVICE_NAME_KEY {
                return self.service_name.map_or(Value::Nil, |c| {
                    if c.is_valid(row) {
                        Value::Str(Cow::Borrowed(c.value(row)))
                    } else {
                        Value::Nil
                    }
                });
            }
            return self.dedicated_value(scope, name, row);
        }
        let Some(list) = list else {
            return Value::Nil;
        };
        match list.find(row, name) {
            Some(i) => list.value(i, || match scope {
                Some(scope) => self.dedicated_value(scope, name, row),
                None => Value::Nil,
            }),
            None => Value::Nil,
        }
    }
}

/// One trace's rows of a batch, with its facts.
pub(crate) struct TraceRows<'a> {
    pub(crate) columns: &'a Columns<'a>,
    pub(crate) entry: &'a TraceEntry,
    /// Rows by span ID, for `parent.` (built when needed).
    by_span_id: Option<HashMap<&'a [u8], Vec<usize>>>,
}

impl<'a> TraceRows<'a> {
    /// The rows of a trace; `index_parents` prepares `parent.` lookups.
    pub(crate) fn new(
        columns: &'a Columns<'a>,
        rows: std::ops::Range<usize>,
        entry: &'a TraceEntry,
        index_parents: bool,
    ) -> Self {
        let by_span_id = index_parents.then(|| {
            let mut map: HashMap<&'a [u8], Vec<usize>> = HashMap::new();
            if let Some(ids) = columns.span_id {
                for row in rows {
                    map.entry(ids.value(row)).or_default().push(row);
                }
            }
            map
        });
        Self {
            columns,
            entry,
            by_span_id,
        }
    }
}

impl SpanAccess for TraceRows<'_> {
    fn attribute(
        &self,
        row: usize,
        scope: AttributeScope,
        name: &str,
        binding: Binding,
    ) -> Value<'_> {
        let c = self.columns;
        match scope {
            AttributeScope::Span | AttributeScope::Unscoped => {
                c.list_attribute(c.span_attributes.as_ref(), Some(AttrScope::Span), row, name)
            }
            AttributeScope::Resource => c.list_attribute(
                c.resource_attributes.as_ref(),
                Some(AttrScope::Resource),
                row,
                name,
            ),
            AttributeScope::Instrumentation => {
                c.list_attribute(c.scope_attributes.as_ref(), None, row, name)
            }
            AttributeScope::Event | AttributeScope::Link => {
                let (nested, index) = if scope == AttributeScope::Event {
                    (c.events.as_ref(), binding.event)
                } else {
                    (c.links.as_ref(), binding.link)
                };
                let (Some(nested), Some(index)) = (nested, index) else {
                    return Value::Nil;
                };
                let (Some(item), Some(list)) =
                    (nested.item(row, index), nested.attributes.as_ref())
                else {
                    return Value::Nil;
                };
                match list.find(item, name) {
                    Some(i) => list.value(i, || Value::Nil),
                    None => Value::Nil,
                }
            }
        }
    }

    fn intrinsic(&self, row: usize, intrinsic: Intrinsic, binding: Binding) -> Value<'_> {
        let c = self.columns;
        let entry = self.entry;
        fn s(v: Option<&str>) -> Value<'_> {
            v.map_or(Value::Nil, |s| Value::Str(Cow::Borrowed(s)))
        }
        match intrinsic {
            Intrinsic::Duration => c
                .duration
                .map_or(Value::Nil, |d| Value::Duration(d.value(row))),
            Intrinsic::Name => s(c.name.map(|n| n.value(row))),
            Intrinsic::Status => c.status.map_or(Value::Nil, |v| Value::Status(v.value(row))),
            Intrinsic::StatusMessage => s(c.status_message.map(|m| m.value(row))),
            Intrinsic::Kind => c.kind.map_or(Value::Nil, |v| Value::Kind(v.value(row))),
            Intrinsic::ChildCount => c
                .child_count
                .map_or(Value::Nil, |v| Value::Int(i64::from(v.value(row)))),
            Intrinsic::NestedSetLeft => c
                .left
                .map_or(Value::Nil, |v| Value::Int(i64::from(v.value(row)))),
            Intrinsic::NestedSetRight => c
                .right
                .map_or(Value::Nil, |v| Value::Int(i64::from(v.value(row)))),
            Intrinsic::NestedSetParent => c
                .parent
                .map_or(Value::Nil, |v| Value::Int(i64::from(v.value(row)))),
            Intrinsic::SpanId => c.span_id.map_or(Value::Nil, |v| {
                Value::Str(Cow::Owned(hex::encode(v.value(row))))
            }),
            Intrinsic::ParentId => c.parent_span_id.map_or(Value::Nil, |v| {
                Value::Str(Cow::Owned(if v.is_null(row) {
                    "0000000000000000".to_owned()
                } else {
                    hex::encode(v.value(row))
                }))
            }),
            Intrinsic::TraceDuration => {
                Value::Duration(i64::try_from(entry.duration_nanos()).unwrap_or(i64::MAX))
            }
            Intrinsic::RootName => {
                Value::Str(Cow::Owned(entry.root_span_name.clone().unwrap_or_default()))
            }
            Intrinsic::RootService => Value::Str(Cow::Owned(
                entry.root_service_name.clone().unwrap_or_default(),
            )),
            Intrinsic::TraceId => Value::Str(Cow::Owned(entry.trace_id.to_short_hex())),
            Intrinsic::ScopeName => s(c.scope_name.map(|n| n.value(row))),
            Intrinsic::ScopeVersion => s(c.scope_version.map(|n| n.value(row))),
            Intrinsic::EventName | Intrinsic::EventTimeSinceStart => {
                let (Some(events), Some(index)) = (c.events.as_ref(), binding.event) else {
                    return Value::Nil;
                };
                let Some(item) = events.item(row, index) else {
                    return Value::Nil;
                };
                if intrinsic == Intrinsic::EventName {
                    events
                        .values
                        .column_by_name("name")
                        .and_then(|n| n.as_string_opt::<i32>())
                        .map_or(Value::Nil, |n| Value::Str(Cow::Borrowed(n.value(item))))
                } else {
                    let time = events
                        .values
                        .column_by_name("time_unix_nano")
                        .and_then(|t| t.as_any().downcast_ref::<UInt64Array>())
                        .map(|t| t.value(item));
                    match (time, c.start(row)) {
                        (Some(time), Some(start)) => {
                            Value::Duration((time as i64).wrapping_sub(start))
                        }
                        _ => Value::Nil,
                    }
                }
            }
            Intrinsic::LinkTraceId | Intrinsic::LinkSpanId => {
                let (Some(links), Some(index)) = (c.links.as_ref(), binding.link) else {
                    return Value::Nil;
                };
                let Some(item) = links.item(row, index) else {
                    return Value::Nil;
                };
                let field = if intrinsic == Intrinsic::LinkTraceId {
                    "trace_id"
                } else {
                    "span_id"
                };
                let Some(ids) = links
                    .values
                    .column_by_name(field)
                    .and_then(|c| c.as_fixed_size_binary_opt())
                else {
                    return Value::Nil;
                };
                if ids.is_null(item) {
                    return Value::Nil;
                }
                Value::Str(Cow::Owned(if intrinsic == Intrinsic::LinkTraceId {
                    strata_common::ids::short_hex(ids.value(item))
                } else {
                    hex::encode(ids.value(item))
                }))
            }
        }
    }

    /// The parent by span ID (so a span finds its parent even where an
    /// ancestor further up is missing); Zipkin's shared client/server IDs
    /// are told apart by kind, as when numbering the tree.
    fn parent(&self, row: usize) -> Option<usize> {
        let parents = self.columns.parent_span_id?;
        if parents.is_null(row) {
            return None;
        }
        let candidates = self.by_span_id.as_ref()?.get(parents.value(row))?;
        // Without the kind column no candidate is of the wanted kind.
        let kinds = self.columns.kind;
        pick_parent(candidates, row, |r| kinds.map_or(0, |k| k.value(r)))
    }

    fn nested_set(&self, row: usize) -> NestedSet {
        let c = self.columns;
        match (c.left, c.right, c.parent) {
            (Some(l), Some(r), Some(p)) => (l.value(row), r.value(row), p.value(row)),
            _ => (0, 0, 0),
        }
    }

    fn event_count(&self, row: usize) -> usize {
        self.columns.events.as_ref().map_or(0, |e| e.count(row))
    }

    fn link_count(&self, row: usize) -> usize {
        self.columns.links.as_ref().map_or(0, |l| l.count(row))
    }
}
