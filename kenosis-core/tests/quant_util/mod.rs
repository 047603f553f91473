// Test helpers for the quantizer: activation ranges straight from ORT (every float
// intermediate exposed as an output), fusion counts from ORT's optimised graph, cosine.
#![allow(dead_code)]

use kenosis_core::calibrate::Ranges;
use kenosis_core::onnx::proto::{data_type as dt, ValueInfoProto};
use kenosis_core::onnx::Model;
use kenosis_core::runtime::{Feed, Optimization, Session, SessionOptions};
use ndarray::ArrayD;
use std::collections::{BTreeMap, HashSet};

/// Runs `model` unoptimised on each feed set with every main-graph tensor exposed, and
/// returns min/max of every float tensor.
pub fn ranges(model: &Model, feeds: &[Vec<(String, Feed)>]) -> Ranges {
    let mut m = model.clone();
    let g = m.graph_mut();
    let mut have: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let mut extra = Vec::new();
    for n in &g.node {
        for o in &n.output {
            if !o.is_empty() && have.insert(o.clone()) {
                extra.push(ValueInfoProto {
                    name: o.clone(),
                    ..Default::default()
                });
            }
        }
    }
    g.output.extend(extra);
    let opts = SessionOptions {
        optimization: Optimization::Disable,
        ..Default::default()
    };
    let mut s = Session::from_model(&m, &opts).expect("ranges session");
    let float: HashSet<String> = s
        .outputs()
        .iter()
        .filter(|o| o.data_type == dt::FLOAT)
        .map(|o| o.name.clone())
        .collect();
    let mut r: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    for f in feeds {
        for (name, a) in s.run(f).expect("ranges run") {
            if !float.contains(&name) || a.is_empty() {
                continue;
            }
            let (lo, hi) = a
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            let e = r.entry(name).or_insert((lo, hi));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
        }
    }
    // Graph inputs too.
    for f in feeds {
        for (name, feed) in f {
            if let Feed::F32(a) = feed {
                let (lo, hi) = a
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                let e = r.entry(name.clone()).or_insert((lo, hi));
                e.0 = e.0.min(lo);
                e.1 = e.1.max(hi);
            }
        }
    }
    Ranges(r)
}

/// Op type -> count in ORT's optimised graph (Extended level, as ORT writes it).
pub fn fused_ops(model: &Model) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.onnx");
    let opts = SessionOptions {
        optimization: Optimization::Extended,
        optimized_model_path: Some(path.clone()),
        ..Default::default()
    };
    Session::from_model(model, &opts).expect("optimised session");
    let opt = Model::load(&path).expect("optimised model");
    let mut c = BTreeMap::new();
    let g = opt.graph();
    let producer: BTreeMap<&str, &str> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n.op_type.as_str())))
        .collect();
    for n in &g.node {
        *c.entry(n.op_type.clone()).or_insert(0) += 1;
        if n.op_type == "Conv" && n.input.first().and_then(|i| producer.get(i.as_str())) == Some(&"DequantizeLinear") {
            *c.entry("Conv<-DQ".to_string()).or_insert(0) += 1;
        }
    }
    c
}

pub fn count(c: &BTreeMap<String, usize>, op: &str) -> usize {
    c.get(op).copied().unwrap_or(0)
}

/// Cosine similarity of two equally long vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
}

/// Runs a model once on one feed set, outputs flattened.
pub fn run(model: &Model, feed: &[(String, Feed)]) -> Vec<(String, Vec<f32>)> {
    let mut s = Session::from_model(model, &SessionOptions::default()).expect("session");
    s.run(feed)
        .expect("run")
        .into_iter()
        .map(|(n, a)| (n, a.iter().copied().collect()))
        .collect()
}

/// `shared/<what>` beside the checkout (or beside the worktree folder), when present.
pub fn shared(what: &str) -> Option<std::path::PathBuf> {
    let base = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        base.join("../../shared").join(what),
        base.join("../../../shared").join(what),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .and_then(|p| p.canonicalize().ok())
}

/// Images of shared/images (sorted, `skip` then `take`), stretched to `shape` (NCHW), as feeds of input `x`.
pub fn image_feeds(shape: &[usize], mode: &str, bgr: bool, skip: usize, take: usize) -> Vec<Vec<(String, Feed)>> {
    let dir = shared("images").expect("shared/images");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (h, w) = (shape[2], shape[3]);
    files
        .iter()
        .skip(skip)
        .take(take)
        .map(|p| {
            let img = image::open(p).unwrap().to_rgb8();
            let img = image::imageops::resize(&img, w as u32, h as u32, image::imageops::FilterType::Triangle);
            let mut a = ArrayD::<f32>::zeros(shape.to_vec());
            for y in 0..h {
                for x in 0..w {
                    let px = img.get_pixel(x as u32, y as u32);
                    for c in 0..3 {
                        let src = if bgr { 2 - c } else { c };
                        let v = px[src] as f32 / 255.0;
                        let v = match mode {
                            "half" => (v - 0.5) / 0.5,
                            "imagenet" => (v - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c],
                            _ => v,
                        };
                        a[[0, c, y, x]] = v;
                    }
                }
            }
            vec![("x".to_string(), Feed::F32(a))]
        })
        .collect()
}
