//! Bad input (scenarios.md): exit 1, a message with the file, line and column and a fix, and
//! nothing touched.

use crate::support::*;

fn fresh() -> Workspace {
    rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)))
}

/// 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

/// 1-based column where `needle` starts on that line.
fn column_of(text: &str, needle: &str) -> usize {
    let line = text.lines().find(|l| l.contains(needle)).unwrap();
    line.find(needle).unwrap() + 1
}

/// Replaces the first line containing `needle` with `replacement`; returns its line number.
fn replace_line(text: &str, needle: &str, replacement: &str) -> (String, usize) {
    let line = line_of(text, needle);
    let lines: Vec<&str> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == line { replacement } else { l })
        .collect();
    (lines.join("\n") + "\n", line)
}

/// Runs `plan` (and `validate` for desired-file errors) and checks exit 1, `FILE:LINE:COLUMN:`
/// on stderr, and that nothing in the folder changed.
#[track_caller]
fn assert_refused_input(workspace: &Workspace, location: &str, also_validate: bool) -> String {
    let fleet_before = workspace.bytes(FLEET);
    let listing_before = workspace.listing();
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["plan", DESIRED],
        vec!["plan", DESIRED, "--json", "--detailed-exitcode"],
        vec!["status", DESIRED],
    ];
    if also_validate {
        commands.push(vec!["validate", DESIRED]);
    }
    let mut first_stderr = None;
    for args in commands {
        let run = workspace.mkplan(&args);
        assert_eq!(
            run.code, 1,
            "mkplan {args:?}: exit {}\n{}",
            run.code, run.stderr
        );
        assert!(
            run.stderr.contains(location),
            "mkplan {args:?}: stderr does not contain {location:?}:\n{}",
            run.stderr
        );
        assert!(
            run.stdout.trim().is_empty() || !run.stdout.contains("\"steps\""),
            "a plan was printed: {}",
            run.stdout
        );
        first_stderr.get_or_insert(run.stderr);
    }
    assert_eq!(
        workspace.bytes(FLEET),
        fleet_before,
        "the fleet file changed"
    );
    assert_eq!(
        workspace.listing(),
        listing_before,
        "files were created or removed"
    );
    first_stderr.unwrap()
}

#[track_caller]
fn assert_fix_line(stderr: &str) {
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("fix: ") && l.trim().len() > "fix: ".len() + 10),
        "no `fix:` line in:\n{stderr}"
    );
}

#[test]
fn unknown_key_in_the_desired_file() {
    let workspace = fresh();
    let text = workspace.read(DESIRED);
    let vp_line = line_of(&text, "verification_pattern:");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(vp_line, "      colour: blue");
    workspace.write(DESIRED, &(lines.join("\n") + "\n"));
    let line = vp_line + 1;
    let stderr = assert_refused_input(&workspace, &format!("{DESIRED}:{line}:7:"), true);
    assert!(
        stderr.contains("colour"),
        "the message does not name the key:\n{stderr}"
    );
    assert_fix_line(&stderr);
}

fn wrong_vp_length() -> (Workspace, String) {
    let workspace = fresh();
    let text = workspace.read(DESIRED);
    let short = &B[..40];
    let text = text.replace(B, short);
    workspace.write(DESIRED, &text);
    let location = format!(
        "{DESIRED}:{}:{}:",
        line_of(&text, short),
        column_of(&text, &format!("\"{short}"))
    );
    (workspace, location)
}

#[test]
fn verification_pattern_of_wrong_length() {
    let (workspace, location) = wrong_vp_length();
    let stderr = assert_refused_input(&workspace, &location, true);
    assert!(stderr.contains("64 hex"), "{stderr}");
    assert!(stderr.contains("found 40"), "{stderr}");
}

#[test]
fn verification_pattern_of_wrong_length_has_a_fix_line() {
    let (workspace, location) = wrong_vp_length();
    let stderr = assert_refused_input(&workspace, &location, true);
    assert_fix_line(&stderr);
}

/// A YAML syntax error in the middle of the fleet file: `key: value: more`.
fn fleet_with_syntax_error() -> (Workspace, String) {
    let workspace = fresh();
    let (text, line) = replace_line(
        &workspace.read(FLEET),
        "revocation_threshold: 2",
        "        revocation_threshold: 2: 3",
    );
    workspace.write(FLEET, &text);
    (workspace, format!("{FLEET}:{line}:32:"))
}

#[test]
fn fleet_file_that_is_not_yaml() {
    let (workspace, location) = fleet_with_syntax_error();
    assert_refused_input(&workspace, &location, false);
    // And a file that is not YAML at all.
    let workspace = fresh();
    workspace.write(FLEET, "this is {not yaml\n  at all: [\n");
    let stderr = assert_refused_input(&workspace, &format!("{FLEET}:1:"), false);
    assert!(stderr.contains(FLEET), "{stderr}");
}

#[test]
fn fleet_file_that_is_not_yaml_has_a_fix_line() {
    let (workspace, location) = fleet_with_syntax_error();
    let stderr = assert_refused_input(&workspace, &location, false);
    assert_fix_line(&stderr);
}

#[test]
fn missing_key_part_file() {
    let workspace = fresh();
    let text = workspace
        .read(DESIRED)
        .replace("keyparts/custodian-2.json", "keyparts/custodian-9.json");
    workspace.write(DESIRED, &text);
    let location = format!(
        "{DESIRED}:{}:{}:",
        line_of(&text, "custodian-9.json"),
        column_of(&text, "keyparts/custodian-9.json")
    );
    let stderr = assert_refused_input(&workspace, &location, true);
    assert!(stderr.contains("custodian-9.json"), "{stderr}");
    assert_fix_line(&stderr);
}

#[test]
fn crypto_units_other_than_all() {
    let workspace = fresh();
    let text = workspace
        .read(DESIRED)
        .replace("crypto_units: all", "crypto_units: some");
    workspace.write(DESIRED, &text);
    let location = format!(
        "{DESIRED}:{}:{}:",
        line_of(&text, "crypto_units: some"),
        column_of(&text, "some")
    );
    let stderr = assert_refused_input(&workspace, &location, true);
    assert!(
        stderr.contains("crypto_units: all"),
        "the fix should say `crypto_units: all`:\n{stderr}"
    );
    assert_fix_line(&stderr);
}
