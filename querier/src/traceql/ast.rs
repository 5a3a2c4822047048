//! The TraceQL syntax tree.
//!
//! One tree serves search and (later) metrics. Its shape follows Tempo's
//! grammar (`pkg/traceql/expr.y`): a query is a pipeline of stages; the
//! first stage of a search is usually a spanset expression (spanset filters
//! joined by spanset and structural operators); field expressions inside a
//! filter are typed at run time, since attribute types are only known per
//! span.

use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The spanset pipeline (for metrics queries, the part before the
    /// metrics function).
    pub pipeline: Pipeline,
    /// A metrics stage after the pipeline, if any (`| rate() by (...)`).
    pub metrics: Option<MetricsStage>,
    /// `with (name = value, ...)`.
    pub hints: Vec<Hint>,
}

impl Query {
    /// The value of a hint, if given with the expected type.
    pub fn hint(&self, name: &str) -> Option<&Static> {
        self.hints.iter().find(|h| h.name == name).map(|h| &h.value)
    }

    /// Whether `with (most_recent=true)` was given.
    pub fn most_recent(&self) -> bool {
        matches!(self.hint("most_recent"), Some(Static::Bool(true)))
    }
}

/// `with (name = value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    /// The hint's name.
    pub name: String,
    /// Its value.
    pub value: Static,
}

/// Stages separated by `|`, each taking the previous one's spansets.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// At least one stage.
    pub stages: Vec<Stage>,
}

/// One pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Spanset filters and operators.
    Spanset(SpansetExpr),
    /// `count() > 2`, `avg(duration) < 1s`.
    ScalarFilter(ScalarFilter),
    /// `by(field)`.
    GroupBy(FieldExpr),
    /// `coalesce()`.
    Coalesce,
    /// `select(field, ...)`.
    Select(Vec<FieldExpr>),
}

/// Spanset filters combined by spanset operators.
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ expression }`; `{}` is `{ true }`.
    Filter(FieldExpr),
    /// `lhs op rhs`.
    Op(SpansetOp, Box<SpansetExpr>, Box<SpansetExpr>),
    /// A parenthesised pipeline used as an operand: `({a} | count() > 1) && ({b})`.
    Pipeline(Box<Pipeline>),
}

/// Operators between spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpansetOp {
    /// `&&`: both sides match in the trace.
    And,
    /// `||`: either side matches.
    Or,
    /// `>`: right-hand spans that are children of left-hand spans.
    Child,
    /// `<`: right-hand spans that are parents of left-hand spans.
    Parent,
    /// `>>`: right-hand spans that are descendants of left-hand spans.
    Descendant,
    /// `<<`: right-hand spans that are ancestors of left-hand spans.
    Ancestor,
    /// `~`: right-hand spans that are siblings of left-hand spans.
    Sibling,
    /// `!>`.
    NotChild,
    /// `!<`.
    NotParent,
    /// `!>>`.
    NotDescendant,
    /// `!<<`.
    NotAncestor,
    /// `!~`.
    NotSibling,
    /// `&>`: both sides of each child relation.
    UnionChild,
    /// `&<`.
    UnionParent,
    /// `&>>`.
    UnionDescendant,
    /// `&<<`.
    UnionAncestor,
    /// `&~`.
    UnionSibling,
}

impl SpansetOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::And => "&&",
            Self::Or => "||",
            Self::Child => ">",
            Self::Parent => "<",
            Self::Descendant => ">>",
            Self::Ancestor => "<<",
            Self::Sibling => "~",
            Self::NotChild => "!>",
            Self::NotParent => "!<",
            Self::NotDescendant => "!>>",
            Self::NotAncestor => "!<<",
            Self::NotSibling => "!~",
            Self::UnionChild => "&>",
            Self::UnionParent => "&<",
            Self::UnionDescendant => "&>>",
            Self::UnionAncestor => "&<<",
            Self::UnionSibling => "&~",
        }
    }

    /// Whether this is `&&` or `||` (which bind more loosely than the
    /// structural operators).
    pub fn is_logical(self) -> bool {
        matches!(self, Self::And | Self::Or)
    }
}

/// `aggregate op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarFilter {
    /// The aggregate.
    pub aggregate: Aggregate,
    /// A comparison.
    pub op: BinaryOp,
    /// A number or duration.
    pub value: Static,
}

