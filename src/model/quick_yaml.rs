//! A quick reader for the plain block YAML that mkplan itself writes (the simulator's fleet
//! file): block mappings and sequences, one-line flow mappings, `[]` and `{}`, double-quoted
//! strings without escapes, plain words and numbers, and whole-line comments.
//!
//! It exists for speed only: the full parser (`serde_saphyr`) keeps a location for every
//! node, which a 2 MiB fleet of 1,000 instances pays for on every read, and the locations
//! are only ever needed for an error. So this reader keeps none, and answers `None` the
//! moment it meets anything outside its small subset, anything it cannot read exactly as
//! the full parser would (a null, an anchor, a tag, an escape, a YAML 1.1 boolean, a
//! duplicate key), or anything wrong. The caller then parses the text with the full parser,
//! which reports the error at its line and column: this reader never says why it gave up.
//!
//! What it reads becomes a `serde_json::Value`, so the same serde derives (defaults, unknown
//! keys refused, the types' own checks) turn it into the same value as the full parser.

use serde_json::{Map, Number, Value};

/// This reader stays well inside the budget `from_yaml_str` gives the full parser (its
/// defaults: 64 MiB of scalars, depth 64; events and nodes: `YAML_EVENTS_MAX`, `YAML_NODES_MAX`), so
/// that it never accepts a document the full parser would refuse for its size: near a
/// limit, the full parser decides.
const EVENTS_MAX: usize = super::YAML_EVENTS_MAX / 10 * 9;
const NODES_MAX: usize = super::YAML_NODES_MAX / 10 * 9;
const SCALAR_BYTES_MAX: usize = 56 * 1024 * 1024;
const DEPTH_MAX: usize = 32;

/// The document in `text` as a JSON value, or `None` where the full parser must decide.
pub fn parse(text: &str) -> Option<Value> {
    let mut lines = Vec::new();
    // The full parser counts comments as events too.
    let mut comments = 0;
    for line in text.split('\n') {
        let content = line.trim_start_matches(' ');
        if content.starts_with('#') {
            comments += 1;
            continue;
        }
        if content.trim_end_matches(' ').is_empty() {
            continue;
        }
        if !content.chars().all(plain_character) {
            return None;
        }
        lines.push(Line {
            indent: line.len() - content.len(),
            content: content.trim_end_matches(' '),
        });
    }
    let mut reader = Reader {
        lines,
        at: 0,
        depth: 0,
        scalars: 0,
        collections: 0,
        scalar_bytes: 0,
    };
    let root = reader.node(0)?;
    let events = 4 + comments + reader.scalars + 2 * reader.collections;
    let within = events <= EVENTS_MAX
        && reader.scalars + reader.collections <= NODES_MAX
        && reader.scalar_bytes <= SCALAR_BYTES_MAX;
    (reader.at == reader.lines.len() && within).then_some(root)
}

/// Characters the reader takes as they are; a tab, a carriage return, a byte order mark, a
/// control character or a Unicode line separator sends the text to the full parser.
fn plain_character(c: char) -> bool {
    !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
}

struct Line<'a> {
    /// Spaces before the content.
    indent: usize,
    /// The line without its indentation and trailing spaces.
    content: &'a str,
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    /// Block collections open now.
    depth: usize,
    /// Keys and values read, and their bytes; mappings and sequences read.
    scalars: usize,
    collections: usize,
    scalar_bytes: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<&Line<'a>> {
        self.lines.get(self.at)
    }

    /// The block node whose first line is the next one, at exactly `indent`.
    fn node(&mut self, indent: usize) -> Option<Value> {
        let line = self.peek()?;
        if line.indent != indent || self.depth >= DEPTH_MAX {
            return None;
        }
        let item = is_item(line.content);
        self.depth += 1;
        let node = if item {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        };
        self.depth -= 1;
        node
    }

    /// Counts a one-line value (a scalar, or a flow mapping of scalars) as the full parser's
    /// budget does: its keys and scalars, and itself.
    fn count_flow(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                self.collections += 1;
                for (key, value) in map {
                    self.scalars += 2;
                    self.scalar_bytes += key.len() + value.as_str().map_or(0, str::len);
                }
            }
            Value::Array(_) => self.collections += 1,
            Value::String(text) => {
                self.scalars += 1;
                self.scalar_bytes += text.len();
            }
            _ => self.scalars += 1,
        }
    }

    fn sequence(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_item(line.content) {
                break;
            }
            let rest = &line.content[1..];
            let inner = rest.trim_start_matches(' ');
            let inner_indent = indent + 1 + (rest.len() - inner.len());
            if split_key(inner).is_some() {
                // `- key: value` opens a mapping whose keys line up with `key`.
                self.lines[self.at] = Line {
                    indent: inner_indent,
                    content: inner,
                };
                items.push(self.mapping(inner_indent)?);
            } else {
                self.at += 1;
                let value = flow_or_scalar(inner)?;
                self.count_flow(&value);
                items.push(value);
            }
        }
        self.collections += 1;
        Some(Value::Array(items))
    }

    fn mapping(&mut self, indent: usize) -> Option<Value> {
        let mut map = Map::new();
        while let Some(line) = self.peek() {
            if line.indent != indent {
                break;
            }
            let (key, rest) = split_key(line.content)?;
            self.at += 1;
            let value = if rest.is_empty() {
                // The value is the block below: deeper, or a sequence at this indent.
                let next = self.peek()?;
                if next.indent > indent {
                    self.node(next.indent)?
                } else if next.indent == indent && is_item(next.content) {
                    self.sequence(indent)?
                } else {
                    return None; // a null
                }
            } else {
                let value = flow_or_scalar(rest)?;
                self.count_flow(&value);
                value
            };
            self.scalars += 1;
            self.scalar_bytes += key.len();
            if map.insert(key.to_string(), value).is_some() {
                return None; // a duplicate key: the full parser refuses it
            }
        }
        self.collections += 1;
        Some(Value::Object(map))
    }
}

fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// `key: rest` or `key:` with a plain key of letters, digits and underscores.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let end = content.find(':')?;
    let key = &content[..end];
    let rest = &content[end + 1..];
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !key_ok {
        return None;
    }
    if rest.is_empty() {
        return Some((key, rest));
    }
    rest.strip_prefix(' ')
        .map(|rest| (key, rest.trim_start_matches(' ')))
}

/// A value on one line: `[]`, `{}`, a flow mapping of scalars, or a scalar.
fn flow_or_scalar(text: &str) -> Option<Value> {
    match text {
        "[]" => return Some(Value::Array(Vec::new())),
        "{}" => return Some(Value::Object(Map::new())),
        _ => {}
    }
    match text.strip_prefix('{') {
        Some(inner) => flow_mapping(inner.strip_suffix('}')?),
        None => {
            let (value, rest) = scalar(text)?;
            rest.is_empty().then_some(value)
        }
    }
}

/// `key: value, key: value` (the inside of `{ … }`), each value a scalar.
fn flow_mapping(mut inner: &str) -> Option<Value> {
    let mut map = Map::new();
    loop {
        inner = inner.trim_start_matches(' ');
        if inner.is_empty() {
            break;
        }
        let colon = inner.find(": ")?;
        let key = &inner[..colon];
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let (value, rest) = scalar(inner[colon + 2..].trim_start_matches(' '))?;
        if map.insert(key.to_string(), value).is_some() {
            return None;
        }
        let rest = rest.trim_start_matches(' ');
        inner = match rest.strip_prefix(',') {
            Some(after) => after,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(Value::Object(map))
}

/// A scalar at the start of `text` and what follows it. In a flow mapping a plain scalar
/// ends at `,` or the end; a quoted one at its closing quote.
fn scalar(text: &str) -> Option<(Value, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find(['"', '\\'])?;
        if quoted.as_bytes()[end] != b'"' {
            return None; // an escape: the full parser reads those
        }
        return Some((Value::String(quoted[..end].to_string()), &quoted[end + 1..]));
    }
    let end = text.find(',').unwrap_or(text.len());
    let word = text[..end].trim_end_matches(' ');
    Some((plain(word)?, &text[end..]))
}

/// A plain scalar, typed as the full parser types it for the fields of our files: `true`
/// and `false`, whole numbers, and other words as text. A word the schemas read another
/// way (a null, `yes`, `-1`, `.inf`) is not ours to decide. Any other word is text here; where
/// a field wants a number or a boolean (`0x1F`, `1e3`), text is refused by the field's type
/// and the full parser decides.
fn plain(word: &str) -> Option<Value> {
    let first = word.chars().next()?;
    let special = |c: char| {
        matches!(
            c,
            '#' | ':'
                | ','
                | '['
                | ']'
                | '{'
                | '}'
                | '"'
                | '\''
                | '&'
                | '*'
                | '!'
                | '|'
                | '>'
                | '%'
                | '@'
                | '`'
                | '\\'
                | '?'
        )
    };
    if matches!(first, '-' | '+' | '.' | ' ') || word.chars().any(special) {
        return None;
    }
    match word {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    const OTHER_READINGS: &[&str] = &[
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    if OTHER_READINGS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
        return None;
    }
    if word.bytes().all(|b| b.is_ascii_digit()) {
        if word.len() > 1 && word.starts_with('0') {
            return None;
        }
        return word
            .parse::<u64>()
            .ok()
            .map(|n| Value::Number(Number::from(n)));
    }
    Some(Value::String(word.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_block_and_flow_forms() {
        let text = "# a comment\nitems:\n  - id: a-1\n    n: 3\n    ok: true\n    r: { status: Full Committed, vp: \"ab\" }\n    list:\n    - x\n    - \"y z\"\n  - id: b\n    e: []\nempty: {}\n";
        assert_eq!(
            parse(text),
            Some(json!({
                "items": [
                    { "id": "a-1", "n": 3, "ok": true,
                      "r": { "status": "Full Committed", "vp": "ab" },
                      "list": ["x", "y z"] },
                    { "id": "b", "e": [] }
                ],
                "empty": {}
            }))
        );
    }

    #[test]
    fn leaves_everything_else_to_the_full_parser() {
        for text in [
            "a: ~\n",
            "a:\n",
            "a: null\n",
            "a: yes\n",
            "a: 010\n",
            "a: -1\n",
            "a: \"x\\ty\"\n",
            "a: 'x'\n",
            "a: &anchor x\n",
            "a: *anchor\n",
            "a: !tag x\n",
            "a: |\n  x\n",
            "a: x # comment\n",
            "a: 1\na: 2\n",
            "a: { b: 1, b: 2 }\n",
            "a:\tx\n",
            "a: x\r\n",
            "\u{feff}a: x\n",
            "a: [x]\n",
            "---\na: x\n",
            "a: x\n b: y\n",
            "\"a\": x\n",
            "a: { b: \"x\" y }\n",
            "a: 99999999999999999999\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
