//! The EWC penalty: value and gradient against `lambda F (theta - theta*)`, online updates,
//! re-binding with a filter after a head replacement, save/load round trips, typed errors.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{flat, max_abs_diff, Logistic};
use forge_ewc::{
    fisher_diagonal, Ewc, EwcConfig, EwcError, FisherConfig, FisherDiagonal, FisherEstimator,
    ParamFilter, Targets,
};
use forge_linalg::rng::{rand_uniform, randn};
use forge_linalg::seeded_rng;

/// A little "model": a backbone matrix, a bias and a head, with random values and Fisher.
struct Setup {
    params: Vec<(String, Var)>,
    fisher: FisherDiagonal,
}

fn setup(dtype: DType, seed: u64) -> Setup {
    let dev = Device::Cpu;
    let mut rng = seeded_rng(seed);
    let shapes: [(&str, &[usize]); 3] = [
        ("encoder.weight", &[3, 4]),
        ("encoder.bias", &[4]),
        ("classifier.weight", &[2, 4]),
    ];
    let mut params = Vec::new();
    let mut fisher = Vec::new();
    for (name, shape) in shapes {
        let v = randn(shape, dtype, &dev, &mut rng).unwrap();
        params.push((name.to_string(), Var::from_tensor(&v).unwrap()));
        let f = rand_uniform(shape, 0.0, 2.0, dtype, &dev, &mut rng).unwrap();
        fisher.push((name.to_string(), f));
    }
    Setup {
        params,
        fisher: FisherDiagonal::from_tensors(fisher, FisherEstimator::Empirical, 32).unwrap(),
    }
}

/// Move every parameter by a random step.
fn perturb(params: &[(String, Var)], seed: u64) {
    let mut rng = seeded_rng(seed);
    for (_, v) in params {
        let step = randn(v.dims(), v.dtype(), v.device(), &mut rng).unwrap();
        v.set(&(v.as_tensor() + step).unwrap()).unwrap();
    }
}

#[test]
fn penalty_value_and_gradient_match_the_closed_form() {
    for dtype in [DType::F64, DType::F32] {
        let s = setup(dtype, 1);
        let lambda = 3.5;
        let ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(lambda)).unwrap();
        assert_eq!(ewc.penalty_value().unwrap(), 0.0);
        let anchors: Vec<Vec<f64>> = s.params.iter().map(|(_, v)| flat(v.as_tensor())).collect();
        perturb(&s.params, 2);

        let penalty = ewc.penalty().unwrap();
        assert_eq!(penalty.dims(), &[] as &[usize]);
        assert_eq!(penalty.dtype(), dtype);
        let grads = penalty.backward().unwrap();
        let mut want_value = 0.0;
        for (k, (name, var)) in s.params.iter().enumerate() {
            let theta = flat(var.as_tensor());
            let f = flat(s.fisher.get(name).unwrap());
            let want_grad: Vec<f64> = (0..theta.len())
                .map(|i| lambda * f[i] * (theta[i] - anchors[k][i]))
                .collect();
            want_value += (0..theta.len())
                .map(|i| f[i] * (theta[i] - anchors[k][i]).powi(2))
                .sum::<f64>();
            let got = flat(grads.get(var.as_tensor()).unwrap());
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            assert!(max_abs_diff(&got, &want_grad) < tol, "{name} {dtype:?}");
        }
        want_value *= lambda / 2.0;
        let got = flat(&penalty)[0];
        let rel = (got - want_value).abs() / want_value;
        assert!(
            rel < if dtype == DType::F64 { 1e-13 } else { 1e-5 },
            "{got} vs {want_value}"
        );
        assert!((ewc.penalty_value().unwrap() - want_value).abs() / want_value < 1e-5);
    }
}

#[test]
fn penalty_follows_a_gradient_step_of_the_shared_vars() {
    // The Ewc holds the model's own Vars: updating them (as an optimizer does) changes the penalty.
    let m = Logistic::new([0.8, -0.3], 0.2);
    let f = fisher_diagonal(
        &m.params(),
        Targets::Labels(&m.y),
        |idx: &[usize]| m.logits(idx),
        &FisherConfig::new(FisherEstimator::TrueExact),
    )
    .unwrap();
    let ewc = Ewc::new(&m.params(), &f, EwcConfig::new(10.0)).unwrap();
    m.w.set(&Tensor::new(&[1.0f64, -0.3], &Device::Cpu).unwrap())
        .unwrap();
    let fw = flat(f.get("w").unwrap());
    let want = 10.0 / 2.0 * fw[0] * 0.2f64.powi(2);
    assert!((ewc.penalty_value().unwrap() - want).abs() < 1e-12);
    let d = ewc.anchor_distance().unwrap();
    assert!((d.l2 - 0.2).abs() < 1e-12);
    let anchor_norm = (0.8f64.powi(2) + 0.3f64.powi(2) + 0.2f64.powi(2)).sqrt();
    assert!((d.relative - 0.2 / anchor_norm).abs() < 1e-12);
}

