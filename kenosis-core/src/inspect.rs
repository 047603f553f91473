//! `kenosis inspect`: what a model holds — producer, opsets, signature, op histogram, weights,
//! and whether it is already quantized.

use crate::onnx::graph::{for_each_graph, subgraphs};
use crate::onnx::proto::{
    data_type as dt, tensor_shape_proto::dimension::Value as DimValue, type_proto, GraphProto, NodeProto, TensorProto,
    ValueInfoProto,
};
use crate::onnx::{tensor, Model};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How many of the largest tensors an [`Inspection`] lists.
pub const LARGEST_TENSORS: usize = 10;

/// Op types whose presence means a model is already quantized.
pub const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearAveragePool",
    "QGemm",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
];

/// One dimension of a declared shape: a size, a symbolic name, or `"?"` when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DimDesc {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic dimension by name; `"?"` when the model gives neither a size nor a name
    /// (or a negative size, as some exporters write).
    Named(String),
}

impl std::fmt::Display for DimDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DimDesc::Fixed(v) => write!(f, "{v}"),
            DimDesc::Named(s) => f.write_str(s),
        }
    }
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDesc {
    /// Its name.
    pub name: String,
    /// Element type (`float32`, `int64`, ...), or the kind of a non-tensor value.
    pub dtype: String,
    /// Its shape; `None` when the model declares no shape (any rank).
    pub shape: Option<Vec<DimDesc>>,
}

impl IoDesc {
    /// Describes a value info.
    pub fn from_value_info(v: &ValueInfoProto) -> IoDesc {
        let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => (
                dt::name(t.elem_type).to_string(),
                t.shape.as_ref().map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(DimValue::DimValue(n)) if *n >= 0 => DimDesc::Fixed(*n),
                            Some(DimValue::DimParam(p)) if !p.is_empty() => DimDesc::Named(p.clone()),
                            _ => DimDesc::Named("?".into()),
                        })
                        .collect()
                }),
            ),
            Some(type_proto::Value::SequenceType(_)) => ("sequence".into(), None),
            Some(type_proto::Value::MapType(_)) => ("map".into(), None),
            Some(type_proto::Value::OptionalType(_)) => ("optional".into(), None),
            Some(type_proto::Value::SparseTensorType(t)) => (format!("sparse {}", dt::name(t.elem_type)), None),
            Some(type_proto::Value::OpaqueType(_)) => ("opaque".into(), None),
            None => ("undefined".into(), None),
        };
        IoDesc { name: v.name.clone(), dtype, shape }
    }

    /// `name: float32 [N, 3, 224, 224]`.
    pub fn human(&self) -> String {
        match &self.shape {
            Some(s) => {
                let dims: Vec<String> = s.iter().map(ToString::to_string).collect();
                format!("{}: {} [{}]", self.name, self.dtype, dims.join(", "))
            }
            None => format!("{}: {} (shape not declared)", self.name, self.dtype),
        }
    }
}

/// One weight tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorDesc {
    /// Its name (a Constant's output name for Constant values).
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Its dims.
    pub shape: Vec<i64>,
    /// Element count.
    pub elements: u64,
    /// Bytes of data.
    pub bytes: u64,
    /// `initializer` or `Constant`.
    pub stored_in: String,
}

