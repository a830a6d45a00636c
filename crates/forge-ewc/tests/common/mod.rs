//! Shared test helpers: tiny hand-written candle models whose Fisher has a closed form.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};

/// Largest absolute difference between two equal-length slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A tensor's values, flattened, as f64.
pub fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Binary logistic regression `p(y=1|x) = sigmoid(w . x + b)` with 3 parameters (w: 2, b: 1),
/// written as a 2-class model with logits `[0, w . x + b]`.
pub struct Logistic {
    pub x: Vec<[f64; 2]>,
    pub y: Vec<usize>,
    pub w: Var,
    pub b: Var,
    pub xt: Tensor,
}

impl Logistic {
    pub fn new(w: [f64; 2], b: f64) -> Self {
        let dev = Device::Cpu;
        let x = vec![
            [1.0, 2.0],
            [-0.5, 1.5],
            [2.0, -1.0],
            [0.3, 0.7],
            [-1.2, -0.4],
        ];
        let y = vec![1, 0, 1, 1, 0];
        let flat: Vec<f64> = x.iter().flat_map(|r| r.iter().copied()).collect();
        Self {
            xt: Tensor::from_vec(flat, (x.len(), 2), &dev).unwrap(),
            x,
            y,
            w: Var::from_tensor(&Tensor::new(&w, &dev).unwrap()).unwrap(),
            b: Var::from_tensor(&Tensor::new(&[b], &dev).unwrap()).unwrap(),
        }
    }

    pub fn params(&self) -> Vec<(String, Var)> {
        vec![("w".into(), self.w.clone()), ("b".into(), self.b.clone())]
    }

    /// Logits `[k, 2]` of the samples `idx`.
    pub fn logits(&self, idx: &[usize]) -> candle_core::Result<Tensor> {
        let rows = Tensor::new(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )?;
        let x = self.xt.index_select(&rows, 0)?;
        let z = x
            .matmul(&self.w.as_tensor().unsqueeze(1)?)?
            .broadcast_add(self.b.as_tensor())?;
        Tensor::cat(&[&z.zeros_like()?, &z], 1)
    }

    /// `sigmoid(w . x_i + b)` in plain f64.
    pub fn p1(&self, i: usize) -> f64 {
        let w = flat(self.w.as_tensor());
        let b = flat(self.b.as_tensor())[0];
        sigmoid(w[0] * self.x[i][0] + w[1] * self.x[i][1] + b)
    }
}

/// Softmax regression with 3 classes: logits `x W^T`, `W` `[3, 2]`.
pub struct Softmax3 {
    pub x: Vec<[f64; 2]>,
    pub y: Vec<usize>,
    pub w: Var,
    pub xt: Tensor,
}

impl Softmax3 {
    pub fn new() -> Self {
        let dev = Device::Cpu;
        let x = vec![[1.0, 2.0], [-0.5, 1.5], [2.0, -1.0], [0.3, 0.7]];
        let y = vec![2, 0, 1, 2];
        let flat: Vec<f64> = x.iter().flat_map(|r| r.iter().copied()).collect();
        let w = Tensor::new(&[[0.2f64, -0.4], [0.7, 0.1], [-0.3, 0.5]], &dev).unwrap();
        Self {
            xt: Tensor::from_vec(flat, (x.len(), 2), &dev).unwrap(),
            x,
            y,
            w: Var::from_tensor(&w).unwrap(),
        }
    }

    pub fn params(&self) -> Vec<(String, Var)> {
        vec![("W".into(), self.w.clone())]
    }

    pub fn logits(&self, idx: &[usize]) -> candle_core::Result<Tensor> {
        let rows = Tensor::new(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )?;
        self.xt
            .index_select(&rows, 0)?
            .matmul(&self.w.as_tensor().t()?)
    }

    /// Softmax probabilities of sample `i`, plain f64.
    pub fn probs(&self, i: usize) -> Vec<f64> {
        let w: Vec<Vec<f64>> = self.w.as_tensor().to_vec2().unwrap();
        let z: Vec<f64> = w
            .iter()
            .map(|r| r[0] * self.x[i][0] + r[1] * self.x[i][1])
            .collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    }
}