#[test]
fn online_update_decays_the_old_fisher_and_moves_the_anchor() {
    let s = setup(DType::F64, 3);
    let gamma = 0.6;
    let mut ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(2.0).with_gamma(gamma)).unwrap();
    perturb(&s.params, 4);
    let second = setup(DType::F64, 5).fisher; // same names and shapes, other values
    ewc.update_online(&second).unwrap();
    assert_eq!(ewc.tasks(), 2);
    for (name, var) in &s.params {
        let want: Vec<f64> = flat(s.fisher.get(name).unwrap())
            .iter()
            .zip(flat(second.get(name).unwrap()))
            .map(|(a, b)| gamma * a + b)
            .collect();
        assert!(max_abs_diff(&flat(ewc.fisher(name).unwrap()), &want) < 1e-15);
        assert_eq!(flat(ewc.anchor(name).unwrap()), flat(var.as_tensor()));
    }
    // At the new anchor the penalty is zero again.
    assert_eq!(ewc.penalty_value().unwrap(), 0.0);

    // gamma = 0 forgets the old Fisher entirely.
    let mut fresh = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0).with_gamma(0.0)).unwrap();
    fresh.update_online(&second).unwrap();
    for (name, _) in &s.params {
        assert_eq!(
            flat(fresh.fisher(name).unwrap()),
            flat(second.get(name).unwrap())
        );
    }

    // A Fisher that lacks a penalised parameter is refused and changes nothing.
    let partial = FisherDiagonal::from_tensors(
        vec![second.entries()[0].clone()],
        FisherEstimator::Empirical,
        1,
    )
    .unwrap();
    let before = flat(ewc.fisher("encoder.bias").unwrap());
    let e = ewc.update_online(&partial).unwrap_err();
    assert!(
        matches!(&e, EwcError::MissingFisher { name } if name == "encoder.bias"),
        "{e}"
    );
    assert_eq!(flat(ewc.fisher("encoder.bias").unwrap()), before);
    assert_eq!(ewc.tasks(), 2);
}

/// The model after a head replacement 2 -> 4 classes: same backbone Vars, a new head.
fn with_new_head(params: &[(String, Var)]) -> Vec<(String, Var)> {
    let mut out: Vec<(String, Var)> = params[..2].to_vec();
    let head = Tensor::zeros((4, 4), params[0].1.dtype(), &Device::Cpu).unwrap();
    out.push(("classifier.weight".into(), Var::from_tensor(&head).unwrap()));
    out
}

#[test]
fn filter_leaves_out_replaced_heads_by_shape_or_by_name() {
    let s = setup(DType::F32, 6);
    let mut ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0)).unwrap();
    let new_model = with_new_head(&s.params);

    // Strict by default: the head's shape changed.
    let e = ewc
        .clone()
        .bind(&new_model, &ParamFilter::new())
        .unwrap_err();
    assert!(
        matches!(&e, EwcError::ShapeMismatch { name, expected, got }
            if name == "classifier.weight" && expected == &[2, 4] && got == &[4, 4]),
        "{e}"
    );
    assert!(e.to_string().contains("classifier.weight"));

    let report = ewc
        .bind(&new_model, &ParamFilter::new().skip_shape_mismatch(true))
        .unwrap();
    assert_eq!(report.bound, vec!["encoder.weight", "encoder.bias"]);
    assert_eq!(
        report.skipped_shape,
        vec![("classifier.weight".to_string(), vec![2, 4], vec![4, 4])]
    );
    assert_eq!(report.unpenalised, vec!["classifier.weight"]);
    assert_eq!(ewc.names(), vec!["encoder.weight", "encoder.bias"]);

    // By name, at construction.
    let (by_name, report) = Ewc::new_filtered(
        &s.params,
        &s.fisher,
        EwcConfig::new(1.0),
        &ParamFilter::new().exclude_prefix("classifier."),
    )
    .unwrap();
    assert_eq!(report.excluded, vec!["classifier.weight"]);
    assert_eq!(by_name.len(), 2);
    let (by_pred, _) = Ewc::new_filtered(
        &s.params,
        &s.fisher,
        EwcConfig::new(1.0),
        &ParamFilter::new().exclude_if(|n| n.ends_with("bias")),
    )
    .unwrap();
    assert_eq!(by_pred.names(), vec!["encoder.weight", "classifier.weight"]);

    // A penalised name the model no longer has.
    let mut ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0)).unwrap();
    let e = ewc.bind(&s.params[..2], &ParamFilter::new()).unwrap_err();
    assert!(
        matches!(&e, EwcError::MissingParameter { name } if name == "classifier.weight"),
        "{e}"
    );
    assert_eq!(ewc.len(), 3, "a failed bind changes nothing");
}

