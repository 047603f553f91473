//! What every command shares: global flags, loading the input model, the output path rule,
//! exit codes and the error printer, and progress reporting.

use indicatif::{ProgressBar, ProgressStyle};
use kenosis_core::onnx::{model::default_output, Model, SaveOptions};
use kenosis_core::calibrate::Preprocess;
use kenosis_core::ErrorKind;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: any failure not listed below.
pub const EXIT_OTHER: u8 = 1;
/// Exit code: the user's model, data or settings are at fault.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: ONNX Runtime could not be found or loaded.
pub const EXIT_NO_RUNTIME: u8 = 3;
/// Exit code: a quality gate (min cosine, top-1 agreement, speedup) failed.
pub const EXIT_GATE: u8 = 4;

/// Flags every command takes.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// `-q`: results and errors only.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// `--ort-lib`.
    pub ort_lib: Option<PathBuf>,
}

impl Global {
    /// A note for the user on stderr (silent with `-q`).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A detail shown with `-v`.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Loads ONNX Runtime (from `--ort-lib` when given).
    pub fn runtime(&self) -> Result<&'static kenosis_core::runtime::RuntimeInfo, Failure> {
        let info = kenosis_core::runtime::init(self.ort_lib.as_deref())?;
        self.debug(format!("ONNX Runtime {} from {}", info.version, info.path.display()));
        Ok(info)
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// A library error; its [`ErrorKind`] picks the exit code.
    Core(kenosis_core::Error),
    /// Bad input found by the CLI itself (a missing file, a bad flag combination).
    BadInput(String),
    /// A quality gate failed; the message lists what missed.
    #[allow(dead_code)] // for validate/quantize gates
    Gate(String),
    /// Anything else (writing to stdout failed, ...).
    Other(String),
}

impl From<kenosis_core::Error> for Failure {
    fn from(e: kenosis_core::Error) -> Self {
        Failure::Core(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Core(e) => write!(f, "{e}"),
            Failure::BadInput(m) | Failure::Other(m) => f.write_str(m),
            Failure::Gate(m) => write!(f, "quality gate failed: {m}"),
        }
    }
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Core(e) => match e.kind() {
                ErrorKind::BadInput => EXIT_BAD_INPUT,
                ErrorKind::MissingRuntime => EXIT_NO_RUNTIME,
                _ => EXIT_OTHER,
            },
            Failure::BadInput(_) => EXIT_BAD_INPUT,
            Failure::Gate(_) => EXIT_GATE,
            Failure::Other(_) => EXIT_OTHER,
        }
    }
}

/// What a command returns.
pub type CmdResult = Result<(), Failure>;

/// Prints the error (message only, no backtrace) and turns the result into the exit code.
pub fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A panic is a Kenosis bug: print one line asking for a report (no backtrace unless
/// `RUST_BACKTRACE` asks for one) and exit 1.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if kenosis_core::env::var("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            default(info);
        } else {
            eprintln!("error: internal error in kenosis ({info}); please report it with the command you ran");
        }
        std::process::exit(i32::from(EXIT_OTHER));
    }));
}

/// Loads the model at `path`, with bad-input errors that name the file. Returns the model and
/// the size of its file.
pub fn load_model(path: &Path) -> Result<(Model, u64), Failure> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::BadInput(format!("{}: no such file", path.display()))
        } else {
            Failure::BadInput(format!("{}: can't read it: {e}", path.display()))
        }
    })?;
    let model = Model::load(path)?;
    Ok((model, meta.len()))
}

/// The output path of a command that writes a model: `out` if given, else `IN` with
/// `.<suffix>.onnx` beside it. Refuses the input itself, an existing file without `force`, a
/// directory, and a folder that does not exist.
pub fn output_path(input: &Path, out: Option<&Path>, suffix: &str, force: bool) -> Result<PathBuf, Failure> {
    let path = out.map(Path::to_path_buf).unwrap_or_else(|| default_output(input, suffix));
    if is_same_file(input, &path) {
        return Err(kenosis_core::Error::OverwriteInput { path }.into());
    }
    if path.is_dir() {
        return Err(Failure::BadInput(format!(
            "{} is a directory; give the path of the .onnx file to write",
            path.display()
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Failure::BadInput(format!(
            "{}: the folder {} does not exist; create it first",
            path.display(),
            parent.display()
        )));
    }
    if path.exists() && !force {
        return Err(kenosis_core::Error::OutputExists { path }.into());
    }
    Ok(path)
}

/// Saves `model` to `out` atomically, never over `input`.
pub fn save_model(model: &Model, input: &Path, out: &Path, force: bool) -> Result<u64, Failure> {
    model.save(out, &SaveOptions { force, input: Some(input.to_path_buf()), ..Default::default() })?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(bytes)
}

/// True when both paths name the same file; hard links and `./` spellings included.
fn is_same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Prints a serializable result as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> CmdResult {
    let s = serde_json::to_string_pretty(value).map_err(|e| Failure::Other(format!("can't write JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// Progress of a long step: an indicatif bar when stderr is a terminal, plain lines otherwise,
/// nothing with `-q`.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
}

impl Progress {
    /// Starts a step of `total` units (`None`: a spinner).
    pub fn new(global: &Global, label: &str, total: Option<u64>) -> Progress {
        if global.quiet {
            return Progress { bar: None, plain: false, label: label.into() };
        }
        if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner(),
            };
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            return Progress { bar: Some(bar), plain: false, label: label.into() };
        }
        eprintln!("{label}...");
        Progress { bar: None, plain: true, label: label.into() }
    }

    /// Advances by `n` units.
    #[allow(dead_code)] // for commands with counted steps (calibration, validation runs)
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Ends the step with a short result.
    pub fn finish(self, msg: &str) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
            eprintln!("{}: {msg}", self.label);
        } else if self.plain {
            eprintln!("{}: {msg}", self.label);
        }
    }
}

/// `--preprocess` values: the pixel normalisation of image inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreprocessArg {
    /// x / 255, in [0, 1].
    Unit,
    /// (x / 255 - 0.5) / 0.5, in [-1, 1] (PaddleOCR).
    Half,
    /// x / 255, then ImageNet mean and std.
    Imagenet,
}

/// The normalisation asked for: `--mean` with `--std` win over `--preprocess` (default unit).
pub fn preprocess(arg: Option<PreprocessArg>, mean: Option<[f32; 3]>, std: Option<[f32; 3]>) -> Preprocess {
    match (arg, mean, std) {
        (_, Some(mean), Some(std)) => Preprocess::Custom { mean, std },
        (Some(PreprocessArg::Half), ..) => Preprocess::Half,
        (Some(PreprocessArg::Imagenet), ..) => Preprocess::Imagenet,
        _ => Preprocess::Unit,
    }
}

/// `--mean` / `--std`: three comma-separated numbers.
pub fn parse_triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>().map_err(|_| format!("`{p}` is not a number; write three numbers like 0.5,0.5,0.5")))
        .collect::<std::result::Result<_, _>>()?;
    <[f32; 3]>::try_from(v).map_err(|v| format!("expected three comma-separated numbers, got {}", v.len()))
}

/// `--input-shape NAME=DIMS`.
pub fn parse_shape(s: &str) -> std::result::Result<(String, Vec<i64>), String> {
    kenosis_core::calibrate::parse_input_shape(s).map_err(|e| e.to_string())
}
