//! Calibration inputs (synthetic, raw files, images) and activation-range collection through ONNX Runtime.
//!
//! [`load_samples`] turns an [`InputConfig`] into feeds for every graph input of a model;
//! [`collect_ranges`] runs the FP32 model on them and records the min/max of every float tensor.
//! Both are deterministic: the same model, config and files give the same [`Samples`] and
//! [`Ranges`] on every machine thread count.

mod data;
mod images;
mod npy;
mod ranges;
mod shapes;
mod synthetic;

pub use ranges::{
    collect_ranges, collect_ranges_opts, collect_ranges_with_progress, CollectOptions, Collected, Ranges,
};
pub use shapes::{input_shapes, InputSpec};

use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::runtime::Feed;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Number of synthetic samples when [`InputConfig::samples`] is not set. Eight seeded samples
/// cover the value range of normalised images well enough for min/max calibration and keep
/// zero-config runs quick.
pub const DEFAULT_SYNTHETIC_SAMPLES: usize = 8;

/// How image pixels (0..=255, RGB or BGR) become model input values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preprocess {
    /// `x / 255`, in [0, 1].
    Unit,
    /// `(x / 255 - 0.5) / 0.5`, in [-1, 1] (PaddleOCR).
    Half,
    /// `x / 255`, then ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
    Imagenet,
    /// `(x / 255 - mean[c]) / std[c]`, with mean and std in 0..1 units, per channel in the
    /// order the channels are fed (RGB, or BGR with `bgr`).
    Custom {
        /// Per-channel mean, in 0..1 units.
        mean: [f32; 3],
        /// Per-channel standard deviation, in 0..1 units (must be non-zero).
        std: [f32; 3],
    },
}

impl Preprocess {
    /// The per-channel (mean, std) in 0..1 units this preprocessing applies after `x / 255`.
    pub fn mean_std(&self) -> ([f32; 3], [f32; 3]) {
        match *self {
            Preprocess::Unit => ([0.0; 3], [1.0; 3]),
            Preprocess::Half => ([0.5; 3], [0.5; 3]),
            Preprocess::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            Preprocess::Custom { mean, std } => (mean, std),
        }
    }
}

/// Where calibration samples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Seeded pseudo-random inputs shaped like normalised images (the zero-config default).
    Synthetic {
        /// Seed of the generator; the same seed gives the same samples everywhere.
        seed: u64,
    },
    /// A folder of png/jpg images, for the primary input.
    Images {
        /// The folder.
        dir: PathBuf,
        /// Pixel normalisation.
        preprocess: Preprocess,
        /// Feed channels in BGR order instead of RGB.
        bgr: bool,
    },
    /// A folder of `.bin` / `.npy` samples; one sub-folder per input when the model has several.
    Data {
        /// The folder.
        dir: PathBuf,
    },
}

impl Default for Source {
    fn default() -> Self {
        Source::Synthetic { seed: 0 }
    }
}

/// What to calibrate (and validate) with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputConfig {
    /// Where samples come from.
    pub source: Source,
    /// Cap on the number of samples ([`DEFAULT_SYNTHETIC_SAMPLES`] for synthetic input when unset).
    pub samples: Option<usize>,
    /// Shapes fixed by the user (`--input-shape NAME=1x3x640x640`), by input name.
    pub shapes: Vec<(String, Vec<i64>)>,
}

/// Feeds for the model, one entry per sample, each naming every graph input.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Per sample, the value of every graph input, in the model's input order.
    pub feeds: Vec<Vec<(String, Feed)>>,
    /// What was assumed: default shapes and default values of inputs with no data.
    pub notes: Vec<String>,
    /// Every data file read, sorted (the build cache hashes them).
    pub files: Vec<PathBuf>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.feeds.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }
}

/// Builds the calibration samples `cfg` describes for `model`.
///
/// Shapes come from [`input_shapes`]. The primary input (the first 4-D float input) takes the
/// images, the data files or the synthetic values; other inputs take data files when the source
/// is [`Source::Data`] and otherwise the defaults of [`input_shapes`]' rules (listed in `notes`).
pub fn load_samples(model: &Model, cfg: &InputConfig) -> Result<Samples> {
    if cfg.samples == Some(0) {
        return Err(Error::Config("the sample count is 0; pass --samples 1 or more".into()));
    }
    let resolved = shapes::resolve(model, cfg)?;
    let mut samples = match &cfg.source {
        Source::Synthetic { seed } => {
            synthetic::load(&resolved, *seed, cfg.samples.unwrap_or(DEFAULT_SYNTHETIC_SAMPLES))?
        }
        Source::Images { dir, preprocess, bgr } => images::load(&resolved, dir, preprocess, *bgr, cfg.samples)?,
        Source::Data { dir } => data::load(&resolved, dir, cfg.samples)?,
    };
    let mut notes = resolved.notes.clone();
    notes.append(&mut samples.notes);
    samples.notes = notes;
    samples.files.sort();
    samples.files.dedup();
    Ok(samples)
}

/// The name of an input's sub-folder in a data folder: characters outside `[A-Za-z0-9._-]`
/// become `_`.
pub fn folder_name(input: &str) -> String {
    input.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}
