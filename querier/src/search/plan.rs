//! What a TraceQL search needs from each source: which columns, which rows
//! (a conservative pre-filter the Parquet reader prunes and filters with),
//! and whether a block can match at all (its attribute summary).
//!
//! The pre-filter is a *superset* of the spans any spanset filter keeps: a
//! trace can only match if some span matches some filter of the query, and
//! rows matching none are never needed — except for `parent.` lookups,
//! which read whole traces. Conditions that cannot be expressed on typed
//! columns become "true", never an approximation that could drop a match.
//! Exact evaluation happens afterwards, in [`crate::traceql::eval`].

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use strata_common::block::summary::{SummaryValue, ValueKind, intrinsics};
use strata_common::block::{BlockSummary, TraceTable};
use strata_common::layout::{AttrScope, BlockLayout, DedicatedType, structure};
use strata_common::schema::columns;

use crate::traceql::ast::*;
use crate::traceql::eval::{Regexes, visit_query_fields};

/// Attributes read straight from their dedicated column (see
/// [`SearchPlan::direct_keys`]).
pub(crate) type DirectKeys = std::collections::HashSet<(AttrScope, String)>;

/// A query compiled for searching.
#[derive(Debug)]
pub(crate) struct SearchPlan {
    /// The query.
    pub(crate) query: Query,
    /// Its regexes, compiled once.
    pub(crate) regexes: Regexes,
    /// Every spanset filter (`{ ... }`) of the query.
    leaves: Vec<FieldExpr>,
    /// Attributes and intrinsics the query reads.
    fields: Vec<FieldExpr>,
    /// Whether some field reads the parent span.
    pub(crate) needs_parent: bool,
    /// Whether the query uses tree structure.
    needs_structure: bool,
    /// Attributes and intrinsics shown on result spans (Tempo shows what
    /// it fetched for the conditions, and `select()`ed fields).
    pub(crate) output_fields: Vec<FieldExpr>,
    /// Whether result spans list every attribute key they have (for tag
    /// names under a filter).
    pub(crate) collect_keys: bool,
}

fn collect_leaves(e: &SpansetExpr, out: &mut Vec<FieldExpr>, structural: &mut bool) {
    match e {
        SpansetExpr::Filter(f) => out.push(f.clone()),
        SpansetExpr::Op(op, l, r) => {
            if !op.is_logical() {
                *structural = true;
            }
            collect_leaves(l, out, structural);
            collect_leaves(r, out, structural);
        }
        SpansetExpr::Pipeline(p) => collect_pipeline(p, out, structural),
    }
}

fn collect_pipeline(p: &Pipeline, out: &mut Vec<FieldExpr>, structural: &mut bool) {
    for stage in &p.stages {
        if let Stage::Spanset(e) = stage {
            collect_leaves(e, out, structural);
        }
    }
}

impl SearchPlan {
    /// Compiles `query`; fails on patterns that do not compile.
    pub(crate) fn new(query: Query, collect_keys: bool) -> Result<Self, String> {
        let regexes = Regexes::for_query(&query)?;
        let mut leaves = Vec::new();
        let mut needs_structure = false;
        collect_leaves_top(&query.pipeline, &mut leaves, &mut needs_structure);
        if leaves.is_empty() {
            // A pipeline that starts with an aggregate or by(): all spans.
            leaves.push(FieldExpr::Static(Static::Bool(true)));
        }
        let mut fields: Vec<FieldExpr> = Vec::new();
        visit_query_fields(&query, &mut |f| {
            if matches!(f, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) && !fields.contains(f)
            {
                fields.push(f.clone());
            }
        });
        let needs_parent = fields
            .iter()
            .any(|f| matches!(f, FieldExpr::Attribute(a) if a.parent));
        needs_structure |= needs_parent
            || fields.iter().any(|f| {
                matches!(
                    f,
                    FieldExpr::Intrinsic(
                        Intrinsic::ChildCount
                            | Intrinsic::NestedSetLeft
                            | Intrinsic::NestedSetRight
                            | Intrinsic::NestedSetParent
                    )
                )
            });
        let output_fields = fields
            .iter()
            .filter(|f| match f {
                FieldExpr::Intrinsic(i) => !matches!(
                    i,
                    Intrinsic::Name
                        | Intrinsic::Duration
                        | Intrinsic::TraceDuration
                        | Intrinsic::RootName
                        | Intrinsic::RootService
                        | Intrinsic::TraceId
                        | Intrinsic::SpanId
                ),
                _ => true,
            })
            .cloned()
            .collect();
        Ok(Self {
            query,
            regexes,
            leaves,
            fields,
            needs_parent,
            needs_structure,
            output_fields,
            collect_keys,
        })
    }

