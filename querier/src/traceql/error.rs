//! Parse and validation errors, with where they happened.

use std::fmt;

/// A place in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Byte offset.
    pub offset: usize,
}

/// Why a query was refused: a syntax error, a type error, or a construct
/// Strata does not support. Rendered like Tempo's errors,
/// `parse error at line 1, col 5: ...`, so tools that show them still work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where, when known.
    pub position: Option<Position>,
    /// What is wrong, for a person.
    pub message: String,
    /// Whether the query is valid TraceQL that Strata does not support.
    pub unsupported: bool,
}

impl ParseError {
    /// An error at `position`.
    pub(crate) fn at(position: Position, message: impl Into<String>) -> Self {
        Self {
            position: Some(position),
            message: message.into(),
            unsupported: false,
        }
    }

    /// A type or validation error (no single position).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            position: None,
            message: message.into(),
            unsupported: false,
        }
    }

    /// Valid TraceQL that Strata does not support.
    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self {
            position: None,
            message: message.into(),
            unsupported: true,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "parse error at line {}, col {}: {}",
                p.line, p.col, self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}
