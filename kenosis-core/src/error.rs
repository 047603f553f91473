//! The one error type of kenosis-core.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Kenosis. Each variant names the file, node or tensor at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ONNX model (empty, truncated, another format).
    #[error("{}: not an ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    /// The model parses but breaks the ONNX spec in a way Kenosis can't work around.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A tensor's data does not match its declared type or shape.
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    /// A node can't be processed.
    #[error("node `{node}` ({op_type}): {reason}")]
    Node { node: String, op_type: String, reason: String },
    /// An output path that would replace the input model.
    #[error("refusing to write over the input model {}; choose another output path with -o", path.display())]
    OverwriteInput { path: PathBuf },
    /// The output exists and replacing it was not asked for.
    #[error("{} already exists; pass --force to replace it", path.display())]
    OutputExists { path: PathBuf },
    /// No ONNX Runtime library could be loaded.
    #[error("{}", ort_not_found(tried))]
    OrtNotFound { tried: Vec<(String, String)> },
    /// ONNX Runtime reported an error.
    #[error("ONNX Runtime: {context}: {message}")]
    Ort { context: String, message: String },
    /// Calibration input that does not fit the model.
    #[error("calibration data{}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Calibration { path: Option<PathBuf>, reason: String },
    /// A model input that can't be fed as asked.
    #[error("input `{name}`: {reason}")]
    Input { name: String, reason: String },
    /// The model is already quantized.
    #[error("the model is already quantized ({0}); quantize the FP32 original instead")]
    AlreadyQuantized(String),
    /// The model holds no float compute Kenosis can quantize.
    #[error("nothing to quantize: {0}")]
    NothingToQuantize(String),
    /// A feature of the model Kenosis doesn't support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A user setting that can't be honoured.
    #[error("invalid setting: {0}")]
    Config(String),
}

fn ort_not_found(tried: &[(String, String)]) -> String {
    let mut s = String::from("could not load the ONNX Runtime library. Tried:\n");
    for (place, why) in tried {
        s.push_str(&format!("  - {place}: {why}\n"));
    }
    s.push_str(
        "Install ONNX Runtime 1.31.1 into Kenosis's cache with `bash scripts/install-ort.sh` \
         (from a Kenosis checkout), or point ORT_DYLIB_PATH at a libonnxruntime you have.",
    );
    s
}

/// What kind of failure an error is, for exit codes and for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's model, data or settings are at fault.
    BadInput,
    /// ONNX Runtime could not be found or loaded.
    MissingRuntime,
    /// Anything else: I/O, runtime failures.
    Other,
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotOnnx { .. }
            | Error::InvalidModel(_)
            | Error::Tensor { .. }
            | Error::Node { .. }
            | Error::OverwriteInput { .. }
            | Error::OutputExists { .. }
            | Error::Calibration { .. }
            | Error::Input { .. }
            | Error::AlreadyQuantized(_)
            | Error::NothingToQuantize(_)
            | Error::Unsupported(_)
            | Error::Config(_) => ErrorKind::BadInput,
            Error::OrtNotFound { .. } => ErrorKind::MissingRuntime,
            Error::Io { .. } | Error::Ort { .. } => ErrorKind::Other,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn ort(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Ort { context: context.into(), message: e.to_string() }
    }

    pub(crate) fn tensor(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor { name: name.into(), reason: reason.into() }
    }
}
