//! A naive TraceQL search evaluator, written from `docs/traceql.md` alone
//! (not from the engine), over whole traces held in memory: the answer key
//! of `traceql_answers.rs`.
//!
//! It interprets the parsed tree (`strata_querier::traceql::ast`): typed
//! values per span, comparisons that are false on a type mismatch or a
//! missing value, `&&`/`||` that are false when an operand is not a
//! boolean (Tempo's rule; the page does not say), arithmetic exact on ints
//! and in floats otherwise (durations included: Tempo's rule, the page
//! does not say), `= nil`/`!= nil`, unscoped span-then-resource lookup,
//! `parent.`, per-(event, link) evaluation, arrays (any element; every
//! element for `!=`/`!~`), structural operators from parent/child span IDs
//! (spans under a missing parent satisfy none of them), spanset `&&`/`||`,
//! pipelines with aggregates, `by`, `coalesce` and `select`, and the trace
//! intrinsics. Regular expressions use a small backtracking matcher below
//! (RE2 syntax subset: fully anchored, `.` matches newline).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use strata_querier::traceql::ast::{
    Aggregate, Attribute, AttributeScope, BinaryOp, FieldExpr, Intrinsic, Kind, Pipeline, Query,
    ScalarFilter, SpansetExpr, SpansetOp, Stage, Static, Status, UnaryOp,
};

use super::trace_dataset::{AttrValue, Attrs, Dataset, Event, Link, Span, Trace};

/// A typed runtime value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Dur(i64),
    Status(Status),
    Kind(Kind),
    Arr(Vec<V>),
}

impl V {
    fn is_int_like(&self) -> bool {
        matches!(self, V::Int(_) | V::Dur(_))
    }

    fn is_numeric(&self) -> bool {
        matches!(self, V::Int(_) | V::Dur(_) | V::Float(_))
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            V::Int(x) | V::Dur(x) => Some(*x),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            V::Int(x) | V::Dur(x) => Some(*x as f64),
            V::Float(x) => Some(*x),
            _ => None,
        }
    }
}

/// An attribute as TraceQL sees it: a one-element array is its element,
/// empty or mixed arrays are nil.
pub fn attr_v(v: &AttrValue) -> V {
    match v {
        AttrValue::Str(x) => V::Str(x.clone()),
        AttrValue::Int(x) => V::Int(*x),
        AttrValue::Float(x) => V::Float(*x),
        AttrValue::Bool(x) => V::Bool(*x),
        AttrValue::Array(xs) => {
            let vs: Vec<V> = xs.iter().map(attr_v).collect();
            let Some(first) = vs.first() else {
                return V::Nil;
            };
            let same = vs
                .iter()
                .all(|v| std::mem::discriminant(v) == std::mem::discriminant(first));
            if !same || matches!(first, V::Arr(_) | V::Nil) {
                V::Nil
            } else if vs.len() == 1 {
                first.clone()
            } else {
                V::Arr(vs)
            }
        }
    }
}

fn get<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Lowercase hex without leading zeros (`trace:id`, the search answer).
pub fn trace_id_hex(id: &[u8; 16]) -> String {
    let full = hex::encode(id);
    let stripped = full.trim_start_matches('0');
    if stripped.is_empty() {
        "0".to_owned()
    } else {
        stripped.to_owned()
    }
}

/// Known disagreements of the engine with `docs/traceql.md`, modelled so
/// that a failing query can be attributed to them (`traceql_answers.rs`
/// names the ones a mismatch is explained by). All off: the documented
/// semantics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deviations {
    /// `span:childCount` is 0 for every span of a trace without a root.
    pub rootless_child_count_zero: bool,
    /// `parent.` reads nil for spans under a missing parent (no nested-set
    /// numbers), even when their own parent is in the trace.
    pub parent_needs_numbering: bool,
    /// An integer literal compared with an attribute whose value is a
    /// float (on a key stored mostly as ints) is false.
    pub int_literal_misses_floats: bool,
}

