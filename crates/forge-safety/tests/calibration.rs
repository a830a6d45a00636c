//! Calibration (false-alarm rate on same-distribution data) and power of the shift tests.
//!
//! Reference: a valid level-alpha test rejects a true null with probability <= alpha, and the
//! permutation test's rejection rate is exactly alpha up to the discreteness of (k + 1) / (n_perm + 1)
//! (Phipson & Smyth 2010). Over 200 independent seeds the binomial standard error at 0.05 is
//! 0.0154, so [0.02, 0.08] is about +-2 standard errors.

use candle_core::{DType, Device, Tensor};
use forge_linalg::rng::{randn, seeded_rng};
use forge_safety::{ks_per_feature, mmd_test, should_transfer, GateConfig, KsConfig, MmdConfig};

const ALPHA: f64 = 0.05;

fn gaussians(seed: u64, n: usize, d: usize, shift0: f64) -> (Tensor, Tensor) {
    let mut rng = seeded_rng(seed);
    let s = randn(&[n, d], DType::F64, &Device::Cpu, &mut rng).unwrap();
    let t = randn(&[n, d], DType::F64, &Device::Cpu, &mut rng).unwrap();
    let mut shift = vec![0.0; d];
    shift[0] = shift0;
    let shift = Tensor::from_vec(shift, (1, d), &Device::Cpu).unwrap();
    (s, t.broadcast_add(&shift).unwrap())
}

fn small_gate(seed: u64) -> GateConfig {
    let mut g = GateConfig::default().with_seed(seed);
    g.mmd.n_permutations = 200;
    g
}

#[test]
fn false_alarm_rate_over_200_seeds_is_calibrated() {
    let (n, d, seeds) = (50, 5, 200u64);
    let (mut mmd_rej, mut ks_rej, mut gate_rej) = (0usize, 0usize, 0usize);
    for seed in 0..seeds {
        let (s, t) = gaussians(10_000 + seed, n, d, 0.0);
        let mmd = mmd_test(
            &s,
            &t,
            &MmdConfig {
                n_permutations: 200,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        mmd_rej += usize::from(mmd.p_value <= ALPHA);
        let ks = ks_per_feature(&s, &t, &KsConfig::default()).unwrap();
        ks_rej += usize::from(ks.min_p_adjusted <= ALPHA);
        let g = should_transfer(&s, &t, &small_gate(seed)).unwrap();
        gate_rej += usize::from(g.shift_detected);
    }
    let rate = |k: usize| k as f64 / seeds as f64;
    eprintln!(
        "false-alarm rates at alpha = {ALPHA}: MMD {:.3}, KS-Holm {:.3}, gate (MMD + KS at alpha/2 each) {:.3}",
        rate(mmd_rej),
        rate(ks_rej),
        rate(gate_rej)
    );
    for (name, k) in [
        ("MMD permutation", mmd_rej),
        ("KS + Holm", ks_rej),
        ("gate shift_detected", gate_rej),
    ] {
        let r = rate(k);
        assert!(
            (0.02..=0.08).contains(&r),
            "{name} false-alarm rate {r} outside [0.02, 0.08]"
        );
    }
}

#[test]
fn half_sd_shift_in_one_of_ten_features_is_detected() {
    let (n, d, seeds) = (500, 10, 50u64);
    // Two workers over the seeds (the debug-built test is CPU-bound and single-threaded).
    let hits: Vec<(bool, bool, bool)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                scope.spawn(move || {
                    (0..seeds)
                        .filter(|s| s % 2 == w)
                        .map(|seed| {
                            let (s, t) = gaussians(20_000 + seed, n, d, 0.5);
                            let g = should_transfer(&s, &t, &small_gate(seed)).unwrap();
                            // The shifted feature is the one flagged.
                            if g.ks.n_shifted > 0 {
                                assert!(
                                    g.ks.features[0].shifted,
                                    "seed {seed}: feature 0 not among the shifted ones"
                                );
                            }
                            (
                                g.shift_detected,
                                g.ks.min_p_adjusted <= ALPHA,
                                g.mmd.p_value <= ALPHA,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let rate = |f: fn(&(bool, bool, bool)) -> bool| {
        hits.iter().filter(|h| f(h)).count() as f64 / seeds as f64
    };
    let (gate, ks, mmd) = (rate(|h| h.0), rate(|h| h.1), rate(|h| h.2));
    eprintln!("power (n = {n} per side, 0.5 sd in 1 of {d}): gate {gate:.2}, KS-Holm {ks:.2}, MMD (median heuristic) {mmd:.2}");
    assert!(gate >= 0.9, "gate power {gate}");
    assert!(ks >= 0.9, "KS power {ks}");
}
