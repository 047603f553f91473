//! The one error type of kenosis-build.

use std::fmt;
use std::path::PathBuf;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a build script. Each variant names the model or file and says what to do.
///
/// `Debug` prints the same readable text as `Display`, so `fn main() -> Result<(), Error>` in
/// build.rs shows the message Cargo users need rather than a struct dump.
#[non_exhaustive]
pub enum Error {
    /// `OUT_DIR` is not set: the code is not running in a build script.
    NoOutDir,
    /// A variable Cargo sets for build scripts is missing.
    NotInBuildScript { var: &'static str },
    /// `Config::run` without `.model(...)` and no `[package.metadata.kenosis]` models.
    NoModels { manifest: PathBuf },
    /// `[package.metadata.kenosis]` could not be read or holds a bad value.
    Metadata { manifest: PathBuf, reason: String },
    /// A setting that can't be honoured.
    Config { model: String, reason: String },
    /// The Kenosis pipeline failed on a model.
    Core { model: String, source: kenosis_core::Error },
    /// The INT8 model fails a quality gate; carries the whole report.
    Gate { model: String, failures: Vec<String>, report: Box<kenosis_core::validate::Report> },
    /// An offline build (or one without ONNX Runtime) and no committed record for the model.
    NoRecord { model: String, record: PathBuf, why: String },
    /// The committed record was made from other inputs than the build has now.
    StaleRecord { model: String, record: PathBuf, changes: Vec<String> },
    /// Reading or writing a file failed.
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn core(model: &str, source: kenosis_core::Error) -> Error {
        Error::Core { model: model.to_string(), source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    /// Prints the error for Cargo's build log and exits with status 1: for build scripts that
    /// prefer `kenosis_build::quantize(..).unwrap_or_else(|e| e.exit())` to returning it.
    pub fn exit(self) -> ! {
        eprintln!("error: {self}");
        std::process::exit(1)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoOutDir => write!(
                f,
                "OUT_DIR is not set: kenosis_build runs inside a Cargo build script (build.rs), where Cargo sets it. \
                 Call it from build.rs with kenosis-build in [build-dependencies]; outside Cargo, use `kenosis quantize`"
            ),
            Error::NotInBuildScript { var } => {
                write!(f, "{var} is not set: kenosis_build runs inside a Cargo build script (build.rs), where Cargo sets it")
            }
            Error::NoModels { manifest } => write!(
                f,
                "no model to quantize: give one with `Config::new().model(\"models/x.onnx\")`, or list them in {} under \
                 [package.metadata.kenosis] as `models = [\"models/x.onnx\"]`",
                manifest.display()
            ),
            Error::Metadata { manifest, reason } => write!(f, "{} [package.metadata.kenosis]: {reason}", manifest.display()),
            Error::Config { model, reason } => write!(f, "{model}: {reason}"),
            Error::Core { model, source } => {
                write!(f, "{model}: {source}")?;
                if source.kind() == kenosis_core::ErrorKind::MissingRuntime {
                    write!(
                        f,
                        "\nTo build without ONNX Runtime, commit offline records: run `kenosis prepare` where ONNX Runtime \
                         is installed, commit the package's .kenosis/ folder, and build with KENOSIS_OFFLINE=1"
                    )?;
                }
                Ok(())
            }
            Error::Gate { model, failures, report } => {
                writeln!(f, "{model}: the INT8 model fails its quality gates:")?;
                for x in failures {
                    writeln!(f, "  - {x}")?;
                }
                writeln!(f, "Report:\n{}", report.human())?;
                write!(
                    f,
                    "To fix: calibrate with real inputs (`.calibration_images(\"dir/\")` with the preprocessing the model \
                     expects), try `.per_channel()`, let Kenosis keep the costliest layers in FP32 with \
                     `.target_cosine(0.995)` (mixed precision) or choose them with `.exclude_node(..)` / \
                     `.exclude_op(..)`, or lower the gate (`.min_cosine(..)`, `.min_top1_agreement(..)`, `.min_speedup(..)`)"
                )
            }
            Error::NoRecord { model, record, why } => write!(
                f,
                "{model}: {why}, and there is no offline record at {}. Run `kenosis prepare` in this package where ONNX \
                 Runtime is installed and commit the .kenosis/ folder",
                record.display()
            ),
            Error::StaleRecord { model, record, changes } => {
                writeln!(f, "{model}: the offline record {} is stale:", record.display())?;
                for c in changes {
                    writeln!(f, "  - {c}")?;
                }
                write!(f, "Run `kenosis prepare` in this package and commit the .kenosis/ folder")
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
