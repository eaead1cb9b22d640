//! The drill's evidence report in Markdown, to attach to a change record: what was drilled
//! (plan hash, fleet fingerprint, mkplan version, seed), how faults were injected, the
//! outcomes, the longest recovery, every refusal and failure with its reason and the command
//! that replays it, and the schedule of every run.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{DrillResult, RunResult, Verdict};

/// Rows of the per-run table shown before the rest is left in a collapsed block.
const TABLE_ROWS_OPEN: usize = 20;

/// `replay` is the command that replays one run, with `{seed}` where its seed goes.
pub fn markdown(result: &DrillResult, subject: &str, replay: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# mkplan drill: {subject}\n");
    let verdict = if result.failed == 0 {
        "**PASSED**: every run ended converged or safely refused, with zero incidents"
    } else {
        "**FAILED**: some runs lost data or did not converge (see below)"
    };
    let _ = writeln!(out, "{verdict}.\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| mkplan version | {} |", result.mkplan_version);
    let _ = writeln!(
        out,
        "| plan (SHA-256 of its JSON) | `{}` |",
        result.plan_sha256
    );
    let _ = writeln!(
        out,
        "| fleet fingerprint (live state) | `{}` |",
        result.fleet_fingerprint
    );
    let _ = writeln!(
        out,
        "| seed | {} (run *i* uses seed {} + *i*) |",
        result.seed, result.seed
    );
    let _ = writeln!(out, "| runs | {} |", result.runs);
    let _ = writeln!(
        out,
        "| mutating operations per rotation | {} |",
        result.operations_per_rotation
    );
    let _ = writeln!(out, "| time | {:.1} s |", result.elapsed_ms as f64 / 1000.0);
    let _ = writeln!(out, "\n## Outcomes\n");
    let _ = writeln!(
        out,
        "| converged | refused safely | failed | incidents |\n|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} |",
        result.converged, result.refused, result.failed, result.incidents
    );
    let _ = writeln!(out, "\n## How the faults were injected\n");
    let _ = writeln!(
        out,
        "Each run applies the desired state to its own in-memory copy of the fleet, with the simulator's rules, and reruns `apply` after every failure (at most {} clean reruns after the faulty attempts). The simulator checks after every operation that some register of each instance holds the key storage's master key, and records every harmful operation as an incident.\n",
        super::CLEAN_RERUNS_MAX
    );
    let _ = writeln!(
        out,
        "- **In process**, on a simulated clock: failed operations, lost responses, an expiring token (every request after it gets 401, reads included), latency with per-operation jitter (which reorders concurrent steps), and the parallelism of each run.\n- **Crashes** are in process too: the apply is dropped right after the crashing operation took effect. Every journal record written before that point stays and nothing after it is written, as when the process dies, because the executor writes each record before the next operation starts. Real process aborts (`MKPLAN_SIM_FAULTS=crash_after_op=N`) are covered by mkplan's crash sweeps on the embedded simulator and over HTTP.\n"
    );
    if result
        .schedules
        .iter()
        .any(|r| !r.schedule.actors.is_empty())
    {
        let _ = writeln!(
            out,
            "- **Several actors** (`--actors`): each run takes turns drawn from its seed between mkplan from state folder X, mkplan from state folder Y (each with its own journal, each seeing only what it did), an operator with the TKE CLI who loads, commits, rewraps and sets immediate outside mkplan (never harmfully, by the simulator's ground truth), and pauses while slow rewraps run on. When a plan asks for the operator's word, the operator attests the truth (`mkplan attest rewrap`) and reruns at once; the run ends with up to {} clean applies from X. Rewraps take as long as the fleet says (`rewrap_ms_per_key`), on the simulated clock.\n",
            super::actors::SETTLING_APPLIES_MAX
        );
    }
    if result.over_http {
        let _ = writeln!(
            out,
            "- **Over HTTP** (`--over-http`): each run's fleet is served by an in-process `sim serve` on loopback and reached with mkplan's HTTP backend, on a real clock. `restart_server_after_op=N` kills the server right after its N-th operation is on disk, before it answers, and starts it again on the same file and port.\n"
        );
    }
    let _ = writeln!(out, "## By fault\n");
    let _ = writeln!(
        out,
        "A fault counts where it fired: a scheduled fault whose attempt ended, or succeeded, before its operation never fires.\n"
    );
    let _ = writeln!(
        out,
        "| fault that fired | runs | converged | refused | failed |\n|---|---|---|---|---|"
    );
    let faults = by_fault(&result.schedules);
    for (kind, counts) in &faults {
        let _ = writeln!(
            out,
            "| {kind} | {} | {} | {} | {} |",
            counts[0], counts[1], counts[2], counts[3]
        );
    }
    out.push_str(&charts(result, &faults));
    if let Some(longest) = result.longest_recovery() {
        let _ = writeln!(out, "\n## Longest recovery\n");
        let _ = writeln!(
            out,
            "Run {} (seed {}): {} attempts, {} operations after the first fault; schedule {}; parallelism {}, latency {} ms.\n",
            longest.run,
            longest.schedule.seed,
            longest.attempts,
            longest.recovery_operations,
            longest.schedule.describe(),
            longest.schedule.parallelism,
            longest.schedule.latency_ms
        );
        let _ = writeln!(out, "Faults that fired:\n");
        for fired in &longest.fired {
            let _ = writeln!(out, "- {fired}");
        }
        let _ = writeln!(out, "\nHow each attempt ended:\n");
        for (index, ending) in longest.attempt_endings.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", index + 1, ending);
        }
    }
    let notable: Vec<&RunResult> = result
        .schedules
        .iter()
        .filter(|r| !matches!(r.verdict, Verdict::Converged))
        .collect();
    if !notable.is_empty() {
        let _ = writeln!(out, "\n## Refusals and failures\n");
        for run in notable {
            let (kind, reason) = match &run.verdict {
                Verdict::Refused { reason } => ("refused", reason),
                Verdict::Failed { why } => ("FAILED", why),
                Verdict::Converged => unreachable!("filtered out"),
            };
            let _ = writeln!(
                out,
                "- run {} (seed {}), {kind}, schedule {}: {reason}. Replay: `{}`",
                run.run,
                run.schedule.seed,
                run.schedule.describe(),
                replay.replace("{seed}", &run.schedule.seed.to_string())
            );
        }
    }
    let _ = writeln!(out, "\n## Every run\n");
    let header = "| run | seed | parallelism | latency ms | faults scheduled, by attempt | fired | attempts | operations | verdict |\n|---|---|---|---|---|---|---|---|---|";
    let _ = writeln!(out, "{header}");
    for (index, run) in result.schedules.iter().enumerate() {
        if index == TABLE_ROWS_OPEN {
            let _ = writeln!(
                out,
                "\n<details><summary>{} more runs</summary>\n\n{header}",
                result.schedules.len() - TABLE_ROWS_OPEN
            );
        }
        let verdict = match &run.verdict {
            Verdict::Converged => "converged",
            Verdict::Refused { .. } => "refused",
            Verdict::Failed { .. } => "**FAILED**",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {verdict} |",
            run.run,
            run.schedule.seed,
            run.schedule.parallelism,
            run.schedule.latency_ms,
            run.schedule.describe(),
            run.fired.len(),
            run.attempts,
            run.operations
        );
    }
    if result.schedules.len() > TABLE_ROWS_OPEN {
        let _ = writeln!(out, "\n</details>");
    }
    out
}

