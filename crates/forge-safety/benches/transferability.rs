//! Encoder-safety benchmarks: linear CKA (both estimators) at n = 2,000, d = 768, and LogME at
//! n = 2,000, d = 768, 4 classes (targets: < 1 s and < 2 s on 2 cores).
//!
//! `cargo bench -p forge-safety --bench transferability -- --warm-up-time 1 --measurement-time 3`

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forge_linalg::rng::{randn, seeded_rng};
use forge_safety::{linear_cka, logme_classification, CkaEstimator};
use std::hint::black_box;

fn features(n: usize, d: usize, seed: u64) -> Tensor {
    randn(&[n, d], DType::F32, &Device::Cpu, &mut seeded_rng(seed)).unwrap()
}

fn cka(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_linear_cka");
    g.sample_size(10);
    let (n, d) = (2_000, 768);
    let x = features(n, d, 1);
    let y = features(n, d, 2);
    for est in [CkaEstimator::Unbiased, CkaEstimator::Biased] {
        g.bench_with_input(
            BenchmarkId::new(format!("{est:?}"), format!("n{n}_d{d}")),
            &est,
            |b, est| b.iter(|| black_box(linear_cka(&x, &y, *est).unwrap())),
        );
    }
    g.finish();
}

fn logme(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_logme");
    g.sample_size(10);
    let (n, d) = (2_000, 768);
    let x = features(n, d, 3);
    let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    g.bench_function(BenchmarkId::new("4_classes", format!("n{n}_d{d}")), |b| {
        b.iter(|| black_box(logme_classification(&x, &labels).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, cka, logme);
criterion_main!(benches);
