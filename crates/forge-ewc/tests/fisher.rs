//! The Fisher diagonal of tiny models against closed forms computed in plain f64, per estimator,
//! and the typed errors of bad input.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{flat, max_abs_diff, Logistic, Softmax3};
use forge_ewc::{
    fisher_diagonal, fisher_diagonal_nll, fisher_diagonal_with_progress, EwcError, FisherConfig,
    FisherEstimator, FisherProgress, Targets,
};

fn estimate(m: &Logistic, est: FisherEstimator) -> (Vec<f64>, Vec<f64>) {
    let f = fisher_diagonal(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx),
        &FisherConfig::new(est),
    )
    .unwrap();
    (flat(f.get("w").unwrap()), flat(f.get("b").unwrap()))
}

/// Per-sample d log p(y_i|x_i) / dz = y_i - sigmoid(z_i) for the logistic model.
fn residuals(m: &Logistic) -> Vec<f64> {
    (0..m.x.len()).map(|i| m.y[i] as f64 - m.p1(i)).collect()
}

#[test]
fn at_the_origin_every_per_sample_estimator_gives_a_quarter() {
    // w = 0, b = 0: p = 1/2 everywhere, so (y - p)^2 = p (1 - p) = 1/4 for every sample and the
    // bias entry is exactly 0.25 for the empirical, true and 1-sample batch estimators.
    let m = Logistic::new([0.0, 0.0], 0.0);
    for est in [
        FisherEstimator::Empirical,
        FisherEstimator::TrueExact,
        FisherEstimator::Batch { batch_size: 1 },
    ] {
        let (w, b) = estimate(&m, est.clone());
        assert!((b[0] - 0.25).abs() < 1e-14, "{est}: {b:?}");
        // F_w = 0.25 * mean x_j^2: x_0^2 = (1 + 0.25 + 4 + 0.09 + 1.44) / 5 = 6.78 / 5.
        assert!((w[0] - 0.25 * 6.78 / 5.0).abs() < 1e-14, "{est}: {w:?}");
        assert!((w[1] - 0.25 * 7.9 / 5.0).abs() < 1e-14, "{est}: {w:?}");
    }
}

#[test]
fn empirical_fisher_of_logistic_regression_matches_the_closed_form() {
    let m = Logistic::new([0.8, -0.3], 0.2);
    let r = residuals(&m);
    let n = r.len() as f64;
    let fw: Vec<f64> = (0..2)
        .map(|j| {
            (0..r.len())
                .map(|i| (r[i] * m.x[i][j]).powi(2))
                .sum::<f64>()
                / n
        })
        .collect();
    let fb = r.iter().map(|v| v * v).sum::<f64>() / n;
    let (w, b) = estimate(&m, FisherEstimator::Empirical);
    assert!(max_abs_diff(&w, &fw) < 1e-14, "{w:?} vs {fw:?}");
    assert!((b[0] - fb).abs() < 1e-14);
}

#[test]
fn true_fisher_of_logistic_regression_matches_the_closed_form() {
    // E_{y ~ p}[(y - p)^2] = p (1 - p).
    let m = Logistic::new([0.8, -0.3], 0.2);
    let n = m.x.len() as f64;
    let v: Vec<f64> = (0..m.x.len()).map(|i| m.p1(i) * (1.0 - m.p1(i))).collect();
    let fw: Vec<f64> = (0..2)
        .map(|j| (0..v.len()).map(|i| v[i] * m.x[i][j].powi(2)).sum::<f64>() / n)
        .collect();
    let fb = v.iter().sum::<f64>() / n;
    let (w, b) = estimate(&m, FisherEstimator::TrueExact);
    assert!(max_abs_diff(&w, &fw) < 1e-14, "{w:?} vs {fw:?}");
    assert!((b[0] - fb).abs() < 1e-14);

    // Sampled labels converge to it (4,000 draws per input: standard error ~1%).
    let (ws, bs) = estimate(
        &m,
        FisherEstimator::TrueSampled {
            samples_per_input: 4000,
            seed: 11,
        },
    );
    for (got, want) in ws.iter().chain(&bs).zip(fw.iter().chain([&fb])) {
        assert!((got - want).abs() < 0.05 * want, "{got} vs {want}");
    }
}

