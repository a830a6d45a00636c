//! The low-rank update `scaling * x A^T B^T` of a LoRA layer as one op with its own backward
//! pass (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685).
//!
//! As candle ops the update is five graph nodes (two transposes, two products, a scaling), and
//! candle's backward pass gives every node a fresh zero-filled gradient buffer to add into; at
//! MiniLM size that bookkeeping on the `[tokens, out]` products cost more than the products.
//! Here it is one node: the forward runs the two products with the scaling folded into the
//! `[tokens, r]` intermediate, and the backward forms `u = scaling * g B` (`[tokens, r]`) once
//! and reads every gradient off it: `dA = u^T x`, `dx = u A`, `dB = g^T (scaling * x A^T)`.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use forge_linalg::bf16::mat_from_layout;
use forge_linalg::sgemm::{self, Start};

struct LoraDelta {
    scaling: f64,
}

impl CustomOp3 for LoraDelta {
    fn name(&self) -> &'static str {
        "forge-lora-delta"
    }

    /// x `[n, in]`, a `[r, in]`, b `[out, r]` -> `scaling * x a^T b^T` `[n, out]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = mat_from_layout(s1, l1, "lora delta input")?;
        let a = mat_from_layout(s2, l2, "lora delta A")?;
        let b = mat_from_layout(s3, l3, "lora delta B")?;
        let threads = candle_core::utils::get_num_threads();
        let err =
            |e: forge_linalg::LinalgError| candle_core::Error::Msg(format!("lora delta: {e}"));
        let mut t = sgemm::gemm_f32_new(x, a.t(), Start::Zero, threads).map_err(err)?;
        let scaling = self.scaling as f32;
        t.iter_mut().for_each(|v| *v *= scaling);
        let tm = forge_linalg::bf16::MatRef::row_major(&t, x.rows(), a.rows()).map_err(err)?;
        let z = sgemm::gemm_f32_new(tm, b.t(), Start::Zero, threads).map_err(err)?;
        Ok((CpuStorage::F32(z), Shape::from((x.rows(), b.rows()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let u = (sgemm::matmul(g, b)? * self.scaling)?;
        let gx = x.track_op().then(|| sgemm::matmul(&u, a)).transpose()?;
        let ga = a
            .track_op()
            .then(|| sgemm::matmul(&u.t()?, x))
            .transpose()?;
        let gb = b
            .track_op()
            .then(|| {
                let t = (sgemm::matmul(x, &a.t()?)? * self.scaling)?;
                sgemm::matmul(&g.t()?, &t)
            })
            .transpose()?;
        Ok((gx, ga, gb))
    }
}

/// `scaling * x A^T B^T` for x `[n, in]`, A `[r, in]`, B `[out, r]`, as one differentiable op
/// (see the module docs) for f32 tensors on the CPU; candle's ops otherwise.
///
/// # Errors
/// Candle shape errors.
pub(crate) fn lora_delta(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scaling: f64,
) -> candle_core::Result<Tensor> {
    let f32_cpu =
        |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.rank() == 2;
    if f32_cpu(x) && f32_cpu(a) && f32_cpu(b) {
        x.apply_op3(a, b, LoraDelta { scaling })
    } else {
        x.matmul(&a.t()?)?.matmul(&b.t()?)? * scaling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = forge_linalg::seeded_rng(seed);
        forge_linalg::rng::randn(shape, candle_core::DType::F32, &Device::Cpu, &mut rng).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        forge_linalg::ops::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn value_and_gradients_match_candle_ops() {
        let (n, d_in, r, d_out) = (37, 24, 4, 19);
        let x = Var::from_tensor(&rand(&[n, d_in], 1)).unwrap();
        let a = Var::from_tensor(&rand(&[r, d_in], 2)).unwrap();
        let b = Var::from_tensor(&rand(&[d_out, r], 3)).unwrap();
        let g = rand(&[n, d_out], 4);
        let fused = lora_delta(x.as_tensor(), a.as_tensor(), b.as_tensor(), 2.5).unwrap();
        let reference = (x
            .as_tensor()
            .matmul(&a.as_tensor().t().unwrap())
            .unwrap()
            .matmul(&b.as_tensor().t().unwrap())
            .unwrap()
            * 2.5)
            .unwrap();
        assert_eq!(fused.dims(), &[n, d_out]);
        assert!(max_abs_diff(&fused, &reference) < 1e-4);
        let grads = |y: &Tensor| (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gr) = (grads(&fused), grads(&reference));
        for v in [&x, &a, &b] {
            let (p, q) = (gf.get(v).unwrap(), gr.get(v).unwrap());
            assert_eq!(p.dims(), v.dims());
            assert!(max_abs_diff(p, q) < 1e-4, "{}", max_abs_diff(p, q));
        }
    }

    #[test]
    fn untracked_input_gets_no_gradient_and_f64_falls_back() {
        let x = rand(&[5, 6], 5);
        let a = Var::from_tensor(&rand(&[2, 6], 6)).unwrap();
        let b = Var::from_tensor(&rand(&[3, 2], 7)).unwrap();
        let y = lora_delta(&x, a.as_tensor(), b.as_tensor(), 1.0).unwrap();
        let gs = y.sum_all().unwrap().backward().unwrap();
        assert!(gs.get(&x).is_none());
        assert!(gs.get(&a).is_some() && gs.get(&b).is_some());
        let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
        let a64 = a.as_tensor().to_dtype(candle_core::DType::F64).unwrap();
        let b64 = b.as_tensor().to_dtype(candle_core::DType::F64).unwrap();
        let y64 = lora_delta(&x64, &a64, &b64, 1.0).unwrap();
        let y32 = y64.to_dtype(candle_core::DType::F32).unwrap();
        assert!(max_abs_diff(&y32, &y) < 1e-5);
        // mismatched shapes are errors, not panics
        assert!(lora_delta(&x, b.as_tensor(), a.as_tensor(), 1.0).is_err());
    }
}
