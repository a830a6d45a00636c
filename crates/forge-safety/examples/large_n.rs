//! Large-n check: the gate and the MMD estimators at 20,000 + 20,000 rows without an
//! O(n^2) kernel matrix (a 40,000^2 f64 matrix would need 12.8 GB). Prints times and the peak
//! resident memory (VmHWM from /proc/self/status).
//!
//! `cargo run -p forge-safety --example large_n --release`

use candle_core::{DType, Device};
use forge_linalg::rng::{randn, seeded_rng};
use forge_safety::{mmd2_linear, mmd2_unbiased, should_transfer, GateConfig};
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let n = 20_000;
    let mut rng = seeded_rng(3);
    let s = randn(&[n, 10], DType::F64, &Device::Cpu, &mut rng)?;
    let t = (randn(&[n, 10], DType::F64, &Device::Cpu, &mut rng)? + 0.05)?;
    println!(
        "data: {n} + {n} rows, d = 10; peak RSS {:.0} MB",
        peak_rss_mb()
    );

    let i = Instant::now();
    let d = should_transfer(&s, &t, &GateConfig::default())?;
    println!(
        "should_transfer: {:?} in {:.2} s (MMD {:?}: MMD^2 = {:.5}, p = {:.3}; PAD = {:.3}); peak RSS {:.0} MB",
        d.verdict,
        i.elapsed().as_secs_f64(),
        d.mmd.method,
        d.mmd.mmd2,
        d.mmd.p_value,
        d.pad.pad,
        peak_rss_mb()
    );
    let h = d.mmd.bandwidths[0];
    let i = Instant::now();
    let l = mmd2_linear(&s, &t, &[h], 0)?;
    println!(
        "linear-time MMD^2 = {:.5} (z = {:.2}, p = {:.3}) in {:.3} s",
        l.mmd2,
        l.z,
        l.p_value,
        i.elapsed().as_secs_f64()
    );
    let i = Instant::now();
    let u = mmd2_unbiased(&s, &t, &[h])?;
    println!(
        "blocked unbiased MMD^2 = {:.6} in {:.2} s; peak RSS {:.0} MB",
        u,
        i.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    Ok(())
}