/// Glyphs of the longest bar in the per-fault chart.
const BAR_WIDTH_MAX: u64 = 24;

/// The outcomes as pictures: a Mermaid pie of all runs (GitHub and GitLab draw it), and per
/// fault kind a bar of text glyphs, which reads the same in a terminal, in a change record
/// that does not draw Mermaid, and in a pull request.
fn charts(result: &DrillResult, faults: &BTreeMap<&'static str, [u64; 4]>) -> String {
    let mut out = String::from("\n### Outcomes, as pictures\n\n");
    let _ = writeln!(
        out,
        "```mermaid\npie showData title Outcomes of {} runs",
        result.runs
    );
    for (name, count) in [
        ("converged", result.converged),
        ("refused safely", result.refused),
        ("failed", result.failed),
    ] {
        // A slice of nothing draws as a stray label.
        if count > 0 {
            let _ = writeln!(out, "  \"{name}\" : {count}");
        }
    }
    out.push_str("```\n\n");
    if faults.is_empty() {
        out.push_str("No fault fired in any run.\n");
        return out;
    }
    let longest = faults.values().map(|c| c[0]).max().unwrap_or(1).max(1);
    let glyphs = |count: u64| (count * BAR_WIDTH_MAX).div_ceil(longest) as usize;
    let _ = writeln!(out, "| fault that fired | outcomes |\n|---|---|");
    for (kind, [_, converged, refused, failed]) in faults {
        let bar = format!(
            "{}{}{}",
            "█".repeat(glyphs(*converged)),
            "▒".repeat(glyphs(*refused)),
            "░".repeat(glyphs(*failed))
        );
        let _ = writeln!(
            out,
            "| {kind} | `{bar}` {converged} converged, {refused} refused, {failed} failed |"
        );
    }
    out.push_str(
        "\n`█` converged, `▒` refused safely, `░` failed; bars to scale, per fault kind.\n",
    );
    out
}

/// Per fault kind that fired: [runs, converged, refused, failed].
fn by_fault(runs: &[RunResult]) -> BTreeMap<&'static str, [u64; 4]> {
    let mut table: BTreeMap<&'static str, [u64; 4]> = BTreeMap::new();
    for run in runs {
        let mut kinds: Vec<&'static str> = run
            .fired
            .iter()
            .map(|fired| {
                if fired.contains("server died") {
                    "restart_server_after_op"
                } else if fired.contains("crashed") {
                    "crash_after_op"
                } else if fired.contains("lost response") {
                    "lose_response_op"
                } else if fired.contains("token expired") {
                    "token_expires_at_op"
                } else {
                    "fail_op"
                }
            })
            .collect();
        if kinds.is_empty() {
            kinds.push("none fired");
        }
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            let row = table.entry(kind).or_default();
            row[0] += 1;
            match run.verdict {
                Verdict::Converged => row[1] += 1,
                Verdict::Refused { .. } => row[2] += 1,
                Verdict::Failed { .. } => row[3] += 1,
            }
        }
    }
    table
}
