//! The JSON Schemas of docs/schemas, compiled once (each checked against the draft 2020-12
//! meta-schema as it compiles), and the check that `Workspace::mkplan` runs on every JSON
//! document a test's mkplan prints: every row of the scenario table, on both backends, and
//! every other test that asks for `--json`, validates against its schema or fails.

use std::sync::OnceLock;

use serde_json::Value;

use super::repo_file;

/// One JSON document mkplan prints, with its schema file under docs/schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Plan,
    Refusal,
    Status,
    Drill,
    Cards,
    /// A domain group's plan (`kind` `domain_group`), on the zcrypt: backend.
    GroupPlan,
    /// A domain group's refused plan.
    GroupRefusal,
}

impl Document {
    pub const ALL: [Document; 7] = [
        Document::Plan,
        Document::Refusal,
        Document::Status,
        Document::Drill,
        Document::Cards,
        Document::GroupPlan,
        Document::GroupRefusal,
    ];

    pub fn schema_file(self) -> &'static str {
        match self {
            Document::Plan => "docs/schemas/plan.schema.json",
            Document::Refusal => "docs/schemas/refusal.schema.json",
            Document::Status => "docs/schemas/status.schema.json",
            Document::Drill => "docs/schemas/drill.schema.json",
            Document::Cards => "docs/schemas/cards.schema.json",
            Document::GroupPlan => "docs/schemas/domain-group-plan.schema.json",
            Document::GroupRefusal => "docs/schemas/domain-group-refusal.schema.json",
        }
    }

    /// The document `mkplan ARGS --json` prints on stdout when it exits with `code`; `None`
    /// for a command that prints no JSON document.
    pub fn printed_by(args: &[&str], code: i32) -> Option<Document> {
        if !args.contains(&"--json") {
            return None;
        }
        let command = args.iter().find(|a| {
            matches!(
                **a,
                "plan" | "show" | "status" | "drill" | "cards" | "apply" | "validate"
            )
        })?;
        match (*command, code) {
            ("plan", 3) => Some(Document::Refusal),
            ("plan" | "show", _) => Some(Document::Plan),
            ("status", _) => Some(Document::Status),
            ("drill", _) => Some(Document::Drill),
            ("cards", _) => Some(Document::Cards),
            _ => None,
        }
    }
}

struct Compiled {
    schemas: boon::Schemas,
    index: Vec<(Document, boon::SchemaIndex)>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        let index = Document::ALL
            .iter()
            .map(|document| {
                let path = repo_file(document.schema_file());
                let index = compiler
                    .compile(path.to_str().expect("a UTF-8 path"), &mut schemas)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", document.schema_file()));
                (*document, index)
            })
            .collect();
        Compiled { schemas, index }
    })
}

/// Every schema file compiles (which checks it against the draft 2020-12 meta-schema).
pub fn compile_all() {
    compiled();
}

/// Whether `value` is a valid `document`; the reasons when it is not.
pub fn validate(document: Document, value: &Value) -> Result<(), String> {
    let compiled = compiled();
    let (_, index) = compiled
        .index
        .iter()
        .find(|(d, _)| *d == document)
        .expect("every document has a schema");
    compiled
        .schemas
        .validate(value, *index)
        .map_err(|e| format!("{e:#}"))
}

/// Panics, naming the schema and what does not fit, when `value` is not a valid `document`.
#[track_caller]
pub fn check(document: Document, value: &Value) {
    if let Err(why) = validate(document, value) {
        panic!(
            "mkplan printed a {document:?} document that does not fit {} (update the schema and docs/json.md with the format, or fix the output):\n{why}\n--- the document\n{value:#}",
            document.schema_file()
        );
    }
}

/// The check `Workspace::mkplan` runs after every run: stdout of `ARGS --json`, when there is
/// any, is one JSON document that fits its schema.
#[track_caller]
pub fn check_output(args: &[&str], code: i32, stdout: &str, stderr: &str) {
    let Some(document) = Document::printed_by(args, code) else {
        return;
    };
    if stdout.trim().is_empty() {
        return;
    }
    let value: Value = serde_json::from_str(stdout).unwrap_or_else(|e| {
        panic!("`mkplan {}` printed stdout that is not one JSON document ({e})\n--- stdout\n{stdout}\n--- stderr\n{stderr}", args.join(" "))
    });
    check(document, &value);
}
