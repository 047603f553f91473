//! `kenosis quantize IN [-o OUT] [--per-channel] [--weight-bits 7|8] [--calibration-images DIR | --calibration-data DIR] ...`.

use crate::common::{
    load_model, output_path, parse_shape, parse_triple, preprocess, save_model, CmdResult, Failure, Global,
    PreprocessArg, Progress,
};
use kenosis_core::calibrate::{InputConfig, Preprocess, Source};
use kenosis_core::inspect::human_bytes;
use kenosis_core::quantize::{self, QuantizeConfig};
use kenosis_core::validate;
use std::path::PathBuf;

/// Quantize an FP32 model to static INT8 (QDQ) that ONNX Runtime runs with integer kernels.
///
/// The graph is prepared (Constant nodes to initializers, opset >= 13, BatchNorm folded,
/// hard-swish recognised), calibrated through ONNX Runtime (synthetic inputs from a fixed seed
/// unless images or data are given), and rewritten with QuantizeLinear/DequantizeLinear placed
/// the way ORT fuses them. Graph outputs, the detection head after the last learned layer and
/// paths from secondary inputs stay FP32.
///
/// Weights are 7-bit by default for x86-64 targets (ORT's integer kernels saturate with
/// full-range weights on CPUs without VNNI); pass --weight-bits 8 for VNNI/AMX or ARM targets.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The FP32 .onnx model.
    pub input: PathBuf,
    /// Where to write the INT8 model [default: IN with .int8.onnx beside it].
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Replace OUT if it exists (never the input model).
    #[arg(long)]
    pub force: bool,
    /// One weight scale per output channel instead of one per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// Weight bits [default: 7 for x86-64 targets, else 8].
    #[arg(long, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub weight_bits: Option<u8>,
    /// The CPU architecture the model will run on (x86_64, aarch64, ...) [default: this build's].
    #[arg(long, value_name = "ARCH")]
    pub target_arch: Option<String>,
    /// Keep this node in float (repeatable).
    #[arg(long = "exclude-node", value_name = "NAME")]
    pub exclude_nodes: Vec<String>,
    /// Keep every node of this op type in float (repeatable).
    #[arg(long = "exclude-op", value_name = "TYPE")]
    pub exclude_ops: Vec<String>,
    /// Calibrate on the png/jpg images in DIR (stretched to the input's size).
    #[arg(long, value_name = "DIR", conflicts_with = "calibration_data")]
    pub calibration_images: Option<PathBuf>,
    /// Calibrate on .bin/.npy samples in DIR (one sub-folder per input for several inputs).
    #[arg(long, value_name = "DIR")]
    pub calibration_data: Option<PathBuf>,
    /// Pixel normalisation for --calibration-images.
    #[arg(long, value_enum, default_value = "unit")]
    pub preprocess: PreprocessArg,
    /// Custom per-channel mean in 0..1 units, e.g. 0.485,0.456,0.406 (with --std).
    #[arg(long, value_name = "R,G,B", requires = "std", value_parser = parse_triple)]
    pub mean: Option<[f32; 3]>,
    /// Custom per-channel std in 0..1 units (with --mean).
    #[arg(long, value_name = "R,G,B", requires = "mean", value_parser = parse_triple)]
    pub std: Option<[f32; 3]>,
    /// Feed image channels in BGR order.
    #[arg(long)]
    pub bgr: bool,
    /// Use at most N calibration samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Seed of the synthetic calibration inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fix an input's dynamic dims, e.g. x=1x3x640x640 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS", value_parser = parse_shape)]
    pub input_shapes: Vec<(String, Vec<i64>)>,
    /// Also write the calibration ranges (JSON) here, for offline rebuilds.
    #[arg(long, value_name = "FILE")]
    pub ranges_out: Option<PathBuf>,
    /// Print the decisions as JSON on stdout (with the validation report under `validation`).
    #[arg(long)]
    pub json: bool,
    /// Mixed precision: keep the fewest leading learned layers float (the backbone's start)
    /// that bring the cosine similarity to FP32 on the calibration samples up to X (e.g. 0.995).
    /// Scores about log2(layers) + 1 candidate models; trades speed for accuracy. Exit 4 (OUT
    /// written all INT8) when X is out of reach. Calibrate on real inputs for this to mean much.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub target_cosine: Option<f64>,
    /// With --target-cosine: store the weights of the layers kept float as FP16 (about half
    /// their size; ONNX Runtime casts them back at load, same speed). The search scores it.
    #[arg(long, requires = "target_cosine")]
    pub fp16_float_layers: bool,
    /// After writing OUT, validate it against the FP32 model and print the `kenosis validate`
    /// report (cosine, top-1, latency side by side, fusion, verdict). A BROKEN verdict or a failed
    /// --min-* gate exits 4; OUT is kept so it can be inspected.
    #[arg(long)]
    pub validate: bool,
    /// Validate on these images (same --preprocess/--bgr) instead of the calibration inputs;
    /// images the model was not calibrated on give the honest figures.
    #[arg(long, value_name = "DIR", requires = "validate")]
    pub validation_images: Option<PathBuf>,
    /// With --validate: fail (exit 4) below this cosine similarity.
    #[arg(long, value_name = "X", requires = "validate")]
    pub min_cosine: Option<f64>,
    /// With --validate: fail (exit 4) below this speedup over FP32 (timing is noisy on a busy machine).
    #[arg(long, value_name = "X", requires = "validate")]
    pub min_speedup: Option<f64>,
    /// With --validate: fail (exit 4) below this top-1 agreement (a fraction, e.g. 0.99).
    #[arg(long, value_name = "X", requires = "validate")]
    pub min_top1: Option<f64>,
}

