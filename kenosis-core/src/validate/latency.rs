//! Latency of the FP32 and INT8 sessions, timed side by side in one process.
//!
//! Runs alternate between the two models (and which one goes first alternates per round), so
//! CPU frequency changes, cache state and other load on the machine hit both alike. The sessions
//! are built with intra-op spinning off (see [`crate::runtime::SessionOptions`]): a spinning
//! session's idle threads would steal the cores the other one is timed on.

use super::metrics::median;
use crate::error::Result;
use crate::runtime::{Feed, Session};
use std::time::Instant;

/// Median milliseconds per run of each model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// FP32 median, ms.
    pub fp32_ms: f64,
    /// INT8 median, ms.
    pub int8_ms: f64,
}

/// Times `runs` interleaved rounds after `warmup` untimed ones, each model on its own feeds.
/// The time covers a whole [`Session::run`], input and output copies included, the same for both.
pub fn measure(
    fp32: &mut Session,
    int8: &mut Session,
    fp32_feeds: &[(String, Feed)],
    int8_feeds: &[(String, Feed)],
    warmup: usize,
    runs: usize,
) -> Result<Timing> {
    for _ in 0..warmup {
        fp32.run(fp32_feeds)?;
        int8.run(int8_feeds)?;
    }
    let mut t_fp32 = Vec::with_capacity(runs);
    let mut t_int8 = Vec::with_capacity(runs);
    for round in 0..runs {
        if round % 2 == 0 {
            t_fp32.push(time(fp32, fp32_feeds)?);
            t_int8.push(time(int8, int8_feeds)?);
        } else {
            t_int8.push(time(int8, int8_feeds)?);
            t_fp32.push(time(fp32, fp32_feeds)?);
        }
    }
    Ok(Timing { fp32_ms: median(&t_fp32), int8_ms: median(&t_int8) })
}

fn time(session: &mut Session, feeds: &[(String, Feed)]) -> Result<f64> {
    let start = Instant::now();
    session.run(feeds)?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}