#[test]
fn sampled_true_fisher_is_reproducible_by_seed() {
    let m = Logistic::new([0.8, -0.3], 0.2);
    let est = |seed| FisherEstimator::TrueSampled {
        samples_per_input: 1,
        seed,
    };
    assert_eq!(estimate(&m, est(5)), estimate(&m, est(5)));
    // With one draw per input each sample contributes (y~ - p)^2 x^2 for its drawn y~; over five
    // inputs, two seeds almost surely draw different labels somewhere.
    let differs = (6..12).any(|s| estimate(&m, est(s)) != estimate(&m, est(5)));
    assert!(differs);
}

#[test]
fn batch_estimator_matches_its_definition_and_equals_empirical_at_batch_one() {
    let m = Logistic::new([0.8, -0.3], 0.2);
    let r = residuals(&m);
    let n = r.len() as f64;
    // Batches {0, 1}, {2, 3}, {4}: F = (1/N) sum_b (sum_{i in b} r_i x_i)^2 = (1/N) sum_b |b|^2 g_b^2.
    let batches: [&[usize]; 3] = [&[0, 1], &[2, 3], &[4]];
    let fw: Vec<f64> = (0..2)
        .map(|j| {
            batches
                .iter()
                .map(|b| b.iter().map(|&i| r[i] * m.x[i][j]).sum::<f64>().powi(2))
                .sum::<f64>()
                / n
        })
        .collect();
    let fb = batches
        .iter()
        .map(|b| b.iter().map(|&i| r[i]).sum::<f64>().powi(2))
        .sum::<f64>()
        / n;
    let (w, b) = estimate(&m, FisherEstimator::Batch { batch_size: 2 });
    assert!(max_abs_diff(&w, &fw) < 1e-14, "{w:?} vs {fw:?}");
    assert!((b[0] - fb).abs() < 1e-14);

    let (w1, b1) = estimate(&m, FisherEstimator::Batch { batch_size: 1 });
    let (we, be) = estimate(&m, FisherEstimator::Empirical);
    assert!(max_abs_diff(&w1, &we) < 1e-15 && (b1[0] - be[0]).abs() < 1e-15);
}

#[test]
fn softmax_regression_true_and_empirical_fisher_match_closed_forms() {
    // d log p(y|x) / d W_kj = (1[k = y] - p_k) x_j;  E_y[(1[k=y] - p_k)^2] = p_k (1 - p_k).
    let m = Softmax3::new();
    let n = m.x.len() as f64;
    let mut true_f = vec![0.0; 6];
    let mut emp_f = vec![0.0; 6];
    for i in 0..m.x.len() {
        let p = m.probs(i);
        for k in 0..3 {
            let d = if k == m.y[i] { 1.0 } else { 0.0 } - p[k];
            for j in 0..2 {
                true_f[k * 2 + j] += p[k] * (1.0 - p[k]) * m.x[i][j].powi(2) / n;
                emp_f[k * 2 + j] += d * d * m.x[i][j].powi(2) / n;
            }
        }
    }
    let run = |est| {
        let f = fisher_diagonal(
            &m.params(),
            Targets::Labels(&m.y),
            |idx: &[usize]| m.logits(idx),
            &FisherConfig::new(est),
        )
        .unwrap();
        flat(f.get("W").unwrap())
    };
    assert!(max_abs_diff(&run(FisherEstimator::TrueExact), &true_f) < 1e-14);
    assert!(max_abs_diff(&run(FisherEstimator::Empirical), &emp_f) < 1e-14);
    // The true Fisher needs no labels.
    let f = fisher_diagonal(
        &m.params(),
        Targets::Unlabelled(m.x.len()),
        |idx: &[usize]| m.logits(idx),
        &FisherConfig::new(FisherEstimator::TrueExact),
    )
    .unwrap();
    assert!(max_abs_diff(&flat(f.get("W").unwrap()), &true_f) < 1e-14);
    assert_eq!(f.n_samples(), 4);
    assert_eq!(f.estimator(), &FisherEstimator::TrueExact);
}

