//! Converting span rows between the canonical form and a block's stored
//! form (see [`crate::layout`]).
//!
//! [`to_stored`] moves the values of dedicated attributes out of their lists
//! into typed columns, leaving a [`AttributeType::Dedicated`] entry in place
//! of each, and appends the structure columns. [`to_canonical`] reverses it.
//! Only the first entry of a key with the column's type moves, so repeated
//! keys and values of other types stay in the list untouched.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Float64Builder, Int64Builder,
    ListArray, RecordBatch, StringArray, StringBuilder, StructArray, UInt8Array,
};
use arrow::buffer::BooleanBuffer;
use arrow::compute::nullif;
use arrow::datatypes::{DataType, UInt8Type};

use crate::error::{Error, Result};
use crate::layout::{AttrScope, BlockLayout, DedicatedColumn, DedicatedType};
use crate::schema::{AttributeType, attribute_fields, span_schema};

type KeyMap<'a> = HashMap<&'a str, usize, foldhash::fast::FixedState>;

fn key_map<'a>(columns: &[(usize, &'a DedicatedColumn)]) -> KeyMap<'a> {
    let mut map = KeyMap::with_hasher(foldhash::fast::FixedState::with_seed(0));
    for (slot, (_, column)) in columns.iter().enumerate() {
        map.insert(column.key.as_str(), slot);
    }
    map
}

/// The dedicated columns of one scope with their index in the layout.
fn of_scope(layout: &BlockLayout, scope: AttrScope) -> Vec<(usize, &DedicatedColumn)> {
    layout
        .dedicated
        .iter()
        .enumerate()
        .filter(|(_, d)| d.scope == scope)
        .collect()
}

/// Canonical span rows → stored rows of `layout`. `structure` holds the
/// four structure columns in [`crate::layout::structure::ALL`] order.
pub fn to_stored(
    batch: &RecordBatch,
    structure: Vec<ArrayRef>,
    layout: &BlockLayout,
) -> Result<RecordBatch> {
    if !layout.has_structure() {
        return Ok(batch.clone());
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut dedicated: Vec<Option<ArrayRef>> = vec![None; layout.dedicated.len()];
    for scope in [AttrScope::Span, AttrScope::Resource] {
        let scoped = of_scope(layout, scope);
        if scoped.is_empty() {
            continue;
        }
        let index = batch
            .schema()
            .index_of(scope.list_column())
            .map_err(Error::arrow("finding an attribute column"))?;
        let list = columns[index].as_list::<i32>();
        let (moved, values) = move_out(list, &scoped)?;
        columns[index] = Arc::new(moved);
        for ((slot, _), array) in scoped.iter().zip(values) {
            dedicated[*slot] = Some(array);
        }
    }
    columns.extend(structure);
    for (slot, array) in dedicated.into_iter().enumerate() {
        let array = match array {
            Some(array) => array,
            None => arrow::array::new_null_array(
                &layout.dedicated[slot].ty.data_type(),
                batch.num_rows(),
            ),
        };
        columns.push(array);
    }
    RecordBatch::try_new(layout.stored_schema(), columns)
        .map_err(Error::arrow("building stored span rows"))
}

/// Stored rows of `layout` → canonical span rows. Columns past the
/// canonical ones are dropped.
pub fn to_canonical(batch: &RecordBatch, layout: &BlockLayout) -> Result<RecordBatch> {
    let canonical = span_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(canonical.fields().len());
    for field in canonical.fields() {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            Error::corrupt(format!("stored span rows lack column {:?}", field.name()))
        })?;
        columns.push(Arc::clone(column));
    }
    for scope in [AttrScope::Span, AttrScope::Resource] {
        let scoped = of_scope(layout, scope);
        if scoped.is_empty() {
            continue;
        }
        let index = canonical
            .index_of(scope.list_column())
            .map_err(Error::arrow("finding an attribute column"))?;
        let mut values = Vec::with_capacity(scoped.len());
        for (_, column) in &scoped {
            let array = batch
                .column_by_name(&column.column_name())
                .ok_or_else(|| Error::corrupt(format!("stored span rows lack column {column}")))?;
            // Checked here so moving values back cannot meet a wrong type.
            if array.data_type() != &column.ty.data_type() {
                return Err(Error::corrupt(format!(
                    "dedicated column {column} is {}, its layout says {}",
                    array.data_type(),
                    column.ty.data_type()
                )));
            }
            values.push(array);
        }
        let list = columns[index].as_list::<i32>();
        if let Some(restored) = move_back(list, &scoped, &values)? {
            columns[index] = Arc::new(restored);
        }
    }
    RecordBatch::try_new(canonical, columns).map_err(Error::arrow("building canonical span rows"))
}

