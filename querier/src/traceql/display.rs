//! Prints queries in a canonical form that parses back to the same tree:
//! every binary sub-expression parenthesised, strings double-quoted with
//! escapes, durations in nanoseconds.

use std::fmt::Write;

use super::ast::*;

/// The canonical text of a query.
pub fn query(q: &Query) -> String {
    let mut out = pipeline(&q.pipeline);
    if let Some(m) = &q.metrics {
        out.push_str(" | ");
        out.push_str(&metrics(m));
    }
    if !q.hints.is_empty() {
        let hints: Vec<String> = q
            .hints
            .iter()
            .map(|h| format!("{}={}", h.name, static_value(&h.value)))
            .collect();
        let _ = write!(out, " with ({})", hints.join(", "));
    }
    out
}

/// The canonical text of a pipeline.
pub fn pipeline(p: &Pipeline) -> String {
    let stages: Vec<String> = p.stages.iter().map(stage).collect();
    stages.join(" | ")
}

fn stage(s: &Stage) -> String {
    match s {
        Stage::Spanset(e) => spanset(e),
        Stage::ScalarFilter(f) => format!(
            "{} {} {}",
            super::eval::aggregate_name(&f.aggregate),
            f.op.symbol(),
            static_value(&f.value)
        ),
        Stage::GroupBy(e) => format!("by({})", field(e)),
        Stage::Coalesce => "coalesce()".to_owned(),
        Stage::Select(fields) => {
            let fields: Vec<String> = fields.iter().map(field).collect();
            format!("select({})", fields.join(", "))
        }
    }
}

/// The canonical text of a spanset expression.
pub fn spanset(e: &SpansetExpr) -> String {
    match e {
        SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true))) => "{ }".to_owned(),
        SpansetExpr::Filter(f) => format!("{{ {} }}", field(f)),
        SpansetExpr::Op(op, l, r) => {
            format!("({}) {} ({})", spanset(l), op.symbol(), spanset(r))
        }
        SpansetExpr::Pipeline(p) => format!("({})", pipeline(p)),
    }
}

/// The canonical text of a field expression.
pub fn field(e: &FieldExpr) -> String {
    match e {
        FieldExpr::Static(s) => static_value(s),
        FieldExpr::Attribute(a) => attribute(a),
        FieldExpr::Intrinsic(i) => i.name().to_owned(),
        FieldExpr::Binary(op, l, r) => format!("({} {} {})", field(l), op.symbol(), field(r)),
        FieldExpr::Unary(UnaryOp::Neg, x) => format!("-({})", field(x)),
        FieldExpr::Unary(UnaryOp::Not, x) => format!("!({})", field(x)),
        FieldExpr::Exists(x, true) => format!("({}) != nil", field(x)),
        FieldExpr::Exists(x, false) => format!("({}) = nil", field(x)),
    }
}

fn needs_quotes(name: &str, unscoped: bool) -> bool {
    name.is_empty()
        || name.chars().any(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    '{' | '}'
                        | '('
                        | ')'
                        | '='
                        | '~'
                        | '!'
                        | '<'
                        | '>'
                        | '&'
                        | '|'
                        | '^'
                        | ','
                        | '"'
                )
        })
        || (unscoped && name.starts_with(|c: char| c.is_ascii_digit()))
        || name.contains("//")
        || name.contains("/*")
}

/// An attribute as written, quoting the name when it must be.
pub fn attribute(a: &Attribute) -> String {
    let mut out = String::new();
    if a.parent {
        out.push_str("parent.");
        if a.scope == AttributeScope::Unscoped {
            // `parent.x`, written without the leading dot.
            push_name(&mut out, &a.name, true);
            return out;
        }
    }
    out.push_str(a.scope.prefix());
    push_name(&mut out, &a.name, a.scope == AttributeScope::Unscoped);
    out
}

fn push_name(out: &mut String, name: &str, unscoped: bool) {
    if needs_quotes(name, unscoped) {
        out.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(name);
    }
}

/// A literal as written.
pub fn static_value(s: &Static) -> String {
    match s {
        Static::Nil => "nil".to_owned(),
        Static::Bool(b) => b.to_string(),
        Static::Int(i64::MIN) => "minInt".to_owned(),
        Static::Int(i) => i.to_string(),
        Static::Float(f) => {
            let text = format!("{f:?}");
            if text.contains('.')
                || text.contains('e')
                || text.contains("inf")
                || text.contains("NaN")
            {
                text
            } else {
                format!("{text}.0")
            }
        }
        Static::String(s) => quote(s),
        Static::Duration(d) => format!("{d}ns"),
        Static::Status(s) => s.keyword().to_owned(),
        Static::Kind(k) => k.keyword().to_owned(),
    }
}

/// A string literal with Go-compatible escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn metrics(m: &MetricsStage) -> String {
    let f = match &m.function {
        MetricsFunction::Rate => "rate()".to_owned(),
        MetricsFunction::CountOverTime => "count_over_time()".to_owned(),
        MetricsFunction::MinOverTime(x) => format!("min_over_time({})", field(x)),
        MetricsFunction::MaxOverTime(x) => format!("max_over_time({})", field(x)),
        MetricsFunction::AvgOverTime(x) => format!("avg_over_time({})", field(x)),
        MetricsFunction::SumOverTime(x) => format!("sum_over_time({})", field(x)),
        MetricsFunction::HistogramOverTime(x) => format!("histogram_over_time({})", field(x)),
        MetricsFunction::QuantileOverTime(x, qs) => {
            let qs: Vec<String> = qs.iter().map(|q| format!("{q:?}")).collect();
            format!("quantile_over_time({}, {})", field(x), qs.join(", "))
        }
        MetricsFunction::Compare {
            filter,
            top_n,
            start,
            end,
        } => {
            let mut args = vec![spanset(filter)];
            args.extend(
                [top_n, start, end]
                    .into_iter()
                    .flatten()
                    .map(i64::to_string),
            );
            format!("compare({})", args.join(", "))
        }
    };
    let mut out = f;
    if !m.by.is_empty() {
        let by: Vec<String> = m.by.iter().map(field).collect();
        let _ = write!(out, " by ({})", by.join(", "));
    }
    for s in &m.second_stage {
        match s {
            SecondStage::TopK(n) => {
                let _ = write!(out, " | topk({n})");
            }
            SecondStage::BottomK(n) => {
                let _ = write!(out, " | bottomk({n})");
            }
            SecondStage::Filter(op, v) => {
                let _ = write!(out, " {} {v:?}", op.symbol());
            }
        }
    }
    out
}
