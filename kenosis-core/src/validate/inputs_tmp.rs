//! TEMPORARY stand-in for `calibrate::{InputConfig, Samples, load_samples}` until the calibration
//! module lands on main; removed then, so one input loader remains.

use crate::error::{Error, Result};
use crate::onnx::builder::Rng;
use crate::onnx::graph::GraphIndex;
use crate::onnx::proto::{data_type as dt, tensor_shape_proto::dimension::Value as DimValue, type_proto};
use crate::onnx::Model;
use crate::runtime::Feed;
use ndarray::ArrayD;
use std::path::PathBuf;

/// Where samples come from (only synthetic in this stand-in).
#[derive(Debug, Clone)]
pub enum Source {
    /// Seeded uniform [0, 1) inputs.
    Synthetic { seed: u64 },
}

/// Which samples to feed.
#[derive(Debug, Clone)]
pub struct InputConfig {
    /// Where they come from.
    pub source: Source,
    /// How many (default 4).
    pub samples: Option<usize>,
    /// Fixed shapes for inputs with dynamic dims.
    pub shapes: Vec<(String, Vec<i64>)>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { source: Source::Synthetic { seed: 0 }, samples: None, shapes: Vec::new() }
    }
}

/// Loaded samples.
#[derive(Debug, Clone)]
pub struct Samples {
    /// One feed list per sample.
    pub feeds: Vec<Vec<(String, Feed)>>,
    /// Notes.
    pub notes: Vec<String>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// Synthetic samples for every model input.
pub fn load_samples(model: &Model, cfg: &InputConfig) -> Result<Samples> {
    let Source::Synthetic { seed } = cfg.source;
    let n = cfg.samples.unwrap_or(4);
    let g = model.graph();
    let ix = GraphIndex::new(g);
    let mut shapes = Vec::new();
    for name in &ix.inputs {
        let vi = ix.value_info.get(name).ok_or_else(|| Error::Input { name: name.clone(), reason: "no type".into() })?;
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(Error::Input { name: name.clone(), reason: "not a tensor".into() });
        };
        let dims: Vec<usize> = if let Some((_, s)) = cfg.shapes.iter().find(|(n, _)| n == name) {
            s.iter().map(|&d| d.max(1) as usize).collect()
        } else {
            let d = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
            d.iter()
                .enumerate()
                .map(|(i, d)| match d.value {
                    Some(DimValue::DimValue(v)) if v > 0 => v as usize,
                    _ if i == 0 => 1,
                    _ if i == 1 && d_len(t) == 4 => 3,
                    _ => 32,
                })
                .collect()
        };
        shapes.push((name.clone(), t.elem_type, dims));
    }
    let mut feeds = Vec::new();
    for i in 0..n {
        let mut rng = Rng::new(seed.wrapping_add(i as u64));
        let mut sample = Vec::new();
        for (name, ty, dims) in &shapes {
            let len: usize = dims.iter().product();
            let feed = match *ty {
                dt::FLOAT => Feed::F32(ArrayD::from_shape_vec(dims.clone(), rng.vec(len, 0.0, 1.0)).map_err(|e| Error::tensor(name, e.to_string()))?),
                dt::INT64 => Feed::I64(ArrayD::zeros(dims.clone())),
                other => return Err(Error::Input { name: name.clone(), reason: format!("type {other} not supported yet") }),
            };
            sample.push((name.clone(), feed));
        }
        feeds.push(sample);
    }
    Ok(Samples { feeds, notes: vec![format!("synthetic inputs, uniform [0, 1), seed {seed}")], files: Vec::new() })
}

fn d_len(t: &type_proto::Tensor) -> usize {
    t.shape.as_ref().map_or(0, |s| s.dim.len())
}
