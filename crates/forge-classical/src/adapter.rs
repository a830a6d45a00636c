//! Low-rank adapters for linear models: the source weights stay frozen and only a low-rank
//! correction is trained on the target data (LoRA for linear models).

use crate::data::{self, check_lam, check_pos, Mat64};
use crate::logistic::{cross_entropy, softmax_probs, BinaryProblem};
use crate::model::{LinearModel, LogisticModel, SoftmaxModel};
use crate::ridge::{penalized_ls, source_weights};
use crate::sgd::TrainHistory;
use crate::{ClassicalError, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Hyperparameters of [`fit_low_rank_adapter`].
///
/// | field | default | range | used by |
/// |---|---|---|---|
/// | `rank` | 2 | 1..=d (vector), 1..=min(d, k) (matrix) | both |
/// | `lam` | 1.0 | >= 0 | both (L2 on the adapter parameters) |
/// | `lr` | 0.05 | > 0 | matrix adapter (Adam) |
/// | `epochs` | 300 | >= 1 | matrix adapter (full-batch steps) |
/// | `seed` | 0 | any | matrix adapter (init of `B`) |
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterParams {
    /// Adapter rank `r`.
    pub rank: usize,
    /// L2 penalty on the adapter parameters.
    pub lam: f64,
    /// Adam learning rate (matrix adapter).
    pub lr: f64,
    /// Full-batch Adam steps (matrix adapter).
    pub epochs: usize,
    /// Seed of the random initialisation (matrix adapter).
    pub seed: u64,
}

impl Default for AdapterParams {
    fn default() -> Self {
        Self {
            rank: 2,
            lam: 1.0,
            lr: 0.05,
            epochs: 300,
            seed: 0,
        }
    }
}

impl AdapterParams {
    /// Sets the rank.
    pub fn rank(mut self, v: usize) -> Self {
        self.rank = v;
        self
    }
    /// Sets the penalty.
    pub fn lam(mut self, v: f64) -> Self {
        self.lam = v;
        self
    }
    /// Sets the learning rate.
    pub fn lr(mut self, v: f64) -> Self {
        self.lr = v;
        self
    }
    /// Sets the number of steps.
    pub fn epochs(mut self, v: usize) -> Self {
        self.epochs = v;
        self
    }
    /// Sets the seed.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }

    fn validate(&self, max_rank: usize) -> Result<()> {
        if self.rank == 0 || self.rank > max_rank {
            return Err(ClassicalError::InvalidParameter {
                name: "rank",
                reason: format!("must be in 1..={max_rank}, got {}", self.rank),
            });
        }
        check_lam("lam", self.lam)
    }
}

/// A vector adapter `w = w_src + U_r a` (see [`fit_low_rank_adapter`]).
#[derive(Debug, Clone)]
pub struct VectorAdapter<M> {
    /// The adapted model (source weights plus the correction, re-fitted intercept).
    pub model: M,
    /// The fixed basis `U_r`, f64 `[d, r]`: the top-`r` principal directions of the target features.
    pub basis: Tensor,
    /// The trained coefficients `a`, f64 `[r]`.
    pub coef: Tensor,
}

impl<M> VectorAdapter<M> {
    /// Number of trained parameters (`r + 1`, intercept included).
    pub fn n_trainable(&self) -> usize {
        self.coef.elem_count() + 1
    }
}

/// A matrix adapter `W = W_src + B A` (see [`fit_low_rank_adapter`]).
#[derive(Debug, Clone)]
pub struct MatrixAdapter {
    /// The adapted model.
    pub model: SoftmaxModel,
    /// `B`, f64 `[d, r]`.
    pub b: Tensor,
    /// `A`, f64 `[r, k]`.
    pub a: Tensor,
    /// Training objective per step.
    pub history: TrainHistory,
}

impl MatrixAdapter {
    /// Number of trained parameters (`(d + k) r + k`, intercepts included).
    pub fn n_trainable(&self) -> usize {
        self.b.elem_count() + self.a.elem_count() + self.model.n_classes()
    }
}

/// A source model that a low-rank adapter can be fitted to. Implemented by [`LinearModel`]
/// (targets: real values), [`LogisticModel`] (targets: 0/1) and [`SoftmaxModel`] (targets:
/// class ids).
pub trait LowRankAdapt {
    /// What fitting produces.
    type Adapted;
    /// Fits the adapter on target data with `self` frozen. See [`fit_low_rank_adapter`].
    ///
    /// # Errors
    /// As [`fit_low_rank_adapter`].
    fn fit_adapter(&self, x: &Tensor, y: &Tensor, params: &AdapterParams) -> Result<Self::Adapted>;
}

/// Fits a low-rank adapter to a frozen source model on target data (in the spirit of LoRA:
/// Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR).
///
/// - **Vector adapter** (regression, binary): `w = w_src + U_r a`, where `U_r` `[d, r]` holds the
///   top-`r` principal directions of the centred target features (a weight vector has rank 1,
///   so the low-rank restriction is a subspace restriction, as in principal-component
///   regression). `a` and the intercept are fitted exactly: ridge
///   `argmin ||y - X w_src - (X U_r) a - b||^2 + lam ||a||^2` for [`LinearModel`], or L2 logistic
///   regression with offset `X w_src` (Newton) for [`LogisticModel`]. `r = d` with `lam -> 0`
///   is full re-fitting.
/// - **Matrix adapter** (multi-class, [`SoftmaxModel`]): `W = W_src + B A`, `B` `[d, r]`
///   (random `N(0, 1/d)` init), `A` `[r, k]` (zero init, so training starts at the source
///   model), intercepts trainable; minimises mean cross-entropy `+ lam/2 (||A||^2 + ||B||^2)/n`
///   by full-batch Adam (Kingma & Ba, 2015) for `epochs` steps.
///
/// # Shapes
/// `x`: `[n, d]`; `y`: `[n]`
///
/// # Errors
/// Bad input; `rank == 0` or larger than allowed; `lam < 0`; bad labels; feature mismatch.
pub fn fit_low_rank_adapter<M: LowRankAdapt>(
    x: &Tensor,
    y: &Tensor,
    source: &M,
    params: &AdapterParams,
) -> Result<M::Adapted> {
    source.fit_adapter(x, y, params)
}

/// Top-`r` principal directions of the centred rows of `x`, row-major `[d, r]`.
fn principal_basis(x: &Mat64, r: usize) -> Result<Vec<f64>> {
    let d = x.d;
    let g = crate::ridge::moments(x, &vec![0.0; x.n], None).g;
    let gt = Tensor::from_vec(g, (d, d), &Device::Cpu)?;
    let (_, v) = forge_linalg::dense::eigh(&gt)?; // ascending eigenvalues
    let v: Vec<f64> = v.flatten_all()?.to_vec1()?;
    let mut u = vec![0.0; d * r];
    for i in 0..d {
        for c in 0..r {
            u[i * r + c] = v[i * d + (d - 1 - c)];
        }
    }
    Ok(u)
}

fn project(x: &Mat64, u: &[f64], r: usize) -> Mat64 {
    let mut z = vec![0.0; x.n * r];
    for (row, zr) in x.v.chunks_exact(x.d).zip(z.chunks_exact_mut(r)) {
        for (j, &xv) in row.iter().enumerate() {
            for (zc, &uc) in zr.iter_mut().zip(&u[j * r..j * r + r]) {
                *zc += xv * uc;
            }
        }
    }
    Mat64 { v: z, n: x.n, d: r }
}

fn combine(w0: &[f64], u: &[f64], a: &[f64], r: usize) -> Vec<f64> {
    w0.iter()
        .enumerate()
        .map(|(i, &w)| w + data::dot(&u[i * r..i * r + r], a))
        .collect()
}

impl LowRankAdapt for LinearModel {
    type Adapted = VectorAdapter<LinearModel>;
    fn fit_adapter(&self, x: &Tensor, y: &Tensor, params: &AdapterParams) -> Result<Self::Adapted> {
        let (xm, yv) = data::xy(x, y)?;
        params.validate(xm.d)?;
        let w0 = source_weights(&self.weights, xm.d)?;
        let r = params.rank;
        let u = principal_basis(&xm, r)?;
        let z = project(&xm, &u, r);
        let resid: Vec<f64> = yv
            .iter()
            .zip(xm.affine(&w0, 0.0))
            .map(|(y, f)| y - f)
            .collect();
        let (a, b) = penalized_ls(&z, &resid, None, params.lam, None)?;
        let w = combine(&w0, &u, &a, r);
        Ok(VectorAdapter {
            model: LinearModel::from_vec(w, b)?,
            basis: Tensor::from_vec(u, (xm.d, r), &Device::Cpu)?,
            coef: data::tensor1(a, &Device::Cpu)?,
        })
    }
}

impl LowRankAdapt for LogisticModel {
    type Adapted = VectorAdapter<LogisticModel>;
    fn fit_adapter(&self, x: &Tensor, y: &Tensor, params: &AdapterParams) -> Result<Self::Adapted> {
        let (xm, yv) = data::xy(x, y)?;
        params.validate(xm.d)?;
        data::check_binary(&yv, "y", true)?;
        let w0 = source_weights(&self.weights, xm.d)?;
        let r = params.rank;
        let u = principal_basis(&xm, r)?;
        let z = project(&xm, &u, r);
        let off = xm.affine(&w0, 0.0);
        let sol = BinaryProblem {
            x: &z,
            y: &yv,
            s: None,
            offset: Some(&off),
            lam: params.lam,
            w0: None,
        }
        .solve("fit_low_rank_adapter (logistic)")?;
        let w = combine(&w0, &u, &sol.w, r);
        Ok(VectorAdapter {
            model: LogisticModel::from_vec(w, sol.b)?,
            basis: Tensor::from_vec(u, (xm.d, r), &Device::Cpu)?,
            coef: data::tensor1(sol.w, &Device::Cpu)?,
        })
    }
}

impl LowRankAdapt for SoftmaxModel {
    type Adapted = MatrixAdapter;
    fn fit_adapter(&self, x: &Tensor, y: &Tensor, params: &AdapterParams) -> Result<Self::Adapted> {
        let (xm, yv) = data::xy(x, y)?;
        let (d, k) = (self.n_features(), self.n_classes());
        if xm.d != d {
            return Err(ClassicalError::Shape {
                what: "x".into(),
                expected: format!("[n, {d}] (the source model has {d} features)"),
                got: x.dims().to_vec(),
            });
        }
        params.validate(d.min(k))?;
        check_pos("lr", params.lr)?;
        if params.epochs == 0 {
            return Err(ClassicalError::InvalidParameter {
                name: "epochs",
                reason: "must be >= 1, got 0".into(),
            });
        }
        let ids = data::class_ids(&yv, k, "y")?;
        let w0: Vec<f64> = self
            .weights
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let mut bias: Vec<f64> = self.intercept.to_dtype(DType::F64)?.to_vec1()?;
        let r = params.rank;
        let mut rng = forge_linalg::seeded_rng(params.seed);
        let scale = 1.0 / (d as f64).sqrt();
        let mut bm: Vec<f64> =
            forge_linalg::rng::randn(&[d * r], DType::F64, &Device::Cpu, &mut rng)?
                .affine(scale, 0.0)?
                .to_vec1()?;
        let mut am = vec![0.0; r * k];
        let n = xm.n as f64;
        let lam_n = params.lam / n;
        let mut hist = TrainHistory::default();
        let mut adam = [Adam::new(d * r), Adam::new(r * k), Adam::new(k)];
        let mut w = w0.clone();
        for _ in 0..params.epochs {
            // W = W0 + B A
            for i in 0..d {
                for c in 0..k {
                    w[i * k + c] =
                        w0[i * k + c] + (0..r).map(|q| bm[i * r + q] * am[q * k + c]).sum::<f64>();
                }
            }
            let p = softmax_probs(&xm, &w, &bias, k);
            let loss = cross_entropy(&p, &ids, k)
                + 0.5 * lam_n * (data::dot(&am, &am) + data::dot(&bm, &bm));
            if !loss.is_finite() {
                return Err(ClassicalError::Diverged {
                    method: "fit_low_rank_adapter (matrix)",
                    epoch: hist.steps,
                    loss,
                    lr: params.lr,
                });
            }
            hist.epoch_loss.push(loss);
            // G = X^T (P - Y) / n  [d, k];  g_b = column sums of (P - Y) / n
            let mut g = vec![0.0; d * k];
            let mut gb = vec![0.0; k];
            for (i, row) in xm.v.chunks_exact(d).enumerate() {
                for c in 0..k {
                    let e = (p[i * k + c] - if ids[i] == c { 1.0 } else { 0.0 }) / n;
                    gb[c] += e;
                    for (j, &xv) in row.iter().enumerate() {
                        g[j * k + c] += xv * e;
                    }
                }
            }
            // dB = G A^T + lam B ; dA = B^T G + lam A
            let mut g_b = vec![0.0; d * r];
            for i in 0..d {
                for q in 0..r {
                    g_b[i * r + q] = (0..k).map(|c| g[i * k + c] * am[q * k + c]).sum::<f64>()
                        + lam_n * bm[i * r + q];
                }
            }
            let mut g_a = vec![0.0; r * k];
            for q in 0..r {
                for c in 0..k {
                    g_a[q * k + c] = (0..d).map(|i| bm[i * r + q] * g[i * k + c]).sum::<f64>()
                        + lam_n * am[q * k + c];
                }
            }
            adam[0].step(&mut bm, &g_b, params.lr);
            adam[1].step(&mut am, &g_a, params.lr);
            adam[2].step(&mut bias, &gb, params.lr);
            hist.steps += 1;
        }
        for i in 0..d {
            for c in 0..k {
                w[i * k + c] =
                    w0[i * k + c] + (0..r).map(|q| bm[i * r + q] * am[q * k + c]).sum::<f64>();
            }
        }
        let model = SoftmaxModel::new(
            &Tensor::from_vec(w, (d, k), &Device::Cpu)?,
            &Tensor::from_vec(bias, k, &Device::Cpu)?,
        )?;
        Ok(MatrixAdapter {
            model,
            b: Tensor::from_vec(bm, (d, r), &Device::Cpu)?,
            a: Tensor::from_vec(am, (r, k), &Device::Cpu)?,
            history: hist,
        })
    }
}

/// Adam optimiser state (Kingma & Ba, 2015) for one parameter block.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        for i in 0..p.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            p[i] -= lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}
