//! Text from outside shown inside a message: a YAML value, a file path, a parser's complaint,
//! a server's reply. Every such piece goes through this module, so that it is bounded (a
//! 1 MiB value cannot flood the terminal or a CI log) and inert (a newline cannot forge an
//! extra line of output, an escape sequence cannot drive the terminal, a bidirectional
//! control cannot reorder what the operator reads). What is cut is said: `… (N more bytes)`.
//!
//! Pure: no I/O, no dependencies on the rest of the crate, so every layer may use it.

use std::path::Path;

/// Characters of a value kept in a message: enough to recognise it, too few to flood.
pub const QUOTE_CHARS_MAX: usize = 80;
/// Characters of a path kept in a message: real paths fit, a hostile one is cut.
pub const PATH_CHARS_MAX: usize = 240;
/// Characters kept of a message that someone else wrote (a parser's, a server's), which may
/// itself quote input.
pub const MESSAGE_CHARS_MAX: usize = 400;
/// Characters of a file's line shown under an error, around the column it points at.
pub const SNIPPET_CHARS_MAX: usize = 100;

/// `"value"`, escaped as a Rust string literal would be (quotes, backslashes, control
/// characters) and cut after [`QUOTE_CHARS_MAX`] characters.
pub fn quote(text: &str) -> String {
    quote_at_most(text, QUOTE_CHARS_MAX)
}

/// [`quote`] with another bound.
pub fn quote_at_most(text: &str, chars_max: usize) -> String {
    let (kept, rest) = escape(text, chars_max, true);
    format!("\"{kept}\"{}", cut_mark(rest))
}

/// The value without quotes, for text shown bare (an instance id, a URL): control characters
/// escaped, cut after [`QUOTE_CHARS_MAX`] characters.
pub fn bare(text: &str) -> String {
    bare_at_most(text, QUOTE_CHARS_MAX)
}

/// [`bare`] with another bound.
pub fn bare_at_most(text: &str, chars_max: usize) -> String {
    let (kept, rest) = escape(text, chars_max, false);
    format!("{kept}{}", cut_mark(rest))
}

/// A path, bare, cut after [`PATH_CHARS_MAX`] characters.
pub fn path(path: &Path) -> String {
    name(&path.display().to_string())
}

/// A file's name as the operator gave it, bare, cut after [`PATH_CHARS_MAX`] characters.
pub fn name(text: &str) -> String {
    bare_at_most(text, PATH_CHARS_MAX)
}

/// A message someone else wrote, which may quote input in backticks or double quotes (serde's
/// ``unknown field `x` ``, ``invalid type: string "x"``): each quoted part is cut to
/// [`QUOTE_CHARS_MAX`] characters, control characters are escaped, and the whole is cut to
/// [`MESSAGE_CHARS_MAX`].
pub fn message(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find(['`', '"']) {
        if out.len() > MESSAGE_CHARS_MAX * 4 {
            break;
        }
        let delimiter = rest[open..].chars().next().expect("found above");
        out.push_str(&rest[..open]);
        let inside = &rest[open + 1..];
        let Some(close) = inside.find(delimiter) else {
            out.push(delimiter);
            rest = inside;
            continue;
        };
        let (kept, cut) = escape(&inside[..close], QUOTE_CHARS_MAX, false);
        out.push(delimiter);
        out.push_str(&kept);
        out.push(delimiter);
        out.push_str(&cut_mark(cut));
        rest = &inside[close + 1..];
    }
    out.push_str(rest);
    // Escapes what is left outside the quoted parts (and re-escapes nothing: the quoted parts
    // hold no control characters any more).
    bare_at_most(&out, MESSAGE_CHARS_MAX)
}

