//! `kenosis validate FP32 INT8`: accuracy, latency, size and fusion of an INT8 model against its
//! FP32 original, with a verdict and optional quality gates.

use crate::common::{
    load_model, parse_shape, parse_triple, preprocess, print_json, CmdResult, Failure, Global, PreprocessArg, Progress,
};
use kenosis_core::calibrate::{InputConfig, Source};
use kenosis_core::validate::{self, Gates, ValidateOptions, Verdict, VALIDATION_SEED};
use std::path::PathBuf;


/// Check an INT8 model against its FP32 original: per-output cosine and top-1 agreement, latency
/// side by side, size, what ONNX Runtime fused, and a verdict.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 passed, 1 failure, 2 bad input, 3 ONNX Runtime missing, \
4 verdict BROKEN or a --min-* gate failed.\n\
Verdict: BROKEN below 0.90 cosine, 70% top-1 or with NaN/inf outputs; POOR below 0.98 cosine, \
95% top-1 or slower than FP32 (<0.97x); EXCELLENT at >= 0.995 cosine (every sample >= 0.99), \
>= 99% top-1 and faster than FP32; GOOD otherwise.\n\
Blank samples (FP32 output below 0.1% of its largest value over the samples, or below 1e-6, with INT8 \
agreeing) are left out of the cosine and counted per output.")]
pub struct Args {
    /// The FP32 model.
    pub fp32: PathBuf,
    /// The INT8 model made from it.
    pub int8: PathBuf,
    /// Validate on the png/jpg images in DIR (best: images not used for calibration).
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub images: Option<PathBuf>,
    /// How image pixels are normalised [default: unit].
    #[arg(long, value_enum, requires = "images", conflicts_with_all = ["mean", "std"])]
    pub preprocess: Option<PreprocessArg>,
    /// Per-channel mean in 0..1 units (R,G,B), for --images; with --std.
    #[arg(long, value_name = "R,G,B", requires_all = ["images", "std"], value_parser = parse_triple)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation in 0..1 units (R,G,B), for --images; with --mean.
    #[arg(long, value_name = "R,G,B", requires_all = ["images", "mean"], value_parser = parse_triple)]
    pub std: Option<[f32; 3]>,
    /// Feed image channels in BGR order.
    #[arg(long, requires = "images")]
    pub bgr: bool,
    /// Validate on the .bin/.npy samples in DIR (one sub-folder per input for multi-input models).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Use at most N samples (the synthetic default makes 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: Option<u64>,
    /// Fix an input's shape, e.g. x=1x3x224x224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS", value_parser = parse_shape)]
    pub input_shape: Vec<(String, Vec<i64>)>,
    /// Timed runs per model; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Untimed warm-up runs per model.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub warmup: u64,
    /// Intra-op threads for both models.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Fail (exit 4) when the worst output's mean cosine is below X.
    #[arg(long, value_name = "X")]
    pub min_cosine: Option<f64>,
    /// Fail (exit 4) when INT8 is less than X times as fast as FP32.
    #[arg(long, value_name = "X")]
    pub min_speedup: Option<f64>,
    /// Fail (exit 4) when top-1 agreement is below X (0..1); needs a classifier-shaped output.
    #[arg(long = "min-top1", value_name = "X")]
    pub min_top1: Option<f64>,
}

impl Args {
    /// The validation options these arguments ask for.
    pub fn options(&self) -> ValidateOptions {
        let source = if let Some(dir) = &self.images {
            let preprocess = preprocess(self.preprocess, self.mean, self.std);
            Source::Images { dir: dir.clone(), preprocess, bgr: self.bgr }
        } else if let Some(dir) = &self.data {
            Source::Data { dir: dir.clone() }
        } else {
            Source::Synthetic { seed: VALIDATION_SEED }
        };
        ValidateOptions {
            inputs: InputConfig { source, samples: self.samples.map(|n| n as usize), shapes: self.input_shape.clone() },
            runs: self.runs as usize,
            warmup: self.warmup as usize,
            threads: self.threads as usize,
        }
    }

    /// The gates these arguments ask for.
    pub fn gates(&self) -> Gates {
        Gates { min_cosine: self.min_cosine, min_top1_agreement: self.min_top1, min_speedup: self.min_speedup }
    }
}

/// Runs the command. A BROKEN verdict or a failed gate exits 4, after the report is printed.
pub fn run(global: &Global, args: Args) -> CmdResult {
    for (flag, v) in
        [("--min-cosine", args.min_cosine), ("--min-speedup", args.min_speedup), ("--min-top1", args.min_top1)]
    {
        if v.is_some_and(|x| !x.is_finite()) {
            return Err(Failure::BadInput(format!("{flag} must be a finite number")));
        }
    }
    if args.min_top1.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
        return Err(Failure::BadInput("--min-top1 is a fraction in 0..1 (e.g. 0.99 for 99%)".into()));
    }
    let (fp32, _) = load_model(&args.fp32)?;
    let (int8, _) = load_model(&args.int8)?;
    global.runtime()?;
    let progress = Progress::new(global, "validating", None);
    let report = validate::validate(&fp32, &int8, &args.options())?;
    progress.finish(&format!("{} on {} samples", report.verdict, report.samples));
    let failures = report.check(&args.gates());
    if args.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Failure::Other(format!("can't write JSON: {e}")))?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("fp32_model".into(), args.fp32.display().to_string().into());
            obj.insert("int8_model".into(), args.int8.display().to_string().into());
            obj.insert("gate_failures".into(), failures.clone().into());
            obj.insert("passed".into(), failures.is_empty().into());
        }
        print_json(&v)?;
    } else {
        println!("  {:<9} FP32 {}", "models", args.fp32.display());
        println!("  {:<9} INT8 {}", "", args.int8.display());
        print!("{}", report.human());
    }
    gate_result(&report, &failures)
}

/// `Ok` when nothing failed; else the gate failure, with what to try when the verdict is BROKEN.
pub fn gate_result(report: &validate::Report, failures: &[String]) -> CmdResult {
    if failures.is_empty() {
        return Ok(());
    }
    let mut msg = failures.join("; ");
    if report.verdict == Verdict::Broken {
        msg.push_str(
            "\nthe INT8 model does not reproduce the FP32 model's outputs; quantize again (per-channel, real \
             calibration images, --target-cosine 0.995 to keep the leading layers FP32, or exclude the failing layers)",
        );
    }
    Err(Failure::Gate(msg))
}
