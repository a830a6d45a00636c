//! The bf16 product on candle tensors, for the custom ops of forge-lora and forge-models.

use super::{Bf16Gemm, MatRef};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// The 2-D f32 matrix that a CPU storage and its layout describe (any strides, any offset).
///
/// # Errors
/// When the storage is not f32, the layout not 2-D, or the view exceeds the storage.
pub fn mat_from_layout<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<MatRef<'a>> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 expected")
    };
    let (rows, cols) = l.shape().dims2()?;
    let st = l.stride();
    let data = v.get(l.start_offset()..).unwrap_or(&[]);
    MatRef::new(data, rows, cols, st[0], st[1])
        .map_err(|e| candle_core::Error::Msg(format!("{what}: {e}")))
}

struct Bf16Matmul;

impl CustomOp2 for Bf16Matmul {
    fn name(&self) -> &'static str {
        "forge-bf16-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = mat_from_layout(s1, l1, "bf16 matmul lhs")?;
        let b = mat_from_layout(s2, l2, "bf16 matmul rhs")?;
        let (m, n) = (a.rows(), b.cols());
        let c = Bf16Gemm::new()
            .run_new(a, b, None)
            .map_err(|e| candle_core::Error::Msg(format!("bf16 matmul: {e}")))?;
        Ok((CpuStorage::F32(c), Shape::from((m, n))))
    }
}

/// `a · b` for 2-D f32 CPU tensors `[m, k] x [k, n]` (any strides, e.g. transposed views)
/// with bf16 operands and f32 accumulation ([`super::gemm_bf16`]), as an f32 tensor `[m, n]`.
/// Not differentiable: for the backward passes of ops that define their own.
///
/// # Errors
/// Non-f32 or non-CPU operands, ranks other than 2, mismatched inner dimensions.
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.apply_op2_no_bwd(b, &Bf16Matmul)
}
