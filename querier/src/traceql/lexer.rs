//! TraceQL tokens, following Tempo's lexer (`pkg/traceql/lexer.go`):
//! Go-style strings and numbers, durations with Prometheus and Go units,
//! `//` and `/* */` comments, and attribute names read raw after a scope
//! prefix up to a delimiter, with `"quoted"` segments.

use strata_common::ATTRIBUTE_SCOPES;

use super::error::{ParseError, Position};

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An identifier or keyword.
    Ident(String),
    /// A string literal (unquoted).
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A duration literal, nanoseconds.
    Duration(i64),
    /// An attribute reference: prefix (`.`, `span.`, ...), optional
    /// `parent.`, and the name.
    Attr {
        parent: bool,
        scope: &'static str,
        name: String,
    },
    /// `span:`, `trace:`, `event:`, `link:`, `instrumentation:`.
    ScopeColon(&'static str),
    /// Operators and punctuation.
    Sym(&'static str),
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    /// As Tempo names tokens in its messages: their text, `$end` for the
    /// end of the query.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Ident(s) => s.clone(),
            Self::Str(s) => format!("{s:?}"),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Duration(d) => format!("{d}ns"),
            Self::Attr {
                parent,
                scope,
                name,
            } => format!("{}{scope}{name}", if *parent { "parent." } else { "" }),
            Self::ScopeColon(s) => format!("{s}:"),
            Self::Sym(s) => (*s).to_owned(),
            Self::Eof => "$end".to_owned(),
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Position,
}

/// Operators, longest first so the scan is greedy.
const SYMBOLS: &[&str] = &[
    "!>>", "!<<", "&>>", "&<<", "&&", "||", "!=", "!~", "!>", "!<", "=~", ">=", "<=", ">>", "<<",
    "&>", "&<", "&~", "{", "}", "(", ")", ",", "=", "!", "<", ">", "~", "|", "+", "-", "*", "/",
    "%", "^",
];

const COLON_SCOPES: &[&str] = &["span", "trace", "event", "link", "instrumentation"];

/// Runes that end an unquoted attribute name (besides whitespace).
fn ends_attribute(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ','
        )
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    line: usize,
    col: usize,
}

