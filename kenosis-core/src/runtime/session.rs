//! One ONNX Runtime session with the settings Kenosis cares about.

use crate::error::{Error, Result};
use ndarray::ArrayD;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use std::path::PathBuf;

/// Graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Optimization {
    /// No graph rewrites: the graph runs as written (calibration uses this).
    Disable,
    /// Constant folding and redundant node removal.
    Basic,
    /// Basic plus fusions, including QDQ to QLinear kernels.
    Extended,
    /// Everything, including layout changes (ORT's default).
    #[default]
    All,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads (1 gives thread-count-independent results).
    pub threads: usize,
    /// Graph optimisation level.
    pub optimization: Optimization,
    /// Where ORT writes its optimised graph, to check which kernels it fused.
    pub optimized_model_path: Option<PathBuf>,
    /// Intra-op spinning; off so sessions timed side by side don't steal each other's cores.
    pub spinning: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { threads: 1, optimization: Optimization::All, optimized_model_path: None, spinning: false }
    }
}

/// A dimension of a model input or output as ORT reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named dynamic dimension.
    Symbolic(String),
    /// A dynamic dimension with no name.
    Unknown,
}

/// A model input or output.
#[derive(Debug, Clone)]
pub struct IoInfo {
    /// Its name.
    pub name: String,
    /// ONNX data type (see [`crate::onnx::proto::data_type`]); 0 for non-tensor values.
    pub data_type: i32,
    /// Its shape.
    pub dims: Vec<Dim>,
}

/// An input value.
#[derive(Debug, Clone)]
pub enum Feed {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
    Bool(ArrayD<bool>),
}

impl Feed {
    /// The shape of the value.
    pub fn shape(&self) -> &[usize] {
        match self {
            Feed::F32(a) => a.shape(),
            Feed::I64(a) => a.shape(),
            Feed::I32(a) => a.shape(),
            Feed::U8(a) => a.shape(),
            Feed::Bool(a) => a.shape(),
        }
    }
}

/// A loaded model, ready to run.
pub struct Session {
    inner: ort::session::Session,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("inputs", &self.inputs).field("outputs", &self.outputs).finish()
    }
}

fn elem_to_onnx(t: TensorElementType) -> i32 {
    use crate::onnx::proto::data_type as dt;
    match t {
        TensorElementType::Float32 => dt::FLOAT,
        TensorElementType::Uint8 => dt::UINT8,
        TensorElementType::Int8 => dt::INT8,
        TensorElementType::Uint16 => dt::UINT16,
        TensorElementType::Int16 => dt::INT16,
        TensorElementType::Int32 => dt::INT32,
        TensorElementType::Int64 => dt::INT64,
        TensorElementType::String => dt::STRING,
        TensorElementType::Bool => dt::BOOL,
        TensorElementType::Float16 => dt::FLOAT16,
        TensorElementType::Float64 => dt::DOUBLE,
        TensorElementType::Uint32 => dt::UINT32,
        TensorElementType::Uint64 => dt::UINT64,
        TensorElementType::Bfloat16 => dt::BFLOAT16,
        _ => dt::UNDEFINED,
    }
}

fn io_info(o: &ort::value::Outlet) -> IoInfo {
    match o.dtype() {
        ValueType::Tensor { ty, shape, dimension_symbols } => IoInfo {
            name: o.name().to_string(),
            data_type: elem_to_onnx(*ty),
            dims: shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d >= 0 {
                        Dim::Fixed(d)
                    } else {
                        match dimension_symbols.get(i).filter(|s| !s.is_empty()) {
                            Some(s) => Dim::Symbolic(s.clone()),
                            None => Dim::Unknown,
                        }
                    }
                })
                .collect(),
        },
        _ => IoInfo { name: o.name().to_string(), data_type: 0, dims: Vec::new() },
    }
}

