//! `kenosis inspect MODEL [--json]`.

use crate::common::{load_model, print_json, CmdResult, Global};
use kenosis_core::inspect::Inspection;
use std::path::PathBuf;

/// Show what a model holds: producer, opsets, inputs and outputs, op counts, weights, and
/// whether it is already quantized.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .onnx model.
    pub model: PathBuf,
    /// Print one JSON object (keys include ops, subgraph_ops, params, bytes, opset, inputs, outputs).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(_global: &Global, args: Args) -> CmdResult {
    let (model, bytes) = load_model(&args.model)?;
    let report = Inspection::new(&model, Some(bytes));
    if args.json {
        print_json(&report)
    } else {
        print!("{}", report.human());
        Ok(())
    }
}
