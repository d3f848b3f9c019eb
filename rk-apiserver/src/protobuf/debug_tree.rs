//! A parser for the `Debug` form of prost messages
//! (`Name { field: Some("x"), list: [..], map: {..} }`), giving a tree with
//! the generated (snake_case) field names.

use super::ProtobufError;

/// A parsed `Debug` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `None`.
    Null,
    /// A bool.
    Bool(bool),
    /// A number, as written.
    Num(String),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Node>),
    /// A map (`{k: v}`).
    Map(Vec<(Node, Node)>),
    /// A struct (`Name { field: value }`), fields in order.
    Struct(Vec<(String, Node)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 128;

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> ProtobufError {
        ProtobufError::Malformed {
            position: self.pos,
            what: what.to_string(),
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), ProtobufError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric()
                || matches!(self.s[self.pos], b'_' | b'#' | b':'))
        {
            // `::` paths never appear in Debug output; stop at a single ':'.
            if self.s[self.pos] == b':' {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> Result<String, ProtobufError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("bad escape"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'0' => out.push('\0'),
                        b'\\' => out.push('\\'),
                        b'"' => out.push('"'),
                        b'\'' => out.push('\''),
                        b'u' => {
                            self.expect(b'{')?;
                            let start = self.pos;
                            while self.pos < self.s.len() && self.s[self.pos] != b'}' {
                                self.pos += 1;
                            }
                            let hex = std::str::from_utf8(&self.s[start..self.pos])
                                .map_err(|_| self.err("bad escape"))?;
                            let code =
                                u32::from_str_radix(hex, 16).map_err(|_| self.err("bad escape"))?;
                            out.push(char::from_u32(code).ok_or_else(|| self.err("bad escape"))?);
                            self.pos += 1;
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                _ => {
                    // Copy a UTF-8 sequence whole.
                    let start = self.pos - 1;
                    let len = match c {
                        0xF0..=0xF7 => 4,
                        0xE0..=0xEF => 3,
                        0xC0..=0xDF => 2,
                        _ => 1,
                    };
                    let end = (start + len).min(self.s.len());
                    out.push_str(&String::from_utf8_lossy(&self.s[start..end]));
                    self.pos = end;
                }
            }
        }
    }

    fn value(&mut self) -> Result<Node, ProtobufError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> Result<Node, ProtobufError> {
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'"') => Ok(Node::Str(self.string()?)),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Node::List(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            if self.peek() == Some(b']') {
                                self.pos += 1;
                                return Ok(Node::List(items));
                            }
                        }
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Node::List(items));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Node::Map(entries));
                }
                loop {
                    let k = self.value()?;
                    self.expect(b':')?;
                    let v = self.value()?;
                    entries.push((k, v));
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            if self.peek() == Some(b'}') {
                                self.pos += 1;
                                return Ok(Node::Map(entries));
                            }
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Node::Map(entries));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.s.len()
                    && (self.s[self.pos].is_ascii_digit()
                        || matches!(self.s[self.pos], b'.' | b'e' | b'E' | b'-' | b'+'))
                {
                    self.pos += 1;
                }
                Ok(Node::Num(
                    String::from_utf8_lossy(&self.s[start..self.pos]).into_owned(),
                ))
            }
            Some(_) => {
                let id = self.ident();
                match id.as_str() {
                    "" => Err(self.err("unexpected character")),
                    "None" => Ok(Node::Null),
                    "true" => Ok(Node::Bool(true)),
                    "false" => Ok(Node::Bool(false)),
                    "Some" => {
                        self.expect(b'(')?;
                        let v = self.value()?;
                        self.expect(b')')?;
                        Ok(v)
                    }
                    _ => {
                        // A struct: `Name { a: .., b: .. }` or a bare `Name`.
                        if self.peek() != Some(b'{') {
                            return Ok(Node::Struct(Vec::new()));
                        }
                        self.pos += 1;
                        let mut fields = Vec::new();
                        loop {
                            if self.peek() == Some(b'}') {
                                self.pos += 1;
                                return Ok(Node::Struct(fields));
                            }
                            let name = self.ident();
                            let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
                            self.expect(b':')?;
                            let v = self.value()?;
                            fields.push((name, v));
                            match self.peek() {
                                Some(b',') => self.pos += 1,
                                Some(b'}') => {}
                                _ => return Err(self.err("expected ',' or '}'")),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Parse a `{:?}` rendering.
pub fn parse(s: &str) -> Result<Node, ProtobufError> {
    let mut p = Parser {
        s: s.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prost_debug_shapes() {
        let n = parse(r#"ConfigMap { metadata: Some(ObjectMeta { name: Some("a\"b"), labels: {"k": "v"} }), data: {}, immutable: None, raw: [1, 2] }"#).unwrap();
        let Node::Struct(fields) = n else { panic!() };
        assert_eq!(fields[0].0, "metadata");
        assert_eq!(
            fields[3].1,
            Node::List(vec![Node::Num("1".into()), Node::Num("2".into())])
        );
    }
}
