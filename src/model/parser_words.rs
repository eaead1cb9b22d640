//! The parsers' complaints in the operator's words. serde and the YAML parser say `invalid u8`,
//! `expected sequence start` or `budget breached: AliasAnchorRatio { aliases: 120, anchors: 1 }`;
//! an operator needs the key, what it holds, and what happened. Each file kind passes its own
//! words for its keys (`KeyWords`), so a wrong type reads as that file's documentation does:
//! "signature_threshold must be a whole number from 1 to 8".
//!
//! Pure: the caller passes the error and the file's text (to find the key the error is at).

use serde_saphyr::budget::BudgetBreach;

/// What each key of a file holds, in the words of that file's documentation.
pub type KeyWords = &'static [(&'static str, &'static str)];

/// Longest key name looked up (a longer "key" is not one of ours).
const KEY_CHARS_MAX: usize = 40;

/// A YAML parser error in words, without its position (the caller prints that).
pub fn yaml(error: &serde_saphyr::Error, text: &str, keys: KeyWords) -> String {
    use serde_saphyr::Error as E;
    let error = original(error.without_snippet());
    let key = error
        .location()
        .and_then(|l| key_at(text, l.line(), l.column(), false));
    let must_be = |expected: &str| must_be(key.as_deref(), keys, expected, false);
    match error {
        E::InvalidScalar { ty, .. } => must_be(ty),
        E::Unexpected { expected, .. } => must_be(expected),
        E::SerdeInvalidType { expected, .. } | E::SerdeInvalidValue { expected, .. } => {
            must_be(expected)
        }
        E::InvalidBooleanStrict { .. } => must_be("bool"),
        E::NullIntoString { .. } => must_be("string"),
        E::SerdeUnknownField {
            field, expected, ..
        } => unknown_key(field, expected),
        E::SerdeMissingField { field, .. } => format!("missing key `{field}`"),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "{} is `{variant}`; it is one of {}",
            key.as_deref().unwrap_or("this value"),
            expected.join(", ")
        ),
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key `{key}` in this mapping")
        }
        E::DuplicateMappingKey { key: None, .. } => "duplicate key in this mapping".into(),
        E::Budget { breach, .. } => budget(breach),
        E::AliasExpansionLimitExceeded {
            expansions,
            max_expansions_per_anchor,
            ..
        } => format!(
            "an anchor (`&name`) is repeated through aliases (`*name`) {expansions} times, more than the {max_expansions_per_anchor} mkplan reads: a YAML \"billion laughs\" expansion is refused. Write the values out instead"
        ),
        E::AliasReplayLimitExceeded {
            max_total_replayed_events,
            ..
        } => format!(
            "aliases (`*name`) expand to more than {max_total_replayed_events} YAML values in all: a YAML \"billion laughs\" expansion is refused. Write the values out instead"
        ),
        E::AliasReplayStackDepthExceeded { max_depth, .. } => format!(
            "aliases (`*name`) nest inside each other more than {max_depth} deep: refused. Write the values out instead"
        ),
        E::UnknownAnchor { .. } => {
            "an alias (`*name`) names no anchor (`&name`) defined before it".into()
        }
        E::Eof { .. } => "the file ends in the middle of a value".into(),
        E::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (a line `---` starts another); this file is one document".into()
        }
        E::InvalidUtf8Input => "the file is not UTF-8 text".into(),
        other => strip_position_suffix(&other.to_string()),
    }
}

/// A JSON parser error in a file mkplan wrote (a plan, a key part file) in words, without its
/// position.
pub fn json(error: &serde_json::Error, text: &str, keys: KeyWords) -> String {
    let words = error.to_string();
    let words = match words.rfind(" at line ") {
        Some(index) if words[index..].contains(" column ") => &words[..index],
        _ => words.as_str(),
    };
    let key = || key_at(text, error.line() as u64, error.column() as u64, true);
    if words.starts_with("invalid type: ") || words.starts_with("invalid value: ") {
        // The expected part is the parser's own description, never the file's text.
        if let Some(index) = words.rfind(", expected ") {
            let expected = &words[index + ", expected ".len()..];
            return must_be(key().as_deref(), keys, expected, true);
        }
    }
    if let Some(rest) = words.strip_prefix("unknown field ") {
        return format!(
            "unknown key {}",
            rest.replacen(", expected", "; allowed here:", 1)
        );
    }
    if let Some(rest) = words.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    if let Some(rest) = words.strip_prefix("unknown variant ") {
        let rest = rest.replacen(", expected", "; it is", 1);
        return format!("{} is {rest}", key().as_deref().unwrap_or("this value"));
    }
    words.to_string()
}

/// "KEY must be WORDS": the file's words for the key when it has them, else the type's.
fn must_be(key: Option<&str>, keys: KeyWords, expected: &str, json: bool) -> String {
    let words = key.and_then(|key| keys.iter().find(|(known, _)| *known == key));
    match (key, words) {
        (Some(key), Some((_, words))) => format!("{key} must be {words}"),
        (Some(key), None) => format!("{key} must be {}", type_words(expected, json)),
        (None, _) => format!("this value must be {}", type_words(expected, json)),
    }
}

