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

use serde::de::DeserializeOwned;

pub use de::At;

#[path = "quick_yaml_de.rs"]
mod de;

/// This reader stays well inside the budget `from_yaml_str` gives the full parser (its
/// defaults: 64 MiB of scalars, depth 64; events and nodes: `YAML_EVENTS_MAX`, `YAML_NODES_MAX`), so
/// that it never accepts a document the full parser would refuse for its size: near a
/// limit, the full parser decides.
const EVENTS_MAX: usize = super::YAML_EVENTS_MAX / 10 * 9;
const NODES_MAX: usize = super::YAML_NODES_MAX / 10 * 9;
const SCALAR_BYTES_MAX: usize = 56 * 1024 * 1024;
const DEPTH_MAX: usize = 32;

/// One node of the document, where it starts (1-based line and column, in characters, as
/// the full parser counts them), and its text borrowed from the document.
#[derive(Debug, PartialEq)]
pub struct Node<'a> {
    pub kind: Kind<'a>,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, PartialEq)]
pub enum Kind<'a> {
    Text(&'a str),
    Bool(bool),
    Number(u64),
    Sequence(Vec<Node<'a>>),
    /// Keys in the document's order, none twice.
    Mapping(Vec<(&'a str, Node<'a>)>),
}

/// The document in `text` as `T` (through `T`'s own serde derive, as the full parser does),
/// or `None` where the full parser must decide: anything outside the subset, and anything
/// `T` refuses. Positions come through `At`.
pub fn read<T: DeserializeOwned>(text: &str) -> Option<T> {
    T::deserialize(&parse(text)?).ok()
}

/// The document in `text` as a tree, or `None` where the full parser must decide.
pub fn parse(text: &str) -> Option<Node<'_>> {
    let mut lines = Vec::new();
    // The full parser counts comments as events too.
    let mut comments = 0;
    for (index, line) in text.split('\n').enumerate() {
        let content = line.trim_start_matches(' ');
        // The full parser refuses a control character in a comment too.
        let printable_ascii = content.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !printable_ascii && !content.chars().all(plain_character) {
            return None;
        }
        if content.starts_with('#') {
            comments += 1;
            continue;
        }
        if content.trim_end_matches(' ').is_empty() {
            continue;
        }
        lines.push(Line {
            number: u32::try_from(index + 1).ok()?,
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
    /// 1-based.
    number: u32,
    /// Spaces before the content.
    indent: usize,
    /// The line without its indentation and trailing spaces.
    content: &'a str,
}

impl<'a> Line<'a> {
    /// A node of `kind` whose text starts at `part`, a piece of this line's content.
    fn node(&self, part: &str, kind: Kind<'a>) -> Option<Node<'a>> {
        let offset = (part.as_ptr() as usize).checked_sub(self.content.as_ptr() as usize)?;
        let before = self.content.get(..offset)?;
        let column = self.indent + before.chars().count() + 1;
        Some(Node {
            kind,
            line: self.number,
            column: u32::try_from(column).ok()?,
        })
    }
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
    fn node(&mut self, indent: usize) -> Option<Node<'a>> {
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

    /// Counts a one-line value (a scalar, or a flow collection of scalars) as the full
    /// parser's budget does: its keys and scalars, and itself.
    fn count_flow(&mut self, value: &Node) {
        match &value.kind {
            Kind::Mapping(entries) => {
                self.collections += 1;
                for (key, value) in entries {
                    self.scalars += 1;
                    self.scalar_bytes += key.len();
                    self.count_flow(value);
                }
            }
            Kind::Sequence(items) => {
                self.collections += 1;
                for item in items {
                    self.count_flow(item);
                }
            }
            Kind::Text(text) => {
                self.scalars += 1;
                self.scalar_bytes += text.len();
            }
            Kind::Bool(_) | Kind::Number(_) => self.scalars += 1,
        }
    }

    fn sequence(&mut self, indent: usize) -> Option<Node<'a>> {
        let first = self.peek()?;
        let (line, column) = (first.number, u32::try_from(indent + 1).ok()?);
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
                    number: line.number,
                    indent: inner_indent,
                    content: inner,
                };
                items.push(self.mapping(inner_indent)?);
            } else {
                let value = flow_or_scalar(line, inner)?;
                self.at += 1;
                self.count_flow(&value);
                items.push(value);
            }
        }
        self.collections += 1;
        Some(Node {
            kind: Kind::Sequence(items),
            line,
            column,
        })
    }

    fn mapping(&mut self, indent: usize) -> Option<Node<'a>> {
        let first = self.peek()?;
        let (line_number, column) = (first.number, u32::try_from(indent + 1).ok()?);
        let mut entries: Vec<(&'a str, Node<'a>)> = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent {
                break;
            }
            let (key, rest) = split_key(line.content)?;
            let value = if rest.is_empty() {
                self.at += 1;
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
                let value = block_value(line, rest)?;
                self.at += 1;
                self.count_flow(&value);
                value
            };
            self.scalars += 1;
            self.scalar_bytes += key.len();
            if entries.iter().any(|(seen, _)| *seen == key) {
                return None; // a duplicate key: the full parser refuses it
            }
            entries.push((key, value));
        }
        self.collections += 1;
        Some(Node {
            kind: Kind::Mapping(entries),
            line: line_number,
            column,
        })
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