    /// The attributes the query reads that a block's dedicated columns
    /// (and `service_name`) answer alone: its summary shows every value of
    /// the key has the column's type, so the first occurrence of the key in
    /// a span is the value moved into the column. Their attribute lists
    /// need not be read.
    pub(crate) fn direct_keys(
        &self,
        layout: &BlockLayout,
        summary: Option<&BlockSummary>,
    ) -> DirectKeys {
        let mut direct = DirectKeys::default();
        let Some(summary) = summary else {
            return direct;
        };
        for field in &self.fields {
            let FieldExpr::Attribute(a) = field else {
                continue;
            };
            let scopes: &[AttrScope] = match a.scope {
                AttributeScope::Span => &[AttrScope::Span],
                AttributeScope::Resource => &[AttrScope::Resource],
                AttributeScope::Unscoped => &[AttrScope::Span, AttrScope::Resource],
                _ => &[],
            };
            for scope in scopes {
                let Some(key) = summary.attribute(scope.as_str(), &a.name) else {
                    // Absent from the block: always nil, no list needed.
                    direct.insert((*scope, a.name.clone()));
                    continue;
                };
                let kind = if *scope == AttrScope::Resource
                    && a.name == strata_common::convert::SERVICE_NAME_KEY
                {
                    Some(ValueKind::String)
                } else {
                    layout.dedicated(*scope, &a.name).map(|d| match d.ty {
                        DedicatedType::String => ValueKind::String,
                        DedicatedType::Int => ValueKind::Int,
                        DedicatedType::Double => ValueKind::Double,
                        DedicatedType::Bool => ValueKind::Bool,
                    })
                };
                if let Some(kind) = kind
                    && key.count_of(kind) == key.count
                {
                    direct.insert((*scope, a.name.clone()));
                }
            }
        }
        direct
    }

