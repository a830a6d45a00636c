//! GFLOP/s of the bf16 products on each path this machine has, against the f32 `gemm` crate,
//! on the dense shapes of DistilBERT-base at batch 16 x seq 64 (MiniLM's with `--minilm`; a
//! quicker read than the criterion bench `bf16_gemm`):
//! `RAYON_NUM_THREADS=2 cargo run --release -p forge-linalg --example bf16_gflops [-- --minilm]`.

use forge_linalg::bf16::{Bf16Gemm, Bf16Path, MatRef};
use std::time::Instant;

/// Timed repetitions per shape and path (the best one counts).
const REPS: usize = 7;

fn best_ms(mut f: impl FnMut()) -> f64 {
    f();
    (0..REPS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> forge_linalg::Result<()> {
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{threads} thread(s); paths here: {:?}",
        Bf16Path::available()
    );
    println!(
        "| m x n x k | f32 gemm | {} |",
        Bf16Path::available()
            .iter()
            .map(|p| format!("bf16 {p}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (m, n, k) in shapes() {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y = vec![0f32; m * n];
        let gflop = 2.0 * (m * n * k) as f64 / 1e9;
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let f32_ms = best_ms(|| {
            // SAFETY: x is m x k, w is n x k (read as k x n through its strides), y is m x n.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    y.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        });
        let mut cells = vec![format!(
            "{:.1} ms, {:.0} GFLOP/s",
            f32_ms,
            gflop / f32_ms * 1e3
        )];
        for path in Bf16Path::available() {
            let (a, b) = (
                MatRef::row_major(&x, m, k)?,
                MatRef::row_major(&w, n, k)?.t(),
            );
            let g = Bf16Gemm::new().path(path);
            let ms = best_ms(|| g.run(a, b, &mut y).expect("valid shapes"));
            cells.push(format!("{ms:.1} ms, {:.0} GFLOP/s", gflop / ms * 1e3));
        }
        println!("| {m}x{n}x{k} | {} |", cells.join(" | "));
    }
    Ok(())
}

/// The shapes: DistilBERT-base's by default, MiniLM's with `--minilm`.
fn shapes() -> Vec<(usize, usize, usize)> {
    if std::env::args().any(|a| a == "--minilm") {
        vec![(1024, 384, 384), (1024, 1536, 384), (1024, 384, 1536)]
    } else {
        vec![(1024, 768, 768), (1024, 3072, 768), (1024, 768, 3072)]
    }
}