#[test]
fn f32_parameters_give_an_f32_fisher_close_to_the_f64_one() {
    let m = Softmax3::new();
    let w32 = Var::from_tensor(&m.w.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
    let x32 = m.xt.to_dtype(DType::F32).unwrap();
    let f = fisher_diagonal(
        &[("W".to_string(), w32.clone())],
        Targets::Labels(&m.y),
        |idx: &[usize]| {
            let rows = Tensor::new(
                idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                &Device::Cpu,
            )?;
            x32.index_select(&rows, 0)?.matmul(&w32.as_tensor().t()?)
        },
        &FisherConfig::new(FisherEstimator::Empirical),
    )
    .unwrap();
    let t = f.get("W").unwrap();
    assert_eq!(t.dtype(), DType::F32);
    let f64_ref = fisher_diagonal(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx),
        &FisherConfig::new(FisherEstimator::Empirical),
    )
    .unwrap();
    assert!(max_abs_diff(&flat(t), &flat(f64_ref.get("W").unwrap())) < 1e-6);
}

#[test]
fn nll_entry_point_gives_the_gaussian_regression_fisher() {
    // y ~ N(w . x, 1): -log p = (y - w . x)^2 / 2 + const, gradient -(y - w . x) x.
    let dev = Device::Cpu;
    let x: [[f64; 2]; 3] = [[1.0, 2.0], [0.5, -1.0], [-2.0, 0.3]];
    let y: [f64; 3] = [0.7, -0.2, 1.1];
    let w0: [f64; 2] = [0.4, -0.6];
    let xt = Tensor::new(&x, &dev).unwrap();
    let yt = Tensor::new(&y, &dev).unwrap();
    let w = Var::from_tensor(&Tensor::new(&w0, &dev).unwrap()).unwrap();
    let nll = |idx: &[usize]| -> candle_core::Result<Tensor> {
        let rows = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev)?;
        let pred = xt
            .index_select(&rows, 0)?
            .matmul(&w.as_tensor().unsqueeze(1)?)?
            .squeeze(1)?;
        (yt.index_select(&rows, 0)? - pred)?.sqr()? * 0.5
    };
    let f = fisher_diagonal_nll(
        &[("w".to_string(), w.clone())],
        3,
        nll,
        &FisherConfig::new(FisherEstimator::Empirical),
    )
    .unwrap();
    let want: Vec<f64> = (0..2)
        .map(|j| {
            (0..3)
                .map(|i| {
                    let r = y[i] - (w0[0] * x[i][0] + w0[1] * x[i][1]);
                    (r * x[i][j]).powi(2)
                })
                .sum::<f64>()
                / 3.0
        })
        .collect();
    assert!(max_abs_diff(&flat(f.get("w").unwrap()), &want) < 1e-14);
    let err = fisher_diagonal_nll(
        &[("w".to_string(), w.clone())],
        3,
        nll,
        &FisherConfig::new(FisherEstimator::TrueExact),
    )
    .unwrap_err();
    assert!(
        matches!(err, EwcError::UnsupportedEstimator { .. }),
        "{err}"
    );
}

#[test]
fn max_samples_and_progress() {
    let m = Logistic::new([0.8, -0.3], 0.2);
    let mut seen = Vec::new();
    let mut cfg = FisherConfig::new(FisherEstimator::Empirical);
    cfg.max_samples = Some(3);
    let f = fisher_diagonal_with_progress(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx),
        &cfg,
        &mut |p| seen.push(p),
    )
    .unwrap();
    assert_eq!(f.n_samples(), 3);
    assert_eq!(seen.last(), Some(&FisherProgress { done: 3, total: 3 }));
    let r = residuals(&m);
    let fb = r[..3].iter().map(|v| v * v).sum::<f64>() / 3.0;
    assert!((flat(f.get("b").unwrap())[0] - fb).abs() < 1e-14);
    assert!(
        (f.trace().unwrap() - flat(f.get("w").unwrap()).iter().sum::<f64>() - fb).abs() < 1e-14
    );
}

fn err_of(
    params: &[(String, Var)],
    targets: Targets<'_>,
    logits: impl FnMut(&[usize]) -> candle_core::Result<Tensor>,
    cfg: FisherConfig,
) -> EwcError {
    fisher_diagonal(params, targets, logits, &cfg).unwrap_err()
}

