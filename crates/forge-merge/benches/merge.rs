//! Criterion benchmarks of forge-merge's per-tensor kernels (linear, task arithmetic, TIES,
//! SLERP) on a DistilBERT FFN-sized tensor (768 x 3072) with two fine-tunes and a base.
//! End-to-end file merges are timed by the `ties_distilbert` example (wall time and peak RSS).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forge_merge::kernels;
use forge_merge::{MergeMethod, TensorParams};
use rand::{Rng, SeedableRng};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random::<f32>() - 0.5).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_merge_kernel");
    for &n in &[768 * 768, 768 * 3072] {
        let base = data(n, 0);
        let a: Vec<f32> = base
            .iter()
            .zip(data(n, 1))
            .map(|(b, x)| b + 0.01 * x)
            .collect();
        let b: Vec<f32> = base
            .iter()
            .zip(data(n, 2))
            .map(|(b, x)| b + 0.01 * x)
            .collect();
        let models = [a.as_slice(), b.as_slice()];
        g.bench_with_input(BenchmarkId::new("linear", n), &n, |bch, _| {
            bch.iter(|| kernels::linear(&models, &[0.5, 0.5], true))
        });
        for m in [MergeMethod::TaskArithmetic, MergeMethod::Ties] {
            let mut p = TensorParams::new(m, 2);
            p.densities = vec![0.5, 0.5];
            g.bench_with_input(BenchmarkId::new(m.name(), n), &n, |bch, _| {
                bch.iter(|| kernels::task_arithmetic_family(m, &base, &models, &p, "w"))
            });
        }
        g.bench_with_input(BenchmarkId::new("slerp", n), &n, |bch, _| {
            bch.iter(|| kernels::slerp(0.5, &a, &b))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