/// Aggregates over a spanset.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// `count()`.
    Count,
    /// `avg(field)`.
    Avg(FieldExpr),
    /// `min(field)`.
    Min(FieldExpr),
    /// `max(field)`.
    Max(FieldExpr),
    /// `sum(field)`.
    Sum(FieldExpr),
}

/// A metrics function after the spanset pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsStage {
    /// The function.
    pub function: MetricsFunction,
    /// `by (...)`.
    pub by: Vec<FieldExpr>,
    /// Second-stage functions (`| topk(5)`).
    pub second_stage: Vec<SecondStage>,
}

/// Metrics functions.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsFunction {
    /// `rate()`.
    Rate,
    /// `count_over_time()`.
    CountOverTime,
    /// `min_over_time(field)`.
    MinOverTime(FieldExpr),
    /// `max_over_time(field)`.
    MaxOverTime(FieldExpr),
    /// `avg_over_time(field)`.
    AvgOverTime(FieldExpr),
    /// `sum_over_time(field)`.
    SumOverTime(FieldExpr),
    /// `quantile_over_time(field, q...)`.
    QuantileOverTime(FieldExpr, Vec<f64>),
    /// `histogram_over_time(field)`.
    HistogramOverTime(FieldExpr),
    /// `compare({filter}, topN, start, end)`.
    Compare {
        /// The selection.
        filter: Box<SpansetExpr>,
        /// Values per attribute.
        top_n: Option<i64>,
        /// Selection window start (Unix ns).
        start: Option<i64>,
        /// Selection window end (Unix ns).
        end: Option<i64>,
    },
}

/// Metrics second stage.
#[derive(Debug, Clone, PartialEq)]
pub enum SecondStage {
    /// `topk(n)`.
    TopK(i64),
    /// `bottomk(n)`.
    BottomK(i64),
    /// `op value`.
    Filter(BinaryOp, f64),
}

/// A value-producing expression inside a spanset filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    /// A literal.
    Static(Static),
    /// An attribute reference.
    Attribute(Attribute),
    /// An intrinsic field.
    Intrinsic(Intrinsic),
    /// `lhs op rhs`.
    Binary(BinaryOp, Box<FieldExpr>, Box<FieldExpr>),
    /// `-x` or `!x`.
    Unary(UnaryOp, Box<FieldExpr>),
    /// `x != nil` (`exists: true`) or `x = nil` (`exists: false`).
    Exists(Box<FieldExpr>, bool),
}

impl FieldExpr {
    /// `lhs op rhs`.
    pub fn binary(op: BinaryOp, lhs: FieldExpr, rhs: FieldExpr) -> Self {
        Self::Binary(op, Box::new(lhs), Box::new(rhs))
    }

    /// Whether the expression reads any span data (as opposed to only
    /// literals).
    pub fn references_span(&self) -> bool {
        match self {
            Self::Static(_) => false,
            Self::Attribute(_) | Self::Intrinsic(_) => true,
            Self::Binary(_, l, r) => l.references_span() || r.references_span(),
            Self::Unary(_, e) | Self::Exists(e, _) => e.references_span(),
        }
    }

    /// Calls `f` on every attribute and intrinsic referenced.
    pub fn visit_fields<'a>(&'a self, f: &mut impl FnMut(&'a FieldExpr)) {
        match self {
            Self::Static(_) => {}
            Self::Attribute(_) | Self::Intrinsic(_) => f(self),
            Self::Binary(_, l, r) => {
                l.visit_fields(f);
                r.visit_fields(f);
            }
            Self::Unary(_, e) | Self::Exists(e, _) => e.visit_fields(f),
        }
    }
}