#[test]
fn bad_input_gives_typed_errors() {
    let m = Logistic::new([0.8, -0.3], 0.2);
    let emp = || FisherConfig::new(FisherEstimator::Empirical);
    let lg = |idx: &[usize]| m.logits(idx);

    let e = err_of(&[], Targets::Labels(&m.y), lg, emp());
    assert!(matches!(e, EwcError::NoParameters { .. }), "{e}");

    let e = err_of(&m.params(), Targets::Labels(&[]), lg, emp());
    assert!(matches!(e, EwcError::EmptyData { n: 0, .. }), "{e}");

    let e = err_of(&m.params(), Targets::Unlabelled(5), lg, emp());
    assert!(matches!(e, EwcError::MissingLabels { .. }), "{e}");

    let e = err_of(&m.params(), Targets::Labels(&[1, 0, 2, 1, 0]), lg, emp());
    assert!(
        matches!(
            e,
            EwcError::LabelOutOfRange {
                sample: 2,
                label: 2,
                classes: 2
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("label 2 of sample 2"), "{e}");

    let e = err_of(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx)?.flatten_all(),
        emp(),
    );
    assert!(matches!(e, EwcError::OutputShape { .. }), "{e}");

    let e = err_of(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx)? * f64::NAN,
        emp(),
    );
    assert!(
        matches!(e, EwcError::NonFiniteLoss { sample: 0, .. }),
        "{e}"
    );

    let unused = Var::from_tensor(&Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap()).unwrap();
    let mut params = m.params();
    params.push(("unused".into(), unused));
    let e = err_of(&params, Targets::Labels(&m.y), lg, emp());
    assert!(
        matches!(&e, EwcError::NoGradient { name } if name == "unused"),
        "{e}"
    );
    let mut lenient = emp();
    lenient.allow_missing_gradients = true;
    let f = fisher_diagonal(&params, Targets::Labels(&m.y), lg, &lenient).unwrap();
    assert_eq!(flat(f.get("unused").unwrap()), vec![0.0; 3]);

    let dup = vec![m.params()[0].clone(), m.params()[0].clone()];
    let e = err_of(&dup, Targets::Labels(&m.y), lg, emp());
    assert!(matches!(e, EwcError::DuplicateParameter { .. }), "{e}");

    let e = err_of(
        &m.params(),
        Targets::Labels(&m.y),
        lg,
        FisherConfig::new(FisherEstimator::Batch { batch_size: 0 }),
    );
    assert!(
        matches!(
            e,
            EwcError::InvalidConfig {
                field: "batch_size",
                ..
            }
        ),
        "{e}"
    );

    let e = err_of(
        &m.params(),
        Targets::Labels(&m.y),
        lg,
        FisherConfig::new(FisherEstimator::TrueSampled {
            samples_per_input: 0,
            seed: 0,
        }),
    );
    assert!(
        matches!(
            e,
            EwcError::InvalidConfig {
                field: "samples_per_input",
                ..
            }
        ),
        "{e}"
    );

    let mut zero = emp();
    zero.max_samples = Some(0);
    let e = err_of(&m.params(), Targets::Labels(&m.y), lg, zero);
    assert!(
        matches!(
            e,
            EwcError::InvalidConfig {
                field: "max_samples",
                ..
            }
        ),
        "{e}"
    );

    // The closure's own error is passed through.
    let e = fisher_diagonal(
        &m.params(),
        Targets::Labels(&m.y),
        |_: &[usize]| -> Result<Tensor, std::io::Error> {
            Err(std::io::Error::other("model broke"))
        },
        &emp(),
    )
    .unwrap_err();
    assert!(
        matches!(e, EwcError::Closure(_)) && e.to_string().contains("model broke"),
        "{e}"
    );
}