impl Deviations {
    /// Each deviation alone, with its description.
    pub fn each() -> Vec<(&'static str, Deviations)> {
        let none = Deviations::default();
        vec![
            (
                "span:childCount is 0 in traces without a root",
                Deviations {
                    rootless_child_count_zero: true,
                    ..none
                },
            ),
            (
                "parent. is nil under a missing parent",
                Deviations {
                    parent_needs_numbering: true,
                    ..none
                },
            ),
            (
                "int literals miss float values of an int-typed key",
                Deviations {
                    int_literal_misses_floats: true,
                    ..none
                },
            ),
            (
                "all of the above",
                Deviations {
                    rootless_child_count_zero: true,
                    parent_needs_numbering: true,
                    int_literal_misses_floats: true,
                },
            ),
        ]
    }
}

/// One trace (or one fragment of it) prepared for evaluation.
#[derive(Debug)]
pub struct TraceView<'a> {
    pub data: &'a Dataset,
    pub trace: &'a Trace,
    pub spans: Vec<&'a Span>,
    /// The parent's index, when the parent is in this view.
    pub parent: Vec<Option<usize>>,
    pub children: Vec<Vec<usize>>,
    /// Reachable from a root (a span without parent ID): takes part in
    /// structural relations.
    pub numbered: Vec<bool>,
    /// Nested-set numbers of numbered spans (depth first, roots and
    /// children by start time), for the `nestedSet*` intrinsics.
    pub nested: Vec<Option<(i64, i64, i64)>>,
    /// The earliest-starting span without parent ID.
    pub root: Option<usize>,
    pub start: u64,
    pub end: u64,
    pub id_hex: String,
    /// Engine deviations to model (none: the documented semantics).
    pub deviations: Deviations,
}

impl<'a> TraceView<'a> {
    /// The whole trace, or only the spans at `subset`.
    pub fn new(
        data: &'a Dataset,
        trace: &'a Trace,
        subset: Option<&[usize]>,
        deviations: Deviations,
    ) -> Self {
        let spans: Vec<&Span> = match subset {
            Some(indices) => indices.iter().map(|i| &trace.spans[*i]).collect(),
            None => trace.spans.iter().collect(),
        };
        let n = spans.len();
        let by_id: HashMap<[u8; 8], usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parent
                    .and_then(|p| by_id.get(&p).copied())
                    .filter(|p| *p != i)
            })
            .collect();
        let mut children = vec![Vec::new(); n];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        for c in &mut children {
            c.sort_by_key(|i| (spans[*i].start, *i));
        }
        let mut roots: Vec<usize> = (0..n).filter(|i| spans[*i].parent.is_none()).collect();
        roots.sort_by_key(|i| (spans[*i].start, *i));
        let mut numbered = vec![false; n];
        let mut nested = vec![None; n];
        let mut counter = 1i64;
        fn number(
            node: usize,
            parent_left: i64,
            children: &[Vec<usize>],
            numbered: &mut [bool],
            nested: &mut [Option<(i64, i64, i64)>],
            counter: &mut i64,
        ) {
            numbered[node] = true;
            let left = *counter;
            *counter += 1;
            for c in &children[node] {
                number(*c, left, children, numbered, nested, counter);
            }
            nested[node] = Some((left, *counter, parent_left));
            *counter += 1;
        }
        for r in &roots {
            number(*r, -1, &children, &mut numbered, &mut nested, &mut counter);
        }
        let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
        Self {
            data,
            trace,
            root: roots.first().copied(),
            spans,
            parent,
            children,
            numbered,
            nested,
            start,
            end,
            id_hex: trace_id_hex(&trace.id),
            deviations,
        }
    }

    fn resource(&self, s: usize) -> &'a Attrs {
        &self.data.resources[self.spans[s].resource].attrs
    }

    fn service(&self, s: usize) -> String {
        match get(self.resource(s), "service.name") {
            Some(AttrValue::Str(x)) => x.clone(),
            _ => String::new(),
        }
    }

    /// `a` is a proper ancestor of `b`.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut p = self.parent[b];
        while let Some(x) = p {
            if x == a {
                return true;
            }
            p = self.parent[x];
        }
        false
    }

    /// The relation a structural operator needs between an A span `a` and
    /// a B span `b`.
    fn related(&self, op: SpansetOp, a: usize, b: usize) -> bool {
        if !self.numbered[a] || !self.numbered[b] {
            return false;
        }
        use SpansetOp::*;
        match op {
            Child | NotChild | UnionChild => self.parent[b] == Some(a),
            Parent | NotParent | UnionParent => self.parent[a] == Some(b),
            Descendant | NotDescendant | UnionDescendant => self.is_ancestor(a, b),
            Ancestor | NotAncestor | UnionAncestor => self.is_ancestor(b, a),
            Sibling | NotSibling | UnionSibling => a != b && self.parent[a] == self.parent[b],
            And | Or => false,
        }
    }
}

