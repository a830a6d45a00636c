//! Agreement with independent references: a direct normal-equation solve (closed form) and
//! fixtures produced by scikit-learn / SciPy (`fixtures/make_fixtures.py`).

use candle_core::{Device, Tensor};
use forge_classical::*;
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/classical_fixtures.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vec1(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn mat(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(vec1).collect();
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

fn t1(v: Vec<f64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

fn coef(m: &LinearModel) -> Vec<f64> {
    m.weights.to_vec1().unwrap()
}

/// Direct normal equations on the augmented design [X, 1]:
/// (A^T A + lam P) theta = A^T y + lam P [w0; 0], P = diag(1, .., 1, 0).
fn normal_equations(x: &Tensor, y: &Tensor, lam: f64, w0: Option<&[f64]>) -> (Vec<f64>, f64) {
    let (n, d) = x.dims2().unwrap();
    let a = Tensor::cat(
        &[
            x.clone(),
            Tensor::ones((n, 1), candle_core::DType::F64, &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let mut pen = vec![0.0; (d + 1) * (d + 1)];
    for j in 0..d {
        pen[j * (d + 1) + j] = lam;
    }
    let pen = Tensor::from_vec(pen, (d + 1, d + 1), &Device::Cpu).unwrap();
    let lhs = (a.t().unwrap().matmul(&a).unwrap() + pen).unwrap();
    let mut rhs: Vec<f64> = a
        .t()
        .unwrap()
        .matmul(&y.unsqueeze(1).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    if let Some(w0) = w0 {
        for j in 0..d {
            rhs[j] += lam * w0[j];
        }
    }
    let theta: Vec<f64> = forge_linalg::dense::cholesky_solve(&lhs, &t1(rhs))
        .unwrap()
        .to_vec1()
        .unwrap();
    (theta[..d].to_vec(), theta[d])
}

#[test]
fn ridge_and_transfer_match_normal_equations_and_sklearn() {
    let f = fixtures();
    let r = &f["reg"];
    let (x, y) = (mat(&r["x"]), t1(vec1(&r["y"])));
    let w_src = vec1(&r["w_src"]);
    let src = LinearModel::from_vec(w_src.clone(), 123.0).unwrap();
    let sw = t1(vec1(&r["sample_weight"]));
    for case in r["cases"].as_array().unwrap() {
        let lam = case["lam"].as_f64().unwrap();
        let m = ridge(&x, &y, lam).unwrap();
        let (wn, bn) = normal_equations(&x, &y, lam, None);
        assert_close(&coef(&m), &wn, 1e-8, "ridge vs normal equations");
        assert_close(
            &[m.intercept],
            &[bn],
            1e-8,
            "ridge intercept vs normal equations",
        );
        assert_close(
            &coef(&m),
            &vec1(&case["ridge_coef"]),
            1e-6,
            "ridge vs sklearn",
        );
        assert_close(
            &[m.intercept],
            &[case["ridge_intercept"].as_f64().unwrap()],
            1e-6,
            "ridge intercept vs sklearn",
        );

        let t = regularized_transfer_linear(&x, &y, &src, lam).unwrap();
        let (wn, bn) = normal_equations(&x, &y, lam, Some(&w_src));
        assert_close(&coef(&t), &wn, 1e-8, "transfer vs normal equations");
        assert_close(
            &[t.intercept],
            &[bn],
            1e-8,
            "transfer intercept vs normal equations",
        );
        assert_close(
            &coef(&t),
            &vec1(&case["transfer_coef"]),
            1e-6,
            "transfer vs sklearn",
        );
        assert_close(
            &[t.intercept],
            &[case["transfer_intercept"].as_f64().unwrap()],
            1e-6,
            "transfer intercept",
        );

        let w = ridge_weighted(&x, &y, &sw, lam).unwrap();
        assert_close(
            &coef(&w),
            &vec1(&case["weighted_coef"]),
            1e-6,
            "weighted ridge vs sklearn",
        );
        assert_close(
            &[w.intercept],
            &[case["weighted_intercept"].as_f64().unwrap()],
            1e-6,
            "weighted intercept",
        );
    }
}

#[test]
fn logistic_newton_matches_sklearn_and_scipy() {
    let f = fixtures();
    let l = &f["logit"];
    let (x, y) = (mat(&l["x"]), t1(vec1(&l["y"])));
    let src = LogisticModel::from_vec(vec1(&l["w_src"]), 0.0).unwrap();
    let sw = t1(vec1(&l["sample_weight"]));
    for case in l["cases"].as_array().unwrap() {
        let lam = case["lam"].as_f64().unwrap();
        let m = fit_logistic(&x, &y, lam).unwrap();
        assert_close(
            &m.weights_vec().unwrap(),
            &vec1(&case["coef"]),
            1e-6,
            "logistic vs sklearn",
        );
        assert_close(
            &[m.intercept],
            &[case["intercept"].as_f64().unwrap()],
            1e-6,
            "logistic intercept",
        );
        let p: Vec<f64> = m.predict_proba(&x).unwrap().to_vec1().unwrap();
        assert_close(&p, &vec1(&case["proba"]), 1e-7, "predict_proba vs sklearn");
        let mw = fit_logistic_weighted(&x, &y, &sw, lam).unwrap();
        assert_close(
            &mw.weights_vec().unwrap(),
            &vec1(&case["weighted_coef"]),
            1e-6,
            "weighted logistic",
        );
        assert_close(
            &[mw.intercept],
            &[case["weighted_intercept"].as_f64().unwrap()],
            1e-6,
            "weighted intercept",
        );
        let t = regularized_transfer_logistic(&x, &y, &src, lam).unwrap();
        assert_close(
            &t.weights_vec().unwrap(),
            &vec1(&case["transfer_coef"]),
            1e-6,
            "logistic transfer vs scipy",
        );
        assert_close(
            &[t.intercept],
            &[case["transfer_intercept"].as_f64().unwrap()],
            1e-6,
            "transfer intercept",
        );
    }
}

#[test]
fn softmax_newton_matches_sklearn() {
    let f = fixtures();
    let s = &f["softmax"];
    let (x, y) = (mat(&s["x"]), t1(vec1(&s["y"])));
    let k = s["k"].as_u64().unwrap() as usize;
    for case in s["cases"].as_array().unwrap() {
        let lam = case["lam"].as_f64().unwrap();
        let m = fit_softmax(&x, &y, k, lam).unwrap();
        let w: Vec<f64> = m.weights.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f64> = case["coef"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(vec1)
            .collect();
        assert_close(&w, &want, 1e-6, "softmax W vs sklearn");
        assert_close(
            &m.intercept.to_vec1::<f64>().unwrap(),
            &vec1(&case["intercept"]),
            1e-6,
            "softmax b",
        );
        let p: Vec<f64> = m
            .predict_proba(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f64> = case["proba"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(vec1)
            .collect();
        assert_close(&p, &want, 1e-7, "softmax proba");
    }
}

#[test]
fn metrics_match_sklearn() {
    let f = fixtures();
    let m = &f["metrics"];
    let (y, p) = (t1(vec1(&m["y"])), t1(vec1(&m["pred"])));
    let (yb, sc) = (t1(vec1(&m["yb"])), vec1(&m["score"]));
    let g = |k: &str| m[k].as_f64().unwrap();
    assert_close(&[metrics::mse(&y, &p).unwrap()], &[g("mse")], 1e-12, "mse");
    assert_close(
        &[metrics::rmse(&y, &p).unwrap()],
        &[g("mse").sqrt()],
        1e-12,
        "rmse",
    );
    assert_close(&[metrics::mae(&y, &p).unwrap()], &[g("mae")], 1e-12, "mae");
    assert_close(&[metrics::r2(&y, &p).unwrap()], &[g("r2")], 1e-12, "r2");
    let clipped: Vec<f64> = sc.iter().map(|v| v.clamp(0.05, 0.95)).collect();
    assert_close(
        &[metrics::log_loss(&yb, &t1(clipped)).unwrap()],
        &[g("log_loss")],
        1e-12,
        "log_loss",
    );
    assert_close(
        &[metrics::roc_auc(&yb, &t1(sc.clone())).unwrap()],
        &[g("roc_auc")],
        1e-12,
        "roc_auc",
    );
    let hard: Vec<f64> = sc
        .iter()
        .map(|&v| if v >= 0.5 { 1.0 } else { 0.0 })
        .collect();
    assert_close(
        &[metrics::accuracy(&yb, &t1(hard)).unwrap()],
        &[g("accuracy")],
        1e-12,
        "accuracy",
    );
}
