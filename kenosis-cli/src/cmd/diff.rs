//! `kenosis diff A B [--json]`.

use crate::common::{load_model, print_json, CmdResult, Global};
use std::path::PathBuf;

/// Compare two models: op counts, added/removed/changed nodes, weights whose values differ
/// (with the largest absolute difference), and input/output changes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first model (A).
    pub a: PathBuf,
    /// The second model (B).
    pub b: PathBuf,
    /// Print one JSON object with `identical`, `ops`, `nodes`, `initializers`, `signature`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(_global: &Global, args: Args) -> CmdResult {
    let (a, _) = load_model(&args.a)?;
    let (b, _) = load_model(&args.b)?;
    let d = kenosis_core::diff::diff(&a, &b);
    if args.json {
        print_json(&d)
    } else {
        print!("{}", d.human());
        Ok(())
    }
}