impl Args {
    fn preprocess(&self) -> Preprocess {
        preprocess(Some(self.preprocess), self.mean, self.std)
    }

    fn config(&self) -> QuantizeConfig {
        let preprocess = self.preprocess();
        let source = if let Some(dir) = &self.calibration_images {
            Source::Images {
                dir: dir.clone(),
                preprocess,
                bgr: self.bgr,
            }
        } else if let Some(dir) = &self.calibration_data {
            Source::Data { dir: dir.clone() }
        } else {
            Source::Synthetic { seed: self.seed }
        };
        QuantizeConfig {
            per_channel: self.per_channel,
            weight_bits: self.weight_bits,
            target_arch: self.target_arch.clone(),
            exclude_nodes: self.exclude_nodes.clone(),
            exclude_ops: self.exclude_ops.clone(),
            target_cosine: self.target_cosine,
            fp16_float_layers: self.fp16_float_layers,
            inputs: InputConfig {
                source,
                samples: self.samples,
                shapes: self.input_shapes.clone(),
            },
        }
    }
}

/// Runs the command.
pub fn run(global: &Global, args: Args) -> CmdResult {
    let out = output_path(&args.input, args.output.as_deref(), "int8", args.force)?;
    if let Some(r) = &args.ranges_out {
        // A second output under OUT's rules: never the input model, --force to replace, no
        // directory in its place; and not OUT itself.
        output_path(&args.input, Some(r), "ranges", args.force)?;
        if std::path::absolute(r).ok() == std::path::absolute(&out).ok() {
            return Err(Failure::BadInput(format!("--ranges-out {} is also the model output; choose another file", r.display())));
        }
    }
    let (model, in_bytes) = load_model(&args.input)?;
    let cfg = args.config();
    // Settings errors before any work starts (and before the progress line).
    cfg.canonical()?;
    global.runtime()?;
    let mut step = Some(Progress::new(global, "calibrating", None));
    let mut searching = false;
    let mut last = 0usize;
    let q = quantize::quantize_with_progress(&model, &cfg, &mut |phase, done, total| {
        if phase == quantize::Step::Searching && !searching {
            if let Some(s) = step.take() {
                s.finish("done");
            }
            step = Some(Progress::new(global, "accuracy search", Some(total as u64)));
            searching = true;
            last = 0;
        }
        if let Some(s) = &step {
            s.inc(done.saturating_sub(last) as u64);
        }
        last = done;
    })?;
    if let Some(s) = step {
        s.finish("done");
    }
    // Nothing is written unless ORT accepts the result.
    kenosis_core::runtime::Session::from_model(&q.model, &Default::default())?;
    let out_bytes = save_model(&q.model, &args.input, &out, args.force)?;
    if let Some(r) = &args.ranges_out {
        let json =
            serde_json::to_string_pretty(&q.ranges).map_err(|e| Failure::Other(format!("can't write ranges: {e}")))?;
        kenosis_core::onnx::model::write_atomic(r, format!("{json}\n").as_bytes())?;
    }
    let report = if args.validate { Some(validate_output(global, &args, &cfg, &model, &q.model)?) } else { None };
    if args.json {
        let mut v = serde_json::to_value(&q.summary).map_err(|e| Failure::Other(format!("can't print the summary: {e}")))?;
        if let (Some(r), Some(m)) = (&report, v.as_object_mut()) {
            let r = serde_json::to_value(r).map_err(|e| Failure::Other(format!("can't print the report: {e}")))?;
            m.insert("validation".into(), r);
        }
        crate::common::print_json(&v)?;
        target_result(&args, &q.summary)?;
        return report.map_or(Ok(()), |r| gate(&args, &r));
    }
    let s = &q.summary;
    let quantized: usize = s.quantized.values().sum();
    let total = quantized + s.kept_float.values().sum::<usize>();
    let ratio = in_bytes as f64 / out_bytes.max(1) as f64;
    let change = if ratio >= 1.0 { format!("{ratio:.2}× smaller") } else { format!("{:.2}× larger", 1.0 / ratio) };
    println!("wrote {} ({} → {}, {change})", out.display(), human_bytes(in_bytes), human_bytes(out_bytes));
    if !global.quiet {
        println!(
            "  weights     {}-bit, {} ({})",
            s.weight_bits,
            if s.per_channel { "per channel" } else { "per tensor" },
            s.target_arch
        );
        println!("  opset       {}", s.opset);
        println!("  quantized   {quantized} of {total} nodes: {}", counts(&s.quantized));
        println!("  kept float  {}", counts(&s.kept_float));
        for n in &s.notes {
            println!("  note: {n}");
        }
        if global.verbose > 0 {
            for d in s.nodes.iter().filter(|d| !d.quantized) {
                println!("  float {} ({}): {}", d.node, d.op_type, d.reason);
            }
        }
    }
    if let Some(r) = &report {
        print!("{}", r.human());
    }
    target_result(&args, &q.summary)?;
    report.map_or(Ok(()), |r| gate(&args, &r))
}

