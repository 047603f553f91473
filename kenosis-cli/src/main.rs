//! `kenosis`: quantize, validate, inspect, cast, diff and prepare ONNX models from the command line.
//!
//! Each command lives in `cmd/<name>.rs` with its clap `Args` and a `run` function; this file
//! holds the command enum and the dispatch. Shared rules (output paths, exit codes, progress)
//! are in `common.rs`.

mod cmd;
mod common;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Turn FP32 ONNX vision models into fast, accurate INT8 models for ONNX Runtime, and look inside them.
#[derive(Debug, Parser)]
#[command(name = "kenosis", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Exit codes: 0 ok, 1 other failure, 2 bad input, 3 ONNX Runtime missing, 4 quality gate failed."
)]
struct Cli {
    /// Print only results and errors (no progress, no notes).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more about what is happening (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The ONNX Runtime library to load (else ORT_DYLIB_PATH, Kenosis's cache, the system loader).
    #[arg(long, global = true, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Inspect(cmd::inspect::Args),
    Cast(cmd::cast::Args),
    Diff(cmd::diff::Args),
    Quantize(cmd::quantize::Args),
    Prepare(cmd::prepare::Args),
    Validate(cmd::validate::Args),
}

fn main() -> ExitCode {
    ignore_file_size_signal();
    common::install_panic_hook();
    let cli = Cli::parse();
    let global = common::Global { quiet: cli.quiet, verbose: cli.verbose, ort_lib: cli.ort_lib };
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(&global, args),
        Command::Cast(args) => cmd::cast::run(&global, args),
        Command::Diff(args) => cmd::diff::run(&global, args),
        Command::Quantize(args) => cmd::quantize::run(&global, args),
        Command::Prepare(args) => cmd::prepare::run(&global, args),
        Command::Validate(args) => cmd::validate::run(&global, args),
    };
    common::finish(result)
}

/// Under a file-size limit (`ulimit -f`), a write past it raises SIGXFSZ, which kills the process
/// before it can remove its temp file or say why. Ignored, the write fails with EFBIG instead,
/// which reaches the user as "File too large" with the output's path, and no file is left.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up, before any thread exists,
    // touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