#[test]
fn bound_penalty_tracks_the_new_vars() {
    // A deep copy of the model (new Vars, same values) trained instead of the original.
    let s = setup(DType::F64, 7);
    let mut ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0)).unwrap();
    let copy: Vec<(String, Var)> = s
        .params
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
            )
        })
        .collect();
    ewc.bind(&copy, &ParamFilter::new()).unwrap();
    perturb(&copy, 8);
    assert!(ewc.penalty_value().unwrap() > 0.0);
    let grads = ewc.penalty().unwrap().backward().unwrap();
    assert!(grads.get(copy[0].1.as_tensor()).is_some());
    assert!(grads.get(s.params[0].1.as_tensor()).is_none());
}

#[test]
fn save_load_round_trip_is_exact() {
    for dtype in [DType::F32, DType::F64] {
        let s = setup(dtype, 9);
        let est = FisherEstimator::Batch { batch_size: 16 };
        let fisher =
            FisherDiagonal::from_tensors(s.fisher.entries().to_vec(), est.clone(), 640).unwrap();
        let mut ewc = Ewc::new(&s.params, &fisher, EwcConfig::new(1234.5).with_gamma(0.9)).unwrap();
        perturb(&s.params, 10);
        ewc.update_online(&fisher).unwrap();
        perturb(&s.params, 11);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ewc.safetensors");
        ewc.save(&path).unwrap();
        let (back, report) = Ewc::load(&path, &s.params, &ParamFilter::new()).unwrap();
        assert_eq!(report.bound.len(), 3);
        assert_eq!(back.config(), ewc.config());
        assert_eq!(back.estimator(), &est);
        assert_eq!(back.tasks(), 2);
        assert_eq!(back.n_samples(), 640);
        assert_eq!(back.names(), ewc.names());
        for (name, _) in &s.params {
            assert_eq!(back.fisher(name).unwrap().dtype(), dtype);
            assert_eq!(
                flat(back.fisher(name).unwrap()),
                flat(ewc.fisher(name).unwrap())
            );
            assert_eq!(
                flat(back.anchor(name).unwrap()),
                flat(ewc.anchor(name).unwrap())
            );
        }
        assert_eq!(back.penalty_value().unwrap(), ewc.penalty_value().unwrap());
        // No temporary file is left next to the target.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["ewc.safetensors"]);
    }
}

