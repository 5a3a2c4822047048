//! TraceQL: the query language of Tempo's search.
//!
//! - [`parse`] turns text into a checked [`Query`] ([`ast`]), or a
//!   [`ParseError`] that says where and why (HTTP 400).
//! - [`eval`] evaluates a query exactly on one trace at a time, over any
//!   storage that implements [`eval::SpanAccess`].
//! - [`display`] prints a query back in canonical form.
//!
//! The supported surface and every difference from Tempo are listed in
//! `docs/traceql.md`.

pub mod ast;
pub mod display;
mod error;
pub mod eval;
mod lenient;
mod lexer;
mod parser;
mod validate;

pub use ast::Query;
pub use error::{ParseError, Position};
pub use lenient::lenient_filter;

/// Parses and type-checks a query.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    let query = parser::parse_query(text)?;
    validate::validate(&query)?;
    Ok(query)
}

/// Parses a duration as Go's `time.ParseDuration` does (`1.5s`, `100us`,
/// `1h15m`, `0`; no days), in nanoseconds: Tempo reads its `minDuration` and
/// `maxDuration` search parameters so.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    lexer::parse_go_duration(text)
}

/// Parses a lone attribute or intrinsic (a tag name in the tag-values API:
/// `resource.service.name`, `.http.method`, `span:status`, `name`).
pub fn parse_identifier(text: &str) -> Result<ast::FieldExpr, ParseError> {
    let field = parser::parse_field(text)?;
    match field {
        ast::FieldExpr::Attribute(_) | ast::FieldExpr::Intrinsic(_) => Ok(field),
        _ => Err(ParseError::invalid(format!(
            "{text:?} is not an attribute or intrinsic"
        ))),
    }
}

#[cfg(test)]
mod tests;