/// A spanset: span indices within a [`TraceView`].
pub type Set = BTreeSet<usize>;

#[derive(Clone, Copy)]
struct Ctx<'t> {
    t: &'t TraceView<'t>,
    s: usize,
    event: Option<&'t Event>,
    link: Option<&'t Link>,
}

/// A literal's value.
pub fn static_v(s: &Static) -> V {
    match s {
        Static::Nil => V::Nil,
        Static::Bool(b) => V::Bool(*b),
        Static::Int(i) => V::Int(*i),
        Static::Float(f) => V::Float(*f),
        Static::String(x) => V::Str(x.clone()),
        Static::Duration(d) => V::Dur(*d),
        Static::Status(x) => V::Status(*x),
        Static::Kind(x) => V::Kind(*x),
    }
}

fn lookup(a: &Attribute, c: Ctx<'_>) -> V {
    let s = if a.parent {
        if c.t.deviations.parent_needs_numbering && !c.t.numbered[c.s] {
            return V::Nil;
        }
        match c.t.parent[c.s] {
            Some(p) => p,
            None => return V::Nil,
        }
    } else {
        c.s
    };
    let span = c.t.spans[s];
    let name = a.name.as_str();
    let found = match a.scope {
        AttributeScope::Span => get(&span.attrs, name),
        AttributeScope::Resource => get(c.t.resource(s), name),
        AttributeScope::Unscoped => get(&span.attrs, name).or_else(|| get(c.t.resource(s), name)),
        AttributeScope::Event if !a.parent => c.event.and_then(|e| get(&e.attrs, name)),
        AttributeScope::Link if !a.parent => c.link.and_then(|l| get(&l.attrs, name)),
        AttributeScope::Instrumentation if !a.parent => {
            get(&c.t.data.scopes[span.scope].attrs, name)
        }
        _ => None,
    };
    found.map(attr_v).unwrap_or(V::Nil)
}

fn intrinsic(i: Intrinsic, c: Ctx<'_>) -> V {
    let t = c.t;
    let span = t.spans[c.s];
    match i {
        Intrinsic::Duration => V::Dur(span.end as i64 - span.start as i64),
        Intrinsic::Name => V::Str(span.name.clone()),
        Intrinsic::Status => Status::from_otlp(span.status_code).map_or(V::Nil, V::Status),
        Intrinsic::StatusMessage => V::Str(span.status_message.clone()),
        Intrinsic::Kind => Kind::from_otlp(span.kind).map_or(V::Nil, V::Kind),
        Intrinsic::ChildCount if t.deviations.rootless_child_count_zero && t.root.is_none() => {
            V::Int(0)
        }
        Intrinsic::ChildCount => V::Int(t.children[c.s].len() as i64),
        Intrinsic::SpanId => V::Str(hex::encode(span.span_id)),
        Intrinsic::ParentId => V::Str(
            span.parent
                .map_or_else(|| "0000000000000000".to_owned(), hex::encode),
        ),
        Intrinsic::TraceDuration => V::Dur(t.end as i64 - t.start as i64),
        Intrinsic::RootName => V::Str(t.root.map_or_else(String::new, |r| t.spans[r].name.clone())),
        Intrinsic::RootService => V::Str(t.root.map_or_else(String::new, |r| t.service(r))),
        Intrinsic::TraceId => V::Str(t.id_hex.clone()),
        Intrinsic::EventName => c.event.map_or(V::Nil, |e| V::Str(e.name.clone())),
        Intrinsic::EventTimeSinceStart => c
            .event
            .map_or(V::Nil, |e| V::Dur(e.time as i64 - span.start as i64)),
        Intrinsic::LinkTraceId => c.link.map_or(V::Nil, |l| V::Str(hex::encode(l.trace_id))),
        Intrinsic::LinkSpanId => c.link.map_or(V::Nil, |l| V::Str(hex::encode(l.span_id))),
        Intrinsic::ScopeName => V::Str(t.data.scopes[span.scope].name.clone()),
        Intrinsic::ScopeVersion => V::Str(t.data.scopes[span.scope].version.clone()),
        // `docs/format.md`: spans under a missing parent get 0 in all three.
        Intrinsic::NestedSetLeft => V::Int(t.nested[c.s].map_or(0, |n| n.0)),
        Intrinsic::NestedSetRight => V::Int(t.nested[c.s].map_or(0, |n| n.1)),
        Intrinsic::NestedSetParent => V::Int(t.nested[c.s].map_or(0, |n| n.2)),
    }
}

