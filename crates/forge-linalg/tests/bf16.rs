//! bf16 products on every path this machine has, against an f64 reference of the
//! bf16-rounded operands.
//!
//! Tolerance: each product of two bf16 values is exact in f32 (8 + 8 significant bits), so the
//! only error left is the f32 summation of `k` terms, bounded by `k * 2^-24 * sum |a b|`
//! (any order). The check uses `k * 2^-23 * sum |a_ij b_jk|` per element: twice that bound.

use forge_linalg::bf16::{round_to_bf16, Bf16Gemm, Bf16Path, MatRef};
use rand::{Rng, SeedableRng};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// C0 + bf16(A) bf16(B) in f64, and sum |a b| per element.
fn reference(
    a: MatRef<'_>,
    b: MatRef<'_>,
    av: impl Fn(usize, usize) -> f32,
    bv: impl Fn(usize, usize) -> f32,
    c0: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let mut c = vec![0f64; m * n];
    let mut mag = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut g) = (c0[i * n + j] as f64, 0f64);
            for p in 0..k {
                let t = round_to_bf16(av(i, p)) as f64 * round_to_bf16(bv(p, j)) as f64;
                s += t;
                g += t.abs();
            }
            c[i * n + j] = s;
            mag[i * n + j] = g;
        }
    }
    (c, mag)
}

fn check(
    path: Bf16Path,
    (m, n, k): (usize, usize, usize),
    a_t: bool,
    b_t: bool,
    accumulate: bool,
    threads: usize,
) {
    let ad = random(m * k, (m * 31 + k) as u64);
    let bd = random(k * n, (n * 17 + k) as u64 + 1);
    // A stored row-major m x k, or as its transpose (k x m) viewed transposed
    let a = if a_t {
        MatRef::row_major(&ad, k, m).unwrap().t()
    } else {
        MatRef::row_major(&ad, m, k).unwrap()
    };
    let b = if b_t {
        MatRef::row_major(&bd, n, k).unwrap().t()
    } else {
        MatRef::row_major(&bd, k, n).unwrap()
    };
    let av = |i: usize, p: usize| if a_t { ad[p * m + i] } else { ad[i * k + p] };
    let bv = |p: usize, j: usize| if b_t { bd[j * k + p] } else { bd[p * n + j] };
    let c0 = random(m * n, 99);
    let mut c = if accumulate {
        c0.clone()
    } else {
        vec![f32::NAN; m * n]
    };
    let base = if accumulate {
        c0.clone()
    } else {
        vec![0f32; m * n]
    };
    let (want, mag) = reference(a, b, av, bv, &base);
    Bf16Gemm::new()
        .path(path)
        .threads(threads)
        .accumulate(accumulate)
        .run(a, b, &mut c)
        .unwrap();
    for idx in 0..m * n {
        let tol = k.max(1) as f64 * 2f64.powi(-23) * (mag[idx] + base[idx].abs() as f64) + 1e-30;
        let err = (c[idx] as f64 - want[idx]).abs();
        assert!(err <= tol, "{path:?} {m}x{n}x{k} a_t={a_t} b_t={b_t} acc={accumulate}: element {idx}: {} vs {} (err {err:e}, tol {tol:e})", c[idx], want[idx]);
    }
}

#[test]
fn every_available_path_matches_the_reference_on_odd_shapes() {
    let paths = Bf16Path::available();
    assert!(paths.contains(&Bf16Path::F32));
    eprintln!(
        "paths on this machine: {paths:?}; detected {:?}",
        Bf16Path::detect()
    );
    for path in paths {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (33, 31, 65),
            (64, 64, 64),
            (17, 40, 100),
            (70, 300, 33),
            (2, 3, 2),
        ] {
            for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
                check(path, (m, n, k), a_t, b_t, false, 1);
            }
            check(path, (m, n, k), false, true, true, 1);
            check(path, (m, n, k), true, false, false, 2);
        }
        // several tasks and column chunks, accumulating
        check(path, (200, 600, 96), false, true, true, 2);
    }
}

