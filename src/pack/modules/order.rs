//! The dependency closure of the requested modules and a load order for it.

use std::collections::{BTreeMap, BTreeSet};

use super::index::{KernelIndex, Target};
use super::ModuleError;

/// A dependency graph: edges point from a module to those loaded after it.
#[derive(Debug, Default)]
pub(super) struct Graph {
    nodes: BTreeSet<String>,
    after: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Records that `first` must be loaded before `then`.
    fn edge(&mut self, first: &str, then: &str) {
        if first != then {
            self.after
                .entry(first.to_string())
                .or_default()
                .insert(then.to_string());
        }
    }
}

/// Collects the closure of `roots` over modules.dep deps and softdeps.
pub(super) fn closure(
    idx: &KernelIndex,
    roots: &BTreeSet<String>,
    builtin: &mut BTreeSet<String>,
) -> Result<Graph, ModuleError> {
    let mut graph = Graph::default();
    let mut todo: Vec<String> = roots.iter().rev().cloned().collect();
    while let Some(name) = todo.pop() {
        if !graph.nodes.insert(name.clone()) {
            continue;
        }
        let Some(entry) = idx.modules.get(&name) else {
            continue;
        };
        for dep_rel in &entry.deps {
            let dep = idx.dep_name(dep_rel);
            if idx.modules.contains_key(&dep) {
                graph.edge(&dep, &name);
                todo.push(dep);
            } else if idx.builtin.contains(&dep) {
                builtin.insert(dep);
            } else {
                return Err(ModuleError::MissingDep {
                    module: name,
                    dep: dep_rel.clone(),
                });
            }
        }
        let Some(soft) = idx.softdeps.get(&name) else {
            continue;
        };
        for (list, pre) in [(&soft.pre, true), (&soft.post, false)] {
            for target in list.iter().flat_map(|s| idx.lookup(s)) {
                match target {
                    Target::Module(m) => {
                        if pre {
                            graph.edge(&m, &name)
                        } else {
                            graph.edge(&name, &m)
                        }
                        todo.push(m);
                    }
                    Target::Builtin(b) => {
                        builtin.insert(b);
                    }
                }
            }
        }
    }
    Ok(graph)
}

/// Topologically sorts the graph (Kahn), picking the smallest name among the
/// ready modules at each step.
pub(super) fn load_order(graph: &Graph) -> Result<Vec<String>, ModuleError> {
    let mut indegree: BTreeMap<&str, usize> = graph.nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for succs in graph.after.values() {
        for s in succs {
            if let Some(d) = indegree.get_mut(s.as_str()) {
                *d += 1;
            }
        }
    }
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&n, _)| n)
        .collect();
    let mut order = Vec::with_capacity(graph.nodes.len());
    while let Some(next) = ready.pop_first() {
        order.push(next.to_string());
        for s in graph.after.get(next).into_iter().flatten() {
            if let Some(d) = indegree.get_mut(s.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.insert(s.as_str());
                }
            }
        }
    }
    if order.len() < graph.nodes.len() {
        let stuck: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, &d)| d > 0)
            .map(|(&n, _)| n)
            .collect();
        return Err(ModuleError::Cycle {
            cycle: find_cycle(graph, &stuck),
        });
    }
    Ok(order)
}

/// Finds one cycle among `stuck` (nodes left with predecessors after Kahn's
/// algorithm; each has a predecessor among them), first node repeated last.
fn find_cycle(graph: &Graph, stuck: &BTreeSet<&str>) -> Vec<String> {
    let mut pred: BTreeMap<&str, &str> = BTreeMap::new();
    for (from, succs) in &graph.after {
        if !stuck.contains(from.as_str()) {
            continue;
        }
        for to in succs {
            if stuck.contains(to.as_str()) {
                pred.entry(to.as_str()).or_insert(from.as_str());
            }
        }
    }
    // Walk predecessors until a node repeats; the repeated stretch is a cycle.
    let mut path: Vec<&str> = Vec::new();
    let mut cur = stuck.first().copied();
    while let Some(node) = cur {
        if let Some(pos) = path.iter().position(|&p| p == node) {
            let mut cycle: Vec<String> = path[pos..].iter().rev().map(|s| s.to_string()).collect();
            cycle.push(cycle.first().cloned().unwrap_or_default());
            return cycle;
        }
        path.push(node);
        cur = pred.get(node).copied();
    }
    stuck.iter().map(|s| s.to_string()).collect()
}
