//! Loading and saving models: external data, clear errors for files that are not ONNX, and
//! atomic writes that never replace the input.

use super::proto::{data_location, GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use crate::error::{Error, Result};
use prost::Message;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Protobuf's hard limit on one message; larger models must keep weights in a side file.
const PROTOBUF_LIMIT: usize = 2_000_000_000;
/// Tensors at least this large move to the side file when a model must use external data.
const EXTERNAL_MIN_BYTES: usize = 1024;

/// An ONNX model in memory, with every external tensor already read in.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The decoded protobuf.
    pub proto: ModelProto,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
}

/// How [`Model::save`] writes.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Replace an existing output file.
    pub force: bool,
    /// Never write to this path (the input model); checked on the resolved path.
    pub input: Option<PathBuf>,
    /// Write tensors of at least 1 KiB to `<output>.data` even when the model would fit in one file.
    pub external_data: bool,
}

impl Model {
    /// Wraps a protobuf that was built in memory.
    pub fn new(proto: ModelProto) -> Self {
        Model { proto, path: None }
    }

    /// Reads a model file, resolving external data relative to the file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::NotOnnx { path: path.into(), reason: "this is a directory; give the path of an .onnx file".into() });
        }
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut model = Model::from_bytes_at(&bytes, path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        model.load_external_data(&base)?;
        model.path = Some(path.to_path_buf());
        Ok(model)
    }

    /// Decodes a model from bytes. External data can't be resolved without a folder, so a model
    /// that uses it is an error here.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let model = Model::from_bytes_at(bytes, Path::new("<memory>"))?;
        if has_external(&model.proto) {
            return Err(Error::InvalidModel("the model keeps tensors in external files; load it from its path".into()));
        }
        Ok(model)
    }

    fn from_bytes_at(bytes: &[u8], path: &Path) -> Result<Model> {
        let not_onnx = |reason: String| Error::NotOnnx { path: path.into(), reason };
        if bytes.is_empty() {
            return Err(not_onnx("the file is empty".into()));
        }
        let proto = ModelProto::decode(bytes).map_err(|e| not_onnx(decode_reason(&e)))?;
        if proto.ir_version <= 0 || proto.graph.is_none() {
            return Err(not_onnx(format!(
                "the file parses as protobuf but holds no ONNX graph (ir_version {}, graph {})",
                proto.ir_version,
                if proto.graph.is_some() { "present" } else { "missing" }
            )));
        }
        Ok(Model { proto, path: None })
    }

    /// The main graph (present in every loaded model).
    pub fn graph(&self) -> &GraphProto {
        static EMPTY: std::sync::OnceLock<GraphProto> = std::sync::OnceLock::new();
        self.proto.graph.as_ref().unwrap_or_else(|| EMPTY.get_or_init(GraphProto::default))
    }

    /// The main graph, mutably.
    pub fn graph_mut(&mut self) -> &mut GraphProto {
        self.proto.graph.get_or_insert_with(GraphProto::default)
    }

    /// The imported opset version of `domain` (`""` or `"ai.onnx"` for the default domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| if d == "ai.onnx" { String::new() } else { d.to_string() };
        self.proto.opset_import.iter().find(|o| norm(&o.domain) == norm(domain)).map(|o| o.version)
    }

    /// Serializes the model into one buffer (no external data).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let len = self.proto.encoded_len();
        if len > PROTOBUF_LIMIT {
            return Err(Error::InvalidModel(format!(
                "the model is {len} bytes, over protobuf's 2 GB limit; save it to a file so its weights go to external data"
            )));
        }
        Ok(self.proto.encode_to_vec())
    }

    /// Writes the model to `path` atomically (temp file + rename). Models over protobuf's 2 GB
    /// limit, or any model with `external_data` set, keep large tensors in `<path>.data`.
    pub fn save(&self, path: impl AsRef<Path>, opts: &SaveOptions) -> Result<()> {
        let path = path.as_ref();
        check_output(path, opts)?;
        let external = opts.external_data || self.proto.encoded_len() > PROTOBUF_LIMIT;
        if !external {
            return write_atomic(path, &self.proto.encode_to_vec());
        }
        let file_name = path
            .file_name()
            .ok_or_else(|| Error::io(path, std::io::Error::other("output path has no file name")))?;
        let data_name = format!("{}.data", file_name.to_string_lossy());
        let data_path = path.with_file_name(&data_name);
        check_output(&data_path, opts)?;
        let mut proto = self.proto.clone();
        let mut blob = Vec::new();
        for_each_tensor_mut(&mut proto, &mut |t| {
            if t.raw_data.len() >= EXTERNAL_MIN_BYTES {
                // 4 KiB alignment lets runtimes memory-map each tensor.
                while blob.len() % 4096 != 0 {
                    blob.push(0);
                }
                let offset = blob.len();
                blob.extend_from_slice(&t.raw_data);
                t.external_data = vec![
                    entry("location", &data_name),
                    entry("offset", &offset.to_string()),
                    entry("length", &t.raw_data.len().to_string()),
                ];
                t.data_location = data_location::EXTERNAL;
                t.raw_data = Vec::new();
            }
        });
        // Both files go to temp files first and are renamed only once both are whole, so a
        // failure (a full disk, say) leaves neither a new side file nor a partial model.
        let data_tmp = write_temp(&data_path, &blob)?;
        let model_tmp = match write_temp(path, &proto.encode_to_vec()) {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&data_tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&data_tmp, &data_path) {
            let _ = fs::remove_file(&data_tmp);
            let _ = fs::remove_file(&model_tmp);
            return Err(Error::io(&data_path, e));
        }
        fs::rename(&model_tmp, path).map_err(|e| {
            let _ = fs::remove_file(&model_tmp);
            Error::io(path, e)
        })
    }

    fn load_external_data(&mut self, base: &Path) -> Result<()> {
        if !has_external(&self.proto) {
            return Ok(());
        }
        let base_canon = fs::canonicalize(if base.as_os_str().is_empty() { Path::new(".") } else { base })
            .map_err(|e| Error::io(base, e))?;
        let mut err = None;
        for_each_tensor_mut(&mut self.proto, &mut |t| {
            if err.is_none() && t.data_location == data_location::EXTERNAL {
                match read_external(t, &base_canon) {
                    Ok(bytes) => {
                        t.raw_data = bytes;
                        t.external_data.clear();
                        t.data_location = data_location::DEFAULT;
                    }
                    Err(e) => err = Some(e),
                }
            }
        });
        err.map_or(Ok(()), Err)
    }
}

