//! Seeded synthetic samples, the zero-config default.

use super::shapes::{fmt_dims, Resolved};
use super::Samples;
use crate::error::{Error, Result};
use crate::onnx::builder::Rng;
use crate::onnx::proto::data_type as dt;
use crate::runtime::Feed;
use ndarray::ArrayD;

/// Range of the synthetic values. [-1, 1) covers inputs scaled by `x/255` and by
/// `(x/255-0.5)/0.5`, and one standard deviation either side of ImageNet normalisation.
pub(crate) const SYNTHETIC_RANGE: (f32, f32) = (-1.0, 1.0);

/// `count` samples from one generator seeded with `seed`, drawn sample after sample in C order.
/// The primary input (else the first float input) takes uniform values in [`SYNTHETIC_RANGE`];
/// every other input takes its default.
pub(crate) fn load(resolved: &Resolved, seed: u64, count: usize) -> Result<Samples> {
    let target = resolved.primary.or_else(|| resolved.inputs.iter().position(|s| s.data_type == dt::FLOAT));
    let mut rng = Rng::new(seed);
    let mut feeds = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sample = Vec::with_capacity(resolved.inputs.len());
        for (i, spec) in resolved.inputs.iter().enumerate() {
            let feed = if Some(i) == target {
                let n = spec.dims.iter().product();
                let v = rng.vec(n, SYNTHETIC_RANGE.0, SYNTHETIC_RANGE.1);
                Feed::F32(
                    ArrayD::from_shape_vec(spec.dims.clone(), v)
                        .map_err(|e| Error::Input { name: spec.name.clone(), reason: e.to_string() })?,
                )
            } else {
                resolved.defaults[i].clone()
            };
            sample.push((spec.name.clone(), feed));
        }
        feeds.push(sample);
    }
    let mut notes = Vec::new();
    if let Some(t) = target {
        let s = &resolved.inputs[t];
        notes.push(format!(
            "input `{}`: {count} synthetic samples of {} uniform in [{}, {}) from seed {seed}",
            s.name,
            fmt_dims(&s.dims),
            SYNTHETIC_RANGE.0,
            SYNTHETIC_RANGE.1
        ));
    }
    for (i, s) in resolved.inputs.iter().enumerate().filter(|(i, _)| Some(*i) != target) {
        notes.push(format!("input `{}` ({}): no data, fed {}", s.name, fmt_dims(&s.dims), resolved.default_notes[i]));
    }
    Ok(Samples { feeds, notes, files: Vec::new() })
}