#[test]
fn empty_and_k_zero() {
    for path in Bf16Path::available() {
        let g = Bf16Gemm::new().path(path);
        let empty: [f32; 0] = [];
        let a = MatRef::row_major(&empty, 3, 0).unwrap();
        let b = MatRef::row_major(&empty, 0, 2).unwrap();
        let mut c = vec![5f32; 6];
        g.accumulate(true).run(a, b, &mut c).unwrap();
        assert_eq!(c, vec![5.0; 6]);
        g.run(a, b, &mut c).unwrap();
        assert_eq!(c, vec![0.0; 6]);
        let a0 = MatRef::row_major(&empty, 0, 4).unwrap();
        let b0 = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
        g.run(a0, b0, &mut []).unwrap();
    }
}

#[test]
fn bad_inputs_are_errors() {
    let d = vec![1f32; 12];
    assert!(MatRef::row_major(&d, 4, 4).is_err());
    assert!(MatRef::new(&d, 2, 2, usize::MAX, 1).is_err());
    let a = MatRef::row_major(&d, 3, 4).unwrap();
    let b = MatRef::row_major(&d, 3, 4).unwrap();
    let mut c = vec![0f32; 12];
    assert!(
        Bf16Gemm::new().run(a, b, &mut c).is_err(),
        "inner dimensions differ"
    );
    let b = MatRef::row_major(&d, 4, 3).unwrap();
    assert!(
        Bf16Gemm::new().run(a, b, &mut c[..8]).is_err(),
        "c too short"
    );
    assert!(Bf16Gemm::new().run(a, b, &mut c[..9]).is_ok());
    for p in Bf16Path::ALL {
        let r = Bf16Gemm::new().path(p).run(a, b, &mut c[..9]);
        assert_eq!(r.is_ok(), p.is_available(), "{p:?}");
    }
}

#[test]
fn non_finite_values_propagate() {
    for path in Bf16Path::available() {
        let mut ad = vec![1f32; 4 * 40];
        ad[5] = f32::NAN;
        ad[40 + 3] = f32::INFINITY;
        let bd = vec![0.5f32; 40 * 3];
        let mut c = vec![0f32; 12];
        Bf16Gemm::new()
            .path(path)
            .run(
                MatRef::row_major(&ad, 4, 40).unwrap(),
                MatRef::row_major(&bd, 40, 3).unwrap(),
                &mut c,
            )
            .unwrap();
        assert!(c[0..3].iter().all(|v| v.is_nan()), "{path:?} {c:?}");
        assert!(
            c[3..6].iter().all(|v| *v == f32::INFINITY),
            "{path:?} {c:?}"
        );
        assert!(c[6..].iter().all(|v| *v == 20.0), "{path:?} {c:?}");
    }
}

#[test]
fn new_outputs_start_from_the_bias_and_equal_accumulating_into_bias_rows() {
    for path in Bf16Path::available() {
        // padded (33 x 31 x 65), unpadded (64 x 64 x 64) and a split over tasks
        for &(m, n, k, threads) in &[(33, 31, 65, 1), (64, 64, 64, 2), (200, 96, 40, 2)] {
            let ad: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let bd: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
            let a = MatRef::row_major(&ad, m, k).unwrap();
            // B read through a transposed view, as a linear layer's weight
            let b = MatRef::row_major(&bd, n, k).unwrap().t();
            let g = Bf16Gemm::new().path(path).threads(threads);
            let mut want: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
            g.accumulate(true).run(a, b, &mut want).unwrap();
            assert_eq!(
                g.run_new(a, b, Some(&bias)).unwrap(),
                want,
                "{path:?} {m}x{n}x{k}"
            );
            let mut plain = vec![f32::NAN; m * n];
            g.run(a, b, &mut plain).unwrap();
            assert_eq!(
                g.run_new(a, b, None).unwrap(),
                plain,
                "{path:?} {m}x{n}x{k}"
            );
            assert!(g.run_new(a, b, Some(&bias[1..])).is_err());
        }
        // k = 0: the bias rows (or zeros) only
        let empty: [f32; 0] = [];
        let a = MatRef::row_major(&empty, 2, 0).unwrap();
        let b = MatRef::row_major(&empty, 0, 3).unwrap();
        let g = Bf16Gemm::new().path(path);
        assert_eq!(
            g.run_new(a, b, Some(&[1.0, 2.0, 3.0])).unwrap(),
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(g.run_new(a, b, None).unwrap(), vec![0.0; 6]);
    }
}