/// Binary operators of field expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
    /// `=`.
    Eq,
    /// `!=`.
    Neq,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `=~`.
    Regex,
    /// `!~`.
    NotRegex,
    /// `&&`.
    And,
    /// `||`.
    Or,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Pow => "^",
            Self::Eq => "=",
            Self::Neq => "!=",
            Self::Lt => "<",
            Self::Lte => "<=",
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
            Self::And => "&&",
            Self::Or => "||",
        }
    }

    /// `= != < <= > >= =~ !~`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq
                | Self::Neq
                | Self::Lt
                | Self::Lte
                | Self::Gt
                | Self::Gte
                | Self::Regex
                | Self::NotRegex
        )
    }

    /// `+ - * / % ^`.
    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            Self::Add | Self::Sub | Self::Mul | Self::Div | Self::Mod | Self::Pow
        )
    }

    /// `&& ||`.
    pub fn is_logical(self) -> bool {
        matches!(self, Self::And | Self::Or)
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-`.
    Neg,
    /// `!`.
    Not,
}

/// Span status, as TraceQL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `unset` (OTLP 0).
    Unset,
    /// `ok` (OTLP 1).
    Ok,
    /// `error` (OTLP 2).
    Error,
}

impl Status {
    /// From the OTLP status code; other codes have no keyword.
    pub fn from_otlp(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Unset,
            1 => Self::Ok,
            2 => Self::Error,
            _ => return None,
        })
    }

    /// The OTLP status code.
    pub fn otlp(self) -> i32 {
        match self {
            Self::Unset => 0,
            Self::Ok => 1,
            Self::Error => 2,
        }
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// Span kind, as TraceQL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `unspecified` (OTLP 0).
    Unspecified,
    /// `internal` (OTLP 1).
    Internal,
    /// `server` (OTLP 2).
    Server,
    /// `client` (OTLP 3).
    Client,
    /// `producer` (OTLP 4).
    Producer,
    /// `consumer` (OTLP 5).
    Consumer,
}

impl Kind {
    /// From the OTLP kind number.
    pub fn from_otlp(kind: i32) -> Option<Self> {
        Some(match kind {
            0 => Self::Unspecified,
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => return None,
        })
    }

    /// The OTLP kind number.
    pub fn otlp(self) -> i32 {
        match self {
            Self::Unspecified => 0,
            Self::Internal => 1,
            Self::Server => 2,
            Self::Client => 3,
            Self::Producer => 4,
            Self::Consumer => 5,
        }
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }

    /// Every kind, in OTLP order.
    pub const ALL: [Kind; 6] = [
        Self::Unspecified,
        Self::Internal,
        Self::Server,
        Self::Client,
        Self::Producer,
        Self::Consumer,
    ];
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// A duration in nanoseconds.
    Duration(i64),
    /// A status keyword.
    Status(Status),
    /// A kind keyword.
    Kind(Kind),
}

impl Static {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::Nil => ValueType::Nil,
            Self::Bool(_) => ValueType::Bool,
            Self::Int(_) => ValueType::Int,
            Self::Float(_) => ValueType::Float,
            Self::String(_) => ValueType::String,
            Self::Duration(_) => ValueType::Duration,
            Self::Status(_) => ValueType::Status,
            Self::Kind(_) => ValueType::Kind,
        }
    }
}

/// Value types of the type checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `nil`.
    Nil,
    /// Boolean.
    Bool,
    /// Integer.
    Int,
    /// Float.
    Float,
    /// String.
    String,
    /// Duration.
    Duration,
    /// Status.
    Status,
    /// Kind.
    Kind,
    /// An attribute: any type, known per span.
    Attribute,
}

impl ValueType {
    /// Int, float or duration.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Duration)
    }

    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool => "boolean",
            Self::Int => "int",
            Self::Float => "float",
            Self::String => "string",
            Self::Duration => "duration",
            Self::Status => "status",
            Self::Kind => "kind",
            Self::Attribute => "attribute",
        }
    }
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeScope {
    /// `.name`: span attributes, then resource attributes.
    Unscoped,
    /// `span.`.
    Span,
    /// `resource.`.
    Resource,
    /// `event.`: attributes of the span's events.
    Event,
    /// `link.`: attributes of the span's links.
    Link,
    /// `instrumentation.`: attributes of the instrumentation scope.
    Instrumentation,
}

impl AttributeScope {
    /// The scopes of a block summary (and tag lists) the attribute is looked
    /// up in: unscoped means span, then resource.
    pub fn summary_scopes(self) -> &'static [&'static str] {
        match self {
            Self::Unscoped => &["span", "resource"],
            Self::Span => &["span"],
            Self::Resource => &["resource"],
            Self::Event => &["event"],
            Self::Link => &["link"],
            Self::Instrumentation => &["instrumentation"],
        }
    }

    /// The prefix as written (`.` for unscoped).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Unscoped => ".",
            Self::Span => "span.",
            Self::Resource => "resource.",
            Self::Event => "event.",
            Self::Link => "link.",
            Self::Instrumentation => "instrumentation.",
        }
    }
}

/// An attribute reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Where to look.
    pub scope: AttributeScope,
    /// `parent.`: look on the span's parent.
    pub parent: bool,
    /// The key.
    pub name: String,
}

/// Intrinsic fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `duration`, `span:duration`.
    Duration,
    /// `name`, `span:name`.
    Name,
    /// `status`, `span:status`.
    Status,
    /// `statusMessage`, `span:statusMessage`.
    StatusMessage,
    /// `kind`, `span:kind`.
    Kind,
    /// `span:childCount`.
    ChildCount,
    /// `span:id`.
    SpanId,
    /// `span:parentID`.
    ParentId,
    /// `traceDuration`, `trace:duration`.
    TraceDuration,
    /// `rootName`, `trace:rootName`.
    RootName,
    /// `rootServiceName`, `trace:rootService`.
    RootService,
    /// `trace:id`.
    TraceId,
    /// `event:name`.
    EventName,
    /// `event:timeSinceStart`.
    EventTimeSinceStart,
    /// `link:traceID`.
    LinkTraceId,
    /// `link:spanID`.
    LinkSpanId,
    /// `instrumentation:name`.
    ScopeName,
    /// `instrumentation:version`.
    ScopeVersion,
    /// `nestedSetLeft`.
    NestedSetLeft,
    /// `nestedSetRight`.
    NestedSetRight,
    /// `nestedSetParent`.
    NestedSetParent,
}

impl Intrinsic {
    /// The canonical name (Tempo's `Intrinsic.String()`): what tag lists,
    /// result attributes and the query printer use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Name => "name",
            Self::Status => "status",
            Self::StatusMessage => "statusMessage",
            Self::Kind => "kind",
            Self::ChildCount => "span:childCount",
            Self::SpanId => "span:id",
            Self::ParentId => "span:parentID",
            Self::TraceDuration => "traceDuration",
            Self::RootName => "rootName",
            Self::RootService => "rootServiceName",
            Self::TraceId => "trace:id",
            Self::EventName => "event:name",
            Self::EventTimeSinceStart => "event:timeSinceStart",
            Self::LinkTraceId => "link:traceID",
            Self::LinkSpanId => "link:spanID",
            Self::ScopeName => "instrumentation:name",
            Self::ScopeVersion => "instrumentation:version",
            Self::NestedSetLeft => "nestedSetLeft",
            Self::NestedSetRight => "nestedSetRight",
            Self::NestedSetParent => "nestedSetParent",
        }
    }

    /// The value type.
    pub fn value_type(self) -> ValueType {
        match self {
            Self::Duration | Self::TraceDuration | Self::EventTimeSinceStart => ValueType::Duration,
            Self::Name
            | Self::StatusMessage
            | Self::SpanId
            | Self::ParentId
            | Self::RootName
            | Self::RootService
            | Self::TraceId
            | Self::EventName
            | Self::LinkTraceId
            | Self::LinkSpanId
            | Self::ScopeName
            | Self::ScopeVersion => ValueType::String,
            Self::Status => ValueType::Status,
            Self::Kind => ValueType::Kind,
            Self::ChildCount
            | Self::NestedSetLeft
            | Self::NestedSetRight
            | Self::NestedSetParent => ValueType::Int,
        }
    }

    /// Whether the value is a property of the whole trace.
    pub fn is_trace_level(self) -> bool {
        matches!(
            self,
            Self::TraceDuration | Self::RootName | Self::RootService | Self::TraceId
        )
    }
}

impl fmt::Display for Intrinsic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
