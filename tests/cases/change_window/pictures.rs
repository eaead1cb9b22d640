//! Pictures where a reviewer would rather look than read (issue 13, point 13): the Markdown
//! plan's Mermaid flowchart of the step graph (grouped by instance, the irreversible steps
//! and the point of no return marked, summarized past ten instances, labels that a hostile
//! name cannot break out of), and the drill report's chart of outcomes per fault kind.

use crate::support::*;

/// The ```mermaid block of a Markdown document.
fn mermaid(markdown: &str) -> String {
    let start = markdown
        .find("```mermaid\n")
        .unwrap_or_else(|| panic!("no mermaid block in:\n{markdown}"));
    let body = &markdown[start + "```mermaid\n".len()..];
    let end = body.find("\n```").expect("the block ends");
    body[..end].to_string()
}

fn example_workspace(name: &str) -> Workspace {
    let ws = Workspace::empty();
    let fleet =
        std::fs::read_to_string(repo_file(&format!("examples/fleets/{name}.yaml"))).unwrap();
    ws.write(FLEET, &fleet);
    let desired = std::fs::read_to_string(repo_file(&format!("plans/{name}.yaml")))
        .unwrap()
        .replace(
            &format!("sim:../examples/fleets/{name}.yaml"),
            "sim:fleet.yaml",
        );
    ws.write(DESIRED, &desired);
    ws
}

#[test]
fn the_markdown_plan_draws_one_subgraph_per_instance_with_every_step() {
    let ws = example_workspace("several-instances");
    let plan = ws
        .mkplan(&["plan", DESIRED, "--json", "--out", "plan.json"])
        .json();
    let markdown = ws.mkplan(&["plan", DESIRED, "--markdown"]);
    markdown.expect_code(0);
    let block = mermaid(&markdown.stdout);
    assert!(block.starts_with("flowchart TB\n"), "{block}");
    let instances = plan["instances"].as_array().unwrap();
    let subgraphs: Vec<&str> = block
        .lines()
        .filter(|l| l.trim_start().starts_with("subgraph "))
        .collect();
    assert_eq!(subgraphs.len(), instances.len(), "{block}");
    for instance in instances {
        let id = instance["id"].as_str().unwrap();
        assert_eq!(
            subgraphs.iter().filter(|s| s.contains(id)).count(),
            1,
            "{id} not in one subgraph title:\n{block}"
        );
    }
    for step in steps(&plan) {
        let id = format!(" {} ", step["id"].as_str().unwrap());
        let line = block
            .lines()
            .find(|l| l.contains(&id))
            .unwrap_or_else(|| panic!("step{id}not drawn:\n{block}"));
        let node = line.split(['[', '{']).next().unwrap().trim();
        if step["point_of_no_return"] == true {
            assert!(
                line.contains("{{") && line.contains("POINT OF NO RETURN"),
                "{line}"
            );
            assert!(
                block.contains(&format!("class {node}")) || block.contains(&format!(",{node}"))
            );
            assert!(
                block.contains(&format!("{node} ==> ")),
                "no thick arrow out of {node}"
            );
        } else if step["reversible"] == false {
            assert!(line.contains("IRREVERSIBLE"), "{line}");
        }
        for before in step["depends_on"].as_array().unwrap() {
            assert!(
                block.contains(&format!("> {node}\n")) || block.ends_with(&format!("> {node}")),
                "no arrow into {node} (after {before})"
            );
        }
    }
    // The converged instance is drawn too, as such.
    assert!(block.contains("no steps: converged"), "{block}");
    // `show --markdown` of the saved plan draws the same picture; `--dot` stays.
    let shown = ws.mkplan(&["show", "plan.json", "--markdown"]);
    shown.expect_code(0);
    assert_eq!(mermaid(&shown.stdout), block);
    let dot = ws.mkplan(&["show", "plan.json", "--dot"]);
    dot.expect_code(0);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
}