/// What a protobuf decoding error means for the user, with prost's field path cut short (a
/// deeply nested file makes it thousands of characters long).
fn decode_reason(e: &prost::DecodeError) -> String {
    let msg = e.to_string();
    if msg.contains("recursion limit") {
        return "its subgraphs (If/Loop/Scan bodies) are nested deeper than protobuf decoding allows \
                (100 nested messages, about 32 levels of subgraphs); flatten the control flow and re-export"
            .into();
    }
    let short = match msg.rsplit_once(": ") {
        Some((path, last)) if path.len() > 200 => format!("{}…: {last}", &path[..path.floor_char_boundary(120)]),
        _ => msg,
    };
    format!("truncated or corrupt protobuf ({short}); re-export or re-download the model")
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: key.into(), value: value.into() }
}

fn has_external(proto: &ModelProto) -> bool {
    let mut found = false;
    let mut p = proto.clone();
    for_each_tensor_mut(&mut p, &mut |t| found |= t.data_location == data_location::EXTERNAL);
    found
}

fn read_external(t: &TensorProto, base: &Path) -> Result<Vec<u8>> {
    let field = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
    let bad = |reason: String| Error::tensor(&t.name, reason);
    let location = field("location").ok_or_else(|| bad("external data without a `location`".into()))?;
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(bad(format!("external data path `{location}` leaves the model's folder; keep side files beside the model")));
    }
    let file = base.join(rel);
    let canon = fs::canonicalize(&file).map_err(|e| Error::io(&file, e))?;
    if !canon.starts_with(base) {
        return Err(bad(format!("external data path `{location}` resolves outside the model's folder")));
    }
    let parse = |k: &str| -> Result<Option<u64>> {
        field(k).map(|v| v.parse::<u64>().map_err(|_| bad(format!("external data `{k}` is `{v}`, not a byte count")))).transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let file_len = fs::metadata(&canon).map_err(|e| Error::io(&canon, e))?.len();
    let length = parse("length")?.unwrap_or(file_len.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(bad(format!("external data wants bytes {offset}..{} of {}, which has {file_len}", offset.saturating_add(length), canon.display())));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(&canon).map_err(|e| Error::io(&canon, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&canon, e))?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(|e| Error::io(&canon, e))?;
    Ok(buf)
}

/// Calls `f` on every tensor a model holds: initializers, sparse initializers, tensor
/// attributes (Constant values), in the main graph, every subgraph, functions and training info.
pub fn for_each_tensor_mut(model: &mut ModelProto, f: &mut dyn FnMut(&mut TensorProto)) {
    if let Some(g) = model.graph.as_mut() {
        graph_tensors_mut(g, f);
    }
    for func in &mut model.functions {
        for n in &mut func.node {
            for a in &mut n.attribute {
                attribute_tensors_mut(a, f);
            }
        }
    }
    for ti in &mut model.training_info {
        for g in [ti.initialization.as_mut(), ti.algorithm.as_mut()].into_iter().flatten() {
            graph_tensors_mut(g, f);
        }
    }
}

fn graph_tensors_mut(g: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto)) {
    g.initializer.iter_mut().for_each(&mut *f);
    for s in &mut g.sparse_initializer {
        s.values.iter_mut().chain(s.indices.iter_mut()).for_each(&mut *f);
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            attribute_tensors_mut(a, f);
        }
    }
}

fn attribute_tensors_mut(a: &mut super::proto::AttributeProto, f: &mut dyn FnMut(&mut TensorProto)) {
    a.t.iter_mut().chain(a.tensors.iter_mut()).for_each(&mut *f);
    for s in a.sparse_tensor.iter_mut().chain(a.sparse_tensors.iter_mut()) {
        s.values.iter_mut().chain(s.indices.iter_mut()).for_each(&mut *f);
    }
    for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
        graph_tensors_mut(g, f);
    }
}

/// Refuses an output path that is the input, exists without `force`, or is a directory.
pub fn check_output(path: &Path, opts: &SaveOptions) -> Result<()> {
    if let Some(input) = &opts.input {
        if same_file(input, path) {
            return Err(Error::OverwriteInput { path: path.into() });
        }
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::io(path, std::io::Error::other("a directory is in the way of the output file"))),
        Ok(_) if !opts.force => Err(Error::OutputExists { path: path.into() }),
        _ => Ok(()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename, so readers see
/// the old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Writes `bytes` to a synced temp file beside `path` and returns its path; on failure the temp
/// file is removed.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, format!("the folder {} does not exist", dir.display()))));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(Error::io(path, e))
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    t ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(32)
}

/// The default output path beside `input`: `model.onnx` + `int8` gives `model.int8.onnx`.
pub fn default_output(input: &Path, suffix: &str) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    input.with_file_name(format!("{stem}.{suffix}.onnx"))
}