/// The value after `key: ` on a line of a block mapping: a flow collection or a scalar, where
/// a plain scalar may hold a colon that no space follows (`backend: sim:../fleet.yaml`).
fn block_value<'a>(line: &Line<'a>, text: &'a str) -> Option<Node<'a>> {
    if !text.contains(':') || text.starts_with(['[', '{', '"']) {
        return flow_or_scalar(line, text);
    }
    let mut pieces = text.split(':');
    // The first piece starts the scalar; the others only continue it.
    plain(pieces.next()?)?;
    for piece in pieces {
        if piece.is_empty() || piece.starts_with(' ') || piece.bytes().any(special) {
            return None;
        }
    }
    line.node(text, Kind::Text(text))
}

/// A value on one line: `[]`, `{}`, a flow sequence or mapping of scalars, or a scalar.
fn flow_or_scalar<'a>(line: &Line<'a>, text: &'a str) -> Option<Node<'a>> {
    let kind = if let Some(inner) = text.strip_prefix('{') {
        Kind::Mapping(flow_mapping(line, inner.strip_suffix('}')?)?)
    } else if let Some(inner) = text.strip_prefix('[') {
        Kind::Sequence(flow_sequence(line, inner.strip_suffix(']')?)?)
    } else {
        let (value, rest) = scalar(line, text)?;
        return rest.is_empty().then_some(value);
    };
    line.node(text, kind)
}

/// `key: value, key: value` (the inside of `{ … }`), each value a scalar.
fn flow_mapping<'a>(line: &Line<'a>, mut inner: &'a str) -> Option<Vec<(&'a str, Node<'a>)>> {
    let mut entries: Vec<(&'a str, Node<'a>)> = Vec::new();
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
        let (value, rest) = scalar(line, inner[colon + 2..].trim_start_matches(' '))?;
        if entries.iter().any(|(seen, _)| *seen == key) {
            return None;
        }
        entries.push((key, value));
        inner = after_flow_item(rest)?;
    }
    Some(entries)
}

/// `value, value` (the inside of `[ … ]`), each value a scalar.
fn flow_sequence<'a>(line: &Line<'a>, mut inner: &'a str) -> Option<Vec<Node<'a>>> {
    let mut items = Vec::new();
    loop {
        inner = inner.trim_start_matches(' ');
        if inner.is_empty() {
            break;
        }
        let (value, rest) = scalar(line, inner)?;
        items.push(value);
        inner = after_flow_item(rest)?;
    }
    Some(items)
}

/// What follows a flow collection's item: a comma and the rest, or the end.
fn after_flow_item(rest: &str) -> Option<&str> {
    let rest = rest.trim_start_matches(' ');
    match rest.strip_prefix(',') {
        Some(after) => Some(after),
        None if rest.is_empty() => Some(rest),
        None => None,
    }
}