/// What `kenosis inspect` reports. Every map is sorted, so the JSON is stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    /// The file inspected, when known.
    pub path: Option<String>,
    /// `producer_name producer_version`, empty when the exporter left it blank.
    pub producer: String,
    /// The ONNX IR version.
    pub ir_version: i64,
    /// Imported opsets: domain (`ai.onnx` for the default one) → version.
    pub opset: BTreeMap<String, i64>,
    /// Graph inputs the caller feeds (initializers listed as inputs are left out).
    pub inputs: Vec<IoDesc>,
    /// Graph outputs.
    pub outputs: Vec<IoDesc>,
    /// Op type → count in the main graph.
    pub ops: BTreeMap<String, usize>,
    /// Op type → count inside subgraphs (If/Loop/Scan bodies, nested included).
    pub subgraph_ops: BTreeMap<String, usize>,
    /// Nodes in the main graph.
    pub nodes: usize,
    /// Nodes inside subgraphs.
    pub subgraph_nodes: usize,
    /// Weight elements: initializers and Constant values of float and small-integer types
    /// (int64 and bool tensors are shapes and indices, not parameters), subgraphs included.
    pub params: u64,
    /// Size of the model file in bytes (the serialized size for a model built in memory).
    pub bytes: u64,
    /// Bytes held by all initializers and Constant values.
    pub weight_bytes: u64,
    /// Element type → number of initializers of that type (main graph and subgraphs).
    pub initializer_dtypes: BTreeMap<String, usize>,
    /// Number of initializers.
    pub initializers: usize,
    /// Number of Constant nodes holding a tensor.
    pub constants: usize,
    /// The largest weight tensors, biggest first.
    pub largest_tensors: Vec<TensorDesc>,
    /// True when most weight bytes sit in Constant nodes rather than initializers (PaddlePaddle exports).
    pub weights_in_constants: bool,
    /// True when the model already holds quantization ops.
    pub quantized: bool,
    /// Quantization op type → count, all graphs.
    pub quantized_ops: BTreeMap<String, usize>,
    /// Keys of the model's metadata_props.
    pub metadata_keys: Vec<String>,
}

/// True for types counted as parameters.
fn is_param_type(t: i32) -> bool {
    !matches!(t, dt::INT64 | dt::BOOL | dt::STRING | dt::UNDEFINED | dt::UINT64)
}

fn tensor_desc(t: &TensorProto, name: &str, stored_in: &str) -> TensorDesc {
    let elements = tensor::len(t).unwrap_or(0) as u64;
    let bytes = match tensor::elem_size(t.data_type) {
        Some(s) => elements * s as u64,
        None => t.raw_data.len() as u64 + t.string_data.iter().map(|s| s.len() as u64).sum::<u64>(),
    };
    TensorDesc {
        name: name.to_string(),
        dtype: dt::name(t.data_type).to_string(),
        shape: t.dims.clone(),
        elements,
        bytes,
        stored_in: stored_in.to_string(),
    }
}

/// The tensor a Constant node holds, if it holds one in its `value` attribute.
pub fn constant_value(n: &NodeProto) -> Option<&TensorProto> {
    if n.op_type != "Constant" || !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return None;
    }
    n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())
}

fn count_ops(g: &GraphProto, into: &mut BTreeMap<String, usize>) -> usize {
    for n in &g.node {
        *into.entry(n.op_type.clone()).or_default() += 1;
    }
    g.node.len()
}

