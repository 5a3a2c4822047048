//! Exact TraceQL evaluation over one trace at a time.
//!
//! Storage-independent: spans are row numbers read through [`SpanAccess`].
//! The semantics are Tempo's engine (`pkg/traceql/ast_execute.go`), with the
//! deliberate differences listed in `docs/traceql.md`:
//!
//! - values are typed per span; a comparison whose operand types do not
//!   match (or that involves `nil`) is false, never an error;
//! - a filter keeps a span when its expression is boolean `true`;
//! - `x = nil` is true when `x` is absent, `x != nil` when present;
//! - `!` of a non-boolean, integer division by zero and the like yield
//!   `nil` (no match) instead of failing the query;
//! - `event.`/`link.` conditions are evaluated per (event, link) pair of a
//!   span, and the span matches when any pair satisfies the whole filter;
//! - structural operators use the stored nested-set numbers.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;

use super::ast::*;

/// A run-time value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Absent.
    Nil,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String.
    Str(Cow<'a, str>),
    /// Duration, nanoseconds.
    Duration(i64),
    /// Status (OTLP code).
    Status(i32),
    /// Kind (OTLP number).
    Kind(i32),
    /// A homogeneous array attribute.
    Array(Vec<Value<'a>>),
}

impl Value<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Duration(d) => Value::Duration(d),
            Value::Status(s) => Value::Status(s),
            Value::Kind(k) => Value::Kind(k),
            Value::Array(a) => Value::Array(a.into_iter().map(Value::into_owned).collect()),
        }
    }

    fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) | Value::Duration(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_) | Value::Duration(_))
    }

    /// A hashable key for grouping (`by()`), type-sensitive as in Tempo.
    pub fn group_key(&self) -> String {
        match self {
            Value::Nil => "nil".to_owned(),
            Value::Bool(b) => format!("b:{b}"),
            Value::Int(i) => format!("i:{i}"),
            Value::Float(f) => format!("f:{}", f.to_bits()),
            // Length-prefixed so array keys cannot collide through commas.
            Value::Str(s) => format!("s{}:{s}", s.len()),
            Value::Duration(d) => format!("d:{d}"),
            Value::Status(s) => format!("st:{s}"),
            Value::Kind(k) => format!("k:{k}"),
            Value::Array(a) => {
                let parts: Vec<String> = a.iter().map(Value::group_key).collect();
                format!("a:[{}]", parts.join(","))
            }
        }
    }
}

impl From<&Static> for Value<'static> {
    fn from(s: &Static) -> Self {
        match s {
            Static::Nil => Value::Nil,
            Static::Bool(b) => Value::Bool(*b),
            Static::Int(i) => Value::Int(*i),
            Static::Float(f) => Value::Float(*f),
            Static::String(s) => Value::Str(Cow::Owned(s.clone())),
            Static::Duration(d) => Value::Duration(*d),
            Static::Status(s) => Value::Status(s.otlp()),
            Static::Kind(k) => Value::Kind(k.otlp()),
        }
    }
}

/// Which event and link of a span `event.`/`link.` fields read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binding {
    /// Event index, `None` when the span has no events.
    pub event: Option<usize>,
    /// Link index, `None` when the span has no links.
    pub link: Option<usize>,
}

/// Nested-set numbers of a span: (left, right, parent).
pub type NestedSet = (i32, i32, i32);

/// How the evaluator reads spans of the trace in hand.
pub trait SpanAccess {
    /// An attribute of span `row` (scope already resolved: never
    /// `Unscoped`, never `parent`).
    fn attribute(
        &self,
        row: usize,
        scope: AttributeScope,
        name: &str,
        binding: Binding,
    ) -> Value<'_>;
    /// An intrinsic of span `row`.
    fn intrinsic(&self, row: usize, intrinsic: Intrinsic, binding: Binding) -> Value<'_>;
    /// The parent span's row, when it is in hand.
    fn parent(&self, row: usize) -> Option<usize>;
    /// Nested-set numbers.
    fn nested_set(&self, row: usize) -> NestedSet;
    /// Number of events of span `row`.
    fn event_count(&self, row: usize) -> usize;
    /// Number of links of span `row`.
    fn link_count(&self, row: usize) -> usize;
}