/// A Rust or serde type name (`u8`, `sequence start`, `struct RawInstance`) in words.
fn type_words(expected: &str, json: bool) -> String {
    let expected = expected.trim();
    let (list, mapping) = if json {
        ("a JSON array `[…]`", "a JSON object `{…}`")
    } else {
        (
            "a list (`[a, b]`, or one line per item starting with `- `)",
            "a mapping (`key: value` lines, or `{key: value}`)",
        )
    };
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "an integer" => "a whole number".into(),
        "f32" | "f64" | "a float" => "a number".into(),
        "bool" | "boolean" | "a boolean" => "true or false".into(),
        "string" | "string scalar" | "a string" | "str" | "char" | "a borrowed string" => {
            "a single value (text), not a list or a mapping".into()
        }
        "sequence start" | "sequence" | "a sequence" => list.into(),
        "mapping start" | "mapping" | "a map" => mapping.into(),
        s if s.starts_with("struct ") || s.starts_with("a mapping") => mapping.into(),
        s if s.starts_with("a sequence") || s.starts_with("a list") => list.into(),
        s if s.starts_with("enum ") => "one of the values this key allows".into(),
        // A description our own types give (`a verification pattern …`): already words.
        other => other.to_string(),
    }
}

fn unknown_key(field: &str, expected: &[&str]) -> String {
    if expected.is_empty() {
        format!("unknown key `{field}`: no keys are allowed here")
    } else {
        format!(
            "unknown key `{field}`; the keys allowed here are {}",
            expected.join(", ")
        )
    }
}

/// One of the YAML parser's limits, in words: which, how far the file went, and why.
fn budget(breach: &BudgetBreach) -> String {
    let limits = serde_saphyr::Budget::default();
    let laughs = "a YAML \"billion laughs\" expansion is refused. Write the values out instead of repeating them through aliases";
    match breach {
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "the file uses {aliases} aliases (`*name`) of only {anchors} anchor(s) (`&name`), more than {} aliases per anchor: {laughs}",
            limits.alias_anchor_ratio_multiplier
        ),
        BudgetBreach::Aliases { aliases } => format!(
            "the file uses {aliases} aliases (`*name`), more than the {} mkplan reads: {laughs}",
            limits.max_aliases
        ),
        BudgetBreach::Anchors { anchors } => format!(
            "the file defines {anchors} anchors (`&name`), more than the {} mkplan reads",
            limits.max_anchors
        ),
        BudgetBreach::Events { .. } | BudgetBreach::RecordedAnchorEvents { .. } => format!(
            "the file expands to more YAML values than mkplan reads (through aliases `*name`, or sheer size): {laughs}"
        ),
        BudgetBreach::Nodes { nodes } => format!(
            "the file holds more than {} values ({nodes} read): split it into several files",
            super::YAML_NODES_MAX
        ),
        BudgetBreach::Depth { depth } => format!(
            "values nest {depth} levels deep, more than the {} mkplan reads",
            limits.max_depth
        ),
        BudgetBreach::Documents { documents } => format!(
            "the file holds {documents} YAML documents (each line `---` starts one); this file is one document"
        ),
        BudgetBreach::ScalarBytes { .. }
        | BudgetBreach::InputBytes { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => {
            "the file's text is larger than mkplan reads".into()
        }
        BudgetBreach::MergeKeys { merge_keys } => format!(
            "the file uses {merge_keys} merge keys (`<<`), more than the {} mkplan reads",
            limits.max_merge_keys
        ),
        BudgetBreach::SequenceUnbalanced => {
            "the file's lists and mappings do not close as they open (is it cut short?)".into()
        }
        _ => {
            "the file goes beyond a limit of mkplan's YAML reader (size, nesting or aliases)".into()
        }
    }
}

/// The error an alias points at, rather than the alias.
fn original(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match error {
        serde_saphyr::Error::AliasError { error, .. } => original(error.without_snippet()),
        other => other,
    }
}

/// serde-saphyr appends " at line N, column M"; the caller prints the place, before the text.
pub fn strip_position_suffix(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.strip_prefix("line ") {
        // "line N column M: …" (the developer form)
        Some(rest) => rest.split_once(": ").map_or(first, |(_, words)| words),
        None => first,
    };
    match first.rfind(" at line ") {
        Some(index) if first[index..].contains(", column ") => first[..index].to_string(),
        _ => first.to_string(),
    }
}

