//! The step graph as a Mermaid flowchart, for the Markdown plan: GitHub and GitLab draw it in
//! a pull request. One subgraph per service instance, its steps left to right; irreversible
//! steps red, the rewrap (the point of no return) a dark red hexagon with thick arrows out of
//! it. Past `INSTANCES_DRAWN_MAX` instances a picture of every one is unreadable: instances
//! whose steps have the same shape share one subgraph, "×N service instances", and at most
//! `SHAPES_DRAWN_MAX` shapes are drawn.
//!
//! Every label is built from a whitelist of characters, anything else written as a Mermaid
//! entity (`#34;`), so a hostile instance id or unit name cannot close the label, the
//! subgraph or the fenced block.

use std::collections::HashMap;
use std::fmt::Write;

use crate::plan::{Action, InstancePlan, Plan, Step, by_instance};

/// Instances drawn one by one; beyond, one subgraph per shape of steps.
pub const INSTANCES_DRAWN_MAX: usize = 10;
/// Shapes drawn when summarizing; the rest are counted in a note.
pub const SHAPES_DRAWN_MAX: usize = 10;
/// Characters of an id or name shown in a label.
const LABEL_TEXT_MAX: usize = 200;
/// Instance ids named in a summarized subgraph's title.
const IDS_NAMED_MAX: usize = 3;

/// The ```mermaid block, or nothing when the plan has no steps.
pub fn flowchart(plan: &Plan) -> String {
    if plan.steps.is_empty() {
        return String::new();
    }
    let grouped = by_instance(&plan.steps);
    let instances: Vec<(&InstancePlan, Vec<&Step>)> = plan
        .instances
        .iter()
        .map(|i| (i, grouped.get(i.id.as_str()).cloned().unwrap_or_default()))
        .collect();
    let mut chart = Chart::default();
    if instances.len() <= INSTANCES_DRAWN_MAX {
        for (index, (instance, steps)) in instances.iter().enumerate() {
            let title = format!("Service instance {} ({})", instance.id, instance.region);
            chart.subgraph(index, &title, steps, |step| {
                let unit = step.unit.as_deref().unwrap_or("whole service instance");
                format!("{} {}<br/>{unit}", step.id, step.action.as_str())
            });
        }
    } else {
        summarized(&mut chart, &instances);
    }
    chart.finish()
}

/// One subgraph per shape: instances whose steps have the same actions on the same units (by
/// position) with the same dependencies.
fn summarized(chart: &mut Chart, instances: &[(&InstancePlan, Vec<&Step>)]) {
    let mut shapes: Vec<(Shape, Vec<usize>)> = Vec::new();
    let mut index_of: HashMap<Shape, usize> = HashMap::new();
    for (position, (instance, steps)) in instances.iter().enumerate() {
        let shape = shape(instance, steps);
        match index_of.get(&shape) {
            Some(&at) => shapes[at].1.push(position),
            None => {
                index_of.insert(shape.clone(), shapes.len());
                shapes.push((shape, vec![position]));
            }
        }
    }
    for (group, (_, members)) in shapes.iter().take(SHAPES_DRAWN_MAX).enumerate() {
        let (instance, steps) = &instances[members[0]];
        let mut named: Vec<&str> = members
            .iter()
            .take(IDS_NAMED_MAX)
            .map(|&m| instances[m].0.id.as_str())
            .collect();
        let more = members.len().saturating_sub(IDS_NAMED_MAX);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        if named.is_empty() {
            named.push("?");
        }
        let title = format!(
            "×{} service instance{}: {}{more}",
            members.len(),
            if members.len() == 1 { "" } else { "s" },
            named.join(", ")
        );
        chart.subgraph(group, &title, steps, |step| {
            let unit = match &step.unit {
                Some(unit) => format!(
                    "crypto unit {}",
                    instance
                        .units
                        .iter()
                        .position(|u| &u.hsm_id == unit)
                        .map_or(0, |p| p + 1)
                ),
                None => "whole service instance".into(),
            };
            format!("{}<br/>{unit}", step.action.as_str())
        });
    }
    if shapes.len() > SHAPES_DRAWN_MAX {
        let left: usize = shapes[SHAPES_DRAWN_MAX..]
            .iter()
            .map(|(_, m)| m.len())
            .sum();
        let _ = writeln!(
            chart.body,
            "  more[\"{}\"]",
            label(&format!(
                "{} more shapes of steps ({left} service instances): see the sections below",
                shapes.len() - SHAPES_DRAWN_MAX
            ))
        );
    }
}

/// What makes two instances' step graphs draw the same: per step its action, the position of
/// its unit, its dependencies by position, and its marks.
type Shape = Vec<(Action, Option<usize>, Vec<usize>, bool, bool)>;