/// Splits `src` into tokens.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        src,
        chars: src.char_indices().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let eof = token.tok == Tok::Eof;
        tokens.push(token);
        if eof {
            return Ok(tokens);
        }
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|(_, c)| *c)
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).map(|(_, c)| *c)
    }

    fn offset(&self) -> usize {
        self.chars.get(self.i).map_or(self.src.len(), |(o, _)| *o)
    }

    fn pos(&self) -> Position {
        Position {
            line: self.line,
            col: self.col,
            offset: self.offset(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        self.src[self.offset()..].starts_with(s)
    }

    fn skip_space_and_comments(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(c) if c == ' ' || c == '\t' || c == '\n' || c == '\r' => {
                    self.bump();
                }
                Some('/') if self.peek_at(1) == Some('/') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some('/') if self.peek_at(1) == Some('*') => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.peek() {
                            None => return Err(ParseError::at(start, "comment not terminated")),
                            Some('*') if self.peek_at(1) == Some('/') => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            Some(_) => {
                                self.bump();
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_space_and_comments()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, pos });
        };
        let tok = if c == '"' || c == '`' {
            Tok::Str(self.string()?)
        } else if c.is_ascii_digit()
            || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()))
        {
            self.number()?
        } else if c == '.' {
            self.bump();
            Tok::Attr {
                parent: false,
                scope: ".",
                name: self.attribute_name(pos)?,
            }
        } else if c.is_alphabetic() || c == '_' {
            self.word(pos)?
        } else if let Some(sym) = SYMBOLS.iter().find(|s| self.rest_starts_with(s)) {
            for _ in 0..sym.chars().count() {
                self.bump();
            }
            Tok::Sym(sym)
        } else {
            return Err(ParseError::at(pos, format!("unexpected character {c:?}")));
        };
        Ok(Token { tok, pos })
    }

    /// An identifier, a scope prefix (`span.` / `span:`) or `parent.`.
    fn word(&mut self, pos: Position) -> Result<Tok, ParseError> {
        let start = self.offset();
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        let word = self.src[start..self.offset()].to_owned();
        if self.peek() == Some('.') {
            if word == "parent" {
                self.bump();
                // `parent.span.x`, `parent.resource.x` or `parent.x`.
                for scope in ["span", "resource"] {
                    let prefix = format!("{scope}.");
                    if self.rest_starts_with(&prefix) {
                        for _ in 0..prefix.len() {
                            self.bump();
                        }
                        return Ok(Tok::Attr {
                            parent: true,
                            scope: if scope == "span" {
                                "span."
                            } else {
                                "resource."
                            },
                            name: self.attribute_name(pos)?,
                        });
                    }
                }
                return Ok(Tok::Attr {
                    parent: true,
                    scope: ".",
                    name: self.attribute_name(pos)?,
                });
            }
            if let Some(scope) = ATTRIBUTE_SCOPES.iter().find(|s| **s == word) {
                self.bump();
                let scope: &'static str = match *scope {
                    "span" => "span.",
                    "resource" => "resource.",
                    "event" => "event.",
                    "link" => "link.",
                    _ => "instrumentation.",
                };
                return Ok(Tok::Attr {
                    parent: false,
                    scope,
                    name: self.attribute_name(pos)?,
                });
            }
        }
        if self.peek() == Some(':')
            && let Some(scope) = COLON_SCOPES.iter().find(|s| **s == word)
        {
            self.bump();
            return Ok(Tok::ScopeColon(scope));
        }
        Ok(Tok::Ident(word))
    }

    /// An attribute name after its prefix: raw runes up to a delimiter, with
    /// `"quoted"` segments (escapes `\"` and `\\`).
    fn attribute_name(&mut self, start: Position) -> Result<String, ParseError> {
        let mut name = String::new();
        loop {
            match self.peek() {
                Some('"') => {
                    let quote = self.pos();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(ParseError::at(
                                    quote,
                                    "quoted attribute name not terminated: expected `\"`",
                                ));
                            }
                            Some('"') => break,
                            Some('\\') => match self.bump() {
                                Some(c @ ('"' | '\\')) => name.push(c),
                                _ => {
                                    return Err(ParseError::at(
                                        quote,
                                        "invalid escape sequence in attribute name: only \\\" and \\\\ are allowed",
                                    ));
                                }
                            },
                            Some(c) => name.push(c),
                        }
                    }
                }
                Some(c) if !ends_attribute(c) => {
                    name.push(c);
                    self.bump();
                }
                _ => break,
            }
        }
        if name.is_empty() {
            return Err(ParseError::at(
                start,
                "an attribute name must follow its scope, e.g. `span.http.method`",
            ));
        }
        Ok(name)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let pos = self.pos();
        let quote = self.bump();
        let mut out = String::new();
        if quote == Some('`') {
            loop {
                match self.bump() {
                    None => return Err(ParseError::at(pos, "string literal not terminated")),
                    Some('`') => return Ok(out),
                    Some('\r') => {}
                    Some(c) => out.push(c),
                }
            }
        }
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(ParseError::at(pos, "string literal not terminated"));
                }
                Some('"') => return Ok(out),
                Some('\\') => {
                    let escape = self.pos();
                    let bad = || ParseError::at(escape, "invalid escape sequence in string");
                    match self.bump() {
                        Some('a') => out.push('\u{07}'),
                        Some('b') => out.push('\u{08}'),
                        Some('f') => out.push('\u{0c}'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('v') => out.push('\u{0b}'),
                        Some('\\') => out.push('\\'),
                        Some('"') => out.push('"'),
                        Some(c @ ('x' | 'u' | 'U')) => {
                            let digits = match c {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut value = 0u32;
                            for _ in 0..digits {
                                let d = self.bump().and_then(|d| d.to_digit(16)).ok_or_else(bad)?;
                                value = value * 16 + d;
                            }
                            if c == 'x' {
                                // A byte; non-ASCII bytes cannot form valid UTF-8 alone.
                                if value > 0x7f {
                                    return Err(bad());
                                }
                            }
                            out.push(char::from_u32(value).ok_or_else(bad)?);
                        }
                        Some(c @ '0'..='7') => {
                            let mut value = c.to_digit(8).ok_or_else(bad)?;
                            for _ in 0..2 {
                                let d = self.bump().and_then(|d| d.to_digit(8)).ok_or_else(bad)?;
                                value = value * 8 + d;
                            }
                            if value > 0x7f {
                                return Err(bad());
                            }
                            out.push(char::from_u32(value).ok_or_else(bad)?);
                        }
                        _ => return Err(bad()),
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// An integer, float or duration.
    fn number(&mut self) -> Result<Tok, ParseError> {
        let pos = self.pos();
        let start = self.offset();
        let mut is_float = false;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') && self.peek_at(1).is_none_or(|c| c != '.') {
            is_float = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        // An exponent, unless what follows is a duration unit.
        if matches!(self.peek(), Some('e' | 'E'))
            && (self.peek_at(1).is_some_and(|c| c.is_ascii_digit())
                || (matches!(self.peek_at(1), Some('+' | '-'))
                    && self.peek_at(2).is_some_and(|c| c.is_ascii_digit())))
        {
            is_float = true;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let number_end = self.offset();
        // A duration: the number directly followed by unit runes (and more
        // digits for compound durations), up to a delimiter.
        let mut j = self.i;
        while let Some((_, c)) = self.chars.get(j) {
            if c.is_ascii_digit()
                || matches!(
                    c,
                    '.' | 'n' | 's' | 'u' | 'm' | 'h' | 'µ' | 'μ' | 'd' | 'w' | 'y'
                )
            {
                j += 1;
            } else {
                break;
            }
        }
        if j > self.i {
            let end = self.chars.get(j).map_or(self.src.len(), |(o, _)| *o);
            let text = &self.src[start..end];
            if let Some(nanos) = parse_duration(text) {
                while self.i < j {
                    self.bump();
                }
                return Ok(Tok::Duration(nanos));
            }
        }
        let text = &self.src[start..number_end];
        if !is_float && text.len() > 1 && text.starts_with('0') && text.contains(['8', '9']) {
            // Go reads a leading zero as octal, so Tempo refuses `08`.
            return Err(ParseError::at(
                pos,
                format!("invalid digit in octal literal {text:?}"),
            ));
        }
        if is_float {
            text.parse::<f64>().map(Tok::Float).map_err(|_| {
                ParseError::at(
                    pos,
                    format!("strconv.ParseFloat: parsing {text:?}: invalid syntax"),
                )
            })
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| {
                ParseError::at(
                    pos,
                    format!(
                        "strconv.Atoi: parsing {text:?}: value out of range (minInt and maxInt name the limits)"
                    ),
                )
            })
        }
    }
}

/// Parses a duration the way Tempo does: Prometheus style first
/// (`1h30m`, `2d`, `1w`, `1y`, integers, units in descending order), then
/// Go style (`1.5s`, `100us`, `1h15m30.5s`). Nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    parse_prometheus_duration(text).or_else(|| parse_go_duration(text))
}

fn parse_prometheus_duration(text: &str) -> Option<i64> {
    const UNITS: [(&str, i128); 7] = [
        ("y", 365 * 24 * 3600 * 1_000_000_000),
        ("w", 7 * 24 * 3600 * 1_000_000_000),
        ("d", 24 * 3600 * 1_000_000_000),
        ("h", 3600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let mut rest = text;
    let mut total: i128 = 0;
    let mut next_unit = 0;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: i128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // Longest unit match ("ms" before "m").
        let (index, unit) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        rest = &rest[unit.0.len()..];
        total = total.checked_add(value.checked_mul(unit.1)?)?;
        next_unit = index + 1;
        any = true;
    }
    if !any {
        return None;
    }
    i64::try_from(total).ok()
}

pub(crate) fn parse_go_duration(text: &str) -> Option<i64> {
    if text == "0" {
        return Some(0);
    }
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(rest.len(), |(i, _)| i);
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.0.len()..];
        total += value * unit.1;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .filter(|t| *t != Tok::Eof)
            .collect()
    }

    #[test]
    fn attribute_names_are_raw_up_to_delimiters() {
        assert_eq!(
            toks(r#"{ span.http.status_code>=500 && .a+1 = resource."x y".z }"#),
            [
                Tok::Sym("{"),
                Tok::Attr {
                    parent: false,
                    scope: "span.",
                    name: "http.status_code".into()
                },
                Tok::Sym(">="),
                Tok::Int(500),
                Tok::Sym("&&"),
                Tok::Attr {
                    parent: false,
                    scope: ".",
                    name: "a+1".into()
                },
                Tok::Sym("="),
                Tok::Attr {
                    parent: false,
                    scope: "resource.",
                    name: "x y.z".into()
                },
                Tok::Sym("}"),
            ]
        );
        assert_eq!(
            toks("parent.span.a parent.b"),
            [
                Tok::Attr {
                    parent: true,
                    scope: "span.",
                    name: "a".into()
                },
                Tok::Attr {
                    parent: true,
                    scope: ".",
                    name: "b".into()
                },
            ]
        );
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(
            toks("1 1.5 .5 1e3"),
            [
                Tok::Int(1),
                Tok::Float(1.5),
                Tok::Float(0.5),
                Tok::Float(1000.0)
            ]
        );
        assert_eq!(
            toks("100ms 1h30m 1.5s 2d 1µs 10ns"),
            [
                Tok::Duration(100_000_000),
                Tok::Duration(5_400_000_000_000),
                Tok::Duration(1_500_000_000),
                Tok::Duration(172_800_000_000_000),
                Tok::Duration(1_000),
                Tok::Duration(10),
            ]
        );
        assert!(tokenize("99999999999999999999").is_err());
    }

    #[test]
    fn strings_comments_and_scopes() {
        assert_eq!(
            toks("\"a\\n\\u00e9\" `raw\\n` // comment\n span:name /* x */ trace:id"),
            [
                Tok::Str("a\né".into()),
                Tok::Str("raw\\n".into()),
                Tok::ScopeColon("span"),
                Tok::Ident("name".into()),
                Tok::ScopeColon("trace"),
                Tok::Ident("id".into()),
            ]
        );
        assert_eq!(
            toks("!>> &~ !~ =~"),
            [
                Tok::Sym("!>>"),
                Tok::Sym("&~"),
                Tok::Sym("!~"),
                Tok::Sym("=~")
            ]
        );
    }
}
