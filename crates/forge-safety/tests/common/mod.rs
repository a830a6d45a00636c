//! Shared helpers of the encoder-safety tests: fixture reading and random features.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use forge_linalg::rng::{randn, seeded_rng};
use serde_json::Value;

/// The LogME / LEEP / CKA fixture (tests/fixtures/make_transferability.py).
pub fn transferability_fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transferability.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON array of numbers.
pub fn vec1(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A JSON array of integer labels.
pub fn labels(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A JSON matrix as an f64 tensor.
pub fn mat(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(vec1).collect();
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

/// Standard normal `[n, d]` f64 features from `seed`.
pub fn gaussian(n: usize, d: usize, seed: u64) -> Tensor {
    randn(&[n, d], DType::F64, &Device::Cpu, &mut seeded_rng(seed)).unwrap()
}

/// A random orthogonal `[d, d]` matrix (QR of a Gaussian matrix via Gram-Schmidt).
pub fn orthogonal(d: usize, seed: u64) -> Tensor {
    let g: Vec<Vec<f64>> = gaussian(d, d, seed).to_vec2().unwrap();
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(d);
    for mut v in g {
        for u in &q {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            for (a, b) in v.iter_mut().zip(u) {
                *a -= dot * b;
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.iter().map(|a| a / norm).collect());
    }
    Tensor::from_vec(q.concat(), (d, d), &Device::Cpu).unwrap()
}

/// Asserts `|a - b| <= tol`, with a message.
pub fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tol {tol})");
}
