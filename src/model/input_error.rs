//! A problem in a file the operator wrote (desired state, fleet, key part), located to the
//! line and column, with the fix spelled out. Parsing is pure: callers pass the file's name
//! and text, so this module never touches the disk.

use std::fmt;

use super::parser_words::KeyWords;
use crate::quote;

/// YAML nodes a desired or fleet file may hold: room for `INSTANCES_MAX` instances of
/// `UNITS_PER_INSTANCE_MAX` units (the parser's default, 250,000, stops near 1,850 instances).
pub const YAML_NODES_MAX: usize = 10_000_000;
/// YAML events (each scalar, each start and end of a mapping or list) a file may hold: a fleet
/// of `INSTANCES_MAX` instances of 3 units is about 1.6 million, which the parser's default of
/// 1,000,000 refused as a "billion laughs" expansion.
pub const YAML_EVENTS_MAX: usize = 10_000_000;

/// Parses YAML with the node and event budgets above (the other limits stay at the parser's
/// defaults).
pub fn from_yaml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = YAML_NODES_MAX;
    budget.max_events = YAML_EVENTS_MAX;
    from_yaml_str_within(text, budget)
}

/// Parses YAML within `budget`.
pub fn from_yaml_str_within<T: serde::de::DeserializeOwned>(
    text: &str,
    budget: serde_saphyr::Budget,
) -> Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(u64, u64)>,
    pub message: String,
    pub fix: Option<String>,
    /// The offending line of the file, for the snippet under the message.
    pub source_line: Option<String>,
}

impl InputError {
    pub fn new(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            position: None,
            message: message.into(),
            fix: None,
            source_line: None,
        }
    }

    /// Places the error at `line:column` of `text` (the file's contents).
    pub fn at(mut self, text: &str, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self.source_line = line
            .checked_sub(1)
            .and_then(|index| text.lines().nth(index as usize))
            .map(str::to_string);
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Places the error at `line:column` without showing the line: for files whose content
    /// is not ours to echo (a file that is not what it was named as may hold secrets).
    pub fn located(mut self, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self.source_line = None;
        self
    }

    /// Turns a YAML parser error into one that names the file and a fix: a specific one where
    /// we know it, else `default_fix`. The parser's words become the file's (`parser_words`,
    /// with `keys`); they may quote the file, and are cut and made inert (`quote::message`).
    pub fn from_yaml(
        file: &str,
        text: &str,
        error: &serde_saphyr::Error,
        keys: KeyWords,
        default_fix: &str,
    ) -> Self {
        let words = super::parser_words::yaml(error, text, keys);
        let mut result = Self::new(file, quote::message(&words));
        if let Some(location) = error.location() {
            result = result.at(text, location.line(), location.column());
        }
        let fix = yaml_fix(&result.message).unwrap_or_else(|| default_fix.to_string());
        result.fix(fix)
    }

    /// Turns a JSON parser error in a file mkplan wrote (a key part file, a plan) into
    /// "`what`: the parser's complaint in words" at its line and column, the words cut and
    /// made inert, and no line of the file shown (the file is not written to be read by
    /// people).
    pub fn from_json(
        file: &str,
        what: &str,
        text: &str,
        error: &serde_json::Error,
        keys: KeyWords,
    ) -> Self {
        let words = super::parser_words::json(error, text, keys);
        Self::new(file, format!("{what}: {}", quote::message(&words)))
            .located(error.line() as u64, error.column() as u64)
    }

    /// The error for a file that is not the kind of file it was named as (`what`, e.g. "a
    /// simulator fleet file"): it says what was expected and where the file departs from it,
    /// and shows nothing of the file, which may be anything (a password file, a private key).
    pub fn not_a(file: &str, what: &str, expected: &str, position: Option<(u64, u64)>) -> Self {
        let error = Self::new(
            file,
            format!(
                "this is not {what} ({expected}); nothing of the file is shown, in case it holds secrets"
            ),
        );
        match position {
            Some((line, column)) => error.located(line, column),
            None => error,
        }
    }
}

/// How a YAML document starts, as far as telling what kind of file it is goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlTop {
    /// A mapping whose first key is `key`, at `line:column`.
    FirstKey { key: String, line: u64, column: u64 },
    /// Anything else (a list, a scalar, an empty file, not YAML): where the parser gave up.
    Other { line: u64, column: u64 },
}

impl YamlTop {
    pub fn is_first_key(&self, keys: &[&str]) -> bool {
        matches!(self, Self::FirstKey { key, .. } if keys.contains(&key.as_str()))
    }

    pub fn position(&self) -> (u64, u64) {
        match self {
            Self::FirstKey { line, column, .. } | Self::Other { line, column } => (*line, *column),
        }
    }
}