/// The last line of defence before text reaches the terminal: control characters other than
/// the newlines our own messages are made of are escaped. It does not bound: each piece of
/// input is bounded where it is quoted.
pub fn inert(text: &str) -> String {
    text.split('\n')
        .map(|line| escape(line, usize::MAX, false).0)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part of a file's line around `column` (1-based, in characters), escaped, and where
/// the caret goes under it (0-based, in characters of the returned text).
pub fn snippet(line: &str, column: usize) -> (String, usize) {
    let half = SNIPPET_CHARS_MAX / 2;
    let column = column.saturating_sub(1);
    let skip = column.saturating_sub(half);
    let mut shown = String::new();
    let mut caret = 0;
    if skip > 0 {
        shown.push('…');
    }
    let mut taken = 0;
    for (index, c) in line.chars().enumerate().skip(skip) {
        if index == column {
            caret = shown.chars().count();
        }
        if taken >= SNIPPET_CHARS_MAX {
            shown.push('…');
            break;
        }
        shown.push_str(&escape_char(c, false).unwrap_or_else(|| c.to_string()));
        taken += 1;
    }
    if column >= skip + taken {
        caret = shown.chars().count();
    }
    (shown, caret)
}

/// The escaped start of `text`, at most `chars_max` characters of output, and how many bytes
/// of `text` did not fit.
fn escape(text: &str, chars_max: usize, quoted: bool) -> (String, usize) {
    let mut out = String::new();
    let mut written = 0;
    for (index, c) in text.char_indices() {
        let escaped = escape_char(c, quoted);
        let width = escaped.as_ref().map_or(1, |e| e.chars().count());
        if written + width > chars_max {
            return (out, text.len() - index);
        }
        match escaped {
            Some(e) => out.push_str(&e),
            None => out.push(c),
        }
        written += width;
    }
    (out, 0)
}

fn escape_char(c: char, quoted: bool) -> Option<String> {
    match c {
        '\n' => Some("\\n".into()),
        '\r' => Some("\\r".into()),
        '\t' => Some("\\t".into()),
        '"' | '\\' if quoted => Some(format!("\\{c}")),
        c if is_control_like(c) => Some(format!("\\u{{{:x}}}", u32::from(c))),
        _ => None,
    }
}

/// A character that does not show itself but acts on what is shown: a control character
/// (newline, carriage return, escape), a bidirectional override or isolate (the "Trojan
/// Source" trick), a zero-width character, or a line or paragraph separator that some
/// terminals break lines at. Names and paths that reach the terminal may hold none.
pub fn is_control_like(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

fn cut_mark(bytes: usize) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!("… ({bytes} more bytes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(bare("abc"), "abc");
    }

    #[test]
    fn long_values_are_cut_and_the_cut_is_said() {
        let big = "A".repeat(1 << 20);
        let shown = quote(&big);
        assert!(shown.starts_with(&format!("\"{}\"", "A".repeat(QUOTE_CHARS_MAX))));
        assert!(shown.ends_with(&format!("… ({} more bytes)", (1 << 20) - 80)));
        assert!(shown.len() < 120, "{shown}");
        assert!(name(&big).len() < PATH_CHARS_MAX + 40);
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_drive_the_terminal() {
        let hostile = "x\u{1b}[31mred\nerror: forged\r\u{7}\u{202e}evil\u{85}";
        for shown in [
            quote(hostile),
            bare(hostile),
            message(hostile),
            inert(hostile),
        ] {
            assert!(!shown.contains('\u{1b}'), "{shown}");
            assert!(!shown.contains('\r') && !shown.contains('\u{7}'), "{shown}");
            assert!(
                !shown.contains('\u{202e}') && !shown.contains('\u{85}'),
                "{shown}"
            );
        }
        assert!(!quote(hostile).contains('\n'));
        assert!(!message(hostile).contains('\n'));
        assert_eq!(inert("one\ntwo\u{1b}"), "one\ntwo\\u{1b}");
    }

    #[test]
    fn a_parsers_message_keeps_its_words_and_cuts_what_it_quotes() {
        let big = "k".repeat(5000);
        let shown = message(&format!(
            "unknown field `{big}`, expected one of `id`, `region`"
        ));
        assert!(shown.starts_with("unknown field `kkk"), "{shown}");
        assert!(
            shown.ends_with("(4920 more bytes), expected one of `id`, `region`"),
            "{shown}"
        );
        let shown = message(&format!("invalid type: string \"{big}\", expected u32"));
        assert!(shown.ends_with(", expected u32"), "{shown}");
        // An unmatched delimiter leaves the rest to the overall bound.
        let shown = message(&format!("odd `{big}"));
        assert!(shown.chars().count() < MESSAGE_CHARS_MAX + 40, "{shown}");
    }

    #[test]
    fn a_snippet_is_a_window_around_its_column() {
        assert_eq!(snippet("id: x", 5), ("id: x".to_string(), 4));
        let line = format!("{}X{}", "a".repeat(10_000), "b".repeat(10_000));
        let (shown, caret) = snippet(&line, 10_001);
        assert!(shown.chars().count() <= SNIPPET_CHARS_MAX + 2, "{shown}");
        assert_eq!(shown.chars().nth(caret), Some('X'), "{shown}");
        let (shown, caret) = snippet("a\u{1b}b", 3);
        assert_eq!(shown, "a\\u{1b}b");
        assert_eq!(shown.chars().nth(caret), Some('b'));
    }
}