impl Session {
    /// Loads a model from its serialized bytes.
    pub fn from_bytes(bytes: &[u8], opts: &SessionOptions) -> Result<Session> {
        let env = super::environment()?;
        let ctx = "creating a session";
        let level = match opts.optimization {
            Optimization::Disable => GraphOptimizationLevel::Disable,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Extended => GraphOptimizationLevel::Level2,
            Optimization::All => GraphOptimizationLevel::All,
        };
        let mut b = ort::session::Session::builder(env)
            .map_err(|e| Error::ort(ctx, e))?
            .with_intra_threads(opts.threads.max(1))
            .map_err(|e| Error::ort(ctx, e))?
            .with_inter_threads(1)
            .map_err(|e| Error::ort(ctx, e))?
            .with_intra_op_spinning(opts.spinning)
            .map_err(|e| Error::ort(ctx, e))?
            .with_inter_op_spinning(false)
            .map_err(|e| Error::ort(ctx, e))?
            .with_optimization_level(level)
            .map_err(|e| Error::ort(ctx, e))?
            // Failures come back as errors with ORT's message; its own log lines on stderr would
            // only repeat them (and spam shape probing).
            .with_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| Error::ort(ctx, e))?;
        if let Some(p) = &opts.optimized_model_path {
            b = b.with_optimized_model_path(p).map_err(|e| Error::ort(ctx, e))?;
        }
        let inner = b.commit_from_memory(bytes).map_err(|e| Error::ort("loading the model", e))?;
        let inputs = inner.inputs().iter().map(io_info).collect();
        let outputs = inner.outputs().iter().map(io_info).collect();
        Ok(Session { inner, inputs, outputs })
    }

    /// Loads a model in memory.
    pub fn from_model(model: &crate::onnx::Model, opts: &SessionOptions) -> Result<Session> {
        Session::from_bytes(&model.to_bytes()?, opts)
    }

    /// The model's inputs.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// The model's outputs.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// Runs the model on named inputs and returns every output, converted to f32 (integer and
    /// bool outputs included), in the model's output order.
    pub fn run(&mut self, feeds: &[(String, Feed)]) -> Result<Vec<(String, ArrayD<f32>)>> {
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(feeds.len());
        for (name, feed) in feeds {
            let ctx = || format!("building input `{name}`");
            let v: DynValue = match feed {
                Feed::F32(a) => Tensor::from_array(a.clone()).map_err(|e| Error::ort(ctx(), e))?.into_dyn(),
                Feed::I64(a) => Tensor::from_array(a.clone()).map_err(|e| Error::ort(ctx(), e))?.into_dyn(),
                Feed::I32(a) => Tensor::from_array(a.clone()).map_err(|e| Error::ort(ctx(), e))?.into_dyn(),
                Feed::U8(a) => Tensor::from_array(a.clone()).map_err(|e| Error::ort(ctx(), e))?.into_dyn(),
                Feed::Bool(a) => Tensor::from_array(a.clone()).map_err(|e| Error::ort(ctx(), e))?.into_dyn(),
            };
            values.push((name.clone(), v));
        }
        // Inputs are passed by reference and outlive the outputs: ORT may return a graph input
        // that is also a graph output as a view of the input buffer.
        let refs: Vec<(&str, &DynValue)> = values.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let outputs = self.inner.run(refs).map_err(|e| Error::ort("running the model", e))?;
        let mut result = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            result.push((name.to_string(), to_f32(name, &value)?));
        }
        Ok(result)
    }
}

fn to_f32(name: &str, v: &ort::value::DynValueRef<'_>) -> Result<ArrayD<f32>> {
    let ctx = || format!("reading output `{name}`");
    macro_rules! conv {
        ($t:ty) => {
            v.try_extract_array::<$t>().map_err(|e| Error::ort(ctx(), e))?.mapv(|x| x as f32)
        };
    }
    let ty = match v.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(Error::Unsupported(format!("output `{name}` is a {other:?}, not a tensor"))),
    };
    Ok(match ty {
        TensorElementType::Float32 => v.try_extract_array::<f32>().map_err(|e| Error::ort(ctx(), e))?.to_owned(),
        TensorElementType::Float64 => conv!(f64),
        TensorElementType::Int64 => conv!(i64),
        TensorElementType::Int32 => conv!(i32),
        TensorElementType::Int16 => conv!(i16),
        TensorElementType::Int8 => conv!(i8),
        TensorElementType::Uint8 => conv!(u8),
        TensorElementType::Uint16 => conv!(u16),
        TensorElementType::Uint32 => conv!(u32),
        TensorElementType::Uint64 => conv!(u64),
        TensorElementType::Bool => v.try_extract_array::<bool>().map_err(|e| Error::ort(ctx(), e))?.mapv(|x| x as u8 as f32),
        TensorElementType::Float16 => {
            v.try_extract_array::<half::f16>().map_err(|e| Error::ort(ctx(), e))?.mapv(|x| x.to_f32())
        }
        TensorElementType::Bfloat16 => {
            v.try_extract_array::<half::bf16>().map_err(|e| Error::ort(ctx(), e))?.mapv(|x| x.to_f32())
        }
        other => return Err(Error::Unsupported(format!("output `{name}` has element type {other:?}"))),
    })
}