/// Reads a YAML document only as far as its first key: the parser stops there, so a file
/// with a mistake further down still shows what kind of file it means to be, and a file that
/// is no YAML at all is not read to its end.
pub fn yaml_top(text: &str) -> YamlTop {
    use serde::de::{Error as _, MapAccess, Visitor};

    thread_local! {
        static FIRST_KEY: std::cell::RefCell<Option<YamlTop>> = const { std::cell::RefCell::new(None) };
    }
    struct FirstKey;
    struct FirstKeyVisitor;
    impl<'de> Visitor<'de> for FirstKeyVisitor {
        type Value = FirstKey;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstKey, A::Error> {
            if let Some(key) = map.next_key::<serde_saphyr::Spanned<String>>()? {
                let top = YamlTop::FirstKey {
                    key: key.value,
                    line: key.referenced.line(),
                    column: key.referenced.column(),
                };
                FIRST_KEY.with(|first| *first.borrow_mut() = Some(top));
            }
            // Stop here: the rest of the document is not read.
            Err(A::Error::custom("first key read"))
        }
    }
    impl<'de> serde::Deserialize<'de> for FirstKey {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(FirstKeyVisitor)
        }
    }

    FIRST_KEY.with(|first| first.borrow_mut().take());
    let result = from_yaml_str::<FirstKey>(text);
    FIRST_KEY
        .with(|first| first.borrow_mut().take())
        .unwrap_or_else(|| {
            let (line, column) = result
                .err()
                .and_then(|e| e.location())
                .map_or((1, 1), |l| (l.line(), l.column()));
            YamlTop::Other { line, column }
        })
}

fn yaml_fix(message: &str) -> Option<String> {
    if message.starts_with("unknown key") {
        Some(
            "remove the key or correct its spelling; the keys allowed here are listed above".into(),
        )
    } else if message.starts_with("missing key") {
        Some("add the key named above".into())
    } else if message.starts_with("duplicate key") {
        Some("a key may appear once per mapping: remove one of them".into())
    } else if message.contains("through aliases") {
        Some(
            "write each value out: mkplan's files need no anchors (`&name`) or aliases (`*name`)"
                .into(),
        )
    } else if message.starts_with("a verification pattern") {
        Some("copy the whole 64-hex verification pattern as `mkplan keypart vp` or `ibmcloud tke cryptounit-mk` prints it".into())
    } else {
        None
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = quote::name(&self.file);
        match self.position {
            Some((line, column)) => write!(f, "{file}:{line}:{column}: {}", self.message)?,
            None => write!(f, "{file}: {}", self.message)?,
        }
        if let (Some((line, column)), Some(source)) = (self.position, &self.source_line) {
            // A window around the column, escaped: a line may be a megabyte long, or hold
            // characters that would drive the terminal.
            let (shown, caret) = quote::snippet(source, column as usize);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "\n {pad} |\n {line} | {shown}\n {pad} | ")?;
            write!(f, "{}^", " ".repeat(caret))?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_file_line_column_snippet_and_fix() {
        let text = "version: 1\ninstances: x\n";
        let error = InputError::new("plans/a.yaml", "bad")
            .at(text, 2, 12)
            .fix("do better");
        let shown = error.to_string();
        assert!(shown.starts_with("plans/a.yaml:2:12: bad"), "{shown}");
        assert!(shown.contains(" 2 | instances: x"), "{shown}");
        assert!(shown.contains("  fix: do better"), "{shown}");
    }

    #[test]
    fn yaml_top_reads_only_as_far_as_the_first_key() {
        let fleet = yaml_top("# a fleet\n---\ninstances:\n  - a: b: c\n");
        assert_eq!(
            fleet,
            YamlTop::FirstKey {
                key: "instances".into(),
                line: 3,
                column: 1
            }
        );
        assert!(fleet.is_first_key(&["instances", "incidents"]));
        assert!(yaml_top("{incidents: []}").is_first_key(&["incidents"]));
        assert!(!yaml_top("password: hunter2\n").is_first_key(&["instances"]));
        for other in ["root:x:0:0:root:/root:/bin/bash\n", "", "- a\n", "[1]: 2\n"] {
            assert!(
                matches!(yaml_top(other), YamlTop::Other { .. }),
                "{other:?}: {:?}",
                yaml_top(other)
            );
        }
    }

    #[test]
    fn a_snippet_is_escaped_and_cut_around_its_column() {
        let line = format!("id: \u{1b}[31m{}", "A".repeat(1 << 20));
        let error = InputError::new("d.yaml", "bad").at(&line, 1, 5);
        let shown = error.to_string();
        assert!(shown.len() < 400, "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
    }

    #[test]
    fn not_a_file_shows_nothing_of_it() {
        let text = "password: hunter2-canary\n";
        let error = InputError::not_a("s.txt", "a simulator fleet file", "expected", Some((1, 1)));
        let shown = error.to_string();
        assert!(
            shown.starts_with("s.txt:1:1: this is not a simulator fleet file"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown} / {text}");
    }
}
