//! A recursive-descent parser for TraceQL with Tempo's precedence
//! (`pkg/traceql/expr.y`), lowest first:
//!
//! 1. `|` between pipeline stages;
//! 2. `&&` `||` (one level, left-associative, between spansets and inside
//!    filters alike);
//! 3. comparisons and structural operators (`= != < <= > >= =~ !~`,
//!    `> < >> << ~` and their `!`/`&` forms), left-associative;
//! 4. `+ -`;
//! 5. prefix `-` and `!`, whose operand binds `* / % ^` only;
//! 6. `* / %`;
//! 7. `^` (right-associative).

use super::ast::*;
use super::error::{ParseError, Position};
use super::lexer::{Tok, Token, tokenize};

/// Parses a query (syntax only; see [`super::validate`]).
pub(crate) fn parse_query(src: &str) -> Result<Query, ParseError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        tokens,
        i: 0,
        depth: 0,
    };
    let query = parser.query()?;
    Ok(query)
}

/// Parses a lone field expression, e.g. a tag name
/// (`resource.service.name`, `span:status`, `.foo`).
pub(crate) fn parse_field(src: &str) -> Result<FieldExpr, ParseError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        tokens,
        i: 0,
        depth: 0,
    };
    let field = parser.field_expr()?;
    parser.expect_eof()?;
    Ok(field)
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// Nesting so far: parentheses, braces, prefix operators and chained
    /// binary operators each add a level.
    depth: usize,
}

/// The deepest nesting a query may have.
///
/// Parsing, checking, evaluating and printing all recurse over the tree, so
/// an unbounded depth (a 128 KiB query of `((((…` or `!!!!…`) would overflow
/// a thread's stack and abort the process; real queries nest a few levels.
pub(crate) const MAX_NESTING: usize = 64;

const METRICS_FUNCTIONS: &[&str] = &[
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
];

fn spanset_op(sym: &str) -> Option<SpansetOp> {
    Some(match sym {
        "&&" => SpansetOp::And,
        "||" => SpansetOp::Or,
        ">" => SpansetOp::Child,
        "<" => SpansetOp::Parent,
        ">>" => SpansetOp::Descendant,
        "<<" => SpansetOp::Ancestor,
        "~" => SpansetOp::Sibling,
        "!>" => SpansetOp::NotChild,
        "!<" => SpansetOp::NotParent,
        "!>>" => SpansetOp::NotDescendant,
        "!<<" => SpansetOp::NotAncestor,
        "!~" => SpansetOp::NotSibling,
        "&>" => SpansetOp::UnionChild,
        "&<" => SpansetOp::UnionParent,
        "&>>" => SpansetOp::UnionDescendant,
        "&<<" => SpansetOp::UnionAncestor,
        "&~" => SpansetOp::UnionSibling,
        _ => return None,
    })
}

fn binary_op(sym: &str) -> Option<BinaryOp> {
    Some(match sym {
        "+" => BinaryOp::Add,
        "-" => BinaryOp::Sub,
        "*" => BinaryOp::Mul,
        "/" => BinaryOp::Div,
        "%" => BinaryOp::Mod,
        "^" => BinaryOp::Pow,
        "=" => BinaryOp::Eq,
        "!=" => BinaryOp::Neq,
        "<" => BinaryOp::Lt,
        "<=" => BinaryOp::Lte,
        ">" => BinaryOp::Gt,
        ">=" => BinaryOp::Gte,
        "=~" => BinaryOp::Regex,
        "!~" => BinaryOp::NotRegex,
        "&&" => BinaryOp::And,
        "||" => BinaryOp::Or,
        _ => return None,
    })
}

/// Binding power of a field operator: (left, right).
fn field_binding(op: BinaryOp) -> (u8, u8) {
    match op {
        BinaryOp::And | BinaryOp::Or => (1, 2),
        BinaryOp::Eq
        | BinaryOp::Neq
        | BinaryOp::Lt
        | BinaryOp::Lte
        | BinaryOp::Gt
        | BinaryOp::Gte
        | BinaryOp::Regex
        | BinaryOp::NotRegex => (3, 4),
        BinaryOp::Add | BinaryOp::Sub => (5, 6),
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => (9, 10),
        // Right-associative.
        BinaryOp::Pow => (12, 11),
    }
}