/// Ordering of two comparable scalars; `None` when their types do not
/// compare.
fn order(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        _ if a.is_int_like() && b.is_int_like() => Some(a.as_i64()?.cmp(&b.as_i64()?)),
        _ if a.is_numeric() && b.is_numeric() => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (V::Str(x), V::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

/// A comparison: false on nil or mismatched types; arrays hold when any
/// element does (every element for `!=` and `!~`).
pub fn compare(op: BinaryOp, a: &V, b: &V) -> bool {
    use BinaryOp::*;
    match (a, b) {
        (V::Nil, _) | (_, V::Nil) => false,
        (V::Arr(xs), _) => {
            if matches!(op, Neq | NotRegex) {
                xs.iter().all(|x| compare(op, x, b))
            } else {
                xs.iter().any(|x| compare(op, x, b))
            }
        }
        (_, V::Arr(ys)) => {
            if matches!(op, Neq | NotRegex) {
                ys.iter().all(|y| compare(op, a, y))
            } else {
                ys.iter().any(|y| compare(op, a, y))
            }
        }
        _ => match op {
            Regex | NotRegex => match (a, b) {
                (V::Str(text), V::Str(pattern)) => regex_match(pattern, text) == (op == Regex),
                _ => false,
            },
            Eq | Neq => {
                let equal = match (a, b) {
                    (V::Bool(x), V::Bool(y)) => Some(x == y),
                    (V::Status(x), V::Status(y)) => Some(x == y),
                    (V::Kind(x), V::Kind(y)) => Some(x == y),
                    _ => order(a, b).map(|o| o == Ordering::Equal),
                };
                equal.is_some_and(|e| e == (op == Eq))
            }
            Lt => order(a, b) == Some(Ordering::Less),
            Lte => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
            Gt => order(a, b) == Some(Ordering::Greater),
            Gte => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
            _ => false,
        },
    }
}

/// Arithmetic: ints exactly (integer division by zero is nil), other
/// numeric mixes, durations included, as floats (as Tempo computes all
/// arithmetic; `docs/traceql.md` does not say), anything else nil.
pub fn arith(op: BinaryOp, a: &V, b: &V) -> V {
    use BinaryOp::*;
    if matches!(a, V::Int(_)) && matches!(b, V::Int(_)) {
        let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
            return V::Nil;
        };
        let r = match op {
            Add => x.checked_add(y),
            Sub => x.checked_sub(y),
            Mul => x.checked_mul(y),
            Div => x.checked_div(y),
            Mod => x.checked_rem(y),
            Pow => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)),
            _ => None,
        };
        return r.map_or(V::Nil, V::Int);
    }
    if a.is_numeric() && b.is_numeric() {
        let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
            return V::Nil;
        };
        return V::Float(match op {
            Add => x + y,
            Sub => x - y,
            Mul => x * y,
            Div => x / y,
            Mod => x % y,
            Pow => x.powf(y),
            _ => return V::Nil,
        });
    }
    V::Nil
}

