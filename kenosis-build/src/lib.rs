//! Quantize ONNX models to INT8 in `build.rs`, validated, cached and reproducible.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), kenosis_build::Error> {
//!     kenosis_build::quantize("models/cls.onnx")?;                 // zero-config default
//!     kenosis_build::Config::new()
//!         .model("models/det.onnx")
//!         .per_channel()
//!         .calibration_images("calib/")                            // real images beat noise
//!         .min_cosine(0.995)                                       // the build fails below this
//!         .run()?;
//!     Ok(())
//! }
//! ```
//! and in the crate, `kenosis_core::include_quantized!("models/det.onnx")` embeds the result.
//!
//! Each model runs through the same kenosis-core pipeline as `kenosis quantize --validate`. The
//! INT8 model and its report go to `$OUT_DIR/kenosis/<key>/`, where the key is the SHA-256 of
//! the model bytes, the calibration bytes, the effective config and the algorithm version
//! (plus the ONNX Runtime version for the local cache). A shared cache (`KENOSIS_CACHE_DIR`,
//! default `<target dir>/kenosis-cache`) lets `cargo clean -p`, other profiles and sibling
//! crates reuse results without calibrating again.
//!
//! Offline builds: `kenosis prepare` writes one record per model into the package's committed
//! `.kenosis/` folder. With `KENOSIS_OFFLINE=1`, or when no ONNX Runtime library can be found,
//! the build rebuilds the same INT8 bytes from the record without ONNX Runtime.
//!
//! Quality gates: by default the build fails when the worst output's mean cosine similarity
//! against FP32 is below [`DEFAULT_MIN_COSINE`] or the verdict is BROKEN. Top-1 agreement and
//! speed gates are opt-in (timing beside rustc jobs is noisy).
//!
//! Environment: `KENOSIS_OFFLINE`, `KENOSIS_CACHE_DIR`, `ORT_DYLIB_PATH` and the variables
//! `kenosis prepare` sets; each is read through `kenosis_core::env`, which tells Cargo to rerun
//! the build script when it changes.

mod error;
mod index;
mod metadata;
mod paths;
mod pipeline;
mod run;
mod settings;

pub use error::{Error, Result};
pub use kenosis_core::calibrate::Preprocess;
pub use kenosis_core::validate::Report;
pub use settings::{DEFAULT_MIN_COSINE, DEFAULT_VALIDATION_RUNS};

use settings::{Dims, Settings};
use std::path::{Path, PathBuf};

/// How a model's INT8 artifact was obtained in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Calibrated with ONNX Runtime, quantized and validated in this build.
    Calibrated,
    /// Taken from the shared cache: no calibration, no validation run.
    CacheHit,
    /// Rebuilt from the committed `.kenosis/` record without ONNX Runtime.
    Record,
}

/// One quantized model.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Artifact {
    /// The model path as given.
    pub source: String,
    /// The INT8 model under `$OUT_DIR/kenosis/`.
    pub path: PathBuf,
    /// The content key (without the ONNX Runtime version; matches the offline record).
    pub key: String,
    /// How it was obtained.
    pub origin: Origin,
    /// The validation report it was judged by.
    pub report: Report,
}

/// Quantizes one model with the zero-config defaults (synthetic calibration, per-tensor
/// weights, the default cosine gate), plus any settings for it in `[package.metadata.kenosis]`.
/// The path is relative to the crate root.
pub fn quantize(model: impl AsRef<Path>) -> Result<Artifact> {
    let mut all = Config::new().model(model).run()?;
    // ok: run returns one artifact per model given, and one was given
    Ok(all.remove(0))
}

/// Settings for one or more models, one setter per `kenosis quantize` flag, ending in [`Config::run`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    models: Vec<String>,
    settings: Settings,
}

impl Config {
    /// Defaults: synthetic calibration, per-tensor weights, 7-bit weights on x86-64 targets,
    /// a cosine gate of [`DEFAULT_MIN_COSINE`].
    pub fn new() -> Config {
        Config::default()
    }

