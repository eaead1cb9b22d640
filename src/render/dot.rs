//! The step graph in Graphviz DOT: one cluster per service instance, irreversible steps in
//! bold, the rewrap (the point of no return) as a red octagon.

use std::fmt::Write;

use crate::model::unit::short_id;
use crate::plan::{Plan, StepGraph, by_instance};

pub fn dot(plan: &Plan) -> String {
    let graph = StepGraph::new(&plan.steps).expect("a plan that was read back is a valid graph");
    let mut out = String::from(
        "digraph mkplan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    let grouped = by_instance(&plan.steps);
    for (index, instance) in plan.instances.iter().enumerate() {
        let _ = writeln!(out, "  subgraph \"cluster_{index}\" {{");
        let _ = writeln!(
            out,
            "    label=\"service instance {} ({})\";",
            instance.id, instance.region
        );
        for step in grouped.get(instance.id.as_str()).into_iter().flatten() {
            let unit = step
                .unit
                .as_deref()
                .map(short_id)
                .unwrap_or_else(|| "whole instance".into());
            let style = if step.point_of_no_return {
                ", shape=octagon, color=red, style=bold"
            } else if !step.reversible {
                ", style=bold"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{} {} {}\\n{}\"{style}];",
                step.id,
                step.action.symbol(),
                step.id,
                step.action.as_str(),
                unit
            );
        }
        out.push_str("  }\n");
    }
    for (from, to) in graph.edges() {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\";",
            plan.steps[from].id, plan.steps[to].id
        );
    }
    out.push_str("}\n");
    out
}