fn eval_field(e: &FieldExpr, c: Ctx<'_>) -> V {
    match e {
        FieldExpr::Static(s) => static_v(s),
        FieldExpr::Attribute(a) => lookup(a, c),
        FieldExpr::Intrinsic(i) => intrinsic(*i, c),
        FieldExpr::Binary(op, l, r) => {
            let (a, b) = (eval_field(l, c), eval_field(r, c));
            match op {
                // Tempo: a logical operator with a non-boolean operand
                // (a missing attribute) is false, not nil.
                BinaryOp::And | BinaryOp::Or => match (a, b) {
                    (V::Bool(x), V::Bool(y)) => {
                        V::Bool(if *op == BinaryOp::And { x && y } else { x || y })
                    }
                    _ => V::Bool(false),
                },
                op if op.is_comparison() => {
                    if c.t.deviations.int_literal_misses_floats
                        && (misses_floats(l, &b, r) || misses_floats(r, &a, l))
                    {
                        return V::Bool(false);
                    }
                    V::Bool(compare(*op, &a, &b))
                }
                op => arith(*op, &a, &b),
            }
        }
        FieldExpr::Unary(UnaryOp::Neg, x) => match eval_field(x, c) {
            V::Int(i) => i.checked_neg().map_or(V::Nil, V::Int),
            V::Dur(i) => i.checked_neg().map_or(V::Nil, V::Dur),
            V::Float(f) => V::Float(-f),
            _ => V::Nil,
        },
        FieldExpr::Unary(UnaryOp::Not, x) => match eval_field(x, c) {
            V::Bool(b) => V::Bool(!b),
            _ => V::Nil,
        },
        FieldExpr::Exists(x, exists) => V::Bool((eval_field(x, c) != V::Nil) == *exists),
    }
}

/// The modelled engine bug: `literal` is an integer and `other` the
/// float value of the attribute `other_expr`.
fn misses_floats(literal: &FieldExpr, other: &V, other_expr: &FieldExpr) -> bool {
    let int_literal = match literal {
        FieldExpr::Static(Static::Int(_)) => true,
        FieldExpr::Unary(UnaryOp::Neg, x) => matches!(**x, FieldExpr::Static(Static::Int(_))),
        _ => false,
    };
    int_literal
        && matches!(other, V::Float(_))
        && matches!(other_expr, FieldExpr::Attribute(a) if a.name == "retry.count")
}

/// Whether `e` reads event fields, link fields.
fn reads_events_links(e: &FieldExpr) -> (bool, bool) {
    let (mut events, mut links) = (false, false);
    e.visit_fields(&mut |f| match f {
        FieldExpr::Attribute(a) if !a.parent && a.scope == AttributeScope::Event => events = true,
        FieldExpr::Attribute(a) if !a.parent && a.scope == AttributeScope::Link => links = true,
        FieldExpr::Intrinsic(Intrinsic::EventName | Intrinsic::EventTimeSinceStart) => {
            events = true;
        }
        FieldExpr::Intrinsic(Intrinsic::LinkTraceId | Intrinsic::LinkSpanId) => links = true,
        _ => {}
    });
    (events, links)
}

/// A span passes a filter when some (event, link) pair makes it `true`.
fn span_matches(f: &FieldExpr, t: &TraceView<'_>, s: usize) -> bool {
    let span = t.spans[s];
    let (reads_events, reads_links) = reads_events_links(f);
    let events: Vec<Option<&Event>> = if reads_events && !span.events.is_empty() {
        span.events.iter().map(Some).collect()
    } else {
        vec![None]
    };
    let links: Vec<Option<&Link>> = if reads_links && !span.links.is_empty() {
        span.links.iter().map(Some).collect()
    } else {
        vec![None]
    };
    events.iter().any(|event| {
        links.iter().any(|link| {
            let c = Ctx {
                t,
                s,
                event: *event,
                link: *link,
            };
            eval_field(f, c) == V::Bool(true)
        })
    })
}

/// The value of `f` on span `s` of `t`, reading the given event and link.
pub fn value_at(
    f: &FieldExpr,
    t: &TraceView<'_>,
    s: usize,
    event: Option<&Event>,
    link: Option<&Link>,
) -> V {
    eval_field(f, Ctx { t, s, event, link })
}

fn span_value(f: &FieldExpr, t: &TraceView<'_>, s: usize) -> V {
    eval_field(
        f,
        Ctx {
            t,
            s,
            event: None,
            link: None,
        },
    )
}

fn union(sets: &[Set]) -> Set {
    sets.iter().flatten().copied().collect()
}

/// The refusal of a structural operator whose operand yields several
/// spansets in a trace (Tempo's, kept by the engine; the page does not
/// mention it).
pub const MULTIPLE_SPANSETS: &str =
    "spanset operators are not supported for multiple spansets per trace";

/// Spansets, or the error that fails the whole query.
pub type Evaluated = Result<Vec<Set>, String>;