fn shape(instance: &InstancePlan, steps: &[&Step]) -> Shape {
    let position: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    steps
        .iter()
        .map(|step| {
            let unit = step
                .unit
                .as_ref()
                .and_then(|unit| instance.units.iter().position(|u| &u.hsm_id == unit));
            let after = step
                .depends_on
                .iter()
                .filter_map(|d| position.get(d.as_str()).copied())
                .collect();
            (
                step.action,
                unit,
                after,
                step.reversible,
                step.point_of_no_return,
            )
        })
        .collect()
}

#[derive(Default)]
struct Chart {
    body: String,
    edges: String,
    irreversible: Vec<String>,
    no_return: Vec<String>,
    converged: Vec<String>,
}

impl Chart {
    /// A subgraph `g{group}` of `steps`, node ids `g{group}n{i}` (never the step's own id,
    /// which a plan file could carry anything in).
    fn subgraph(
        &mut self,
        group: usize,
        title: &str,
        steps: &[&Step],
        text: impl Fn(&Step) -> String,
    ) {
        let _ = writeln!(self.body, "  subgraph g{group}[\"{}\"]", label(title));
        let _ = writeln!(self.body, "    direction LR");
        if steps.is_empty() {
            let node = format!("g{group}done");
            let _ = writeln!(self.body, "    {node}[\"no steps: converged\"]");
            self.converged.push(node);
        }
        let node_of: HashMap<&str, String> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), format!("g{group}n{i}")))
            .collect();
        for step in steps {
            let node = &node_of[step.id.as_str()];
            let mut words = format!("{} {}", step.action.symbol(), text(step));
            if step.point_of_no_return {
                words.push_str("<br/>POINT OF NO RETURN");
                let _ = writeln!(self.body, "    {node}{{{{\"{}\"}}}}", label(&words));
                self.no_return.push(node.clone());
            } else {
                if !step.reversible {
                    words.push_str("<br/>IRREVERSIBLE");
                    self.irreversible.push(node.clone());
                }
                let _ = writeln!(self.body, "    {node}[\"{}\"]", label(&words));
            }
        }
        let _ = writeln!(self.body, "  end");
        for step in steps {
            for before in &step.depends_on {
                let Some(from) = node_of.get(before.as_str()) else {
                    continue;
                };
                let forward_only = steps
                    .iter()
                    .any(|s| s.id == *before && s.point_of_no_return);
                let arrow = if forward_only { "==>" } else { "-->" };
                let _ = writeln!(self.edges, "  {from} {arrow} {}", node_of[step.id.as_str()]);
            }
        }
    }

    fn finish(self) -> String {
        let mut out = String::from("```mermaid\nflowchart TB\n");
        out.push_str(&self.body);
        out.push_str(&self.edges);
        out.push_str("  classDef irreversible fill:#fde2e1,stroke:#c0392b,color:#000\n");
        out.push_str(
            "  classDef noReturn fill:#922b21,stroke:#641e16,stroke-width:3px,color:#fff\n",
        );
        out.push_str("  classDef converged fill:#e8f6ef,stroke:#1e8449,color:#000\n");
        for (class, nodes) in [
            ("irreversible", &self.irreversible),
            ("noReturn", &self.no_return),
            ("converged", &self.converged),
        ] {
            // Mermaid takes a comma-separated list; chunks keep lines short.
            for chunk in nodes.chunks(20) {
                let _ = writeln!(out, "  class {} {class}", chunk.join(","));
            }
        }
        out.push_str("```\n");
        out
    }
}

/// Text for inside `"…"` in a Mermaid label: letters, digits and a few harmless marks as
/// they are, `<br/>` as a line break, everything else (quotes, brackets, backticks, `#`, `;`,
/// line ends, other Unicode) as a `#NNN;` entity; each piece cut to `LABEL_TEXT_MAX`.
pub fn label(text: &str) -> String {
    text.split("<br/>")
        .map(|piece| {
            let mut cut: String = piece.chars().take(LABEL_TEXT_MAX).collect();
            if piece.chars().count() > LABEL_TEXT_MAX {
                cut.push('…');
            }
            cut.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || " -_.,:/()+~!×…".contains(c) {
                        c.to_string()
                    } else {
                        format!("#{};", u32::from(c))
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("<br/>")
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn a_label_cannot_close_its_quotes_node_subgraph_or_block() {
        let hostile = "x\"] --> evil\nend\n```\n<script>#;`|{}";
        let shown = label(hostile);
        for forbidden in ['"', ']', '\n', '`', '<', '>', '{', '}', '|', '['] {
            assert!(!shown.contains(forbidden), "{forbidden:?} in {shown}");
        }
        assert!(shown.starts_with("x#34;#93; --#62; evil#10;end"), "{shown}");
    }

    #[test]
    fn a_long_name_is_cut() {
        let shown = label(&"a".repeat(super::LABEL_TEXT_MAX * 2));
        assert_eq!(shown.chars().count(), super::LABEL_TEXT_MAX + 1);
    }
}