    /// Column indices of `schema` the evaluator needs, given the keys read
    /// from their columns alone.
    pub(crate) fn projection(
        &self,
        schema: &Schema,
        layout: &BlockLayout,
        direct: &DirectKeys,
    ) -> Vec<usize> {
        let mut names: BTreeSet<String> = [
            columns::TRACE_ID,
            columns::SPAN_ID,
            columns::NAME,
            columns::START_TIME,
            columns::DURATION_NANOS,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if self.needs_structure {
            names.extend(structure::ALL.iter().map(|s| (*s).to_owned()));
        }
        let mut span_attrs = false;
        let mut resource_attrs = false;
        for f in &self.fields {
            match f {
                FieldExpr::Intrinsic(i) => {
                    let column = match i {
                        Intrinsic::Kind => Some(columns::KIND),
                        Intrinsic::Status => Some(columns::STATUS_CODE),
                        Intrinsic::StatusMessage => Some(columns::STATUS_MESSAGE),
                        Intrinsic::ParentId => Some(columns::PARENT_SPAN_ID),
                        Intrinsic::ScopeName => Some(columns::SCOPE_NAME),
                        Intrinsic::ScopeVersion => Some(columns::SCOPE_VERSION),
                        Intrinsic::EventName | Intrinsic::EventTimeSinceStart => {
                            Some(columns::EVENTS)
                        }
                        Intrinsic::LinkTraceId | Intrinsic::LinkSpanId => Some(columns::LINKS),
                        Intrinsic::ChildCount => Some(structure::CHILD_COUNT),
                        Intrinsic::NestedSetLeft => Some(structure::NESTED_SET_LEFT),
                        Intrinsic::NestedSetRight => Some(structure::NESTED_SET_RIGHT),
                        Intrinsic::NestedSetParent => Some(structure::NESTED_SET_PARENT),
                        _ => None,
                    };
                    names.extend(column.map(str::to_owned));
                }
                FieldExpr::Attribute(a) => {
                    let listed =
                        |scope: AttrScope| !direct.contains(&(scope, a.name.clone())) || a.parent;
                    match a.scope {
                        AttributeScope::Span => span_attrs |= listed(AttrScope::Span),
                        AttributeScope::Resource => resource_attrs |= listed(AttrScope::Resource),
                        AttributeScope::Unscoped => {
                            span_attrs |= listed(AttrScope::Span);
                            resource_attrs |= listed(AttrScope::Resource);
                        }
                        AttributeScope::Event => {
                            names.insert(columns::EVENTS.to_owned());
                        }
                        AttributeScope::Link => {
                            names.insert(columns::LINKS.to_owned());
                        }
                        AttributeScope::Instrumentation => {
                            names.insert(columns::SCOPE_ATTRIBUTES.to_owned());
                        }
                    }
                    for scope in [AttrScope::Span, AttrScope::Resource] {
                        if let Some(d) = layout.dedicated(scope, &a.name) {
                            names.insert(d.column_name());
                        }
                    }
                    if a.name == strata_common::convert::SERVICE_NAME_KEY {
                        names.insert(columns::SERVICE_NAME.to_owned());
                    }
                }
                _ => {}
            }
        }
        if self.collect_keys {
            span_attrs = true;
            resource_attrs = true;
            for column in [columns::SCOPE_ATTRIBUTES, columns::EVENTS, columns::LINKS] {
                names.insert(column.to_owned());
            }
        }
        if span_attrs {
            names.insert(columns::ATTRIBUTES.to_owned());
        }
        if resource_attrs {
            names.insert(columns::RESOURCE_ATTRIBUTES.to_owned());
        }
        if self.needs_parent {
            // Whole traces: the parent's attributes may be anywhere, and
            // parents are found by span ID.
            names.insert(columns::PARENT_SPAN_ID.to_owned());
            names.insert(columns::KIND.to_owned());
            names.insert(columns::ATTRIBUTES.to_owned());
            names.insert(columns::RESOURCE_ATTRIBUTES.to_owned());
            for d in &layout.dedicated {
                names.insert(d.column_name());
            }
        }
        let mut indices: Vec<usize> = names
            .iter()
            .filter_map(|n| schema.index_of(n).ok())
            .collect();
        indices.sort_unstable();
        indices
    }

    /// The row pre-filter for a source with `schema` and `layout`; `None`
    /// when every row may be needed. Conditions on dedicated attribute
    /// columns are pushed only when `summary` shows every value that could
    /// satisfy them is in the column (none in the lists, e.g. floats beside
    /// an int column, or arrays).
    pub(crate) fn prefilter(
        &self,
        schema: &Schema,
        layout: &BlockLayout,
        summary: Option<&BlockSummary>,
    ) -> Option<Arc<dyn PhysicalExpr>> {
        if self.needs_parent {
            return None;
        }
        let translator = Translator {
            schema,
            layout,
            summary,
        };
        let mut any: Option<Arc<dyn PhysicalExpr>> = None;
        for leaf in &self.leaves {
            let expr = translator.expr(leaf)?;
            any = Some(match any {
                None => expr,
                Some(prev) => Arc::new(BinaryExpr::new(prev, Operator::Or, expr)),
            });
        }
        any
    }

    /// Candidate traces of a block read from its trace table alone, when
    /// every spanset filter can be narrowed by trace-level facts there
    /// (status error → traces with errors; `resource.service.name = "x"` →
    /// traces with spans of `x`; root name and service; trace duration;
    /// `&&` intersects, `||` unites), and whether they are exact (every
    /// condition was trace-level: each candidate holds a matching span).
    /// `None` when some filter cannot be narrowed.
    pub(crate) fn trace_candidates(&self, table: &TraceTable) -> Option<(Vec<bool>, bool)> {
        if self.needs_parent {
            return None;
        }
        let mut any: Option<(Vec<bool>, bool)> = None;
        for leaf in &self.leaves {
            let (traces, exact) = trace_level(leaf, table)?;
            any = Some(match any {
                None => (traces, exact),
                Some((prev, prev_exact)) => (
                    prev.iter().zip(traces).map(|(a, b)| *a || b).collect(),
                    prev_exact && exact,
                ),
            });
        }
        any
    }

    /// Whether a block with this summary can hold a match.
    pub(crate) fn may_match(&self, summary: &BlockSummary) -> bool {
        self.leaves.iter().any(|leaf| possible(leaf, summary))
    }
}

fn collect_leaves_top(p: &Pipeline, out: &mut Vec<FieldExpr>, structural: &mut bool) {
    collect_pipeline(p, out, structural);
}

/// Traces of `table` that can hold a span satisfying `expr`, when the
/// trace-level facts tell, and whether exactly (every such trace holds one:
/// the condition is about the trace, or about whether some span has an
/// error or a service, and nothing else).
fn trace_level(expr: &FieldExpr, table: &TraceTable) -> Option<(Vec<bool>, bool)> {
    match expr {
        // A conjunction of conditions on different spans' facts is only a
        // superset (the error span need not be the service's span).
        FieldExpr::Binary(BinaryOp::And, l, r) => {
            match (trace_level(l, table), trace_level(r, table)) {
                (Some((a, ea)), Some((b, eb))) => Some((
                    a.iter().zip(b).map(|(x, y)| *x && y).collect(),
                    ea && eb && (trace_wide(l) || trace_wide(r)),
                )),
                (Some((a, _)), None) | (None, Some((a, _))) => Some((a, false)),
                (None, None) => None,
            }
        }
        FieldExpr::Binary(BinaryOp::Or, l, r) => {
            let ((a, ea), (b, eb)) = (trace_level(l, table)?, trace_level(r, table)?);
            Some((a.iter().zip(b).map(|(x, y)| *x || y).collect(), ea && eb))
        }
        other => {
            let (field, op, value) = comparison(other)?;
            let traces = match (field, op, value) {
                (
                    FieldExpr::Intrinsic(Intrinsic::Status),
                    BinaryOp::Eq,
                    Static::Status(Status::Error),
                ) => Some(table.error_counts().iter().map(|e| *e > 0).collect()),
                (FieldExpr::Attribute(a), BinaryOp::Eq, Static::String(s))
                    if !a.parent
                        && a.scope == AttributeScope::Resource
                        && a.name == strata_common::convert::SERVICE_NAME_KEY =>
                {
                    Some(table.has_service(s))
                }
                (
                    FieldExpr::Intrinsic(i @ (Intrinsic::RootName | Intrinsic::RootService)),
                    op,
                    Static::String(s),
                ) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
                    let names = if *i == Intrinsic::RootName {
                        table.root_span_names()
                    } else {
                        table.root_service_names()
                    };
                    Some(
                        (0..table.len())
                            .map(|t| {
                                let name = if names.is_valid(t) {
                                    names.value(t)
                                } else {
                                    ""
                                };
                                (name == s) == (op == BinaryOp::Eq)
                            })
                            .collect(),
                    )
                }
                (
                    FieldExpr::Intrinsic(Intrinsic::TraceDuration),
                    op,
                    Static::Duration(d) | Static::Int(d),
                ) => {
                    let d = *d;
                    Some(
                        table
                            .durations()
                            .into_iter()
                            .map(|x| match op {
                                BinaryOp::Eq => x == d,
                                BinaryOp::Neq => x != d,
                                BinaryOp::Lt => x < d,
                                BinaryOp::Lte => x <= d,
                                BinaryOp::Gt => x > d,
                                BinaryOp::Gte => x >= d,
                                _ => true,
                            })
                            .collect(),
                    )
                }
                _ => None,
            }?;
            Some((traces, true))
        }
    }
}

