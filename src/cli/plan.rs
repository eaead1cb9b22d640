//! `plan`, `show` and `runbook`: each prints its report on stdout (`output`).

use std::io::Write;
use std::path::Path;

use super::PlanArgs;
use super::context::{
    evidence_for, path_from_plan_file, path_in_plan_file, read_desired, refresh_desired,
};
use super::output;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::InputError;
use crate::plan::{PLAN_FILE_BYTES_MAX, PLAN_FORMAT_VERSION, Plan, StepGraph};
use crate::render;
use crate::store::Store;

pub async fn plan(args: &PlanArgs, store: &Store) -> Result<u8> {
    let desired = read_desired(&args.desired)?.only(&args.only.instances)?;
    let (backend, live) = refresh_desired(&desired, &args.backend).await?;
    let records = store.read_journal(&backend.identity(), Some(&desired.instance_ids()))?;
    let journal = evidence_for(&records, &backend, store, &desired);
    let source = format!("{} against {}", desired.path.display(), backend.describe());
    let mut plan = match crate::plan::plan(&desired.state, &desired.sha256, &live, &journal) {
        Ok(plan) => plan,
        Err(refused) => {
            // A refusal is a report too: in the format asked for on stdout, and in words on
            // stderr (the error), exit 3.
            if args.json {
                output::report_line(&render::refusal_json(&refused))?;
            } else if args.markdown {
                output::report(&render::refusal_markdown(&refused, &source))?;
            }
            return Err(Error::Refused(refused));
        }
    };
    desired.stamp(&mut plan, &backend);
    if let Some(out) = &args.out {
        plan.desired_file = Some(path_from_plan_file(&desired.path, out));
        save(&plan, out)?;
    }
    if args.json {
        output::report_line(&render::json(&plan))?;
    } else if args.markdown {
        output::report(&render::markdown(&plan, &source))?;
    } else {
        output::report(&plan_text(&plan, &source))?;
    }
    if let Some(out) = &args.out {
        output::note(&format!(
            "Saved the plan to {}. Review it with `mkplan show {}`.",
            out.display(),
            out.display()
        ));
    }
    Ok(if args.detailed_exitcode && plan.changes {
        2
    } else {
        0
    })
}

/// Writes the plan file atomically: a half-written plan must never be applied.
pub(super) fn save(plan: &Plan, out: &Path) -> Result<()> {
    save_text(&render::json(plan), out)
}

/// Writes `text` (a plan file's JSON) to `out` atomically, fsynced, ending in a newline.
pub(super) fn save_text(text: &str, out: &Path) -> Result<()> {
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let failed = |e: std::io::Error| {
        Error::Other(format!("cannot write the plan file {}: {e}", out.display()))
    };
    let mut temporary = tempfile::NamedTempFile::new_in(folder).map_err(failed)?;
    temporary.write_all(text.as_bytes()).map_err(failed)?;
    temporary.write_all(b"\n").map_err(failed)?;
    temporary.as_file().sync_all().map_err(failed)?;
    temporary.persist(out).map_err(|e| failed(e.error))?;
    Ok(())
}

/// The one field read before the rest of a plan file.
#[derive(serde::Deserialize)]
struct FormatVersion {
    format_version: Option<serde_json::Value>,
}

/// Reads a plan file: only a regular file, and at most `PLAN_FILE_BYTES_MAX` (a path typed
/// on the command line may name a device or a pipe).
pub fn read_plan_file(path: &Path) -> Result<Plan> {
    let shown = path.display().to_string();
    let text = crate::bounded_read::read_to_string(path, PLAN_FILE_BYTES_MAX).map_err(|e| {
        InputError::new(&shown, format!("cannot read the plan file: {e}"))
            .fix("write one with `mkplan plan DESIRED.yaml --out PLANFILE`")
    })?;
    parse_plan_file(&shown, &text)
}

/// Reads the text of a plan file; `shown` names it in messages.
pub(crate) fn parse_plan_file(shown: &str, text: &str) -> Result<Plan> {
    // The version first: a plan of another format is reported as such, not by the first
    // field this mkplan does not know. Nothing of the file is shown (`not_a_plan`).
    let versioned: FormatVersion =
        serde_json::from_str(text).map_err(|e| not_a_plan(shown, text, &e))?;
    if versioned.format_version.as_ref().and_then(|v| v.as_str()) != Some(PLAN_FORMAT_VERSION) {
        let found = match &versioned.format_version {
            Some(version) => format!(
                "is of format version {}",
                crate::quote::bare(&version.to_string())
            ),
            None => "has no format_version".to_string(),
        };
        return Err(InputError::new(
            shown,
            format!("this plan file {found}; this mkplan reads format version \"{PLAN_FORMAT_VERSION}\" (docs/json.md)"),
        )
        .fix("make the plan again with this mkplan (`mkplan plan DESIRED.yaml --out PLANFILE`), or apply it with the mkplan that made it")
        .into());
    }
    let plan: Plan = serde_json::from_str(text).map_err(|e| not_a_plan(shown, text, &e))?;
    // `show` prints the plan's words as they are: a control character in one (an escape, a
    // newline) would drive the terminal or forge a line. mkplan writes none.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| not_a_plan(shown, text, &e))?;
    if let Some(at) = control_character_at(&value) {
        return Err(InputError::new(
            shown,
            format!("damaged plan file: the text at {at} holds a control character (an escape, a newline), which mkplan never writes"),
        )
        .fix("write plan files with `mkplan plan --out`; do not edit them")
        .into());
    }
    StepGraph::new(&plan.steps).map_err(|e| {
        InputError::new(shown, format!("damaged plan: {e}"))
            .fix("make the plan again with `mkplan plan --out`")
    })?;
    Ok(plan)
}

