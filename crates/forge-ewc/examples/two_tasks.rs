//! EWC on a hand-written candle MLP: learn task A, then task B without and with EWC, and report
//! how much of task A survives.
//!
//! Task A separates two Gaussian blobs along x (centred at y = -3); task B separates two blobs
//! along the diagonal (centred at y = +3). An MLP can solve both, but plain training on B moves
//! the shared weights and forgets A. The Fisher of A (empirical, true and batch estimators are printed side by
//! side) weights a quadratic pull back to A's solution. Plain gradient descent with the penalty
//! is stable only while `lr * lambda * max F < 2` (the penalty's curvature), which bounds lambda.
//!
//! Run: `cargo run --release -p forge-ewc --example two_tasks`

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use forge_ewc::{fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherEstimator, Targets};
use forge_linalg::rng::randn;
use forge_linalg::seeded_rng;

/// A two-layer perceptron `2 -> 32 (tanh) -> 2` with named `Var`s.
struct Mlp {
    params: Vec<(String, Var)>,
}

impl Mlp {
    fn new(seed: u64) -> Result<Self> {
        let dev = Device::Cpu;
        let mut rng = seeded_rng(seed);
        let mut p = |name: &str, shape: &[usize], scale: f64| -> Result<(String, Var)> {
            let t = (randn(shape, DType::F32, &dev, &mut rng)? * scale)?;
            Ok((name.to_string(), Var::from_tensor(&t)?))
        };
        Ok(Self {
            params: vec![
                p("fc1.weight", &[32, 2], 0.7)?,
                p("fc1.bias", &[32], 0.1)?,
                p("fc2.weight", &[2, 32], 0.2)?,
                p("fc2.bias", &[2], 0.0)?,
            ],
        })
    }

    fn t(&self, i: usize) -> &Tensor {
        self.params[i].1.as_tensor()
    }

    /// Logits `[n, 2]` of inputs `[n, 2]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = x
            .matmul(&self.t(0).t()?)?
            .broadcast_add(self.t(1))?
            .tanh()?;
        h.matmul(&self.t(2).t()?)?.broadcast_add(self.t(3))
    }
}

/// `n` points per class: class c at `centre + (2c - 1) * offset`, unit-variance noise.
fn task(centre: [f32; 2], offset: [f32; 2], n: usize, seed: u64) -> Result<(Tensor, Vec<usize>)> {
    let dev = Device::Cpu;
    let mut rng = seeded_rng(seed);
    let noise = (randn(&[2 * n, 2], DType::F32, &dev, &mut rng)? * 0.8)?;
    let mut means = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(2 * n);
    for c in 0..2 {
        let s = 2.0 * c as f32 - 1.0;
        for _ in 0..n {
            means.extend([centre[0] + s * offset[0], centre[1] + s * offset[1]]);
            labels.push(c);
        }
    }
    Ok((
        (Tensor::from_vec(means, (2 * n, 2), &dev)? + noise)?,
        labels,
    ))
}

fn cross_entropy(logits: &Tensor, labels: &[usize]) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    let y: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let y = Tensor::from_vec(y, (labels.len(), 1), logits.device())?;
    logp.gather(&y, 1)?.mean_all()?.neg()
}

fn accuracy(m: &Mlp, x: &Tensor, labels: &[usize]) -> Result<f64> {
    let pred: Vec<u32> = m.forward(x)?.argmax(D::Minus1)?.to_vec1()?;
    let hits = pred
        .iter()
        .zip(labels)
        .filter(|(p, &l)| **p as usize == l)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

/// Full-batch gradient descent on cross-entropy (+ the EWC penalty when given).
fn train(m: &Mlp, x: &Tensor, y: &[usize], steps: usize, ewc: Option<&Ewc>) -> Result<()> {
    let lr = 0.5;
    for _ in 0..steps {
        let mut loss = cross_entropy(&m.forward(x)?, y)?;
        if let Some(e) = ewc {
            loss = (loss + e.penalty()?)?;
        }
        let grads = loss.backward()?;
        for (_, v) in &m.params {
            if let Some(g) = grads.get(v.as_tensor()) {
                v.set(&(v.as_tensor() - (g * lr)?)?)?;
            }
        }
    }
    Ok(())
}

fn snapshot(m: &Mlp) -> Result<Vec<Tensor>> {
    Ok(m.params
        .iter()
        .map(|(_, v)| v.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?)
}

fn restore(m: &Mlp, saved: &[Tensor]) -> Result<()> {
    for ((_, v), t) in m.params.iter().zip(saved) {
        v.set(t)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let (xa, ya) = task([0.0, -3.0], [2.0, 0.0], 100, 1)?;
    let (xb, yb) = task([0.0, 3.0], [1.5, 1.5], 100, 2)?;
    let (xa_test, ya_test) = task([0.0, -3.0], [2.0, 0.0], 500, 3)?;
    let (xb_test, yb_test) = task([0.0, 3.0], [1.5, 1.5], 500, 4)?;

    let m = Mlp::new(0)?;
    train(&m, &xa, &ya, 300, None)?;
    println!(
        "after task A: acc A {:.3}, acc B {:.3}",
        accuracy(&m, &xa_test, &ya_test)?,
        accuracy(&m, &xb_test, &yb_test)?
    );
    let after_a = snapshot(&m)?;

    let rows = |idx: &[usize]| -> candle_core::Result<Tensor> {
        let r = Tensor::new(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )?;
        m.forward(&xa.index_select(&r, 0)?)
    };
    let mut fishers = Vec::new();
    for est in [
        FisherEstimator::Empirical,
        FisherEstimator::TrueExact,
        FisherEstimator::TrueSampled {
            samples_per_input: 1,
            seed: 7,
        },
        FisherEstimator::Batch { batch_size: 20 },
    ] {
        let f = fisher_diagonal(
            &m.params,
            Targets::Labels(&ya),
            rows,
            &FisherConfig::new(est),
        )?;
        println!(
            "Fisher trace, {:<45} {:.5}",
            f.estimator().to_string(),
            f.trace()?
        );
        fishers.push(f);
    }

    println!("\ntask B for 300 steps, then accuracy on both tasks:");
    println!(
        "{:<28} {:>7} {:>7} {:>10}",
        "method", "acc A", "acc B", "drift L2"
    );
    for (label, lambda) in [
        ("no EWC", 0.0),
        ("EWC, lambda 1", 1.0),
        ("EWC, lambda 10", 10.0),
        ("EWC, lambda 30", 30.0),
    ] {
        restore(&m, &after_a)?;
        let ewc = Ewc::new(&m.params, &fishers[1], EwcConfig::new(lambda))?;
        train(&m, &xb, &yb, 300, (lambda > 0.0).then_some(&ewc))?;
        println!(
            "{:<28} {:>7.3} {:>7.3} {:>10.3}",
            label,
            accuracy(&m, &xa_test, &ya_test)?,
            accuracy(&m, &xb_test, &yb_test)?,
            ewc.anchor_distance()?.l2
        );
    }
    Ok(())
}
