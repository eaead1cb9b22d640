//! ANSI colour for the views on a terminal. Applied after layout, since a table measures plain
//! text; the command layer decides whether a stream gets colour (`cli::conventions`).

use crate::plan::Action;

pub const RED: &str = "\x1b[31m";
pub const GREEN: &str = "\x1b[32m";
pub const YELLOW: &str = "\x1b[33m";
pub const CYAN: &str = "\x1b[36m";
pub const BOLD_RED: &str = "\x1b[1;31m";
pub const RESET: &str = "\x1b[0m";

pub fn paint(style: &str, text: &str) -> String {
    format!("{style}{text}{RESET}")
}

/// Terraform's habit: additions green, changes yellow, removals red; the rewrap, which cannot
/// be undone, bold red.
pub fn action_style(action: Action) -> &'static str {
    match action {
        Action::LoadNewMk => GREEN,
        Action::CommitNewMk => YELLOW,
        Action::ClearNewMk | Action::RemoveUnit => RED,
        Action::RewrapKeyStorage => BOLD_RED,
        Action::SetImmediate => CYAN,
    }
}

/// "error:" and "refused:" at the start of a line in bold red, the rest as it is.
pub fn refusal(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for line in message.split_inclusive('\n') {
        match ["error: refused:", "error:", "refused:"]
            .iter()
            .find(|w| line.starts_with(*w))
        {
            Some(word) => {
                out.push_str(&paint(BOLD_RED, word));
                out.push_str(&line[word.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}