/// Where in `value` the first string (key or text) with a control character is, as a path
/// like `instances[0].region`.
fn control_character_at(value: &serde_json::Value) -> Option<String> {
    fn path_to(value: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        let has = |text: &str| text.chars().any(crate::quote::is_control_like);
        match value {
            Value::String(text) => has(text).then(String::new),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| path_to(item).map(|rest| format!("[{index}]{rest}"))),
            Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                let shown = crate::quote::bare(key);
                if has(key) {
                    return Some(format!(".{shown}"));
                }
                path_to(item).map(|rest| format!(".{shown}{rest}"))
            }),
            _ => None,
        }
    }
    path_to(value).map(|path| path.trim_start_matches('.').to_string())
}

/// A file that does not parse as a plan: the parser's words (cut and inert) when it says it
/// is one (it has `format_version`), else only where it departs from JSON. No line of it is
/// shown either way: a plan is written by mkplan, and a path mistyped on the command line
/// may name any file.
fn not_a_plan(shown: &str, text: &str, error: &serde_json::Error) -> InputError {
    let position = (error.line() as u64, error.column() as u64);
    let says_plan = serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|value| value.get("format_version").is_some());
    let fix = "write plan files with `mkplan plan --out`; do not edit them";
    if says_plan {
        return InputError::from_json(shown, "damaged plan file", text, error, &[]).fix(fix);
    }
    InputError::not_a(
        shown,
        "a plan file",
        "a plan file is the JSON `mkplan plan --out` writes, with \"format_version\"",
        (position.0 > 0).then_some(position),
    )
    .fix(fix)
}

pub fn show(path: &Path, json: bool, markdown: bool, dot: bool) -> Result<u8> {
    let plan = read_plan_file(path)?;
    let source = format!("saved plan {}", path.display());
    if json {
        output::report_line(&render::json(&plan))?;
    } else if markdown {
        output::report(&render::markdown(&plan, &source))?;
    } else if dot {
        output::report(&render::dot(&plan))?;
    } else {
        output::report(&plan_text(&plan, &source))?;
    }
    Ok(0)
}

/// `runbook PLANFILE`: the plan's steps as a checklist; the desired file it names gives the
/// key part holders.
pub fn runbook(path: &Path, markdown: bool) -> Result<u8> {
    let mut plan = read_plan_file(path)?;
    let desired_file = plan.desired_file.clone().ok_or_else(|| {
        Error::Other(format!(
            "{} does not name its desired file; make it with `mkplan plan DESIRED --out`",
            path.display()
        ))
    })?;
    let desired = read_desired(&path_in_plan_file(&desired_file, path))?;
    // The checklist names the desired file as it is found from here.
    plan.desired_file = Some(desired.path.display().to_string());
    let instructions = super::ceremony::instructions(&desired, &plan);
    let by_hand = super::ceremony::ceremony_steps(&desired, &plan, false)
        .into_keys()
        .collect();
    output::report(&render::runbook(&plan, &instructions, &by_hand, markdown))?;
    Ok(0)
}

/// The plan in words, in colour when stdout is a terminal that takes it.
fn plan_text(plan: &Plan, source: &str) -> String {
    if super::conventions::colour_stdout() {
        render::text_in_colour(plan, source)
    } else {
        render::text(plan, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show /dev/zero` read until memory ran out, and `show` of a FIFO waited for a writer
    /// (the plan file was read whole with no bound; found beside the fuzz targets).
    #[test]
    fn a_plan_file_that_is_a_device_is_refused_without_reading_it() {
        let error = read_plan_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/plan_json.rs`): `show` printed a saved plan's
    /// words as they were, so a plan file from anyone could drive the terminal (an escape in
    /// a region) or forge lines of the plan (a newline in an evidence line).
    #[test]
    fn a_plan_file_with_a_control_character_is_refused_before_it_is_shown() {
        let desired = include_str!("../../plans/three-units.yaml");
        let desired = crate::model::parse_desired("d.yaml", desired, Path::new("plans")).unwrap();
        let fleet = include_str!("../../examples/fleets/three-units.yaml");
        let fleet = crate::backend::sim::Fleet::parse("f.yaml", fleet).unwrap();
        let live = crate::model::LiveFleet {
            instances: fleet.instances.iter().map(|i| i.live()).collect(),
        };
        let evidence = crate::model::JournalEvidence::default();
        let plan =
            crate::render::json(&crate::plan::plan(&desired, "0", &live, &evidence).unwrap());
        let plan = plan.as_str();
        parse_plan_file("p.json", plan).unwrap();
        let evil = plan.replacen("\"us-south\"", "\"us\\u001b[2Jsouth\"", 1);
        assert_ne!(evil, plan);
        let error = parse_plan_file("p.json", &evil).unwrap_err().to_string();
        assert!(
            error.contains(
                "damaged plan file: the text at instances[0].region holds a control character"
            ),
            "{error}"
        );
        let forged = plan.replacen("\"evidence\": [", "\"evidence\": [\"ok\\nforged\", ", 1);
        assert_ne!(forged, plan);
        let error = parse_plan_file("p.json", &forged).unwrap_err().to_string();
        assert!(error.contains("instances[0].evidence[0]"), "{error}");
    }
}
