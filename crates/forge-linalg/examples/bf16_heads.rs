//! Time of attention's bf16 products at MiniLM size, called as forge-models' attention calls
//! them: one single-threaded product per (batch element, head), spread over rayon's threads,
//! the scores `Q K^T` (64 x 64 x 32) and the context `P V` (64 x 32 x 64) of 16 sequences of
//! 64 tokens x 12 heads of 32, for 6 layers:
//! `RAYON_NUM_THREADS=2 cargo run --release -p forge-linalg --example bf16_heads`.

use forge_linalg::bf16::{Bf16Gemm, MatRef};
use rayon::prelude::*;
use std::time::Instant;

fn main() -> forge_linalg::Result<()> {
    let (nb, nh, s, d, layers) = (16usize, 12usize, 64usize, 32usize, 6);
    // q, k and v packed as attention reads them: [b * s, h * d]; probabilities [b, h, s, s]
    let qkv: Vec<f32> = (0..nb * s * nh * d)
        .map(|i| ((i * 7919 % 1013) as f32 / 377.0 - 1.3).sin())
        .collect();
    let probs: Vec<f32> = (0..nb * nh * s * s)
        .map(|i| ((i * 7919 % 1013) as f32 / 377.0 - 1.3).cos())
        .collect();
    let head = |t: usize| (t / nh) * s * nh * d + (t % nh) * d;
    let gflop = (layers * 2 * nb * nh * 2 * s * s * d) as f64 / 1e9;
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        for _ in 0..layers {
            (0..nb * nh).into_par_iter().try_for_each(|t| {
                let q = MatRef::new(&qkv[head(t)..], s, d, nh * d, 1)?;
                let kt = MatRef::new(&qkv[head(t)..], s, d, nh * d, 1)?.t();
                std::hint::black_box(Bf16Gemm::new().threads(1).run_new(q, kt, None)?);
                Ok::<_, forge_linalg::LinalgError>(())
            })?;
            (0..nb * nh).into_par_iter().try_for_each(|t| {
                let p = MatRef::row_major(&probs[t * s * s..(t + 1) * s * s], s, s)?;
                let v = MatRef::new(&qkv[head(t)..], s, d, nh * d, 1)?;
                std::hint::black_box(Bf16Gemm::new().threads(1).run_new(p, v, None)?);
                Ok::<_, forge_linalg::LinalgError>(())
            })?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{} thread(s), path {}: {layers} layers of attention products ({} products), best of 20: \
         {best:.2} ms, {:.0} GFLOP/s",
        rayon::current_num_threads(),
        Bf16Gemm::new().selected_path(),
        layers * 2 * nb * nh,
        gflop / best * 1e3
    );
    Ok(())
}
