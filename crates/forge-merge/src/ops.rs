//! The merge methods as plain functions on tensors, for code that holds tensors rather than
//! files or configs. Each is one call of [`crate::merge_tensor`] with the method's parameters.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let dev = Device::Cpu;
//! let base = Tensor::new(&[0.0f32, 0.0, 0.0], &dev)?;
//! let a = Tensor::new(&[1.0f32, -2.0, 0.5], &dev)?;
//! let b = Tensor::new(&[3.0f32, 1.0, -0.25], &dev)?;
//! // TIES keeps, per entry, only the task-vector values that agree with the elected sign.
//! let m = forge_merge::ops::ties(&base, &[&a, &b], &[1.0, 1.0], &[1.0, 1.0])?;
//! assert_eq!(m.to_vec1::<f32>()?, vec![2.0, -2.0, 0.5]);
//! # Ok::<(), forge_merge::MergeError>(())
//! ```

use crate::error::Result;
use crate::merge::merge_tensor;
use crate::method::{MergeMethod, TensorParams};
use candle_core::Tensor;

/// Weighted average `sum_i w_i x_i / sum_i w_i` (or the plain weighted sum when `normalize` is
/// false). Wortsman et al. 2022, "Model soups".
///
/// # Shapes
/// All models the same shape.
///
/// # Errors
/// Shape mismatch, non-finite weights or result.
pub fn linear(models: &[&Tensor], weights: &[f64], normalize: bool) -> Result<Tensor> {
    let mut p = TensorParams::new(MergeMethod::Linear, models.len());
    p.weights = weights.to_vec();
    p.normalize = normalize;
    merge_tensor(MergeMethod::Linear, None, models, &p)
}

/// Spherical interpolation from `v0` (t = 0) to `v1` (t = 1), over the whole tensor; linear
/// interpolation when the two are nearly collinear (|cos| > 0.9995), as mergekit does.
/// Shoemake 1985, "Animating rotation with quaternion curves".
///
/// # Shapes
/// `v0` and `v1` the same shape.
///
/// # Errors
/// `t` outside `[0, 1]`, shape mismatch.
pub fn slerp(t: f64, v0: &Tensor, v1: &Tensor) -> Result<Tensor> {
    let mut p = TensorParams::new(MergeMethod::Slerp, 1);
    p.t = t;
    merge_tensor(MergeMethod::Slerp, Some(v0), &[v1], &p)
}

/// `base + lambda * sum_i w_i (x_i - base)`. Ilharco et al. 2023, "Editing models with task
/// arithmetic".
///
/// # Shapes
/// All the same shape.
///
/// # Errors
/// Shape mismatch, non-finite weights, lambda or result.
pub fn task_arithmetic(
    base: &Tensor,
    models: &[&Tensor],
    weights: &[f64],
    lambda: f64,
) -> Result<Tensor> {
    let mut p = TensorParams::new(MergeMethod::TaskArithmetic, models.len());
    p.weights = weights.to_vec();
    p.lambda = lambda;
    merge_tensor(MergeMethod::TaskArithmetic, Some(base), models, &p)
}

/// TIES-Merging (Yadav et al. 2023): trim each task vector to its top-`density` magnitudes,
/// elect the sign of the weighted sum per entry, average the agreeing weighted entries
/// (divided by the sum of their weights), add to the base.
///
/// # Shapes
/// All the same shape.
///
/// # Errors
/// Densities outside `(0, 1]`, shape mismatch, non-finite result.
pub fn ties(
    base: &Tensor,
    models: &[&Tensor],
    weights: &[f64],
    densities: &[f64],
) -> Result<Tensor> {
    let mut p = TensorParams::new(MergeMethod::Ties, models.len());
    p.weights = weights.to_vec();
    p.densities = densities.to_vec();
    merge_tensor(MergeMethod::Ties, Some(base), models, &p)
}

/// DARE (Yu et al. 2024, "Language models are Super Mario"): drop each task-vector entry with
/// probability `drop_rate` (p), rescale the kept ones by 1/(1-p), then combine with TIES' sign
/// election (`ties = true`) or a plain weighted sum. Seeded: the same seed gives the same drops.
///
/// # Shapes
/// All the same shape.
///
/// # Errors
/// `drop_rate` outside `[0, 1)`, shape mismatch, non-finite result.
pub fn dare(
    base: &Tensor,
    models: &[&Tensor],
    weights: &[f64],
    drop_rate: f64,
    seed: u64,
    ties: bool,
) -> Result<Tensor> {
    let method = if ties {
        MergeMethod::DareTies
    } else {
        MergeMethod::DareLinear
    };
    let mut p = TensorParams::new(method, models.len());
    p.weights = weights.to_vec();
    p.densities = vec![1.0 - drop_rate; models.len()];
    p.seed = seed;
    merge_tensor(method, Some(base), models, &p)
}

/// DELLA (Deep et al. 2024, "DELLA-Merging: Reducing Interference in Model Merging through
/// Magnitude-Based Sampling"): each task vector is MAGPRUNEd (every entry kept with a
/// probability from `density - epsilon` for the smallest magnitude of its row to
/// `density + epsilon` for the largest, survivors divided by their probability), weighted, then
/// combined with TIES' sign election (`ties`) or summed. Seeded.
///
/// # Shapes
/// All the same shape; rows are the last dimension.
///
/// # Errors
/// `density` outside `(0, 1]`, `epsilon` with `density +- epsilon` outside `(0, 1]`, shape
/// mismatch, non-finite result.
pub fn della(
    base: &Tensor,
    models: &[&Tensor],
    weights: &[f64],
    density: f64,
    epsilon: f64,
    seed: u64,
    ties: bool,
) -> Result<Tensor> {
    let method = if ties {
        MergeMethod::Della
    } else {
        MergeMethod::DellaLinear
    };
    let mut p = TensorParams::new(method, models.len());
    p.weights = weights.to_vec();
    p.densities = vec![density; models.len()];
    p.epsilons = vec![epsilon; models.len()];
    p.seed = seed;
    merge_tensor(method, Some(base), models, &p)
}
