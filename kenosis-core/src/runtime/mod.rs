//! Finding and loading ONNX Runtime, and a thin session helper everything else runs models with.
//!
//! The library is loaded at run time (ort's `load-dynamic`), so building Kenosis links nothing.
//! Search order: an explicit path, `ORT_DYLIB_PATH`, Kenosis's cache folder, the system loader.

mod session;

pub use session::{Dim, Feed, IoInfo, Optimization, Session, SessionOptions};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The ONNX Runtime version Kenosis is built and tested against, and installs.
pub const ORT_VERSION: &str = "1.31.1";

/// The loaded runtime.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The library file that was loaded.
    pub path: PathBuf,
    /// Its version string, e.g. `1.31.1`.
    pub version: String,
}

static RUNTIME: OnceLock<(RuntimeInfo, ort::environment::Environment)> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// File name of the ONNX Runtime library on this OS.
pub fn library_file_name() -> &'static str {
    if cfg!(target_os = "windows") {
        "onnxruntime.dll"
    } else if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else {
        "libonnxruntime.so"
    }
}

/// Kenosis's cache folder for ONNX Runtime: `$XDG_CACHE_HOME/kenosis/onnxruntime/<version>/`,
/// else `~/.cache/kenosis/onnxruntime/<version>/` (`%LOCALAPPDATA%` on Windows).
pub fn cache_dir() -> Option<PathBuf> {
    let base = crate::env::var("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::env::var("LOCALAPPDATA").filter(|_| cfg!(windows)).map(PathBuf::from))
        .or_else(|| crate::env::var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kenosis").join("onnxruntime").join(ORT_VERSION))
}

/// The library path inside [`cache_dir`].
pub fn cached_library() -> Option<PathBuf> {
    let name = if cfg!(target_os = "linux") { format!("libonnxruntime.so.{ORT_VERSION}") } else { library_file_name().to_string() };
    cache_dir().map(|d| d.join(name))
}

/// Loads ONNX Runtime once per process, from `explicit` if given, else by the search order.
/// Later calls return the runtime already loaded.
pub fn init(explicit: Option<&Path>) -> Result<&'static RuntimeInfo> {
    if let Some((info, _)) = RUNTIME.get() {
        return Ok(info);
    }
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((info, _)) = RUNTIME.get() {
        return Ok(info);
    }
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(("explicit path".into(), p.to_path_buf()));
    }
    if let Some(p) = crate::env::var("ORT_DYLIB_PATH").filter(|s| !s.is_empty()) {
        candidates.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
    }
    if let Some(p) = cached_library() {
        candidates.push(("Kenosis cache".into(), p));
    }
    candidates.push(("system loader".into(), PathBuf::from(library_file_name())));

    let mut tried = Vec::new();
    for (source, path) in candidates {
        let label = format!("{source} ({})", path.display());
        let is_bare = path.components().count() == 1 && source == "system loader";
        if !is_bare && !path.exists() {
            tried.push((label, "no such file".to_string()));
            if source == "explicit path" {
                break;
            }
            continue;
        }
        match try_load(&path) {
            Ok(info) => {
                let _ = RUNTIME.set(info);
                return Ok(&RUNTIME.get().expect("runtime was just set").0); // ok: set just above, under the lock
            }
            Err(why) => tried.push((label, why)),
        }
        // A path the user named must be the one used: falling back would hide their mistake.
        if source == "explicit path" {
            break;
        }
    }
    Err(Error::OrtNotFound { tried })
}

fn try_load(path: &Path) -> std::result::Result<(RuntimeInfo, ort::environment::Environment), String> {
    let version = library_version(path)?;
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    if minor < 22 {
        return Err(format!("version {version} is too old; Kenosis needs ONNX Runtime 1.22 or newer (1.31.1 tested)"));
    }
    let builder = ort::init_from(path).map_err(|e| e.to_string())?;
    let env = builder.with_name("kenosis").build().map_err(|e| e.to_string())?;
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok((RuntimeInfo { path: resolved, version }, env))
}

fn library_version(path: &Path) -> std::result::Result<String, String> {
    // SAFETY: loading ONNX Runtime runs its static initialisers, which is what ort does too.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    type GetApiBase = unsafe extern "C" fn() -> *const ApiBase;
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: OrtGetApiBase has this signature in every ONNX Runtime release.
    let sym: libloading::Symbol<GetApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|_| "not an ONNX Runtime library (no OrtGetApiBase)".to_string())?;
    let base = unsafe { sym() };
    if base.is_null() {
        return Err("OrtGetApiBase returned null".into());
    }
    let s = unsafe { std::ffi::CStr::from_ptr(((*base).get_version_string)()) };
    let v = s.to_string_lossy().into_owned();
    // Keep the library mapped: ort loads the same file and the handle is shared.
    std::mem::forget(lib);
    Ok(v)
}

/// The loaded runtime, loading it by the search order first.
pub fn runtime() -> Result<&'static RuntimeInfo> {
    init(None)
}

pub(crate) fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    Ok(&RUNTIME.get().expect("runtime initialised").1) // ok: init succeeded, so RUNTIME is set
}
