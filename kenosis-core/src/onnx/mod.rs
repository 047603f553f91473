//! The ONNX model layer: protobuf messages, load/save, tensors, the graph index and passes.

pub mod builder;
pub mod graph;
pub mod model;
pub mod passes;
pub mod proto;
pub mod tensor;

pub use model::{Model, SaveOptions};