fn eval_spanset(e: &SpansetExpr, t: &TraceView<'_>, input: &Set) -> Evaluated {
    Ok(match e {
        SpansetExpr::Filter(f) => {
            let set: Set = input
                .iter()
                .copied()
                .filter(|s| span_matches(f, t, *s))
                .collect();
            if set.is_empty() { vec![] } else { vec![set] }
        }
        SpansetExpr::Pipeline(p) => eval_pipeline(p, t, vec![input.clone()])?,
        SpansetExpr::Op(op, l, r) => {
            let (ls, rs) = (eval_spanset(l, t, input)?, eval_spanset(r, t, input)?);
            if !op.is_logical() && (ls.len() > 1 || rs.len() > 1) {
                return Err(MULTIPLE_SPANSETS.to_owned());
            }
            let (lu, ru) = (union(&ls), union(&rs));
            use SpansetOp::*;
            let out: Set = match op {
                And if !lu.is_empty() && !ru.is_empty() => lu.union(&ru).copied().collect(),
                And => Set::new(),
                Or => lu.union(&ru).copied().collect(),
                Child | Parent | Descendant | Ancestor | Sibling => ru
                    .iter()
                    .copied()
                    .filter(|b| lu.iter().any(|a| t.related(*op, *a, *b)))
                    .collect(),
                NotChild | NotParent | NotDescendant | NotAncestor | NotSibling => ru
                    .iter()
                    .copied()
                    .filter(|b| !lu.iter().any(|a| t.related(*op, *a, *b)))
                    .collect(),
                UnionChild | UnionParent | UnionDescendant | UnionAncestor | UnionSibling => {
                    let left = lu
                        .iter()
                        .copied()
                        .filter(|a| ru.iter().any(|b| t.related(*op, *a, *b)));
                    let right = ru
                        .iter()
                        .copied()
                        .filter(|b| lu.iter().any(|a| t.related(*op, *a, *b)));
                    left.chain(right).collect()
                }
            };
            if out.is_empty() { vec![] } else { vec![out] }
        }
    })
}

/// An aggregate's value: exact for ints (sum, and average as a fraction),
/// floats otherwise.
enum AggValue {
    Plain(V),
    /// Sum and count of integer values.
    Ratio(i128, i128),
}

fn aggregate(a: &Aggregate, t: &TraceView<'_>, set: &Set) -> Option<AggValue> {
    let field = match a {
        Aggregate::Count => return Some(AggValue::Plain(V::Int(set.len() as i64))),
        Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) => f,
    };
    let values: Vec<V> = set
        .iter()
        .map(|s| span_value(field, t, *s))
        .filter(V::is_numeric)
        .collect();
    if values.is_empty() {
        return None;
    }
    let ints = values.iter().all(V::is_int_like);
    let durations = values.iter().all(|v| matches!(v, V::Dur(_)));
    let int_sum: i128 = values.iter().filter_map(V::as_i64).map(i128::from).sum();
    let float_sum: f64 = values.iter().filter_map(V::as_f64).sum();
    let n = values.len();
    Some(match a {
        Aggregate::Min(_) | Aggregate::Max(_) => {
            let mut best = values[0].clone();
            for v in &values[1..] {
                let o = order(v, &best)?;
                let better = if matches!(a, Aggregate::Min(_)) {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                };
                if better {
                    best = v.clone();
                }
            }
            AggValue::Plain(best)
        }
        Aggregate::Sum(_) if ints => {
            let sum = i64::try_from(int_sum).ok()?;
            AggValue::Plain(if durations { V::Dur(sum) } else { V::Int(sum) })
        }
        Aggregate::Sum(_) => AggValue::Plain(V::Float(float_sum)),
        Aggregate::Avg(_) if ints => AggValue::Ratio(int_sum, n as i128),
        Aggregate::Avg(_) => AggValue::Plain(V::Float(float_sum / n as f64)),
        Aggregate::Count => return None,
    })
}

fn scalar_ok(f: &ScalarFilter, t: &TraceView<'_>, set: &Set) -> bool {
    let literal = static_v(&f.value);
    match aggregate(&f.aggregate, t, set) {
        None => false,
        Some(AggValue::Plain(v)) => compare(f.op, &v, &literal),
        Some(AggValue::Ratio(sum, n)) => {
            let o = match &literal {
                V::Int(y) | V::Dur(y) => sum.cmp(&(i128::from(*y) * n)),
                V::Float(y) => match (sum as f64 / n as f64).partial_cmp(y) {
                    Some(o) => o,
                    None => return false,
                },
                _ => return false,
            };
            match f.op {
                BinaryOp::Eq => o == Ordering::Equal,
                BinaryOp::Neq => o != Ordering::Equal,
                BinaryOp::Lt => o == Ordering::Less,
                BinaryOp::Lte => o != Ordering::Greater,
                BinaryOp::Gt => o == Ordering::Greater,
                BinaryOp::Gte => o != Ordering::Less,
                _ => false,
            }
        }
    }
}