struct Parts<'a> {
    values: &'a StructArray,
    keys: &'a StringArray,
    types: &'a UInt8Array,
}

fn parts(list: &ListArray) -> Result<Parts<'_>> {
    let values = list
        .values()
        .as_struct_opt()
        .ok_or_else(|| Error::corrupt("attribute list of non-structs"))?;
    let child = |name: &str| {
        values
            .column_by_name(name)
            .ok_or_else(|| Error::corrupt(format!("attribute struct lacks {name:?}")))
    };
    Ok(Parts {
        keys: child(attribute_fields::KEY)?
            .as_string_opt()
            .ok_or_else(|| Error::corrupt("attribute keys are not strings"))?,
        types: child(attribute_fields::TYPE)?
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| Error::corrupt("attribute types are not u8"))?,
        values,
    })
}

fn child_index(values: &StructArray, name: &str) -> Result<usize> {
    values
        .fields()
        .iter()
        .position(|f| f.name() == name)
        .ok_or_else(|| Error::corrupt(format!("attribute struct lacks {name:?}")))
}

fn value_child(ty: DedicatedType) -> &'static str {
    match ty {
        DedicatedType::String => attribute_fields::STR,
        DedicatedType::Int => attribute_fields::INT,
        DedicatedType::Double => attribute_fields::DOUBLE,
        DedicatedType::Bool => attribute_fields::BOOL,
    }
}