/// Whether `expr` is about the whole trace (the same for all its spans).
fn trace_wide(expr: &FieldExpr) -> bool {
    let mut span_level = false;
    expr.visit_fields(&mut |f| {
        if !matches!(f, FieldExpr::Intrinsic(i) if i.is_trace_level()) {
            span_level = true;
        }
    });
    !span_level
}

/// A comparison as (field, op, literal), the literal on the right.
fn comparison(expr: &FieldExpr) -> Option<(&FieldExpr, BinaryOp, &Static)> {
    let FieldExpr::Binary(op, l, r) = expr else {
        return None;
    };
    if !op.is_comparison() {
        return None;
    }
    match (l.as_ref(), r.as_ref()) {
        (f @ (FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)), FieldExpr::Static(s)) => {
            Some((f, *op, s))
        }
        (FieldExpr::Static(s), f @ (FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)))
            if !matches!(op, BinaryOp::Regex | BinaryOp::NotRegex) =>
        {
            let flipped = match op {
                BinaryOp::Lt => BinaryOp::Gt,
                BinaryOp::Lte => BinaryOp::Gte,
                BinaryOp::Gt => BinaryOp::Lt,
                BinaryOp::Gte => BinaryOp::Lte,
                other => *other,
            };
            Some((f, flipped, s))
        }
        _ => None,
    }
}