fn eval_pipeline(p: &Pipeline, t: &TraceView<'_>, input: Vec<Set>) -> Evaluated {
    let mut current = input;
    for stage in &p.stages {
        current = match stage {
            Stage::Spanset(e) => {
                let mut out = Vec::new();
                for s in &current {
                    out.extend(eval_spanset(e, t, s)?);
                }
                out
            }
            Stage::ScalarFilter(f) => current.into_iter().filter(|s| scalar_ok(f, t, s)).collect(),
            Stage::GroupBy(f) => {
                let mut out = Vec::new();
                for set in &current {
                    let mut groups: BTreeMap<String, Set> = BTreeMap::new();
                    for s in set {
                        let key = format!("{:?}", span_value(f, t, *s));
                        groups.entry(key).or_default().insert(*s);
                    }
                    out.extend(groups.into_values());
                }
                out
            }
            Stage::Coalesce => vec![union(&current)],
            Stage::Select(_) => current,
        };
        current.retain(|s| !s.is_empty());
    }
    Ok(current)
}

/// The output spansets of `q` on one trace.
pub fn eval_query(q: &Query, t: &TraceView<'_>) -> Evaluated {
    if t.spans.is_empty() {
        return Ok(Vec::new());
    }
    let all: Set = (0..t.spans.len()).collect();
    eval_pipeline(&q.pipeline, t, vec![all])
}

/// What a search returns for one trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceAnswer {
    /// Span IDs (16 hex) of all output spansets.
    pub spans: BTreeSet<String>,
    /// The sizes (`matched`) of the output spansets, sorted.
    pub sizes: Vec<usize>,
}

/// Answers by trace ID (hex without leading zeros).
pub type Answer = BTreeMap<String, TraceAnswer>;

/// The expected answer of `q` over `views`, or the error that fails the
/// query.
pub fn expected(q: &Query, views: &[TraceView<'_>]) -> Result<Answer, String> {
    let mut out = Answer::new();
    for t in views {
        let sets = eval_query(q, t)?;
        if sets.is_empty() {
            continue;
        }
        let mut sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        sizes.sort_unstable();
        out.insert(
            t.id_hex.clone(),
            TraceAnswer {
                spans: union(&sets)
                    .into_iter()
                    .map(|s| hex::encode(t.spans[s].span_id))
                    .collect(),
                sizes,
            },
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------
// A small regular-expression matcher: literals, `.`, classes (`[a-z]`,
// `[^…]`, `\d \w \s`), groups (`(…)`, `(?:…)`), `|`, `* + ?` and `{n,m}`,
// a leading `(?i)`/`(?s)` flag group. Fully anchored; `.` matches `\n`.

#[derive(Debug, Clone)]
enum Re {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Group(Vec<Vec<Re>>),
    Repeat(Box<Re>, usize, usize),
}

struct ReParser {
    chars: Vec<char>,
    i: usize,
}

impl ReParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn alternation(&mut self) -> Vec<Vec<Re>> {
        let mut alts = vec![self.sequence()];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.sequence());
        }
        alts
    }

    fn sequence(&mut self) -> Vec<Re> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let mut atom = self.atom();
            loop {
                let (min, max) = match self.peek() {
                    Some('*') => (0, usize::MAX),
                    Some('+') => (1, usize::MAX),
                    Some('?') => (0, 1),
                    Some('{') => {
                        self.i += 1;
                        let mut text = String::new();
                        while let Some(c) = self.next() {
                            if c == '}' {
                                break;
                            }
                            text.push(c);
                        }
                        self.i -= 1;
                        let (lo, hi) = match text.split_once(',') {
                            Some((lo, "")) => (lo.parse().unwrap(), usize::MAX),
                            Some((lo, hi)) => (lo.parse().unwrap(), hi.parse().unwrap()),
                            None => (text.parse().unwrap(), text.parse().unwrap()),
                        };
                        (lo, hi)
                    }
                    _ => break,
                };
                self.i += 1;
                // A lazy quantifier matches the same strings in full.
                if self.peek() == Some('?') {
                    self.i += 1;
                }
                atom = Re::Repeat(Box::new(atom), min, max);
            }
            seq.push(atom);
        }
        seq
    }

    fn escape_class(c: char) -> Option<Vec<(char, char)>> {
        Some(match c {
            'd' => vec![('0', '9')],
            'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
            's' => vec![(' ', ' '), ('\t', '\n'), ('\u{c}', '\r')],
            _ => return None,
        })
    }

    fn atom(&mut self) -> Re {
        let c = self.next().unwrap();
        match c {
            '.' => Re::Any,
            '(' => {
                if self.chars[self.i..].starts_with(&['?', ':']) {
                    self.i += 2;
                }
                let alts = self.alternation();
                assert_eq!(self.next(), Some(')'), "unbalanced regex");
                Re::Group(alts)
            }
            '[' => {
                let negated = self.peek() == Some('^');
                if negated {
                    self.i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = self.next().expect("unterminated class");
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let e = self.next().unwrap();
                        if let Some(class) = Self::escape_class(e) {
                            ranges.extend(class);
                            continue;
                        }
                        e
                    } else {
                        c
                    };
                    if self.peek() == Some('-') && self.chars.get(self.i + 1) != Some(&']') {
                        self.i += 1;
                        let hi = self.next().unwrap();
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                Re::Class(ranges, negated)
            }
            '\\' => {
                let e = self.next().unwrap();
                match Self::escape_class(e) {
                    Some(class) => Re::Class(class, false),
                    None => Re::Char(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    }),
                }
            }
            c => Re::Char(c),
        }
    }
}