impl Inspection {
    /// Inspects `model`; `file_bytes` is the size of its file (pass `None` to use the serialized size).
    pub fn new(model: &Model, file_bytes: Option<u64>) -> Inspection {
        let p = &model.proto;
        let g = model.graph();
        let producer = [p.producer_name.trim(), p.producer_version.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let opset = p
            .opset_import
            .iter()
            .map(|o| (if o.domain.is_empty() { "ai.onnx".to_string() } else { o.domain.clone() }, o.version))
            .collect();
        let init_names: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs =
            g.input.iter().filter(|v| !init_names.contains(v.name.as_str())).map(IoDesc::from_value_info).collect();
        let outputs = g.output.iter().map(IoDesc::from_value_info).collect();

        let mut ops = BTreeMap::new();
        let nodes = count_ops(g, &mut ops);
        let mut subgraph_ops = BTreeMap::new();
        let mut subgraph_nodes = 0;
        for n in &g.node {
            for sg in subgraphs(n) {
                for_each_graph(sg, &mut |inner| subgraph_nodes += count_ops(inner, &mut subgraph_ops));
            }
        }

        let mut tensors = Vec::new();
        let mut initializer_dtypes = BTreeMap::new();
        let (mut initializers, mut constants) = (0, 0);
        let mut quantized_ops = BTreeMap::new();
        for_each_graph(g, &mut |gr| {
            for t in &gr.initializer {
                initializers += 1;
                *initializer_dtypes.entry(dt::name(t.data_type).to_string()).or_default() += 1;
                tensors.push((tensor_desc(t, &t.name, "initializer"), t.data_type));
            }
            for n in &gr.node {
                if let Some(t) = constant_value(n) {
                    constants += 1;
                    let name = n.output.first().map(String::as_str).unwrap_or(&n.name);
                    tensors.push((tensor_desc(t, name, "Constant"), t.data_type));
                }
                if QUANTIZED_OPS.contains(&n.op_type.as_str()) {
                    *quantized_ops.entry(n.op_type.clone()).or_default() += 1;
                }
            }
        });
        let params = tensors.iter().filter(|(_, ty)| is_param_type(*ty)).map(|(t, _)| t.elements).sum();
        let mut tensors: Vec<TensorDesc> = tensors.into_iter().map(|(t, _)| t).collect();
        let weight_bytes: u64 = tensors.iter().map(|t| t.bytes).sum();
        let constant_bytes: u64 = tensors.iter().filter(|t| t.stored_in == "Constant").map(|t| t.bytes).sum();
        let weights_in_constants = constant_bytes > 0 && constant_bytes * 2 > weight_bytes;
        // Biggest first; ties by name so the order never depends on the file's layout alone.
        tensors.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        tensors.truncate(LARGEST_TENSORS);
        let bytes = file_bytes.unwrap_or_else(|| prost::Message::encoded_len(p) as u64);
        let mut metadata_keys: Vec<String> = p.metadata_props.iter().map(|e| e.key.clone()).collect();
        metadata_keys.sort();
        Inspection {
            path: model.path.as_ref().map(|p| p.display().to_string()),
            producer,
            ir_version: p.ir_version,
            opset,
            inputs,
            outputs,
            ops,
            subgraph_ops,
            nodes,
            subgraph_nodes,
            params,
            bytes,
            weight_bytes,
            initializer_dtypes,
            initializers,
            constants,
            largest_tensors: tensors,
            weights_in_constants,
            quantized: !quantized_ops.is_empty(),
            quantized_ops,
            metadata_keys,
        }
    }

    /// A readable multi-line report.
    pub fn human(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.path {
            let _ = writeln!(s, "model:       {p}");
        }
        let _ =
            writeln!(s, "producer:    {}", if self.producer.is_empty() { "(not recorded)" } else { &self.producer });
        let opsets: Vec<String> = self.opset.iter().map(|(d, v)| format!("{d} {v}")).collect();
        let _ = writeln!(s, "IR version:  {}   opsets: {}", self.ir_version, opsets.join(", "));
        let _ = writeln!(s, "size:        {} ({} in weights)", human_bytes(self.bytes), human_bytes(self.weight_bytes));
        let _ = writeln!(s, "parameters:  {} ({})", self.params, human_count(self.params));
        let _ = writeln!(s, "inputs:");
        for io in &self.inputs {
            let _ = writeln!(s, "  {}", io.human());
        }
        let _ = writeln!(s, "outputs:");
        for io in &self.outputs {
            let _ = writeln!(s, "  {}", io.human());
        }
        let _ = writeln!(s, "ops ({} nodes in the main graph):", self.nodes);
        write_histogram(&mut s, &self.ops);
        if !self.subgraph_ops.is_empty() {
            let _ = writeln!(s, "ops inside subgraphs ({} nodes):", self.subgraph_nodes);
            write_histogram(&mut s, &self.subgraph_ops);
        }
        let dtypes: Vec<String> = self.initializer_dtypes.iter().map(|(d, n)| format!("{d} ×{n}")).collect();
        let _ = writeln!(
            s,
            "weights:     {} initializers ({}), {} Constant nodes{}",
            self.initializers,
            if dtypes.is_empty() { "none".to_string() } else { dtypes.join(", ") },
            self.constants,
            if self.weights_in_constants { " — weights live in Constant nodes" } else { "" }
        );
        if !self.largest_tensors.is_empty() {
            let _ = writeln!(s, "largest tensors:");
            for t in &self.largest_tensors {
                let dims: Vec<String> = t.shape.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    s,
                    "  {:>10}  {} {} [{}] ({})",
                    human_bytes(t.bytes),
                    t.name,
                    t.dtype,
                    dims.join(", "),
                    t.stored_in
                );
            }
        }
        if self.quantized {
            let q: Vec<String> = self.quantized_ops.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
            let _ = writeln!(s, "quantized:   yes ({})", q.join(", "));
        } else {
            let _ = writeln!(s, "quantized:   no");
        }
        if !self.metadata_keys.is_empty() {
            let _ = writeln!(s, "metadata:    {}", self.metadata_keys.join(", "));
        }
        s
    }
}