/// Compiled regular expressions of a query, by pattern.
#[derive(Debug, Default)]
pub struct Regexes {
    compiled: HashMap<String, Regex>,
}

impl Regexes {
    /// Compiles every `=~`/`!~` pattern of `query` (fully anchored, `.`
    /// matching newlines, as Tempo does).
    pub fn for_query(query: &Query) -> Result<Self, String> {
        let mut out = Self::default();
        let mut error = None;
        visit_query_fields(query, &mut |expr| {
            if let FieldExpr::Binary(BinaryOp::Regex | BinaryOp::NotRegex, _, rhs) = expr
                && let FieldExpr::Static(Static::String(pattern)) = rhs.as_ref()
                && !out.compiled.contains_key(pattern)
            {
                match anchored(pattern) {
                    Ok(regex) => {
                        out.compiled.insert(pattern.clone(), regex);
                    }
                    Err(e) => error = Some(e),
                }
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn get(&self, pattern: &str) -> Option<&Regex> {
        self.compiled.get(pattern)
    }
}

/// Compiles a TraceQL regex: fully anchored, `.` matches `\n`.
pub fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| format!("invalid regex: {e}"))
}

/// Calls `f` on every field expression node of the query (filters,
/// aggregates, groupings, selections).
pub fn visit_query_fields<'a>(query: &'a Query, f: &mut impl FnMut(&'a FieldExpr)) {
    fn walk_field<'a>(e: &'a FieldExpr, f: &mut impl FnMut(&'a FieldExpr)) {
        f(e);
        match e {
            FieldExpr::Binary(_, l, r) => {
                walk_field(l, f);
                walk_field(r, f);
            }
            FieldExpr::Unary(_, x) | FieldExpr::Exists(x, _) => walk_field(x, f),
            _ => {}
        }
    }
    fn walk_spanset<'a>(e: &'a SpansetExpr, f: &mut impl FnMut(&'a FieldExpr)) {
        match e {
            SpansetExpr::Filter(x) => walk_field(x, f),
            SpansetExpr::Op(_, l, r) => {
                walk_spanset(l, f);
                walk_spanset(r, f);
            }
            SpansetExpr::Pipeline(p) => walk_pipeline(p, f),
        }
    }
    fn walk_pipeline<'a>(p: &'a Pipeline, f: &mut impl FnMut(&'a FieldExpr)) {
        for stage in &p.stages {
            match stage {
                Stage::Spanset(e) => walk_spanset(e, f),
                Stage::ScalarFilter(s) => match &s.aggregate {
                    Aggregate::Count => {}
                    Aggregate::Avg(x)
                    | Aggregate::Min(x)
                    | Aggregate::Max(x)
                    | Aggregate::Sum(x) => walk_field(x, f),
                },
                Stage::GroupBy(x) => walk_field(x, f),
                Stage::Select(xs) => xs.iter().for_each(|x| walk_field(x, f)),
                Stage::Coalesce => {}
            }
        }
    }
    walk_pipeline(&query.pipeline, f);
    if let Some(metrics) = &query.metrics {
        match &metrics.function {
            MetricsFunction::Rate | MetricsFunction::CountOverTime => {}
            MetricsFunction::MinOverTime(x)
            | MetricsFunction::MaxOverTime(x)
            | MetricsFunction::AvgOverTime(x)
            | MetricsFunction::SumOverTime(x)
            | MetricsFunction::HistogramOverTime(x)
            | MetricsFunction::QuantileOverTime(x, _) => walk_field(x, f),
            MetricsFunction::Compare { filter, .. } => walk_spanset(filter, f),
        }
        metrics.by.iter().for_each(|x| walk_field(x, f));
    }
}

/// Evaluates an expression without spans (constant folding), if it reads
/// no span field.
pub fn fold(expr: &FieldExpr) -> Option<Static> {
    struct NoSpans;
    impl SpanAccess for NoSpans {
        fn attribute(&self, _: usize, _: AttributeScope, _: &str, _: Binding) -> Value<'_> {
            Value::Nil
        }
        fn intrinsic(&self, _: usize, _: Intrinsic, _: Binding) -> Value<'_> {
            Value::Nil
        }
        fn parent(&self, _: usize) -> Option<usize> {
            None
        }
        fn nested_set(&self, _: usize) -> NestedSet {
            (0, 0, 0)
        }
        fn event_count(&self, _: usize) -> usize {
            0
        }
        fn link_count(&self, _: usize) -> usize {
            0
        }
    }
    if expr.references_span() {
        return None;
    }
    let regexes = Regexes::default();
    let ctx = Evaluator {
        spans: &NoSpans,
        regexes: &regexes,
    };
    Some(match ctx.field(expr, 0, Binding::default()) {
        Value::Nil => Static::Nil,
        Value::Bool(b) => Static::Bool(b),
        Value::Int(i) => Static::Int(i),
        Value::Float(f) => Static::Float(f),
        Value::Str(s) => Static::String(s.into_owned()),
        Value::Duration(d) => Static::Duration(d),
        Value::Status(s) => Static::Status(Status::from_otlp(s)?),
        Value::Kind(k) => Static::Kind(Kind::from_otlp(k)?),
        Value::Array(_) => return None,
    })
}

