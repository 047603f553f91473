//! An index over one graph: who produces and who consumes each tensor, initializers, value
//! infos, topological order, and the outer tensors that subgraphs (If/Loop/Scan) read.

use super::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Indices into one [`GraphProto`]. Rebuild it after changing the graph.
#[derive(Debug, Default, Clone)]
pub struct GraphIndex {
    /// Tensor name → index of the node producing it.
    pub producer: HashMap<String, usize>,
    /// Tensor name → indices of the nodes reading it, in node order, each node once. A node
    /// whose subgraph reads an outer tensor counts as its consumer.
    pub consumers: HashMap<String, Vec<usize>>,
    /// Initializer name → index in `graph.initializer`.
    pub initializers: HashMap<String, usize>,
    /// Names of graph inputs that are not initializers (the data the caller feeds).
    pub inputs: Vec<String>,
    /// Names of graph outputs.
    pub outputs: HashSet<String>,
    /// Declared types: graph inputs, outputs and value_info, by name.
    pub value_info: HashMap<String, ValueInfoProto>,
}

impl GraphIndex {
    /// Indexes `graph`.
    pub fn new(graph: &GraphProto) -> GraphIndex {
        let mut ix = GraphIndex::default();
        for (i, t) in graph.initializer.iter().enumerate() {
            ix.initializers.insert(t.name.clone(), i);
        }
        for (i, n) in graph.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                ix.producer.insert(o.clone(), i);
            }
            let mut seen = BTreeSet::new();
            for name in n.input.iter().filter(|s| !s.is_empty()).cloned().chain(implicit_inputs(n)) {
                if seen.insert(name.clone()) {
                    ix.consumers.entry(name).or_default().push(i);
                }
            }
        }
        ix.inputs = graph.input.iter().filter(|v| !ix.initializers.contains_key(&v.name)).map(|v| v.name.clone()).collect();
        ix.outputs = graph.output.iter().map(|v| v.name.clone()).collect();
        for v in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            ix.value_info.entry(v.name.clone()).or_insert_with(|| v.clone());
        }
        ix
    }

    /// The nodes reading `tensor` (empty if none).
    pub fn consumers_of(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    /// The node producing `tensor`, if a node does.
    pub fn producer_of(&self, tensor: &str) -> Option<usize> {
        self.producer.get(tensor).copied()
    }

    /// The initializer named `name`.
    pub fn initializer<'g>(&self, graph: &'g GraphProto, name: &str) -> Option<&'g TensorProto> {
        self.initializers.get(name).map(|&i| &graph.initializer[i])
    }

    /// True if `tensor` is a graph output.
    pub fn is_output(&self, tensor: &str) -> bool {
        self.outputs.contains(tensor)
    }

    /// Declared element type of `tensor` (from value infos or an initializer), if known.
    pub fn elem_type(&self, graph: &GraphProto, tensor: &str) -> Option<i32> {
        if let Some(t) = self.initializer(graph, tensor) {
            return Some(t.data_type);
        }
        match self.value_info.get(tensor)?.r#type.as_ref()?.value.as_ref()? {
            super::proto::type_proto::Value::TensorType(t) => Some(t.elem_type),
            _ => None,
        }
    }
}

/// The outer-scope tensors a node's subgraphs read (names used inside but not defined there).
pub fn implicit_inputs(node: &NodeProto) -> Vec<String> {
    let mut out = BTreeSet::new();
    for g in subgraphs(node) {
        collect_free(g, &HashSet::new(), &mut out);
    }
    out.into_iter().collect()
}

fn collect_free(g: &GraphProto, outer_defined: &HashSet<String>, out: &mut BTreeSet<String>) {
    let mut defined: HashSet<String> = outer_defined.clone();
    defined.extend(g.input.iter().map(|v| v.name.clone()));
    defined.extend(g.initializer.iter().map(|t| t.name.clone()));
    defined.extend(g.sparse_initializer.iter().filter_map(|s| s.values.as_ref().map(|v| v.name.clone())));
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(i) {
                out.insert(i.clone());
            }
        }
        for sg in subgraphs(n) {
            collect_free(sg, &defined, out);
        }
        defined.extend(n.output.iter().cloned());
    }
    for o in &g.output {
        if !defined.contains(&o.name) {
            out.insert(o.name.clone());
        }
    }
}

/// The subgraphs held in a node's attributes (If branches, Loop and Scan bodies).
pub fn subgraphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute.iter().flat_map(|a| a.g.iter().chain(a.graphs.iter()))
}

/// Mutable access to a node's subgraphs.
pub fn subgraphs_mut(node: &mut NodeProto) -> impl Iterator<Item = &mut GraphProto> {
    node.attribute.iter_mut().flat_map(|a| a.g.iter_mut().chain(a.graphs.iter_mut()))
}

