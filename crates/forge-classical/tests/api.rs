//! Behaviour of the public API: limits, identities between methods, training behaviour and
//! typed errors on bad input.

use candle_core::{DType, Device, Tensor};
use forge_classical::*;
use forge_linalg::rng::{randn, seeded_rng};

const DEV: Device = Device::Cpu;

fn t1(v: Vec<f64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(v, n, &DEV).unwrap()
}

fn v1(t: &Tensor) -> Vec<f64> {
    t.to_vec1().unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// y = X w + 0.5 + noise, X ~ N(0, 1) [n, d].
fn regression(n: usize, d: usize, w: &[f64], noise: f64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = seeded_rng(seed);
    let x = randn(&[n, d], DType::F64, &DEV, &mut rng).unwrap();
    let e = (randn(&[n], DType::F64, &DEV, &mut rng).unwrap() * noise).unwrap();
    let y = (x
        .matmul(&t1(w.to_vec()).unsqueeze(1).unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap()
        + 0.5)
        .unwrap();
    (x, (y + e).unwrap())
}

/// Binary labels from a logistic model with logits X w - 0.2.
fn binary(n: usize, w: &[f64], seed: u64) -> (Tensor, Tensor) {
    let (x, z) = regression(n, w.len(), w, 0.0, seed);
    let mut rng = seeded_rng(seed + 1000);
    let u: Vec<f64> = forge_linalg::rng::rand_uniform(&[n], 0.0, 1.0, DType::F64, &DEV, &mut rng)
        .unwrap()
        .to_vec1()
        .unwrap();
    let y: Vec<f64> = v1(&z)
        .iter()
        .zip(&u)
        .map(|(z, u)| {
            if *u < 1.0 / (1.0 + (-(z - 0.7)).exp()) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    (x, t1(y))
}

#[test]
fn transfer_limits() {
    let (x, y) = regression(40, 3, &[1.0, -2.0, 0.5], 0.3, 1);
    let src = LinearModel::from_vec(vec![3.0, 1.0, -1.0], 9.0).unwrap();
    let ls = ridge(&x, &y, 0.0).unwrap();
    let small = regularized_transfer_linear(&x, &y, &src, 1e-10).unwrap();
    assert!(
        max_diff(&v1(&small.weights), &v1(&ls.weights)) < 1e-8,
        "lam -> 0 gives least squares"
    );
    assert!((small.intercept - ls.intercept).abs() < 1e-8);
    let big = regularized_transfer_linear(&x, &y, &src, 1e12).unwrap();
    assert!(
        max_diff(&v1(&big.weights), &[3.0, 1.0, -1.0]) < 1e-8,
        "lam -> inf gives w_src"
    );
    // Intercept: re-fitted from the target means, ȳ - x̄^T w_src.
    let xm: Vec<f64> = x.mean(0).unwrap().to_vec1().unwrap();
    let ym: f64 = y.mean(0).unwrap().to_scalar().unwrap();
    let want = ym - (3.0 * xm[0] + xm[1] - xm[2]);
    assert!((big.intercept - want).abs() < 1e-8);

    let (xb, yb) = binary(200, &[1.0, -1.0], 2);
    let lsrc = LogisticModel::from_vec(vec![-0.5, 2.0], 0.0).unwrap();
    let big = regularized_transfer_logistic(&xb, &yb, &lsrc, 1e12).unwrap();
    assert!(max_diff(&v1(&big.weights), &[-0.5, 2.0]) < 1e-8);
    let small = regularized_transfer_logistic(&xb, &yb, &lsrc, 1e-10).unwrap();
    let plain = fit_logistic(&xb, &yb, 0.0).unwrap();
    assert!(max_diff(&v1(&small.weights), &v1(&plain.weights)) < 1e-6);
}

#[test]
fn ridge_is_translation_invariant_even_for_huge_offsets() {
    // Columns with mean/std ~ 1e6 take the shifted-data path; centring makes the weights
    // independent of the offset and moves the intercept by -offset^T w.
    let (x, y) = regression(300, 3, &[1.0, -2.0, 0.5], 0.3, 21);
    let off = [1e6, -3e5, 42.0];
    let xo = x.broadcast_add(&t1(off.to_vec())).unwrap();
    for lam in [0.0, 1.0, 100.0] {
        let a = ridge(&x, &y, lam).unwrap();
        let b = ridge(&xo, &y, lam).unwrap();
        assert!(
            max_diff(&v1(&a.weights), &v1(&b.weights)) < 1e-8,
            "lam {lam}"
        );
        let wb = v1(&b.weights);
        let shift: f64 = off.iter().zip(&wb).map(|(o, w)| o * w).sum();
        assert!(
            (b.intercept + shift - a.intercept).abs() < 1e-6,
            "lam {lam}"
        );
    }
}

#[test]
fn bayesian_mean_is_regularized_solution_and_variance_shrinks() {
    let w = [1.0, -2.0, 0.5, 0.0];
    let src = LinearModel::from_vec(vec![0.8, -1.5, 0.0, 0.2], 1.0).unwrap();
    let (sigma2, tau2) = (0.25, 0.1);
    let (x, y) = regression(400, 4, &w, 0.5, 3);
    let post = bayesian_transfer_linear(&x, &y, &src, sigma2, tau2).unwrap();
    let reg = regularized_transfer_linear(&x, &y, &src, sigma2 / tau2).unwrap();
    assert!(max_diff(&v1(&post.mean.weights), &v1(&reg.weights)) < 1e-10);
    assert!((post.mean.intercept - reg.intercept).abs() < 1e-10);
    // Posterior covariance = (X_c^T X_c / s2 + I / t2)^{-1}, checked via its inverse.
    let (xc, _) = forge_linalg::ops::center(&x).unwrap();
    let prec = ((xc.t().unwrap().matmul(&xc).unwrap() / sigma2).unwrap()
        + (Tensor::eye(4, DType::F64, &DEV).unwrap() / tau2).unwrap())
    .unwrap();
    let eye: Vec<f64> = prec
        .matmul(&post.cov)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let id: Vec<f64> = Tensor::eye(4, DType::F64, &DEV)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_diff(&eye, &id) < 1e-10);

    let (xq, _) = regression(20, 4, &w, 0.5, 99);
    let mut prev = f64::INFINITY;
    for n in [5, 20, 80, 400] {
        let xs = x.narrow(0, 0, n).unwrap();
        let ys = y.narrow(0, 0, n).unwrap();
        let p = bayesian_transfer_linear(&xs, &ys, &src, sigma2, tau2).unwrap();
        let (_, var) = p.predict(&xq).unwrap();
        let var = v1(&var);
        let mean_var = var.iter().sum::<f64>() / var.len() as f64;
        assert!(
            var.iter().all(|&v| v > sigma2),
            "predictive variance exceeds the noise"
        );
        assert!(
            mean_var < prev,
            "variance shrinks: n = {n}: {mean_var} !< {prev}"
        );
        prev = mean_var;
    }
}

#[test]
fn bayesian_logistic_laplace() {
    let (x, y) = binary(150, &[1.5, -1.0], 4);
    let src = LogisticModel::from_vec(vec![1.0, -0.5], 0.0).unwrap();
    let post = bayesian_transfer_logistic(&x, &y, &src, 0.5).unwrap();
    let reg = regularized_transfer_logistic(&x, &y, &src, 2.0).unwrap();
    assert!(
        max_diff(&v1(&post.map.weights), &v1(&reg.weights)) < 1e-9,
        "MAP = regularized, lam = 1/tau2"
    );
    assert_eq!(post.cov.dims(), &[3, 3]);
    // Moderated probabilities are pulled towards 0.5 but keep the MAP's side.
    let pm = v1(&post.map.predict_proba(&x).unwrap());
    let pb = v1(&post.predict_proba(&x).unwrap());
    for (a, b) in pm.iter().zip(&pb) {
        assert!((b - 0.5).abs() <= (a - 0.5).abs() + 1e-12 && (a - 0.5) * (b - 0.5) >= 0.0);
    }
}

#[test]
fn sgd_converges_to_least_squares_and_is_seeded() {
    let (x, y) = regression(500, 3, &[1.0, -2.0, 0.5], 0.1, 5);
    let ls = ridge(&x, &y, 0.0).unwrap();
    let p = SgdParams::default()
        .lr(0.3)
        .epochs(200)
        .batch_size(500)
        .seed(1);
    let (m, h) = fit_linear_sgd(&x, &y, &p).unwrap();
    assert!(max_diff(&v1(&m.weights), &v1(&ls.weights)) < 1e-4);
    assert_eq!(h.epoch_loss.len(), 200);
    assert_eq!(h.steps, 200);
    assert!(h.epoch_loss[199] < h.epoch_loss[0]);
    let p = SgdParams::default()
        .lr(0.01)
        .epochs(3)
        .batch_size(16)
        .seed(7);
    let (a, ha) = fit_linear_sgd(&x, &y, &p).unwrap();
    let (b, _) = fit_linear_sgd(&x, &y, &p).unwrap();
    assert_eq!(v1(&a.weights), v1(&b.weights));
    assert_eq!(ha.steps, 3 * 32); // ceil(500 / 16) = 32 per epoch
                                  // Warm start with zero epochs returns the source model.
    let src = LinearModel::from_vec(vec![0.3, 0.2, 0.1], -1.0).unwrap();
    let (w, _) = fit_linear_sgd(
        &x,
        &y,
        &SgdParams::default().epochs(0).warm_start(src.clone()),
    )
    .unwrap();
    assert_eq!(v1(&w.weights), vec![0.3, 0.2, 0.1]);
    // Logistic SGD approaches the exact L2 logistic optimum (l2 = lam / n).
    let (xb, yb) = binary(300, &[2.0, -1.0], 6);
    let exact = fit_logistic(&xb, &yb, 3.0).unwrap();
    let (s, _) = fit_logistic_sgd(
        &xb,
        &yb,
        &SgdParams::default()
            .lr(0.5)
            .epochs(500)
            .batch_size(300)
            .l2(0.01),
    )
    .unwrap();
    assert!(max_diff(&v1(&s.weights), &v1(&exact.weights)) < 1e-3);
    // A huge learning rate diverges with a typed error, not NaN weights.
    let r = fit_linear_sgd(
        &(x * 1e3).unwrap(),
        &y,
        &SgdParams::default().lr(10.0).epochs(5),
    );
    assert!(matches!(r, Err(ClassicalError::Diverged { .. })), "{r:?}");
}

#[test]
fn stat_mapping_matches_mapped_features() {
    let mut rng = seeded_rng(8);
    let xs = randn(&[300, 3], DType::F64, &DEV, &mut rng).unwrap();
    let xt =
        ((randn(&[200, 3], DType::F64, &DEV, &mut rng).unwrap() * 3.0).unwrap() + 2.0).unwrap();
    let src = LinearModel::from_vec(vec![1.0, -1.0, 0.5], 0.3).unwrap();
    let mapped = stat_mapping(&src, &xs, &xt).unwrap();
    // Independent computation: standardise target features with target moments, re-scale to source moments.
    let (ms, ss) = forge_linalg::ops::mean_std(&xs).unwrap();
    let (mt, st) = forge_linalg::ops::mean_std(&xt).unwrap();
    let phi = xt
        .broadcast_sub(&mt)
        .unwrap()
        .broadcast_div(&st)
        .unwrap()
        .broadcast_mul(&ss)
        .unwrap()
        .broadcast_add(&ms)
        .unwrap();
    let want = v1(&src.predict(&phi).unwrap());
    let got = v1(&mapped.predict(&xt).unwrap());
    assert!(max_diff(&got, &want) < 1e-10);
}

#[test]
fn covariance_shift_weights_and_blend() {
    // Source x ~ N(0, 1), target x ~ N(1.5, 1): weights grow with x.
    let mut rng = seeded_rng(9);
    let xs = randn(&[400, 1], DType::F64, &DEV, &mut rng).unwrap();
    let xt = (randn(&[60, 1], DType::F64, &DEV, &mut rng).unwrap() + 1.5).unwrap();
    let iw = v1(&importance_weights(&xs, &xt, 1e-3, 5.0).unwrap());
    let mean = iw.iter().sum::<f64>() / iw.len() as f64;
    assert!((mean - 1.0).abs() < 1e-12);
    assert!(iw.iter().all(|&w| (0.0..=5.0 + 1e-9).contains(&w)));
    let xsv = v1(&xs.squeeze(1).unwrap());
    let (imax, _) = xsv
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    let (imin, _) = xsv
        .iter()
        .enumerate()
        .fold((0, f64::MAX), |b, (i, &v)| if v < b.1 { (i, v) } else { b });
    assert!(iw[imax] > iw[imin]);
    // Source labels unrelated to the target's: the blend must lean on the target fit.
    let yt = (xt.squeeze(1).unwrap() * 2.0).unwrap();
    let ys = (xs.squeeze(1).unwrap() * -2.0).unwrap();
    let fit = covariance_shift_transfer(&xs, &ys, &xt, &yt, &CovShiftParams::default()).unwrap();
    assert!(fit.blend <= 0.1, "blend {}", fit.blend);
    assert!((v1(&fit.model.weights)[0] - 2.0).abs() < 0.5);
    // Same task in both domains: any blend fits; R2 on target must be high.
    let ys = (xs.squeeze(1).unwrap() * 2.0).unwrap();
    let fit = covariance_shift_transfer(&xs, &ys, &xt, &yt, &CovShiftParams::default()).unwrap();
    assert!(metrics::r2(&yt, &fit.model.predict(&xt).unwrap()).unwrap() > 0.99);
    // Logistic version runs and beats chance.
    let (xb, yb) = binary(300, &[2.0, -1.0], 10);
    let (xtb, ytb) = binary(80, &[2.0, -0.5], 11);
    let fit = covariance_shift_transfer_logistic(&xb, &yb, &xtb, &ytb, &CovShiftParams::default())
        .unwrap();
    assert!(metrics::accuracy(&ytb, &fit.model.predict(&xtb).unwrap()).unwrap() > 0.7);
}

#[test]
fn adapters() {
    let (x, y) = regression(100, 4, &[1.0, -2.0, 0.5, 1.0], 0.2, 12);
    let src = LinearModel::from_vec(vec![0.0, 0.0, 3.0, 0.0], 0.0).unwrap();
    // Full rank, no penalty: the target least-squares fit.
    let full =
        fit_low_rank_adapter(&x, &y, &src, &AdapterParams::default().rank(4).lam(0.0)).unwrap();
    let ls = ridge(&x, &y, 0.0).unwrap();
    assert!(max_diff(&v1(&full.model.weights), &v1(&ls.weights)) < 1e-8);
    assert_eq!(full.n_trainable(), 5);
    // Rank 1: the correction lies in the span of the basis; the source part is untouched.
    let r1 =
        fit_low_rank_adapter(&x, &y, &src, &AdapterParams::default().rank(1).lam(0.1)).unwrap();
    let u = v1(&r1.basis.squeeze(1).unwrap());
    let a = v1(&r1.coef)[0];
    let w = v1(&r1.model.weights);
    let want: Vec<f64> = [0.0, 0.0, 3.0, 0.0]
        .iter()
        .zip(&u)
        .map(|(s, u)| s + a * u)
        .collect();
    assert!(max_diff(&w, &want) < 1e-12);
    // Huge penalty: the source weights.
    let frozen =
        fit_low_rank_adapter(&x, &y, &src, &AdapterParams::default().rank(2).lam(1e14)).unwrap();
    assert!(max_diff(&v1(&frozen.model.weights), &[0.0, 0.0, 3.0, 0.0]) < 1e-8);
    // Logistic vector adapter: full rank, tiny penalty equals fit_logistic.
    let (xb, yb) = binary(200, &[1.0, -1.0, 0.5], 13);
    let lsrc = LogisticModel::from_vec(vec![0.5, 0.5, 0.5], 0.0).unwrap();
    let la =
        fit_low_rank_adapter(&xb, &yb, &lsrc, &AdapterParams::default().rank(3).lam(0.0)).unwrap();
    let plain = fit_logistic(&xb, &yb, 0.0).unwrap();
    assert!(max_diff(&v1(&la.model.weights), &v1(&plain.weights)) < 1e-6);
    // Matrix adapter: starts at the source (A = 0) and lowers the training loss; source untouched.
    let mut rng = seeded_rng(14);
    let xm = randn(&[200, 3], DType::F64, &DEV, &mut rng).unwrap();
    let w_t = Tensor::new(
        &[[2.0f64, -1.0, 0.0], [0.0, 1.5, -1.0], [-1.0, 0.0, 1.0]],
        &DEV,
    )
    .unwrap();
    let ym = xm
        .matmul(&w_t)
        .unwrap()
        .argmax(1)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let msrc = SoftmaxModel::new(
        &Tensor::zeros((3, 3), DType::F64, &DEV).unwrap(),
        &Tensor::zeros(3, DType::F64, &DEV).unwrap(),
    )
    .unwrap();
    let ad = fit_low_rank_adapter(
        &xm,
        &ym,
        &msrc,
        &AdapterParams::default().rank(2).lam(0.01).epochs(200),
    )
    .unwrap();
    let h = &ad.history.epoch_loss;
    assert!(
        (h[0] - 3f64.ln()).abs() < 1e-3,
        "first loss is the source's: {}",
        h[0]
    );
    assert!(*h.last().unwrap() < 0.5 * h[0]);
    assert!(metrics::accuracy(&ym, &ad.model.predict(&xm).unwrap()).unwrap() > 0.85);
    assert_eq!(ad.n_trainable(), 3 * 2 + 2 * 3 + 3);
    let wd: Vec<f64> = ad.model.weights.flatten_all().unwrap().to_vec1().unwrap();
    let ba: Vec<f64> =
        ad.b.matmul(&ad.a)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
    assert!(max_diff(&wd, &ba) < 1e-12, "W = W_src + B A with W_src = 0");
}

#[test]
fn cross_validation() {
    let folds = cv::k_fold(11, 3, 0).unwrap();
    assert_eq!(folds.len(), 3);
    let mut all: Vec<usize> = folds.iter().flat_map(|f| f.valid.clone()).collect();
    all.sort();
    assert_eq!(all, (0..11).collect::<Vec<_>>());
    for f in &folds {
        assert_eq!(f.train.len() + f.valid.len(), 11);
        assert!(f.train.iter().all(|i| !f.valid.contains(i)));
    }
    let labels = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    for f in cv::stratified_k_fold(&labels, 2, 1).unwrap() {
        assert!(
            f.valid.iter().any(|&i| labels[i] == 1.0) && f.valid.iter().any(|&i| labels[i] == 0.0)
        );
    }
    // A noiseless problem: CV prefers the smallest penalty.
    let (x, y) = regression(50, 3, &[1.0, 2.0, 3.0], 0.0, 15);
    let lams = [100.0, 1.0, 1e-6];
    let c = cv::select(
        &x,
        &y,
        &lams,
        &cv::CvParams::default(),
        |xt, yt, xv, yv, &lam| {
            let m = ridge(xt, yt, lam)?;
            metrics::r2(yv, &m.predict(xv)?)
        },
    )
    .unwrap();
    assert_eq!(c.best, 1e-6);
    assert!(c.scores[2] > c.scores[1] && c.scores[1] > c.scores[0]);
    assert!(cv::k_fold(1, 5, 0).is_err());
    assert!(cv::k_fold(10, 1, 0).is_err());
}

#[test]
fn typed_errors_on_bad_input() {
    let x = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 7.0]], &DEV).unwrap();
    let y = t1(vec![1.0, 0.0, 1.0]);
    let src = LinearModel::from_vec(vec![1.0, 1.0], 0.0).unwrap();
    let lsrc = LogisticModel::from_vec(vec![1.0, 1.0], 0.0).unwrap();
    // NaN / inf
    let xn = Tensor::new(&[[1.0f64, f64::NAN], [3.0, 4.0], [5.0, 7.0]], &DEV).unwrap();
    assert!(matches!(
        ridge(&xn, &y, 1.0),
        Err(ClassicalError::NonFinite { index: 1, .. })
    ));
    let yi = t1(vec![1.0, f64::INFINITY, 0.0]);
    assert!(matches!(
        ridge(&x, &yi, 1.0),
        Err(ClassicalError::NonFinite { .. })
    ));
    assert!(matches!(
        fit_logistic(&xn, &y, 1.0),
        Err(ClassicalError::NonFinite { .. })
    ));
    assert!(matches!(
        src.predict(&xn),
        Err(ClassicalError::NonFinite { .. })
    ));
    assert!(matches!(
        metrics::mse(&y, &yi),
        Err(ClassicalError::NonFinite { .. })
    ));
    // Mismatched shapes
    let y2 = t1(vec![1.0, 0.0]);
    assert!(matches!(
        ridge(&x, &y2, 1.0),
        Err(ClassicalError::Shape { .. })
    ));
    assert!(matches!(
        ridge(&y, &y, 1.0),
        Err(ClassicalError::Shape { .. })
    ));
    let src3 = LinearModel::from_vec(vec![1.0, 1.0, 1.0], 0.0).unwrap();
    assert!(matches!(
        regularized_transfer_linear(&x, &y, &src3, 1.0),
        Err(ClassicalError::Shape { .. })
    ));
    assert!(matches!(
        src3.predict(&x),
        Err(ClassicalError::Shape { .. })
    ));
    assert!(matches!(
        metrics::r2(&y, &y2),
        Err(ClassicalError::Shape { .. })
    ));
    // Empty data
    let e = Tensor::zeros((0, 2), DType::F64, &DEV).unwrap();
    let ey = Tensor::zeros(0, DType::F64, &DEV).unwrap();
    assert!(matches!(ridge(&e, &ey, 1.0), Err(ClassicalError::Empty(_))));
    assert!(matches!(
        fit_linear_sgd(&e, &ey, &SgdParams::default()),
        Err(ClassicalError::Empty(_))
    ));
    assert!(matches!(
        LinearModel::from_vec(vec![], 0.0),
        Err(ClassicalError::Empty(_))
    ));
    // lam < 0 and other parameters
    assert!(matches!(
        ridge(&x, &y, -1.0),
        Err(ClassicalError::InvalidParameter { name: "lam", .. })
    ));
    assert!(matches!(
        regularized_transfer_linear(&x, &y, &src, -0.1),
        Err(ClassicalError::InvalidParameter { .. })
    ));
    assert!(matches!(
        regularized_transfer_logistic(&x, &y, &lsrc, f64::NAN),
        Err(ClassicalError::InvalidParameter { .. })
    ));
    assert!(matches!(
        fit_logistic(&x, &y, -1.0),
        Err(ClassicalError::InvalidParameter { .. })
    ));
    assert!(matches!(
        bayesian_transfer_linear(&x, &y, &src, 0.0, 1.0),
        Err(ClassicalError::InvalidParameter { name: "sigma2", .. })
    ));
    assert!(matches!(
        bayesian_transfer_logistic(&x, &y, &lsrc, -1.0),
        Err(ClassicalError::InvalidParameter { name: "tau2", .. })
    ));
    assert!(matches!(
        fit_linear_sgd(&x, &y, &SgdParams::default().lr(0.0)),
        Err(ClassicalError::InvalidParameter { name: "lr", .. })
    ));
    assert!(matches!(
        fit_linear_sgd(&x, &y, &SgdParams::default().batch_size(0)),
        Err(ClassicalError::InvalidParameter { .. })
    ));
    assert!(matches!(
        fit_softmax(&x, &y, 1, 1.0),
        Err(ClassicalError::InvalidParameter {
            name: "n_classes",
            ..
        })
    ));
    let bad_cs = CovShiftParams::default().blends(vec![1.5]);
    assert!(matches!(
        covariance_shift_transfer(&x, &y, &x, &y, &bad_cs),
        Err(ClassicalError::InvalidParameter { .. })
    ));
    // rank 0 (and too large)
    assert!(matches!(
        fit_low_rank_adapter(&x, &y, &src, &AdapterParams::default().rank(0)),
        Err(ClassicalError::InvalidParameter { name: "rank", .. })
    ));
    assert!(matches!(
        fit_low_rank_adapter(&x, &y, &src, &AdapterParams::default().rank(3)),
        Err(ClassicalError::InvalidParameter { name: "rank", .. })
    ));
    // Labels
    let y3 = t1(vec![0.0, 2.0, 1.0]);
    assert!(matches!(
        fit_logistic(&x, &y3, 1.0),
        Err(ClassicalError::InvalidLabel { index: 1, .. })
    ));
    assert!(matches!(
        fit_logistic_sgd(&x, &y3, &SgdParams::default()),
        Err(ClassicalError::InvalidLabel { .. })
    ));
    assert!(matches!(
        fit_softmax(&x, &y3, 2, 1.0),
        Err(ClassicalError::InvalidLabel { .. })
    ));
    let ones = t1(vec![1.0, 1.0, 1.0]);
    assert!(matches!(
        fit_logistic(&x, &ones, 1.0),
        Err(ClassicalError::SingleClass { .. })
    ));
    assert!(matches!(
        metrics::roc_auc(&ones, &y),
        Err(ClassicalError::SingleClass { .. })
    ));
    // Singular system without a penalty: a typed linear-algebra error, not NaN.
    let xs = Tensor::new(&[[1.0f64, 2.0], [2.0, 4.0], [3.0, 6.0]], &DEV).unwrap();
    assert!(matches!(
        ridge(&xs, &y, 0.0),
        Err(ClassicalError::Linalg(_))
    ));
    // Separable data with lam = 0: no finite optimum.
    let xsep = Tensor::new(&[[-2.0f64], [-1.0], [1.0], [2.0]], &DEV).unwrap();
    let ysep = t1(vec![0.0, 0.0, 1.0, 1.0]);
    assert!(matches!(
        fit_logistic(&xsep, &ysep, 0.0),
        Err(ClassicalError::Separable(_))
    ));
    assert!(fit_logistic(&xsep, &ysep, 0.1).is_ok());
}
