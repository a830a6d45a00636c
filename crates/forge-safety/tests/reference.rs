//! KS and MMD against scipy / numpy reference values (tests/fixtures/make_fixtures.py).

use candle_core::{Device, Tensor};
use forge_safety::mmd::{median_bandwidth, mmd2_unbiased};
use forge_safety::{ks_2samp, KsMethod};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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

#[test]
fn ks_matches_scipy_exact_and_asymptotic() {
    let f = fixture();
    for case in f["ks"].as_array().unwrap() {
        let (a, b) = (vec1(&case["a"]), vec1(&case["b"]));
        let exact = ks_2samp(&a, &b, KsMethod::Exact).unwrap();
        let want_d = case["statistic"].as_f64().unwrap();
        assert!(
            (exact.statistic - want_d).abs() < 1e-12,
            "D {} vs {want_d}",
            exact.statistic
        );
        let want = case["p_exact"].as_f64().unwrap();
        assert!(
            (exact.p_value - want).abs() < 1e-9 * want.max(1e-3),
            "exact p {} vs {want}",
            exact.p_value
        );
        let asym = ks_2samp(&a, &b, KsMethod::Asymptotic).unwrap();
        let want = case["p_asymptotic"].as_f64().unwrap();
        assert!(
            (asym.p_value - want).abs() < 1e-10,
            "asymptotic p {} vs {want}",
            asym.p_value
        );
        // Auto picks exact for these sizes.
        assert_eq!(
            ks_2samp(&a, &b, KsMethod::Auto).unwrap().method,
            KsMethod::Exact
        );
    }
}

#[test]
fn mmd_matches_numpy_with_median_heuristic() {
    let f = fixture();
    for case in f["mmd"].as_array().unwrap() {
        let (x, y) = (mat(&case["x"]), mat(&case["y"]));
        let h = median_bandwidth(&x, &y, 10_000, 1).unwrap();
        let want_h = case["median_bandwidth"].as_f64().unwrap();
        assert!((h - want_h).abs() < 1e-12, "bandwidth {h} vs {want_h}");
        let got = mmd2_unbiased(&x, &y, &[h]).unwrap();
        let want = case["mmd2_median"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "mmd2 {got} vs {want}");
    }
}