/// Operand binding of prefix `-` and `!`: only `* / % ^` bind tighter.
const PREFIX_OPERAND: u8 = 9;

fn comparison(sym: &str) -> Option<BinaryOp> {
    match sym {
        "=" => Some(BinaryOp::Eq),
        "!=" => Some(BinaryOp::Neq),
        "<" => Some(BinaryOp::Lt),
        "<=" => Some(BinaryOp::Lte),
        ">" => Some(BinaryOp::Gt),
        ">=" => Some(BinaryOp::Gte),
        _ => None,
    }
}

fn intrinsic_unscoped(word: &str) -> Option<Intrinsic> {
    Some(match word {
        "duration" => Intrinsic::Duration,
        "name" => Intrinsic::Name,
        "status" => Intrinsic::Status,
        "statusMessage" => Intrinsic::StatusMessage,
        "kind" => Intrinsic::Kind,
        "rootName" => Intrinsic::RootName,
        "rootServiceName" => Intrinsic::RootService,
        "traceDuration" => Intrinsic::TraceDuration,
        "nestedSetLeft" => Intrinsic::NestedSetLeft,
        "nestedSetRight" => Intrinsic::NestedSetRight,
        "nestedSetParent" => Intrinsic::NestedSetParent,
        _ => return None,
    })
}

fn intrinsic_scoped(scope: &str, word: &str) -> Option<Intrinsic> {
    Some(match (scope, word) {
        ("span", "duration") => Intrinsic::Duration,
        ("span", "name") => Intrinsic::Name,
        ("span", "status") => Intrinsic::Status,
        ("span", "statusMessage") => Intrinsic::StatusMessage,
        ("span", "kind") => Intrinsic::Kind,
        ("span", "id") => Intrinsic::SpanId,
        ("span", "parentID") => Intrinsic::ParentId,
        ("span", "childCount") => Intrinsic::ChildCount,
        ("trace", "duration") => Intrinsic::TraceDuration,
        ("trace", "rootName") => Intrinsic::RootName,
        ("trace", "rootService") => Intrinsic::RootService,
        ("trace", "id") => Intrinsic::TraceId,
        ("event", "name") => Intrinsic::EventName,
        ("event", "timeSinceStart") => Intrinsic::EventTimeSinceStart,
        ("link", "traceID") => Intrinsic::LinkTraceId,
        ("link", "spanID") => Intrinsic::LinkSpanId,
        ("instrumentation", "name") => Intrinsic::ScopeName,
        ("instrumentation", "version") => Intrinsic::ScopeVersion,
        _ => return None,
    })
}

fn keyword_static(word: &str) -> Option<Static> {
    Some(match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "ok" => Static::Status(Status::Ok),
        "error" => Static::Status(Status::Error),
        "unset" => Static::Status(Status::Unset),
        "unspecified" => Static::Kind(Kind::Unspecified),
        "internal" => Static::Kind(Kind::Internal),
        "server" => Static::Kind(Kind::Server),
        "client" => Static::Kind(Kind::Client),
        "producer" => Static::Kind(Kind::Producer),
        "consumer" => Static::Kind(Kind::Consumer),
        "minInt" => Static::Int(i64::MIN),
        "maxInt" => Static::Int(i64::MAX),
        _ => return None,
    })
}

