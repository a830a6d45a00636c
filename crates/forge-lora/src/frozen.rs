//! A matmul with a frozen right-hand side whose backward pass computes only the input gradient.
//!
//! candle's matmul backward always computes both operand gradients, even when the weight is a
//! constant; for a LoRA step that is one wasted `[in, out]` product per frozen linear layer.
//! `y = x W^T` is computed without tracking, then re-attached to `x`'s graph through a custom op
//! whose forward copies `y` and whose backward returns `dL/dx = (dL/dy) W` only.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

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
}
