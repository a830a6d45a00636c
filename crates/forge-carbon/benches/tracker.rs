//! Cost of tracking: start+stop of a tracker, and a short CPU-bound loop with and without tracking.
//!
//! `cargo bench -p forge-carbon --bench tracker`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use forge_carbon::{CarbonConfig, CarbonTracker};

fn work(iters: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    x
}

fn bench(c: &mut Criterion) {
    let cfg = CarbonConfig {
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::new(cfg).unwrap();
    c.bench_function("cpu/start_stop", |b| {
        b.iter(|| {
            t.start().unwrap();
            std::hint::black_box(t.stop().unwrap())
        })
    });
    let mut g = c.benchmark_group("cpu/loop");
    g.sample_size(20);
    for iters in [1_000_000u64, 10_000_000] {
        g.bench_with_input(BenchmarkId::new("plain", iters), &iters, |b, &n| {
            b.iter(|| std::hint::black_box(work(n)))
        });
        g.bench_with_input(BenchmarkId::new("tracked", iters), &iters, |b, &n| {
            b.iter(|| {
                t.start().unwrap();
                let r = work(n);
                std::hint::black_box(t.stop().unwrap());
                r
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