/// Validates the INT8 model as `kenosis validate` would, on the validation images, else on the
/// calibration inputs (synthetic ones with validation's own seed, so they differ).
fn validate_output(
    global: &Global,
    args: &Args,
    cfg: &QuantizeConfig,
    fp32: &kenosis_core::onnx::Model,
    int8: &kenosis_core::onnx::Model,
) -> Result<validate::Report, Failure> {
    let source = match (&args.validation_images, &cfg.inputs.source) {
        (Some(dir), _) => Source::Images { dir: dir.clone(), preprocess: args.preprocess(), bgr: args.bgr },
        (None, Source::Synthetic { .. }) => Source::Synthetic { seed: validate::VALIDATION_SEED },
        (None, other) => other.clone(),
    };
    let opts = validate::ValidateOptions {
        inputs: InputConfig { source, samples: args.samples, shapes: cfg.inputs.shapes.clone() },
        ..Default::default()
    };
    let progress = Progress::new(global, "validating", None);
    let report = validate::validate(fp32, int8, &opts)?;
    progress.finish(&format!("{}", report.verdict));
    Ok(report)
}

fn gate(args: &Args, report: &validate::Report) -> CmdResult {
    let gates = validate::Gates { min_cosine: args.min_cosine, min_top1_agreement: args.min_top1, min_speedup: args.min_speedup };
    crate::cmd::validate::gate_result(report, &report.check(&gates))
}

/// An accuracy target the search could not reach fails like a gate (exit 4); OUT is kept.
fn target_result(args: &Args, summary: &quantize::Summary) -> CmdResult {
    match (args.target_cosine, summary.target_met) {
        (Some(t), Some(false)) => Err(Failure::Gate(format!(
            "--target-cosine {t} was not reached (see the accuracy-search note); the model was written all INT8. \
             Lower the target, calibrate on real inputs, or keep layers FP32 with --exclude-node"
        ))),
        _ => Ok(()),
    }
}

fn counts(m: &std::collections::BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}
