//! A problem in a file the operator wrote (desired state, fleet, key part), located to the
//! line and column, with the fix spelled out. Parsing is pure: callers pass the file's name
//! and text, so this module never touches the disk.

use std::fmt;

/// YAML nodes a desired or fleet file may hold: room for `INSTANCES_MAX` instances of
/// `UNITS_PER_INSTANCE_MAX` units (the parser's default, 250,000, stops near 1,850 instances).
pub const YAML_NODES_MAX: usize = 10_000_000;

/// Parses YAML with the node budget above (the other limits stay at the parser's defaults).
pub fn from_yaml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = YAML_NODES_MAX;
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

    /// Turns a YAML parser error into one that names the file and a fix: a specific one where
    /// we know it, else `default_fix`.
    pub fn from_yaml(
        file: &str,
        text: &str,
        error: &serde_saphyr::Error,
        default_fix: &str,
    ) -> Self {
        let plain = error.without_snippet().to_string();
        let mut result = Self::new(file, strip_position_suffix(&plain));
        if let Some(location) = error.location() {
            result = result.at(text, location.line(), location.column());
        }
        let fix = yaml_fix(&result.message).unwrap_or_else(|| default_fix.to_string());
        result.fix(fix)
    }
}

/// serde-saphyr appends " at line N, column M"; we print the place ourselves, before the text.
fn strip_position_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) if message[index..].contains(", column ") => message[..index].to_string(),
        _ => message.to_string(),
    }
}

fn yaml_fix(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some(
            "remove the key or correct its spelling; the keys allowed here are listed above".into(),
        )
    } else if message.starts_with("missing field") {
        Some("add the key named above".into())
    } else if message.starts_with("duplicate mapping key") {
        Some("a key may appear once per mapping: remove one of them".into())
    } else if message.starts_with("a verification pattern") {
        Some("copy the whole 64-hex verification pattern as `mkplan keypart vp` or `ibmcloud tke cryptounit-mk` prints it".into())
    } else {
        None
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let (Some((line, column)), Some(source)) = (self.position, &self.source_line) {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "\n {pad} |\n {line} | {source}\n {pad} | ")?;
            write!(f, "{}^", " ".repeat(column.saturating_sub(1) as usize))?;
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
}
