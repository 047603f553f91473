//! A small builder for ONNX models in code: test fixtures, and graphs Kenosis writes itself.

use super::proto::{
    attribute_type as at, tensor_shape_proto::{dimension::Value as DimValue, Dimension}, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::Model;

/// A dimension in a declared shape.
#[derive(Debug, Clone)]
pub enum D {
    /// Fixed size.
    N(i64),
    /// Named dynamic dim.
    S(&'static str),
}

impl From<i64> for D {
    fn from(v: i64) -> D {
        D::N(v)
    }
}

/// A tensor value info with element type and shape.
pub fn value_info(name: &str, elem_type: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::N(v) => DimValue::DimValue(*v),
                D::S(s) => DimValue::DimParam(s.to_string()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type, shape: Some(TensorShapeProto { dim }) })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

/// Attribute constructors.
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INT, i: Some(v), ..Default::default() }
}
/// A float attribute.
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::FLOAT, f: Some(v), ..Default::default() }
}
/// An ints attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INTS, ints: v.to_vec(), ..Default::default() }
}
/// A string attribute.
pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::STRING, s: Some(v.as_bytes().to_vec()), ..Default::default() }
}
/// A tensor attribute.
pub fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::TENSOR, t: Some(t), ..Default::default() }
}
/// A graph attribute.
pub fn attr_g(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::GRAPH, g: Some(g), ..Default::default() }
}

/// A node.
pub fn node(op_type: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Builds a model graph step by step.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    graph: GraphProto,
    opset: i64,
}

impl ModelBuilder {
    /// A model importing the default domain at `opset`.
    pub fn new(opset: i64) -> Self {
        ModelBuilder { graph: GraphProto { name: "kenosis_fixture".into(), ..Default::default() }, opset }
    }
    /// Adds a graph input.
    pub fn input(mut self, name: &str, elem_type: i32, dims: &[D]) -> Self {
        self.graph.input.push(value_info(name, elem_type, dims));
        self
    }
    /// Adds a graph output.
    pub fn output(mut self, name: &str, elem_type: i32, dims: &[D]) -> Self {
        self.graph.output.push(value_info(name, elem_type, dims));
        self
    }
    /// Adds an initializer.
    pub fn initializer(mut self, t: TensorProto) -> Self {
        self.graph.initializer.push(t);
        self
    }
    /// Adds a node.
    pub fn node(mut self, n: NodeProto) -> Self {
        self.graph.node.push(n);
        self
    }
    /// The graph so far.
    pub fn graph(self) -> GraphProto {
        self.graph
    }
    /// Finishes the model (IR version 8).
    pub fn build(self) -> Model {
        Model::new(ModelProto {
            ir_version: 8,
            producer_name: "kenosis-fixture".into(),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: self.opset }],
            graph: Some(self.graph),
            ..Default::default()
        })
    }
}

/// Deterministic pseudo-random numbers (SplitMix64): fixtures and synthetic calibration data
/// must be the same on every machine and with every dependency version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
    /// `n` values uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}