/// The key whose value is at `line:column` (1-based) of `text`: the last `key:` before the
/// column on that line, else the nearest line above, less indented, that opens `key:`. Only
/// plain names (letters, digits, `_`) count: a key is shown, and the file's other text is not.
fn key_at(text: &str, line: u64, column: u64, json: bool) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line.checked_sub(1)?).ok()?;
    let current = *lines.get(index)?;
    let before: String = current
        .chars()
        .take(usize::try_from(column.saturating_sub(1)).ok()?)
        .collect();
    if let Some(key) = last_key(&before, json) {
        return Some(key);
    }
    if json {
        // JSON: the key is the last one written before the value, on any line.
        let above = lines[..index].join("\n");
        return last_key(&above, true);
    }
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let own = indent(current);
    lines[..index]
        .iter()
        .rev()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .find(|l| indent(l) < own)
        .and_then(|l| last_key(l, false))
}

/// The last `key:` (YAML) or `"key":` (JSON) in `text`, a plain name only.
fn last_key(text: &str, json: bool) -> Option<String> {
    let mut found = None;
    for (colon, _) in text.match_indices(':') {
        let head = text[..colon].trim_end();
        let head = if json {
            match head.strip_suffix('"') {
                Some(h) => h,
                None => continue,
            }
        } else {
            // `key: value` needs a space or the end after the colon (`sim:x` is no key).
            let after = &text[colon + 1..];
            if !(after.is_empty() || after.starts_with([' ', '\t'])) {
                continue;
            }
            head
        };
        // After the last character that is not part of a name, which may take several bytes.
        let start = head
            .char_indices()
            .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = &head[start..];
        let opens = head[..start].trim_end();
        let plausible = if json {
            opens.ends_with('"')
        } else {
            opens.is_empty() || opens.ends_with(['-', '{', ',', ' '])
        };
        if !name.is_empty() && name.len() <= KEY_CHARS_MAX && plausible {
            found = Some(name.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: KeyWords = &[("signature_threshold", "a whole number from 1 to 8")];

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        signature_threshold: u8,
        #[serde(default)]
        administrators: Vec<String>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Admin,
    }

    fn yaml_words(text: &str) -> String {
        let error = crate::model::from_yaml_str::<Doc>(text).unwrap_err();
        yaml(&error, text, WORDS)
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/desired_yaml.rs`, `fleet_yaml.rs`): a name right
    /// after a character of several bytes (a byte order mark, a combining accent) was cut
    /// inside that character, and the message about a wrong value panicked.
    #[test]
    fn a_key_after_a_character_of_several_bytes_is_read_without_a_panic() {
        assert_eq!(last_key("thresho\u{feff}che: x", false), None);
        assert_eq!(last_key("a\u{31e}b: x", false), None);
        assert_eq!(last_key("- \u{e9}\u{31e}: x", false), None);
        assert_eq!(
            last_key("\"\u{feff}\": {\"\u{e9}n\": 1", true),
            None,
            "a JSON key that is no plain name"
        );
        assert_eq!(
            last_key("{ \u{e9}\u{31e}: 1, key: x", false).as_deref(),
            Some("key")
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_what_it_holds() {
        assert_eq!(
            yaml_words("signature_threshold: two\n"),
            "signature_threshold must be a whole number from 1 to 8"
        );
        assert_eq!(
            yaml_words("signature_threshold: 1\nadministrators: alice\n"),
            "administrators must be a list (`[a, b]`, or one line per item starting with `- `)"
        );
        assert_eq!(
            yaml_words("signature_threshold: 1\nadministrators:\n  - alice\n  - [bob]\n"),
            "administrators must be a single value (text), not a list or a mapping"
        );
        assert_eq!(
            yaml_words("signature_threshold: 1\nmode: sleepy\n"),
            "mode is `sleepy`; it is one of admin"
        );
        let json_error =
            serde_json::from_str::<Doc>("{\n  \"signature_threshold\": \"2\"\n}").unwrap_err();
        assert_eq!(
            json(&json_error, "{\n  \"signature_threshold\": \"2\"\n}", WORDS),
            "signature_threshold must be a whole number from 1 to 8"
        );
    }

    #[test]
    fn an_alias_bomb_is_said_in_words() {
        let bomb = format!("a: &a [x]\nb: [{}]\n", vec!["*a"; 200].join(", "));
        let error = crate::model::from_yaml_str::<serde_json::Value>(&bomb).unwrap_err();
        let words = yaml(&error, &bomb, WORDS);
        assert!(words.contains("200 aliases"), "{words}");
        assert!(words.contains("billion laughs"), "{words}");
        assert!(!words.contains("Ratio"), "{words}");
    }

    #[test]
    fn keys_are_plain_names_only() {
        assert_eq!(last_key("  - file: ", false).as_deref(), Some("file"));
        assert_eq!(
            last_key("backend: sim:x", false).as_deref(),
            Some("backend")
        );
        assert_eq!(
            last_key("{holder: a, reader: ", false).as_deref(),
            Some("reader")
        );
        assert_eq!(last_key("\u{1b}[2J: ", false), None);
        assert_eq!(
            last_key("  \"kdf\": {\"salt\": ", true).as_deref(),
            Some("salt")
        );
    }
}