#[test]
fn load_refuses_bad_files_and_changed_models() {
    let s = setup(DType::F32, 12);
    let ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(5.0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ewc.safetensors");
    ewc.save(&path).unwrap();

    // Shape mismatch on load (the head was replaced), unless the filter skips it.
    let new_model = with_new_head(&s.params);
    let e = Ewc::load(&path, &new_model, &ParamFilter::new()).unwrap_err();
    assert!(
        matches!(&e, EwcError::ShapeMismatch { name, .. } if name == "classifier.weight"),
        "{e}"
    );
    let (back, report) = Ewc::load(
        &path,
        &new_model,
        &ParamFilter::new().skip_shape_mismatch(true),
    )
    .unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(report.skipped_shape.len(), 1);

    // Missing file: an I/O error naming it.
    let missing = dir.path().join("nope.safetensors");
    let e = Ewc::load(&missing, &s.params, &ParamFilter::new()).unwrap_err();
    assert!(e.to_string().contains("nope.safetensors"), "{e}");

    // A safetensors file that is not an EWC state.
    let other = dir.path().join("other.safetensors");
    let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    forge_linalg::io::write_safetensors(&other, &[("x".into(), t)], None).unwrap();
    let e = Ewc::load(&other, &s.params, &ParamFilter::new()).unwrap_err();
    assert!(matches!(e, EwcError::Corrupt { .. }), "{e}");

    // Truncated file.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = Ewc::load(&cut, &s.params, &ParamFilter::new()).unwrap_err();
    assert!(e.to_string().contains("cut.safetensors"), "{e}");

    // A NaN Fisher and a negative lambda inside an otherwise valid file.
    let f = forge_linalg::io::SafeTensorsFile::open(&path).unwrap();
    let mut meta = f.metadata().unwrap().clone();
    let mut tensors: Vec<(String, Tensor)> = f
        .names()
        .map(|n| (n.to_string(), f.tensor(n, &Device::Cpu).unwrap()))
        .collect();
    drop(f);
    let i = tensors
        .iter()
        .position(|(n, _)| n == "fisher/encoder.bias")
        .unwrap();
    let nan = Tensor::new(&[0.5f32, f32::NAN, 1.0, 2.0], &Device::Cpu).unwrap();
    let good = std::mem::replace(&mut tensors[i].1, nan);
    let bad = dir.path().join("nan.safetensors");
    forge_linalg::io::write_safetensors(&bad, &tensors, Some(meta.clone())).unwrap();
    let e = Ewc::load(&bad, &s.params, &ParamFilter::new()).unwrap_err();
    assert!(
        matches!(&e, EwcError::NonFinite { what: "Fisher", name, index: 1, .. } if name == "encoder.bias"),
        "{e}"
    );
    tensors[i].1 = good;
    meta.insert("lambda".into(), "-1".into());
    forge_linalg::io::write_safetensors(&bad, &tensors, Some(meta)).unwrap();
    let e = Ewc::load(&bad, &s.params, &ParamFilter::new()).unwrap_err();
    assert!(
        matches!(e, EwcError::InvalidLambda { value } if value == -1.0),
        "{e}"
    );
}

#[test]
fn bad_hyper_parameters_and_fishers_give_typed_errors() {
    let s = setup(DType::F64, 13);
    for lambda in [-0.1, f64::NAN, f64::INFINITY] {
        let e = Ewc::new(&s.params, &s.fisher, EwcConfig::new(lambda)).unwrap_err();
        assert!(matches!(e, EwcError::InvalidLambda { .. }), "{e}");
        assert!(e.to_string().contains("lambda"));
    }
    for gamma in [-0.5, 1.5, f64::NAN] {
        let e = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0).with_gamma(gamma)).unwrap_err();
        assert!(matches!(e, EwcError::InvalidGamma { .. }), "{e}");
    }
    let mut ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0)).unwrap();
    assert!(
        matches!(ewc.set_lambda(-2.0), Err(EwcError::InvalidLambda { value }) if value == -2.0)
    );
    assert!(matches!(ewc.set_gamma(2.0), Err(EwcError::InvalidGamma { value }) if value == 2.0));
    ewc.set_lambda(0.0).unwrap();
    assert_eq!(ewc.config().lambda, 0.0);

    let e = Ewc::new(&[], &s.fisher, EwcConfig::new(1.0)).unwrap_err();
    assert!(matches!(e, EwcError::NoParameters { .. }), "{e}");
    let e = Ewc::new_filtered(
        &s.params,
        &s.fisher,
        EwcConfig::new(1.0),
        &ParamFilter::new().exclude_if(|_| true),
    )
    .unwrap_err();
    assert!(matches!(e, EwcError::NoParameters { .. }), "{e}");

    let dev = Device::Cpu;
    let nan = Tensor::new(&[1.0f64, f64::NAN], &dev).unwrap();
    let e = FisherDiagonal::from_tensors(vec![("w".into(), nan)], FisherEstimator::Empirical, 1)
        .unwrap_err();
    assert!(
        matches!(&e, EwcError::NonFinite { name, index: 1, .. } if name == "w"),
        "{e}"
    );
    let neg = Tensor::new(&[1.0f64, -3.0], &dev).unwrap();
    let e = FisherDiagonal::from_tensors(vec![("w".into(), neg)], FisherEstimator::Empirical, 1)
        .unwrap_err();
    assert!(
        matches!(e, EwcError::NegativeFisher { value, .. } if value == -3.0),
        "{e}"
    );

    // Fisher missing a parameter; Fisher of the wrong shape.
    let other = Var::from_tensor(&Tensor::zeros(2, DType::F64, &dev).unwrap()).unwrap();
    let mut params = s.params.clone();
    params.push(("extra".into(), other));
    let e = Ewc::new(&params, &s.fisher, EwcConfig::new(1.0)).unwrap_err();
    assert!(
        matches!(&e, EwcError::MissingFisher { name } if name == "extra"),
        "{e}"
    );
    let wrong = FisherDiagonal::from_tensors(
        vec![(
            "encoder.bias".into(),
            Tensor::ones(5, DType::F64, &dev).unwrap(),
        )],
        FisherEstimator::Empirical,
        1,
    )
    .unwrap();
    let e = Ewc::new(&s.params[1..2], &wrong, EwcConfig::new(1.0)).unwrap_err();
    assert!(matches!(e, EwcError::ShapeMismatch { .. }), "{e}");
}

#[test]
fn penalty_converts_into_a_candle_error_for_training_hooks() {
    let s = setup(DType::F32, 14);
    let ewc = Ewc::new(&s.params, &s.fisher, EwcConfig::new(1.0)).unwrap();
    let hook = move || -> candle_core::Result<Tensor> { Ok(ewc.penalty()?) };
    assert_eq!(hook().unwrap().dims(), &[] as &[usize]);
}
