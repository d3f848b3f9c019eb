//! The label selector lexer and recursive-descent parser, with upstream's
//! grammar (`k8s.io/apimachinery/pkg/labels/selector.go`):
//!
//! ```text
//! <selector>    ::= "" | <requirement> | <requirement> "," <selector>
//! <requirement> ::= ["!"] KEY [ <set-restriction> | <exact-restriction> ]
//! <set-restriction>   ::= ("in" | "notin") "(" VALUE { "," VALUE } ")"
//! <exact-restriction> ::= ("=" | "==" | "!=" | ">" | "<") VALUE
//! ```
//!
//! Whitespace (space, tab, CR, LF) separates tokens. Values may be empty
//! (`a=`, `a in (,x)`, `a in ()`). `in` and `notin` are keywords only where an
//! operator is expected, so `in in (in)` is a valid requirement.

use super::{Operator, Requirement, SelectorError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    start: usize,
}

/// Whether the parser expects a key/value (where `in`/`notin` are plain
/// identifiers) or an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn lex(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        let start = pos;
        let Some(&b) = bytes.get(pos) else {
            tokens.push(Token {
                kind: Kind::End,
                text: "",
                start,
            });
            return tokens;
        };
        let next = bytes.get(pos + 1).copied();
        let (kind, len) = match (b, next) {
            (b'!', Some(b'=')) => (Kind::NotEquals, 2),
            (b'=', Some(b'=')) => (Kind::DoubleEquals, 2),
            (b'!', _) => (Kind::Not, 1),
            (b'=', _) => (Kind::Equals, 1),
            (b'(', _) => (Kind::OpenPar, 1),
            (b')', _) => (Kind::ClosePar, 1),
            (b',', _) => (Kind::Comma, 1),
            (b'>', _) => (Kind::GreaterThan, 1),
            (b'<', _) => (Kind::LessThan, 1),
            _ => {
                let mut end = pos;
                while end < bytes.len() && !is_whitespace(bytes[end]) && !is_special(bytes[end]) {
                    end += 1;
                }
                // Token boundaries are ASCII bytes, so the slice is on char boundaries.
                let text = input.get(start..end).unwrap_or_default();
                let kind = match text {
                    "in" => Kind::In,
                    "notin" => Kind::NotIn,
                    _ => Kind::Identifier,
                };
                (kind, end - start)
            }
        };
        pos += len;
        tokens.push(Token {
            kind,
            text: input.get(start..pos).unwrap_or_default(),
            start,
        });
    }
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
}

/// A value as written, with its byte position (for error messages).
type Spanned<'a> = (&'a str, usize);