fn one(re: &Re, c: char, ci: bool) -> bool {
    match re {
        Re::Any => true,
        Re::Char(p) => *p == c || (ci && p.eq_ignore_ascii_case(&c)),
        Re::Class(ranges, negated) => {
            let hit = |c: char| ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
            let found =
                hit(c) || (ci && (hit(c.to_ascii_lowercase()) || hit(c.to_ascii_uppercase())));
            found != *negated
        }
        Re::Group(_) | Re::Repeat(..) => false,
    }
}

fn run(seq: &[Re], text: &[char], pos: usize, ci: bool, k: &dyn Fn(usize) -> bool) -> bool {
    let Some((first, rest)) = seq.split_first() else {
        return k(pos);
    };
    match first {
        Re::Group(alts) => alts
            .iter()
            .any(|alt| run(alt, text, pos, ci, &|p| run(rest, text, p, ci, k))),
        Re::Repeat(inner, min, max) => repeat(inner, *min, *max, 0, text, pos, ci, &|p| {
            run(rest, text, p, ci, k)
        }),
        single => pos < text.len() && one(single, text[pos], ci) && run(rest, text, pos + 1, ci, k),
    }
}

#[allow(clippy::too_many_arguments)]
fn repeat(
    inner: &Re,
    min: usize,
    max: usize,
    count: usize,
    text: &[char],
    pos: usize,
    ci: bool,
    k: &dyn Fn(usize) -> bool,
) -> bool {
    if count < max
        && run(std::slice::from_ref(inner), text, pos, ci, &|p| {
            (p > pos || count < min) && repeat(inner, min, max, count + 1, text, p, ci, k)
        })
    {
        return true;
    }
    count >= min && k(pos)
}

/// Whether `pattern` matches all of `text`.
pub fn regex_match(pattern: &str, text: &str) -> bool {
    let mut ci = false;
    let mut rest = pattern;
    for flags in ["(?i)", "(?s)", "(?is)", "(?si)"] {
        if let Some(r) = rest.strip_prefix(flags) {
            ci |= flags.contains('i');
            rest = r;
        }
    }
    let mut parser = ReParser {
        chars: rest.chars().collect(),
        i: 0,
    };
    let alts = parser.alternation();
    assert!(parser.i >= parser.chars.len(), "bad regex {pattern:?}");
    let text: Vec<char> = text.chars().collect();
    run(&[Re::Group(alts)], &text, 0, ci, &|p| p == text.len())
}
