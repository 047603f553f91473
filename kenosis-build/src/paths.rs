//! Model paths as keys, record file names, and where the shared cache lives.

use std::path::{Path, PathBuf};

/// Normalizes a model path as written: `/` separators, no `.` parts, `a/../` folded. The same
/// function is in kenosis-macros (`index::normalize`); both test the same cases.
pub(crate) fn normalize(path: &str) -> String {
    let unified = path.replace('\\', "/");
    let absolute = unified.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The record file for a normalized model path: `models/cls.onnx` -> `models__cls.onnx.json`.
pub(crate) fn record_name(normalized: &str) -> String {
    let name: Vec<String> = normalized
        .trim_start_matches('/')
        .split('/')
        .map(|p| if p == ".." { "_up_".to_string() } else { p.to_string() })
        .collect();
    format!("{}.json", name.join("__"))
}

/// The Cargo target folder above `out_dir`: the nearest ancestor holding Cargo's `CACHEDIR.TAG`.
pub(crate) fn target_dir_above(out_dir: &Path) -> Option<PathBuf> {
    out_dir.ancestors().skip(1).find(|d| d.join("CACHEDIR.TAG").is_file()).map(Path::to_path_buf)
}

/// Every regular, non-hidden file under `dir`, as (path relative to `dir` with `/`, full path),
/// sorted by relative path.
pub(crate) fn files_under(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((rel, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same cases as kenosis-macros' `index` tests.
    const CASES: &[(&str, &str)] = &[
        ("models/cls.onnx", "models/cls.onnx"),
        ("./models/cls.onnx", "models/cls.onnx"),
        ("models//cls.onnx", "models/cls.onnx"),
        ("models\\cls.onnx", "models/cls.onnx"),
        ("a/b/../cls.onnx", "a/cls.onnx"),
        ("../shared/m.onnx", "../shared/m.onnx"),
        ("../../x/./m.onnx", "../../x/m.onnx"),
        ("/abs/./m.onnx", "/abs/m.onnx"),
        ("/../m.onnx", "/m.onnx"),
    ];

    #[test]
    fn normalizes_like_the_macro() {
        for (input, want) in CASES {
            assert_eq!(normalize(input), *want, "{input}");
        }
        let macro_src = include_str!("../../kenosis-macros/src/index.rs");
        for (input, want) in CASES {
            let line = format!("({:?}, {:?}),", input, want);
            assert!(macro_src.contains(&line), "kenosis-macros lacks the case {line}");
        }
    }

    #[test]
    fn record_names() {
        assert_eq!(record_name("models/cls.onnx"), "models__cls.onnx.json");
        assert_eq!(record_name("../m/x.onnx"), "_up___m__x.onnx.json");
    }

    #[test]
    fn finds_target_dir_and_files() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("target/debug/build/app-123/out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(d.path().join("target/CACHEDIR.TAG"), "Signature").unwrap();
        assert_eq!(target_dir_above(&out).unwrap(), d.path().join("target"));
        let c = d.path().join("calib");
        std::fs::create_dir_all(c.join("x")).unwrap();
        std::fs::write(c.join("b.png"), "b").unwrap();
        std::fs::write(c.join("x/a.bin"), "a").unwrap();
        std::fs::write(c.join(".hidden"), "h").unwrap();
        let names: Vec<String> = files_under(&c).unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(names, vec!["b.png", "x/a.bin"]);
    }
}