impl<'a> Parser<'a> {
    fn token(&self, context: Context) -> Token<'a> {
        let end = Token {
            kind: Kind::End,
            text: "",
            start: 0,
        };
        let mut token = self
            .tokens
            .get(self.next)
            .or(self.tokens.last())
            .copied()
            .unwrap_or(end);
        if context == Context::Values && matches!(token.kind, Kind::In | Kind::NotIn) {
            token.kind = Kind::Identifier;
        }
        token
    }

    fn peek(&self, context: Context) -> Token<'a> {
        self.token(context)
    }

    fn take(&mut self, context: Context) -> Token<'a> {
        let token = self.token(context);
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let token = self.peek(Context::Values);
            match token.kind {
                Kind::Identifier | Kind::Not => {
                    requirements.push(self.parse_requirement()?);
                    let after = self.take(Context::Values);
                    match after.kind {
                        Kind::End => return Ok(requirements),
                        Kind::Comma => {
                            let next = self.peek(Context::Values);
                            if !matches!(next.kind, Kind::Identifier | Kind::Not) {
                                return Err(syntax(next, "identifier after ','"));
                            }
                        }
                        _ => return Err(syntax(after, "',' or end of string")),
                    }
                }
                Kind::End => return Ok(requirements),
                _ => return Err(syntax(token, "'!', identifier, or end of string")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.take(Context::Values);
        let negated = token.kind == Kind::Not;
        if negated {
            token = self.take(Context::Values);
        }
        if token.kind != Kind::Identifier {
            return Err(syntax(token, "identifier"));
        }
        let key = (token.text, token.start);
        if negated {
            return Requirement::build(key, Operator::DoesNotExist, &[]);
        }
        if matches!(self.peek(Context::Values).kind, Kind::End | Kind::Comma) {
            return Requirement::build(key, Operator::Exists, &[]);
        }
        let token = self.take(Context::KeyAndOperator);
        let operator = match token.kind {
            Kind::In => Operator::In,
            Kind::NotIn => Operator::NotIn,
            Kind::Equals => Operator::Equals,
            Kind::DoubleEquals => Operator::DoubleEquals,
            Kind::NotEquals => Operator::NotEquals,
            Kind::GreaterThan => Operator::GreaterThan,
            Kind::LessThan => Operator::LessThan,
            _ => {
                return Err(syntax(
                    token,
                    "one of '!=', '<', '=', '==', '>', 'in', 'notin'",
                ));
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => vec![self.parse_exact_value()?],
        };
        Requirement::build(key, operator, &values)
    }

    fn parse_values(&mut self) -> Result<Vec<Spanned<'a>>, SelectorError> {
        let open = self.take(Context::Values);
        if open.kind != Kind::OpenPar {
            return Err(syntax(open, "'('"));
        }
        let next = self.peek(Context::Values);
        match next.kind {
            Kind::Identifier | Kind::Comma => {
                let values = self.parse_identifiers_list()?;
                let close = self.take(Context::Values);
                if close.kind != Kind::ClosePar {
                    return Err(syntax(close, "')'"));
                }
                Ok(values)
            }
            // `()` means the single empty value, as upstream.
            Kind::ClosePar => {
                self.take(Context::Values);
                Ok(vec![("", next.start)])
            }
            _ => Err(syntax(next, "',', ')' or identifier")),
        }
    }

    /// A comma-separated list of possibly empty values, up to (not
    /// including) the closing parenthesis.
    fn parse_identifiers_list(&mut self) -> Result<Vec<Spanned<'a>>, SelectorError> {
        let mut values = Vec::new();
        loop {
            let token = self.take(Context::Values);
            match token.kind {
                Kind::Identifier => {
                    values.push((token.text, token.start));
                    let next = self.peek(Context::Values);
                    match next.kind {
                        Kind::Comma => {}
                        Kind::ClosePar => return Ok(values),
                        _ => return Err(syntax(next, "',' or ')'")),
                    }
                }
                Kind::Comma => {
                    if values.is_empty() {
                        values.push(("", token.start));
                    }
                    let next = self.peek(Context::Values);
                    match next.kind {
                        Kind::ClosePar => {
                            values.push(("", next.start));
                            return Ok(values);
                        }
                        Kind::Comma => values.push(("", next.start)),
                        _ => {}
                    }
                }
                _ => return Err(syntax(token, "',' or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Spanned<'a>, SelectorError> {
        let next = self.peek(Context::Values);
        if matches!(next.kind, Kind::End | Kind::Comma) {
            return Ok(("", next.start));
        }
        let token = self.take(Context::Values);
        if token.kind == Kind::Identifier {
            Ok((token.text, token.start))
        } else {
            Err(syntax(token, "identifier"))
        }
    }
}

fn syntax(token: Token<'_>, expected: &'static str) -> SelectorError {
    SelectorError::Syntax {
        position: token.start,
        found: token.text.to_owned(),
        expected,
    }
}

/// Parses a selector string into its requirements, in written order.
pub(super) fn parse(input: &str) -> Result<Vec<Requirement>, SelectorError> {
    Parser {
        tokens: lex(input),
        next: 0,
    }
    .parse()
}
