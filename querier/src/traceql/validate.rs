//! Type checks a parsed query the way Tempo's `validate()` does
//! (`pkg/traceql/ast_validate.go`), with its messages: a query that would
//! compare a string with a number, regex-match a duration or filter on a
//! non-boolean is refused before it runs.

use super::ast::*;
use super::display;
use super::error::ParseError;

/// Checks `query`.
pub(crate) fn validate(query: &Query) -> Result<(), ParseError> {
    pipeline(&query.pipeline)?;
    if let Some(metrics) = &query.metrics {
        if let MetricsFunction::Compare { filter, .. } = &metrics.function {
            spanset(filter)?;
            if !metrics.second_stage.is_empty() {
                return Err(ParseError::invalid(
                    "`compare()` cannot be used with second stage functions",
                ));
            }
        }
        for stage in &metrics.second_stage {
            if let SecondStage::TopK(n) | SecondStage::BottomK(n) = stage
                && *n <= 0
            {
                return Err(ParseError::invalid(format!(
                    "topk and bottomk need a positive number of series, got {n}"
                )));
            }
        }
        for by in &metrics.by {
            if !by.references_span() {
                return Err(ParseError::invalid(format!(
                    "grouping field expressions must reference the span: {}",
                    display::field(by)
                )));
            }
        }
    }
    Ok(())
}

fn pipeline(p: &Pipeline) -> Result<(), ParseError> {
    for stage in &p.stages {
        match stage {
            Stage::Spanset(e) => spanset(e)?,
            Stage::ScalarFilter(f) => match &f.aggregate {
                Aggregate::Count => {}
                Aggregate::Avg(x) | Aggregate::Min(x) | Aggregate::Max(x) | Aggregate::Sum(x) => {
                    let t = field(x)?;
                    if !(t.is_numeric() || t == ValueType::Attribute) {
                        return Err(ParseError::invalid(format!(
                            "aggregate field expressions must resolve to a number type: {}",
                            display::field(x)
                        )));
                    }
                    if !x.references_span() {
                        return Err(ParseError::invalid(format!(
                            "aggregate field expressions must reference the span: {}",
                            display::field(x)
                        )));
                    }
                }
            },
            Stage::GroupBy(x) => {
                field(x)?;
                if !x.references_span() {
                    return Err(ParseError::invalid(format!(
                        "grouping field expressions must reference the span: {}",
                        display::field(x)
                    )));
                }
            }
            Stage::Select(xs) => {
                for x in xs {
                    field(x)?;
                }
            }
            Stage::Coalesce => {}
        }
    }
    Ok(())
}

fn spanset(e: &SpansetExpr) -> Result<(), ParseError> {
    match e {
        SpansetExpr::Filter(f) => {
            let t = field(f)?;
            if !matches!(t, ValueType::Bool | ValueType::Attribute) {
                return Err(ParseError::invalid(format!(
                    "span filter field expressions must resolve to a boolean: {}",
                    display::field(f)
                )));
            }
            Ok(())
        }
        SpansetExpr::Op(_, l, r) => {
            spanset(l)?;
            spanset(r)
        }
        SpansetExpr::Pipeline(p) => pipeline(p),
    }
}

fn matching_operands(a: ValueType, b: ValueType) -> bool {
    a == ValueType::Attribute
        || b == ValueType::Attribute
        || a == b
        || (a.is_numeric() && b.is_numeric())
        || a == ValueType::Nil
        || b == ValueType::Nil
}

fn op_valid_for(op: BinaryOp, t: ValueType) -> bool {
    use BinaryOp::*;
    match t {
        ValueType::Attribute => true,
        ValueType::Bool => matches!(op, And | Or | Eq | Neq),
        ValueType::Int | ValueType::Float | ValueType::Duration => matches!(
            op,
            Add | Sub | Mul | Div | Mod | Pow | Eq | Neq | Lt | Lte | Gt | Gte
        ),
        ValueType::String => matches!(op, Eq | Neq | Regex | NotRegex | Lt | Lte | Gt | Gte),
        ValueType::Nil | ValueType::Status | ValueType::Kind => matches!(op, Eq | Neq),
    }
}

/// The type of a field expression, checking it on the way.
fn field(e: &FieldExpr) -> Result<ValueType, ParseError> {
    match e {
        FieldExpr::Static(s) => Ok(s.value_type()),
        FieldExpr::Attribute(_) => Ok(ValueType::Attribute),
        FieldExpr::Intrinsic(i) => Ok(i.value_type()),
        FieldExpr::Exists(inner, exists) => {
            field(inner)?;
            if *exists {
                return Ok(ValueType::Bool);
            }
            match inner.as_ref() {
                FieldExpr::Intrinsic(_) => Err(ParseError::invalid(format!(
                    "{}=nil is not valid because intrinsics cannot be nil",
                    display::field(inner)
                ))),
                FieldExpr::Attribute(a)
                    if a.scope == AttributeScope::Resource
                        && a.name == "service.name"
                        && !a.parent =>
                {
                    Err(ParseError::invalid(format!(
                        "{}=nil is not valid because resource.service.name cannot be nil",
                        display::field(inner)
                    )))
                }
                _ => Ok(ValueType::Bool),
            }
        }
        FieldExpr::Unary(op, inner) => {
            let t = field(inner)?;
            let ok = match op {
                UnaryOp::Neg => t.is_numeric() || t == ValueType::Attribute,
                UnaryOp::Not => matches!(t, ValueType::Bool | ValueType::Attribute),
            };
            if !ok {
                return Err(ParseError::invalid(format!(
                    "illegal operation for the given type: {}",
                    display::field(e)
                )));
            }
            Ok(if *op == UnaryOp::Not {
                ValueType::Bool
            } else {
                t
            })
        }
        FieldExpr::Binary(op, l, r) => {
            let lt = field(l)?;
            let rt = field(r)?;
            if !matching_operands(lt, rt) {
                return Err(ParseError::invalid(format!(
                    "binary operations must operate on the same type: {}",
                    display::field(e)
                )));
            }
            let t = if lt == ValueType::Attribute { rt } else { lt };
            if !op_valid_for(*op, t) {
                return Err(ParseError::invalid(format!(
                    "illegal operation for the given types: {}",
                    display::field(e)
                )));
            }
            if matches!(op, BinaryOp::Regex | BinaryOp::NotRegex) {
                match r.as_ref() {
                    FieldExpr::Static(Static::String(pattern)) => {
                        super::eval::anchored(pattern).map_err(ParseError::invalid)?;
                    }
                    _ => {
                        return Err(ParseError::invalid(format!(
                            "invalid type for =~ or !~: {}: the right-hand side must be a string literal",
                            display::field(e)
                        )));
                    }
                }
            }
            Ok(if op.is_comparison() || op.is_logical() {
                ValueType::Bool
            } else if lt == ValueType::Attribute {
                rt
            } else {
                lt
            })
        }
    }
}
