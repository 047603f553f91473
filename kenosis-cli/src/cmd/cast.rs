//! `kenosis cast IN [-o OUT] --to fp16|bf16 [--half-io] [--force]`.

use crate::common::{load_model, output_path, save_model, CmdResult, Global, Progress};
use kenosis_core::cast::{CastOptions, Precision};
use kenosis_core::inspect::human_bytes;
use kenosis_core::runtime::{Session, SessionOptions};
use std::path::PathBuf;

/// Convert a model's float weights to FP16 or BF16.
///
/// FP16: weights are stored as FP16, about halving the file. ONNX Runtime's CPU provider has
/// FP16 kernels only for data movement (Reshape, Transpose, Concat, ...) and Clip/Max/Min, so
/// every other op (Conv, MatMul, Add, Resize, Softmax, ...) keeps computing in FP32 behind a
/// Cast, and outputs match FP32 to within FP16 rounding of the weights.
///
/// BF16 is a storage format: weights are stored as BF16 (same size as FP16, FP32's range, less
/// precision) and Cast to FP32 before use, since ORT's CPU provider has almost no BF16
/// kernels. Use it to ship a smaller file that runs at FP32 speed. BF16 needs opset 13: older
/// models are upgraded to 13 first.
///
/// Graph inputs and outputs stay FP32 (Casts at the edges) unless --half-io. Int64 shapes,
/// indices and tiny float tensors (Resize scales, Clip bounds) are left as they are.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The FP32 .onnx model.
    pub input: PathBuf,
    /// Where to write the result [default: IN with .fp16.onnx or .bf16.onnx beside it].
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Target format.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Make graph inputs and outputs FP16/BF16 too (callers then feed and read half precision).
    #[arg(long)]
    pub half_io: bool,
    /// Replace OUT if it exists (never the input model).
    #[arg(long)]
    pub force: bool,
}

/// `--to` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Target {
    /// IEEE half precision.
    Fp16,
    /// bfloat16 (storage format on ORT's CPU provider).
    Bf16,
}

/// Runs the command.
pub fn run(global: &Global, args: Args) -> CmdResult {
    let to = match args.to {
        Target::Fp16 => Precision::Fp16,
        Target::Bf16 => Precision::Bf16,
    };
    let out = output_path(&args.input, args.output.as_deref(), to.name(), args.force)?;
    let (model, in_bytes) = load_model(&args.input)?;
    let step = Progress::new(global, &format!("casting to {}", to.name()), None);
    let (casted, report) = kenosis_core::cast::cast(&model, &CastOptions { to, half_io: args.half_io })?;
    step.finish("done");
    // Check that ONNX Runtime accepts the result before writing it, when a runtime is at hand.
    match global.runtime() {
        Ok(_) => {
            let check = Progress::new(global, "loading the result in ONNX Runtime", None);
            Session::from_model(&casted, &SessionOptions::default())?;
            check.finish("ok");
        }
        Err(e) if global.ort_lib.is_some() => return Err(e),
        Err(e) => global.info(format!("note: the result was not checked in ONNX Runtime ({e})")),
    }
    let out_bytes = save_model(&casted, &args.input, &out, args.force)?;
    println!(
        "wrote {} ({} → {}, {:.2}× the size)",
        out.display(),
        human_bytes(in_bytes),
        human_bytes(out_bytes),
        out_bytes as f64 / in_bytes.max(1) as f64
    );
    if !global.quiet {
        print!("{}", report.human());
    }
    Ok(())
}
