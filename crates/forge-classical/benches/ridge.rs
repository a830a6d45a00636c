//! Criterion benches (CPU): closed-form ridge on California housing (20,640 x 8, the issue's
//! performance target) and on a size grid, and one mini-batch SGD epoch over California housing.
//!
//! Run: `cargo bench -p forge-classical --bench ridge`

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forge_classical::{fit_linear_sgd, ridge, SgdParams};
use forge_data::{datasets_dir, load_csv};
use forge_linalg::rng::{randn, seeded_rng};
use std::hint::black_box;

fn housing() -> (candle_core::Tensor, candle_core::Tensor) {
    let path = datasets_dir().join("california_housing.csv");
    let d = load_csv(&path, "MedHouseVal", &[]).expect("datasets/california_housing.csv");
    (d.x, d.y)
}

fn bench_ridge(c: &mut Criterion) {
    let (x, y) = housing();
    assert_eq!(x.dims(), &[20640, 8]);
    c.bench_function("cpu/ridge/california_housing_20640x8", |b| {
        b.iter(|| ridge(black_box(&x), black_box(&y), 1.0).unwrap())
    });
    let mut g = c.benchmark_group("cpu/ridge/size");
    let mut rng = seeded_rng(0);
    for &(n, d) in &[
        (1_000usize, 8usize),
        (20_640, 8),
        (20_640, 32),
        (100_000, 16),
    ] {
        let x = randn(&[n, d], candle_core::DType::F64, &Device::Cpu, &mut rng).unwrap();
        let y = randn(&[n], candle_core::DType::F64, &Device::Cpu, &mut rng).unwrap();
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x{d}")),
            &(x, y),
            |b, (x, y)| b.iter(|| ridge(black_box(x), black_box(y), 1.0).unwrap()),
        );
    }
    g.finish();
}

fn bench_sgd(c: &mut Criterion) {
    let (x, y) = housing();
    let s = forge_linalg::Standardizer::fit(&x).unwrap();
    let x = s.transform(&x).unwrap();
    let p = SgdParams::default()
        .lr(0.01)
        .epochs(1)
        .batch_size(32)
        .seed(0);
    c.bench_function("cpu/sgd/one_epoch_california_housing_bs32", |b| {
        b.iter(|| fit_linear_sgd(black_box(&x), black_box(&y), &p).unwrap())
    });
}

criterion_group!(benches, bench_ridge, bench_sgd);
criterion_main!(benches);