enum ColumnBuilder {
    String(StringBuilder),
    Int(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(ty: DedicatedType, rows: usize) -> Self {
        match ty {
            DedicatedType::String => Self::String(StringBuilder::with_capacity(rows, rows * 8)),
            DedicatedType::Int => Self::Int(Int64Builder::with_capacity(rows)),
            DedicatedType::Double => Self::Double(Float64Builder::with_capacity(rows)),
            DedicatedType::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::String(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Double(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
        }
    }

    /// Appends item `i` of the matching child of `values`.
    fn append_from(&mut self, child: &ArrayRef, i: usize) {
        if child.is_null(i) {
            self.append_null();
            return;
        }
        match self {
            Self::String(b) => b.append_value(child.as_string::<i32>().value(i)),
            Self::Int(b) => {
                b.append_value(child.as_primitive::<arrow::datatypes::Int64Type>().value(i))
            }
            Self::Double(b) => b.append_value(
                child
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .value(i),
            ),
            Self::Bool(b) => b.append_value(child.as_boolean().value(i)),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::String(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Double(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Moves the dedicated values of one scope out of `list`.
fn move_out(
    list: &ListArray,
    scoped: &[(usize, &DedicatedColumn)],
) -> Result<(ListArray, Vec<ArrayRef>)> {
    let rows = list.len();
    let Parts {
        values,
        keys,
        types,
    } = parts(list)?;
    let by_key = key_map(scoped);
    let value_children: Vec<ArrayRef> = scoped
        .iter()
        .map(|(_, d)| child_index(values, value_child(d.ty)).map(|i| Arc::clone(values.column(i))))
        .collect::<Result<_>>()?;
    let mut builders: Vec<ColumnBuilder> = scoped
        .iter()
        .map(|(_, d)| ColumnBuilder::new(d.ty, rows))
        .collect();
    let mut new_types: Vec<u8> = types.values().to_vec();
    let mut moved = vec![false; values.len()];
    let mut any_moved = false;
    let mut filled = vec![false; scoped.len()];
    let offsets = list.value_offsets();
    for row in 0..rows {
        filled.iter_mut().for_each(|f| *f = false);
        if list.is_valid(row) {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            for i in start..end {
                let Some(&slot) = by_key.get(keys.value(i)) else {
                    continue;
                };
                let column = scoped[slot].1;
                if filled[slot] || types.value(i) != column.ty.attribute_type() as u8 {
                    continue;
                }
                builders[slot].append_from(&value_children[slot], i);
                new_types[i] = AttributeType::Dedicated as u8;
                moved[i] = true;
                any_moved = true;
                filled[slot] = true;
            }
        }
        for (slot, done) in filled.iter().enumerate() {
            if !done {
                builders[slot].append_null();
            }
        }
    }
    let columns: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
    if !any_moved {
        return Ok((list.clone(), columns));
    }
    let moved = BooleanArray::new(BooleanBuffer::from(moved), None);
    let mut children: Vec<ArrayRef> = values.columns().to_vec();
    let type_index = child_index(values, attribute_fields::TYPE)?;
    children[type_index] = Arc::new(UInt8Array::new(new_types.into(), types.nulls().cloned()));
    let mut cleared: Vec<usize> = scoped
        .iter()
        .map(|(_, d)| child_index(values, value_child(d.ty)))
        .collect::<Result<_>>()?;
    cleared.sort_unstable();
    cleared.dedup();
    for index in cleared {
        children[index] =
            nullif(&children[index], &moved).map_err(Error::arrow("clearing moved values"))?;
    }
    let values = StructArray::try_new(values.fields().clone(), children, values.nulls().cloned())
        .map_err(Error::arrow("rebuilding attributes"))?;
    let field = list_field(list)?;
    let list = ListArray::try_new(
        field,
        list.offsets().clone(),
        Arc::new(values),
        list.nulls().cloned(),
    )
    .map_err(Error::arrow("rebuilding attribute lists"))?;
    Ok((list, columns))
}

fn list_field(list: &ListArray) -> Result<Arc<arrow::datatypes::Field>> {
    match list.data_type() {
        DataType::List(field) => Ok(Arc::clone(field)),
        other => Err(Error::corrupt(format!("attribute column of type {other}"))),
    }
}

/// Puts dedicated values of one scope back into `list`; `None` when the
/// list holds no dedicated entry.
fn move_back(
    list: &ListArray,
    scoped: &[(usize, &DedicatedColumn)],
    columns: &[&ArrayRef],
) -> Result<Option<ListArray>> {
    let Parts {
        values,
        keys,
        types,
    } = parts(list)?;
    let dedicated = AttributeType::Dedicated as u8;
    if !types.values().contains(&dedicated) {
        return Ok(None);
    }
    let by_key = key_map(scoped);
    let items = values.len();
    // Which item takes its value from which row of which column.
    let mut sources: Vec<Option<(usize, usize)>> = vec![None; items];
    let mut new_types: Vec<u8> = types.values().to_vec();
    let offsets = list.value_offsets();
    for row in 0..list.len() {
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        for i in start..end {
            if types.value(i) != dedicated {
                continue;
            }
            let slot = *by_key.get(keys.value(i)).ok_or_else(|| {
                Error::corrupt(format!(
                    "attribute {:?} refers to a dedicated column the block does not have",
                    keys.value(i)
                ))
            })?;
            sources[i] = Some((slot, row));
            new_types[i] = scoped[slot].1.ty.attribute_type() as u8;
        }
    }
    let mut children: Vec<ArrayRef> = values.columns().to_vec();
    let type_index = child_index(values, attribute_fields::TYPE)?;
    children[type_index] = Arc::new(UInt8Array::new(new_types.into(), types.nulls().cloned()));
    for ty in [
        DedicatedType::String,
        DedicatedType::Int,
        DedicatedType::Double,
        DedicatedType::Bool,
    ] {
        if !scoped.iter().any(|(_, d)| d.ty == ty) {
            continue;
        }
        let index = child_index(values, value_child(ty))?;
        let old = &children[index];
        let mut builder = ColumnBuilder::new(ty, items);
        for (i, source) in sources.iter().enumerate() {
            match source {
                Some((slot, row)) if scoped[*slot].1.ty == ty => {
                    builder.append_from(columns[*slot], *row);
                }
                _ => builder.append_from(old, i),
            }
        }
        children[index] = builder.finish();
    }
    let values = StructArray::try_new(values.fields().clone(), children, values.nulls().cloned())
        .map_err(Error::arrow("rebuilding attributes"))?;
    let list = ListArray::try_new(
        list_field(list)?,
        list.offsets().clone(),
        Arc::new(values),
        list.nulls().cloned(),
    )
    .map_err(Error::arrow("rebuilding attribute lists"))?;
    Ok(Some(list))
}