#[test]
fn fifty_instances_are_summarized_by_shape_and_the_block_stays_short() {
    let mut fleet = Fleet::instance().units(3, empty(), valid(A));
    for _ in 1..40 {
        fleet = fleet.and_instance().units(3, empty(), valid(A));
    }
    for _ in 40..50 {
        fleet = fleet.and_instance().units(2, committed(B), valid(A));
    }
    let ws = rotate_to_b(&fleet);
    let markdown = ws.mkplan(&["plan", DESIRED, "--markdown"]);
    markdown.expect_code(0);
    let block = mermaid(&markdown.stdout);
    let lines = block.lines().count();
    assert!(lines <= 80, "{lines} lines:\n{block}");
    assert_eq!(block.matches("subgraph ").count(), 2, "{block}");
    assert!(block.contains("×40 service instances: "), "{block}");
    assert!(block.contains("×10 service instances: "), "{block}");
    assert!(block.contains(" and 37 more"), "{block}");
    assert!(block.contains("POINT OF NO RETURN"), "{block}");
    assert!(
        markdown.stdout.contains("one box per shape of steps"),
        "{}",
        markdown.stdout
    );
}

#[test]
fn a_hostile_name_cannot_break_out_of_a_label_or_the_block() {
    let ws = rotate_to_b(&Fleet::instance().units(2, empty(), valid(A)));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    // A plan file is a file anyone could have edited: its names come back as it says them.
    // A line end in one is refused before anything is shown (a damaged plan file); what is
    // left to try is closing a label, a node or the block from within one line.
    let plan = ws.read("plan.json");
    let hostile_text = |hostile: &str| {
        plan.replace(
            "\"region\": \"us-south\"",
            &format!("\"region\": \"{hostile}\""),
        )
        .replace(&u(1), &format!("{}{hostile}", u(1)))
    };
    ws.write("plan.json", &hostile_text("evil\\n```\\nend"));
    let refused = ws.mkplan(&["show", "plan.json", "--markdown"]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("damaged plan file") && refused.stdout.is_empty(),
        "{}",
        refused.stderr
    );
    ws.write(
        "plan.json",
        &hostile_text("evil\\\"]```end # Approved<script>`|{}"),
    );
    let shown = ws.mkplan(&["show", "plan.json", "--markdown"]);
    shown.expect_code(0);
    let block = mermaid(&shown.stdout);
    assert!(
        block.contains("(evil#34;#93;#96;#96;#96;end #35; Approved#60;script#62;"),
        "{block}"
    );
    assert!(block.contains(&format!("{}evil#34;#93;", u(1))), "{block}");
    // The block ends where mkplan ends it: the hostile text closed nothing.
    let after = &shown.stdout[shown.stdout.find("```mermaid\n").unwrap() + 11..];
    let end = after.find("\n```").unwrap();
    assert!(
        after[..end].ends_with("converged") || after[..end].contains("classDef"),
        "{block}"
    );
    for line in block.lines() {
        let inside: Vec<&str> = line.split('"').collect();
        // Every label is one pair of quotes: a quote inside would make more.
        assert!(inside.len() == 1 || inside.len() == 3, "{line}");
        assert!(
            !line.contains('`') && !line.contains('<') || line.contains("<br/>"),
            "{line}"
        );
        assert!(!line.contains("<script"), "{line}");
    }
    assert!(!block.contains("\nend\n# Approved"), "{block}");
}

#[test]
fn the_drill_report_charts_outcomes_per_fault_kind() {
    let ws = rotate_to_b(&Fleet::instance().units(3, empty(), valid(A)));
    let run = ws.mkplan_with_env(
        &[
            "drill", DESIRED, "--runs", "12", "--seed", "5", "--report", "drill.md",
        ],
        &[
            ("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0]),
            ("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1]),
        ],
    );
    run.expect_code(0);
    let report = ws.read("drill.md");
    let pie = mermaid(&report);
    assert!(
        pie.starts_with("pie showData title Outcomes of 12 runs"),
        "{pie}"
    );
    assert!(pie.contains("\"converged\" : "), "{pie}");
    let chart_at = report
        .find("| fault that fired | outcomes |")
        .expect("the bar chart");
    let chart = &report[chart_at..];
    assert!(chart.contains('█'), "{chart}");
    let fault_rows = chart
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .count();
    let table_rows = report[report.find("| fault that fired | runs |").unwrap()..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .count();
    assert_eq!(fault_rows, table_rows, "{report}");
    let fleet = ws.read(FLEET);
    assert!(!fleet.contains("incidents:\n  -"), "{fleet}");
}
