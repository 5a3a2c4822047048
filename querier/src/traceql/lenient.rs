//! Leniently reading a query that is still being typed, for tag-value
//! autocomplete: conditions without a value (`.foo = `) become `true`
//! and unclosed braces are closed, as Tempo's lenient parser does
//! (`pkg/traceql/lenient_parser.go`). Only the first spanset filter
//! narrows the values; anything else means "no filter".

use super::ast::{FieldExpr, SpansetExpr, Stage, Static};
use super::lexer::{Tok, tokenize};

fn is_comparison(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Sym("=" | "!=" | "<" | "<=" | ">" | ">=" | "=~" | "!~")
    )
}

fn is_terminator(tok: &Tok) -> bool {
    matches!(tok, Tok::Sym("}" | ")" | "&&" | "||") | Tok::Eof)
}

/// The condition of `q`'s first spanset filter, if `q` (completed as
/// above) has one that narrows anything.
pub fn lenient_filter(q: &str) -> Option<FieldExpr> {
    if q.trim().is_empty() {
        return None;
    }
    let query = match super::parse(q) {
        Ok(query) => query,
        Err(_) => super::parse(&complete(q)?).ok()?,
    };
    match query.pipeline.stages.first()? {
        Stage::Spanset(SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true)))) => None,
        Stage::Spanset(SpansetExpr::Filter(f)) => Some(f.clone()),
        _ => None,
    }
}

/// `q` with dangling conditions replaced by `true` and braces closed.
fn complete(q: &str) -> Option<String> {
    let tokens = tokenize(q).ok()?;
    let mut out = String::new();
    let mut copied = 0;
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let field_len = match &tokens[i].tok {
            Tok::Attr { .. } | Tok::Ident(_) => 1,
            Tok::ScopeColon(_) => 2,
            _ => 0,
        };
        if field_len > 0
            && tokens
                .get(i + field_len)
                .is_some_and(|t| is_comparison(&t.tok))
            && tokens
                .get(i + field_len + 1)
                .is_some_and(|t| is_terminator(&t.tok))
        {
            let start = tokens[i].pos.offset;
            let end = tokens[i + field_len + 1].pos.offset;
            out.push_str(&q[copied..start]);
            out.push_str("true ");
            copied = end;
            i += field_len + 1;
            continue;
        }
        match tokens[i].tok {
            Tok::Sym("{") => depth += 1,
            Tok::Sym("}") => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    out.push_str(&q[copied..]);
    for _ in 0..depth.max(0) {
        out.push_str(" }");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traceql::display;

    fn filter(q: &str) -> Option<String> {
        lenient_filter(q).map(|f| display::field(&f))
    }

    #[test]
    fn incomplete_conditions_are_dropped_and_braces_closed() {
        // Nothing complete is left: no narrowing.
        assert_eq!(filter("{ .foo = }"), None);
        assert_eq!(
            filter("{ .a = 1 && .b = }"),
            Some("((.a = 1) && true)".into())
        );
        assert_eq!(
            filter("{ .a = 1 && .b ="),
            Some("((.a = 1) && true)".into())
        );
        assert_eq!(
            filter(r#"{ resource.service.name = "api" && span:name = }"#),
            Some(r#"((resource.service.name = "api") && true)"#.into())
        );
        assert_eq!(filter("{}"), None);
        assert_eq!(filter(""), None);
        assert_eq!(filter("not a query ???"), None);
        assert_eq!(filter(r#"{ .a = "x" } >> { .b = "y" }"#), None);
    }
}