fn write_histogram(s: &mut String, h: &BTreeMap<String, usize>) {
    // Most frequent first, then by name, for reading; the JSON keeps the sorted map.
    let mut v: Vec<(&String, &usize)> = h.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut line = String::from(" ");
    for (op, n) in v {
        let item = format!(" {op} {n}");
        if line.len() + item.len() > 100 {
            let _ = writeln!(s, "{line}");
            line = String::from(" ");
        }
        line.push_str(&item);
    }
    if !line.trim().is_empty() {
        let _ = writeln!(s, "{line}");
    }
}

/// `12.3 MB`-style sizes (powers of 1000, like file managers).
pub fn human_bytes(b: u64) -> String {
    if b < 1000 {
        format!("{b} B")
    } else if b < 1_000_000 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else if b < 1_000_000_000 {
        format!("{:.2} MB", b as f64 / 1e6)
    } else {
        format!("{:.2} GB", b as f64 / 1e9)
    }
}

fn human_count(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1} k", n as f64 / 1e3)
    } else {
        format!("{:.2} M", n as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{attr_g, attr_t, node, ModelBuilder, D};

    #[test]
    fn counts_ops_params_and_signature() {
        let w = tensor::from_f32("w", &[4, 3, 3, 3], &[0.5; 108]);
        let shape = tensor::from_i64("s", &[2], &[1, -1]);
        let then_g = ModelBuilder::new(13).node(node("Relu", "r", &["y"], &["t"], vec![])).graph();
        let m = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &[D::S("N"), 3.into(), D::S(""), 8.into()])
            .initializer(w)
            .node(node("Constant", "c", &[], &["s"], vec![attr_t("value", shape)]))
            .node(node("Conv", "conv", &["x", "w"], &["y"], vec![]))
            .node(node("Reshape", "rs", &["y", "s"], &["z"], vec![]))
            .node(node("If", "if", &["cond"], &["o"], vec![attr_g("then_branch", then_g)]))
            .output("z", dt::FLOAT, &[D::S("N"), D::N(-1)])
            .build();
        let i = Inspection::new(&m, None);
        assert_eq!(i.ops.get("Conv"), Some(&1));
        assert_eq!(i.ops.get("Relu"), None);
        assert_eq!(i.subgraph_ops.get("Relu"), Some(&1));
        assert_eq!(i.params, 108, "int64 shape tensors are not parameters");
        assert_eq!(i.weight_bytes, 108 * 4 + 16);
        assert_eq!(i.opset.get("ai.onnx"), Some(&13));
        let dims = i.inputs[0].shape.clone().unwrap();
        assert_eq!(
            dims,
            vec![DimDesc::Named("N".into()), DimDesc::Fixed(3), DimDesc::Named("?".into()), DimDesc::Fixed(8)]
        );
        assert_eq!(i.outputs[0].shape.as_ref().unwrap()[1], DimDesc::Named("?".into()));
        assert!(!i.quantized && !i.weights_in_constants);
        assert_eq!(i.largest_tensors[0].name, "w");
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["inputs"][0]["shape"][0], "N");
        assert_eq!(json["inputs"][0]["shape"][1], 3);
        assert!(i.human().contains("Conv 1"));
    }

    #[test]
    fn sees_quantization_ops() {
        let m = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &[4.into()])
            .node(node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]))
            .node(node("DequantizeLinear", "dq", &["xq", "s", "z"], &["y"], vec![]))
            .output("y", dt::FLOAT, &[4.into()])
            .build();
        let i = Inspection::new(&m, Some(10));
        assert!(i.quantized);
        assert_eq!(i.quantized_ops.len(), 2);
        assert_eq!(i.bytes, 10);
    }
}