/// The exact true Fisher takes one backward pass per eigen-direction of the softmax covariance
/// (at most C - 1) instead of one per class: on a 4-class two-layer network, where every
/// parameter moves every logit, it equals the definition `(1/N) sum_n sum_c p_c g_c^2` computed
/// class by class here, including an input that saturates the hidden units (a peaked softmax).
#[test]
fn exact_true_fisher_equals_the_per_class_definition_on_a_multilayer_net() {
    let dev = Device::Cpu;
    let u = Var::from_tensor(
        &Tensor::new(
            &[[0.5f64, -1.2, 0.3], [0.9, 0.4, -0.7], [-0.2, 0.8, 1.1]],
            &dev,
        )
        .unwrap(),
    )
    .unwrap();
    let v = Var::from_tensor(
        &Tensor::new(
            &[
                [1.0f64, -0.5, 0.2],
                [-0.3, 0.8, 0.6],
                [0.4, 0.1, -0.9],
                [-0.7, -0.2, 0.5],
            ],
            &dev,
        )
        .unwrap(),
    )
    .unwrap();
    // the last input saturates every tanh unit
    let x = Tensor::new(
        &[
            [1.0f64, 2.0, -0.5],
            [-0.5, 1.5, 0.3],
            [2.0, -1.0, 0.8],
            [60.0, -80.0, 40.0],
        ],
        &dev,
    )
    .unwrap();
    let logits = |idx: &[usize]| -> candle_core::Result<Tensor> {
        let rows = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev)?;
        let h = x
            .index_select(&rows, 0)?
            .matmul(&u.as_tensor().t()?)?
            .tanh()?;
        h.matmul(&v.as_tensor().t()?)? * 4.0
    };
    let params = vec![("U".to_string(), u.clone()), ("V".to_string(), v.clone())];
    let f = fisher_diagonal(
        &params,
        Targets::Unlabelled(4),
        logits,
        &FisherConfig::new(FisherEstimator::TrueExact),
    )
    .unwrap();
    let mut want_u = vec![0.0; 9];
    let mut want_v = vec![0.0; 12];
    for i in 0..4 {
        let z = logits(&[i]).unwrap().squeeze(0).unwrap();
        let m = z.max(0).unwrap();
        let shifted = z.broadcast_sub(&m).unwrap();
        let logp = shifted
            .broadcast_sub(
                &shifted
                    .exp()
                    .unwrap()
                    .sum_keepdim(0)
                    .unwrap()
                    .log()
                    .unwrap(),
            )
            .unwrap();
        let p: Vec<f64> = logp
            .to_vec1::<f64>()
            .unwrap()
            .into_iter()
            .map(f64::exp)
            .collect();
        for (c, pc) in p.iter().enumerate() {
            let g = logp.get(c).unwrap().backward().unwrap();
            for (want, var) in [(&mut want_u, &u), (&mut want_v, &v)] {
                let gv = flat(g.get(var.as_tensor()).unwrap());
                for (w, gi) in want.iter_mut().zip(gv) {
                    *w += pc * gi * gi / 4.0;
                }
            }
        }
    }
    let got_u = flat(f.get("U").unwrap());
    let got_v = flat(f.get("V").unwrap());
    assert!(
        max_abs_diff(&got_u, &want_u) < 1e-12,
        "{got_u:?} vs {want_u:?}"
    );
    assert!(
        max_abs_diff(&got_v, &want_v) < 1e-12,
        "{got_v:?} vs {want_v:?}"
    );
    assert!(want_u.iter().all(|w| *w > 0.0));
}

/// A finite loss whose gradient is infinite (`d sqrt(s) / ds` at `s = 0`) gives a typed error
/// naming the parameter and the first bad index, whether the bad value arrives with the first
/// gradient of the parameter or with a later one, in f32 and f64.
#[test]
fn an_infinite_gradient_under_a_finite_loss_is_a_typed_error() {
    for dtype in [DType::F32, DType::F64] {
        for bad_sample in [0usize, 2] {
            let dev = Device::Cpu;
            // logits of sample i: [sqrt(s_i) . 1, 0], where s = v^2 except s_bad = 0 at entry 1
            let v = Var::from_tensor(
                &Tensor::new(&[1.0f64, 0.5, 2.0], &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let params = vec![("v".to_string(), v.clone())];
            let logits = |idx: &[usize]| -> candle_core::Result<Tensor> {
                let rows = idx
                    .iter()
                    .map(|&i| {
                        let s = if i == bad_sample {
                            // sqrt at 0 of entry 1: value 0, gradient infinite
                            let keep = Tensor::new(&[1.0f64, 0.0, 1.0], &dev)?.to_dtype(dtype)?;
                            v.as_tensor().sqr()?.mul(&keep)?
                        } else {
                            v.as_tensor().sqr()?
                        };
                        let z = s.sqrt()?.sum_all()?.reshape((1, 1))?;
                        Tensor::cat(&[&z, &z.zeros_like()?], 1)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)
            };
            let e = fisher_diagonal(
                &params,
                Targets::Labels(&[0, 1, 0]),
                logits,
                &FisherConfig::new(FisherEstimator::Empirical),
            )
            .unwrap_err();
            assert!(
                matches!(&e, EwcError::NonFinite { name, index: 1, .. } if name == "v"),
                "{dtype:?}, bad sample {bad_sample}: {e}"
            );
        }
    }
}