    /// A model to quantize, relative to the crate root; call it again for more models with the
    /// same settings. Without any, [`run`](Config::run) takes the models listed in
    /// `[package.metadata.kenosis]`.
    pub fn model(&mut self, path: impl AsRef<Path>) -> &mut Config {
        self.models.push(path.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Per-channel weight scales (`--per-channel`).
    pub fn per_channel(&mut self) -> &mut Config {
        self.settings.per_channel = Some(true);
        self
    }

    /// Calibrate (and validate) on the png/jpg images in `dir` (`--calibration-images`).
    pub fn calibration_images(&mut self, dir: impl AsRef<Path>) -> &mut Config {
        self.settings.calibration_images = Some(dir.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Calibrate on `.bin`/`.npy` samples in `dir`, one sub-folder per input for several
    /// inputs (`--calibration-data`).
    pub fn calibration_data(&mut self, dir: impl AsRef<Path>) -> &mut Config {
        self.settings.calibration_data = Some(dir.as_ref().to_string_lossy().into_owned());
        self
    }

    /// At most `n` calibration samples (`--samples`).
    pub fn samples(&mut self, n: usize) -> &mut Config {
        self.settings.samples = Some(n);
        self
    }

    /// Fixes the dynamic dims of input `name` (`--input-shape NAME=1x3x640x640`).
    pub fn input_shape(&mut self, name: &str, dims: impl AsRef<[i64]>) -> &mut Config {
        self.settings.input_shape.get_or_insert_with(Default::default).insert(name.to_string(), Dims::List(dims.as_ref().to_vec()));
        self
    }

    /// How image pixels become input values (`--preprocess unit|half|imagenet`, or custom mean/std).
    pub fn preprocess(&mut self, p: Preprocess) -> &mut Config {
        match p {
            Preprocess::Unit => self.settings.preprocess = Some("unit".into()),
            Preprocess::Half => self.settings.preprocess = Some("half".into()),
            Preprocess::Imagenet => self.settings.preprocess = Some("imagenet".into()),
            Preprocess::Custom { mean, std } => {
                self.settings.mean = Some(mean);
                self.settings.std = Some(std);
            }
        }
        self
    }

    /// Per-channel mean in 0..1 units, subtracted after `x / 255` (`--mean`).
    pub fn mean(&mut self, mean: [f32; 3]) -> &mut Config {
        self.settings.mean = Some(mean);
        self
    }

    /// Per-channel std in 0..1 units (`--std`).
    pub fn std(&mut self, std: [f32; 3]) -> &mut Config {
        self.settings.std = Some(std);
        self
    }

    /// Feed image channels as BGR (`--bgr`).
    pub fn bgr(&mut self) -> &mut Config {
        self.settings.bgr = Some(true);
        self
    }

    /// 7 or 8 weight bits (`--weight-bits`); default 7 on x86-64 targets (ORT's integer kernels
    /// saturate with full-range weights on CPUs without VNNI), else 8.
    pub fn weight_bits(&mut self, bits: u8) -> &mut Config {
        self.settings.weight_bits = Some(bits);
        self
    }

    /// Keeps node `name` in FP32 (`--exclude-node`); call once per node.
    pub fn exclude_node(&mut self, name: &str) -> &mut Config {
        self.settings.exclude_node.get_or_insert_with(Vec::new).push(name.to_string());
        self
    }

    /// Keeps every node of op type `op` in FP32 (`--exclude-op`); call once per op type.
    pub fn exclude_op(&mut self, op: &str) -> &mut Config {
        self.settings.exclude_op.get_or_insert_with(Vec::new).push(op.to_string());
        self
    }

    /// Keeps the fewest leading learned layers float that bring the cosine on the calibration
    /// samples up to `target` (`kenosis quantize --target-cosine`; mixed precision).
    /// The choice is recorded, so cached and offline builds make the same bytes.
    pub fn target_cosine(&mut self, target: f64) -> &mut Config {
        self.settings.target_cosine = Some(target);
        self
    }

    /// With [`Config::target_cosine`]: stores the weights of the layers kept float as FP16
    /// (`kenosis quantize --fp16-float-layers`).
    pub fn fp16_float_layers(&mut self) -> &mut Config {
        self.settings.fp16_float_layers = Some(true);
        self
    }

    /// Fails the build when the worst output's mean cosine is below `min` (default
    /// [`DEFAULT_MIN_COSINE`]; 0 turns the gate off).
    pub fn min_cosine(&mut self, min: f64) -> &mut Config {
        self.settings.min_cosine = Some(min);
        self
    }

    /// Fails the build when top-1 agreement is below `min` (0..1); needs a classifier-shaped output.
    pub fn min_top1_agreement(&mut self, min: f64) -> &mut Config {
        self.settings.min_top1_agreement = Some(min);
        self
    }

    /// Fails the build when INT8 is not at least `min` times as fast as FP32. Opt-in: latency
    /// measured while rustc jobs share the CPU is noisy.
    pub fn min_speedup(&mut self, min: f64) -> &mut Config {
        self.settings.min_speedup = Some(min);
        self
    }

    /// Timed validation runs per model (median taken; default [`DEFAULT_VALIDATION_RUNS`]).
    pub fn validation_runs(&mut self, n: usize) -> &mut Config {
        self.settings.validation_runs = Some(n);
        self
    }

    /// Quantizes and validates each model, writes `$OUT_DIR/kenosis/` and its index, and prints
    /// Cargo directives and one summary line per model.
    pub fn run(&self) -> Result<Vec<Artifact>> {
        kenosis_core::env::emit_cargo_directives(true);
        let manifest_dir = run::manifest_dir()?;
        let manifest = manifest_dir.join("Cargo.toml");
        println!("cargo:rerun-if-changed={}", manifest.display());
        let meta = match metadata::read(&manifest) {
            Ok(m) => m,
            // Models given in code don't need the metadata; a broken kenosis table is still an error.
            Err(Error::Metadata { reason, .. }) if !self.models.is_empty() && reason.starts_with("`cargo metadata`") => {
                metadata::PackageMeta::default()
            }
            Err(e) => return Err(e),
        };
        let jobs: Vec<(String, Settings)> = if self.models.is_empty() {
            if meta.models.is_empty() {
                return Err(Error::NoModels { manifest });
            }
            meta.models.clone()
        } else {
            self.models
                .iter()
                .map(|m| {
                    let norm = paths::normalize(m);
                    let own = meta.models.iter().find(|(p, _)| paths::normalize(p) == norm).map(|(_, s)| s.clone());
                    (m.clone(), own.unwrap_or_default())
                })
                .collect()
        };
        let ctx = run::Ctx::from_env(meta.target_dir.as_deref())?;
        let mut out = Vec::new();
        for (model, own) in jobs {
            // Per-model Cargo.toml settings, then the builder's, then Cargo.toml's defaults.
            let settings = own.or(&self.settings).or(&meta.defaults);
            let resolved = settings.resolve(&model, &ctx.target_arch)?;
            out.push(run::build(&ctx, &model, &resolved)?);
        }
        Ok(out)
    }
}