/// Equality as Tempo's `Static.Equals`: nil equals nothing; int and
/// duration compare as integers; other numeric mixes as floats.
fn equals(a: &Value<'_>, b: &Value<'_>) -> Option<bool> {
    Some(match (a, b) {
        (Value::Nil, _) | (_, Value::Nil) => return None,
        (Value::Int(x) | Value::Duration(x), Value::Int(y) | Value::Duration(y)) => x == y,
        (x, y) if x.is_numeric() && y.is_numeric() => x.as_f64()? == y.as_f64()?,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Status(x), Value::Status(y)) => x == y,
        (Value::Kind(x), Value::Kind(y)) => x == y,
        _ => return None,
    })
}

/// Order for `< <= > >=`: numbers (ints as ints, mixes as floats) and
/// strings (bytewise).
fn order(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (x, y) if x.is_numeric() && y.is_numeric() => x.as_f64()?.partial_cmp(&y.as_f64()?),
        _ => None,
    }
}

/// A comparison of two scalars; `false` on type mismatch.
fn compare_scalar(op: BinaryOp, a: &Value<'_>, b: &Value<'_>, regex: Option<&Regex>) -> bool {
    match op {
        BinaryOp::Eq => equals(a, b) == Some(true),
        BinaryOp::Neq => equals(a, b) == Some(false),
        BinaryOp::Lt => order(a, b) == Some(Ordering::Less),
        BinaryOp::Lte => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        BinaryOp::Gt => order(a, b) == Some(Ordering::Greater),
        BinaryOp::Gte => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
        BinaryOp::Regex | BinaryOp::NotRegex => match (a, regex) {
            (Value::Str(s), Some(re)) => re.is_match(s) == (op == BinaryOp::Regex),
            _ => false,
        },
        _ => false,
    }
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Lte => BinaryOp::Gte,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Gte => BinaryOp::Lte,
        other => other,
    }
}

