//! LogME, LEEP and CKA equal the published reference implementations, re-implemented step for
//! step in tests/fixtures/make_transferability.py (numpy).

mod common;

use common::{close, labels, mat, transferability_fixture};
use forge_safety::{
    leep, linear_cka, logme_classification, logme_regression, rbf_cka, CkaEstimator,
};

#[test]
fn logme_classification_matches_reference() {
    let f = transferability_fixture();
    let cases = f["logme"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for (i, c) in cases.iter().enumerate() {
        let got = logme_classification(&mat(&c["features"]), &labels(&c["labels"])).unwrap();
        let want = c["logme"].as_f64().unwrap();
        close(got.score, want, 1e-8, &format!("LogME case {i}"));
        let per = common::vec1(&c["per_class"]);
        assert_eq!(got.per_column.len(), per.len());
        for (g, w) in got.per_column.iter().zip(&per) {
            close(*g, *w, 1e-8, &format!("LogME case {i} per class"));
        }
    }
}

#[test]
fn logme_regression_matches_reference() {
    let f = transferability_fixture();
    for (i, c) in f["logme_regression"].as_array().unwrap().iter().enumerate() {
        let got = logme_regression(&mat(&c["features"]), &mat(&c["targets"])).unwrap();
        close(
            got.score,
            c["logme"].as_f64().unwrap(),
            1e-8,
            &format!("LogME regression case {i}"),
        );
    }
}

#[test]
fn leep_matches_reference() {
    let f = transferability_fixture();
    for (i, c) in f["leep"].as_array().unwrap().iter().enumerate() {
        let got = leep(&mat(&c["probs"]), &labels(&c["labels"])).unwrap();
        close(
            got.score,
            c["leep"].as_f64().unwrap(),
            1e-12,
            &format!("LEEP case {i}"),
        );
        assert!(got.null_score <= 0.0);
    }
}

#[test]
fn cka_matches_kornblith_reference() {
    let f = transferability_fixture();
    for (i, c) in f["cka"].as_array().unwrap().iter().enumerate() {
        let (x, y) = (mat(&c["x"]), mat(&c["y"]));
        let tol = 1e-10;
        close(
            linear_cka(&x, &y, CkaEstimator::Biased).unwrap(),
            c["linear_biased"].as_f64().unwrap(),
            tol,
            &format!("linear biased {i}"),
        );
        close(
            linear_cka(&x, &y, CkaEstimator::Unbiased).unwrap(),
            c["linear_unbiased"].as_f64().unwrap(),
            tol,
            &format!("linear unbiased {i}"),
        );
        for th in ["0.5", "1.0"] {
            let t: f64 = th.parse().unwrap();
            close(
                rbf_cka(&x, &y, t, CkaEstimator::Biased).unwrap(),
                c[format!("rbf_{th}_biased")].as_f64().unwrap(),
                tol,
                &format!("rbf {th} biased {i}"),
            );
            close(
                rbf_cka(&x, &y, t, CkaEstimator::Unbiased).unwrap(),
                c[format!("rbf_{th}_unbiased")].as_f64().unwrap(),
                tol,
                &format!("rbf {th} unbiased {i}"),
            );
        }
    }
}