/// A scalar at the start of `text` and what follows it. In a flow collection a plain scalar
/// ends at `,` or the end; a quoted one at its closing quote.
fn scalar<'a>(line: &Line<'a>, text: &'a str) -> Option<(Node<'a>, &'a str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find(['"', '\\'])?;
        if quoted.as_bytes()[end] != b'"' {
            return None; // an escape: the full parser reads those
        }
        let node = line.node(text, Kind::Text(&quoted[..end]))?;
        return Some((node, &quoted[end + 1..]));
    }
    let end = text.find(',').unwrap_or(text.len());
    let word = text[..end].trim_end_matches(' ');
    Some((line.node(text, plain(word)?)?, &text[end..]))
}

/// A plain scalar, typed as the full parser types it for the fields of our files: `true`
/// and `false`, whole numbers, and other words as text. A word the schemas read another
/// way (a null, `yes`, `-1`, `.inf`) is not ours to decide. Any other word is text here; where
/// a field wants a number or a boolean (`0x1F`, `1e3`), text is refused by the field's type
/// and the full parser decides.
fn plain(word: &str) -> Option<Kind<'_>> {
    let first = word.chars().next()?;
    if matches!(first, '-' | '+' | '.' | ' ') || word.bytes().any(special) {
        return None;
    }
    match word {
        "true" => return Some(Kind::Bool(true)),
        "false" => return Some(Kind::Bool(false)),
        _ => {}
    }
    const OTHER_READINGS: &[&str] = &[
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    if word.len() <= 5 && OTHER_READINGS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
        return None;
    }
    if word.bytes().all(|b| b.is_ascii_digit()) {
        if word.len() > 1 && word.starts_with('0') {
            return None;
        }
        return word.parse::<u64>().ok().map(Kind::Number);
    }
    Some(Kind::Text(word))
}

/// A character that ends, or changes the reading of, a plain scalar somewhere. All are ASCII,
/// and no byte of a multi-byte UTF-8 character is, so the bytes of a text can be tested.
fn special(byte: u8) -> bool {
    const SPECIAL: [bool; 128] = {
        let mut table = [false; 128];
        let mut at = 0;
        let characters = b"#:,[]{}\"'&*!|>%@`\\?";
        while at < characters.len() {
            table[characters[at] as usize] = true;
            at += 1;
        }
        table
    };
    SPECIAL.get(usize::from(byte)).copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Option<serde_json::Value> {
        read(text)
    }

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
    fn reads_flow_sequences_colons_and_positions() {
        let text = "backend: sim:../fleets/a.yaml\nnames: [alice, \"bob\", 3, ]\nlist:\n  - { é: x }\n  - k: v\n";
        assert_eq!(
            parse("backend: sim:../fleets/a.yaml\nnames: [alice, \"bob\", 3, ]\n"),
            Some(json!({ "backend": "sim:../fleets/a.yaml", "names": ["alice", "bob", 3] }))
        );
        assert_eq!(parse(text), None, "a key outside the subset");
        let text = "backend: sim:x\nnames: [alice, \"bob\"]\nlist:\n  - n: \"é\"\n    m: é\n";
        let root = super::parse(text).unwrap();
        let Kind::Mapping(entries) = &root.kind else {
            panic!("{root:?}")
        };
        let at = |node: &Node| (node.line, node.column);
        assert_eq!(at(&entries[0].1), (1, 10));
        let Kind::Sequence(names) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!(
            (at(&entries[1].1), at(&names[0]), at(&names[1])),
            ((2, 8), (2, 9), (2, 16))
        );
        let Kind::Sequence(list) = &entries[2].1.kind else {
            panic!()
        };
        let Kind::Mapping(item) = &list[0].kind else {
            panic!()
        };
        assert_eq!(
            (at(&list[0]), at(&item[0].1), at(&item[1].1)),
            ((4, 5), (4, 8), (5, 8))
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
            "a: [x, ]]\n",
            "a: [x,,y]\n",
            "a: [x: y]\n",
            "a: b: c\n",
            "a: b:\n",
            "a: :b\n",
            "a: b: c:d\n",
            "a: b:c d: e\n",
            "a: { b: c:d }\n",
            "---\na: x\n",
            "a: x\n b: y\n",
            "\"a\": x\n",
            "a: { b: \"x\" y }\n",
            "a: 99999999999999999999\n",
            "# a \u{1b} in a comment\na: x\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