/// Calls `f` on `graph` and on every graph nested in it, depth first, outer graph first.
pub fn for_each_graph_mut(graph: &mut GraphProto, f: &mut dyn FnMut(&mut GraphProto)) {
    f(graph);
    for n in &mut graph.node {
        for g in subgraphs_mut(n) {
            for_each_graph_mut(g, f);
        }
    }
}

/// Calls `f` on `graph` and on every graph nested in it.
pub fn for_each_graph<'g>(graph: &'g GraphProto, f: &mut dyn FnMut(&'g GraphProto)) {
    f(graph);
    for n in &graph.node {
        for g in subgraphs(n) {
            for_each_graph(g, f);
        }
    }
}

/// Node indices in an order where every node comes after the producers of its inputs.
/// Ties keep the file's order, so the result is deterministic. A cycle is an error.
pub fn topological_order(graph: &GraphProto) -> Result<Vec<usize>> {
    let ix = GraphIndex::new(graph);
    let n = graph.node.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.node.iter().enumerate() {
        let mut deps = BTreeSet::new();
        for name in node.input.iter().filter(|s| !s.is_empty()).cloned().chain(implicit_inputs(node)) {
            if let Some(p) = ix.producer_of(&name) {
                if p != i {
                    deps.insert(p);
                }
            }
        }
        indegree[i] = deps.len();
        for d in deps {
            users[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != n {
        let stuck = (0..n).find(|&i| indegree[i] > 0).map(|i| graph.node[i].name.clone()).unwrap_or_default();
        return Err(Error::InvalidModel(format!("the graph has a cycle (through node `{stuck}`)")));
    }
    Ok(order)
}

/// Reorders `graph.node` topologically (stable for graphs already in order).
pub fn sort_topologically(graph: &mut GraphProto) -> Result<()> {
    let order = topological_order(graph)?;
    let mut old: Vec<Option<NodeProto>> = std::mem::take(&mut graph.node).into_iter().map(Some).collect();
    graph.node = order.into_iter().filter_map(|i| old[i].take()).collect();
    Ok(())
}

/// Reads an int attribute.
pub fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).and_then(|a| a.i)
}

/// Reads a float attribute.
pub fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).and_then(|a| a.f)
}

/// Reads an ints attribute.
pub fn attr_ints<'n>(node: &'n NodeProto, name: &str) -> Option<&'n [i64]> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.as_slice())
}

/// Reads a string attribute.
pub fn attr_s<'n>(node: &'n NodeProto, name: &str) -> Option<&'n [u8]> {
    node.attribute.iter().find(|a| a.name == name).and_then(|a| a.s.as_deref())
}

/// A name not yet used in `taken`, built from `base`; records it as taken.
pub fn unique_name(taken: &mut HashSet<String>, base: &str) -> String {
    if taken.insert(base.to_string()) {
        return base.to_string();
    }
    let mut i = 1usize;
    loop {
        let cand = format!("{base}_{i}");
        if taken.insert(cand.clone()) {
            return cand;
        }
        i += 1;
    }
}

/// Every tensor and node name used in `graph` and its subgraphs, for [`unique_name`].
pub fn all_names(graph: &GraphProto) -> HashSet<String> {
    let mut names = HashSet::new();
    for_each_graph(graph, &mut |g| {
        names.extend(g.input.iter().chain(&g.output).chain(&g.value_info).map(|v| v.name.clone()));
        names.extend(g.initializer.iter().map(|t| t.name.clone()));
        for n in &g.node {
            names.extend(n.input.iter().chain(&n.output).cloned());
            names.insert(n.name.clone());
        }
    });
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::AttributeProto;

    fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sorts_and_finds_subgraph_reads() {
        let then_branch = GraphProto { node: vec![node("Relu", "r", &["a"], &["t"])], output: vec![ValueInfoProto { name: "t".into(), ..Default::default() }], ..Default::default() };
        let mut iff = node("If", "if", &["c"], &["y"]);
        iff.attribute.push(AttributeProto { name: "then_branch".into(), g: Some(then_branch), r#type: 5, ..Default::default() });
        let g = GraphProto { node: vec![iff, node("Neg", "n", &["x"], &["a"]), node("Id", "c", &["x"], &["c"])], ..Default::default() };
        let ix = GraphIndex::new(&g);
        assert_eq!(ix.consumers_of("a"), &[0]);
        let order = topological_order(&g).unwrap();
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn cycle_is_an_error() {
        let g = GraphProto { node: vec![node("A", "a", &["y"], &["x"]), node("B", "b", &["x"], &["y"])], ..Default::default() };
        assert!(topological_order(&g).unwrap_err().to_string().contains("cycle"));
    }
}