struct Translator<'a> {
    schema: &'a Schema,
    layout: &'a BlockLayout,
    summary: Option<&'a BlockSummary>,
}

impl Translator<'_> {
    fn expr(&self, e: &FieldExpr) -> Option<Arc<dyn PhysicalExpr>> {
        match e {
            FieldExpr::Static(Static::Bool(false)) => {
                Some(Arc::new(Literal::new(ScalarValue::Boolean(Some(false)))))
            }
            FieldExpr::Binary(BinaryOp::And, l, r) => match (self.expr(l), self.expr(r)) {
                (Some(a), Some(b)) => Some(Arc::new(BinaryExpr::new(a, Operator::And, b))),
                (Some(a), None) | (None, Some(a)) => Some(a),
                (None, None) => None,
            },
            FieldExpr::Binary(BinaryOp::Or, l, r) => {
                let (a, b) = (self.expr(l)?, self.expr(r)?);
                Some(Arc::new(BinaryExpr::new(a, Operator::Or, b)))
            }
            other => {
                let (field, op, value) = comparison(other)?;
                self.compare(field, op, value)
            }
        }
    }

    fn column(&self, name: &str) -> Option<(Arc<dyn PhysicalExpr>, DataType)> {
        let index = self.schema.index_of(name).ok()?;
        let data_type = self.schema.field(index).data_type().clone();
        Some((Arc::new(Column::new(name, index)), data_type))
    }

    fn compare(
        &self,
        field: &FieldExpr,
        op: BinaryOp,
        value: &Static,
    ) -> Option<Arc<dyn PhysicalExpr>> {
        match field {
            FieldExpr::Intrinsic(i) => {
                let name = match i {
                    Intrinsic::Name => columns::NAME,
                    Intrinsic::StatusMessage => columns::STATUS_MESSAGE,
                    Intrinsic::ScopeName => columns::SCOPE_NAME,
                    Intrinsic::ScopeVersion => columns::SCOPE_VERSION,
                    Intrinsic::Status => columns::STATUS_CODE,
                    Intrinsic::Kind => columns::KIND,
                    Intrinsic::Duration => columns::DURATION_NANOS,
                    Intrinsic::ChildCount => structure::CHILD_COUNT,
                    Intrinsic::NestedSetLeft => structure::NESTED_SET_LEFT,
                    Intrinsic::NestedSetRight => structure::NESTED_SET_RIGHT,
                    Intrinsic::NestedSetParent => structure::NESTED_SET_PARENT,
                    _ => return None,
                };
                self.typed(name, op, value)
            }
            FieldExpr::Attribute(a) if !a.parent => match a.scope {
                AttributeScope::Span => self.dedicated(AttrScope::Span, &a.name, op, value),
                AttributeScope::Resource => self.dedicated(AttrScope::Resource, &a.name, op, value),
                AttributeScope::Unscoped => {
                    let span = self.dedicated(AttrScope::Span, &a.name, op, value)?;
                    let resource = self.dedicated(AttrScope::Resource, &a.name, op, value)?;
                    Some(Arc::new(BinaryExpr::new(span, Operator::Or, resource)))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether every value of `key` that a comparison with `value` could
    /// hold for is of type `in_column` (so a column of that type holds it).
    fn column_is_complete(
        &self,
        scope: AttrScope,
        key: &str,
        in_column: ValueKind,
        value: &Static,
    ) -> bool {
        let Some(summary) = self.summary else {
            return false;
        };
        // Absent from the block: nothing can match, any filter will do.
        let Some(key) = summary.attribute(scope.as_str(), key) else {
            return true;
        };
        let comparable: &[ValueKind] = match value {
            Static::String(_) => &[ValueKind::String, ValueKind::Other],
            Static::Int(_) | Static::Float(_) | Static::Duration(_) => {
                &[ValueKind::Int, ValueKind::Double, ValueKind::Other]
            }
            Static::Bool(_) => &[ValueKind::Bool, ValueKind::Other],
            _ => return false,
        };
        comparable
            .iter()
            .all(|kind| *kind == in_column || key.count_of(*kind) == 0)
    }

    fn dedicated(
        &self,
        scope: AttrScope,
        key: &str,
        op: BinaryOp,
        value: &Static,
    ) -> Option<Arc<dyn PhysicalExpr>> {
        if scope == AttrScope::Resource && key == strata_common::convert::SERVICE_NAME_KEY {
            if !self.column_is_complete(scope, key, ValueKind::String, value) {
                return None;
            }
            return self.typed(columns::SERVICE_NAME, op, value);
        }
        let column = self.layout.dedicated(scope, key)?;
        let (fits, kind) = match (column.ty, value) {
            (DedicatedType::String, Static::String(_)) => (true, ValueKind::String),
            (DedicatedType::Int, Static::Int(_)) => (true, ValueKind::Int),
            (DedicatedType::Double, Static::Float(_)) => (true, ValueKind::Double),
            (DedicatedType::Bool, Static::Bool(_)) => (true, ValueKind::Bool),
            _ => (false, ValueKind::Other),
        };
        if !fits || !self.column_is_complete(scope, key, kind, value) {
            return None;
        }
        self.typed(&column.column_name(), op, value)
    }

    /// `column op literal` for a column whose type fits the literal.
    fn typed(&self, name: &str, op: BinaryOp, value: &Static) -> Option<Arc<dyn PhysicalExpr>> {
        let (column, data_type) = self.column(name)?;
        let scalar = match (&data_type, value) {
            (DataType::Utf8, Static::String(s)) => {
                if matches!(op, BinaryOp::Regex | BinaryOp::NotRegex) {
                    ScalarValue::Utf8(Some(format!("^(?s:{s})$")))
                } else {
                    ScalarValue::Utf8(Some(s.clone()))
                }
            }
            (DataType::Int32, Static::Status(s)) if name == columns::STATUS_CODE => {
                ScalarValue::Int32(Some(s.otlp()))
            }
            (DataType::Int32, Static::Kind(k)) if name == columns::KIND => {
                ScalarValue::Int32(Some(k.otlp()))
            }
            (DataType::Int32, Static::Int(i))
                if name != columns::STATUS_CODE && name != columns::KIND =>
            {
                ScalarValue::Int32(Some(i32::try_from(*i).ok()?))
            }
            (DataType::Int64, Static::Int(i)) => ScalarValue::Int64(Some(*i)),
            (DataType::Int64, Static::Duration(d)) if name == columns::DURATION_NANOS => {
                ScalarValue::Int64(Some(*d))
            }
            (DataType::Float64, Static::Float(f)) => ScalarValue::Float64(Some(*f)),
            (DataType::Boolean, Static::Bool(b)) => ScalarValue::Boolean(Some(*b)),
            _ => return None,
        };
        let operator = match (op, &data_type) {
            (BinaryOp::Eq, _) => Operator::Eq,
            (BinaryOp::Neq, _) => Operator::NotEq,
            (BinaryOp::Lt | BinaryOp::Lte | BinaryOp::Gt | BinaryOp::Gte, DataType::Boolean) => {
                return None;
            }
            (BinaryOp::Lt, _) => Operator::Lt,
            (BinaryOp::Lte, _) => Operator::LtEq,
            (BinaryOp::Gt, _) => Operator::Gt,
            (BinaryOp::Gte, _) => Operator::GtEq,
            (BinaryOp::Regex, DataType::Utf8) => Operator::RegexMatch,
            (BinaryOp::NotRegex, DataType::Utf8) => Operator::RegexNotMatch,
            _ => return None,
        };
        if matches!(value, Static::Status(_) | Static::Kind(_))
            && !matches!(op, BinaryOp::Eq | BinaryOp::Neq)
        {
            return None;
        }
        Some(Arc::new(BinaryExpr::new(
            column,
            operator,
            Arc::new(Literal::new(scalar)),
        )))
    }
}

/// Whether `expr` can hold for some span of a block with `summary`
/// (false only when it certainly cannot).
fn possible(expr: &FieldExpr, summary: &BlockSummary) -> bool {
    match expr {
        FieldExpr::Static(Static::Bool(false)) => false,
        FieldExpr::Binary(BinaryOp::And, l, r) => possible(l, summary) && possible(r, summary),
        FieldExpr::Binary(BinaryOp::Or, l, r) => possible(l, summary) || possible(r, summary),
        FieldExpr::Exists(inner, true) => match inner.as_ref() {
            FieldExpr::Attribute(a) if !a.parent => present(a, summary),
            _ => true,
        },
        other => {
            let Some((field, op, value)) = comparison(other) else {
                return true;
            };
            match field {
                FieldExpr::Attribute(a) if !a.parent => {
                    let scopes = a.scope.summary_scopes();
                    scopes
                        .iter()
                        .any(|scope| match summary.attribute(scope, &a.name) {
                            None => !summary.keys_complete(scope),
                            Some(key) => value_possible(key, op, value),
                        })
                }
                FieldExpr::Intrinsic(i) if op == BinaryOp::Eq => {
                    let (name, wanted) = match (i, value) {
                        // Empty names are not summarised.
                        (Intrinsic::Name, Static::String(s)) if !s.is_empty() => {
                            (intrinsics::NAME, SummaryValue::String(s.clone()))
                        }
                        (Intrinsic::Status, Static::Status(s)) => {
                            (intrinsics::STATUS, SummaryValue::Int(i64::from(s.otlp())))
                        }
                        (Intrinsic::Kind, Static::Kind(k)) => {
                            (intrinsics::KIND, SummaryValue::Int(i64::from(k.otlp())))
                        }
                        (Intrinsic::RootName, Static::String(s)) if !s.is_empty() => {
                            (intrinsics::ROOT_NAME, SummaryValue::String(s.clone()))
                        }
                        (Intrinsic::RootService, Static::String(s)) if !s.is_empty() => {
                            (intrinsics::ROOT_SERVICE, SummaryValue::String(s.clone()))
                        }
                        (Intrinsic::ScopeName, Static::String(s)) if !s.is_empty() => {
                            (intrinsics::SCOPE_NAME, SummaryValue::String(s.clone()))
                        }
                        _ => return true,
                    };
                    summary
                        .intrinsics
                        .get(name)
                        .is_some_and(|k| k.may_contain(&wanted))
                }
                _ => true,
            }
        }
    }
}

fn present(a: &Attribute, summary: &BlockSummary) -> bool {
    let scopes = a.scope.summary_scopes();
    scopes
        .iter()
        .any(|s| summary.attribute(s, &a.name).is_some() || !summary.keys_complete(s))
}

/// Whether a key with this summary may satisfy `op value`.
fn value_possible(
    key: &strata_common::block::summary::KeySummary,
    op: BinaryOp,
    value: &Static,
) -> bool {
    let numeric = key.count_of(ValueKind::Int) + key.count_of(ValueKind::Double) > 0;
    // Arrays may hold anything: only rule out what no value type allows.
    let arrays = key.count_of(ValueKind::Other) > 0;
    match value {
        Static::String(s) => {
            if key.count_of(ValueKind::String) == 0 && !arrays {
                return false;
            }
            if op == BinaryOp::Eq && !arrays {
                return key.may_contain(&SummaryValue::String(s.clone()));
            }
            true
        }
        Static::Int(i) => {
            if !numeric && !arrays {
                return false;
            }
            if op == BinaryOp::Eq && !arrays && key.count_of(ValueKind::Double) == 0 {
                return key.may_contain(&SummaryValue::Int(*i));
            }
            true
        }
        Static::Float(_) | Static::Duration(_) => numeric || arrays,
        Static::Bool(b) => {
            if key.count_of(ValueKind::Bool) == 0 && !arrays {
                return false;
            }
            if op == BinaryOp::Eq && !arrays {
                return key.may_contain(&SummaryValue::Bool(*b));
            }
            true
        }
        _ => true,
    }
}
