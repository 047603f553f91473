//! Accuracy metrics between an FP32 output and its INT8 counterpart: cosine similarity, top-1
//! agreement for classifier-shaped outputs, max absolute error.

use serde::{Deserialize, Serialize};

/// Cosine similarity of two equally long value lists, computed in f64.
///
/// Pairs where either value is non-finite are left out (the caller counts them). When both
/// sides are all zero the outputs agree exactly (1.0); when only one is, they share nothing (0.0).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    match (na == 0.0, nb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0),
    }
}

/// The largest `|a - b|` over pairs where both values are finite (0.0 when there are none).
pub fn max_abs_error(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

/// Index of the largest value (the first one on ties; NaN never wins). `None` for an empty row.
pub fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// How many rows of `classes` values have the same arg-max in `a` and `b`: `(agreeing, rows)`.
pub fn top1_matches(a: &[f32], b: &[f32], classes: usize) -> (u64, u64) {
    if classes == 0 {
        return (0, 0);
    }
    let mut agree = 0;
    let mut rows = 0;
    for (ra, rb) in a.chunks_exact(classes).zip(b.chunks_exact(classes)) {
        rows += 1;
        if argmax(ra).is_some() && argmax(ra) == argmax(rb) {
            agree += 1;
        }
    }
    (agree, rows)
}

/// Ops after which a `[N, T, C]` output is read as class scores per position.
const SCORE_OPS: &[&str] = &["Softmax", "LogSoftmax"];

/// What kind of output this is, for the metrics that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// `[N, C]` with `C > 1`: one class decision per row (a classifier head).
    Classifier,
    /// `[N, T, C]` (or more leading dims) with `C > 1`, at most [`MAX_POSITIONS`] positions
    /// per sample and produced by Softmax/LogSoftmax: one class decision per position (a
    /// sequence recognizer such as CTC text recognition).
    PerPosition,
    /// Anything else (feature maps, boxes, detection heads): cosine and max error only.
    Tensor,
}

/// The most positions (product of the dims between batch and classes) a per-position
/// classifier may have; more than that is a dense map, not a sequence.
pub const MAX_POSITIONS: usize = 4096;

/// Classifies an output by its shape and the op that produced it (looked up through
/// Identity/Reshape/Flatten/Squeeze). Returns the kind and, for classifiers, the class count.
///
/// Rank-2 `[N, C]` outputs with `C > 1` are classifiers whatever produced them. Higher ranks
/// count only when a Softmax/LogSoftmax produced them: a detector's `[1, 22, 2100]` box tensor
/// has the same rank and must not be read as 22 class decisions over 2100 anchors.
pub fn output_kind(shape: &[usize], producer_op: Option<&str>) -> (OutputKind, Option<usize>) {
    let Some(&classes) = shape.last() else { return (OutputKind::Tensor, None) };
    if classes < 2 {
        return (OutputKind::Tensor, None);
    }
    match shape.len() {
        2 => (OutputKind::Classifier, Some(classes)),
        n if n >= 3 => {
            let positions: usize = shape[1..n - 1].iter().product();
            if positions <= MAX_POSITIONS && producer_op.is_some_and(|op| SCORE_OPS.contains(&op)) {
                (OutputKind::PerPosition, Some(classes))
            } else {
                (OutputKind::Tensor, None)
            }
        }
        _ => (OutputKind::Tensor, None),
    }
}

/// A sample whose FP32 output peaks below this fraction of the output's largest value over all
/// samples is blank: nothing was detected, and its cosine compares rounding noise (two exact
/// FP32 rewrites of PP-OCRv4 det disagree there with a cosine near 0).
pub const BLANK_PEAK: f64 = 1e-3;
/// A blank sample counts as agreeing when INT8 stays within this fraction of that value.
pub const BLANK_TOLERANCE: f64 = 1e-2;
/// Peaks and errors below this are blank whatever the other samples hold, so a set of samples
/// that are all blank (a detector shown only empty scenes) is recognised as such.
pub const BLANK_FLOOR: f64 = 1e-6;

/// Running figures for one output over all samples.
#[derive(Debug, Clone)]
pub(crate) struct OutputStats {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: OutputKind,
    pub classes: Option<usize>,
    pub cosines: Vec<f64>,
    /// Per sample: the largest finite `|fp32|` and the largest `|fp32 - int8|`.
    pub peaks: Vec<(f64, f64)>,
    pub max_abs_error: f64,
    pub top1: (u64, u64),
    /// Values non-finite in INT8 where FP32 is finite.
    pub int8_nonfinite: u64,
    /// Values non-finite in FP32 (left out of every metric).
    pub fp32_nonfinite: u64,
}

impl OutputStats {
    pub fn new(name: &str, shape: &[usize], producer_op: Option<&str>) -> Self {
        let (kind, classes) = output_kind(shape, producer_op);
        OutputStats {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind,
            classes,
            cosines: Vec::new(),
            peaks: Vec::new(),
            max_abs_error: 0.0,
            top1: (0, 0),
            int8_nonfinite: 0,
            fp32_nonfinite: 0,
        }
    }

