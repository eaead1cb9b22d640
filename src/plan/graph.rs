//! The step graph: steps are nodes, "must run after" are edges. Apply runs the steps in a
//! topological order that breaks ties by step number, so the order is the same on every run
//! and is the one the replay checked.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use super::step::Step;

pub struct StepGraph {
    /// Node weights index into the step list the graph was built from.
    graph: DiGraph<usize, ()>,
}

impl StepGraph {
    /// Builds the graph from steps whose `depends_on` name other steps' ids. An unknown id is
    /// an error (a damaged plan file); a cycle is too.
    pub fn new(steps: &[Step]) -> Result<Self, String> {
        let mut graph = DiGraph::with_capacity(steps.len(), steps.len() * 2);
        let mut nodes = HashMap::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            if nodes
                .insert(step.id.as_str(), graph.add_node(index))
                .is_some()
            {
                return Err(format!("step id {} appears twice", step.id));
            }
        }
        for step in steps {
            for dependency in &step.depends_on {
                let from = nodes.get(dependency.as_str()).ok_or_else(|| {
                    format!("step {} depends on unknown step {dependency}", step.id)
                })?;
                graph.add_edge(*from, nodes[step.id.as_str()], ());
            }
        }
        let result = Self { graph };
        if result.order().len() != steps.len() {
            return Err("the steps depend on each other in a cycle".into());
        }
        Ok(result)
    }

    /// Indexes into the step list, in the order apply runs them (Kahn's algorithm, lowest
    /// index first among the steps that are ready).
    pub fn order(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| {
                self.graph
                    .neighbors_directed(n, Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> = waiting
            .iter()
            .enumerate()
            .filter(|(_, count)| **count == 0)
            .map(|(i, _)| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(waiting.len());
        while let Some(Reverse(index)) = ready.pop() {
            order.push(self.graph[NodeIndex::new(index)]);
            for next in self
                .graph
                .neighbors_directed(NodeIndex::new(index), Direction::Outgoing)
            {
                waiting[next.index()] -= 1;
                if waiting[next.index()] == 0 {
                    ready.push(Reverse(next.index()));
                }
            }
        }
        order
    }

    /// Edges as (from, to) indexes into the step list, for the DOT view.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a], self.graph[b]))
            .collect()
    }

    /// The length of the longest dependency chain, in steps: the round trips an apply needs
    /// at best, however many crypto units there are.
    pub fn critical_path(&self) -> usize {
        let mut depth = vec![0usize; self.graph.node_count()];
        for index in self.order() {
            let node = NodeIndex::new(index);
            let before = self
                .graph
                .neighbors_directed(node, Direction::Incoming)
                .map(|n| depth[n.index()])
                .max()
                .unwrap_or(0);
            depth[index] = before + 1;
        }
        depth.into_iter().max().unwrap_or(0)
    }
}
