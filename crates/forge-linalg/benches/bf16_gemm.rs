//! bf16 products against the f32 `gemm` crate on the dense shapes of DistilBERT-base at
//! batch 16 x seq 64 (m = 1024 tokens): attention projections 1024x768x768, FFN up
//! 1024x3072x768 and FFN down 1024x768x3072 (m x n x k). One criterion id per path the
//! machine has. The throughput is set to each product's FLOPs (2 m n k), so criterion's
//! "elem/s" reads as FLOP/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forge_linalg::bf16::{Bf16Gemm, Bf16Path, MatRef};

const SHAPES: [(usize, usize, usize); 3] = [(1024, 768, 768), (1024, 3072, 768), (1024, 768, 3072)];

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let threads = candle_core::utils::get_num_threads();
    let mut g = c.benchmark_group("cpu_gemm");
    g.sample_size(10);
    for (m, n, k) in SHAPES {
        let x = data(m * k);
        let w = data(n * k); // [out, in], used as W^T like a linear layer
        let mut y = vec![0f32; m * n];
        let shape = format!("{m}x{n}x{k}");
        // FLOPs per product, reported as "elements" so criterion prints a rate: x 1e-9 = GFLOP/s
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_with_input(BenchmarkId::new("f32_gemm", &shape), &(), |bch, _| {
            bch.iter(|| {
                // SAFETY: x is m x k, w is n x k (read as its transpose), y is m x n, all
                // row-major and fully allocated.
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
                        if threads > 1 {
                            gemm::Parallelism::Rayon(threads)
                        } else {
                            gemm::Parallelism::None
                        },
                    )
                }
            })
        });
        for path in Bf16Path::available() {
            let a = MatRef::row_major(&x, m, k).unwrap();
            let b = MatRef::row_major(&w, n, k).unwrap().t();
            let run = Bf16Gemm::new().path(path);
            g.bench_with_input(
                BenchmarkId::new(format!("bf16_{path}"), &shape),
                &(),
                |bch, _| bch.iter(|| run.run(a, b, &mut y).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
