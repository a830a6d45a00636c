//! MMD benchmarks: the permutation test at 2,000 + 2,000 rows (d = 10, 1,000 permutations),
//! the linear-time test and the blocked quadratic estimator at large n, and the whole gate.
//!
//! `cargo bench -p forge-safety --bench mmd`

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forge_linalg::rng::{randn, seeded_rng};
use forge_safety::{
    mmd2_linear, mmd2_unbiased, mmd_test, should_transfer, GateConfig, MmdConfig, MmdMethod,
};
use std::hint::black_box;

fn pair(n: usize, d: usize) -> (Tensor, Tensor) {
    let mut rng = seeded_rng(7);
    let s = randn(&[n, d], DType::F64, &Device::Cpu, &mut rng).unwrap();
    let t = (randn(&[n, d], DType::F64, &Device::Cpu, &mut rng).unwrap() + 0.1).unwrap();
    (s, t)
}

fn permutation(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_mmd_permutation_test");
    g.sample_size(10);
    for n in [500usize, 2_000] {
        let (s, t) = pair(n, 10);
        let cfg = MmdConfig {
            n_permutations: 1_000,
            method: MmdMethod::Permutation,
            ..Default::default()
        };
        g.bench_with_input(
            BenchmarkId::new("d10_1000perm", format!("{n}+{n}")),
            &n,
            |b, _| b.iter(|| black_box(mmd_test(&s, &t, &cfg).unwrap())),
        );
    }
    g.finish();
}

fn large_n(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_mmd_large_n");
    g.sample_size(10);
    let (s, t) = pair(20_000, 10);
    g.bench_function("linear_time_20000+20000_d10", |b| {
        b.iter(|| black_box(mmd2_linear(&s, &t, &[4.0], 0).unwrap()))
    });
    let (s5, t5) = pair(5_000, 10);
    g.bench_function("blocked_unbiased_5000+5000_d10", |b| {
        b.iter(|| black_box(mmd2_unbiased(&s5, &t5, &[4.0]).unwrap()))
    });
    g.finish();
}

fn gate(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_should_transfer");
    g.sample_size(10);
    for n in [2_000usize, 20_000] {
        let (s, t) = pair(n, 10);
        g.bench_with_input(BenchmarkId::new("d10", format!("{n}+{n}")), &n, |b, _| {
            b.iter(|| black_box(should_transfer(&s, &t, &GateConfig::default()).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, permutation, large_n, gate);
criterion_main!(benches);
