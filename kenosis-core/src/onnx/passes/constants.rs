//! Constant nodes become initializers, so weights are visible to the quantizer (PaddlePaddle
//! exports keep every weight in a Constant node).

use super::util::is_op;
use crate::error::{Error, Result};
use crate::onnx::graph::subgraphs_mut;
use crate::onnx::proto::{data_type as dt, GraphProto, NodeProto, SparseTensorProto, TensorProto};
use crate::onnx::{tensor, Model};

/// What [`extract_constants`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConstantsReport {
    /// Constant nodes turned into initializers (dense or sparse), in every graph.
    pub extracted: usize,
    /// Constant nodes kept because their output is a graph output.
    pub kept: usize,
}

/// The value a Constant node holds.
#[allow(clippy::large_enum_variant)] // short-lived, one at a time
pub(crate) enum ConstValue {
    Dense(TensorProto),
    Sparse(Box<SparseTensorProto>),
}

/// Reads the value of a Constant node, named after its output.
pub(crate) fn constant_value(node: &NodeProto) -> Result<ConstValue> {
    let name = node.output.first().cloned().unwrap_or_default();
    let err = |reason: String| Error::Node { node: node.name.clone(), op_type: node.op_type.clone(), reason };
    let a = node
        .attribute
        .iter()
        .find(|a| !a.ref_attr_name.is_empty() || a.name.starts_with("value") || a.name == "sparse_value")
        .ok_or_else(|| err("a Constant without a value attribute; re-export the model".into()))?;
    if !a.ref_attr_name.is_empty() {
        return Err(err("the Constant refers to a function attribute, which only exists inside functions".into()));
    }
    let t = match a.name.as_str() {
        "value" => {
            let mut t = a.t.clone().ok_or_else(|| err("`value` holds no tensor".into()))?;
            t.name = name;
            t
        }
        "value_float" => tensor::from_f32(&name, &[], &[a.f.unwrap_or(0.0)]),
        "value_floats" => tensor::from_f32(&name, &[a.floats.len() as i64], &a.floats),
        "value_int" => tensor::from_i64(&name, &[], &[a.i.unwrap_or(0)]),
        "value_ints" => tensor::from_i64(&name, &[a.ints.len() as i64], &a.ints),
        "value_string" => TensorProto {
            name,
            data_type: dt::STRING,
            string_data: vec![a.s.clone().unwrap_or_default()],
            ..Default::default()
        },
        "value_strings" => TensorProto {
            name,
            dims: vec![a.strings.len() as i64],
            data_type: dt::STRING,
            string_data: a.strings.clone(),
            ..Default::default()
        },
        "sparse_value" => {
            let mut s = a.sparse_tensor.clone().ok_or_else(|| err("`sparse_value` holds no tensor".into()))?;
            let values = s.values.get_or_insert_with(TensorProto::default);
            values.name = name;
            return Ok(ConstValue::Sparse(Box::new(s)));
        }
        other => return Err(err(format!("unknown Constant attribute `{other}`"))),
    };
    Ok(ConstValue::Dense(t))
}

/// Turns every Constant node into an initializer of the graph it sits in (main graph and
/// If/Loop/Scan bodies alike). A Constant whose output is a graph output stays, since an
/// initializer can't be one in every runtime. Sparse values become sparse initializers.
pub fn extract_constants(model: &mut Model) -> Result<ConstantsReport> {
    let mut report = ConstantsReport::default();
    extract_in(model.graph_mut(), &mut report)?;
    if report.extracted > 0 && model.proto.ir_version < 4 {
        // Before IR 4 every initializer also had to be a graph input; IR 4 only relaxed that.
        model.proto.ir_version = 4;
    }
    Ok(report)
}

fn extract_in(g: &mut GraphProto, report: &mut ConstantsReport) -> Result<()> {
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            extract_in(sg, report)?;
        }
    }
    let outputs = super::util::output_names(g);
    // Read every value first, so an error leaves the graph as it was.
    let mut values = Vec::with_capacity(g.node.len());
    for n in &g.node {
        let extract = is_op(n, "Constant") && n.output.len() == 1;
        if extract && outputs.contains(&n.output[0]) {
            report.kept += 1;
            values.push(None);
        } else if extract {
            values.push(Some(constant_value(n)?));
        } else {
            values.push(None);
        }
    }
    let mut kept = Vec::with_capacity(g.node.len());
    for (n, v) in std::mem::take(&mut g.node).into_iter().zip(values) {
        match v {
            Some(ConstValue::Dense(t)) => g.initializer.push(t),
            Some(ConstValue::Sparse(s)) => g.sparse_initializer.push(*s),
            None => {
                kept.push(n);
                continue;
            }
        }
        report.extracted += 1;
    }
    g.node = kept;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{attr_f, attr_ints, node, ModelBuilder};
    use crate::onnx::proto::{attribute_type as at, AttributeProto};

    fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: at::FLOATS, floats: v.to_vec(), ..Default::default() }
    }

    #[test]
    fn every_value_kind_becomes_an_initializer() {
        let sparse = SparseTensorProto {
            values: Some(tensor::from_f32("", &[2], &[1.0, 2.0])),
            indices: Some(tensor::from_i64("", &[2], &[0, 3])),
            dims: vec![4],
        };
        let mut m = ModelBuilder::new(13)
            .node(node("Constant", "a", &[], &["a"], vec![attr_f("value_float", 2.5)]))
            .node(node("Constant", "b", &[], &["b"], vec![floats("value_floats", &[1.0, 2.0])]))
            .node(node("Constant", "c", &[], &["c"], vec![attr_ints("value_ints", &[4, 5, 6])]))
            .node(node(
                "Constant",
                "d",
                &[],
                &["d"],
                vec![AttributeProto {
                    name: "sparse_value".into(),
                    r#type: at::SPARSE_TENSOR,
                    sparse_tensor: Some(sparse),
                    ..Default::default()
                }],
            ))
            .node(node("Add", "add", &["a", "b"], &["y"], vec![]))
            .build();
        let r = extract_constants(&mut m).unwrap();
        assert_eq!(r, ConstantsReport { extracted: 4, kept: 0 });
        let g = m.graph();
        assert_eq!(g.node.len(), 1);
        assert_eq!(tensor::to_f32(&g.initializer[0]).unwrap(), vec![2.5]);
        assert!(g.initializer[0].dims.is_empty(), "value_float is a scalar");
        assert_eq!(g.initializer[1].dims, vec![2]);
        assert_eq!(tensor::to_i64(&g.initializer[2]).unwrap(), vec![4, 5, 6]);
        assert_eq!(g.sparse_initializer[0].values.as_ref().unwrap().name, "d");
    }

    #[test]
    fn a_constant_without_value_is_an_error_and_changes_nothing() {
        let mut m = ModelBuilder::new(13)
            .node(node("Constant", "ok", &[], &["a"], vec![attr_f("value_float", 1.0)]))
            .node(node("Constant", "broken", &[], &["b"], vec![]))
            .build();
        let before = m.clone();
        let e = extract_constants(&mut m).unwrap_err().to_string();
        assert!(e.contains("`broken`") && e.contains("value"), "{e}");
        assert_eq!(m, before);
    }
}