fn attribute_scope(prefix: &str) -> AttributeScope {
    match prefix {
        "span." => AttributeScope::Span,
        "resource." => AttributeScope::Resource,
        "event." => AttributeScope::Event,
        "link." => AttributeScope::Link,
        "instrumentation." => AttributeScope::Instrumentation,
        _ => AttributeScope::Unscoped,
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.i.min(self.tokens.len() - 1)].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.i + n).min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> Position {
        self.tokens[self.i.min(self.tokens.len() - 1)].pos
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        tok
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Tok::Sym(s) if *s == sym)
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.is_sym(sym) {
            self.next();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        ParseError::at(
            self.pos(),
            format!(
                "syntax error: unexpected {}, expecting {expected}",
                self.peek().describe()
            ),
        )
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.unexpected(sym))
        }
    }

    fn expect_eof(&self) -> Result<(), ParseError> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected("$end"))
        }
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        if *self.peek() == Tok::Eof {
            return Err(ParseError::at(
                self.pos(),
                "empty query: write a spanset filter such as `{ }` or `{ status = error }`",
            ));
        }
        let (pipeline, metrics) = self.pipeline(true)?;
        let mut hints = Vec::new();
        if self.is_ident("with") {
            self.next();
            self.expect_sym("(")?;
            loop {
                let pos = self.pos();
                let Tok::Ident(name) = self.next() else {
                    return Err(ParseError::at(
                        pos,
                        "a hint needs a name, as in `with (most_recent=true)`",
                    ));
                };
                self.expect_sym("=")?;
                let value = self.hint_value()?;
                hints.push(Hint { name, value });
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        if *self.peek() != Tok::Eof {
            return Err(self.unexpected(if hints.is_empty() {
                "|, a spanset operator, with or $end"
            } else {
                "$end"
            }));
        }
        Ok(Query {
            pipeline,
            metrics,
            hints,
        })
    }

    fn hint_value(&mut self) -> Result<Static, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Str(s) => Ok(Static::String(s)),
            Tok::Int(i) => Ok(Static::Int(i)),
            Tok::Float(f) => Ok(Static::Float(f)),
            Tok::Duration(d) => Ok(Static::Duration(d)),
            Tok::Ident(w) => keyword_static(&w)
                .ok_or_else(|| ParseError::at(pos, format!("unknown identifier: {w}"))),
            other => Err(ParseError::at(
                pos,
                format!(
                    "syntax error: unexpected {}, expecting a hint value",
                    other.describe()
                ),
            )),
        }
    }

    /// Stages separated by `|`; at the top level a metrics stage may end it.
    fn pipeline(&mut self, top: bool) -> Result<(Pipeline, Option<MetricsStage>), ParseError> {
        let mut stages = vec![self.stage(true)?];
        let mut metrics = None;
        while self.is_sym("|") {
            self.next();
            if let Tok::Ident(word) = self.peek()
                && METRICS_FUNCTIONS.contains(&word.as_str())
                && matches!(self.peek_at(1), Tok::Sym("("))
            {
                if !top {
                    return Err(ParseError::at(
                        self.pos(),
                        format!("metrics function `{word}` must end the query"),
                    ));
                }
                metrics = Some(self.metrics_stage()?);
                break;
            }
            stages.push(self.stage(false)?);
        }
        Ok((Pipeline { stages }, metrics))
    }

    fn stage(&mut self, first: bool) -> Result<Stage, ParseError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Sym("{") | Tok::Sym("(") => Ok(Stage::Spanset(self.spanset_expr(0)?)),
            Tok::Ident(word) if matches!(self.peek_at(1), Tok::Sym("(")) => match word.as_str() {
                "count" | "avg" | "min" | "max" | "sum" => self.scalar_filter(),
                "by" => {
                    self.next();
                    self.expect_sym("(")?;
                    let field = self.field_expr()?;
                    if self.is_sym(",") {
                        return Err(ParseError::at(
                            self.pos(),
                            "by() takes one field expression; chain stages to group further",
                        ));
                    }
                    self.expect_sym(")")?;
                    Ok(Stage::GroupBy(field))
                }
                "coalesce" => {
                    if first {
                        return Err(ParseError::at(
                            pos,
                            "coalesce() cannot start a pipeline: it joins the spansets of the stage before it",
                        ));
                    }
                    self.next();
                    self.expect_sym("(")?;
                    self.expect_sym(")")?;
                    Ok(Stage::Coalesce)
                }
                "select" => {
                    self.next();
                    self.expect_sym("(")?;
                    let mut fields = Vec::new();
                    loop {
                        let field_pos = self.pos();
                        let field = self.primary()?;
                        if !matches!(field, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) {
                            return Err(ParseError::at(
                                field_pos,
                                "select() takes attributes and intrinsics, e.g. select(span.http.url, status)",
                            ));
                        }
                        fields.push(field);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                    Ok(Stage::Select(fields))
                }
                w if METRICS_FUNCTIONS.contains(&w) => Err(ParseError::at(
                    pos,
                    format!(
                        "metrics function `{w}` must follow a spanset filter, as in `{{ }} | {w}()`"
                    ),
                )),
                _ => Err(self.unexpected("a spanset filter `{ ... }` or a pipeline function")),
            },
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) => Err(ParseError::unsupported(
                "scalar filter lhs must be an aggregate: write `count() > 2`, not `2 < count()`",
            )),
            _ => Err(self.unexpected("a spanset filter `{ ... }`")),
        }
    }

    fn aggregate(&mut self) -> Result<Aggregate, ParseError> {
        let pos = self.pos();
        let Tok::Ident(word) = self.next() else {
            return Err(ParseError::at(pos, "expected an aggregate"));
        };
        self.expect_sym("(")?;
        if word == "count" {
            self.expect_sym(")")?;
            return Ok(Aggregate::Count);
        }
        if self.is_sym(")") {
            return Err(ParseError::at(
                self.pos(),
                format!("{word}() needs a field, e.g. {word}(duration)"),
            ));
        }
        let field = self.field_expr()?;
        self.expect_sym(")")?;
        Ok(match word.as_str() {
            "avg" => Aggregate::Avg(field),
            "min" => Aggregate::Min(field),
            "max" => Aggregate::Max(field),
            _ => Aggregate::Sum(field),
        })
    }

    fn scalar_filter(&mut self) -> Result<Stage, ParseError> {
        let aggregate = self.aggregate()?;
        let pos = self.pos();
        let op = match self.peek() {
            Tok::Sym(s) => comparison(s),
            _ => None,
        };
        let Some(op) = op else {
            if matches!(self.peek(), Tok::Sym("+" | "-" | "*" | "/" | "%" | "^")) {
                return Err(ParseError::unsupported(
                    "arithmetic on aggregates is not supported: compare one aggregate with a number, as in `| avg(duration) > 1s`",
                ));
            }
            if self.is_sym(")") {
                return Err(ParseError::unsupported(
                    "comparing a parenthesised pipeline, as in `({ } | count()) > 2`, is not supported: write `{ } | count() > 2`",
                ));
            }
            return Err(ParseError::at(
                pos,
                format!(
                    "syntax error: unexpected {}: an aggregate must be compared with a number, as in `| count() > 2`",
                    self.peek().describe()
                ),
            ));
        };
        self.next();
        if let Tok::Ident(w) = self.peek()
            && matches!(w.as_str(), "count" | "avg" | "min" | "max" | "sum")
        {
            return Err(ParseError::unsupported(
                "comparing two aggregates is not supported: compare an aggregate with a number",
            ));
        }
        let value = self.scalar()?;
        Ok(Stage::ScalarFilter(ScalarFilter {
            aggregate,
            op,
            value,
        }))
    }

    /// A numeric or duration literal, with constant `-`, `+`, `*`, `/`.
    fn scalar(&mut self) -> Result<Static, ParseError> {
        let pos = self.pos();
        let expr = self.field_binary(PREFIX_OPERAND - 4)?;
        if expr.references_span() {
            return Err(ParseError::at(
                pos,
                "a scalar filter compares with a number or duration literal",
            ));
        }
        match super::eval::fold(&expr) {
            Some(s @ (Static::Int(_) | Static::Float(_) | Static::Duration(_))) => Ok(s),
            _ => Err(ParseError::at(
                pos,
                "a scalar filter compares with a number or duration literal",
            )),
        }
    }

    /// Spanset expressions with `&&`/`||` (binding 1) and structural
    /// operators (binding 3), left-associative.
    fn spanset_expr(&mut self, min: u8) -> Result<SpansetExpr, ParseError> {
        let outer = self.depth;
        self.deeper()?;
        let mut lhs = self.spanset_primary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym(s) => spanset_op(s),
                _ => None,
            };
            let Some(op) = op else { break };
            let binding = if op.is_logical() { 1 } else { 3 };
            if binding < min {
                break;
            }
            self.next();
            let rhs = self.spanset_expr(binding + 1)?;
            lhs = SpansetExpr::Op(op, Box::new(lhs), Box::new(rhs));
            self.deeper()?;
        }
        self.depth = outer;
        Ok(lhs)
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, ParseError> {
        if self.eat_sym("{") {
            if self.eat_sym("}") {
                return Ok(SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true))));
            }
            let field = self.field_expr()?;
            if !self.is_sym("}") {
                return Err(self.unexpected("} or an operator"));
            }
            self.next();
            return Ok(SpansetExpr::Filter(field));
        }
        if self.eat_sym("(") {
            let (inner, _) = self.pipeline(false)?;
            self.expect_sym(")")?;
            let mut stages = inner.stages;
            if stages.len() == 1
                && let Some(Stage::Spanset(_)) = stages.first()
                && let Some(Stage::Spanset(expr)) = stages.pop()
            {
                return Ok(expr);
            }
            return Ok(SpansetExpr::Pipeline(Box::new(Pipeline { stages })));
        }
        Err(self.unexpected("{ or ("))
    }

    /// A field expression, as inside `{ }`.
    fn field_expr(&mut self) -> Result<FieldExpr, ParseError> {
        self.field_binary(0)
    }

    fn field_binary(&mut self, min: u8) -> Result<FieldExpr, ParseError> {
        let outer = self.depth;
        self.deeper()?;
        let mut lhs = self.field_prefix()?;
        loop {
            let op = match self.peek() {
                Tok::Sym(s) => binary_op(s),
                _ => None,
            };
            let Some(op) = op else { break };
            let (left, right) = field_binding(op);
            if left < min {
                break;
            }
            self.next();
            if matches!(op, BinaryOp::Eq | BinaryOp::Neq) && self.is_ident("nil") {
                self.next();
                lhs = FieldExpr::Exists(Box::new(lhs), op == BinaryOp::Neq);
                self.deeper()?;
                continue;
            }
            if self.is_ident("nil") {
                return Err(ParseError::at(
                    self.pos(),
                    "nil can only be compared with = or != (`= nil`: the attribute is absent)",
                ));
            }
            let rhs = self.field_binary(right)?;
            lhs = FieldExpr::binary(op, lhs, rhs);
            self.deeper()?;
        }
        self.depth = outer;
        Ok(lhs)
    }

    /// One level deeper, or an error past [`MAX_NESTING`].
    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::at(
                self.pos(),
                format!("query nested deeper than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn field_prefix(&mut self) -> Result<FieldExpr, ParseError> {
        if self.eat_sym("-") {
            let operand = self.field_binary(PREFIX_OPERAND)?;
            return Ok(FieldExpr::Unary(UnaryOp::Neg, Box::new(operand)));
        }
        if self.eat_sym("!") {
            let operand = self.field_binary(PREFIX_OPERAND)?;
            return Ok(FieldExpr::Unary(UnaryOp::Not, Box::new(operand)));
        }
        if self.is_ident("nil") {
            // `nil = x`, `nil != x`, `nil = nil`.
            let pos = self.pos();
            self.next();
            let op = match self.next() {
                Tok::Sym("=") => BinaryOp::Eq,
                Tok::Sym("!=") => BinaryOp::Neq,
                _ => {
                    return Err(ParseError::at(
                        pos,
                        "nil can only be compared with = or != (`= nil`: the attribute is absent)",
                    ));
                }
            };
            if self.is_ident("nil") {
                // Nothing is always absent.
                self.next();
                return Ok(FieldExpr::Static(Static::Bool(op == BinaryOp::Eq)));
            }
            let (_, right) = field_binding(BinaryOp::Eq);
            let operand = self.field_binary(right)?;
            return Ok(FieldExpr::Exists(Box::new(operand), op == BinaryOp::Neq));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<FieldExpr, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Sym("(") => {
                let inner = self.field_expr()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Tok::Str(s) => Ok(FieldExpr::Static(Static::String(s))),
            Tok::Int(i) => Ok(FieldExpr::Static(Static::Int(i))),
            Tok::Float(f) => Ok(FieldExpr::Static(Static::Float(f))),
            Tok::Duration(d) => Ok(FieldExpr::Static(Static::Duration(d))),
            Tok::Attr {
                parent,
                scope,
                name,
            } => Ok(FieldExpr::Attribute(Attribute {
                scope: attribute_scope(scope),
                parent,
                name,
            })),
            Tok::ScopeColon(scope) => {
                let word_pos = self.pos();
                match self.next() {
                    Tok::Ident(word) => intrinsic_scoped(scope, &word)
                        .map(FieldExpr::Intrinsic)
                        .ok_or_else(|| {
                            ParseError::at(word_pos, format!("unknown intrinsic {scope}:{word}"))
                        }),
                    other => Err(ParseError::at(
                        word_pos,
                        format!(
                            "syntax error: unexpected {} after `{scope}:`, expecting an intrinsic name",
                            other.describe()
                        ),
                    )),
                }
            }
            Tok::Ident(word) => {
                if let Some(intrinsic) = intrinsic_unscoped(&word) {
                    return Ok(FieldExpr::Intrinsic(intrinsic));
                }
                if let Some(value) = keyword_static(&word) {
                    return Ok(FieldExpr::Static(value));
                }
                if word == "parent" {
                    return Err(ParseError::unsupported(
                        "intrinsic (parent) not yet supported: use `parent.<attribute>` or the structural operators",
                    ));
                }
                if word.starts_with('$') {
                    return Err(ParseError::at(pos, format!("unresolved variable {word}")));
                }
                Err(ParseError::at(pos, format!("unknown identifier: {word}")))
            }
            other => Err(ParseError::at(
                pos,
                format!(
                    "syntax error: unexpected {}, expecting a field, attribute or value",
                    other.describe()
                ),
            )),
        }
    }

    fn metrics_stage(&mut self) -> Result<MetricsStage, ParseError> {
        let pos = self.pos();
        let Tok::Ident(word) = self.next() else {
            return Err(ParseError::at(pos, "expected a metrics function"));
        };
        self.expect_sym("(")?;
        let function = match word.as_str() {
            "rate" => MetricsFunction::Rate,
            "count_over_time" => MetricsFunction::CountOverTime,
            "min_over_time" => MetricsFunction::MinOverTime(self.primary()?),
            "max_over_time" => MetricsFunction::MaxOverTime(self.primary()?),
            "avg_over_time" => MetricsFunction::AvgOverTime(self.primary()?),
            "sum_over_time" => MetricsFunction::SumOverTime(self.primary()?),
            "histogram_over_time" => MetricsFunction::HistogramOverTime(self.primary()?),
            "quantile_over_time" => {
                let field = self.primary()?;
                let mut quantiles = Vec::new();
                while self.eat_sym(",") {
                    let q_pos = self.pos();
                    quantiles.push(match self.next() {
                        Tok::Float(f) => f,
                        Tok::Int(i) => i as f64,
                        _ => {
                            return Err(ParseError::at(
                                q_pos,
                                "a quantile is a number such as .99",
                            ));
                        }
                    });
                }
                MetricsFunction::QuantileOverTime(field, quantiles)
            }
            _ => {
                let filter = self.spanset_expr(0)?;
                let mut numbers = Vec::new();
                while self.eat_sym(",") {
                    let n_pos = self.pos();
                    match self.next() {
                        Tok::Int(i) => numbers.push(i),
                        _ => {
                            return Err(ParseError::at(
                                n_pos,
                                "compare() takes integers after the filter",
                            ));
                        }
                    }
                }
                MetricsFunction::Compare {
                    filter: Box::new(filter),
                    top_n: numbers.first().copied(),
                    start: numbers.get(1).copied(),
                    end: numbers.get(2).copied(),
                }
            }
        };
        self.expect_sym(")")?;
        let mut by = Vec::new();
        if self.is_ident("by") {
            self.next();
            self.expect_sym("(")?;
            loop {
                by.push(self.primary()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        let mut second_stage = Vec::new();
        loop {
            // `| topk(n)`, `| bottomk(n)`, or a comparison right after.
            let piped = self.eat_sym("|");
            let pos = self.pos();
            if !piped && !matches!(self.peek(), Tok::Sym(s) if comparison(s).is_some()) {
                break;
            }
            match self.peek().clone() {
                Tok::Ident(w) if w == "topk" || w == "bottomk" => {
                    self.next();
                    self.expect_sym("(")?;
                    let n_pos = self.pos();
                    let Tok::Int(n) = self.next() else {
                        return Err(ParseError::at(n_pos, format!("{w}() takes an integer")));
                    };
                    self.expect_sym(")")?;
                    second_stage.push(if w == "topk" {
                        SecondStage::TopK(n)
                    } else {
                        SecondStage::BottomK(n)
                    });
                }
                Tok::Sym(s) if comparison(s).is_some() => {
                    let op = comparison(s).unwrap_or(BinaryOp::Eq);
                    self.next();
                    let value = match self.scalar()? {
                        Static::Int(i) => i as f64,
                        Static::Float(f) => f,
                        Static::Duration(d) => d as f64,
                        _ => return Err(ParseError::at(pos, "a filter compares with a number")),
                    };
                    second_stage.push(SecondStage::Filter(op, value));
                }
                _ => return Err(self.unexpected("topk(), bottomk() or a comparison")),
            }
        }
        Ok(MetricsStage {
            function,
            by,
            second_stage,
        })
    }
}