/// A comparison, with arrays: `!=` and `!~` need every element to hold,
/// the other operators any element.
pub fn compare(op: BinaryOp, a: &Value<'_>, b: &Value<'_>, regex: Option<&Regex>) -> bool {
    let all = matches!(op, BinaryOp::Neq | BinaryOp::NotRegex);
    match (a, b) {
        (Value::Array(_), Value::Array(_)) => false,
        (Value::Array(items), scalar) => {
            let test = |v: &Value<'_>| compare_scalar(op, v, scalar, regex);
            if all {
                items.iter().all(test)
            } else {
                items.iter().any(test)
            }
        }
        (scalar, Value::Array(items)) => {
            if matches!(op, BinaryOp::Regex | BinaryOp::NotRegex) {
                return false;
            }
            let flipped = flip(op);
            let test = |v: &Value<'_>| compare_scalar(flipped, v, scalar, regex);
            if all {
                items.iter().all(test)
            } else {
                items.iter().any(test)
            }
        }
        _ => compare_scalar(op, a, b, regex),
    }
}

fn arithmetic<'a>(op: BinaryOp, a: &Value<'_>, b: &Value<'_>) -> Value<'a> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => match op {
            BinaryOp::Add => Value::Int(x.wrapping_add(*y)),
            BinaryOp::Sub => Value::Int(x.wrapping_sub(*y)),
            BinaryOp::Mul => Value::Int(x.wrapping_mul(*y)),
            BinaryOp::Div => x.checked_div(*y).map_or(Value::Nil, Value::Int),
            BinaryOp::Mod => x.checked_rem(*y).map_or(Value::Nil, Value::Int),
            BinaryOp::Pow => {
                let p = (*x as f64).powf(*y as f64);
                if p.is_finite() {
                    Value::Int(p as i64)
                } else {
                    Value::Nil
                }
            }
            _ => Value::Nil,
        },
        (x, y) if x.is_numeric() && y.is_numeric() => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return Value::Nil;
            };
            Value::Float(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Mod => x % y,
                BinaryOp::Pow => x.powf(y),
                _ => return Value::Nil,
            })
        }
        _ => Value::Nil,
    }
}

/// Evaluates field expressions for spans of one trace.
pub struct Evaluator<'a> {
    /// The trace's spans.
    pub spans: &'a dyn SpanAccess,
    /// The query's compiled regexes.
    pub regexes: &'a Regexes,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").finish_non_exhaustive()
    }
}

impl<'a> Evaluator<'a> {
    /// The value of `expr` for span `row` under `binding`.
    pub fn field(&self, expr: &FieldExpr, row: usize, binding: Binding) -> Value<'a> {
        match expr {
            FieldExpr::Static(s) => Value::from(s),
            FieldExpr::Attribute(attr) => self.attribute(attr, row, binding),
            FieldExpr::Intrinsic(i) => self.spans.intrinsic(row, *i, binding),
            FieldExpr::Exists(inner, exists) => {
                Value::Bool(self.field(inner, row, binding).is_nil() != *exists)
            }
            FieldExpr::Unary(UnaryOp::Not, inner) => match self.field(inner, row, binding) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Nil,
            },
            FieldExpr::Unary(UnaryOp::Neg, inner) => match self.field(inner, row, binding) {
                Value::Int(i) => Value::Int(i.wrapping_neg()),
                Value::Float(f) => Value::Float(-f),
                Value::Duration(d) => Value::Duration(d.wrapping_neg()),
                _ => Value::Nil,
            },
            FieldExpr::Binary(op, lhs, rhs) => {
                let l = self.field(lhs, row, binding);
                if *op == BinaryOp::And && l == Value::Bool(false) {
                    return Value::Bool(false);
                }
                let r = self.field(rhs, row, binding);
                match op {
                    BinaryOp::And | BinaryOp::Or => match (l, r) {
                        (Value::Bool(x), Value::Bool(y)) => {
                            Value::Bool(if *op == BinaryOp::And { x && y } else { x || y })
                        }
                        _ => Value::Bool(false),
                    },
                    op if op.is_comparison() => {
                        let regex = match rhs.as_ref() {
                            FieldExpr::Static(Static::String(p)) => self.regexes.get(p),
                            _ => None,
                        };
                        Value::Bool(compare(*op, &l, &r, regex))
                    }
                    op => arithmetic(*op, &l, &r),
                }
            }
        }
    }

    fn attribute(&self, attr: &Attribute, row: usize, binding: Binding) -> Value<'a> {
        let row = if attr.parent {
            match self.spans.parent(row) {
                Some(parent) => parent,
                None => return Value::Nil,
            }
        } else {
            row
        };
        match attr.scope {
            AttributeScope::Unscoped => {
                let span = self
                    .spans
                    .attribute(row, AttributeScope::Span, &attr.name, binding);
                if !span.is_nil() {
                    return span;
                }
                self.spans
                    .attribute(row, AttributeScope::Resource, &attr.name, binding)
            }
            scope => self.spans.attribute(row, scope, &attr.name, binding),
        }
    }

    /// Whether span `row` passes a filter: for filters reading events or
    /// links, any (event, link) pair may satisfy it.
    pub fn matches(&self, filter: &FieldExpr, row: usize, per_binding: bool) -> bool {
        if !per_binding {
            return self.field(filter, row, Binding::default()) == Value::Bool(true);
        }
        let events = self.spans.event_count(row);
        let links = self.spans.link_count(row);
        let event_choices: Vec<Option<usize>> = if events == 0 {
            vec![None]
        } else {
            (0..events).map(Some).collect()
        };
        let link_choices: Vec<Option<usize>> = if links == 0 {
            vec![None]
        } else {
            (0..links).map(Some).collect()
        };
        event_choices.iter().any(|event| {
            link_choices.iter().any(|link| {
                self.field(
                    filter,
                    row,
                    Binding {
                        event: *event,
                        link: *link,
                    },
                ) == Value::Bool(true)
            })
        })
    }
}

