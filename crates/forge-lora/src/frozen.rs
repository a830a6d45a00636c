//! A matmul with a frozen right-hand side whose backward pass computes only the input gradient.
//!
//! candle's matmul backward always computes both operand gradients, even when the weight is a
//! constant; for a LoRA step that is one wasted `[in, out]` product per frozen linear layer.
//! `y = x W^T` is computed without tracking, then re-attached to `x`'s graph through a custom op
//! whose forward copies `y` and whose backward returns `dL/dx = (dL/dy) W` only.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

struct FrozenRhsGrad {
    w: Tensor,
}

impl CustomOp2 for FrozenRhsGrad {
    fn name(&self) -> &'static str {
        "frozen-rhs-matmul"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = l2.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-rhs-matmul: product must be contiguous".into())
        })?;
        let out = match s2 {
            CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
            _ => {
                return Err(candle_core::Error::Msg(
                    "frozen-rhs-matmul: only f32 / f64".into(),
                ))
            }
        };
        Ok((out, l2.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.w)?), None))
    }
}

/// `x W^T` for a 2-D `x` `[n, in]` and a frozen `w` `[out, in]`; the backward pass yields the
/// gradient of `x` only. Falls back to a plain matmul off the CPU, for other dtypes, or when `x`
/// is not tracked.
///
/// # Errors
/// Candle shape errors.
pub(crate) fn frozen_matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let eligible = x.track_op()
        && !w.track_op()
        && x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    if !eligible {
        return x.matmul(&w.t()?);
    }
    let y = x.detach().matmul(&w.t()?)?;
    x.apply_op2(&y, FrozenRhsGrad { w: w.clone() })
}

struct FusedLinear;

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "forge-linear"
    }

    /// x `[n, in]`, w `[out, in]`, b `[out]` -> `x w^T + b`, one GEMM that starts from the bias.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use forge_linalg::ops::contiguous_f32;
        let x = contiguous_f32(s1, l1, "forge-linear input")?;
        let w = contiguous_f32(s2, l2, "forge-linear weight")?;
        let b = contiguous_f32(s3, l3, "forge-linear bias")?;
        let (n, k) = l1.shape().dims2()?;
        let (out, k2) = l2.shape().dims2()?;
        if k != k2 || b.len() != out {
            candle_core::bail!(
                "forge-linear: input {:?}, weight {:?}, bias {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            )
        }
        let mut y = Vec::with_capacity(n * out);
        for _ in 0..n {
            y.extend_from_slice(b);
        }
        if n > 0 && out > 0 {
            let threads = candle_core::utils::get_num_threads();
            let par = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: x is [n, k] row-major, w is [out, k] row-major (read as the k x out
            // matrix w^T: column stride k, row stride 1), y is [n, out] row-major and already
            // holds n * out values; the slices were bounds-checked against the shapes above.
            unsafe {
                gemm::gemm(
                    n,
                    out,
                    k,
                    y.as_mut_ptr(),
                    1,
                    out as isize,
                    true,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gx = x.track_op().then(|| grad.matmul(w)).transpose()?;
        let gw = w.track_op().then(|| grad.t()?.matmul(x)).transpose()?;
        let gb = b.track_op().then(|| grad.sum(0)).transpose()?;
        Ok((gx, gw, gb))
    }
}

/// `x W^T + b` for a 2-D `x` `[n, in]` as one GEMM starting from the bias (no separate bias
/// pass, no copy), with a backward pass that computes the gradients of the tracked operands
/// only (a frozen weight gets none). `None` when it does not apply (not f32 on the CPU), for
/// the caller's candle-op path.
///
/// # Errors
/// Candle shape errors.
pub(crate) fn fused_linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && matches!(t.dtype(), candle_core::DType::F32);
    if !(f32_cpu(x) && f32_cpu(w) && f32_cpu(b)) || x.rank() != 2 || w.rank() != 2 {
        return Ok(None);
    }
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, FusedLinear)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn same_value_and_input_gradient_as_plain_matmul() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.0f32, 2.0, 3.0], [-1.0, 0.5, 0.0]], &dev).unwrap();
        let w = Tensor::new(&[[0.1f32, 0.2, 0.3], [0.4, -0.5, 0.6]], &dev).unwrap();
        let a = frozen_matmul_t(x.as_tensor(), &w).unwrap();
        let b = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        let ga = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gb = b.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert_eq!(ga.to_vec2::<f32>().unwrap(), gb.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn fused_linear_matches_matmul_plus_bias_with_every_gradient() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.0f32, 2.0, 3.0], [-1.0, 0.5, 0.0]], &dev).unwrap();
        let w = Var::new(&[[0.1f32, 0.2, 0.3], [0.4, -0.5, 0.6]], &dev).unwrap();
        let b = Var::new(&[0.25f32, -1.0], &dev).unwrap();
        let fused = fused_linear(x.as_tensor(), w.as_tensor(), b.as_tensor())
            .unwrap()
            .expect("f32 on the CPU");
        let plain = x
            .as_tensor()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        let (fv, pv) = (
            fused.to_vec2::<f32>().unwrap(),
            plain.to_vec2::<f32>().unwrap(),
        );
        for (a, p) in fv.iter().flatten().zip(pv.iter().flatten()) {
            assert!((a - p).abs() < 1e-6, "{a} vs {p}");
        }
        let gf = fused.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            let (a, p) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            let d: f32 = (a - p)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-5, "gradient differs by {d}");
        }
        // a frozen weight and bias get no gradient
        let wf = w.as_tensor().detach();
        let bf = b.as_tensor().detach();
        let y = fused_linear(x.as_tensor(), &wf, &bf).unwrap().unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&wf).is_none() && g.get(&bf).is_none());
        // f64 is left to the caller
        let x64 = x.as_tensor().to_dtype(candle_core::DType::F64).unwrap();
        assert!(fused_linear(&x64, &wf, &bf).unwrap().is_none());
    }
}
