//! The user docs cannot rot silently: every link in README.md and docs/*.md leads to a file
//! (and a heading) of this repository; every YAML block marked `<!-- complete example: PATH -->`
//! is written at PATH in a copy of the repository and checked by the binary (`validate`,
//! `plan`); every output shown under `<!-- error example: in PATH replace "A" with "B" -->` is
//! what mkplan prints for that change today; and every block marked `<!-- runs as a script -->`
//! runs to its end.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::support::*;

/// The docs a user reads: README.md and every Markdown file under docs/.
fn user_docs() -> Vec<PathBuf> {
    let mut docs = vec![repo_file("README.md")];
    let mut folders = vec![repo_file("docs")];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("list docs/") {
            let path = entry.expect("a docs/ entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    docs.sort();
    docs
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo_file(""))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of a Markdown text outside fenced code blocks, with their numbers from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// A line without its inline code spans (`…`), where a `](` is not a link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The targets of the inline links and images of a Markdown text, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((number, after[..end].trim().to_string()));
            rest = &after[end..];
        }
        // A reference definition: `[label]: target`.
        if let Some(target) = line
            .trim_start()
            .strip_prefix('[')
            .and_then(|l| l.split_once("]: "))
            .map(|(_, target)| target.trim())
        {
            found.push((number, target.to_string()));
        }
    }
    found
}

