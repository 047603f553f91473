//! Calibration inputs (synthetic, raw files, images) and activation-range collection through ONNX Runtime.
//!
//! [`load_samples`] turns an [`InputConfig`] into feeds for every graph input of a model;
//! [`collect_ranges`] runs the FP32 model on them and records the min/max of every float tensor.
//! Both are deterministic: the same model, config and files give the same [`Samples`] and
//! [`Ranges`] whatever the thread count.

mod data;
mod images;
mod npy;
mod ranges;
mod shapes;
mod synthetic;

pub use ranges::{
    collect_ranges, collect_ranges_opts, collect_ranges_with_progress, CollectOptions, Collected, Ranges,
};
pub use shapes::input_shapes;

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
    /// `x / 255`, then ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Like
    /// every mean/std here, applied per channel in the order the channels are fed (so with `bgr`
    /// the first value applies to blue, as in code that normalises a BGR array).
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

impl std::str::FromStr for Preprocess {
    type Err = Error;

    /// `unit`, `half` or `imagenet` (custom mean/std are set with [`Preprocess::Custom`]).
    fn from_str(s: &str) -> Result<Preprocess> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unit" => Ok(Preprocess::Unit),
            "half" => Ok(Preprocess::Half),
            "imagenet" => Ok(Preprocess::Imagenet),
            other => Err(Error::Config(format!(
                "unknown preprocessing `{other}`; use unit (x/255), half ((x/255-0.5)/0.5), imagenet, or --mean/--std"
            ))),
        }
    }
}

/// Parses `NAME=1x3x640x640` (dims separated by `x` or `,`) as given to `--input-shape`.
/// The name may itself hold `=`; the last one separates it from the dims.
pub fn parse_input_shape(s: &str) -> Result<(String, Vec<i64>)> {
    let bad = |why: &str| Error::Config(format!("--input-shape `{s}`: {why}; write it as NAME=1x3x640x640"));
    let (name, dims) = s.rsplit_once('=').ok_or_else(|| bad("no `=`"))?;
    if name.is_empty() {
        return Err(bad("no input name"));
    }
    let dims = dims
        .split(['x', 'X', ','])
        .map(|d| {
            d.trim()
                .parse::<i64>()
                .ok()
                .filter(|&d| d >= 1)
                .ok_or_else(|| bad("each dim must be a whole number, 1 or more"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((name.to_string(), dims))
}

/// Where calibration samples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Seeded pseudo-random inputs shaped like normalised images, uniform in [-1, 1) (the
    /// zero-config default). The primary input (else the first float input) takes them.
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
/// Shapes come from [`input_shapes`]. Every sample is held in memory. The primary input (the first 4-D float input) takes the
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_input_shapes_and_preprocess_names() {
        assert_eq!(parse_input_shape("x=1x3x640x640").unwrap(), ("x".to_string(), vec![1, 3, 640, 640]));
        assert_eq!(parse_input_shape("a=b:0=2,5").unwrap(), ("a=b:0".to_string(), vec![2, 5]));
        for bad in ["x", "=1x2", "x=1x0", "x=1xq", "x="] {
            assert!(parse_input_shape(bad).unwrap_err().to_string().contains("NAME=1x3x640x640"), "{bad}");
        }
        assert_eq!("Half".parse::<Preprocess>().unwrap(), Preprocess::Half);
        assert!("bgr".parse::<Preprocess>().is_err());
        assert_eq!(folder_name("im_shape:0/a b"), "im_shape_0_a_b");
    }
}