    /// Adds one sample's pair of outputs (same length, checked by the caller). `same_shape`:
    /// the output has the shape it had on the first sample, so its class axis is still known.
    pub fn add(&mut self, fp32: &[f32], int8: &[f32], same_shape: bool) {
        self.cosines.push(cosine(fp32, int8));
        let peak = fp32.iter().filter(|x| x.is_finite()).map(|&x| f64::from(x).abs()).fold(0.0, f64::max);
        let err = max_abs_error(fp32, int8);
        self.peaks.push((peak, err));
        self.max_abs_error = self.max_abs_error.max(err);
        for (x, y) in fp32.iter().zip(int8) {
            if !x.is_finite() {
                self.fp32_nonfinite += 1;
            } else if !y.is_finite() {
                self.int8_nonfinite += 1;
            }
        }
        if let Some(c) = self.classes.filter(|_| same_shape) {
            let (a, n) = top1_matches(fp32, int8, c);
            self.top1.0 += a;
            self.top1.1 += n;
        }
    }

    /// Which samples are blank on both sides (see [`BLANK_PEAK`], [`BLANK_FLOOR`]); they are
    /// left out of the cosine figures. A blank FP32 output that INT8 fills in is not blank.
    pub fn blank(&self) -> Vec<bool> {
        let scale = self.peaks.iter().map(|p| p.0).fold(0.0, f64::max);
        self.peaks
            .iter()
            .map(|&(peak, err)| {
                peak < (BLANK_PEAK * scale).max(BLANK_FLOOR)
                    && err <= (BLANK_TOLERANCE * scale).max(BLANK_FLOOR)
            })
            .collect()
    }

    fn counted(&self) -> Vec<f64> {
        let blank = self.blank();
        self.cosines.iter().zip(&blank).filter(|(_, &b)| !b).map(|(&c, _)| c).collect()
    }

    /// Mean cosine over the counted samples: 1.0 when every sample is blank (they agree), 0.0
    /// with no samples at all.
    pub fn cosine_mean(&self) -> f64 {
        let c = self.counted();
        match (c.is_empty(), self.cosines.is_empty()) {
            (true, true) => 0.0,
            (true, false) => 1.0,
            _ => c.iter().sum::<f64>() / c.len() as f64,
        }
    }

    pub fn cosine_min(&self) -> f64 {
        self.counted().into_iter().fold(f64::INFINITY, f64::min).min(1.0)
    }

    pub fn blank_samples(&self) -> usize {
        self.blank().into_iter().filter(|&b| b).count()
    }

    pub fn top1_agreement(&self) -> Option<f64> {
        (self.classes.is_some() && self.top1.1 > 0).then(|| self.top1.0 as f64 / self.top1.1 as f64)
    }
}

/// The median of `values` (mean of the middle two for an even count; 0.0 when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_samples_are_left_out_only_when_int8_agrees() {
        let mut s = OutputStats::new("p", &[1, 4], None);
        s.add(&[1.0, 0.0, 0.5, 0.0], &[0.9, 0.0, 0.5, 0.0], true);
        // Nothing detected: FP32 and INT8 are both ~0 but point in unrelated directions.
        s.add(&[1e-7, 0.0, 0.0, 0.0], &[0.0, 2e-4, 0.0, 0.0], true);
        assert_eq!(s.blank(), vec![false, true]);
        assert!(s.cosine_mean() > 0.99, "{}", s.cosine_mean());
        assert_eq!(s.blank_samples(), 1);
        // INT8 fills in a blank output: that sample counts, with its cosine of 0.
        s.add(&[1e-7, 0.0, 0.0, 0.0], &[0.0, 0.3, 0.0, 0.0], true);
        assert_eq!(s.blank(), vec![false, true, false]);
        assert!(s.cosine_min() < 0.01);
    }

    #[test]
    fn a_set_of_blank_samples_alone_is_blank() {
        // A detector shown only empty scenes: peaks of 1e-7, INT8 within 6e-8.
        let mut s = OutputStats::new("p", &[1, 3], None);
        s.add(&[1e-7, 0.0, 2e-8], &[4e-8, 0.0, 1e-8], true);
        s.add(&[5e-8, 1e-9, 0.0], &[0.0, 3e-8, 0.0], true);
        assert!(s.blank().iter().all(|&b| b));
        assert_eq!((s.cosine_mean(), s.cosine_min()), (1.0, 1.0));
        // A real response next to them makes them blank relative to it, and it counts alone.
        s.add(&[0.9, 0.0, 0.1], &[0.8, 0.0, 0.1], true);
        assert_eq!(s.blank(), vec![true, true, false]);
        assert!(!s.blank().iter().all(|&b| b));
        assert!(s.cosine_mean() > 0.99 && s.cosine_mean() < 1.0);
    }

    #[test]
    fn all_zero_outputs_are_blank_and_agree() {
        let mut s = OutputStats::new("p", &[1, 2], None);
        s.add(&[0.0, 0.0], &[0.0, 0.0], true);
        assert_eq!(s.blank(), vec![true]);
        assert_eq!(s.cosine_mean(), 1.0);
        // INT8 responding where FP32 is exactly zero is not blank.
        let mut s = OutputStats::new("p", &[1, 2], None);
        s.add(&[0.0, 0.0], &[0.5, 0.0], true);
        assert_eq!(s.blank(), vec![false]);
        assert_eq!(s.cosine_mean(), 0.0);
    }
}