/// Whether a field expression reads events or links (and so is evaluated
/// per (event, link) pair).
pub fn reads_events_or_links(expr: &FieldExpr) -> bool {
    let mut found = false;
    expr.visit_fields(&mut |f| match f {
        FieldExpr::Attribute(a)
            if matches!(a.scope, AttributeScope::Event | AttributeScope::Link) =>
        {
            found = true;
        }
        FieldExpr::Intrinsic(
            Intrinsic::EventName
            | Intrinsic::EventTimeSinceStart
            | Intrinsic::LinkTraceId
            | Intrinsic::LinkSpanId,
        ) => found = true,
        _ => {}
    });
    found
}

/// A spanset: some spans of one trace (row numbers, ascending), with the
/// attributes pipeline stages attached (`by(...)`, aggregates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spanset {
    /// Rows, ascending.
    pub spans: Vec<usize>,
    /// Stage attributes, by name.
    pub attributes: Vec<(String, Value<'static>)>,
}

impl Spanset {
    fn with_spans(&self, spans: Vec<usize>) -> Self {
        Self {
            spans,
            attributes: self.attributes.clone(),
        }
    }
}

/// A query failed on the data (not on its syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn union(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Evaluator<'_> {
    /// Runs a pipeline on input spansets.
    pub fn pipeline(
        &self,
        pipeline: &Pipeline,
        input: Vec<Spanset>,
    ) -> Result<Vec<Spanset>, EvalError> {
        let mut current = input;
        for stage in &pipeline.stages {
            if current.is_empty() {
                break;
            }
            current = self.stage(stage, current)?;
        }
        Ok(current)
    }

    fn stage(&self, stage: &Stage, input: Vec<Spanset>) -> Result<Vec<Spanset>, EvalError> {
        let mut out = Vec::new();
        match stage {
            Stage::Spanset(expr) => {
                for set in &input {
                    out.extend(self.spanset(expr, set)?);
                }
            }
            Stage::ScalarFilter(filter) => {
                for mut set in input {
                    let Some(value) = self.aggregate(&filter.aggregate, &set.spans) else {
                        continue;
                    };
                    let wanted = Value::from(&filter.value);
                    if compare_scalar(filter.op, &value, &wanted, None) {
                        set.attributes
                            .push((aggregate_name(&filter.aggregate), value.into_owned()));
                        out.push(set);
                    }
                }
            }
            Stage::GroupBy(expr) => {
                let name = format!("by({})", super::display::field(expr));
                for set in input {
                    let mut groups: BTreeMap<String, (Value<'static>, Vec<usize>)> =
                        BTreeMap::new();
                    let mut order = Vec::new();
                    for &row in &set.spans {
                        let value = self.field(expr, row, Binding::default()).into_owned();
                        let key = value.group_key();
                        let entry = groups.entry(key.clone()).or_insert_with(|| {
                            order.push(key.clone());
                            (value, Vec::new())
                        });
                        entry.1.push(row);
                    }
                    for key in order {
                        if let Some((value, spans)) = groups.remove(&key) {
                            let mut group = set.with_spans(spans);
                            group.attributes.push((name.clone(), value));
                            out.push(group);
                        }
                    }
                }
            }
            Stage::Coalesce => {
                let spans: Vec<usize> =
                    input.iter().flat_map(|s| s.spans.iter().copied()).collect();
                out.push(Spanset {
                    spans: union(&spans, &[]),
                    attributes: Vec::new(),
                });
            }
            Stage::Select(_) => out = input,
        }
        Ok(out)
    }

    fn spanset(&self, expr: &SpansetExpr, input: &Spanset) -> Result<Vec<Spanset>, EvalError> {
        match expr {
            SpansetExpr::Filter(filter) => {
                let per_binding = reads_events_or_links(filter);
                let spans: Vec<usize> = input
                    .spans
                    .iter()
                    .copied()
                    .filter(|&row| self.matches(filter, row, per_binding))
                    .collect();
                Ok(if spans.is_empty() {
                    Vec::new()
                } else {
                    vec![input.with_spans(spans)]
                })
            }
            SpansetExpr::Pipeline(pipeline) => self.pipeline(pipeline, vec![input.clone()]),
            SpansetExpr::Op(op, lhs, rhs) => {
                let l = self.spanset(lhs, input)?;
                let r = self.spanset(rhs, input)?;
                let all = |sets: &[Spanset]| {
                    let mut spans: Vec<usize> =
                        sets.iter().flat_map(|s| s.spans.iter().copied()).collect();
                    spans.sort_unstable();
                    spans.dedup();
                    spans
                };
                match op {
                    SpansetOp::And => Ok(if !l.is_empty() && !r.is_empty() {
                        vec![input.with_spans(union(&all(&l), &all(&r)))]
                    } else {
                        Vec::new()
                    }),
                    SpansetOp::Or => Ok(if !l.is_empty() || !r.is_empty() {
                        vec![input.with_spans(union(&all(&l), &all(&r)))]
                    } else {
                        Vec::new()
                    }),
                    structural => {
                        if r.is_empty() {
                            return Ok(Vec::new());
                        }
                        if l.len() > 1 || r.len() > 1 {
                            return Err(EvalError(
                                "spanset operators are not supported for multiple spansets per trace. consider using coalesce()"
                                    .to_owned(),
                            ));
                        }
                        let lspans = l.first().map(|s| s.spans.as_slice()).unwrap_or(&[]);
                        let spans = self.structural(*structural, lspans, &r[0].spans);
                        Ok(if spans.is_empty() {
                            Vec::new()
                        } else {
                            vec![input.with_spans(spans)]
                        })
                    }
                }
            }
        }
    }

    /// The spans a structural operator returns (see `docs/traceql.md`).
    fn structural(&self, op: SpansetOp, l: &[usize], r: &[usize]) -> Vec<usize> {
        let sets = |rows: &[usize]| -> Vec<(usize, NestedSet)> {
            rows.iter()
                .map(|&row| (row, self.spans.nested_set(row)))
                .collect()
        };
        let (ls, rs) = (sets(l), sets(r));
        let known = |n: &NestedSet| n.0 != 0 && n.1 != 0;

        // `a` descends from some span of `of`: some interval of `of` holds a.left.
        let descends = |of: &[(usize, NestedSet)]| {
            let mut lefts: Vec<(i32, i32)> = of
                .iter()
                .filter(|(_, n)| known(n))
                .map(|(_, n)| (n.0, n.1))
                .collect();
            lefts.sort_unstable();
            let mut max_right = Vec::with_capacity(lefts.len());
            let mut m = i32::MIN;
            for (_, right) in &lefts {
                m = m.max(*right);
                max_right.push(m);
            }
            move |n: &NestedSet| -> bool {
                if !known(n) {
                    return false;
                }
                let k = lefts.partition_point(|(left, _)| *left < n.0);
                k > 0 && max_right[k - 1] > n.0
            }
        };
        // `a` is an ancestor of some span of `of`: a left of `of` inside (a.left, a.right).
        let ancestors = |of: &[(usize, NestedSet)]| {
            let mut lefts: Vec<i32> = of
                .iter()
                .filter(|(_, n)| known(n))
                .map(|(_, n)| n.0)
                .collect();
            lefts.sort_unstable();
            move |n: &NestedSet| -> bool {
                if !known(n) {
                    return false;
                }
                let k = lefts.partition_point(|left| *left <= n.0);
                k < lefts.len() && lefts[k] < n.1
            }
        };
        // `a` is a child of some span of `of`.
        let child_of = |of: &[(usize, NestedSet)]| {
            let lefts: HashSet<i32> = of.iter().map(|(_, n)| n.0).filter(|l| *l != 0).collect();
            move |n: &NestedSet| n.2 != 0 && lefts.contains(&n.2)
        };
        // `a` is the parent of some span of `of`.
        let parent_of = |of: &[(usize, NestedSet)]| {
            let parents: HashSet<i32> = of.iter().map(|(_, n)| n.2).filter(|p| *p != 0).collect();
            move |n: &NestedSet| n.0 != 0 && parents.contains(&n.0)
        };
        // `a` (row) has a sibling in `of` other than itself.
        let sibling_of = |of: &[(usize, NestedSet)]| {
            let mut by_parent: HashMap<i32, Vec<usize>> = HashMap::new();
            for (row, n) in of {
                if n.2 != 0 {
                    by_parent.entry(n.2).or_default().push(*row);
                }
            }
            move |row: usize, n: &NestedSet| {
                n.2 != 0
                    && by_parent
                        .get(&n.2)
                        .is_some_and(|rows| rows.iter().any(|r| *r != row))
            }
        };
        let pick = |set: &[(usize, NestedSet)],
                    test: &dyn Fn(usize, &NestedSet) -> bool,
                    keep: bool|
         -> Vec<usize> {
            set.iter()
                .filter(|(row, n)| test(*row, n) == keep)
                .map(|(row, _)| *row)
                .collect()
        };
        let out = match op {
            SpansetOp::Child | SpansetOp::NotChild => {
                let t = child_of(&ls);
                pick(&rs, &|_, n| t(n), op == SpansetOp::Child)
            }
            SpansetOp::Parent | SpansetOp::NotParent => {
                let t = parent_of(&ls);
                pick(&rs, &|_, n| t(n), op == SpansetOp::Parent)
            }
            SpansetOp::Descendant | SpansetOp::NotDescendant => {
                let t = descends(&ls);
                pick(&rs, &|_, n| t(n), op == SpansetOp::Descendant)
            }
            SpansetOp::Ancestor | SpansetOp::NotAncestor => {
                let t = ancestors(&ls);
                pick(&rs, &|_, n| t(n), op == SpansetOp::Ancestor)
            }
            SpansetOp::Sibling | SpansetOp::NotSibling => {
                let t = sibling_of(&ls);
                pick(&rs, &|row, n| t(row, n), op == SpansetOp::Sibling)
            }
            SpansetOp::UnionChild => {
                let (a, b) = (child_of(&ls), parent_of(&rs));
                union(
                    &pick(&rs, &|_, n| a(n), true),
                    &pick(&ls, &|_, n| b(n), true),
                )
            }
            SpansetOp::UnionParent => {
                let (a, b) = (parent_of(&ls), child_of(&rs));
                union(
                    &pick(&rs, &|_, n| a(n), true),
                    &pick(&ls, &|_, n| b(n), true),
                )
            }
            SpansetOp::UnionDescendant => {
                let (a, b) = (descends(&ls), ancestors(&rs));
                union(
                    &pick(&rs, &|_, n| a(n), true),
                    &pick(&ls, &|_, n| b(n), true),
                )
            }
            SpansetOp::UnionAncestor => {
                let (a, b) = (ancestors(&ls), descends(&rs));
                union(
                    &pick(&rs, &|_, n| a(n), true),
                    &pick(&ls, &|_, n| b(n), true),
                )
            }
            SpansetOp::UnionSibling => {
                let (a, b) = (sibling_of(&ls), sibling_of(&rs));
                union(
                    &pick(&rs, &|row, n| a(row, n), true),
                    &pick(&ls, &|row, n| b(row, n), true),
                )
            }
            SpansetOp::And | SpansetOp::Or => Vec::new(),
        };
        union(&out, &[])
    }

    /// An aggregate over spans; `None` when it has no value (every span
    /// lacks the field).
    fn aggregate(&self, aggregate: &Aggregate, spans: &[usize]) -> Option<Value<'static>> {
        let field = match aggregate {
            Aggregate::Count => return Some(Value::Int(spans.len() as i64)),
            Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) => f,
        };
        let values: Vec<Value<'static>> = spans
            .iter()
            .map(|&row| self.field(field, row, Binding::default()).into_owned())
            .filter(Value::is_numeric)
            .collect();
        if values.is_empty() {
            return None;
        }
        match aggregate {
            Aggregate::Count => None,
            Aggregate::Min(_) => values
                .into_iter()
                .min_by(|a, b| order(a, b).unwrap_or(Ordering::Equal)),
            Aggregate::Max(_) => values
                .into_iter()
                .max_by(|a, b| order(a, b).unwrap_or(Ordering::Equal)),
            Aggregate::Sum(_) | Aggregate::Avg(_) => {
                let n = values.len();
                let sum = sum_values(&values);
                if matches!(aggregate, Aggregate::Sum(_)) {
                    return Some(sum);
                }
                Some(match sum {
                    Value::Duration(d) => Value::Duration(d / n as i64),
                    other => Value::Float(other.as_f64()? / n as f64),
                })
            }
        }
    }
}