/// The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped,
/// spaces as hyphens, repeats numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `folder/target` with `.` and `..` taken away, as a browser resolves a relative link.
fn resolve(folder: &Path, target: &str) -> PathBuf {
    let mut path = PathBuf::new();
    for component in folder.join(target).components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

#[test]
fn every_link_in_the_user_docs_leads_to_a_file_of_the_repository() {
    let root = repo_file("");
    let mut broken = Vec::new();
    for doc in user_docs() {
        let text = fs::read_to_string(&doc).expect("read a doc");
        let folder = doc.parent().expect("a doc's folder");
        for (line, target) in links(&text) {
            let at = format!("{}:{line}: ({target})", shown(&doc));
            if target.contains("://") || target.starts_with("mailto:") {
                broken.push(format!(
                    "{at} leaves the repository: users' docs link only to files of this repository"
                ));
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                resolve(folder, file)
            };
            if !path.starts_with(&root) {
                broken.push(format!(
                    "{at} leads out of the repository, to a file a clone does not have"
                ));
            } else if !path.exists() {
                broken.push(format!("{at}: {} does not exist", shown(&path)));
            } else if !anchor.is_empty() {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{at}: {} has no heading #{anchor}", shown(&path)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_docs_name_no_developer_notes_a_clone_does_not_have() {
    // The developers' notes (shared/contract.md, domain.md, tke-wire.md) are not in the
    // repository: a user's doc that sends the reader there sends them nowhere.
    let mut found = Vec::new();
    for doc in user_docs() {
        if doc == repo_file("README.md") {
            continue;
        }
        let text = fs::read_to_string(&doc).expect("read a doc");
        for (index, line) in text.lines().enumerate() {
            for name in ["shared/", "contract.md", "domain.md", "tke-wire.md"] {
                if line.contains(name) {
                    found.push(format!("{}:{}: {name}", shown(&doc), index + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_index_and_the_readme_list_every_doc() {
    let index = fs::read_to_string(repo_file("docs/README.md")).expect("docs/README.md");
    let readme = fs::read_to_string(repo_file("README.md")).expect("README.md");
    let index_links: BTreeSet<String> = links(&index).into_iter().map(|(_, t)| t).collect();
    let readme_links: BTreeSet<String> = links(&readme).into_iter().map(|(_, t)| t).collect();
    for doc in user_docs() {
        let Ok(in_docs) = doc.strip_prefix(repo_file("docs")) else {
            continue;
        };
        let name = in_docs.display().to_string();
        if name == "README.md" {
            assert!(
                readme_links.contains("docs/README.md"),
                "README.md does not link docs/README.md"
            );
            continue;
        }
        assert!(
            index_links.contains(&name),
            "docs/README.md does not list {name}"
        );
        assert!(
            readme_links.contains(&format!("docs/{name}")),
            "README.md's Documentation list does not link docs/{name}"
        );
    }
}

/// A fenced block of a doc, after a marker comment.
struct Marked {
    doc: String,
    /// The marker's words after its name (`PATH`, or `in PATH replace … with …`).
    argument: String,
    body: String,
}

/// Every fenced block right after `<!-- NAME: ARGUMENT -->` (or `<!-- NAME -->`) in the docs.
fn marked(name: &str) -> Vec<Marked> {
    let mut found = Vec::new();
    for doc in user_docs() {
        let text = fs::read_to_string(&doc).expect("read a doc");
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let Some(argument) = line
                .trim()
                .strip_prefix(&format!("<!-- {name}"))
                .and_then(|rest| rest.strip_suffix("-->"))
            else {
                continue;
            };
            let argument = argument.trim().trim_start_matches(':').trim().to_string();
            let fence = lines.get(index + 1).copied().unwrap_or_default();
            assert!(
                fence.starts_with("```"),
                "{}:{}: a fenced block must follow the marker `{line}`",
                shown(&doc),
                index + 1
            );
            let body: Vec<&str> = lines[index + 2..]
                .iter()
                .take_while(|l| !l.starts_with("```"))
                .copied()
                .collect();
            found.push(Marked {
                doc: format!("{}:{}", shown(&doc), index + 1),
                argument,
                body: body.join("\n") + "\n",
            });
        }
    }
    found
}

/// A copy of the repository's examples/ and plans/ (a clone, as far as the docs can tell),
/// with every complete example of the docs written at its path; and those examples by path.
fn clone_with_examples() -> (Workspace, BTreeMap<String, String>) {
    let workspace = Workspace::empty();
    for folder in ["examples", "plans"] {
        copy_folder(&repo_file(folder), &workspace.path(folder));
    }
    let mut examples = BTreeMap::new();
    for block in marked("complete example") {
        let path = block.argument.clone();
        assert!(
            !workspace.path(&path).exists() && !examples.contains_key(&path),
            "{}: the complete example {path} would replace a file of the repository or another example",
            block.doc
        );
        if let Some(folder) = workspace.path(&path).parent() {
            fs::create_dir_all(folder).expect("a folder for an example");
        }
        workspace.write(&path, &block.body);
        examples.insert(path, block.body);
    }
    (workspace, examples)
}

fn copy_folder(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("make a folder");
    for entry in fs::read_dir(from).expect("list a folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// The first key of a YAML document, past its comments.
fn first_key(yaml: &str) -> &str {
    yaml.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split(':').next())
        .unwrap_or_default()
}

#[test]
fn every_complete_example_in_the_docs_is_read_and_planned_by_the_binary() {
    let (workspace, examples) = clone_with_examples();
    for doc in ["docs/desired.md", "docs/fleet.md"] {
        assert!(
            marked("complete example")
                .iter()
                .any(|b| b.doc.starts_with(&format!("{doc}:"))),
            "{doc} has no YAML block marked `<!-- complete example: PATH -->`"
        );
    }
    let mut fleets_planned = BTreeSet::new();
    for (path, text) in &examples {
        match first_key(text) {
            "version" => {
                workspace.mkplan(&["validate", path]).expect_code(0);
                let planned = workspace.mkplan(&["plan", path, "--detailed-exitcode"]);
                assert!(
                    matches!(planned.code, 0 | 2),
                    "{path}: `mkplan plan` exited {}, not with a plan\n{}",
                    planned.code,
                    planned.stderr
                );
                let backend = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("backend: sim:"))
                    .map(|fleet| resolve(Path::new(path).parent().unwrap(), fleet.trim()));
                fleets_planned.extend(backend);
            }
            "instances" => {}
            other => panic!(
                "{path}: a complete example is a desired file (`version:` first) or a fleet (`instances:` first), not `{other}:`"
            ),
        }
    }
    for (path, text) in &examples {
        if first_key(text) == "instances" {
            assert!(
                fleets_planned.contains(Path::new(path)),
                "the fleet example {path} is the backend of no desired example, so nothing reads it"
            );
        }
    }
}

/// `"…"` with `\"` and `\n` escapes, at the start of `text`: the string and the rest.
fn quoted(text: &str) -> (String, &str) {
    let text = text.trim_start();
    let body = text.strip_prefix('"').expect("a quoted string");
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return (value, &body[index + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            other => value.push(other),
        }
    }
    panic!("an unterminated quoted string: {text}");
}

#[test]
fn every_error_shown_in_the_docs_is_what_mkplan_prints() {
    let (workspace, examples) = clone_with_examples();
    let root = fs::canonicalize(workspace.dir.path()).expect("the clone's real path");
    let blocks = marked("error example");
    assert!(
        blocks.iter().any(|b| b.doc.starts_with("docs/desired.md:")),
        "docs/desired.md shows no error example"
    );
    for block in blocks {
        // in PATH replace "A" with "B"
        let rest = block
            .argument
            .strip_prefix("in ")
            .expect("`in PATH replace …`");
        let (path, rest) = rest
            .split_once(" replace ")
            .expect("`replace \"A\" with \"B\"`");
        let (from, rest) = quoted(rest);
        let (to, _) = quoted(
            rest.trim_start()
                .strip_prefix("with")
                .expect("`with \"B\"`"),
        );
        let original = examples
            .get(path)
            .cloned()
            .unwrap_or_else(|| workspace.read(path));
        assert!(
            original.contains(&from),
            "{}: {path} does not contain {from:?}",
            block.doc
        );
        workspace.write(path, &original.replacen(&from, &to, 1));
        let (command, shown) = block
            .body
            .split_once('\n')
            .expect("a command line, then the output");
        let args: Vec<&str> = command
            .strip_prefix("$ mkplan ")
            .unwrap_or_else(|| panic!("{}: the block starts with `$ mkplan …`", block.doc))
            .split_whitespace()
            .collect();
        let run = workspace.mkplan(&args);
        workspace.write(path, &original);
        let printed = run
            .stderr
            .replace(&root.display().to_string(), "/home/you/mkplan");
        assert_eq!(
            (run.code, printed.as_str()),
            (1, shown),
            "{}: the doc shows another output than mkplan prints today; update the doc",
            block.doc
        );
    }
}

#[test]
fn every_script_in_the_docs_runs_to_its_end() {
    let scripts = marked("runs as a script");
    assert!(
        scripts
            .iter()
            .any(|s| s.doc.starts_with("docs/exit-codes.md:")),
        "docs/exit-codes.md has no block marked `<!-- runs as a script -->`"
    );
    for script in scripts {
        let (workspace, _) = clone_with_examples();
        let bin = workspace.path("bin");
        let (home, tmp) = (workspace.path("home"), workspace.path("tmp"));
        for folder in [&bin, &home, &tmp] {
            fs::create_dir_all(folder).expect("a folder");
        }
        std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("mkplan"), bin.join("mkplan"))
            .expect("mkplan on the PATH");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = std::process::Command::new("bash")
            .args(["-e", "-c", &script.body])
            .current_dir(workspace.dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env("MKPLAN_JOURNAL_KEY", workspace.path("journal.key"))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run bash");
        assert!(
            output.status.success(),
            "{}: the script stopped (exit {:?})\n--- stdout\n{}\n--- stderr\n{}",
            script.doc,
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_link_checker_sees_links_anchors_and_code() {
    let text = "# A `code` title\n\nSee [x](a.md#b) and `[not](a link)`.\n```\n[nor](this)\n```\n[ref]: c.md\n## A `code` title\n";
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["a.md#b", "c.md"]);
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a-code-title".to_string(), "a-code-title-1".to_string()])
    );
    assert_eq!(
        resolve(Path::new("/r/docs"), "../README.md"),
        Path::new("/r/README.md")
    );
}