/// Sum of numeric values: ints stay ints, durations durations; any mix is
/// a float.
fn sum_values(values: &[Value<'_>]) -> Value<'static> {
    if values.iter().all(|v| matches!(v, Value::Int(_))) {
        return Value::Int(values.iter().fold(0i64, |acc, v| match v {
            Value::Int(i) => acc.wrapping_add(*i),
            _ => acc,
        }));
    }
    if values.iter().all(|v| matches!(v, Value::Duration(_))) {
        return Value::Duration(values.iter().fold(0i64, |acc, v| match v {
            Value::Duration(d) => acc.wrapping_add(*d),
            _ => acc,
        }));
    }
    Value::Float(values.iter().filter_map(Value::as_f64).sum())
}

/// The name Tempo gives an aggregate's result attribute, e.g. `count()`,
/// `avg(duration)`.
pub fn aggregate_name(aggregate: &Aggregate) -> String {
    match aggregate {
        Aggregate::Count => "count()".to_owned(),
        Aggregate::Avg(f) => format!("avg({})", super::display::field(f)),
        Aggregate::Min(f) => format!("min({})", super::display::field(f)),
        Aggregate::Max(f) => format!("max({})", super::display::field(f)),
        Aggregate::Sum(f) => format!("sum({})", super::display::field(f)),
    }
}
